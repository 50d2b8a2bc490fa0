//! `mta-sts report build`: one UTC day's TLSRPT reports (RFC 8460) from JSON lines of delivery
//! attempts, for an MTA that logs its sessions but embeds no library. Each line is one attempt:
//!
//! ```json
//! {"policy_domain":"example.com","policy_type":"sts","policy_string":["version: STSv1","mode: testing","mx: mx1.example.com","max_age: 86400"],"mx_host":["mx1.example.com"],"result":"certificate-expired","sending_mta_ip":"192.0.2.1","receiving_mx_hostname":"mx1.example.com","receiving_ip":"198.51.100.25","failure_reason_code":"X509_V_ERR_CERT_HAS_EXPIRED","time":"2026-01-01T10:00:00Z"}
//! ```
//!
//! `policy_domain`, `policy_type` (`sts`, `tlsa`, `no-policy-found`), `result` (`success` or an
//! RFC 8460 §4.3 result type) and `time` (RFC 3339, or Unix seconds as a number) are required;
//! the rest may be left out or `null`. Other fields are refused (a misspelt field would
//! otherwise vanish from the report). The sessions are counted by the library's
//! [`Aggregator`], which groups the failures as §4.4 says; the day is closed into one report
//! per policy domain, written as `<submitter>!<policy-domain>!<begin>!<end>!<id>.json.gz`
//! (§5.1).
//!
//! Lines of other days are skipped and counted; a bad line is listed with its number and what
//! is wrong, and skipped. Exit status: 0 when every line was read, 1 when a line was bad (the
//! reports of the good lines are written all the same), 2 for usage errors (a bad option, an
//! unreadable events file, an output directory that cannot be written).

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use mta_sts_core::tlsrpt::{
    Aggregator, AggregatorLimits, DayReport, Failure, PolicyType, Recorded, Reporter, ResultType,
    Session, SessionPolicy, SessionResult, parse_datetime, utc_day_start,
};
use mta_sts_core::{PolicyDomain, UnixTime};
use serde_json::{Map, Value};

/// The longest line read, in bytes: a line with a 64 KiB policy and a few names fits.
pub(crate) const MAX_LINE: usize = 128 * 1024;
/// The most bad lines listed one by one; the rest are counted.
const MAX_LISTED: usize = 100;
/// The longest text of a line quoted in an error.
const MAX_QUOTED: usize = 64;
/// Seconds in a day.
const DAY: u64 = 86_400;

/// `mta-sts report build` arguments.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The delivery attempts: JSON lines, one attempt per line (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    events: PathBuf,
    /// The reporting organisation (`organization-name`).
    #[arg(long, value_name = "NAME")]
    org: String,
    /// Whom to ask about the reports (`contact-info`), e.g. tlsrpt@sender.example.
    #[arg(long, value_name = "ADDR")]
    contact: String,
    /// The sending MTA's domain: first part of the file names, right side of the report ids.
    #[arg(long, value_name = "DOMAIN")]
    submitter: String,
    /// The UTC day to report on.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day)]
    day: UnixTime,
    /// Where to write the `.json.gz` reports (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// `YYYY-MM-DD` as the first second of that UTC day.
fn parse_day(s: &str) -> Result<UnixTime, String> {
    let ok = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    ok.then(|| parse_datetime(&format!("{s}T00:00:00Z")))
        .flatten()
        .ok_or_else(|| format!("{s:?} is not a day: give YYYY-MM-DD, e.g. 2026-01-01"))
}

/// Why a line of the events file is not a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventError {
    /// Longer than [`MAX_LINE`] bytes.
    TooLong,
    /// Not UTF-8.
    NotUtf8,
    /// Not JSON.
    Json(String),
    /// JSON, but not an object.
    NotAnObject,
    /// A required field is missing or `null`.
    Missing(&'static str),
    /// A field of the wrong JSON type.
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    /// A field that is not one of the attempt's.
    UnknownField(String),
    /// `policy_domain` is not a domain name.
    BadDomain(String),
    /// `policy_type` is not `sts`, `tlsa` or `no-policy-found`.
    UnknownPolicyType(String),
    /// `result` is neither `success` nor a result type of RFC 8460 §4.3.
    UnknownResult(String),
    /// `time` is neither RFC 3339 nor Unix seconds.
    BadTime(String),
    /// An address field that is not an IP address.
    BadAddress { field: &'static str, found: String },
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => write!(f, "longer than {MAX_LINE} bytes"),
            Self::NotUtf8 => f.write_str("not UTF-8"),
            Self::Json(e) => write!(f, "not JSON: {e}"),
            Self::NotAnObject => f.write_str("not a JSON object"),
            Self::Missing(field) => write!(f, "{field} is missing"),
            Self::WrongType { field, expected } => write!(f, "{field} is not {expected}"),
            Self::UnknownField(name) => {
                write!(f, "unknown field {name:?} (fields: {})", FIELDS.join(", "))
            }
            Self::BadDomain(e) => write!(f, "policy_domain: {e}"),
            Self::UnknownPolicyType(t) => {
                write!(f, "policy_type {t:?} is not sts, tlsa or no-policy-found")
            }
            Self::UnknownResult(r) => write!(
                f,
                "result {r:?} is neither success nor an RFC 8460 result type (e.g. \
                 starttls-not-supported, certificate-expired, sts-policy-fetch-error)"
            ),
            Self::BadTime(t) => write!(
                f,
                "time {t:?} is neither an RFC 3339 date-time nor Unix seconds"
            ),
            Self::BadAddress { field, found } => {
                write!(f, "{field} {found:?} is not an IP address")
            }
        }
    }
}

