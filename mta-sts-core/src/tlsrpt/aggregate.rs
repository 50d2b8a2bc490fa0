//! The aggregator of RFC 8460 §4.4: sessions counted per policy domain, policy and UTC day,
//! closed into one report per policy domain and day.
//!
//! What a sending MTA saw becomes a [`Session`]: when, under which policy ([`SessionPolicy`]),
//! and whether TLS succeeded or how it failed ([`Failure`], with its RFC 8460 §4.3
//! [`ResultType`]). The mappings from what the engine knows are here:
//!
//! - a lookup outcome: [`Session::from_outcome`] (RFC 8461 §6, R47: a failed fetch while a
//!   valid TXT record exists or a policy is cached, unless mode `none`);
//! - a TLS failure to an MX: [`TlsFailure`] → [`Failure::from_tls`], with the certificate table
//!   of [`CertificateProblem`];
//! - a policy fetch problem: [`ResultType::for_fetch_problem`].
//!
//! The [`Aggregator`] keeps the counts in bounded memory ([`AggregatorLimits`]; what the caps
//! drop is counted in [`Dropped`]), survives restarts ([`AggregateSnapshot`]), and closes each
//! UTC day into [`DayReport`]s once the time passed in has reached its end.
//!
//! Sessions under an MTA-STS policy in mode `none` are not reported (RFC 8461 §6): the caller
//! does not record them ([`Session::from_outcome`] already gives nothing for them). Nor is the
//! delivery of a report ever recorded into a report.

use core::fmt;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::model::{
    DateRange, FailureDetail, PolicyDescription, PolicyReport, PolicyType, Report, ResultType,
    Summary,
};
use super::output::{DAY, DayReport, fnv1a, format_datetime};
use crate::dane::Tlsa;
use crate::io::{CertificateProblem, FetchFailure};
use crate::outcome::{FetchProblem, Outcome};
use crate::policy::Policy;
use crate::policy_domain::{PolicyDomain, PolicyDomainError};
use crate::snapshot::MAX_LISTED_PROBLEMS;
use crate::time::UnixTime;

/// The longest text kept in a failure detail field (host names, HELO, reason code, URI), in
/// bytes; longer ones are cut at a character boundary.
pub const MAX_DETAIL_TEXT: usize = 512;
/// The most bytes of `policy-string` and `mx-host` entries kept per policy, together; the
/// entries beyond are left out (a policy body may be 64 KiB; reports need not carry all of it).
pub const MAX_POLICY_TEXT: usize = 16 * 1024;
/// The first second of the year 10000, which RFC 3339 cannot write: sessions from the day
/// before on are not counted.
const YEAR_10000: u64 = 253_402_300_800;

/// Who writes the reports (RFC 8460 §4.4 `organization-name`, `contact-info`; §5.1 sender).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reporter {
    /// `organization-name`, e.g. `Example Mail Inc.`.
    pub organization_name: String,
    /// `contact-info`: an address for questions about the reports (RFC 5322 addr-spec).
    pub contact_info: String,
    /// The submitter: the domain of the sending MTA, in A-labels (first part of the §5.1 file
    /// name, `TLS-Report-Submitter`, and the right side of the `report-id`). It should be the
    /// domain of `contact-info` (RFC 8460 §5.3).
    pub submitter: String,
}

impl Reporter {
    /// A reporter with these names.
    pub fn new(
        organization_name: impl Into<String>,
        contact_info: impl Into<String>,
        submitter: impl Into<String>,
    ) -> Self {
        Self {
            organization_name: organization_name.into(),
            contact_info: contact_info.into(),
            submitter: submitter.into(),
        }
    }
}

/// The policy a session was evaluated under (RFC 8460 §4.4 `policy`).
///
/// Sessions are counted apart per policy: two sessions of one domain under two versions of its
/// MTA-STS policy are two entries of that day's `policies`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct SessionPolicy {
    /// `policy-type`.
    pub policy_type: PolicyType,
    /// `policy-domain`, normalised to lowercase A-labels when recorded.
    pub policy_domain: String,
    /// `policy-string`: the policy's lines, or one string per TLSA record.
    pub policy_string: Vec<String>,
    /// `mx-host`: the MTA-STS policy's MX patterns (for TLSA: the MX host, if the caller sets it).
    pub mx_host: Vec<String>,
}

impl SessionPolicy {
    /// A policy of any type, with its strings as given (e.g. read from an MTA's log).
    pub fn new(
        policy_type: PolicyType,
        policy_domain: impl Into<String>,
        policy_string: Vec<String>,
        mx_host: Vec<String>,
    ) -> Self {
        Self {
            policy_type,
            policy_domain: policy_domain.into(),
            policy_string,
            mx_host,
        }
    }

    /// An MTA-STS policy: `policy-string` its lines in the canonical form of [`Policy`]'s
    /// `Display` (RFC 8460 §4.5: one `mx:` line per pattern), `mx-host` its patterns.
    ///
    /// ```
    /// use mta_sts_core::Policy;
    /// use mta_sts_core::tlsrpt::SessionPolicy;
    ///
    /// let policy = Policy::parse("version: STSv1\nmode: testing\nmx: *.example.com\nmax_age: 86400\n")?;
    /// let p = SessionPolicy::sts("example.com", &policy);
    /// assert_eq!(p.policy_string, ["version: STSv1", "mode: testing", "mx: *.example.com", "max_age: 86400"]);
    /// assert_eq!(p.mx_host, ["*.example.com"]);
    /// # Ok::<(), mta_sts_core::PolicyError>(())
    /// ```
    pub fn sts(policy_domain: &str, policy: &Policy) -> Self {
        let text = policy.to_string();
        Self {
            policy_type: PolicyType::Sts,
            policy_domain: policy_domain.to_owned(),
            policy_string: text
                .split("\r\n")
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
            mx_host: policy.mx().iter().map(|p| p.as_str().to_owned()).collect(),
        }
    }

    /// DANE TLSA records: `policy-string` one `usage selector matching-type hex` string per
    /// record (RFC 8460 §4.5; lowercase hex), `mx-host` empty (set it to the MX host if wanted).
    ///
    /// ```
    /// use mta_sts_core::Tlsa;
    /// use mta_sts_core::tlsrpt::SessionPolicy;
    ///
    /// let p = SessionPolicy::tlsa("example.com", &[Tlsa::new(3, 1, 1, vec![0xab; 32])]);
    /// assert_eq!(p.policy_string, [format!("3 1 1 {}", "ab".repeat(32))]);
    /// ```
    pub fn tlsa(policy_domain: &str, records: &[Tlsa]) -> Self {
        Self {
            policy_type: PolicyType::Tlsa,
            policy_domain: policy_domain.to_owned(),
            policy_string: records.iter().map(Tlsa::to_string).collect(),
            mx_host: Vec::new(),
        }
    }

