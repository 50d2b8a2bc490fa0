//! The runtime-independent half of an adapter's `Client`: its settings and how they are turned
//! into a cache, resolvers and a TLS configuration ([`ClientSettings`]), and the cache together
//! with the table of lookups under way that coalesces concurrent callers ([`CacheState`]).
//!
//! An adapter keeps a [`CacheState`] behind its mutex and adds only what its runtime does: how a
//! waiter waits for a flight (a watch channel, an event, a `Condvar`), how the I/O is performed,
//! how the refresher sleeps.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mta_sts_core::{
    Begin, Config, Evaluation, Lookup, LookupError, Outcome, PolicyCache, PolicyDomain, Resolution,
    Snapshot, Stats, UnixTime,
};
use rustls::ClientConfig;

use crate::{
    PersistError, ResolverConfError, TlsSetupError, TrustAnchors, export_cached_metric,
    export_metrics, load_snapshot, policy_fetch_config, system_resolvers,
};

/// A source of wall-clock time (for tests: a virtual clock).
pub type Clock = Arc<dyn Fn() -> UnixTime + Send + Sync>;

/// The system clock as a [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(|| UnixTime::from(SystemTime::now()))
}

/// Why a client could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// No resolvers were given and `/etc/resolv.conf` could not be used.
    Resolvers(ResolverConfError),
    /// A trust anchor file or PEM could not be used.
    Tls(TlsSetupError),
    /// The persistence file exists but could not be loaded.
    Persistence(PersistError),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolvers(e) => write!(f, "resolvers: {e}"),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::Persistence(e) => write!(f, "persistence: {e}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Resolvers(e) => Some(e),
            Self::Tls(e) => Some(e),
            Self::Persistence(e) => Some(e),
        }
    }
}

/// The longest a refresher sleeps without reading the wall clock again
/// ([`CacheState::refresher_sleep`]): the refresh schedule is in wall-clock time, a sleep in
/// monotonic time, so a clock that jumps (a suspended machine, a stepped clock) delays a
/// refresh by at most this much.
pub const MAX_REFRESHER_SLEEP: Duration = Duration::from_secs(60);

/// The default bound on lookups doing DNS and HTTPS at once
/// ([`ClientSettings::max_concurrent_lookups`]).
pub const DEFAULT_MAX_CONCURRENT_LOOKUPS: usize = 64;

/// What an adapter's `ClientBuilder` collects. The defaults: the system's resolvers, webpki-roots,
/// [`Config::default`], no persistence, the system clock, at most
/// [`DEFAULT_MAX_CONCURRENT_LOOKUPS`] lookups doing I/O at once.
#[non_exhaustive]
pub struct ClientSettings {
    /// The engine's configuration.
    pub config: Config,
    /// The DNS servers to ask, in order (`None`: those of `/etc/resolv.conf`).
    pub resolvers: Option<Vec<SocketAddr>>,
    /// The trust anchors for policy hosts.
    pub anchors: TrustAnchors,
    /// PEM files whose certificates are added to the anchors.
    pub extra_pem: Vec<PathBuf>,
    /// The cache snapshot file, loaded at build and written by the adapter's `save`.
    pub persistence: Option<PathBuf>,
    /// The wall clock (`None`: the system clock).
    pub clock: Option<Clock>,
    /// At most this many lookups do DNS and HTTPS at once (at least 1); the others wait their
    /// turn. Callers for a domain already being looked up never count: they share that lookup.
    pub max_concurrent_lookups: usize,
}

impl Default for ClientSettings {
    /// As described on the type; the engine's refresh jitter [`Config::seed`] is random, so that
    /// a fleet of MTAs does not refresh in step.
    fn default() -> Self {
        let mut config = Config::default();
        config.seed = u64::from(crate::query_id()) << 48
            | u64::from(crate::query_id()) << 32
            | u64::from(crate::query_id()) << 16
            | u64::from(crate::query_id());
        Self {
            config,
            resolvers: None,
            anchors: TrustAnchors::webpki(),
            extra_pem: Vec::new(),
            persistence: None,
            clock: None,
            max_concurrent_lookups: DEFAULT_MAX_CONCURRENT_LOOKUPS,
        }
    }
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("config", &self.config)
            .field("resolvers", &self.resolvers)
            .field("anchors", &self.anchors)
            .field("extra_pem", &self.extra_pem)
            .field("persistence", &self.persistence)
            .field("clock", &self.clock.as_ref().map(|_| "custom"))
            .field("max_concurrent_lookups", &self.max_concurrent_lookups)
            .finish()
    }
}

