//! The delivery of reports (RFC 8460 §5), sans-IO: discovery of the policy domain's
//! `_smtp._tls` record, one HTTPS POST (§5.4) or mail message (§5.3) per `rua` URI, retries with
//! exponential backoff for 24 hours (§5.5), spread over the hours after midnight (§4.1).
//!
//! - [`Outbox`]: the schedule. [`push`](Outbox::push) a [`PendingReport`], then
//!   [`poll_io`](Outbox::poll_io) for what to do now ([`DeliveryIo`]), and hand each result back
//!   to [`handle`](Outbox::handle), which says what happened ([`DeliveryEvent`]).
//! - [`ReportPost`]: the HTTPS POST an adapter carries out like a policy fetch; its request
//!   bytes ([`ReportPost::request`]) and the response parser
//!   (`wire::http::PostResponseParser`, feature `wire`).
//! - [`report_mail`]: the whole RFC 5322 message for a `mailto:` URI, for the embedding MTA to
//!   queue; [`is_report_mail`] recognises such a message so that its TLS results are not
//!   recorded (a report never reports on its own delivery).

use core::fmt;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_parser::{MessageParser, MimeHeaders};
use serde::{Deserialize, Serialize};

use crate::io::{FetchFailure, TxtAnswer, TxtQuery, TxtResult};
use crate::lenient::Lenient;
use crate::time::UnixTime;

use super::output::{DayReport, fnv1a};
use super::record::{MAX_URIS, ReportUri, TlsRptRecord, record_name};

/// The `User-Agent` of a report POST (the same as the policy fetch's).
const USER_AGENT: &str = concat!("mta-sts/", env!("CARGO_PKG_VERSION"));

/// The media type of a gzip report (RFC 8460 §6.4).
pub const REPORT_MEDIA_TYPE: &str = "application/tlsrpt+gzip";

/// The `format` tag of an [`OutboxSnapshot`]: anything else is refused as foreign.
pub const OUTBOX_SNAPSHOT_FORMAT: &str = "mta-sts-tlsrpt-outbox";
/// The outbox snapshot version written and the only one read.
pub const OUTBOX_SNAPSHOT_VERSION: u32 = 1;

/// The latest time a mail `Date` is written for (9999-12-31T23:59:59Z).
const MAX_MAIL_DATE: u64 = 253_402_300_799;

/// One report to deliver: the gzip JSON of one policy domain's UTC day, with what the mail and
/// the schedule need to know about it.
///
/// ```
/// use mta_sts_core::UnixTime;
/// use mta_sts_core::tlsrpt::PendingReport;
///
/// let report = PendingReport::new(
///     "example.net", "mail.sender.example", "2026-01-01T00:00:00Z_example.net",
///     UnixTime::from_secs(1_767_225_600), UnixTime::from_secs(1_767_311_999),
///     "mail.sender.example!example.net!1767225600!1767311999!1.json.gz", vec![0x1f, 0x8b],
/// );
/// assert_eq!(report.policy_domain, "example.net");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingReport {
    /// The policy domain the report is about (and whose `_smtp._tls` record is looked up).
    pub policy_domain: String,
    /// The domain of the sending MTA (`TLS-Report-Submitter`, the report's contact domain).
    pub submitter: String,
    /// The report's `report-id`.
    pub report_id: String,
    /// The start of the report's `date-range` (00:00:00Z of the day).
    pub day_start: UnixTime,
    /// The end of the report's `date-range` (23:59:59Z of the day).
    pub day_end: UnixTime,
    /// The §5.1 file name (`submitter!policy-domain!begin!end!id.json.gz`).
    pub file_name: String,
    /// The report, gzip-compressed JSON.
    pub gzip: Vec<u8>,
}

impl PendingReport {
    /// A report to deliver.
    pub fn new(
        policy_domain: impl Into<String>,
        submitter: impl Into<String>,
        report_id: impl Into<String>,
        day_start: UnixTime,
        day_end: UnixTime,
        file_name: impl Into<String>,
        gzip: Vec<u8>,
    ) -> Self {
        Self {
            policy_domain: policy_domain.into(),
            submitter: submitter.into(),
            report_id: report_id.into(),
            day_start,
            day_end,
            file_name: file_name.into(),
            gzip,
        }
    }
}

/// An HTTPS POST of a report (RFC 8460 §5.4), which the adapter carries out like a policy
/// fetch: connect to `host:port` within `timeout`, TLS with SNI `host` and WebPKI verification,
/// write the bytes of [`request`](Self::request), read the status and at most `max_response`
/// bytes of body (a 3xx is never followed), and hand back a [`PostResult`].
///
/// ```
/// use mta_sts_core::tlsrpt::ReportPost;
///
/// let post = ReportPost::new("reports.example.net", 8443, "/v1/tlsrpt", b"gz".to_vec());
/// assert_eq!(post.url, "https://reports.example.net:8443/v1/tlsrpt");
/// let request = String::from_utf8(post.request())?;
/// assert!(request.starts_with("POST /v1/tlsrpt HTTP/1.1\r\nHost: reports.example.net:8443\r\n"));
/// assert!(request.contains("\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Length: 2\r\n"));
/// assert!(request.ends_with("\r\nConnection: close\r\n\r\ngz"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportPost {
    /// The `rua` URI, for logs and events.
    pub url: String,
    /// The host to connect to, also the TLS server name and the `Host` header.
    pub host: String,
    /// The TCP port (443 unless the URI says otherwise).
    pub port: u16,
    /// The request target: path and query.
    pub path: String,
    /// The request body: the gzip report.
    pub body: Vec<u8>,
    /// How long the whole POST (connection, TLS, request, response) may take.
    pub timeout: Duration,
    /// The most response body bytes read; more is a failure.
    pub max_response: usize,
}

impl ReportPost {
    /// The POST of `body` to `https://host[:port]path`, with the timeout and response cap of
    /// [`OutboxConfig::default`].
    pub fn new(host: impl Into<String>, port: u16, path: impl Into<String>, body: Vec<u8>) -> Self {
        let host = host.into();
        let path = path.into();
        let defaults = OutboxConfig::default();
        let url = if port == 443 {
            format!("https://{host}{path}")
        } else {
            format!("https://{host}:{port}{path}")
        };
        Self {
            url,
            host,
            port,
            path,
            body,
            timeout: defaults.post_timeout,
            max_response: defaults.max_response,
        }
    }

