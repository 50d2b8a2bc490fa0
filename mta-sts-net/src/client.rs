//! The client, written once over a [`Runtime`]: its builder, the callers coalesced per flight,
//! the bound on lookups doing I/O, the refresher, persistence, re-checks and metrics.
//! `mta-sts-tokio` and `mta-sts-smol` name it for their runtime; `mta-sts-blocking` wraps it in
//! blocking calls.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use event_listener::Event;
use mta_sts_core::io::{DnsFailure, DnssecResult, DnssecType, Io, TxtQuery, TxtResult};
use mta_sts_core::tlsrpt::PolicyType;
use mta_sts_core::tlsrpt::aggregate::{Session, SessionPolicy};
use mta_sts_core::{
    Begin, Config, DaneBegin, DaneCache, DaneConfig, DaneIndeterminate, DaneLookup, DaneQueryId,
    DaneState, DaneStep, Evaluation, FlightId, IoResult, Lookup, LookupKind, Outcome, PolicyCache,
    PolicyDomain, SnapshotEntry, Stats, Step, UnixTime,
};

use crate::dns::{Resolver, StubResolver};
use crate::report::{DeliveryIoContext, Reporting, TlsResult, TlsRptSettings, TlsRptStats};
use crate::runtime::{BoxFuture, Runtime, until};
use crate::store::PolicyStore;
use crate::store_client::{
    DEFAULT_STORE_TIMEOUT, MAX_PENDING_STORE_WRITES, OnStoreError, StoreRead, StoreSettings,
};
use crate::{
    PersistError, ResolverConfError, TlsSetupError, TrustAnchors, export_cached_metric,
    export_metrics, fetch, load_cache_file, policy_fetch_config, system_resolvers,
};

// The operator's tools (S10), in a file of their own: a child module, for the client's insides.
#[path = "admin.rs"]
pub(crate) mod admin;
mod fleet;

// Negative answers shared through the store (its own file; a child module, so that it sees the
// client's internals).
#[path = "absence.rs"]
mod absence;

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
    /// The persistence file could not be used (no longer returned by `build`, which starts with
    /// what it can load: see [`load_cache_file`]).
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

/// The longest the refresher sleeps without reading the wall clock again: the refresh schedule
/// is in wall-clock time, a sleep in monotonic time, so a clock that jumps (a suspended machine,
/// a stepped clock) delays a refresh by at most this much.
pub const MAX_REFRESHER_SLEEP: Duration = Duration::from_secs(60);

/// The default bound on lookups doing DNS and HTTPS at once
/// ([`ClientBuilder::max_concurrent_lookups`]).
pub const DEFAULT_MAX_CONCURRENT_LOOKUPS: usize = 64;

/// Builds a [`Client`] on a runtime: its DNS, trust anchors, the core's [`Config`] (sender
/// settings, cache capacity, timeouts, per-domain overrides), an optional persistence file, the
/// bound on lookups doing I/O at once and the clock.
///
/// The defaults: the name servers of `/etc/resolv.conf` through the built-in
/// [`StubResolver`], webpki-roots, [`Config::default`] with a random refresh-jitter seed (so that
/// a fleet of MTAs does not refresh in step), no persistence, the system clock, at most
/// [`DEFAULT_MAX_CONCURRENT_LOOKUPS`] lookups doing I/O at once.
///
/// `C` is what [`build`](Self::build) returns: the [`Client`] itself, or an adapter's wrapper of
/// it (`mta-sts-blocking`'s blocking client).
pub struct ClientBuilder<R, C = Client<R>> {
    runtime: R,
    config: Config,
    servers: Option<Vec<SocketAddr>>,
    resolver: Option<Arc<dyn Resolver>>,
    anchors: TrustAnchors,
    extra_pem: Vec<PathBuf>,
    persistence: Option<PathBuf>,
    clock: Option<Clock>,
    max_concurrent_lookups: usize,
    dane: Option<bool>,
    dane_config: DaneConfig,
    tlsrpt: Option<TlsRptSettings>,
    store: Option<Arc<dyn PolicyStore>>,
    on_store_error: OnStoreError,
    store_timeout: Duration,
    _client: PhantomData<fn() -> C>,
}

impl<R: fmt::Debug, C> fmt::Debug for ClientBuilder<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("runtime", &self.runtime)
            .field("config", &self.config)
            .field("servers", &self.servers)
            .field("resolver", &self.resolver)
            .field("anchors", &self.anchors)
            .field("extra_pem", &self.extra_pem)
            .field("persistence", &self.persistence)
            .field("clock", &self.clock.as_ref().map(|_| "custom"))
            .field("max_concurrent_lookups", &self.max_concurrent_lookups)
            .field("dane", &self.dane)
            .field("tlsrpt", &self.tlsrpt)
            .field("store", &self.store)
            .field("on_store_error", &self.on_store_error)
            .field("store_timeout", &self.store_timeout)
            .finish()
    }
}

impl<R: Runtime + Default, C: From<Client<R>>> Default for ClientBuilder<R, C> {
    fn default() -> Self {
        Self::new(R::default())
    }
}

impl<R: Runtime, C: From<Client<R>>> ClientBuilder<R, C> {
    /// A builder with the defaults, on `runtime`.
    pub fn new(runtime: R) -> Self {
        let mut config = Config::default();
        config.seed = random_seed();
        Self {
            runtime,
            config,
            servers: None,
            resolver: None,
            anchors: TrustAnchors::webpki(),
            extra_pem: Vec::new(),
            persistence: None,
            clock: None,
            max_concurrent_lookups: DEFAULT_MAX_CONCURRENT_LOOKUPS,
            dane: None,
            dane_config: DaneConfig::default(),
            tlsrpt: None,
            store: None,
            on_store_error: OnStoreError::Local,
            store_timeout: DEFAULT_STORE_TIMEOUT,
            _client: PhantomData,
        }
    }

    /// The engine's configuration (see [`Config`]): MTA-STS usage (optional / require /
    /// disable), DNS-failure behaviour, per-domain overrides, cache capacity, timeouts, the
    /// unconditional re-check period ([`Config::recheck_after`]). A refresh-jitter `seed` of 0
    /// (the default) keeps the random seed chosen for this client.
    #[must_use]
    pub fn config(mut self, mut config: Config) -> Self {
        if config.seed == 0 {
            config.seed = self.config.seed;
        }
        self.config = config;
        self
    }

    /// The DNS servers the built-in stub resolver asks, in order (default: those of
    /// `/etc/resolv.conf`). Replaces a [`resolver`](Self::resolver) given before.
    #[must_use]
    pub fn resolvers(mut self, servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.servers = Some(servers.into_iter().collect());
        self.resolver = None;
        self
    }

    /// The DNS to use instead of the built-in stub resolver: the MTA's own (see [`Resolver`]),
    /// for the TXT queries and the policy hosts' addresses alike.
    #[must_use]
    pub fn resolver(mut self, resolver: impl Resolver) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// The trust anchors for policy hosts (default: webpki-roots).
    #[must_use]
    pub fn trust_anchors(mut self, anchors: TrustAnchors) -> Self {
        self.anchors = anchors;
        self
    }

