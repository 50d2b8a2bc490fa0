//! The long-lived policy cache: fast answers, coalescing, bounded memory, proactive refresh.

use core::time::Duration;
use std::collections::BTreeSet;

use crate::config::{Config, StsUsage};
use crate::dane::{DaneState, Precedence};
use crate::evaluate::{CandidateDane, Evaluation, MxDecision, Verdict};
use crate::lookup::{FetchMemo, Lookup, LookupKind, Params, Resolution, Update};
use crate::negative::{Absences, Absent};
use crate::outcome::{CacheReason, CachedPolicy, NoPolicyReason, Outcome};
use crate::policy::Mode;
use crate::policy_domain::{PolicyDomain, PolicyDomainError};
use crate::stats::Stats;
use crate::time::UnixTime;

mod admin;
mod fleet;
mod flights;
mod index;
mod recency;
mod timers;

pub use flights::FlightId;
use flights::Flights;
use index::Index;
use recency::{Ends, Links, NIL, Slot};
#[cfg(any(test, fuzzing))]
use {recency::List, timers::timer_key};

const SECOND: Duration = Duration::from_secs(1);
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
    /// Another caller's lookup for this domain is under way: wait for the outcome of that
    /// flight rather than starting a second DNS query and fetch. If it ends without an outcome
    /// (its driver gave up), call `begin` again.
    InProgress(FlightId),
}

