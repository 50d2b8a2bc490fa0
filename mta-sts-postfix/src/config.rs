//! The daemon's configuration: postfix-mta-sts-resolver's YAML file (`mta-sts-daemon.yml`), its
//! keys and defaults, plus this daemon's own keys.
//!
//! postfix-mta-sts-resolver reads the file with PyYAML, which follows YAML 1.1: `mode: 0666` is
//! octal and `reuse_port: yes` is a boolean. yaml_serde follows YAML 1.2, so every scalar is read
//! as its source text and interpreted here with the YAML 1.1 rules PyYAML applies.

use mta_sts_core::{DnsTempFailure, DomainSettings};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

mod cache;
mod depth;

use cache::RawCache;
pub use cache::{Cache, CacheBackend, MAX_SENTINELS, RedisConnection, StoreErrorPolicy};

/// Where postfix-mta-sts-resolver looks for its configuration.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mta-sts-daemon.yml";

/// How deeply `text` nests, as the [`MAX_NESTING`] check counts it, for the fuzz target that
/// holds it to the parser's own count.
#[cfg(fuzzing)]
pub fn nesting_depth(text: &str) -> usize {
    depth::max_depth(text)
}

/// The largest configuration read, in bytes (1 MiB; postfix-mta-sts-resolver's examples take
/// a few hundred): a larger one is refused ([`ConfigErrorKind::TooLarge`]) before it is parsed.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The deepest nesting of collections (mappings and lists, block or flow) a configuration may
/// have: its keys nest 3 deep (`zones.<name>.tlsrpt`). A deeper text is refused
/// ([`ConfigErrorKind::TooDeep`]) after one pass over it, before the YAML parser, whose time
/// grows with the square of the depth, sees it.
pub const MAX_NESTING: usize = 64;

/// postfix-mta-sts-resolver's defaults (its `defaults.py`, version 1.5.1).
pub(crate) mod defaults {
    pub(crate) const HOST: &str = "127.0.0.1";
    pub(crate) const PORT: u16 = 8461;
    pub(crate) const REUSE_PORT: bool = true;
    pub(crate) const TIMEOUT_SECS: f64 = 4.0;
    pub(crate) const TLSRPT: bool = false;
    pub(crate) const DANE: bool = true;
    pub(crate) const SHUTDOWN_TIMEOUT_SECS: f64 = 20.0;
    pub(crate) const STRICT_TESTING: bool = false;
    pub(crate) const REQUIRE_SNI: bool = true;
    pub(crate) const CACHE_GRACE_SECS: f64 = 60.0;
    pub(crate) const INTERNAL_CACHE_SIZE: usize = 10_000;
    pub(crate) const PROACTIVE_FETCH_INTERVAL_SECS: u64 = 86_400;
    pub(crate) const PROACTIVE_FETCH_CONCURRENCY_LIMIT: usize = 100;
    pub(crate) const PROACTIVE_FETCH_GRACE_RATIO: f64 = 2.0;
    // This daemon's own keys.
    pub(crate) const MAX_CONNECTIONS: usize = 10_000;
    pub(crate) const IDLE_TIMEOUT_SECS: f64 = 300.0;
    pub(crate) const WRITE_TIMEOUT_SECS: f64 = 30.0;
    pub(crate) const METRICS_HOST: &str = "127.0.0.1";
    pub(crate) const METRICS_PORT: u16 = 9461;
}

/// The configuration, checked and with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// The socketmap listener.
    pub listen: Listen,
    /// A cached policy is answered without a DNS query for this long after the last TXT check
    /// of its domain; after that, the next request re-checks the TXT id first.
    pub cache_grace: Duration,
    /// On SIGTERM, how long connections get to finish.
    pub shutdown_timeout: Duration,
    /// The policy cache.
    pub cache: Cache,
    /// Proactive refresh of cached policies (RFC 8461 §3.3, R44).
    pub proactive: Proactive,
    /// The settings for requests whose map name has no zone of its own.
    pub default_zone: Zone,
    /// Settings by socketmap name (`socketmap:inet:host:port:NAME`).
    pub zones: BTreeMap<String, Zone>,
    /// The Prometheus listener, when enabled.
    pub metrics: Option<(String, u16)>,
    /// DNS servers (default: those of /etc/resolv.conf).
    pub resolvers: Vec<SocketAddr>,
    /// Extra trust anchors for policy hosts (PEM).
    pub ca_file: Option<PathBuf>,
    /// The HTTPS port of policy hosts (443; test worlds only).
    pub https_port: Option<u16>,
    /// Most socketmap connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// A connection whose peer does not take its replies for this long is closed.
    pub write_timeout: Duration,
    /// Keys that are not known (postfix-mta-sts-resolver ignores them too), for a warning.
    pub unknown_keys: Vec<String>,
    /// The operator's admin socket (`admin_socket`, `admin_socket_mode`,
    /// `admin_socket_group`), through which `mta-sts cache … --socket` works on the running
    /// daemon's cache; off unless set.
    pub admin_socket: Option<AdminSocket>,
}

/// The admin socket: a unix socket of its own (never the socketmap one), one JSON request per
/// line, access controlled by the socket file's permissions. Off unless `admin_socket` is set:
/// a drop-in for postfix-mta-sts-resolver opens nothing it did not, and the directory it needs
/// (such as systemd's `RuntimeDirectory=mta-sts`, `/run/mta-sts`) is the packager's choice.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminSocket {
    /// The socket file (`admin_socket`), an absolute path; its directory must exist and must not
    /// be world-writable without the sticky bit.
    pub path: PathBuf,
    /// Its file mode (`admin_socket_mode`): 0600 by default, 0660 with a group; no permission
    /// for others is accepted.
    pub mode: u32,
    /// The group that owns it (`admin_socket_group`, a name from /etc/group or a number): its
    /// members may use the socket when the mode lets the group write.
    pub group: Option<String>,
}

impl AdminSocket {
    /// An admin socket at `path` with mode 0600 and no group.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            mode: 0o600,
            group: None,
        }
    }
}

/// Where the socketmap service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// TCP on every address `host` resolves to.
    Tcp {
        /// A host name or an IP address (`host`).
        host: String,
        /// The port (`port`; 0 picks a free one).
        port: u16,
        /// Sets `SO_REUSEPORT` (`reuse_port`).
        reuse_port: bool,
    },
    /// A unix socket (`path`), with this file mode (`mode`; default: the umask's).
    Unix {
        /// The socket file.
        path: PathBuf,
        /// Its file mode.
        mode: Option<u32>,
    },
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port, .. } => write!(f, "tcp {host}:{port}"),
            Self::Unix { path, .. } => write!(f, "unix {}", path.display()),
        }
    }
}

/// `proactive_policy_fetching`.
#[derive(Debug, Clone, PartialEq)]
pub struct Proactive {
    /// On unless the file says `enabled: false` (postfix-mta-sts-resolver's default is off; the
    /// RFC says SHOULD refresh).
    pub enabled: bool,
    /// Each cached policy is refetched about this long after its last fetch.
    pub interval: Duration,
    /// Most lookups (refreshes and requests) doing DNS and HTTPS at once.
    pub concurrency_limit: usize,
    /// Read and checked for compatibility; the engine spreads refreshes itself.
    pub grace_ratio: f64,
}

