//! The I/O boundary: what the core asks an adapter to do, and what the adapter reports back.
//!
//! Requests are *semantic* (a TXT query for a name, an HTTPS GET of a policy), never wire bytes,
//! so an adapter may use any resolver or HTTP client. Every limit the adapter must obey (size cap,
//! timeout, no redirects, SNI name) travels on the request as data: adapters never choose them.
//! The optional `wire` feature turns these requests into bytes and bytes back into results.

use core::fmt;
use core::time::Duration;

/// The path of the policy file on the policy host (RFC 8461 §3.3).
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// Default cap on the policy body size: 64 KiB (RFC 8461 §3.3 suggestion).
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// Default total timeout of a policy fetch: one minute (RFC 8461 §3.3 suggestion).
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Default timeout of one DNS lookup (all servers and retries together).
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(10);

/// An I/O request from the core to an adapter.
///
/// Deliberately exhaustive: an adapter must perform every kind of request the core makes, so
/// a new kind is a breaking change that the compiler points out in every driver, rather than a
/// request some adapter answers with a made-up failure at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Io {
    /// Look up the TXT records at a name; answer with [`TxtResult`].
    Txt(TxtQuery),
    /// Fetch a policy over HTTPS; answer with [`FetchResult`].
    Fetch(PolicyFetch),
}

/// A TXT query, e.g. for `_mta-sts.example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TxtQuery {
    /// The fully qualified name in A-labels, lowercase, without the root dot.
    pub name: String,
    /// How long the whole lookup may take before the adapter reports [`DnsFailure::Timeout`].
    pub timeout: Duration,
}

impl TxtQuery {
    /// A query for `name` with the default timeout.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            timeout: DEFAULT_DNS_TIMEOUT,
        }
    }
}

/// A successful TXT lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxtAnswer {
    /// The TXT records found (after following CNAMEs), each with its character-strings joined
    /// without separator (RFC 8461 §3.1). Records of other types are not included.
    Records(Vec<Vec<u8>>),
    /// The name does not exist (NXDOMAIN).
    NxDomain {
        /// The negative-caching TTL of the answer (RFC 2308 §5: the smaller of the TTL and the
        /// MINIMUM field of the SOA record in the authority section), `None` when the answer
        /// carried no SOA record or the adapter cannot see it. The engine caps it
        /// ([`Config::negative_ttl_max`](crate::Config::negative_ttl_max)).
        negative_ttl: Option<Duration>,
    },
    /// The name exists but has no TXT record (NOERROR with an empty answer).
    NoData {
        /// The negative-caching TTL of the answer, as for [`TxtAnswer::NXDOMAIN`].
        negative_ttl: Option<Duration>,
    },
}

impl TxtAnswer {
    /// NXDOMAIN without a known negative-caching TTL.
    pub const NXDOMAIN: Self = Self::NxDomain { negative_ttl: None };
    /// NODATA without a known negative-caching TTL.
    pub const NODATA: Self = Self::NoData { negative_ttl: None };

    /// The negative-caching TTL of a NXDOMAIN or NODATA answer, if known; `None` for records.
    ///
    /// ```
    /// use core::time::Duration;
    /// use mta_sts_core::io::TxtAnswer;
    ///
    /// let ttl = Some(Duration::from_secs(300));
    /// assert_eq!(TxtAnswer::NxDomain { negative_ttl: ttl }.negative_ttl(), ttl);
    /// assert_eq!(TxtAnswer::NODATA.negative_ttl(), None);
    /// ```
    pub fn negative_ttl(&self) -> Option<Duration> {
        match self {
            Self::NxDomain { negative_ttl } | Self::NoData { negative_ttl } => *negative_ttl,
            Self::Records(_) => None,
        }
    }
}

/// A TXT lookup that failed temporarily: nothing can be concluded about the records.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsFailure {
    /// The server answered SERVFAIL.
    ServerFailure,
    /// The server answered REFUSED.
    Refused,
    /// The server answered with another error code (the numeric RCODE).
    ResponseCode(u16),
    /// No answer came within the query's timeout.
    Timeout,
    /// A network error (no route, connection refused, …), described for the operator.
    Network(String),
    /// The answer could not be understood (malformed message, wrong id or question, CNAME loop).
    Malformed(String),
}

impl fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerFailure => f.write_str("DNS server failure (SERVFAIL)"),
            Self::Refused => f.write_str("DNS query refused (REFUSED)"),
            Self::ResponseCode(c) => write!(f, "DNS error response code {c}"),
            Self::Timeout => f.write_str("DNS lookup timed out"),
            Self::Network(d) => write!(f, "DNS network error: {d}"),
            Self::Malformed(d) => write!(f, "malformed DNS response: {d}"),
        }
    }
}

