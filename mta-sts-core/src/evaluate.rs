//! Delivery decisions: what a policy means for each candidate MX host (RFC 8461 §4, §5).

use crate::config::{DnsTempFailure, DomainSettings, StsUsage};
use crate::dane::{DaneState, HostCoverage, Precedence, Tlsa};
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
    /// The shared policy store could not be asked and the sender defers then
    /// ([`Outcome::StoreUnavailable`]).
    StoreUnavailable,
    /// The destination's DANE state is indeterminate (a DNSSEC answer that would decide it
    /// failed or was bogus): MTA-STS must not decide instead (RFC 8461 §2, D7).
    DaneIndeterminate,
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

/// Which mechanism decides the delivery to one candidate MX host (D8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CandidateDane<'a> {
    /// DANE covers the host with these usable TLSA records: deliver only over STARTTLS with a
    /// certificate that matches one of them (RFC 7672 §3); MTA-STS is not applied to it.
    Dane(&'a [Tlsa]),
    /// The host publishes TLSA records, none usable, and no MTA-STS policy applies: STARTTLS is
    /// required, without authentication (RFC 7672 §2.2).
    TlsRequired,
    /// MTA-STS decides: the candidate's [`MxDecision`] applies.
    Sts,
    /// Neither DANE nor MTA-STS constrains the host ([`MxDecision::NoConstraint`]).
    None,
    /// The destination's DANE state is indeterminate: do not deliver now.
    Defer,
}

/// What a candidate's DANE decision holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DaneSlot {
    Dane(Vec<Tlsa>),
    TlsRequired,
    Sts,
    None,
    Defer,
}

/// One candidate MX host, what MTA-STS requires of it and which mechanism decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    host: String,
    decision: MxDecision,
    dane: DaneSlot,
}

impl Candidate {
    /// The MX host name, as given.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// What MTA-STS requires of it. When [`Candidate::dane`] is not [`CandidateDane::Sts`] or
    /// [`CandidateDane::None`], DANE decides instead and this is only informative.
    pub fn decision(&self) -> MxDecision {
        self.decision
    }

    /// Which mechanism decides the delivery to this host: DANE (with its TLSA records), TLS
    /// without authentication, MTA-STS, nothing, or defer. Without a DANE state
    /// ([`Evaluation::new`]) it is [`CandidateDane::Sts`], or [`CandidateDane::None`] when the
    /// decision is [`MxDecision::NoConstraint`].
    pub fn dane(&self) -> CandidateDane<'_> {
        match &self.dane {
            DaneSlot::Dane(t) => CandidateDane::Dane(t),
            DaneSlot::TlsRequired => CandidateDane::TlsRequired,
            DaneSlot::Sts => CandidateDane::Sts,
            DaneSlot::None => CandidateDane::None,
            DaneSlot::Defer => CandidateDane::Defer,
        }
    }

    /// Whether a delivery attempt to this host is allowed by whichever mechanism decides.
    fn may_attempt(&self) -> bool {
        match self.dane {
            DaneSlot::Dane(_) | DaneSlot::TlsRequired => true,
            DaneSlot::Defer => false,
            DaneSlot::Sts | DaneSlot::None => self.decision.may_attempt(),
        }
    }
}

