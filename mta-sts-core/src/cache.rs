//! The long-lived policy cache: fast answers, coalescing, bounded memory, proactive refresh.

use core::hash::BuildHasher;
use core::time::Duration;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};

use crate::config::{Config, StsUsage};
use crate::evaluate::{Evaluation, MxDecision, Verdict};
use crate::lookup::{FetchMemo, Lookup, LookupKind, Params, Resolution, Update};
use crate::outcome::{CacheReason, CachedPolicy, NoPolicyReason, Outcome};
use crate::policy::Mode;
use crate::policy_domain::{PolicyDomain, PolicyDomainError};
use crate::stats::Stats;
use crate::time::UnixTime;

const NIL: u32 = u32::MAX;
const SECOND: Duration = Duration::from_secs(1);
/// The shortest time between two fetches of a policy by the refresher (R19's five minutes).
const MIN_REFRESH_PERIOD: Duration = Duration::from_secs(300);
/// When the in-flight table is full, a due refresh waits this long.
const BUSY_RETRY: Duration = Duration::from_secs(60);

/// What [`PolicyCache::begin`] found.
#[derive(Debug)]
#[must_use]
pub enum Begin {
    /// The answer, without any I/O: an unexpired cached policy, or no policy for a reason that
    /// needs no lookup (address literal, invalid domain, MTA-STS disabled).
    Ready(Outcome),
    /// A lookup to drive: poll it, perform its requests, hand back the results, then pass its
    /// [`Resolution`] to [`PolicyCache::apply`]. It is registered as under way for this domain.
    Started(Box<Lookup>),
    /// Another caller's lookup for this domain is under way: wait for its outcome rather than
    /// starting a second DNS query and fetch (e.g. share a future keyed by the domain).
    InProgress(PolicyDomain),
}

/// Which recency list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    /// Entries with a policy.
    Policies = 0,
    /// Entries without a policy: they only remember a failed fetch (R19).
    Memos = 1,
}

#[derive(Debug, Clone, Copy)]
struct Ends {
    /// Most recently used.
    head: u32,
    /// Least recently used: evicted first.
    tail: u32,
}

/// What a cache hit reads, in one cache line: the name to compare, the policy, the last use and
/// whether the entry is among the most recent. The rest of an entry is in its [`Links`].
#[derive(Debug)]
#[repr(align(64))]
struct Slot {
    domain: SlotName,
    policy: Option<CachedPolicy>,
    last_used: UnixTime,
    /// The recency clock when the slot was last moved to the head of its list.
    moved: u32,
}

// A hit reads one line of slots (checked here, so that a field added to `Slot` is a choice).
const _: () = assert!(size_of::<Option<Slot>>() == 64);

/// The parts of an entry that a cache hit does not read: its place on its recency list, its
/// timer and the memory of a failed fetch. `links[i]` belongs to `slots[i]`.
#[derive(Debug)]
struct Links {
    /// Boxed: rare, and the links stay small.
    memo: Option<Box<FetchMemo>>,
    timer: Option<UnixTime>,
    prev: u32,
    next: u32,
}

impl Links {
    const NEW: Self = Self {
        memo: None,
        timer: None,
        prev: NIL,
        next: NIL,
    };
}

impl Slot {
    fn list(&self) -> List {
        if self.policy.is_some() {
            List::Policies
        } else {
            List::Memos
        }
    }
}

/// A slot's domain: inline when short (nearly always), so that a hit compares it without reading
/// another allocation.
#[derive(Debug)]
pub(crate) enum SlotName {
    Inline { len: u8, bytes: [u8; 30] },
    Heap(PolicyDomain),
}

impl SlotName {
    fn new(domain: &PolicyDomain) -> Self {
        let s = domain.as_str();
        if s.len() > 30 {
            return Self::Heap(domain.clone());
        }
        let mut bytes = [0; 30];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Self::Inline {
            len: s.len() as u8,
            bytes,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(d) => d.as_str().as_bytes(),
        }
    }

    /// The name (a normalised domain: ASCII, so this never fails).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    fn to_domain(&self) -> PolicyDomain {
        match self {
            Self::Inline { .. } => PolicyDomain::from_normalised(self.as_str().to_owned()),
            Self::Heap(d) => d.clone(),
        }
    }
}

/// The index from a domain to its slot: open addressing with linear probing over a power-of-two
/// table of words `hash << 32 | slot`, where `hash` is the low half of the domain's keyed
/// (SipHash, random keys) hash. The domain is kept once, in its slot; a word gives its home
/// position without the domain, so growing and deleting (backward shift) need no rehashing, and
/// the hash half filters out nearly every other domain before its slot is read.
#[derive(Debug)]
struct Index {
    /// The SipHash key, random per cache.
    key: (u64, u64),
    table: Vec<u64>,
    len: usize,
}

const EMPTY: u64 = u64::MAX;

/// SipHash-1-3 (the standard library's `HashMap` hash, keyed alike against flooding), written for
/// a byte string in one call: whole words, one padded last word.
fn sip13(key: (u64, u64), data: &[u8]) -> u64 {
    siphash::<1, 3>(key, data)
}

