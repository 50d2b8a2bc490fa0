//! The client's side of a shared policy store ([`PolicyStore`]): the settings
//! ([`ClientBuilder::store`](crate::ClientBuilder::store),
//! [`ClientBuilder::on_store_error`](crate::ClientBuilder::on_store_error)), the reads on a cache
//! miss and the writes after each fetch, bounded by a timeout, and their metrics; and
//! [`MemoryStore`], a store in this process's memory with fault injection, for tests.
//!
//! # Metrics
//! `mta_sts_store_operations_total{store, op, result}` (a counter): `store` is the store's
//! [`name`](PolicyStore::name); `op` is `get`, `put` or `delete` (and `absent_get`, `absent_set`
//! for the shared negative answers, see the client's `absence` module); `result` is one of
//! - `hit`: a `get` returned an entry the core adopted;
//! - `miss`: a `get` found no entry;
//! - `ok`: a `put` or `delete` succeeded;
//! - `corrupt`: the store's entry could not be read, or the core found it invalid (ignored,
//!   overwritten by the next write);
//! - `refused`: for a `get`, the core refused a readable entry (expired, fetched in the future,
//!   not newer than the cached policy); for a `put`, the store refused the write;
//! - `unavailable`: the store could not be reached (or failed otherwise);
//! - `timeout`: the store did not answer within the store timeout;
//! - `dropped`: a write not attempted, as too many writes were already under way.
//!
//! `op` is `note` for the fleet notes' operations that failed (`corrupt`, `refused`,
//! `unavailable`, `timeout`).
//!
//! Fleet-wide single flight and refresh (a store that keeps
//! [`FleetNotes`], see [`PolicyStore::notes`]), all counters:
//! - `mta_sts_fleet_locks_total{result}`, per fleet lock asked before a fetch: `acquired` (this
//!   host fetches), `held_elsewhere` (another host fetches: this one waits), `already_stored`
//!   (acquired, but another host's fetch was in the store by then: adopted, no fetch), `error`
//!   (the store failed: `on_store_error` decides);
//! - `mta_sts_fleet_lock_waits_total{result}`, per wait for another host's fetch: `adopted`
//!   (its policy adopted from the store), `taken_over` (its lock was released or expired without
//!   a policy: this host took it and fetches), `timeout` (still held after the fetch timeout:
//!   this host fetches), `error` (the store failed: `on_store_error` decides);
//! - `mta_sts_fleet_refreshes_total{result}`, per proactive refresh due: `adopted` (another
//!   host's recent fetch in the store counted as the refresh) or `fetched`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[cfg(doc)]
use mta_sts_core::PolicyCache;
use mta_sts_core::{AdoptError, CachedPolicy, SnapshotEntry, UnixTime};

use crate::runtime::{BoxFuture, Runtime, until};
use crate::store::{FleetNotes, PolicyStore, StoreError, StoreErrorKind, StoredPolicy, check_note};

/// The default bound on one store operation ([`ClientBuilder::store_timeout`](crate::ClientBuilder::store_timeout)):
/// a share of a lookup's time (the DNS and fetch timeouts are several seconds each).
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The most store writes under way at once; a write beyond it is dropped (counted `dropped`).
pub const MAX_PENDING_STORE_WRITES: usize = 256;

/// What the client does when the store cannot be read (down, or slower than its timeout) for a
/// domain without an unexpired cached policy. Either way the error is logged and counted, and
/// the in-memory cache is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Go on with the local cache and the usual DNS and HTTPS lookup (`on_store_error: local`).
    #[default]
    Local,
    /// Answer a temporary failure ([`Outcome::StoreUnavailable`](mta_sts_core::Outcome::StoreUnavailable),
    /// which defers delivery): `on_store_error: defer`.
    Defer,
}

/// The store settings of a client.
#[derive(Debug, Clone)]
pub(crate) struct StoreSettings {
    pub(crate) store: Arc<dyn PolicyStore>,
    pub(crate) on_error: OnStoreError,
    pub(crate) timeout: Duration,
}

/// What a read of the store on a cache miss came to.
pub(crate) enum StoreRead {
    /// The entry was adopted into the cache: begin again, it answers.
    Adopted(CachedPolicy),
    /// Nothing usable: look the policy up.
    Lookup,
    /// The store could not be read and the client defers: this is the error, for the outcome.
    Unavailable(String),
}

/// Counts one store operation.
pub(crate) fn count(store: &'static str, op: &'static str, result: &'static str) {
    metrics::counter!(
        "mta_sts_store_operations_total",
        "store" => store,
        "op" => op,
        "result" => result
    )
    .increment(1);
}