/// The fields of a delivery attempt.
const FIELDS: [&str; 12] = [
    "policy_domain",
    "policy_type",
    "policy_string",
    "mx_host",
    "result",
    "sending_mta_ip",
    "receiving_mx_hostname",
    "receiving_mx_helo",
    "receiving_ip",
    "failure_reason_code",
    "additional_information",
    "time",
];

fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_QUOTED {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX_QUOTED).collect();
        t.push('…');
        t
    }
}

/// A string field: `None` when missing or `null`.
fn text(o: &Map<String, Value>, field: &'static str) -> Result<Option<String>, EventError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(EventError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn required(o: &Map<String, Value>, field: &'static str) -> Result<String, EventError> {
    text(o, field)?.ok_or(EventError::Missing(field))
}

/// An array of strings: empty when missing or `null`.
fn strings(o: &Map<String, Value>, field: &'static str) -> Result<Vec<String>, EventError> {
    let wrong = EventError::WrongType {
        field,
        expected: "an array of strings",
    };
    match o.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| wrong.clone()))
            .collect(),
        Some(_) => Err(wrong),
    }
}

fn address(o: &Map<String, Value>, field: &'static str) -> Result<Option<IpAddr>, EventError> {
    text(o, field)?
        .map(|s| {
            s.trim().parse().map_err(|_| EventError::BadAddress {
                field,
                found: shorten(&s),
            })
        })
        .transpose()
}

fn time(o: &Map<String, Value>) -> Result<UnixTime, EventError> {
    match o.get("time") {
        None | Some(Value::Null) => Err(EventError::Missing("time")),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
                    // In range: checked just above; fractions dropped.
                    .map(|f| f.floor() as u64)
            })
            .map(UnixTime::from_secs)
            .ok_or_else(|| EventError::BadTime(n.to_string())),
        Some(Value::String(s)) => {
            let t = s.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse().map(UnixTime::from_secs).ok()
            } else {
                parse_datetime(t)
            }
            .ok_or_else(|| EventError::BadTime(shorten(s)))
        }
        Some(_) => Err(EventError::WrongType {
            field: "time",
            expected: "an RFC 3339 string or a number",
        }),
    }
}

/// One line as a session.
pub(crate) fn parse_event(line: &[u8]) -> Result<Session, EventError> {
    let line = std::str::from_utf8(line).map_err(|_| EventError::NotUtf8)?;
    let value: Value = serde_json::from_str(line).map_err(|e| EventError::Json(e.to_string()))?;
    let Value::Object(o) = value else {
        return Err(EventError::NotAnObject);
    };
    if let Some(name) = o.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(EventError::UnknownField(shorten(name)));
    }
    let domain = required(&o, "policy_domain")?;
    let domain = PolicyDomain::parse(&domain)
        .map_err(|e| EventError::BadDomain(format!("{:?}: {e}", shorten(&domain))))?;
    let policy_type = required(&o, "policy_type")?;
    let policy_type: PolicyType = policy_type
        .parse()
        .map_err(|_| EventError::UnknownPolicyType(shorten(&policy_type)))?;
    let policy = SessionPolicy::new(
        policy_type,
        domain.as_str(),
        strings(&o, "policy_string")?,
        strings(&o, "mx_host")?,
    );
    let when = time(&o)?;
    let result = required(&o, "result")?;
    let result = if result == "success" {
        SessionResult::Success
    } else {
        let rt: ResultType = result
            .parse()
            .map_err(|_| EventError::UnknownResult(shorten(&result)))?;
        let mut f = Failure::new(rt);
        if let Some(ip) = address(&o, "sending_mta_ip")? {
            f = f.with_sending_mta_ip(ip);
        }
        if let Some(ip) = address(&o, "receiving_ip")? {
            f = f.with_receiving_ip(ip);
        }
        if let Some(h) = text(&o, "receiving_mx_hostname")? {
            f = f.with_receiving_mx_hostname(h);
        }
        if let Some(h) = text(&o, "receiving_mx_helo")? {
            f = f.with_receiving_mx_helo(h);
        }
        if let Some(c) = text(&o, "failure_reason_code")? {
            f = f.with_failure_reason_code(c);
        }
        if let Some(u) = text(&o, "additional_information")? {
            f = f.with_additional_information(u);
        }
        SessionResult::Failure(f)
    };
    Ok(Session::new(when, policy, result))
}

