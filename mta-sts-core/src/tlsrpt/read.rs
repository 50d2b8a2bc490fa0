//! The reader of received TLSRPT reports (RFC 8460 §4.4, §5.3): a JSON report, a gzipped one,
//! or a whole mail with the report attached, read into a [`Report`] with the warnings real
//! reporters earn.
//!
//! [`read_report`] is a pure function over bytes with a limit on everything ([`ReadLimits`]):
//! the input, the gunzipped size (a gzip bomb stops at the cap, in bounded memory), the JSON's
//! nesting and the length of its arrays. What a report gets wrong but can still be read
//! (totals that disagree with the details, empty fields, dates off the UTC day, unknown names,
//! a mail without the §5.3 headers) is a [`ReportWarning`], never a refusal.

use core::cell::Cell;
use core::fmt;
use std::collections::HashMap;
use std::io::Read as _;

use flate2::read::MultiGzDecoder;
use mail_parser::{Message, MessageParser, MimeHeaders as _, PartType};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Unexpected, Visitor};

use super::model::{PolicyType, Report, ResultType};
use crate::UnixTime;
use crate::mx::truncate_for_display;

/// The most warnings [`validate`] and [`read_report`] list; the rest are counted in a last
/// [`ReportWarningKind::Omitted`].
pub const MAX_WARNINGS: usize = 1000;

/// Longest quoted text (a name, a media type) kept in a warning or an error, in characters.
const MAX_QUOTED: usize = 64;

/// The most MIME parts named in [`ReadErrorKind::NoReportPart`].
const MAX_LISTED_PARTS: usize = 20;

/// Limits on what [`read_report`] accepts. Each bounds time or memory; the defaults are far
/// above any real report (Google's and Microsoft's daily reports are a few KiB).
///
/// ```
/// use mta_sts_core::tlsrpt::ReadLimits;
///
/// let mut limits = ReadLimits::default();
/// limits.max_decompressed = 1 << 20;
/// assert_eq!(limits.max_depth, 32);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadLimits {
    /// Largest input, in bytes (default 32 MiB): the JSON, the gzip file or the whole mail.
    pub max_input: usize,
    /// Largest report after gunzip, in bytes (default 16 MiB). Decompression stops there.
    pub max_decompressed: usize,
    /// Most entries of `policies` (default 10,000).
    pub max_policies: usize,
    /// Most entries of `failure-details`, all policies together (default 100,000).
    pub max_failure_details: usize,
    /// Deepest nesting of JSON arrays and objects (default 32; a report needs 5). serde_json's
    /// own limit of 128 applies above that.
    pub max_depth: usize,
    /// Most strings in `policy-string` and `mx-host` arrays, all policies together (default
    /// 100,000).
    pub max_strings: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_input: 32 << 20,
            max_decompressed: 16 << 20,
            max_policies: 10_000,
            max_failure_details: 100_000,
            max_depth: 32,
            max_strings: 100_000,
        }
    }
}

/// What [`read_report`] found the report in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReportFormat {
    /// The JSON report itself (`.json`, `application/tlsrpt+json` over HTTPS).
    Json,
    /// A gzipped JSON report (`.json.gz`, `application/tlsrpt+gzip` over HTTPS).
    Gzip,
    /// A mail (RFC 8460 §5.3) with the report attached, gzipped or not.
    Mail,
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "JSON",
            Self::Gzip => "gzip",
            Self::Mail => "mail",
        })
    }
}

/// A report as [`read_report`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadReport {
    /// The report, as written (names and times uninterpreted; see [`validate`]).
    pub report: Report,
    /// What the report came in.
    pub format: ReportFormat,
    /// What the report (and its mail) gets wrong: [`validate`]'s warnings, after the mail's own.
    pub warnings: Vec<ReportWarning>,
}

/// Something a report gets wrong that does not stop it being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportWarning {
    path: String,
    kind: ReportWarningKind,
}

impl ReportWarning {
    /// Where: a JSON path such as `policies[2].failure-details[0].result-type`, or `message`,
    /// `message header TLS-Report-Domain`, `message part 2` for the mail around the report.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong.
    pub fn kind(&self) -> &ReportWarningKind {
        &self.kind
    }
}

impl fmt::Display for ReportWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.kind)
    }
}