    /// Neither MTA-STS nor DANE applied: `no-policy-found`.
    pub fn no_policy_found(policy_domain: &str) -> Self {
        Self {
            policy_type: PolicyType::NoPolicyFound,
            policy_domain: policy_domain.to_owned(),
            policy_string: Vec::new(),
            mx_host: Vec::new(),
        }
    }

    /// The policy as kept: the domain normalised, the strings within [`MAX_POLICY_TEXT`].
    /// Borrowed when it already is.
    fn normalised(&self, domain: &str) -> Cow<'_, Self> {
        let total: usize = self
            .policy_string
            .iter()
            .chain(&self.mx_host)
            .map(String::len)
            .sum();
        if self.policy_domain == domain && total <= MAX_POLICY_TEXT {
            return Cow::Borrowed(self);
        }
        let mut budget = MAX_POLICY_TEXT;
        let mut keep = |v: &[String]| -> Vec<String> {
            v.iter()
                .take_while(|s| {
                    let fits = s.len() <= budget;
                    budget = budget.saturating_sub(s.len());
                    fits
                })
                .cloned()
                .collect()
        };
        let policy_string = keep(&self.policy_string);
        let mx_host = keep(&self.mx_host);
        Cow::Owned(Self {
            policy_type: self.policy_type,
            policy_domain: domain.to_owned(),
            policy_string,
            mx_host,
        })
    }

    fn description(&self) -> PolicyDescription {
        PolicyDescription {
            policy_type: self.policy_type.as_str().to_owned(),
            policy_string: self.policy_string.clone(),
            policy_domain: self.policy_domain.clone(),
            mx_host: self.mx_host.clone(),
        }
    }
}

/// A failed session: the result type and what is known of the connection (RFC 8460 §4.4
/// `failure-details`). Failures with equal fields are counted together.
///
/// ```
/// use mta_sts_core::io::CertificateProblem;
/// use mta_sts_core::tlsrpt::{Failure, ResultType, TlsFailure};
///
/// let f = Failure::from_tls(&TlsFailure::Certificate(CertificateProblem::Expired))
///     .with_receiving_mx_hostname("mx1.example.com")
///     .with_receiving_ip("192.0.2.25".parse().unwrap());
/// assert_eq!(f.result_type, ResultType::CertificateExpired);
/// assert_eq!(f.failure_reason_code, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct Failure {
    /// `result-type`.
    pub result_type: ResultType,
    /// `sending-mta-ip`: the sending MTA's address.
    pub sending_mta_ip: Option<IpAddr>,
    /// `receiving-mx-hostname`: the MX host connected to.
    pub receiving_mx_hostname: Option<String>,
    /// `receiving-mx-helo`: the name in the MX's greeting or EHLO answer.
    pub receiving_mx_helo: Option<String>,
    /// `receiving-ip`: the MX address connected to.
    pub receiving_ip: Option<IpAddr>,
    /// `failure-reason-code`: the TLS library's error code or text.
    pub failure_reason_code: Option<String>,
    /// `additional-information`: a URI with more about the failure.
    pub additional_information: Option<String>,
}

impl Failure {
    /// A failure of this type, nothing else known.
    pub fn new(result_type: ResultType) -> Self {
        Self {
            result_type,
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_mx_helo: None,
            receiving_ip: None,
            failure_reason_code: None,
            additional_information: None,
        }
    }

    /// The failure a TLS failure to an MX is ([`ResultType::for_tls_failure`]), with a
    /// `failure-reason-code` where RFC 8460 §4.3 asks for one: for `certificate-not-trusted`
    /// and `validation-failure` (the [`CertificateProblem`] as `unknown-issuer`,
    /// `certificate-not-yet-valid`, `no-certificate`, or the text of `Other`).
    pub fn from_tls(failure: &TlsFailure) -> Self {
        let reason = match failure {
            TlsFailure::Certificate(p) => match p {
                CertificateProblem::UnknownIssuer => Some("unknown-issuer".to_owned()),
                CertificateProblem::NotYetValid => Some("certificate-not-yet-valid".to_owned()),
                CertificateProblem::NoCertificate => Some("no-certificate".to_owned()),
                CertificateProblem::Other(text) => Some(text.clone()),
                CertificateProblem::Expired | CertificateProblem::NameMismatch => None,
            },
            TlsFailure::Other(text) => Some(text.clone()),
            TlsFailure::StarttlsNotSupported
            | TlsFailure::TlsaInvalid
            | TlsFailure::DnssecInvalid
            | TlsFailure::DaneRequired => None,
        };
        Self {
            failure_reason_code: reason,
            ..Self::new(ResultType::for_tls_failure(failure))
        }
    }

    /// Sets `sending-mta-ip`.
    #[must_use]
    pub fn with_sending_mta_ip(mut self, ip: IpAddr) -> Self {
        self.sending_mta_ip = Some(ip);
        self
    }

    /// Sets `receiving-mx-hostname`.
    #[must_use]
    pub fn with_receiving_mx_hostname(mut self, host: impl Into<String>) -> Self {
        self.receiving_mx_hostname = Some(host.into());
        self
    }

    /// Sets `receiving-mx-helo`.
    #[must_use]
    pub fn with_receiving_mx_helo(mut self, helo: impl Into<String>) -> Self {
        self.receiving_mx_helo = Some(helo.into());
        self
    }

    /// Sets `receiving-ip`.
    #[must_use]
    pub fn with_receiving_ip(mut self, ip: IpAddr) -> Self {
        self.receiving_ip = Some(ip);
        self
    }

    /// Sets `failure-reason-code`.
    #[must_use]
    pub fn with_failure_reason_code(mut self, code: impl Into<String>) -> Self {
        self.failure_reason_code = Some(code.into());
        self
    }

    /// Sets `additional-information`.
    #[must_use]
    pub fn with_additional_information(mut self, uri: impl Into<String>) -> Self {
        self.additional_information = Some(uri.into());
        self
    }

