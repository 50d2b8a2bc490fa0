//! The daemon: the run loop, signals and reloads.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mta_sts_tokio::{Client, Clock, OnStoreError, PolicyStore, Refresher};
use tokio::signal::unix::{SignalKind, signal};

use crate::admin::AdminServer;
use crate::config::{self, ConfigError, DaemonConfig};
use crate::limits;
use crate::metrics::MetricsServer;
use crate::responder::Responder;
use crate::server::{self, Bound, Serving, Shared};
use crate::store::{self, ReopeningStore};
use crate::systemd;
use crate::{Error, PassedSockets};
use mta_sts_tokio::{ClientBuilder, system_clock};

/// How often the cache is written to its file (`cache: {type: file}`), besides after each
/// refresh round and on shutdown.
const SAVE_EVERY: Duration = Duration::from_secs(300);

/// What the daemon is started with, besides its configuration file: the command line's
/// overrides of the file's keys, the log level, and the wall clock.
#[derive(Clone)]
pub struct Options {
    /// The configuration file, in postfix-mta-sts-resolver's format (mta-sts-daemon.yml).
    pub config: PathBuf,
    /// DNS servers to ask, instead of those of /etc/resolv.conf (when not empty: overrides the
    /// `resolvers` key).
    pub resolvers: Vec<SocketAddr>,
    /// Extra trust anchors (PEM) for policy hosts (overrides the `ca_file` key).
    pub ca_file: Option<PathBuf>,
    /// The HTTPS port of policy hosts, for test worlds only (overrides the `https_port` key).
    pub https_port: Option<u16>,
    /// The log level ([`run`] logs to standard error).
    pub log_level: LogLevel,
    /// The wall clock of the client and of the responder's `cache_grace` decisions (`None`:
    /// the system clock); a test sets a virtual one. Socket timeouts stay on tokio's timers.
    pub clock: Option<Clock>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("config", &self.config)
            .field("resolvers", &self.resolvers)
            .field("ca_file", &self.ca_file)
            .field("https_port", &self.https_port)
            .field("log_level", &self.log_level)
            .field("clock", &self.clock.as_ref().map(|c| c()))
            .finish()
    }
}

impl Default for Options {
    /// The default configuration file ([`config::DEFAULT_CONFIG_PATH`]), no overrides, `info`.
    fn default() -> Self {
        Self {
            config: PathBuf::from(config::DEFAULT_CONFIG_PATH),
            resolvers: Vec::new(),
            ca_file: None,
            https_port: None,
            log_level: LogLevel::Info,
            clock: None,
        }
    }
}

/// postfix-mta-sts-resolver's log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    /// Everything, lookups included.
    Debug,
    /// Start-up, reloads and shutdown (the default).
    #[default]
    Info,
    /// Problems the daemon works around.
    Warn,
    /// Problems that stop something.
    Error,
    /// As `Error`.
    Fatal,
    /// As `Error`.
    Crit,
}

impl From<LogLevel> for tracing::Level {
    fn from(v: LogLevel) -> Self {
        match v {
            LogLevel::Debug => Self::DEBUG,
            LogLevel::Info => Self::INFO,
            LogLevel::Warn => Self::WARN,
            LogLevel::Error | LogLevel::Fatal | LogLevel::Crit => Self::ERROR,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Fatal => "fatal",
            Self::Crit => "crit",
        })
    }
}

/// Runs the daemon until SIGTERM or SIGINT, logging to standard error at `options.log_level`:
/// what `mta-sts daemon` does. SIGHUP reloads the configuration file ([`Daemon::reload`]); the
/// cache file, if any, is saved every 5 minutes and on shutdown.
///
/// Under systemd: it serves the sockets passed by socket activation (`LISTEN_FDS`, TCP and unix
/// stream sockets, see [`PassedSockets`]) in place of the file's `host`/`port` or `path`, and,
/// when `NOTIFY_SOCKET` is set, sends `READY=1` once it listens, `RELOADING=1` and then
/// `READY=1` around each SIGHUP reload, and `STOPPING=1` on SIGTERM or SIGINT (`Type=notify`).
/// It takes the passed sockets from the environment, so call it before the process starts
/// threads of its own.
///
/// Exit status 0 after a clean shutdown (also when the cache file could not be saved: that is
/// logged), 1 when it could not start, 2 for an unusable configuration. A damaged cache file
/// never stops it from starting (what loads and what is skipped or moved aside is logged).
pub fn run(options: &Options) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::from(options.log_level))
        .with_target(false)
        .try_init()
        .ok();
    // Before the runtime's threads: this unsets LISTEN_FDS and LISTEN_PID.
    let sockets = match PassedSockets::from_env() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            systemd::notify(&[&format!("STATUS={e}")]);
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(until_signalled(options, sockets));
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// The configuration file with the options' overrides.
fn load(options: &Options) -> Result<DaemonConfig, ConfigError> {
    let mut cfg = config::load(&options.config)?;
    if !options.resolvers.is_empty() {
        cfg.resolvers.clone_from(&options.resolvers);
    }
    if options.ca_file.is_some() {
        cfg.ca_file.clone_from(&options.ca_file);
    }
    if options.https_port.is_some() {
        cfg.https_port = options.https_port;
    }
    for key in &cfg.unknown_keys {
        tracing::warn!("{}: unknown key {key:?} ignored", options.config.display());
    }
    for warning in &cfg.cache.warnings {
        tracing::warn!("{}: {warning}", options.config.display());
    }
    Ok(cfg)
}

