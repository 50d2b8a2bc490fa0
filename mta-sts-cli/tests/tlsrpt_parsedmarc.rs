//! T16: an independent reader agrees. parsedmarc 11.1.0 (PyPI), a maintained DMARC and SMTP TLS
//! report parser, reads every report the project writes, and finds the same totals as what was
//! written: per policy its domain, type, strings and session counts, and every failure detail
//! with its result type, count and fields.
//!
//! - `mta-sts report build` with several domains, all three policy types and five failure
//!   types (`.json.gz`);
//! - the reports of `mta-sts demo --out DIR` (its HTTP 503 outage included);
//! - a report mail of `tlsrpt::report_mail` (`multipart/report; report-type=tlsrpt`, `.eml`).
//!
//! parsedmarc reads the MX patterns only from the key `mx-host-pattern`; RFC 8460 §4.4 names
//! the field `mx-host` in its field list and `mx-host-pattern` in its example, and mta-sts
//! writes `mx-host` (the field list's name, as the core's writer decides). So parsedmarc shows
//! no `mx_host_patterns` for our reports, and that one field is not compared.
//!
//! The interpreter is taken from `MTA_STS_PARSEDMARC_PYTHON` (`.ci/run` sets it to a venv with
//! parsedmarc 11.1.0). Without it the tests skip with a message, and fail instead under CI or
//! with `MTA_STS_REQUIRE_PARSEDMARC=1` ([`mta_sts_testkit::must_not_skip`]).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TempDir, run};
use mta_sts_core::UnixTime;
use mta_sts_core::io::CertificateProblem;
use mta_sts_core::tlsrpt::{
    Aggregator, AggregatorLimits, Failure, PendingReport, ReadLimits, Report, Reporter, Session,
    SessionPolicy, SessionResult, TlsFailure, read_report, report_mail,
};
use serde_json::{Value, json};

const SCRIPT: &str = "import json,sys,parsedmarc; \
    r=parsedmarc.parse_report_file(sys.argv[1], offline=True); print(json.dumps(r))";

/// The interpreter with parsedmarc, or `None` (the test then skips, unless it must not).
fn python() -> Option<PathBuf> {
    let p = std::env::var_os("MTA_STS_PARSEDMARC_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    if let Some(p) = p.filter(|p| p.exists()) {
        return Some(p);
    }
    assert!(
        !mta_sts_testkit::must_not_skip("MTA_STS_REQUIRE_PARSEDMARC"),
        "MTA_STS_PARSEDMARC_PYTHON must name a Python with parsedmarc 11.1.0 (.ci/run sets it up)"
    );
    eprintln!(
        "skipped: MTA_STS_PARSEDMARC_PYTHON does not name a Python with parsedmarc \
         (.ci/run sets it up)"
    );
    None
}

/// parsedmarc's reading of a report file: its `report` object, after checking that it took it
/// for an SMTP TLS report.
fn parsedmarc(python: &Path, file: &Path) -> Value {
    let out = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(file)
        .output()
        .expect("run parsedmarc");
    assert!(
        out.status.success(),
        "parsedmarc on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("parsedmarc's JSON");
    assert_eq!(v["report_type"], "smtp_tls", "{v:#}");
    v["report"].clone()
}

/// A report in parsedmarc's terms: what both readings must agree on.
fn expected(report: &Report) -> Value {
    let policies: Vec<Value> = report
        .policies
        .iter()
        .map(|p| {
            let mut details: Vec<Value> = p
                .failure_details
                .iter()
                .map(|f| {
                    json!({
                        "result_type": f.result_type,
                        "failed_session_count": f.failed_session_count,
                        "sending_mta_ip": f.sending_mta_ip,
                        "receiving_ip": f.receiving_ip,
                        "receiving_mx_hostname": f.receiving_mx_hostname,
                        "receiving_mx_helo": f.receiving_mx_helo,
                        "failure_reason_code": f.failure_reason_code,
                        "additional_info_uri": f.additional_information,
                    })
                })
                .collect();
            details.sort_by_key(Value::to_string);
            json!({
                "policy_domain": p.policy.policy_domain,
                "policy_type": p.policy.policy_type,
                "policy_strings": p.policy.policy_string,
                "successful_session_count": p.summary.total_successful_session_count,
                "failed_session_count": p.summary.total_failure_session_count,
                "failure_details": details,
            })
        })
        .collect();
    json!({
        "organization_name": report.organization_name,
        "begin_date": report.date_range.start_datetime,
        "end_date": report.date_range.end_datetime,
        "contact_info": report.contact_info,
        "report_id": report.report_id,
        "policies": policies,
    })
}

/// parsedmarc's output in the same shape: absent fields as `null` / empty, details sorted.
fn as_read(v: &Value) -> Value {
    let policies: Vec<Value> = v["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| {
            let mut details: Vec<Value> = p["failure_details"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    json!({
                        "result_type": f["result_type"],
                        "failed_session_count": f["failed_session_count"],
                        "sending_mta_ip": f["sending_mta_ip"],
                        "receiving_ip": f["receiving_ip"],
                        "receiving_mx_hostname": f["receiving_mx_hostname"],
                        "receiving_mx_helo": f["receiving_mx_helo"],
                        "failure_reason_code": f["failure_reason_code"],
                        "additional_info_uri": f["additional_info_uri"],
                    })
                })
                .collect();
            details.sort_by_key(Value::to_string);
            json!({
                "policy_domain": p["policy_domain"],
                "policy_type": p["policy_type"],
                "policy_strings": p.get("policy_strings").cloned().unwrap_or_else(|| json!([])),
                "successful_session_count": p["successful_session_count"],
                "failed_session_count": p["failed_session_count"],
                "failure_details": details,
            })
        })
        .collect();
    json!({
        "organization_name": v["organization_name"],
        "begin_date": v["begin_date"],
        "end_date": v["end_date"],
        "contact_info": v["contact_info"],
        "report_id": v["report_id"],
        "policies": policies,
    })
}

