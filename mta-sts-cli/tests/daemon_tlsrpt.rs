//! `mta-sts daemon` in a `tlsrpt: true` zone (REQUIREMENTS.md T17): every answer carries the
//! TLSRPT attributes Postfix 3.10 accepts for it, and no others. The binary against the testkit
//! worlds, and the longest answer through Postfix's own socketmap client (`postmap -q`).
//!
//! The rules, from Postfix 3.10's sources (mta-sts-postfix/src/responder.rs has them with their
//! excerpts): a plug-in may send `policy_type` `sts` or `no-policy-found` (never `tlsa`:
//! `tlsrpt_policy_type_mapping` in `src/tls/tlsrpt_wrapper.c`); at `dane` and `dane-only` Postfix
//! reports its own TLSA lookup (`smtp_tlsrpt_set_tls_policy` in `src/smtp/smtp_tlsrpt.c`);
//! `NOTFOUND`, `TEMP` and `PERM` carry no data.
//!
//! | answer | attributes |
//! |---|---|
//! | `OK secure …` (enforce, strict_testing, a cached policy after a failed refresh) | `policy_type=sts policy_domain=… mx_host_pattern=… { policy_string = … }…` |
//! | `OK encrypt` (TLSA unusable, no enforce policy) | `policy_type=no-policy-found` |
//! | `OK dane-only`, `OK dane` | none (Postfix reports `tlsa` itself) |
//! | `NOTFOUND`, `TEMP` | none |

mod daemon_support;

use daemon_support::{
    Daemon, ask, ask_one, dane_world, postfix_conf, postmap, postmap_or_skip, scratch_dir, world,
};
use mta_sts_postfix::responder::MAX_REPLY;
use mta_sts_testkit::{Domain, Http, World};

/// A default zone with TLSRPT attributes, and one that also answers `testing` like `enforce`.
const CONFIG: &str = "port: 0\ncache_grace: 0\ndefault_zone:\n  timeout: 5\n  tlsrpt: true\nzones:\n  strict:\n    strict_testing: true\n    tlsrpt: true\n";

/// The `sts` attributes of a policy of `domain` with the single MX `mx.<domain>`.
fn sts_attributes(domain: &str, mode: &str, max_age: u32) -> String {
    format!(
        "policy_type=sts policy_domain={domain} mx_host_pattern=mx.{domain} \
         {{ policy_string = mx: mx.{domain} }} {{ policy_string = version: STSv1 }} \
         {{ policy_string = mode: {mode} }} {{ policy_string = max_age: {max_age} }}"
    )
}

const ENFORCE_TLSRPT: &str = "OK secure match=mx1.enforce.test:.pool.enforce.test servername=hostname \
     policy_type=sts policy_domain=enforce.test \
     mx_host_pattern=mx1.enforce.test mx_host_pattern=*.pool.enforce.test \
     { policy_string = mx: mx1.enforce.test } { policy_string = mx: *.pool.enforce.test } \
     { policy_string = version: STSv1 } { policy_string = mode: enforce } \
     { policy_string = max_age: 86400 }";

#[test]
fn t17_mta_sts_answers_carry_sts_and_the_rest_is_notfound() {
    let world = world();
    let d = Daemon::start(&world, &scratch_dir("tlsrpt-kinds"), CONFIG);
    let replies = ask(
        d.addr(),
        &[
            "postfix enforce.test",
            "postfix testing.test",
            "postfix none.test",
            "postfix nopolicy.test",
            "postfix servfail.test",
            "postfix httpsdown.test",
            "postfix .enforce.test",
            "postfix [192.0.2.1]:25",
            "strict testing.test",
        ],
    );
    assert_eq!(
        replies,
        [
            ENFORCE_TLSRPT.to_owned(),
            // No policy_type=sts for testing: Postfix has no level that reports without
            // enforcing; it reports no-policy-found itself for NOTFOUND.
            "NOTFOUND ".to_owned(),
            "NOTFOUND ".to_owned(),
            "NOTFOUND ".to_owned(),
            "NOTFOUND ".to_owned(),
            // A fetch failure with nothing cached: no policy_failure (it would only relabel a
            // certificate failure), NOTFOUND as without tlsrpt.
            "NOTFOUND ".to_owned(),
            "NOTFOUND ".to_owned(),
            "NOTFOUND ".to_owned(),
            format!(
                "OK secure match=mx.testing.test servername=hostname {}",
                sts_attributes("testing.test", "testing", 86400)
            ),
        ]
    );
    for r in &replies {
        assert!(!r.contains("policy_failure") && !r.contains("tlsa"), "{r}");
    }
}

#[test]
fn t17_a_cached_policy_after_a_failed_refresh_keeps_its_sts_attributes() {
    let world = world();
    let d = Daemon::start(&world, &scratch_dir("tlsrpt-cached"), CONFIG);
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_TLSRPT);
    // A new TXT id, and the policy host fails: the cached policy still applies (RFC 8461 §5.1),
    // described as it is, without policy_failure.
    world.update("enforce.test", |dom| {
        dom.txt_id("2").http(Http::Status(503))
    });
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_TLSRPT);
    assert_eq!(world.fetches("mta-sts.enforce.test"), 2);
    // An invalid new policy: the same.
    world.update("enforce.test", |dom| {
        dom.txt_id("3")
            .http(Http::Policy)
            .policy_body("version: STSv1\nmode: enforce\n")
    });
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_TLSRPT);
    assert_eq!(world.fetches("mta-sts.enforce.test"), 3);
}

