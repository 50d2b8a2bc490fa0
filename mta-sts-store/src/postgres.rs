//! postfix-mta-sts-resolver's PostgreSQL cache table, as a [`PolicyStore`].
//!
//! The table is the one postfix-mta-sts-resolver 1.5's `PostgresCache` creates and uses, so that
//! both daemons can share one database during a migration:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS sts_policy_cache
//!     (id serial primary key, domain text, ts integer, pol_id text, pol_body jsonb);
//! CREATE UNIQUE INDEX IF NOT EXISTS sts_policy_domain ON sts_policy_cache (domain);
//! CREATE INDEX IF NOT EXISTS sts_policy_domain_ts ON sts_policy_cache (domain, ts);
//! ```
//!
//! (and its `proactive_fetch_ts` table, created alongside as it does). `domain` is the policy
//! domain, `ts` the fetch time in whole seconds, `pol_id` the TXT id and `pol_body` the policy
//! in its JSON form ([`layout`]). A write replaces a row only when its `ts` is
//! newer, with the same `INSERT … ON CONFLICT (domain) DO UPDATE … WHERE sts_policy_cache.ts <
//! EXCLUDED.ts` the peer runs; a row that cannot be read (wrong types, broken JSON, a giant
//! value, NULLs) is replaced by the next write whatever its `ts`.
//!
//! The [`FleetNotes`] (fleet lookup locks, shared negative answers) live in a table of this
//! program's own, created alongside when missing ([`NOTES_SETUP`]); the peer never reads it. A
//! claim is one `INSERT … ON CONFLICT (key) DO UPDATE … WHERE mta_sts_notes.expires <= now`
//! (atomic: the row is locked by the conflict), never retried (a claim that may have been
//! carried out must not be asked twice); expired notes are swept a few at a time after each claim.
//!
//! Every value is read through a cast to `text` and cut at a length limit on the server, so a
//! hostile row costs bounded memory and gives [`StoreErrorKind::Corrupt`] for its domain only.
//!
//! # Runtime
//!
//! The client is [tokio-postgres](https://docs.rs/tokio-postgres): every method of
//! [`PostgresStore`] must run inside a tokio runtime with its I/O and time drivers enabled
//! (`#[tokio::main]`, `Runtime::new()`, or a builder with `enable_all()`); the connection task is
//! spawned on that runtime. Without a runtime the methods return an error of kind
//! [`StoreErrorKind::Other`]; without the time driver tokio panics.
//!
//! TLS is not supported yet: a DSN with `sslmode=require` is refused by
//! [`PostgresStore::connect`] ([`StoreErrorKind::Other`]); with `prefer` (libpq's default) and
//! `disable` the connection is in clear text.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mta_sts_core::UnixTime;
use mta_sts_net::{
    BoxFuture, FleetNotes, MAX_NOTE_VALUE, PolicyStore, StoreError, StoreErrorKind, StoredPolicy,
    check_note,
};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Row};

use crate::layout;

/// How long a connect, or one operation with its queries, may take unless told otherwise: the
/// peer's `POSTGRES_TIMEOUT` (5 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest `pol_id` read back; longer is [`StoreErrorKind::Corrupt`] (an RFC 8461 id has at
/// most 32 characters).
const MAX_ID_LEN: usize = 64;

/// The longest domain read back by [`PolicyStore::list`] (a DNS name has at most 253).
const MAX_DOMAIN_LEN: usize = 255;

/// The longest `ts` text read back (an integer column holds at most 11 characters).
const MAX_TS_LEN: usize = 32;

/// The peer's schema, run in one transaction by [`PostgresStore::connect`].
const SETUP: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS proactive_fetch_ts (id serial primary key, last_fetch_ts integer)",
    "CREATE TABLE IF NOT EXISTS sts_policy_cache \
     (id serial primary key, domain text, ts integer, pol_id text, pol_body jsonb)",
    "CREATE UNIQUE INDEX IF NOT EXISTS sts_policy_domain ON sts_policy_cache (domain)",
    "CREATE INDEX IF NOT EXISTS sts_policy_domain_ts ON sts_policy_cache (domain, ts)",
];

/// The table of the [`FleetNotes`] (this program's own), created with the peer's tables.
pub const NOTES_SETUP: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS mta_sts_notes (key text primary key, value text not null, \
     expires bigint not null)",
    "CREATE INDEX IF NOT EXISTS mta_sts_notes_expires ON mta_sts_notes (expires)",
];