/// The kinds of [`ReportWarning`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportWarningKind {
    /// A field RFC 8460 §4.4 requires is missing, `null` or empty.
    Missing {
        /// The field's name, e.g. `organization-name`.
        field: &'static str,
    },
    /// A `policy-type` that is not `sts`, `tlsa` or `no-policy-found`.
    UnknownPolicyType {
        /// The name found (shortened if long).
        found: String,
    },
    /// A `result-type` that is not one of §4.3.
    UnknownResultType {
        /// The name found (shortened if long).
        found: String,
    },
    /// A date-time that is not RFC 3339 (e.g. `2024-05-01 00:00:00`, no zone).
    NotRfc3339 {
        /// The text found (shortened if long).
        found: String,
    },
    /// `start-datetime` is not midnight UTC (§4.1: reports cover whole UTC days).
    StartNotMidnight {
        /// The text found (shortened if long).
        found: String,
    },
    /// `end-datetime` is neither 23:59:59Z nor the next midnight UTC.
    EndNotEndOfDay {
        /// The text found (shortened if long).
        found: String,
    },
    /// The range is not one day (86,399 or 86,400 seconds).
    NotOneDay {
        /// The range's length in seconds.
        seconds: u64,
    },
    /// `end-datetime` is before `start-datetime`.
    EndBeforeStart,
    /// `total-failure-session-count` is not the sum of the details' `failed-session-count`.
    TotalsDisagree {
        /// `total-failure-session-count`.
        total: u64,
        /// The sum of `failed-session-count` over `failure-details`.
        sum: u128,
    },
    /// An `sts` policy without `policy-string` or `mx-host` (§4.4 asks for both).
    StsPolicyWithout {
        /// `policy-string` or `mx-host`.
        field: &'static str,
    },
    /// A negotiation failure (§4.3.1) that does not say which MX it was.
    NegotiationFailureWithout {
        /// `receiving-mx-hostname` or `receiving-ip`.
        field: &'static str,
        /// The failure's result type.
        result_type: ResultType,
    },
    /// The same policy (type, domain, strings, MX patterns) as an earlier entry of `policies`.
    DuplicatePolicy {
        /// The index of the first entry with this policy.
        first: usize,
    },
    /// The mail is not `multipart/report; report-type=tlsrpt` (§5.3).
    NotTlsrptMultipartReport {
        /// The mail's `Content-Type` media type and `report-type` (shortened), or `none`.
        found: String,
    },
    /// A header §5.3 requires (`TLS-Report-Domain`, `TLS-Report-Submitter`) is missing or empty.
    MissingHeader {
        /// The header's name.
        name: &'static str,
    },
    /// A §5.3 header disagrees with the report: `TLS-Report-Domain` names none of its policy
    /// domains, or `TLS-Report-Submitter` is not the domain of `contact-info`.
    HeaderDisagrees {
        /// The header's name.
        name: &'static str,
        /// The header's value (shortened if long).
        value: String,
        /// What the report says instead (shortened if long).
        report: String,
    },
    /// The report part has a media type other than `application/tlsrpt+gzip` or
    /// `application/tlsrpt+json` (§5.3); it was read anyway.
    UnusualMediaType {
        /// The part's media type.
        media_type: String,
        /// The part's file name, if any (shortened if long).
        filename: Option<String>,
    },
    /// The report part's content is not what its media type says (gzip declared, JSON found,
    /// or the other way round); it was read as what it is.
    ContentMismatch {
        /// The part's media type.
        media_type: String,
        /// What the content is: `gzip` or `JSON`.
        found: ReportFormat,
    },
    /// The mail has more than one report part; the first was read.
    MoreReportParts {
        /// How many report parts there are.
        count: usize,
    },
    /// More warnings than [`MAX_WARNINGS`]: the rest are only counted.
    Omitted {
        /// How many were left out.
        count: usize,
    },
}

impl fmt::Display for ReportWarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { .. } => f.write_str("missing or empty"),
            Self::UnknownPolicyType { found } => write!(
                f,
                "unknown policy type {found:?} (RFC 8460: sts, tlsa, no-policy-found)"
            ),
            Self::UnknownResultType { found } => {
                write!(
                    f,
                    "unknown result type {found:?} (not one of RFC 8460 §4.3)"
                )
            }
            Self::NotRfc3339 { found } => write!(f, "{found:?} is not an RFC 3339 date-time"),
            Self::StartNotMidnight { found } => {
                write!(
                    f,
                    "{found:?} is not midnight UTC (a report covers a UTC day)"
                )
            }
            Self::EndNotEndOfDay { found } => write!(
                f,
                "{found:?} is neither 23:59:59Z nor the next midnight UTC (a report covers a UTC day)"
            ),
            Self::NotOneDay { seconds } => {
                write!(f, "the range is {seconds} s long, not one day")
            }
            Self::EndBeforeStart => f.write_str("end-datetime is before start-datetime"),
            Self::TotalsDisagree { total, sum } => write!(
                f,
                "total-failure-session-count is {total} but the failure details add up to {sum}"
            ),
            Self::StsPolicyWithout { field } => {
                write!(f, "an sts policy without {field}")
            }
            Self::NegotiationFailureWithout { field, result_type } => {
                write!(f, "a {result_type} failure without {field}")
            }
            Self::DuplicatePolicy { first } => {
                write!(f, "the same policy as policies[{first}]")
            }
            Self::NotTlsrptMultipartReport { found } => write!(
                f,
                "the mail is {found}, not multipart/report; report-type=tlsrpt (RFC 8460 §5.3)"
            ),
            Self::MissingHeader { .. } => f.write_str("missing or empty (RFC 8460 §5.3)"),
            Self::HeaderDisagrees {
                name,
                value,
                report,
            } => write!(f, "{name} is {value:?} but the report says {report:?}"),
            Self::UnusualMediaType {
                media_type,
                filename,
            } => {
                write!(f, "the report is in a part of type {media_type}")?;
                if let Some(name) = filename {
                    write!(f, " named {name:?}")?;
                }
                f.write_str(", not application/tlsrpt+gzip or application/tlsrpt+json; read anyway")
            }
            Self::ContentMismatch { media_type, found } => {
                write!(f, "the {media_type} part holds {found}; read as {found}")
            }
            Self::MoreReportParts { count } => {
                write!(f, "{count} report parts; the first was read")
            }
            Self::Omitted { count } => write!(f, "{count} more warnings not listed"),
        }
    }
}

/// Why [`read_report`] could not read a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    kind: ReadErrorKind,
    within: Option<String>,
    line: Option<usize>,
    column: Option<usize>,
}

impl ReadError {
    fn new(kind: ReadErrorKind) -> Self {
        Self {
            kind,
            within: None,
            line: None,
            column: None,
        }
    }

    fn within(mut self, what: impl FnOnce() -> String) -> Self {
        if self.within.is_none() {
            self.within = Some(what());
        }
        self
    }

    /// What is wrong.
    pub fn kind(&self) -> &ReadErrorKind {
        &self.kind
    }

    /// Where in the input the JSON was, when it was not the input itself: e.g. `gunzipped
    /// report` or `message part 2 (application/tlsrpt+gzip "x.json.gz"), gunzipped`.
    pub fn within_part(&self) -> Option<&str> {
        self.within.as_deref()
    }

