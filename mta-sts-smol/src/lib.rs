//! MTA-STS (RFC 8461) for mail servers on smol or async-std.
//!
//! A [`Client`] carries out the DNS and HTTPS requests that [`mta_sts_core`] decides on, with
//! async-net sockets, async-io timers, futures-rustls and webpki-roots. Every protocol decision
//! (what to query, when to fetch, what to cache, what a response means, what to do with each MX)
//! is the core's; this crate only moves bytes.
//!
//! - [`Client::policy`]: the policy outcome for a domain (cached, fetched, none, temporary
//!   failure); [`Client::evaluate`]: the decision for each MX host, in priority order.
//! - Concurrent calls for one domain share one DNS query and one fetch; at most
//!   [`ClientBuilder::max_concurrent_lookups`] lookups do I/O at once.
//! - [`Client::spawn_refresher`]: refreshes cached policies before they expire (R44).
//! - [`mx_starttls_config`] / [`server_name`]: the rustls configuration for the STARTTLS
//!   connection to an MX under a policy (PKIX against the MX host name, TLS 1.2+).
//!
//! No particular executor is needed: the sockets and timers run on async-io's reactor, which
//! drives itself when nobody else does, so a [`Client`] works under `smol::block_on`, smol's
//! executors, `async_std::task::block_on` and async-std tasks alike. The refresher runs on smol's
//! global executor; snapshot files are written on the `blocking` thread pool.
//!
//! # In an MTA's delivery path
//!
//! ```no_run
//! use mta_sts_smol::{Client, MxDecision, Verdict};
//!
//! # async fn deliver(_host: &str, _require_tls: bool) -> Result<(), ()> { Ok(()) }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> { smol::block_on(async {
//! let client = Client::builder().persistence("/var/lib/mta/mta-sts.json").build()?;
//! let refresher = client.spawn_refresher();
//!
//! // For a message to someone@example.com, with the MX hosts in priority order:
//! let evaluation = client.evaluate("example.com", ["mx1.example.com", "mx2.example.com"]).await;
//! let mut delivered = false;
//! for candidate in evaluation.candidates() {
//!     let require_tls = match candidate.decision() {
//!         MxDecision::Skip => continue, // as though it were unreachable (R36, R40)
//!         MxDecision::Enforce => true,  // STARTTLS + certificate valid for candidate.host()
//!         _ => false,                   // testing / none / no policy: deliver as usual
//!     };
//!     if deliver(candidate.host(), require_tls).await.is_ok() {
//!         delivered = true;
//!         break;
//!     }
//! }
//! if !delivered && evaluation.verdict() == Verdict::DeferRecheckPolicy {
//!     // Every MX failed under `enforce`: keep the message queued, never bounce it before the
//!     // TXT id has been checked again (R39).
//!     let _ = client.recheck("example.com").await;
//! }
//!
//! // On the way out: stop refreshing, keep the policies for the next start.
//! refresher.shutdown().await;
//! client.shutdown().await?;
//! # Ok(()) }) }
//! ```
//!
//! For the STARTTLS connection itself, hand [`mx_starttls_config`] and
//! [`server_name`]`(candidate.host())` to `futures_rustls::TlsConnector` after `220 Ready`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod dns;
mod fetch;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use event_listener::Event;
use mta_sts_core::io::{FetchFailure, Io};
use mta_sts_core::{IoResult, Lookup, PolicyDomain, Step};
use mta_sts_net::{CacheState, ClientSettings, FlightId, Start};
use smol::lock::Semaphore;
use smol::{Task, Timer, future};

pub use mta_sts_core::{
    CacheReason, Candidate, Evaluation, MxDecision, NoPolicyReason, Outcome, Stats, UnixTime,
    Verdict, WhenAllFail,
};
pub use mta_sts_net::{
    ClientError as Error, Clock, DEFAULT_MAX_CONCURRENT_LOOKUPS, PersistError, TrustAnchors,
    mx_starttls_config, server_name,
};

