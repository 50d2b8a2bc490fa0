//! `mta-sts query` end to end against a loopback testkit world: the outcomes, the JSON fields,
//! exit codes and usage errors.

mod common;

use common::{assert_usage_errors, run_in};
use mta_sts_testkit::{DnsFault, Domain, Http, Record, RecordType, World, tlsa_name};

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

// ----- DANE first (RFC 8461 §2, D7) -----

const SIGNED: &str = "signed.example";
const SIGNED_MX: &str = "mx1.signed.example";
const PLAIN: &str = "plain.example";
const PLAIN_MX: &str = "mx1.plain.example";
const BOGUS: &str = "bogus.example";
const BOGUS_MX: &str = "mx1.bogus.example";

/// Three enforce domains whose MX publishes DANE-EE TLSA records: in a signed zone, in an
/// unsigned one, and in a signed one whose TLSA answer is bogus (the validator's SERVFAIL).
/// Returns the world and the signed MX's TLSA record in presentation format.
fn dane_world() -> (World, String) {
    let w = World::builder()
        .domain(SIGNED, Domain::enforce([SIGNED_MX]).txt_id("1"))
        .domain(PLAIN, Domain::enforce([PLAIN_MX]).txt_id("1"))
        .domain(BOGUS, Domain::enforce([BOGUS_MX]).txt_id("1"))
        .signed_zone(SIGNED)
        .signed_zone(BOGUS)
        .dns_fault(
            &tlsa_name(BOGUS_MX),
            Some(RecordType::Tlsa),
            DnsFault::Bogus,
        )
        .build()
        .expect("world");
    let mut signed = String::new();
    for mx in [SIGNED_MX, PLAIN_MX, BOGUS_MX] {
        let Record::Tlsa {
            usage,
            selector,
            matching_type,
            data,
        } = w.publish_mx_tlsa(mx, 3, 1, 1).expect("TLSA")
        else {
            panic!("not a TLSA record");
        };
        if mx == SIGNED_MX {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            signed = format!("{usage} {selector} {matching_type} {hex}");
        }
    }
    (w, signed)
}

#[test]
fn d7_query_dane_mandatory_json_dane_decides_outcome_unchanged() {
    let (w, tlsa) = dane_world();
    let r = run_in(&w, "query", SIGNED, &["--json"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v = r.json();
    // The MTA-STS outcome is reported as without DANE; `dane` says which mechanism wins.
    assert_eq!(v["outcome"], "policy");
    assert_eq!(v["mode"], "enforce");
    assert_eq!(
        v["dane"],
        serde_json::json!({
            "state": "mandatory",
            "reason": format!("MX {SIGNED_MX}: TLSA {tlsa}, authenticated"),
            "tls_required": true,
            "decides": "DANE-mandatory; MTA-STS policy not applied (RFC 8461 §2)",
        })
    );
}

#[test]
fn d7_query_dane_mandatory_text() {
    let (w, tlsa) = dane_world();
    let r = run_in(&w, "query", SIGNED, &[]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "  dane:    mandatory: MX {SIGNED_MX}: TLSA {tlsa}, authenticated\n"
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("  decides: DANE-mandatory; MTA-STS policy not applied (RFC 8461 §2)\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn d7_query_unsigned_zone_dane_absent_mta_sts_decides() {
    let (w, _) = dane_world();
    let r = run_in(&w, "query", PLAIN, &["--json"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["outcome"], "policy");
    assert_eq!(v["dane"]["state"], "absent");
    assert_eq!(v["dane"]["tls_required"], false);
    assert_eq!(v["dane"]["decides"], "DANE absent: MTA-STS decides");
    assert!(
        v["dane"]["reason"]
            .as_str()
            .unwrap()
            .contains("MX records not authenticated"),
        "{v}"
    );
    let r = run_in(&w, "query", PLAIN, &[]);
    assert!(
        r.stdout
            .contains("  decides: DANE absent: MTA-STS decides\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn d7_query_bogus_tlsa_is_indeterminate_and_defers() {
    let (w, _) = dane_world();
    let r = run_in(&w, "query", BOGUS, &["--json"]);
    // The exit code is the MTA-STS answer's (a policy applies), as documented.
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["outcome"], "policy");
    assert_eq!(v["dane"]["state"], "indeterminate");
    assert_eq!(
        v["dane"]["reason"],
        format!("TLSA _25._tcp.{BOGUS_MX}: DNS server failure (SERVFAIL)")
    );
    assert_eq!(
        v["dane"]["decides"],
        "indeterminate: delivery defers (never a fall-back to MTA-STS)"
    );
    let r = run_in(&w, "query", BOGUS, &[]);
    assert!(
        r.stdout
            .contains("  dane:    indeterminate: TLSA _25._tcp."),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("  decides: indeterminate: delivery defers"),
        "{}",
        r.stdout
    );
}

#[test]
fn d7_query_no_dane_is_not_checked() {
    let (w, _) = dane_world();
    let r = run_in(&w, "query", SIGNED, &["--json", "--no-dane"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["outcome"], "policy");
    assert_eq!(
        v["dane"],
        serde_json::json!({"state": "not-checked", "reason": "DANE lookups are off"})
    );
    let r = run_in(&w, "query", SIGNED, &["--no-dane"]);
    assert!(
        r.stdout.contains("  dane:    not checked\n"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("decides:"), "{}", r.stdout);
    assert_eq!(
        w.queries(&tlsa_name(SIGNED_MX), RecordType::Tlsa),
        0,
        "no DANE lookup with --no-dane"
    );
}
