//! MTA-STS (RFC 8461) for mail servers written with blocking I/O and threads.
//!
//! A [`Client`] carries out the DNS and HTTPS requests that [`mta_sts_core`] decides on, with
//! `std::net` sockets, rustls and webpki-roots, and no async runtime. Every protocol decision
//! (what to query, when to fetch, what to cache, what a response means, what to do with each MX)
//! is the core's; this crate only moves bytes, each socket operation bounded by the core's
//! deadlines.
//!
//! - [`Client::policy`]: the policy outcome for a domain (cached, fetched, none, temporary
//!   failure); [`Client::evaluate`]: the decision for each MX host, in priority order. Both block
//!   the calling thread for at most the configured DNS and fetch timeouts.
//! - Concurrent calls for one domain, from any number of threads, share one DNS query and one
//!   fetch: the first caller does the I/O, the others wait for its outcome.
//! - [`Client::spawn_refresher`]: a thread that refreshes cached policies before they expire
//!   (R44); it stops and is joined on [`Refresher::shutdown`] or drop.
//! - [`mx_starttls_config`] / [`server_name`]: the rustls configuration for the STARTTLS
//!   connection to an MX under a policy (PKIX against the MX host name, TLS 1.2+).
//!
//! # In an MTA's delivery path
//!
//! ```no_run
//! use mta_sts_blocking::{Client, MxDecision, Verdict};
//!
//! # fn deliver(_host: &str, _require_tls: bool) -> Result<(), ()> { Ok(()) }
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder().persistence("/var/lib/mta/mta-sts.json").build()?;
//! let refresher = client.spawn_refresher()?;
//!
//! // In each delivery thread (the client is cheap to clone and Send + Sync), for a message to
//! // someone@example.com, with the MX hosts in priority order:
//! let evaluation = client.evaluate("example.com", ["mx1.example.com", "mx2.example.com"]);
//! for candidate in evaluation.candidates() {
//!     let require_tls = match candidate.decision() {
//!         MxDecision::Skip => continue, // as though it were unreachable (R36, R40)
//!         MxDecision::Enforce => true,  // STARTTLS + certificate valid for candidate.host()
//!         _ => false,                   // testing / none / no policy: deliver as usual
//!     };
//!     // For require_tls: STARTTLS with mx_starttls_config(..) and server_name(candidate.host()).
//!     if deliver(candidate.host(), require_tls).is_ok() {
//!         return Ok(());
//!     }
//! }
//! if evaluation.verdict() == Verdict::DeferRecheckPolicy {
//!     // Every MX failed under `enforce`: keep the message queued, never bounce it before the
//!     // TXT id has been checked again (R39).
//!     let _ = client.recheck("example.com");
//! }
//!
//! // On shutdown: stop the refresher (joins its thread), then keep the cache for the restart.
//! refresher.shutdown();
//! client.shutdown()?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod dns;
mod fetch;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use mta_sts_core::io::{FetchFailure, Io};
use mta_sts_core::{IoResult, Lookup, PolicyDomain, Step, UnixTime};
use mta_sts_net::{CacheState, ClientSettings, FlightId, Start};

pub use mta_sts_core::{
    Candidate, Evaluation, MxDecision, NoPolicyReason, Outcome, Stats, Verdict, WhenAllFail,
};
pub use mta_sts_net::{
    ClientError as Error, Clock, DEFAULT_MAX_CONCURRENT_LOOKUPS, PersistError, TrustAnchors,
    mx_starttls_config, server_name,
};

/// The longest the refresher sleeps without looking at the wall clock again, so that a clock
/// that jumps (a suspended machine, a stepped clock) delays a refresh by at most this much.
const MAX_REFRESHER_SLEEP: Duration = Duration::from_secs(60);

/// Builds a [`Client`]: resolvers, trust anchors, the core's [`Config`](mta_sts_core::Config) (sender settings, cache
/// capacity, timeouts, per-domain overrides) and an optional persistence file.
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
                    generation: 0,
                    refreshes: 0,
                }),
                changed: Condvar::new(),
                resolvers: parts.resolvers,
                tls: parts.tls,
                persistence: parts.persistence,
                saving: Mutex::new(()),
                clock: parts.clock,
                permits: Permits {
                    free: Mutex::new(parts.max_concurrent_lookups),
                    freed: Condvar::new(),
                },
            }),
        })
    }
}

/// An MTA-STS client for threads: cheap to clone, shared by every delivery thread.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Signalled, with `state`, when the cache's next timer may have moved (a lookup finished),
    /// when a refresh finished and when a refresher is told to stop.
    changed: Condvar,
    resolvers: Vec<SocketAddr>,
    tls: Arc<rustls::ClientConfig>,
    persistence: Option<PathBuf>,
    /// Held while a snapshot is taken and written, so that snapshots reach the file in the
    /// order they were taken.
    saving: Mutex<()>,
    clock: Clock,
    /// Bounds the lookups doing I/O at once.
    permits: Permits,
}