/// Builds a [`Client`]: resolvers, trust anchors, the core's [`Config`] (sender settings, cache
/// capacity, timeouts, per-domain overrides), an optional persistence file, the bound on
/// concurrent lookups and the clock.
///
/// [`Config`]: mta_sts_core::Config
#[derive(Debug, Default)]
pub struct ClientBuilder {
    settings: ClientSettings,
}

impl ClientBuilder {
    mta_sts_net::client_builder_setters!();

    /// The client. Reads `/etc/resolv.conf` when no resolvers were given, and loads the
    /// persistence file when there is one (a corrupt or foreign file is an error, never
    /// half-loaded).
    pub fn build(self) -> Result<Client, Error> {
        let parts = self.settings.build()?;
        Ok(Client {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    cache: CacheState::new(parts.cache),
                    refreshes: 0,
                }),
                resolvers: parts.resolvers,
                tls: futures_rustls::TlsConnector::from(parts.tls),
                persistence: parts.persistence,
                clock: parts.clock,
                changed: Event::new(),
                lookups: Semaphore::new(parts.max_concurrent_lookups),
                saving: smol::lock::Mutex::new(()),
            }),
        })
    }
}

/// An MTA-STS client for smol and async-std: cheap to clone, shared by every delivery task.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("resolvers", &self.inner.resolvers)
            .finish_non_exhaustive()
    }
}

struct Inner {
    state: Mutex<State>,
    resolvers: Vec<SocketAddr>,
    tls: futures_rustls::TlsConnector,
    persistence: Option<PathBuf>,
    clock: Clock,
    /// Fires when a lookup ends (the cache's next timer may have moved; a refresh may be done).
    changed: Event,
    /// Bounds the lookups doing I/O at once.
    lookups: Semaphore,
    /// Serialises snapshot writes, so that an older snapshot never overwrites a newer one.
    saving: smol::lock::Mutex<()>,
}

struct State {
    cache: CacheState<Arc<Flight>>,
    /// How many refresh lookups have finished, for [`Client::wait_refreshes`].
    refreshes: u64,
}

/// The outcome of one lookup under way, for the callers waiting on it (runtime-agnostic: an
/// `event-listener` event, so any executor can wait on it).
#[derive(Default)]
struct Flight {
    /// `None` while it runs; `Some(None)` if its driver gave up.
    result: Mutex<Option<Option<Outcome>>>,
    ended: Event,
}

impl Flight {
    fn new_pair() -> (Arc<Self>, Arc<Self>) {
        let flight = Arc::new(Self::default());
        (Arc::clone(&flight), flight)
    }

    fn end(&self, outcome: Option<Outcome>) {
        *lock(&self.result) = Some(outcome);
        self.ended.notify(usize::MAX);
    }

    /// The driver's outcome, or `None` if it gave up. Its I/O is bounded by the core's
    /// timeouts, and a driver whose future is dropped ends the flight through [`Driving`].
    async fn wait(&self) -> Option<Outcome> {
        wait_until(&self.ended, || lock(&self.result).clone()).await
    }
}

/// The lookup this caller drives. If it is dropped before it finished (the caller's future was
/// cancelled), the cache is told and the callers waiting on it start over.
struct Driving<'a> {
    inner: &'a Inner,
    domain: PolicyDomain,
    id: FlightId,
    flight: Arc<Flight>,
    done: bool,
}

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.inner.lock().cache.abandon(&self.domain, self.id);
            self.flight.end(None);
        }
    }
}

impl Client {
    /// A builder with the defaults: system resolvers, webpki-roots, the core's default
    /// [`Config`](mta_sts_core::Config).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

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