    /// Adds the certificates of a PEM file to the trust anchors.
    #[must_use]
    pub fn extra_roots_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.extra_pem.push(path.into());
        self
    }

    /// Keeps the cache in this file across restarts: loaded by `build` (a damaged file never
    /// stops it: see [`load_cache_file`]), written (atomically) by [`Client::save`], after each
    /// refresh round, on [`Client::shutdown`] and when the last handle of the client is dropped.
    #[must_use]
    pub fn persistence(mut self, path: impl Into<PathBuf>) -> Self {
        self.persistence = Some(path.into());
        self
    }

    /// At most this many lookups do DNS and HTTPS at once (default 64, at least 1); others wait
    /// their turn. Callers for a domain already being looked up never count: they share that
    /// lookup.
    #[must_use]
    pub fn max_concurrent_lookups(mut self, n: usize) -> Self {
        self.max_concurrent_lookups = n;
        self
    }

    /// Whether the client decides each destination's DANE state (RFC 7672) so that MTA-STS
    /// never overrides DANE (RFC 8461 §2): [`Client::dane`], and [`Client::evaluate`] with
    /// DANE first. The default: on when the resolver reports DNSSEC validation
    /// ([`Resolver::supports_dnssec`]: the built-in [`StubResolver`] does, trusting the AD bit
    /// of a local validating resolver as Postfix does; hickory's does not). Turning it on with a
    /// resolver that cannot report validation makes every DANE state indeterminate (defer).
    pub fn dane(mut self, enabled: bool) -> Self {
        self.dane = Some(enabled);
        self
    }

    /// The DANE cache's settings (capacity, longest TTL kept, DNS timeout).
    pub fn dane_config(mut self, config: DaneConfig) -> Self {
        self.dane_config = config;
        self
    }

    /// Turns on TLSRPT (RFC 8460): the client counts the sessions it is told of and the policy
    /// fetch failures it meets, and its reporting task ([`Client::spawn_reporter`]) sends each
    /// policy domain a report of each UTC day. See [`Client::record_tls_result`].
    #[must_use]
    pub fn tlsrpt(mut self, settings: TlsRptSettings) -> Self {
        self.tlsrpt = Some(settings);
        self
    }

    /// A policy store shared by a fleet (Redis, SQLite, PostgreSQL: see [`PolicyStore`]), below
    /// the in-memory cache: asked (within [`store_timeout`](Self::store_timeout)) when the cache
    /// has no unexpired policy for a domain, before any DNS or HTTPS lookup, and written after
    /// every fetch and refresh (in the background: a delivery never waits for a write). The core
    /// decides what a stored entry may be used for ([`PolicyCache::adopt`]): an invalid,
    /// expired or future entry is ignored, and one never replaces a newer cached policy. Metrics:
    /// `mta_sts_store_operations_total{store,op,result}` (see [`crate::store_client`]).
    #[must_use]
    pub fn store(mut self, store: Arc<dyn PolicyStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// What to do when the store cannot be read ([`OnStoreError::Local`], the default: go on
    /// with the usual lookup; [`OnStoreError::Defer`]: answer a temporary failure). Either way
    /// the in-memory cache is kept, and the error logged and counted.
    #[must_use]
    pub fn on_store_error(mut self, on_error: OnStoreError) -> Self {
        self.on_store_error = on_error;
        self
    }

    /// The longest one store operation may take (default [`DEFAULT_STORE_TIMEOUT`], 2 s): a
    /// store slower than this counts as unavailable for that operation.
    #[must_use]
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// The wall clock of the MTA-STS decisions (default: the system clock). For tests.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The client. Reads `/etc/resolv.conf` when neither servers nor a resolver were given,
    /// adds the extra PEM files to the anchors, and loads the persistence file when there is one
    /// ([`load_cache_file`]: every valid policy loads, bad entries are skipped, an unusable file
    /// is moved aside, temporary files of interrupted saves are removed, and a file that cannot
    /// be written is reported; all of it logged, none of it an error).
    pub fn build(self) -> Result<C, ClientError> {
        let resolver = match (self.resolver, self.servers) {
            (Some(r), _) => r,
            (None, servers) => {
                let servers = match servers {
                    Some(s) => s,
                    None => system_resolvers().map_err(ClientError::Resolvers)?,
                };
                Arc::new(StubResolver::new(self.runtime.clone(), servers))
            }
        };
        let mut anchors = self.anchors;
        for path in &self.extra_pem {
            anchors.add_pem_file(path).map_err(ClientError::Tls)?;
        }
        let clock = self.clock.unwrap_or_else(system_clock);
        let mut cache = PolicyCache::new(self.config);
        if let Some(path) = &self.persistence {
            // A damaged file never stops the MTA: what is valid loads, the rest is reported.
            let report = load_cache_file(path, &mut cache, clock());
            if report.has_problems() {
                tracing::warn!(path = %path.display(), "MTA-STS cache file: {report}");
            } else {
                tracing::info!(path = %path.display(), "MTA-STS cache file: {report}");
            }
        }
        let tlsrpt = self
            .tlsrpt
            .map(|settings| Reporting::new(settings, clock()));
        let inner = Inner {
            runtime: self.runtime,
            state: Mutex::new(State {
                cache,
                waiters: HashMap::new(),
                refreshes: 0,
            }),
            dane_table: Mutex::new(DaneTable {
                cache: DaneCache::new(self.dane_config.clone()),
                flights: HashMap::new(),
            }),
            dane: self.dane.unwrap_or_else(|| resolver.supports_dnssec()),
            resolver,
            tls: policy_fetch_config(&anchors),
            persistence: self.persistence,
            clock,
            changed: Event::new(),
            permits: async_lock::Semaphore::new(self.max_concurrent_lookups.max(1)),
            saving: async_lock::Mutex::new(()),
            tlsrpt,
            store: self.store.map(|store| StoreSettings {
                store,
                on_error: self.on_store_error,
                timeout: self.store_timeout,
            }),
            store_writes: Arc::new(StoreWrites::default()),
            store_tasks: Mutex::new(Vec::new()),
        };
        Ok(C::from(Client {
            inner: Arc::new(inner),
        }))
    }
}

/// A random refresh-jitter seed, so that a fleet of MTAs does not refresh in step.
fn random_seed() -> u64 {
    (0..4).fold(0, |seed, _| seed << 16 | u64::from(crate::query_id()))
}

/// An MTA-STS client on the runtime `R`: cheap to clone, shared by every delivery task.
///
/// - [`policy`](Self::policy): the policy outcome for a domain (cached, fetched, none,
///   temporary failure); [`evaluate`](Self::evaluate): the decision for each MX host, in
///   priority order, with that outcome ([`Evaluation::outcome`]).
/// - Concurrent calls for one domain share one DNS query and one fetch (one *flight* of the
///   core's cache); at most [`ClientBuilder::max_concurrent_lookups`] lookups do I/O at once.
/// - [`spawn_refresher`](Self::spawn_refresher): refreshes cached policies before they expire
///   (R44).
/// - [`save`](Self::save) / [`shutdown`](Self::shutdown): keep the cache across restarts.
///
/// Every wait is bounded by the core's timeouts: the DNS timeout for the TXT query, the fetch
/// timeout for the policy (the policy host's addresses, connection, TLS and body together).
pub struct Client<R: Runtime> {
    inner: Arc<Inner<R>>,
}

