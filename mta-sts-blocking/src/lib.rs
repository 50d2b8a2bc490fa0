//! MTA-STS (RFC 8461) for mail servers written with blocking I/O and threads.
//!
//! A [`Client`] carries out the DNS and HTTPS requests that [`mta_sts_core`] decides on, with
//! `std::net` sockets, rustls and webpki-roots, and no async runtime. Every protocol decision
//! (what to query, when to fetch, what to cache, what a response means, what to do with each MX)
//! is the core's; the client itself (coalescing, the bound on lookups, the refresher,
//! persistence) is `mta-sts-net`'s, written once for every runtime. This crate is the blocking
//! [`Runtime`] ([`BlockingRuntime`]: the I/O is done in the calling thread, each socket
//! operation bounded by the core's deadlines) and blocking calls around the client
//! ([`block_on`]).
//!
//! - [`Client::policy`]: the policy outcome for a domain (cached, fetched, none, temporary
//!   failure); [`Client::evaluate`]: the decision for each MX host, in priority order. Both block
//!   the calling thread for at most the configured DNS and fetch timeouts.
//! - Concurrent calls for one domain, from any number of threads, share one DNS query and one
//!   fetch: the first caller does the I/O, the others wait for its outcome.
//! - [`Client::spawn_refresher`]: a thread that refreshes cached policies before they expire
//!   (R44); it stops and is joined on [`Refresher::shutdown`] or drop.
//! - DNS is a seam ([`Resolver`]): the built-in stub resolver by default, the MTA's own with
//!   [`ClientBuilder::resolver`] (its futures are driven by [`block_on`] on the calling thread).
//! - [`mx_starttls_config`] / [`server_name`]: the rustls configuration for the STARTTLS
//!   connection to an MX under a policy (PKIX against the MX host name, TLS 1.2+).
//! - TLSRPT (RFC 8460): [`ClientBuilder::tlsrpt`], [`Client::record_tls_result`] after each
//!   STARTTLS session, [`Client::spawn_reporter`] (a thread that sends each day's reports),
//!   [`Client::tlsrpt_stats`].
//! - [`tls_handshake`]: the STARTTLS handshake in blocking I/O with that configuration;
//!   [`rustls`] re-exported (see [the rustls crypto provider](#the-rustls-crypto-provider)).
//!
//! A complete program, from the client's construction to its shutdown, delivering to the MX
//! hosts of `mta-sts-testkit`'s loopback world with the policy enforced (STARTTLS, a refused
//! certificate, defer and recheck, TLSRPT, the cache file, the refresher thread):
//! [`examples/deliver.rs`][example], run with `cargo run -p mta-sts-blocking --example deliver`.
//!
//! [example]: https://github.com/mta-sts/mta-sts/blob/main/mta-sts-blocking/examples/deliver.rs
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
//!
//! # The rustls crypto provider
//!
//! [`mx_starttls_config`] hands out a rustls 0.23 `ClientConfig`, and [`tls_handshake`] gives
//! back a rustls `StreamOwned`. Take [`rustls`] from this crate's re-export, so that the types
//! are the ones this crate was built with (this compiles only because they are):
//!
//! ```no_run
//! use std::net::TcpStream;
//! use std::sync::Arc;
//! use mta_sts_blocking::{TrustAnchors, mx_starttls_config, rustls, server_name, tls_handshake};
//!
//! let config: Arc<rustls::ClientConfig> = mx_starttls_config(&TrustAnchors::webpki());
//! // After EHLO, STARTTLS and its `220` on `tcp`:
//! # let tcp = TcpStream::connect("127.0.0.1:25")?;
//! let tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream> =
//!     tls_handshake(config, server_name("mx1.example.com")?, tcp)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The trap: rustls picks its process-wide default crypto provider by itself only when exactly
//! one provider feature (`ring`, `aws_lc_rs`) is enabled in the whole dependency graph. This
//! crate uses *ring* and enables nothing else, but rustls (and tokio-rustls, futures-rustls, hickory-resolver's TLS features) enable `aws_lc_rs` **by default**.
//! One of them with default features in your `Cargo.toml` puts both providers in the program,
//! and from then on every `rustls::ClientConfig::builder()` (yours, or one inside another
//! library) panics at run time: "Could not automatically determine the process-level
//! CryptoProvider from Rustls crate features". It compiles; it fails at the first TLS
//! connection. Either:
//!
//! - keep one provider: use the re-exports and leave rustls out of your `Cargo.toml`, or
//!   depend on it without default features, as this workspace does:
//!
//!   ```toml
//!   [dependencies]
//!   mta-sts-blocking = "0.1"
//!   rustls = { version = "0.23", default-features = false, features = ["ring", "logging", "std", "tls12"] }
//!   ```
//!
//!   (`cargo tree -i aws-lc-rs` must then find nothing);
//! - or, when another dependency needs aws-lc-rs, choose the process default once, first thing
//!   in `main`: `rustls::crypto::ring::default_provider().install_default()` (or aws-lc-rs's),
//!   or build your own configurations with `ClientConfig::builder_with_provider(..)`.
//!
//! This crate's own configurations ([`mx_starttls_config`], the policy fetches) name their
//! provider, so they work in either case.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::cell::Cell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use futures_io::{AsyncRead, AsyncWrite};
use mta_sts_net::udp_socket;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

