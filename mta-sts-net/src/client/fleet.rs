//! Fleet-wide single flight and refresh, through the store's [`FleetNotes`].
//!
//! **Single flight.** Before a policy fetch (a discovery whose TXT id needs the HTTPS fetch, a
//! re-check with a new id, a refresh), a client whose store keeps notes claims the note
//! `lock/<domain>` (its value: this process's random holder id; its expiry: now plus the fetch
//! timeout and the store timeout). Having it, the client reads the store once more (another host
//! may have finished a fetch just before) and fetches; its store write is followed by the
//! release of the lock, so that a host seeing the lock gone finds the policy in the store. When
//! another host holds it, the client waits for that host's result: it polls the lock (back-off
//! from 20 ms to 250 ms) and the store's entry, and adopts the entry once the
//! core accepts it ([`PolicyCache::adopt`](mta_sts_core::PolicyCache::adopt), or
//! [`adopt_refresh`](mta_sts_core::PolicyCache::adopt_refresh) for a refresh). A lock released
//! or expired without an entry is claimed again (one of the waiting hosts fetches); at the
//! latest after the fetch timeout the client fetches itself. A store error follows
//! `on_store_error`: `local` fetches at once, `defer` answers
//! [`Outcome::StoreUnavailable`]. A lock whose holder died expires.
//!
//! **Refresh.** A proactive refresh first reads the store: an entry another host fetched
//! recently enough counts as this host's refresh (the core's
//! [`adopt_refresh`](mta_sts_core::PolicyCache::adopt_refresh)) and nothing is fetched. With
//! each host's own jitter, the host whose refresh comes first fetches and the others adopt its
//! fetch: about one refresh per policy and interval for the fleet.
//!
//! Metrics: see [`crate::store_client`].

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mta_sts_core::{
    AdoptError, CacheReason, CachedPolicy, Lookup, LookupKind, Outcome, PolicyDomain,
};

use super::{Driving, Inner, Waiters};
use crate::runtime::{BoxFuture, Runtime, until};
use crate::store::{FleetNotes, PolicyStore, StoreErrorKind};
use crate::store_client::{OnStoreError, StoreSettings, count};

/// The first wait before looking at another host's lock again.
const POLL_FIRST: Duration = Duration::from_millis(20);

/// The longest wait between two looks at another host's lock.
const POLL_MAX: Duration = Duration::from_millis(250);

/// The entry is read on every this many polls even while the lock is held (its holder's
/// release may have failed).
const ENTRY_EVERY: u32 = 4;

/// The note key of `domain`'s fleet lookup lock.
fn lock_key(domain: &str) -> String {
    format!("lock/{domain}")
}

/// This process's holder id: random, the same for every lock it takes.
pub(crate) fn holder() -> &'static str {
    static HOLDER: OnceLock<String> = OnceLock::new();
    HOLDER.get_or_init(|| {
        let r = (0..4).fold(0u64, |r, _| r << 16 | u64::from(crate::query_id()));
        format!("{r:016x}-{}", std::process::id())
    })
}

/// Logs a store error met by the fleet lock, at most once a second per process, apart from the
/// store's own get and put errors (so that one never hides the other; the counts are in the
/// metrics).
fn log_error(store: &'static str, op: &'static str, domain: &str, error: &dyn std::fmt::Display) {
    static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let now = Instant::now();
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
        return;
    }
    *last = Some(now);
    drop(last);
    tracing::warn!(store, op, domain, error = %error, "MTA-STS fleet lock: store error");
}

fn count_lock(result: &'static str) {
    metrics::counter!("mta_sts_fleet_locks_total", "result" => result).increment(1);
}

fn count_wait(result: &'static str) {
    metrics::counter!("mta_sts_fleet_lock_waits_total", "result" => result).increment(1);
}

fn count_refresh(result: &'static str) {
    metrics::counter!("mta_sts_fleet_refreshes_total", "result" => result).increment(1);
}

/// A fleet lock this client holds: released after its store write.
#[derive(Debug)]
pub(crate) struct HeldLock {
    key: String,
}

/// What a lookup about to fetch does.
pub(super) enum FleetGo {
    /// Fetch, holding the fleet lock when one was taken.
    Fetch(Option<HeldLock>),
    /// Another host's fetch was adopted from the store: this outcome for every caller.
    Answer(Outcome),
}

/// A store operation's failure: whether the data was unreadable, and the detail logged and
/// answered.
struct Failed {
    corrupt: bool,
    detail: String,
}