/// The answer settings of a socketmap name (`default_zone` or `zones.<name>`).
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// Answer `testing` policies like `enforce` ones.
    pub strict_testing: bool,
    /// DNS and HTTPS timeout. Only `default_zone`'s is used: all zones share one cache and one
    /// lookup per domain.
    pub timeout: Duration,
    /// Add `servername=hostname` (SNI, RFC 8461 §7.1; Postfix 3.4 and later).
    pub require_sni: bool,
    /// Add the TLSRPT attributes of Postfix 3.10 (`policy_type=sts` …).
    pub tlsrpt: bool,
    /// A temporary DNS failure with nothing cached gets `TEMP` (Postfix defers the mail) instead
    /// of `NOTFOUND` (delivery without MTA-STS, the RFC's literal reading and the default).
    pub defer_on_dns_failure: bool,
    /// Decide the destination's DANE state before the MTA-STS answer, so that MTA-STS never
    /// overrides DANE (RFC 8461 §2): `OK dane-only`, `OK dane`, `TEMP` or `OK encrypt` where
    /// DANE governs, the MTA-STS answer where the DNS proves it does not. `false`: the MTA-STS
    /// answer alone, as before.
    pub dane: bool,
}

impl Zone {
    /// The core's per-domain settings this zone stands for: its DNS-failure choice
    /// (`defer_on_dns_failure`: [`DnsTempFailure::Defer`], else the default
    /// [`DnsTempFailure::DeliverWithoutSts`]), so that the daemon decides as the library does.
    pub fn settings(&self) -> DomainSettings {
        let mut settings = DomainSettings::default();
        if self.defer_on_dns_failure {
            settings.dns_temp_failure = DnsTempFailure::Defer;
        }
        settings
    }
}

impl Default for Zone {
    fn default() -> Self {
        Self {
            strict_testing: defaults::STRICT_TESTING,
            timeout: Duration::from_secs_f64(defaults::TIMEOUT_SECS),
            require_sni: defaults::REQUIRE_SNI,
            tlsrpt: defaults::TLSRPT,
            defer_on_dns_failure: false,
            dane: defaults::DANE,
        }
    }
}

impl DaemonConfig {
    /// The zone for a socketmap name: its own, else `default_zone`.
    pub fn zone(&self, name: &str) -> &Zone {
        self.zones.get(name).unwrap_or(&self.default_zone)
    }
}

/// Why a configuration cannot be used: what is wrong ([`ConfigError::kind`]) and, for a file
/// read by [`load`], which file ([`ConfigError::file`]). Its message is the daemon's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: Option<PathBuf>,
    kind: ConfigErrorKind,
}

/// What is wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file cannot be read.
    Read {
        /// The I/O error's kind.
        kind: std::io::ErrorKind,
        /// The I/O error's message.
        message: String,
    },
    /// The file holds no settings: it is empty, or holds only whitespace, comments or an empty
    /// YAML document (`---`, `~`). Refused, at start and on SIGHUP alike: such a file is far
    /// more often one caught half-written than a wish for every default (`{}` says that).
    Empty,
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    TooLarge {
        /// [`MAX_CONFIG_BYTES`].
        limit: usize,
    },
    /// Collections nest deeper than [`MAX_NESTING`].
    TooDeep {
        /// [`MAX_NESTING`].
        limit: usize,
        /// The line (from 1) where the nesting goes past it.
        line: usize,
    },
    /// The text is not YAML, or not the shape of the configuration (a list where a key's value
    /// should be, …): the YAML parser's message.
    Syntax(String),
    /// A key's value cannot be used.
    Value {
        /// The key, dotted from the top (`default_zone.timeout`).
        key: String,
        /// What is wrong with its value.
        message: String,
    },
}

impl ConfigError {
    fn new(kind: ConfigErrorKind) -> Self {
        Self { file: None, kind }
    }

    fn in_file(mut self, path: &Path) -> Self {
        self.file = Some(path.to_path_buf());
        self
    }

    /// What is wrong.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }

    /// The file it is about ([`load`]; `None` from [`parse`]).
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, &self.kind) {
            (Some(file), ConfigErrorKind::Read { message, .. }) => {
                write!(f, "cannot read {}: {message}", file.display())
            }
            (Some(file), kind) => write!(f, "{}: {kind}", file.display()),
            (None, kind) => kind.fmt(f),
        }
    }
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { message, .. } => write!(f, "cannot read: {message}"),
            Self::Empty => f.write_str(
                "the file is empty (no settings: only whitespace, comments or an empty document); \
                 write {} to run on the defaults",
            ),
            Self::TooLarge { limit } => write!(
                f,
                "larger than {limit} bytes, the most a configuration may have"
            ),
            Self::TooDeep { limit, line } => write!(
                f,
                "nested more than {limit} levels deep (at line {line}), the most a configuration \
                 may have"
            ),
            Self::Syntax(message) => f.write_str(message),
            Self::Value { key, message } => write!(f, "{key}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and checks the configuration file. A file without settings is refused
/// ([`ConfigErrorKind::Empty`]), unlike an empty text given to [`parse`].
pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
    let text = read(path).map_err(|e| e.in_file(path))?;
    // Whitespace and comments alone are an empty file even where YAML would call a tab an
    // error; a null document (`---`, `~`) is one too.
    match if blank(&text) {
        Ok(None)
    } else {
        parse_raw(&text)
    } {
        Ok(Some(raw)) => raw.check(unknown_top_level_keys(&text)),
        Ok(None) => Err(ConfigError::new(ConfigErrorKind::Empty)),
        Err(e) => Err(e),
    }
    .map_err(|e| e.in_file(path))
}

/// The file's text, refused past [`MAX_CONFIG_BYTES`] without reading further.
fn read(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let io_error = |e: std::io::Error| {
        ConfigError::new(ConfigErrorKind::Read {
            kind: e.kind(),
            message: e.to_string(),
        })
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(io_error)?;
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::new(ConfigErrorKind::TooLarge {
            limit: MAX_CONFIG_BYTES,
        }));
    }
    Ok(text)
}

/// Whether a text holds only whitespace and comments (after a byte order mark, if any).
fn blank(text: &str) -> bool {
    text.trim_start_matches('\u{feff}').lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    })
}

/// Parses and checks a configuration text. A text without settings (empty, whitespace,
/// comments, an empty document) gives every default, as postfix-mta-sts-resolver reads it;
/// [`load`] refuses such a file.
pub fn parse(text: &str) -> Result<DaemonConfig, ConfigError> {
    parse_raw(text)?
        .unwrap_or_default()
        .check(unknown_top_level_keys(text))
}

