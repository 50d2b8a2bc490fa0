//! Delivery decisions: what a policy means for each candidate MX host (RFC 8461 §4, §5).

use crate::config::{DnsTempFailure, DomainSettings, StsUsage};
use crate::outcome::Outcome;
use crate::policy::{Mode, Policy};

/// What MTA-STS requires of one candidate MX host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MxDecision {
    /// `enforce`, the host matches: deliver only over STARTTLS (TLS 1.2 or newer) with a PKIX
    /// certificate valid for the MX host name (R29, R34). If that fails, treat the host as
    /// unreachable and try the next one (R36, R40).
    Enforce,
    /// `testing`: deliver as though there were no MTA-STS failure (R37), but validate STARTTLS
    /// and the certificate against the MX host name and report any failure (TLSRPT).
    /// `host_matches: false` is itself a report-worthy failure (`validation-failure`).
    Testing {
        /// Whether the host matches the policy's `mx` patterns.
        host_matches: bool,
    },
    /// `enforce`, the host does not match the policy: do not deliver to it; treat it as
    /// unreachable and go on with the next one (R36, R40).
    Skip,
    /// No MTA-STS constraint: mode `none`, no policy, or MTA-STS not used (R38).
    NoConstraint,
}

impl MxDecision {
    /// Whether a delivery attempt to this host is allowed at all.
    pub fn may_attempt(self) -> bool {
        !matches!(self, Self::Skip)
    }

    /// Whether delivery requires STARTTLS with a certificate valid for the MX host name; a TLS
    /// failure then means "treat as unreachable", never "deliver in clear".
    pub fn requires_valid_tls(self) -> bool {
        matches!(self, Self::Enforce)
    }

    /// Whether TLS problems with this host are to be reported (TLSRPT): `enforce` and `testing`.
    pub fn reports_failures(self) -> bool {
        matches!(self, Self::Enforce | Self::Testing { .. })
    }
}

impl Policy {
    /// What this policy requires of the MX host `host` (the MX record's name, R30): matching is
    /// case-insensitive, ignores a root dot and never matches an IP address (R31, R32).
    ///
    /// ```
    /// use mta_sts_core::{MxDecision, Policy};
    ///
    /// let policy = Policy::parse("version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 86400\n")?;
    /// assert_eq!(policy.check_mx("mx1.example.com"), MxDecision::Enforce);
    /// assert_eq!(policy.check_mx("mx1.example.net"), MxDecision::Skip);
    /// # Ok::<(), mta_sts_core::PolicyError>(())
    /// ```
    pub fn check_mx(&self, host: &str) -> MxDecision {
        match self.mode() {
            Mode::None => MxDecision::NoConstraint,
            Mode::Testing => MxDecision::Testing {
                host_matches: self.matches_mx(host),
            },
            Mode::Enforce if self.matches_mx(host) => MxDecision::Enforce,
            Mode::Enforce => MxDecision::Skip,
        }
    }
}

/// The overall decision for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// Try the candidates in priority order, obeying each one's [`MxDecision`].
    Deliver,
    /// `enforce` and no candidate may be attempted: defer (a temporary failure), never bounce.
    /// Before any permanent failure the TXT id must be re-checked
    /// ([`PolicyCache::begin_recheck`](crate::PolicyCache::begin_recheck)): a new id is fetched
    /// and delivery retried; an unchanged id means the message stays queued under the usual
    /// RFC 5321 §4.5.4.1 rules (R39).
    DeferRecheckPolicy,
    /// Defer (a temporary failure) because of the sender's configuration.
    Defer(DeferReason),
}

/// Why the configuration defers a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeferReason {
    /// [`StsUsage::Require`] and no policy in mode `enforce` or `testing`.
    PolicyRequired,
    /// A temporary DNS failure without a cached policy, with [`DnsTempFailure::Defer`].
    DnsTemporaryFailure,
    /// The lookup failed inside the adapter ([`Outcome::Internal`]): nothing is known.
    Internal,
}

/// What to do when every allowed candidate was attempted and none accepted the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WhenAllFail {
    /// `enforce`: never bounce before re-checking the TXT id (R39); see
    /// [`Verdict::DeferRecheckPolicy`].
    RecheckPolicy,
    /// The usual RFC 5321 rules for temporary failures.
    Usual,
}

/// One candidate MX host and what MTA-STS requires of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    host: String,
    decision: MxDecision,
}

impl Candidate {
    /// The MX host name, as given.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// What MTA-STS requires of it.
    pub fn decision(&self) -> MxDecision {
        self.decision
    }
}

/// The delivery decision for one message to one policy domain: a verdict and, for each candidate
/// MX host in the priority order given, what MTA-STS requires of it.
///
/// The candidates are never filtered in a separate pass (R40, §8.4): a host that may not be used
/// stays in place as [`MxDecision::Skip`], to be treated as unreachable when its turn comes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Evaluation {
    outcome: Outcome,
    mode: Option<Mode>,
    verdict: Verdict,
    candidates: Vec<Candidate>,
}

impl Evaluation {
    /// Evaluates an outcome for the MX hosts of the domain, in priority order (with no MX
    /// records, pass the domain itself: the implicit MX, R33). The hosts may be given as `&str`,
    /// `String` or anything else that is `AsRef<str>`, e.g. a `&[String]` or a `Vec<String>`.
    pub fn new<I>(outcome: &Outcome, settings: &DomainSettings, mx_hosts: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let policy = match settings.usage {
            StsUsage::Disable => None,
            StsUsage::Optional | StsUsage::Require => outcome.policy(),
        };
        let mode = policy.map(|p| p.mode());
        let candidates: Vec<Candidate> = mx_hosts
            .into_iter()
            .map(|host| {
                let host = host.as_ref();
                Candidate {
                    host: host.to_owned(),
                    decision: policy
                        .map_or(MxDecision::NoConstraint, |p| p.policy().check_mx(host)),
                }
            })
            .collect();
        let active = mode.filter(|m| *m != Mode::None);
        let verdict = if matches!(outcome, Outcome::Internal(_)) {
            Verdict::Defer(DeferReason::Internal)
        } else if settings.usage == StsUsage::Require && active.is_none() {
            Verdict::Defer(DeferReason::PolicyRequired)
        } else if policy.is_none()
            && settings.usage != StsUsage::Disable
            && matches!(outcome, Outcome::TemporaryFailure(_))
            && settings.dns_temp_failure == DnsTempFailure::Defer
        {
            Verdict::Defer(DeferReason::DnsTemporaryFailure)
        } else if active == Some(Mode::Enforce)
            && !candidates.iter().any(|c| c.decision.may_attempt())
        {
            Verdict::DeferRecheckPolicy
        } else {
            Verdict::Deliver
        };
        Self {
            outcome: outcome.clone(),
            mode,
            verdict,
            candidates,
        }
    }

    /// The policy outcome this evaluation was made from (cached, fetched, none, temporary
    /// failure, and why): what an MTA logs, reports (TLSRPT) or shows beside the decision.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The overall decision.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// The mode of the policy applied, if any (`Some(Mode::None)` for a `none` policy).
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }

    /// The candidates, in the priority order given.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// What to do if every allowed candidate fails (e.g. no valid TLS on any matching host).
    pub fn when_all_fail(&self) -> WhenAllFail {
        match self.mode {
            Some(Mode::Enforce) => WhenAllFail::RecheckPolicy,
            _ => WhenAllFail::Usual,
        }
    }
}
