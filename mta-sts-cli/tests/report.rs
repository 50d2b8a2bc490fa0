//! `mta-sts report` (T14): received reports in the layouts real reporters send (the core
//! reader's test data: Google's mail and JSON, Microsoft's `mx-host` string, parsedmarc's and
//! Stalwart's samples) summarised per policy domain with a rollout verdict, and `report build`
//! writing one day's reports from JSON lines.

mod common;

use common::{Run, TempDir, assert_usage_errors, run};
use mta_sts_core::tlsrpt::{ReadLimits, read_report};
use serde_json::Value;

/// The core reader's test reports.
fn data(name: &str) -> String {
    format!(
        "{}/../mta-sts-core/tests/data/tlsrpt/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn show(r: &Run) -> String {
    format!("exit {:?}\n{}\n{}", r.code, r.stdout, r.stderr)
}

fn domain<'a>(v: &'a Value, name: &str, policy_type: &str) -> &'a Value {
    v["domains"]
        .as_array()
        .expect("domains")
        .iter()
        .find(|d| d["domain"] == name && d["policy_type"] == policy_type)
        .unwrap_or_else(|| panic!("{name} {policy_type} in {v:#}"))
}

#[test]
fn t14_report_json_sums_google_microsoft_and_parsedmarc_layouts_into_a_blocked_verdict() {
    let files = [
        data("google-2024-05-01.eml"),
        data("microsoft-style-mx-host-string.json"),
        data("parsedmarc-smtp_tls.json"),
    ];
    let mut args = vec!["report", "--json"];
    args.extend(files.iter().map(String::as_str));
    let r = run(&args);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    let v = r.json();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["domains", "organizations", "problems", "reports"]);
    assert_eq!(v["reports"], 3);
    assert_eq!(
        v["organizations"],
        serde_json::json!(["Example Inc.", "Google Inc.", "Microsoft Corporation"])
    );
    let d = domain(&v, "example.com", "sts");
    assert_eq!(d["successful"], 12 + 140);
    assert_eq!(d["failed"], 2 + 3);
    let failures = d["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 3, "{d:#}");
    let expired = failures
        .iter()
        .find(|f| f["result_type"] == "certificate-expired")
        .unwrap();
    assert_eq!(expired["receiving_mx"], "mx2.example.com");
    assert_eq!(expired["sending_mta_ip"], "2a01:111:f403:c200::1");
    assert_eq!(expired["count"], 2);
    assert_eq!(expired["reason"], Value::Null);
    let keys: Vec<&str> = expired
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "count",
            "reason",
            "receiving_mx",
            "result_type",
            "sending_mta_ip"
        ]
    );
    let validation: u64 = failures
        .iter()
        .filter(|f| f["result_type"] == "validation-failure")
        .map(|f| f["count"].as_u64().unwrap())
        .sum();
    assert_eq!(validation, 3);
    let verdict = &d["verdict"];
    assert_eq!(verdict["status"], "blocked");
    assert_eq!(verdict["mode"], "testing");
    assert_eq!(verdict["reports"], 3);
    assert_eq!(verdict["since"], "2024-01-09");
    let text = verdict["text"].as_str().unwrap();
    assert!(text.starts_with("not ready for mode enforce: 5 of 157 sessions failed in 3 reports from 3 organizations since 2024-01-09"), "{text}");
    assert!(
        text.contains(
            "certificate-expired at mx2.example.com (2 sessions, reported by Microsoft Corporation)"
        ),
        "{text}"
    );
    assert!(
        text.contains("validation-failure at example.com (3 sessions, reported by Example Inc.)"),
        "{text}"
    );
    // These three layouts break no rule the reader warns about (Google's leaves out `mx-host`
    // but quotes the `mx:` lines in policy-string): no problem listed.
    let problems = v["problems"].as_array().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");

    let text = run(&args[..1]
        .iter()
        .chain(&args[2..])
        .copied()
        .collect::<Vec<_>>());
    assert_eq!(text.code, Some(0), "{}", show(&text));
    let out = &text.stdout;
    assert!(
        out.starts_with("TLSRPT: 3 report(s) read from 3 organization(s) (Example Inc., Google Inc., Microsoft Corporation)"),
        "{out}"
    );
    assert!(out.contains("example.com (sts, mode testing)"), "{out}");
    assert!(
        out.contains("  sessions  152 successful, 5 failed"),
        "{out}"
    );
    assert!(
        out.contains(
            "  failure   2 × certificate-expired at mx2.example.com from 2a01:111:f403:c200::1"
        ),
        "{out}"
    );
    assert!(text.has_line("warn", "not ready for mode enforce"), "{out}");
    assert!(
        !text.has_line("warn", "an sts policy without mx-host"),
        "{out}"
    );
}

