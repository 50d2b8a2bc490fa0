//! `mta-sts check` end to end against loopback testkit worlds: a healthy domain, each problem
//! class with its fix, JSON, and usage errors.

mod common;

use common::{Run, assert_usage_errors, run_in};
use mta_sts_testkit::{
    Cert, DnsFault, Domain, Http, Record, RecordType, Smtp, Txt, World, WorldBuilder,
};

const D: &str = "example.com";
const MX1: &str = "mx1.example.com";

fn world(domain: Domain) -> World {
    World::builder().domain(D, domain).build().expect("world")
}

fn healthy() -> Domain {
    Domain::enforce([MX1, "mx2.example.com"]).txt_id("20240101")
}

fn check(w: &World, extra: &[&str]) -> Run {
    run_in(w, "check", D, extra)
}

fn show(r: &Run) -> String {
    format!("exit {:?}\n{}\n{}", r.code, r.stdout, r.stderr)
}

#[test]
fn check_healthy_enforce_domain_exits_0() {
    let w = world(healthy());
    let r = check(&w, &[]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    assert!(
        r.has_line("ok", "one valid STS record, id 20240101"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("ok", "HTTP 200, Content-Type text/plain"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("ok", "certificate: subject CN=mta-sts.example.com"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("ok", "policy valid (strict profile): mode enforce"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("ok", "MX 10 mx1.example.com matches mx: mx1.example.com"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("ok", "MX 20 mx2.example.com matches"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("ok", "mx1.example.com (127.0.0.1:"),
        "{}",
        show(&r)
    );
    assert!(r.stdout.contains("STARTTLS, TLS 1."), "{}", show(&r));
    assert!(
        r.has_line("ok", "mx2.example.com: senders deliver here over STARTTLS"),
        "{}",
        show(&r)
    );
    assert!(r.stdout.contains("healthy: no problem found"));
    assert!(
        !r.stdout.contains('\x1b'),
        "no colour when not on a terminal"
    );
    // One probe per MX, each a STARTTLS handshake for the MX's own name.
    assert_eq!(w.smtp_handshakes(MX1), 1);
    assert_eq!(w.smtp_handshakes("mx2.example.com"), 1);
}

#[test]
fn check_json_has_the_documented_fields() {
    let w = world(healthy());
    let r = check(&w, &["--json"]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    let v = r.json();
    assert_eq!(v["domain"], D);
    assert_eq!(v["healthy"], true);
    assert_eq!(v["outcome"], "policy");
    assert_eq!(v["txt"]["name"], "_mta-sts.example.com");
    assert_eq!(
        v["txt"]["records"],
        serde_json::json!(["v=STSv1; id=20240101;"])
    );
    assert_eq!(v["txt"]["id"], "20240101");
    assert_eq!(v["fetch"]["status"], 200);
    assert_eq!(v["fetch"]["content_type"], "text/plain");
    assert!(v["fetch"]["size"].as_u64().unwrap() > 40);
    assert_eq!(
        v["fetch"]["certificate"]["names"],
        serde_json::json!(["mta-sts.example.com"])
    );
    assert!(
        v["fetch"]["certificate"]["not_after"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(v["policy"]["valid"], true);
    assert_eq!(v["policy"]["mode"], "enforce");
    assert_eq!(v["mx"][0]["host"], MX1);
    assert_eq!(v["mx"][0]["preference"], 10);
    assert_eq!(v["mx"][0]["decision"], "enforce");
    assert_eq!(v["mx"][0]["probe"]["starttls"], true);
    assert_eq!(
        v["mx"][0]["probe"]["certificate"]["names"],
        serde_json::json!([MX1])
    );
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["status"] != "fail"));
    assert!(
        checks
            .iter()
            .any(|c| c["section"] == "starttls" && c["status"] == "ok")
    );
}

#[test]
fn check_no_txt_record_exits_1_and_says_to_publish_it() {
    let w = world(healthy().no_txt());
    let r = check(&w, &[]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line("FAIL", "no TXT record at _mta-sts.example.com"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_fix("senders never fetch it without the TXT record"),
        "{}",
        show(&r)
    );
}

#[test]
fn check_nothing_set_up_points_to_generate() {
    let w = world(Domain::without_sts().mx_records([(10, MX1)]));
    let r = check(&w, &["--no-tls-probe"]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(r.has_fix("mta-sts generate"), "{}", show(&r));
    assert!(
        r.has_line("info", "no policy at https://mta-sts.example.com"),
        "{}",
        show(&r)
    );
}

#[test]
fn check_two_txt_records_exits_1() {
    let w = world(healthy().txts([Txt::sts("1"), Txt::sts("2")]));
    let r = check(&w, &[]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line("FAIL", "2 TXT records begin with"),
        "{}",
        show(&r)
    );
    assert!(r.has_fix("keep exactly one record"), "{}", show(&r));
}

#[test]
fn check_txt_id_but_policy_404_exits_1() {
    let w = world(healthy().http(Http::Status(404)));
    let r = check(&w, &[]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line("FAIL", "the TXT record announces a policy but"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_fix("publish the policy at https://mta-sts.example.com"),
        "{}",
        show(&r)
    );
    assert!(r.has_fix("or remove the TXT record"), "{}", show(&r));
}

#[test]
fn check_wrong_content_type_exits_1_and_still_lints_the_body() {
    let w = world(healthy().http(Http::ContentType("text/html".into())));
    let r = check(&w, &[]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line(
            "FAIL",
            "the policy is served as \"text/html\", not text/plain"
        ),
        "{}",
        show(&r)
    );
    assert!(r.has_fix("Content-Type: text/plain"), "{}", show(&r));
    assert!(
        r.has_line("ok", "policy valid (strict profile)"),
        "{}",
        show(&r)
    );
}

#[test]
fn check_invalid_policy_reports_line_numbers() {
    let body = "version: STSv1\nmode: Enforce\n\nmx: mx1.example.com\nmax_age: 86400\n";
    let w = world(healthy().policy_body(body));
    let r = check(&w, &[]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line("FAIL", "policy invalid (strict profile): 2 error(s)"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line(
            "FAIL",
            "policy line 2: mode must be one of enforce, testing, none"
        ),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("FAIL", "policy line 3: blank line"),
        "{}",
        show(&r)
    );
    assert!(r.has_fix("publish a new TXT id"), "{}", show(&r));
    let v = check(&w, &["--json"]).json();
    assert_eq!(v["policy"]["valid"], false);
    assert_eq!(v["policy"]["errors"][0]["line"], 2);
    assert_eq!(v["policy"]["errors"][1]["line"], 3);
}

#[test]
fn check_mx_not_matching_the_policy_exits_1() {
    let w = world(healthy().mx_records([(10, "mail.example.net")]));
    let r = check(&w, &["--no-tls-probe"]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line("FAIL", "MX 10 mail.example.net matches no mx pattern"),
        "{}",
        show(&r)
    );
    assert!(r.has_fix("add \"mx: mail.example.net\""), "{}", show(&r));
    assert!(
        r.has_line("FAIL", "enforcing senders defer all mail to example.com"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("info", "pattern mx: mx1.example.com matches none"),
        "{}",
        show(&r)
    );
}

#[test]
fn check_mx_given_on_the_command_line() {
    let w = world(healthy());
    let r = check(
        &w,
        &[
            "--no-tls-probe",
            "--mx",
            "mx2.example.com",
            "--mx",
            "other.example.org",
        ],
    );
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line("ok", "MX mx2.example.com matches"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("FAIL", "MX other.example.org matches no mx pattern"),
        "{}",
        show(&r)
    );
    assert_eq!(w.smtp_sessions(), 0, "--no-tls-probe connects to no MX");
}

#[test]
fn check_starttls_missing_exits_1() {
    let w = World::builder()
        .domain(D, healthy())
        .smtp(Smtp::NoStarttls)
        .build()
        .unwrap();
    let r = check(&w, &[]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line("FAIL", "STARTTLS is not offered in the EHLO reply"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_fix("enable STARTTLS on mx1.example.com"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("FAIL", "senders treat it as unreachable: no valid STARTTLS"),
        "{}",
        show(&r)
    );
}

#[test]
fn check_mx_certificate_for_the_wrong_name_exits_1() {
    let w = World::builder()
        .domain(D, healthy())
        .mx_cert("mx2.example.com", Cert::WrongName)
        .build()
        .unwrap();
    let r = check(&w, &[]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line(
            "FAIL",
            "the certificate is not valid for mx2.example.com: it names mta-sts.wrong-name.invalid"
        ),
        "{}",
        show(&r)
    );
    assert!(
        r.has_fix("install a certificate for mx2.example.com"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("ok", "mx1.example.com: senders deliver here over STARTTLS"),
        "{}",
        show(&r)
    );
}

#[test]
fn check_policy_host_certificate_expired_exits_1() {
    let w = world(healthy().cert(Cert::Expired));
    let r = check(&w, &["--no-tls-probe"]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line("FAIL", "the certificate has expired (2001-01-01"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_fix("install a certificate for mta-sts.example.com"),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("info", "certificate: subject CN=mta-sts.example.com"),
        "{}",
        show(&r)
    );
}

#[test]
fn check_testing_mode_is_healthy_with_a_reminder() {
    let w = world(Domain::testing([MX1]).txt_id("7"));
    let r = check(&w, &[]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    assert!(r.has_line("warn", "mode testing"), "{}", show(&r));
    assert!(r.has_fix("switch to mode enforce"), "{}", show(&r));
}

#[test]
fn check_redirect_is_never_followed() {
    let w = world(healthy().http(Http::Redirect {
        status: 301,
        location: "https://www.example.com/mta-sts.txt".into(),
    }));
    let r = check(&w, &["--no-tls-probe"]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line("FAIL", "answers 301, a redirect"),
        "{}",
        show(&r)
    );
    assert_eq!(w.fetches("mta-sts.example.com"), 1);
}

#[test]
fn check_usage_errors_exit_2() {
    assert_usage_errors(&[
        &["check"][..],
        &["check", "192.0.2.1"],
        &["check", "bad..name"],
        &["check", "example.com", "--resolver", "dns.example"],
        &["check", "example.com", "--timeout", "0"],
        &[
            "check",
            "example.com",
            "--resolver",
            "127.0.0.1:9",
            "--ca-file",
            "/nonexistent.pem",
        ],
        &["check", "example.com", "--mx", "192.0.2.1"],
    ]);
}

#[test]
fn check_hostile_smtp_greeting_is_refused_without_hanging() {
    use std::io::{Read, Write};
    // An "MX" that sends an endless greeting line: the probe must stop at its line cap.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(&[b'2'; 64 * 1024]);
        // Hold the connection until the client closes it.
        let mut sink = [0u8; 1024];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    });
    let w = world(Domain::enforce([MX1]));
    let ca = common::ca_file(&w);
    let r = common::run(&[
        "check",
        D,
        "--resolver",
        &w.dns_addr().to_string(),
        "--ca-file",
        ca.0.to_str().unwrap(),
        "--https-port",
        &w.https_port().to_string(),
        "--smtp-port",
        &port,
    ]);
    server.join().unwrap();
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line(
            "FAIL",
            "SMTP: greeting: a reply line longer than 2048 bytes"
        ),
        "{}",
        show(&r)
    );
}

#[test]
fn check_mx_lookup_failure_exits_1() {
    let w = World::builder()
        .domain(D, healthy())
        .dns_fault(D, Some(RecordType::Mx), DnsFault::ServFail)
        .build()
        .unwrap();
    let r = check(&w, &[]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line(
            "FAIL",
            "MX lookup of example.com failed: DNS server failure (SERVFAIL)"
        ),
        "{}",
        show(&r)
    );
    assert!(
        !r.stdout.contains("enforcing senders defer all mail"),
        "{}",
        show(&r)
    );
}

// ----- DANE (RFC 7672) and its precedence over MTA-STS (RFC 8461 §2, D7) -----

const MX2: &str = "mx2.example.com";

/// The healthy domain, its zone signed or not, with DANE-EE(3) SPKI SHA-256 TLSA records for
/// both MX hosts; returns the world and the TLSA records as presentation format (`3 1 1 <hex>`).
fn dane_world(
    signed: bool,
    builder: impl FnOnce(WorldBuilder) -> WorldBuilder,
) -> (World, [String; 2]) {
    let mut b = World::builder().domain(D, healthy());
    if signed {
        b = b.signed_zone(D);
    }
    let w = builder(b).build().expect("world");
    let tlsa = [MX1, MX2].map(|mx| match w.publish_mx_tlsa(mx, 3, 1, 1).expect("TLSA") {
        Record::Tlsa {
            usage,
            selector,
            matching_type,
            data,
        } => {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            format!("{usage} {selector} {matching_type} {hex}")
        }
        other => panic!("not a TLSA record: {other:?}"),
    });
    (w, tlsa)
}

#[test]
fn d7_check_dane_mandatory_shows_the_tlsa_records_and_dane_decides() {
    let (w, tlsa) = dane_world(true, |b| b);
    let r = check(&w, &[]);
    // DANE lines never change the exit code: the MTA-STS deployment is healthy.
    assert_eq!(r.code, Some(0), "{}", show(&r));
    assert!(r.stdout.contains("\nDANE (RFC 7672)\n"), "{}", show(&r));
    assert!(
        r.has_line(
            "ok",
            "DANE mandatory: every MX host has usable, authenticated TLSA"
        ),
        "{}",
        show(&r)
    );
    for (mx, t) in [MX1, MX2].iter().zip(&tlsa) {
        assert!(
            r.has_line("ok", &format!("MX {mx}: TLSA {t}, authenticated")),
            "{}",
            show(&r)
        );
    }
    assert!(
        r.has_line(
            "ok",
            "decides: DANE-mandatory; MTA-STS policy not applied (RFC 8461 §2)"
        ),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("info", "senders that implement DANE: DANE-mandatory"),
        "{}",
        show(&r)
    );
    assert!(
        r.stdout.contains("healthy: no problem found"),
        "{}",
        show(&r)
    );
}

#[test]
fn d7_check_dane_mandatory_json() {
    let (w, tlsa) = dane_world(true, |b| b);
    let r = check(&w, &["--json", "--no-tls-probe"]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    let v = r.json();
    let dane = &v["dane"];
    let mut keys: Vec<&str> = dane
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["decides", "hosts", "reason", "state", "tls_required"]
    );
    assert_eq!(dane["state"], "mandatory");
    assert_eq!(dane["tls_required"], true);
    assert_eq!(
        dane["decides"],
        "DANE-mandatory; MTA-STS policy not applied (RFC 8461 §2)"
    );
    assert!(
        dane["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("MX {MX1}: TLSA 3 1 1 ")),
        "{dane}"
    );
    assert_eq!(
        dane["hosts"],
        serde_json::json!([
            {"name": MX1, "coverage": "usable", "tlsa": [tlsa[0]], "reason": null},
            {"name": MX2, "coverage": "usable", "tlsa": [tlsa[1]], "reason": null},
        ])
    );
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["section"] == "dane" && c["status"] == "ok"),
        "{v}"
    );
    // The MTA-STS outcome is reported as without DANE.
    assert_eq!(v["outcome"], "policy");
}

#[test]
fn d7_check_dane_opportunistic_when_one_mx_has_no_tlsa() {
    let (w, tlsa) = dane_world(true, |b| b);
    w.remove_records(&mta_sts_testkit::tlsa_name(MX2));
    let r = check(&w, &["--no-tls-probe"]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    assert!(
        r.has_line("ok", &format!("MX {MX1}: TLSA {}, authenticated", tlsa[0])),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line(
            "info",
            &format!("MX {MX2}: not covered by DANE (no TLSA records, authenticated)")
        ),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("ok", "decides: DANE-opportunistic"),
        "{}",
        show(&r)
    );
}

#[test]
fn d7_check_unsigned_zone_dane_absent_mta_sts_decides_exit_unchanged() {
    let (w, _) = dane_world(false, |b| b);
    let r = check(&w, &[]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    assert!(
        r.has_line(
            "info",
            "DANE absent: MX records not authenticated (insecure)"
        ),
        "{}",
        show(&r)
    );
    assert!(
        r.has_line("info", "decides: DANE absent: MTA-STS decides"),
        "{}",
        show(&r)
    );
    assert!(
        !r.stdout.contains("senders that implement DANE"),
        "{}",
        show(&r)
    );
    let v = check(&w, &["--json", "--no-tls-probe"]).json();
    assert_eq!(v["dane"]["state"], "absent");
    assert_eq!(v["dane"]["tls_required"], false);
    assert_eq!(v["dane"]["decides"], "DANE absent: MTA-STS decides");
    assert_eq!(v["dane"]["hosts"], serde_json::json!([]));
    assert_eq!(v["healthy"], true);
}

#[test]
fn d7_check_dane_absent_keeps_a_failing_check_failing() {
    // DANE absent never changes today's exit code, either way.
    let w = world(healthy().no_txt());
    let r = check(&w, &["--no-tls-probe"]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    assert!(
        r.has_line("info", "decides: DANE absent: MTA-STS decides"),
        "{}",
        show(&r)
    );
}

#[test]
fn d7_check_bogus_tlsa_is_indeterminate_a_warning_with_a_fix() {
    let (w, _) = dane_world(true, |b| {
        b.dns_fault(
            &mta_sts_testkit::tlsa_name(MX1),
            Some(RecordType::Tlsa),
            DnsFault::Bogus,
        )
    });
    let r = check(&w, &["--no-tls-probe"]);
    assert_eq!(r.code, Some(0), "a warning, not a failure: {}", show(&r));
    assert!(
        r.has_line(
            "warn",
            "DANE indeterminate: TLSA _25._tcp.mx1.example.com: DNS server failure (SERVFAIL)"
        ),
        "{}",
        show(&r)
    );
    assert!(
        r.has_fix("a validating resolver must answer"),
        "{}",
        show(&r)
    );
    assert!(r.has_fix("usually means bogus DNSSEC"), "{}", show(&r));
    assert!(
        r.has_line(
            "warn",
            "decides: indeterminate: delivery defers (never a fall-back to MTA-STS)"
        ),
        "{}",
        show(&r)
    );
    let v = check(&w, &["--json", "--no-tls-probe"]).json();
    assert_eq!(v["dane"]["state"], "indeterminate");
    assert!(
        v["dane"]["decides"]
            .as_str()
            .unwrap()
            .starts_with("indeterminate: delivery defers"),
        "{v}"
    );
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["section"] == "dane"
                && c["status"] == "warn"
                && c["fix"]
                    .as_str()
                    .is_some_and(|f| f.contains("bogus DNSSEC"))),
        "{v}"
    );
}

#[test]
fn d7_check_no_dane_is_not_checked_and_asks_no_tlsa() {
    let (w, _) = dane_world(true, |b| b);
    let r = check(&w, &["--no-dane", "--no-tls-probe"]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    assert!(
        r.has_line("info", "DANE not checked (--no-dane)"),
        "{}",
        show(&r)
    );
    let v = check(&w, &["--no-dane", "--json", "--no-tls-probe"]).json();
    assert_eq!(v["dane"]["state"], "not-checked");
    assert_eq!(v["dane"]["hosts"], serde_json::json!([]));
    assert_eq!(
        w.queries(&mta_sts_testkit::tlsa_name(MX1), RecordType::Tlsa),
        0,
        "no DANE lookup with --no-dane"
    );
}

#[test]
fn d7_check_unusable_tlsa_is_a_warning_with_the_problem() {
    let (w, _) = dane_world(true, |b| b);
    for mx in [MX1, MX2] {
        let name = mta_sts_testkit::tlsa_name(mx);
        w.remove_records(&name);
        w.add_record(
            &name,
            Record::Tlsa {
                usage: 1,
                selector: 1,
                matching_type: 1,
                data: vec![0xab; 32],
            },
        );
    }
    let r = check(&w, &["--no-tls-probe"]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    let hex = "ab".repeat(32);
    assert!(
        r.has_line(
            "warn",
            &format!(
                "MX {MX1}: TLSA 1 1 1 {hex}, authenticated, none usable (certificate usage 1 is \
                 not DANE-TA(2) or DANE-EE(3))"
            )
        ),
        "{}",
        show(&r)
    );
    assert!(
        r.has_fix("TLSA records of usage DANE-TA(2) or DANE-EE(3)"),
        "{}",
        show(&r)
    );
    // Under the enforce policy, its answer applies: it requires TLS.
    assert!(
        r.has_line(
            "info",
            "decides: TLSA present but unusable: the MTA-STS policy (enforce) decides"
        ),
        "{}",
        show(&r)
    );
    let v = check(&w, &["--json", "--no-tls-probe"]).json();
    assert_eq!(v["dane"]["hosts"][0]["coverage"], "unusable");
    assert_eq!(
        v["dane"]["hosts"][0]["tlsa"],
        serde_json::json!([format!("1 1 1 {hex}")])
    );
}

// ----- TLSRPT (RFC 8460 §3, T15) -----

const TLSRPT_NAME: &str = "_smtp._tls.example.com";

/// The healthy domain with these TXT records at `_smtp._tls.example.com`, and `extra` records.
fn tlsrpt_world(records: &[&str], extra: &[(&str, Record)]) -> World {
    let mut b = World::builder().domain(D, healthy());
    for r in records {
        b = b.record(TLSRPT_NAME, Record::Txt(Txt::new(r)));
    }
    for (name, record) in extra {
        b = b.record(name, record.clone());
    }
    b.build().expect("world")
}

fn tlsrpt_lines(r: &Run) -> String {
    let out = &r.stdout;
    out.find("\nTLSRPT (RFC 8460)\n").map_or_else(
        || format!("no TLSRPT section in\n{out}"),
        |i| out[i..].to_owned(),
    )
}

#[test]
fn t15_check_without_tlsrpt_record_warns_and_stays_healthy() {
    let w = world(healthy());
    let r = check(&w, &["--no-tls-probe", "--no-dane"]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    assert!(
        r.has_line(
            "warn",
            "no TLSRPT record at _smtp._tls.example.com: example.com receives no TLS reports"
        ),
        "{}",
        tlsrpt_lines(&r)
    );
    assert!(
        r.has_fix(
            "publish \"v=TLSRPTv1; rua=mailto:tlsrpt@example.com\" (or an https: URL) at \
             _smtp._tls.example.com"
        ),
        "{}",
        tlsrpt_lines(&r)
    );
    // One lookup of the record, as dig would make it.
    assert_eq!(w.queries(TLSRPT_NAME, RecordType::Txt), 1);
    let v = check(&w, &["--no-tls-probe", "--no-dane", "--json"]).json();
    let t = &v["tlsrpt"];
    let keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["errors", "record", "rua", "warnings"]);
    assert_eq!(t["record"], serde_json::Value::Null);
    assert_eq!(t["rua"], serde_json::json!([]));
    assert_eq!(t["errors"], serde_json::json!([]));
    assert!(
        t["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("no TLSRPT record at _smtp._tls.example.com")
    );
}

#[test]
fn t15_check_testing_mode_without_tlsrpt_record_says_why_reports_matter() {
    let w = world(Domain::testing([MX1]).txt_id("7"));
    let r = check(&w, &["--no-tls-probe", "--no-dane"]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    assert!(
        r.has_line(
            "warn",
            "(in mode testing, the reports tell whether enforce is safe)"
        ),
        "{}",
        tlsrpt_lines(&r)
    );
}

#[test]
fn t15_check_valid_tlsrpt_record_with_usable_mailto_and_https() {
    let w = tlsrpt_world(
        &[
            "v=spf1 -all",
            "v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/v1/tlsrpt",
        ],
        &[(
            "reports.example.com",
            Record::A("127.0.0.1".parse().unwrap()),
        )],
    );
    let r = check(&w, &["--no-tls-probe", "--no-dane"]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    let section = tlsrpt_lines(&r);
    assert!(
        r.has_line(
            "info",
            "TXT _smtp._tls.example.com: \"v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/v1/tlsrpt\""
        ),
        "{section}"
    );
    assert!(
        r.has_line(
            "ok",
            "one valid TLSRPT record: rua mailto:tlsrpt@example.com, https://reports.example.com/v1/tlsrpt"
        ),
        "{section}"
    );
    assert!(
        r.has_line(
            "ok",
            "rua mailto:tlsrpt@example.com: example.com has MX 10 mx1.example.com, 20 mx2.example.com"
        ),
        "{section}"
    );
    assert!(
        r.has_line(
            "ok",
            "rua https://reports.example.com/v1/tlsrpt: reports.example.com resolves to 127.0.0.1"
        ),
        "{section}"
    );
    assert!(
        !section.contains("spf1"),
        "only TLSRPT candidates listed: {section}"
    );
    let v = check(&w, &["--no-tls-probe", "--no-dane", "--json"]).json();
    let t = &v["tlsrpt"];
    assert_eq!(
        t["record"],
        "v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/v1/tlsrpt"
    );
    assert_eq!(t["rua"][0]["scheme"], "mailto");
    assert_eq!(t["rua"][0]["host"], "example.com");
    assert_eq!(t["rua"][0]["usable"], true);
    assert_eq!(t["rua"][1]["uri"], "https://reports.example.com/v1/tlsrpt");
    assert_eq!(t["rua"][1]["host"], "reports.example.com");
    assert_eq!(t["rua"][1]["usable"], true);
    assert_eq!(t["errors"], serde_json::json!([]));
    assert_eq!(t["warnings"], serde_json::json!([]));
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["section"] == "tlsrpt" && c["status"] == "ok")
    );
}

#[test]
fn t15_check_tlsrpt_uris_that_cannot_receive_reports_fail() {
    // An https host that does not resolve and a mailto domain with a null MX (RFC 7505).
    let w = tlsrpt_world(
        &["v=TLSRPTv1; rua=https://nowhere.example.com/r,mailto:r@example.net"],
        &[("example.net", Record::Mx(0, String::new()))], // the root: a null MX
    );
    let r = check(&w, &["--no-tls-probe", "--no-dane"]);
    assert_eq!(r.code, Some(1), "{}", show(&r));
    let section = tlsrpt_lines(&r);
    assert!(
        r.has_line(
            "warn",
            "rua https://nowhere.example.com/r: the host does not resolve"
        ),
        "{section}"
    );
    assert!(
        r.has_line(
            "warn",
            "rua mailto:r@example.net: example.net has a null MX (RFC 7505): it accepts no mail"
        ),
        "{section}"
    );
    assert!(
        r.has_line(
            "FAIL",
            "no rua URI of the TLSRPT record can receive reports"
        ),
        "{section}"
    );
    let t = &check(&w, &["--no-tls-probe", "--no-dane", "--json"]).json()["tlsrpt"];
    assert_eq!(t["rua"][0]["usable"], false);
    assert_eq!(t["rua"][1]["usable"], false);
    assert_eq!(
        t["errors"][0]["message"],
        "no rua URI of the TLSRPT record can receive reports"
    );
    assert_eq!(t["warnings"].as_array().unwrap().len(), 2);
}

#[test]
fn t15_check_tlsrpt_record_senders_ignore_fails_with_the_column() {
    for (records, message, fix) in [
        (
            &[
                "v=TLSRPTv1; rua=mailto:a@example.com",
                "v=TLSRPTv1; rua=mailto:b@example.com",
            ][..],
            "TLSRPT record: ",
            "keep exactly one record beginning with \"v=TLSRPTv1\"",
        ),
        (
            &["v=TLSRPTv1; rua=ftp://reports.example.com/"][..],
            "(senders send no reports)",
            "publish \"v=TLSRPTv1; rua=mailto:tlsrpt@example.com\"",
        ),
    ] {
        let w = tlsrpt_world(records, &[]);
        let r = check(&w, &["--no-tls-probe", "--no-dane"]);
        assert_eq!(r.code, Some(1), "{}", show(&r));
        assert!(r.has_line("FAIL", message), "{}", tlsrpt_lines(&r));
        assert!(r.has_fix(fix), "{}", tlsrpt_lines(&r));
        let t = &check(&w, &["--no-tls-probe", "--no-dane", "--json"]).json()["tlsrpt"];
        assert_eq!(t["errors"].as_array().unwrap().len(), 1, "{t:#}");
        assert_eq!(t["record"], records[0]);
    }
}

#[test]
fn t15_check_tlsrpt_deviation_senders_accept_is_a_warning() {
    // A space after "rua=": the strict profile refuses it, senders read it.
    let w = tlsrpt_world(&["v=TLSRPTv1; rua= mailto:tlsrpt@example.com"], &[]);
    let r = check(&w, &["--no-tls-probe", "--no-dane"]);
    assert_eq!(r.code, Some(0), "{}", show(&r));
    assert!(
        r.has_line(
            "warn",
            "(senders still accept it: rua mailto:tlsrpt@example.com)"
        ),
        "{}",
        tlsrpt_lines(&r)
    );
    assert!(
        r.has_line("ok", "rua mailto:tlsrpt@example.com: example.com has MX"),
        "{}",
        tlsrpt_lines(&r)
    );
    let t = &check(&w, &["--no-tls-probe", "--no-dane", "--json"]).json()["tlsrpt"];
    assert_eq!(t["errors"], serde_json::json!([]));
    assert!(t["warnings"][0]["column"].is_u64(), "{t:#}");
}
