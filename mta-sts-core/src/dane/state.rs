//! The DANE state of a destination (RFC 7672 §2.2) and its precedence over MTA-STS (RFC 8461 §2).

use core::fmt;

use crate::domain::NameProblem;
use crate::io::{DnsFailure, DnssecType};
use crate::outcome::Outcome;
use crate::policy::Mode;
use crate::policy_domain::PolicyDomainError;
use crate::time::UnixTime;

use super::tlsa::Tlsa;

/// What decides a destination's delivery once its DANE state is known (D7).
///
/// | state | precedence | Postfix answer |
/// |---|---|---|
/// | mandatory | [`DaneOnly`](Self::DaneOnly) | `OK dane-only` |
/// | opportunistic | [`Dane`](Self::Dane) | `OK dane` |
/// | indeterminate | [`Defer`](Self::Defer) | `TEMP …` |
/// | unusable-only, MTA-STS policy in `enforce`/`testing` | [`Sts`](Self::Sts) | the MTA-STS answer |
/// | unusable-only, no such policy | [`TlsRequired`](Self::TlsRequired) | `OK encrypt` |
/// | absent | [`Sts`](Self::Sts) | the MTA-STS answer (as without DANE) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Precedence {
    /// Every MX host has usable TLSA records: DANE alone decides, MTA-STS is not applied.
    DaneOnly,
    /// Some MX hosts have usable TLSA records: DANE decides for them, MTA-STS (if any) for the
    /// others.
    Dane,
    /// A DNS answer that would decide DANE failed: defer (a temporary failure), never fall back
    /// to MTA-STS.
    Defer,
    /// TLSA records are published but none is usable, and there is no MTA-STS policy that
    /// requires TLS: TLS is mandatory, without authentication (RFC 7672 §2.2).
    TlsRequired,
    /// DANE does not apply: MTA-STS decides, as without DANE.
    Sts,
}

impl Precedence {
    /// A short name: `dane-only`, `dane`, `defer`, `tls-required` or `sts`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DaneOnly => "dane-only",
            Self::Dane => "dane",
            Self::Defer => "defer",
            Self::TlsRequired => "tls-required",
            Self::Sts => "sts",
        }
    }
}

impl fmt::Display for Precedence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why DANE does not apply to a destination (its state is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DaneAbsent {
    /// The destination is not a domain name (an address literal, an invalid name): no lookup.
    NotADomain(PolicyDomainError),
    /// The MX answer was not authenticated (an insecure zone): DANE does not apply
    /// (RFC 7672 §2.2.1).
    InsecureMx,
    /// The domain does not exist (authenticated NXDOMAIN).
    NxDomain,
    /// The domain publishes the null MX (`0 .`, RFC 7505): it accepts no mail.
    NullMx,
    /// No MX host was left to consider (every one skipped: addresses, `.`, invalid names, no
    /// address records).
    NoHost,
    /// No MX host is covered by DANE: insecure address or TLSA records, or authenticated proof
    /// that there are no TLSA records.
    NotCovered,
}

impl fmt::Display for DaneAbsent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotADomain(e) => write!(f, "no DANE lookup: {e}"),
            Self::InsecureMx => f.write_str("MX records not authenticated (insecure)"),
            Self::NxDomain => f.write_str("the domain does not exist (authenticated NXDOMAIN)"),
            Self::NullMx => f.write_str("the domain publishes the null MX (accepts no mail)"),
            Self::NoHost => f.write_str("no MX host can be covered by DANE"),
            Self::NotCovered => f.write_str("no MX host has authenticated TLSA records"),
        }
    }
}

/// Why a destination's DANE state is indeterminate: an answer that would decide it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DaneIndeterminate {
    /// The query failed: SERVFAIL (also how a validating resolver reports a bogus answer),
    /// timeout, refused, network error or a malformed response.
    Failed {
        /// The name asked for.
        name: String,
        /// The record type asked for.
        rtype: DnssecType,
        /// How it failed.
        failure: DnsFailure,
    },
    /// The answer has records of another kind than asked for (e.g. addresses for an MX query,
    /// IPv6 addresses for an A query): treated as malformed.
    WrongKind {
        /// The name asked for.
        name: String,
        /// The record type asked for.
        rtype: DnssecType,
    },
}

