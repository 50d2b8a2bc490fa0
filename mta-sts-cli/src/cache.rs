//! `mta-sts cache`: the operator's tools for a policy store (list, show, purge, refresh), working
//! on the store directly: an SQLite file, a PostgreSQL database, Redis (or Redis Sentinel, from
//! the configuration), or the daemon's `type: file` snapshot (read only), chosen by the daemon's configuration (`--config`) or named with
//! `--store`; or on a running daemon's cache, in its memory and its store, through its admin
//! socket (`--socket`, or the `admin_socket` key of the configuration: see [`daemon`]).
//!
//! Every entry a store returns is hostile: its policy text is parsed with the core's parser for
//! the mode and `max_age`, and an entry that cannot be read is listed as unreadable, never
//! trusted and never a crash.

use std::collections::HashSet;
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use mta_sts_core::{Policy, PolicyDomain, UnixTime};
use mta_sts_net::{PersistError, PolicyStore, StoreError, StoredPolicy};
use mta_sts_postfix::config::{CacheBackend, ConfigError, DEFAULT_CONFIG_PATH};
use mta_sts_store::postgres::PostgresStore;
use mta_sts_store::redis::RedisStore;
use mta_sts_store::sqlite::{DEFAULT_BUSY_TIMEOUT, SqliteStore};
use serde_json::{Value, json};

use crate::net::NetArgs;

#[path = "cache_daemon.rs"]
mod daemon;
use crate::query;
use crate::report;

/// The most entries `list` reads by default.
const DEFAULT_LIMIT: usize = 100_000;

/// How long `--store` connections and operations may take.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// `mta-sts cache` arguments.
#[derive(Debug, Args)]
pub(crate) struct CacheArgs {
    /// The daemon's configuration file (mta-sts-daemon.yml): its `cache` section names the store.
    /// The default when neither this nor --store is given.
    #[arg(
        short,
        long,
        value_name = "FILE",
        global = true,
        conflicts_with = "store"
    )]
    config: Option<PathBuf>,
    /// The store itself: `sqlite:PATH` (postfix-mta-sts-resolver's SQLite file),
    /// `postgres://…` (its PostgreSQL table), `redis://…`, `rediss://…` or `unix://…` (its
    /// Redis layout), or `file:PATH` (the daemon's `type: file` snapshot, read only).
    #[arg(long, value_name = "STORE", global = true)]
    store: Option<String>,
    /// A running daemon's admin socket (its `admin_socket` key): work on the daemon's cache, in
    /// its memory and its store. With --config, the configuration's admin_socket is used when
    /// the daemon listens on it.
    #[arg(
        long,
        value_name = "PATH",
        global = true,
        conflicts_with_all = ["store", "config"]
    )]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// The stored policies: domain, id, mode, fetched, expires, source. Unreadable entries are
    /// listed as such. Exit 0 when the store was read.
    List {
        /// Print JSON: {"store","entries":[{"domain","id","mode","max_age","fetched","expires",
        /// "fresh","source","error"}]}.
        #[arg(long)]
        json: bool,
        /// Read at most this many entries.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_LIMIT)]
        limit: usize,
    },
    /// One domain's stored policy, with its text. Exit 0 when the store has a readable entry, 1
    /// when it has none or an unreadable one.
    Show {
        /// The policy domain, e.g. example.com.
        domain: String,
        /// Print JSON: the fields of `list --json` and "mx", "policy".
        #[arg(long)]
        json: bool,
    },
    /// Remove one domain's entry, or every entry with --all (asks first unless --yes). Exit 0
    /// when something was removed, 1 when there was nothing to remove or it was not confirmed.
    Purge {
        /// The policy domain whose entry goes.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        domain: Option<String>,
        /// Remove every entry.
        #[arg(long)]
        all: bool,
        /// Do not ask before removing every entry.
        #[arg(long)]
        yes: bool,
    },
    /// Fetch the domain's policy now, even when its id did not change (for domains that change
    /// their policy without a new id), and write it into the store over the stored one. Exit 0
    /// when a policy was fetched and written, 1 when the domain has none (the store is left as
    /// it is).
    Refresh {
        /// The policy domain, e.g. example.com.
        domain: String,
        /// Print JSON: the new entry's fields (as `show --json`), "previous" (the replaced
        /// entry or null) and "changed".
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        net: NetArgs,
    },
}