async fn until_signalled(options: &Options, sockets: PassedSockets) -> ExitCode {
    // Signals first: a SIGHUP right after start must reload, not kill.
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install the signal handlers");
        return ExitCode::from(1);
    };
    let mut daemon = match Daemon::start_with_sockets(options.clone(), sockets).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("{e}");
            systemd::notify(&[&format!("STATUS={e}")]);
            return ExitCode::from(match e {
                Error::Config(_) => 2,
                _ => 1,
            });
        }
    };
    // Listening: systemd's Type=notify start is complete.
    systemd::notify(&["READY=1", "STATUS=serving"]);
    let mut save = tokio::time::interval(SAVE_EVERY);
    save.tick().await;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                systemd::notify(&["RELOADING=1", &systemd::monotonic_usec()]);
                let status = match daemon.reload().await {
                    Ok(()) => "STATUS=serving (configuration reloaded)".to_owned(),
                    Err(e) => format!("STATUS=serving; reload failed, the running configuration stays: {e}"),
                };
                systemd::notify(&["READY=1", &status]);
            }
            _ = save.tick() => {
                let _ = daemon.save().await;
            }
        }
    }
    systemd::notify(&["STOPPING=1", "STATUS=draining connections"]);
    // A cache file that cannot be saved is logged (and was warned about at start): the
    // shutdown itself was clean, and a service manager should not see it as a failure.
    let _ = daemon.shutdown().await;
    ExitCode::SUCCESS
}

/// The running daemon, within the caller's tokio runtime (multi-threaded, with I/O and timers
/// enabled): listeners, connections, the client and its refresher, the metrics listener. It
/// installs no signal handler and no log subscriber ([`run`] does both); what it logs goes
/// through `tracing`. Stop it with [`Daemon::shutdown`]: dropped, it leaves its listeners and
/// connections to the runtime until that stops.
#[derive(Debug)]
pub struct Daemon {
    /// With its clock set.
    options: Options,
    config: Arc<DaemonConfig>,
    /// The open-file limit in force (after raising it at start-up).
    open_files: u64,
    shared: Arc<Shared>,
    serving: Serving,
    metrics: Option<MetricsServer>,
    refresher: Option<Refresher>,
    /// The shared store of `cache.type: sqlite | redis | redis_sentinel | postgres`.
    store: Option<Arc<dyn PolicyStore>>,
    /// Serving sockets passed by the service manager or the embedder: the `listen` keys are
    /// not used, and a reload never rebinds.
    passed: bool,
    /// The admin socket, when `admin_socket` is set.
    admin: Option<AdminServer>,
}

impl Daemon {
    /// Reads the configuration file (with the options' overrides; unknown keys are logged),
    /// raises the open-file limit, sets up the client (loading the cache file, if any), binds the
    /// metrics and socketmap listeners and starts serving.
    pub async fn start(options: Options) -> Result<Self, Error> {
        Self::start_with_sockets(options, PassedSockets::default()).await
    }

