//! A Postfix socketmap policy daemon for MTA-STS (RFC 8461), a drop-in for
//! postfix-mta-sts-resolver (same configuration file, same answers) on mta-sts-tokio's client: one
//! lookup per domain at a time, the engine's cache and proactive refresh, a cache file that
//! survives restarts, Prometheus metrics, SIGTERM drains and exits, SIGHUP reloads the
//! configuration. `mta-sts daemon` is [`run`] with the command line's [`Options`].
//!
//! - [`config`]: the YAML file and its defaults;
//! - [`netstring`]: the socketmap framing;
//! - [`responder`]: requests to answers;
//! - [`Daemon`]: listeners and connections, the open-file limit and the connections it allows,
//!   the `/metrics` listener, reloads and the drain on shutdown; [`run`] adds the runtime,
//!   signals and logging.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod daemon;
mod error;
mod limits;
mod metrics;
pub mod netstring;
pub mod responder;
mod server;

pub use daemon::{Daemon, LogLevel, Options, run};
pub use error::Error;
pub use mta_sts_tokio::Clock;