impl<R: Runtime> Clone for Client<R> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<R: Runtime> fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("runtime", &self.inner.runtime)
            .field("resolver", &self.inner.resolver)
            .field("persistence", &self.inner.persistence)
            .finish_non_exhaustive()
    }
}

struct Inner<R> {
    runtime: R,
    state: Mutex<State>,
    resolver: Arc<dyn Resolver>,
    tls: Arc<rustls::ClientConfig>,
    persistence: Option<PathBuf>,
    clock: Clock,
    /// Fires when a lookup ends (the cache's next timer may have moved; a refresh may be done).
    changed: Event,
    /// Bounds the lookups doing I/O at once.
    permits: async_lock::Semaphore,
    /// Serialises snapshot writes, so that an older snapshot never overwrites a newer one.
    saving: async_lock::Mutex<()>,
    /// Whether DANE states are looked up ([`ClientBuilder::dane`]).
    dane: bool,
    /// The DANE states and lookups.
    dane_table: Mutex<DaneTable>,
    /// TLSRPT, when turned on ([`ClientBuilder::tlsrpt`]).
    tlsrpt: Option<Reporting>,
    /// The shared policy store, if any ([`ClientBuilder::store`]).
    store: Option<StoreSettings>,
    /// The store writes under way (shared with their tasks).
    store_writes: Arc<StoreWrites>,
    /// The tasks of the store writes, each with its "finished" flag: kept (not dropped at once)
    /// because dropping a task of the blocking runtime joins it; finished ones are dropped at
    /// the next write, the rest with the client (each bounded by the store timeout).
    store_tasks: Mutex<Vec<StoreTask>>,
}

/// A store write's task (type-erased: only dropped) and its "finished" flag.
type StoreTask = (Arc<AtomicBool>, Box<dyn Send>);

/// The count of store writes under way, and the event fired when one ends.
#[derive(Default)]
struct StoreWrites {
    pending: AtomicUsize,
    ended: Event,
}

/// What the client keeps behind its mutex (never held across I/O).
struct State {
    cache: PolicyCache,
    /// Per flight of the cache under way, what its callers wait on. An entry is added when a
    /// lookup starts and removed, under the same lock, when the cache is told it ended: the
    /// cache decides which flight is under way, this only holds the waiters.
    waiters: HashMap<FlightId, Arc<Waiters>>,
    /// How many refresh lookups have finished, for [`Client::wait_refreshes`].
    refreshes: u64,
}

/// The DANE side, behind a mutex of its own (a delivery takes both; one lock for both made them
/// contend): the DANE states of destinations, apart from the policies (a DANE state never
/// changes a cached policy), and the lookups under way.
struct DaneTable {
    cache: DaneCache,
    /// Per domain whose DANE lookup is under way, what the other callers for it wait on: one
    /// lookup per domain at a time, however many deliveries ask.
    flights: HashMap<String, Arc<Waiters<DaneState>>>,
}

/// The DANE lookup this caller drives; if dropped before it finished, the callers waiting on it
/// start over.
struct DaneDriving<'a, R> {
    inner: &'a Inner<R>,
    domain: String,
    waiters: Arc<Waiters<DaneState>>,
    done: bool,
}

impl<R> Drop for DaneDriving<'_, R> {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.inner.dane_table).flights.remove(&self.domain);
            self.waiters.end(None);
        }
    }
}

/// What a caller of [`Client::dane`] does next.
enum DaneNext {
    Ready(DaneState),
    Drive(DaneLookup, Arc<Waiters<DaneState>>),
    Wait(Arc<Waiters<DaneState>>),
}

/// What the callers waiting on one flight wait on: its outcome (a policy outcome, or a DANE
/// state), or `None` if its driver gave up.
struct Waiters<T = Outcome> {
    outcome: Mutex<Option<Option<T>>>,
    ended: Event,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Self {
            outcome: Mutex::new(None),
            ended: Event::new(),
        }
    }
}

impl<T: Clone> Waiters<T> {
    fn end(&self, outcome: Option<T>) {
        *lock(&self.outcome) = Some(outcome);
        self.ended.notify(usize::MAX);
    }

    /// The driver's outcome, or `None` if it gave up. Its I/O is bounded by the core's
    /// timeouts, and a driver whose future is dropped ends the flight through [`Driving`].
    async fn wait(&self) -> Option<T> {
        wait_until(&self.ended, || lock(&self.outcome).clone()).await
    }
}

/// The lookup this caller drives. If it is dropped before it finished (its caller's future was
/// cancelled, or the I/O panicked), the cache is told and the callers waiting on it start over.
struct Driving<'a, R> {
    inner: &'a Inner<R>,
    domain: PolicyDomain,
    flight: Option<FlightId>,
    waiters: Arc<Waiters>,
    done: bool,
}

impl<'a, R> Driving<'a, R> {
    /// The caller of `inner` drives `lookup`'s flight, which `waiters` wait on.
    fn new(inner: &'a Inner<R>, lookup: &Lookup, waiters: Arc<Waiters>) -> Self {
        Self {
            inner,
            domain: lookup.domain().clone(),
            flight: lookup.flight(),
            waiters,
            done: false,
        }
    }
}

impl<R> Drop for Driving<'_, R> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(flight) = self.flight {
            let mut st = lock(&self.inner.state);
            st.waiters.remove(&flight);
            st.cache.abandon(&self.domain, flight);
        }
        self.waiters.end(None);
        self.inner.changed.notify(usize::MAX);
    }
}

/// What a caller does after asking the store.
enum StoreNext {
    /// The stored entry was adopted: ask the cache again.
    Again,
    /// The store could not be read and the client defers: this outcome.
    Answer(Outcome),
    /// Go on with the lookup.
    Lookup,
}

/// What a caller does next.
enum Next {
    Ready(Outcome),
    Drive(Box<Lookup>, Arc<Waiters>),
    Wait(Arc<Waiters>),
}

impl<R: Runtime + Default> Client<R> {
    /// A builder with the defaults (see [`ClientBuilder`]).
    pub fn builder() -> ClientBuilder<R> {
        ClientBuilder::new(R::default())
    }
}

impl<R: Runtime> Client<R> {
    /// The policy outcome for `domain` (the next-hop domain, or the smart host's domain, R2).
    /// A fresh cached policy answers at once; otherwise the TXT record is queried and the policy
    /// fetched when needed. Concurrent calls for one domain share one query and one fetch.
    pub async fn policy(&self, domain: &str) -> Outcome {
        self.run(domain, false).await
    }

    /// Re-checks the TXT id of `domain` before a message is failed permanently (R39): an
    /// unchanged id keeps the cached policy (keep the message queued); a new id is fetched.
    pub async fn recheck(&self, domain: &str) -> Outcome {
        self.run(domain, true).await
    }