/// parsedmarc reads `file` as `report` says; returns parsedmarc's reading.
fn agrees(python: &Path, file: &Path, report: &Report) -> Value {
    let read = parsedmarc(python, file);
    assert_eq!(
        as_read(&read),
        expected(report),
        "parsedmarc's reading of {}",
        file.display()
    );
    read
}

/// The report in a written `.json.gz`, as the core reads it back (no warning allowed).
fn written(file: &Path) -> Report {
    let read = read_report(&std::fs::read(file).unwrap(), &ReadLimits::default()).unwrap();
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    read.report
}

/// A policy's totals: its type, successful and failed sessions, result types with their counts.
type Totals = (String, u64, u64, Vec<(String, u64)>);

/// Per policy, its [`Totals`] as parsedmarc read them.
fn totals(read: &Value) -> Vec<Totals> {
    read["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let mut details: Vec<(String, u64)> = p["failure_details"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    (
                        f["result_type"].as_str().unwrap().to_owned(),
                        f["failed_session_count"].as_u64().unwrap(),
                    )
                })
                .collect();
            details.sort();
            (
                p["policy_type"].as_str().unwrap().to_owned(),
                p["successful_session_count"].as_u64().unwrap(),
                p["failed_session_count"].as_u64().unwrap(),
                details,
            )
        })
        .collect()
}

const STS: &str = r#""policy_string":["version: STSv1","mode: testing","mx: mx1.example.com","mx: *.mail.example.com","max_age: 604800"],"mx_host":["mx1.example.com","*.mail.example.com"]"#;