    /// The 1-based line in the JSON, for JSON errors.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The 1-based column (in bytes) in the JSON, for JSON errors.
    pub fn column(&self) -> Option<usize> {
        self.column
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(within) = &self.within {
            write!(f, "{within}: ")?;
        }
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, "JSON line {line} column {column}: ")?;
        }
        self.kind.fmt(f)
    }
}

impl std::error::Error for ReadError {}

/// The kinds of [`ReadError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadErrorKind {
    /// The input is empty (or only white space).
    Empty,
    /// The input is larger than [`ReadLimits::max_input`].
    TooLarge {
        /// The input's size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The input is neither JSON, gzip nor a mail.
    UnknownFormat {
        /// Its first bytes, escaped.
        start: String,
    },
    /// The gzip data is corrupt or truncated.
    Gzip {
        /// What flate2 said.
        message: String,
    },
    /// The gunzipped report would be larger than [`ReadLimits::max_decompressed`]; reading
    /// stopped there.
    TooLargeDecompressed {
        /// The limit.
        max: usize,
    },
    /// The JSON is not UTF-8 (RFC 8259 §8.1); the position is the first bad byte.
    NotUtf8,
    /// The JSON is not JSON (or ends early).
    Syntax {
        /// What serde_json said, without the position.
        message: String,
    },
    /// The JSON is not a report: a value of the wrong type, e.g. a string for a count.
    Schema {
        /// What serde_json said, without the position.
        message: String,
    },
    /// Arrays and objects nested deeper than [`ReadLimits::max_depth`].
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// More `policies` than [`ReadLimits::max_policies`].
    TooManyPolicies {
        /// The limit.
        max: usize,
    },
    /// More `failure-details` than [`ReadLimits::max_failure_details`].
    TooManyFailureDetails {
        /// The limit.
        max: usize,
    },
    /// More `policy-string` and `mx-host` strings than [`ReadLimits::max_strings`].
    TooManyStrings {
        /// The limit.
        max: usize,
    },
    /// The mail has no part that holds a report.
    NoReportPart {
        /// The parts it has: media type and file name (the first 20).
        parts: Vec<String>,
        /// How many more parts there are.
        more: usize,
    },
}

impl fmt::Display for ReadErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty input"),
            Self::TooLarge { size, max } => {
                write!(f, "the input is {size} bytes, more than the limit of {max}")
            }
            Self::UnknownFormat { start } => write!(
                f,
                "neither a JSON report, gzip nor a mail (it begins with \"{start}\")"
            ),
            Self::Gzip { message } => write!(f, "gzip: {message}"),
            Self::TooLargeDecompressed { max } => write!(
                f,
                "the gunzipped report is larger than the limit of {max} bytes"
            ),
            Self::NotUtf8 => f.write_str("the JSON is not UTF-8"),
            Self::Syntax { message } => write!(f, "not JSON: {message}"),
            Self::Schema { message } => write!(f, "not a TLSRPT report: {message}"),
            Self::TooDeep { max } => {
                write!(
                    f,
                    "arrays and objects nested deeper than the limit of {max}"
                )
            }
            Self::TooManyPolicies { max } => {
                write!(f, "more policies than the limit of {max}")
            }
            Self::TooManyFailureDetails { max } => {
                write!(f, "more failure-details than the limit of {max}")
            }
            Self::TooManyStrings { max } => write!(
                f,
                "more policy-string and mx-host strings than the limit of {max}"
            ),
            Self::NoReportPart { parts, more } => {
                f.write_str(
                    "the mail has no application/tlsrpt+gzip or application/tlsrpt+json part (",
                )?;
                if parts.is_empty() {
                    f.write_str("no parts")?;
                } else {
                    f.write_str("parts: ")?;
                    for (i, p) in parts.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        f.write_str(p)?;
                    }
                    if *more > 0 {
                        write!(f, " and {more} more")?;
                    }
                }
                f.write_str(")")
            }
        }
    }
}