    /// The request bytes: `POST <path> HTTP/1.1` with `Host`, `User-Agent`,
    /// `Content-Type: application/tlsrpt+gzip`, `Content-Length` and `Connection: close`, then
    /// the body.
    ///
    /// The host and path come from a DNS record: any byte that may not stand in a host or a
    /// request target (controls, spaces, non-ASCII, quotes) is percent-encoded, so nothing can
    /// be injected into the request; an empty path is `/`.
    pub fn request(&self) -> Vec<u8> {
        let host = percent_encode(&self.host, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
        });
        let authority = if self.port == 443 {
            host
        } else {
            format!("{host}:{}", self.port)
        };
        let path = percent_encode(&self.path, is_target_byte);
        let slash = if path.starts_with('/') { "" } else { "/" };
        let mut bytes = format!(
            "POST {slash}{path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {USER_AGENT}\r\n\
             Content-Type: {REPORT_MEDIA_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A byte that may stand in a request target as it is (RFC 3986 pchar, `/`, `?`, and `%` of an
/// escape already made).
fn is_target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
                | b'%'
        )
}

fn percent_encode(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The answer to a [`ReportPost`]: its final HTTP status.
///
/// ```
/// use mta_sts_core::tlsrpt::PostResponse;
/// assert!(PostResponse::new(202).is_success());
/// assert!(!PostResponse::new(301).is_success()); // redirects are not followed
/// assert!(!PostResponse::new(400).is_success()); // a 4xx is not "delivered"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostResponse {
    /// The HTTP status code.
    pub status: u16,
}

impl PostResponse {
    /// A response with this status.
    pub fn new(status: u16) -> Self {
        Self { status }
    }

    /// A 2xx status: the report was delivered (RFC 8460 §5.4). Anything else is a failure to
    /// retry.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The result of a [`ReportPost`]: the response, or why none came (the failures of a policy
/// fetch: resolution, connection, certificate, TLS, timeout, response over the cap, not HTTP).
pub type PostResult = Result<PostResponse, FetchFailure>;

/// A report for a `mailto:` URI (RFC 8460 §5.3): the whole RFC 5322 message, for the embedding
/// MTA to queue. The MTA must deliver it without requiring TLS (`TLS-Required: No`, RFC 8689
/// §5; RFC 8460 §5.3: "Sending MTAs MUST NOT honor MTA-STS or DANE TLSA failures") and must not
/// record the TLS results of its delivery ([`is_report_mail`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportMail {
    /// The envelope and header recipient (the address of the `mailto:` URI).
    pub to: String,
    /// The envelope and header sender.
    pub from: String,
    /// The policy domain the report is about.
    pub policy_domain: String,
    /// The report's `report-id`.
    pub report_id: String,
    /// The message: header and MIME body, CRLF line ends.
    pub message: Vec<u8>,
}

/// The message of `report` for a `mailto:` URI (RFC 8460 §5.3), dated `date`:
///
/// - `From`, `To`, `Date`, `Message-ID` (`message_id`, with or without angle brackets);
/// - `Subject: Report Domain: <policy domain> Submitter: <submitter> Report-ID: <id>`, the id
///   being the report id, with `@<submitter>` added when it has no `@` (§5.3 ABNF);
/// - `TLS-Report-Domain`, `TLS-Report-Submitter` and `TLS-Required: No` (RFC 8689 §5: a report
///   must reach the domain even when its TLS is broken);
/// - `Content-Type: multipart/report; report-type="tlsrpt"` with a `text/plain` part and the
///   report as `application/tlsrpt+gzip`, base64, `attachment; filename="<file name>"`.
///
/// The MIME structure is built with `mail-builder`, with a boundary derived from the report (no
/// clock read, no randomness: the same inputs give the same bytes). Control characters and
/// spaces are removed from the names and addresses put in header fields.
///
/// ```
/// use mta_sts_core::UnixTime;
/// use mta_sts_core::tlsrpt::{PendingReport, is_report_mail, report_mail};
///
/// let report = PendingReport::new(
///     "example.net", "mail.sender.example", "2026-01-01.example.net",
///     UnixTime::from_secs(1_767_225_600), UnixTime::from_secs(1_767_311_999),
///     "mail.sender.example!example.net!1767225600!1767311999!1.json.gz", vec![0x1f, 0x8b, 8],
/// );
/// let mail = report_mail(&report, "tlsrpt@mail.sender.example", "reports@example.net",
///                        UnixTime::from_secs(1_767_240_000), "r1@mail.sender.example");
/// let text = String::from_utf8(mail.message.clone())?;
/// assert!(text.contains("TLS-Report-Domain: example.net\r\n"));
/// assert!(text.contains("TLS-Required: No\r\n"));
/// assert!(text.contains("multipart/report; report-type=\"tlsrpt\""));
/// assert!(is_report_mail(&mail.message));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn report_mail(
    report: &PendingReport,
    from: &str,
    to: &str,
    date: UnixTime,
    message_id: &str,
) -> ReportMail {
    let domain = header_safe(&report.policy_domain);
    let submitter = header_safe(&report.submitter);
    let id = header_safe(&report.report_id);
    let id = if id.contains('@') {
        id
    } else {
        format!("{id}@{submitter}")
    };
    let from = header_safe(from);
    let to = header_safe(to);
    let message_id = header_safe(message_id)
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    let text = format!(
        "This is an aggregate TLS report (RFC 8460) from {submitter}\r\n\
         about the TLS sessions to {domain}\r\n\
         from {} to {}.\r\n",
        report.day_start.rfc3339(),
        report.day_end.rfc3339()
    );
    // A boundary that cannot occur in the parts: base64 has no "_", the text has no "=_".
    let boundary = format!(
        "=_tlsrpt_{:016x}",
        fnv1a(&[report.policy_domain.as_bytes(), report.report_id.as_bytes()])
    );
    let body = MimePart::new(
        ContentType::new("multipart/report")
            .attribute("report-type", "tlsrpt")
            .attribute("boundary", boundary),
        vec![
            MimePart::new(
                ContentType::new("text/plain").attribute("charset", "us-ascii"),
                text,
            ),
            MimePart::new(REPORT_MEDIA_TYPE, report.gzip.clone())
                .attachment(header_safe(&report.file_name)),
        ],
    );
    let message = MessageBuilder::new()
        .from(from.as_str())
        .to(to.as_str())
        // Raw, not mail-builder's `subject`: that one encodes a line over 77 characters as
        // encoded-words, and §5.3 wants the words themselves, folded at spaces.
        .header(
            "Subject",
            Raw::new(format!(
                "Report Domain: {domain} Submitter: {submitter} Report-ID: <{id}>"
            )),
        )
        .date(date.as_secs().min(MAX_MAIL_DATE))
        .message_id(message_id)
        .header("TLS-Report-Domain", Raw::new(domain))
        .header("TLS-Report-Submitter", Raw::new(submitter))
        .header("TLS-Required", Raw::new("No"))
        .body(body)
        .write_to_vec()
        // Writing into a Vec cannot fail.
        .unwrap_or_default();
    ReportMail {
        to,
        from,
        policy_domain: report.policy_domain.clone(),
        report_id: report.report_id.clone(),
        message,
    }
}

/// The printable ASCII of `s` (no controls, spaces or non-ASCII): safe in a header field.
fn header_safe(s: &str) -> String {
    s.chars().filter(char::is_ascii_graphic).collect()
}