/// Why a cache command could not do its work.
#[derive(Debug)]
pub(crate) enum CacheError {
    /// The command line or the store's name cannot be used (exit 2).
    Usage(String),
    /// The daemon's configuration cannot be used (exit 2).
    Config(ConfigError),
    /// The store failed (exit 1).
    Store {
        /// The store, as the operator named it.
        store: String,
        /// What failed.
        error: StoreError,
    },
    /// The snapshot file cannot be read (exit 1).
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        error: PersistError,
    },
    /// The store is missing (exit 1).
    Missing(String),
    /// The command writes, and the source is read only (exit 2).
    ReadOnly(String),
    /// Anything else that stops the command (exit 1): the async runtime, the client.
    Other(String),
}

impl CacheError {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) | Self::Config(_) | Self::ReadOnly(_) => ExitCode::from(2),
            Self::Store { .. } | Self::File { .. } | Self::Missing(_) | Self::Other(_) => {
                ExitCode::from(1)
            }
        }
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) | Self::Other(m) => f.write_str(m),
            Self::Config(e) => write!(f, "{e}"),
            Self::Store { store, error } => write!(f, "{store}: {error}"),
            Self::File { path, error } => write!(f, "{}: {error}", path.display()),
            Self::Missing(m) => f.write_str(m),
            Self::ReadOnly(what) => write!(
                f,
                "{what} is read only here (the daemon's snapshot file): stop the daemon and remove \
                 the file, or use a shared store (sqlite, redis, postgres)"
            ),
        }
    }
}

impl std::error::Error for CacheError {}

/// Where the entries are.
enum Source {
    /// A policy store, with the name the operator knows it by, and for SQLite its file (read
    /// directly for the keys of entries the store cannot read).
    Store {
        store: Arc<dyn PolicyStore>,
        label: String,
        sqlite: Option<PathBuf>,
    },
    /// The daemon's `type: file` snapshot.
    File(PathBuf),
}

impl Source {
    fn label(&self) -> String {
        match self {
            Self::Store { label, .. } => label.clone(),
            Self::File(path) => format!("file:{}", path.display()),
        }
    }

    /// The kind of source, the `source` field of an entry.
    fn kind(&self) -> &'static str {
        match self {
            Self::Store { store, .. } => store.name(),
            Self::File(_) => "file",
        }
    }

    fn store_error(&self, error: StoreError) -> CacheError {
        CacheError::Store {
            store: self.label(),
            error,
        }
    }
}

/// What the source is, before it is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Spec {
    /// The SQLite file, with its busy timeout.
    Sqlite(PathBuf, Duration),
    Postgres(String),
    Redis(String),
    File(PathBuf),
    /// Another store the daemon's configuration names (Redis Sentinel), opened as the daemon
    /// opens it.
    Backend(CacheBackend),
}

/// Reads `--store`: `sqlite:PATH`, `postgres://…`/`postgresql://…`, `file:PATH`.
fn parse_spec(s: &str) -> Result<Spec, CacheError> {
    if let Some(path) = s.strip_prefix("sqlite:") {
        if path.is_empty() {
            return Err(CacheError::Usage(
                "--store sqlite: needs a path, e.g. sqlite:/var/lib/mta-sts/cache.db".into(),
            ));
        }
        return Ok(Spec::Sqlite(PathBuf::from(path), DEFAULT_BUSY_TIMEOUT));
    }
    if let Some(path) = s.strip_prefix("file:") {
        if path.is_empty() {
            return Err(CacheError::Usage(
                "--store file: needs the snapshot's path".into(),
            ));
        }
        return Ok(Spec::File(PathBuf::from(path)));
    }
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        return Ok(Spec::Postgres(s.to_owned()));
    }
    if ["redis://", "rediss://", "unix://"]
        .iter()
        .any(|scheme| s.starts_with(scheme))
    {
        return Ok(Spec::Redis(s.to_owned()));
    }
    Err(CacheError::Usage(format!(
        "--store {s:?} is not a store: use sqlite:PATH, postgres://USER@HOST/DB, \
         redis://HOST[:PORT][/DB] or file:PATH"
    )))
}

