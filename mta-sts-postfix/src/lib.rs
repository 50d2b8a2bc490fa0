//! A Postfix socketmap policy daemon for MTA-STS (RFC 8461), a drop-in for
//! postfix-mta-sts-resolver (same configuration file, same answers) on mta-sts-tokio's client: one
//! lookup per domain at a time, the engine's cache and proactive refresh, a cache file that
//! survives restarts, Prometheus metrics, SIGTERM drains and exits, SIGHUP reloads the
//! configuration. `mta-sts daemon` is [`run`] with the command line's [`Options`].
//!
//! - [`config`]: the YAML file (`mta-sts-daemon.yml`) and its defaults;
//! - [`netstring`]: the socketmap framing;
//! - [`responder`]: requests to answers;
//! - [`Daemon`]: listeners and connections, the open-file limit and the connections it allows,
//!   the `/metrics` listener, reloads and the drain on shutdown, in the caller's runtime;
//! - [`run`]: a process, as `mta-sts daemon`: the runtime, signals and logging around a
//!   [`Daemon`].
//!
//! # Example
//!
//! One socketmap request, framed as Postfix sends it, answered by a [`Responder`] whose client
//! asks a loopback test world (mta-sts-testkit), on a clock that stands still:
//!
//! ```
//! use std::sync::Arc;
//!
//! use mta_sts_core::UnixTime;
//! use mta_sts_postfix::netstring::{self, Decoded};
//! use mta_sts_postfix::responder::{Reply, Responder};
//! use mta_sts_postfix::{Clock, config};
//! use mta_sts_testkit::{Domain, World};
//! use mta_sts_tokio::{Client, TrustAnchors};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let world = World::builder()
//!     .domain("example.com", Domain::enforce(["mx.example.com"]).txt_id("1"))
//!     .build()?;
//! let mut anchors = TrustAnchors::empty();
//! anchors.add_pem(world.ca_pem().as_bytes())?;
//! let mut core = mta_sts_core::Config::default();
//! core.https_port = world.https_port();
//! let clock: Clock = Arc::new(|| UnixTime::from_secs(1_700_000_000));
//! let client = Client::builder()
//!     .config(core)
//!     .resolvers([world.dns_addr()])
//!     .trust_anchors(anchors)
//!     .clock(clock.clone())
//!     .build()?;
//! let daemon_config = Arc::new(config::parse("cache_grace: 60\n")?);
//! let responder = Responder::new(client, daemon_config);
//!
//! // What Postfix's socketmap client sends for `socketmap:inet:127.0.0.1:8461:postfix`.
//! let mut wire = Vec::new();
//! netstring::encode(&mut wire, b"postfix example.com");
//! assert_eq!(wire, b"19:postfix example.com,");
//!
//! let Decoded::Complete { data, consumed } = netstring::decode(&wire, 1024)? else {
//!     unreachable!("a whole netstring");
//! };
//! assert_eq!(consumed, wire.len());
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let reply = runtime.block_on(responder.answer(&wire[data]));
//! assert_eq!(reply, Reply::Ok("secure match=mx.example.com servername=hostname".into()));
//!
//! let mut out = Vec::new();
//! reply.encode(&mut out);
//! assert_eq!(out, b"50:OK secure match=mx.example.com servername=hostname,");
//! # Ok(())
//! # }
//! ```
//!
//! A whole daemon in a runtime of one's own, on the configuration file's listener:
//!
//! ```no_run
//! # async fn example() -> Result<(), mta_sts_postfix::Error> {
//! use mta_sts_postfix::{Daemon, Options};
//!
//! let options = Options {
//!     config: "/etc/mta-sts-daemon.yml".into(),
//!     ..Options::default()
//! };
//! let daemon = Daemon::start(options).await?;
//! println!("socketmap on {:?}", daemon.local_addrs());
//! // … until it is time to stop: drain the connections, save the cache.
//! daemon.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! [`Responder`]: responder::Responder

#![forbid(unsafe_code)]
#![deny(missing_docs)]

// Without the default feature `daemon`, the pure parts alone: `config`, `netstring` and
// `responder::filter_domain` (what the fuzz targets build).
#[cfg(feature = "daemon")]
mod admin;
pub mod config;
#[cfg(feature = "daemon")]
mod daemon;
#[cfg(feature = "daemon")]
mod error;
#[cfg(feature = "daemon")]
mod limits;
#[cfg(feature = "daemon")]
mod metrics;
pub mod netstring;
pub mod responder;
#[cfg(feature = "daemon")]
mod server;
#[cfg(feature = "daemon")]
pub mod store;
#[cfg(feature = "daemon")]
mod systemd;

#[cfg(feature = "daemon")]
pub use daemon::{Daemon, LogLevel, Options, client_builder, run};
#[cfg(feature = "daemon")]
pub use error::Error;
#[cfg(feature = "daemon")]
pub use mta_sts_tokio::Clock;
#[cfg(feature = "daemon")]
pub use systemd::PassedSockets;

/// The examples of the crate's README.md (its page on the registry), run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
