//! The `cache` section: postfix-mta-sts-resolver's `cache.type` and `cache.options` as it
//! passes them to its drivers (`utils.create_cache`: the options are the keyword arguments of
//! `InternalLRUCache`, `SqliteCache`, redis-py's `from_url` or Sentinel `master_for`, asyncpg's
//! `create_pool`), plus this daemon's `type: file` and `on_store_error`.
//!
//! An option that the peer's driver takes but that has no meaning here (a pool size, an
//! encoding, …) is listed in [`Cache::warnings`] and ignored; an option the peer does not know
//! either is warned about too. A value that cannot be used is refused, naming its key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{ConfigError, Scalar, defaults, err, positive, seconds, text};

/// postfix-mta-sts-resolver's driver defaults (`defaults.py`, 1.5.1).
mod driver_defaults {
    /// `SQLITE_TIMEOUT`.
    pub(super) const SQLITE_TIMEOUT_SECS: f64 = 5.0;
    /// `POSTGRES_TIMEOUT`.
    pub(super) const POSTGRES_TIMEOUT_SECS: f64 = 5.0;
    /// `REDIS_CONNECT_TIMEOUT`.
    pub(super) const REDIS_CONNECT_TIMEOUT_SECS: f64 = 5.0;
    /// `REDIS_TIMEOUT`.
    pub(super) const REDIS_TIMEOUT_SECS: f64 = 5.0;
}

/// The most sentinels read from `cache.options.sentinels`.
pub const MAX_SENTINELS: usize = 64;

/// The policy cache: the in-memory cache of `size` policies, and below it what keeps them
/// across restarts or shares them with other hosts ([`CacheBackend`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cache {
    /// Most policies kept in memory (`cache.options.cache_size`, for every type).
    pub size: usize,
    /// `type: file`: the snapshot file that keeps policies across restarts (the same path as
    /// [`CacheBackend::File`]).
    pub file: Option<PathBuf>,
    /// Where policies are kept besides memory (`cache.type` and its options).
    pub backend: CacheBackend,
    /// What a lookup does when the shared store cannot be read (`cache.on_store_error`).
    pub on_store_error: StoreErrorPolicy,
    /// Options that are ignored here, one message each (`cache.options.KEY: why`), for the
    /// daemon's log.
    pub warnings: Vec<String>,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            size: defaults::INTERNAL_CACHE_SIZE,
            file: None,
            backend: CacheBackend::Internal,
            on_store_error: StoreErrorPolicy::Local,
            warnings: Vec::new(),
        }
    }
}

/// `cache.type` with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheBackend {
    /// `internal`: memory only (the default).
    Internal,
    /// `file` (this daemon's): memory, written to a snapshot file and read back at start.
    File {
        /// `cache.options.path`.
        path: PathBuf,
    },
    /// `sqlite`: postfix-mta-sts-resolver's SQLite cache file, shared with it.
    Sqlite {
        /// `cache.options.filename`.
        filename: PathBuf,
        /// `cache.options.timeout`: how long an operation waits for a lock another process
        /// holds (the peer's `sqlite3.connect(timeout=…)`; default 5 s).
        timeout: Duration,
    },
    /// `redis`: a Redis server, by URL (redis-py's `from_url`).
    Redis {
        /// `cache.options.url` (`redis://[user:password@]host[:port][/db]`, `rediss://`,
        /// `unix://`), with `username`, `password` and `db` filled in from their own options
        /// when the URL has none (redis-py: the URL's win).
        url: String,
        /// The connection settings.
        connection: RedisConnection,
    },
    /// `redis_sentinel`: the master a set of Redis Sentinels names (redis-py's
    /// `Sentinel(sentinels).master_for(sentinel_master_name, **options)`).
    RedisSentinel {
        /// `cache.options.sentinels`: `host:port` of each sentinel (`[v6]:port` for IPv6).
        sentinels: Vec<String>,
        /// `cache.options.sentinel_master_name`.
        master_name: String,
        /// A URL holding the master's `username`, `password`, `db` and `ssl` options (its host
        /// is not used: the sentinels name the master), when any is set.
        master_url: Option<String>,
        /// The connection settings.
        connection: RedisConnection,
    },
    /// `postgres`: postfix-mta-sts-resolver's PostgreSQL table.
    Postgres {
        /// `cache.options.dsn` (a URL or libpq's `key=value` form), or one made of `host`,
        /// `port`, `user`, `password` and `database` (asyncpg's `create_pool` keywords).
        dsn: String,
        /// `cache.options.timeout`: the bound on connecting and on each operation (default 5 s).
        timeout: Duration,
    },
}

