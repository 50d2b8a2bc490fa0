//! The client over a shared policy store (issue 16): S1 (a store below the in-memory cache, the
//! core deciding what a stored entry may be used for), S2 (a store down or slow never blocks a
//! decision past its timeout nor loses the in-memory policy; `on_store_error`), S11 (the store
//! metrics). Clients of the smol adapter on the matrix's testkit world, with [`MemoryStore`] and
//! its fault injection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use mta_sts_core::{CacheReason, DeferReason, Mode, Outcome, UnixTime, Verdict};
use mta_sts_net::{MemoryStore, OnStoreError, StoreFault, StoredPolicy};
use mta_sts_smol::{Client, ClientBuilder};
use mta_sts_testkit::World;

const DOMAIN: &str = "enforce.test";
const TEXT: &str = "version: STSv1\nmode: enforce\nmx: planted.example\nmax_age: 86400\n";

fn builder(world: &World, store: &Arc<MemoryStore>) -> ClientBuilder {
    Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(world))
        .config(mta_sts_matrix::config(world))
        .store(store.clone())
}

fn client(world: &World, store: &Arc<MemoryStore>) -> Client {
    builder(world, store).build().expect("client")
}

fn policy(client: &Client, domain: &str) -> Outcome {
    smol::block_on(client.policy(domain))
}

fn now() -> UnixTime {
    UnixTime::from(std::time::SystemTime::now())
}

#[test]
fn s1_two_clients_share_one_store() {
    let world = mta_sts_matrix::world();
    let store = Arc::new(MemoryStore::new());
    let (a, b) = (client(&world, &store), client(&world, &store));
    mta_sts_matrix::check_shared_store(
        &world,
        &store,
        |d| policy(&a, d),
        || smol::block_on(a.wait_store_writes()),
        |d| policy(&b, d),
    );
    // A: a miss, and once more under the fleet lock before its fetch (S8); B: a hit.
    assert_eq!(store.gets(), 3, "A asked the store twice, B once");
    // B's second answer is from its own memory: the store is not asked again.
    assert!(matches!(policy(&b, DOMAIN), Outcome::Cached { .. }));
    assert_eq!(store.gets(), 3);
    // What a fleet gains, measured: a third client's first answer from the store, against its
    // first lookup of a domain nobody fetched yet.
    let c = client(&world, &store);
    let start = Instant::now();
    assert!(matches!(policy(&c, DOMAIN), Outcome::Cached { .. }));
    let from_store = start.elapsed();
    let start = Instant::now();
    assert!(matches!(policy(&c, "testing.test"), Outcome::Fetched(_)));
    let fetched = start.elapsed();
    eprintln!("first answer from the store: {from_store:?}; by DNS and HTTPS: {fetched:?}");
}

#[test]
fn s1_expired_future_and_hostile_entries_are_not_used_and_get_overwritten() {
    let world = mta_sts_matrix::world();
    let store = Arc::new(MemoryStore::new());
    let day = Duration::from_secs(86_400);
    let planted = [
        ("enforce.test", now().saturating_sub(day * 2), TEXT),
        ("testing.test", now().saturating_add(day), TEXT),
        (
            "none.test",
            now().saturating_sub(day),
            "{\"mx\": [\"truncated",
        ),
    ];
    for (domain, fetched_at, text) in planted {
        store.insert(StoredPolicy::new(domain, "planted", fetched_at, text));
    }
    let client = client(&world, &store);
    for (domain, fetched_at, _) in planted {
        let before = world.total_fetches();
        let outcome = policy(&client, domain);
        assert!(
            matches!(&outcome, Outcome::Fetched(p) if p.id() != "planted"),
            "{domain}: the stored entry is not used: {outcome:?}"
        );
        assert_eq!(world.total_fetches(), before + 1, "{domain}: fetched");
        smol::block_on(client.wait_store_writes());
        let entry = store.entry(domain).unwrap();
        // An entry from the future stays (a store replaces only with a newer fetch), but it is
        // never used; the others are overwritten by the policy fetched.
        assert_eq!(
            entry.id == "planted",
            fetched_at > now(),
            "{domain}: {entry:?}"
        );
    }
}

/// A client whose store never answers (or is down), with a store timeout of `timeout`.
fn faulty(world: &World, fault: StoreFault, on: OnStoreError, timeout: Duration) -> Client {
    let store = Arc::new(MemoryStore::new());
    store.set_fault(Some(fault));
    builder(world, &store)
        .store_timeout(timeout)
        .on_store_error(on)
        .build()
        .expect("client")
}

