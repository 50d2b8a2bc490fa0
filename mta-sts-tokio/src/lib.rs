//! MTA-STS (RFC 8461) for tokio-based mail servers.
//!
//! A [`Client`] carries out the DNS and HTTPS requests that [`mta_sts_core`] decides on, with
//! tokio's sockets and timers, rustls and webpki-roots. Every protocol decision (what to query,
//! when to fetch, what to cache, what a response means, what to do with each MX) is the core's;
//! the client itself (coalescing, the bound on lookups, the refresher, persistence) is
//! `mta-sts-net`'s, written once for every runtime. This crate is the tokio [`Runtime`]
//! ([`TokioRuntime`]) and the names of the client on it.
//!
//! - [`Client::policy`]: the policy outcome for a domain (cached, fetched, none, temporary
//!   failure); [`Client::evaluate`]: the decision for each MX host, in priority order, with that
//!   outcome.
//! - Concurrent calls for one domain share one DNS query and one fetch; at most
//!   [`ClientBuilder::max_concurrent_lookups`] lookups do I/O at once.
//! - [`Client::spawn_refresher`]: refreshes cached policies before they expire (R44).
//! - DNS is a seam ([`Resolver`]): the built-in stub resolver by default, the MTA's own with
//!   [`ClientBuilder::resolver`]; with the cargo feature `hickory`, a hickory-resolver
//!   `TokioResolver` is one.
//! - [`mx_starttls_config`] / [`server_name`]: the rustls configuration for the STARTTLS
//!   connection to an MX under a policy (PKIX against the MX host name, TLS 1.2+).
//! - [`rustls`] and [`tokio_rustls`], re-exported for that connection (see [the rustls crypto
//!   provider](#the-rustls-crypto-provider) before adding either to your `Cargo.toml`).
//!
//! A complete program, from the client's construction to its shutdown, delivering to the MX
//! hosts of `mta-sts-testkit`'s loopback world with the policy enforced (STARTTLS with
//! [`mx_starttls_config`], a refused certificate, defer and recheck, TLSRPT, the cache file,
//! the refresher): [`examples/deliver.rs`][example], run with
//! `cargo run -p mta-sts-tokio --example deliver`.
//!
//! [example]: https://github.com/mta-sts/mta-sts/blob/main/mta-sts-tokio/examples/deliver.rs
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
//!
//! // On the way out: stop refreshing, keep the policies for the next start.
//! _refresher.shutdown().await;
//! client.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # TLSRPT (RFC 8460)
//!
//! With [`ClientBuilder::tlsrpt`] the client counts, per policy domain and UTC day, the policy
//! fetch failures it meets by itself and the TLS sessions the MTA tells it of
//! ([`Client::record_tls_result`]), and its reporting task ([`Client::spawn_reporter`]) sends
//! each domain the report of each day after midnight: the domain's `_smtp._tls` record is
//! looked up, each `https:` URI gets a POST (`application/tlsrpt+gzip`; only a 2xx answer is
//! delivered, anything else is retried for 24 hours) and each `mailto:` URI a message handed
//! to your callback. Counters: [`Client::tlsrpt_stats`] and the `metrics` facade
//! (`mta_sts_tlsrpt_reports_total{result}`, see [`TlsRptStats`]).
//!
//! ```no_run
//! use mta_sts_tokio::{
//!     CertificateProblem, Client, Reporter, TlsFailure, TlsResult, TlsRptSettings, is_report_mail,
//! };
//!
//! # fn queue_without_tls(_from: &str, _to: &str, _message: &[u8]) -> Result<(), String> { Ok(()) }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tlsrpt = TlsRptSettings::new(Reporter::new(
//!     "Example Mail",            // organization-name
//!     "tlsrpt@mail.example.net", // contact-info
//!     "mail.example.net",        // the submitter: this MTA's domain
//! ))
//! .persistence("/var/lib/mta/tlsrpt.json") // the day's counts and pending reports
//! .mailto(|mail| queue_without_tls(&mail.from, &mail.to, &mail.message));
//! let client = Client::builder().tlsrpt(tlsrpt).build()?;
//! let reporter = client.spawn_reporter();
//!
//! // After each STARTTLS session to an MX host of example.com (never for a report mail:
//! // `is_report_mail(&message)`):
//! # let message: &[u8] = b"";
//! if !is_report_mail(message) {
//!     let ok = TlsResult::success("example.com", "mx1.example.com")
//!         .receiving_ip("192.0.2.25".parse()?);
//!     client.record_tls_result(&ok);
//!     let expired = TlsFailure::Certificate(CertificateProblem::Expired);
//!     client.record_tls_result(&TlsResult::failure("example.com", "mx2.example.com", expired));
//! }
//!
//! // On the way out: the task saves the state when it stops.
//! reporter.shutdown().await;
//! client.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # The rustls crypto provider
//!
//! [`mx_starttls_config`] hands out a rustls 0.23 `ClientConfig`. Take [`rustls`] and
//! [`tokio_rustls`] from this crate's re-exports, so that the types are the ones this crate was
//! built with (this compiles only because they are):
//!
//! ```
//! use std::sync::Arc;
//! use mta_sts_tokio::{TrustAnchors, mx_starttls_config, rustls, server_name, tokio_rustls};
//!
//! let config: Arc<rustls::ClientConfig> = mx_starttls_config(&TrustAnchors::webpki());
//! let connector = tokio_rustls::TlsConnector::from(config);
//! let name = server_name("mx1.example.com")?; // SNI and the name the certificate must have
//! // After EHLO, STARTTLS and its `220`: `let tls = connector.connect(name, tcp).await?;`
//! # let _ = (connector, name);
//! # Ok::<(), mta_sts_tokio::TlsSetupError>(())
//! ```
//!
//! The trap: rustls picks its process-wide default crypto provider by itself only when exactly
//! one provider feature (`ring`, `aws_lc_rs`) is enabled in the whole dependency graph. This
//! crate uses *ring* and enables nothing else, but rustls, tokio-rustls (and hickory-resolver's
//! TLS features) enable `aws_lc_rs` **by default**. One of them with default features in your
//! `Cargo.toml` puts both providers in the program, and from then on every
//! `rustls::ClientConfig::builder()` (yours, or one inside another library) panics at run time:
//! "Could not automatically determine the process-level CryptoProvider from Rustls crate
//! features". It compiles; it fails at the first TLS connection. Either:
//!
//! - keep one provider: use the re-exports and leave both crates out of your `Cargo.toml`, or
//!   depend on them without default features, as this workspace does:
//!
//!   ```toml
//!   [dependencies]
//!   mta-sts-tokio = "0.1"
//!   rustls = { version = "0.23", default-features = false, features = ["ring", "logging", "std", "tls12"] }
//!   tokio-rustls = { version = "0.26", default-features = false, features = ["ring", "logging", "tls12"] }
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

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use mta_sts_net::udp_socket;
use tokio::io::{Interest, Ready};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

