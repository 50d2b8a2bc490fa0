//! A [`PolicyStore`] on Redis (or Redis Sentinel) in postfix-mta-sts-resolver 1.5.1's layout,
//! so that both daemons can share one database during a migration.
//!
//! # Layout
//!
//! As postfix-mta-sts-resolver's `RedisCache` reads and writes it:
//!
//! - key: the policy domain, lowercase, no trailing dot;
//! - value: a sorted set holding one member, 16 random bytes followed by Python's
//!   `json.dumps([policy_id, policy])` ([`layout`]), scored by the fetch time in
//!   seconds (a float; postfix-mta-sts-resolver writes `time.time()`, this store whole seconds);
//! - written with `MULTI ZADD key score member; ZREMRANGEBYRANK key 0 -2; EXEC`, which keeps
//!   only the highest score: a write older than the entry in place removes itself, in the same
//!   transaction, so two writers never replace a later fetch with an earlier one;
//! - read with `ZREVRANGE key 0 0 WITHSCORES`;
//! - no TTL; the hash `_metadata` belongs to postfix-mta-sts-resolver's proactive fetcher: its
//!   field `proactive_fetch_ts` is never read or written here, nor is the hash listed.
//!
//! # Fleet notes
//!
//! The [`FleetNotes`] (fleet lookup locks, shared negative answers) are fields of the same
//! `_metadata` hash, named [`NOTE_FIELD_PREFIX`] and the note's key (`mta-sts/lock/example.com`),
//! each holding its expiry in whole seconds, a space and the value. It is the one key the peer's
//! `SCAN` skips (`if key != '_metadata'`), and the peer reads only its own field of it, so the
//! notes never reach its proactive fetcher; a key of their own would kill it with `WRONGTYPE`.
//! Redis before 7.4 has no expiry per hash field: `claim` and `remove` are Lua scripts that read
//! the expiry in the value and write in one step (atomic on the server), and expired notes are
//! swept a few at a time (an `HSCAN` step after every [`NOTE_SWEEP_EVERY`] claims, which know the
//! time), so notes of
//! hosts that died never pile up.
//!
//! postfix-mta-sts-resolver's proactive fetcher `SCAN`s every key of the database and reads each
//! as such a sorted set: a key of any other type (a string, a hash) makes it die with
//! `WRONGTYPE` until it is restarted. This store creates nothing but sorted sets in this layout.
//!
//! # Hostile data
//!
//! A key of another type, a member without its 16-byte prefix, JSON that is not an entry, a
//! member larger than [`RedisOptions::max_member_bytes`], a score that is not a time: `get` answers
//! [`StoreErrorKind::Corrupt`] for that domain, `list` leaves the key out, and the next `put`
//! for that domain replaces the key (`DEL` then the write, in one transaction). A member is
//! read whole before its size is checked (RESP has no partial reads): one read holds at most
//! what the server sends in one bulk string (its `proto-max-bulk-len`, 512 MB by default).
//!
//! # Runtime
//!
//! The connection is redis-rs's multiplexed async connection, which runs on **tokio**: every
//! method must be awaited inside a tokio runtime (the daemon's). redis-rs has no
//! runtime-neutral async client.
//!
//! # Connections and timeouts
//!
//! One multiplexed connection, opened by the first operation (the store is created without
//! touching the network, so a daemon starts while Redis is down). Opening is bounded by
//! [`RedisOptions::connect_timeout`], every command by [`RedisOptions::command_timeout`]; a
//! connection that failed or timed out is dropped, and the next operation opens a new one (with
//! Sentinel: asks the sentinels for the master again, so a failover is followed).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use mta_sts_core::UnixTime;
use std::sync::atomic::{AtomicU64, Ordering};

use mta_sts_net::{
    BoxFuture, FleetNotes, MAX_NOTE_VALUE, PolicyStore, StoreError, StoreErrorKind, StoredPolicy,
    check_note,
};
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError,
    RedisResult, TlsCertificates, TlsMode,
};
use tokio::sync::Mutex;

use crate::layout;

/// The length of the random prefix of every member (postfix-mta-sts-resolver: a UUID4's bytes).
pub const MEMBER_PREFIX_LEN: usize = 16;

