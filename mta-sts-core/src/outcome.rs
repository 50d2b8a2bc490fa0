//! What a policy lookup concludes: a policy (fetched or cached, and why), no policy (and why), or
//! a temporary failure without a usable cached policy.

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

use crate::io::{DnsFailure, FetchFailure};
use crate::lookup::LookupError;
use crate::policy::{Mode, Policy, PolicyError};
use crate::policy_domain::PolicyDomainError;
use crate::time::UnixTime;
use crate::txt::{RecordId, TxtError};

/// A policy as cached: the policy, the TXT id it was fetched under and when it was fetched.
///
/// It is valid from its fetch time up to and including `fetched_at + max_age` (R42); nothing
/// but a new successful fetch extends it. Cloning is cheap (the policy is shared).
#[derive(Clone, PartialEq, Eq)]
pub struct CachedPolicy {
    /// The policy and its id share one allocation, so that a cache slot holds 16 bytes of
    /// policy and a cache hit reads one more cache line, the one it reads the policy from.
    shared: Arc<Shared>,
    fetched_at: UnixTime,
}

#[derive(PartialEq, Eq)]
struct Shared {
    policy: Policy,
    id: RecordId,
}

impl CachedPolicy {
    pub(crate) fn new(policy: Policy, id: RecordId, fetched_at: UnixTime) -> Self {
        Self {
            shared: Arc::new(Shared { policy, id }),
            fetched_at,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// The policy's mode.
    pub fn mode(&self) -> Mode {
        self.shared.policy.mode()
    }

    /// The TXT record id the policy was fetched under.
    pub fn id(&self) -> &str {
        self.shared.id.as_str()
    }

    pub(crate) fn record_id(&self) -> RecordId {
        self.shared.id
    }

    /// When the policy was fetched.
    pub fn fetched_at(&self) -> UnixTime {
        self.fetched_at
    }

    /// The last instant the policy is valid: `fetched_at + max_age` (R42).
    pub fn expires_at(&self) -> UnixTime {
        self.fetched_at
            .saturating_add(Duration::from_secs(u64::from(self.shared.policy.max_age())))
    }

    /// Whether the policy is still valid at `now` (`now <= fetched_at + max_age`).
    pub fn is_fresh(&self, now: UnixTime) -> bool {
        now <= self.expires_at()
    }
}

impl fmt::Debug for CachedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedPolicy")
            .field("id", &self.id())
            .field("fetched_at", &self.fetched_at)
            .field("mode", &self.mode())
            .field("max_age", &self.policy().max_age())
            .field("mx", &self.policy().mx())
            .finish()
    }
}

/// Why a TXT answer gave no usable record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxtProblem {
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name has no TXT record (NODATA).
    NoData,
    /// No `v=STSv1` record, more than one, or an invalid one (R6, R7).
    Invalid(TxtError),
}

impl fmt::Display for TxtProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NxDomain => f.write_str("no _mta-sts record (NXDOMAIN)"),
            Self::NoData => f.write_str("no _mta-sts TXT record (NODATA)"),
            Self::Invalid(e) => write!(f, "unusable _mta-sts record: {e}"),
        }
    }
}

/// Why a policy fetch gave no policy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchProblem {
    /// The HTTPS fetch failed (connection, certificate, timeout, status, media type, size).
    Fetch(FetchFailure),
    /// The body is not a valid policy (`sts-policy-invalid`).
    Invalid(PolicyError),
}

impl FetchProblem {
    /// True for a certificate problem of the policy host (TLSRPT `sts-webpki-invalid`).
    pub fn is_certificate(&self) -> bool {
        matches!(self, Self::Fetch(f) if f.is_certificate())
    }
}

impl fmt::Display for FetchProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fetch(e) => e.fmt(f),
            Self::Invalid(e) => write!(f, "invalid policy: {e}"),
        }
    }
}

/// Why a cached policy was applied rather than a freshly fetched one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheReason {
    /// The cached policy is unexpired: no I/O was done (§5.1 step 1).
    Fresh,
    /// The TXT id is unchanged, so nothing was fetched (R43).
    UnchangedId,
    /// The TXT record is gone or unusable; that does not evict the cache (R11).
    TxtUnusable(TxtProblem),
    /// The TXT lookup failed temporarily (R12).
    DnsFailure(DnsFailure),
    /// The fetch of a new or refreshed policy failed; the old one stays (R20, R43).
    FetchFailed(FetchProblem),
    /// The fetch for this TXT id failed recently; it is not retried before `retry_at` (R19).
    RetryLater {
        /// When the id may be fetched again.
        retry_at: UnixTime,
    },
}