/// A claim: set unless an unexpired note holds the key.
const NOTE_CLAIM: &str = "INSERT INTO mta_sts_notes (key, value, expires) \
     VALUES ($1::text, $2::text, $4::int8) \
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires \
     WHERE mta_sts_notes.expires <= $3::int8";

/// A few expired notes removed (after each claim).
const NOTE_SWEEP: &str = "DELETE FROM mta_sts_notes WHERE key IN \
     (SELECT key FROM mta_sts_notes WHERE expires <= $1::int8 LIMIT 16)";

/// The advisory lock key taken while creating the tables ("mtasts" in ASCII).
const SETUP_LOCK: i64 = 0x6d74_6173_7473;

/// The peer's upsert: a row is replaced only by a newer `ts`.
const UPSERT: &str = "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) \
     VALUES ($1::text, $2::int4, $3::text, $4::text::jsonb) \
     ON CONFLICT (domain) DO UPDATE \
     SET ts = EXCLUDED.ts, pol_id = EXCLUDED.pol_id, pol_body = EXCLUDED.pol_body \
     WHERE sts_policy_cache.ts < EXCLUDED.ts";

/// Overwrites one unreadable row, found by its `ctid` (a row changed since it was read has
/// another `ctid` and is left alone).
const OVERWRITE: &str = "UPDATE sts_policy_cache \
     SET ts = $2::int4, pol_id = $3::text, pol_body = $4::text::jsonb \
     WHERE domain = $1::text AND ctid = $5::text::tid";

/// A [`PolicyStore`] over postfix-mta-sts-resolver's PostgreSQL table ([module docs](self)).
///
/// One connection, shared by every caller (tokio-postgres pipelines concurrent queries on it),
/// opened again on the next operation after it broke (the server restarted, a timeout).
///
/// ```no_run
/// use mta_sts_net::PolicyStore;
/// use mta_sts_store::postgres::PostgresStore;
///
/// # async fn run() -> Result<(), mta_sts_net::StoreError> {
/// // Inside a tokio runtime.
/// let store = PostgresStore::connect("postgres://mta-sts@db.example/mta_sts").await?;
/// if let Some(entry) = store.get("example.com").await? {
///     println!("{} fetched at {:?}", entry.id, entry.fetched_at);
/// }
/// # Ok(())
/// # }
/// ```
pub struct PostgresStore {
    config: tokio_postgres::Config,
    timeout: Duration,
    client: Mutex<Option<Arc<Client>>>,
    /// Held while connecting, so that callers after a restart open one connection, not one each.
    connecting: tokio::sync::Mutex<()>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the config: it holds the password.
        f.debug_struct("PostgresStore")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("dbname", &self.config.get_dbname())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database of `dsn` with [`DEFAULT_TIMEOUT`] and creates the peer's tables
    /// when they are missing.
    ///
    /// `dsn` is what postfix-mta-sts-resolver takes as `cache.options.dsn`: a URL
    /// (`postgres://user:password@host:port/database?options`) or libpq's `key=value` form.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Other`] for a DSN that cannot be read or no tokio runtime,
    /// [`StoreErrorKind::Unavailable`] when the server cannot be reached in time, and what the
    /// server said when it refused the tables.
    pub async fn connect(dsn: &str) -> Result<Self, StoreError> {
        Self::connect_with_timeout(dsn, DEFAULT_TIMEOUT).await
    }