/// Reads a received TLSRPT report: JSON, gzipped JSON, or a whole mail (RFC 8460 §5.3) with
/// the report attached; which one is told from the bytes. The report is then checked by
/// [`validate`], whose warnings follow the mail's own.
///
/// Everything is bounded by `limits`; hostile input (a gzip bomb, deep or huge JSON, wrong
/// types, non-UTF-8, a mail without a report) gives a typed [`ReadError`], never a panic.
///
/// ```
/// use mta_sts_core::tlsrpt::{read_report, ReadLimits, ReportFormat, ReportWarningKind};
///
/// let json = br#"{"organization-name":"Company-X",
///   "date-range":{"start-datetime":"2016-04-01T00:00:00Z","end-datetime":"2016-04-01T23:59:59Z"},
///   "contact-info":"sts-reporting@company-x.example","report-id":"5065427c",
///   "policies":[{"policy":{"policy-type":"sts","policy-domain":"company-y.example",
///       "policy-string":["version: STSv1","mode: testing","mx: *.mail.company-y.example","max_age: 86400"],
///       "mx-host":"*.mail.company-y.example"},
///     "summary":{"total-successful-session-count":5326,"total-failure-session-count":3},
///     "failure-details":[{"result-type":"validation-failure","sending-mta-ip":"198.51.100.62",
///       "receiving-ip":"203.0.113.58","receiving-mx-hostname":"mx-backup.mail.company-y.example",
///       "failed-session-count":2}]}]}"#;
/// let read = read_report(json, &ReadLimits::default())?;
/// assert_eq!(read.format, ReportFormat::Json);
/// assert_eq!(read.report.policies[0].summary.total_successful_session_count, 5326);
/// // 3 failures in the summary, 2 in the details: read, with a warning.
/// assert_eq!(read.warnings.len(), 1);
/// assert_eq!(
///     read.warnings[0].to_string(),
///     "policies[0].summary.total-failure-session-count: \
///      total-failure-session-count is 3 but the failure details add up to 2"
/// );
/// assert!(matches!(read.warnings[0].kind(), ReportWarningKind::TotalsDisagree { total: 3, sum: 2 }));
/// # Ok::<(), mta_sts_core::tlsrpt::ReadError>(())
/// ```
pub fn read_report(bytes: &[u8], limits: &ReadLimits) -> Result<ReadReport, ReadError> {
    if bytes.len() > limits.max_input {
        return Err(ReadError::new(ReadErrorKind::TooLarge {
            size: bytes.len(),
            max: limits.max_input,
        }));
    }
    let (report, format, warnings) = if is_gzip(bytes) {
        let json = gunzip(bytes, limits)?;
        let report =
            parse_json(&json, limits).map_err(|e| e.within(|| "gunzipped report".to_owned()))?;
        (report, ReportFormat::Gzip, Vec::new())
    } else {
        match skip_bom_and_space(bytes).first() {
            None => return Err(ReadError::new(ReadErrorKind::Empty)),
            Some(b'{') => (parse_json(bytes, limits)?, ReportFormat::Json, Vec::new()),
            Some(_) => {
                let (report, warnings) = read_mail(bytes, limits)?;
                (report, ReportFormat::Mail, warnings)
            }
        }
    };
    let mut collected = Warnings {
        list: warnings,
        omitted: 0,
    };
    validate_into(&report, &mut collected);
    Ok(ReadReport {
        report,
        format,
        warnings: collected.finish(),
    })
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// The bytes after a UTF-8 byte order mark and JSON white space.
fn skip_bom_and_space(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Gunzips at most `max_decompressed + 1` bytes: a bomb stops at the cap, in bounded memory.
fn gunzip(bytes: &[u8], limits: &ReadLimits) -> Result<Vec<u8>, ReadError> {
    let max = limits.max_decompressed;
    let cap = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    match MultiGzDecoder::new(bytes).take(cap).read_to_end(&mut out) {
        Ok(_) if out.len() > max => {
            Err(ReadError::new(ReadErrorKind::TooLargeDecompressed { max }))
        }
        Ok(_) => Ok(out),
        Err(e) => Err(ReadError::new(ReadErrorKind::Gzip {
            message: if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "truncated (the data ends before the gzip trailer)".to_owned()
            } else {
                e.to_string()
            },
        })),
    }
}

/// Reads the JSON report: UTF-8 check, a bounded scan (depth, array lengths, objects where
/// the report has objects), then serde_json into the model.
fn parse_json(bytes: &[u8], limits: &ReadLimits) -> Result<Report, ReadError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = match core::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let (line, column) = line_column(bytes, e.valid_up_to());
            let mut err = ReadError::new(ReadErrorKind::NotUtf8);
            err.line = Some(line);
            err.column = Some(column);
            return Err(err);
        }
    };
    if skip_bom_and_space(bytes).is_empty() {
        return Err(ReadError::new(ReadErrorKind::Empty));
    }
    let state = ScanState {
        limits,
        policies: Cell::new(0),
        details: Cell::new(0),
        strings: Cell::new(0),
        hit: Cell::new(None),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let scan = Scan {
        slot: Slot::Root,
        depth: 0,
        state: &state,
    };
    scan.deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| json_error(bytes, &e, state.hit.get()))?;
    serde_json::from_str::<Report>(text).map_err(|e| json_error(bytes, &e, None))
}

/// The 1-based line and byte column of `offset`.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, column)
}

fn json_error(text: &[u8], e: &serde_json::Error, hit: Option<LimitHit>) -> ReadError {
    let message = || {
        let text = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
    };
    let kind = match hit {
        Some(LimitHit::Depth(max)) => ReadErrorKind::TooDeep { max },
        Some(LimitHit::Policies(max)) => ReadErrorKind::TooManyPolicies { max },
        Some(LimitHit::Details(max)) => ReadErrorKind::TooManyFailureDetails { max },
        Some(LimitHit::Strings(max)) => ReadErrorKind::TooManyStrings { max },
        None => match e.classify() {
            serde_json::error::Category::Data => ReadErrorKind::Schema { message: message() },
            _ => {
                let message = message();
                if message == "recursion limit exceeded" {
                    ReadErrorKind::TooDeep { max: 128 }
                } else {
                    ReadErrorKind::Syntax { message }
                }
            }
        },
    };
    let mut err = ReadError::new(kind);
    if e.line() > 1 && e.column() == 0 {
        // serde_json puts a line break at column 0 of the next line: say where it is.
        let starts = core::iter::once(0).chain(
            text.iter()
                .enumerate()
                .filter(|&(_, &b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        if let Some(start) = starts.clone().nth(e.line() - 2) {
            let end = starts
                .clone()
                .nth(e.line() - 1)
                .map_or(text.len(), |s| s - 1);
            err.line = Some(e.line() - 1);
            err.column = Some(end - start + 1);
        }
    } else if e.line() > 0 {
        err.line = Some(e.line());
        err.column = Some(e.column());
    }
    err
}

/// Where a JSON value sits in the report, as far as the scan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The report object.
    Root,
    /// `policies`.
    Policies,
    /// An entry of `policies`.
    Policy,
    /// `policies[].policy`.
    Description,
    /// `policies[].failure-details`.
    Details,
    /// `policy-string`, `mx-host`, `mx-host-pattern`.
    Strings,
    /// Another object of the model: `date-range`, `summary`, an entry of `failure-details`.
    Object,
    /// Anything else (unknown fields, strings, numbers).
    Other,
}

impl Slot {
    /// The slot of the value under `key` in an object in this slot.
    fn child(self, key: &str) -> Self {
        match (self, key) {
            (Self::Root, "policies") => Self::Policies,
            (Self::Root, "date-range") | (Self::Policy, "summary") => Self::Object,
            (Self::Policy, "policy") => Self::Description,
            (Self::Policy, "failure-details") => Self::Details,
            (Self::Description, "policy-string" | "mx-host" | "mx-host-pattern") => Self::Strings,
            _ => Self::Other,
        }
    }

    /// A slot where the model has a struct: serde would also read a struct from an array, which
    /// would let its fields' arrays past the counts, so only an object is accepted there.
    fn wants_object(self) -> bool {
        matches!(
            self,
            Self::Root | Self::Policy | Self::Description | Self::Object
        )
    }
}

/// A limit the scan hit, with its value.
#[derive(Debug, Clone, Copy)]
enum LimitHit {
    Depth(usize),
    Policies(usize),
    Details(usize),
    Strings(usize),
}

impl LimitHit {
    fn max(self) -> usize {
        match self {
            Self::Depth(max) | Self::Policies(max) | Self::Details(max) | Self::Strings(max) => max,
        }
    }
}

struct ScanState<'a> {
    limits: &'a ReadLimits,
    policies: Cell<usize>,
    details: Cell<usize>,
    strings: Cell<usize>,
    hit: Cell<Option<LimitHit>>,
}

impl ScanState<'_> {
    fn fail<E: de::Error>(&self, hit: LimitHit) -> E {
        self.hit.set(Some(hit));
        E::custom("limit")
    }
}