    /// The delivery decision for each MX host of `domain`, in the priority order given (`&str`,
    /// `String`, a `&[String]`…), with the policy outcome it was made from
    /// ([`Evaluation::outcome`]).
    ///
    /// With DANE on ([`ClientBuilder::dane`]) the destination's DANE state is looked up at the
    /// same time as the policy, and decides first ([`Evaluation::dane`],
    /// [`Candidate::dane`](mta_sts_core::Candidate::dane)): MTA-STS never overrides DANE (RFC 8461 §2).
    pub async fn evaluate<I>(&self, domain: &str, mx_hosts: I) -> Evaluation
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let (outcome, dane) = self.policy_and_dane(domain).await;
        self.inner.decide(domain, &outcome, dane.as_ref(), mx_hosts)
    }

    /// [`evaluate`](Self::evaluate) with a DANE state the caller found itself (an MTA that
    /// does its own DNSSEC lookups): the policy is looked up, `dane` decides first.
    pub async fn evaluate_with_dane<I>(
        &self,
        domain: &str,
        dane: &DaneState,
        mx_hosts: I,
    ) -> Evaluation
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let outcome = self.policy(domain).await;
        self.inner.decide(domain, &outcome, Some(dane), mx_hosts)
    }

    /// Whether this client looks up DANE states ([`ClientBuilder::dane`]).
    pub fn dane_enabled(&self) -> bool {
        self.inner.dane
    }

    /// The DANE state of `domain` (RFC 7672 §2.2): mandatory, opportunistic, absent or
    /// indeterminate, from the DNSSEC-validated MX, address and TLSA records; cached for the
    /// smallest TTL of the answers that decided it (an indeterminate state is not cached).
    /// `None` when DANE is off ([`ClientBuilder::dane`]).
    pub async fn dane(&self, domain: &str) -> Option<DaneState> {
        if !self.inner.dane {
            return None;
        }
        let inner = &*self.inner;
        loop {
            let next = {
                let now = inner.now();
                let mut st = lock(&inner.dane_table);
                match st.cache.begin(domain, now) {
                    DaneBegin::Ready(state) => DaneNext::Ready(state),
                    DaneBegin::Started(lookup) => match st.flights.get(lookup.domain()) {
                        Some(waiters) => DaneNext::Wait(Arc::clone(waiters)),
                        None => {
                            let waiters = Arc::new(Waiters::default());
                            st.flights
                                .insert(lookup.domain().to_owned(), Arc::clone(&waiters));
                            DaneNext::Drive(lookup, waiters)
                        }
                    },
                }
            };
            match next {
                DaneNext::Ready(state) => return Some(state),
                DaneNext::Drive(lookup, waiters) => {
                    let mut driving = DaneDriving {
                        inner,
                        domain: lookup.domain().to_owned(),
                        waiters,
                        done: false,
                    };
                    let state = Box::pin(inner.drive_dane(lookup)).await;
                    lock(&inner.dane_table).flights.remove(&driving.domain);
                    driving.done = true;
                    driving.waiters.end(Some(state.clone()));
                    return Some(state);
                }
                DaneNext::Wait(waiters) => {
                    if let Some(state) = waiters.wait().await {
                        return Some(state);
                    }
                    // Its driver gave up: begin again.
                }
            }
        }
    }

    /// The policy outcome and the DANE state of `domain`, looked up at the same time (the DANE
    /// queries never wait for the MTA-STS discovery): what a Postfix policy answer needs.
    pub async fn policy_and_dane(&self, domain: &str) -> (Outcome, Option<DaneState>) {
        if !self.inner.dane {
            return (self.policy(domain).await, None);
        }
        futures_lite::future::zip(self.policy(domain), self.dane(domain)).await
    }

    async fn run(&self, domain: &str, mut recheck: bool) -> Outcome {
        let inner = &*self.inner;
        let mut store_asked = false;
        loop {
            match inner.start(domain, recheck) {
                Next::Ready(outcome) => return outcome,
                // Boxed: only the one caller that drives needs the lookup's state (DNS and TLS,
                // several KiB); the callers waiting on it stay small.
                Next::Drive(lookup, waiters) => {
                    // A delivery lookup: no unexpired policy is cached. Ask the store first
                    // (once per call: an entry adopted answers when the cache is asked again).
                    if !store_asked
                        && lookup.kind() == LookupKind::Delivery
                        && let Some(store) = &inner.store
                    {
                        store_asked = true;
                        // The policy and, at the same time, a peer's negative answer.
                        let read = inner.read_store_or_absence(store, &lookup, &waiters);
                        match Box::pin(read).await {
                            StoreNext::Again => {
                                recheck = false;
                                continue;
                            }
                            StoreNext::Answer(outcome) => return outcome,
                            StoreNext::Lookup => {}
                        }
                    }
                    return Box::pin(inner.drive(*lookup, waiters)).await;
                }
                Next::Wait(waiters) => match waiters.wait().await {
                    Some(outcome) => return outcome,
                    // The caller driving it gave up: start over (a recheck is not repeated).
                    None => recheck = false,
                },
            }
        }
    }

    /// Runs the proactive refreshes due now (R44), then saves the cache if any ran: what the
    /// refresher does when its timer fires. At most one lookup per cache entry, so that the
    /// round ends whatever the clock does. Returns how many lookups ran.
    pub async fn refresh_due(&self) -> usize {
        self.refresh_round(None).await
    }

    /// A refresh round, stopping between two lookups once `stop` is set.
    async fn refresh_round(&self, stop: Option<&AtomicBool>) -> usize {
        let inner = &*self.inner;
        let limit = inner.lock().cache.len();
        let mut ran = 0;
        while ran < limit && !stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            let next = {
                let now = inner.now();
                let mut st = inner.lock();
                st.cache.poll_refresh(now).map(|lookup| {
                    let waiters = Arc::new(Waiters::default());
                    if let Some(flight) = lookup.flight() {
                        st.waiters.insert(flight, Arc::clone(&waiters));
                    }
                    (lookup, waiters)
                })
            };
            let Some((lookup, waiters)) = next else { break };
            // Another host's recent fetch in the store counts as this refresh.
            if !inner
                .refresh_from_store(&lookup, Arc::clone(&waiters))
                .await
            {
                let _outcome = inner.drive(lookup, waiters).await;
            }
            ran += 1;
            inner.lock().refreshes += 1;
            inner.changed.notify(usize::MAX);
        }
        if ran > 0
            && let Err(e) = self.save().await
        {
            tracing::warn!(error = %e, "cannot save the MTA-STS cache");
        }
        ran
    }

    /// Waits until at least `n` proactive refresh lookups have finished since the client was
    /// built (by the refresher or [`Client::refresh_due`]); returns the number finished.
    pub async fn wait_refreshes(&self, n: u64) -> u64 {
        let inner = &*self.inner;
        wait_until(&inner.changed, || {
            Some(inner.lock().refreshes).filter(|done| *done >= n)
        })
        .await
    }

    /// Starts the background refresher (R44) on the runtime: a task that sleeps until the
    /// cache's next refresh is due ([`PolicyCache::poll_timeout`]), runs the refreshes due and
    /// saves the cache after each round. It wakes early when a lookup ends (the next refresh
    /// may have moved) and at least every [`MAX_REFRESHER_SLEEP`] (60 s) to read the wall clock
    /// again; the cache never refreshes a policy less than 300 s after its fetch. It stops when
    /// the returned handle is dropped or [`Refresher::shutdown`] is called.
    ///
    /// # Panics
    /// If the runtime cannot start a task (the blocking runtime out of threads); see
    /// [`try_spawn_refresher`](Self::try_spawn_refresher).
    pub fn spawn_refresher(&self) -> Refresher<R> {
        match self.try_spawn_refresher() {
            Ok(r) => r,
            Err(e) => panic!("cannot start the MTA-STS refresher: {e}"),
        }
    }

    /// [`spawn_refresher`](Self::spawn_refresher), or why the runtime could not start it.
    pub fn try_spawn_refresher(&self) -> io::Result<Refresher<R>> {
        self.spawn_task(|client, control| Box::pin(async move { client.refresher(&control).await }))
            .map(|handle| Refresher { handle })
    }

    /// Starts `run(client, control)` on the runtime: a task that says it is done once `run` has
    /// finished and dropped its client.
    fn spawn_task(
        &self,
        run: impl FnOnce(Self, Arc<TaskControl>) -> BoxFuture<'static, ()>,
    ) -> io::Result<TaskHandle<R>> {
        let control = Arc::new(TaskControl::default());
        // The client goes (with `run`'s future) before the task says it is done: a shutdown
        // that waits for it leaves the client's other handles as the only ones.
        let work = run(self.clone(), Arc::clone(&control));
        let task_control = Arc::clone(&control);
        let task = self.inner.runtime.spawn(Box::pin(async move {
            work.await;
            task_control.done.store(true, Ordering::SeqCst);
            task_control.wake.notify(usize::MAX);
        }))?;
        Ok(TaskHandle {
            control,
            task: Some(task),
        })
    }

    async fn refresher(&self, control: &TaskControl) {
        let inner = &*self.inner;
        let due = || inner.lock().cache.poll_timeout();
        let round = || self.refresh_round(Some(&control.stop));
        self.background(control, &inner.changed, due, round).await;
    }

    /// A background task's loop until it is told to stop: it sleeps until `due()` (at most
    /// [`MAX_REFRESHER_SLEEP`], so that the wall clock is read again), woken early by `changed`
    /// or the stop, and runs `round()` once something is due.
    async fn background<F: Future<Output = usize>>(
        &self,
        control: &TaskControl,
        changed: &Event,
        due: impl Fn() -> Option<UnixTime>,
        round: impl Fn() -> F,
    ) {
        let inner = &*self.inner;
        while !control.stop.load(Ordering::SeqCst) {
            // Listen before reading the schedule and the flag, so that a change in between is
            // not missed.
            let changed = changed.listen();
            let stopping = control.wake.listen();
            if control.stop.load(Ordering::SeqCst) {
                break;
            }
            let now = inner.now();
            let wait = due().map(|due| due.since(now));
            let wait = wait.map_or(MAX_REFRESHER_SLEEP, |w| w.min(MAX_REFRESHER_SLEEP));
            if wait.is_zero() {
                round().await;
                continue;
            }
            let deadline = inner.runtime.now().checked_add(wait);
            let deadline = deadline.unwrap_or_else(|| crate::dns::far(inner.runtime.now()));
            let woken = futures_lite::future::or(changed, stopping);
            let _ = until(&inner.runtime, deadline, woken).await;
        }
    }

    /// Writes the cache to the persistence file, if one was configured (atomically, where the
    /// runtime allows blocking; one save at a time, each with the cache as it is then).
    pub async fn save(&self) -> Result<(), PersistError> {
        if let Some(tlsrpt) = &self.inner.tlsrpt {
            let now = self.inner.now();
            tlsrpt
                .save(&self.inner.runtime, now)
                .await
                .map_err(PersistError::Io)?;
        }
        let Some(path) = self.inner.persistence.clone() else {
            return Ok(());
        };
        let _one_at_a_time = self.inner.saving.lock().await;
        let snapshot = self.inner.lock().cache.export(self.inner.now());
        let result = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&result);
        let work = move || *lock(&slot) = Some(crate::save_snapshot(&path, &snapshot));
        self.inner.runtime.unblock(Box::new(work)).await;
        let saved = lock(&result).take();
        saved.unwrap_or_else(|| Err(PersistError::Io(io::Error::other("the save did not run"))))
    }

    /// Saves the cache (if persistent); call it on shutdown, after stopping the refresher.
    /// (Dropping the last handle of the client saves too, but cannot report a failure.)
    pub async fn shutdown(&self) -> Result<(), PersistError> {
        self.save().await
    }

    /// Waits until no store write is under way (each is bounded by the store timeout): after a
    /// fetch, the policy is in the store once this returns (unless the write failed: see the
    /// metrics). Returns at once without a store.
    pub async fn wait_store_writes(&self) {
        let writes = &self.inner.store_writes;
        wait_until(&writes.ended, || {
            (writes.pending.load(Ordering::SeqCst) == 0).then_some(())
        })
        .await;
    }

    /// How many proactive refresh lookups have finished since the client was built.
    pub fn refreshes(&self) -> u64 {
        self.inner.lock().refreshes
    }

    /// The cache's counters (also exported through the `metrics` facade).
    pub fn stats(&self) -> Stats {
        self.inner.lock().cache.stats()
    }

    /// The runtime the client runs on.
    pub fn runtime(&self) -> &R {
        &self.inner.runtime
    }

    /// Records the MTA's TLS session to an MX host for TLSRPT (RFC 8460 §4): call it once per
    /// session (connection attempt) with STARTTLS, successful or not, to a host of a domain
    /// this client evaluated. The client knows the policy that applied and counts the session
    /// under it: DANE when the domain's DANE state (cached by [`dane`](Self::dane) or
    /// [`evaluate`](Self::evaluate) for the TTL of its answers) has usable TLSA records for the
    /// host (`tlsa`), else the unexpired cached MTA-STS policy (`sts`), else `no-policy-found`.
    /// Call it soon after the evaluation the delivery followed, while both are cached. Nothing is recorded under a policy
    /// in mode `none` (RFC 8461 §5), nor without [`ClientBuilder::tlsrpt`].
    ///
    /// The client records the policy fetch failures it meets by itself (`sts-policy-fetch-error`,
    /// `sts-webpki-invalid`, `sts-policy-invalid`), once per failed fetch; the MTA records only
    /// its sessions to MX hosts. Never record the delivery of a report: a message that
    /// [`is_report_mail`](mta_sts_core::tlsrpt::deliver::is_report_mail) recognises (the
    /// reports this client POSTs are not sessions at all).
    ///
    /// Returns the policy type the session was counted under; `None` when it was not counted
    /// (TLSRPT off, mode `none`, the aggregator's caps, an invalid domain).
    pub fn record_tls_result(&self, result: &TlsResult) -> Option<PolicyType> {
        let tlsrpt = self.inner.tlsrpt.as_ref()?;
        let now = self.inner.now();
        let policy = self
            .inner
            .applied_policy(&result.policy_domain, &result.mx_host, now)?;
        let policy_type = policy.policy_type;
        tlsrpt
            .record(&result.session(policy, now), now)
            .then_some(policy_type)
    }

    /// The TLSRPT counters (also exported through the `metrics` facade: see [`TlsRptStats`]);
    /// all zero without [`ClientBuilder::tlsrpt`].
    pub fn tlsrpt_stats(&self) -> TlsRptStats {
        self.inner
            .tlsrpt
            .as_ref()
            .map(Reporting::stats)
            .unwrap_or_default()
    }

    /// Runs one reporting round now: what the reporting task does when something is due. The
    /// UTC days that ended by now are closed into reports (one per policy domain and day) and
    /// put into the outbox; every delivery due is carried out (the `_smtp._tls` TXT lookup
    /// through the client's resolver, a POST per `https:` URI like a policy fetch, the
    /// [`mailto`](TlsRptSettings::mailto) callback per `mailto:` URI) and its result handed to
    /// the outbox, which schedules retries; the state is saved if anything changed. Returns
    /// how many deliveries ran (0 without [`ClientBuilder::tlsrpt`]).
    pub async fn report_due(&self) -> usize {
        self.report_round(None).await
    }

    async fn report_round(&self, stop: Option<&AtomicBool>) -> usize {
        let inner = &*self.inner;
        let Some(tlsrpt) = &inner.tlsrpt else {
            return 0;
        };
        let clock = &inner.clock;
        let now = move || clock();
        let io = DeliveryIoContext {
            runtime: &inner.runtime,
            resolver: &*inner.resolver,
            tls: &inner.tls,
            now: &now,
        };
        tlsrpt.round(&io, stop).await
    }

    /// When the reporting task has something to do next (a day to close, a delivery, a save),
    /// if anything.
    pub fn next_report_due(&self) -> Option<UnixTime> {
        self.inner.tlsrpt.as_ref().and_then(Reporting::next_due)
    }

    /// Waits until at least `n` report deliveries (discoveries, POSTs, mails) have finished
    /// since the client was built, by the reporting task or [`report_due`](Self::report_due);
    /// returns the number finished. Never finishes without [`ClientBuilder::tlsrpt`] (unless
    /// `n` is 0).
    pub async fn wait_reports(&self, n: u64) -> u64 {
        let Some(tlsrpt) = &self.inner.tlsrpt else {
            if n == 0 {
                return 0;
            }
            return std::future::pending().await;
        };
        wait_until(&tlsrpt.changed, || {
            Some(tlsrpt.handled()).filter(|done| *done >= n)
        })
        .await
    }

    /// Starts the TLSRPT reporting task on the runtime: it sleeps until something is due
    /// ([`next_report_due`](Self::next_report_due)), then runs a round
    /// ([`report_due`](Self::report_due)). It wakes early when a session of a later day is
    /// recorded (the day before can be closed) and at least every [`MAX_REFRESHER_SLEEP`] (60
    /// s) to read the wall clock again. It stops when the returned handle is dropped or
    /// [`ReporterTask::shutdown`] is called. Without [`ClientBuilder::tlsrpt`] it has nothing to
    /// do and ends at once.
    ///
    /// # Panics
    /// If the runtime cannot start a task; see [`try_spawn_reporter`](Self::try_spawn_reporter).
    pub fn spawn_reporter(&self) -> ReporterTask<R> {
        match self.try_spawn_reporter() {
            Ok(r) => r,
            Err(e) => panic!("cannot start the TLSRPT reporting task: {e}"),
        }
    }

    /// [`spawn_reporter`](Self::spawn_reporter), or why the runtime could not start it.
    pub fn try_spawn_reporter(&self) -> io::Result<ReporterTask<R>> {
        self.spawn_task(|client, control| Box::pin(async move { client.reporter(&control).await }))
            .map(|handle| ReporterTask { handle })
    }

    async fn reporter(&self, control: &TaskControl) {
        let inner = &*self.inner;
        let Some(tlsrpt) = &inner.tlsrpt else {
            return;
        };
        let round = || self.report_round(Some(&control.stop));
        self.background(control, &tlsrpt.changed, || tlsrpt.next_due(), round)
            .await;
        if let Err(e) = tlsrpt.save(&inner.runtime, inner.now()).await {
            tracing::warn!(error = %e, "cannot save the TLSRPT state");
        }
    }
}