#[test]
fn s2_a_slow_store_never_delays_a_decision_past_its_timeout() {
    let world = mta_sts_matrix::world();
    let timeout = Duration::from_millis(300);
    // Local: the lookup goes on after the store timeout.
    let local = faulty(&world, StoreFault::Hang, OnStoreError::Local, timeout);
    let start = Instant::now();
    let outcome = policy(&local, DOMAIN);
    let took_local = start.elapsed();
    assert!(matches!(outcome, Outcome::Fetched(_)), "{outcome:?}");
    assert!(
        took_local >= timeout,
        "the store was given its time: {took_local:?}"
    );
    assert!(
        took_local < timeout + Duration::from_secs(1),
        "{took_local:?}"
    );
    // Defer: a temporary failure once the timeout has passed, without any lookup.
    let defer = faulty(&world, StoreFault::Hang, OnStoreError::Defer, timeout);
    let (queries, fetches) = (world.total_queries(), world.total_fetches());
    let start = Instant::now();
    let outcome = policy(&defer, "testing.test");
    let took = start.elapsed();
    assert!(
        matches!(outcome, Outcome::StoreUnavailable(_)),
        "{outcome:?}"
    );
    assert!(took >= timeout && took < timeout * 3, "{took:?}");
    assert_eq!(
        (world.total_queries(), world.total_fetches()),
        (queries, fetches)
    );
    eprintln!(
        "store hanging, timeout {timeout:?}: `local` fetched in {took_local:?}, `defer` answered in {took:?}"
    );
}

#[test]
fn s2_unavailable_store_local_looks_up_and_defer_defers() {
    let world = mta_sts_matrix::world();
    let timeout = Duration::from_secs(2);
    let local = faulty(
        &world,
        StoreFault::Unavailable,
        OnStoreError::Local,
        timeout,
    );
    assert!(matches!(policy(&local, DOMAIN), Outcome::Fetched(p) if p.mode() == Mode::Enforce));
    let defer = faulty(
        &world,
        StoreFault::Unavailable,
        OnStoreError::Defer,
        timeout,
    );
    let e = smol::block_on(defer.evaluate(DOMAIN, ["mx1.example.net"]));
    assert!(matches!(e.outcome(), Outcome::StoreUnavailable(_)));
    assert_eq!(e.verdict(), Verdict::Defer(DeferReason::StoreUnavailable));
    // Concurrent callers of one domain share the one store read and its answer.
    let calls = smol::block_on(futures_lite_zip(&defer, "testing.test"));
    assert!(
        calls
            .iter()
            .all(|o| matches!(o, Outcome::StoreUnavailable(_)))
    );
    // A corrupt entry is not an outage: even with `defer`, the policy is looked up.
    let corrupt = faulty(&world, StoreFault::Corrupt, OnStoreError::Defer, timeout);
    assert!(matches!(policy(&corrupt, "none.test"), Outcome::Fetched(_)));
}

/// Two concurrent calls for `domain`.
async fn futures_lite_zip(client: &Client, domain: &str) -> [Outcome; 2] {
    let (a, b) = smol::future::zip(client.policy(domain), client.policy(domain)).await;
    [a, b]
}

#[test]
fn s2_the_in_memory_policy_survives_a_store_outage() {
    let world = mta_sts_matrix::world();
    let store = Arc::new(MemoryStore::new());
    let client = builder(&world, &store)
        .on_store_error(OnStoreError::Defer)
        .build()
        .unwrap();
    assert!(matches!(policy(&client, DOMAIN), Outcome::Fetched(_)));
    for fault in [
        StoreFault::Unavailable,
        StoreFault::Hang,
        StoreFault::Corrupt,
    ] {
        store.set_fault(Some(fault));
        let gets = store.gets();
        let outcome = policy(&client, DOMAIN);
        assert!(
            matches!(
                outcome,
                Outcome::Cached {
                    reason: CacheReason::Fresh,
                    ..
                }
            ),
            "{fault:?}: {outcome:?}"
        );
        assert_eq!(
            store.gets(),
            gets,
            "a fresh policy never waits for the store"
        );
    }
}

#[test]
fn s1_the_refresher_writes_refreshed_policies() {
    let world = mta_sts_matrix::world();
    let store = Arc::new(MemoryStore::new());
    let t0 = now().as_secs();
    let clock_secs = Arc::new(AtomicU64::new(t0));
    let read = Arc::clone(&clock_secs);
    let mut config = mta_sts_matrix::config(&world);
    config.refresh_interval = Duration::from_secs(3600);
    let client = builder(&world, &store)
        .config(config)
        .clock(Arc::new(move || {
            UnixTime::from_secs(read.load(Ordering::SeqCst))
        }))
        .build()
        .unwrap();
    assert!(matches!(policy(&client, DOMAIN), Outcome::Fetched(_)));
    smol::block_on(client.wait_store_writes());
    assert_eq!(
        store.entry(DOMAIN).unwrap().fetched_at,
        UnixTime::from_secs(t0)
    );
    let puts = store.puts();
    // An hour later (the refresh interval), the refresh fetches again and writes it.
    let later = t0 + 3600 + 1;
    clock_secs.store(later, Ordering::SeqCst);
    assert!(smol::block_on(client.refresh_due()) >= 1);
    smol::block_on(client.wait_store_writes());
    assert_eq!(store.puts(), puts + 1);
    assert_eq!(
        store.entry(DOMAIN).unwrap().fetched_at,
        UnixTime::from_secs(later)
    );
}