impl fmt::Display for DaneIndeterminate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed {
                name,
                rtype,
                failure,
            } => write!(f, "{rtype} {name}: {failure}"),
            Self::WrongKind { name, rtype } => {
                write!(
                    f,
                    "{rtype} {name}: malformed answer (records of another type)"
                )
            }
        }
    }
}

/// Why an MX host is not covered by DANE: it is delivered to without DANE (D3, D4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotCoveredReason {
    /// Its address records are not authenticated (RFC 7672 §2.2.2).
    InsecureAddresses,
    /// Its TLSA answer is not authenticated.
    InsecureTlsa,
    /// Authenticated proof that it has no TLSA records (NXDOMAIN or NODATA).
    NoTlsa,
}

impl fmt::Display for NotCoveredReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InsecureAddresses => "address records not authenticated",
            Self::InsecureTlsa => "TLSA records not authenticated",
            Self::NoTlsa => "no TLSA records, authenticated",
        })
    }
}

/// Why an MX target was not considered at all (D2, D3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The target is an IP address, not a host name.
    IpAddress,
    /// The target is `.` in an MX set that has other hosts.
    NullMx,
    /// The target is not a valid host name (or `_25._tcp.<host>` would be too long).
    InvalidName(NameProblem),
    /// The host has no address record (authenticated NXDOMAIN or NODATA for A and AAAA): it
    /// cannot receive mail.
    NoAddresses,
    /// More than [`MAX_DANE_HOSTS`](crate::MAX_DANE_HOSTS) hosts come before it in preference
    /// order: it is not looked up.
    TooMany,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IpAddress => f.write_str("an IP address, not a host name"),
            Self::NullMx => f.write_str("the null MX \".\" among other hosts"),
            Self::InvalidName(p) => write!(f, "not a valid host name: {p}"),
            Self::NoAddresses => f.write_str("no address records, authenticated"),
            Self::TooMany => write!(
                f,
                "beyond the first {} MX hosts, not looked up",
                super::MAX_DANE_HOSTS
            ),
        }
    }
}

/// What DANE says about one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostCoverage {
    /// Authenticated TLSA records of which at least one is usable: only the usable ones, at most
    /// [`MAX_TLSA_RECORDS`](crate::MAX_TLSA_RECORDS). Deliver only with DANE authentication.
    Usable(Vec<Tlsa>),
    /// Authenticated TLSA records, none usable (as published, at most
    /// [`MAX_TLSA_RECORDS`](crate::MAX_TLSA_RECORDS)): TLS is mandatory, without DANE
    /// authentication (RFC 7672 §2.2).
    Unusable(Vec<Tlsa>),
    /// DANE does not apply to this host.
    NotCovered(NotCoveredReason),
    /// The host is not considered.
    Skipped(SkipReason),
}

/// One MX host and its DANE coverage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaneHost {
    name: String,
    coverage: HostCoverage,
}

impl DaneHost {
    pub(crate) fn new(name: String, coverage: HostCoverage) -> Self {
        Self { name, coverage }
    }

    /// The host name: normalised (lowercase A-labels, no root dot) when it is a valid name,
    /// otherwise as the MX answer gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What DANE says about it.
    pub fn coverage(&self) -> &HostCoverage {
        &self.coverage
    }