struct State {
    cache: CacheState<Arc<Flight>>,
    /// Counts the lookups finished, for the refresher to notice a change without missing one.
    generation: u64,
    /// How many refresh lookups have finished, for [`Client::wait_refreshes`].
    refreshes: u64,
}

/// A counting semaphore for the lookups doing I/O at once.
struct Permits {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Permits {
    /// Waits for a free place. Every place is held by a lookup whose I/O is bounded by the
    /// core's timeouts, so the wait is bounded too.
    fn acquire(&self) -> Permit<'_> {
        let mut free = lock(&self.free);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Permit(self)
    }
}

/// A place taken from [`Permits`], given back on drop.
struct Permit<'a>(&'a Permits);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.freed.notify_one();
    }
}

/// The outcome of one lookup under way, for the threads waiting on it.
#[derive(Default)]
struct Flight {
    /// `None` while it runs; `Some(None)` if its driver gave up.
    result: Mutex<Option<Option<Outcome>>>,
    done: Condvar,
}

impl Flight {
    fn new_pair() -> (Arc<Self>, Arc<Self>) {
        let flight = Arc::new(Self::default());
        (flight.clone(), flight)
    }

    fn end(&self, outcome: Option<Outcome>) {
        *lock(&self.result) = Some(outcome);
        self.done.notify_all();
    }