/// Reads the next line into `buf` (without its line end), at most [`MAX_LINE`] bytes of it.
/// `Ok(None)` at the end; `Ok(Some(false))` for a line that was longer (the rest skipped).
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Some(buf.len() <= MAX_LINE));
    }
    if buf.len() <= MAX_LINE {
        return Ok(Some(true)); // the last line, without a line end
    }
    // Too long: skip to the end of the line without keeping it.
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                break;
            }
            None => {
                let len = chunk.len();
                r.consume(len);
            }
        }
    }
    Ok(Some(false))
}

/// What reading the events gave.
#[derive(Debug, Default)]
pub(crate) struct Built {
    pub(crate) lines: u64,
    pub(crate) counted: u64,
    pub(crate) other_days: u64,
    pub(crate) bad: Vec<(u64, EventError)>,
    pub(crate) bad_total: u64,
    pub(crate) reports: Vec<DayReport>,
    pub(crate) not_counted: Vec<String>,
}

/// Counts the sessions of `day` in the events and closes the day into reports.
pub(crate) fn build(
    events: &mut impl BufRead,
    day: UnixTime,
    reporter: &Reporter,
) -> std::io::Result<Built> {
    let mut built = Built::default();
    let mut aggregator = Aggregator::new(AggregatorLimits::default());
    let mut buf = Vec::new();
    let bad = |built: &mut Built, line: u64, e: EventError| {
        built.bad_total += 1;
        if built.bad.len() < MAX_LISTED {
            built.bad.push((line, e));
        }
    };
    while let Some(fits) = next_line(events, &mut buf)? {
        built.lines += 1;
        let n = built.lines;
        if !fits {
            bad(&mut built, n, EventError::TooLong);
            continue;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let session = match parse_event(&buf) {
            Ok(s) => s,
            Err(e) => {
                bad(&mut built, n, e);
                continue;
            }
        };
        if utc_day_start(session.time) != day {
            built.other_days += 1;
            continue;
        }
        match aggregator.record(&session) {
            Recorded::Counted | Recorded::DroppedDetail => built.counted += 1,
            // The domain was checked above; the caps are reported below.
            _ => {}
        }
    }
    let dropped = aggregator.dropped();
    for (n, what) in [
        (
            dropped.domains,
            "sessions of more policy domains than the aggregator holds (10,000)",
        ),
        (
            dropped.policies,
            "sessions under more than 8 policies of one domain",
        ),
        (
            dropped.details,
            "failures counted without their details (detail cap)",
        ),
        (dropped.invalid, "sessions with an invalid policy domain"),
    ] {
        if n > 0 {
            built.not_counted.push(format!("{n} {what}"));
        }
    }
    built.reports = aggregator.close(UnixTime::from_secs(day.as_secs() + DAY), reporter);
    Ok(built)
}

/// Writes `bytes` to `dir/name` through a temporary file, so that no half report is left.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Writes every report as `.json.gz` into `dir` (created if missing); the paths written.
pub(crate) fn write_reports(dir: &Path, reports: &[DayReport]) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    reports
        .iter()
        .map(|r| write_file(dir, &r.file_name(), &r.gzip()))
        .collect()
}

/// A report in one line: its domain, policies and session counts.
pub(crate) fn describe(report: &DayReport) -> String {
    let (ok, failed) = report
        .report
        .policies
        .iter()
        .fold((0u64, 0u64), |(s, f), p| {
            (
                s.saturating_add(p.summary.total_successful_session_count),
                f.saturating_add(p.summary.total_failure_session_count),
            )
        });
    format!(
        "{}: {} {}, {ok} successful and {failed} failed sessions",
        report.policy_domain,
        report.report.policies.len(),
        if report.report.policies.len() == 1 {
            "policy"
        } else {
            "policies"
        }
    )
}