    /// The usable TLSA records, when DANE covers the host with usable ones.
    pub fn usable_tlsa(&self) -> Option<&[Tlsa]> {
        match &self.coverage {
            HostCoverage::Usable(t) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for DaneHost {
    /// E.g. `MX mx1.example.com: TLSA 3 1 1 ab…, authenticated`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MX {}: ", self.name)?;
        match &self.coverage {
            HostCoverage::Usable(t) | HostCoverage::Unusable(t) => {
                let usable = matches!(self.coverage, HostCoverage::Usable(_));
                match t.first() {
                    Some(first) => write!(f, "TLSA {first}")?,
                    None => f.write_str("TLSA")?,
                }
                if t.len() > 1 {
                    write!(f, " (+{} more)", t.len() - 1)?;
                }
                if usable {
                    f.write_str(", authenticated")
                } else {
                    f.write_str(", authenticated, none usable")
                }
            }
            HostCoverage::NotCovered(r) => write!(f, "not covered ({r})"),
            HostCoverage::Skipped(r) => write!(f, "skipped ({r})"),
        }
    }
}

/// The MX hosts a DANE state was decided from, and until when it holds.
///
/// Shared, not copied, by the clones of a state: a cache hit costs a reference count, not the
/// hosts and their records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DaneHosts {
    hosts: std::sync::Arc<[DaneHost]>,
    omitted: usize,
    expires_at: Option<UnixTime>,
}

impl DaneHosts {
    pub(crate) fn new(hosts: Vec<DaneHost>, omitted: usize, expires_at: Option<UnixTime>) -> Self {
        Self {
            hosts: hosts.into(),
            omitted,
            expires_at,
        }
    }

    /// The hosts in MX preference order: the ones considered, then the ones skipped.
    pub fn hosts(&self) -> &[DaneHost] {
        &self.hosts
    }

    /// How many further skipped MX targets are not listed (a hostile MX set is noted only up to
    /// a bound).
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// When the state stops holding: the earliest arrival time plus TTL of the answers that
    /// decided it, capped by [`DaneConfig::max_ttl`](crate::DaneConfig::max_ttl). `None` when no
    /// lookup decided it.
    pub fn expires_at(&self) -> Option<UnixTime> {
        self.expires_at
    }

    pub(crate) fn set_expires_at(&mut self, at: Option<UnixTime>) {
        self.expires_at = at;
    }
}

/// The DANE state of a destination (RFC 7672 §2.2), as decided from DNSSEC-validated answers.
///
/// ```
/// use mta_sts_core::{DaneState, Outcome, NoPolicyReason, Precedence};
///
/// let state = DaneState::Indeterminate(mta_sts_core::DaneIndeterminate::Failed {
///     name: "example.com".into(),
///     rtype: mta_sts_core::io::DnssecType::Mx,
///     failure: mta_sts_core::io::DnsFailure::ServerFailure,
/// });
/// assert_eq!(state.name(), "indeterminate");
/// assert_eq!(state.reason(), "MX example.com: DNS server failure (SERVFAIL)");
/// let no_policy = Outcome::NoPolicy(NoPolicyReason::Disabled);
/// assert_eq!(state.precedence(&no_policy), Precedence::Defer);
/// assert_eq!(state.expires_at(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DaneState {
    /// Every MX host considered has usable TLSA records (Postfix `dane-only`).
    Mandatory(DaneHosts),
    /// Some MX hosts considered have usable TLSA records (Postfix `dane`).
    Opportunistic(DaneHosts),
    /// No MX host has usable TLSA records, but some have authenticated unusable ones: TLS is
    /// mandatory for those, without DANE authentication.
    UnusableOnly(DaneHosts),
    /// The answers prove that DANE does not apply.
    Absent(DaneAbsent, DaneHosts),
    /// An answer that would decide DANE failed: nothing is known, nothing is cached.
    Indeterminate(DaneIndeterminate),
}