/// The background refresher started by [`Client::spawn_refresher`]. Dropping it stops the
/// refresher like [`shutdown`](Self::shutdown) without waiting for it, except on a runtime whose
/// task is a thread (the blocking adapter), which joins it.
pub struct Refresher<R: Runtime> {
    handle: TaskHandle<R>,
}

impl<R: Runtime> fmt::Debug for Refresher<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refresher")
            .field("control", &self.handle.control)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Refresher<R> {
    /// Stops the refresher and waits until it has stopped: a refresh lookup under way is
    /// finished (it is bounded by the DNS and fetch timeouts) and the cache saved if it ran;
    /// no new one starts. The same in every adapter.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }

    /// Whether the refresher has stopped.
    pub fn is_stopped(&self) -> bool {
        self.handle.is_stopped()
    }
}

/// The TLSRPT reporting task started by [`Client::spawn_reporter`]. Dropping it stops the task
/// like [`shutdown`](Self::shutdown) without waiting for it, except on a runtime whose task is
/// a thread (the blocking adapter), which joins it.
pub struct ReporterTask<R: Runtime> {
    handle: TaskHandle<R>,
}

impl<R: Runtime> fmt::Debug for ReporterTask<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReporterTask")
            .field("control", &self.handle.control)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> ReporterTask<R> {
    /// Stops the reporting task and waits until it has stopped: the deliveries under way are
    /// finished (each bounded by its timeout) and the state saved; no new one starts.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }

    /// Whether the task has stopped.
    pub fn is_stopped(&self) -> bool {
        self.handle.is_stopped()
    }
}

