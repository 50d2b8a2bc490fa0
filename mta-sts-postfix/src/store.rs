//! The shared policy store of `cache.type: sqlite`, `redis`, `redis_sentinel` and `postgres`
//! ([`CacheBackend`]), opened with the options postfix-mta-sts-resolver passes to its drivers.
//!
//! [`open_store`] opens it once (what `cache.on_store_error: defer` needs at start);
//! [`ReopeningStore`] wraps it for the daemon, so that a store that could not be opened at start
//! (`local`) is opened again on a later operation, at most once per [`REOPEN_EVERY`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mta_sts_core::UnixTime;
use mta_sts_net::{BoxFuture, FleetNotes, PolicyStore, StoreError, StoreErrorKind, StoredPolicy};
use mta_sts_store::postgres::PostgresStore;
use mta_sts_store::redis::{RedisOptions, RedisStore};
use mta_sts_store::sqlite::SqliteStore;

use crate::config::{CacheBackend, RedisConnection};

/// A store that could not be opened is tried again at most this often.
pub const REOPEN_EVERY: Duration = Duration::from_secs(10);

/// The domain [`open_store`] reads to check that a Redis server answers (a name that is never
/// a policy domain: `.invalid`, RFC 2606).
const PROBE_DOMAIN: &str = "mta-sts-daemon-probe.invalid";

/// Opens the store of `backend`: `None` for `internal` and `file` (no shared store).
///
/// SQLite: the file is opened (created when missing) with the peer's tables and its busy
/// timeout. PostgreSQL: connected, the peer's table created when missing, within `timeout`.
/// Redis: the URL (or the sentinels) checked, then one read to see that the server answers
/// within its timeouts. Must run inside a tokio runtime with I/O and time enabled.
///
/// # Errors
///
/// What the store said: [`StoreErrorKind::Unavailable`] when its server cannot be reached,
/// [`StoreErrorKind::Other`] for a setting it cannot use (a URL, a CA file).
pub async fn open_store(
    backend: &CacheBackend,
) -> Result<Option<Arc<dyn PolicyStore>>, StoreError> {
    let store: Arc<dyn PolicyStore> = match backend {
        CacheBackend::Internal | CacheBackend::File { .. } => return Ok(None),
        CacheBackend::Sqlite { filename, timeout } => {
            let (filename, timeout) = (filename.clone(), *timeout);
            let store = tokio::task::spawn_blocking(move || {
                SqliteStore::open_with_busy_timeout(&filename, timeout)
            })
            .await
            .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("sqlite open: {e}")))??;
            Arc::new(store)
        }
        CacheBackend::Postgres { dsn, timeout } => {
            Arc::new(PostgresStore::connect_with_timeout(dsn, *timeout).await?)
        }
        CacheBackend::Redis { url, connection } => {
            let store = RedisStore::connect_with(url, redis_options(connection).await?)?;
            store.get(PROBE_DOMAIN).await?;
            Arc::new(store)
        }
        CacheBackend::RedisSentinel {
            sentinels,
            master_name,
            master_url,
            connection,
        } => {
            let sentinels: Vec<&str> = sentinels.iter().map(String::as_str).collect();
            let options = redis_options(connection).await?;
            let store = match master_url {
                Some(url) => {
                    RedisStore::sentinel_with_master(&sentinels, master_name, url, options)?
                }
                None => RedisStore::sentinel(&sentinels, master_name, options)?,
            };
            store.get(PROBE_DOMAIN).await?;
            Arc::new(store)
        } // CacheBackend is non_exhaustive for other crates only.
    };
    Ok(Some(store))
}

async fn redis_options(c: &RedisConnection) -> Result<RedisOptions, StoreError> {
    let options = RedisOptions::default().with_timeouts(c.connect_timeout, c.timeout);
    let Some(file) = &c.ca_file else {
        return Ok(options);
    };
    // A small file, read once at start.
    let pem = std::fs::read(file).map_err(|e| {
        StoreError::new(
            StoreErrorKind::Other,
            format!(
                "cache.options.ssl_ca_certs: cannot read {}: {e}",
                file.display()
            ),
        )
    })?;
    Ok(options.with_tls_ca_pem(pem))
}