/// The runtime-independent parts of a client, made by [`ClientSettings::build`].
#[non_exhaustive]
pub struct ClientParts {
    /// The cache (with the persisted policies, if a snapshot was loaded).
    pub cache: PolicyCache,
    /// The DNS servers, in order.
    pub resolvers: Vec<SocketAddr>,
    /// The rustls configuration for policy fetches ([`policy_fetch_config`]).
    pub tls: Arc<ClientConfig>,
    /// The snapshot file.
    pub persistence: Option<PathBuf>,
    /// The wall clock.
    pub clock: Clock,
    /// The bound on lookups doing I/O at once (at least 1).
    pub max_concurrent_lookups: usize,
}

impl fmt::Debug for ClientParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientParts")
            .field("cache", &self.cache.len())
            .field("resolvers", &self.resolvers)
            .field("persistence", &self.persistence)
            .finish_non_exhaustive()
    }
}

impl ClientSettings {
    /// Reads `/etc/resolv.conf` when no resolvers were given, adds the extra PEM files to the
    /// anchors, and loads the persistence file when there is one (a corrupt or foreign file is an
    /// error, never half-loaded).
    pub fn build(self) -> Result<ClientParts, ClientError> {
        let resolvers = match self.resolvers {
            Some(r) => r,
            None => system_resolvers().map_err(ClientError::Resolvers)?,
        };
        let mut anchors = self.anchors;
        for path in &self.extra_pem {
            anchors.add_pem_file(path).map_err(ClientError::Tls)?;
        }
        let clock = self.clock.unwrap_or_else(system_clock);
        let mut cache = PolicyCache::new(self.config);
        if let Some(path) = &self.persistence
            && let Some(snapshot) = load_snapshot(path).map_err(ClientError::Persistence)?
        {
            let loaded = cache
                .import(snapshot, clock())
                .map_err(|e| ClientError::Persistence(PersistError::Snapshot(e)))?;
            tracing::info!(loaded, path = %path.display(), "loaded cached MTA-STS policies");
        }
        Ok(ClientParts {
            cache,
            resolvers,
            tls: policy_fetch_config(&anchors),
            persistence: self.persistence,
            clock,
            max_concurrent_lookups: self.max_concurrent_lookups.max(1),
        })
    }
}

/// Which flight a driver drives: given with [`Start::Drive`] and
/// [`CacheState::next_refresh`], handed back to [`CacheState::finish`] and
/// [`CacheState::abandon`], so that a lookup that ends after a newer one for the same domain
/// has started (it outlived [`Config::lookup_deadline`], e.g. queued behind
/// `max_concurrent_lookups`) never ends that newer flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlightId(u64);

/// What a caller of [`CacheState::start`] does next.
#[derive(Debug)]
pub enum Start<F, D> {
    /// The outcome, at once (a fresh cached policy, an invalid or disabled domain): no I/O.
    Ready(Outcome),
    /// This caller drives the lookup (perform its I/O, then [`CacheState::finish`] with the
    /// [`FlightId`]) and tells the others through `D`; they were given the matching `F`.
    Drive(Box<Lookup>, D, FlightId),
    /// Another caller drives the lookup for this domain: wait for its outcome on `F`. If it
    /// gives up without one, call [`CacheState::start`] again (not as a recheck).
    Wait(F),
}