#[test]
fn t17_dane_answers_carry_nothing_encrypt_carries_no_policy_found() {
    let world = dane_world();
    let d = Daemon::start(&world, &scratch_dir("tlsrpt-dane"), CONFIG);
    let replies = ask(
        d.addr(),
        &[
            "postfix mandatory.test",
            "postfix opportunistic.test",
            "postfix unusable.test",
            "postfix unusabletesting.test",
            "postfix unusableenforce.test",
            "strict unusabletesting.test",
            "postfix unsigned.test",
            "postfix signednopolicy.test",
            "postfix bogustlsa.test",
        ],
    );
    assert_eq!(
        replies[..8],
        [
            "OK dane-only".to_owned(),
            "OK dane".to_owned(),
            "OK encrypt policy_type=no-policy-found".to_owned(),
            "OK encrypt policy_type=no-policy-found".to_owned(),
            format!(
                "OK secure match=mx.unusableenforce.test servername=hostname {}",
                sts_attributes("unusableenforce.test", "enforce", 86400)
            ),
            format!(
                "OK secure match=mx.unusabletesting.test servername=hostname {}",
                sts_attributes("unusabletesting.test", "testing", 86400)
            ),
            format!(
                "OK secure match=mx.unsigned.test servername=hostname {}",
                sts_attributes("unsigned.test", "enforce", 86400)
            ),
            "NOTFOUND ".to_owned(),
        ]
    );
    // An indeterminate DANE state: TEMP, whose text is a reason, not attributes.
    assert!(
        replies[8].starts_with("TEMP DANE state of bogustlsa.test is indeterminate: "),
        "{:?}",
        replies[8]
    );
    assert!(!replies[8].contains("policy_type"), "{:?}", replies[8]);
}

/// A policy of 500 long MX names, with an extension line of `pad` bytes when `pad` > 0: its
/// `tlsrpt` answer is about 91,000 bytes without the pad.
fn long_policy(pad: usize) -> String {
    let mut body = String::from("version: STSv1\nmode: enforce\nmax_age: 86400\n");
    for i in 0..500 {
        body.push_str(&format!(
            "mx: mx{i:03}.a-rather-long-mail-host-name.example.com\n"
        ));
    }
    if pad > 0 {
        body.push_str(&format!("x-pad: {}\n", "p".repeat(pad)));
    }
    body
}

fn long_domain(pad: usize) -> Domain {
    Domain::enforce(["mx.unused.test"])
        .txt_id("1")
        .policy_body(long_policy(pad))
}

/// Asks for `name` (added to `world` with a policy padded by `pad`) and returns the answer.
fn ask_long(world: &World, d: &Daemon, name: &str, pad: usize) -> String {
    world.add_domain(name, long_domain(pad));
    ask_one(d.addr(), &format!("postfix {name}"))
}

/// The answer exactly [`MAX_REPLY`] bytes long (`OK ` included) for `long2.test`, found by
/// asking for `long1.test` (same name length) with a 1-byte pad first; also the answer one byte
/// too long for `long3.test`.
fn longest_answers(world: &World, d: &Daemon) -> (String, String) {
    let probe = ask_long(world, d, "long1.test", 1);
    assert!(
        probe.contains(" policy_type=sts ") && probe.len() < MAX_REPLY - 100,
        "{} bytes",
        probe.len()
    );
    let pad = MAX_REPLY - probe.len() + 1;
    let longest = ask_long(world, d, "long2.test", pad);
    let over = ask_long(world, d, "long3.test", pad + 1);
    (longest, over)
}

#[test]
fn t17_the_longest_answer_is_max_reply_and_a_longer_one_goes_without_attributes() {
    let world = world();
    let d = Daemon::start(&world, &scratch_dir("tlsrpt-longest"), CONFIG);
    let (longest, over) = longest_answers(&world, &d);
    assert_eq!(longest.len(), MAX_REPLY);
    assert!(longest.contains(" policy_type=sts policy_domain=long2.test "));
    assert!(
        longest.ends_with(" }"),
        "{}",
        &longest[longest.len() - 40..]
    );
    // One byte more: the same level and names without the description, never TEMP.
    assert!(
        over.starts_with("OK secure match=mx000."),
        "{}",
        &over[..40]
    );
    assert!(over.ends_with(".example.com servername=hostname"));
    assert!(!over.contains("policy_type"));
}

#[test]
fn t17_postmap_takes_the_sts_answer_and_the_longest_one() {
    if !postmap_or_skip() {
        return;
    }
    let world = world();
    let dir = scratch_dir("tlsrpt-postmap");
    let conf = postfix_conf(&dir);
    let d = Daemon::start(&world, &dir, CONFIG);
    let (longest, _) = longest_answers(&world, &d);
    // Postfix's socketmap client takes at most 100,000 bytes (socketmap_max_reply_size): the
    // longest answer is printed whole.
    for (key, want) in [
        ("enforce.test", &ENFORCE_TLSRPT["OK ".len()..]),
        ("long2.test", &longest["OK ".len()..]),
    ] {
        let out = postmap(&conf, d.addr(), "postfix", key);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "postmap -q {key}: {stderr}");
        assert!(
            stdout.trim_end() == want,
            "postmap -q {key}: {} bytes, {stderr}",
            stdout.len()
        );
    }
}