    /// [`Daemon::start`] on `sockets` (socket activation, or listeners of the embedder's own)
    /// in place of the configuration file's `host`/`port` or `path`; with no sockets, as
    /// [`Daemon::start`]. A reload keeps them (a changed `listen` key is logged, not applied).
    pub async fn start_with_sockets(
        options: Options,
        sockets: PassedSockets,
    ) -> Result<Self, Error> {
        let cfg = Arc::new(load(&options)?);
        let mut options = options;
        // Set once, so that a reload's client and responder get the same clock.
        let clock = options.clock.get_or_insert_with(system_clock).clone();
        let files = limits::raise_open_files();
        if files.now > files.was {
            tracing::info!(
                "open files: at most {} (raised from {})",
                files.now,
                files.was
            );
        } else {
            tracing::info!("open files: at most {}", files.now);
        }
        let max_connections = connection_limit(&cfg, files.now)?;
        let store = open_store(&cfg.cache).await?;
        let client = build_client(&cfg, &clock, store.clone())?;
        let metrics = start_metrics(&cfg).await?;
        let passed = !sockets.is_empty();
        let bound = if passed {
            bind_passed(sockets)?
        } else {
            bind(&cfg).await?
        };
        let refresher = cfg.proactive.enabled.then(|| client.spawn_refresher());
        let shared = Shared::new(Responder::new(client, cfg.clone()));
        let admin = start_admin(&cfg, &shared)?;
        let serving = bound.serve(&shared, max_connections);
        Ok(Self {
            options,
            config: cfg,
            open_files: files.now,
            shared,
            serving,
            metrics,
            refresher,
            store,
            passed,
            admin,
        })
    }

    fn clock(&self) -> Clock {
        self.options.clock.clone().unwrap_or_else(system_clock)
    }

    /// The configuration in force (the file's, with the options' overrides).
    pub fn config(&self) -> &DaemonConfig {
        &self.config
    }

    /// The client that answers now (replaced by a reload that changes its settings).
    pub fn client(&self) -> Client {
        self.shared.current().client().clone()
    }

    /// The addresses of the TCP socketmap listeners (none for a unix socket).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.serving.local_addrs()
    }

    /// The address of the `/metrics` listener, when the `metrics` key is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::addr)
    }

    /// Re-reads the configuration file and applies it, or keeps the running configuration if the
    /// new one cannot be used (bad file, address in use, unreadable CA file…); logs which.
    /// Connections are kept; each picks up the new settings at its next request.
    pub async fn reload(&mut self) -> Result<(), Error> {
        let result = self.try_reload().await;
        match &result {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(e) => {
                tracing::error!("reload failed, the running configuration stays: {e}");
            }
        }
        result
    }

    async fn try_reload(&mut self) -> Result<(), Error> {
        let new = Arc::new(load(&self.options)?);
        let old = self.config.clone();
        let current = self.shared.current();
        if new.max_connections != old.max_connections {
            tracing::warn!("max_connections changes at the next restart");
        }
        if new.admin_socket != old.admin_socket {
            tracing::warn!("admin_socket changes at the next restart");
        }
        // Prepare what can fail first, so that a failure changes nothing.
        let listen_changed = new.listen != old.listen;
        if self.passed && listen_changed {
            tracing::warn!(
                "the listen keys changed, but the daemon serves the sockets it was passed \
                 (socket activation): change the .socket unit instead"
            );
        }
        let rebind = !self.passed && listen_changed && !same_socket_path(&old, &new);
        let bound = if rebind {
            let limit = connection_limit(&new, self.open_files)?;
            Some((bind(&new).await?, limit))
        } else {
            None
        };
        let client_changed = !same_client(&old, &new);
        let store = if new.cache.backend == old.cache.backend {
            self.store.clone()
        } else {
            open_store(&new.cache).await?
        };
        let client = if client_changed {
            // The new client loads the cache file the old one leaves.
            if let Err(e) = current.client().save().await {
                tracing::warn!("cannot save the cache before the reload: {e}");
            }
            build_client(&new, &self.clock(), store.clone())?
        } else {
            current.client().clone()
        };

        // Commit.
        if let Some((bound, limit)) = bound {
            let serving = bound.serve(&self.shared, limit);
            std::mem::replace(&mut self.serving, serving).stop().await;
        } else if let config::Listen::Unix {
            path,
            mode: Some(mode),
        } = &new.listen
            && listen_changed
            && !self.passed
            && let Err(e) = server::set_mode(path, *mode)
        {
            tracing::error!("cannot set the mode of {}: {e}", path.display());
        }
        if client_changed || new.proactive.enabled != old.proactive.enabled {
            if let Some(r) = self.refresher.take() {
                r.shutdown().await;
            }
            self.refresher = new.proactive.enabled.then(|| client.spawn_refresher());
        }
        if new.metrics != old.metrics {
            // The old listener goes first: the new one may want the same port.
            if let Some(m) = self.metrics.take() {
                m.stop().await;
            }
            match start_metrics(&new).await {
                Ok(m) => self.metrics = m,
                Err(e) => tracing::error!("{e}"),
            }
        }
        self.shared.replace(Responder::new(client, new.clone()));
        self.config = new;
        self.store = store;
        Ok(())
    }

    /// Writes the cache to its file (`cache: {type: file}`; nothing otherwise); logs a failure.
    pub async fn save(&self) -> Result<(), Error> {
        self.shared.current().client().save().await.map_err(|e| {
            let e = Error::Save(e);
            tracing::warn!("{e}");
            e
        })
    }

    /// Stops accepting, lets connections answer what they received (the requests they read and
    /// those their sockets hold when the shutdown reaches them; at most `shutdown_timeout`),
    /// stops the refresher, saves the cache and stops the metrics listener. The error, logged
    /// too, says that the cache could not be saved; everything else is stopped all the same.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.serving.stop().await;
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
        self.shared.begin_shutdown();
        // Logged once every connection has been told (a test waits for this line).
        let live = self.shared.live_connections();
        tracing::info!(
            "shutting down: {live} connections to drain within {:?}",
            self.config.shutdown_timeout
        );
        if tokio::time::timeout(self.config.shutdown_timeout, self.shared.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown_timeout expired, closing {} connections",
                self.shared.live_connections()
            );
        }
        if let Some(r) = self.refresher {
            r.shutdown().await;
        }
        let mut result = Ok(());
        if let Err(e) = self.shared.current().client().shutdown().await {
            let e = Error::Save(e);
            tracing::error!("{e}");
            result = Err(e);
        }
        if let Some(m) = self.metrics {
            m.stop().await;
        }
        tracing::info!("stopped");
        result
    }
}