impl CacheBackend {
    /// The `cache.type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::File { .. } => "file",
            Self::Sqlite { .. } => "sqlite",
            Self::Redis { .. } => "redis",
            Self::RedisSentinel { .. } => "redis_sentinel",
            Self::Postgres { .. } => "postgres",
        }
    }

    /// Whether this is a store shared through a database (SQLite, Redis, PostgreSQL), opened
    /// with `store::open_store` (the `daemon` feature).
    pub fn is_store(&self) -> bool {
        !matches!(self, Self::Internal | Self::File { .. })
    }
}

/// The Redis connection settings of `redis` and `redis_sentinel`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConnection {
    /// `socket_connect_timeout` (default 5 s).
    pub connect_timeout: Duration,
    /// `socket_timeout`: the bound on each command (default 5 s).
    pub timeout: Duration,
    /// `ssl_ca_certs`: the CA certificates (a PEM file) a `rediss://` server's certificate must
    /// chain to, instead of the system's.
    pub ca_file: Option<PathBuf>,
}

/// `cache.on_store_error`: what a lookup does when the shared store cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreErrorPolicy {
    /// `local` (the default): go on with the in-memory cache and the usual lookup. At start, a
    /// store that cannot be opened is logged and opened again later.
    #[default]
    Local,
    /// `defer`: answer a temporary failure (Postfix defers the mail). At start, a store that
    /// cannot be opened stops the daemon.
    Defer,
}

/// A value under `cache.options`: a scalar as the YAML parser gives it, a list, or a mapping
/// (only ever ignored).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum OptionValue {
    Null,
    Scalar(String),
    List(Vec<OptionValue>),
    Map,
}

