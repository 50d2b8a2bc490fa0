//! The responder in virtual time: `cache_grace` (the core's `recheck_after`, on the client's
//! clock) on a clock the test moves, against a loopback test world (no sleeping, no system
//! clock).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mta_sts_core::UnixTime;
use mta_sts_postfix::Clock;
use mta_sts_postfix::config::parse;
use mta_sts_postfix::responder::{Reply, Responder};
use mta_sts_testkit::{Domain, RecordType, World};
use mta_sts_tokio::TrustAnchors;

const START: u64 = 1_700_000_000;
const DOMAIN: &str = "enforce.test";
const TXT: &str = "_mta-sts.enforce.test";
const POLICY_HOST: &str = "mta-sts.enforce.test";

/// A clock that stands still until the test moves it.
struct VirtualClock(Arc<AtomicU64>);

impl VirtualClock {
    fn new() -> Self {
        Self(Arc::new(AtomicU64::new(START)))
    }

    fn clock(&self) -> Clock {
        let now = self.0.clone();
        Arc::new(move || UnixTime::from_secs(now.load(Ordering::SeqCst)))
    }

    fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

fn world() -> World {
    World::builder()
        .domain(DOMAIN, Domain::enforce(["mx.enforce.test"]).txt_id("1"))
        .build()
        .expect("start the test world")
}

/// A responder under `yaml` with the client the daemon builds for it, on `clock`.
fn responder(world: &World, yaml: &str, clock: Clock) -> Responder {
    let mut anchors = TrustAnchors::empty();
    anchors.add_pem(world.ca_pem().as_bytes()).unwrap();
    let mut config = parse(yaml).unwrap();
    config.https_port = Some(world.https_port());
    let client = mta_sts_postfix::client_builder(&config)
        .resolvers([world.dns_addr()])
        .trust_anchors(anchors)
        .clock(clock)
        .build()
        .unwrap();
    Responder::new(client, Arc::new(config))
}

fn enforce() -> Reply {
    Reply::Ok("secure match=mx.enforce.test servername=hostname".into())
}

#[tokio::test]
async fn cache_grace_is_counted_on_the_injected_clock() {
    let world = world();
    let time = VirtualClock::new();
    let r = responder(&world, "cache_grace: 60\n", time.clock());
    let request = b"postfix enforce.test";

    assert_eq!(r.answer(request).await, enforce());
    assert_eq!(world.queries(TXT, RecordType::Txt), 1);
    assert_eq!(world.fetches(POLICY_HOST), 1);

    // 59 virtual seconds later: still within cache_grace, no DNS.
    time.advance(59);
    assert_eq!(r.answer(request).await, enforce());
    assert_eq!(world.queries(TXT, RecordType::Txt), 1);

    // 60: the TXT id is re-checked first; unchanged, so nothing is fetched.
    time.advance(1);
    assert_eq!(r.answer(request).await, enforce());
    assert_eq!(world.queries(TXT, RecordType::Txt), 2);
    assert_eq!(world.fetches(POLICY_HOST), 1);

    // The re-check does not extend the policy's fetch time, but it starts a new grace period:
    // 59 seconds after it, no DNS; 60 after it, the next re-check.
    time.advance(59);
    assert_eq!(r.answer(request).await, enforce());
    assert_eq!(world.queries(TXT, RecordType::Txt), 2);
    time.advance(1);
    world.update(DOMAIN, |d| d.policy_mx(["mx2.enforce.test"]).txt_id("2"));
    assert_eq!(
        r.answer(request).await,
        Reply::Ok("secure match=mx2.enforce.test servername=hostname".into())
    );
    assert_eq!(world.queries(TXT, RecordType::Txt), 3);
    assert_eq!(world.fetches(POLICY_HOST), 2);
}

#[tokio::test]
async fn cache_grace_zero_rechecks_every_request_within_one_virtual_second() {
    let world = world();
    let time = VirtualClock::new();
    let r = responder(&world, "cache_grace: 0\n", time.clock());
    for n in 1..=3 {
        assert_eq!(r.answer(b"postfix enforce.test").await, enforce());
        assert_eq!(world.queries(TXT, RecordType::Txt), n);
    }
    assert_eq!(world.fetches(POLICY_HOST), 1);
}