    /// The failure as kept: texts within [`MAX_DETAIL_TEXT`]. Borrowed when it already is.
    fn normalised(&self) -> Cow<'_, Self> {
        let long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_DETAIL_TEXT);
        if !(long(&self.receiving_mx_hostname)
            || long(&self.receiving_mx_helo)
            || long(&self.failure_reason_code)
            || long(&self.additional_information))
        {
            return Cow::Borrowed(self);
        }
        let cut = |s: &Option<String>| {
            s.as_deref()
                .map(|s| truncate(s, MAX_DETAIL_TEXT).to_owned())
        };
        Cow::Owned(Self {
            receiving_mx_hostname: cut(&self.receiving_mx_hostname),
            receiving_mx_helo: cut(&self.receiving_mx_helo),
            failure_reason_code: cut(&self.failure_reason_code),
            additional_information: cut(&self.additional_information),
            ..self.clone()
        })
    }

    fn detail(&self, count: u64) -> FailureDetail {
        FailureDetail {
            result_type: self.result_type.as_str().to_owned(),
            sending_mta_ip: self.sending_mta_ip.map(|ip| ip.to_string()),
            receiving_mx_hostname: self.receiving_mx_hostname.clone(),
            receiving_mx_helo: self.receiving_mx_helo.clone(),
            receiving_ip: self.receiving_ip.map(|ip| ip.to_string()),
            failed_session_count: count,
            additional_information: self.additional_information.clone(),
            failure_reason_code: self.failure_reason_code.clone(),
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What went wrong on the TLS connection to an MX (the MTA's side), for [`Failure::from_tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The MX did not offer STARTTLS: `starttls-not-supported`.
    StarttlsNotSupported,
    /// The MX's certificate was refused by PKIX validation (see [`CertificateProblem`]'s table).
    Certificate(CertificateProblem),
    /// DANE: no TLSA record of the RRset matched the certificate: `tlsa-invalid`.
    TlsaInvalid,
    /// DANE: the resolver returned no valid (DNSSEC-validated) records: `dnssec-invalid`.
    DnssecInvalid,
    /// DANE was required but the MX host has no validated TLSA records: `dane-required`.
    DaneRequired,
    /// Any other failure (a TLS alert, a protocol version), described by the TLS library:
    /// `validation-failure` with this text as `failure-reason-code`.
    Other(String),
}

impl ResultType {
    /// The result type of an MX certificate refused by PKIX validation: the table in
    /// [`CertificateProblem`]'s documentation.
    ///
    /// ```
    /// use mta_sts_core::io::CertificateProblem;
    /// use mta_sts_core::tlsrpt::ResultType;
    ///
    /// assert_eq!(ResultType::for_certificate(&CertificateProblem::Expired), ResultType::CertificateExpired);
    /// ```
    pub fn for_certificate(problem: &CertificateProblem) -> Self {
        match problem {
            CertificateProblem::Expired => Self::CertificateExpired,
            CertificateProblem::NameMismatch => Self::CertificateHostMismatch,
            CertificateProblem::UnknownIssuer | CertificateProblem::Other(_) => {
                Self::CertificateNotTrusted
            }
            CertificateProblem::NotYetValid | CertificateProblem::NoCertificate => {
                Self::ValidationFailure
            }
        }
    }

    /// The result type of a failed policy fetch (RFC 8460 §4.3.2.2): `sts-webpki-invalid` for
    /// a certificate problem of the policy host, `sts-policy-invalid` for a body that is not a
    /// valid policy, `sts-policy-fetch-error` for every other failure.
    pub fn for_fetch_problem(problem: &FetchProblem) -> Self {
        match problem {
            FetchProblem::Fetch(FetchFailure::Certificate(_)) => Self::StsWebpkiInvalid,
            FetchProblem::Fetch(_) => Self::StsPolicyFetchError,
            FetchProblem::Invalid(_) => Self::StsPolicyInvalid,
        }
    }

    /// The result type of a TLS failure to an MX (RFC 8460 §4.3.1, §4.3.2.1).
    pub fn for_tls_failure(failure: &TlsFailure) -> Self {
        match failure {
            TlsFailure::StarttlsNotSupported => Self::StarttlsNotSupported,
            TlsFailure::Certificate(p) => Self::for_certificate(p),
            TlsFailure::TlsaInvalid => Self::TlsaInvalid,
            TlsFailure::DnssecInvalid => Self::DnssecInvalid,
            TlsFailure::DaneRequired => Self::DaneRequired,
            TlsFailure::Other(_) => Self::ValidationFailure,
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionResult {
    /// TLS was negotiated as the policy requires: counted in
    /// `total-successful-session-count`.
    Success,
    /// It failed: counted in `total-failure-session-count` and in `failure-details`.
    Failure(Failure),
}

/// One session (a delivery attempt to one MX, or a policy fetch) to report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Session {
    /// When it happened: decides the UTC day it is reported in.
    pub time: UnixTime,
    /// The policy it was evaluated under.
    pub policy: SessionPolicy,
    /// How it ended.
    pub result: SessionResult,
}

impl Session {
    /// A session.
    pub fn new(time: UnixTime, policy: SessionPolicy, result: SessionResult) -> Self {
        Self {
            time,
            policy,
            result,
        }
    }

    /// The session-independent failure a lookup outcome implies (RFC 8461 §6, R47), if any:
    /// a failed fetch while a valid TXT record exists, or while a policy (not of mode `none`)
    /// is cached ([`Outcome::fetch_problem`]). Its result type is
    /// [`ResultType::for_fetch_problem`], its `failure-reason-code` the problem's text.
    ///
    /// The policy is the cached one when there is one (`sts`, its lines and patterns), else an
    /// `sts` policy without `policy-string`: the domain announces MTA-STS, and no policy could
    /// be had. Every other outcome (a policy fetched or cached without trouble, no record, a
    /// DNS failure) gives `None`.
    ///
    /// ```
    /// use mta_sts_core::io::{CertificateProblem, FetchFailure};
    /// use mta_sts_core::tlsrpt::{ResultType, Session, SessionResult};
    /// use mta_sts_core::{FetchProblem, NoPolicyReason, Outcome, UnixTime};
    ///
    /// let failure = FetchFailure::Certificate(CertificateProblem::Expired);
    /// let outcome = Outcome::NoPolicy(NoPolicyReason::FetchFailed(FetchProblem::Fetch(failure)));
    /// let session = Session::from_outcome("example.com", &outcome, UnixTime::from_secs(0)).unwrap();
    /// let SessionResult::Failure(f) = &session.result else { unreachable!() };
    /// assert_eq!(f.result_type, ResultType::StsWebpkiInvalid);
    /// ```
    pub fn from_outcome(policy_domain: &str, outcome: &Outcome, now: UnixTime) -> Option<Self> {
        let problem = outcome.fetch_problem()?;
        let policy = match outcome.policy() {
            Some(cached) => SessionPolicy::sts(policy_domain, cached.policy()),
            None => SessionPolicy::new(PolicyType::Sts, policy_domain, Vec::new(), Vec::new()),
        };
        let failure = Failure::new(ResultType::for_fetch_problem(problem))
            .with_failure_reason_code(problem.to_string());
        Some(Self::new(now, policy, SessionResult::Failure(failure)))
    }
}

/// The caps of an [`Aggregator`]. What they drop is counted in [`Dropped`].
///
/// Memory is bounded by `max_domains` entries (a policy domain in a day), each with at most
/// `max_policies_per_domain` policies of at most [`MAX_POLICY_TEXT`] bytes of strings, and by
/// `max_details` failure details of at most four [`MAX_DETAIL_TEXT`]-byte texts in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AggregatorLimits {
    /// The most (policy domain, UTC day) entries held, over all open days (default 10 000).
    /// A session of another domain is dropped ([`Recorded::DroppedDomain`]).
    pub max_domains: usize,
    /// The most distinct policies per domain and day (default 8); a session under another
    /// is dropped ([`Recorded::DroppedPolicy`]).
    pub max_policies_per_domain: usize,
    /// The most distinct failure details per domain and day, over its policies (default
    /// 1 000); a failure of another is counted in the summary without its detail
    /// ([`Recorded::DroppedDetail`]).
    pub max_details_per_domain: usize,
    /// The most distinct failure details held in all (default 100 000), alike.
    pub max_details: usize,
    /// The most UTC days open at once (default 3: yesterday, today, and a clock ahead); a
    /// session of another day is dropped ([`Recorded::DroppedDay`]).
    pub max_days: usize,
}

impl Default for AggregatorLimits {
    fn default() -> Self {
        Self {
            max_domains: 10_000,
            max_policies_per_domain: 8,
            max_details_per_domain: 1_000,
            max_details: 100_000,
            max_days: 3,
        }
    }
}

/// What [`Aggregator::record`] did with a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum Recorded {
    /// Counted, with its failure detail if it failed.
    Counted,
    /// Not counted: [`AggregatorLimits::max_domains`] entries are held and its domain is not
    /// among them for that day.
    DroppedDomain,
    /// Not counted: its domain has [`AggregatorLimits::max_policies_per_domain`] other policies
    /// that day.
    DroppedPolicy,
    /// Counted in the summary (`total-failure-session-count` stays exact), but its failure
    /// detail is new and a detail cap is reached, so the report's details add up to less.
    DroppedDetail,
    /// Not counted: its day is already closed ([`Aggregator::close`]), or
    /// [`AggregatorLimits::max_days`] other days are open, or it lies in the year 9999's last
    /// day or later.
    DroppedDay,
    /// Not counted: the policy domain is not a valid domain name.
    InvalidDomain,
}

/// Counters of the sessions the caps dropped, since the aggregator was created (kept across
/// snapshots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Dropped {
    /// Sessions dropped by [`AggregatorLimits::max_domains`].
    pub domains: u64,
    /// Sessions dropped by [`AggregatorLimits::max_policies_per_domain`].
    pub policies: u64,
    /// Failed sessions counted without their detail (the detail caps).
    pub details: u64,
    /// Sessions dropped by [`AggregatorLimits::max_days`] or for a time beyond the year 9999.
    pub days: u64,
    /// Sessions of a day already closed.
    pub late: u64,
    /// Sessions with an invalid policy domain.
    pub invalid: u64,
}

/// The counts of one policy of a domain and day.
#[derive(Debug, Clone)]
struct PolicyCounts {
    policy: SessionPolicy,
    successful: u64,
    failed: u64,
    details: HashMap<Failure, u64>,
}

/// One policy domain in one day.
#[derive(Debug, Clone, Default)]
struct DomainDay {
    policies: Vec<PolicyCounts>,
    /// Distinct failure details over the policies.
    details: usize,
}

/// The sessions of one policy domain, policy and UTC day, counted; closed into [`DayReport`]s.
///
/// Sans-IO like the rest of the core: the time of each session and of closing is passed in.
/// Keep it behind a mutex beside the policy cache; `record` is short and allocates only for a
/// new domain, policy or failure detail.
///
/// ```
/// use mta_sts_core::io::CertificateProblem;
/// use mta_sts_core::tlsrpt::{
///     Aggregator, AggregatorLimits, Failure, Recorded, Reporter, Session, SessionPolicy,
///     SessionResult, TlsFailure,
/// };
/// use mta_sts_core::{Policy, UnixTime};
///
/// let day = 1_767_225_600; // 2026-01-01T00:00:00Z
/// let policy = Policy::parse("version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400\n")?;
/// let policy = SessionPolicy::sts("example.com", &policy);
/// let mut aggregator = Aggregator::new(AggregatorLimits::default());
///
/// let ok = Session::new(UnixTime::from_secs(day + 60), policy.clone(), SessionResult::Success);
/// assert_eq!(aggregator.record(&ok), Recorded::Counted);
/// let expired = Failure::from_tls(&TlsFailure::Certificate(CertificateProblem::Expired))
///     .with_receiving_mx_hostname("mx.example.com");
/// let failed = Session::new(UnixTime::from_secs(day + 120), policy, SessionResult::Failure(expired));
/// assert_eq!(aggregator.record(&failed), Recorded::Counted);
///
/// // The day closes at the next UTC midnight, not a second before.
/// let midnight = UnixTime::from_secs(day + 86_400);
/// assert_eq!(aggregator.next_close(), Some(midnight));
/// let reporter = Reporter::new("Example", "tlsrpt@sender.example", "sender.example");
/// assert!(aggregator.close(UnixTime::from_secs(day + 86_399), &reporter).is_empty());
/// let reports = aggregator.close(midnight, &reporter);
/// assert_eq!(reports.len(), 1);
/// let summary = reports[0].report.policies[0].summary;
/// assert_eq!((summary.total_successful_session_count, summary.total_failure_session_count), (1, 1));
/// assert!(aggregator.is_empty());
/// # Ok::<(), mta_sts_core::PolicyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Aggregator {
    limits: AggregatorLimits,
    /// Open days by day number (Unix seconds / 86400).
    days: BTreeMap<u64, HashMap<Box<str>, DomainDay>>,
    /// Days before this one are closed: their sessions are late.
    first_open_day: u64,
    /// (domain, day) entries held.
    entries: usize,
    /// Failure details held.
    details: usize,
    /// Sessions counted in what is held.
    sessions: u64,
    dropped: Dropped,
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new(limits: AggregatorLimits) -> Self {
        Self {
            limits,
            days: BTreeMap::new(),
            first_open_day: 0,
            entries: 0,
            details: 0,
            sessions: 0,
            dropped: Dropped::default(),
        }
    }

    /// The caps.
    pub fn limits(&self) -> AggregatorLimits {
        self.limits
    }

    /// Counts a session in its policy domain, policy and UTC day (from `session.time`).
    ///
    /// The caller records nothing for an MTA-STS policy in mode `none` (RFC 8461 §6), and
    /// never the delivery of a report. The policy domain is normalised (lowercase A-labels).
    pub fn record(&mut self, session: &Session) -> Recorded {
        let secs = session.time.as_secs();
        if secs >= YEAR_10000 - DAY {
            self.dropped.days += 1;
            return Recorded::DroppedDay;
        }
        let day = secs / DAY;
        if day < self.first_open_day {
            self.dropped.late += 1;
            return Recorded::DroppedDay;
        }
        let Ok(domain) = PolicyDomain::normalised(&session.policy.policy_domain) else {
            self.dropped.invalid += 1;
            return Recorded::InvalidDomain;
        };
        let policy = session.policy.normalised(&domain);
        let limits = self.limits;
        if !self.days.contains_key(&day) && self.days.len() >= limits.max_days {
            self.dropped.days += 1;
            return Recorded::DroppedDay;
        }
        let known = self
            .days
            .get(&day)
            .is_some_and(|d| d.contains_key(&*domain));
        if !known {
            if self.entries >= limits.max_domains {
                self.dropped.domains += 1;
                return Recorded::DroppedDomain;
            }
            if limits.max_policies_per_domain == 0 {
                self.dropped.policies += 1;
                return Recorded::DroppedPolicy;
            }
            let domains = self.days.entry(day).or_default();
            domains.insert(domain.as_ref().into(), DomainDay::default());
            self.entries += 1;
        }
        let Some(entry) = self.days.get_mut(&day).and_then(|d| d.get_mut(&*domain)) else {
            // Inserted just above: never taken.
            self.dropped.domains += 1;
            return Recorded::DroppedDomain;
        };
        let index = match entry.policies.iter().position(|p| p.policy == *policy) {
            Some(i) => i,
            None if entry.policies.len() >= limits.max_policies_per_domain => {
                self.dropped.policies += 1;
                return Recorded::DroppedPolicy;
            }
            None => {
                entry.policies.push(PolicyCounts {
                    policy: policy.into_owned(),
                    successful: 0,
                    failed: 0,
                    details: HashMap::new(),
                });
                entry.policies.len() - 1
            }
        };
        self.sessions += 1;
        let counts = &mut entry.policies[index];
        let failure = match &session.result {
            SessionResult::Success => {
                counts.successful = counts.successful.saturating_add(1);
                return Recorded::Counted;
            }
            SessionResult::Failure(f) => f.normalised(),
        };
        counts.failed = counts.failed.saturating_add(1);
        if let Some(n) = counts.details.get_mut(&*failure) {
            *n = n.saturating_add(1);
            return Recorded::Counted;
        }
        if entry.details >= limits.max_details_per_domain || self.details >= limits.max_details {
            self.dropped.details += 1;
            return Recorded::DroppedDetail;
        }
        counts.details.insert(failure.into_owned(), 1);
        entry.details += 1;
        self.details += 1;
        Recorded::Counted
    }

    /// Counters of what the caps dropped since the aggregator was created.
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// Closes every UTC day that ended at or before `now` (its `24:00:00Z` is `<= now`) into
    /// reports, one per policy domain and day with all that domain's policies in it, and
    /// removes them. Sessions of those days recorded later are dropped as late
    /// ([`Dropped::late`]), so that a day is reported once: an MTA whose sessions are
    /// recorded after they end closes a few minutes after midnight. Call it at every UTC
    /// midnight (or more often), also when [`Aggregator::next_close`] is `None`: the mark of
    /// the closed days is `now`'s day, taken from each call, so that a clock set back (or a
    /// damaged mark in a snapshot) reopens the days after it rather than dropping sessions.
    ///
    /// Reports come in order of day, then policy domain; policies and failure details in a
    /// canonical order, so that the same counts give the same bytes and `report-id`.
    ///
    /// The `report-id` is `<YYYY-MM-DD>_<policy-domain>_<16 hex digits>@<submitter>`: the hex
    /// digits a hash (FNV-1a) of submitter, domain, day and the policies with their counts, so
    /// that it is deterministic, and a report closed again from an older snapshot keeps its
    /// id (the receiver sees the duplicate). It has the form of a message id (RFC 5322
    /// `id-left "@" id-right`) for the Subject of RFC 8460 §5.3.
    pub fn close(&mut self, now: UnixTime, reporter: &Reporter) -> Vec<DayReport> {
        let open = now.as_secs() / DAY;
        let mut reports = Vec::new();
        while let Some(entry) = self.days.first_entry() {
            if *entry.key() >= open {
                break;
            }
            let (day, domains) = entry.remove_entry();
            let mut domains: Vec<_> = domains.into_iter().collect();
            domains.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (domain, entry) in domains {
                self.entries -= 1;
                self.details -= entry.details;
                for p in &entry.policies {
                    self.sessions -= p.successful.saturating_add(p.failed).min(self.sessions);
                }
                reports.push(day_report(day, &domain, entry, reporter));
            }
        }
        // The mark follows the clock, back as well: a mark in the future (a clock set back, a
        // damaged snapshot) would otherwise drop every session as late until that day.
        self.first_open_day = open;
        reports
    }

    /// The next UTC midnight at which [`Aggregator::close`] has a day to close, if any.
    pub fn next_close(&self) -> Option<UnixTime> {
        self.days
            .keys()
            .next()
            .map(|day| UnixTime::from_secs((day + 1) * DAY))
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// The sessions counted in what is held (not yet closed).
    pub fn sessions(&self) -> u64 {
        self.sessions
    }

    /// The (policy domain, day) entries held: at most [`AggregatorLimits::max_domains`].
    pub fn domains(&self) -> usize {
        self.entries
    }

    /// The failure details held: at most [`AggregatorLimits::max_details`].
    pub fn details(&self) -> usize {
        self.details
    }
}

/// The report of one domain and day.
fn day_report(day: u64, domain: &str, entry: DomainDay, reporter: &Reporter) -> DayReport {
    let day_start = UnixTime::from_secs(day * DAY);
    let mut policies: Vec<PolicyCounts> = entry.policies;
    policies.sort_unstable_by(|a, b| a.policy.cmp(&b.policy));
    let policies: Vec<PolicyReport> = policies
        .into_iter()
        .map(|p| {
            let mut details: Vec<(Failure, u64)> = p.details.into_iter().collect();
            details.sort_unstable();
            PolicyReport {
                policy: p.policy.description(),
                summary: Summary {
                    total_successful_session_count: p.successful,
                    total_failure_session_count: p.failed,
                },
                failure_details: details.iter().map(|(f, n)| f.detail(*n)).collect(),
            }
        })
        .collect();
    let date = format_datetime(day_start);
    let date = date.get(..10).unwrap_or(&date);
    let digest = fnv1a(&[
        reporter.submitter.as_bytes(),
        domain.as_bytes(),
        date.as_bytes(),
        &serde_json::to_vec(&policies).unwrap_or_default(),
    ]);
    let report = Report {
        organization_name: reporter.organization_name.clone(),
        date_range: DateRange {
            start_datetime: format_datetime(day_start),
            end_datetime: format_datetime(UnixTime::from_secs(day * DAY + DAY - 1)),
        },
        contact_info: reporter.contact_info.clone(),
        report_id: format!("{date}_{domain}_{digest:016x}@{}", reporter.submitter),
        policies,
    };
    DayReport::new(
        domain.to_owned(),
        day_start,
        reporter.submitter.clone(),
        report,
    )
}

// ---------------------------------------------------------------------------------------------
// Persistence

/// The `format` tag of an [`AggregateSnapshot`]: anything else is refused as foreign.
pub const AGGREGATE_FORMAT: &str = "mta-sts-tlsrpt-aggregate";
/// The snapshot version written and the only one read.
pub const AGGREGATE_VERSION: u32 = 1;
/// The largest snapshot [`AggregateSnapshot::from_json`] reads, in bytes (256 MiB).
pub const MAX_AGGREGATE_SNAPSHOT: usize = 256 * 1024 * 1024;

/// The open days of an [`Aggregator`], to keep them across restarts ([`Aggregator::snapshot`],
/// [`Aggregator::restore`]). Serde `Serialize` and `Deserialize`; [`to_json`](Self::to_json)
/// and [`from_json`](Self::from_json) for the usual file.
///
/// Like the policy cache's [`Snapshot`](crate::Snapshot): a versioned document (`format`,
/// `version`), an entry per domain and day; an entry of the wrong shape does not refuse the
/// document but is left out and counted, and restoring checks every entry and skips the bad
/// ones (listed in the [`RestoreReport`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AggregateSnapshot {
    format: String,
    version: u32,
    /// Days before this one (Unix seconds of its start) are closed.
    first_open_day: u64,
    dropped: Dropped,
    entries: Vec<SnapshotDomainDay>,
    #[serde(skip)]
    malformed: Vec<usize>,
}