/// The long-lived MTA-STS policy cache, keyed by policy domain, with proactive refresh.
///
/// # Lookups
/// [`PolicyCache::begin`] answers at once, without I/O, when an unexpired policy is cached;
/// otherwise it hands out a [`Lookup`] with a new [`FlightId`] and registers that flight as the
/// domain's lookup under way, so that concurrent callers get [`Begin::InProgress`] with the same
/// identity and wait for the first caller's outcome: one DNS query and one fetch per domain at a
/// time. [`PolicyCache::apply`] stores what the lookup learned and ends its flight;
/// [`PolicyCache::abandon`] ends it for a lookup given up. A flight older than
/// [`Config::lookup_deadline`] no longer counts as under way: the next caller starts a new
/// flight, and the old one ending later stores what it learned but ends nothing else. This is
/// the only table of lookups under way; an adapter keeps per flight only what its waiters wait
/// on, with no clock logic of its own.
///
/// # Bounds and eviction order
/// At most [`Config::capacity`] entries. An entry holds a policy, or only the memory of a recent
/// failed fetch (R19). When a new entry is needed and the cache is full, the entry evicted is:
/// 1. the least recently used entry *without* a policy, if there is one;
/// 2. otherwise the least recently used entry with a policy.
///
/// "Used" means answered a delivery lookup or was stored by one; proactive refreshes do not
/// count. Recency is approximate within the most recent eighth of the entries: a use of an
/// entry already among them does not reorder it (a hit then touches no other entry).
///
/// Flights registered are at most [`Config::max_in_flight`]; a lookup begun while that many are
/// under way still runs, with a flight of its own that is not registered (not coalesced).
///
/// # Negative answers (RFC 2308)
/// A delivery lookup or re-check that finds no `_mta-sts` record (NXDOMAIN or NODATA) and no
/// unexpired cached policy remembers "no policy until T", T being the answer's negative TTL
/// within [`Config::negative_ttl_min`] and [`Config::negative_ttl_max`]
/// ([`Config::negative_ttl`]); until then [`PolicyCache::begin`] answers
/// [`NoPolicyReason::NoRecord`] at once, without I/O. At most [`Config::negative_capacity`] are
/// remembered (the one expiring first makes room). A negative answer never drops an unexpired
/// policy (R11), a policy stored later (fetched or adopted) replaces it, and a failed fetch
/// keeps its own back-off ([`Config::fetch_retry_after`]). A fleet shares them with
/// [`Resolution::absent_until`] and [`PolicyCache::adopt_absent`].
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
    /// The lookups under way.
    flights: Flights,
    /// "No policy until T" per domain, after NXDOMAIN or NODATA.
    absences: Absences,
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
            flights: Flights::default(),
            absences: Absences::default(),
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
        self.index.len()
    }

    /// True when the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// The counters, with the current gauges.
    pub fn stats(&self) -> Stats {
        Stats {
            entries: self.index.len(),
            in_flight: self.flights.len(),
            negative_entries: self.absences.len(),
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
        self.flight(domain, now).is_some()
    }

    /// The flight of `domain` under way at `now`, if any.
    pub fn flight(&self, domain: &str, now: UnixTime) -> Option<FlightId> {
        let d = PolicyDomain::normalised(domain).ok()?;
        self.flights.live(&d, now).map(|(id, _)| id)
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
        if let Some(absent) = self.absent_hit(&d, now) {
            return Begin::Ready(absent);
        }
        let domain = PolicyDomain::from_normalised(d.into_owned());
        self.start(domain, LookupKind::Delivery, now)
    }

    /// The answer for a remembered negative answer of `domain` (normalised), unexpired at `now`.
    fn absent_hit(&mut self, domain: &str, now: UnixTime) -> Option<Outcome> {
        let Some((absent, _)) = self.absences.get(domain, now) else {
            // Expired entries go as they are met (bounded: those expired, once each).
            self.absences.purge(now);
            return None;
        };
        self.stats.negative_hits += 1;
        Some(Outcome::NoPolicy(NoPolicyReason::NoRecord(
            absent.problem(),
        )))
    }

    /// The negative answer remembered for `domain` and until when, if unexpired at `now`.
    pub fn peek_absent(&self, domain: &str, now: UnixTime) -> Option<(Absent, UnixTime)> {
        let d = PolicyDomain::normalised(domain).ok()?;
        self.absences.get(&d, now)
    }

    /// Adopts a negative answer that another host (through a shared store) got for `domain`:
    /// until `until` (at most [`Config::negative_ttl_max`] from `now`), [`PolicyCache::begin`]
    /// answers no policy without I/O, as after a lookup of its own. Refused (false) for an
    /// invalid domain, a domain with MTA-STS disabled or an unexpired cached policy (a
    /// negative answer never drops a policy, R11), an `until` not after `now`, or with
    /// negative caching off ([`Config::negative_capacity`] 0).
    ///
    /// ```
    /// use core::time::Duration;
    /// use mta_sts_core::{Absent, Begin, Config, PolicyCache, UnixTime};
    ///
    /// let mut cache = PolicyCache::new(Config::default());
    /// let now = UnixTime::from_secs(1_700_000_000);
    /// let until = now.saturating_add(Duration::from_secs(600));
    /// assert!(cache.adopt_absent("example.com", Absent::NxDomain, until, now));
    /// assert!(matches!(cache.begin("example.com", now), Begin::Ready(_)));
    /// assert!(matches!(cache.begin("example.com", until), Begin::Started(_)));
    /// ```
    pub fn adopt_absent(
        &mut self,
        domain: &str,
        absent: Absent,
        until: UnixTime,
        now: UnixTime,
    ) -> bool {
        let Ok(d) = PolicyDomain::normalised(domain) else {
            return false;
        };
        if self.config.settings_for_str(&d).usage == StsUsage::Disable {
            return false;
        }
        self.remember_absent(&d, absent, until, now)
    }

    /// Remembers a negative answer unless an unexpired policy is cached; true if remembered.
    fn remember_absent(
        &mut self,
        domain: &str,
        absent: Absent,
        until: UnixTime,
        now: UnixTime,
    ) -> bool {
        let fresh_policy = self
            .find(domain)
            .and_then(|i| self.slot(i))
            .and_then(|s| s.policy.as_ref())
            .is_some_and(|p| p.is_fresh(now));
        let capacity = self.config.negative_capacity;
        if fresh_policy || capacity == 0 || until <= now {
            return false;
        }
        let until = until.min(now.saturating_add(self.config.negative_ttl_max));
        self.absences.insert(domain, absent, until, now, capacity);
        true
    }

    /// The answer for a fresh cached policy (a use), unless MTA-STS is disabled for the domain;
    /// or, with [`Config::recheck_after`], a re-check of its TXT id when that is due.
    fn fresh_hit(&mut self, i: u32, domain: &str, now: UnixTime) -> Option<Begin> {
        let slot = self.slot(i)?;
        let policy = slot.policy.as_ref().filter(|p| p.is_fresh(now))?.clone();
        if self.config.settings_for_str(domain).usage == StsUsage::Disable {
            return None;
        }
        if let Some(after) = self.config.recheck_after {
            let checked = policy
                .fetched_at()
                .saturating_add(Duration::from_secs(u64::from(slot.checked)));
            // Whole seconds: `>=` keeps a zero `recheck_after` meaning "every delivery". While
            // a lookup of the domain is under way, the fresh policy answers at once.
            if now.since(checked) >= after && self.flights.live(domain, now).is_none() {
                let domain = slot.domain.to_domain();
                self.mark_checked(i, now);
                return Some(self.start(domain, LookupKind::Recheck, now));
            }
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
        if let Some((flight, _)) = self.flights.live(domain.as_str(), now) {
            return Begin::InProgress(flight);
        }
        let (max, deadline) = (self.config.max_in_flight, self.config.lookup_deadline);
        let flight = match self.flights.register(&domain, now, deadline, max) {
            Some(flight) => flight,
            None => self.flights.untracked(),
        };
        let (cached, memo) = match self.find(domain.as_str()) {
            Some(i) => (self.slot(i).and_then(|s| s.policy.clone()), self.memo(i)),
            None => (None, None),
        };
        let params = Params::new(&self.config, &domain);
        let lookup = Lookup::with(domain, kind, params, cached, memo, Some(flight), now);
        Begin::Started(Box::new(lookup))
    }

    /// Ends `flight`, the lookup of `domain` that will not be finished (its driver gave up), so
    /// that the callers waiting on it start over; nothing if a newer flight has replaced it.
    pub fn abandon(&mut self, domain: &PolicyDomain, flight: FlightId) {
        self.flights.end(domain.as_str(), flight);
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
            flight,
            io_done,
        } = resolution;
        // Ends this lookup's flight, unless a newer lookup replaced it after its deadline.
        if let Some(flight) = flight {
            self.flights.end(domain.as_str(), flight);
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
            Update::ForgetExpired(absent) => {
                if let Some(i) = existing {
                    self.forget_expired(i, now);
                }
                if let Some((absent, until)) = absent {
                    self.remember_absent(domain.as_str(), absent, until, now);
                }
            }
        }
        // A delivery lookup or a re-check asked DNS: the TXT id was checked now, for
        // `Config::recheck_after`.
        if !refresh
            && io_done > 0
            && let Some(i) = self.find(domain.as_str())
        {
            self.mark_checked(i, now);
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
        // A policy replaces any negative answer remembered for its domain.
        if !self.absences.is_empty() {
            let domain = s.domain.to_domain();
            self.absences.remove(domain.as_str());
        }
        if relist {
            self.unlink(i);
        }
        if let Some(s) = self.slot_mut(i) {
            s.policy = Some(policy);
            // The check time counts from the policy's fetch: a new policy was just fetched.
            s.checked = 0;
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

    /// The settings of `domain` (its overrides, else the defaults; the defaults for a name that
    /// is not a policy domain).
    fn settings_for(&self, domain: &str) -> crate::config::DomainSettings {
        match PolicyDomain::normalised(domain) {
            Ok(d) => self.config.settings_for_str(&d),
            Err(_) => self.config.defaults,
        }
    }

    /// Evaluates an outcome for the MX hosts of `domain` in priority order, with the domain's
    /// settings, and counts the decisions (see [`Evaluation`]).
    pub fn evaluate<I>(&mut self, domain: &str, outcome: &Outcome, mx_hosts: I) -> Evaluation
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let settings = self.settings_for(domain);
        let evaluation = Evaluation::new(outcome, &settings, mx_hosts);
        self.count(domain, &evaluation, outcome);
        evaluation
    }

    /// [`PolicyCache::evaluate`] under the destination's DANE state (see
    /// [`Evaluation::with_dane`]), counting the DANE decisions too. The DANE state changes
    /// nothing in the cache: a cached policy is neither shortened nor dropped by it (D6).
    pub fn evaluate_with_dane<I>(
        &mut self,
        domain: &str,
        outcome: &Outcome,
        dane: &DaneState,
        mx_hosts: I,
    ) -> Evaluation
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let settings = self.settings_for(domain);
        let evaluation = Evaluation::with_dane(outcome, dane, &settings, mx_hosts);
        let d = &mut self.stats.decisions;
        match evaluation.precedence() {
            Precedence::DaneOnly => d.dane_only += 1,
            Precedence::Dane => d.dane += 1,
            Precedence::Defer => d.dane_deferred += 1,
            Precedence::TlsRequired => d.dane_tls_required += 1,
            Precedence::Sts => {}
        }
        if evaluation.precedence() == Precedence::Defer {
            tracing::warn!(
                policy_domain = domain, dane = %dane.reason(),
                "DANE state indeterminate: delivery deferred, MTA-STS not applied (RFC 8461 §2)"
            );
            return evaluation;
        }
        if evaluation.precedence() != Precedence::DaneOnly {
            self.count(domain, &evaluation, outcome);
        }
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
                // Hosts DANE decides for are not MTA-STS decisions.
                let by_sts = e
                    .candidates()
                    .iter()
                    .filter(|c| matches!(c.dane(), CandidateDane::Sts | CandidateDane::None));
                for c in by_sts {
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

    /// Does the work due at `now`: drops expired entries and returns the next refresh lookup due,
    /// if any (marked as under way; finish it with [`PolicyCache::apply`]). Call it until it
    /// returns `None`, then wait until [`PolicyCache::poll_timeout`].
    pub fn poll_refresh(&mut self, now: UnixTime) -> Option<Lookup> {
        self.absences.purge(now);
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
            if let Some((_, until)) = self.flights.live(s.domain.as_str(), now) {
                self.set_timer(i, Some(until.max(later)));
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
            let (max, deadline) = (self.config.max_in_flight, self.config.lookup_deadline);
            let Some(flight) = self.flights.register(&domain, now, deadline, max) else {
                self.set_timer(i, Some(now.saturating_add(BUSY_RETRY)));
                continue;
            };
            // Should the refresh be abandoned, it is tried again later.
            self.set_timer(
                i,
                Some(now.saturating_add(self.config.refresh_retry).max(later)),
            );
            let params = Params::new(&self.config, &domain);
            let kind = LookupKind::Refresh;
            return Some(Lookup::with(
                domain,
                kind,
                params,
                cached,
                memo,
                Some(flight),
                now,
            ));
        }
        None
    }

    /// The policy cached for `domain` (fresh or not) as an entry to write to a shared policy
    /// store: domain, TXT id, fetch time, canonical text (and its last use). The client writes
    /// it after every fetch and refresh; another host [`adopt`](Self::adopt)s it.
    pub fn store_entry(&self, domain: &str) -> Option<crate::SnapshotEntry> {
        let d = PolicyDomain::normalised(domain).ok()?;
        let i = self.find(&d)?;
        let s = self.slot(i)?;
        let p = s.policy.as_ref()?;
        Some(crate::SnapshotEntry::new(
            s.domain.as_str(),
            p.id(),
            p.fetched_at(),
            s.last_used,
            p.policy().to_string(),
        ))
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

    /// Checks the internal structure (index, recency lists, timers, capacity); for the fuzz
    /// target and tests only.
    #[cfg(any(test, fuzzing))]
    pub fn check_invariants(&self) {
        let live = self.slots.iter().filter(|s| s.is_some()).count();
        assert_eq!(live, self.index.len(), "index and slots disagree");
        assert_eq!(live, self.index.slots().count(), "index and slots disagree");
        assert!(self.index.len() <= self.config.capacity, "over capacity");
        assert!(
            self.flights.len() <= self.config.max_in_flight,
            "flights unbounded"
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
        self.absences.check(self.config.negative_capacity);
        let timed = self.links.iter().filter(|l| l.timer.is_some()).count();
        assert_eq!(timed, self.timers.len(), "a slot's timer is not queued");
    }
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
    fn an_overdue_lookup_finishing_leaves_the_newer_lookups_flight() {
        // Concurrent lookups of one domain coalesce behind its flight; a lookup that outlives
        // the deadline is replaced, and its late result must not end the newer flight.
        let mut config = Config::default();
        config.capacity = 0; // nothing cached: every begin looks at the flights only
        let mut cache = PolicyCache::new(config);
        let t0 = UnixTime::from_secs(1_000_000);
        let Begin::Started(first) = cache.begin("example.com", t0) else {
            panic!("the first lookup starts")
        };
        let late = t0.saturating_add(cache.config().lookup_deadline + SECOND);
        let Begin::Started(second) = cache.begin("example.com", late) else {
            panic!("a lookup after the first one's deadline starts")
        };
        let (f1, f2) = (first.flight().unwrap(), second.flight().unwrap());
        assert_ne!(f1, f2, "each lookup is its own flight");
        let stale = resolve(first, late);
        assert_eq!(stale.flight(), Some(f1));
        let _ = cache.apply(stale, late);
        assert!(
            matches!(cache.begin("example.com", late), Begin::InProgress(f) if f == f2),
            "the second lookup is still under way"
        );
        let _ = cache.apply(resolve(second, late), late);
        assert!(matches!(
            cache.begin("example.com", late),
            Begin::Started(_)
        ));
    }

    #[test]
    fn lookups_over_the_flight_bound_run_alone_and_end_no_other_flight() {
        let mut config = Config::default();
        config.max_in_flight = 1;
        let mut cache = PolicyCache::new(config);
        let t = UnixTime::from_secs(1_000_000);
        let Begin::Started(a) = cache.begin("a.example", t) else {
            panic!("starts")
        };
        let Begin::Started(b) = cache.begin("b.example", t) else {
            panic!("over the bound, a lookup still starts")
        };
        assert_eq!(cache.flight("a.example", t), a.flight());
        assert_eq!(
            cache.flight("b.example", t),
            None,
            "not registered: not coalesced"
        );
        assert!(matches!(cache.begin("b.example", t), Begin::Started(_)));
        let _ = cache.apply(resolve(b, t), t);
        assert_eq!(cache.flight("a.example", t), a.flight(), "a's flight stays");
        cache.abandon(a.domain(), a.flight().unwrap());
        assert_eq!(cache.stats().in_flight, 0);
        cache.check_invariants();
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
            cache.abandon(l.domain(), l.flight().expect("a cache lookup has a flight"));
        }
        refreshed.sort();
        assert_eq!(refreshed, [long, "short.example".to_owned()]);
        cache.check_invariants();
    }

    #[test]
    fn s9_absences_stay_consistent_through_inserts_evictions_and_purges() {
        let mut config = Config::default();
        config.negative_capacity = 4;
        let mut cache = PolicyCache::new(config);
        let t = UnixTime::from_secs(1_700_000_000);
        for i in 0..40u32 {
            let now = t.saturating_add(SECOND * i);
            let d = format!("d{}.example", i % 9);
            let until = now.saturating_add(SECOND * (1 + (i * 7) % 13));
            let absent = if i % 2 == 0 {
                Absent::NxDomain
            } else {
                Absent::NoData
            };
            let _ = cache.adopt_absent(&d, absent, until, now);
            if i % 5 == 0 {
                // A re-check asks even while a negative answer is remembered.
                let Begin::Started(l) = cache.begin_recheck(&d, now) else {
                    panic!("a re-check starts")
                };
                let _ = cache.apply(resolve(l, now), now);
                assert_eq!(cache.peek_absent(&d, now), None, "a policy replaces it");
            }
            if let Begin::Started(l) = cache.begin(&format!("d{}.example", (i + 3) % 9), now) {
                cache.abandon(l.domain(), l.flight().expect("a cache lookup has a flight"));
            }
            if i % 3 == 0 {
                let _ = cache.poll_refresh(now);
            }
            cache.check_invariants();
            assert!(cache.stats().negative_entries <= 4);
        }
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
            cache.abandon(l.domain(), l.flight().expect("a cache lookup has a flight"));
            cache.check_invariants();
        }
        let _ = cache.poll_refresh(t.saturating_add(Duration::from_secs(10 * 86_400)));
        cache.check_invariants();
        assert!(cache.is_empty(), "expired entries dropped");
    }
}