pub use mta_sts_net::api::*;

/// Builds a [`Client`]: its DNS, trust anchors, the core's [`Config`] (sender settings, cache
/// capacity, timeouts, per-domain overrides), an optional persistence file, the bound on
/// concurrent lookups and the clock.
pub type ClientBuilder = mta_sts_net::ClientBuilder<BlockingRuntime, Client>;

/// An MTA-STS client for threads: cheap to clone, shared by every delivery thread. Each call
/// blocks the calling thread for at most the configured DNS and fetch timeouts.
#[derive(Clone, Debug)]
pub struct Client {
    inner: mta_sts_net::Client<BlockingRuntime>,
}

impl From<mta_sts_net::Client<BlockingRuntime>> for Client {
    fn from(inner: mta_sts_net::Client<BlockingRuntime>) -> Self {
        Self { inner }
    }
}

impl Client {
    /// A builder with the defaults: system resolvers, webpki-roots, [`Config::default`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new(BlockingRuntime)
    }

    /// The policy outcome for `domain` (the next-hop domain, or the smart host's domain, R2).
    /// A fresh cached policy answers at once; otherwise the TXT record is queried and the policy
    /// fetched when needed, blocking for at most the DNS and fetch timeouts. Concurrent calls
    /// for one domain, from any number of threads, share one query and one fetch.
    pub fn policy(&self, domain: &str) -> Outcome {
        block_on(self.inner.policy(domain))
    }

    /// Waits until no write to the shared policy store is under way (each is bounded by the
    /// store timeout), as [`mta_sts_net::Client::wait_store_writes`].
    pub fn wait_store_writes(&self) {
        block_on(self.inner.wait_store_writes());
    }

    /// Re-checks the TXT id of `domain` before a message is failed permanently (R39): an
    /// unchanged id keeps the cached policy (keep the message queued); a new id is fetched.
    pub fn recheck(&self, domain: &str) -> Outcome {
        block_on(self.inner.recheck(domain))
    }

    /// The DANE state of `domain` (RFC 7672 §2.2): mandatory, opportunistic, absent or
    /// indeterminate, from the DNSSEC-validated MX, address and TLSA records, blocking for at
    /// most the DANE DNS timeout per query round; cached like [`mta_sts_net::Client::dane`].
    /// `None` when DANE is off ([`mta_sts_net::ClientBuilder::dane`]).
    pub fn dane(&self, domain: &str) -> Option<DaneState> {
        block_on(self.inner.dane(domain))
    }

    /// [`policy`](Self::policy) and [`dane`](Self::dane) of `domain` together: the MTA-STS
    /// outcome and the DANE state (`None` when DANE is off), as
    /// [`mta_sts_net::Client::policy_and_dane`].
    pub fn policy_and_dane(&self, domain: &str) -> (Outcome, Option<DaneState>) {
        block_on(self.inner.policy_and_dane(domain))
    }

    /// The delivery decision for each MX host of `domain`, in the priority order given, with the
    /// policy outcome it was made from.
    pub fn evaluate<I>(&self, domain: &str, mx_hosts: I) -> Evaluation
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        block_on(self.inner.evaluate(domain, mx_hosts))
    }

    /// Runs the proactive refreshes due now (R44): what the refresher thread does when its
    /// timer fires. Returns how many lookups ran; saves the cache when any did.
    pub fn refresh_due(&self) -> usize {
        block_on(self.inner.refresh_due())
    }

    /// Waits until at least `n` proactive refresh lookups have finished since the client was
    /// built (by the refresher or [`Client::refresh_due`]), or until `timeout` has passed;
    /// returns the number finished.
    pub fn wait_refreshes(&self, n: u64, timeout: Duration) -> u64 {
        within(timeout, self.inner.wait_refreshes(n), async {
            self.inner.refreshes()
        })
    }

    /// Starts the background refresher: a thread that sleeps until the cache's next refresh is
    /// due, woken early whenever a lookup changes the cache, and runs it (see
    /// [`mta_sts_net::Client::spawn_refresher`]). It stops, and is joined, on
    /// [`Refresher::shutdown`] or when the handle is dropped. Fails only if the operating system
    /// cannot start a thread.
    pub fn spawn_refresher(&self) -> io::Result<Refresher> {
        self.inner
            .try_spawn_refresher()
            .map(|inner| Refresher { inner })
    }

    /// Writes the cache to the persistence file, if one was configured (atomically: a
    /// temporary file, then a rename).
    pub fn save(&self) -> Result<(), PersistError> {
        block_on(self.inner.save())
    }

    /// Saves the cache (if persistent); call it on shutdown, after stopping the refresher.
    pub fn shutdown(&self) -> Result<(), PersistError> {
        block_on(self.inner.shutdown())
    }

    /// The cache's counters (also exported through the `metrics` facade).
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Records the MTA's TLS session to an MX host for TLSRPT, under the policy that applied
    /// (see [`mta_sts_net::Client::record_tls_result`]); returns the policy type it was counted
    /// under, `None` when it was not. Never call it for the delivery of a report mail
    /// ([`is_report_mail`]). Does no I/O.
    pub fn record_tls_result(&self, result: &TlsResult) -> Option<PolicyType> {
        self.inner.record_tls_result(result)
    }

    /// The TLSRPT counters (also exported through the `metrics` facade).
    pub fn tlsrpt_stats(&self) -> TlsRptStats {
        self.inner.tlsrpt_stats()
    }

    /// Runs one TLSRPT reporting round now (see [`mta_sts_net::Client::report_due`]): the days
    /// ended are closed into reports, the deliveries due carried out (each bounded by its
    /// timeout), the state saved. Returns how many deliveries ran.
    pub fn report_due(&self) -> usize {
        block_on(self.inner.report_due())
    }

    /// When the reporting thread has something to do next, if anything.
    pub fn next_report_due(&self) -> Option<UnixTime> {
        self.inner.next_report_due()
    }

    /// Waits until at least `n` report deliveries have finished since the client was built
    /// (by the reporting thread or [`Client::report_due`]), or until `timeout` has passed;
    /// returns the number finished.
    pub fn wait_reports(&self, n: u64, timeout: Duration) -> u64 {
        // Waiting for none answers at once with the number finished.
        within(
            timeout,
            self.inner.wait_reports(n),
            self.inner.wait_reports(0),
        )
    }

    /// Starts the TLSRPT reporting thread (see [`mta_sts_net::Client::spawn_reporter`]): it
    /// sleeps until something is due, woken early when a session of a later day is recorded,
    /// and runs a round. It stops, and is joined, on [`ReporterTask::shutdown`] or when the
    /// handle is dropped. Fails only if the operating system cannot start a thread.
    pub fn spawn_reporter(&self) -> io::Result<ReporterTask> {
        self.inner
            .try_spawn_reporter()
            .map(|inner| ReporterTask { inner })
    }
}