    /// The delivery decision for each MX host of `domain`, in the priority order given.
    pub async fn evaluate<'h, I>(&self, domain: &str, mx_hosts: I) -> Evaluation
    where
        I: IntoIterator<Item = &'h str>,
    {
        let outcome = self.policy(domain).await;
        self.inner.lock().cache.evaluate(domain, &outcome, mx_hosts)
    }

    async fn run(&self, domain: &str, mut recheck: bool) -> Outcome {
        let inner = &*self.inner;
        loop {
            let start = inner
                .lock()
                .cache
                .start(domain, recheck, inner.now(), Flight::new_pair);
            match start {
                Start::Ready(outcome) => return outcome,
                // Boxed: only the one caller that drives needs the lookup's state; the callers
                // waiting on it stay small.
                Start::Drive(lookup, flight, id) => {
                    return Box::pin(inner.drive(*lookup, flight, id)).await;
                }
                Start::Wait(flight) => match flight.wait().await {
                    Some(outcome) => return outcome,
                    // The caller driving it gave up: start over (a recheck is not repeated).
                    None => recheck = false,
                },
            }
        }
    }

    /// Runs the proactive refreshes due now (R44), then saves the cache if any ran: what the
    /// refresher task does when its timer fires. Returns how many lookups ran.
    pub async fn refresh_due(&self) -> usize {
        let inner = &*self.inner;
        // At most one lookup per cache entry, so that the round ends whatever the clock does.
        let limit = inner.lock().cache.cache().len();
        let mut ran = 0;
        while ran < limit {
            let next = inner
                .lock()
                .cache
                .next_refresh(inner.now(), Flight::new_pair);
            let Some((lookup, flight, id)) = next else {
                break;
            };
            let _outcome = inner.drive(lookup, flight, id).await;
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

    /// Starts the background refresher on smol's global executor: a task that sleeps until the
    /// cache's next refresh is due ([`PolicyCache::poll_timeout`]), woken early whenever a
    /// lookup ends, and runs it. It stops when the returned handle is dropped or
    /// [`Refresher::shutdown`] is called.
    ///
    /// [`PolicyCache::poll_timeout`]: mta_sts_core::PolicyCache::poll_timeout
    pub fn spawn_refresher(&self) -> Refresher {
        let client = self.clone();
        let task = smol::spawn(async move {
            let inner = &*client.inner;
            loop {
                // Listen before reading the schedule, so that a lookup ending in between is
                // not missed.
                let changed = inner.changed.listen();
                let sleep = inner.lock().cache.refresher_sleep(inner.now());
                if !sleep.is_zero() {
                    future::or(
                        async {
                            Timer::after(sleep).await;
                        },
                        changed,
                    )
                    .await;
                    continue;
                }
                client.refresh_due().await;
            }
        });
        Refresher { task: Some(task) }
    }

    /// Writes the cache to the persistence file, if one was configured (atomically, on the
    /// `blocking` thread pool; one save at a time, each with the cache as it is then).
    pub async fn save(&self) -> Result<(), PersistError> {
        let Some(path) = self.inner.persistence.clone() else {
            return Ok(());
        };
        let _one_at_a_time = self.inner.saving.lock().await;
        let snapshot = self.inner.lock().cache.export(self.inner.now());
        smol::unblock(move || mta_sts_net::save_snapshot(&path, &snapshot)).await
    }

    /// Saves the cache (if persistent); call it on shutdown.
    pub async fn shutdown(&self) -> Result<(), PersistError> {
        self.save().await
    }

    /// The cache's counters (also exported through the `metrics` facade).
    pub fn stats(&self) -> Stats {
        self.inner.lock().cache.stats()
    }
}

/// The background refresher started by [`Client::spawn_refresher`].
#[derive(Debug)]
pub struct Refresher {
    task: Option<Task<()>>,
}

impl Refresher {
    /// Stops the refresher and waits until it has stopped. A refresh under way is abandoned
    /// (the cache is told; a delivery waiting on it does its own lookup).
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.cancel().await;
        }
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        // Dropping a smol task cancels it.
        drop(self.task.take());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave the data half-updated (each critical section is
    // one synchronous call), so a poisoned lock is still usable.
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

/// `fut`'s output, or `None` if `timeout` passes first (a timeout too large for the clock never
/// passes).
async fn until<T>(timeout: Duration, fut: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        Timer::after(timeout).await;
        None
    })
    .await
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn now(&self) -> UnixTime {
        (self.clock)()
    }

    /// Drives one lookup to its end, stores what it learned and hands the outcome to every
    /// caller waiting on it.
    async fn drive(&self, mut lookup: Lookup, flight: Arc<Flight>, id: FlightId) -> Outcome {
        let mut driving = Driving {
            inner: self,
            domain: lookup.domain().clone(),
            id,
            flight,
            done: false,
        };
        let _permit = self.lookups.acquire().await;
        loop {
            match lookup.poll() {
                Step::Io(io) => {
                    let result = self.perform(&io).await;
                    if let Err(e) = lookup.handle(result, self.now()) {
                        // Dropping `driving` abandons the lookup: the waiters start over.
                        return mta_sts_net::io_rejected(e);
                    }
                }
                Step::Done(resolution) => {
                    let outcome = self.lock().cache.finish(resolution, driving.id, self.now());
                    driving.done = true;
                    driving.flight.end(Some(outcome.clone()));
                    self.changed.notify(usize::MAX);
                    return outcome;
                }
            }
        }
    }

    /// Carries out one request of the core.
    async fn perform(&self, io: &Io) -> IoResult {
        match io {
            Io::Txt(query) => IoResult::Txt(dns::txt(&self.resolvers, query).await),
            // Boxed: the TLS handshake's state is large, and a delivery task's future stays
            // small (and cheap to move) without it.
            Io::Fetch(request) => IoResult::Fetch(Box::pin(fetch::fetch(self, request)).await),
            _ => IoResult::Fetch(Err(FetchFailure::Protocol("unsupported request".into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// A client that never gets an answer (nothing listens on the discard port).
    fn offline() -> Client {
        Client::builder()
            .resolvers(["127.0.0.1:9".parse().unwrap()])
            .build()
            .unwrap()
    }

    #[test]
    fn client_futures_are_send_so_any_executor_can_run_them() {
        let client = offline();
        assert_send(&client.policy("example.com"));
        assert_send(&client.recheck("example.com"));
        assert_send(&client.evaluate("example.com", ["mx.example.com"]));
        assert_send(&client.refresh_due());
        assert_send(&client.save());
    }

    #[test]
    fn policy_futures_stay_small_with_the_lookup_boxed() {
        let client = offline();
        // Under 300 bytes: the lookup's state (about 3 KiB, and the fetch with its TLS state
        // about 20 KiB more) is allocated only by the caller that drives it, so thousands of
        // delivery tasks waiting on a few lookups stay cheap, and small-stack threads can
        // block on one.
        let size = size_of_val(&client.policy("example.com"));
        assert!(size <= 1024, "{size} bytes");
    }

    #[test]
    fn the_refresher_task_ends_on_shutdown_and_on_drop() {
        let client = offline();
        smol::block_on(async {
            let refresher = client.spawn_refresher();
            assert_eq!(
                Arc::strong_count(&client.inner),
                2,
                "the task holds a client"
            );
            refresher.shutdown().await;
            assert_eq!(
                Arc::strong_count(&client.inner),
                1,
                "shutdown waits for the end"
            );

            drop(client.spawn_refresher());
            // The executor drops the cancelled task's future on its own thread, soon after.
            let give_up = std::time::Instant::now() + Duration::from_secs(5);
            while Arc::strong_count(&client.inner) > 1 {
                assert!(
                    std::time::Instant::now() < give_up,
                    "the dropped refresher still runs"
                );
                Timer::after(Duration::from_millis(1)).await;
            }
        });
    }
}
