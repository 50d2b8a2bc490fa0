//! The operator's view of a running client's cache (S10: `mta-sts cache … --socket`): what is
//! cached in memory and in the shared store, purging a domain or everything from both, and a
//! refresh that fetches now even when the TXT id did not change (for domains that change their
//! policy without publishing a new id). What may be done to the cache is the core's
//! ([`PolicyCache::purge`](mta_sts_core::PolicyCache::purge),
//! [`PolicyCache::begin_refetch`](mta_sts_core::PolicyCache::begin_refetch)); this drives it
//! as the client drives every lookup: one flight per domain, its waiters told its outcome.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use mta_sts_core::{Begin, Outcome, UnixTime};

use super::{Client, Inner, Waiters};
use crate::runtime::{Runtime, until};
use crate::store::{StoreError, StoreErrorKind, StoredPolicy};

/// How many times [`Client::refresh_now`] waits for another lookup of the domain under way
/// before it gives up and answers with that lookup's outcome.
const REFRESH_ATTEMPTS: usize = 8;

/// The most store entries [`Client::purge_all`] removes in one call.
pub const MAX_PURGE: usize = 1_000_000;

/// Where a [`CacheEntry`] is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntrySource {
    /// The client's in-memory cache.
    Memory,
    /// The shared policy store ([`ClientBuilder::store`](crate::ClientBuilder::store)).
    Store,
}

impl EntrySource {
    /// `memory` or `store`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Store => "store",
        }
    }
}

impl fmt::Display for EntrySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One cached policy as the operator's tools show it: the domain, the TXT id it was fetched
/// under, when, its text, and where it is kept. An entry of the store is as the store returned
/// it: its text is hostile (parse it before trusting it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheEntry {
    /// The policy domain.
    pub domain: String,
    /// The TXT record's id.
    pub id: String,
    /// When the policy was fetched (its `max_age` counts from here).
    pub fetched_at: UnixTime,
    /// The policy text (RFC 8461 §3.2 format).
    pub policy: String,
    /// Where the entry is kept.
    pub source: EntrySource,
}

impl CacheEntry {
    fn stored(e: StoredPolicy) -> Self {
        Self {
            domain: e.domain,
            id: e.id,
            fetched_at: e.fetched_at,
            policy: e.policy,
            source: EntrySource::Store,
        }
    }
}

/// What [`Client::purge`] and [`Client::purge_all`] removed.
#[derive(Debug)]
#[non_exhaustive]
pub struct Purged {
    /// Entries removed from memory.
    pub memory: usize,
    /// Entries removed from the store; `None` without a store, an error when it failed.
    pub store: Option<Result<usize, StoreError>>,
}

impl<R: Runtime> Client<R> {
    /// The policies cached in memory (fresh or expired, not yet dropped), most recently used
    /// first, at most `limit`.
    pub fn cached_entries(&self, limit: usize) -> Vec<CacheEntry> {
        let st = self.inner.lock();
        st.cache
            .policies()
            .take(limit)
            .map(|(domain, p)| CacheEntry {
                domain: domain.to_owned(),
                id: p.id().to_owned(),
                fetched_at: p.fetched_at(),
                policy: p.policy().to_string(),
                source: EntrySource::Memory,
            })
            .collect()
    }

    /// The policy of `domain` cached in memory, if any.
    pub fn cached_entry(&self, domain: &str) -> Option<CacheEntry> {
        let st = self.inner.lock();
        let p = st.cache.peek(domain)?;
        let domain = mta_sts_core::PolicyDomain::parse(domain).ok()?;
        Some(CacheEntry {
            domain: domain.as_str().to_owned(),
            id: p.id().to_owned(),
            fetched_at: p.fetched_at(),
            policy: p.policy().to_string(),
            source: EntrySource::Memory,
        })
    }

    /// Whether the client has a shared policy store.
    pub fn has_store(&self) -> bool {
        self.inner.store.is_some()
    }

    /// The entries of the shared store, at most `limit` (each bounded by the store timeout);
    /// `None` without a store.
    pub async fn stored_entries(
        &self,
        limit: usize,
    ) -> Option<Result<Vec<CacheEntry>, StoreError>> {
        let store = self.inner.store.as_ref()?;
        let listed = self.inner.store_op(store.store.list(limit)).await;
        Some(listed.map(|v| v.into_iter().map(CacheEntry::stored).collect()))
    }