pub(crate) fn run(args: &BuildArgs) -> Result<ExitCode, String> {
    let submitter = PolicyDomain::parse(&args.submitter).map_err(|e| {
        format!(
            "--submitter {:?}: {e}; give the sending MTA's domain",
            args.submitter
        )
    })?;
    if args.org.trim().is_empty() {
        return Err("--org: give the reporting organisation's name".into());
    }
    if args.contact.trim().is_empty() {
        return Err("--contact: give an address for questions about the reports".into());
    }
    let reporter = Reporter::new(args.org.trim(), args.contact.trim(), submitter.as_str());
    let source = args.events.display().to_string();
    let built = if source == "-" {
        build(&mut std::io::stdin().lock(), args.day, &reporter)
    } else {
        let file = std::fs::File::open(&args.events)
            .map_err(|e| format!("cannot open --events {source}: {e}"))?;
        build(&mut BufReader::new(file), args.day, &reporter)
    }
    .map_err(|e| format!("cannot read --events {source}: {e}"))?;
    let day = &mta_sts_core::tlsrpt::format_datetime(args.day)[..10];
    println!(
        "{source}: {} line(s), {} session(s) of {day}, {} of other days skipped, {} bad line(s)",
        built.lines, built.counted, built.other_days, built.bad_total
    );
    for (n, e) in &built.bad {
        println!("line {n}: {e}");
    }
    if built.bad_total > built.bad.len() as u64 {
        println!(
            "({} more bad lines not listed)",
            built.bad_total - built.bad.len() as u64
        );
    }
    for what in &built.not_counted {
        println!("not counted: {what}");
    }
    let paths = write_reports(&args.out, &built.reports)?;
    for (path, report) in paths.iter().zip(&built.reports) {
        println!("wrote {} ({})", path.display(), describe(report));
    }
    if built.reports.is_empty() {
        println!("no session of {day}: no report written");
    }
    Ok(if built.bad_total == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t14_event_lines_give_typed_errors() {
        let cases: [(&[u8], EventError); 8] = [
            (b"\xff", EventError::NotUtf8),
            (b"[1]", EventError::NotAnObject),
            (br#"{"policy_type":"sts"}"#, EventError::Missing("policy_domain")),
            (
                br#"{"policy_domain":"example.com","policy_type":"dane","result":"success","time":0}"#,
                EventError::UnknownPolicyType("dane".into()),
            ),
            (
                br#"{"policy_domain":"example.com","policy_type":"sts","result":"ok","time":0}"#,
                EventError::UnknownResult("ok".into()),
            ),
            (
                br#"{"policy_domain":"example.com","policy_type":"sts","result":"success","time":"yesterday"}"#,
                EventError::BadTime("yesterday".into()),
            ),
            (
                br#"{"policy_domain":"example.com","policy_type":"sts","result":"success","time":0,"sending_ip":"1"}"#,
                EventError::UnknownField("sending_ip".into()),
            ),
            (
                br#"{"policy_domain":"example.com","policy_type":"sts","result":"starttls-not-supported","time":0,"receiving_ip":"mx1"}"#,
                EventError::BadAddress {
                    field: "receiving_ip",
                    found: "mx1".into(),
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_event(line).err(),
                Some(want),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(matches!(parse_event(b"{"), Err(EventError::Json(_))));
        assert!(matches!(
            parse_event(br#"{"policy_domain":"[192.0.2.1]","policy_type":"sts","result":"success","time":0}"#),
            Err(EventError::BadDomain(_))
        ));
    }

    #[test]
    fn t14_times_in_both_forms() {
        let line = |t: &str| {
            format!(
                r#"{{"policy_domain":"example.com","policy_type":"no-policy-found","result":"success","time":{t}}}"#
            )
        };
        for t in [
            "1767225600",
            "1767225600.9",
            r#""2026-01-01T00:00:00Z""#,
            r#""2026-01-01T01:00:00+01:00""#,
            r#""1767225600""#,
        ] {
            let s = parse_event(line(t).as_bytes()).unwrap();
            assert_eq!(s.time.as_secs(), 1_767_225_600, "{t}");
        }
        assert!(parse_event(line("-1").as_bytes()).is_err());
        assert!(parse_event(line("1e300").as_bytes()).is_err());
    }

    #[test]
    fn t14_a_long_line_is_skipped_and_the_next_read() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nsecond\r\nlast");
        let mut r = std::io::Cursor::new(input);
        let mut buf = Vec::new();
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), Some(false));
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), Some(true));
        assert_eq!(buf, b"second");
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), Some(true));
        assert_eq!(buf, b"last");
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), None);
    }

    #[test]
    fn t14_day_argument() {
        assert_eq!(parse_day("2026-01-01").unwrap().as_secs(), 1_767_225_600);
        for bad in [
            "2026-1-01",
            "2026-02-30",
            "20260101",
            "2026-01-01T00:00:00Z",
            "",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
    }
}