/// The text's settings, `None` when it has none (an empty or null document). Its size and
/// nesting are checked first.
fn parse_raw(text: &str) -> Result<Option<RawConfig>, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::new(ConfigErrorKind::TooLarge {
            limit: MAX_CONFIG_BYTES,
        }));
    }
    depth::check(text, MAX_NESTING).map_err(|line| {
        ConfigError::new(ConfigErrorKind::TooDeep {
            limit: MAX_NESTING,
            line,
        })
    })?;
    yaml_serde::from_str(text).map_err(|e| ConfigError::new(ConfigErrorKind::Syntax(e.to_string())))
}

const KNOWN_KEYS: &[&str] = &[
    "host",
    "port",
    "path",
    "mode",
    "reuse_port",
    "cache_grace",
    "shutdown_timeout",
    "cache",
    "proactive_policy_fetching",
    "default_zone",
    "zones",
    "metrics",
    "resolvers",
    "ca_file",
    "https_port",
    "max_connections",
    "idle_timeout",
    "write_timeout",
    "admin_socket",
    "admin_socket_mode",
    "admin_socket_group",
];

fn unknown_top_level_keys(text: &str) -> Vec<String> {
    let Ok(Some(map)) = yaml_serde::from_str::<Option<BTreeMap<String, de::IgnoredAny>>>(text)
    else {
        return Vec::new();
    };
    map.into_keys()
        .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
        .collect()
}

/// A scalar as written in the file (its source text), interpreted with YAML 1.1 rules later.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar (string, number or boolean)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        // yaml_serde hands a plain scalar's source text to `deserialize_string`.
        d.deserialize_string(V)
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    host: Option<Scalar>,
    port: Option<Scalar>,
    path: Option<Scalar>,
    mode: Option<Scalar>,
    reuse_port: Option<Scalar>,
    cache_grace: Option<Scalar>,
    shutdown_timeout: Option<Scalar>,
    cache: Option<RawCache>,
    proactive_policy_fetching: Option<RawProactive>,
    default_zone: Option<RawZone>,
    zones: Option<BTreeMap<String, Option<RawZone>>>,
    metrics: Option<RawMetrics>,
    resolvers: Option<Vec<Scalar>>,
    ca_file: Option<Scalar>,
    https_port: Option<Scalar>,
    max_connections: Option<Scalar>,
    idle_timeout: Option<Scalar>,
    write_timeout: Option<Scalar>,
    admin_socket: Option<Scalar>,
    admin_socket_mode: Option<Scalar>,
    admin_socket_group: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
struct RawProactive {
    enabled: Option<Scalar>,
    interval: Option<Scalar>,
    concurrency_limit: Option<Scalar>,
    grace_ratio: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
struct RawZone {
    strict_testing: Option<Scalar>,
    timeout: Option<Scalar>,
    require_sni: Option<Scalar>,
    tlsrpt: Option<Scalar>,
    defer_on_dns_failure: Option<Scalar>,
    dane: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMetrics {
    host: Option<Scalar>,
    port: Option<Scalar>,
}

fn err(key: &str, message: impl fmt::Display) -> ConfigError {
    ConfigError::new(ConfigErrorKind::Value {
        key: key.to_owned(),
        message: message.to_string(),
    })
}

/// YAML 1.1 booleans, as PyYAML resolves them.
fn boolean(key: &str, v: Option<&Scalar>, default: bool) -> Result<bool, ConfigError> {
    let Some(Scalar(s)) = v else {
        return Ok(default);
    };
    match s.as_str() {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Ok(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Ok(false),
        _ => Err(err(key, format!("{s:?} is not a boolean (true or false)"))),
    }
}

/// A YAML 1.1 integer: decimal, `0x` hex, `0o` or leading-zero octal, `_` separators.
fn integer(key: &str, s: &str) -> Result<u64, ConfigError> {
    let t: String = s.trim().trim_start_matches('+').replace('_', "");
    let parsed = if let Some(h) = t.strip_prefix("0x") {
        u64::from_str_radix(h, 16)
    } else if let Some(o) = t.strip_prefix("0o") {
        u64::from_str_radix(o, 8)
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(&t[1..], 8)
    } else {
        t.parse::<u64>()
    };
    parsed.map_err(|_| err(key, format!("{s:?} is not a non-negative integer")))
}

fn int_or(key: &str, v: Option<&Scalar>, default: u64) -> Result<u64, ConfigError> {
    v.map_or(Ok(default), |Scalar(s)| integer(key, s))
}

/// Seconds, integer or decimal, at least 0.
fn seconds(key: &str, v: Option<&Scalar>, default: f64) -> Result<Duration, ConfigError> {
    let secs = match v {
        None => default,
        Some(Scalar(s)) => {
            let t = s.trim().replace('_', "");
            match t.parse::<f64>() {
                Ok(f) if (0.0..1e12).contains(&f) => f,
                _ => return Err(err(key, format!("{s:?} is not a number of seconds"))),
            }
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

fn port(key: &str, v: Option<&Scalar>, default: u16) -> Result<u16, ConfigError> {
    let p = int_or(key, v, u64::from(default))?;
    u16::try_from(p).map_err(|_| err(key, format!("{p} is not a port number")))
}

fn positive(key: &str, v: Option<&Scalar>, default: usize) -> Result<usize, ConfigError> {
    let n = int_or(key, v, default as u64)?;
    match usize::try_from(n) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(err(key, format!("{n} must be at least 1"))),
    }
}

fn text(v: Option<&Scalar>) -> Option<String> {
    v.map(|Scalar(s)| s.clone()).filter(|s| !s.is_empty())
}

/// `IP`, `IP:PORT`, `[IPv6]` or `[IPv6]:PORT` (port 53 when none is given): the `resolvers` key,
/// and every `--resolver` flag of the `mta-sts` command.
pub fn parse_resolver(s: &str) -> Result<SocketAddr, InvalidResolver> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| InvalidResolver(s.to_owned()))
}

/// A resolver address that [`parse_resolver`] does not take (the text given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidResolver(String);

impl fmt::Display for InvalidResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a resolver address: use an IP address, e.g. 192.0.2.53:53 or \
             [2001:db8::53]:53",
            self.0
        )
    }
}

impl std::error::Error for InvalidResolver {}

/// The unix socket mode: PyYAML reads `0666` as octal, and so does this (as does `0o666`);
/// a number without a leading zero is decimal, as in PyYAML.
fn file_mode(v: Option<&Scalar>) -> Result<Option<u32>, ConfigError> {
    let Some(Scalar(s)) = v else {
        return Ok(None);
    };
    let mode = integer("mode", s)?;
    match u32::try_from(mode) {
        Ok(m) if m <= 0o7777 => Ok(Some(m)),
        _ => Err(err(
            "mode",
            format!("{s:?} is not a file mode such as 0666"),
        )),
    }
}