    /// [`connect`](Self::connect), with `timeout` bounding the connect and every later operation
    /// (each of [`get`](PolicyStore::get), [`put`](PolicyStore::put), … with its reconnect and
    /// queries).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with_timeout(dsn: &str, timeout: Duration) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = dsn.parse().map_err(|e| {
            StoreError::new(
                StoreErrorKind::Other,
                format!("postgres DSN not readable: {e}"),
            )
        })?;
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                "postgres DSN: sslmode=require (TLS to PostgreSQL) is not supported yet; \
                 sslmode=prefer and disable connect without TLS",
            ));
        }
        config.connect_timeout(timeout);
        if config.get_application_name().is_none() {
            config.application_name("mta-sts");
        }
        let store = Self {
            config,
            timeout,
            client: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        };
        store.bounded(store.setup()).await?;
        Ok(store)
    }

    /// Creates the peer's tables when missing. Hosts starting together take turns (an advisory
    /// lock): `CREATE TABLE IF NOT EXISTS` run at once by two sessions makes one of them fail
    /// with a duplicate key in the catalog. The peer takes no such lock, so that error (and a
    /// table created meanwhile) is retried a few times.
    async fn setup(&self) -> Result<(), StoreError> {
        let sql = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({SETUP_LOCK}); {}; {}; COMMIT",
            SETUP.join("; "),
            NOTES_SETUP.join("; ")
        );
        let mut attempts = 0;
        loop {
            let client = self.client().await?;
            let Err(e) = client.batch_execute(&sql).await else {
                return Ok(());
            };
            // The rest of the batch was skipped inside the failed transaction: end it.
            let _ = client.batch_execute("ROLLBACK").await;
            let raced = e.code().is_some_and(|c| {
                [
                    SqlState::UNIQUE_VIOLATION,
                    SqlState::DUPLICATE_TABLE,
                    SqlState::DUPLICATE_OBJECT,
                ]
                .contains(c)
            });
            attempts += 1;
            if !raced || attempts >= 5 {
                return Err(self.error(&client, &e, "creating the table"));
            }
            tracing::debug!(error = %e, "postgres store: table created meanwhile, again");
        }
    }

    /// The operation timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The open connection, or a new one.
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        if let Some(client) = self.open_client() {
            return Ok(client);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(client) = self.open_client() {
            return Ok(client);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                "the postgres store needs a tokio runtime",
            ));
        }
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| {
            let kind = classify(&e).unwrap_or(StoreErrorKind::Unavailable);
            StoreError::new(kind, format!("postgres connect: {}", describe(&e)))
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres store: connection ended");
            }
        });
        let client = Arc::new(client);
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&client));
        Ok(client)
    }

    fn open_client(&self) -> Option<Arc<Client>> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some(client) if !client.is_closed() => Some(Arc::clone(client)),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    /// Forgets the connection (the next operation opens another).
    fn forget(&self, client: &Arc<Client>) {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, client)) {
            *slot = None;
        }
    }

    /// A query's error as a [`StoreError`]; a connection that broke is forgotten.
    fn error(&self, client: &Arc<Client>, e: &tokio_postgres::Error, doing: &str) -> StoreError {
        let kind = classify(e).unwrap_or(StoreErrorKind::Other);
        if kind == StoreErrorKind::Unavailable || client.is_closed() {
            self.forget(client);
        }
        StoreError::new(kind, format!("postgres {doing}: {}", describe(e)))
    }

    /// Runs `op` within the timeout; on timeout the connection is forgotten (a server that
    /// stopped answering is not asked again on it).
    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                "the postgres store needs a tokio runtime",
            ));
        }
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => {
                *self.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
                Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    format!("postgres: no answer within {:?}", self.timeout),
                ))
            }
        }
    }

    /// Runs `query` once, and once more on a new connection when the first one had broken
    /// unnoticed (the server restarted since the last operation). Every operation is
    /// idempotent (a put replaces only an older row), so the retry is safe.
    async fn with_retry<'a, T, F, Fut>(&'a self, query: F) -> Result<T, StoreError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + 'a,
    {
        self.bounded(async {
            let client = self.client().await?;
            match query(Arc::clone(&client)).await {
                Err(e) if *e.kind() == StoreErrorKind::Unavailable && client.is_closed() => {
                    tracing::debug!(error = %e, "postgres store: reconnecting");
                    query(self.client().await?).await
                }
                other => other,
            }
        })
        .await
    }

    async fn get_row(&self, domain: &str) -> Result<Option<(String, Row)>, StoreError> {
        let sql = format!(
            "SELECT ts::text, left(pol_id::text, {}), left(pol_body::text, {}), ctid::text \
             FROM sts_policy_cache WHERE domain = $1::text",
            MAX_ID_LEN + 1,
            layout::MAX_JSON_LEN + 1,
        );
        self.with_retry(|client| {
            let sql = sql.as_str();
            async move {
                let row = client
                    .query_opt(sql, &[&domain])
                    .await
                    .map_err(|e| self.error(&client, &e, "get"))?;
                Ok(row.map(|row| (domain.to_owned(), row)))
            }
        })
        .await
    }

    /// [`PolicyStore::put`] of a policy in its JSON form.
    async fn put_json(
        &self,
        domain: &str,
        id: &str,
        ts: i32,
        json: &str,
    ) -> Result<(), StoreError> {
        let written = self
            .with_retry(|client| async move {
                client
                    .execute(UPSERT, &[&domain, &ts, &id, &json])
                    .await
                    .map_err(|e| self.error(&client, &e, "put"))
            })
            .await?;
        if written > 0 {
            return Ok(());
        }
        // Not written: the row is newer, or unreadable (then it is replaced).
        let Some((_, row)) = self.get_row(domain).await? else {
            return Ok(()); // deleted meanwhile; the next put writes it
        };
        let Err(e) = entry(domain, &row, 0) else {
            return Ok(()); // a newer entry: kept
        };
        tracing::warn!(domain, error = %e, "postgres store: overwriting an unreadable row");
        let ctid: Option<String> = row.try_get(3).ok().flatten();
        self.with_retry(|client| {
            let ctid = ctid.as_deref();
            async move {
                client
                    .execute(OVERWRITE, &[&domain, &ts, &id, &json, &ctid])
                    .await
                    .map_err(|e| self.error(&client, &e, "put"))
            }
        })
        .await?;
        Ok(())
    }
}

