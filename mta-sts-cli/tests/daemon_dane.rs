//! `mta-sts daemon` decides DANE first (RFC 8461 §2, REQUIREMENTS.md D11): the binary against a
//! testkit world whose DNS server answers as a validating resolver (AD on signed zones, SERVFAIL
//! for a bogus answer), one domain per DANE state ([`dane_world`]).
//!
//! | DANE state | answer |
//! |---|---|
//! | mandatory | `OK dane-only` |
//! | opportunistic | `OK dane` |
//! | indeterminate | `TEMP <reason>` |
//! | unusable-only, no `enforce` policy | `OK encrypt` |
//! | unusable-only, `enforce` policy | the MTA-STS answer |
//! | absent | the MTA-STS answer |
//! | zone `dane: false` | the MTA-STS answer |

mod daemon_support;

use daemon_support::{
    Daemon, USABLE_TLSA, ask, ask_one, dane_world, publish_tlsa, scratch_dir, secure_reply,
};
use mta_sts_testkit::{Domain, World};

/// The default zone (DANE on, as by default), a zone with DANE off and one with TLSRPT
/// attributes.
const CONFIG: &str = "port: 0\ndefault_zone:\n  timeout: 5\nzones:\n  nodane:\n    dane: false\n  report:\n    tlsrpt: true\n";

fn daemon(world: &World, name: &str) -> Daemon {
    Daemon::start(world, &scratch_dir(name), CONFIG)
}

/// Asserts that `reply` is the TEMP answer for an indeterminate DANE state of `domain`, whose
/// deciding query was `query` (`"<type> <name>"`), and that it names the failure.
fn assert_indeterminate(reply: &str, domain: &str, query: &str) {
    let prefix = format!("TEMP DANE state of {domain} is indeterminate: {query}: ");
    assert!(
        reply.starts_with(&prefix),
        "{reply:?} does not start with {prefix:?}"
    );
    assert!(
        reply.contains("SERVFAIL"),
        "{reply:?} does not name the failure"
    );
}

#[test]
fn d11_dane_mandatory_answers_dane_only() {
    let world = dane_world();
    let d = daemon(&world, "dane-mandatory");
    // Every MX host has a usable TLSA record: DANE alone decides, whatever the (enforce)
    // MTA-STS policy says, and in any key form Postfix uses.
    assert_eq!(
        ask(
            d.addr(),
            &[
                "postfix mandatory.test",
                "postfix [mandatory.test]:25",
                "postfix MANDATORY.test."
            ]
        ),
        ["OK dane-only", "OK dane-only", "OK dane-only"]
    );
}

#[test]
fn d11_dane_opportunistic_answers_dane() {
    let world = dane_world();
    let d = daemon(&world, "dane-opportunistic");
    // mx1 has a usable TLSA record, mx2 an authenticated proof of none.
    assert_eq!(ask_one(d.addr(), "postfix opportunistic.test"), "OK dane");
}

#[test]
fn d11_indeterminate_bogus_tlsa_answers_temp_never_the_policy() {
    let world = dane_world();
    let d = daemon(&world, "dane-bogus-tlsa");
    // The policy is fine (enforce, fetched), but the TLSA answer that decides DANE is bogus:
    // MTA-STS must not stand in for it.
    let reply = ask_one(d.addr(), "postfix bogustlsa.test");
    assert_indeterminate(&reply, "bogustlsa.test", "TLSA _25._tcp.mx.bogustlsa.test");
    // The policy was looked up all the same (the DANE queries go out beside it): the TEMP is
    // DANE's, not a failed MTA-STS lookup.
    assert_eq!(world.fetches("mta-sts.bogustlsa.test"), 1);
}

#[test]
fn d11_indeterminate_mx_servfail_answers_temp_never_the_policy() {
    let world = dane_world();
    let d = daemon(&world, "dane-mx-servfail");
    let reply = ask_one(d.addr(), "postfix mxservfail.test");
    assert_indeterminate(&reply, "mxservfail.test", "MX mxservfail.test");
    assert_eq!(world.fetches("mta-sts.mxservfail.test"), 1);
}

#[test]
fn d11_unusable_tlsa_without_an_enforce_policy_answers_encrypt() {
    let world = dane_world();
    let d = daemon(&world, "dane-unusable");
    assert_eq!(
        ask(
            d.addr(),
            &[
                // No MTA-STS at all.
                "postfix unusable.test",
                // A testing policy does not require TLS: it cannot stand in for DANE's
                // mandatory TLS.
                "postfix unusabletesting.test",
            ]
        ),
        ["OK encrypt", "OK encrypt"]
    );
}