impl fmt::Display for CacheReason {
    /// Why the cached policy was applied, for an operator; [`Outcome`]'s text adds the TXT id.
    ///
    /// ```
    /// use mta_sts_core::io::{DnsFailure, FetchFailure};
    /// use mta_sts_core::{CacheReason, FetchProblem, TxtProblem, UnixTime};
    ///
    /// assert_eq!(
    ///     CacheReason::DnsFailure(DnsFailure::ServerFailure).to_string(),
    ///     "the TXT lookup failed: DNS server failure (SERVFAIL)"
    /// );
    /// assert_eq!(
    ///     CacheReason::FetchFailed(FetchProblem::Fetch(FetchFailure::Status(503))).to_string(),
    ///     "fetching the new policy failed: policy host answered HTTP 503, not 200"
    /// );
    /// assert_eq!(
    ///     CacheReason::TxtUnusable(TxtProblem::NxDomain).to_string(),
    ///     "no _mta-sts record (NXDOMAIN), which does not evict the cache"
    /// );
    /// let retry_at = UnixTime::from_secs(1_767_225_900);
    /// assert_eq!(
    ///     CacheReason::RetryLater { retry_at }.to_string(),
    ///     "the new policy failed recently and is not fetched again before 2026-01-01T00:05:00Z"
    /// );
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fresh => f.write_str("the cached policy is still fresh"),
            Self::UnchangedId => f.write_str("the TXT id is unchanged"),
            Self::TxtUnusable(p) => write!(f, "{p}, which does not evict the cache"),
            Self::DnsFailure(e) => write!(f, "the TXT lookup failed: {e}"),
            Self::FetchFailed(p) => write!(f, "fetching the new policy failed: {p}"),
            Self::RetryLater { retry_at } => write!(
                f,
                "the new policy failed recently and is not fetched again before {}",
                retry_at.rfc3339()
            ),
        }
    }
}

/// Why there is no policy to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoPolicyReason {
    /// MTA-STS is disabled for this domain by configuration.
    Disabled,
    /// The destination is an address literal (R4).
    AddressLiteral,
    /// The destination is not a valid domain name.
    InvalidDomain(PolicyDomainError),
    /// No usable TXT record and no unexpired cached policy (R7, R11).
    NoRecord(TxtProblem),
    /// The TXT record is valid but the fetch failed and no policy is cached (R20): deliver as
    /// though the domain had no policy. Report-worthy (TLSRPT `sts-policy-fetch-error`,
    /// `sts-webpki-invalid` or `sts-policy-invalid`).
    FetchFailed(FetchProblem),
    /// The fetch for this TXT id failed recently and is not retried before `retry_at` (R19).
    RetryLater {
        /// When the id may be fetched again.
        retry_at: UnixTime,
    },
}

impl fmt::Display for NoPolicyReason {
    /// Why no policy applies, for an operator; [`Outcome`]'s text puts `no policy: ` before it.
    ///
    /// ```
    /// use mta_sts_core::io::FetchFailure;
    /// use mta_sts_core::{FetchProblem, NoPolicyReason, TxtProblem};
    ///
    /// assert_eq!(
    ///     NoPolicyReason::NoRecord(TxtProblem::NxDomain).to_string(),
    ///     "no _mta-sts record (NXDOMAIN)"
    /// );
    /// assert_eq!(
    ///     NoPolicyReason::FetchFailed(FetchProblem::Fetch(FetchFailure::Timeout)).to_string(),
    ///     "the TXT record announces a policy but the fetch failed: policy fetch timed out; \
    ///      senders deliver as though the domain had none"
    /// );
    /// assert_eq!(NoPolicyReason::Disabled.to_string(), "MTA-STS is disabled for this domain");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disabled => f.write_str("MTA-STS is disabled for this domain"),
            Self::AddressLiteral => f.write_str("an address literal has no policy"),
            Self::InvalidDomain(e) => e.fmt(f),
            Self::NoRecord(p) => p.fmt(f),
            Self::FetchFailed(p) => write!(
                f,
                "the TXT record announces a policy but the fetch failed: {p}; senders deliver as \
                 though the domain had none"
            ),
            Self::RetryLater { retry_at } => write!(
                f,
                "the policy fetch failed recently and is not tried again before {}",
                retry_at.rfc3339()
            ),
        }
    }
}