impl<R: Runtime> Inner<R> {
    /// Before `domain`'s fetch: claim the fleet lock, or wait for the host that holds it (see
    /// the [module docs](self)).
    pub(super) async fn before_fetch(&self, domain: &PolicyDomain, kind: LookupKind) -> FleetGo {
        let Some(store) = &self.store else {
            return FleetGo::Fetch(None);
        };
        let Some(notes) = store.store.notes() else {
            return FleetGo::Fetch(None);
        };
        let key = lock_key(domain.as_str());
        let fetch_timeout = self.lock().cache.config().fetch_timeout;
        let ttl = fetch_timeout.saturating_add(store.timeout);
        let started = self.runtime.now();
        let deadline = started
            .checked_add(fetch_timeout)
            .unwrap_or_else(|| crate::dns::far(started));
        match self.claim(store, notes, &key, ttl, deadline).await {
            Ok(true) => {
                count_lock("acquired");
                return self
                    .holding(store, notes, domain, kind, key, deadline)
                    .await;
            }
            Ok(false) => count_lock("held_elsewhere"),
            Err(Failed { detail, .. }) => {
                count_lock("error");
                return self.store_failed(store, domain, "lock", detail);
            }
        }
        let mut delay = POLL_FIRST;
        let mut polls = 0u32;
        loop {
            let now = self.runtime.now();
            if now >= deadline {
                count_wait("timeout");
                tracing::debug!(policy_domain = %domain, "fleet lock still held: fetching");
                return FleetGo::Fetch(None);
            }
            let wake = now.checked_add(delay).unwrap_or(deadline).min(deadline);
            self.runtime.sleep_until(wake).await;
            delay = (delay * 2).min(POLL_MAX);
            polls += 1;
            let held = match self
                .bounded(store, deadline, notes.read(&key, self.now()))
                .await
            {
                Ok(held) => held.is_some(),
                Err(Failed { detail, .. }) => {
                    count_wait("error");
                    return self.store_failed(store, domain, "lock", detail);
                }
            };
            if !held || polls.is_multiple_of(ENTRY_EVERY) {
                match self.adopt_stored(store, domain, kind, deadline).await {
                    Ok(Some(policy)) => {
                        count_wait("adopted");
                        return FleetGo::Answer(adopted(policy));
                    }
                    Ok(None) => {}
                    Err(Failed { detail, .. }) => {
                        count_wait("error");
                        return self.store_failed(store, domain, "get", detail);
                    }
                }
            }
            if !held {
                match self.claim(store, notes, &key, ttl, deadline).await {
                    Ok(true) => {
                        count_wait("taken_over");
                        return self
                            .holding(store, notes, domain, kind, key, deadline)
                            .await;
                    }
                    Ok(false) => {}
                    Err(Failed { detail, .. }) => {
                        count_wait("error");
                        return self.store_failed(store, domain, "lock", detail);
                    }
                }
            }
        }
    }

    /// The lock is this client's: one more look at the store (a host may have finished its
    /// fetch and released the lock just before the claim), then fetch.
    async fn holding(
        &self,
        store: &StoreSettings,
        notes: &dyn FleetNotes,
        domain: &PolicyDomain,
        kind: LookupKind,
        key: String,
        deadline: Instant,
    ) -> FleetGo {
        let held = HeldLock { key };
        match self.adopt_stored(store, domain, kind, deadline).await {
            Ok(Some(policy)) => {
                count_lock("already_stored");
                let _ = self
                    .bounded(store, deadline, notes.remove(&held.key, Some(holder())))
                    .await;
                FleetGo::Answer(adopted(policy))
            }
            // A store that cannot be read now still gets the fetch and its write.
            Ok(None) | Err(_) => FleetGo::Fetch(Some(held)),
        }
    }

    /// Claims `key` for `ttl` (on the wall clock), within the store timeout and `deadline`.
    async fn claim(
        &self,
        store: &StoreSettings,
        notes: &dyn FleetNotes,
        key: &str,
        ttl: Duration,
        deadline: Instant,
    ) -> Result<bool, Failed> {
        let now = self.now();
        let claim = notes.claim(key, holder(), now, now.saturating_add(ttl));
        self.bounded(store, deadline, claim).await
    }

    /// `op` within the store timeout (and never past `deadline`), its error as [`Failed`]
    /// (logged and counted as a store operation `note`).
    async fn bounded<T>(
        &self,
        store: &StoreSettings,
        deadline: Instant,
        op: BoxFuture<'_, Result<T, crate::StoreError>>,
    ) -> Result<T, Failed> {
        let name = store.store.name();
        let now = self.runtime.now();
        let limit = now.checked_add(store.timeout).unwrap_or(deadline);
        match until(&self.runtime, limit.min(deadline), op).await {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => {
                let result = match e.kind() {
                    StoreErrorKind::Corrupt => "corrupt",
                    StoreErrorKind::Refused => "refused",
                    _ => "unavailable",
                };
                count(name, "note", result);
                Err(Failed {
                    corrupt: *e.kind() == StoreErrorKind::Corrupt,
                    detail: e.to_string(),
                })
            }
            None => {
                count(name, "note", "timeout");
                Err(Failed {
                    corrupt: false,
                    detail: format!("no answer within {:?}", store.timeout),
                })
            }
        }
    }