/// `admin_socket`, `admin_socket_mode` and `admin_socket_group`.
fn admin_socket(
    path: Option<&Scalar>,
    mode: Option<&Scalar>,
    group: Option<&Scalar>,
) -> Result<Option<AdminSocket>, ConfigError> {
    let Some(path) = text(path) else {
        for (key, v) in [("admin_socket_mode", mode), ("admin_socket_group", group)] {
            if v.is_some() {
                return Err(err(key, "needs admin_socket (the socket's path)"));
            }
        }
        return Ok(None);
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() || path.file_name().is_none() {
        return Err(err(
            "admin_socket",
            format!(
                "{} is not an absolute path to a file, such as /run/mta-sts/admin.sock",
                path.display()
            ),
        ));
    }
    let group = text(group).filter(|g| !g.is_empty());
    let mode = match mode {
        None if group.is_some() => 0o660,
        None => 0o600,
        Some(Scalar(s)) => match integer("admin_socket_mode", s)
            .ok()
            .and_then(|m| u32::try_from(m).ok())
        {
            Some(m) if m & !0o770 == 0 => m,
            _ => {
                return Err(err(
                    "admin_socket_mode",
                    format!(
                        "{s:?} is not a file mode without permissions for others, such as 0600 \
                         or 0660"
                    ),
                ));
            }
        },
    };
    Ok(Some(AdminSocket { path, mode, group }))
}

impl RawZone {
    fn check(&self, key: &str) -> Result<Zone, ConfigError> {
        let d = Zone::default();
        let timeout = seconds(
            &format!("{key}.timeout"),
            self.timeout.as_ref(),
            defaults::TIMEOUT_SECS,
        )?;
        if timeout.is_zero() || timeout > Duration::from_secs(86_400) {
            return Err(err(
                &format!("{key}.timeout"),
                "must be above 0 and at most 86400 seconds",
            ));
        }
        Ok(Zone {
            strict_testing: boolean(
                &format!("{key}.strict_testing"),
                self.strict_testing.as_ref(),
                d.strict_testing,
            )?,
            timeout,
            require_sni: boolean(
                &format!("{key}.require_sni"),
                self.require_sni.as_ref(),
                d.require_sni,
            )?,
            tlsrpt: boolean(&format!("{key}.tlsrpt"), self.tlsrpt.as_ref(), d.tlsrpt)?,
            defer_on_dns_failure: boolean(
                &format!("{key}.defer_on_dns_failure"),
                self.defer_on_dns_failure.as_ref(),
                d.defer_on_dns_failure,
            )?,
            dane: boolean(&format!("{key}.dane"), self.dane.as_ref(), d.dane)?,
        })
    }
}

impl RawConfig {
    fn check(self, unknown_keys: Vec<String>) -> Result<DaemonConfig, ConfigError> {
        let listen = match text(self.path.as_ref()) {
            Some(path) => Listen::Unix {
                path: PathBuf::from(path),
                mode: file_mode(self.mode.as_ref())?,
            },
            None => Listen::Tcp {
                host: text(self.host.as_ref()).unwrap_or_else(|| defaults::HOST.into()),
                port: port("port", self.port.as_ref(), defaults::PORT)?,
                reuse_port: boolean("reuse_port", self.reuse_port.as_ref(), defaults::REUSE_PORT)?,
            },
        };
        let cache = self.cache.unwrap_or_default().check()?;
        let p = self.proactive_policy_fetching.unwrap_or_default();
        let interval = int_or(
            "proactive_policy_fetching.interval",
            p.interval.as_ref(),
            defaults::PROACTIVE_FETCH_INTERVAL_SECS,
        )?;
        // Refreshing less often than the longest max_age would never refresh anything.
        if interval == 0 || interval > u64::from(mta_sts_core::MAX_AGE_LIMIT) {
            return Err(err(
                "proactive_policy_fetching.interval",
                format!(
                    "{interval} must be from 1 to {} seconds",
                    mta_sts_core::MAX_AGE_LIMIT
                ),
            ));
        }
        let grace_ratio = match &p.grace_ratio {
            None => defaults::PROACTIVE_FETCH_GRACE_RATIO,
            Some(Scalar(s)) => match s.trim().parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => r,
                _ => {
                    return Err(err(
                        "proactive_policy_fetching.grace_ratio",
                        format!("{s:?} is not a number above 0"),
                    ));
                }
            },
        };
        let proactive = Proactive {
            enabled: boolean(
                "proactive_policy_fetching.enabled",
                p.enabled.as_ref(),
                true,
            )?,
            interval: Duration::from_secs(interval),
            concurrency_limit: positive(
                "proactive_policy_fetching.concurrency_limit",
                p.concurrency_limit.as_ref(),
                defaults::PROACTIVE_FETCH_CONCURRENCY_LIMIT,
            )?,
            grace_ratio,
        };
        let default_zone = self
            .default_zone
            .unwrap_or_default()
            .check("default_zone")?;
        let mut zones = BTreeMap::new();
        for (name, zone) in self.zones.unwrap_or_default() {
            let zone = zone.unwrap_or_default().check(&format!("zones.{name}"))?;
            zones.insert(name, zone);
        }
        let metrics = match self.metrics {
            None => None,
            Some(m) => Some((
                text(m.host.as_ref()).unwrap_or_else(|| defaults::METRICS_HOST.into()),
                port("metrics.port", m.port.as_ref(), defaults::METRICS_PORT)?,
            )),
        };
        let resolvers = self
            .resolvers
            .unwrap_or_default()
            .iter()
            .map(|Scalar(s)| parse_resolver(s).map_err(|e| err("resolvers", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let https_port = match &self.https_port {
            None => None,
            Some(v) => Some(port("https_port", Some(v), 443)?),
        };
        let write_timeout = seconds(
            "write_timeout",
            self.write_timeout.as_ref(),
            defaults::WRITE_TIMEOUT_SECS,
        )?;
        if write_timeout.is_zero() {
            return Err(err("write_timeout", "must be above 0 seconds"));
        }
        Ok(DaemonConfig {
            listen,
            cache_grace: seconds(
                "cache_grace",
                self.cache_grace.as_ref(),
                defaults::CACHE_GRACE_SECS,
            )?,
            shutdown_timeout: seconds(
                "shutdown_timeout",
                self.shutdown_timeout.as_ref(),
                defaults::SHUTDOWN_TIMEOUT_SECS,
            )?,
            cache,
            proactive,
            default_zone,
            zones,
            metrics,
            resolvers,
            ca_file: text(self.ca_file.as_ref()).map(PathBuf::from),
            https_port,
            max_connections: positive(
                "max_connections",
                self.max_connections.as_ref(),
                defaults::MAX_CONNECTIONS,
            )?,
            idle_timeout: seconds(
                "idle_timeout",
                self.idle_timeout.as_ref(),
                defaults::IDLE_TIMEOUT_SECS,
            )?,
            write_timeout,
            unknown_keys,
            admin_socket: admin_socket(
                self.admin_socket.as_ref(),
                self.admin_socket_mode.as_ref(),
                self.admin_socket_group.as_ref(),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// postfix-mta-sts-resolver's `config_examples/mta-sts-daemon.yml.internal`.
    const EXAMPLE_INTERNAL: &str = "\
host: 127.0.0.1
port: 8461
reuse_port: true
shutdown_timeout: 20
cache:
  type: internal
  options:
    cache_size: 10000
default_zone:
  strict_testing: false
  timeout: 4
zones:
  myzone:
    strict_testing: false
    timeout: 4
";

    /// The example of its manual page, mta-sts-daemon.yml(5).
    const EXAMPLE_MANUAL: &str = "\
host: 127.0.0.1
port: 8461
reuse_port: true
shutdown_timeout: 20
proactive_policy_fetching:
  enabled: true
  interval: 86400
  concurrency_limit: 100
  grace_ratio: 2
cache:
  type: internal
  options:
    cache_size: 10000
default_zone:
  strict_testing: false
  timeout: 4
zones:
  myzone:
    strict_testing: false
    timeout: 4
";

    fn defaults_config() -> DaemonConfig {
        parse("").unwrap()
    }

    #[test]
    fn an_empty_text_gives_postfix_mta_sts_resolver_defaults() {
        let c = defaults_config();
        assert_eq!(
            c.listen,
            Listen::Tcp {
                host: "127.0.0.1".into(),
                port: 8461,
                reuse_port: true
            }
        );
        assert_eq!(c.cache_grace, Duration::from_secs(60));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(c.cache, Cache::default());
        assert_eq!(c.cache.size, 10_000);
        assert_eq!(c.cache.backend, CacheBackend::Internal);
        assert_eq!(c.cache.on_store_error, StoreErrorPolicy::Local);
        assert_eq!(c.proactive.interval, Duration::from_secs(86_400));
        assert_eq!(c.proactive.concurrency_limit, 100);
        assert!((c.proactive.grace_ratio - 2.0).abs() < f64::EPSILON);
        assert_eq!(c.default_zone, Zone::default());
        assert!(!c.default_zone.strict_testing);
        assert_eq!(c.default_zone.timeout, Duration::from_secs(4));
        assert!(c.default_zone.require_sni);
        assert!(!c.default_zone.tlsrpt);
        assert!(c.zones.is_empty());
        assert_eq!(c.metrics, None);
        assert!(c.resolvers.is_empty());
        assert!(c.unknown_keys.is_empty());
    }

    #[test]
    fn a_null_document_and_null_sections_are_the_defaults() {
        let c = parse("---\n").unwrap();
        assert_eq!(c, defaults_config());
        let c = parse("default_zone:\nzones:\ncache:\nproactive_policy_fetching:\n").unwrap();
        assert_eq!(c, defaults_config());
    }

    #[test]
    fn reads_the_internal_cache_example_of_postfix_mta_sts_resolver() {
        let c = parse(EXAMPLE_INTERNAL).unwrap();
        assert_eq!(c.cache.size, 10_000);
        assert_eq!(c.zones.len(), 1);
        assert_eq!(c.zone("myzone"), &Zone::default());
        assert_eq!(c.zone("postfix"), &c.default_zone);
        assert!(c.unknown_keys.is_empty());
    }

    #[test]
    fn reads_the_manual_page_example() {
        let c = parse(EXAMPLE_MANUAL).unwrap();
        assert!(c.proactive.enabled);
        assert_eq!(c.proactive.concurrency_limit, 100);
        assert_eq!(c.proactive.interval, Duration::from_secs(86_400));
    }

    #[test]
    fn proactive_fetching_is_on_unless_disabled_explicitly() {
        assert!(defaults_config().proactive.enabled);
        let c = parse("proactive_policy_fetching:\n  enabled: false\n").unwrap();
        assert!(!c.proactive.enabled);
    }

    #[test]
    fn zones_select_settings_by_socketmap_name() {
        let c = parse(
            "default_zone:\n  require_sni: no\nzones:\n  strict:\n    strict_testing: yes\n    tlsrpt: on\n  plain:\n",
        )
        .unwrap();
        assert!(!c.default_zone.require_sni);
        let strict = c.zone("strict");
        assert!(strict.strict_testing && strict.tlsrpt && strict.require_sni);
        assert_eq!(c.zone("plain"), &Zone::default());
        assert_eq!(c.zone("other"), &c.default_zone);
    }

    #[test]
    fn unix_socket_mode_is_octal_with_a_leading_zero_as_in_pyyaml() {
        let mode = |m: &str| match parse(&format!("path: /run/sts.sock\nmode: {m}\n"))
            .unwrap()
            .listen
        {
            Listen::Unix { mode, .. } => mode,
            Listen::Tcp { .. } => panic!("expected a unix listener"),
        };
        assert_eq!(mode("0666"), Some(0o666));
        assert_eq!(mode("0660"), Some(0o660));
        assert_eq!(mode("0o600"), Some(0o600));
        assert_eq!(mode("'0640'"), Some(0o640));
        assert_eq!(mode("438"), Some(0o666));
        assert!(parse("path: /x\nmode: 0999\n").is_err());
        assert!(parse("path: /x\nmode: 070000\n").is_err());
    }

    #[test]
    fn path_takes_precedence_over_host_and_port() {
        let c = parse("host: 0.0.0.0\nport: 1\npath: /var/run/mta-sts.sock\n").unwrap();
        assert_eq!(
            c.listen,
            Listen::Unix {
                path: "/var/run/mta-sts.sock".into(),
                mode: None
            }
        );
    }

    #[test]
    fn floats_are_accepted_for_times() {
        let c = parse("cache_grace: 0.5\nshutdown_timeout: 3\ndefault_zone:\n  timeout: 1.5\n")
            .unwrap();
        assert_eq!(c.cache_grace, Duration::from_millis(500));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(c.default_zone.timeout, Duration::from_millis(1500));
    }

    #[test]
    fn cache_type_file_keeps_a_path_and_unknown_types_are_refused() {
        let c = parse("cache:\n  type: file\n  options:\n    path: /var/lib/mta-sts/cache.json\n    cache_size: 500\n").unwrap();
        assert_eq!(c.cache.size, 500);
        assert_eq!(c.cache.file, Some("/var/lib/mta-sts/cache.json".into()));
        assert_eq!(
            c.cache.backend,
            CacheBackend::File {
                path: "/var/lib/mta-sts/cache.json".into()
            }
        );
        let e = parse("cache:\n  type: file\n").unwrap_err();
        assert!(
            matches!(e.kind(), ConfigErrorKind::Value { key, .. } if key == "cache.options.path"),
            "{e}"
        );
        let e = parse("cache:\n  type: memcached\n").unwrap_err();
        assert!(
            e.to_string().contains("\"memcached\" is not supported"),
            "{e}"
        );
    }

    #[test]
    fn daemon_keys_metrics_resolvers_and_limits() {
        let c = parse(
            "metrics:\n  port: 9100\nresolvers: [127.0.0.1:5353, '::1', 192.0.2.53]\nca_file: /etc/ca.pem\nhttps_port: 8443\nmax_connections: 50\nidle_timeout: 10\nwrite_timeout: 0.5\n",
        )
        .unwrap();
        assert_eq!(c.metrics, Some(("127.0.0.1".into(), 9100)));
        assert_eq!(
            c.resolvers,
            [
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "192.0.2.53:53".parse().unwrap()
            ]
        );
        assert_eq!(c.ca_file, Some("/etc/ca.pem".into()));
        assert_eq!(c.https_port, Some(8443));
        assert_eq!(c.max_connections, 50);
        assert_eq!(c.idle_timeout, Duration::from_secs(10));
        assert_eq!(c.write_timeout, Duration::from_millis(500));
        let c = parse("metrics: {}\n").unwrap();
        assert_eq!(c.metrics, Some(("127.0.0.1".into(), 9461)));
        assert_eq!(c.write_timeout, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (yaml, key) in [
            ("port: 70000\n", "port"),
            ("port: http\n", "port"),
            ("reuse_port: maybe\n", "reuse_port"),
            ("cache_grace: -1\n", "cache_grace"),
            ("default_zone:\n  timeout: 0\n", "default_zone.timeout"),
            ("zones:\n  z:\n    tlsrpt: 2\n", "zones.z.tlsrpt"),
            (
                "cache:\n  options:\n    cache_size: 0\n",
                "cache.options.cache_size",
            ),
            (
                "proactive_policy_fetching:\n  grace_ratio: 0\n",
                "proactive_policy_fetching.grace_ratio",
            ),
            ("resolvers: [dns.example]\n", "resolvers"),
            ("default_zone:\n  timeout: 1e9\n", "default_zone.timeout"),
            (
                "proactive_policy_fetching:\n  interval: 99999999999\n",
                "proactive_policy_fetching.interval",
            ),
            ("max_connections: 0\n", "max_connections"),
            ("write_timeout: 0\n", "write_timeout"),
        ] {
            let e = parse(yaml).expect_err(yaml);
            assert!(
                matches!(e.kind(), ConfigErrorKind::Value { key: k, .. } if k == key),
                "{yaml:?} gave {e:?}"
            );
            assert!(
                e.to_string().starts_with(&format!("{key}: ")),
                "{yaml:?} gave {e}"
            );
        }
        assert!(matches!(
            parse("port: [1]\n").unwrap_err().kind(),
            ConfigErrorKind::Syntax(_)
        ));
        assert!(matches!(
            parse("{{{\n").unwrap_err().kind(),
            ConfigErrorKind::Syntax(_)
        ));
    }

    #[test]
    fn resolver_with_or_without_port() {
        assert_eq!(
            parse_resolver("192.0.2.1").unwrap(),
            "192.0.2.1:53".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_resolver("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_resolver("[::1]").unwrap(),
            "[::1]:53".parse::<SocketAddr>().unwrap()
        );
        assert!(
            parse_resolver("dns.example")
                .unwrap_err()
                .to_string()
                .contains("IP address")
        );
    }

    /// A file of its own under the system's temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &[u8]) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "mta-sts-config-{}-{}.yml",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, contents).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn load_names_the_file_in_its_errors() {
        let missing = Path::new("/nonexistent/mta-sts-daemon.yml");
        let e = load(missing).unwrap_err();
        assert_eq!(e.file(), Some(missing));
        assert!(
            matches!(e.kind(), ConfigErrorKind::Read { kind, .. } if *kind == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("cannot read /nonexistent/mta-sts-daemon.yml: "),
            "{e}"
        );

        let f = TempFile::new(b"port: 70000\n");
        let e = load(&f.0).unwrap_err();
        assert_eq!(e.file(), Some(f.0.as_path()));
        assert_eq!(
            e.to_string(),
            format!("{}: port: 70000 is not a port number", f.0.display())
        );
        let f = TempFile::new(b"port: 0\n");
        assert_eq!(load(&f.0).unwrap(), parse("port: 0\n").unwrap());
    }

    #[test]
    fn a_file_without_settings_is_refused_as_empty_and_named() {
        for text in [
            "",
            "\n",
            "  \n\t\n",
            "# mta-sts-daemon.yml\n# host: 127.0.0.1\n",
            "\t# indented with a tab\r\n",
            "---\n",
            "--- # nothing\n...\n",
            "~\n",
            "\u{feff}",
        ] {
            let f = TempFile::new(text.as_bytes());
            let e = load(&f.0).expect_err(text);
            assert_eq!(e.kind(), &ConfigErrorKind::Empty, "{text:?}");
            assert_eq!(e.file(), Some(f.0.as_path()));
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("{}: ", f.0.display())) && message.contains("empty"),
                "{message}"
            );
        }
        // All the defaults, said explicitly.
        let f = TempFile::new(b"{}\n");
        assert_eq!(load(&f.0).unwrap(), defaults_config());
    }

    /// The operator's file: 150,000 bytes, 30,000 flow mappings one in the other.
    fn nested_150_kb() -> String {
        let text = format!("{}{}", "{a: ".repeat(30_000), "}".repeat(30_000));
        assert_eq!(text.len(), 150_000);
        text
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing_naming_the_limit() {
        let deep = [
            nested_150_kb(),
            format!("{}{}", "[".repeat(30_000), "]".repeat(30_000)),
            format!("port: 0\nx: {}\n", "{a: ".repeat(30_000)),
            format!("{}x\n", "- ".repeat(30_000)),
            (0..100).map(|i| format!("{:i$}a:\n", "")).collect(),
            format!("zones:\n  z: {}{}\n", "[".repeat(63), "]".repeat(63)),
        ];
        for text in &deep {
            let started = std::time::Instant::now();
            let e = parse(text).unwrap_err();
            // A bound against a regression to the parser's quadratic time, not a measurement:
            // the check takes microseconds, the parser took seconds.
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
            assert!(
                matches!(
                    e.kind(),
                    ConfigErrorKind::TooDeep {
                        limit: MAX_NESTING,
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("nested more than 64 levels"), "{e}");
        }
        let e = parse(&format!("port: 0\n\nx:\n  y: {}", "[".repeat(63))).unwrap_err();
        assert_eq!(
            e.kind(),
            &ConfigErrorKind::TooDeep {
                limit: MAX_NESTING,
                line: 4
            }
        );
        // Up to the limit, the parser decides: here an unknown key, accepted with a warning.
        let c = parse(&format!("x: {}{}\n", "[".repeat(63), "]".repeat(63))).unwrap();
        assert_eq!(c.unknown_keys, ["x"]);

        let f = TempFile::new(nested_150_kb().as_bytes());
        let e = load(&f.0).unwrap_err();
        assert!(matches!(e.kind(), ConfigErrorKind::TooDeep { .. }));
        assert!(
            e.to_string()
                .starts_with(&format!("{}: nested", f.0.display())),
            "{e}"
        );
    }

    #[test]
    fn a_text_over_the_size_limit_is_refused_unread() {
        let mut big = String::from("port: 0\n");
        while big.len() <= MAX_CONFIG_BYTES {
            big.push_str("# a comment line to take room\n");
        }
        let too_large = ConfigErrorKind::TooLarge {
            limit: MAX_CONFIG_BYTES,
        };
        assert_eq!(parse(&big).unwrap_err().kind(), &too_large);
        let f = TempFile::new(big.as_bytes());
        let e = load(&f.0).unwrap_err();
        assert_eq!(e.kind(), &too_large);
        assert!(e.to_string().contains("larger than 1048576 bytes"), "{e}");
        // At the limit it is read.
        big.truncate(MAX_CONFIG_BYTES);
        let end = big.rfind('\n').unwrap() + 1;
        big.truncate(end);
        assert_eq!(
            parse(&big).unwrap().listen,
            parse("port: 0").unwrap().listen
        );
    }

    /// postfix-mta-sts-resolver's `config_examples/mta-sts-daemon.yml.sqlite` (Debian's
    /// default `/etc/mta-sts-daemon.yml`).
    const EXAMPLE_SQLITE: &str = "\
host: 127.0.0.1
port: 8461
reuse_port: true
shutdown_timeout: 20
# tlsrpt: true
cache:
  type: sqlite
  options:
    filename: \"/var/lib/mta-sts/cache.db\"
default_zone:
  strict_testing: false
  timeout: 4
zones:
  myzone:
    strict_testing: false
    timeout: 4
";

    /// Its `config_examples/mta-sts-daemon.yml.sqlite_unixsock`.
    const EXAMPLE_SQLITE_UNIXSOCK: &str = "\
path: \"/var/run/mta-sts.sock\"
mode: 0666
shutdown_timeout: 20
# tlsrpt: true
cache:
  type: sqlite
  options:
    filename: \"/var/lib/mta-sts/cache.db\"
default_zone:
  strict_testing: false
  timeout: 4
zones:
  myzone:
    strict_testing: false
    timeout: 4
";

    /// Its `config_examples/mta-sts-daemon.yml.redis`.
    const EXAMPLE_REDIS: &str = "\
host: 127.0.0.1
port: 8461
reuse_port: true
shutdown_timeout: 20
cache:
  type: redis
  options:
    url: \"redis://127.0.0.1/0\"
    max_connections: 25
    socket_timeout: 1.0
    socket_connect_timeout: 1.0
default_zone:
  strict_testing: false
  timeout: 4
zones:
  myzone:
    strict_testing: false
    timeout: 4
";

    /// Its `config_examples/mta-sts-daemon.yml.redis_sentinel`.
    const EXAMPLE_REDIS_SENTINEL: &str = "\
host: 127.0.0.1
port: 8461
reuse_port: true
shutdown_timeout: 20
# tlsrpt: true
cache:
  type: redis_sentinel
  options:
    sentinel_master_name: \"mymaster\"
    sentinels:
      - [\"sentinel1\", 26379]
      - [\"sentinel2\", 26379]
      - [\"sentinel3\", 26379]
    password: \"StrongPassword\"
    max_connections: 25
    socket_timeout: 1.0
    socket_connect_timeout: 1.0
default_zone:
  strict_testing: false
  timeout: 4
zones:
  myzone:
    strict_testing: false
    timeout: 4
";

    /// Its `config_examples/mta-sts-daemon.yml.postgres`.
    const EXAMPLE_POSTGRES: &str = "\
host: 127.0.0.1
port: 8461
reuse_port: true
shutdown_timeout: 20
# tlsrpt: true
cache:
  type: postgres
  options:
    dsn: postgres://user@%2Frun%2Fpostgresql/user
default_zone:
  strict_testing: false
  timeout: 4
zones:
  myzone:
    strict_testing: false
    timeout: 4
";

    fn value_key(text: &str) -> String {
        match parse(text).unwrap_err().kind() {
            ConfigErrorKind::Value { key, .. } => key.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn s7_the_peers_sqlite_examples_are_read() {
        for example in [EXAMPLE_SQLITE, EXAMPLE_SQLITE_UNIXSOCK] {
            let c = parse(example).unwrap();
            assert_eq!(
                c.cache.backend,
                CacheBackend::Sqlite {
                    filename: "/var/lib/mta-sts/cache.db".into(),
                    timeout: Duration::from_secs(5),
                }
            );
            assert_eq!(c.cache.size, 10_000);
            assert_eq!(c.cache.file, None);
            assert_eq!(c.cache.on_store_error, StoreErrorPolicy::Local);
            assert!(c.cache.warnings.is_empty(), "{:?}", c.cache.warnings);
        }
        let c =
            parse("cache: {type: sqlite, options: {filename: /x.db, timeout: 0.5, threads: 8}}")
                .unwrap();
        assert!(
            matches!(c.cache.backend, CacheBackend::Sqlite { timeout, .. } if timeout == Duration::from_millis(500))
        );
        assert_eq!(c.cache.warnings.len(), 1);
        assert!(
            c.cache.warnings[0].starts_with("cache.options.threads: ignored"),
            "{:?}",
            c.cache.warnings
        );
    }

    #[test]
    fn s7_the_peers_redis_example_is_read_and_its_pool_size_warned_about() {
        let c = parse(EXAMPLE_REDIS).unwrap();
        let CacheBackend::Redis { url, connection } = &c.cache.backend else {
            panic!("{:?}", c.cache.backend);
        };
        assert_eq!(url, "redis://127.0.0.1/0");
        assert_eq!(connection.timeout, Duration::from_secs(1));
        assert_eq!(connection.connect_timeout, Duration::from_secs(1));
        assert_eq!(connection.ca_file, None);
        assert_eq!(c.cache.warnings.len(), 1, "{:?}", c.cache.warnings);
        assert!(c.cache.warnings[0].starts_with("cache.options.max_connections: ignored"));
        // The peer's defaults; password, username and db fill in what the URL lacks.
        let c = parse(
            "cache: {type: redis, options: {url: 'redis://r.example', password: 'p@ss', db: 3}}",
        )
        .unwrap();
        let CacheBackend::Redis { url, connection } = &c.cache.backend else {
            panic!();
        };
        assert_eq!(url, "redis://:p%40ss@r.example/3");
        assert_eq!(connection.timeout, Duration::from_secs(5));
        assert_eq!(connection.connect_timeout, Duration::from_secs(5));
        let c = parse(
            "cache: {type: redis, options: {url: 'redis://u:x@r.example/1', password: y, db: 3}}",
        )
        .unwrap();
        assert!(
            matches!(&c.cache.backend, CacheBackend::Redis { url, .. } if url == "redis://u:x@r.example/1")
        );
        let c =
            parse("cache: {type: redis, options: {url: 'unix:///run/redis.sock', db: 2}}").unwrap();
        assert!(
            matches!(&c.cache.backend, CacheBackend::Redis { url, .. } if url == "unix:///run/redis.sock?db=2")
        );
    }

    #[test]
    fn s7_the_peers_redis_sentinel_example_is_read() {
        let c = parse(EXAMPLE_REDIS_SENTINEL).unwrap();
        let CacheBackend::RedisSentinel {
            sentinels,
            master_name,
            master_url,
            connection,
        } = &c.cache.backend
        else {
            panic!("{:?}", c.cache.backend);
        };
        assert_eq!(
            sentinels,
            &["sentinel1:26379", "sentinel2:26379", "sentinel3:26379"]
        );
        assert_eq!(master_name, "mymaster");
        assert_eq!(
            master_url.as_deref(),
            Some("redis://:StrongPassword@master")
        );
        assert_eq!(connection.timeout, Duration::from_secs(1));
        assert_eq!(c.cache.warnings.len(), 1, "{:?}", c.cache.warnings);
        let c = parse("cache: {type: redis_sentinel, options: {sentinel_master_name: m, sentinels: [['::1', 26380], 'h:1']}}").unwrap();
        assert!(
            matches!(&c.cache.backend, CacheBackend::RedisSentinel { sentinels, master_url: None, .. } if sentinels == &["[::1]:26380", "h:1"])
        );
    }

    #[test]
    fn s7_the_peers_postgres_example_is_read() {
        let c = parse(EXAMPLE_POSTGRES).unwrap();
        assert_eq!(
            c.cache.backend,
            CacheBackend::Postgres {
                dsn: "postgres://user@%2Frun%2Fpostgresql/user".into(),
                timeout: Duration::from_secs(5),
            }
        );
        assert!(c.cache.warnings.is_empty());
        // asyncpg's separate keywords make a libpq DSN; its pool settings are warned about.
        let c = parse("cache: {type: postgres, options: {host: db, port: 5433, user: mta, password: \"it's\", database: sts, min_size: 1, max_size: 10, timeout: 2}}").unwrap();
        assert_eq!(
            c.cache.backend,
            CacheBackend::Postgres {
                dsn: r"host='db' port='5433' user='mta' password='it\'s' dbname='sts'".into(),
                timeout: Duration::from_secs(2),
            }
        );
        assert_eq!(c.cache.warnings.len(), 2, "{:?}", c.cache.warnings);
    }

    #[test]
    fn s7_unknown_cache_options_are_warned_about_not_refused() {
        let c = parse(
            "cache: {type: internal, options: {cache_size: 5, colour: blue, nested: {a: [1]}}}",
        )
        .unwrap();
        assert_eq!(c.cache.size, 5);
        assert_eq!(
            c.cache.warnings,
            [
                "cache.options.colour: unknown for type internal, ignored",
                "cache.options.nested: unknown for type internal, ignored"
            ]
        );
        assert!(c.unknown_keys.is_empty());
    }

    #[test]
    fn s7_unusable_cache_values_are_refused_with_their_key() {
        for (text, key) in [
            ("cache: {type: sqlite}", "cache.options.filename"),
            (
                "cache: {type: sqlite, options: {filename: ''}}",
                "cache.options.filename",
            ),
            (
                "cache: {type: sqlite, options: {filename: /x, timeout: -1}}",
                "cache.options.timeout",
            ),
            (
                "cache: {type: sqlite, options: {filename: /x, timeout: 0}}",
                "cache.options.timeout",
            ),
            (
                "cache: {type: sqlite, options: {filename: [a]}}",
                "cache.options.filename",
            ),
            ("cache: {type: redis}", "cache.options.url"),
            (
                "cache: {type: redis, options: {url: 127.0.0.1}}",
                "cache.options.url",
            ),
            (
                "cache: {type: redis, options: {url: 'redis://h', socket_timeout: x}}",
                "cache.options.socket_timeout",
            ),
            (
                "cache: {type: redis, options: {url: 'redis://h', db: -1}}",
                "cache.options.db",
            ),
            (
                "cache: {type: redis_sentinel, options: {sentinels: [[h, 1]]}}",
                "cache.options.sentinel_master_name",
            ),
            (
                "cache: {type: redis_sentinel, options: {sentinel_master_name: m}}",
                "cache.options.sentinels",
            ),
            (
                "cache: {type: redis_sentinel, options: {sentinel_master_name: m, sentinels: []}}",
                "cache.options.sentinels",
            ),
            (
                "cache: {type: redis_sentinel, options: {sentinel_master_name: m, sentinels: [[h, 99999]]}}",
                "cache.options.sentinels[0]",
            ),
            (
                "cache: {type: redis_sentinel, options: {sentinel_master_name: m, sentinels: [[h, 1], {a: b}]}}",
                "cache.options.sentinels[1]",
            ),
            ("cache: {type: postgres}", "cache.options.dsn"),
            (
                "cache: {type: postgres, options: {dsn: 'postgres://h/d', user: u}}",
                "cache.options.user",
            ),
            (
                "cache: {type: postgres, options: {dsn: 'postgres://h/d', timeout: 1e13}}",
                "cache.options.timeout",
            ),
            (
                "cache: {type: internal, on_store_error: later}",
                "cache.on_store_error",
            ),
            ("cache: {type: redis_cluster}", "cache.type"),
        ] {
            assert_eq!(value_key(text), key, "{text}");
        }
        let many = format!(
            "cache: {{type: redis_sentinel, options: {{sentinel_master_name: m, sentinels: [{}]}}}}",
            vec!["[h, 1]"; MAX_SENTINELS + 1].join(", ")
        );
        assert_eq!(value_key(&many), "cache.options.sentinels");
    }

    #[test]
    fn s7_on_store_error_is_local_unless_defer() {
        let c = parse("cache: {type: sqlite, options: {filename: /x.db}, on_store_error: defer}")
            .unwrap();
        assert_eq!(c.cache.on_store_error, StoreErrorPolicy::Defer);
        let c = parse("cache: {type: sqlite, options: {filename: /x.db}, on_store_error: local}")
            .unwrap();
        assert_eq!(c.cache.on_store_error, StoreErrorPolicy::Local);
    }

    #[test]
    fn s10_the_admin_socket_is_off_unless_set_and_never_open_to_others() {
        assert_eq!(parse("port: 1\n").unwrap().admin_socket, None);
        let a = parse("admin_socket: /run/mta-sts/admin.sock\n")
            .unwrap()
            .admin_socket
            .unwrap();
        assert_eq!(a, AdminSocket::new("/run/mta-sts/admin.sock"));
        let a = parse("admin_socket: /run/a.sock\nadmin_socket_group: postfix\n")
            .unwrap()
            .admin_socket
            .unwrap();
        assert_eq!((a.mode, a.group.as_deref()), (0o660, Some("postfix")));
        let a = parse("admin_socket: /run/a.sock\nadmin_socket_mode: 0640\n")
            .unwrap()
            .admin_socket
            .unwrap();
        assert_eq!(a.mode, 0o640);
        for (yaml, key) in [
            ("admin_socket: admin.sock\n", "admin_socket"),
            ("admin_socket: /\n", "admin_socket"),
            (
                "admin_socket: /a\nadmin_socket_mode: 0666\n",
                "admin_socket_mode",
            ),
            (
                "admin_socket: /a\nadmin_socket_mode: 0602\n",
                "admin_socket_mode",
            ),
            (
                "admin_socket: /a\nadmin_socket_mode: 04600\n",
                "admin_socket_mode",
            ),
            (
                "admin_socket: /a\nadmin_socket_mode: rw\n",
                "admin_socket_mode",
            ),
            ("admin_socket_mode: 0600\n", "admin_socket_mode"),
            ("admin_socket_group: adm\n", "admin_socket_group"),
        ] {
            let e = parse(yaml).expect_err(yaml);
            assert!(
                matches!(e.kind(), ConfigErrorKind::Value { key: k, .. } if k == key),
                "{yaml}: {e}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_listed_for_a_warning() {
        let c = parse("host: 127.0.0.1\nloglevel: debug\n").unwrap();
        assert_eq!(c.unknown_keys, ["loglevel"]);
    }
}