/// The conclusion of a policy lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum Outcome {
    /// A policy was fetched and parsed just now.
    Fetched(CachedPolicy),
    /// The cached policy applies.
    Cached {
        /// The cached policy (unexpired).
        policy: CachedPolicy,
        /// Why it was used.
        reason: CacheReason,
    },
    /// No policy applies: deliver as though the domain had not implemented MTA-STS.
    NoPolicy(NoPolicyReason),
    /// The TXT lookup failed temporarily and no unexpired policy is cached: the caller's
    /// [`DnsTempFailure`](crate::DnsTempFailure) setting decides (R12).
    TemporaryFailure(DnsFailure),
    /// The lookup could not be carried out because its driver misused it (a bug in the adapter,
    /// never something the network did): nothing is known about the domain, so delivery defers
    /// ([`Verdict::Defer`](crate::Verdict::Defer)), whatever the settings.
    Internal(LookupError),
    /// The shared policy store could not be asked (down, or slower than its timeout), no
    /// unexpired policy is cached, and the sender chose to defer rather than look the policy up
    /// itself (`on_store_error: defer`): delivery defers
    /// ([`DeferReason::StoreUnavailable`](crate::DeferReason::StoreUnavailable)), whatever the
    /// other settings. Holds what the store or the client said, for the log.
    StoreUnavailable(String),
}

impl Outcome {
    /// The policy to apply, if any (of any mode, including `none`).
    pub fn policy(&self) -> Option<&CachedPolicy> {
        match self {
            Self::Fetched(p) | Self::Cached { policy: p, .. } => Some(p),
            Self::NoPolicy(_)
            | Self::TemporaryFailure(_)
            | Self::Internal(_)
            | Self::StoreUnavailable(_) => None,
        }
    }

    /// The mode that constrains delivery: `Some(Enforce)` or `Some(Testing)`; `None` when there is
    /// no policy or its mode is `none` (R38).
    pub fn active_mode(&self) -> Option<Mode> {
        self.policy()
            .map(CachedPolicy::mode)
            .filter(|m| *m != Mode::None)
    }