/// What a background task and its handle share.
#[derive(Debug, Default)]
struct TaskControl {
    stop: AtomicBool,
    done: AtomicBool,
    /// Fires when `stop` or `done` is set.
    wake: Event,
}

/// A background task: told to stop on [`shutdown`](Self::shutdown) or drop.
struct TaskHandle<R: Runtime> {
    control: Arc<TaskControl>,
    task: Option<R::Task>,
}

impl<R: Runtime> TaskHandle<R> {
    async fn shutdown(mut self) {
        self.stop();
        let control = &self.control;
        wait_until(&control.wake, || {
            control.done.load(Ordering::SeqCst).then_some(())
        })
        .await;
        drop(self.task.take());
    }

    fn is_stopped(&self) -> bool {
        self.control.done.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        self.control.stop.store(true, Ordering::SeqCst);
        self.control.wake.notify(usize::MAX);
    }
}

impl<R: Runtime> Drop for TaskHandle<R> {
    fn drop(&mut self) {
        self.stop();
        drop(self.task.take());
    }
}

impl<R> Drop for Inner<R> {
    /// The last handle is gone: keep the cache for the next start (best effort; a failure is
    /// logged, as there is no caller to tell).
    fn drop(&mut self) {
        if let Some(tlsrpt) = &self.tlsrpt {
            tlsrpt.save_now((self.clock)());
        }
        let Some(path) = &self.persistence else {
            return;
        };
        let snapshot = lock(&self.state).cache.export((self.clock)());
        if let Err(e) = crate::save_snapshot(path, &snapshot) {
            tracing::warn!(error = %e, "cannot save the MTA-STS cache");
        }
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked: each critical section
/// is one synchronous call into the cache, or a plain store.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `event` until `ready()` gives a value. The listener is taken before each look, so
/// that a notification in between is not missed.
async fn wait_until<T>(event: &Event, mut ready: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(value) = ready() {
            return value;
        }
        let listener = event.listen();
        if let Some(value) = ready() {
            return value;
        }
        listener.await;
    }
}

impl<R: Runtime> Inner<R> {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn now(&self) -> UnixTime {
        (self.clock)()
    }

