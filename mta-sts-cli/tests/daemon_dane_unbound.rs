//! `mta-sts daemon` decides DANE first behind a real validating resolver (REQUIREMENTS.md D11):
//! zones signed with ldns-signzone, served by nsd, validated by unbound
//! ([`mta_sts_testkit::dnssec`]); the policy hosts are a testkit world's HTTPS server.
//!
//! Skipped with a loud message when nsd, unbound or ldnsutils are missing, unless
//! `MTA_STS_REQUIRE_DNSSEC_TOOLS=1` (CI), which makes that a failure.

mod daemon_support;

use daemon_support::{Daemon, ask, scratch_dir, secure_reply};
use mta_sts_testkit::dnssec::{ValidatingStack, Zone, tools_or_skip};
use mta_sts_testkit::{Domain, World};

/// Well-formed TLSA data (a SHA-256 length): DANE-EE 3 1 1 with it is usable.
const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The records every zone has: what the daemon's MTA-STS lookup needs (the TXT record, the
/// policy host, on loopback where the world serves it) and one MX host.
fn sts_zone(zone: Zone) -> Zone {
    zone.records([
        "_mta-sts TXT \"v=STSv1; id=1\"",
        "mta-sts A 127.0.0.1",
        "@ MX 10 mx",
        "mx A 127.0.0.1",
    ])
}

#[test]
fn d11_behind_unbound_signed_tlsa_is_dane_only_unsigned_is_sts_and_bogus_is_temp() {
    if !tools_or_skip(
        "d11_behind_unbound_signed_tlsa_is_dane_only_unsigned_is_sts_and_bogus_is_temp",
    ) {
        return;
    }
    let domains = ["signed.test", "notlsa.test", "plain.test", "broken.test"];
    let stack = ValidatingStack::start([
        sts_zone(Zone::signed("signed.test")).record(format!("_25._tcp.mx TLSA 3 1 1 {HASH}")),
        sts_zone(Zone::signed("notlsa.test")),
        // The same TLSA record, unauthenticated: DANE does not apply.
        sts_zone(Zone::unsigned("plain.test")).record(format!("_25._tcp.mx TLSA 3 1 1 {HASH}")),
        sts_zone(Zone::bogus("broken.test")).record(format!("_25._tcp.mx TLSA 3 1 1 {HASH}")),
    ])
    .expect("the validating stack starts");

    // The policy hosts: an enforce policy for every domain, over HTTPS with the world's CA.
    let mut world = World::builder();
    for domain in domains {
        world = world.domain(
            domain,
            Domain::enforce([format!("mx.{domain}")]).txt_id("1"),
        );
    }
    let world = world.build().expect("start the testkit world");

    let d = Daemon::start_with_resolver(
        &world,
        stack.resolver_addr(),
        &scratch_dir("dane-unbound"),
        "port: 0\ndefault_zone:\n  timeout: 10\nzones:\n  nodane:\n    dane: false\n",
    );
    let replies = ask(
        d.addr(),
        &[
            "postfix signed.test",
            "postfix notlsa.test",
            "postfix plain.test",
            "postfix broken.test",
            "nodane signed.test",
        ],
    );
    assert_eq!(
        replies[..3],
        [
            "OK dane-only".to_owned(),
            secure_reply("notlsa.test"),
            secure_reply("plain.test"),
        ],
        "{replies:?}"
    );
    // Every answer of the bogus zone is SERVFAIL: the DANE state (its MX query first) is
    // indeterminate.
    assert!(
        replies[3].starts_with("TEMP DANE state of broken.test is indeterminate: MX broken.test"),
        "{replies:?}"
    );
    // DANE off: the policy, which the signed zone's records lead to as well.
    assert_eq!(replies[4], secure_reply("signed.test"), "{replies:?}");
    // The answers that name a policy came from the world's policy hosts.
    for domain in ["signed.test", "notlsa.test", "plain.test"] {
        assert_eq!(world.fetches(&format!("mta-sts.{domain}")), 1, "{domain}");
    }
    assert_eq!(world.fetches("mta-sts.broken.test"), 0);
}