/// SipHash-c-d of a byte string.
fn siphash<const C: usize, const D: usize>((k0, k1): (u64, u64), data: &[u8]) -> u64 {
    #[inline(always)]
    fn round(v: (u64, u64, u64, u64)) -> (u64, u64, u64, u64) {
        let (mut v0, mut v1, mut v2, mut v3) = v;
        v0 = v0.wrapping_add(v1);
        v1 = v1.rotate_left(13) ^ v0;
        v0 = v0.rotate_left(32);
        v2 = v2.wrapping_add(v3);
        v3 = v3.rotate_left(16) ^ v2;
        v0 = v0.wrapping_add(v3);
        v3 = v3.rotate_left(21) ^ v0;
        v2 = v2.wrapping_add(v1);
        v1 = v1.rotate_left(17) ^ v2;
        v2 = v2.rotate_left(32);
        (v0, v1, v2, v3)
    }
    let mut v = (
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    );
    #[inline(always)]
    fn compress<const C: usize>(mut v: (u64, u64, u64, u64), m: u64) -> (u64, u64, u64, u64) {
        v.3 ^= m;
        for _ in 0..C {
            v = round(v);
        }
        v.0 ^= m;
        v
    }
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    for w in words {
        v = compress::<C>(v, u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
    }
    // The last word: the remaining 0-7 bytes, little-endian, with the length in the top byte.
    // When the data has 8 bytes or more, the tail is the top of the last 8 bytes (one load).
    let rest = tail.len();
    let low = if data.len() >= 8 {
        let last8 = data.get(data.len() - 8..).unwrap_or_default();
        let w = u64::from_le_bytes(last8.try_into().unwrap_or([0; 8]));
        // `rest` < 8: shift the bytes already hashed out (a shift by 64 is not allowed).
        if rest == 0 { 0 } else { w >> (8 * (8 - rest)) }
    } else {
        let mut b = [0u8; 8];
        for (d, s) in b.iter_mut().zip(tail) {
            *d = *s;
        }
        u64::from_le_bytes(b)
    };
    v = compress::<C>(v, low | (data.len() as u64) << 56);
    v.2 ^= 0xff;
    for _ in 0..D {
        v = round(v);
    }
    v.0 ^ v.1 ^ v.2 ^ v.3
}

impl Index {
    fn new() -> Self {
        // The standard library's random keys, drawn through its hasher.
        let random = RandomState::new();
        Self {
            key: (random.hash_one(0u8), random.hash_one(1u8)),
            table: Vec::new(),
            len: 0,
        }
    }

    fn hash(&self, domain: &str) -> u32 {
        sip13(self.key, domain.as_bytes()) as u32
    }

    fn mask(&self) -> usize {
        self.table.len().wrapping_sub(1)
    }

    /// The slot of `domain`, given how to read a slot's domain.
    fn get<'s>(&self, domain: &str, name: impl Fn(u32) -> Option<&'s [u8]>) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let hash = self.hash(domain);
        let mask = self.mask();
        let mut pos = hash as usize & mask;
        loop {
            let word = self.table[pos];
            if word == EMPTY {
                return None;
            }
            let slot = word as u32;
            if (word >> 32) as u32 == hash && name(slot) == Some(domain.as_bytes()) {
                return Some(slot);
            }
            pos = (pos + 1) & mask;
        }
    }

    /// Adds `domain` (absent) at `slot`.
    fn insert(&mut self, domain: &str, slot: u32) {
        // At most three quarters full.
        if (self.len + 1) * 4 > self.table.len() * 3 {
            self.grow();
        }
        let word = u64::from(self.hash(domain)) << 32 | u64::from(slot);
        self.place(word);
        self.len += 1;
    }

    fn place(&mut self, word: u64) {
        let mask = self.mask();
        let mut pos = (word >> 32) as usize & mask;
        while self.table[pos] != EMPTY {
            pos = (pos + 1) & mask;
        }
        self.table[pos] = word;
    }

    fn grow(&mut self) {
        let size = (self.table.len() * 2).max(16);
        let old = core::mem::replace(&mut self.table, vec![EMPTY; size]);
        for word in old.into_iter().filter(|&w| w != EMPTY) {
            self.place(word);
        }
    }

    /// Removes `domain`, which is at `slot`.
    fn remove(&mut self, domain: &str, slot: u32) {
        if self.len == 0 {
            return;
        }
        let mask = self.mask();
        let mut hole = self.hash(domain) as usize & mask;
        loop {
            match self.table[hole] {
                EMPTY => return,
                w if w as u32 == slot => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        self.table[hole] = EMPTY;
        self.len -= 1;
        // Backward shift: an entry after the hole moves into it unless its home lies in between.
        let mut pos = hole;
        loop {
            pos = (pos + 1) & mask;
            let word = self.table[pos];
            if word == EMPTY {
                return;
            }
            let home = (word >> 32) as usize & mask;
            if pos.wrapping_sub(home) & mask >= pos.wrapping_sub(hole) & mask {
                self.table[hole] = word;
                self.table[pos] = EMPTY;
                hole = pos;
            }
        }
    }

    /// The slots indexed.
    #[cfg(any(test, fuzzing))]
    fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.table
            .iter()
            .filter(|&&w| w != EMPTY)
            .map(|&w| w as u32)
    }
}