/// The source the daemon's configuration names.
fn spec_of_config(path: &Path, backend: CacheBackend) -> Result<Spec, CacheError> {
    match backend {
        CacheBackend::Internal => Err(CacheError::Usage(format!(
            "{}: the daemon's cache is in its memory (cache.type internal): set admin_socket in \
             the configuration to reach it in the running daemon, or name a store with --store",
            path.display()
        ))),
        CacheBackend::File { path } => Ok(Spec::File(path)),
        CacheBackend::Sqlite { filename, timeout } => Ok(Spec::Sqlite(filename, timeout)),
        CacheBackend::Postgres { dsn, .. } => Ok(Spec::Postgres(dsn)),
        other => Ok(Spec::Backend(other)),
    }
}

/// What the command works on.
enum Target {
    /// A store (or snapshot file) directly.
    Spec(Spec),
    /// A running daemon, through its admin socket.
    Daemon(PathBuf),
}

impl CacheArgs {
    fn target(&self) -> Result<Target, CacheError> {
        if let Some(socket) = &self.socket {
            return Ok(Target::Daemon(socket.clone()));
        }
        if let Some(s) = &self.store {
            return parse_spec(s).map(Target::Spec);
        }
        let path = self
            .config
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
        let config = mta_sts_postfix::config::load(path).map_err(CacheError::Config)?;
        let backend = config.cache.backend;
        let Some(admin) = config.admin_socket else {
            return spec_of_config(path, backend).map(Target::Spec);
        };
        match daemon::listening(&admin.path) {
            Ok(()) => Ok(Target::Daemon(admin.path)),
            Err(why) if !daemon::not_running(&why) => Err(CacheError::Other(format!(
                "{}: {why}",
                admin.path.display()
            ))),
            Err(why) if backend == CacheBackend::Internal => Err(CacheError::Missing(format!(
                "{}: {why}: is the daemon running? Its cache is in its memory (cache.type \
                 internal), reachable only through the admin socket",
                admin.path.display()
            ))),
            Err(why) => {
                eprintln!(
                    "mta-sts: cache: {}: {why}: working on the daemon's store directly",
                    admin.path.display()
                );
                spec_of_config(path, backend).map(Target::Spec)
            }
        }
    }
}

/// Opens the source; `create` lets an SQLite file be created (refresh), otherwise a missing
/// file is an error (a typo must not create an empty cache).
async fn open(spec: Spec, create: bool) -> Result<Source, CacheError> {
    match spec {
        Spec::Sqlite(path, timeout) => {
            let label = format!("sqlite:{}", path.display());
            if !create && !path.exists() {
                return Err(CacheError::Missing(format!("{label}: no such file")));
            }
            let store = SqliteStore::open_with_busy_timeout(&path, timeout);
            opened(label, store.map(|s| Arc::new(s) as _), Some(path))
        }
        Spec::Postgres(dsn) => {
            let store = PostgresStore::connect_with_timeout(&dsn, STORE_TIMEOUT).await;
            opened(redact(&dsn), store.map(|s| Arc::new(s) as _), None)
        }
        Spec::Redis(url) => {
            let store = RedisStore::connect(&url);
            opened(redact(&url), store.map(|s| Arc::new(s) as _), None)
        }
        Spec::Backend(backend) => {
            let label = match &backend {
                CacheBackend::RedisSentinel {
                    sentinels,
                    master_name,
                    ..
                } => format!("redis_sentinel:{master_name}@{}", sentinels.join(",")),
                other => format!("{other:?}"),
            };
            let store = mta_sts_postfix::store::open_store(&backend).await;
            match store {
                Ok(Some(store)) => opened(label, Ok(store), None),
                Ok(None) => Err(CacheError::Usage(format!("{label}: no shared store"))),
                Err(e) => opened(label, Err(e), None),
            }
        }
        Spec::File(path) => Ok(Source::File(path)),
    }
}

/// The source of a store just opened, or why it could not be.
fn opened(
    label: String,
    store: Result<Arc<dyn PolicyStore>, StoreError>,
    sqlite: Option<PathBuf>,
) -> Result<Source, CacheError> {
    match store {
        Ok(store) => Ok(Source::Store {
            store,
            label,
            sqlite,
        }),
        Err(error) => Err(CacheError::Store {
            store: label,
            error,
        }),
    }
}

/// A URL without its password, for messages and output.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// One entry as the tools show it.
#[derive(Debug, Clone)]
struct Entry {
    domain: String,
    id: Option<String>,
    fetched_at: Option<UnixTime>,
    /// The parsed policy, or why the entry cannot be read.
    policy: Result<(Policy, String), String>,
    /// Where it is kept, when the entries of a listing differ (a daemon's memory and store).
    source: Option<String>,
}