/// The key postfix-mta-sts-resolver's proactive fetcher keeps its last run time in (a hash).
pub const METADATA_KEY: &str = "_metadata";

/// The prefix of the `_metadata` fields that hold [`FleetNotes`] ([module docs](self)).
pub const NOTE_FIELD_PREFIX: &str = "mta-sts/";

/// Expired notes are swept (one `HSCAN` step over a bounded number of fields) after this many
/// claims.
pub const NOTE_SWEEP_EVERY: u64 = 64;

/// How many `_metadata` fields one sweep step looks at.
const NOTE_SWEEP_COUNT: u64 = 128;

/// `claim`: sets the field unless it holds an unexpired note (a value without a readable expiry
/// counts as expired: hostile data is overwritten). KEYS[1] `_metadata`; ARGV field, now,
/// stored value (`expires value`).
const CLAIM_SCRIPT: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  local sp = string.find(v, ' ', 1, true)
  local exp = sp and tonumber(string.sub(v, 1, sp - 1))
  if exp and exp > tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1";

/// `remove`: deletes the field when its value (after the expiry) is ARGV[3], or whatever it is
/// when ARGV[2] is `any`.
const REMOVE_SCRIPT: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
if ARGV[2] ~= 'any' then
  local sp = string.find(v, ' ', 1, true)
  if not sp or string.sub(v, sp + 1) ~= ARGV[3] then return 0 end
end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1";

/// `read`: the field's value, or -1 when it is longer than ARGV[2] bytes (not copied out).
const READ_SCRIPT: &str = r"
local n = redis.call('HSTRLEN', KEYS[1], ARGV[1])
if n == 0 then return false end
if n > tonumber(ARGV[2]) then return -1 end
return redis.call('HGET', KEYS[1], ARGV[1])";

/// One sweep step: `HSCAN` from cursor ARGV[1] over ARGV[2] fields, deleting the notes (fields
/// starting with ARGV[4]) expired at ARGV[3] or unreadable; returns the next cursor.
const SWEEP_SCRIPT: &str = r"
local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'MATCH', ARGV[4] .. '*', 'COUNT', ARGV[2])
local kv = r[2]
for i = 1, #kv, 2 do
  local v = kv[i + 1]
  local sp = string.find(v, ' ', 1, true)
  local exp = sp and tonumber(string.sub(v, 1, sp - 1))
  if not exp or exp <= tonumber(ARGV[3]) then redis.call('HDEL', KEYS[1], kv[i]) end
end
return r[1]";

/// The largest score read as a fetch time (2^53: the floats that are still whole seconds).
const MAX_SCORE: f64 = 9_007_199_254_740_992.0;

/// How many keys `list` asks `SCAN` for at a time.
const SCAN_COUNT: usize = 100;

/// Settings of a [`RedisStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// The bound on opening a connection (with Sentinel: asking the sentinels, then connecting
    /// to the master). Default 5 s (postfix-mta-sts-resolver's `REDIS_CONNECT_TIMEOUT`).
    pub connect_timeout: Duration,
    /// The bound on each command or transaction. Default 5 s (its `REDIS_TIMEOUT`).
    pub command_timeout: Duration,
    /// The largest member read as an entry; a larger one is [`StoreErrorKind::Corrupt`].
    /// Default: the prefix and [`layout::MAX_JSON_LEN`] (192 KiB: a policy file is at most
    /// 64 KiB, RFC 8461 §3.3, and its escaped JSON at most three times that).
    pub max_member_bytes: usize,
    /// For `rediss://`: the CA certificates (PEM) that the server's certificate must chain to,
    /// instead of the system's roots (redis-py's `ssl_ca_certs`). `None`: the system's roots.
    pub tls_ca_pem: Option<Vec<u8>>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            max_member_bytes: MEMBER_PREFIX_LEN + layout::MAX_JSON_LEN,
            tls_ca_pem: None,
        }
    }
}

impl RedisOptions {
    /// These options with `connect_timeout` and `command_timeout` set.
    pub fn with_timeouts(mut self, connect: Duration, command: Duration) -> Self {
        self.connect_timeout = connect;
        self.command_timeout = command;
        self
    }