/// A pass over the JSON that allocates nothing and checks what the model's `Deserialize`
/// cannot: nesting depth and array lengths, each against [`ReadLimits`].
#[derive(Clone, Copy)]
struct Scan<'a> {
    slot: Slot,
    depth: usize,
    state: &'a ScanState<'a>,
}

impl Scan<'_> {
    fn enter<E: de::Error>(self) -> Result<usize, E> {
        let depth = self.depth + 1;
        if depth > self.state.limits.max_depth {
            return Err(self
                .state
                .fail(LimitHit::Depth(self.state.limits.max_depth)));
        }
        Ok(depth)
    }
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.slot.wants_object() {
            return Err(de::Error::invalid_type(Unexpected::Seq, &"a JSON object"));
        }
        let depth = self.enter()?;
        let state = self.state;
        let limits = state.limits;
        let (counted, element) = match self.slot {
            Slot::Policies => (
                Some((&state.policies, LimitHit::Policies(limits.max_policies))),
                Slot::Policy,
            ),
            Slot::Details => (
                Some((
                    &state.details,
                    LimitHit::Details(limits.max_failure_details),
                )),
                Slot::Object,
            ),
            Slot::Strings => (
                Some((&state.strings, LimitHit::Strings(limits.max_strings))),
                Slot::Other,
            ),
            _ => (None, Slot::Other),
        };
        let next = Scan {
            slot: element,
            depth,
            state,
        };
        while seq.next_element_seed(next)?.is_some() {
            if let Some((counter, hit)) = counted {
                let count = counter.get() + 1;
                if count > hit.max() {
                    return Err(state.fail(hit));
                }
                counter.set(count);
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        while let Some(child) = map.next_key_seed(KeySlot(self.slot))? {
            map.next_value_seed(Scan {
                slot: child,
                depth,
                state: self.state,
            })?;
        }
        Ok(())
    }
}

/// Reads an object key into the slot of its value.
struct KeySlot(Slot);

impl<'de> DeserializeSeed<'de> for KeySlot {
    type Value = Slot;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Slot, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySlot {
    type Value = Slot;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Slot, E> {
        Ok(self.0.child(key))
    }
}

/// A part of a mail that may hold the report.
struct Candidate<'a> {
    /// 0: `application/tlsrpt+*`; 1: a media type real reporters use instead.
    rank: u8,
    /// Which part, for messages: `message part 2 (application/tlsrpt+gzip "x.json.gz")`.
    describe: String,
    media_type: String,
    filename: Option<String>,
    body: &'a [u8],
    /// What the media type says the body is.
    declared: Option<ReportFormat>,
    /// The (possibly nested) message the part is in.
    message: &'a Message<'a>,
}

/// Reads the report attached to a mail, with the mail's warnings.
fn read_mail(bytes: &[u8], limits: &ReadLimits) -> Result<(Report, Vec<ReportWarning>), ReadError> {
    if !looks_like_mail(bytes) {
        let start: String = String::from_utf8_lossy(&bytes[..bytes.len().min(16)])
            .escape_debug()
            .collect();
        return Err(ReadError::new(ReadErrorKind::UnknownFormat { start }));
    }
    let parser = MessageParser::new().with_mime_headers();
    let Some(message) = parser.parse(bytes) else {
        return Err(ReadError::new(ReadErrorKind::NoReportPart {
            parts: Vec::new(),
            more: 0,
        }));
    };
    let mut candidates = Vec::new();
    let mut seen = Vec::new();
    let mut count = 0;
    collect_parts(
        &message,
        "message part",
        0,
        &mut candidates,
        &mut seen,
        &mut count,
    );
    let no_part = |parts: Vec<String>| {
        let more = count - parts.len();
        ReadError::new(ReadErrorKind::NoReportPart { parts, more })
    };
    let best = candidates.iter().map(|c| c.rank).min();
    let Some(best) = best else {
        return Err(no_part(seen));
    };
    let same_rank = candidates.iter().filter(|c| c.rank == best).count();
    let Some(part) = candidates.into_iter().find(|c| c.rank == best) else {
        return Err(no_part(seen));
    };

    let mut warnings = Vec::new();
    let warn = |warnings: &mut Vec<ReportWarning>, path: &str, kind| {
        warnings.push(ReportWarning {
            path: path.to_owned(),
            kind,
        });
    };
    mail_headers(part.message, &mut warnings);
    if part.rank > 0 {
        warn(
            &mut warnings,
            &part.describe,
            ReportWarningKind::UnusualMediaType {
                media_type: part.media_type.clone(),
                filename: part.filename.clone(),
            },
        );
    }
    if same_rank > 1 {
        warn(
            &mut warnings,
            "message",
            ReportWarningKind::MoreReportParts { count: same_rank },
        );
    }
    let found = if is_gzip(part.body) {
        ReportFormat::Gzip
    } else {
        ReportFormat::Json
    };
    if part.declared.is_some_and(|d| d != found) {
        warn(
            &mut warnings,
            &part.describe,
            ReportWarningKind::ContentMismatch {
                media_type: part.media_type.clone(),
                found,
            },
        );
    }
    let report = if found == ReportFormat::Gzip {
        let json = gunzip(part.body, limits).map_err(|e| e.within(|| part.describe.clone()))?;
        parse_json(&json, limits)
            .map_err(|e| e.within(|| format!("{}, gunzipped", part.describe)))?
    } else {
        parse_json(part.body, limits).map_err(|e| e.within(|| part.describe.clone()))?
    };
    mail_against_report(part.message, &report, &mut warnings);
    Ok((report, warnings))
}

