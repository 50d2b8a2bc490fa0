//! Fleet-wide single flight and refresh (issue 16 item 3, S8): clients of the smol adapter on the
//! matrix's testkit world, sharing a [`MemoryStore`] (wrapped, so that a test knows when a client
//! waits on another host's lock, and can break the notes alone).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mta_sts_core::{Outcome, UnixTime};
use mta_sts_net::{
    BoxFuture, FleetNotes, MemoryStore, OnStoreError, PolicyStore, StoreError, StoreErrorKind,
    StoredPolicy,
};
use mta_sts_smol::Client;
use mta_sts_testkit::World;

const DOMAIN: &str = "enforce.test";
const TEXT: &str = "version: STSv1\nmode: enforce\nmx: *.enforce.test\nmax_age: 86400\n";

/// A [`MemoryStore`] that reports each claim refused (a client now waits) and can fail its notes.
#[derive(Debug)]
struct Watched {
    inner: MemoryStore,
    refused: std::sync::Mutex<Option<mpsc::Sender<String>>>,
    notes_down: AtomicBool,
}

impl Watched {
    fn new() -> (Arc<Self>, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel();
        let store = Self {
            inner: MemoryStore::new(),
            refused: std::sync::Mutex::new(Some(tx)),
            notes_down: AtomicBool::new(false),
        };
        (Arc::new(store), rx)
    }

    fn down<T: Send + 'static>(&self) -> Option<BoxFuture<'static, Result<T, StoreError>>> {
        self.notes_down.load(Ordering::SeqCst).then(|| {
            let e = StoreError::new(StoreErrorKind::Unavailable, "notes down (test)");
            Box::pin(std::future::ready(Err(e))) as BoxFuture<'static, _>
        })
    }
}

impl PolicyStore for Watched {
    fn name(&self) -> &'static str {
        "watched"
    }
    fn get<'a>(&'a self, d: &'a str) -> BoxFuture<'a, Result<Option<StoredPolicy>, StoreError>> {
        self.inner.get(d)
    }
    fn put<'a>(&'a self, e: &'a StoredPolicy) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.put(e)
    }
    fn delete<'a>(&'a self, d: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.delete(d)
    }
    fn list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredPolicy>, StoreError>> {
        self.inner.list(limit)
    }
    fn notes(&self) -> Option<&dyn FleetNotes> {
        Some(self)
    }
}

impl FleetNotes for Watched {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        now: UnixTime,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        if let Some(f) = self.down() {
            return f;
        }
        let notes = self.inner.notes().unwrap();
        Box::pin(async move {
            let won = notes.claim(key, value, now, expires).await?;
            if !won && let Some(tx) = &*self.refused.lock().unwrap() {
                let _ = tx.send(key.to_owned());
            }
            Ok(won)
        })
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        if let Some(f) = self.down() {
            return f;
        }
        self.inner.notes().unwrap().set(key, value, expires)
    }
    fn read<'a>(
        &'a self,
        key: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<Option<(String, UnixTime)>, StoreError>> {
        if let Some(f) = self.down() {
            return f;
        }
        self.inner.notes().unwrap().read(key, now)
    }
    fn remove<'a>(
        &'a self,
        key: &'a str,
        value: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        if let Some(f) = self.down() {
            return f;
        }
        self.inner.notes().unwrap().remove(key, value)
    }
}

fn client(world: &World, store: Arc<dyn PolicyStore>) -> Client {
    Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(world))
        .config(mta_sts_matrix::config(world))
        .store(store)
        .build()
        .expect("client")
}

fn now() -> UnixTime {
    UnixTime::from(std::time::SystemTime::now())
}

/// Another host's lock on `domain` until `secs` from now.
fn other_host_locks(store: &Watched, domain: &str, secs: u64) {
    let notes = store.inner.notes().unwrap();
    let until = now().saturating_add(Duration::from_secs(secs));
    let claimed =
        smol::block_on(notes.claim(&format!("lock/{domain}"), "other-host", now(), until));
    assert!(claimed.unwrap());
}

#[test]
fn s8_a_host_waits_for_the_lock_holder_and_adopts_its_fetch() {
    let world = mta_sts_matrix::world();
    let (store, refused) = Watched::new();
    other_host_locks(&store, DOMAIN, 60);
    let c = client(&world, store.clone());
    let asking = std::thread::spawn(move || smol::block_on(c.policy(DOMAIN)));
    // The client found the lock held: it waits. The holder's fetch lands in the store, then
    // the holder releases its lock.
    assert_eq!(refused.recv().unwrap(), format!("lock/{DOMAIN}"));
    store
        .inner
        .insert(StoredPolicy::new(DOMAIN, "otherhost1", now(), TEXT));
    let notes = store.inner.notes().unwrap();
    assert!(smol::block_on(notes.remove(&format!("lock/{DOMAIN}"), Some("other-host"))).unwrap());
    let outcome = asking.join().unwrap();
    assert!(
        matches!(&outcome, Outcome::Cached { policy, .. } if policy.id() == "otherhost1"),
        "{outcome:?}"
    );
    assert_eq!(world.total_fetches(), 0, "the holder's fetch was adopted");
}