/// The kind of a client error, when it says one.
fn classify(e: &tokio_postgres::Error) -> Option<StoreErrorKind> {
    let Some(code) = e.code() else {
        // No SQL state: I/O, a closed connection, a protocol error, a timeout.
        return if e.is_closed() || std::error::Error::source(e).is_some() {
            Some(StoreErrorKind::Unavailable)
        } else {
            None
        };
    };
    let class = &code.code()[..2.min(code.code().len())];
    Some(match class {
        // Connection exception, operator intervention (shutdown, cannot connect now),
        // insufficient resources other than disk, system error.
        "08" | "57" | "58" => StoreErrorKind::Unavailable,
        "53" if *code != SqlState::DISK_FULL => StoreErrorKind::Unavailable,
        "53" => StoreErrorKind::Refused,
        _ if *code == SqlState::INSUFFICIENT_PRIVILEGE
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION =>
        {
            StoreErrorKind::Refused
        }
        // Invalid authorization (a wrong password), invalid catalog name (no such database).
        "28" | "3D" => StoreErrorKind::Unavailable,
        _ => StoreErrorKind::Other,
    })
}

/// The error with its causes (tokio-postgres says "error connecting to server" and keeps the
/// "connection refused" in the source).
fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn corrupt(domain: &str, what: impl fmt::Display) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("postgres sts_policy_cache row of {domain}: {what}"),
    )
}

/// A row of `ts`, `pol_id`, `pol_body` (all as text, cut at their limits) as an entry.
fn entry(domain: &str, row: &Row, first: usize) -> Result<StoredPolicy, StoreError> {
    let text = |i: usize, what: &str, max: usize| -> Result<String, StoreError> {
        let value: Option<String> = row
            .try_get(first + i)
            .map_err(|e| corrupt(domain, format_args!("{what}: {e}")))?;
        let value = value.ok_or_else(|| corrupt(domain, format_args!("{what} is NULL")))?;
        if value.len() > max {
            return Err(corrupt(
                domain,
                format_args!("{what} longer than {max} bytes"),
            ));
        }
        Ok(value)
    };
    let ts = text(0, "ts", MAX_TS_LEN)?;
    let ts: u64 = ts
        .parse()
        .map_err(|_| corrupt(domain, format_args!("ts {ts:?} is not a time in seconds")))?;
    let id = text(1, "pol_id", MAX_ID_LEN)?;
    let body = text(2, "pol_body", layout::MAX_JSON_LEN)?;
    let policy = layout::policy_from_json(&body)
        .map_err(|e| corrupt(domain, format_args!("pol_body: {e}")))?;
    Ok(StoredPolicy::new(
        domain,
        id,
        UnixTime::from_secs(ts),
        policy,
    ))
}