    /// Records the policy fetch failure a lookup's outcome implies, if any (TLSRPT on).
    fn report_outcome(&self, domain: &str, outcome: &Outcome) {
        let Some(tlsrpt) = &self.tlsrpt else { return };
        let now = self.now();
        if let Some(session) = Session::from_outcome(domain, outcome, now) {
            let _ = tlsrpt.record(&session, now);
        }
    }

    /// The policy a session to `mx_host` of `domain` was under at `now`: DANE when the cached
    /// DANE state has usable TLSA records for the host, else the cached MTA-STS policy (`None`
    /// in mode `none`: not reported), else no policy.
    fn applied_policy(&self, domain: &str, mx_host: &str, now: UnixTime) -> Option<SessionPolicy> {
        let domain = match PolicyDomain::parse(domain) {
            Ok(d) => d.as_str().to_owned(),
            Err(_) => domain.to_ascii_lowercase(),
        };
        let domain = domain.as_str();
        if self.dane {
            // A cached state only: a miss starts no lookup (the lookup handed back is dropped).
            let cached = match lock(&self.dane_table).cache.begin(domain, now) {
                DaneBegin::Ready(state) => Some(state),
                DaneBegin::Started(_) => None,
            };
            let host = mx_host.trim_end_matches('.').to_ascii_lowercase();
            if let Some(tlsa) = cached
                .as_ref()
                .and_then(|s| s.host(&host))
                .and_then(|h| h.usable_tlsa())
            {
                let mut policy = SessionPolicy::tlsa(domain, tlsa);
                policy.mx_host = vec![host];
                return Some(policy);
            }
        }
        let st = self.lock();
        match st.cache.peek(domain) {
            Some(cached) if now <= cached.expires_at() => (cached.mode()
                != mta_sts_core::Mode::None)
                .then(|| SessionPolicy::sts(domain, cached.policy())),
            _ => Some(SessionPolicy::no_policy_found(domain)),
        }
    }