impl std::error::Error for DnsFailure {}

/// The result of a [`TxtQuery`].
pub type TxtResult = Result<TxtAnswer, DnsFailure>;

/// The record type of a [`DnssecQuery`]: what DANE for SMTP looks up (RFC 7672 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DnssecType {
    /// The destination's MX records.
    Mx,
    /// An MX host's IPv4 addresses.
    A,
    /// An MX host's IPv6 addresses.
    Aaaa,
    /// The TLSA records at `_25._tcp.<mx host>`.
    Tlsa,
}

impl fmt::Display for DnssecType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mx => "MX",
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Tlsa => "TLSA",
        })
    }
}

/// A DNS query for DANE: asked of a validating resolver with the DNSSEC OK (DO) bit and the AD
/// bit set (RFC 6840 §5.7), so that its answer says whether the resolver authenticated it.
///
/// The adapter must report the answer's AD bit as [`DnssecAnswer::authenticated`] and the
/// smallest TTL of the records it used (for NXDOMAIN and NODATA: the SOA minimum of the
/// authority section, or 0 without one). A bogus answer comes from a validating resolver as
/// SERVFAIL: [`DnsFailure::ServerFailure`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnssecQuery {
    /// The fully qualified name in A-labels, lowercase, without the root dot.
    pub name: String,
    /// The record type asked for.
    pub rtype: DnssecType,
    /// How long the whole lookup may take before the adapter reports [`DnsFailure::Timeout`].
    pub timeout: Duration,
}

impl DnssecQuery {
    /// A query for `name` and `rtype` with the default timeout.
    pub fn new(name: impl Into<String>, rtype: DnssecType) -> Self {
        Self {
            name: name.into(),
            rtype,
            timeout: DEFAULT_DNS_TIMEOUT,
        }
    }
}

/// What a [`DnssecQuery`] found, and whether the resolver authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnssecAnswer {
    /// The AD bit of the response: every RRset in it was validated by the resolver.
    pub authenticated: bool,
    /// The smallest TTL of the records of the answer (after following CNAMEs), in seconds; for
    /// NXDOMAIN and NODATA the negative-caching TTL (the SOA minimum), 0 when unknown.
    pub ttl: u32,
    /// The records found, or that there are none.
    pub data: DnssecData,
}

impl DnssecAnswer {
    /// An answer with these fields.
    pub fn new(authenticated: bool, ttl: u32, data: DnssecData) -> Self {
        Self {
            authenticated,
            ttl,
            data,
        }
    }
}

/// The records of a [`DnssecAnswer`], of the type asked for, after following CNAMEs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnssecData {
    /// MX records as (preference, host), in the order of the answer section; hosts in A-labels
    /// as received, without the root dot (the null MX of RFC 7505 has the host `"."`).
    Mx(Vec<(u16, String)>),
    /// A or AAAA addresses.
    Addrs(Vec<std::net::IpAddr>),
    /// TLSA records, as published (usable or not), at most [`crate::MAX_TLSA_RECORDS`].
    Tlsa(Vec<crate::Tlsa>),
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name exists but has no record of the type asked (NOERROR with an empty answer).
    NoData,
}

/// The result of a [`DnssecQuery`].
pub type DnssecResult = Result<DnssecAnswer, DnsFailure>;

/// How the `Content-Type` of a policy response is checked (RFC 8461 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ContentTypeCheck {
    /// The media type must be `text/plain` (case-insensitive, parameters ignored). The default.
    #[default]
    TextPlain,
    /// Any or no `Content-Type` is accepted (an operator's switch for broken publishers).
    Lenient,
}

/// An HTTPS GET of `https://<host>/.well-known/mta-sts.txt`.
///
/// The adapter must: connect to `host` on `port` (any of its addresses), send SNI `host`, verify
/// the certificate with WebPKI against `host` (TLS 1.2 or newer), send one GET for [`POLICY_PATH`]
/// without caching headers, never follow a redirect, stop reading after `max_body` bytes of body,
/// and give up after `timeout` in total.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyFetch {
    /// The policy host, `mta-sts.<policy domain>`, in A-labels without the root dot. Also the SNI
    /// name, the `Host` header and the name the certificate must be valid for.
    pub host: String,
    /// The TCP port: 443 in production (tests may point elsewhere).
    pub port: u16,
    /// The largest body accepted, in bytes; a longer body is [`FetchFailure::BodyTooLarge`].
    pub max_body: usize,
    /// The total time allowed: connect, handshake, request and the whole body.
    pub timeout: Duration,
    /// How to check the response's `Content-Type`.
    pub content_type: ContentTypeCheck,
}