/// `wait`'s output, or once `timeout` has passed, `then`'s.
fn within<T>(timeout: Duration, wait: impl Future<Output = T>, then: impl Future<Output = T>) -> T {
    match Instant::now().checked_add(timeout) {
        Some(deadline) => block_on(futures_lite::future::or(wait, async move {
            BlockingRuntime.sleep_until(deadline).await;
            then.await
        })),
        None => block_on(wait),
    }
}

/// The TLSRPT reporting thread started by [`Client::spawn_reporter`]. Dropping it stops and
/// joins the thread, like [`ReporterTask::shutdown`].
#[derive(Debug)]
pub struct ReporterTask {
    inner: mta_sts_net::ReporterTask<BlockingRuntime>,
}

impl ReporterTask {
    /// Stops the reporting thread and joins it: the deliveries under way are finished first
    /// (each bounded by its timeout) and the state saved.
    pub fn shutdown(self) {
        block_on(self.inner.shutdown());
    }
}

/// The background refresher thread started by [`Client::spawn_refresher`]. Dropping it stops
/// and joins the thread, like [`Refresher::shutdown`].
#[derive(Debug)]
pub struct Refresher {
    inner: mta_sts_net::Refresher<BlockingRuntime>,
}

impl Refresher {
    /// Stops the refresher and joins its thread. A refresh lookup under way is finished first
    /// (it is bounded by the DNS and fetch timeouts); no new one starts.
    pub fn shutdown(self) {
        block_on(self.inner.shutdown());
    }
}