#[test]
fn t14_report_ready_verdict_and_a_report_read_twice_counted_once() {
    let r = run(&[
        "report",
        "--json",
        &data("google-2024-05-01.eml"),
        &data("google-2024-05-01.json"),
    ]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    let v = r.json();
    assert_eq!(v["reports"], 1);
    let d = domain(&v, "example.com", "sts");
    assert_eq!(d["successful"], 12);
    assert_eq!(d["failed"], 0);
    assert_eq!(d["verdict"]["status"], "ready");
    assert_eq!(
        d["verdict"]["text"],
        "no failures in 1 report from 1 organization since 2024-05-01: ready for mode enforce as \
         far as the reports tell"
    );
    let dup = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "duplicate")
        .expect("a duplicate problem");
    assert!(
        dup["file"]
            .as_str()
            .unwrap()
            .ends_with("google-2024-05-01.json")
    );
    assert!(
        dup["message"]
            .as_str()
            .unwrap()
            .contains("google-2024-05-01.eml"),
        "{dup}"
    );
}

#[test]
fn t14_report_warnings_and_unreadable_files_are_problems_exit_1_only_when_nothing_was_read() {
    let dir = TempDir::new("report-bad");
    let garbage = dir.path("garbage.json");
    std::fs::write(&garbage, b"{\"organization-name\": 7}").unwrap();
    let missing = dir.path("missing.json");
    let mailru = data("parsedmarc-mail.ru.json");
    let r = run(&["report", "--json", &garbage, &mailru, &missing]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    let v = r.json();
    assert_eq!(v["reports"], 1);
    let problems = v["problems"].as_array().unwrap();
    let of = |file: &str, kind: &str| {
        problems
            .iter()
            .filter(|p| p["file"] == file && p["kind"] == kind)
            .map(|p| p["message"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(of(&garbage, "unreadable").len(), 1, "{problems:#?}");
    assert!(of(&garbage, "unreadable")[0].contains("not a TLSRPT report"));
    assert_eq!(of(&missing, "unreadable").len(), 1, "{problems:#?}");
    assert!(
        of(&mailru, "warning")
            .iter()
            .any(|m| m
                .contains("total-failure-session-count is 1 but the failure details add up to 2")),
        "{problems:#?}"
    );
    // Mail.ru's policy quotes no mode: the verdict says so.
    let d = domain(&v, "example.com", "sts");
    assert_eq!(d["verdict"]["status"], "blocked");
    assert!(
        d["verdict"]["text"]
            .as_str()
            .unwrap()
            .ends_with("(the reports do not quote the policy's mode)"),
        "{d:#}"
    );

    let r = run(&["report", &garbage, &missing]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.stdout.starts_with("TLSRPT: 0 report(s) read"),
        "{}",
        show(&r)
    );
    assert!(r.has_line("FAIL", "garbage.json: "), "{}", show(&r));
    assert_usage_errors(&[&["report"], &["report", "--json"]]);
}

#[test]
fn t14_report_no_policy_found_and_tlsa_are_not_judged_for_rollout() {
    let r = run(&[
        "report",
        "--json",
        &data("parsedmarc-google.com_smtp_tls_report.eml"),
        &data("mail-auth-rpt03.json"),
    ]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    let v = r.json();
    for d in v["domains"].as_array().unwrap() {
        if d["policy_type"] != "sts" {
            assert_eq!(d["verdict"]["status"], "not-applicable", "{d:#}");
        }
    }
    assert!(
        v["domains"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["policy_type"] == "no-policy-found"),
        "{v:#}"
    );
}

const DAY: &str = "2026-01-01";

/// A delivery attempt line.
fn event(domain: &str, result: &str, time: &str, extra: &str) -> String {
    format!(
        r#"{{"policy_domain":"{domain}","policy_type":"sts","policy_string":["version: STSv1","mode: testing","mx: mx1.{domain}","max_age: 86400"],"mx_host":["mx1.{domain}"],"result":"{result}","time":{time}{extra}}}"#
    )
}

/// Events of several domains and failure types, two lines of other days and three bad lines.
fn events() -> String {
    let mut lines = Vec::new();
    for i in 0..5 {
        lines.push(event(
            "example.com",
            "success",
            &format!("\"2026-01-01T0{i}:00:00Z\""),
            "",
        ));
    }
    let fail = |mx: &str, code: &str| {
        format!(
            r#","sending_mta_ip":"192.0.2.1","receiving_mx_hostname":"{mx}","receiving_ip":"198.51.100.25","failure_reason_code":"{code}""#
        )
    };
    lines.push(event(
        "example.com",
        "certificate-expired",
        "1767261600",
        &fail("mx1.example.com", "X509_V_ERR_CERT_HAS_EXPIRED"),
    ));
    lines.push(event(
        "example.com",
        "certificate-expired",
        "1767261601",
        &fail("mx1.example.com", "X509_V_ERR_CERT_HAS_EXPIRED"),
    ));
    lines.push(event(
        "example.com",
        "starttls-not-supported",
        "\"2026-01-01T12:00:00+01:00\"",
        &fail("mx2.example.com", "no STARTTLS"),
    ));
    lines.push(String::new());
    lines.push(event("example.net", "success", "1767225600", ""));
    lines.push(event(
        "example.net",
        "sts-policy-fetch-error",
        "1767225700",
        r#","failure_reason_code":"HTTP 503""#,
    ));
    lines.push(
        r#"{"policy_domain":"example.org","policy_type":"no-policy-found","result":"success","time":1767300000}"#
            .to_owned(),
    );
    lines.push(
        r#"{"policy_domain":"example.org","policy_type":"tlsa","policy_string":["3 1 1 abcd"],"result":"tlsa-invalid","receiving_mx_hostname":"mx.example.org","time":1767300001}"#
            .to_owned(),
    );
    // Other days.
    lines.push(event(
        "example.com",
        "success",
        "\"2025-12-31T23:59:59Z\"",
        "",
    ));
    lines.push(event("example.com", "success", "1767312000", ""));
    // Bad lines: 16, 17, 18.
    lines.push("not json".to_owned());
    lines.push(event(
        "example.com",
        "certificate_expired",
        "1767261600",
        "",
    ));
    lines.push(event("example.com", "success", "\"yesterday\"", ""));
    lines.join("\n") + "\n"
}

/// `report build` arguments, with `--org`, `--submitter` and `--day` as given.
fn build_args(events: &str, org: &str, submitter: &str, day: &str, out: &str) -> Vec<String> {
    let args = [
        "report",
        "build",
        "--events",
        events,
        "--org",
        org,
        "--contact",
        "tlsrpt@sender.example",
        "--submitter",
        submitter,
        "--day",
        day,
        "--out",
        out,
    ];
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn run_owned(args: &[String]) -> Run {
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn build(dir: &TempDir, events: &str, out: &str) -> Run {
    let path = dir.path("events.jsonl");
    std::fs::write(&path, events).unwrap();
    run_owned(&build_args(
        &path,
        "Example Sender",
        "Sender.Example",
        DAY,
        out,
    ))
}

#[test]
fn t14_report_build_writes_one_report_per_domain_and_lists_bad_lines() {
    let dir = TempDir::new("report-build");
    let out = TempDir::new("report-build-out");
    let r = build(&dir, &events(), &out.path("reports"));
    assert_eq!(r.code, Some(1), "bad lines: exit 1\n{}", show(&r));
    let o = &r.stdout;
    assert!(
        o.contains(
            ": 18 line(s), 12 session(s) of 2026-01-01, 2 of other days skipped, 3 bad line(s)"
        ),
        "{o}"
    );
    assert!(o.contains("line 16: not JSON: "), "{o}");
    assert!(
        o.contains(
            "line 17: result \"certificate_expired\" is neither success nor an RFC 8460 result type"
        ),
        "{o}"
    );
    assert!(
        o.contains("line 18: time \"yesterday\" is neither an RFC 3339 date-time nor Unix seconds"),
        "{o}"
    );
    let written = out.files("reports");
    assert_eq!(written.len(), 3, "{o}");
    for (domain, counts) in [
        (
            "example.com",
            "1 policy, 5 successful and 3 failed sessions",
        ),
        (
            "example.net",
            "1 policy, 1 successful and 1 failed sessions",
        ),
        (
            "example.org",
            "2 policies, 1 successful and 1 failed sessions",
        ),
    ] {
        let prefix = format!("sender.example!{domain}!1767225600!1767311999!");
        let path = written
            .iter()
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&prefix)
            })
            .unwrap_or_else(|| panic!("{prefix} in {written:?}"));
        assert!(path.to_str().unwrap().ends_with(".json.gz"));
        assert!(
            o.contains(&format!("wrote {} ({domain}: {counts})", path.display())),
            "{o}"
        );
        let read = read_report(&std::fs::read(path).unwrap(), &ReadLimits::default()).unwrap();
        assert!(read.warnings.is_empty(), "{domain}: {:?}", read.warnings);
        assert_eq!(read.report.organization_name, "Example Sender");
        assert_eq!(read.report.contact_info, "tlsrpt@sender.example");
        assert_eq!(
            read.report.date_range.start_datetime,
            "2026-01-01T00:00:00Z"
        );
    }

    // Read back by `mta-sts report`: the same totals.
    let mut args = vec!["report".to_owned(), "--json".to_owned()];
    args.extend(written.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v = run(&args).json();
    assert_eq!(v["reports"], 3);
    assert_eq!(v["problems"], serde_json::json!([]));
    let com = domain(&v, "example.com", "sts");
    assert_eq!(
        (com["successful"].as_u64(), com["failed"].as_u64()),
        (Some(5), Some(3))
    );
    let expired = com["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["result_type"] == "certificate-expired")
        .unwrap();
    assert_eq!(
        expired,
        &serde_json::json!({"result_type": "certificate-expired", "receiving_mx": "mx1.example.com",
            "sending_mta_ip": "192.0.2.1", "count": 2, "reason": "X509_V_ERR_CERT_HAS_EXPIRED"})
    );
    assert_eq!(com["verdict"]["status"], "blocked");
    let net = domain(&v, "example.net", "sts");
    assert_eq!(net["failures"][0]["result_type"], "sts-policy-fetch-error");
    assert_eq!(net["failures"][0]["reason"], "HTTP 503");
    assert_eq!(domain(&v, "example.org", "tlsa")["failed"], 1);
    assert_eq!(
        domain(&v, "example.org", "no-policy-found")["successful"],
        1
    );
}

#[test]
fn t14_report_build_is_deterministic_and_needs_no_bad_line_to_exit_0() {
    let good: String = events()
        .lines()
        .take(14)
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = TempDir::new("report-build-det");
    let a = build(&dir, &good, &dir.path("a"));
    let b = build(&dir, &good, &dir.path("b"));
    assert_eq!(a.code, Some(0), "{}", show(&a));
    assert_eq!(b.code, Some(0), "{}", show(&b));
    let names = |d: &str| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.0.join(d))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("a"), names("b"), "same events, same files");
    assert_eq!(
        dir.files("").len(),
        3,
        "events.jsonl, a, b: no temporary file left"
    );
}

#[test]
fn t14_report_build_without_sessions_of_the_day_writes_nothing() {
    let dir = TempDir::new("report-build-none");
    let r = build(
        &dir,
        &event("example.com", "success", "1767312000", ""),
        &dir.path("out"),
    );
    assert_eq!(r.code, Some(0), "{}", show(&r));
    assert!(
        r.stdout
            .contains("no session of 2026-01-01: no report written"),
        "{}",
        show(&r)
    );
    assert!(dir.files("out").is_empty());
}

#[test]
fn t14_report_build_long_and_binary_lines_are_bad_lines_not_a_crash() {
    let dir = TempDir::new("report-build-hostile");
    let mut input = vec![b'{'; 200 * 1024];
    input.extend_from_slice(b"\n\xff\xfe\n");
    input.extend_from_slice(event("example.com", "success", "1767225600", "").as_bytes());
    let path = dir.path("events.jsonl");
    std::fs::write(&path, &input).unwrap();
    let r = run_owned(&build_args(
        &path,
        "O",
        "sender.example",
        DAY,
        &dir.path("out"),
    ));
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.stdout.contains("line 1: longer than 131072 bytes"),
        "{}",
        show(&r)
    );
    assert!(r.stdout.contains("line 2: not UTF-8"), "{}", show(&r));
    assert!(
        r.stdout.contains("1 session(s) of 2026-01-01"),
        "{}",
        show(&r)
    );
}

#[test]
fn t14_report_build_usage_errors_exit_2() {
    let dir = TempDir::new("report-build-usage");
    let events = dir.path("events.jsonl");
    std::fs::write(&events, "").unwrap();
    let out = dir.path("out");
    let missing = dir.path("missing.jsonl");
    // An output directory that cannot be created: a file is in the way.
    let blocked = dir.path("file");
    std::fs::write(&blocked, "").unwrap();
    let under_file = format!("{blocked}/sub");
    for args in [
        build_args(&events, "O", "sender.example", "2026-13-01", &out),
        build_args(&events, "O", "sender.example", "yesterday", &out),
        build_args(&events, "O", "../etc", DAY, &out),
        build_args(&events, "O", "[192.0.2.1]", DAY, &out),
        build_args(&events, " ", "sender.example", DAY, &out),
        build_args(&missing, "O", "sender.example", DAY, &out),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_usage_errors(&[&args]);
    }
    assert_usage_errors(&[&["report", "build", "--events", &events]]);
    std::fs::write(&events, event("example.com", "success", "1767225600", "")).unwrap();
    let args = build_args(&events, "O", "sender.example", DAY, &under_file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_usage_errors(&[&args]);
}