/// Whether the input begins like a mail: a header field (`Name:`), after an optional mbox
/// `From ` line.
fn looks_like_mail(bytes: &[u8]) -> bool {
    let mut bytes = bytes;
    if bytes.starts_with(b"From ") {
        bytes = match bytes.iter().position(|&b| b == b'\n') {
            Some(i) => &bytes[i + 1..],
            None => return false,
        };
    }
    let name_len = bytes
        .iter()
        .take_while(|&&b| b.is_ascii_graphic() && b != b':')
        .count();
    name_len > 0 && bytes[name_len..].iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b':')
}

/// Finds the parts of `message` (and of messages nested in it) that may hold a report; `seen`
/// lists every part for the error that none does.
fn collect_parts<'a>(
    message: &'a Message<'a>,
    prefix: &str,
    nesting: usize,
    candidates: &mut Vec<Candidate<'a>>,
    seen: &mut Vec<String>,
    count: &mut usize,
) {
    for (i, part) in message.parts.iter().enumerate() {
        let media_type = part.content_type().map_or_else(
            || "text/plain".to_owned(),
            |ct| {
                let t = truncate_for_display(ct.ctype(), MAX_QUOTED);
                match ct.subtype() {
                    Some(sub) => format!("{t}/{}", truncate_for_display(sub, MAX_QUOTED)),
                    None => t,
                }
                .to_ascii_lowercase()
            },
        );
        let filename = part
            .attachment_name()
            .map(|n| truncate_for_display(n, MAX_QUOTED));
        *count += 1;
        if seen.len() < MAX_LISTED_PARTS {
            seen.push(match &filename {
                Some(name) => format!("{media_type} {name:?}"),
                None => media_type.clone(),
            });
        }
        let body: &[u8] = match &part.body {
            PartType::Binary(b) | PartType::InlineBinary(b) => b,
            PartType::Text(t) => t.as_bytes(),
            PartType::Message(inner) => {
                // A forwarded report: mail-parser nests at most a few levels.
                if nesting < 4 {
                    let inner_prefix = format!("{prefix} {}, message part", i + 1);
                    collect_parts(inner, &inner_prefix, nesting + 1, candidates, seen, count);
                }
                continue;
            }
            PartType::Html(_) | PartType::Multipart(_) => continue,
        };
        let name = filename.as_deref().unwrap_or("").to_ascii_lowercase();
        let named_report = name.ends_with(".json") || name.ends_with(".gz");
        let (rank, declared) = match media_type.as_str() {
            "application/tlsrpt+gzip" => (0, Some(ReportFormat::Gzip)),
            "application/tlsrpt+json" => (0, Some(ReportFormat::Json)),
            "application/gzip" | "application/x-gzip" => (1, Some(ReportFormat::Gzip)),
            "application/json" => (1, Some(ReportFormat::Json)),
            "application/octet-stream" if named_report => (1, None),
            _ => continue,
        };
        let describe = match &filename {
            Some(name) => format!("{prefix} {} ({media_type} {name:?})", i + 1),
            None => format!("{prefix} {} ({media_type})", i + 1),
        };
        candidates.push(Candidate {
            rank,
            describe,
            media_type,
            filename,
            body,
            declared,
            message,
        });
    }
}

/// The value of a header, trimmed; `None` if missing or empty.
fn header_text<'a>(message: &'a Message<'a>, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .rev()
        .find(|h| h.name().eq_ignore_ascii_case(name))
        .and_then(|h| h.value().as_text())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The §5.3 checks of the mail itself: `multipart/report; report-type=tlsrpt` and the two
/// `TLS-Report-*` headers.
fn mail_headers(message: &Message<'_>, warnings: &mut Vec<ReportWarning>) {
    let content_type = message.content_type();
    let is_tlsrpt_report = content_type.is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("tlsrpt"))
    });
    if !is_tlsrpt_report {
        let found = content_type.map_or_else(
            || "without Content-Type".to_owned(),
            |ct| {
                let mut s = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""));
                if let Some(t) = ct.attribute("report-type") {
                    s.push_str("; report-type=");
                    s.push_str(t);
                }
                truncate_for_display(&s.to_ascii_lowercase(), MAX_QUOTED)
            },
        );
        warnings.push(ReportWarning {
            path: "message".to_owned(),
            kind: ReportWarningKind::NotTlsrptMultipartReport { found },
        });
    }
    for name in ["TLS-Report-Domain", "TLS-Report-Submitter"] {
        if header_text(message, name).is_none() {
            warnings.push(ReportWarning {
                path: format!("message header {name}"),
                kind: ReportWarningKind::MissingHeader { name },
            });
        }
    }
}

