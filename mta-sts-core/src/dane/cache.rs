//! The DANE state cache: separate from the MTA-STS policy cache, bounded, keyed by destination.

use std::collections::{BTreeMap, HashMap};

use crate::policy_domain::PolicyDomain;
use crate::time::UnixTime;

use super::lookup::{DaneConfig, DaneLookup, DaneResolution};
use super::state::{DaneAbsent, DaneHosts, DaneState};

/// What [`DaneCache::begin`] found.
#[derive(Debug)]
#[must_use]
pub enum DaneBegin {
    /// The state, without any I/O: cached and unexpired, or absent for a destination that is not
    /// a domain name.
    Ready(DaneState),
    /// A lookup to drive; pass its resolution to [`DaneCache::apply`].
    Started(DaneLookup),
}

#[derive(Debug)]
struct CacheEntry {
    state: DaneState,
    /// The last use.
    used: u64,
    /// The entry's key in `recency`: its last use when it was listed there, which a hit does not
    /// move (so that a hit costs no change to the map); eviction lists it again at `used` when
    /// it finds the two differ.
    listed: u64,
    /// What the entry counts against [`DaneConfig::max_bytes`].
    bytes: usize,
}

/// The bytes a cached state holds, roughly: its key, host names and TLSA data, and a fixed
/// overhead per entry, host and record.
fn state_bytes(domain: &str, state: &DaneState) -> usize {
    use super::state::HostCoverage;
    let hosts: usize = state
        .hosts()
        .iter()
        .map(|h| {
            let tlsa: usize = match h.coverage() {
                HostCoverage::Usable(t) | HostCoverage::Unusable(t) => {
                    t.iter().map(|r| 32 + r.data().len()).sum()
                }
                _ => 0,
            };
            64 + h.name().len() + tlsa
        })
        .sum();
    128 + domain.len() + hosts
}

/// The DANE states of recent destinations (D6).
///
/// A determinate state is cached until its [`DaneState::expires_at`]: the earliest arrival time
/// plus TTL of the answers that decided it, capped at [`DaneConfig::max_ttl`]; a state whose
/// TTL is 0 is not cached, an indeterminate state never is. At most [`DaneConfig::capacity`]
/// destinations: when full, the least recently used one is evicted. The cache is apart from
/// the [`PolicyCache`](crate::PolicyCache): a DANE state never changes, shortens or drops a
/// cached MTA-STS policy, and a fresh DANE state applies at once, whatever policy is cached.
///
/// ```
/// use mta_sts_core::{DaneBegin, DaneCache, DaneConfig, UnixTime};
///
/// let mut cache = DaneCache::new(DaneConfig::default());
/// let now = UnixTime::from_secs(1_700_000_000);
/// // An address literal has no DANE state to look up.
/// let DaneBegin::Ready(state) = cache.begin("[192.0.2.1]", now) else { unreachable!() };
/// assert_eq!(state.name(), "absent");
/// assert!(matches!(cache.begin("example.com", now), DaneBegin::Started(_)));
/// assert!(cache.is_empty());
/// ```
#[derive(Debug)]
pub struct DaneCache {
    config: DaneConfig,
    entries: HashMap<String, CacheEntry>,
    /// Listed use → domain, oldest first (see `CacheEntry::listed`).
    recency: BTreeMap<u64, String>,
    tick: u64,
    /// The sum of the entries' `bytes`.
    bytes: usize,
}

impl DaneCache {
    /// An empty cache.
    pub fn new(config: DaneConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
            recency: BTreeMap::new(),
            tick: 0,
            bytes: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DaneConfig {
        &self.config
    }

    /// The state of `domain` at `now`: cached, or a lookup to drive.
    pub fn begin(&mut self, domain: &str, now: UnixTime) -> DaneBegin {
        let name = match PolicyDomain::normalised(domain) {
            Ok(name) => name,
            Err(e) => {
                let why = DaneAbsent::NotADomain(e);
                return DaneBegin::Ready(DaneState::Absent(why, DaneHosts::default()));
            }
        };
        if let Some(entry) = self.entries.get_mut(name.as_ref()) {
            if entry
                .state
                .expires_at()
                .is_some_and(|expires| now < expires)
            {
                // A hit only notes its use: the recency order is mended when evicting.
                self.tick += 1;
                entry.used = self.tick;
                return DaneBegin::Ready(entry.state.clone());
            }
            self.remove(&name);
        }
        DaneBegin::Started(DaneLookup::for_normalised(name.into_owned(), &self.config))
    }

    /// Stores what a lookup concluded, at `now`, and gives back its state. An indeterminate
    /// state is not stored, nor one that has expired by `now` (a TTL of 0).
    pub fn apply(&mut self, resolution: DaneResolution, now: UnixTime) -> DaneState {
        let domain = resolution.domain().to_owned();
        let mut state = resolution.into_state();
        if state.is_indeterminate() {
            return state;
        }
        let cap = now.saturating_add(self.config.max_ttl);
        if let Some(hosts) = state.dane_hosts_mut() {
            let capped = hosts.expires_at().map(|at| at.min(cap));
            hosts.set_expires_at(capped);
        }
        self.remove(&domain);
        let cacheable = state.expires_at().is_some_and(|at| now < at);
        let bytes = state_bytes(&domain, &state);
        if !cacheable || self.config.capacity == 0 || bytes > self.config.max_bytes {
            return state;
        }
        while self.entries.len() >= self.config.capacity
            || self.bytes + bytes > self.config.max_bytes
        {
            let Some((listed, oldest)) = self.recency.pop_first() else {
                break;
            };
            match self.entries.get_mut(&oldest) {
                // Used since it was listed: list it again at its last use (each entry is
                // listed once, so this ends).
                Some(entry) if entry.used != listed => {
                    entry.listed = entry.used;
                    self.recency.insert(entry.used, oldest);
                }
                Some(_) => {
                    if let Some(entry) = self.entries.remove(&oldest) {
                        self.bytes -= entry.bytes;
                    }
                }
                None => {}
            }
        }
        self.bytes += bytes;
        self.tick += 1;
        self.recency.insert(self.tick, domain.clone());
        self.entries.insert(
            domain,
            CacheEntry {
                state: state.clone(),
                used: self.tick,
                listed: self.tick,
                bytes,
            },
        );
        state
    }

    /// The destinations cached (some may have expired and not yet been dropped).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes the cached states hold, as counted against [`DaneConfig::max_bytes`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn remove(&mut self, domain: &str) {
        if let Some(entry) = self.entries.remove(domain) {
            self.recency.remove(&entry.listed);
            self.bytes -= entry.bytes;
        }
    }
}