/// The long-lived MTA-STS policy cache, keyed by policy domain, with proactive refresh.
///
/// # Lookups
/// [`PolicyCache::begin`] answers at once, without I/O, when an unexpired policy is cached;
/// otherwise it hands out a [`Lookup`] and marks the domain as under way, so that concurrent
/// callers get [`Begin::InProgress`] and can wait for the first caller's outcome: one DNS query
/// and one fetch per domain at a time. [`PolicyCache::apply`] stores what the lookup learned and
/// clears the mark (unless the lookup outlived [`Config::lookup_deadline`] and a newer lookup of
/// the domain replaced it); [`PolicyCache::abandon`] clears it for a lookup given up. A mark
/// older than [`Config::lookup_deadline`] is ignored.
///
/// # Bounds and eviction order
/// At most [`Config::capacity`] entries. An entry holds a policy, or only the memory of a recent
/// failed fetch (R19). When a new entry is needed and the cache is full, the entry evicted is:
/// 1. the least recently used entry *without* a policy, if there is one;
/// 2. otherwise the least recently used entry with a policy.
///
/// "Used" means answered a delivery lookup or was stored by one; proactive refreshes do not
/// count. Recency is approximate within the most recent eighth of the entries: a use of an
/// entry already among them does not reorder it (a hit then touches no other entry). Lookups under way are at most [`Config::max_in_flight`].
///
/// # Refresh and expiry (R42–R46)
/// [`PolicyCache::poll_timeout`] gives the next instant the cache has work;
/// [`PolicyCache::poll_refresh`] then yields a refresh [`Lookup`] for each policy due (mode not
/// `none`, used within [`Config::idle_after`]), and drops entries that have expired. A policy is
/// due [`Config::refresh_interval`] after its fetch (or after its `max_age`, if shorter), less a
/// jitter of up to a tenth of that period drawn from [`Config::seed`] and the domain. A refresh
/// that fails keeps the policy and is retried after [`Config::refresh_retry`]. Entries in mode
/// `none` and idle entries are not refreshed: they are dropped when they expire.
///
/// # Persistence
/// [`PolicyCache::export`] and [`PolicyCache::import`]: see [`Snapshot`](crate::Snapshot).
#[derive(Debug)]
pub struct PolicyCache {
    config: Config,
    index: Index,
    slots: Vec<Option<Slot>>,
    /// `links[i]` belongs to `slots[i]`; same length.
    links: Vec<Links>,
    free: Vec<u32>,
    lists: [Ends; 2],
    /// `timer_key(time, slot)` of every slot with a timer (its exact time is in the slot).
    timers: BTreeSet<u64>,
    in_flight: HashMap<PolicyDomain, UnixTime>,
    stats: Stats,
    /// Counts the moves to the head of a list (wrapping): a slot moved less than `len / 8`
    /// moves ago is among the most recent eighth of its list.
    clock: u32,
}

