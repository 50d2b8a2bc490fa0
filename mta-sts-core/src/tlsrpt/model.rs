//! The result model of RFC 8460 §4.3 and the JSON report of §4.4.

use core::fmt;
use core::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The type of policy a session was evaluated under (RFC 8460 §4.4 `policy-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyType {
    /// An MTA-STS policy (RFC 8461).
    Sts,
    /// DANE TLSA records (RFC 7672).
    Tlsa,
    /// Neither: the domain published no policy the sender could apply.
    NoPolicyFound,
}

impl PolicyType {
    /// Every policy type.
    pub const ALL: [Self; 3] = [Self::Sts, Self::Tlsa, Self::NoPolicyFound];

    /// The name used in reports: `sts`, `tlsa`, `no-policy-found`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sts => "sts",
            Self::Tlsa => "tlsa",
            Self::NoPolicyFound => "no-policy-found",
        }
    }
}

impl fmt::Display for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of RFC 8460's policy or result types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName(pub String);

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not an RFC 8460 name", self.0)
    }
}

impl std::error::Error for UnknownName {}

impl FromStr for PolicyType {
    type Err = UnknownName;

    /// The report name, compared exactly (RFC 8460 names are lowercase).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// Why a session failed (RFC 8460 §4.3 `result-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResultType {
    /// The receiving MX does not offer STARTTLS (§4.3.1).
    StarttlsNotSupported,
    /// The certificate is not valid for the MX host name (§4.3.1).
    CertificateHostMismatch,
    /// The certificate has expired (§4.3.1).
    CertificateExpired,
    /// The certificate does not chain to a trusted root, or is otherwise refused (§4.3.1).
    CertificateNotTrusted,
    /// A failure that fits no other type; `failure-reason-code` says more (§4.3.1, §4.3.3).
    ValidationFailure,
    /// No TLSA record of the RRset matched (§4.3.2.1).
    TlsaInvalid,
    /// The resolver returned no valid (DNSSEC-validated) records (§4.3.2.1).
    DnssecInvalid,
    /// DANE was required but the MX host has no validated TLSA records (§4.3.2.1).
    DaneRequired,
    /// The MTA-STS policy could not be retrieved (§4.3.2.2).
    StsPolicyFetchError,
    /// The MTA-STS policy is not valid (§4.3.2.2).
    StsPolicyInvalid,
    /// The policy host's certificate failed PKIX validation (§4.3.2.2).
    StsWebpkiInvalid,
}

impl ResultType {
    /// Every result type, in the order of RFC 8460 §4.3.
    pub const ALL: [Self; 11] = [
        Self::StarttlsNotSupported,
        Self::CertificateHostMismatch,
        Self::CertificateExpired,
        Self::CertificateNotTrusted,
        Self::ValidationFailure,
        Self::TlsaInvalid,
        Self::DnssecInvalid,
        Self::DaneRequired,
        Self::StsPolicyFetchError,
        Self::StsPolicyInvalid,
        Self::StsWebpkiInvalid,
    ];

    /// The name used in reports, e.g. `certificate-expired`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::StarttlsNotSupported => "starttls-not-supported",
            Self::CertificateHostMismatch => "certificate-host-mismatch",
            Self::CertificateExpired => "certificate-expired",
            Self::CertificateNotTrusted => "certificate-not-trusted",
            Self::ValidationFailure => "validation-failure",
            Self::TlsaInvalid => "tlsa-invalid",
            Self::DnssecInvalid => "dnssec-invalid",
            Self::DaneRequired => "dane-required",
            Self::StsPolicyFetchError => "sts-policy-fetch-error",
            Self::StsPolicyInvalid => "sts-policy-invalid",
            Self::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }

    /// True for the policy failures of §4.3.2 (the policy itself, not one MX session).
    pub const fn is_policy_failure(self) -> bool {
        matches!(
            self,
            Self::TlsaInvalid
                | Self::DnssecInvalid
                | Self::DaneRequired
                | Self::StsPolicyFetchError
                | Self::StsPolicyInvalid
                | Self::StsWebpkiInvalid
        )
    }
}

impl fmt::Display for ResultType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResultType {
    type Err = UnknownName;