/// A domain name compared loosely: lowercase, without a trailing dot.
fn norm_domain(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The §5.3 headers against the report: `TLS-Report-Domain` is one of its policy domains,
/// `TLS-Report-Submitter` the domain of `contact-info` (or a parent or child of it: Mail.ru
/// writes `corp.mail.ru` under `mail.ru`).
fn mail_against_report(message: &Message<'_>, report: &Report, warnings: &mut Vec<ReportWarning>) {
    if let Some(domain) = header_text(message, "TLS-Report-Domain") {
        let header = norm_domain(domain);
        let domains: Vec<String> = report
            .policies
            .iter()
            .map(|p| norm_domain(&p.policy.policy_domain))
            .filter(|d| !d.is_empty())
            .collect();
        if let Some(first) = domains.first()
            && !domains.contains(&header)
        {
            warnings.push(ReportWarning {
                path: "message header TLS-Report-Domain".to_owned(),
                kind: ReportWarningKind::HeaderDisagrees {
                    name: "TLS-Report-Domain",
                    value: truncate_for_display(domain, MAX_QUOTED),
                    report: truncate_for_display(first, MAX_QUOTED),
                },
            });
        }
    }
    if let Some(submitter) = header_text(message, "TLS-Report-Submitter") {
        let header = norm_domain(submitter);
        if let Some((_, contact)) = report.contact_info.rsplit_once('@') {
            let contact = norm_domain(contact.trim_end_matches('>'));
            let related = contact == header
                || contact.ends_with(&format!(".{header}"))
                || header.ends_with(&format!(".{contact}"));
            if !related {
                warnings.push(ReportWarning {
                    path: "message header TLS-Report-Submitter".to_owned(),
                    kind: ReportWarningKind::HeaderDisagrees {
                        name: "TLS-Report-Submitter",
                        value: truncate_for_display(submitter, MAX_QUOTED),
                        report: truncate_for_display(&report.contact_info, MAX_QUOTED),
                    },
                });
            }
        }
    }
}

/// Warnings, at most [`MAX_WARNINGS`], the rest counted.
struct Warnings {
    list: Vec<ReportWarning>,
    omitted: usize,
}

impl Warnings {
    fn push(&mut self, path: impl FnOnce() -> String, kind: ReportWarningKind) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push(ReportWarning { path: path(), kind });
        } else {
            self.omitted += 1;
        }
    }

    fn finish(mut self) -> Vec<ReportWarning> {
        if self.omitted > 0 {
            self.list.push(ReportWarning {
                path: "report".to_owned(),
                kind: ReportWarningKind::Omitted {
                    count: self.omitted,
                },
            });
        }
        self.list
    }
}

/// Checks a report against RFC 8460 §4.4, as [`read_report`] does: each [`ReportWarning`]
/// names the field. A report without warnings is what §4.4 asks for.
///
/// ```
/// use mta_sts_core::tlsrpt::{validate, Report, ReportWarningKind};
///
/// let report = Report::default();
/// let warnings = validate(&report);
/// assert_eq!(warnings[0].to_string(), "organization-name: missing or empty");
/// assert!(matches!(warnings[0].kind(), ReportWarningKind::Missing { field: "organization-name" }));
/// ```
pub fn validate(report: &Report) -> Vec<ReportWarning> {
    let mut warnings = Warnings {
        list: Vec::new(),
        omitted: 0,
    };
    validate_into(report, &mut warnings);
    warnings.finish()
}

fn validate_into(report: &Report, w: &mut Warnings) {
    let missing = |w: &mut Warnings, path: &dyn Fn() -> String, field, value: &str| {
        if value.trim().is_empty() {
            w.push(path, ReportWarningKind::Missing { field });
        }
    };
    missing(
        w,
        &|| "organization-name".to_owned(),
        "organization-name",
        &report.organization_name,
    );
    validate_dates(report, w);
    missing(
        w,
        &|| "contact-info".to_owned(),
        "contact-info",
        &report.contact_info,
    );
    missing(
        w,
        &|| "report-id".to_owned(),
        "report-id",
        &report.report_id,
    );
    if report.policies.is_empty() {
        w.push(
            || "policies".to_owned(),
            ReportWarningKind::Missing { field: "policies" },
        );
    }

    type PolicyKey<'a> = (&'a str, &'a str, &'a [String], &'a [String]);
    let mut seen: HashMap<PolicyKey<'_>, usize> = HashMap::new();
    for (i, p) in report.policies.iter().enumerate() {
        let d = &p.policy;
        let path = |field: &str| format!("policies[{i}].policy.{field}");
        if d.policy_type.trim().is_empty() {
            w.push(
                || path("policy-type"),
                ReportWarningKind::Missing {
                    field: "policy-type",
                },
            );
        } else {
            match d.policy_type.parse::<PolicyType>() {
                Err(_) => w.push(
                    || path("policy-type"),
                    ReportWarningKind::UnknownPolicyType {
                        found: truncate_for_display(&d.policy_type, MAX_QUOTED),
                    },
                ),
                Ok(PolicyType::Sts) => {
                    // The MX patterns are also in the policy's `mx:` lines: a report that quotes
                    // them there (Google's never write `mx-host`) loses nothing, so only a report
                    // with neither is warned about.
                    let mx_lines = d
                        .policy_string
                        .iter()
                        .any(|l| l.trim_start().starts_with("mx:"));
                    for (field, empty) in [
                        ("policy-string", d.policy_string.is_empty()),
                        ("mx-host", d.mx_host.is_empty() && !mx_lines),
                    ] {
                        if empty {
                            w.push(
                                || path(field),
                                ReportWarningKind::StsPolicyWithout { field },
                            );
                        }
                    }
                }
                Ok(_) => {}
            }
        }
        missing(
            w,
            &|| path("policy-domain"),
            "policy-domain",
            &d.policy_domain,
        );
        let key = (
            d.policy_type.as_str(),
            d.policy_domain.as_str(),
            d.policy_string.as_slice(),
            d.mx_host.as_slice(),
        );
        if let Some(&first) = seen.get(&key) {
            w.push(
                || format!("policies[{i}].policy"),
                ReportWarningKind::DuplicatePolicy { first },
            );
        } else {
            seen.insert(key, i);
        }

        let sum: u128 = p
            .failure_details
            .iter()
            .map(|f| u128::from(f.failed_session_count))
            .sum();
        let total = p.summary.total_failure_session_count;
        if sum != u128::from(total) {
            w.push(
                || format!("policies[{i}].summary.total-failure-session-count"),
                ReportWarningKind::TotalsDisagree { total, sum },
            );
        }

        for (j, f) in p.failure_details.iter().enumerate() {
            let path = |field: &str| format!("policies[{i}].failure-details[{j}].{field}");
            if f.result_type.trim().is_empty() {
                w.push(
                    || path("result-type"),
                    ReportWarningKind::Missing {
                        field: "result-type",
                    },
                );
                continue;
            }
            match f.result_type.parse::<ResultType>() {
                Err(_) => w.push(
                    || path("result-type"),
                    ReportWarningKind::UnknownResultType {
                        found: truncate_for_display(&f.result_type, MAX_QUOTED),
                    },
                ),
                Ok(result_type) if !result_type.is_policy_failure() => {
                    for (field, value) in [
                        ("receiving-mx-hostname", &f.receiving_mx_hostname),
                        ("receiving-ip", &f.receiving_ip),
                    ] {
                        if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                            w.push(
                                || path(field),
                                ReportWarningKind::NegotiationFailureWithout { field, result_type },
                            );
                        }
                    }
                }
                Ok(_) => {}
            }
        }
    }
}

