//! The policy store in an SQLite file, in postfix-mta-sts-resolver's layout, so its existing
//! cache file (Debian's default: `/var/lib/mta-sts/cache.db`) is read and written as it is and
//! both daemons can share one file during a migration.
//!
//! The peer's schema (`sqlite_cache.py`), created as it creates it when missing:
//!
//! ```sql
//! create table if not exists proactive_fetch_ts (id integer primary key, last_fetch_ts integer);
//! create table if not exists sts_policy_cache (domain text, ts integer, pol_id text, pol_body text);
//! create unique index if not exists sts_policy_domain on sts_policy_cache (domain);
//! create index if not exists sts_policy_domain_ts on sts_policy_cache (domain, ts);
//! ```
//!
//! `domain` is the policy domain (lowercase, no trailing dot), `ts` the fetch time in integer
//! seconds, `pol_id` the TXT id, `pol_body` the policy in the peer's JSON
//! ([`layout`]). Connections use WAL mode and `synchronous=NORMAL`, as the
//! peer's. A row is replaced only by an entry with a newer `ts` (the peer's rule), or when the
//! row cannot be read (hostile data is overwritten, never trusted).
//!
//! The [`FleetNotes`] (fleet lookup locks, shared negative answers) live in a table of this
//! program's own, created when missing ([`NOTES_SCHEMA`]); the peer never reads it. A claim is
//! one `INSERT … ON CONFLICT (key) DO UPDATE … WHERE expires <= now` (atomic under SQLite's
//! write lock); expired notes are swept a few at a time after each claim.
//!
//! SQLite calls block: each operation runs on the `blocking` crate's thread pool, so the
//! futures never block an executor, and each waits at most the busy timeout (5 s by default,
//! as the peer's) for a lock another process holds, then fails with
//! [`StoreErrorKind::Unavailable`].
//!
//! ```
//! use mta_sts_core::UnixTime;
//! use mta_sts_net::{PolicyStore, StoredPolicy};
//! use mta_sts_store::sqlite::SqliteStore;
//!
//! let dir = std::env::temp_dir().join(format!("mta-sts-store-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let store = SqliteStore::open(dir.join("cache.db"))?;
//! let text = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 86400\r\n";
//! let entry = StoredPolicy::new("example.com", "20240101", UnixTime::from_secs(1_700_000_000), text);
//! futures_lite::future::block_on(async {
//!     store.put(&entry).await?;
//!     assert_eq!(store.get("example.com").await?, Some(entry.clone()));
//!     assert!(store.delete("example.com").await?);
//!     Ok::<(), mta_sts_net::StoreError>(())
//! })?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mta_sts_core::UnixTime;
use mta_sts_net::{
    BoxFuture, FleetNotes, MAX_NOTE_VALUE, PolicyStore, StoreError, StoreErrorKind, StoredPolicy,
    check_note,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use crate::layout::{self, MAX_JSON_LEN};

/// The busy timeout of [`SqliteStore::open`]: 5 seconds, postfix-mta-sts-resolver's
/// `SQLITE_TIMEOUT`.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest `pol_id` read (bytes): a TXT id has at most 32 characters (RFC 8461 §3.1).
const MAX_ID_LEN: i64 = 1024;

/// Connections kept open for reuse (more may be open while operations overlap).
const POOL_SIZE: usize = 4;

/// The peer's schema and connection settings ([module docs](self)).
const SCHEMA: &str = "\
create table if not exists proactive_fetch_ts (id integer primary key, last_fetch_ts integer);
create table if not exists sts_policy_cache (domain text, ts integer, pol_id text, pol_body text);
create unique index if not exists sts_policy_domain on sts_policy_cache (domain);
create index if not exists sts_policy_domain_ts on sts_policy_cache (domain, ts);";

/// The table of the [`FleetNotes`]: a key, a value and an expiry in whole seconds.
pub const NOTES_SCHEMA: &str = "\
create table if not exists mta_sts_notes (key text primary key, value text not null, expires integer not null);
create index if not exists mta_sts_notes_expires on mta_sts_notes (expires);";

/// How many expired notes one claim sweeps at most.
const NOTES_SWEEP: i64 = 16;

/// The columns every read selects: `ts`, `pol_id` and `pol_body`, the last two only when they
/// are within their size limits (a giant value is not copied out of SQLite), with their sizes.
const COLUMNS: &str = "ts, \
     CASE WHEN octet_length(pol_id) <= ?2 THEN pol_id END, octet_length(pol_id), \
     CASE WHEN octet_length(pol_body) <= ?3 THEN pol_body END, octet_length(pol_body)";

/// A [`PolicyStore`] over an SQLite file in postfix-mta-sts-resolver's layout
/// ([module docs](self)).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    busy_timeout: Duration,
    pool: Mutex<Vec<Connection>>,
}