impl PolicyCache {
    /// An empty cache.
    pub fn new(config: Config) -> Self {
        let ends = Ends {
            head: NIL,
            tail: NIL,
        };
        Self {
            config,
            index: Index::new(),
            slots: Vec::new(),
            links: Vec::new(),
            free: Vec::new(),
            lists: [ends; 2],
            timers: BTreeSet::new(),
            in_flight: HashMap::new(),
            stats: Stats::default(),
            clock: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of entries (policies and failed-fetch memories).
    pub fn len(&self) -> usize {
        self.index.len
    }

    /// True when the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.index.len == 0
    }

    /// The counters, with the current gauges.
    pub fn stats(&self) -> Stats {
        Stats {
            entries: self.index.len,
            in_flight: self.in_flight.len(),
            ..self.stats
        }
    }

    /// The policy cached for `domain`, fresh or not, without counting a use.
    pub fn peek(&self, domain: &str) -> Option<&CachedPolicy> {
        let d = PolicyDomain::normalised(domain).ok()?;
        let i = self.find(&d)?;
        self.slot(i).and_then(|s| s.policy.as_ref())
    }

    /// Whether a lookup for `domain` is under way at `now`.
    pub fn is_in_flight(&self, domain: &str, now: UnixTime) -> bool {
        PolicyDomain::normalised(domain).is_ok_and(|d| {
            self.in_flight
                .get(d.as_ref())
                .is_some_and(|deadline| now < *deadline)
        })
    }

    /// Starts resolving the policy of `domain` for a delivery (§5.1 step 1).
    pub fn begin(&mut self, domain: &str, now: UnixTime) -> Begin {
        // Fast path: only valid, normalised names are ever keys, so an exact hit needs no
        // normalisation.
        if let Some(i) = self.find(domain)
            && let Some(ready) = self.fresh_hit(i, domain, now)
        {
            return ready;
        }
        let d = match PolicyDomain::normalised(domain) {
            Ok(d) => d,
            Err(e) => return Begin::Ready(Outcome::NoPolicy(rejected(e))),
        };
        if self.config.settings_for_str(&d).usage == StsUsage::Disable {
            return Begin::Ready(Outcome::NoPolicy(NoPolicyReason::Disabled));
        }
        if let Some(i) = self.find(&d)
            && let Some(ready) = self.fresh_hit(i, &d, now)
        {
            return ready;
        }
        let domain = PolicyDomain::from_normalised(d.into_owned());
        self.start(domain, LookupKind::Delivery, now)
    }

    /// The answer for a fresh cached policy (a use), unless MTA-STS is disabled for the domain.
    fn fresh_hit(&mut self, i: u32, domain: &str, now: UnixTime) -> Option<Begin> {
        let policy = self
            .slot(i)?
            .policy
            .as_ref()
            .filter(|p| p.is_fresh(now))?
            .clone();
        if self.config.settings_for_str(domain).usage == StsUsage::Disable {
            return None;
        }
        self.touch(i, now);
        self.stats.cached += 1;
        let reason = CacheReason::Fresh;
        Some(Begin::Ready(Outcome::Cached { policy, reason }))
    }

    /// Starts re-checking the TXT id of `domain` before a message is failed permanently (R39):
    /// the TXT record is queried even if the cached policy is unexpired. An unchanged id gives
    /// [`CacheReason::UnchangedId`] (keep the message queued); a new id is fetched, and a new
    /// policy comes back as [`Outcome::Fetched`] (evaluate and try again).
    pub fn begin_recheck(&mut self, domain: &str, now: UnixTime) -> Begin {
        match PolicyDomain::parse(domain) {
            Ok(d) if self.config.settings_for(&d).usage == StsUsage::Disable => {
                Begin::Ready(Outcome::NoPolicy(NoPolicyReason::Disabled))
            }
            Ok(d) => self.start(d, LookupKind::Recheck, now),
            Err(e) => Begin::Ready(Outcome::NoPolicy(rejected(e))),
        }
    }

    fn start(&mut self, domain: PolicyDomain, kind: LookupKind, now: UnixTime) -> Begin {
        if self
            .in_flight
            .get(&domain)
            .is_some_and(|deadline| now < *deadline)
        {
            return Begin::InProgress(domain);
        }
        self.mark_in_flight(&domain, now);
        let (cached, memo) = match self.find(domain.as_str()) {
            Some(i) => (self.slot(i).and_then(|s| s.policy.clone()), self.memo(i)),
            None => (None, None),
        };
        let params = Params::new(&self.config, &domain);
        Begin::Started(Box::new(Lookup::with(
            domain, kind, params, cached, memo, now,
        )))
    }

    /// Marks a lookup as under way; false when the table is full of live lookups.
    fn mark_in_flight(&mut self, domain: &PolicyDomain, now: UnixTime) -> bool {
        let deadline = now.saturating_add(self.config.lookup_deadline);
        if let Some(d) = self.in_flight.get_mut(domain) {
            *d = deadline;
            return true;
        }
        if self.in_flight.len() >= self.config.max_in_flight {
            self.in_flight.retain(|_, d| now < *d);
            if self.in_flight.len() >= self.config.max_in_flight {
                return false;
            }
        }
        self.in_flight.insert(domain.clone(), deadline);
        true
    }

    /// Clears the "under way" mark of a lookup that will not be finished (its caller gave up).
    pub fn abandon(&mut self, domain: &PolicyDomain) {
        self.in_flight.remove(domain);
    }

    /// Stores what a finished lookup learned, clears its "under way" mark, and returns its
    /// outcome. A resolution older than what the cache already holds never overwrites it, and a
    /// refresh never brings back an entry dropped meanwhile.
    pub fn apply(&mut self, resolution: Resolution, now: UnixTime) -> Outcome {
        let Resolution {
            domain,
            kind,
            outcome,
            update,
            started,
            ..
        } = resolution;
        // The mark is this lookup's unless a newer lookup replaced it after this one's deadline.
        let mark = started.saturating_add(self.config.lookup_deadline);
        if self.in_flight.get(&domain) == Some(&mark) {
            self.in_flight.remove(&domain);
        }
        let existing = self.find(domain.as_str());
        if matches!(outcome, Outcome::Cached { .. }) {
            self.stats.cached += 1;
        }
        let refresh = kind == LookupKind::Refresh;
        match update {
            Update::None => match existing {
                // A refresh that was not done (R19 back-off) is retried later.
                Some(i) if refresh => {
                    self.set_timer(i, Some(now.saturating_add(self.config.refresh_retry)));
                }
                Some(i) if outcome.policy().is_some() => self.touch(i, now),
                _ => {}
            },
            Update::Store(policy) => {
                self.stats.fetch_success += 1;
                if refresh {
                    self.stats.refresh_success += 1;
                }
                tracing::info!(
                    policy_domain = %domain, mode = %policy.mode(), max_age = policy.policy().max_age(),
                    id = policy.id(), refresh, "fetched MTA-STS policy"
                );
                let slot = if refresh {
                    existing
                } else {
                    self.entry(&domain, now)
                };
                if let Some(i) = slot {
                    self.store(i, policy, !refresh, now);
                }
            }
            Update::FetchFailed(memo) => {
                self.stats.fetch_failure += 1;
                let cached_mode = outcome.policy().map(CachedPolicy::mode);
                if refresh {
                    self.stats.refresh_failure += 1;
                    // R45: alert on refresh failures, unless the cached mode is `none`.
                    if cached_mode != Some(Mode::None) {
                        tracing::warn!(
                            policy_domain = %domain, mode = ?cached_mode, problem = ?outcome,
                            "MTA-STS policy refresh failed; keeping the cached policy"
                        );
                    }
                } else {
                    tracing::info!(
                        policy_domain = %domain, mode = ?cached_mode, problem = ?outcome,
                        "MTA-STS policy fetch failed"
                    );
                }
                let slot = if refresh {
                    existing
                } else {
                    self.entry(&domain, now)
                };
                if let Some(i) = slot {
                    self.remember_failure(i, memo, refresh, now);
                }
            }
            Update::ForgetExpired => {
                if let Some(i) = existing {
                    self.forget_expired(i, now);
                }
            }
        }
        if let Some(p) = outcome
            .policy()
            .filter(|_| !matches!(outcome, Outcome::Fetched(_)))
        {
            tracing::debug!(
                policy_domain = %domain, mode = %p.mode(), max_age = p.policy().max_age(),
                "cached MTA-STS policy"
            );
        }
        outcome
    }

    fn store(&mut self, i: u32, policy: CachedPolicy, used: bool, now: UnixTime) {
        let Some(s) = self.slot(i) else { return };
        if s.policy
            .as_ref()
            .is_some_and(|old| old.fetched_at() > policy.fetched_at())
        {
            return; // a newer policy is already stored
        }
        let relist = s.policy.is_none();
        if relist {
            self.unlink(i);
        }
        if let Some(s) = self.slot_mut(i) {
            s.policy = Some(policy);
        }
        if let Some(l) = self.links_mut(i) {
            l.memo = None;
        }
        if relist {
            self.link_head(i);
        }
        if used {
            self.touch(i, now);
        }
        let at = self.schedule(i, now);
        self.set_timer(i, at);
    }

    fn remember_failure(&mut self, i: u32, memo: FetchMemo, refresh: bool, now: UnixTime) {
        let retry = self.config.refresh_retry;
        let memo_end = memo.at.saturating_add(self.config.fetch_retry_after);
        let Some(has_policy) = self.slot(i).map(|s| s.policy.is_some()) else {
            return;
        };
        if let Some(l) = self.links_mut(i)
            && l.memo.as_deref().is_none_or(|old| old.at <= memo.at)
        {
            l.memo = Some(Box::new(memo));
        }
        if !refresh {
            self.touch(i, now);
        }
        if !has_policy {
            self.set_timer(i, Some(memo_end.max(now.saturating_add(SECOND))));
        } else if refresh {
            self.set_timer(i, Some(now.saturating_add(retry)));
        }
    }

    fn forget_expired(&mut self, i: u32, now: UnixTime) {
        let Some(s) = self.slot(i) else { return };
        if s.policy.as_ref().is_none_or(|p| p.is_fresh(now)) {
            return;
        }
        match self.memo(i) {
            None => self.remove(i),
            Some(memo) => {
                self.unlink(i);
                if let Some(s) = self.slot_mut(i) {
                    s.policy = None;
                }
                self.link_head(i);
                let end = memo.at.saturating_add(self.config.fetch_retry_after);
                self.set_timer(i, Some(end.max(now.saturating_add(SECOND))));
            }
        }
    }

    /// The next timer of an entry with a policy: its refresh, or its expiry when it is not
    /// refreshed (mode `none`, idle).
    fn schedule(&self, i: u32, now: UnixTime) -> Option<UnixTime> {
        let s = self.slot(i)?;
        let p = s.policy.as_ref()?;
        let drop_at = p.expires_at().saturating_add(SECOND);
        let at = if p.mode() == Mode::None || self.is_idle(s, now) {
            drop_at
        } else {
            self.refresh_at(s.domain.as_str(), p).min(drop_at)
        };
        Some(at.max(now.saturating_add(SECOND)))
    }

    fn is_idle(&self, s: &Slot, now: UnixTime) -> bool {
        now.since(s.last_used) >= self.config.idle_after
    }

    /// Evaluates an outcome for the MX hosts of `domain` in priority order, with the domain's
    /// settings, and counts the decisions (see [`Evaluation`]).
    pub fn evaluate<'h, I>(&mut self, domain: &str, outcome: &Outcome, mx_hosts: I) -> Evaluation
    where
        I: IntoIterator<Item = &'h str>,
    {
        let settings = match PolicyDomain::normalised(domain) {
            Ok(d) => self.config.settings_for_str(&d),
            Err(_) => self.config.defaults,
        };
        let evaluation = Evaluation::new(outcome, &settings, mx_hosts);
        self.count(domain, &evaluation, outcome);
        evaluation
    }

    fn count(&mut self, domain: &str, e: &Evaluation, outcome: &Outcome) {
        let d = &mut self.stats.decisions;
        match e.verdict() {
            Verdict::Defer(_) => {
                d.deferred += 1;
                return;
            }
            Verdict::DeferRecheckPolicy => d.enforce_defer += 1,
            Verdict::Deliver => {}
        }
        let max_age = outcome.policy().map_or(0, |p| p.policy().max_age());
        match e.mode() {
            None => d.no_policy += 1,
            Some(Mode::None) => d.mode_none += 1,
            Some(mode) => {
                for c in e.candidates() {
                    match c.decision() {
                        MxDecision::Enforce => d.enforce_match += 1,
                        MxDecision::Skip => {
                            d.enforce_skip += 1;
                            tracing::info!(
                                policy_domain = domain, mode = %mode, max_age, mx_host = c.host(),
                                "MTA-STS enforce: MX host does not match policy, skipped"
                            );
                        }
                        MxDecision::Testing { host_matches: true } => d.testing_match += 1,
                        MxDecision::Testing {
                            host_matches: false,
                        } => {
                            d.testing_mismatch += 1;
                            tracing::warn!(
                                policy_domain = domain, mode = %mode, max_age, mx_host = c.host(),
                                "MTA-STS testing: MX host does not match policy"
                            );
                        }
                        MxDecision::NoConstraint => {}
                    }
                }
            }
        }
        if e.verdict() == Verdict::DeferRecheckPolicy {
            tracing::warn!(
                policy_domain = domain,
                mode = "enforce",
                max_age,
                "MTA-STS enforce: no MX host matches policy; defer and re-check the policy id"
            );
        }
    }

    /// The next instant the cache has work for [`PolicyCache::poll_refresh`] (a refresh due, an
    /// entry to drop); `None` when it has none.
    pub fn poll_timeout(&self) -> Option<UnixTime> {
        let &key = self.timers.first()?;
        self.links(key as u32).and_then(|l| l.timer)
    }

    /// Does the work due at `now`: drops expired entries and returns the next refresh lookup due,
    /// if any (marked as under way; finish it with [`PolicyCache::apply`]). Call it until it
    /// returns `None`, then wait until [`PolicyCache::poll_timeout`].
    pub fn poll_refresh(&mut self, now: UnixTime) -> Option<Lookup> {
        let later = now.saturating_add(SECOND);
        // Every step pops one timer and sets at most one later than `now`: bounded.
        for _ in 0..self.timers.len() {
            let &key = self.timers.first()?;
            let i = key as u32;
            match self.links(i).and_then(|l| l.timer) {
                Some(t) if t > now => return None,
                Some(_) => {}
                None => {
                    self.timers.remove(&key);
                    continue;
                }
            }
            self.set_timer(i, None);
            let Some(s) = self.slot(i) else { continue };
            if let Some(&deadline) = self.in_flight.get(s.domain.as_str()).filter(|d| now < **d) {
                self.set_timer(i, Some(deadline.max(later)));
                continue;
            }
            let Some(p) = &s.policy else {
                // Only a failed-fetch memory: keep it while it still blocks a refetch.
                let end = self
                    .memo(i)
                    .map(|m| m.at.saturating_add(self.config.fetch_retry_after));
                match end.filter(|e| now < *e) {
                    Some(e) => self.set_timer(i, Some(e)),
                    None => self.remove(i),
                }
                continue;
            };
            if !p.is_fresh(now) {
                tracing::debug!(
                    policy_domain = s.domain.as_str(),
                    "expired MTA-STS policy dropped"
                );
                self.remove(i);
                continue;
            }
            if p.mode() == Mode::None || self.is_idle(s, now) {
                let drop_at = p.expires_at().saturating_add(SECOND);
                self.set_timer(i, Some(drop_at.max(later)));
                continue;
            }
            let (domain, cached, memo) = (s.domain.to_domain(), Some(p.clone()), self.memo(i));
            if !self.mark_in_flight(&domain, now) {
                self.set_timer(i, Some(now.saturating_add(BUSY_RETRY)));
                continue;
            }
            // Should the refresh be abandoned, it is tried again later.
            self.set_timer(
                i,
                Some(now.saturating_add(self.config.refresh_retry).max(later)),
            );
            let params = Params::new(&self.config, &domain);
            return Some(Lookup::with(
                domain,
                LookupKind::Refresh,
                params,
                cached,
                memo,
                now,
            ));
        }
        None
    }

    /// The entries with a policy, most recently used first: (domain, policy, last use).
    pub(crate) fn policies_by_recency(
        &self,
    ) -> impl Iterator<Item = (&SlotName, &CachedPolicy, UnixTime)> + '_ {
        let mut i = self.lists[List::Policies as usize].head;
        core::iter::from_fn(move || {
            let s = self.slot(i)?;
            i = self.links(i)?.next;
            s.policy.as_ref().map(|p| (&s.domain, p, s.last_used))
        })
    }

