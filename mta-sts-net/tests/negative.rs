//! S9 through a fleet's store: a negative answer (no `_mta-sts` record) one client found is
//! shared as the note `absent/<domain>`, so that its peers answer "no policy" without a TXT
//! lookup until the answer's negative TTL ends; a store fault never blocks past its timeout.
//! Clients of the smol adapter on a testkit world, with [`MemoryStore`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use mta_sts_core::{NoPolicyReason, Outcome, TxtProblem, UnixTime};
use mta_sts_net::{FleetNotes, MemoryStore, OnStoreError, StoreFault};
use mta_sts_smol::{Client, ClientBuilder};
use mta_sts_testkit::{Domain, Record, RecordType, World};

/// The negative TTL the world's SOA records give (their MINIMUM and TTL).
const TTL: u64 = 600;
const NX: &str = "nx.test";
const NODATA: &str = "nodata.test";

fn world() -> World {
    World::builder()
        .ttl(TTL as u32)
        .domain(
            "enforce.test",
            Domain::enforce(["mx.enforce.test"]).txt_id("1"),
        )
        .domain(NX, Domain::without_sts())
        // `_mta-sts.nodata.test` exists, with an address but no TXT record: NODATA.
        .domain(NODATA, Domain::without_sts())
        .record("_mta-sts.nodata.test", Record::A([192, 0, 2, 1].into()))
        .build()
        .expect("start the testkit world")
}

/// A virtual wall clock, in seconds, shared by a fleet's clients.
#[derive(Clone)]
struct VirtualClock(Arc<AtomicU64>);

impl VirtualClock {
    fn new() -> Self {
        let now = UnixTime::from(std::time::SystemTime::now()).as_secs();
        Self(Arc::new(AtomicU64::new(now)))
    }
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.0.load(Ordering::SeqCst))
    }
    fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    fn clock(&self) -> mta_sts_net::Clock {
        let t = Arc::clone(&self.0);
        Arc::new(move || UnixTime::from_secs(t.load(Ordering::SeqCst)))
    }
}

fn builder(world: &World, store: &Arc<MemoryStore>, clock: &VirtualClock) -> ClientBuilder {
    Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(world))
        .config(mta_sts_matrix::config(world))
        .store(store.clone())
        .clock(clock.clock())
}

fn policy(client: &Client, domain: &str) -> Outcome {
    smol::block_on(client.policy(domain))
}

fn no_record(problem: TxtProblem) -> Outcome {
    Outcome::NoPolicy(NoPolicyReason::NoRecord(problem))
}

fn txt_queries(world: &World, domain: &str) -> usize {
    world.queries(&format!("_mta-sts.{domain}"), RecordType::Txt)
}

#[test]
fn s9_a_peer_does_no_txt_lookup_for_a_domain_another_found_absent() {
    let world = world();
    let store = Arc::new(MemoryStore::new());
    let clock = VirtualClock::new();
    let a = builder(&world, &store, &clock).build().unwrap();
    let b = builder(&world, &store, &clock).build().unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    for (domain, problem, value) in [
        (NX, TxtProblem::NxDomain, "nxdomain"),
        (NODATA, TxtProblem::NoData, "nodata"),
    ] {
        // A looks the domain up, and writes the negative answer to the store's notes.
        assert_eq!(policy(&a, domain), no_record(problem.clone()), "{domain}");
        assert_eq!(txt_queries(&world, domain), 1);
        smol::block_on(a.wait_store_writes());
        let until = clock.now().saturating_add(Duration::from_secs(TTL));
        let note = store.note(&format!("absent/{domain}"));
        assert_eq!(note, Some((value.to_owned(), until)), "{domain}");
        // B answers from the note, without a TXT lookup; then from its own memory.
        metrics::with_local_recorder(&recorder, || {
            assert_eq!(policy(&b, domain), no_record(problem.clone()), "{domain}");
        });
        assert_eq!(policy(&b, domain), no_record(problem.clone()));
        assert_eq!(txt_queries(&world, domain), 1, "{domain}: B asked DNS");
    }
    assert_eq!(b.stats().negative_entries, 2);
    assert_eq!(b.stats().negative_hits, 2, "B's second answers");
    let mut seen = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<String> = key.labels().map(|l| l.value().to_owned()).collect();
        let v = match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(_) => f64::NAN,
        };
        seen.insert(format!("{}{labels:?}", key.name()), v);
    }
    let adopted = "mta_sts_store_operations_total[\"memory\", \"absent_get\", \"hit\"]";
    assert_eq!(seen.get(adopted), Some(&2.0), "{seen:?}");
    let gauge = seen.get("mta_sts_negative_cache_entries[]");
    assert_eq!(gauge, Some(&2.0), "{seen:?}");
}

#[test]
fn s9_a_shared_negative_answer_expires_with_its_ttl() {
    let world = world();
    let store = Arc::new(MemoryStore::new());
    let clock = VirtualClock::new();
    let a = builder(&world, &store, &clock).build().unwrap();
    let b = builder(&world, &store, &clock).build().unwrap();
    let _ = policy(&a, NX);
    smol::block_on(a.wait_store_writes());
    clock.advance(TTL - 1);
    let _ = policy(&b, NX);
    assert_eq!(
        txt_queries(&world, NX),
        1,
        "the note is used until it expires"
    );
    clock.advance(1);
    // Expired for both: B's memory and the note. B asks DNS, and shares its new answer.
    assert_eq!(policy(&b, NX), no_record(TxtProblem::NxDomain));
    assert_eq!(txt_queries(&world, NX), 2);
    smol::block_on(b.wait_store_writes());
    let until = clock.now().saturating_add(Duration::from_secs(TTL));
    let note = store.note("absent/nx.test").map(|n| n.1);
    assert_eq!(note, Some(until));
    // A's own memory expired too: A takes B's answer from the store.
    assert_eq!(policy(&a, NX), no_record(TxtProblem::NxDomain));
    assert_eq!(txt_queries(&world, NX), 2);
}