impl SqliteStore {
    /// Opens (creating when missing) the cache file at `path` with the
    /// [default busy timeout](DEFAULT_BUSY_TIMEOUT), and creates the peer's tables when they
    /// are missing. This blocks (file I/O, up to the busy timeout on a locked file): call it at
    /// start-up, not on an executor's thread.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_busy_timeout(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// [`SqliteStore::open`] with another busy timeout: how long an operation waits for a lock
    /// another connection or process holds before it fails with
    /// [`StoreErrorKind::Unavailable`].
    pub fn open_with_busy_timeout(
        path: impl AsRef<Path>,
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let inner = Inner {
            path: path.as_ref().to_owned(),
            busy_timeout,
            pool: Mutex::new(Vec::new()),
        };
        let conn = inner.connect()?;
        conn.execute_batch(SCHEMA).map_err(error)?;
        conn.execute_batch(NOTES_SCHEMA).map_err(error)?;
        inner.give_back(conn);
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `op` with a connection on the blocking thread pool.
    fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(blocking::unblock(move || {
            let mut conn = inner.take()?;
            let result = op(&mut conn);
            // A connection whose SQLite call failed is closed, as the peer's pool does; one that
            // only met unreadable data is kept.
            if result
                .as_ref()
                .map_or_else(|e| e.kind() == &StoreErrorKind::Corrupt, |_| true)
            {
                inner.give_back(conn);
            }
            result
        }))
    }
}

impl Inner {
    fn connect(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(error)?;
        conn.busy_timeout(self.busy_timeout).map_err(error)?;
        // `journal_mode` answers with the mode; read it rather than execute it.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(error)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(error)?;
        Ok(conn)
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let pooled = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match pooled {
            Some(c) => Ok(c),
            None => self.connect(),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_SIZE {
            pool.push(conn);
        }
    }
}

/// The store's error for an SQLite error.
fn error(e: rusqlite::Error) -> StoreError {
    let kind = match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::OperationInterrupted,
        ) => StoreErrorKind::Unavailable,
        Some(
            ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::AuthorizationForStatementDenied,
        ) => StoreErrorKind::Refused,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase | ErrorCode::TooBig) => {
            StoreErrorKind::Corrupt
        }
        _ => StoreErrorKind::Other,
    };
    StoreError::new(kind, format!("sqlite: {e}"))
}

fn corrupt(domain: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("sqlite: sts_policy_cache row of {domain:?}: {what}"),
    )
}

