//! The policy store seam: a shared place below the in-memory cache (Redis, SQLite, PostgreSQL,
//! one per fleet) where policies are kept as bytes with their fetch time.
//!
//! A store decides nothing: it keeps and returns [`StoredPolicy`] values (the TXT id, the policy
//! text, when it was fetched). What a stored entry may be used for (is it fresh, is it newer
//! than the local one, is the text a valid policy at all) is decided by the core when the
//! client adopts it. Every byte a store returns is hostile: an entry that cannot be read is a
//! [`StoreErrorKind::Corrupt`] error, ignored and overwritten, never a crash or a wrong policy.
//!
//! The trait is runtime-independent (boxed futures). An implementation that needs a runtime of
//! its own (a tokio-based client library) says so in its docs.

use std::fmt;

use mta_sts_core::UnixTime;

use crate::runtime::BoxFuture;

/// One policy as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredPolicy {
    /// The policy domain: lowercase A-labels, no trailing dot.
    pub domain: String,
    /// The TXT record's `id` the policy was fetched under.
    pub id: String,
    /// When the policy was fetched (its `max_age` counts from here).
    pub fetched_at: UnixTime,
    /// The policy as text, in the RFC 8461 §3.2 format (a store may keep it in another layout,
    /// such as postfix-mta-sts-resolver's JSON, and give it back as text).
    pub policy: String,
}

impl StoredPolicy {
    /// An entry with these fields.
    pub fn new(
        domain: impl Into<String>,
        id: impl Into<String>,
        fetched_at: UnixTime,
        policy: impl Into<String>,
    ) -> Self {
        Self {
            domain: domain.into(),
            id: id.into(),
            fetched_at,
            policy: policy.into(),
        }
    }
}

/// A shared policy store: it keeps [`StoredPolicy`] values and decides nothing (the core decides
/// what an entry may be used for when the client adopts it); every byte it returns is hostile.
///
/// Every method is bounded by the caller's timeout (the client drops a future that takes longer
/// than the lookup allows); an implementation should also bound its own connects and reads.
pub trait PolicyStore: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and metrics (`mta_sts_store_operations_total{store}`): `redis`,
    /// `sqlite`, `postgres`, `memory`, …
    fn name(&self) -> &'static str;

    /// The entry of `domain`, or `None` when the store has none.
    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredPolicy>, StoreError>>;

    /// Keeps `entry`, replacing the domain's entry only when `entry.fetched_at` is newer (a host
    /// that fetched earlier never overwrites a later fetch of another host).
    fn put<'a>(&'a self, entry: &'a StoredPolicy) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes the entry of `domain`; true when there was one.
    fn delete<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Up to `limit` entries, for the operator's tools (`mta-sts cache list`). Entries that
    /// cannot be read are left out (and counted in the store's log), not returned as errors.
    fn list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredPolicy>, StoreError>>;

    /// The store's [`FleetNotes`] (fleet lookup locks, shared negative answers), or `None` when
    /// it keeps none: then every host of the fleet looks up and remembers absences on its own.
    fn notes(&self) -> Option<&dyn FleetNotes> {
        None
    }
}

/// The longest key a [`FleetNotes`] accepts (`absent/` or `lock/` and a domain of at most
/// 253 bytes fit well within it).
pub const MAX_NOTE_KEY: usize = 300;

/// The longest value a [`FleetNotes`] keeps or returns: a longer value read back is a
/// [`StoreErrorKind::Corrupt`] error.
pub const MAX_NOTE_VALUE: usize = 1024;

/// Short-lived records a fleet shares beside its policies: a key, a value and an expiry. The
/// client keeps its fleet lookup locks (`lock/<domain>`, the value naming the host that looks
/// up) and the negative answers it learnt (`absent/<domain>`) here.
///
/// Notes live apart from the policies, so that another program reading the policy layout
/// never meets them (postfix-mta-sts-resolver's proactive fetcher SCANs every key of its Redis
/// database and dies on a key of another type). An expired note is treated as absent; a store
/// may remove expired notes lazily. Keys are at most [`MAX_NOTE_KEY`] bytes and values at most
/// [`MAX_NOTE_VALUE`] bytes (longer input is [`StoreErrorKind::Refused`]); what a store
/// returns is hostile like everything else it returns.
pub trait FleetNotes: Send + Sync + fmt::Debug {
    /// Sets `key` to `value` until `expires` unless an unexpired note (`expires > now`) is
    /// there, atomically across the fleet: true when set (a lock taken), false when another
    /// note holds the key.
    fn claim<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        now: UnixTime,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Sets `key` to `value` until `expires`, replacing whatever was there.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        expires: UnixTime,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The note at `key` with its expiry, or `None` when there is none or it expired
    /// (`expires <= now`).
    fn read<'a>(
        &'a self,
        key: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<Option<(String, UnixTime)>, StoreError>>;

    /// Removes the note at `key` when its value is `value` (`None`: whatever its value), so
    /// that a host releases only its own lock: true when a note was removed.
    fn remove<'a>(
        &'a self,
        key: &'a str,
        value: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// Checks a note's key and value against [`MAX_NOTE_KEY`] and [`MAX_NOTE_VALUE`] (for
/// implementations of [`FleetNotes`]).
pub fn check_note(key: &str, value: Option<&str>) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_NOTE_KEY {
        return Err(StoreError::new(
            StoreErrorKind::Refused,
            format!("note key of {} bytes (1 to {MAX_NOTE_KEY})", key.len()),
        ));
    }
    if let Some(v) = value
        && v.len() > MAX_NOTE_VALUE
    {
        return Err(StoreError::new(
            StoreErrorKind::Refused,
            format!("note value of {} bytes (at most {MAX_NOTE_VALUE})", v.len()),
        ));
    }
    Ok(())
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached or did not answer (connection refused, timeout, the
    /// server shutting down): the client goes on as `on_store_error` says.
    Unavailable,
    /// The store answered with data that is not an entry of this layout (truncated JSON, wrong
    /// types, another program's key, a giant value): the entry is ignored and overwritten.
    Corrupt,
    /// The store refused the operation (disk full, read-only, permission, out of memory).
    Refused,
    /// Anything else the client library reported.
    Other,
}

/// A store operation's failure: what kind, and what the store said, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    kind: StoreErrorKind,
    detail: String,
}

impl StoreError {
    /// An error of `kind` with the store's own words.
    pub fn new(kind: StoreErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// What kind of failure.
    pub fn kind(&self) -> &StoreErrorKind {
        &self.kind
    }

    /// What the store or its client library said.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StoreErrorKind::Unavailable => "store unavailable",
            StoreErrorKind::Corrupt => "unreadable store entry",
            StoreErrorKind::Refused => "store refused the operation",
            StoreErrorKind::Other => "store error",
        };
        write!(f, "{what}: {}", self.detail)
    }
}

impl std::error::Error for StoreError {}
