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
}

impl Outcome {
    /// The policy to apply, if any (of any mode, including `none`).
    pub fn policy(&self) -> Option<&CachedPolicy> {
        match self {
            Self::Fetched(p) | Self::Cached { policy: p, .. } => Some(p),
            Self::NoPolicy(_) | Self::TemporaryFailure(_) | Self::Internal(_) => None,
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