    /// These options with `max_member_bytes` set.
    pub fn with_max_member_bytes(mut self, max: usize) -> Self {
        self.max_member_bytes = max;
        self
    }

    /// These options with `tls_ca_pem` set.
    pub fn with_tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca_pem = Some(pem.into());
        self
    }
}

/// Where the connection goes.
enum Target {
    /// One server, from a URL.
    Direct(Client),
    /// The master a set of sentinels names (the lock: redis-rs's client is `&mut` to ask).
    Sentinel(Mutex<SentinelClient>),
}

/// A [`PolicyStore`] on Redis in postfix-mta-sts-resolver's layout ([module docs](self)).
///
/// ```no_run
/// # async fn demo() -> Result<(), mta_sts_net::StoreError> {
/// use mta_sts_net::PolicyStore;
/// use mta_sts_store::redis::RedisStore;
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379/0")?;
/// if let Some(entry) = store.get("example.com").await? {
///     println!("{} fetched at {}", entry.id, entry.fetched_at.as_secs());
/// }
/// # Ok(())
/// # }
/// ```
pub struct RedisStore {
    target: Target,
    options: RedisOptions,
    /// The open connection and its generation (a failure drops only the one it happened on).
    conn: Mutex<(u64, Option<MultiplexedConnection>)>,
    /// Claims so far (a sweep step every [`NOTE_SWEEP_EVERY`]).
    note_writes: AtomicU64,
    /// Where the next sweep step of `_metadata` starts (an `HSCAN` cursor).
    sweep_cursor: AtomicU64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            // The address without credentials.
            Target::Direct(c) => format!("{}", c.get_connection_info().addr()),
            Target::Sentinel(_) => "sentinel".to_owned(),
        };
        f.debug_struct("RedisStore")
            .field("target", &target)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the server of `url` (`redis://[user:password@]host[:port][/db]`,
    /// `rediss://…` for TLS, `unix:///path/to/socket[?db=N]`), with default options. Nothing
    /// is opened yet: the first operation connects.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Other`] when `url` is not a Redis URL.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default())
    }

    /// [`connect`](Self::connect) with `options`.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Other`] when `url` is not a Redis URL.
    pub fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let client = match &options.tls_ca_pem {
            None => Client::open(url),
            Some(pem) => Client::build_with_tls(
                url,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
        }
        .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("redis url: {e}")))?;
        Ok(Self::with_target(Target::Direct(client), options))
    }

    /// A store on the master that the sentinels at `sentinels` (each `host:port` or a
    /// `redis://` URL, which may carry the sentinels' password) name `master_name`
    /// (postfix-mta-sts-resolver's `sentinels` and `sentinel_master_name`), connected to
    /// without a password, database 0. Nothing is opened yet; each new connection asks the
    /// sentinels again, so a failover is followed after the next connection failure.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Other`] when `sentinels` is empty or an address is not valid.
    pub fn sentinel(
        sentinels: &[&str],
        master_name: &str,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        Self::sentinel_client(sentinels, master_name, None, options)
    }

    /// [`sentinel`](Self::sentinel), connecting to the master with the username, password,
    /// database and TLS (`rediss://`) of `master_url`; its host and port are not used (the
    /// sentinels name the master): `redis://:secret@master/2`.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Other`] when `sentinels` is empty, or an address or `master_url` is
    /// not valid.
    pub fn sentinel_with_master(
        sentinels: &[&str],
        master_name: &str,
        master_url: &str,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        let info = master_url.into_connection_info().map_err(|e| {
            StoreError::new(StoreErrorKind::Other, format!("redis master url: {e}"))
        })?;
        let mut node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(info.redis_settings().clone());
        if let ConnectionAddr::TcpTls { insecure, .. } = info.addr() {
            node = node.set_tls_mode(if *insecure {
                TlsMode::Insecure
            } else {
                TlsMode::Secure
            });
        }
        Self::sentinel_client(sentinels, master_name, Some(node), options)
    }

    fn sentinel_client(
        sentinels: &[&str],
        master_name: &str,
        node: Option<SentinelNodeConnectionInfo>,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        let urls: Vec<String> = sentinels
            .iter()
            .map(|s| {
                if s.contains("://") {
                    (*s).to_owned()
                } else {
                    format!("redis://{s}")
                }
            })
            .collect();
        let client = SentinelClient::build(urls, master_name, node, SentinelServerType::Master)
            .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("redis sentinel: {e}")))?;
        Ok(Self::with_target(
            Target::Sentinel(Mutex::new(client)),
            options,
        ))
    }

    fn with_target(target: Target, options: RedisOptions) -> Self {
        Self {
            target,
            options,
            conn: Mutex::new((0, None)),
            note_writes: AtomicU64::new(0),
            sweep_cursor: AtomicU64::new(0),
        }
    }

    /// The open connection, or a new one (one connect at a time: the others wait for it).
    async fn connection(&self) -> Result<(u64, MultiplexedConnection), StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = &slot.1 {
            return Ok((slot.0, c.clone()));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.command_timeout));
        let open = async {
            match &self.target {
                Target::Direct(client) => {
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                }
                Target::Sentinel(client) => {
                    client
                        .lock()
                        .await
                        .get_async_connection_with_config(&config)
                        .await
                }
            }
        };
        let conn = bounded(self.options.connect_timeout, "connect", open).await?;
        slot.0 += 1;
        slot.1 = Some(conn.clone());
        Ok((slot.0, conn))
    }

    /// Drops connection `generation` after a failure on it (not a newer one).
    async fn forget(&self, generation: u64) {
        let mut slot = self.conn.lock().await;
        if slot.0 == generation {
            slot.1 = None;
        }
    }

    /// Runs `cmd` (a command or a transaction) on the connection, bounded by the command
    /// timeout; a connection failure or timeout drops the connection, and so does `READONLY`
    /// (after a Sentinel failover the old master is a replica: the next connection asks the
    /// sentinels for the new one).
    async fn query<T, F, Fut>(&self, what: &str, cmd: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, conn) = self.connection().await?;
        let result = bounded(self.options.command_timeout, what, cmd(conn)).await;
        if let Err(e) = &result
            && (e.kind() == &StoreErrorKind::Unavailable || e.detail().contains("READONLY"))
        {
            self.forget(generation).await;
        }
        result
    }

    /// The newest member of `key` and its score, `Ok(None)` when there is none.
    async fn newest(&self, key: &str) -> Result<Option<(Vec<u8>, f64)>, StoreError> {
        let rows: Vec<(Vec<u8>, f64)> = self
            .query("ZREVRANGE", |mut c| async move {
                redis::cmd("ZREVRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES")
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(|e| wrong_type(e, key))?;
        Ok(rows.into_iter().next())
    }

    /// The entry of `key`, typed errors for what is not one.
    async fn read(&self, key: &str) -> Result<Option<StoredPolicy>, StoreError> {
        match self.newest(key).await? {
            None => Ok(None),
            Some((member, score)) => {
                decode(key, &member, score, self.options.max_member_bytes).map(Some)
            }
        }
    }

    async fn write(&self, entry: &StoredPolicy) -> Result<(), StoreError> {
        let key = domain_key(&entry.domain)?;
        let json = layout::entry_to_json(&entry.id, &entry.policy).map_err(|e| {
            StoreError::new(
                StoreErrorKind::Other,
                format!("{key}: the policy has no JSON form: {e}"),
            )
        })?;
        let mut member = vec![0u8; MEMBER_PREFIX_LEN];
        getrandom::fill(&mut member).map_err(|e| {
            StoreError::new(StoreErrorKind::Other, format!("random member prefix: {e}"))
        })?;
        member.extend_from_slice(json.as_bytes());
        // Whole seconds: exact in a float up to 2^53.
        let score = entry.fetched_at.as_secs().min(MAX_SCORE as u64) as f64;

        // Is the entry in place newer (or as new)? Then keep it. A corrupt one, or a key of
        // another type, is replaced: DEL first, in the transaction (a hostile member with a
        // huge score would otherwise win every ZREMRANGEBYRANK).
        let replace = match self.newest(&key).await {
            Ok(None) => false,
            Ok(Some((old_member, old_score))) => {
                match decode(&key, &old_member, old_score, self.options.max_member_bytes) {
                    Ok(_) if old_score >= score => return Ok(()),
                    Ok(_) => false,
                    Err(e) => {
                        tracing::warn!(store = "redis", key = %key, error = %e, "replacing an unreadable entry");
                        true
                    }
                }
            }
            Err(e) if e.kind() == &StoreErrorKind::Corrupt => {
                tracing::warn!(store = "redis", key = %key, error = %e, "replacing an unreadable entry");
                true
            }
            Err(e) => return Err(e),
        };
        let key_ref = key.as_str();
        let member_ref = member.as_slice();
        let _: () = self
            .query("MULTI ZADD ZREMRANGEBYRANK", |mut c| async move {
                let mut pipe = redis::pipe();
                pipe.atomic();
                if replace {
                    pipe.cmd("DEL").arg(key_ref).ignore();
                }
                pipe.cmd("ZADD")
                    .arg(key_ref)
                    .arg(score)
                    .arg(member_ref)
                    .ignore()
                    .cmd("ZREMRANGEBYRANK")
                    .arg(key_ref)
                    .arg(0)
                    .arg(-2)
                    .ignore();
                pipe.query_async(&mut c).await
            })
            .await
            .map_err(|e| wrong_type(e, &key))?;
        Ok(())
    }

    async fn scan_list(&self, limit: usize) -> Result<Vec<StoredPolicy>, StoreError> {
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            if out.len() >= limit {
                break;
            }
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .query("SCAN", |mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            for key in keys {
                if out.len() >= limit {
                    break;
                }
                let Ok(key) = String::from_utf8(key) else {
                    continue;
                };
                if key == METADATA_KEY {
                    continue;
                }
                match self.read(&key).await {
                    Ok(Some(entry)) => out.push(entry),
                    Ok(None) => {}
                    Err(e) if e.kind() == &StoreErrorKind::Corrupt => {
                        tracing::warn!(store = "redis", key = %key, error = %e, "left out of the list");
                    }
                    Err(e) => return Err(e),
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(out)
    }
}

impl PolicyStore for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredPolicy>, StoreError>> {
        Box::pin(async move {
            let key = domain_key(domain)?;
            self.read(&key).await
        })
    }

    fn put<'a>(&'a self, entry: &'a StoredPolicy) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write(entry))
    }

    fn delete<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let key = domain_key(domain)?;
            let key_ref = key.as_str();
            let n: u64 = self
                .query("DEL", |mut c| async move {
                    redis::cmd("DEL").arg(key_ref).query_async(&mut c).await
                })
                .await?;
            Ok(n > 0)
        })
    }

    fn list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredPolicy>, StoreError>> {
        Box::pin(self.scan_list(limit))
    }

    fn notes(&self) -> Option<&dyn FleetNotes> {
        Some(self)
    }
}