    /// The fetch problem to report (TLSRPT), if the lookup met one (R47); never for a policy in
    /// mode `none`.
    pub fn fetch_problem(&self) -> Option<&FetchProblem> {
        match self {
            Self::Cached {
                policy,
                reason: CacheReason::FetchFailed(p),
            } => (policy.mode() != Mode::None).then_some(p),
            Self::NoPolicy(NoPolicyReason::FetchFailed(p)) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    /// The outcome in one line, for an operator: where the policy came from (with its TXT id)
    /// and, for a cached one, why it was used; or why there is none.
    ///
    /// ```
    /// # use mta_sts_core::{Config, PolicyCache, Snapshot, SnapshotEntry, UnixTime};
    /// use mta_sts_core::io::{DnsFailure, FetchFailure};
    /// use mta_sts_core::{CacheReason, FetchProblem, NoPolicyReason, Outcome, TxtProblem};
    ///
    /// # let now = UnixTime::from_secs(1_767_225_600);
    /// # let body = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 86400\r\n";
    /// # let entry = SnapshotEntry::new("example.com", "20260101", now, now, body);
    /// # let mut cache = PolicyCache::new(Config::default());
    /// # cache.import(Snapshot::new(vec![entry]), now)?;
    /// // A policy fetched under the TXT id 20260101.
    /// let policy = cache.peek("example.com").unwrap().clone();
    /// assert_eq!(
    ///     Outcome::Fetched(policy.clone()).to_string(),
    ///     "policy fetched (TXT id 20260101)"
    /// );
    /// let reason = CacheReason::DnsFailure(DnsFailure::ServerFailure);
    /// assert_eq!(
    ///     Outcome::Cached { policy: policy.clone(), reason }.to_string(),
    ///     "cached policy (TXT id 20260101) applied: the TXT lookup failed: DNS server failure \
    ///      (SERVFAIL)"
    /// );
    /// let reason = CacheReason::FetchFailed(FetchProblem::Fetch(FetchFailure::Status(503)));
    /// assert_eq!(
    ///     Outcome::Cached { policy: policy.clone(), reason }.to_string(),
    ///     "cached policy (TXT id 20260101) applied: fetching the new policy failed: policy host \
    ///      answered HTTP 503, not 200"
    /// );
    /// assert_eq!(
    ///     Outcome::Cached { policy, reason: CacheReason::Fresh }.to_string(),
    ///     "cached policy (TXT id 20260101) is still fresh"
    /// );
    /// assert_eq!(
    ///     Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NxDomain)).to_string(),
    ///     "no policy: no _mta-sts record (NXDOMAIN)"
    /// );
    /// assert_eq!(
    ///     Outcome::TemporaryFailure(DnsFailure::Timeout).to_string(),
    ///     "temporary failure: DNS lookup timed out"
    /// );
    /// # Ok::<(), mta_sts_core::SnapshotError>(())
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fetched(p) => write!(f, "policy fetched (TXT id {})", p.id()),
            Self::Cached { policy, reason } => {
                let id = policy.id();
                match reason {
                    CacheReason::Fresh => write!(f, "cached policy (TXT id {id}) is still fresh"),
                    CacheReason::UnchangedId => {
                        write!(f, "TXT id {id} unchanged: the cached policy stays")
                    }
                    _ => write!(f, "cached policy (TXT id {id}) applied: {reason}"),
                }
            }
            Self::NoPolicy(reason) => write!(f, "no policy: {reason}"),
            Self::TemporaryFailure(e) => write!(f, "temporary failure: {e}"),
            Self::Internal(e) => write!(f, "internal error of the lookup's driver (a bug): {e}"),
            Self::StoreUnavailable(e) => write!(f, "temporary failure: policy store: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NameProblem;

    fn cached(id: &str) -> CachedPolicy {
        let policy = Policy::parse("version: STSv1\nmode: testing\nmx: mx.example\nmax_age: 60\n");
        let id = RecordId::new(id).expect("a valid id");
        CachedPolicy::new(policy.expect("a valid policy"), id, UnixTime::from_secs(0))
    }

    #[test]
    fn outcome_texts_name_the_txt_id_and_the_reason() {
        let p = cached("20260102");
        let retry_at = UnixTime::from_secs(1_767_312_300);
        let status = || FetchProblem::Fetch(FetchFailure::Status(503));
        let cases = [
            (
                Outcome::Fetched(p.clone()),
                "policy fetched (TXT id 20260102)",
            ),
            (
                Outcome::Cached {
                    policy: p.clone(),
                    reason: CacheReason::Fresh,
                },
                "cached policy (TXT id 20260102) is still fresh",
            ),
            (
                Outcome::Cached {
                    policy: p.clone(),
                    reason: CacheReason::UnchangedId,
                },
                "TXT id 20260102 unchanged: the cached policy stays",
            ),
            (
                Outcome::Cached {
                    policy: p.clone(),
                    reason: CacheReason::TxtUnusable(TxtProblem::NoData),
                },
                "cached policy (TXT id 20260102) applied: no _mta-sts TXT record (NODATA), which \
                 does not evict the cache",
            ),
            (
                Outcome::Cached {
                    policy: p.clone(),
                    reason: CacheReason::DnsFailure(DnsFailure::ServerFailure),
                },
                "cached policy (TXT id 20260102) applied: the TXT lookup failed: DNS server \
                 failure (SERVFAIL)",
            ),
            (
                Outcome::Cached {
                    policy: p.clone(),
                    reason: CacheReason::FetchFailed(status()),
                },
                "cached policy (TXT id 20260102) applied: fetching the new policy failed: policy \
                 host answered HTTP 503, not 200",
            ),
            (
                Outcome::Cached {
                    policy: p,
                    reason: CacheReason::RetryLater { retry_at },
                },
                "cached policy (TXT id 20260102) applied: the new policy failed recently and is \
                 not fetched again before 2026-01-02T00:05:00Z",
            ),
            (
                Outcome::NoPolicy(NoPolicyReason::Disabled),
                "no policy: MTA-STS is disabled for this domain",
            ),
            (
                Outcome::NoPolicy(NoPolicyReason::AddressLiteral),
                "no policy: an address literal has no policy",
            ),
            (
                Outcome::NoPolicy(NoPolicyReason::InvalidDomain(PolicyDomainError::Invalid(
                    NameProblem::Empty,
                ))),
                "no policy: not a valid policy domain: the name is empty",
            ),
            (
                Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NxDomain)),
                "no policy: no _mta-sts record (NXDOMAIN)",
            ),
            (
                Outcome::NoPolicy(NoPolicyReason::FetchFailed(status())),
                "no policy: the TXT record announces a policy but the fetch failed: policy host \
                 answered HTTP 503, not 200; senders deliver as though the domain had none",
            ),
            (
                Outcome::NoPolicy(NoPolicyReason::RetryLater { retry_at }),
                "no policy: the policy fetch failed recently and is not tried again before \
                 2026-01-02T00:05:00Z",
            ),
            (
                Outcome::TemporaryFailure(DnsFailure::Timeout),
                "temporary failure: DNS lookup timed out",
            ),
        ];
        for (outcome, text) in cases {
            assert_eq!(outcome.to_string(), text, "{outcome:?}");
        }
    }
}