/// The metric `result` of a store error.
pub(crate) fn error_result(e: &StoreError) -> &'static str {
    match e.kind() {
        StoreErrorKind::Corrupt => "corrupt",
        StoreErrorKind::Refused => "refused",
        _ => "unavailable",
    }
}

/// Logs a store error, at most once a second per process (the count is in the metrics).
pub(crate) fn log_error(
    store: &'static str,
    op: &'static str,
    domain: &str,
    error: &dyn std::fmt::Display,
) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let now = Instant::now();
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
        return;
    }
    *last = Some(now);
    drop(last);
    tracing::warn!(store, op, domain, error = %error, "MTA-STS policy store error");
}

impl StoreSettings {
    /// Reads `domain`'s entry (within the timeout) and hands it to `adopt` (the core's
    /// [`PolicyCache::adopt`], under the client's lock).
    pub(crate) async fn read<R: Runtime>(
        &self,
        runtime: &R,
        domain: &str,
        adopt: impl FnOnce(&StoredPolicy) -> Result<CachedPolicy, AdoptError>,
    ) -> StoreRead {
        let name = self.store.name();
        let deadline = deadline(runtime, self.timeout);
        let failed = |result: &'static str, detail: String| {
            count(name, "get", result);
            log_error(name, "get", domain, &detail);
            match self.on_error {
                OnStoreError::Local => StoreRead::Lookup,
                OnStoreError::Defer => StoreRead::Unavailable(detail),
            }
        };
        let entry = match until(runtime, deadline, self.store.get(domain)).await {
            None => {
                let detail = format!("no answer within {:?}", self.timeout);
                return failed("timeout", detail);
            }
            Some(Ok(None)) => {
                count(name, "get", "miss");
                return StoreRead::Lookup;
            }
            Some(Ok(Some(entry))) => entry,
            Some(Err(e)) if *e.kind() == StoreErrorKind::Corrupt => {
                // Ignored: the next write of the domain's policy overwrites it.
                count(name, "get", "corrupt");
                log_error(name, "get", domain, &e);
                return StoreRead::Lookup;
            }
            Some(Err(e)) => return failed(error_result(&e), e.to_string()),
        };
        if entry.domain != domain {
            count(name, "get", "corrupt");
            let detail = format!("entry of another domain ({:?})", entry.domain);
            log_error(name, "get", domain, &detail);
            return StoreRead::Lookup;
        }
        match adopt(&entry) {
            Ok(policy) => {
                count(name, "get", "hit");
                StoreRead::Adopted(policy)
            }
            Err(e @ (AdoptError::Expired | AdoptError::FromTheFuture | AdoptError::NotNewer)) => {
                count(name, "get", "refused");
                tracing::debug!(store = name, domain, error = %e, "stored MTA-STS policy not used");
                StoreRead::Lookup
            }
            Err(e) => {
                count(name, "get", "corrupt");
                log_error(name, "get", domain, &e);
                StoreRead::Lookup
            }
        }
    }
}

/// `timeout` from now on `runtime`'s clock.
pub(crate) fn deadline<R: Runtime>(runtime: &R, timeout: Duration) -> Instant {
    let now = runtime.now();
    now.checked_add(timeout)
        .unwrap_or_else(|| crate::dns::far(now))
}

/// Writes `entry` to the store within `timeout`, counted and logged.
pub(crate) fn write<R: Runtime>(
    runtime: R,
    settings: &StoreSettings,
    entry: SnapshotEntry,
) -> BoxFuture<'static, ()> {
    let store = Arc::clone(&settings.store);
    let timeout = settings.timeout;
    Box::pin(async move {
        let name = store.name();
        let entry = StoredPolicy::new(
            entry.domain(),
            entry.id(),
            entry.fetched_at(),
            entry.policy(),
        );
        let deadline = deadline(&runtime, timeout);
        match until(&runtime, deadline, store.put(&entry)).await {
            Some(Ok(())) => count(name, "put", "ok"),
            Some(Err(e)) => {
                count(name, "put", error_result(&e));
                log_error(name, "put", &entry.domain, &e);
            }
            None => {
                count(name, "put", "timeout");
                let detail = format!("no answer within {timeout:?}");
                log_error(name, "put", &entry.domain, &detail);
            }
        }
    })
}

/// A fault [`MemoryStore`] injects into every operation until cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreFault {
    /// Every operation fails with [`StoreErrorKind::Unavailable`].
    Unavailable,
    /// Every operation never answers (a store slower than any timeout).
    Hang,
    /// Every `get` fails with [`StoreErrorKind::Corrupt`] (an entry that cannot be read);
    /// writes succeed.
    Corrupt,
}