impl DaneState {
    /// `mandatory`, `opportunistic`, `absent` (also for unusable-only, with
    /// [`tls_required`](Self::tls_required)) or `indeterminate`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mandatory(_) => "mandatory",
            Self::Opportunistic(_) => "opportunistic",
            Self::UnusableOnly(_) | Self::Absent(..) => "absent",
            Self::Indeterminate(_) => "indeterminate",
        }
    }

    /// One line for an operator, e.g. `MX mx1.example.com: TLSA 3 1 1 …, authenticated`.
    pub fn reason(&self) -> String {
        let hosts = |h: &DaneHosts, only: fn(&DaneHost) -> bool| {
            let mut parts: Vec<String> = h
                .hosts
                .iter()
                .filter(|x| only(x))
                .map(ToString::to_string)
                .collect();
            if parts.is_empty() {
                parts = h.hosts.iter().map(ToString::to_string).collect();
            }
            parts.join("; ")
        };
        match self {
            Self::Mandatory(h) => hosts(h, |x| x.usable_tlsa().is_some()),
            Self::Opportunistic(h) => hosts(h, |_| true),
            Self::UnusableOnly(h) => format!(
                "TLSA records published but none usable, TLS required: {}",
                hosts(h, |x| matches!(x.coverage, HostCoverage::Unusable(_)))
            ),
            Self::Absent(why, h) if h.hosts.is_empty() => why.to_string(),
            Self::Absent(why, h) => format!("{why}: {}", hosts(h, |_| true)),
            Self::Indeterminate(why) => why.to_string(),
        }
    }

    /// Whether TLS is required for the hosts DANE covers: mandatory, opportunistic (for the
    /// covered hosts) and unusable-only.
    pub fn tls_required(&self) -> bool {
        matches!(
            self,
            Self::Mandatory(_) | Self::Opportunistic(_) | Self::UnusableOnly(_)
        )
    }

    /// The MX hosts, in preference order; empty for an indeterminate state.
    pub fn hosts(&self) -> &[DaneHost] {
        self.dane_hosts().map_or(&[], |h| &h.hosts)
    }

    /// The host named `name` (case-insensitive, a root dot ignored), if the state lists it.
    pub fn host(&self, name: &str) -> Option<&DaneHost> {
        let name = match name.strip_suffix('.') {
            Some(rest) if !rest.is_empty() => rest,
            _ => name,
        };
        self.hosts()
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
    }

    /// What decides the delivery, given the MTA-STS outcome for the same domain (D7).
    pub fn precedence(&self, outcome: &Outcome) -> Precedence {
        self.precedence_with(outcome.active_mode())
    }

    /// [`precedence`](Self::precedence) given the active MTA-STS mode (enforce or testing).
    pub(crate) fn precedence_with(&self, active: Option<Mode>) -> Precedence {
        match self {
            Self::Mandatory(_) => Precedence::DaneOnly,
            Self::Opportunistic(_) => Precedence::Dane,
            Self::Indeterminate(_) => Precedence::Defer,
            // Only `enforce` requires TLS: under `testing` a failed TLS would still deliver.
            Self::UnusableOnly(_) if active == Some(Mode::Enforce) => Precedence::Sts,
            Self::UnusableOnly(_) => Precedence::TlsRequired,
            Self::Absent(..) => Precedence::Sts,
        }
    }

    /// When the state stops holding (see [`DaneHosts::expires_at`]); `None` for an indeterminate
    /// state (never cached) or one no lookup decided.
    pub fn expires_at(&self) -> Option<UnixTime> {
        self.dane_hosts().and_then(|h| h.expires_at)
    }

    /// Whether the state is indeterminate.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Self::Indeterminate(_))
    }

    /// The hosts and expiry, for every state but an indeterminate one.
    pub fn dane_hosts(&self) -> Option<&DaneHosts> {
        match self {
            Self::Mandatory(h) | Self::Opportunistic(h) | Self::UnusableOnly(h) => Some(h),
            Self::Absent(_, h) => Some(h),
            Self::Indeterminate(_) => None,
        }
    }

    pub(crate) fn dane_hosts_mut(&mut self) -> Option<&mut DaneHosts> {
        match self {
            Self::Mandatory(h) | Self::Opportunistic(h) | Self::UnusableOnly(h) => Some(h),
            Self::Absent(_, h) => Some(h),
            Self::Indeterminate(_) => None,
        }
    }
}

impl fmt::Display for DaneState {
    /// The state's name, then its reason: `mandatory: MX mx1.example.com: TLSA 3 1 1 …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::UnusableOnly(_) => "absent (TLS required)",
            other => other.name(),
        };
        write!(f, "{name}: {}", self.reason())
    }
}