/// The cache and, per domain, the flight of the lookup under way: what an adapter keeps behind
/// its mutex (never held across I/O). `F` is what waiters hold (a receiver, a shared cell), `D`
/// what the driving caller holds (a sender, the same cell).
///
/// ```
/// use mta_sts_core::{Config, PolicyCache, UnixTime};
/// use mta_sts_net::{CacheState, Start};
///
/// let mut state: CacheState<u32, u32> = CacheState::new(PolicyCache::new(Config::default()));
/// let now = UnixTime::from_secs(1_700_000_000);
/// assert!(matches!(state.start("example.com", false, now, || (7, 7)), Start::Drive(..)));
/// // A second caller for the same domain waits on the first one's flight:
/// assert!(matches!(state.start("EXAMPLE.com.", false, now, || (8, 8)), Start::Wait(7)));
/// ```
#[derive(Debug)]
pub struct CacheState<F, D = F> {
    cache: PolicyCache,
    flights: HashMap<PolicyDomain, Flight<F>>,
    /// The id of the next flight.
    next_id: u64,
    _driver: std::marker::PhantomData<fn() -> D>,
}

/// A lookup under way: who drives it, since when, and what its waiters hold.
#[derive(Debug)]
struct Flight<F> {
    id: FlightId,
    started: UnixTime,
    waiters: F,
}

impl<F: Clone, D> CacheState<F, D> {
    /// No lookup under way yet.
    pub fn new(cache: PolicyCache) -> Self {
        Self {
            cache,
            flights: HashMap::new(),
            next_id: 0,
            _driver: std::marker::PhantomData,
        }
    }

    /// The flight of `domain` still under way at `now` (begun less than
    /// [`Config::lookup_deadline`] ago), if any.
    fn live_flight(&self, domain: &PolicyDomain, now: UnixTime) -> Option<&Flight<F>> {
        let deadline = self.cache.config().lookup_deadline;
        self.flights
            .get(domain)
            .filter(|f| now < f.started.saturating_add(deadline))
    }

    /// Registers the flight of a lookup this caller drives.
    fn register(&mut self, domain: &PolicyDomain, now: UnixTime, waiters: F) -> FlightId {
        let id = FlightId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        let flight = Flight {
            id,
            started: now,
            waiters,
        };
        self.flights.insert(domain.clone(), flight);
        id
    }

    /// The cache.
    pub fn cache(&self) -> &PolicyCache {
        &self.cache
    }

    /// A delivery needs the policy of `domain` (or, with `recheck`, the TXT id must be checked
    /// again before a message is failed, R39). `flight` makes the waiters' and the driver's
    /// handles when this caller is the one to drive the lookup.
    pub fn start(
        &mut self,
        domain: &str,
        recheck: bool,
        now: UnixTime,
        mut flight: impl FnMut() -> (F, D),
    ) -> Start<F, D> {
        // At most two rounds: after `abandon`, `begin` cannot answer InProgress again.
        loop {
            let begin = if recheck {
                self.cache.begin_recheck(domain, now)
            } else {
                self.cache.begin(domain, now)
            };
            match begin {
                Begin::Ready(outcome) => {
                    // `begin` answering at once changes no counter but `cached`.
                    export_cached_metric(&self.cache.stats());
                    return Start::Ready(outcome);
                }
                Begin::Started(lookup) => {
                    // The cache has no mark for the domain, but a flight of ours is under way:
                    // the cache's table of marks was full when that flight began (the cache
                    // still starts a delivery lookup, unmarked). Share it; `begin` marked the
                    // domain now, for that flight.
                    if let Some(f) = self.live_flight(lookup.domain(), now) {
                        return Start::Wait(f.waiters.clone());
                    }
                    let (waiters, driver) = flight();
                    let id = self.register(lookup.domain(), now, waiters);
                    return Start::Drive(lookup, driver, id);
                }
                Begin::InProgress(d) => match self.flights.get(&d) {
                    Some(f) => return Start::Wait(f.waiters.clone()),
                    // Marked as under way, but by nobody of ours (a lookup dropped without
                    // notice): clear the mark and start again.
                    None => self.cache.abandon(&d),
                },
            }
        }
    }

    /// The refresh due at `now`, if any (R44), with its flight registered like
    /// [`start`](Self::start)'s: drive it, then [`finish`](Self::finish) it.
    pub fn next_refresh(
        &mut self,
        now: UnixTime,
        flight: impl FnOnce() -> (F, D),
    ) -> Option<(Lookup, D, FlightId)> {
        loop {
            let lookup = self.cache.poll_refresh(now)?;
            // A delivery lookup of ours is under way for the domain, unmarked in the cache
            // (its table of marks was full when it began): skip this refresh; the cache tries
            // it again later.
            if self.live_flight(lookup.domain(), now).is_some() {
                continue;
            }
            let (waiters, driver) = flight();
            let id = self.register(lookup.domain(), now, waiters);
            return Some((lookup, driver, id));
        }
    }