/// A [`PolicyStore`] in this process's memory (named `memory`), shared by the clients it is
/// given to: for tests of a fleet in one process (several clients, one store), with fault
/// injection ([`set_fault`](Self::set_fault)) and counters of the operations asked. Always
/// compiled (it needs no dependency), so that every adapter's tests and the scenario matrix
/// can use it; it has no use in production beyond a single process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, StoredPolicy>>,
    notes: Mutex<HashMap<String, (String, UnixTime)>>,
    fault: Mutex<Option<StoreFault>>,
    gets: AtomicU64,
    puts: AtomicU64,
}

impl MemoryStore {
    /// An empty store without faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Injects `fault` into every later operation (`None`: none).
    pub fn set_fault(&self, fault: Option<StoreFault>) {
        *lock(&self.fault) = fault;
    }

    /// Keeps `entry` as is, whatever its fetch time (to plant an expired, future or hostile
    /// entry).
    pub fn insert(&self, entry: StoredPolicy) {
        lock(&self.entries).insert(entry.domain.clone(), entry);
    }

    /// The entry of `domain`, without counting a `get`.
    pub fn entry(&self, domain: &str) -> Option<StoredPolicy> {
        lock(&self.entries).get(domain).cloned()
    }

    /// How many `get`s were asked (faults included).
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }

    /// How many `put`s were asked (faults included).
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }

    /// The fault to apply now, if any, as a future: an error, or one that never ends.
    fn fault<T: Send + 'static>(
        &self,
        read: bool,
    ) -> Option<BoxFuture<'static, Result<T, StoreError>>> {
        match (*lock(&self.fault))? {
            StoreFault::Unavailable => Some(Box::pin(std::future::ready(Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "connection refused (injected)",
            ))))),
            StoreFault::Hang => Some(Box::pin(std::future::pending())),
            StoreFault::Corrupt if read => Some(Box::pin(std::future::ready(Err(
                StoreError::new(StoreErrorKind::Corrupt, "truncated entry (injected)"),
            )))),
            StoreFault::Corrupt => None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PolicyStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredPolicy>, StoreError>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        if let Some(f) = self.fault(true) {
            return f;
        }
        Box::pin(std::future::ready(Ok(self.entry(domain))))
    }

    fn put<'a>(&'a self, entry: &'a StoredPolicy) -> BoxFuture<'a, Result<(), StoreError>> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        if let Some(f) = self.fault(false) {
            return f;
        }
        let mut entries = lock(&self.entries);
        let newer = entries
            .get(&entry.domain)
            .is_none_or(|old| old.fetched_at < entry.fetched_at);
        if newer {
            entries.insert(entry.domain.clone(), entry.clone());
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn delete<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        if let Some(f) = self.fault(false) {
            return f;
        }
        let removed = lock(&self.entries).remove(domain).is_some();
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredPolicy>, StoreError>> {
        if let Some(f) = self.fault(true) {
            return f;
        }
        let mut all: Vec<_> = lock(&self.entries).values().cloned().collect();
        all.sort_by(|a, b| a.domain.cmp(&b.domain));
        all.truncate(limit);
        Box::pin(std::future::ready(Ok(all)))
    }

    fn notes(&self) -> Option<&dyn FleetNotes> {
        Some(self)
    }
}

impl MemoryStore {
    /// The note at `key` with its expiry, expired or not, without counting an operation.
    pub fn note(&self, key: &str) -> Option<(String, UnixTime)> {
        lock(&self.notes).get(key).cloned()
    }
}

impl FleetNotes for MemoryStore {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        now: UnixTime,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        if let Some(f) = self.fault(false) {
            return f;
        }
        if let Err(e) = check_note(key, Some(value)) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let mut notes = lock(&self.notes);
        let free = notes.get(key).is_none_or(|(_, until)| *until <= now);
        if free {
            notes.insert(key.to_owned(), (value.to_owned(), expires));
        }
        Box::pin(std::future::ready(Ok(free)))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        if let Some(f) = self.fault(false) {
            return f;
        }
        if let Err(e) = check_note(key, Some(value)) {
            return Box::pin(std::future::ready(Err(e)));
        }
        lock(&self.notes).insert(key.to_owned(), (value.to_owned(), expires));
        Box::pin(std::future::ready(Ok(())))
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<Option<(String, UnixTime)>, StoreError>> {
        if let Some(f) = self.fault(true) {
            return f;
        }
        let found = self.note(key).filter(|(_, until)| *until > now);
        Box::pin(std::future::ready(Ok(found)))
    }

    fn remove<'a>(
        &'a self,
        key: &'a str,
        value: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        if let Some(f) = self.fault(false) {
            return f;
        }
        let mut notes = lock(&self.notes);
        let matches = notes
            .get(key)
            .is_some_and(|(v, _)| value.is_none_or(|want| want == v));
        if matches {
            notes.remove(key);
        }
        Box::pin(std::future::ready(Ok(matches)))
    }
}