impl RedisStore {
    /// Runs one of the note scripts on `_metadata`.
    async fn script<T: redis::FromRedisValue>(
        &self,
        what: &str,
        script: &str,
        args: &[&str],
    ) -> Result<T, StoreError> {
        self.query(what, |mut c| async move {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(script).arg(1).arg(METADATA_KEY);
            for a in args {
                cmd.arg(*a);
            }
            cmd.query_async(&mut c).await
        })
        .await
        .map_err(|e| wrong_type(e, METADATA_KEY))
    }

    /// After a claim: every [`NOTE_SWEEP_EVERY`] claims, one sweep step of the notes expired at
    /// `now` (its failure is only logged: the claim itself is done).
    async fn after_claim(&self, now: UnixTime) {
        if self.note_writes.fetch_add(1, Ordering::Relaxed) % NOTE_SWEEP_EVERY
            != NOTE_SWEEP_EVERY - 1
        {
            return;
        }
        let cursor = self.sweep_cursor.load(Ordering::Relaxed).to_string();
        let (count, now) = (NOTE_SWEEP_COUNT.to_string(), now.as_secs().to_string());
        let args = [cursor.as_str(), &count, &now, NOTE_FIELD_PREFIX];
        match self.script::<u64>("note sweep", SWEEP_SCRIPT, &args).await {
            Ok(next) => self.sweep_cursor.store(next, Ordering::Relaxed),
            Err(e) => tracing::debug!(store = "redis", error = %e, "note sweep failed"),
        }
    }
}