    /// Stores a policy loaded from a snapshot; false when a newer one was cached already.
    pub(crate) fn insert_loaded(
        &mut self,
        domain: &PolicyDomain,
        policy: CachedPolicy,
        last_used: UnixTime,
        now: UnixTime,
    ) -> bool {
        let Some(i) = self.entry(domain, now) else {
            return false;
        };
        let Some(s) = self.slot(i) else { return false };
        if s.policy
            .as_ref()
            .is_some_and(|old| old.fetched_at() >= policy.fetched_at())
        {
            return false;
        }
        self.store(i, policy, false, now);
        if let Some(s) = self.slot_mut(i) {
            s.last_used = last_used.min(now);
        }
        self.touch_order_only(i);
        let at = self.schedule(i, now);
        self.set_timer(i, at);
        true
    }

    /// Moves `i` to the most recent end of its list without changing its last use.
    fn touch_order_only(&mut self, i: u32) {
        self.unlink(i);
        self.link_head(i);
    }

    /// Checks the internal structure (index, recency lists, timers, capacity); for the fuzz
    /// target and tests only.
    #[cfg(any(test, fuzzing))]
    pub fn check_invariants(&self) {
        let live = self.slots.iter().filter(|s| s.is_some()).count();
        assert_eq!(live, self.index.len, "index and slots disagree");
        assert_eq!(live, self.index.slots().count(), "index and slots disagree");
        assert!(self.index.len <= self.config.capacity, "over capacity");
        assert!(
            self.in_flight.len() <= self.config.max_in_flight.max(1),
            "in-flight unbounded"
        );
        for i in self.index.slots() {
            let d = self.slot(i).map(|s| s.domain.as_str());
            assert!(d.is_some(), "index points to an empty slot");
            assert_eq!(
                d.and_then(|d| self.find(d)),
                Some(i),
                "index points elsewhere"
            );
        }
        let mut seen = 0;
        for list in [List::Policies, List::Memos] {
            let ends = self.lists[list as usize];
            let (mut prev, mut i) = (NIL, ends.head);
            while i != NIL {
                let s = self.slot(i).expect("listed slot exists");
                let l = self.links(i).expect("a listed slot has links");
                assert_eq!(s.list(), list, "slot on the wrong list");
                assert_eq!(l.prev, prev, "broken back link");
                seen += 1;
                assert!(seen <= live, "cycle in a recency list");
                (prev, i) = (i, l.next);
            }
            assert_eq!(ends.tail, prev, "tail is not the last slot");
        }
        assert_eq!(seen, live, "a slot is on no list");
        for &key in &self.timers {
            let t = self
                .slot(key as u32)
                .and(self.links(key as u32))
                .and_then(|l| l.timer);
            assert_eq!(
                t.map(|t| timer_key(t, key as u32)),
                Some(key),
                "stray timer"
            );
        }
        assert_eq!(self.links.len(), self.slots.len(), "slots without links");
        for (s, l) in self.slots.iter().zip(&self.links) {
            if s.is_none() {
                assert!(l.memo.is_none() && l.timer.is_none(), "a free slot's links");
                assert!(l.prev == NIL && l.next == NIL, "a free slot's links");
            }
        }
        let timed = self.links.iter().filter(|l| l.timer.is_some()).count();
        assert_eq!(timed, self.timers.len(), "a slot's timer is not queued");
    }