#[test]
fn s8_a_lock_that_expires_without_a_result_is_taken_over_and_released_after_the_write() {
    let world = mta_sts_matrix::world();
    let (store, _refused) = Watched::new();
    // A host that died holding the lock for one more second.
    other_host_locks(&store, DOMAIN, 1);
    let c = client(&world, store.clone());
    let start = Instant::now();
    let outcome = smol::block_on(c.policy(DOMAIN));
    let took = start.elapsed();
    assert!(matches!(outcome, Outcome::Fetched(_)), "{outcome:?}");
    assert_eq!(world.total_fetches(), 1);
    // It waited for the expiry (whole seconds), never the fetch timeout.
    assert!(
        took < mta_sts_matrix::config(&world).fetch_timeout,
        "{took:?}"
    );
    smol::block_on(c.wait_store_writes());
    assert!(store.inner.entry(DOMAIN).is_some());
    assert_eq!(
        store.inner.note(&format!("lock/{DOMAIN}")),
        None,
        "released"
    );
}

#[test]
fn s8_two_hosts_asked_at_once_fetch_each_policy_once() {
    let world = mta_sts_matrix::world();
    let store: Arc<dyn PolicyStore> = Arc::new(MemoryStore::new());
    let hosts = [client(&world, store.clone()), client(&world, store.clone())];
    let domains = ["enforce.test", "testing.test", "none.test", "split.test"];
    for round in 0..3 {
        let mut asks = Vec::new();
        for h in &hosts {
            for d in domains {
                let h = h.clone();
                asks.push(std::thread::spawn(move || smol::block_on(h.policy(d))));
            }
        }
        for a in asks {
            let outcome = a.join().unwrap();
            assert!(outcome.policy().is_some(), "{outcome:?}");
        }
        assert_eq!(world.total_fetches(), domains.len(), "round {round}");
    }
}

#[test]
fn s8_notes_down_follow_on_store_error() {
    let world = mta_sts_matrix::world();
    // local: the lookup goes on alone.
    let (store, _r) = Watched::new();
    store.notes_down.store(true, Ordering::SeqCst);
    let c = client(&world, store.clone());
    assert!(matches!(
        smol::block_on(c.policy(DOMAIN)),
        Outcome::Fetched(_)
    ));
    // defer: a temporary failure, no fetch.
    let (store, _r) = Watched::new();
    store.notes_down.store(true, Ordering::SeqCst);
    let c = Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(&world))
        .config(mta_sts_matrix::config(&world))
        .store(store.clone())
        .on_store_error(OnStoreError::Defer)
        .build()
        .unwrap();
    let before = world.total_fetches();
    let outcome = smol::block_on(c.policy("testing.test"));
    assert!(
        matches!(outcome, Outcome::StoreUnavailable(_)),
        "{outcome:?}"
    );
    assert_eq!(world.total_fetches(), before);
}

#[test]
fn s8_a_refresh_adopts_another_hosts_recent_fetch_instead_of_fetching() {
    let world = mta_sts_matrix::world();
    let store = Arc::new(MemoryStore::new());
    let t0 = now().as_secs();
    let clock_secs = Arc::new(AtomicU64::new(t0));
    let read = clock_secs.clone();
    let mut config = mta_sts_matrix::config(&world);
    config.refresh_interval = Duration::from_secs(3600);
    let c = Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(&world))
        .config(config)
        .store(store.clone())
        .clock(Arc::new(move || {
            UnixTime::from_secs(read.load(Ordering::SeqCst))
        }))
        .build()
        .unwrap();
    assert!(matches!(
        smol::block_on(c.policy(DOMAIN)),
        Outcome::Fetched(_)
    ));
    smol::block_on(c.wait_store_writes());
    assert_eq!(world.total_fetches(), 1);
    // Another host refreshed it 10 minutes before this host's refresh is due.
    let later = t0 + 3600 + 1;
    let theirs = UnixTime::from_secs(later - 600);
    let text = store.entry(DOMAIN).unwrap().policy;
    store.insert(StoredPolicy::new(DOMAIN, "20240101", theirs, text));
    clock_secs.store(later, Ordering::SeqCst);
    assert_eq!(smol::block_on(c.refresh_due()), 1);
    assert_eq!(world.total_fetches(), 1, "adopted, not fetched");
    assert_eq!(c.stats().fetch_success, 1);
    // Nothing else due now; an hour later (nobody else refreshed), this host fetches.
    assert_eq!(smol::block_on(c.refresh_due()), 0);
    clock_secs.store(later + 3600, Ordering::SeqCst);
    assert_eq!(smol::block_on(c.refresh_due()), 1);
    assert_eq!(world.total_fetches(), 2);
}