/// The `_metadata` field of note `key`.
fn note_field(key: &str, value: Option<&str>) -> Result<String, StoreError> {
    check_note(key, value)?;
    Ok(format!("{NOTE_FIELD_PREFIX}{key}"))
}

impl FleetNotes for RedisStore {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        now: UnixTime,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let field = note_field(key, Some(value))?;
            let stored = format!("{} {value}", expires.as_secs());
            let now_s = now.as_secs().to_string();
            let set: i64 = self
                .script("note claim", CLAIM_SCRIPT, &[&field, &now_s, &stored])
                .await?;
            self.after_claim(now).await;
            Ok(set == 1)
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let field = note_field(key, Some(value))?;
            let stored = format!("{} {value}", expires.as_secs());
            let (field_ref, stored_ref) = (field.as_str(), stored.as_str());
            let _: i64 = self
                .query("note HSET", |mut c| async move {
                    redis::cmd("HSET")
                        .arg(METADATA_KEY)
                        .arg(field_ref)
                        .arg(stored_ref)
                        .query_async(&mut c)
                        .await
                })
                .await
                .map_err(|e| wrong_type(e, METADATA_KEY))?;
            Ok(())
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<Option<(String, UnixTime)>, StoreError>> {
        Box::pin(async move {
            let field = note_field(key, None)?;
            // The expiry (at most 20 digits), a space, the value.
            let max = (MAX_NOTE_VALUE + 21).to_string();
            let got: redis::Value = self
                .script("note read", READ_SCRIPT, &[&field, &max])
                .await?;
            let corrupt = |what: &str| {
                StoreError::new(StoreErrorKind::Corrupt, format!("redis note {key}: {what}"))
            };
            let raw = match got {
                redis::Value::Nil => return Ok(None),
                redis::Value::Int(_) => return Err(corrupt("value too long")),
                redis::Value::BulkString(b) => b,
                _ => return Err(corrupt("unexpected reply")),
            };
            let text = String::from_utf8(raw).map_err(|_| corrupt("not UTF-8"))?;
            let (expires, value) = text.split_once(' ').ok_or_else(|| corrupt("no expiry"))?;
            let expires = expires
                .parse::<u64>()
                .map_err(|_| corrupt("expiry not a number"))?;
            let expires = UnixTime::from_secs(expires);
            if value.len() > MAX_NOTE_VALUE {
                return Err(corrupt("value too long"));
            }
            Ok((expires > now).then(|| (value.to_owned(), expires)))
        })
    }