impl Entry {
    fn of(stored: StoredPolicy) -> Self {
        let policy = match Policy::parse(&stored.policy) {
            Ok(p) => Ok((p, stored.policy)),
            Err(e) => Err(format!("the stored policy is not valid: {e}")),
        };
        Self {
            domain: stored.domain,
            id: Some(stored.id),
            fetched_at: Some(stored.fetched_at),
            policy,
            source: None,
        }
    }

    fn unreadable(domain: String, why: String) -> Self {
        Self {
            domain,
            id: None,
            fetched_at: None,
            policy: Err(why),
            source: None,
        }
    }

    fn parsed(&self) -> Option<&Policy> {
        self.policy.as_ref().ok().map(|(p, _)| p)
    }

    fn expires(&self) -> Option<UnixTime> {
        let p = self.parsed()?;
        Some(
            self.fetched_at?
                .saturating_add(Duration::from_secs(u64::from(p.max_age()))),
        )
    }

    fn fresh(&self, now: UnixTime) -> Option<bool> {
        self.expires().map(|e| now <= e)
    }

    /// The `list --json` object.
    fn json(&self, source: &str, now: UnixTime) -> Value {
        let p = self.parsed();
        json!({
            "domain": self.domain,
            "id": self.id,
            "mode": p.map(|p| p.mode().as_str()),
            "max_age": p.map(Policy::max_age),
            "fetched": self.fetched_at.map(time_text),
            "expires": self.expires().map(time_text),
            "fresh": self.fresh(now),
            "source": self.source.as_deref().unwrap_or(source),
            "error": self.policy.as_ref().err(),
        })
    }

    /// The `show --json` object: the list fields, the MX patterns and the policy text.
    fn json_full(&self, source: &str, now: UnixTime) -> Value {
        let mut v = self.json(source, now);
        v["mx"] = json!(
            self.parsed()
                .map(|p| p.mx().iter().map(|m| m.as_str()).collect::<Vec<_>>())
        );
        v["policy"] = json!(self.policy.as_ref().ok().map(|(_, text)| text));
        v
    }
}

/// An RFC 3339 UTC time, or `@SECONDS` past the year 9999.
fn time_text(t: UnixTime) -> String {
    const YEAR_10000: u64 = 253_402_300_800;
    let secs = t.as_secs();
    if secs >= YEAR_10000 {
        return format!("@{secs}");
    }
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .to_string()
}

fn now() -> UnixTime {
    UnixTime::from(SystemTime::now())
}

fn domain_arg(s: &str) -> Result<PolicyDomain, CacheError> {
    PolicyDomain::parse(s).map_err(|e| {
        CacheError::Usage(format!(
            "{s:?} is not a policy domain ({e}): give a domain name such as example.com"
        ))
    })
}

/// The entries of the source (up to `limit`), readable or not, and how many rows had no
/// readable domain.
async fn entries(source: &Source, limit: usize) -> Result<(Vec<Entry>, usize), CacheError> {
    match source {
        Source::File(path) => {
            let snapshot = mta_sts_net::load_snapshot(path)
                .map_err(|error| CacheError::File {
                    path: path.clone(),
                    error,
                })?
                .ok_or_else(|| CacheError::Missing(format!("{}: no such file", path.display())))?;
            let entries = snapshot
                .entries()
                .iter()
                .take(limit)
                .map(|e| {
                    Entry::of(StoredPolicy::new(
                        e.domain(),
                        e.id(),
                        e.fetched_at(),
                        e.policy(),
                    ))
                })
                .collect();
            Ok((entries, snapshot.malformed()))
        }
        Source::Store { store, sqlite, .. } => {
            let listed = store.list(limit).await.map_err(|e| source.store_error(e))?;
            let mut seen: HashSet<String> = listed.iter().map(|e| e.domain.clone()).collect();
            let mut out: Vec<Entry> = listed.into_iter().map(Entry::of).collect();
            let mut no_domain = 0;
            // The store's list leaves out what it cannot read; the SQLite file says which keys
            // it has, and a get of each of those says why it is unreadable.
            if let Some(path) = sqlite {
                let (keys, bad) = sqlite_keys(path, limit).map_err(|e| source.store_error(e))?;
                no_domain = bad;
                for key in keys {
                    if out.len() >= limit || !seen.insert(key.clone()) {
                        continue;
                    }
                    out.push(match store.get(&key).await {
                        Ok(Some(e)) => Entry::of(e),
                        Ok(None) => continue,
                        Err(e) => Entry::unreadable(key, e.to_string()),
                    });
                }
            }
            Ok((out, no_domain))
        }
    }
}