/// True when `message` (its header, or the whole message) is a TLSRPT report mail: it has a
/// `TLS-Report-Domain` header field, or its `Content-Type` is `multipart/report` with
/// `report-type=tlsrpt`.
///
/// An embedding MTA checks this before recording the TLS results of a delivery: the delivery
/// of a report is never itself recorded into a report (as mox does), else a domain whose TLS
/// is broken would be sent a report about the failed delivery of its report, every day.
///
/// ```
/// use mta_sts_core::tlsrpt::is_report_mail;
/// assert!(is_report_mail(b"TLS-Report-Domain: example.net\r\nSubject: x\r\n\r\n"));
/// assert!(is_report_mail(
///     b"Content-Type: multipart/report;\r\n report-type=TLSRPT; boundary=b\r\n\r\n"
/// ));
/// assert!(!is_report_mail(b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\n"));
/// assert!(!is_report_mail(b"Subject: hello\r\n\r\nbody"));
/// ```
pub fn is_report_mail(message: &[u8]) -> bool {
    let Some(parsed) = MessageParser::new().parse_headers(message) else {
        return false;
    };
    if parsed.header("TLS-Report-Domain").is_some() {
        return true;
    }
    parsed.root_part().content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("tlsrpt"))
    })
}

/// The token of one [`DeliveryIo`] an [`Outbox`] asked for; hand it back with the result.
///
/// A driver that tags its requests with integers may use [`DeliveryId::as_u64`] and
/// [`DeliveryId::from_u64`]; an id the outbox did not hand out (or already answered) is
/// ignored by [`Outbox::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(u64);

impl DeliveryId {
    /// The id as an integer.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The id with this integer value.
    pub fn from_u64(raw: u64) -> Self {
        Self(raw)
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What an [`Outbox`] asks the adapter to do.
///
/// Deliberately exhaustive, like [`Io`](crate::io::Io): an adapter must carry out every kind,
/// so a new kind is a change the compiler points out in every driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryIo {
    /// Look up the TXT records of `_smtp._tls.<policy domain>`; answer with
    /// [`DeliveryResult::Discover`].
    Discover(TxtQuery),
    /// Carry out this POST; answer with [`DeliveryResult::Post`].
    Post(ReportPost),
    /// Queue this message; answer with [`DeliveryResult::Mail`] (`Ok` once the MTA has taken
    /// responsibility for it).
    Mail(ReportMail),
}

/// The result of a [`DeliveryIo`], handed to [`Outbox::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    /// The TXT lookup's result.
    Discover(TxtResult),
    /// The POST's result.
    Post(PostResult),
    /// Whether the MTA queued the message, or why not.
    Mail(Result<(), String>),
}

/// Settings of an [`Outbox`].
///
/// ```
/// use core::time::Duration;
/// use mta_sts_core::tlsrpt::OutboxConfig;
///
/// let mut config = OutboxConfig::default();
/// assert_eq!(config.spread, Duration::from_secs(4 * 3600));
/// assert_eq!(config.retry_for, Duration::from_secs(24 * 3600));
/// config.from = "tlsrpt@mail.sender.example".into();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxConfig {
    /// Reports are first sent at a point in `[midnight, midnight + spread)` after their day,
    /// chosen from the policy domain and report id (default 4 h, RFC 8460 §4.1).
    pub spread: Duration,
    /// How long after the first attempt a report is retried (default 24 h, RFC 8460 §5.5).
    pub retry_for: Duration,
    /// The wait after the first failure; it doubles after each further one (default 5 min).
    pub first_retry: Duration,
    /// The longest wait between two attempts (default 2 h).
    pub max_retry: Duration,
    /// The most reports pending (default 10,000); more are refused ([`OutboxFull`]).
    pub max_reports: usize,
    /// The most gzip bytes pending, all reports together (default 256 MiB).
    pub max_bytes: usize,
    /// The timeout of a POST ([`ReportPost::timeout`], default 60 s).
    pub post_timeout: Duration,
    /// The most response body bytes read after a POST (default 64 KiB).
    pub max_response: usize,
    /// The `From` address of report mail; empty (the default) means
    /// `tlsrpt-noreply@<submitter>`.
    pub from: String,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            spread: Duration::from_secs(4 * 3600),
            retry_for: Duration::from_secs(24 * 3600),
            first_retry: Duration::from_secs(5 * 60),
            max_retry: Duration::from_secs(2 * 3600),
            max_reports: 10_000,
            max_bytes: 256 << 20,
            post_timeout: Duration::from_secs(60),
            max_response: 64 * 1024,
            from: String::new(),
        }
    }
}

/// Why [`Outbox::push`] refused a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboxFull {
    /// [`OutboxConfig::max_reports`] reports are pending.
    Reports {
        /// The cap.
        limit: usize,
    },
    /// The report would take the pending gzip bytes over [`OutboxConfig::max_bytes`].
    Bytes {
        /// The cap.
        limit: usize,
    },
}

impl fmt::Display for OutboxFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reports { limit } => write!(f, "TLSRPT outbox full: {limit} reports pending"),
            Self::Bytes { limit } => {
                write!(
                    f,
                    "TLSRPT outbox full: the reports would exceed {limit} bytes"
                )
            }
        }
    }
}

impl std::error::Error for OutboxFull {}

/// What happened to a report, from [`Outbox::handle`].
///
/// Each `rua` URI of the policy domain's record is delivered and retried on its own; a report
/// leaves the outbox when every URI has [`Delivered`](Self::Delivered) or
/// [`GaveUp`](Self::GaveUp), or at once with [`NoRecord`](Self::NoRecord).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryEvent {
    /// The URI accepted the report (a 2xx answer, or the MTA queued the mail).
    Delivered {
        /// The policy domain.
        policy_domain: String,
        /// The report id.
        report_id: String,
        /// The `rua` URI.
        uri: String,
    },
    /// An attempt failed; the next is at `next`.
    Retrying {
        /// The policy domain.
        policy_domain: String,
        /// The report id.
        report_id: String,
        /// The `rua` URI, or for a failed discovery the DNS name looked up
        /// (`_smtp._tls.<domain>`).
        uri: String,
        /// How many attempts have failed so far.
        attempt: u32,
        /// When the next attempt is due.
        next: UnixTime,
        /// Why this one failed.
        error: String,
    },
    /// An attempt failed and no further one fits in the retry window
    /// ([`OutboxConfig::retry_for`] after the first attempt): the URI is given up.
    GaveUp {
        /// The policy domain.
        policy_domain: String,
        /// The report id.
        report_id: String,
        /// The `rua` URI, or for discovery the DNS name looked up.
        uri: String,
        /// Why the last attempt failed.
        error: String,
    },
    /// The policy domain publishes no usable TLSRPT record (NXDOMAIN, no TXT record, none or
    /// several `v=TLSRPTv1` records, an invalid one): the report is dropped.
    NoRecord {
        /// The policy domain.
        policy_domain: String,
        /// The report id.
        report_id: String,
        /// What was found instead.
        error: String,
    },
}