/// The daemon's store: the one [`open_store`] opened, or none yet, in which case each
/// operation fails with [`StoreErrorKind::Unavailable`] and, at most once per
/// [`REOPEN_EVERY`], first tries to open it again (in the background: the operation does not
/// wait for it).
pub struct ReopeningStore {
    backend: CacheBackend,
    name: &'static str,
    state: Arc<Mutex<State>>,
}

struct State {
    store: Option<Arc<dyn PolicyStore>>,
    /// When the last attempt to open it started.
    last_attempt: Instant,
    opening: bool,
}

impl std::fmt::Debug for ReopeningStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReopeningStore")
            .field("type", &self.backend.type_name())
            .field("open", &self.current().is_some())
            .finish_non_exhaustive()
    }
}

impl ReopeningStore {
    /// `store` (opened by [`open_store`]) for `backend`, or none yet (its opening failed now).
    pub fn new(backend: CacheBackend, store: Option<Arc<dyn PolicyStore>>) -> Self {
        let name = store.as_ref().map_or(backend.type_name(), |s| s.name());
        Self {
            backend,
            name,
            state: Arc::new(Mutex::new(State {
                store,
                last_attempt: Instant::now(),
                opening: false,
            })),
        }
    }

    /// Whether the store is open.
    pub fn is_open(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<dyn PolicyStore>> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .store
            .clone()
    }

    /// The open store, or an Unavailable error after starting a new attempt when it is due.
    fn store(&self) -> Result<Arc<dyn PolicyStore>, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = &state.store {
            return Ok(store.clone());
        }
        if !state.opening
            && state.last_attempt.elapsed() >= REOPEN_EVERY
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            state.opening = true;
            state.last_attempt = Instant::now();
            let (backend, shared) = (self.backend.clone(), self.state.clone());
            runtime.spawn(async move {
                let opened = open_store(&backend).await;
                let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                state.opening = false;
                match opened {
                    Ok(store) => {
                        tracing::info!("cache: the {} store is open now", backend.type_name());
                        state.store = store;
                    }
                    Err(e) => tracing::warn!(
                        "cache: the {} store still cannot be opened: {e}",
                        backend.type_name()
                    ),
                }
            });
        }
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            format!("the {} store is not open", self.backend.type_name()),
        ))
    }
}

impl PolicyStore for ReopeningStore {
    fn name(&self) -> &'static str {
        self.name
    }

    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredPolicy>, StoreError>> {
        match self.store() {
            Ok(store) => Box::pin(async move { store.get(domain).await }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn put<'a>(&'a self, entry: &'a StoredPolicy) -> BoxFuture<'a, Result<(), StoreError>> {
        match self.store() {
            Ok(store) => Box::pin(async move { store.put(entry).await }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn delete<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        match self.store() {
            Ok(store) => Box::pin(async move { store.delete(domain).await }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredPolicy>, StoreError>> {
        match self.store() {
            Ok(store) => Box::pin(async move { store.list(limit).await }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn notes(&self) -> Option<&dyn FleetNotes> {
        Some(self)
    }
}

/// The notes of the open store (fleet locks, shared negative answers); an error like every
/// operation while it is not open, or when it keeps none.
impl FleetNotes for ReopeningStore {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        now: UnixTime,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let store = self.store();
        Box::pin(async move { notes_of(&store?)?.claim(key, value, now, expires).await })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let store = self.store();
        Box::pin(async move { notes_of(&store?)?.set(key, value, expires).await })
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<Option<(String, UnixTime)>, StoreError>> {
        let store = self.store();
        Box::pin(async move { notes_of(&store?)?.read(key, now).await })
    }

    fn remove<'a>(
        &'a self,
        key: &'a str,
        value: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let store = self.store();
        Box::pin(async move { notes_of(&store?)?.remove(key, value).await })
    }
}

/// The notes of `store`, or an error when it keeps none.
fn notes_of(store: &Arc<dyn PolicyStore>) -> Result<&dyn FleetNotes, StoreError> {
    store.notes().ok_or_else(|| {
        StoreError::new(
            StoreErrorKind::Other,
            format!("the {} store keeps no notes", store.name()),
        )
    })
}