/// The domains of the rows of postfix-mta-sts-resolver's SQLite table (read only), and how many
/// rows have no readable domain (not text, longer than a domain name).
fn sqlite_keys(path: &Path, limit: usize) -> Result<(Vec<String>, usize), StoreError> {
    use mta_sts_net::StoreErrorKind;
    use rusqlite::{Connection, OpenFlags, types::ValueRef};
    let err =
        |e: rusqlite::Error| StoreError::new(StoreErrorKind::Unavailable, format!("sqlite: {e}"));
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(DEFAULT_BUSY_TIMEOUT).map_err(err)?;
    let mut stmt = conn
        .prepare(
            "SELECT CASE WHEN typeof(domain) = 'text' AND length(CAST(domain AS BLOB)) <= 255 \
             THEN domain END FROM sts_policy_cache ORDER BY rowid LIMIT ?1",
        )
        .map_err(err)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = stmt.query([limit]).map_err(err)?;
    let (mut keys, mut bad) = (Vec::new(), 0);
    while let Some(row) = rows.next().map_err(err)? {
        match row.get_ref(0).map_err(err)? {
            ValueRef::Text(t) => match std::str::from_utf8(t) {
                Ok(s) => keys.push(s.to_owned()),
                Err(_) => bad += 1,
            },
            _ => bad += 1,
        }
    }
    Ok((keys, bad))
}

/// Runs `mta-sts cache …`.
pub(crate) fn run(args: CacheArgs) -> ExitCode {
    match try_run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mta-sts: cache: {e}");
            e.exit_code()
        }
    }
}

fn try_run(args: CacheArgs) -> Result<ExitCode, CacheError> {
    let spec = match args.target()? {
        Target::Spec(spec) => spec,
        Target::Daemon(socket) => return daemon::run(&socket, args.action),
    };
    let rt = query::runtime().map_err(CacheError::Other)?;
    match args.action {
        Action::List { json, limit } => rt.block_on(async {
            let source = open(spec, false).await?;
            list(&source, json, limit).await
        }),
        Action::Show { domain, json } => {
            let domain = domain_arg(&domain)?;
            rt.block_on(async {
                let source = open(spec, false).await?;
                show(&source, domain.as_str(), json).await
            })
        }
        Action::Purge { domain, all, yes } => {
            let domain = domain.as_deref().map(domain_arg).transpose()?;
            rt.block_on(async {
                let source = open(spec, false).await?;
                match domain {
                    Some(d) => purge_one(&source, d.as_str()).await,
                    None if all => purge_all(&source, yes).await,
                    None => Err(CacheError::Usage("purge needs a DOMAIN or --all".into())),
                }
            })
        }
        Action::Refresh { domain, json, net } => {
            let domain = domain_arg(&domain)?;
            let client = query::client(&net, false).map_err(CacheError::Usage)?;
            rt.block_on(async {
                let source = open(spec, true).await?;
                refresh(&source, &client, domain.as_str(), json).await
            })
        }
    }
}

async fn list(source: &Source, json: bool, limit: usize) -> Result<ExitCode, CacheError> {
    let (entries, no_domain) = entries(source, limit).await?;
    print_list(&entries, &source.label(), source.kind(), no_domain, json);
    Ok(ExitCode::SUCCESS)
}

/// Prints a listing of `entries` of `label`, whose entries come from `kind` unless they say.
fn print_list(entries: &[Entry], label: &str, kind: &str, no_domain: usize, json: bool) {
    let now = now();
    if json {
        let out = json!({
            "store": label,
            "entries": entries.iter().map(|e| e.json(kind, now)).collect::<Vec<_>>(),
            "unreadable_keys": no_domain,
        });
        println!("{out}");
        return;
    }
    println!(
        "{:<40} {:<32} {:<8} {:<20} {:<20} SOURCE",
        "DOMAIN", "ID", "MODE", "FETCHED", "EXPIRES"
    );
    for e in entries {
        let dash = || "-".to_owned();
        let kind = e.source.as_deref().unwrap_or(kind);
        match &e.policy {
            Ok((p, _)) => {
                let expires = e.expires().map_or_else(dash, time_text);
                let mark = if e.fresh(now) == Some(false) {
                    " (expired)"
                } else {
                    ""
                };
                println!(
                    "{:<40} {:<32} {:<8} {:<20} {:<20} {kind}{mark}",
                    e.domain,
                    e.id.clone().unwrap_or_else(dash),
                    p.mode().as_str(),
                    e.fetched_at.map_or_else(dash, time_text),
                    expires,
                );
            }
            Err(why) => println!("{:<40} unreadable: {why}", e.domain),
        }
    }
    let unreadable = entries.iter().filter(|e| e.policy.is_err()).count();
    println!(
        "{} entries ({unreadable} unreadable) in {label}",
        entries.len(),
    );
    if no_domain > 0 {
        println!("{no_domain} more rows without a readable domain left out");
    }
}

