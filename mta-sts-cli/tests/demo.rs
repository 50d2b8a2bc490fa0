//! `mta-sts demo`: runs without any network and prints every step, ending with the TLSRPT
//! report of the walk-through's last day.

mod common;

use common::{TempDir, run};
use mta_sts_core::tlsrpt::{ReadLimits, read_report};

#[test]
fn demo_runs_offline_and_prints_every_step() {
    let r = run(&["demo"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let steps = [
        "1. Start a test world on 127.0.0.1",
        "2. Discovery: the _mta-sts TXT record",
        "3. Fetch:",
        "4. Cache:",
        "5. MX evaluation:",
        "6. Policy change:",
        "7. Outage: the policy host fails",
        "8. Outage: DNS answers SERVFAIL",
        "9. TLSRPT: the day's report",
        "10. Done",
    ];
    let mut at = 0;
    for step in steps {
        let found = r.stdout[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} in order:\n{}", r.stdout));
        at += found;
    }
    let out = &r.stdout;
    assert!(
        out.contains("_mta-sts.example.com TXT \"v=STSv1; id=20260101;\""),
        "{out}"
    );
    assert!(
        out.contains("outcome: policy: policy fetched (TXT id 20260101)"),
        "{out}"
    );
    assert!(out.contains("is still fresh"), "{out}");
    assert!(
        out.contains("[world so far: 1 TXT queries, 1 policy fetches] (no I/O at all)"),
        "{out}"
    );
    assert!(
        out.contains("mx.attacker.example    never deliver here"),
        "{out}"
    );
    assert!(out.contains("policy fetched (TXT id 20260102)"), "{out}");
    assert!(out.contains("mx3.example.com"), "{out}");
    assert!(
        out.contains("fetching the new policy failed: policy host answered HTTP 503"),
        "{out}"
    );
    assert!(
        out.contains("the TXT lookup failed: DNS server failure (SERVFAIL)"),
        "{out}"
    );
    assert!(!out.contains('\x1b'), "no colour when not on a terminal");
}

#[test]
fn t14_demo_records_its_deliveries_and_outages_and_ends_with_the_days_report() {
    let dir = TempDir::new("demo");
    let r = run(&["demo", "--out", &dir.path("out")]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let out = &r.stdout;
    // Every delivery is a real STARTTLS session to the world's MX, recorded as a success.
    assert_eq!(
        out.matches("TLSRPT: a successful session recorded").count(),
        5,
        "{out}"
    );
    assert!(
        out.contains("delivered to mx3.example.com (127.0.0.1:"),
        "{out}"
    );
    // The HTTP 503 outage is an sts-policy-fetch-error; the SERVFAIL has no result type.
    assert!(
        out.contains("TLSRPT: failure sts-policy-fetch-error recorded"),
        "{out}"
    );
    assert!(
        out.contains(
            "TLSRPT: nothing to record (RFC 8460 has no result type for a failed TXT lookup"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "UTC midnight has passed: the TLSRPT report of 2026-01-01 is closed (example.com: 1 \
             policy, 3 successful and 0 failed sessions)"
        ),
        "{out}"
    );
    let report = &out[out.find("9. TLSRPT").unwrap()..];
    for text in [
        "at UTC midnight (2026-01-03T00:00:00Z) the day closes",
        "sender.example!example.com!1767312000!1767398399!",
        "\"start-datetime\": \"2026-01-02T00:00:00Z\"",
        "\"total-successful-session-count\": 2",
        "\"total-failure-session-count\": 1",
        "\"result-type\": \"sts-policy-fetch-error\"",
        "\"failure-reason-code\": \"policy host answered HTTP 503, not 200\"",
        "\"mx: mx3.example.com\"",
    ] {
        assert!(report.contains(text), "{text:?} in\n{report}");
    }
    // Both days' reports written, each readable without a warning.
    let files = dir.files("out");
    assert_eq!(files.len(), 2, "{files:?}");
    let mut totals = Vec::new();
    for f in &files {
        assert!(
            report.contains(&format!("wrote {}", f.display())),
            "{report}"
        );
        let read = read_report(&std::fs::read(f).unwrap(), &ReadLimits::default()).unwrap();
        assert!(read.warnings.is_empty(), "{:?}", read.warnings);
        let s = read.report.policies[0].summary;
        totals.push((
            s.total_successful_session_count,
            s.total_failure_session_count,
        ));
    }
    assert_eq!(totals, [(3, 0), (2, 1)]);
    // Without --out, nothing is written and the demo says how.
    let r = run(&["demo"]);
    assert!(
        r.stdout
            .contains("(mta-sts demo --out DIR writes every day's report as .json.gz)"),
        "{}",
        r.stdout
    );
}

#[test]
fn demo_takes_no_arguments() {
    assert_eq!(run(&["demo", "extra"]).code, Some(2));
}