    // ----- slots, lists and timers -----

    /// The slot of `domain`, if cached.
    fn find(&self, domain: &str) -> Option<u32> {
        self.index
            .get(domain, |i| self.slot(i).map(|s| s.domain.as_bytes()))
    }

    fn slot(&self, i: u32) -> Option<&Slot> {
        self.slots.get(i as usize).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, i: u32) -> Option<&mut Slot> {
        self.slots.get_mut(i as usize).and_then(Option::as_mut)
    }

    fn ends(&mut self, list: List) -> &mut Ends {
        &mut self.lists[list as usize]
    }

    /// The links of slot `i` (those of a free slot are [`Links::NEW`]); `None` for [`NIL`].
    fn links(&self, i: u32) -> Option<&Links> {
        self.links.get(i as usize)
    }

    fn links_mut(&mut self, i: u32) -> Option<&mut Links> {
        self.links.get_mut(i as usize)
    }

    /// The failed fetch that slot `i` remembers.
    fn memo(&self, i: u32) -> Option<FetchMemo> {
        self.links(i).and_then(|l| l.memo.as_deref().copied())
    }

    fn unlink(&mut self, i: u32) {
        let Some(list) = self.slot(i).map(Slot::list) else {
            return;
        };
        let Some(&Links { prev, next, .. }) = self.links(i) else {
            return;
        };
        match self.links_mut(prev) {
            Some(p) => p.next = next,
            None => self.ends(list).head = next,
        }
        match self.links_mut(next) {
            Some(n) => n.prev = prev,
            None => self.ends(list).tail = prev,
        }
        if let Some(l) = self.links_mut(i) {
            l.prev = NIL;
            l.next = NIL;
        }
    }