/// The entry of `domain`: `None` when the source has none.
async fn entry(source: &Source, domain: &str) -> Result<Option<Entry>, CacheError> {
    match source {
        Source::Store { store, .. } => match store.get(domain).await {
            Ok(e) => Ok(e.map(Entry::of)),
            Err(e) if e.kind() == &mta_sts_net::StoreErrorKind::Corrupt => {
                Ok(Some(Entry::unreadable(domain.to_owned(), e.to_string())))
            }
            Err(e) => Err(source.store_error(e)),
        },
        Source::File(_) => {
            let (all, _) = entries(source, usize::MAX).await?;
            Ok(all.into_iter().find(|e| e.domain == domain))
        }
    }
}

async fn show(source: &Source, domain: &str, json: bool) -> Result<ExitCode, CacheError> {
    let found = entry(source, domain).await?;
    let now = now();
    let kind = source.kind();
    let readable = found.as_ref().is_some_and(|e| e.policy.is_ok());
    if json {
        let out = match &found {
            Some(e) => e.json_full(kind, now),
            None => json!({"domain": domain, "source": kind, "error": "no entry"}),
        };
        println!("{out}");
    } else {
        match &found {
            None => println!("{domain}: no entry in {}", source.label()),
            Some(e) => print_entry(e, kind, now),
        }
    }
    Ok(if readable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_entry(e: &Entry, kind: &str, now: UnixTime) {
    match &e.policy {
        Err(why) => println!("{}: unreadable: {why}", e.domain),
        Ok((p, text)) => {
            let mx: Vec<&str> = p.mx().iter().map(|m| m.as_str()).collect();
            println!("{}:", e.domain);
            println!("  id:      {}", e.id.as_deref().unwrap_or("-"));
            println!("  mode:    {}", p.mode());
            println!("  mx:      {}", mx.join(", "));
            println!("  max_age: {} s", p.max_age());
            if let Some(f) = e.fetched_at {
                println!("  fetched: {}", time_text(f));
            }
            if let Some(x) = e.expires() {
                let state = if e.fresh(now) == Some(true) {
                    "fresh"
                } else {
                    "expired"
                };
                println!("  expires: {} ({state})", time_text(x));
            }
            println!("  source:  {}", e.source.as_deref().unwrap_or(kind));
            println!("  policy:");
            for line in text.lines() {
                println!("    {line}");
            }
        }
    }
}

fn writable(source: &Source) -> Result<&dyn PolicyStore, CacheError> {
    match source {
        Source::Store { store, .. } => Ok(store.as_ref()),
        Source::File(_) => Err(CacheError::ReadOnly(source.label())),
    }
}

async fn purge_one(source: &Source, domain: &str) -> Result<ExitCode, CacheError> {
    let store = writable(source)?;
    let removed = store
        .delete(domain)
        .await
        .map_err(|e| source.store_error(e))?;
    if removed {
        println!("{domain}: removed from {}", source.label());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{domain}: no entry in {}", source.label());
        Ok(ExitCode::from(1))
    }
}

async fn purge_all(source: &Source, yes: bool) -> Result<ExitCode, CacheError> {
    let store = writable(source)?;
    let (entries, _) = entries(source, usize::MAX).await?;
    if entries.is_empty() {
        println!("no entries in {}", source.label());
        return Ok(ExitCode::from(1));
    }
    if !yes
        && !confirm(&format!(
            "remove all {} entries of {}? [y/N] ",
            entries.len(),
            source.label()
        ))
    {
        eprintln!("mta-sts: cache: nothing removed (not confirmed; --yes does not ask)");
        return Ok(ExitCode::from(1));
    }
    let mut removed = 0usize;
    for e in &entries {
        if store
            .delete(&e.domain)
            .await
            .map_err(|e| source.store_error(e))?
        {
            removed += 1;
        }
    }
    println!("{removed} entries removed from {}", source.label());
    Ok(ExitCode::SUCCESS)
}

/// Asks on standard error, reads a line of standard input: yes only for `y` or `yes`.
fn confirm(question: &str) -> bool {
    eprint!("{question}");
    let mut line = String::new();
    match std::io::stdin().lock().take_line(&mut line) {
        Ok(n) if n > 0 => matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
        _ => false,
    }
}

/// Reads one line of at most 64 bytes.
trait TakeLine {
    fn take_line(&mut self, line: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(&mut self, line: &mut String) -> std::io::Result<usize> {
        use std::io::Read;
        self.take(64).read_line(line)
    }
}

async fn refresh(
    source: &Source,
    client: &mta_sts_tokio::Client,
    domain: &str,
    json: bool,
) -> Result<ExitCode, CacheError> {
    let store = writable(source)?;
    // A client of its own, with an empty cache: the policy is fetched whatever the id says.
    let outcome = client.policy(domain).await;
    let Some(fetched) = outcome.policy() else {
        let reason = report::outcome_reason(&outcome);
        if json {
            println!(
                "{}",
                json!({"domain": domain, "outcome": report::outcome_kind(&outcome),
                       "reason": reason, "written": false})
            );
        } else {
            println!(
                "{domain}: {}: {reason}; the store is left as it is",
                report::outcome_kind(&outcome)
            );
        }
        return Ok(ExitCode::from(1));
    };
    let new = StoredPolicy::new(
        domain,
        fetched.id(),
        fetched.fetched_at(),
        fetched.policy().to_string(),
    );
    let previous = entry(source, domain).await?;
    // The store keeps the newer fetch: an entry fetched in this second or later (another host,
    // a clock ahead) is removed first so that the fetch just made replaces it.
    if previous
        .as_ref()
        .and_then(|p| p.fetched_at)
        .is_some_and(|t| t >= new.fetched_at)
    {
        store
            .delete(domain)
            .await
            .map_err(|e| source.store_error(e))?;
    }
    store.put(&new).await.map_err(|e| source.store_error(e))?;
    let written = store
        .get(domain)
        .await
        .map_err(|e| source.store_error(e))?
        .map(Entry::of)
        .ok_or_else(|| {
            CacheError::Other(format!(
                "{domain}: the store has no entry after the write ({})",
                source.label()
            ))
        })?;
    let changed = previous.as_ref().is_none_or(|p| {
        p.id != written.id || p.policy.as_ref().ok().map(|(p, _)| p) != written.parsed()
    });
    let now = now();
    let kind = source.kind();
    if json {
        let mut out = written.json_full(kind, now);
        out["previous"] = previous
            .as_ref()
            .map_or(Value::Null, |p| p.json_full(kind, now));
        out["changed"] = json!(changed);
        println!("{out}");
    } else {
        let what = match (&previous, changed) {
            (None, _) => "written (no entry before)",
            (Some(_), true) => "written (the stored policy changed)",
            (Some(_), false) => "written (the same policy as stored, fetched again)",
        };
        println!("{domain}: policy fetched and {what} to {}", source.label());
        print_entry(&written, kind, now);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names() {
        assert_eq!(
            parse_spec("sqlite:/x/c.db").unwrap(),
            Spec::Sqlite("/x/c.db".into(), DEFAULT_BUSY_TIMEOUT)
        );
        assert_eq!(
            parse_spec("file:c.json").unwrap(),
            Spec::File("c.json".into())
        );
        assert!(matches!(
            parse_spec("postgresql://u@h/db").unwrap(),
            Spec::Postgres(_)
        ));
        assert_eq!(
            parse_spec("rediss://r:6380/2").unwrap(),
            Spec::Redis("rediss://r:6380/2".into())
        );
        for bad in ["", "sqlite:", "file:", "mysql://h/db", "/var/lib/cache.db"] {
            assert!(
                matches!(parse_spec(bad), Err(CacheError::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn times_past_year_9999_do_not_panic() {
        assert_eq!(time_text(UnixTime::from_secs(0)), "1970-01-01T00:00:00Z");
        assert_eq!(time_text(UnixTime::MAX), format!("@{}", u64::MAX));
    }
}