    /// Blocks until the driver ends the flight. The driver's I/O is bounded by the core's
    /// timeouts, and a driver that unwinds ends it through [`Driving`]'s drop.
    fn wait(&self) -> Option<Outcome> {
        let mut result = lock(&self.result);
        loop {
            if let Some(outcome) = result.as_ref() {
                return outcome.clone();
            }
            result = self
                .done
                .wait(result)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The lookup this thread drives. If it is dropped before it finished (the I/O panicked), the
/// cache is told and the threads waiting on it start over.
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
    /// A builder with the defaults: system resolvers, webpki-roots, [`Config::default`](mta_sts_core::Config::default).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The policy outcome for `domain` (the next-hop domain, or the smart host's domain, R2).
    /// A fresh cached policy answers at once; otherwise the TXT record is queried and the policy
    /// fetched when needed, blocking for at most the DNS and fetch timeouts. Concurrent calls
    /// for one domain share one query and one fetch.
    pub fn policy(&self, domain: &str) -> Outcome {
        self.run(domain, false)
    }

    /// Re-checks the TXT id of `domain` before a message is failed permanently (R39): an
    /// unchanged id keeps the cached policy (keep the message queued); a new id is fetched.
    pub fn recheck(&self, domain: &str) -> Outcome {
        self.run(domain, true)
    }

    /// The delivery decision for each MX host of `domain`, in the priority order given.
    pub fn evaluate<'h, I>(&self, domain: &str, mx_hosts: I) -> Evaluation
    where
        I: IntoIterator<Item = &'h str>,
    {
        let outcome = self.policy(domain);
        self.inner.lock().cache.evaluate(domain, &outcome, mx_hosts)
    }

    fn run(&self, domain: &str, mut recheck: bool) -> Outcome {
        let inner = &*self.inner;
        loop {
            let start = inner
                .lock()
                .cache
                .start(domain, recheck, inner.now(), Flight::new_pair);
            match start {
                Start::Ready(outcome) => return outcome,
                Start::Drive(lookup, flight, id) => return inner.drive(*lookup, flight, id),
                Start::Wait(flight) => match flight.wait() {
                    Some(outcome) => return outcome,
                    // The thread driving it gave up: start over (a recheck is not repeated).
                    None => recheck = false,
                },
            }
        }
    }

    /// Runs the proactive refreshes due now (R44): what the refresher thread does when its
    /// timer fires. Returns how many lookups ran; saves the cache when any did.
    pub fn refresh_due(&self) -> usize {
        self.refresh_round(None)
    }

    /// A refresh round, stopping between two lookups when `stop` is set. At most one lookup per
    /// cache entry, so that the round ends whatever the clock does.
    fn refresh_round(&self, stop: Option<&AtomicBool>) -> usize {
        let inner = &*self.inner;
        let limit = inner.lock().cache.cache().len();
        let mut ran = 0;
        while ran < limit && !stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            let next = inner
                .lock()
                .cache
                .next_refresh(inner.now(), Flight::new_pair);
            let Some((lookup, flight, id)) = next else {
                break;
            };
            let _outcome = inner.drive(lookup, flight, id);
            ran += 1;
            inner.lock().refreshes += 1;
            inner.changed.notify_all();
        }
        if ran > 0
            && let Err(e) = self.save()
        {
            tracing::warn!(error = %e, "cannot save the MTA-STS cache");
        }
        ran
    }

    /// Waits until at least `n` proactive refresh lookups have finished since the client was
    /// built (by the refresher or [`Client::refresh_due`]), or until `timeout` has passed;
    /// returns the number finished.
    pub fn wait_refreshes(&self, n: u64, timeout: Duration) -> u64 {
        let st = self.inner.lock();
        let (st, _) = self
            .inner
            .changed
            .wait_timeout_while(st, timeout, |s| s.refreshes < n)
            .unwrap_or_else(PoisonError::into_inner);
        st.refreshes
    }

    /// Starts the background refresher: a thread that sleeps until the cache's next refresh is
    /// due ([`PolicyCache::poll_timeout`](mta_sts_core::PolicyCache::poll_timeout)), woken
    /// early whenever a lookup changes the cache, and runs it. It stops, and is joined, on
    /// [`Refresher::shutdown`] or when the handle is dropped. Fails only if the operating system
    /// cannot start a thread.
    pub fn spawn_refresher(&self) -> std::io::Result<Refresher> {
        let stop = Arc::new(AtomicBool::new(false));
        let client = self.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mta-sts-refresher".into())
            .spawn(move || client.refresher(&flag))?;
        Ok(Refresher {
            inner: self.inner.clone(),
            stop,
            thread: Some(thread),
        })
    }

    fn refresher(&self, stop: &AtomicBool) {
        let inner = &*self.inner;
        let mut st = inner.lock();
        while !stop.load(Ordering::SeqCst) {
            match st.cache.refresh_wait(inner.now()) {
                Some(Duration::ZERO) => {
                    drop(st);
                    self.refresh_round(Some(stop));
                    st = inner.lock();
                }
                wait => {
                    let wait = wait.map_or(MAX_REFRESHER_SLEEP, |w| w.min(MAX_REFRESHER_SLEEP));
                    let seen = st.generation;
                    st = inner
                        .changed
                        .wait_timeout_while(st, wait, |s| {
                            s.generation == seen && !stop.load(Ordering::SeqCst)
                        })
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    /// Writes the cache to the persistence file, if one was configured (atomically: a
    /// temporary file, then a rename).
    pub fn save(&self) -> Result<(), PersistError> {
        let Some(path) = &self.inner.persistence else {
            return Ok(());
        };
        let _order = lock(&self.inner.saving);
        let snapshot = self.inner.lock().cache.export(self.inner.now());
        mta_sts_net::save_snapshot(path, &snapshot)
    }

    /// Saves the cache (if persistent); call it on shutdown, after stopping the refresher.
    pub fn shutdown(&self) -> Result<(), PersistError> {
        self.save()
    }

    /// The cache's counters (also exported through the `metrics` facade).
    pub fn stats(&self) -> Stats {
        self.inner.lock().cache.stats()
    }
}

/// The background refresher thread started by [`Client::spawn_refresher`]. Dropping it stops
/// and joins the thread, like [`Refresher::shutdown`].
#[derive(Debug)]
pub struct Refresher {
    inner: Arc<Inner>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Refresher {
    /// Stops the refresher and joins its thread. A refresh lookup under way is finished first
    /// (it is bounded by the DNS and fetch timeouts); no new one starts.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Taking the lock orders the store before the refresher's next check: it either sees
        // the flag or is already waiting and gets the notification.
        drop(self.inner.lock());
        self.inner.changed.notify_all();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the MTA-STS refresher thread panicked");
        }
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("resolvers", &self.resolvers)
            .field("persistence", &self.persistence)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked: each critical section
/// is one synchronous call into the cache, or a plain store.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn now(&self) -> UnixTime {
        (self.clock)()
    }

    /// Drives one lookup to its end on this thread, stores what it learned and hands the
    /// outcome to every thread waiting on it.
    fn drive(&self, mut lookup: Lookup, flight: Arc<Flight>, id: FlightId) -> Outcome {
        let mut driving = Driving {
            inner: self,
            domain: lookup.domain().clone(),
            id,
            flight,
            done: false,
        };
        let _permit = self.permits.acquire();
        loop {
            match lookup.poll() {
                Step::Io(io) => {
                    let result = self.perform(&io);
                    if let Err(e) = lookup.handle(result, self.now()) {
                        // Dropping `driving` abandons the lookup: the waiters start over.
                        return mta_sts_net::io_rejected(e);
                    }
                }
                Step::Done(resolution) => {
                    let outcome = {
                        let mut st = self.lock();
                        st.generation = st.generation.wrapping_add(1);
                        st.cache.finish(resolution, driving.id, self.now())
                    };
                    driving.done = true;
                    driving.flight.end(Some(outcome.clone()));
                    self.changed.notify_all();
                    return outcome;
                }
            }
        }
    }

    /// Carries out one request of the core.
    fn perform(&self, io: &Io) -> IoResult {
        match io {
            Io::Txt(query) => IoResult::Txt(dns::txt(&self.resolvers, query)),
            Io::Fetch(f) => IoResult::Fetch(fetch::fetch(self, f)),
            _ => IoResult::Fetch(Err(FetchFailure::Protocol("unsupported request".into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_refresher_can_cross_threads() {
        fn shared<T: Clone + Send + Sync>() {}
        fn sent<T: Send>() {}
        shared::<Client>();
        sent::<Refresher>();
    }
}