    /// The entry of `domain` in the shared store; `None` without a store.
    pub async fn stored_entry(
        &self,
        domain: &str,
    ) -> Option<Result<Option<CacheEntry>, StoreError>> {
        let store = self.inner.store.as_ref()?;
        let key = store_key(domain);
        let got = self.inner.store_op(store.store.get(&key)).await;
        Some(got.map(|e| e.map(CacheEntry::stored)))
    }

    /// Removes `domain` from memory and from the shared store (otherwise the next delivery would
    /// adopt the stored entry again): the next delivery looks its policy up.
    pub async fn purge(&self, domain: &str) -> Purged {
        let memory = usize::from(self.inner.lock().cache.purge(domain));
        let store = match &self.inner.store {
            None => None,
            Some(s) => {
                let key = store_key(domain);
                let deleted = self.inner.store_op(s.store.delete(&key)).await;
                Some(deleted.map(usize::from))
            }
        };
        Purged { memory, store }
    }

    /// Removes every entry from memory, and every entry of the shared store (at most
    /// [`MAX_PURGE`], each removal bounded by the store timeout).
    pub async fn purge_all(&self) -> Purged {
        let memory = self.inner.lock().cache.purge_all();
        let store = match &self.inner.store {
            None => None,
            Some(s) => Some(
                async {
                    let listed = self.inner.store_op(s.store.list(MAX_PURGE)).await?;
                    let mut removed = 0;
                    for e in &listed {
                        if self.inner.store_op(s.store.delete(&e.domain)).await? {
                            removed += 1;
                        }
                    }
                    Ok(removed)
                }
                .await,
            ),
        };
        Purged { memory, store }
    }

    /// Fetches the policy of `domain` now, even when its TXT id did not change (see
    /// [`PolicyCache::begin_refetch`](mta_sts_core::PolicyCache::begin_refetch)): a new
    /// policy replaces the cached one and goes to the store (this waits for the write); a failed
    /// fetch keeps the cached policy. A lookup of the domain under way is waited for first.
    /// Deliveries for the domain meanwhile wait for this fetch, as for any lookup.
    /// [`Outcome::Fetched`] when a policy was fetched.
    pub async fn refresh_now(&self, domain: &str) -> Outcome {
        let inner = &*self.inner;
        let mut last = None;
        for _ in 0..REFRESH_ATTEMPTS {
            let next = {
                let now = inner.now();
                let mut st = inner.lock();
                match st.cache.begin_refetch(domain, now) {
                    Begin::Ready(outcome) => return outcome,
                    Begin::Started(lookup) => {
                        let waiters = Arc::new(Waiters::default());
                        if let Some(flight) = lookup.flight() {
                            st.waiters.insert(flight, Arc::clone(&waiters));
                        }
                        Ok((lookup, waiters))
                    }
                    Begin::InProgress(flight) => match st.waiters.get(&flight) {
                        Some(w) => Err(Arc::clone(w)),
                        None => {
                            // Cannot happen (see `Inner::start`): end it and begin again.
                            if let Ok(d) = mta_sts_core::PolicyDomain::parse(domain) {
                                st.cache.abandon(&d, flight);
                            }
                            continue;
                        }
                    },
                }
            };
            match next {
                Ok((lookup, waiters)) => {
                    let outcome = Box::pin(inner.drive(*lookup, waiters)).await;
                    self.wait_store_writes().await;
                    return outcome;
                }
                Err(waiters) => last = waiters.wait().await.or(last),
            }
        }
        last.unwrap_or(Outcome::Internal(
            mta_sts_core::LookupError::UnexpectedResult,
        ))
    }
}

/// The store's key of `domain`: its normalised form when it is a policy domain.
fn store_key(domain: &str) -> String {
    match mta_sts_core::PolicyDomain::parse(domain) {
        Ok(d) => d.as_str().to_owned(),
        Err(_) => domain.to_owned(),
    }
}

impl<R: Runtime> Inner<R> {
    /// A store operation, bounded by the store timeout.
    async fn store_op<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let timeout = self
            .store
            .as_ref()
            .map_or(crate::DEFAULT_STORE_TIMEOUT, |s| s.timeout);
        match until(&self.runtime, Instant::now() + timeout, op).await {
            Some(result) => result,
            None => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!("no answer within {timeout:?}"),
            )),
        }
    }
}
