//! MTA-STS (RFC 8461) for mail servers on smol or async-std.
//!
//! A [`Client`] carries out the DNS and HTTPS requests that [`mta_sts_core`] decides on, with
//! async-net sockets, async-io timers, futures-rustls and webpki-roots. Every protocol decision
//! (what to query, when to fetch, what to cache, what a response means, what to do with each MX)
//! is the core's; the client itself (coalescing, the bound on lookups, the refresher,
//! persistence) is `mta-sts-net`'s, written once for every runtime. This crate is the smol
//! [`Runtime`] ([`SmolRuntime`]) and the names of the client on it.
//!
//! - [`Client::policy`]: the policy outcome for a domain (cached, fetched, none, temporary
//!   failure); [`Client::evaluate`]: the decision for each MX host, in priority order, with that
//!   outcome.
//! - Concurrent calls for one domain share one DNS query and one fetch; at most
//!   [`ClientBuilder::max_concurrent_lookups`] lookups do I/O at once.
//! - [`Client::spawn_refresher`]: refreshes cached policies before they expire (R44).
//! - DNS is a seam ([`Resolver`]): the built-in stub resolver by default, the MTA's own with
//!   [`ClientBuilder::resolver`].
//! - [`mx_starttls_config`] / [`server_name`]: the rustls configuration for the STARTTLS
//!   connection to an MX under a policy (PKIX against the MX host name, TLS 1.2+).
//! - TLSRPT (RFC 8460): [`ClientBuilder::tlsrpt`], [`Client::record_tls_result`],
//!   [`Client::spawn_reporter`] (see `mta-sts-tokio`'s crate documentation for an example; the
//!   API is the same).
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
//! [`server_name`]`(candidate.host())` to [`futures_rustls`]`::TlsConnector` after `220 Ready`.
//! A complete program of that path on tokio is mta-sts-tokio's [`examples/deliver.rs`][example]:
//! under smol the calls are the same, with `smol::net::TcpStream` and futures-rustls in place
//! of tokio's; with threads, [mta-sts-blocking's][blocking].
//!
//! [example]: https://github.com/mta-sts/mta-sts/blob/main/mta-sts-tokio/examples/deliver.rs
//! [blocking]: https://github.com/mta-sts/mta-sts/blob/main/mta-sts-blocking/examples/deliver.rs
//!
//! # The rustls crypto provider
//!
//! [`mx_starttls_config`] hands out a rustls 0.23 `ClientConfig`. Take [`rustls`] and
//! [`futures_rustls`] from this crate's re-exports, so that the types are the ones this crate
//! was built with (this compiles only because they are):
//!
//! ```
//! use std::sync::Arc;
//! use mta_sts_smol::{TrustAnchors, futures_rustls, mx_starttls_config, rustls, server_name};
//!
//! let config: Arc<rustls::ClientConfig> = mx_starttls_config(&TrustAnchors::webpki());
//! let connector = futures_rustls::TlsConnector::from(config);
//! let name = server_name("mx1.example.com")?; // SNI and the name the certificate must have
//! // After EHLO, STARTTLS and its `220`: `let tls = connector.connect(name, tcp).await?;`
//! # let _ = (connector, name);
//! # Ok::<(), mta_sts_smol::TlsSetupError>(())
//! ```
//!
//! The trap: rustls picks its process-wide default crypto provider by itself only when exactly
//! one provider feature (`ring`, `aws_lc_rs`) is enabled in the whole dependency graph. This
//! crate uses *ring* and enables nothing else, but rustls and futures-rustls enable `aws_lc_rs` **by default**.
//! One of them with default features in your `Cargo.toml` puts both providers in the program,
//! and from then on every `rustls::ClientConfig::builder()` (yours, or one inside another
//! library) panics at run time: "Could not automatically determine the process-level
//! CryptoProvider from Rustls crate features". It compiles; it fails at the first TLS
//! connection. Either:
//!
//! - keep one provider: use the re-exports and leave both crates out of your `Cargo.toml`, or
//!   depend on them without default features, as this workspace does:
//!
//!   ```toml
//!   [dependencies]
//!   mta-sts-smol = "0.1"
//!   rustls = { version = "0.23", default-features = false, features = ["ring", "logging", "std", "tls12"] }
//!   futures-rustls = { version = "0.26", default-features = false, features = ["ring", "logging", "tls12"] }
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
use std::net::{SocketAddr, UdpSocket};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use mta_sts_net::udp_socket;
use smol::net::TcpStream;
use smol::{Async, Timer};

mta_sts_net::adapter!(SmolRuntime, "smol and async-std");

/// futures-rustls, the version this crate is built with (on `rustls` 0.23, ring only): its
/// `TlsConnector::from(mx_starttls_config(..))` takes the configuration as it comes.
pub use mta_sts_net::futures_rustls;

/// smol as the client's [`Runtime`]: async-net sockets and async-io timers on async-io's
/// reactor (which drives itself when nobody else does, so any executor works, async-std's too),
/// smol's global executor for the refresher, the `blocking` pool for the cache file.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolRuntime;

impl Runtime for SmolRuntime {
    type Tcp = TcpStream;
    type Udp = Async<UdpSocket>;
    type Task = ();

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            Timer::at(deadline).await;
        })
    }

    fn spawn(&self, future: BoxFuture<'static, ()>) -> io::Result<()> {
        smol::spawn(future).detach();
        Ok(())
    }

    fn unblock(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
        Box::pin(smol::unblock(work))
    }

    fn connect_tcp(&self, addr: SocketAddr, _: Instant) -> IoFuture<Self::Tcp> {
        let nodelay = |tcp: TcpStream| tcp.set_nodelay(true).map(|()| tcp);
        Box::pin(async move { TcpStream::connect(addr).await.and_then(nodelay) })
    }

    fn bind_udp(&self, server: SocketAddr, _: Instant) -> io::Result<Self::Udp> {
        Async::new(udp_socket(server)?)
    }

    fn poll_send(&self, s: &Self::Udp, cx: &mut Context<'_>, b: &[u8]) -> PollIo<usize> {
        loop {
            match s.get_ref().send(b) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(s.poll_writable(cx))?,
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_recv(&self, s: &Self::Udp, cx: &mut Context<'_>, b: &mut [u8]) -> PollIo<usize> {
        loop {
            match s.get_ref().recv(b) {
                // Not readable yet: wait for the reactor (a wake-up may be spurious).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(s.poll_readable(cx))?,
                done => return Poll::Ready(done),
            }
        }
    }
}

/// The examples of the crate's README.md (its page on the registry), run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