impl From<&DayReport> for PendingReport {
    /// The report of the aggregator, gzip-compressed, with its §5.1 file name.
    fn from(day: &DayReport) -> Self {
        Self::new(
            day.policy_domain.as_str(),
            day.submitter.as_str(),
            day.report_id(),
            day.day_start,
            day.day_end,
            day.file_name(),
            day.gzip(),
        )
    }
}

/// Where a report is sent: one `rua` URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum Dest {
    Mail {
        to: String,
    },
    Post {
        url: String,
        host: String,
        port: u16,
        path: String,
    },
}

impl Dest {
    fn uri(&self) -> String {
        match self {
            Self::Mail { to } => ReportUri::Mailto(to.clone()).to_string(),
            Self::Post { url, .. } => url.clone(),
        }
    }
}

/// The state of one thing to do for a report: its discovery, or its delivery to one URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Task {
    /// Failed attempts so far.
    attempt: u32,
    /// When the next attempt is due (while waiting).
    next: UnixTime,
    state: TaskState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Waiting,
    InFlight,
    Done,
}

impl Task {
    fn at(next: UnixTime) -> Self {
        Self {
            attempt: 0,
            next,
            state: TaskState::Waiting,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    report: PendingReport,
    /// The first attempt's time; retries end `retry_for` after it.
    send_at: UnixTime,
    deadline: UnixTime,
    discovery: Task,
    /// The URIs, once discovered.
    targets: Option<Vec<(Dest, Task)>>,
}

impl Entry {
    fn task_mut(&mut self, slot: u32) -> Option<&mut Task> {
        match slot {
            0 => Some(&mut self.discovery),
            n => self
                .targets
                .as_mut()?
                .get_mut(n as usize - 1)
                .map(|(_, t)| t),
        }
    }

    fn finished(&self) -> bool {
        self.discovery.state == TaskState::Done
            && self
                .targets
                .as_ref()
                .is_none_or(|ts| ts.iter().all(|(_, t)| t.state == TaskState::Done))
    }
}

/// The TLSRPT submission schedule (RFC 8460 §5), sans-IO: reports wait for their slot after
/// midnight, the policy domain's `_smtp._tls` record is looked up, and the report is POSTed or
/// mailed to each `rua` URI, each retried on its own with exponential backoff for 24 hours.
///
/// - [`push`](Self::push) schedules a report at a point in `[day_end + 1 s, + spread)` chosen
///   by a hash of its policy domain and report id (deterministic; never before `now`). The
///   retry window ([`OutboxConfig::retry_for`], 24 h) starts there (§5.5: "for up to 24 hours
///   after the initial attempt").
/// - [`poll_io`](Self::poll_io) gives what is due: first [`DeliveryIo::Discover`], then one
///   [`DeliveryIo::Post`] or [`DeliveryIo::Mail`] per URI. Call it until `None`; every id it
///   gives must be answered with [`handle`](Self::handle) (the adapter's timeouts make sure of
///   it), then sleep until [`poll_timeout`](Self::poll_timeout).
/// - [`handle`](Self::handle): a 2xx is delivered; anything else, a failed POST, a mail the MTA
///   would not queue or a DNS temporary failure is retried after 5 min, 10, 20, … (doubling,
///   capped at 2 h) until the window ends. NXDOMAIN, no record or an invalid record drops the
///   report ([`DeliveryEvent::NoRecord`]).
///
/// **Adapters must not record the delivery of reports into reports**: the TLS results of a
/// report POST or of a report mail's SMTP session are never fed to the aggregator (an MTA
/// recognises report mail with [`is_report_mail`]), else broken TLS at a domain would produce
/// reports about the delivery of its reports.
///
/// Memory is bounded: [`OutboxConfig::max_reports`] reports and
/// [`OutboxConfig::max_bytes`] gzip bytes, each delivered to at most
/// [`MAX_URIS`] URIs (a record with more is invalid).
///
/// ```
/// use mta_sts_core::UnixTime;
/// use mta_sts_core::io::TxtAnswer;
/// use mta_sts_core::tlsrpt::{
///     DeliveryEvent, DeliveryIo, DeliveryResult, Outbox, OutboxConfig, PendingReport, PostResponse,
/// };
///
/// let day_end = UnixTime::from_secs(1_767_311_999);
/// let report = PendingReport::new("example.net", "mail.sender.example", "r1",
///     UnixTime::from_secs(1_767_225_600), day_end, "f.json.gz", vec![0x1f, 0x8b]);
/// let mut outbox = Outbox::new(OutboxConfig::default());
/// outbox.push(report, day_end)?;
/// assert!(outbox.poll_io(day_end).is_none()); // not before its slot after midnight
/// let now = outbox.poll_timeout().unwrap();
///
/// let Some((id, DeliveryIo::Discover(query))) = outbox.poll_io(now) else { unreachable!() };
/// assert_eq!(query.name, "_smtp._tls.example.net");
/// let record = b"v=TLSRPTv1; rua=https://reports.example.net/tlsrpt".to_vec();
/// let answer = DeliveryResult::Discover(Ok(TxtAnswer::Records(vec![record])));
/// assert!(outbox.handle(id, answer, now).is_empty());
///
/// let Some((id, DeliveryIo::Post(post))) = outbox.poll_io(now) else { unreachable!() };
/// assert_eq!(post.host, "reports.example.net");
/// let events = outbox.handle(id, DeliveryResult::Post(Ok(PostResponse::new(200))), now);
/// assert!(matches!(&events[..], [DeliveryEvent::Delivered { uri, .. }]
///     if uri == "https://reports.example.net/tlsrpt"));
/// assert!(outbox.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Outbox {
    config: OutboxConfig,
    entries: BTreeMap<u64, Entry>,
    /// (policy domain, report id) of the pending reports, against pushing one twice.
    keys: HashSet<(String, String)>,
    /// The waiting tasks: (due time, entry, slot: 0 discovery, n URI n-1).
    timers: BTreeSet<(UnixTime, u64, u32)>,
    /// The tasks under way, by the id handed out.
    in_flight: HashMap<u64, (u64, u32)>,
    next_entry: u64,
    next_id: u64,
    bytes: usize,
}

impl Outbox {
    /// An empty outbox.
    pub fn new(config: OutboxConfig) -> Self {
        Self {
            config,
            entries: BTreeMap::new(),
            keys: HashSet::new(),
            timers: BTreeSet::new(),
            in_flight: HashMap::new(),
            next_entry: 0,
            next_id: 0,
            bytes: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &OutboxConfig {
        &self.config
    }

    /// Schedules `report` for its first attempt at a point in `[day_end + 1 s, + spread)`
    /// (the hash of its policy domain and report id picks it), or at `now` if that is later. A
    /// report already pending (same policy domain and report id) is not added again.
    pub fn push(&mut self, report: PendingReport, now: UnixTime) -> Result<(), OutboxFull> {
        let offset = match self.config.spread.as_secs() {
            0 => 0,
            spread => {
                fnv1a(&[report.policy_domain.as_bytes(), report.report_id.as_bytes()]) % spread
            }
        };
        let send_at = report
            .day_end
            .saturating_add(Duration::from_secs(1 + offset))
            .max(now);
        let deadline = send_at.saturating_add(self.config.retry_for);
        self.insert(report, send_at, deadline, Task::at(send_at), None)
    }

    fn insert(
        &mut self,
        report: PendingReport,
        send_at: UnixTime,
        deadline: UnixTime,
        discovery: Task,
        targets: Option<Vec<(Dest, Task)>>,
    ) -> Result<(), OutboxFull> {
        let key = (report.policy_domain.clone(), report.report_id.clone());
        if self.keys.contains(&key) {
            return Ok(());
        }
        if self.entries.len() >= self.config.max_reports {
            return Err(OutboxFull::Reports {
                limit: self.config.max_reports,
            });
        }
        let size = report.gzip.len();
        if size > self.config.max_bytes.saturating_sub(self.bytes) {
            return Err(OutboxFull::Bytes {
                limit: self.config.max_bytes,
            });
        }
        let index = self.next_entry;
        self.next_entry += 1;
        let entry = Entry {
            report,
            send_at,
            deadline,
            discovery,
            targets,
        };
        self.timers
            .extend(waiting(&entry).map(|(slot, t)| (t, index, slot)));
        self.entries.insert(index, entry);
        self.keys.insert(key);
        self.bytes += size;
        Ok(())
    }

    fn remove(&mut self, index: u64) {
        if let Some(entry) = self.entries.remove(&index) {
            for (slot, t) in waiting(&entry) {
                self.timers.remove(&(t, index, slot));
            }
            self.in_flight.retain(|_, (e, _)| *e != index);
            self.keys
                .remove(&(entry.report.policy_domain, entry.report.report_id));
            self.bytes -= entry.report.gzip.len();
        }
    }

    /// The next I/O due at `now`, if any: a discovery, or a POST or mail to one URI. Call it
    /// until `None`, carry out each request (concurrently if you like) and hand every result to
    /// [`handle`](Self::handle) with its id.
    pub fn poll_io(&mut self, now: UnixTime) -> Option<(DeliveryId, DeliveryIo)> {
        let &(due, index, slot) = self.timers.first()?;
        if due > now {
            return None;
        }
        self.timers.pop_first();
        let entry = self.entries.get_mut(&index)?;
        let task = entry.task_mut(slot)?;
        task.state = TaskState::InFlight;
        let io = if slot == 0 {
            DeliveryIo::Discover(TxtQuery::new(record_name(&entry.report.policy_domain)))
        } else {
            let (dest, _) = entry.targets.as_ref()?.get(slot as usize - 1)?;
            match dest {
                Dest::Post {
                    url,
                    host,
                    port,
                    path,
                } => DeliveryIo::Post(ReportPost {
                    url: url.clone(),
                    host: host.clone(),
                    port: *port,
                    path: path.clone(),
                    body: entry.report.gzip.clone(),
                    timeout: self.config.post_timeout,
                    max_response: self.config.max_response,
                }),
                Dest::Mail { to } => {
                    let from = if self.config.from.is_empty() {
                        format!("tlsrpt-noreply@{}", entry.report.submitter)
                    } else {
                        self.config.from.clone()
                    };
                    let message_id = format!(
                        "tlsrpt.{:016x}.{slot}@{}",
                        fnv1a(&[
                            entry.report.policy_domain.as_bytes(),
                            entry.report.report_id.as_bytes()
                        ]),
                        entry.report.submitter
                    );
                    DeliveryIo::Mail(report_mail(&entry.report, &from, to, now, &message_id))
                }
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.insert(id, (index, slot));
        Some((DeliveryId(id), io))
    }

    /// Takes the result of the I/O `id` at `now` and says what came of it. An id not handed
    /// out by [`poll_io`](Self::poll_io), or already answered, is ignored (no events).
    pub fn handle(
        &mut self,
        id: DeliveryId,
        result: DeliveryResult,
        now: UnixTime,
    ) -> Vec<DeliveryEvent> {
        let Some((index, slot)) = self.in_flight.remove(&id.0) else {
            return Vec::new();
        };
        let Some(entry) = self.entries.get(&index) else {
            return Vec::new();
        };
        let domain = entry.report.policy_domain.clone();
        let report_id = entry.report.report_id.clone();
        let outcome = if slot == 0 {
            match result {
                DeliveryResult::Discover(Ok(answer)) => match discover(&domain, &answer) {
                    Ok(dests) => {
                        let Some(entry) = self.entries.get_mut(&index) else {
                            return Vec::new();
                        };
                        entry.discovery.state = TaskState::Done;
                        let targets: Vec<(Dest, Task)> =
                            dests.into_iter().map(|d| (d, Task::at(now))).collect();
                        self.timers
                            .extend((1..=targets.len() as u32).map(|slot| (now, index, slot)));
                        entry.targets = Some(targets);
                        return Vec::new();
                    }
                    Err(error) => {
                        self.remove(index);
                        return vec![DeliveryEvent::NoRecord {
                            policy_domain: domain,
                            report_id,
                            error,
                        }];
                    }
                },
                DeliveryResult::Discover(Err(failure)) => Err(failure.to_string()),
                other => Err(format!(
                    "the adapter answered a discovery with {}",
                    other.kind()
                )),
            }
        } else {
            match result {
                DeliveryResult::Post(Ok(response)) if response.is_success() => Ok(()),
                DeliveryResult::Post(Ok(response)) if (300..400).contains(&response.status) => Err(
                    format!("HTTP {} (redirects are not followed)", response.status),
                ),
                DeliveryResult::Post(Ok(response)) => Err(format!("HTTP {}", response.status)),
                DeliveryResult::Post(Err(failure)) => Err(post_failure(&failure)),
                DeliveryResult::Mail(Ok(())) => Ok(()),
                DeliveryResult::Mail(Err(error)) => Err(format!("mail not queued: {error}")),
                other => Err(format!(
                    "the adapter answered a report delivery with {}",
                    other.kind()
                )),
            }
        };
        let event = self.settle(index, slot, outcome, now);
        if self.entries.get(&index).is_some_and(Entry::finished) {
            self.remove(index);
        }
        event.into_iter().collect()
    }

    /// Records the end of an attempt of task `slot`; returns its event.
    fn settle(
        &mut self,
        index: u64,
        slot: u32,
        outcome: Result<(), String>,
        now: UnixTime,
    ) -> Option<DeliveryEvent> {
        let delay = |attempt: u32| {
            let factor = 1u32 << attempt.saturating_sub(1).min(31);
            self.config
                .first_retry
                .saturating_mul(factor)
                .min(self.config.max_retry)
                .max(Duration::from_secs(1))
        };
        let entry = self.entries.get_mut(&index)?;
        let policy_domain = entry.report.policy_domain.clone();
        let report_id = entry.report.report_id.clone();
        let uri = match slot {
            0 => record_name(&policy_domain),
            n => entry.targets.as_ref()?.get(n as usize - 1)?.0.uri(),
        };
        let deadline = entry.deadline;
        let task = entry.task_mut(slot)?;
        let error = match outcome {
            Ok(()) => {
                task.state = TaskState::Done;
                return Some(DeliveryEvent::Delivered {
                    policy_domain,
                    report_id,
                    uri,
                });
            }
            Err(error) => error,
        };
        task.attempt = task.attempt.saturating_add(1);
        let next = now.saturating_add(delay(task.attempt));
        if next >= deadline {
            task.state = TaskState::Done;
            return Some(DeliveryEvent::GaveUp {
                policy_domain,
                report_id,
                uri,
                error,
            });
        }
        task.state = TaskState::Waiting;
        task.next = next;
        let attempt = task.attempt;
        self.timers.insert((next, index, slot));
        Some(DeliveryEvent::Retrying {
            policy_domain,
            report_id,
            uri,
            attempt,
            next,
            error,
        })
    }

    /// When the next I/O is due (perhaps already), or `None` when nothing waits (the outbox is
    /// empty or everything is under way).
    pub fn poll_timeout(&self) -> Option<UnixTime> {
        self.timers.first().map(|&(t, _, _)| t)
    }

    /// The number of reports pending.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no report is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A snapshot of the pending reports, to keep them across restarts: each with its
    /// schedule, its discovered URIs and their attempts. I/O under way is saved as due (it is
    /// tried again after a restart).
    pub fn snapshot(&self) -> OutboxSnapshot {
        let entries = self
            .entries
            .values()
            .map(|e| {
                let task = |t: &Task| TaskSnapshot {
                    attempt: t.attempt,
                    next: t.next.as_secs(),
                    done: t.state == TaskState::Done,
                };
                OutboxEntry {
                    policy_domain: e.report.policy_domain.clone(),
                    submitter: e.report.submitter.clone(),
                    report_id: e.report.report_id.clone(),
                    day_start: e.report.day_start.as_secs(),
                    day_end: e.report.day_end.as_secs(),
                    file_name: e.report.file_name.clone(),
                    gzip: e.report.gzip.clone(),
                    send_at: e.send_at.as_secs(),
                    deadline: e.deadline.as_secs(),
                    discovery: task(&e.discovery),
                    targets: e.targets.as_ref().map(|ts| {
                        ts.iter()
                            .map(|(dest, t)| TargetSnapshot {
                                dest: dest.clone(),
                                task: task(t),
                            })
                            .collect()
                    }),
                }
            })
            .collect();
        OutboxSnapshot {
            format: OUTBOX_SNAPSHOT_FORMAT.to_owned(),
            version: OUTBOX_SNAPSHOT_VERSION,
            entries,
            malformed: 0,
        }
    }

    /// Loads a snapshot taken by [`snapshot`](Self::snapshot) at `now`, keeping every valid
    /// entry. An entry of the wrong shape or inconsistent (empty names, a schedule out of
    /// order, too many URIs, nothing left to do) is skipped; an entry whose retry window has
    /// ended is dropped as expired; entries over the caps are not loaded. Only a snapshot of
    /// another format or version is refused whole.
    ///
    /// ```
    /// use mta_sts_core::UnixTime;
    /// use mta_sts_core::tlsrpt::{Outbox, OutboxConfig, OutboxSnapshot, PendingReport};
    ///
    /// let day_end = UnixTime::from_secs(1_767_311_999);
    /// let mut outbox = Outbox::new(OutboxConfig::default());
    /// outbox.push(PendingReport::new("example.net", "mail.sender.example", "r1",
    ///     UnixTime::from_secs(1_767_225_600), day_end, "f.json.gz", vec![1, 2, 3]), day_end)?;
    /// let json = serde_json::to_string(&outbox.snapshot())?;
    ///
    /// let mut restarted = Outbox::new(OutboxConfig::default());
    /// let snapshot: OutboxSnapshot = serde_json::from_str(&json)?;
    /// assert_eq!(restarted.restore(snapshot, day_end)?.loaded, 1);
    /// assert_eq!(restarted.poll_timeout(), outbox.poll_timeout());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore(
        &mut self,
        snapshot: OutboxSnapshot,
        now: UnixTime,
    ) -> Result<OutboxRestoreReport, OutboxSnapshotError> {
        if snapshot.format != OUTBOX_SNAPSHOT_FORMAT {
            return Err(OutboxSnapshotError::Foreign {
                format: snapshot.format,
            });
        }
        if snapshot.version != OUTBOX_SNAPSHOT_VERSION {
            return Err(OutboxSnapshotError::UnsupportedVersion(snapshot.version));
        }
        let mut report = OutboxRestoreReport {
            skipped: snapshot.malformed,
            ..OutboxRestoreReport::default()
        };
        for e in snapshot.entries {
            let Some(valid) = e.check() else {
                report.skipped += 1;
                continue;
            };
            let (pending, send_at, deadline, discovery, targets) = valid;
            if deadline <= now {
                report.expired += 1;
                continue;
            }
            let before = self.entries.len();
            match self.insert(pending, send_at, deadline, discovery, targets) {
                Ok(()) if self.entries.len() > before => report.loaded += 1,
                Ok(()) => report.skipped += 1,
                Err(_) => report.not_loaded += 1,
            }
        }
        Ok(report)
    }
}

/// The waiting tasks of an entry: (slot, due time).
fn waiting(entry: &Entry) -> impl Iterator<Item = (u32, UnixTime)> + '_ {
    let discovery = core::iter::once((0, &entry.discovery));
    let targets = entry
        .targets
        .iter()
        .flatten()
        .zip(1u32..)
        .map(|((_, t), slot)| (slot, t));
    discovery
        .chain(targets)
        .filter(|(_, t)| t.state == TaskState::Waiting)
        .map(|(slot, t)| (slot, t.next))
}

impl DeliveryResult {
    fn kind(&self) -> &'static str {
        match self {
            Self::Discover(_) => "a DNS answer",
            Self::Post(_) => "a POST result",
            Self::Mail(_) => "a mail result",
        }
    }
}

/// A failed POST, described for the operator (the [`FetchFailure`] texts speak of a policy
/// host).
fn post_failure(failure: &FetchFailure) -> String {
    match failure {
        FetchFailure::Resolve(d) => format!("report endpoint does not resolve: {d}"),
        FetchFailure::Connect(d) => format!("cannot connect to the report endpoint: {d}"),
        FetchFailure::Certificate(p) => format!("report endpoint certificate: {p}"),
        FetchFailure::Tls(d) => format!("TLS error with the report endpoint: {d}"),
        FetchFailure::Timeout => "the report POST timed out".to_owned(),
        FetchFailure::BodyTooLarge { limit } => format!("response body over {limit} bytes"),
        FetchFailure::Redirect(s) => format!("HTTP {s} (redirects are not followed)"),
        FetchFailure::Status(s) => format!("HTTP {s}"),
        FetchFailure::ContentType(ct) => format!("unexpected response media type {ct:?}"),
        FetchFailure::Protocol(d) => format!("invalid HTTP response: {d}"),
    }
}

/// The URIs to deliver to, from the answer for `_smtp._tls.<domain>` (RFC 8460 §3, the
/// default profile of [`TlsRptRecord::discover`]); or why there are none.
fn discover(domain: &str, answer: &TxtAnswer) -> Result<Vec<Dest>, String> {
    let name = record_name(domain);
    let records = match answer {
        TxtAnswer::Records(records) => records,
        TxtAnswer::NxDomain { .. } => return Err(format!("{name} does not exist (NXDOMAIN)")),
        TxtAnswer::NoData { .. } => return Err(format!("{name} has no TXT record")),
    };
    let record = TlsRptRecord::discover(records).map_err(|e| format!("{name}: {e}"))?;
    let mut dests: Vec<Dest> = Vec::with_capacity(record.rua().len());
    for uri in record.rua() {
        let dest = match uri {
            ReportUri::Mailto(to) => Dest::Mail { to: to.clone() },
            ReportUri::Https {
                url,
                host,
                port,
                path,
            } => Dest::Post {
                url: url.clone(),
                host: host.clone(),
                port: *port,
                path: path.clone(),
            },
        };
        if !dests.contains(&dest) {
            dests.push(dest);
        }
    }
    Ok(dests)
}

/// The pending reports of an [`Outbox`], to keep them across restarts ([`Outbox::snapshot`],
/// [`Outbox::restore`]).
///
/// It implements serde's `Serialize` and `Deserialize`, so an adapter stores it in any serde
/// format (JSON with `serde_json`). An entry of the wrong shape does not refuse the document:
/// it is left out and counted ([`OutboxRestoreReport::skipped`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxSnapshot {
    format: String,
    version: u32,
    entries: Vec<OutboxEntry>,
    #[serde(skip)]
    malformed: usize,
}

impl OutboxSnapshot {
    /// The number of reports in it (those of the wrong shape left out).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds no report.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries of the document had the wrong shape and were left out.
    pub fn malformed(&self) -> usize {
        self.malformed
    }
}

impl<'de> Deserialize<'de> for OutboxSnapshot {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Document {
            format: String,
            version: u32,
            entries: Lenient<OutboxEntry>,
        }
        let document = Document::deserialize(deserializer)?;
        Ok(Self {
            format: document.format,
            version: document.version,
            entries: document.entries.items,
            malformed: document.entries.malformed.len(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxEntry {
    policy_domain: String,
    submitter: String,
    report_id: String,
    day_start: u64,
    day_end: u64,
    file_name: String,
    gzip: Vec<u8>,
    send_at: u64,
    deadline: u64,
    discovery: TaskSnapshot,
    targets: Option<Vec<TargetSnapshot>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskSnapshot {
    attempt: u32,
    next: u64,
    done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSnapshot {
    dest: Dest,
    task: TaskSnapshot,
}

type Restored = (
    PendingReport,
    UnixTime,
    UnixTime,
    Task,
    Option<Vec<(Dest, Task)>>,
);

impl OutboxEntry {
    /// The entry as outbox state, if it is consistent.
    fn check(self) -> Option<Restored> {
        let task = |t: TaskSnapshot| Task {
            attempt: t.attempt,
            next: UnixTime::from_secs(t.next),
            state: if t.done {
                TaskState::Done
            } else {
                TaskState::Waiting
            },
        };
        let consistent = !self.policy_domain.is_empty()
            && !self.report_id.is_empty()
            && self.day_start <= self.day_end
            && self.send_at <= self.deadline
            // Discovered exactly when there are URIs, not more than the cap, something left.
            && self.discovery.done == self.targets.is_some()
            && self.targets.as_ref().is_none_or(|ts| {
                !ts.is_empty()
                    && ts.len() <= MAX_URIS
                    && ts.iter().any(|t| !t.task.done)
            });
        if !consistent {
            return None;
        }
        let report = PendingReport::new(
            self.policy_domain,
            self.submitter,
            self.report_id,
            UnixTime::from_secs(self.day_start),
            UnixTime::from_secs(self.day_end),
            self.file_name,
            self.gzip,
        );
        let targets = self
            .targets
            .map(|ts| ts.into_iter().map(|t| (t.dest, task(t.task))).collect());
        Some((
            report,
            UnixTime::from_secs(self.send_at),
            UnixTime::from_secs(self.deadline),
            task(self.discovery),
            targets,
        ))
    }
}

/// Why [`Outbox::restore`] refused a whole snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboxSnapshotError {
    /// The format tag is not [`OUTBOX_SNAPSHOT_FORMAT`].
    Foreign {
        /// The tag found.
        format: String,
    },
    /// A version this crate does not read.
    UnsupportedVersion(u32),
}

impl fmt::Display for OutboxSnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Foreign { format } => {
                write!(f, "not a TLSRPT outbox snapshot (format {format:?})")
            }
            Self::UnsupportedVersion(v) => write!(f, "unsupported outbox snapshot version {v}"),
        }
    }
}

impl std::error::Error for OutboxSnapshotError {}

/// What [`Outbox::restore`] did with a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxRestoreReport {
    /// Reports loaded.
    pub loaded: usize,
    /// Reports whose retry window had ended.
    pub expired: usize,
    /// Entries of the wrong shape, inconsistent, or repeating a pending report.
    pub skipped: usize,
    /// Valid entries over [`OutboxConfig::max_reports`] or [`OutboxConfig::max_bytes`].
    pub not_loaded: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};