/// §4.1 and §4.4: RFC 3339 date-times covering one whole UTC day.
fn validate_dates(report: &Report, w: &mut Warnings) {
    let range = &report.date_range;
    let check = |w: &mut Warnings, field: &'static str, value: &str| {
        let path = || format!("date-range.{field}");
        if value.trim().is_empty() {
            w.push(path, ReportWarningKind::Missing { field });
            return None;
        }
        let time = parse_datetime(value);
        if time.is_none() {
            w.push(
                path,
                ReportWarningKind::NotRfc3339 {
                    found: truncate_for_display(value, MAX_QUOTED),
                },
            );
        }
        time
    };
    let start = check(w, "start-datetime", &range.start_datetime);
    let end = check(w, "end-datetime", &range.end_datetime);
    if let Some(start) = start
        && start.as_secs() % 86_400 != 0
    {
        w.push(
            || "date-range.start-datetime".to_owned(),
            ReportWarningKind::StartNotMidnight {
                found: truncate_for_display(&range.start_datetime, MAX_QUOTED),
            },
        );
    }
    if let Some(end) = end
        && !matches!(end.as_secs() % 86_400, 0 | 86_399)
    {
        w.push(
            || "date-range.end-datetime".to_owned(),
            ReportWarningKind::EndNotEndOfDay {
                found: truncate_for_display(&range.end_datetime, MAX_QUOTED),
            },
        );
    }
    if let (Some(start), Some(end)) = (start, end) {
        if end < start {
            w.push(
                || "date-range".to_owned(),
                ReportWarningKind::EndBeforeStart,
            );
        } else {
            let seconds = end.as_secs() - start.as_secs();
            if !matches!(seconds, 86_399 | 86_400) {
                w.push(
                    || "date-range".to_owned(),
                    ReportWarningKind::NotOneDay { seconds },
                );
            }
        }
    }
}

/// Reads an RFC 3339 date-time (§5.6: `2016-04-01T00:00:00Z`, with an optional fraction and a
/// `Z` or `±hh:mm` offset; `t`, `z` and a space for `T` accepted) as seconds since the epoch,
/// UTC; fractions are dropped, a leap second counts as the next second. `None` if the text is
/// not RFC 3339, names a day that does not exist, or is before 1970.
///
/// ```
/// use mta_sts_core::tlsrpt::parse_datetime;
///
/// assert_eq!(parse_datetime("2016-04-01T00:00:00Z").map(|t| t.as_secs()), Some(1_459_468_800));
/// assert_eq!(parse_datetime("2016-04-01T02:00:00.5+02:00").map(|t| t.as_secs()), Some(1_459_468_800));
/// assert_eq!(parse_datetime("2016-04-01"), None);
/// assert_eq!(parse_datetime("2016-02-30T00:00:00Z"), None);
/// ```
pub fn parse_datetime(s: &str) -> Option<UnixTime> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        b.get(from..from + len)?.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let at = |i: usize, set: &[u8]| b.get(i).is_some_and(|c| set.contains(c));
    let year = num(0, 4)?;
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    let hour = num(11, 2)?;
    let minute = num(14, 2)?;
    let second = num(17, 2)?;
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let mut i = 19;
    if at(i, b".") {
        i += 1;
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        i += digits;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' => {
            i += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if !at(i + 3, b":") || oh > 23 || om > 59 {
                return None;
            }
            i += 6;
            let offset = oh * 3600 + om * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if i != b.len() || day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs).ok().map(UnixTime::from_secs)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t11_days_from_civil_agrees_with_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 5, 1), 19_844);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn t11_line_column_counts_bytes_from_one() {
        assert_eq!(line_column(b"ab\ncd", 0), (1, 1));
        assert_eq!(line_column(b"ab\ncd", 4), (2, 2));
    }
}