    /// The store's entry of `domain`, adopted when the core accepts it (as a refresh for a
    /// refresh lookup); `None` when there is none or it is not usable (yet).
    async fn adopt_stored(
        &self,
        store: &StoreSettings,
        domain: &PolicyDomain,
        kind: LookupKind,
        deadline: Instant,
    ) -> Result<Option<CachedPolicy>, Failed> {
        let name = store.store.name();
        let d = domain.as_str();
        let entry = match self.bounded(store, deadline, store.store.get(d)).await {
            Ok(Some(entry)) if entry.domain == d => entry,
            Ok(_) => return Ok(None),
            // An unreadable entry is overwritten by the fetch: not a store failure.
            Err(Failed { corrupt: true, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let now = self.now();
        let mut st = self.lock();
        let adopted = if kind == LookupKind::Refresh {
            st.cache
                .adopt_refresh(d, &entry.id, entry.fetched_at, &entry.policy, now)
        } else {
            st.cache
                .adopt(d, &entry.id, entry.fetched_at, &entry.policy, now)
        };
        drop(st);
        match adopted {
            Ok(policy) => {
                count(name, "get", "hit");
                Ok(Some(policy))
            }
            Err(AdoptError::NotNewer | AdoptError::NotARefresh | AdoptError::Expired) => Ok(None),
            Err(e) => {
                count(name, "get", "corrupt");
                log_error(name, "get", d, &e);
                Ok(None)
            }
        }
    }

    /// A store failure in the fleet lock: logged; `local` fetches, `defer` answers a temporary
    /// failure.
    fn store_failed(
        &self,
        store: &StoreSettings,
        domain: &PolicyDomain,
        op: &'static str,
        detail: String,
    ) -> FleetGo {
        log_error(store.store.name(), op, domain.as_str(), &detail);
        match store.on_error {
            OnStoreError::Local => FleetGo::Fetch(None),
            OnStoreError::Defer => FleetGo::Answer(Outcome::StoreUnavailable(detail)),
        }
    }

    /// Ends the flight `driving` drives with `outcome` (an adopted policy, or a store failure
    /// with `defer`), for its waiters too.
    pub(super) fn end_flight(&self, driving: &mut Driving<'_, R>, outcome: Outcome) -> Outcome {
        if let Some(flight) = driving.flight {
            let mut st = self.lock();
            st.waiters.remove(&flight);
            st.cache.abandon(&driving.domain, flight);
        }
        driving.done = true;
        driving.waiters.end(Some(outcome.clone()));
        self.changed.notify(usize::MAX);
        outcome
    }

    /// Releases `held` (within the store timeout); a failure leaves it to expire.
    pub(super) async fn release(&self, held: HeldLock) {
        if let Some(store) = &self.store {
            release(
                self.runtime.clone(),
                Arc::clone(&store.store),
                store.timeout,
                held,
            )
            .await;
        }
    }

    /// Before a proactive refresh: adopts a recent enough fetch of another host from the store
    /// instead (true: the refresh is done, `lookup` given up).
    pub(super) async fn refresh_from_store(&self, lookup: &Lookup, waiters: Arc<Waiters>) -> bool {
        let Some(store) = &self.store else {
            return false;
        };
        let now = self.runtime.now();
        let deadline = now
            .checked_add(store.timeout)
            .unwrap_or_else(|| crate::dns::far(now));
        let domain = lookup.domain();
        match self
            .adopt_stored(store, domain, LookupKind::Refresh, deadline)
            .await
        {
            Ok(Some(policy)) => {
                count_refresh("adopted");
                tracing::debug!(
                    policy_domain = %domain, id = policy.id(),
                    "MTA-STS refresh: another host's fetch adopted from the store"
                );
                // Dropped unfinished: the flight ends and its waiters start over.
                drop(Driving::new(self, lookup, waiters));
                true
            }
            _ => {
                count_refresh("fetched");
                false
            }
        }
    }
}

/// The outcome of a policy adopted from another host's fetch.
fn adopted(policy: CachedPolicy) -> Outcome {
    Outcome::Cached {
        policy,
        reason: CacheReason::Fresh,
    }
}

/// Releases `held` in `store` within `timeout`; a failure (counted) leaves it to expire.
async fn release<R: Runtime>(
    runtime: R,
    store: Arc<dyn PolicyStore>,
    timeout: Duration,
    held: HeldLock,
) {
    let Some(notes) = store.notes() else { return };
    let now = runtime.now();
    let deadline = now
        .checked_add(timeout)
        .unwrap_or_else(|| crate::dns::far(now));
    let result = match until(&runtime, deadline, notes.remove(&held.key, Some(holder()))).await {
        Some(Ok(_)) => return,
        Some(Err(_)) => "unavailable",
        None => "timeout",
    };
    count(store.name(), "note", result);
}

/// `work` (a store write), then the release of `held`: the lock is released only once the
/// policy is in the store, so that a host that sees the lock gone finds the policy.
pub(super) fn then_release<R: Runtime>(
    runtime: R,
    settings: &StoreSettings,
    work: BoxFuture<'static, ()>,
    held: Option<HeldLock>,
) -> BoxFuture<'static, ()> {
    let (store, timeout) = (Arc::clone(&settings.store), settings.timeout);
    Box::pin(async move {
        work.await;
        if let Some(held) = held {
            release(runtime, store, timeout, held).await;
        }
    })
}
