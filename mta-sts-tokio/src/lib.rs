//! MTA-STS (RFC 8461) for tokio-based mail servers.
//!
//! A [`Client`] carries out the DNS and HTTPS requests that [`mta_sts_core`] decides on, with
//! tokio's sockets and timers, rustls and webpki-roots. Every protocol decision (what to query,
//! when to fetch, what to cache, what a response means, what to do with each MX) is the core's;
//! this crate only moves bytes.
//!
//! - [`Client::policy`]: the policy outcome for a domain (cached, fetched, none, temporary
//!   failure); [`Client::evaluate`]: the decision for each MX host, in priority order.
//! - Concurrent calls for one domain share one DNS query and one fetch.
//! - [`Client::spawn_refresher`]: refreshes cached policies before they expire (R44).
//! - [`mx_starttls_config`] / [`server_name`]: the rustls configuration for the STARTTLS
//!   connection to an MX under a policy (PKIX against the MX host name, TLS 1.2+).
//!
//! # In an MTA's delivery path
//!
//! ```no_run
//! use mta_sts_tokio::{Client, MxDecision, Verdict};
//!
//! # async fn deliver(_host: &str, _require_tls: bool) -> Result<(), ()> { Ok(()) }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder().persistence("/var/lib/mta/mta-sts.json").build()?;
//! let _refresher = client.spawn_refresher();
//!
//! // For a message to someone@example.com, with the MX hosts in priority order:
//! let evaluation = client.evaluate("example.com", ["mx1.example.com", "mx2.example.com"]).await;
//! for candidate in evaluation.candidates() {
//!     let require_tls = match candidate.decision() {
//!         MxDecision::Skip => continue, // as though it were unreachable (R36, R40)
//!         MxDecision::Enforce => true,  // STARTTLS + certificate valid for candidate.host()
//!         _ => false,                   // testing / none / no policy: deliver as usual
//!     };
//!     if deliver(candidate.host(), require_tls).await.is_ok() {
//!         return Ok(());
//!     }
//! }
//! if evaluation.verdict() == Verdict::DeferRecheckPolicy {
//!     // Every MX failed under `enforce`: keep the message queued, never bounce it before the
//!     // TXT id has been checked again (R39).
//!     let _ = client.recheck("example.com").await;
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod dns;
mod fetch;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use mta_sts_core::io::{FetchFailure, Io};
use mta_sts_core::{IoResult, Lookup, PolicyDomain, Step, UnixTime};
use mta_sts_net::{CacheState, ClientSettings, FlightId, Start};
use tokio::sync::{Notify, Semaphore, watch};

pub use mta_sts_core::{
    Candidate, Evaluation, MxDecision, NoPolicyReason, Outcome, Verdict, WhenAllFail,
};
pub use mta_sts_net::{TrustAnchors, mx_starttls_config, server_name};

pub use mta_sts_net::{ClientError as Error, Clock, DEFAULT_MAX_CONCURRENT_LOOKUPS, PersistError};

/// Builds a [`Client`]: resolvers, trust anchors, the core's [`Config`](mta_sts_core::Config) (sender settings, cache
/// capacity, timeouts, per-domain overrides) and an optional persistence file.
pub struct ClientBuilder {
    settings: ClientSettings,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.settings.fmt(f)
    }
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
                state: Mutex::new(CacheState::new(parts.cache)),
                resolvers: parts.resolvers,
                tls: tokio_rustls::TlsConnector::from(parts.tls),
                persistence: parts.persistence,
                clock: parts.clock,
                changed: Notify::new(),
                lookups: Semaphore::new(parts.max_concurrent_lookups),
                refreshes: watch::Sender::new(0),
                saving: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

/// An MTA-STS client for tokio: cheap to clone, shared by every delivery task.
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
    state: Mutex<Flights>,
    resolvers: Vec<SocketAddr>,
    tls: tokio_rustls::TlsConnector,
    persistence: Option<PathBuf>,
    clock: Clock,
    /// Wakes the refresher when the cache's next timer may have moved.
    changed: Notify,
    /// Bounds the lookups doing I/O at once.
    lookups: Semaphore,
    /// How many refresh lookups have finished, for [`Client::wait_refreshes`].
    refreshes: watch::Sender<u64>,
    /// Serialises snapshot writes, so that an older snapshot never overwrites a newer one.
    saving: tokio::sync::Mutex<()>,
}

/// Waiters hold the receiver of a flight's outcome; its driver holds the sender.
type Flights = CacheState<watch::Receiver<Option<Outcome>>, watch::Sender<Option<Outcome>>>;

fn new_flight() -> (
    watch::Receiver<Option<Outcome>>,
    watch::Sender<Option<Outcome>>,
) {
    let (tx, rx) = watch::channel(None);
    (rx, tx)
}

/// One lookup this client is driving. If it is dropped before it finished (its caller's future
/// was cancelled), the cache is told and the callers waiting on it start over.
struct Flight<'a> {
    inner: &'a Inner,
    domain: PolicyDomain,
    id: FlightId,
    tx: watch::Sender<Option<Outcome>>,
    done: bool,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.inner.lock().abandon(&self.domain, self.id);
        }
    }
}