/// Blocking I/O as the client's [`Runtime`]: every socket operation is done in the thread that
/// polls it, bounded by the deadline the client gives with the socket, so a future of the
/// client completes within one [`block_on`] without an executor. The refresher is a thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockingRuntime;

impl Runtime for BlockingRuntime {
    type Tcp = DeadlineStream;
    type Udp = DeadlineSocket;
    type Task = JoinOnDrop;

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(Sleep(deadline))
    }

    fn spawn(&self, future: BoxFuture<'static, ()>) -> io::Result<Self::Task> {
        let thread = thread::Builder::new().name("mta-sts-refresher".into());
        thread
            .spawn(move || block_on(future))
            .map(|t| JoinOnDrop(Some(t)))
    }

    fn unblock(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
        Box::pin(async move { work() })
    }

    fn connect_tcp(&self, addr: SocketAddr, deadline: Instant) -> IoFuture<Self::Tcp> {
        let connect = move || TcpStream::connect_timeout(&addr, left(deadline)?);
        let nodelay = move |tcp: TcpStream| {
            tcp.set_nodelay(true)
                .map(|()| DeadlineStream { tcp, deadline })
        };
        Box::pin(async move { connect().and_then(nodelay) })
    }

    fn set_deadline(&self, tcp: &mut Self::Tcp, deadline: Instant) {
        tcp.deadline = deadline;
    }

    fn bind_udp(&self, server: SocketAddr, deadline: Instant) -> io::Result<Self::Udp> {
        udp_socket(server).map(|socket| DeadlineSocket { socket, deadline })
    }

    fn poll_send(&self, socket: &Self::Udp, _: &mut Context<'_>, buf: &[u8]) -> PollIo<usize> {
        Poll::Ready(socket.socket.send(buf))
    }

    fn poll_recv(&self, socket: &Self::Udp, _: &mut Context<'_>, buf: &mut [u8]) -> PollIo<usize> {
        let read = left(socket.deadline).and_then(|left| {
            socket.socket.set_read_timeout(Some(left))?;
            socket.socket.recv(buf)
        });
        Poll::Ready(read)
    }

    /// rustls's own blocking I/O ([`tls_handshake`]), which writes what the handshake has to
    /// write before it waits for a read: a blocking read under futures-rustls could wait for the
    /// server while a record the server waits for is still unwritten (after a
    /// HelloRetryRequest).
    fn connect_tls(
        &self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        tcp: Self::Tcp,
    ) -> IoFuture<Box<dyn TlsStream>> {
        Box::pin(async move {
            let tls = tls_handshake(config, name, tcp)?;
            Ok(Box::new(BlockingTls(tls)) as Box<dyn TlsStream>)
        })
    }
}