mta_sts_net::adapter!(TokioRuntime, "tokio");

/// hickory-resolver's tokio resolver, which is a [`Resolver`] (cargo feature `hickory`):
/// `Client::builder().resolver(resolver)`.
#[cfg(feature = "hickory")]
pub type HickoryResolver = hickory_resolver::TokioResolver;

#[cfg(feature = "hickory")]
pub use hickory_resolver;

/// tokio-rustls, the version this crate is built with (on `rustls` 0.23, ring only): its
/// `TlsConnector::from(mx_starttls_config(..))` takes the configuration as it comes.
pub use tokio_rustls;

/// tokio as the client's [`Runtime`]: tokio's sockets, timers (and so its paused test clock),
/// tasks and blocking pool. The client must be used within a tokio runtime with IO and time
/// enabled.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    type Tcp = Compat<TcpStream>;
    type Udp = Udp;
    type Task = ();

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn spawn(&self, future: BoxFuture<'static, ()>) -> io::Result<()> {
        drop(tokio::spawn(future));
        Ok(())
    }

    fn unblock(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
        Box::pin(async move { drop(tokio::task::spawn_blocking(work).await) })
    }

    fn connect_tcp(&self, addr: SocketAddr, _: Instant) -> IoFuture<Self::Tcp> {
        let nodelay = |tcp: TcpStream| tcp.set_nodelay(true).map(|()| tcp.compat());
        Box::pin(async move { TcpStream::connect(addr).await.and_then(nodelay) })
    }

    fn bind_udp(&self, server: SocketAddr, _: Instant) -> io::Result<Self::Udp> {
        let socket = udp_socket(server)?;
        socket.set_nonblocking(true)?;
        let socket = Arc::new(UdpSocket::from_std(socket)?);
        Ok(Udp {
            socket,
            waiting: Mutex::new(None),
        })
    }

    fn poll_send(&self, s: &Self::Udp, cx: &mut Context<'_>, b: &[u8]) -> PollIo<usize> {
        s.socket.poll_send(cx, b)
    }

    /// Woken by an answer or by a socket error (a refused query: ICMP port unreachable), which
    /// tokio's own `poll_recv` never wakes for, so that a refused server is told at once rather
    /// than after the attempt's timeout.
    fn poll_recv(&self, s: &Self::Udp, cx: &mut Context<'_>, b: &mut [u8]) -> PollIo<usize> {
        loop {
            match s.socket.try_recv(b) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
            let mut waiting = s.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            let ready = waiting.get_or_insert_with(|| {
                let socket = Arc::clone(&s.socket);
                Box::pin(async move { socket.ready(Interest::READABLE | Interest::ERROR).await })
            });
            let ready = ready!(ready.as_mut().poll(cx));
            *waiting = None;
            if ready?.is_error() {
                let error = s.socket.take_error()?;
                return Poll::Ready(Err(error.unwrap_or_else(|| io::ErrorKind::Other.into())));
            }
        }
    }
}

/// [`TokioRuntime`]'s DNS socket: tokio's, with the wait for its readiness kept across polls.
pub struct Udp {
    socket: Arc<UdpSocket>,
    waiting: Mutex<Option<BoxFuture<'static, io::Result<Ready>>>>,
}

impl std::fmt::Debug for Udp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.socket.fmt(f)
    }
}

/// The examples of the crate's README.md (its page on the registry), run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