impl Client {
    /// A builder with the defaults: system resolvers, webpki-roots, [`Config::default`](mta_sts_core::Config::default).
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            settings: ClientSettings::default(),
        }
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
        self.inner.lock().evaluate(domain, &outcome, mx_hosts)
    }

    async fn run(&self, domain: &str, recheck: bool) -> Outcome {
        let inner = &*self.inner;
        let mut recheck = recheck;
        loop {
            let start = inner.lock().start(domain, recheck, inner.now(), new_flight);
            match start {
                Start::Ready(outcome) => return outcome,
                // Boxed: only the one caller that drives needs the lookup's state (DNS and
                // TLS, several KiB); the callers waiting on it stay small.
                Start::Drive(lookup, tx, id) => {
                    return Box::pin(inner.drive(*lookup, tx, id)).await;
                }
                Start::Wait(mut rx) => {
                    if let Ok(outcome) = rx.wait_for(Option::is_some).await
                        && let Some(outcome) = outcome.clone()
                    {
                        return outcome;
                    }
                    // The caller driving it gave up: start over (a recheck is not repeated).
                    recheck = false;
                }
            }
        }
    }

    /// Runs the proactive refreshes due now (R44): what the refresher task does when its timer
    /// fires. Returns how many lookups ran.
    pub async fn refresh_due(&self) -> usize {
        let inner = &*self.inner;
        // At most one lookup per cache entry, so that the round ends whatever the clock does.
        let limit = inner.lock().cache().len();
        let mut ran = 0;
        while ran < limit {
            let next = inner.lock().next_refresh(inner.now(), new_flight);
            let Some((lookup, tx, id)) = next else { break };
            let _outcome = inner.drive(lookup, tx, id).await;
            ran += 1;
            inner.refreshes.send_modify(|n| *n += 1);
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
        let mut rx = self.inner.refreshes.subscribe();
        // The sender lives as long as the client, so this only ends when the count is reached.
        rx.wait_for(|done| *done >= n).await.map_or(n, |done| *done)
    }

    /// Starts the background refresher: a task that sleeps until the cache's next refresh is
    /// due ([`PolicyCache::poll_timeout`](mta_sts_core::PolicyCache::poll_timeout)) and runs it. It stops when the returned handle is
    /// dropped or [`Refresher::shutdown`] is called.
    pub fn spawn_refresher(&self) -> Refresher {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let client = self.clone();
        let task = tokio::spawn(async move {
            loop {
                // Register for change notifications before reading the next timer, so that a
                // change in between is not missed.
                let changed = client.inner.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let wait = client.inner.lock().refresher_sleep(client.inner.now());
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    () = &mut changed => continue,
                    () = tokio::time::sleep(wait) => {}
                }
                client.refresh_due().await;
            }
        });
        Refresher {
            stop: stop_tx,
            task: Some(task),
        }
    }

    /// Writes the cache to the persistence file, if one was configured (atomically).
    pub async fn save(&self) -> Result<(), PersistError> {
        let Some(path) = self.inner.persistence.clone() else {
            return Ok(());
        };
        let _one_at_a_time = self.inner.saving.lock().await;
        let snapshot = self.inner.lock().export(self.inner.now());
        tokio::task::spawn_blocking(move || mta_sts_net::save_snapshot(&path, &snapshot))
            .await
            .unwrap_or_else(|e| Err(PersistError::Io(std::io::Error::other(e))))
    }

    /// Saves the cache (if persistent); call it on shutdown.
    pub async fn shutdown(&self) -> Result<(), PersistError> {
        self.save().await
    }

    /// The cache's counters (also exported through the `metrics` facade).
    pub fn stats(&self) -> mta_sts_core::Stats {
        self.inner.lock().stats()
    }
}

/// The background refresher started by [`Client::spawn_refresher`].
#[derive(Debug)]
pub struct Refresher {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Refresher {
    /// Stops the refresher and waits for it to finish its current lookup.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Flights> {
        // A panic while holding the lock cannot leave the cache half-updated (each call is one
        // synchronous method of PolicyCache), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now(&self) -> UnixTime {
        (self.clock)()
    }

    /// Drives one lookup to its end, stores what it learned and hands the outcome to every
    /// caller waiting on it.
    async fn drive(
        &self,
        mut lookup: Lookup,
        tx: watch::Sender<Option<Outcome>>,
        id: FlightId,
    ) -> Outcome {
        let mut flight = Flight {
            inner: self,
            domain: lookup.domain().clone(),
            id,
            tx,
            done: false,
        };
        // The semaphore is never closed, so acquiring only waits for a free place.
        let _permit = self.lookups.acquire().await.ok();
        loop {
            match lookup.poll() {
                Step::Io(io) => {
                    let result = self.perform(&io).await;
                    if let Err(e) = lookup.handle(result, self.now()) {
                        // Cannot happen (every result answers its request); give up cleanly:
                        // dropping the flight tells the cache, and waiters start over.
                        tracing::error!(error = %e, "MTA-STS lookup rejected an I/O result");
                        let detail = format!("internal error: {e}");
                        return Outcome::TemporaryFailure(mta_sts_core::io::DnsFailure::Malformed(
                            detail,
                        ));
                    }
                }
                Step::Done(resolution) => {
                    let outcome = self.lock().finish(resolution, flight.id, self.now());
                    flight.done = true;
                    flight.tx.send_replace(Some(outcome.clone()));
                    self.changed.notify_waiters();
                    return outcome;
                }
            }
        }
    }

    /// Carries out one request of the core.
    async fn perform(&self, io: &Io) -> IoResult {
        match io {
            Io::Txt(query) => IoResult::Txt(dns::txt(&self.resolvers, query).await),
            Io::Fetch(fetch) => IoResult::Fetch(fetch::fetch(self, fetch).await),
            _ => IoResult::Fetch(Err(FetchFailure::Protocol("unsupported request".into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_futures_stay_small_with_the_lookup_boxed() {
        let client = Client::builder()
            .resolvers(["127.0.0.1:9".parse().unwrap()])
            .build()
            .unwrap();
        // The lookup's own state (DNS and TLS, about 6.5 KiB) is allocated only by the caller
        // that drives it: ten thousand callers waiting on a thousand lookups stay cheap.
        let size = size_of_val(&client.policy("example.com"));
        assert!(size <= 1024, "{size} bytes");
    }
}