impl<'de> Deserialize<'de> for OptionValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OptionValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar, a list or a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<OptionValue, E> {
                Ok(OptionValue::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<OptionValue, E> {
                Ok(OptionValue::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<OptionValue, D::Error> {
                OptionValue::deserialize(d)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OptionValue, E> {
                Ok(OptionValue::Scalar(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<OptionValue, E> {
                Ok(OptionValue::Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<OptionValue, E> {
                Ok(OptionValue::Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<OptionValue, E> {
                Ok(OptionValue::Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<OptionValue, E> {
                Ok(OptionValue::Scalar(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OptionValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    // The configuration's size bounds the list (MAX_CONFIG_BYTES).
                    items.push(item);
                }
                Ok(OptionValue::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OptionValue, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(OptionValue::Map)
            }
        }
        d.deserialize_any(V)
    }
}

/// The `cache` section as written.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawCache {
    #[serde(rename = "type")]
    kind: Option<Scalar>,
    options: Option<BTreeMap<String, OptionValue>>,
    on_store_error: Option<Scalar>,
}

/// The options of one `cache.type`, taken one by one; what is left is warned about.
struct Options {
    kind: &'static str,
    left: BTreeMap<String, OptionValue>,
    warnings: Vec<String>,
}

impl Options {
    fn key(name: &str) -> String {
        format!("cache.options.{name}")
    }

    /// A scalar option (`None` when absent or null).
    fn scalar(&mut self, name: &str) -> Result<Option<Scalar>, ConfigError> {
        match self.left.remove(name) {
            None | Some(OptionValue::Null) => Ok(None),
            Some(OptionValue::Scalar(s)) => Ok(Some(Scalar(s))),
            Some(_) => Err(err(&Self::key(name), "must be a single value")),
        }
    }

    /// A non-empty text option.
    fn text(&mut self, name: &str) -> Result<Option<String>, ConfigError> {
        Ok(text(self.scalar(name)?.as_ref()))
    }

    fn required(&mut self, name: &str, what: &str) -> Result<String, ConfigError> {
        self.text(name)?
            .ok_or_else(|| err(&Self::key(name), format!("type {} needs {what}", self.kind)))
    }

    /// Seconds above 0.
    fn seconds(&mut self, name: &str, default: f64) -> Result<Duration, ConfigError> {
        let key = Self::key(name);
        let d = seconds(&key, self.scalar(name)?.as_ref(), default)?;
        if d.is_zero() || d > Duration::from_secs(86_400) {
            return Err(err(&key, "must be above 0 and at most 86400 seconds"));
        }
        Ok(d)
    }

    /// Options the peer's driver takes that mean nothing here.
    fn ignore(&mut self, names: &[&str], why: &str) {
        for name in names {
            if self.left.remove(*name).is_some() {
                self.warnings
                    .push(format!("{}: ignored ({why})", Self::key(name)));
            }
        }
    }

    /// Warnings for every option left.
    fn finish(mut self) -> Vec<String> {
        for name in std::mem::take(&mut self.left).into_keys() {
            self.warnings.push(format!(
                "{}: unknown for type {}, ignored",
                Self::key(&name),
                self.kind
            ));
        }
        self.warnings
    }

    fn redis_connection(&mut self) -> Result<RedisConnection, ConfigError> {
        let connection = RedisConnection {
            connect_timeout: self.seconds(
                "socket_connect_timeout",
                driver_defaults::REDIS_CONNECT_TIMEOUT_SECS,
            )?,
            timeout: self.seconds("socket_timeout", driver_defaults::REDIS_TIMEOUT_SECS)?,
            ca_file: self.text("ssl_ca_certs")?.map(PathBuf::from),
        };
        self.ignore(
            &[
                "max_connections",
                "health_check_interval",
                "retry_on_timeout",
                "retry_on_error",
                "retry",
                "socket_keepalive",
                "socket_keepalive_options",
                "single_connection_client",
                "client_name",
                "encoding",
                "encoding_errors",
                "decode_responses",
                "protocol",
                "lib_name",
                "lib_version",
            ],
            "redis-py's connection pool and encoding settings: this daemon keeps one multiplexed \
             connection and reads bytes",
        );
        Ok(connection)
    }

    /// `username`, `password` and `db` of redis-py, as URL parts.
    fn redis_credentials(&mut self) -> Result<Credentials, ConfigError> {
        let db = match self.scalar("db")? {
            None => None,
            Some(Scalar(s)) => Some(s.trim().parse::<u32>().map_err(|_| {
                err(
                    "cache.options.db",
                    format!("{s:?} is not a database number"),
                )
            })?),
        };
        Ok(Credentials {
            username: self.text("username")?,
            password: self.text("password")?,
            db,
        })
    }
}

/// redis-py's `username`, `password` and `db` keywords.
struct Credentials {
    username: Option<String>,
    password: Option<String>,
    db: Option<u32>,
}

impl Credentials {
    fn is_empty(&self) -> bool {
        self.username.is_none() && self.password.is_none() && self.db.is_none()
    }

    /// `url` with the credentials and database it lacks (redis-py's rule: the URL's win).
    fn fill(&self, url: &str) -> String {
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_owned();
        };
        if scheme == "unix" {
            // unix:///path?db=N&password=…
            let mut out = url.to_owned();
            let mut sep = if url.contains('?') { '&' } else { '?' };
            for (name, value) in [
                ("db", self.db.map(|d| d.to_string())),
                ("username", self.username.clone()),
                ("password", self.password.clone()),
            ] {
                if let Some(value) = value
                    && !url.contains(&format!("{name}="))
                {
                    out.push(sep);
                    out.push_str(name);
                    out.push('=');
                    out.push_str(&percent_encode(&value));
                    sep = '&';
                }
            }
            return out;
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_owned()), h),
            None => (None, authority),
        };
        let userinfo = userinfo.or_else(|| {
            (self.username.is_some() || self.password.is_some()).then(|| {
                let user = self
                    .username
                    .as_deref()
                    .map(percent_encode)
                    .unwrap_or_default();
                match &self.password {
                    Some(p) => format!("{user}:{}", percent_encode(p)),
                    None => user,
                }
            })
        });
        let path = if path.is_empty() || path.starts_with('?') {
            match self.db {
                Some(db) => format!("{db}{path}"),
                None => path.to_owned(),
            }
        } else {
            path.to_owned()
        };
        let mut out = format!("{scheme}://");
        if let Some(u) = userinfo {
            out.push_str(&u);
            out.push('@');
        }
        out.push_str(host);
        if !path.is_empty() {
            out.push('/');
            out.push_str(&path);
        }
        out
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A libpq `key=value` value, quoted.
fn libpq_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// One sentinel address: `[host, port]` (the peer's form), or `host:port`.
fn sentinel(v: &OptionValue) -> Option<String> {
    let host_port = |host: &str, port: &str| {
        let port: u16 = port.trim().parse().ok()?;
        let host = host.trim();
        if host.is_empty() {
            return None;
        }
        Some(if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    };
    match v {
        OptionValue::List(pair) => match pair.as_slice() {
            [OptionValue::Scalar(h), OptionValue::Scalar(p)] => host_port(h, p),
            [OptionValue::Scalar(h)] => host_port(h, "26379"),
            _ => None,
        },
        OptionValue::Scalar(s) => match s.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') || h.starts_with('[') => {
                host_port(h.trim_start_matches('[').trim_end_matches(']'), p)
            }
            _ => host_port(s, "26379"),
        },
        _ => None,
    }
}

impl RawCache {
    pub(super) fn check(self) -> Result<Cache, ConfigError> {
        let kind_text = text(self.kind.as_ref()).unwrap_or_else(|| "internal".into());
        let kind: &'static str = match kind_text.as_str() {
            "internal" => "internal",
            "file" => "file",
            "sqlite" => "sqlite",
            "redis" => "redis",
            "redis_sentinel" => "redis_sentinel",
            "postgres" => "postgres",
            other => {
                return Err(err(
                    "cache.type",
                    format!(
                        "{other:?} is not supported: use internal (memory), file (memory, kept \
                         in a file across restarts), sqlite, redis, redis_sentinel or postgres"
                    ),
                ));
            }
        };
        let mut o = Options {
            kind,
            left: self.options.unwrap_or_default(),
            warnings: Vec::new(),
        };
        let size = positive(
            "cache.options.cache_size",
            o.scalar("cache_size")?.as_ref(),
            defaults::INTERNAL_CACHE_SIZE,
        )?;
        let backend = match kind {
            "internal" => CacheBackend::Internal,
            "file" => CacheBackend::File {
                path: PathBuf::from(o.required("path", "the path of its file")?),
            },
            "sqlite" => {
                let filename = PathBuf::from(o.required("filename", "the path of its file")?);
                let timeout = o.seconds("timeout", driver_defaults::SQLITE_TIMEOUT_SECS)?;
                o.ignore(
                    &["threads"],
                    "the size of the peer's connection pool: this daemon keeps up to 4 \
                     connections",
                );
                CacheBackend::Sqlite { filename, timeout }
            }
            "redis" => {
                let url = o.required("url", "the server's url (redis://host:port/db)")?;
                if !url.contains("://") {
                    return Err(err(
                        "cache.options.url",
                        format!("{url:?} is not a Redis URL (redis://, rediss:// or unix://)"),
                    ));
                }
                let credentials = o.redis_credentials()?;
                let connection = o.redis_connection()?;
                o.ignore(
                    &["ssl_cert_reqs", "ssl_keyfile", "ssl_certfile"],
                    "not supported",
                );
                CacheBackend::Redis {
                    url: credentials.fill(&url),
                    connection,
                }
            }
            "redis_sentinel" => {
                let master_name = o.required("sentinel_master_name", "the master's name")?;
                let list = match o.left.remove("sentinels") {
                    Some(OptionValue::List(list)) if !list.is_empty() => list,
                    _ => {
                        return Err(err(
                            "cache.options.sentinels",
                            "type redis_sentinel needs a list of sentinels, each [host, port]",
                        ));
                    }
                };
                if list.len() > MAX_SENTINELS {
                    return Err(err(
                        "cache.options.sentinels",
                        format!("more than {MAX_SENTINELS} sentinels"),
                    ));
                }
                let sentinels = list
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        sentinel(v).ok_or_else(|| {
                            err(
                                &format!("cache.options.sentinels[{i}]"),
                                "is not a sentinel address: [host, port] or host:port",
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let credentials = o.redis_credentials()?;
                let ssl = super::boolean("cache.options.ssl", o.scalar("ssl")?.as_ref(), false)?;
                let master_url = (ssl || !credentials.is_empty()).then(|| {
                    credentials.fill(if ssl {
                        "rediss://master"
                    } else {
                        "redis://master"
                    })
                });
                let connection = o.redis_connection()?;
                o.ignore(&["sentinel_kwargs", "min_other_sentinels"], "not supported");
                CacheBackend::RedisSentinel {
                    sentinels,
                    master_name,
                    master_url,
                    connection,
                }
            }
            _ => {
                let timeout = o.seconds("timeout", driver_defaults::POSTGRES_TIMEOUT_SECS)?;
                let dsn = o.text("dsn")?;
                let mut parts = Vec::new();
                for (name, libpq) in [
                    ("host", "host"),
                    ("port", "port"),
                    ("user", "user"),
                    ("password", "password"),
                    ("database", "dbname"),
                ] {
                    if let Some(v) = o.text(name)? {
                        if dsn.is_some() {
                            return Err(err(
                                &Options::key(name),
                                "give it in the dsn (both a dsn and its parts are not supported)",
                            ));
                        }
                        parts.push(format!("{libpq}={}", libpq_quote(&v)));
                    }
                }
                let dsn = match dsn {
                    Some(dsn) => dsn,
                    None if !parts.is_empty() => parts.join(" "),
                    None => {
                        return Err(err(
                            "cache.options.dsn",
                            "type postgres needs the database's dsn \
                             (postgres://user:password@host/database)",
                        ));
                    }
                };
                o.ignore(
                    &[
                        "min_size",
                        "max_size",
                        "max_queries",
                        "max_inactive_connection_lifetime",
                        "command_timeout",
                        "statement_cache_size",
                        "max_cached_statement_lifetime",
                        "max_cacheable_statement_size",
                        "server_settings",
                        "connect_timeout",
                        "passfile",
                        "ssl",
                        "direct_tls",
                        "target_session_attrs",
                    ],
                    "asyncpg's pool and connection settings: this daemon keeps one connection, \
                     bounded by `timeout`, without TLS",
                );
                CacheBackend::Postgres { dsn, timeout }
            }
        };
        let on_store_error = match text(self.on_store_error.as_ref()).as_deref() {
            None | Some("local") => StoreErrorPolicy::Local,
            Some("defer") => StoreErrorPolicy::Defer,
            Some(other) => {
                return Err(err(
                    "cache.on_store_error",
                    format!("{other:?} is neither local nor defer"),
                ));
            }
        };
        let file = match &backend {
            CacheBackend::File { path } => Some(path.clone()),
            _ => None,
        };
        Ok(Cache {
            size,
            file,
            backend,
            on_store_error,
            warnings: o.finish(),
        })
    }
}