fn line(domain: &str, policy: &str, result: &str, time: u64, extra: &str) -> String {
    format!(r#"{{"policy_domain":"{domain}",{policy},"result":"{result}","time":{time}{extra}}}"#)
}

#[test]
fn t16_parsedmarc_reads_report_build_reports_with_the_same_totals() {
    let Some(python) = python() else { return };
    let day = 1_767_225_600; // 2026-01-01
    let sts = format!(r#""policy_type":"sts",{STS}"#);
    let tlsa = r#""policy_type":"tlsa","policy_string":["3 1 1 0123456789abcdef"],"mx_host":["mx1.example.org"]"#;
    let none = r#""policy_type":"no-policy-found""#;
    let fail = |mx: &str, code: &str| {
        format!(
            r#","sending_mta_ip":"192.0.2.1","receiving_mx_hostname":"{mx}","receiving_ip":"2001:db8::25","receiving_mx_helo":"{mx}","failure_reason_code":"{code}","additional_information":"https://sender.example/tlsrpt/{code}""#
        )
    };
    let mut lines = Vec::new();
    for i in 0..40 {
        lines.push(line("example.com", &sts, "success", day + i * 60, ""));
    }
    for (result, n, mx) in [
        ("certificate-expired", 3, "mx1.example.com"),
        ("starttls-not-supported", 2, "mx2.mail.example.com"),
        ("certificate-host-mismatch", 1, "mx2.mail.example.com"),
    ] {
        for i in 0..n {
            lines.push(line(
                "example.com",
                &sts,
                result,
                day + 3_600 + i,
                &fail(mx, result),
            ));
        }
    }
    lines.push(line(
        "example.com",
        &sts,
        "sts-policy-fetch-error",
        day + 7_200,
        r#","failure_reason_code":"HTTP 503""#,
    ));
    for i in 0..7 {
        lines.push(line("example.org", tlsa, "success", day + 100 + i, ""));
    }
    lines.push(line(
        "example.org",
        tlsa,
        "tlsa-invalid",
        day + 200,
        &fail("mx1.example.org", "tlsa-invalid"),
    ));
    for i in 0..5 {
        lines.push(line("example.net", none, "success", day + 300 + i, ""));
    }
    lines.push(line("example.net", none, "success", day - 1, "")); // the day before
    let dir = TempDir::new("parsedmarc-build");
    let events = dir.0.join("events.jsonl");
    std::fs::write(&events, lines.join("\n")).unwrap();
    let out = dir.0.join("out");
    let r = run(&[
        "report",
        "build",
        "--events",
        events.to_str().unwrap(),
        "--org",
        "Example Sender Inc.",
        "--contact",
        "tlsrpt@sender.example",
        "--submitter",
        "sender.example",
        "--day",
        "2026-01-01",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let files = dir.files("out");
    assert_eq!(files.len(), 3, "{files:?}");
    let mut all = Vec::new();
    for f in &files {
        let read = agrees(&python, f, &written(f));
        all.push((read["policies"][0]["policy_domain"].clone(), totals(&read)));
    }
    let s = |t: &str| t.to_owned();
    assert_eq!(
        all,
        [
            (
                json!("example.com"),
                vec![(
                    s("sts"),
                    40,
                    7,
                    vec![
                        (s("certificate-expired"), 3),
                        (s("certificate-host-mismatch"), 1),
                        (s("starttls-not-supported"), 2),
                        (s("sts-policy-fetch-error"), 1),
                    ]
                )]
            ),
            (
                json!("example.net"),
                vec![(s("no-policy-found"), 5, 0, vec![])]
            ),
            (
                json!("example.org"),
                vec![(s("tlsa"), 7, 1, vec![(s("tlsa-invalid"), 1)])]
            ),
        ]
    );
}

#[cfg(feature = "demo")]
#[test]
fn t16_parsedmarc_reads_the_demo_reports_with_the_same_totals() {
    let Some(python) = python() else { return };
    let dir = TempDir::new("parsedmarc-demo");
    let out = dir.0.join("out");
    let r = run(&["demo", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let files = dir.files("out");
    assert_eq!(files.len(), 2, "{files:?}");
    let mut all = Vec::new();
    for f in &files {
        let read = agrees(&python, f, &written(f));
        all.push(totals(&read));
    }
    let s = |t: &str| t.to_owned();
    assert_eq!(
        all,
        [
            vec![(s("sts"), 3, 0, vec![])],
            vec![(s("sts"), 2, 1, vec![(s("sts-policy-fetch-error"), 1)])],
        ]
    );
}

#[test]
fn t16_parsedmarc_reads_a_report_mail_with_the_same_totals() {
    let Some(python) = python() else { return };
    let day = 1_767_225_600;
    let policy = mta_sts_core::Policy::parse(
        "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.mail.example.com\nmax_age: 86400\n",
    )
    .unwrap();
    let policy = SessionPolicy::sts("example.com", &policy);
    let mut aggregator = Aggregator::new(AggregatorLimits::default());
    let mut record = |offset: u64, result: SessionResult| {
        let s = Session::new(UnixTime::from_secs(day + offset), policy.clone(), result);
        assert_eq!(
            aggregator.record(&s),
            mta_sts_core::tlsrpt::Recorded::Counted
        );
    };
    for i in 0..12 {
        record(i, SessionResult::Success);
    }
    let expired = Failure::from_tls(&TlsFailure::Certificate(CertificateProblem::Expired))
        .with_receiving_mx_hostname("mx1.example.com")
        .with_receiving_ip("192.0.2.25".parse().unwrap())
        .with_sending_mta_ip("198.51.100.1".parse().unwrap());
    for i in 0..2 {
        record(100 + i, SessionResult::Failure(expired.clone()));
    }
    let no_tls = Failure::from_tls(&TlsFailure::StarttlsNotSupported)
        .with_receiving_mx_hostname("mx2.mail.example.com");
    record(200, SessionResult::Failure(no_tls));
    let reporter = Reporter::new(
        "Example Sender Inc.",
        "tlsrpt@sender.example",
        "sender.example",
    );
    let reports = aggregator.close(UnixTime::from_secs(day + 86_400), &reporter);
    assert_eq!(reports.len(), 1);
    let day_report = &reports[0];
    let mail = report_mail(
        &PendingReport::from(day_report),
        "tlsrpt@sender.example",
        "tlsrpt@example.com",
        UnixTime::from_secs(day + 86_400 + 600),
        "r1@sender.example",
    );
    let dir = TempDir::new("parsedmarc-mail");
    let eml = dir.0.join("report.eml");
    std::fs::write(&eml, &mail.message).unwrap();
    let read = agrees(&python, &eml, &day_report.report);
    let s = |t: &str| t.to_owned();
    assert_eq!(
        totals(&read),
        [(
            s("sts"),
            12,
            3,
            vec![
                (s("certificate-expired"), 2),
                (s("starttls-not-supported"), 1)
            ]
        )]
    );
}