/// The candidate's slot when MTA-STS decides.
fn sts_slot(decision: MxDecision) -> DaneSlot {
    if decision == MxDecision::NoConstraint {
        DaneSlot::None
    } else {
        DaneSlot::Sts
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
    dane: Option<DaneState>,
    precedence: Precedence,
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
        Self::build(outcome, None, settings, mx_hosts)
    }

    /// [`Evaluation::new`] under the destination's DANE state (D7, D8): DANE decides for the
    /// hosts it covers with usable TLSA records, an indeterminate state defers the delivery
    /// ([`DeferReason::DaneIndeterminate`]), and an absent state changes nothing.
    ///
    /// The verdict: [`Precedence::Defer`] defers; [`Precedence::DaneOnly`] delivers (MTA-STS,
    /// its configuration and its outcome are not applied); otherwise the MTA-STS verdict holds,
    /// except that [`Verdict::DeferRecheckPolicy`] is not given while a host DANE covers may be
    /// attempted.
    ///
    /// ```
    /// use mta_sts_core::{
    ///     CandidateDane, DaneState, DomainSettings, Evaluation, NoPolicyReason, Outcome,
    ///     Precedence, Verdict,
    /// };
    ///
    /// // A state decided elsewhere, e.g. by an embedder's own DNSSEC lookups: indeterminate.
    /// let state = DaneState::Indeterminate(mta_sts_core::DaneIndeterminate::Failed {
    ///     name: "_25._tcp.mx.example.com".into(),
    ///     rtype: mta_sts_core::io::DnssecType::Tlsa,
    ///     failure: mta_sts_core::io::DnsFailure::Timeout,
    /// });
    /// let outcome = Outcome::NoPolicy(NoPolicyReason::Disabled);
    /// let e = Evaluation::with_dane(&outcome, &state, &DomainSettings::default(), ["mx.example.com"]);
    /// assert_eq!(e.precedence(), Precedence::Defer);
    /// assert!(matches!(e.verdict(), Verdict::Defer(_)));
    /// assert_eq!(e.candidates()[0].dane(), CandidateDane::Defer);
    /// ```
    pub fn with_dane<I>(
        outcome: &Outcome,
        dane: &DaneState,
        settings: &DomainSettings,
        mx_hosts: I,
    ) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::build(outcome, Some(dane), settings, mx_hosts)
    }

    fn build<I>(
        outcome: &Outcome,
        dane: Option<&DaneState>,
        settings: &DomainSettings,
        mx_hosts: I,
    ) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let policy = match settings.usage {
            StsUsage::Disable => None,
            StsUsage::Optional | StsUsage::Require => outcome.policy(),
        };
        let mode = policy.map(|p| p.mode());
        let active = mode.filter(|m| *m != Mode::None);
        let precedence = dane.map_or(Precedence::Sts, |d| d.precedence_with(active));
        let candidates: Vec<Candidate> = mx_hosts
            .into_iter()
            .map(|host| {
                let host = host.as_ref();
                let decision =
                    policy.map_or(MxDecision::NoConstraint, |p| p.policy().check_mx(host));
                let dane = match dane {
                    None => sts_slot(decision),
                    Some(DaneState::Indeterminate(_)) => DaneSlot::Defer,
                    Some(state) => match state.host(host).map(|h| h.coverage()) {
                        Some(HostCoverage::Usable(t)) => DaneSlot::Dane(t.clone()),
                        // TLS is mandatory (RFC 7672 §2.2): only `enforce` requires it too.
                        Some(HostCoverage::Unusable(_)) if active != Some(Mode::Enforce) => {
                            DaneSlot::TlsRequired
                        }
                        _ => sts_slot(decision),
                    },
                };
                Candidate {
                    host: host.to_owned(),
                    decision,
                    dane,
                }
            })
            .collect();
        let verdict = if precedence == Precedence::Defer {
            Verdict::Defer(DeferReason::DaneIndeterminate)
        } else if precedence == Precedence::DaneOnly {
            Verdict::Deliver
        } else if matches!(outcome, Outcome::Internal(_)) {
            Verdict::Defer(DeferReason::Internal)
        } else if matches!(outcome, Outcome::StoreUnavailable(_)) {
            Verdict::Defer(DeferReason::StoreUnavailable)
        } else if settings.usage == StsUsage::Require && active.is_none() {
            Verdict::Defer(DeferReason::PolicyRequired)
        } else if policy.is_none()
            && settings.usage != StsUsage::Disable
            && matches!(outcome, Outcome::TemporaryFailure(_))
            && settings.dns_temp_failure == DnsTempFailure::Defer
        {
            Verdict::Defer(DeferReason::DnsTemporaryFailure)
        } else if active == Some(Mode::Enforce) && !candidates.iter().any(Candidate::may_attempt) {
            Verdict::DeferRecheckPolicy
        } else {
            Verdict::Deliver
        };
        Self {
            outcome: outcome.clone(),
            mode,
            verdict,
            candidates,
            dane: dane.cloned(),
            precedence,
        }
    }

    /// The DANE state this evaluation was made under ([`Evaluation::with_dane`]), if any.
    pub fn dane(&self) -> Option<&DaneState> {
        self.dane.as_ref()
    }

    /// What decides the delivery: [`Precedence::Sts`] without a DANE state or when it is absent
    /// (D7).
    pub fn precedence(&self) -> Precedence {
        self.precedence
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
        if self.precedence == Precedence::DaneOnly {
            return WhenAllFail::Usual;
        }
        match self.mode {
            Some(Mode::Enforce) => WhenAllFail::RecheckPolicy,
            _ => WhenAllFail::Usual,
        }
    }
}