    /// Whether `id` is the flight registered for `domain` now.
    fn is_current(&self, domain: &PolicyDomain, id: FlightId) -> bool {
        self.flights.get(domain).is_some_and(|f| f.id == id)
    }

    /// Stores what the lookup of flight `id` learned and ends that flight; returns the outcome
    /// to hand to its waiters. If a newer flight has taken the domain over meanwhile, it stays.
    pub fn finish(&mut self, resolution: Resolution, id: FlightId, now: UnixTime) -> Outcome {
        let domain = resolution.domain().clone();
        let outcome = self.cache.apply(resolution, now);
        if self.is_current(&domain, id) {
            self.flights.remove(&domain);
        }
        export_metrics(&self.cache.stats());
        outcome
    }

    /// The lookup of flight `id` for `domain` will not be finished (its driver gave up): clears
    /// the domain's mark and flight, so that the waiters start over; nothing if a newer flight
    /// has taken the domain over meanwhile.
    pub fn abandon(&mut self, domain: &PolicyDomain, id: FlightId) {
        if self.is_current(domain, id) {
            self.cache.abandon(domain);
            self.flights.remove(domain);
        }
    }

    /// The delivery decision for each MX host of `domain` under `outcome`.
    pub fn evaluate<'h, I>(&mut self, domain: &str, outcome: &Outcome, mx_hosts: I) -> Evaluation
    where
        I: IntoIterator<Item = &'h str>,
    {
        let evaluation = self.cache.evaluate(domain, outcome, mx_hosts);
        export_metrics(&self.cache.stats());
        evaluation
    }

    /// How long the refresher may sleep at `now` before the cache has work
    /// ([`PolicyCache::poll_timeout`]): zero when work is due, `None` when there is none.
    pub fn refresh_wait(&self, now: UnixTime) -> Option<Duration> {
        self.cache.poll_timeout().map(|due| due.since(now))
    }

    /// How long the refresher sleeps at `now` before it looks again: until the cache has work
    /// ([`refresh_wait`](Self::refresh_wait); zero when work is due), and never longer than
    /// [`MAX_REFRESHER_SLEEP`]. Wake it earlier when a lookup ends (the next timer may move).
    pub fn refresher_sleep(&self, now: UnixTime) -> Duration {
        self.refresh_wait(now)
            .map_or(MAX_REFRESHER_SLEEP, |w| w.min(MAX_REFRESHER_SLEEP))
    }

    /// The snapshot to persist.
    pub fn export(&self, now: UnixTime) -> Snapshot {
        self.cache.export(now)
    }

    /// The cache's counters.
    pub fn stats(&self) -> Stats {
        self.cache.stats()
    }
}

/// The outcome of a lookup whose I/O result was refused ([`Lookup::handle`]). It cannot happen
/// (each result answers its request); the driver gives up with a temporary failure and abandons
/// the lookup.
pub fn io_rejected(error: LookupError) -> Outcome {
    tracing::error!(error = %error, "MTA-STS lookup rejected an I/O result");
    Outcome::TemporaryFailure(mta_sts_core::io::DnsFailure::Malformed(format!(
        "internal error: {error}"
    )))
}