/// The connections served at once under `cfg` with `open_files` files: `max_connections`, or
/// fewer (with a warning) when the limit cannot hold them; an error when it cannot hold one.
fn connection_limit(cfg: &DaemonConfig, open_files: u64) -> Result<usize, Error> {
    let n = limits::connection_limit(
        cfg.max_connections,
        cfg.proactive.concurrency_limit,
        open_files,
    )?;
    if n < cfg.max_connections {
        tracing::warn!(
            "max_connections {} needs {} open files, the limit is {open_files}: serving at most \
             {n} connections at once (raise the limit: ulimit -n, LimitNOFILE=)",
            cfg.max_connections,
            cfg.max_connections as u64 + limits::reserved_files(cfg.proactive.concurrency_limit),
        );
    }
    Ok(n)
}

/// Both listen on the same unix socket (only its mode may differ): the socket is kept.
fn same_socket_path(old: &DaemonConfig, new: &DaemonConfig) -> bool {
    matches!(
        (&old.listen, &new.listen),
        (config::Listen::Unix { path: a, .. }, config::Listen::Unix { path: b, .. }) if a == b
    )
}

async fn bind(cfg: &DaemonConfig) -> Result<Bound, Error> {
    let bound = Bound::bind(&cfg.listen)
        .await
        .map_err(|source| Error::Listen {
            listen: cfg.listen.clone(),
            source,
        })?;
    for what in bound.describe() {
        tracing::info!("listening on {what}");
    }
    Ok(bound)
}

/// Listeners on sockets bound by someone else.
fn bind_passed(sockets: PassedSockets) -> Result<Bound, Error> {
    let n = sockets.len();
    let bound = Bound::passed(sockets).map_err(|source| Error::Activation { index: 0, source })?;
    tracing::info!(
        "serving {n} sockets passed by the service manager (the listen keys host, port, \
         reuse_port, path and mode are not used)"
    );
    for what in bound.describe() {
        tracing::info!("listening on {what}");
    }
    Ok(bound)
}

/// Creates the admin socket when `admin_socket` is set, serving the client in force.
fn start_admin(cfg: &DaemonConfig, shared: &Arc<Shared>) -> Result<Option<AdminServer>, Error> {
    let Some(admin) = &cfg.admin_socket else {
        return Ok(None);
    };
    let server = AdminServer::start(admin, Arc::clone(shared)).map_err(|source| Error::Admin {
        path: admin.path.clone(),
        source,
    })?;
    tracing::info!(
        "admin socket on {} (mode {:04o})",
        server.path().display(),
        admin.mode
    );
    Ok(Some(server))
}