    /// Links `i` at the head (most recent end) of the list matching its state.
    fn link_head(&mut self, i: u32) {
        let Some(list) = self.slot(i).map(Slot::list) else {
            return;
        };
        let head = self.ends(list).head;
        if let Some(h) = self.links_mut(head) {
            h.prev = i;
        }
        let clock = self.clock;
        self.clock = clock.wrapping_add(1);
        if let Some(l) = self.links_mut(i) {
            l.prev = NIL;
            l.next = head;
        }
        if let Some(s) = self.slot_mut(i) {
            s.moved = clock;
        }
        let ends = self.ends(list);
        ends.head = i;
        if ends.tail == NIL {
            ends.tail = i;
        }
    }

    /// Records a use. The slot moves to the head of its list unless it is among the most recent
    /// eighth already (then no other slot is touched): recency is exact but for the order within
    /// that eighth, which a hit does not refresh.
    fn touch(&mut self, i: u32, now: UnixTime) {
        let recent = (self.index.len / 8).min(u32::MAX as usize) as u32;
        let clock = self.clock;
        let Some(s) = self.slot_mut(i) else { return };
        s.last_used = s.last_used.max(now);
        if clock.wrapping_sub(s.moved) < recent {
            return;
        }
        if self.ends(self.slot(i).map_or(List::Memos, Slot::list)).head != i {
            self.unlink(i);
            self.link_head(i);
        }
    }

    fn set_timer(&mut self, i: u32, at: Option<UnixTime>) {
        if self.slot(i).is_none() {
            return;
        }
        let Some(l) = self.links_mut(i) else { return };
        let old = core::mem::replace(&mut l.timer, at);
        if let Some(t) = old {
            self.timers.remove(&timer_key(t, i));
        }
        if let Some(t) = at {
            self.timers.insert(timer_key(t, i));
        }
    }

    fn remove(&mut self, i: u32) {
        self.set_timer(i, None);
        self.unlink(i);
        if let Some(s) = self.slots.get_mut(i as usize).and_then(Option::take) {
            self.index.remove(s.domain.as_str(), i);
            if let Some(l) = self.links_mut(i) {
                *l = Links::NEW;
            }
            self.free.push(i);
        }
    }

    /// The entry for `domain`, created (evicting if full) when missing; `None` if the capacity
    /// is zero.
    fn entry(&mut self, domain: &PolicyDomain, now: UnixTime) -> Option<u32> {
        if let Some(i) = self.find(domain.as_str()) {
            return Some(i);
        }
        if self.config.capacity == 0 {
            return None;
        }
        while self.index.len >= self.config.capacity {
            let victim = match self.lists[List::Memos as usize].tail {
                NIL => self.lists[List::Policies as usize].tail,
                t => t,
            };
            if victim == NIL {
                break;
            }
            self.remove(victim);
            self.stats.evictions += 1;
        }
        let slot = Slot {
            domain: SlotName::new(domain),
            policy: None,
            last_used: now,
            moved: 0,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                self.links[i as usize] = Links::NEW;
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).ok().filter(|&i| i != NIL)?;
                self.slots.push(Some(slot));
                self.links.push(Links::NEW);
                i
            }
        };
        self.index.insert(domain.as_str(), i);
        self.link_head(i);
        Some(i)
    }

    /// Splitmix64 of the seed, the domain and the fetch time: the refresh jitter's randomness.
    fn jitter(&self, domain: &str, fetched_at: UnixTime, period: Duration) -> Duration {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.config.seed;
        for b in domain.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut z = h ^ fetched_at.as_secs().wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Duration::from_secs(z % (period.as_secs() / 10 + 1))
    }

    /// When a stored policy is next refreshed (R44), before its expiry when `max_age` allows.
    fn refresh_at(&self, domain: &str, p: &CachedPolicy) -> UnixTime {
        let max_age = Duration::from_secs(u64::from(p.policy().max_age()));
        let period = self.config.refresh_interval.min(max_age);
        let after = period.saturating_sub(self.jitter(domain, p.fetched_at(), period));
        p.fetched_at().saturating_add(after.max(MIN_REFRESH_PERIOD))
    }
}

/// The order of timers: by time in whole seconds, then slot, in one word (half the memory of a
/// `(UnixTime, u32)` pair). Times from 2106 on (2^32 s) share the last second: among them the
/// order is the slots'.
fn timer_key(t: UnixTime, slot: u32) -> u64 {
    t.as_secs().min(u64::from(u32::MAX)) << 32 | u64::from(slot)
}