    fn remove<'a>(
        &'a self,
        key: &'a str,
        value: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let field = note_field(key, value)?;
            let (mode, want) = match value {
                Some(v) => ("match", v),
                None => ("any", ""),
            };
            let n: i64 = self
                .script("note remove", REMOVE_SCRIPT, &[&field, mode, want])
                .await?;
            Ok(n == 1)
        })
    }
}

/// The key of `domain`: lowercase, no trailing dot; never `_metadata` or an empty name.
fn domain_key(domain: &str) -> Result<String, StoreError> {
    let key = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    let bad = key.is_empty()
        || key.len() > 253
        || key == METADATA_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic());
    if bad {
        return Err(StoreError::new(
            StoreErrorKind::Other,
            format!("not a policy domain: {domain:?}"),
        ));
    }
    Ok(key)
}

/// The entry that `member` scored `score` under `key` holds.
fn decode(key: &str, member: &[u8], score: f64, max: usize) -> Result<StoredPolicy, StoreError> {
    let corrupt = |what: String| StoreError::new(StoreErrorKind::Corrupt, format!("{key}: {what}"));
    if member.len() > max {
        return Err(corrupt(format!(
            "member of {} bytes, more than the {max} allowed",
            member.len()
        )));
    }
    let Some(json) = member.get(MEMBER_PREFIX_LEN..) else {
        return Err(corrupt(format!(
            "member of {} bytes, shorter than its {MEMBER_PREFIX_LEN}-byte prefix",
            member.len()
        )));
    };
    let json = std::str::from_utf8(json).map_err(|e| {
        corrupt(format!(
            "member not UTF-8 at byte {}",
            MEMBER_PREFIX_LEN + e.valid_up_to()
        ))
    })?;
    let (id, policy) = layout::entry_from_json(json).map_err(|e| corrupt(e.to_string()))?;
    if !(score.is_finite() && (0.0..MAX_SCORE).contains(&score)) {
        return Err(corrupt(format!("score {score} is not a fetch time")));
    }
    // Floor: a fraction of a second is not a later fetch.
    let fetched_at = UnixTime::from_secs(score as u64);
    Ok(StoredPolicy::new(key, id, fetched_at, policy))
}

