//! Why the daemon cannot start, reload or save.

use std::fmt;
use std::io;

use crate::config::{ConfigError, Listen};

/// Why [`Daemon::start`](crate::Daemon::start) or [`Daemon::reload`](crate::Daemon::reload)
/// failed, or [`Daemon::shutdown`](crate::Daemon::shutdown) could not save the cache. Its
/// message is the daemon's log line.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file cannot be read or used (`mta-sts daemon` exits with status 2).
    Config(ConfigError),
    /// The open-file limit leaves no room for a single connection beside the files kept for
    /// lookups and listeners.
    OpenFiles {
        /// The open-file limit in force.
        limit: u64,
        /// The files kept for everything but connections.
        reserved: u64,
    },
    /// The socketmap listener cannot be bound.
    Listen {
        /// What it was to listen on.
        listen: Listen,
        /// Why it cannot.
        source: io::Error,
    },
    /// A socket passed by the service manager (socket activation, `LISTEN_FDS`) is not a
    /// listening TCP or unix stream socket.
    Activation {
        /// Its place among the passed sockets (0 is descriptor 3).
        index: usize,
        /// What is wrong with it.
        source: io::Error,
    },
    /// The `/metrics` listener cannot be bound.
    Metrics {
        /// The host of the `metrics` key.
        host: String,
        /// The port of the `metrics` key.
        port: u16,
        /// Why it cannot.
        source: io::Error,
    },
    /// The MTA-STS client cannot be set up (resolvers, trust anchors, the cache file).
    Client(mta_sts_tokio::Error),
    /// The cache cannot be written to its file.
    Save(mta_sts_tokio::PersistError),
    /// The shared store (`cache.type: sqlite`, `redis`, `redis_sentinel`, `postgres`) cannot be
    /// opened, with `cache.on_store_error: defer` (with `local` the daemon starts without it).
    Store {
        /// `cache.type`.
        kind: &'static str,
        /// What the store said.
        source: mta_sts_tokio::StoreError,
    },
    /// The admin socket (`admin_socket`) cannot be created: its directory is missing or unsafe,
    /// another process listens on it, another file is in its place.
    Admin {
        /// The socket's path.
        path: std::path::PathBuf,
        /// Why it cannot.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => e.fmt(f),
            Self::OpenFiles { limit, reserved } => write!(
                f,
                "the open-file limit ({limit}) leaves no room for connections: {reserved} files \
                 are kept for lookups and listeners; raise it (ulimit -n, LimitNOFILE=) or lower \
                 proactive_policy_fetching.concurrency_limit"
            ),
            Self::Listen { listen, source } => write!(f, "cannot listen on {listen}: {source}"),
            Self::Activation { index, source } => write!(
                f,
                "socket {index} passed by the service manager (LISTEN_FDS, descriptor {}) \
                 cannot be served: {source}",
                index + 3
            ),
            Self::Metrics { host, port, source } => {
                write!(f, "cannot listen for metrics on {host}:{port}: {source}")
            }
            Self::Client(e) => write!(f, "cannot set up MTA-STS lookups: {e}"),
            Self::Save(e) => write!(f, "cannot save the cache: {e}"),
            Self::Store { kind, source } => write!(
                f,
                "cannot open the {kind} store (cache.on_store_error: defer; with local the \
                 daemon would start without it): {source}"
            ),
            Self::Admin { path, source } => {
                write!(
                    f,
                    "cannot open the admin socket {}: {source}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::OpenFiles { .. } => None,
            Self::Listen { source, .. }
            | Self::Activation { source, .. }
            | Self::Metrics { source, .. }
            | Self::Admin { source, .. } => Some(source),
            Self::Client(e) => Some(e),
            Self::Save(e) => Some(e),
            Self::Store { source, .. } => Some(source),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}