fn rejected(e: PolicyDomainError) -> NoPolicyReason {
    match e {
        PolicyDomainError::AddressLiteral => NoPolicyReason::AddressLiteral,
        e => NoPolicyReason::InvalidDomain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{FetchResponse, TxtAnswer};
    use crate::lookup::{IoResult, Step};

    fn fetch_into(cache: &mut PolicyCache, domain: &str, now: UnixTime) {
        let Begin::Started(mut l) = cache.begin(domain, now) else {
            return;
        };
        let txt = TxtAnswer::Records(vec![b"v=STSv1; id=1;".to_vec()]);
        let body = "version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 86400\n";
        l.handle(IoResult::Txt(Ok(txt)), now).unwrap();
        l.handle(
            IoResult::Fetch(Ok(FetchResponse::new(200, Some("text/plain"), body))),
            now,
        )
        .unwrap();
        let Step::Done(r) = l.poll() else {
            panic!("done after two requests")
        };
        let _ = cache.apply(r, now);
    }

    /// Finishes the lookup `l` with a valid policy at `now`.
    fn resolve(mut l: Box<Lookup>, now: UnixTime) -> Resolution {
        let txt = TxtAnswer::Records(vec![b"v=STSv1; id=1;".to_vec()]);
        let body = "version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 86400\n";
        l.handle(IoResult::Txt(Ok(txt)), now).unwrap();
        let fetch = FetchResponse::new(200, Some("text/plain"), body);
        l.handle(IoResult::Fetch(Ok(fetch)), now).unwrap();
        let Step::Done(r) = l.poll() else {
            panic!("done after two requests")
        };
        r
    }

    #[test]
    fn an_overdue_lookup_finishing_leaves_the_newer_lookups_mark() {
        // Concurrent lookups of one domain coalesce behind its "under way" mark; a lookup that
        // outlives the deadline is replaced, and its late result must not clear the new mark.
        let mut config = Config::default();
        config.capacity = 0; // nothing cached: every begin looks at the marks only
        let mut cache = PolicyCache::new(config);
        let t0 = UnixTime::from_secs(1_000_000);
        let Begin::Started(first) = cache.begin("example.com", t0) else {
            panic!("the first lookup starts")
        };
        let late = t0.saturating_add(cache.config().lookup_deadline + SECOND);
        let Begin::Started(second) = cache.begin("example.com", late) else {
            panic!("a lookup after the first one's deadline starts")
        };
        let _ = cache.apply(resolve(first, late), late);
        assert!(
            matches!(cache.begin("example.com", late), Begin::InProgress(_)),
            "the second lookup is still under way"
        );
        let _ = cache.apply(resolve(second, late), late);
        assert!(matches!(
            cache.begin("example.com", late),
            Begin::Started(_)
        ));
    }

    #[test]
    fn siphash_matches_the_standard_library() {
        // The standard library exposes SipHash-2-4 only (deprecated); the same code with other
        // round counts is SipHash-1-3.
        #[allow(deprecated)]
        fn std24(k0: u64, k1: u64, data: &[u8]) -> u64 {
            use core::hash::Hasher;
            let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
            h.write(data);
            h.finish()
        }
        let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let msg: Vec<u8> = (0..64).collect();
        for n in 0..64 {
            assert_eq!(
                siphash::<2, 4>((k0, k1), &msg[..n]),
                std24(k0, k1, &msg[..n]),
                "{n}"
            );
        }
        // The reference vector of SipHash-2-4 for 15 bytes (the paper's appendix).
        assert_eq!(siphash::<2, 4>((k0, k1), &msg[..15]), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn index_finds_every_name_through_growth_and_backward_shift_deletion() {
        let names: Vec<String> = (0..3000).map(|i| format!("d{i}.example")).collect();
        let name = |i: u32| names.get(i as usize).map(String::as_bytes);
        let mut index = Index::new();
        for (i, n) in names.iter().enumerate() {
            index.insert(n, i as u32);
        }
        // Remove every third, then check every name, present or not.
        for (i, n) in names.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            index.remove(n, i as u32);
        }
        assert_eq!(index.len, 2000);
        for (i, n) in names.iter().enumerate() {
            let want = (i % 3 != 0).then_some(i as u32);
            assert_eq!(index.get(n, name), want, "{n}");
        }
        assert_eq!(index.get("absent.example", name), None);
        assert_eq!(index.slots().count(), 2000);
    }

    #[test]
    fn long_domains_are_found_and_refreshed_too() {
        let mut cache = PolicyCache::new(Config::default());
        let t = UnixTime::from_secs(1_700_000_000);
        let long = format!("{}.example", "a".repeat(40));
        fetch_into(&mut cache, &long, t);
        fetch_into(&mut cache, "short.example", t);
        assert!(cache.peek(&long).is_some() && cache.peek("short.example").is_some());
        assert!(matches!(cache.begin(&long, t), Begin::Ready(_)));
        let names: Vec<_> = cache
            .policies_by_recency()
            .map(|(d, _, _)| d.as_str().to_owned())
            .collect();
        assert_eq!(names, [long.clone(), "short.example".to_owned()]);
        let later = t.saturating_add(Duration::from_secs(86_400));
        let mut refreshed = Vec::new();
        while let Some(l) = cache.poll_refresh(later) {
            refreshed.push(l.domain().as_str().to_owned());
            cache.abandon(l.domain());
        }
        refreshed.sort();
        assert_eq!(refreshed, [long, "short.example".to_owned()]);
        cache.check_invariants();
    }

    #[test]
    fn structure_holds_through_inserts_evictions_refreshes_and_drops() {
        let mut config = Config::default();
        config.capacity = 5;
        let mut cache = PolicyCache::new(config);
        let t = UnixTime::from_secs(1_700_000_000);
        for i in 0..12u64 {
            fetch_into(
                &mut cache,
                &format!("d{}.example", i % 7),
                t.saturating_add(SECOND * 60 * i as u32),
            );
            cache.check_invariants();
        }
        assert_eq!(cache.len(), 5);
        let later = t.saturating_add(Duration::from_secs(86_400));
        while let Some(l) = cache.poll_refresh(later) {
            cache.abandon(l.domain());
            cache.check_invariants();
        }
        let _ = cache.poll_refresh(t.saturating_add(Duration::from_secs(10 * 86_400)));
        cache.check_invariants();
        assert!(cache.is_empty(), "expired entries dropped");
    }
}