/// Lowercase, without the root dot, as the peer's `filter_domain` keys its rows.
fn key(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

/// One row read with [`COLUMNS`] (starting at column `at`) as an entry of `domain`.
fn entry_of(domain: &str, row: &rusqlite::Row<'_>, at: usize) -> Result<StoredPolicy, StoreError> {
    let get = |i: usize| row.get_ref(at + i).map_err(error);
    let ts = match get(0)? {
        ValueRef::Integer(n) => u64::try_from(n).map_err(|_| corrupt(domain, "negative ts"))?,
        other => {
            return Err(corrupt(
                domain,
                format!("ts is {:?}, not an integer", other.data_type()),
            ));
        }
    };
    let text = |value: ValueRef<'_>, len: ValueRef<'_>, column: &str| match (value, len) {
        (ValueRef::Text(t), _) => std::str::from_utf8(t)
            .map(str::to_owned)
            .map_err(|_| corrupt(domain, format!("{column} is not UTF-8"))),
        (ValueRef::Null, ValueRef::Integer(n)) => {
            Err(corrupt(domain, format!("{column} has {n} bytes, too many")))
        }
        (other, _) => Err(corrupt(
            domain,
            format!("{column} is {:?}, not text", other.data_type()),
        )),
    };
    let id = text(get(1)?, get(2)?, "pol_id")?;
    let body = text(get(3)?, get(4)?, "pol_body")?;
    let policy = layout::policy_from_json(&body).map_err(|e| corrupt(domain, e))?;
    Ok(StoredPolicy::new(
        domain,
        id,
        UnixTime::from_secs(ts),
        policy,
    ))
}

fn max_body() -> i64 {
    i64::try_from(MAX_JSON_LEN).unwrap_or(i64::MAX)
}

/// The row of `domain`: `None` when there is none, `Some(Err)` when it cannot be read.
fn read(
    conn: &Connection,
    domain: &str,
) -> Result<Option<Result<StoredPolicy, StoreError>>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM sts_policy_cache WHERE domain = ?1");
    let mut stmt = conn.prepare(&sql).map_err(error)?;
    stmt.query_row(params![domain, MAX_ID_LEN, max_body()], |row| {
        Ok(entry_of(domain, row, 0))
    })
    .optional()
    .map_err(error)
}

impl PolicyStore for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredPolicy>, StoreError>> {
        let domain = key(domain);
        self.run(move |conn| read(conn, &domain)?.transpose())
    }

    fn put<'a>(&'a self, entry: &'a StoredPolicy) -> BoxFuture<'a, Result<(), StoreError>> {
        let domain = key(&entry.domain);
        let id = entry.id.clone();
        let secs = entry.fetched_at.as_secs();
        let body = layout::policy_to_json(&entry.policy);
        self.run(move |conn| {
            let body = body.map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Other,
                    format!("sqlite: the policy of {domain:?} is not written: {e}"),
                )
            })?;
            let ts = i64::try_from(secs).map_err(|_| {
                StoreError::new(StoreErrorKind::Other, "sqlite: fetch time out of range")
            })?;
            // One write transaction: the row is read and replaced under the same lock.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(error)?;
            match read(&tx, &domain)? {
                // The peer's rule: only a newer ts replaces a row.
                Some(Ok(old)) if old.fetched_at.as_secs() >= secs => return Ok(()),
                Some(Err(e)) => {
                    tracing::warn!(store = "sqlite", domain, error = %e, "unreadable entry overwritten");
                }
                _ => {}
            }
            tx.execute(
                "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (domain) DO UPDATE SET ts = excluded.ts, pol_id = excluded.pol_id, \
                 pol_body = excluded.pol_body",
                params![domain, ts, id, body],
            )
            .map_err(error)?;
            tx.commit().map_err(error)
        })
    }

    fn delete<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let domain = key(domain);
        self.run(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM sts_policy_cache WHERE domain = ?1",
                    params![domain],
                )
                .map_err(error)?;
            Ok(n > 0)
        })
    }

    fn list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredPolicy>, StoreError>> {
        self.run(move |conn| {
            let sql =
                format!("SELECT domain, {COLUMNS} FROM sts_policy_cache ORDER BY rowid LIMIT ?1");
            let mut stmt = conn.prepare(&sql).map_err(error)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut rows = stmt
                .query(params![limit, MAX_ID_LEN, max_body()])
                .map_err(error)?;
            let mut out = Vec::new();
            let mut unreadable = 0usize;
            while let Some(row) = rows.next().map_err(error)? {
                let domain = match row.get_ref(0).map_err(error)? {
                    ValueRef::Text(t) if t.len() <= 255 => String::from_utf8(t.to_vec()).ok(),
                    _ => None,
                };
                match domain.map(|d| entry_of(&d, row, 1)) {
                    Some(Ok(entry)) => out.push(entry),
                    Some(Err(e)) => {
                        unreadable += 1;
                        tracing::warn!(store = "sqlite", error = %e, "unreadable entry left out");
                    }
                    None => {
                        unreadable += 1;
                        tracing::warn!(store = "sqlite", "row with an unreadable domain left out");
                    }
                }
            }
            if unreadable > 0 {
                tracing::warn!(
                    store = "sqlite",
                    unreadable,
                    "list left out unreadable entries"
                );
            }
            Ok(out)
        })
    }

    fn notes(&self) -> Option<&dyn FleetNotes> {
        Some(self)
    }
}