async fn start_metrics(cfg: &DaemonConfig) -> Result<Option<MetricsServer>, Error> {
    let Some((host, port)) = &cfg.metrics else {
        return Ok(None);
    };
    let m = MetricsServer::start(host, *port)
        .await
        .map_err(|source| Error::Metrics {
            host: host.clone(),
            port: *port,
            source,
        })?;
    tracing::info!("metrics listening on http://{}/metrics", m.addr());
    Ok(Some(m))
}

/// Whether two configurations need the same client (cache, lookups, trust).
fn same_client(a: &DaemonConfig, b: &DaemonConfig) -> bool {
    a.cache == b.cache
        && a.default_zone.timeout == b.default_zone.timeout
        && a.proactive.interval == b.proactive.interval
        && a.proactive.concurrency_limit == b.proactive.concurrency_limit
        && a.resolvers == b.resolvers
        && a.ca_file == b.ca_file
        && a.https_port == b.https_port
        && a.cache_grace == b.cache_grace
}

/// The client for a configuration: the engine's settings from the file's keys, and the shared
/// store, if any.
fn build_client(
    cfg: &DaemonConfig,
    clock: &Clock,
    store: Option<Arc<dyn PolicyStore>>,
) -> Result<Client, Error> {
    let mut builder = client_builder(cfg).clock(clock.clone());
    if let Some(store) = store {
        builder = builder.store(store);
    }
    builder.build().map_err(Error::Client)
}

/// Opens the shared store of `cache` (none for `internal` and `file`). One that cannot be
/// opened stops the start (or the reload) with `on_store_error: defer`; with `local` (the
/// default) it is logged and the daemon goes on without it, trying again at most every
/// [`store::REOPEN_EVERY`] while lookups go on as without a store.
async fn open_store(cache: &config::Cache) -> Result<Option<Arc<dyn PolicyStore>>, Error> {
    if !cache.backend.is_store() {
        return Ok(None);
    }
    let kind = cache.backend.type_name();
    let opened = match store::open_store(&cache.backend).await {
        Ok(opened) => {
            tracing::info!("cache: the {kind} store is open");
            opened
        }
        Err(source) if cache.on_store_error == config::StoreErrorPolicy::Defer => {
            return Err(Error::Store { kind, source });
        }
        Err(e) => {
            tracing::warn!(
                "cache: cannot open the {kind} store, going on without it (on_store_error: \
                 local; tried again at most every {}s): {e}",
                store::REOPEN_EVERY.as_secs()
            );
            None
        }
    };
    Ok(Some(Arc::new(ReopeningStore::new(
        cache.backend.clone(),
        opened,
    ))))
}

/// The builder of the client the daemon runs for `cfg`: the engine's settings from the file's
/// keys (cache size, timeouts, refresh interval, `cache_grace` as the core's
/// [`Config::recheck_after`](mta_sts_core::Config), the HTTPS port), the resolvers, the extra
/// trust anchors, the cache file and the bound on lookups at once. A test or an embedder adds
/// its own clock or anchors before `build`.
pub fn client_builder(cfg: &DaemonConfig) -> ClientBuilder {
    let mut core = mta_sts_core::Config::default();
    core.capacity = cfg.cache.size;
    core.dns_timeout = cfg.default_zone.timeout;
    core.fetch_timeout = cfg.default_zone.timeout;
    core.refresh_interval = cfg.proactive.interval;
    // A cached policy's TXT id is checked again once per cache_grace, as
    // postfix-mta-sts-resolver does (RFC 8461 §5.1 step 1's optional unconditional check).
    core.recheck_after = Some(cfg.cache_grace);
    if let Some(port) = cfg.https_port {
        core.https_port = port;
    }
    // The seed stays 0: the builder draws a random one, so each process refreshes on its own
    // schedule (see Config::seed).
    let mut builder = Client::builder()
        .config(core)
        .max_concurrent_lookups(cfg.proactive.concurrency_limit);
    if !cfg.resolvers.is_empty() {
        builder = builder.resolvers(cfg.resolvers.iter().copied());
    }
    if let Some(ca) = &cfg.ca_file {
        builder = builder.extra_roots_file(ca);
    }
    if let Some(file) = &cfg.cache.file {
        builder = builder.persistence(file);
    }
    builder = builder.on_store_error(match cfg.cache.on_store_error {
        config::StoreErrorPolicy::Local => OnStoreError::Local,
        config::StoreErrorPolicy::Defer => OnStoreError::Defer,
    });
    builder
}