/// A TLS handshake in blocking I/O on `io`, for the host `name` with `config`: rustls's own
/// `complete_io`, as the blocking runtime's policy fetches do it. For an MTA's STARTTLS to an MX
/// under a policy, give it [`mx_starttls_config`] and [`server_name`]`(mx_host)` and the
/// connection after `220 Ready` (a [`DeadlineStream`] bounds it in time). A rustls error is an
/// `io::Error` carrying the `rustls::Error`, for [`mta_sts_net::classify_tls_error`].
pub fn tls_handshake<S: Read + Write>(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    io: S,
) -> io::Result<StreamOwned<ClientConnection, S>> {
    let conn = ClientConnection::new(config, name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut tls = StreamOwned::new(conn, io);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// A TLS connection of [`BlockingRuntime`]: rustls's blocking stream over a [`DeadlineStream`].
struct BlockingTls(StreamOwned<ClientConnection, DeadlineStream>);

impl TlsStream for BlockingTls {
    fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.0.conn.protocol_version()
    }
}

impl AsyncRead for BlockingTls {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().0.read(buf))
    }
}

impl AsyncWrite for BlockingTls {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().0.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().0.flush())
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let tls = &mut self.get_mut().0;
        tls.conn.send_close_notify();
        Poll::Ready(tls.flush())
    }
}

/// The time left until `deadline`; `TimedOut` once it has passed (a zero timeout would mean
/// "wait forever" to `std::net`).
fn left(deadline: Instant) -> io::Result<Duration> {
    match deadline.saturating_duration_since(Instant::now()) {
        Duration::ZERO => Err(io::ErrorKind::TimedOut.into()),
        left => Ok(left),
    }
}

/// A TCP stream whose every read and write waits at most until its deadline, then fails with
/// `TimedOut` ([`BlockingRuntime`]'s TCP connection).
#[derive(Debug)]
pub struct DeadlineStream {
    tcp: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    /// `tcp`, each of whose reads and writes from now on waits at most until `deadline`.
    pub fn new(tcp: TcpStream, deadline: Instant) -> Self {
        Self { tcp, deadline }
    }

    /// The TCP stream, for blocking I/O of the caller's own (its timeouts are the caller's to
    /// set).
    pub fn into_std(self) -> TcpStream {
        self.tcp
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.set_read_timeout(Some(left(self.deadline)?))?;
        self.tcp.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.set_write_timeout(Some(left(self.deadline)?))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().read(buf))
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().flush())
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().tcp.shutdown(std::net::Shutdown::Write))
    }
}

/// A UDP socket whose reads wait at most until its deadline ([`BlockingRuntime`]'s DNS socket).
#[derive(Debug)]
pub struct DeadlineSocket {
    socket: UdpSocket,
    deadline: Instant,
}

/// The refresher's thread, joined when dropped (after it was told to stop).
#[derive(Debug)]
pub struct JoinOnDrop(Option<JoinHandle<()>>);

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(t) = self.0.take()
            && t.thread().id() != thread::current().id()
            && t.join().is_err()
        {
            tracing::error!("the MTA-STS refresher thread panicked");
        }
    }
}

thread_local! {
    /// The earliest deadline a [`Sleep`] polled by this thread's [`block_on`] waits for.
    static WAKE_AT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// [`BlockingRuntime`]'s timer: ready at its instant; until then it has [`block_on`] park the
/// thread no longer than that.
struct Sleep(Instant);

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.0 {
            return Poll::Ready(());
        }
        WAKE_AT.set(Some(WAKE_AT.get().map_or(self.0, |t| t.min(self.0))));
        Poll::Pending
    }
}

/// Unparks the thread of a [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future of the client to its end on this thread: its I/O happens within its polls;
/// between them (waiting for another caller's lookup, a free place among the lookups doing I/O,
/// a timer) the thread is parked until woken or until the earliest timer.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let outer = WAKE_AT.take();
    let output = loop {
        WAKE_AT.set(None);
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            break output;
        }
        match WAKE_AT.get() {
            Some(at) => thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => thread::park(),
        }
    };
    WAKE_AT.set(outer);
    output
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

    #[test]
    fn block_on_sleeps_until_the_timer_and_wakes_on_a_notification() {
        let start = Instant::now();
        block_on(BlockingRuntime.sleep_until(start + Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
        let event = Arc::new(event_listener::Event::new());
        let notifier = Arc::clone(&event);
        let listener = event.listen();
        let t = thread::spawn(move || notifier.notify(1));
        block_on(listener);
        t.join().unwrap();
    }
}

/// The examples of the crate's README.md (its page on the registry), run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