impl PolicyStore for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredPolicy>, StoreError>> {
        Box::pin(async move {
            match self.get_row(domain).await? {
                None => Ok(None),
                Some((domain, row)) => entry(&domain, &row, 0).map(Some),
            }
        })
    }

    fn put<'a>(&'a self, entry: &'a StoredPolicy) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let json = layout::policy_to_json(&entry.policy).map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Other,
                    format!("postgres put of {}: policy not storable: {e}", entry.domain),
                )
            })?;
            // The peer's column is a 32-bit integer (until 2038).
            let ts = i32::try_from(entry.fetched_at.as_secs()).map_err(|_| {
                StoreError::new(
                    StoreErrorKind::Refused,
                    format!(
                        "postgres put of {}: fetch time {} does not fit the ts column (integer)",
                        entry.domain,
                        entry.fetched_at.as_secs()
                    ),
                )
            })?;
            let (domain, id) = (entry.domain.as_str(), entry.id.as_str());
            // One timeout for the whole put (upsert, and the re-read and overwrite of an
            // unreadable row), not one per query.
            self.bounded(self.put_json(domain, id, ts, &json)).await
        })
    }

    fn delete<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let n = self
                .with_retry(|client| async move {
                    client
                        .execute(
                            "DELETE FROM sts_policy_cache WHERE domain = $1::text",
                            &[&domain],
                        )
                        .await
                        .map_err(|e| self.error(&client, &e, "delete"))
                })
                .await?;
            Ok(n > 0)
        })
    }

    fn list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredPolicy>, StoreError>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT left(domain, {}), ts::text, left(pol_id::text, {}), \
                 left(pol_body::text, {}) FROM sts_policy_cache ORDER BY id LIMIT $1::int8",
                MAX_DOMAIN_LEN + 1,
                MAX_ID_LEN + 1,
                layout::MAX_JSON_LEN + 1,
            );
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = self
                .with_retry(|client| {
                    let sql = sql.as_str();
                    async move {
                        client
                            .query(sql, &[&limit])
                            .await
                            .map_err(|e| self.error(&client, &e, "list"))
                    }
                })
                .await?;
            let mut entries = Vec::with_capacity(rows.len());
            for row in &rows {
                let domain: Option<String> = row.try_get(0).ok().flatten();
                let domain = match domain {
                    Some(d) if d.len() <= MAX_DOMAIN_LEN => d,
                    _ => {
                        tracing::warn!("postgres store: a row without a readable domain left out");
                        continue;
                    }
                };
                match entry(&domain, row, 1) {
                    Ok(e) => entries.push(e),
                    Err(e) => tracing::warn!(error = %e, "postgres store: row left out of list"),
                }
            }
            Ok(entries)
        })
    }

    fn notes(&self) -> Option<&dyn FleetNotes> {
        Some(self)
    }
}

/// Whole seconds as PostgreSQL's `bigint`.
fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

impl FleetNotes for PostgresStore {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        now: UnixTime,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            check_note(key, Some(value))?;
            let (now, expires) = (secs(now), secs(expires));
            // Not retried (see the module docs): one attempt within the timeout.
            self.bounded(async {
                let client = self.client().await?;
                let n = client
                    .execute(NOTE_CLAIM, &[&key, &value, &now, &expires])
                    .await
                    .map_err(|e| self.error(&client, &e, "note claim"))?;
                if let Err(e) = client.execute(NOTE_SWEEP, &[&now]).await {
                    tracing::debug!(error = %e, "postgres store: note sweep failed");
                }
                Ok(n == 1)
            })
            .await
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            check_note(key, Some(value))?;
            let expires = secs(expires);
            self.with_retry(|client| async move {
                client
                    .execute(
                        "INSERT INTO mta_sts_notes (key, value, expires) \
                         VALUES ($1::text, $2::text, $3::int8) ON CONFLICT (key) DO UPDATE \
                         SET value = EXCLUDED.value, expires = EXCLUDED.expires",
                        &[&key, &value, &expires],
                    )
                    .await
                    .map_err(|e| self.error(&client, &e, "note set"))
            })
            .await?;
            Ok(())
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<Option<(String, UnixTime)>, StoreError>> {
        Box::pin(async move {
            check_note(key, None)?;
            let sql = format!(
                "SELECT left(value, {}), expires FROM mta_sts_notes WHERE key = $1::text",
                MAX_NOTE_VALUE + 1
            );
            let row = self
                .with_retry(|client| {
                    let sql = sql.as_str();
                    async move {
                        client
                            .query_opt(sql, &[&key])
                            .await
                            .map_err(|e| self.error(&client, &e, "note read"))
                    }
                })
                .await?;
            let Some(row) = row else { return Ok(None) };
            let corrupt = |what: &str| {
                StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("postgres note {key:?}: {what}"),
                )
            };
            let value: String = row.try_get(0).map_err(|_| corrupt("value not text"))?;
            if value.len() > MAX_NOTE_VALUE {
                return Err(corrupt("value too long"));
            }
            let expires: i64 = row.try_get(1).map_err(|_| corrupt("expiry not a time"))?;
            let expires = UnixTime::from_secs(
                u64::try_from(expires).map_err(|_| corrupt("negative expiry"))?,
            );
            Ok((expires > now).then_some((value, expires)))
        })
    }

    fn remove<'a>(
        &'a self,
        key: &'a str,
        value: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            check_note(key, value)?;
            let n = self
                .with_retry(|client| async move {
                    client
                        .execute(
                            "DELETE FROM mta_sts_notes WHERE key = $1::text \
                             AND ($2::text IS NULL OR value = $2::text)",
                            &[&key, &value],
                        )
                        .await
                        .map_err(|e| self.error(&client, &e, "note remove"))
                })
                .await?;
            Ok(n > 0)
        })
    }
}