#[test]
fn d11_unusable_tlsa_with_an_enforce_policy_answers_the_mta_sts_policy() {
    let world = dane_world();
    let d = daemon(&world, "dane-unusable-enforce");
    // The enforce policy requires TLS and authenticates the MX host besides.
    assert_eq!(
        ask_one(d.addr(), "postfix unusableenforce.test"),
        secure_reply("unusableenforce.test")
    );
}

#[test]
fn d11_unsigned_mx_answers_the_mta_sts_policy_even_with_tlsa_behind_it() {
    let world = dane_world();
    let d = daemon(&world, "dane-unsigned");
    assert_eq!(
        ask_one(d.addr(), "postfix unsigned.test"),
        secure_reply("unsigned.test")
    );
}

#[test]
fn d11_signed_without_tlsa_answers_the_mta_sts_policy() {
    let world = dane_world();
    let d = daemon(&world, "dane-no-tlsa");
    assert_eq!(
        ask(
            d.addr(),
            &["postfix signednotlsa.test", "postfix signednopolicy.test"]
        ),
        [secure_reply("signednotlsa.test"), "NOTFOUND ".to_owned()]
    );
}

#[test]
fn d11_dane_false_zone_answers_mta_sts_whatever_the_dns_says() {
    let world = dane_world();
    let d = daemon(&world, "dane-off");
    assert_eq!(
        ask(
            d.addr(),
            &[
                "nodane mandatory.test",
                "nodane opportunistic.test",
                "nodane bogustlsa.test",
                "nodane mxservfail.test",
                "nodane unusable.test",
                "nodane unusabletesting.test",
                // The same daemon, DANE on: the DNS does say DANE.
                "postfix mandatory.test",
            ]
        ),
        [
            secure_reply("mandatory.test"),
            "OK secure match=mx1.opportunistic.test:mx2.opportunistic.test servername=hostname"
                .to_owned(),
            secure_reply("bogustlsa.test"),
            secure_reply("mxservfail.test"),
            "NOTFOUND ".to_owned(),
            "NOTFOUND ".to_owned(),
            "OK dane-only".to_owned(),
        ]
    );
}

#[test]
fn d11_a_dane_state_applies_at_once_over_a_cached_policy_and_leaves_it_cached() {
    // TTL 0: the DANE state is never cached, each request looks it up again.
    let world = World::builder()
        .ttl(0)
        .domain("flip.test", Domain::enforce(["mx.flip.test"]).txt_id("1"))
        .build()
        .expect("start the testkit world");
    let d = daemon(&world, "dane-flip");
    let secure = secure_reply("flip.test");

    // Unsigned: DANE absent, the policy is fetched, cached and answered.
    assert_eq!(ask_one(d.addr(), "postfix flip.test"), secure);
    assert_eq!(world.fetches("mta-sts.flip.test"), 1);

    // Signed, with a usable TLSA record: DANE decides at the next request, over the cached
    // policy.
    world.set_signed_zone("flip.test", true);
    publish_tlsa(&world, "mx.flip.test", USABLE_TLSA);
    assert_eq!(ask_one(d.addr(), "postfix flip.test"), "OK dane-only");

    // Unsigned again: the cached policy answers, untouched by the DANE state and not fetched
    // again.
    world.set_signed_zone("flip.test", false);
    assert_eq!(ask_one(d.addr(), "postfix flip.test"), secure);
    assert_eq!(world.fetches("mta-sts.flip.test"), 1);
}

#[test]
fn d11_tlsrpt_zone_dane_answers_carry_no_sts_attributes() {
    let world = dane_world();
    let d = daemon(&world, "dane-tlsrpt");
    let replies = ask(
        d.addr(),
        &[
            "report mandatory.test",
            "report opportunistic.test",
            "report unusable.test",
            "report unsigned.test",
        ],
    );
    // Postfix reports its own TLSA lookup at dane-only and dane; `encrypt` is described as
    // Postfix 3.10 accepts it (T17, daemon_tlsrpt.rs).
    assert_eq!(
        replies[..3],
        [
            "OK dane-only",
            "OK dane",
            "OK encrypt policy_type=no-policy-found"
        ]
    );
    // Where DANE is absent the MTA-STS answer carries them, as without DANE.
    assert!(
        replies[3].starts_with(&format!(
            "{} policy_type=sts policy_domain=unsigned.test ",
            secure_reply("unsigned.test")
        )),
        "{:?}",
        replies[3]
    );
}