#[test]
fn s11_store_operations_are_counted() {
    let world = mta_sts_matrix::world();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let store = Arc::new(MemoryStore::new());
    let timeout = Duration::from_millis(200);
    let client = builder(&world, &store)
        .store_timeout(timeout)
        .build()
        .unwrap();
    let other = builder(&world, &store).build().unwrap();
    metrics::with_local_recorder(&recorder, || {
        assert!(matches!(policy(&client, DOMAIN), Outcome::Fetched(_))); // miss
        smol::block_on(client.wait_store_writes());
        assert!(matches!(policy(&other, DOMAIN), Outcome::Cached { .. })); // hit
        store.set_fault(Some(StoreFault::Hang));
        let _ = policy(&client, "testing.test"); // timeout
        store.set_fault(Some(StoreFault::Unavailable));
        let _ = policy(&client, "none.test"); // unavailable
        store.set_fault(Some(StoreFault::Corrupt));
        let _ = policy(&client, "split.test"); // corrupt
        store.set_fault(None);
        let stale = StoredPolicy::new(
            "spf.test",
            "1",
            now().saturating_sub(Duration::from_secs(172_800)),
            TEXT,
        );
        store.insert(stale);
        let _ = policy(&client, "spf.test"); // refused (expired)
    });
    let mut seen = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() != "mta_sts_store_operations_total" {
            continue;
        }
        let label = |n: &str| {
            key.labels()
                .find(|l| l.key() == n)
                .map(|l| l.value().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(label("store"), "memory");
        let DebugValue::Counter(n) = value else {
            panic!("a counter")
        };
        seen.insert((label("op"), label("result")), n);
    }
    let get = |r: &str| seen.get(&("get".to_owned(), r.to_owned())).copied();
    for result in [
        "miss",
        "hit",
        "timeout",
        "unavailable",
        "corrupt",
        "refused",
    ] {
        assert_eq!(get(result), Some(1), "get {result}: {seen:?}");
    }
}

#[test]
fn s2_a_store_read_given_up_by_its_caller_ends_its_flight() {
    let world = mta_sts_matrix::world();
    let store = Arc::new(MemoryStore::new());
    store.set_fault(Some(StoreFault::Hang));
    let client = builder(&world, &store)
        .store_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // The caller drives the domain's flight, reading the store, and gives up (its future is
    // dropped, as a delivery cancelled by its MTA).
    let mut first = Box::pin(client.policy(DOMAIN));
    assert!(smol::block_on(smol::future::poll_once(&mut first)).is_none());
    assert_eq!(store.gets(), 1);
    drop(first);
    // The next caller is not left waiting on that flight: it reads the store again and, the
    // store back, looks the policy up.
    store.set_fault(None);
    let bounded = smol::future::or(async { Some(client.policy(DOMAIN).await) }, async {
        smol::Timer::after(Duration::from_secs(5)).await;
        None
    });
    let outcome = smol::block_on(bounded).expect("answered, not stuck behind a dead flight");
    assert!(matches!(outcome, Outcome::Fetched(_)), "{outcome:?}");
    // Its read on the miss, and once more under the fleet lock before the fetch (S8).
    assert_eq!(store.gets(), 3);
}

#[test]
fn s8_memory_notes_claim_is_exclusive_until_expiry() {
    use mta_sts_net::PolicyStore;
    let store = MemoryStore::new();
    let notes = store.notes().expect("the memory store keeps notes");
    let t = UnixTime::from_secs(1_000);
    let later = UnixTime::from_secs(1_030);
    smol::block_on(async {
        assert!(
            notes
                .claim("lock/a.test", "host-1", t, later)
                .await
                .unwrap()
        );
        assert!(
            !notes
                .claim("lock/a.test", "host-2", t, later)
                .await
                .unwrap()
        );
        // Only the holder releases its own lock.
        assert!(!notes.remove("lock/a.test", Some("host-2")).await.unwrap());
        assert_eq!(
            notes.read("lock/a.test", t).await.unwrap(),
            Some(("host-1".to_owned(), later))
        );
        // Expired: absent, and claimable by another host.
        assert_eq!(notes.read("lock/a.test", later).await.unwrap(), None);
        assert!(
            notes
                .claim("lock/a.test", "host-2", later, UnixTime::from_secs(1_060))
                .await
                .unwrap()
        );
        assert!(notes.remove("lock/a.test", Some("host-2")).await.unwrap());
        notes.set("absent/b.test", "nxdomain", later).await.unwrap();
        assert_eq!(
            notes
                .read("absent/b.test", t)
                .await
                .unwrap()
                .map(|(v, _)| v),
            Some("nxdomain".to_owned())
        );
        let huge = "x".repeat(mta_sts_net::MAX_NOTE_VALUE + 1);
        assert!(notes.set("absent/b.test", &huge, later).await.is_err());
        store.set_fault(Some(StoreFault::Unavailable));
        assert!(
            notes
                .claim("lock/c.test", "host-1", t, later)
                .await
                .is_err()
        );
    });
}