/// One domain and day of an [`AggregateSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotDomainDay {
    day_start: u64,
    policy_domain: String,
    policies: Vec<SnapshotPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotPolicy {
    policy_type: String,
    policy_string: Vec<String>,
    mx_host: Vec<String>,
    successful: u64,
    failed: u64,
    details: Vec<SnapshotDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotDetail {
    result_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sending_mta_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receiving_mx_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receiving_mx_helo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receiving_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_reason_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    additional_information: Option<String>,
    count: u64,
}

impl<'de> Deserialize<'de> for AggregateSnapshot {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// An entry as read: a well-formed one, or anything else (kept out, counted).
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Slot {
            Entry(SnapshotDomainDay),
            Malformed(serde::de::IgnoredAny),
        }
        #[derive(Deserialize)]
        struct Document {
            format: String,
            version: u32,
            #[serde(default)]
            first_open_day: u64,
            #[serde(default)]
            dropped: Dropped,
            #[serde(default)]
            entries: Vec<Slot>,
        }
        let document = Document::deserialize(deserializer)?;
        let mut entries = Vec::new();
        let mut malformed = Vec::new();
        for (position, slot) in document.entries.into_iter().enumerate() {
            match slot {
                Slot::Entry(e) => entries.push(e),
                Slot::Malformed(_) => malformed.push(position),
            }
        }
        Ok(Self {
            format: document.format,
            version: document.version,
            first_open_day: document.first_open_day,
            dropped: document.dropped,
            entries,
            malformed,
        })
    }
}