/// The setters of an adapter's `ClientBuilder`, which holds a [`ClientSettings`] in a field named
/// `settings`: written once here so that the three adapters offer the same builder.
#[macro_export]
macro_rules! client_builder_setters {
    () => {
        /// The engine's configuration (see [`Config`](mta_sts_core::Config)): MTA-STS usage
        /// (optional / require / disable), DNS-failure behaviour, per-domain overrides, cache
        /// capacity, timeouts. A refresh-jitter `seed` of 0 (the default) keeps the random seed
        /// chosen for this client, so that a fleet of MTAs does not refresh in step.
        #[must_use]
        pub fn config(mut self, mut config: $crate::__private::Config) -> Self {
            if config.seed == 0 {
                config.seed = self.settings.config.seed;
            }
            self.settings.config = config;
            self
        }

        /// The DNS servers to ask, in order (default: those of `/etc/resolv.conf`).
        #[must_use]
        pub fn resolvers(
            mut self,
            servers: impl IntoIterator<Item = ::std::net::SocketAddr>,
        ) -> Self {
            self.settings.resolvers = Some(servers.into_iter().collect());
            self
        }

        /// The trust anchors for policy hosts (default: webpki-roots).
        #[must_use]
        pub fn trust_anchors(mut self, anchors: $crate::TrustAnchors) -> Self {
            self.settings.anchors = anchors;
            self
        }

        /// Adds the certificates of a PEM file to the trust anchors.
        #[must_use]
        pub fn extra_roots_file(mut self, path: impl Into<::std::path::PathBuf>) -> Self {
            self.settings.extra_pem.push(path.into());
            self
        }

        /// Keeps the cache in this file across restarts: loaded by `build`, written
        /// (atomically) by `Client::save`, after each refresh round and on `Client::shutdown`.
        #[must_use]
        pub fn persistence(mut self, path: impl Into<::std::path::PathBuf>) -> Self {
            self.settings.persistence = Some(path.into());
            self
        }

        /// At most this many lookups do DNS and HTTPS at once (default 64); others wait their
        /// turn. Callers for a domain already being looked up never count: they share that
        /// lookup.
        #[must_use]
        pub fn max_concurrent_lookups(mut self, n: usize) -> Self {
            self.settings.max_concurrent_lookups = n;
            self
        }

        /// The wall clock (default: the system clock). For tests.
        #[must_use]
        pub fn clock(mut self, clock: $crate::Clock) -> Self {
            self.settings.clock = Some(clock);
            self
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use mta_sts_core::io::{FetchResponse, Io, TxtAnswer};
    use mta_sts_core::{CacheReason, IoResult, Step};

    fn now() -> UnixTime {
        UnixTime::from_secs(1_700_000_000)
    }

    fn drive(mut lookup: Lookup) -> Resolution {
        loop {
            match lookup.poll() {
                Step::Io(Io::Txt(_)) => lookup
                    .handle(
                        IoResult::Txt(Ok(TxtAnswer::Records(vec![b"v=STSv1; id=1;".to_vec()]))),
                        now(),
                    )
                    .unwrap(),
                Step::Io(_) => {
                    let body =
                        "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n";
                    let ok = FetchResponse::new(200, Some("text/plain"), body);
                    lookup.handle(IoResult::Fetch(Ok(ok)), now()).unwrap();
                }
                Step::Done(r) => return r,
            }
        }
    }

    #[test]
    fn concurrent_callers_wait_on_the_first_ones_flight_until_it_finishes() {
        let mut s: CacheState<u8> = CacheState::new(PolicyCache::new(Config::default()));
        let Start::Drive(lookup, 1, id) = s.start("example.com", false, now(), || (1, 1)) else {
            panic!("the first caller drives")
        };
        assert!(matches!(
            s.start("example.com", false, now(), || (2, 2)),
            Start::Wait(1)
        ));
        assert!(matches!(
            s.start("example.com", true, now(), || (3, 3)),
            Start::Wait(1)
        ));
        let outcome = s.finish(drive(*lookup), id, now());
        assert!(matches!(outcome, Outcome::Fetched(_)));
        assert!(matches!(
            s.start("example.com", false, now(), || (4, 4)),
            Start::Ready(Outcome::Cached {
                reason: CacheReason::Fresh,
                ..
            })
        ));
        assert_eq!(s.stats().in_flight, 0);
    }

    #[test]
    fn an_abandoned_flight_lets_the_next_caller_drive() {
        let mut s: CacheState<u8> = CacheState::new(PolicyCache::new(Config::default()));
        let Start::Drive(lookup, _, id) = s.start("example.com", false, now(), || (1, 1)) else {
            panic!("the first caller drives")
        };
        s.abandon(lookup.domain(), id);
        assert!(matches!(
            s.start("example.com", false, now(), || (2, 2)),
            Start::Drive(_, 2, _)
        ));
    }

    /// A lookup begun at `now()` (flight 1) that is still running a minute and a second
    /// later, when the deadline is a minute: by then a second caller has started flight 2.
    /// Returns the state, the overdue lookup with its id, and that later instant.
    fn overdue_lookup() -> (CacheState<u8>, Box<Lookup>, FlightId, UnixTime) {
        let mut config = Config::default();
        config.lookup_deadline = Duration::from_secs(60);
        let mut s = CacheState::new(PolicyCache::new(config));
        let Start::Drive(old, _, old_id) = s.start("example.com", false, now(), || (1, 1)) else {
            panic!("the first caller drives")
        };
        // Past the deadline the first lookup counts as abandoned: a second one starts.
        let later = now().saturating_add(Duration::from_secs(61));
        let Start::Drive(..) = s.start("example.com", false, later, || (2, 2)) else {
            panic!("an overdue flight is replaced")
        };
        (s, old, old_id, later)
    }

    /// Drives a lookup to a temporary failure (SERVFAIL for the TXT record): nothing stored.
    fn servfail(mut lookup: Lookup, at: UnixTime) -> Resolution {
        loop {
            match lookup.poll() {
                Step::Io(_) => {
                    let failure = mta_sts_core::io::DnsFailure::ServerFailure;
                    lookup.handle(IoResult::Txt(Err(failure)), at).unwrap();
                }
                Step::Done(r) => return r,
            }
        }
    }

    #[test]
    fn an_overdue_lookup_that_finishes_leaves_the_newer_flight_of_its_domain_in_place() {
        let (mut s, old, old_id, later) = overdue_lookup();
        // The overdue lookup ends after all, without storing anything.
        let outcome = s.finish(servfail(*old, later), old_id, later);
        assert!(
            matches!(outcome, Outcome::TemporaryFailure(_)),
            "{outcome:?}"
        );
        // The newer lookup is still under way: later callers share it.
        assert!(matches!(
            s.start("example.com", false, later, || (3, 3)),
            Start::Wait(2)
        ));
    }

    #[test]
    fn an_overdue_lookup_that_is_abandoned_leaves_the_newer_flight_of_its_domain_in_place() {
        let (mut s, old, old_id, later) = overdue_lookup();
        s.abandon(old.domain(), old_id);
        assert!(matches!(
            s.start("example.com", false, later, || (3, 3)),
            Start::Wait(2)
        ));
    }

    #[test]
    fn a_refresh_due_while_a_newer_flight_runs_is_skipped_not_registered_over_it() {
        let mut config = Config::default();
        config.lookup_deadline = Duration::from_secs(60);
        let mut s: CacheState<u8> = CacheState::new(PolicyCache::new(config));
        let Start::Drive(first, _, id) = s.start("example.com", false, now(), || (1, 1)) else {
            panic!("the first caller drives")
        };
        let _ = s.finish(drive(*first), id, now());
        // Rechecks around the refresh time: the first one overdue when the second starts.
        let due = now().saturating_add(s.refresh_wait(now()).expect("a refresh is scheduled"));
        let t0 = UnixTime::from_secs(due.as_secs() - 61);
        let Start::Drive(old, _, old_id) = s.start("example.com", true, t0, || (2, 2)) else {
            panic!("a recheck drives")
        };
        let Start::Drive(..) = s.start("example.com", true, due, || (3, 3)) else {
            panic!("an overdue flight is replaced")
        };
        let _ = s.finish(servfail(*old, due), old_id, due);
        assert!(s.next_refresh(due, || (4, 4)).is_none());
        assert!(matches!(
            s.start("example.com", true, due, || (5, 5)),
            Start::Wait(3)
        ));
    }

    /// A state whose cache marks at most one lookup as under way, with flights that stay live
    /// for two days; `other.example` holds the one mark (flight 1).
    fn full_mark_table() -> CacheState<u8> {
        let mut config = Config::default();
        config.max_in_flight = 1;
        config.lookup_deadline = Duration::from_secs(2 * 86_400);
        let mut s = CacheState::new(PolicyCache::new(config));
        let Start::Drive(..) = s.start("other.example", false, now(), || (1, 1)) else {
            panic!("the first caller drives")
        };
        s
    }

    #[test]
    fn callers_share_a_flight_the_full_cache_could_not_mark() {
        let mut s = full_mark_table();
        // The cache starts the lookup without a mark; our flight table still coalesces.
        let Start::Drive(..) = s.start("example.com", false, now(), || (2, 2)) else {
            panic!("the second domain's first caller drives")
        };
        assert!(matches!(
            s.start("example.com", false, now(), || (3, 3)),
            Start::Wait(2)
        ));
    }

    #[test]
    fn a_refresh_due_while_an_unmarked_flight_runs_is_skipped_not_registered_over_it() {
        let mut s = full_mark_table();
        // example.com gets a policy, then a recheck starts while the table is full (unmarked).
        let Start::Drive(l, _, id) = s.start("example.com", false, now(), || (2, 2)) else {
            panic!("the first caller drives")
        };
        let _ = s.finish(drive(*l), id, now());
        let Start::Drive(_recheck, _, _) = s.start("example.com", true, now(), || (3, 3)) else {
            panic!("a recheck drives")
        };
        // The table has room again; the refresh comes due while the recheck still runs.
        let other = PolicyDomain::parse("other.example").unwrap();
        let other_id = s.flights.get(&other).map(|f| f.id).unwrap();
        s.abandon(&other, other_id);
        let due = now().saturating_add(s.refresh_wait(now()).expect("a refresh is scheduled"));
        assert!(s.next_refresh(due, || (4, 4)).is_none());
        assert!(matches!(
            s.start("example.com", true, due, || (5, 5)),
            Start::Wait(3)
        ));
    }

    #[test]
    fn a_lookup_marked_under_way_by_nobody_is_restarted() {
        let mut cache = PolicyCache::new(Config::default());
        // Begun directly on the cache, outside the table: no flight to wait on.
        let _orphan = cache.begin("example.com", now());
        let mut s: CacheState<u8> = CacheState::new(cache);
        assert!(matches!(
            s.start("example.com", false, now(), || (1, 1)),
            Start::Drive(_, 1, _)
        ));
    }

    #[test]
    fn invalid_domains_are_ready_at_once_and_refreshes_are_registered() {
        let mut s: CacheState<u8> = CacheState::new(PolicyCache::new(Config::default()));
        assert!(matches!(
            s.start("[192.0.2.1]", false, now(), || unreachable!()),
            Start::Ready(Outcome::NoPolicy(_))
        ));
        assert_eq!(s.refresh_wait(now()), None);
        assert_eq!(s.refresher_sleep(now()), MAX_REFRESHER_SLEEP);
        let Start::Drive(lookup, _, id) = s.start("example.com", false, now(), || (1, 1)) else {
            panic!("the first caller drives")
        };
        let _ = s.finish(drive(*lookup), id, now());
        let wait = s.refresh_wait(now()).expect("a refresh is scheduled");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(86_400));
        assert_eq!(s.refresher_sleep(now()), MAX_REFRESHER_SLEEP);
        let later = now().saturating_add(wait);
        assert_eq!(s.refresh_wait(later), Some(Duration::ZERO));
        assert_eq!(s.refresher_sleep(later), Duration::ZERO);
        let (refresh, _, id) = s.next_refresh(later, || (5, 5)).expect("due");
        assert!(matches!(
            s.start("example.com", true, later, || (6, 6)),
            Start::Wait(5)
        ));
        let _ = s.finish(drive(refresh), id, later);
        assert_eq!(s.stats().refresh_success, 1);
    }

    #[test]
    fn settings_build_refuses_a_missing_pem_and_a_corrupt_snapshot() {
        let settings = || ClientSettings {
            resolvers: Some(vec!["127.0.0.1:53".parse().unwrap()]),
            ..ClientSettings::default()
        };
        let mut s = settings();
        s.extra_pem.push("/nonexistent/roots.pem".into());
        assert!(matches!(s.build(), Err(ClientError::Tls(_))));

        let dir = std::env::temp_dir().join(format!("mta-sts-net-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cache.json");
        let mut s = settings();
        s.persistence = Some(path.clone());
        let parts = s
            .build()
            .expect("a missing snapshot file is an empty cache");
        assert!(parts.cache.is_empty());
        std::fs::write(&path, b"[1,2").unwrap();
        let mut s = settings();
        s.persistence = Some(path);
        assert!(matches!(s.build(), Err(ClientError::Persistence(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
