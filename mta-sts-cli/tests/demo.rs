//! `mta-sts demo`: runs without any network and prints every step.

mod common;

use common::run;

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
        "9. Done",
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
fn demo_takes_no_arguments() {
    assert_eq!(run(&["demo", "extra"]).code, Some(2));
}
