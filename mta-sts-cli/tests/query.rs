//! `mta-sts query` end to end against a loopback testkit world: the outcomes, the JSON fields,
//! exit codes and usage errors.

mod common;

use common::{assert_usage_errors, run_in};
use mta_sts_testkit::{DnsFault, Domain, Http, World};

fn world() -> World {
    World::builder()
        .domain(
            "enforce.example",
            Domain::enforce(["mx1.enforce.example", "*.mx.enforce.example"]).txt_id("20240101"),
        )
        .domain("none.example", Domain::without_sts())
        .domain(
            "down.example",
            Domain::testing(["mx.down.example"]).http(Http::Status(500)),
        )
        .domain(
            "servfail.example",
            Domain::enforce(["mx.servfail.example"]).txt_fault(DnsFault::ServFail),
        )
        .build()
        .expect("world")
}

const FIELDS: [&str; 8] = [
    "domain", "outcome", "mode", "mx", "max_age", "id", "reason", "dane",
];

#[test]
fn query_policy_json_has_exactly_the_documented_fields() {
    let w = world();
    let r = run_in(&w, "query", "Enforce.Example.", &["--json"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v = r.json();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = FIELDS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(v["domain"], "enforce.example");
    assert_eq!(v["outcome"], "policy");
    assert_eq!(v["mode"], "enforce");
    assert_eq!(
        v["mx"],
        serde_json::json!(["mx1.enforce.example", "*.mx.enforce.example"])
    );
    assert_eq!(v["max_age"], 86400);
    assert_eq!(v["id"], "20240101");
    assert!(v["reason"].as_str().unwrap().contains("fetched"));
}

#[test]
fn query_text_output() {
    let w = world();
    let r = run_in(&w, "query", "enforce.example", &[]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("enforce.example: policy\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("  mode:    enforce\n"));
    assert!(r.stdout.contains("  id:      20240101\n"));
}

#[test]
fn r7_query_no_record_is_no_policy_exit_1() {
    let w = world();
    let r = run_in(&w, "query", "none.example", &["--json"]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["outcome"], "no-policy");
    for k in ["mode", "mx", "max_age", "id"] {
        assert!(v[k].is_null(), "{k}");
    }
    assert!(v["reason"].as_str().unwrap().contains("NXDOMAIN"), "{v}");
}

#[test]
fn r20_query_fetch_failure_is_no_policy_with_the_reason() {
    let w = world();
    let v = run_in(&w, "query", "down.example", &["--json"]).json();
    assert_eq!(v["outcome"], "no-policy");
    assert!(v["reason"].as_str().unwrap().contains("HTTP 500"), "{v}");
}

#[test]
fn r12_query_dns_failure_is_temporary_failure() {
    let w = world();
    let r = run_in(&w, "query", "servfail.example", &["--json"]);
    assert_eq!(r.code, Some(1));
    let v = r.json();
    assert_eq!(v["outcome"], "temporary-failure");
    assert!(v["reason"].as_str().unwrap().contains("SERVFAIL"), "{v}");
}

#[test]
fn query_usage_errors_exit_2() {
    assert_usage_errors(&[
        &["query"][..],
        &["query", "[192.0.2.1]"],
        &["query", "example.com", "--resolver", "not-an-ip"],
        &["query", "example.com", "--timeout", "soon"],
        &[
            "query",
            "example.com",
            "--resolver",
            "127.0.0.1:9",
            "--ca-file",
            "/nonexistent.pem",
        ],
    ]);
}