/// Why snapshot bytes were refused whole ([`AggregateSnapshot::from_json`],
/// [`RestoreReport::refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AggregateSnapshotError {
    /// The bytes are longer than [`MAX_AGGREGATE_SNAPSHOT`].
    TooLarge {
        /// The length found.
        len: usize,
    },
    /// Not JSON of the snapshot's shape (the entries aside, which are skipped one by one).
    Syntax {
        /// The line of the error (1-based).
        line: usize,
        /// The column of the error (1-based).
        column: usize,
        /// What serde_json says.
        message: String,
    },
    /// The format tag is not [`AGGREGATE_FORMAT`].
    Foreign {
        /// The tag found.
        format: String,
    },
    /// A version this crate does not read.
    UnsupportedVersion(u32),
}

impl fmt::Display for AggregateSnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len } => write!(
                f,
                "TLSRPT aggregate snapshot of {len} bytes exceeds {MAX_AGGREGATE_SNAPSHOT}"
            ),
            Self::Syntax {
                line,
                column,
                message,
            } => write!(
                f,
                "TLSRPT aggregate snapshot, line {line} column {column}: {message}"
            ),
            Self::Foreign { format } => {
                write!(f, "not a TLSRPT aggregate snapshot (format {format:?})")
            }
            Self::UnsupportedVersion(v) => {
                write!(f, "unsupported TLSRPT aggregate snapshot version {v}")
            }
        }
    }
}