#[test]
fn s9_hostile_far_or_expired_notes_are_capped_or_ignored() {
    let world = world();
    let store = Arc::new(MemoryStore::new());
    let clock = VirtualClock::new();
    let now = clock.now();
    let set = |domain: &str, value: &str, expires: UnixTime| {
        let key = format!("absent/{domain}");
        smol::block_on(FleetNotes::set(&*store, &key, value, expires)).unwrap();
    };
    let b = builder(&world, &store, &clock).build().unwrap();
    // Garbage value: ignored, looked up, overwritten by the answer found.
    set(
        NX,
        "garbage\u{0}",
        now.saturating_add(Duration::from_secs(60)),
    );
    assert_eq!(policy(&b, NX), no_record(TxtProblem::NxDomain));
    assert_eq!(txt_queries(&world, NX), 1);
    smol::block_on(b.wait_store_writes());
    assert_eq!(store.note("absent/nx.test").unwrap().0, "nxdomain");
    // Expired: ignored.
    set(NODATA, "nodata", now);
    assert_eq!(policy(&b, NODATA), no_record(TxtProblem::NoData));
    assert_eq!(txt_queries(&world, NODATA), 1);
    // A note claiming a domain with a policy has none is never stronger than the cap: a year
    // away counts for the core's cap (one hour), then the domain is looked up again.
    let c = builder(&world, &store, &clock).build().unwrap();
    let year = Duration::from_secs(365 * 86_400);
    set("enforce.test", "nxdomain", now.saturating_add(year));
    assert_eq!(policy(&c, "enforce.test"), no_record(TxtProblem::NxDomain));
    assert_eq!(txt_queries(&world, "enforce.test"), 0);
    store.set_fault(Some(StoreFault::Unavailable)); // the note stays, C's memory decides
    clock.advance(3600);
    let o = policy(&c, "enforce.test");
    assert!(matches!(o, Outcome::Fetched(_)), "{o:?}");
    assert_eq!(txt_queries(&world, "enforce.test"), 1);
}

#[test]
fn s9_a_store_fault_never_blocks_past_the_store_timeout() {
    let world = world();
    let clock = VirtualClock::new();
    // Both reads (policy and note) run at once: a hung store costs one timeout, not two.
    let timeout = Duration::from_secs(1);
    for (fault, on) in [
        (StoreFault::Hang, OnStoreError::Local),
        (StoreFault::Unavailable, OnStoreError::Local),
        (StoreFault::Hang, OnStoreError::Defer),
    ] {
        let store = Arc::new(MemoryStore::new());
        store.set_fault(Some(fault));
        let client = builder(&world, &store, &clock)
            .store_timeout(timeout)
            .on_store_error(on)
            .build()
            .unwrap();
        let start = Instant::now();
        let outcome = policy(&client, NX);
        let took = start.elapsed();
        match on {
            OnStoreError::Local => assert_eq!(outcome, no_record(TxtProblem::NxDomain)),
            _ => assert!(
                matches!(outcome, Outcome::StoreUnavailable(_)),
                "{outcome:?}"
            ),
        }
        assert!(
            took < timeout * 19 / 10,
            "{fault:?}/{on:?}: {took:?} (two store timeouts in a row?)"
        );
        if fault == StoreFault::Hang {
            assert!(took >= timeout, "the store was given its time: {took:?}");
        }
        // The note write is bounded too.
        let start = Instant::now();
        smol::block_on(client.wait_store_writes());
        assert!(start.elapsed() < timeout + Duration::from_secs(1));
        // Remembered locally all the same (Local): the next answer needs neither store nor DNS.
        if on == OnStoreError::Local {
            let queries = txt_queries(&world, NX);
            let start = Instant::now();
            assert_eq!(policy(&client, NX), no_record(TxtProblem::NxDomain));
            assert!(start.elapsed() < timeout);
            assert_eq!(txt_queries(&world, NX), queries);
        }
    }
}

#[test]
fn s9_a_caller_given_up_during_the_note_read_ends_its_flight() {
    let world = world();
    let store = Arc::new(MemoryStore::new());
    let clock = VirtualClock::new();
    let client = builder(&world, &store, &clock)
        .store_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    store.set_fault(Some(StoreFault::Hang));
    let mut first = Box::pin(client.policy(NX));
    assert!(smol::block_on(smol::future::poll_once(&mut first)).is_none());
    drop(first);
    store.set_fault(None);
    let bounded = smol::future::or(async { Some(client.policy(NX).await) }, async {
        smol::Timer::after(Duration::from_secs(5)).await;
        None
    });
    let outcome = smol::block_on(bounded).expect("answered, not stuck behind a dead flight");
    assert_eq!(outcome, no_record(TxtProblem::NxDomain));
}