impl PolicyFetch {
    /// A fetch from `host` with the RFC 8461 defaults (port 443, 64 KiB, 60 s, `text/plain`).
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: 443,
            max_body: DEFAULT_MAX_BODY,
            timeout: DEFAULT_FETCH_TIMEOUT,
            content_type: ContentTypeCheck::TextPlain,
        }
    }

    /// The URL fetched, e.g. `https://mta-sts.example.com/.well-known/mta-sts.txt`.
    pub fn url(&self) -> String {
        if self.port == 443 {
            format!("https://{}{}", self.host, POLICY_PATH)
        } else {
            format!("https://{}:{}{}", self.host, self.port, POLICY_PATH)
        }
    }

    /// Checks a response's status line and `Content-Type` against RFC 8461 §3.2–3.3: only 200 is a
    /// policy (3xx is never followed) and the media type must be `text/plain` unless the check is
    /// lenient. Adapters and the wire codec call this as soon as the headers are in, so that they
    /// stop reading a response that cannot be a policy; the core calls it again on every
    /// [`FetchResponse`] it is handed.
    pub fn check_head(&self, status: u16, content_type: Option<&str>) -> Result<(), FetchFailure> {
        if (300..400).contains(&status) {
            return Err(FetchFailure::Redirect(status));
        }
        if status != 200 {
            return Err(FetchFailure::Status(status));
        }
        if self.content_type == ContentTypeCheck::Lenient {
            return Ok(());
        }
        match content_type {
            Some(ct) if is_text_plain(ct) => Ok(()),
            other => Err(FetchFailure::ContentType(other.map(str::to_owned))),
        }
    }
}

/// `text/plain`, compared case-insensitively, with any parameters (RFC 8461 §3.2: "all parameters
/// other than charset=utf-8 or charset=us-ascii are ignored").
fn is_text_plain(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim_matches([' ', '\t']);
    media.eq_ignore_ascii_case("text/plain")
}

/// An HTTP response to a [`PolicyFetch`], as received (status, media type, body).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header value, if present.
    pub content_type: Option<String>,
    /// The body, at most the request's `max_body` bytes.
    pub body: Vec<u8>,
}

impl FetchResponse {
    /// A response with the given status, content type and body.
    pub fn new(status: u16, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type: content_type.map(str::to_owned),
            body: body.into(),
        }
    }
}

/// Why a policy fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchFailure {
    /// The policy host's name did not resolve (no A/AAAA records, or a DNS error).
    Resolve(String),
    /// No TCP connection could be made to any address of the policy host.
    Connect(String),
    /// The certificate of the policy host is not valid for it (expired, untrusted, wrong name,
    /// none presented): TLSRPT `sts-webpki-invalid`.
    Certificate(CertificateProblem),
    /// Another TLS error (protocol version, alert) that is not about the certificate.
    Tls(String),
    /// The whole fetch took longer than the request's timeout.
    Timeout,
    /// The body is longer than the request's `max_body` (announced or read).
    BodyTooLarge {
        /// The cap that was exceeded, in bytes.
        limit: usize,
    },
    /// The server answered with a redirect (3xx), which is never followed (RFC 8461 §3.3).
    Redirect(u16),
    /// The server answered with a status other than 200 (RFC 8461 §3.3).
    Status(u16),
    /// The media type is not `text/plain` (or missing).
    ContentType(Option<String>),
    /// The response is not valid HTTP/1.x or the connection broke mid-response.
    Protocol(String),
}

impl FetchFailure {
    /// True when the failure is a certificate (WebPKI) problem, reported in TLSRPT as
    /// `sts-webpki-invalid`; every other fetch failure is `sts-policy-fetch-error`.
    pub fn is_certificate(&self) -> bool {
        matches!(self, Self::Certificate(_))
    }
}

impl fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve(d) => write!(f, "policy host does not resolve: {d}"),
            Self::Connect(d) => write!(f, "cannot connect to policy host: {d}"),
            Self::Certificate(p) => write!(f, "policy host: {p}"),
            Self::Tls(d) => write!(f, "TLS error with policy host: {d}"),
            Self::Timeout => f.write_str("policy fetch timed out"),
            Self::BodyTooLarge { limit } => write!(f, "policy body exceeds {limit} bytes"),
            Self::Redirect(s) => write!(f, "policy host answered {s} (redirects are not followed)"),
            Self::Status(s) => write!(f, "policy host answered HTTP {s}, not 200"),
            Self::ContentType(Some(ct)) => {
                write!(f, "policy media type is {ct:?}, not text/plain")
            }
            Self::ContentType(None) => f.write_str("policy response has no Content-Type"),
            Self::Protocol(d) => write!(f, "invalid HTTP response: {d}"),
        }
    }
}

impl std::error::Error for FetchFailure {}