impl std::error::Error for AggregateSnapshotError {}

/// Why one entry of a snapshot was skipped on restore (the others load).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreProblem {
    /// Entry `index` is not an entry at all (a field missing or of the wrong type).
    Malformed {
        /// The entry's position.
        index: usize,
    },
    /// Entry `index` has an invalid policy domain.
    InvalidDomain {
        /// The entry's position.
        index: usize,
        /// Why it is invalid.
        error: PolicyDomainError,
    },
    /// Entry `index` has a `day_start` that is not a UTC midnight before the year 9999's last
    /// day.
    InvalidDay {
        /// The entry's position.
        index: usize,
        /// The value found.
        day_start: u64,
    },
    /// Entry `index`'s day was closed already (it would be reported twice).
    AlreadyClosed {
        /// The entry's position.
        index: usize,
    },
    /// Entry `index` repeats the domain and day of an earlier entry.
    Duplicate {
        /// The entry's position.
        index: usize,
    },
    /// Entry `index`, policy `policy`: something in it is invalid (`what`).
    InvalidPolicy {
        /// The entry's position.
        index: usize,
        /// The policy's position in the entry.
        policy: usize,
        /// What is wrong, e.g. `policy_type "dane" is not an RFC 8460 name`.
        what: String,
    },
}

impl fmt::Display for RestoreProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { index } => write!(f, "entry {index}: not a domain and day"),
            Self::InvalidDomain { index, error } => write!(f, "entry {index}: {error}"),
            Self::InvalidDay { index, day_start } => {
                write!(
                    f,
                    "entry {index}: day_start {day_start} is not a UTC midnight"
                )
            }
            Self::AlreadyClosed { index } => write!(f, "entry {index}: the day is closed"),
            Self::Duplicate { index } => write!(f, "entry {index}: domain and day repeated"),
            Self::InvalidPolicy {
                index,
                policy,
                what,
            } => write!(f, "entry {index}, policy {policy}: {what}"),
        }
    }
}