    /// The report name, compared exactly (RFC 8460 names are lowercase).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// A TLSRPT report (RFC 8460 §4.4), as written and as read.
///
/// Written by [`Report`]'s `Serialize`: exact §4.4 names, fields with no value left out, the MX
/// patterns as a JSON array under `mx-host`. Read leniently: missing fields take their default
/// (empty, 0), and so do fields written as `null`, so that a reader can warn about them rather
/// than refuse the report, and `mx-host` / `mx-host-pattern` are accepted as a string or an
/// array. Names and times are kept as written; [`PolicyType`], [`ResultType`] and the date-time helpers interpret them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct Report {
    /// `organization-name`: who wrote the report.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub organization_name: String,
    /// `date-range`: the UTC day the report covers.
    #[serde(default, deserialize_with = "null_as_default")]
    pub date_range: DateRange,
    /// `contact-info`: an address of the report's author.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub contact_info: String,
    /// `report-id`: unique per report.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub report_id: String,
    /// `policies`: one entry per policy applied.
    #[serde(default, deserialize_with = "null_as_default")]
    pub policies: Vec<PolicyReport>,
}

/// `date-range` (RFC 8460 §4.4): RFC 3339 date-times, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct DateRange {
    /// `start-datetime`, e.g. `2016-04-01T00:00:00Z`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub start_datetime: String,
    /// `end-datetime`, e.g. `2016-04-01T23:59:59Z`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub end_datetime: String,
}

/// One entry of `policies`: a policy, its session counts and its failures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct PolicyReport {
    /// `policy`: what was applied.
    #[serde(default, deserialize_with = "null_as_default")]
    pub policy: PolicyDescription,
    /// `summary`: the session counts.
    #[serde(default, deserialize_with = "null_as_default")]
    pub summary: Summary,
    /// `failure-details`: failures grouped by result type, addresses and MX.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub failure_details: Vec<FailureDetail>,
}

/// `policy` (RFC 8460 §4.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct PolicyDescription {
    /// `policy-type`: `sts`, `tlsa` or `no-policy-found` ([`PolicyType`]), as written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub policy_type: String,
    /// `policy-string`: the policy, one string per line (or per TLSA record).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub policy_string: Vec<String>,
    /// `policy-domain`: the policy domain in A-labels.
    #[serde(default, deserialize_with = "null_as_default")]
    pub policy_domain: String,
    /// `mx-host`: the policy's MX patterns. Read from `mx-host` or `mx-host-pattern`, as a
    /// string or an array of strings.
    #[serde(
        default,
        alias = "mx-host-pattern",
        deserialize_with = "string_or_strings",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mx_host: Vec<String>,
}

/// `summary` (RFC 8460 §4.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct Summary {
    /// `total-successful-session-count`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_successful_session_count: u64,
    /// `total-failure-session-count`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_failure_session_count: u64,
}

/// One entry of `failure-details` (RFC 8460 §4.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct FailureDetail {
    /// `result-type` ([`ResultType`]), as written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub result_type: String,
    /// `sending-mta-ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<String>,
    /// `receiving-mx-hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    /// `receiving-mx-helo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_helo: Option<String>,
    /// `receiving-ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<String>,
    /// `failed-session-count`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub failed_session_count: u64,
    /// `additional-information`: a URI with more about the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<String>,
    /// `failure-reason-code`: the TLS library's error code or text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason_code: Option<String>,
}

/// `mx-host` as one string (the §4.4 example) or an array of strings (the §4.4 text); `null`
/// as none.
fn string_or_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or an array of strings")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(vec![s.to_owned()])
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut all = Vec::new();
            while let Some(s) = seq.next_element()? {
                all.push(s);
            }
            Ok(all)
        }
    }

    d.deserialize_any(OneOrMany)
}

/// A field written as `null` read as if it were missing: some reporters write `null` for what
/// they do not know; the reader then warns about it as about a missing field.
fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t2_names_round_trip() {
        for t in ResultType::ALL {
            assert_eq!(t.as_str().parse::<ResultType>(), Ok(t));
        }
        for t in PolicyType::ALL {
            assert_eq!(t.as_str().parse::<PolicyType>(), Ok(t));
        }
        assert!("certificate_expired".parse::<ResultType>().is_err());
    }

    #[test]
    fn t2_mx_host_read_in_three_forms_written_as_an_array() {
        for json in [
            r#"{"policy-type":"sts","policy-domain":"example.com","mx-host":"*.example.com"}"#,
            r#"{"policy-type":"sts","policy-domain":"example.com","mx-host":["*.example.com"]}"#,
            r#"{"policy-type":"sts","policy-domain":"example.com","mx-host-pattern":["*.example.com"]}"#,
        ] {
            let p: PolicyDescription = serde_json::from_str(json).unwrap();
            assert_eq!(p.mx_host, ["*.example.com"]);
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                r#"{"policy-type":"sts","policy-domain":"example.com","mx-host":["*.example.com"]}"#
            );
        }
    }
}