    fn report() -> PendingReport {
        PendingReport::new(
            "example.net",
            "mail.sender.example",
            "2026-01-01.example.net.1",
            UnixTime::from_secs(1_767_225_600),
            UnixTime::from_secs(1_767_311_999),
            "mail.sender.example!example.net!1767225600!1767311999!1.json.gz",
            // Bytes that need base64 (and contain every value once).
            (0..=255u8).chain(0..=255u8).collect(),
        )
    }

    fn mail() -> ReportMail {
        report_mail(
            &report(),
            "tlsrpt@mail.sender.example",
            "reports@example.net",
            UnixTime::from_secs(1_767_240_000), // 2026-01-01T04:00:00Z
            "<tlsrpt.1@mail.sender.example>",
        )
    }

    fn header<'a>(message: &'a mail_parser::Message<'a>, name: &'a str) -> Option<&'a str> {
        message.header(name).and_then(HeaderValue::as_text)
    }

    #[test]
    fn t9_mail_parsed_back() {
        let mail = mail();
        assert_eq!(mail.to, "reports@example.net");
        assert_eq!(mail.from, "tlsrpt@mail.sender.example");
        let raw = String::from_utf8(mail.message.clone()).expect("ASCII");
        // CRLF line ends only, lines within RFC 5322's limit.
        assert!(!raw.replace("\r\n", "").contains(['\r', '\n']));
        assert!(raw.split("\r\n").all(|l| l.len() <= 998));
        // The Subject as §5.3 writes it: words, not encoded-words, folded at a space.
        assert!(!raw.contains("=?"), "{raw}");
        assert!(
            raw.replace("\r\n\t", "").contains(
                "\r\nSubject: Report Domain: example.net Submitter: mail.sender.example \
                 Report-ID: <2026-01-01.example.net.1@mail.sender.example>\r\n"
            ),
            "{raw}"
        );

        let message = MessageParser::default()
            .parse(&mail.message)
            .expect("a message");
        let addr = |a: Option<&Address<'_>>| {
            a.and_then(Address::first)
                .and_then(|a| a.address())
                .map(str::to_owned)
        };
        assert_eq!(
            addr(message.from()).as_deref(),
            Some("tlsrpt@mail.sender.example")
        );
        assert_eq!(addr(message.to()).as_deref(), Some("reports@example.net"));
        assert_eq!(
            message.subject(),
            Some(
                "Report Domain: example.net Submitter: mail.sender.example \
                 Report-ID: <2026-01-01.example.net.1@mail.sender.example>"
            )
        );
        assert_eq!(message.message_id(), Some("tlsrpt.1@mail.sender.example"));
        assert_eq!(
            message.date().map(|d| d.to_timestamp()),
            Some(1_767_240_000)
        );
        assert_eq!(header(&message, "TLS-Report-Domain"), Some("example.net"));
        assert_eq!(
            header(&message, "TLS-Report-Submitter"),
            Some("mail.sender.example")
        );
        assert_eq!(header(&message, "TLS-Required"), Some("No"));

        let ct = message.content_type().expect("Content-Type");
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("tlsrpt"));

        // The human-readable part first, then the report.
        assert_eq!(message.text_body_count(), 1);
        let text = message.body_text(0).expect("a text part");
        assert!(text.contains("from mail.sender.example"), "{text}");
        assert!(text.contains("2026-01-01T00:00:00Z"), "{text}");
        assert_eq!(message.attachment_count(), 1);
        let part = message.attachment(0).expect("the report");
        let ct = part.content_type().expect("its Content-Type");
        assert_eq!(
            (ct.ctype(), ct.subtype()),
            ("application", Some("tlsrpt+gzip"))
        );
        assert_eq!(
            part.attachment_name(),
            Some("mail.sender.example!example.net!1767225600!1767311999!1.json.gz")
        );
        assert_eq!(part.content_transfer_encoding(), Some("base64"));
        assert_eq!(part.contents(), report().gzip.as_slice());
    }

    #[test]
    fn t9_mail_is_deterministic_and_cannot_be_injected() {
        assert_eq!(mail(), mail());
        // A report id with an "@" is the Report-ID as it is.
        let mut r = report();
        r.report_id = "abc@sender.example".into();
        let m = report_mail(&r, "a@b.example", "c@d.example", UnixTime::EPOCH, "x@y");
        let parsed = MessageParser::default()
            .parse(&m.message)
            .expect("a message");
        assert!(
            parsed
                .subject()
                .is_some_and(|s| s.ends_with("Report-ID: <abc@sender.example>"))
        );

        // Names and addresses with line ends and spaces cannot add header fields.
        let mut evil = report();
        evil.policy_domain = "example.net\r\nBcc: victim@example.org".into();
        evil.submitter = "s.example\nX-Injected: 1".into();
        evil.file_name = "a\"b\r\nc.json.gz".into();
        let m = report_mail(
            &evil,
            "a@b.example\r\nX-From-Injected: 1",
            "c@d.example\r\nCc: x@y.example",
            UnixTime::MAX,
            "id\r\nX-Id: 1",
        );
        let raw = String::from_utf8_lossy(&m.message);
        for injected in [
            "\nBcc:",
            "\nX-Injected:",
            "\nX-From-Injected:",
            "\nCc:",
            "\nX-Id:",
        ] {
            assert!(!raw.contains(injected), "{injected}: {raw}");
        }
        let parsed = MessageParser::default()
            .parse(&m.message)
            .expect("a message");
        assert_eq!(
            header(&parsed, "TLS-Report-Domain"),
            Some("example.netBcc:victim@example.org")
        );
        // The date is capped, not wrapped.
        assert_eq!(
            parsed.date().map(|d| d.year),
            Some(9999),
            "{:?}",
            parsed.date()
        );
    }

    #[test]
    fn t9_day_report_mailed_and_posted() {
        use super::super::{Aggregator, Reporter, Session, SessionPolicy, SessionResult};
        use std::io::Read as _;

        let mut aggregator = Aggregator::new(Default::default());
        let time = UnixTime::from_secs(1_767_225_600 + 3_600);
        let policy = SessionPolicy::no_policy_found("example.net");
        let _ = aggregator.record(&Session::new(time, policy, SessionResult::Success));
        let reporter = Reporter::new("Example Org", "tlsrpt@sender.example", "sender.example");
        let days = aggregator.close(UnixTime::from_secs(1_767_312_000), &reporter);
        let [day] = &days[..] else { panic!("{days:?}") };
        let pending = PendingReport::from(day);
        assert_eq!(pending.file_name, day.file_name());
        assert_eq!(pending.report_id, day.report_id());

        let mut outbox = Outbox::new(OutboxConfig::default());
        outbox.push(pending, day.day_end).expect("room");
        let now = outbox.poll_timeout().expect("scheduled");
        let (id, _) = outbox.poll_io(now).expect("discovery");
        let record = b"v=TLSRPTv1; rua=mailto:tlsrpt@example.net,https://r.example.net/".to_vec();
        let answer = DeliveryResult::Discover(Ok(TxtAnswer::Records(vec![record])));
        assert!(outbox.handle(id, answer, now).is_empty());

        let Some((_, DeliveryIo::Mail(mail))) = outbox.poll_io(now) else {
            panic!("the mail first, in record order")
        };
        let message = MessageParser::default()
            .parse(&mail.message)
            .expect("a message");
        assert_eq!(
            header(&message, "TLS-Report-Submitter"),
            Some("sender.example")
        );
        let subject = message.subject().expect("Subject");
        assert!(
            subject.contains(&format!("Report-ID: <{}", day.report_id())),
            "{subject}"
        );
        let part = message.attachment(0).expect("the report");
        assert_eq!(part.attachment_name(), Some(day.file_name().as_str()));
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(part.contents())
            .read_to_end(&mut json)
            .expect("gzip");
        assert_eq!(json, day.json());

        let Some((_, DeliveryIo::Post(post))) = outbox.poll_io(now) else {
            panic!("then the POST")
        };
        assert_eq!(post.body, day.gzip());
    }
}