impl std::error::Error for RestoreProblem {}

/// What [`Aggregator::restore`] did with a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreReport {
    /// The snapshot was refused whole (foreign format or unsupported version): nothing loaded.
    pub refused: Option<AggregateSnapshotError>,
    /// Entries (domain and day) loaded.
    pub loaded: usize,
    /// Entries skipped because something in them was wrong.
    pub skipped: usize,
    /// Valid entries, policies or details not loaded because of the caps (the sessions of the
    /// policies are counted in [`Dropped`], those of the details stay in the summaries).
    pub not_loaded: usize,
    /// The problems of the first [`MAX_LISTED_PROBLEMS`] entries skipped, for the log.
    pub problems: Vec<RestoreProblem>,
}

impl RestoreReport {
    fn skip(&mut self, problem: RestoreProblem) {
        self.skipped += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(problem);
        }
    }
}

impl AggregateSnapshot {
    /// The snapshot as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads snapshot bytes written by [`AggregateSnapshot::to_json`]: at most
    /// [`MAX_AGGREGATE_SNAPSHOT`] bytes, of this format and version. Entries of the wrong
    /// shape are left out and counted; [`Aggregator::restore`] checks the others.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AggregateSnapshotError> {
        if bytes.len() > MAX_AGGREGATE_SNAPSHOT {
            return Err(AggregateSnapshotError::TooLarge { len: bytes.len() });
        }
        let snapshot: Self =
            serde_json::from_slice(bytes).map_err(|e| AggregateSnapshotError::Syntax {
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
        snapshot.check()?;
        Ok(snapshot)
    }

    fn check(&self) -> Result<(), AggregateSnapshotError> {
        if self.format != AGGREGATE_FORMAT {
            return Err(AggregateSnapshotError::Foreign {
                format: self.format.clone(),
            });
        }
        if self.version != AGGREGATE_VERSION {
            return Err(AggregateSnapshotError::UnsupportedVersion(self.version));
        }
        Ok(())
    }

    /// How many entries of the document had the wrong shape and were left out.
    pub fn malformed(&self) -> usize {
        self.malformed.len()
    }
}

impl Aggregator {
    /// The open days, to keep across a restart.
    pub fn snapshot(&self) -> AggregateSnapshot {
        let mut entries = Vec::with_capacity(self.entries);
        for (&day, domains) in &self.days {
            let mut domains: Vec<_> = domains.iter().collect();
            domains.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (domain, entry) in domains {
                let policies = entry
                    .policies
                    .iter()
                    .map(|p| {
                        let mut details: Vec<_> = p.details.iter().collect();
                        details.sort_unstable();
                        SnapshotPolicy {
                            policy_type: p.policy.policy_type.as_str().to_owned(),
                            policy_string: p.policy.policy_string.clone(),
                            mx_host: p.policy.mx_host.clone(),
                            successful: p.successful,
                            failed: p.failed,
                            details: details
                                .into_iter()
                                .map(|(f, &count)| SnapshotDetail {
                                    result_type: f.result_type.as_str().to_owned(),
                                    sending_mta_ip: f.sending_mta_ip.map(|i| i.to_string()),
                                    receiving_mx_hostname: f.receiving_mx_hostname.clone(),
                                    receiving_mx_helo: f.receiving_mx_helo.clone(),
                                    receiving_ip: f.receiving_ip.map(|i| i.to_string()),
                                    failure_reason_code: f.failure_reason_code.clone(),
                                    additional_information: f.additional_information.clone(),
                                    count,
                                })
                                .collect(),
                        }
                    })
                    .collect();
                entries.push(SnapshotDomainDay {
                    day_start: day * DAY,
                    policy_domain: domain.to_string(),
                    policies,
                });
            }
        }
        AggregateSnapshot {
            format: AGGREGATE_FORMAT.to_owned(),
            version: AGGREGATE_VERSION,
            first_open_day: self.first_open_day * DAY,
            dropped: self.dropped,
            entries,
            malformed: Vec::new(),
        }
    }

    /// The snapshot as JSON bytes ([`AggregateSnapshot::to_json`]).
    pub fn to_json(&self) -> Vec<u8> {
        self.snapshot().to_json()
    }

    /// An aggregator from snapshot bytes ([`AggregateSnapshot::from_json`], then
    /// [`Aggregator::restore`]).
    pub fn from_json(
        bytes: &[u8],
        limits: AggregatorLimits,
    ) -> Result<(Self, RestoreReport), AggregateSnapshotError> {
        Ok(Self::restore(AggregateSnapshot::from_json(bytes)?, limits))
    }

