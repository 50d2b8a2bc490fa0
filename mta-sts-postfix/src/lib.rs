//! A Postfix socketmap policy daemon for MTA-STS (RFC 8461), a drop-in for
//! postfix-mta-sts-resolver (same configuration file, same answers) on mta-sts-tokio's client: one
//! lookup per domain at a time, the engine's cache and proactive refresh, a cache file that
//! survives restarts, Prometheus metrics, SIGTERM drains and exits, SIGHUP reloads the
//! configuration. `mta-sts daemon` runs it.
//!
//! - [`config`]: the YAML file and its defaults;
//! - `netstring`: the socketmap framing;
//! - `responder`: requests to answers;
//! - `server`: listeners and connections;
//! - `limits`: the open-file limit and the connections it allows;
//! - `metrics`: the `/metrics` listener.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod daemon;
mod limits;
mod metrics;
mod netstring;
mod responder;
mod server;

pub use daemon::{LogLevel, Options, run};