    /// What a caller for `domain` does next: take the answer, drive a new flight, or wait on
    /// the flight under way.
    fn start(&self, domain: &str, recheck: bool) -> Next {
        let now = self.now();
        let mut st = self.lock();
        loop {
            let begin = if recheck {
                st.cache.begin_recheck(domain, now)
            } else {
                st.cache.begin(domain, now)
            };
            match begin {
                Begin::Ready(outcome) => {
                    // An answer without a lookup changes no counter but `cached`.
                    export_cached_metric(&st.cache.stats());
                    return Next::Ready(outcome);
                }
                Begin::Started(lookup) => {
                    let waiters = Arc::new(Waiters::default());
                    if let Some(flight) = lookup.flight() {
                        st.waiters.insert(flight, Arc::clone(&waiters));
                    }
                    return Next::Drive(lookup, waiters);
                }
                Begin::InProgress(flight) => {
                    if let Some(waiters) = st.waiters.get(&flight) {
                        return Next::Wait(Arc::clone(waiters));
                    }
                    // Every flight this client starts has its waiters until the cache is told
                    // it ended, under this lock, so this cannot happen; should it, end that
                    // flight and begin again (the cache cannot name it twice).
                    tracing::error!(%flight, domain, "MTA-STS flight without waiters ended");
                    match PolicyDomain::parse(domain) {
                        Ok(d) => st.cache.abandon(&d, flight),
                        Err(_) => {
                            return Next::Ready(Outcome::Internal(
                                mta_sts_core::LookupError::UnexpectedResult,
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Asks the store for the entry of `lookup`'s domain, whose flight this caller drives, and
    /// has the core adopt it. An entry adopted ends the flight (its waiters start over and find
    /// the policy cached); a store error with [`OnStoreError::Defer`] ends it with a temporary
    /// failure for every caller.
    async fn read_store(
        &self,
        store: &StoreSettings,
        lookup: &Lookup,
        waiters: Arc<Waiters>,
    ) -> StoreNext {
        // Dropped before the end (cancelled, or an entry adopted): the flight is abandoned and
        // its waiters start over.
        let mut driving = Driving::new(self, lookup, waiters);
        let domain = lookup.domain().as_str();
        let adopt = |e: &crate::StoredPolicy| {
            let now = self.now();
            let mut st = self.lock();
            st.cache.adopt(domain, &e.id, e.fetched_at, &e.policy, now)
        };
        match store.read(&self.runtime, domain, adopt).await {
            StoreRead::Adopted(policy) => {
                tracing::debug!(
                    policy_domain = domain,
                    id = policy.id(),
                    store = store.store.name(),
                    "MTA-STS policy adopted from the store"
                );
                StoreNext::Again
            }
            StoreRead::Lookup => {
                driving.done = true;
                StoreNext::Lookup
            }
            StoreRead::Unavailable(detail) => {
                let outcome = Outcome::StoreUnavailable(detail);
                if let Some(flight) = driving.flight {
                    let mut st = self.lock();
                    st.waiters.remove(&flight);
                    st.cache.abandon(&driving.domain, flight);
                }
                driving.done = true;
                driving.waiters.end(Some(outcome.clone()));
                self.changed.notify(usize::MAX);
                StoreNext::Answer(outcome)
            }
        }
    }

    /// Writes `entry` to the store in a task of its own, bounded by the store timeout, then
    /// releases the fleet lock `held`, if any; dropped (and counted) when too many writes are
    /// under way or no task can be started (the lock then expires).
    fn write_store(&self, entry: SnapshotEntry, held: Option<fleet::HeldLock>) {
        let Some(store) = &self.store else { return };
        let work = crate::store_client::write(self.runtime.clone(), store, entry);
        let work = fleet::then_release(self.runtime.clone(), store, work, held);
        self.spawn_store_write(store.store.name(), "put", work);
    }

    /// Runs a store write (`op`, for the metrics) in a task of its own; dropped (and counted)
    /// when too many writes are under way or no task can be started.
    fn spawn_store_write(
        &self,
        name: &'static str,
        op: &'static str,
        work: BoxFuture<'static, ()>,
    ) {
        let writes = &self.store_writes;
        if writes.pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING_STORE_WRITES {
            writes.pending.fetch_sub(1, Ordering::SeqCst);
            crate::store_client::count(name, op, "dropped");
            return;
        }
        let finished = Arc::new(AtomicBool::new(false));
        let (flag, shared) = (Arc::clone(&finished), Arc::clone(writes));
        let task = self.runtime.spawn(Box::pin(async move {
            work.await;
            flag.store(true, Ordering::SeqCst);
            shared.pending.fetch_sub(1, Ordering::SeqCst);
            shared.ended.notify(usize::MAX);
        }));
        match task {
            Ok(task) => {
                // Taken out under the lock, dropped after it (dropping may join a thread).
                let done: Vec<_> = {
                    let mut tasks = lock(&self.store_tasks);
                    let (done, running) = std::mem::take(&mut *tasks)
                        .into_iter()
                        .partition(|(f, _)| f.load(Ordering::SeqCst));
                    *tasks = running;
                    tasks.push((finished, Box::new(task)));
                    done
                };
                drop(done);
            }
            Err(e) => {
                writes.pending.fetch_sub(1, Ordering::SeqCst);
                writes.ended.notify(usize::MAX);
                crate::store_client::count(name, op, "dropped");
                tracing::warn!(error = %e, "cannot start an MTA-STS policy store write");
            }
        }
    }

    /// Drives one lookup to its end, stores what it learned and hands the outcome to every
    /// caller waiting on it.
    async fn drive(&self, mut lookup: Lookup, waiters: Arc<Waiters>) -> Outcome {
        let mut driving = Driving::new(self, &lookup, waiters);
        let _permit = self.permits.acquire().await;
        // The fleet lock (a store with notes), asked once, before the fetch.
        let (mut fleet_asked, mut held) = (false, None);
        loop {
            match lookup.poll() {
                Step::Io(io) => {
                    if !fleet_asked && matches!(io, Io::Fetch(_)) {
                        fleet_asked = true;
                        let kind = lookup.kind();
                        match Box::pin(self.before_fetch(&driving.domain, kind)).await {
                            fleet::FleetGo::Fetch(lock) => held = lock,
                            fleet::FleetGo::Answer(outcome) => {
                                return self.end_flight(&mut driving, outcome);
                            }
                        }
                    }
                    let result = self.perform(&io).await;
                    if let Err(e) = lookup.handle(result, self.now()) {
                        // Cannot happen (each result answers its request): a bug, reported as
                        // one. Dropping `driving` ends the flight; its waiters start over.
                        tracing::error!(error = %e, "MTA-STS lookup refused an I/O result");
                        return Outcome::Internal(e);
                    }
                }
                Step::Done(resolution) => {
                    let (outcome, to_store, absent) = {
                        let mut st = self.lock();
                        if let Some(flight) = driving.flight {
                            st.waiters.remove(&flight);
                        }
                        let domain = driving.domain.as_str();
                        let before = st.cache.peek(domain).map(|p| p.fetched_at());
                        let negative = resolution.absent_until().is_some();
                        let outcome = st.cache.apply(resolution, self.now());
                        export_metrics(&st.cache.stats());
                        // A policy fetched (a delivery's, a re-check's or a refresh's) goes to
                        // the store.
                        let to_store = self.store.as_ref().and_then(|_| {
                            st.cache
                                .store_entry(domain)
                                .filter(|e| Some(e.fetched_at()) != before)
                        });
                        // A negative answer the core remembered goes to the store's notes.
                        let absent = self.share_absence(&st, negative, domain);
                        (outcome, to_store, absent)
                    };
                    driving.done = true;
                    driving.waiters.end(Some(outcome.clone()));
                    self.changed.notify(usize::MAX);
                    match to_store {
                        Some(entry) => self.write_store(entry, held.take()),
                        None => {
                            if let Some(lock) = held.take() {
                                self.release(lock).await;
                            }
                        }
                    }
                    if let Some((absent, until)) = absent {
                        self.write_absence(driving.domain.as_str(), absent, until);
                    }
                    self.report_outcome(driving.domain.as_str(), &outcome);
                    return outcome;
                }
            }
        }
    }

    /// The core's evaluation of `outcome` (under `dane` when there is one), counted and exported.
    fn decide<I>(
        &self,
        domain: &str,
        outcome: &Outcome,
        dane: Option<&DaneState>,
        mx_hosts: I,
    ) -> Evaluation
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut st = self.lock();
        let evaluation = match dane {
            Some(dane) => st.cache.evaluate_with_dane(domain, outcome, dane, mx_hosts),
            None => st.cache.evaluate(domain, outcome, mx_hosts),
        };
        export_metrics(&st.cache.stats());
        evaluation
    }

    /// Drives one DANE lookup: its queries of each round at once, each bounded by its timeout.
    async fn drive_dane(&self, mut lookup: DaneLookup) -> DaneState {
        let _permit = self.permits.acquire().await;
        let mut pending: Vec<BoxFuture<'_, (DaneQueryId, DnssecResult)>> = Vec::new();
        loop {
            match lookup.poll() {
                DaneStep::Query(id, query) => pending.push(Box::pin(async move {
                    let now = self.runtime.now();
                    let deadline = now
                        .checked_add(query.timeout)
                        .unwrap_or_else(|| crate::dns::far(now));
                    let answer = until(&self.runtime, deadline, self.resolver.dnssec(&query)).await;
                    (id, answer.unwrap_or(Err(DnsFailure::Timeout)))
                })),
                DaneStep::Wait if pending.is_empty() => {
                    // Cannot happen (the lookup waits only for queries it asked): rather than
                    // wait forever, the state is indeterminate, so delivery defers.
                    tracing::error!(domain = lookup.domain(), "DANE lookup waits for nothing");
                    return DaneState::Indeterminate(DaneIndeterminate::Failed {
                        name: lookup.domain().to_owned(),
                        rtype: DnssecType::Mx,
                        failure: DnsFailure::Malformed("internal: no DNS query under way".into()),
                    });
                }
                DaneStep::Wait => {
                    let (id, result) = first_of(&mut pending).await;
                    if let Err(e) = lookup.handle(id, result, self.now()) {
                        // Cannot happen (each result answers its query): a bug, reported.
                        tracing::error!(error = %e, "DANE lookup refused a DNS result");
                    }
                }
                DaneStep::Done(resolution) => {
                    let now = self.now();
                    return lock(&self.dane_table).cache.apply(resolution, now);
                }
            }
        }
    }

    /// Carries out one request of the core.
    async fn perform(&self, io: &Io) -> IoResult {
        match io {
            // Bounded here too, whatever resolver answers: the core's DNS timeout.
            Io::Txt(query) => {
                IoResult::Txt(txt_within(&self.runtime, &*self.resolver, query).await)
            }
            // Boxed: the TLS handshake's state is large, and a delivery task's future stays
            // small (and cheap to move) without it.
            Io::Fetch(request) => IoResult::Fetch(
                Box::pin(fetch::fetch_policy(
                    &self.runtime,
                    &*self.resolver,
                    &self.tls,
                    request,
                ))
                .await,
            ),
        }
    }
}

/// The TXT records of `query` from `resolver`, bounded by the query's timeout on `rt`'s clock
/// whatever resolver answers.
pub(crate) async fn txt_within<R: Runtime>(
    rt: &R,
    resolver: &dyn Resolver,
    query: &TxtQuery,
) -> TxtResult {
    let now = rt.now();
    let deadline = now.checked_add(query.timeout);
    let deadline = deadline.unwrap_or_else(|| crate::dns::far(now));
    let answer = until(rt, deadline, resolver.txt(query)).await;
    answer.unwrap_or(Err(DnsFailure::Timeout))
}

/// The output of the first of `futures` to finish, which is removed; the others go on when
/// awaited again. Never finishes while `futures` is empty.
pub(crate) async fn first_of<T>(futures: &mut Vec<BoxFuture<'_, T>>) -> T {
    std::future::poll_fn(|cx| {
        for i in 0..futures.len() {
            if let std::task::Poll::Ready(value) = futures[i].as_mut().poll(cx) {
                drop(futures.swap_remove(i));
                return std::task::Poll::Ready(value);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