    /// An aggregator holding a snapshot's open days, under `limits`. The snapshot may be
    /// damaged or hostile: an entry with anything wrong (the wrong shape, an invalid domain,
    /// day, policy type, result type or address, a day already closed, a repeated domain and
    /// day, more details than failures) is skipped and listed; what exceeds the limits is
    /// left out and counted; the rest loads. A snapshot of another format or version loads
    /// nothing ([`RestoreReport::refused`]). The days before the snapshot's mark of closed days
    /// stay closed until the next [`Aggregator::close`] sets the mark from its `now`. Never
    /// panics.
    pub fn restore(snapshot: AggregateSnapshot, limits: AggregatorLimits) -> (Self, RestoreReport) {
        let mut aggregator = Self::new(limits);
        let mut report = RestoreReport::default();
        if let Err(e) = snapshot.check() {
            report.refused = Some(e);
            return (aggregator, report);
        }
        aggregator.first_open_day = snapshot.first_open_day / DAY;
        aggregator.dropped = snapshot.dropped;
        let mut malformed = snapshot.malformed.iter().copied().peekable();
        let mut position = 0;
        for e in snapshot.entries {
            while malformed.next_if_eq(&position).is_some() {
                report.skip(RestoreProblem::Malformed { index: position });
                position += 1;
            }
            let index = position;
            position += 1;
            match aggregator.check_entry(e, index) {
                Ok((day, domain, entry)) => aggregator.load(day, domain, entry, &mut report),
                Err(problem) => report.skip(problem),
            }
        }
        for index in malformed {
            report.skip(RestoreProblem::Malformed { index });
        }
        (aggregator, report)
    }

    /// An entry checked: its day, domain and policies, or why it is skipped.
    fn check_entry(
        &self,
        e: SnapshotDomainDay,
        index: usize,
    ) -> Result<(u64, Box<str>, Vec<PolicyCounts>), RestoreProblem> {
        let domain = PolicyDomain::normalised(&e.policy_domain)
            .map_err(|error| RestoreProblem::InvalidDomain { index, error })?;
        if !e.day_start.is_multiple_of(DAY) || e.day_start >= YEAR_10000 - DAY {
            return Err(RestoreProblem::InvalidDay {
                index,
                day_start: e.day_start,
            });
        }
        let day = e.day_start / DAY;
        if day < self.first_open_day {
            return Err(RestoreProblem::AlreadyClosed { index });
        }
        if self
            .days
            .get(&day)
            .is_some_and(|d| d.contains_key(&*domain))
        {
            return Err(RestoreProblem::Duplicate { index });
        }
        let mut policies = Vec::with_capacity(e.policies.len().min(64));
        for (i, p) in e.policies.into_iter().enumerate() {
            let invalid = |what: String| RestoreProblem::InvalidPolicy {
                index,
                policy: i,
                what,
            };
            let policy = policy_counts(p, &domain).map_err(invalid)?;
            if policies
                .iter()
                .any(|q: &PolicyCounts| q.policy == policy.policy)
            {
                return Err(invalid("the policy is repeated".to_owned()));
            }
            policies.push(policy);
        }
        Ok((day, domain.into(), policies))
    }

    /// Loads a checked entry within the limits.
    fn load(
        &mut self,
        day: u64,
        domain: Box<str>,
        policies: Vec<PolicyCounts>,
        report: &mut RestoreReport,
    ) {
        let limits = self.limits;
        let total = |p: &PolicyCounts| p.successful.saturating_add(p.failed);
        if self.entries >= limits.max_domains
            || (!self.days.contains_key(&day) && self.days.len() >= limits.max_days)
        {
            report.not_loaded += 1;
            let sessions = policies.iter().map(total).fold(0u64, u64::saturating_add);
            self.dropped.domains = self.dropped.domains.saturating_add(sessions);
            return;
        }
        let mut entry = DomainDay::default();
        for mut p in policies {
            if entry.policies.len() >= limits.max_policies_per_domain {
                report.not_loaded += 1;
                self.dropped.policies = self.dropped.policies.saturating_add(total(&p));
                continue;
            }
            if !p.details.is_empty() {
                let room = limits
                    .max_details_per_domain
                    .saturating_sub(entry.details)
                    .min(limits.max_details.saturating_sub(self.details));
                if p.details.len() > room {
                    let mut details: Vec<_> = p.details.into_iter().collect();
                    details.sort_unstable();
                    let dropped: u64 = details[room..].iter().map(|d| d.1).sum();
                    report.not_loaded += details.len() - room;
                    self.dropped.details = self.dropped.details.saturating_add(dropped);
                    details.truncate(room);
                    p.details = details.into_iter().collect();
                }
            }
            entry.details += p.details.len();
            self.details += p.details.len();
            self.sessions = self.sessions.saturating_add(total(&p));
            entry.policies.push(p);
        }
        self.entries += 1;
        report.loaded += 1;
        self.days.entry(day).or_default().insert(domain, entry);
    }
}

/// A snapshot policy checked: its counts, or what is wrong.
fn policy_counts(p: SnapshotPolicy, domain: &str) -> Result<PolicyCounts, String> {
    let policy_type: PolicyType = p
        .policy_type
        .parse()
        .map_err(|e| format!("policy_type: {e}"))?;
    let policy = SessionPolicy::new(policy_type, domain, p.policy_string, p.mx_host);
    if *policy.normalised(domain) != policy {
        return Err(format!("policy strings exceed {MAX_POLICY_TEXT} bytes"));
    }
    let mut details = HashMap::with_capacity(p.details.len().min(1024));
    let mut sum: u64 = 0;
    for (i, d) in p.details.into_iter().enumerate() {
        let ip = |s: Option<String>, name: &str| -> Result<Option<IpAddr>, String> {
            s.map(|s| {
                s.parse()
                    .map_err(|_| format!("detail {i}: {name} {s:?} is not an IP address"))
            })
            .transpose()
        };
        let failure = Failure {
            result_type: d
                .result_type
                .parse()
                .map_err(|e| format!("detail {i}: result_type: {e}"))?,
            sending_mta_ip: ip(d.sending_mta_ip, "sending_mta_ip")?,
            receiving_mx_hostname: d.receiving_mx_hostname,
            receiving_mx_helo: d.receiving_mx_helo,
            receiving_ip: ip(d.receiving_ip, "receiving_ip")?,
            failure_reason_code: d.failure_reason_code,
            additional_information: d.additional_information,
        };
        if *failure.normalised() != failure {
            return Err(format!(
                "detail {i}: a text exceeds {MAX_DETAIL_TEXT} bytes"
            ));
        }
        if d.count == 0 {
            return Err(format!("detail {i}: count 0"));
        }
        sum = sum.saturating_add(d.count);
        if details.insert(failure, d.count).is_some() {
            return Err(format!("detail {i} is repeated"));
        }
    }
    if sum > p.failed {
        return Err(format!(
            "the details count {sum} failures, the summary {}",
            p.failed
        ));
    }
    Ok(PolicyCounts {
        policy,
        successful: p.successful,
        failed: p.failed,
        details,
    })
}