/// Whole seconds as SQLite's integer.
fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

impl FleetNotes for SqliteStore {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        now: UnixTime,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        if let Err(e) = check_note(key, Some(value)) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let (key, value, now, expires) =
            (key.to_owned(), value.to_owned(), secs(now), secs(expires));
        self.run(move |conn| {
            // A note whose expiry is not an integer (hostile) counts as expired.
            let n = conn
                .execute(
                    "INSERT INTO mta_sts_notes (key, value, expires) VALUES (?1, ?2, ?4) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires \
                     WHERE typeof(mta_sts_notes.expires) <> 'integer' OR mta_sts_notes.expires <= ?3",
                    params![key, value, now, expires],
                )
                .map_err(error)?;
            let swept = conn.execute(
                "DELETE FROM mta_sts_notes WHERE rowid IN \
                 (SELECT rowid FROM mta_sts_notes WHERE expires <= ?1 LIMIT ?2)",
                params![now, NOTES_SWEEP],
            );
            if let Err(e) = swept {
                tracing::debug!(store = "sqlite", error = %e, "note sweep failed");
            }
            Ok(n == 1)
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        if let Err(e) = check_note(key, Some(value)) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let (key, value, expires) = (key.to_owned(), value.to_owned(), secs(expires));
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO mta_sts_notes (key, value, expires) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires",
                params![key, value, expires],
            )
            .map_err(error)?;
            Ok(())
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<Option<(String, UnixTime)>, StoreError>> {
        if let Err(e) = check_note(key, None) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let key = key.to_owned();
        self.run(move |conn| {
            let max = i64::try_from(MAX_NOTE_VALUE).unwrap_or(i64::MAX);
            let corrupt = |what: &str| {
                StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("sqlite: note {key:?}: {what}"),
                )
            };
            let row = conn
                .query_row(
                    "SELECT CASE WHEN octet_length(value) <= ?2 THEN value END, expires \
                     FROM mta_sts_notes WHERE key = ?1",
                    params![key, max],
                    |row| {
                        let value = match row.get_ref(0)? {
                            ValueRef::Text(t) => std::str::from_utf8(t).ok().map(str::to_owned),
                            _ => None,
                        };
                        let expires = match row.get_ref(1)? {
                            ValueRef::Integer(n) => u64::try_from(n).ok(),
                            _ => None,
                        };
                        Ok((value, expires))
                    },
                )
                .optional()
                .map_err(error)?;
            match row {
                None => Ok(None),
                Some((None, _)) => Err(corrupt("value too long or not text")),
                Some((_, None)) => Err(corrupt("expiry not a time")),
                Some((Some(value), Some(expires))) => {
                    let expires = UnixTime::from_secs(expires);
                    Ok((expires > now).then_some((value, expires)))
                }
            }
        })
    }

    fn remove<'a>(
        &'a self,
        key: &'a str,
        value: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        if let Err(e) = check_note(key, value) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let (key, value) = (key.to_owned(), value.map(str::to_owned));
        self.run(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM mta_sts_notes WHERE key = ?1 AND (?2 IS NULL OR value = ?2)",
                    params![key, value],
                )
                .map_err(error)?;
            Ok(n > 0)
        })
    }
}