/// Why a TLS server's certificate was refused by PKIX validation (RFC 8461 §4.2, §3.3).
///
/// For the STARTTLS connection to an MX, each variant corresponds to a TLSRPT result type
/// (RFC 8460 §4.3.1); a certificate problem of the *policy host* is always
/// `sts-webpki-invalid` (§4.3.2.2), whatever the variant:
///
/// | variant | TLSRPT result type |
/// |---|---|
/// | [`Expired`](Self::Expired) | `certificate-expired` |
/// | [`NameMismatch`](Self::NameMismatch) | `certificate-host-mismatch` |
/// | [`UnknownIssuer`](Self::UnknownIssuer) | `certificate-not-trusted` |
/// | [`Other`](Self::Other) | `certificate-not-trusted` (chain, signature, revocation, …) |
/// | [`NotYetValid`](Self::NotYetValid) | `validation-failure` (RFC 8460 has no type for it) |
/// | [`NoCertificate`](Self::NoCertificate) | `validation-failure` |
///
/// `certificate-not-trusted` is the RFC's label for certificate failures beyond an unknown CA,
/// and `validation-failure` its general one; with either, a report should give the reason in
/// `failure-reason-code` (the variant, or the text of [`Other`](Self::Other)).
///
/// ```
/// use mta_sts_core::io::{CertificateProblem, FetchFailure};
///
/// let failure = FetchFailure::Certificate(CertificateProblem::Expired);
/// assert!(failure.is_certificate());
/// assert_eq!(failure.to_string(), "policy host: the certificate has expired");
/// assert_eq!(
///     CertificateProblem::NameMismatch.to_string(),
///     "the certificate is not valid for the host name"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// The certificate's validity period has ended (TLSRPT `certificate-expired`).
    Expired,
    /// The certificate's validity period has not begun (TLSRPT `validation-failure`).
    NotYetValid,
    /// The certificate does not chain to a trusted root: an unknown CA, or self-signed (TLSRPT
    /// `certificate-not-trusted`).
    UnknownIssuer,
    /// The certificate is not valid for the host name asked for (TLSRPT
    /// `certificate-host-mismatch`).
    NameMismatch,
    /// The server presented no certificate (TLSRPT `validation-failure`).
    NoCertificate,
    /// Any other reason the certificate was refused, described by the TLS library (TLSRPT
    /// `certificate-not-trusted`).
    Other(String),
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired => f.write_str("the certificate has expired"),
            Self::NotYetValid => f.write_str("the certificate is not valid yet"),
            Self::UnknownIssuer => f.write_str("the certificate is not issued by a trusted CA"),
            Self::NameMismatch => f.write_str("the certificate is not valid for the host name"),
            Self::NoCertificate => f.write_str("no certificate was presented"),
            Self::Other(d) => write!(f, "the certificate is not valid: {d}"),
        }
    }
}

/// The result of a [`PolicyFetch`].
pub type FetchResult = Result<FetchResponse, FetchFailure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r15_only_200_is_a_policy() {
        let f = PolicyFetch::new("mta-sts.example.com");
        assert_eq!(f.check_head(200, Some("text/plain")), Ok(()));
        for s in [204, 404, 500] {
            assert_eq!(
                f.check_head(s, Some("text/plain")),
                Err(FetchFailure::Status(s))
            );
        }
    }

    #[test]
    fn r16_redirect_is_a_failure() {
        let f = PolicyFetch::new("mta-sts.example.com");
        for s in [301, 302, 307, 308] {
            assert_eq!(
                f.check_head(s, Some("text/plain")),
                Err(FetchFailure::Redirect(s))
            );
        }
    }

    #[test]
    fn r18_content_type_text_plain_with_parameters() {
        let f = PolicyFetch::new("mta-sts.example.com");
        assert!(f.check_head(200, Some("text/plain; charset=utf-8")).is_ok());
        assert!(f.check_head(200, Some("TEXT/PLAIN")).is_ok());
        assert!(
            f.check_head(200, Some(" text/plain ;charset=us-ascii"))
                .is_ok()
        );
        assert!(f.check_head(200, Some("text/html")).is_err());
        assert!(f.check_head(200, Some("text/plainx")).is_err());
        assert_eq!(
            f.check_head(200, None),
            Err(FetchFailure::ContentType(None))
        );
        let lenient = PolicyFetch {
            content_type: ContentTypeCheck::Lenient,
            ..f
        };
        assert!(lenient.check_head(200, Some("text/html")).is_ok());
        assert!(lenient.check_head(200, None).is_ok());
    }

    #[test]
    fn r13_url_of_policy_host() {
        let f = PolicyFetch::new("mta-sts.example.com");
        assert_eq!(
            f.url(),
            "https://mta-sts.example.com/.well-known/mta-sts.txt"
        );
    }
}