/// A `WRONGTYPE` answer for `key` is a key of another type (another program's): corrupt.
fn wrong_type(e: StoreError, key: &str) -> StoreError {
    if e.detail().starts_with("WRONGTYPE") {
        StoreError::new(
            StoreErrorKind::Corrupt,
            format!("{key}: not a sorted set ({})", e.detail()),
        )
    } else {
        e
    }
}

/// `fut` bounded by `limit`; its redis-rs error as a [`StoreError`].
async fn bounded<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(store_error(&e, what)),
        Err(_) => Err(StoreError::new(
            StoreErrorKind::Unavailable,
            format!("redis {what}: no answer within {limit:?}"),
        )),
    }
}

/// A redis-rs error as a [`StoreError`]: connection trouble (and a missing or wrong password) is
/// `Unavailable`, a read-only replica, out of memory or an ACL denial `Refused`; the server's own
/// code first in the detail.
fn store_error(e: &RedisError, what: &str) -> StoreError {
    let code = e.code().unwrap_or("");
    let kind = if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(code, "LOADING" | "MASTERDOWN" | "TRYAGAIN")
        // The sentinels name no master that is up (a failover under way, or a wrong name).
        || e.kind() == ErrorKind::MasterNameNotFoundBySentinel
        // No password or a wrong one: the store cannot be used at all.
        || e.kind() == ErrorKind::AuthenticationFailed
        || matches!(code, "NOAUTH" | "WRONGPASS")
    {
        StoreErrorKind::Unavailable
    } else if matches!(code, "READONLY" | "OOM" | "NOPERM" | "MISCONF") {
        StoreErrorKind::Refused
    } else {
        StoreErrorKind::Other
    };
    if code.is_empty() {
        StoreError::new(kind, format!("redis {what}: {e}"))
    } else {
        StoreError::new(kind, format!("{code} (redis {what}): {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_lowercase_without_the_dot() {
        assert_eq!(domain_key("Example.COM.").unwrap(), "example.com");
        for bad in [
            "",
            ".",
            "_metadata",
            "_METADATA.",
            "a b",
            "ex\u{e4}mple.com",
        ] {
            assert_eq!(
                domain_key(bad).unwrap_err().kind(),
                &StoreErrorKind::Other,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn short_giant_and_broken_members_are_corrupt() {
        let corrupt = |m: &[u8], score: f64| decode("example.com", m, score, 1024).unwrap_err();
        let e = corrupt(b"0123456789", 1.0);
        assert_eq!(e.kind(), &StoreErrorKind::Corrupt);
        assert!(
            e.detail().contains("shorter than its 16-byte prefix"),
            "{e}"
        );
        let e = corrupt(&[b'x'; 2000], 1.0);
        assert!(e.detail().contains("more than the 1024 allowed"), "{e}");
        let mut m = vec![0u8; 16];
        m.extend_from_slice(b"[\"id\", {\"mx\": [\"a\"");
        assert_eq!(corrupt(&m, 1.0).kind(), &StoreErrorKind::Corrupt);
        let mut m = vec![0u8; 16];
        m.extend_from_slice(&[0xff, 0xfe]);
        let e = corrupt(&m, 1.0);
        assert!(e.detail().contains("not UTF-8 at byte 16"), "{e}");
    }
}
