//! Persistence of the policy cache across restarts: export and import of a snapshot.

use core::fmt;
use core::time::Duration;
use std::collections::HashSet;

use crate::cache::PolicyCache;
use crate::outcome::CachedPolicy;
use crate::policy::{Policy, PolicyError};
use crate::policy_domain::{PolicyDomain, PolicyDomainError};
use crate::time::UnixTime;
use crate::txt::RecordId;

/// The `format` tag of a snapshot: anything else is refused as foreign.
pub const SNAPSHOT_FORMAT: &str = "mta-sts-policy-cache";
/// The snapshot version written and the only one read.
pub const SNAPSHOT_VERSION: u32 = 1;
/// How far in the future a fetch time may lie (clock adjustments) before the snapshot is refused.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// A snapshot of the policies of a [`PolicyCache`], to keep them across restarts.
///
/// With the cargo feature `serde`, it implements `Serialize` and `Deserialize` (unknown fields
/// are refused), so an adapter can store it in any serde format. Each policy is kept as its
/// canonical text and parsed again on import. An entry of the wrong shape (a field missing or of
/// the wrong type) does not refuse the document: it is left out, and [`PolicyCache::import`]
/// counts it among the entries skipped, so that one damaged entry never costs the others.
///
/// ```
/// use mta_sts_core::{Config, PolicyCache, Snapshot, UnixTime};
///
/// let now = UnixTime::from_secs(1_700_000_000);
/// let cache = PolicyCache::new(Config::default());
/// let snapshot: Snapshot = cache.export(now);
/// let mut restarted = PolicyCache::new(Config::default());
/// assert_eq!(restarted.import(snapshot, now)?.loaded, 0);
/// # Ok::<(), mta_sts_core::SnapshotError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(deny_unknown_fields)
)]
pub struct Snapshot {
    format: String,
    version: u32,
    entries: Vec<SnapshotEntry>,
    /// The positions of the entries that could not be read (wrong shape), in order.
    #[cfg_attr(feature = "serde", serde(skip))]
    malformed: Vec<usize>,
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Snapshot {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Document {
            format: String,
            version: u32,
            entries: crate::lenient::Lenient<SnapshotEntry>,
        }
        let document = Document::deserialize(deserializer)?;
        Ok(Self {
            format: document.format,
            version: document.version,
            entries: document.entries.items,
            malformed: document.entries.malformed,
        })
    }
}

/// One cached policy in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct SnapshotEntry {
    domain: String,
    id: String,
    fetched_at: u64,
    last_used: u64,
    policy: String,
}

impl Snapshot {
    /// A snapshot of these entries (most recently used first), for formats other than serde.
    pub fn new(entries: Vec<SnapshotEntry>) -> Self {
        Self {
            format: SNAPSHOT_FORMAT.to_owned(),
            version: SNAPSHOT_VERSION,
            entries,
            malformed: Vec::new(),
        }
    }

    /// The entries, most recently used first (those of the wrong shape left out).
    pub fn entries(&self) -> &[SnapshotEntry] {
        &self.entries
    }

    /// How many entries of the document had the wrong shape and were left out.
    pub fn malformed(&self) -> usize {
        self.malformed.len()
    }

    /// The format tag ([`SNAPSHOT_FORMAT`] for a snapshot of this crate).
    pub fn format(&self) -> &str {
        &self.format
    }

    /// The version ([`SNAPSHOT_VERSION`]).
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl SnapshotEntry {
    /// An entry: policy domain, TXT id, fetch time, last use and the policy text.
    pub fn new(
        domain: impl Into<String>,
        id: impl Into<String>,
        fetched_at: UnixTime,
        last_used: UnixTime,
        policy: impl Into<String>,
    ) -> Self {
        Self {
            domain: domain.into(),
            id: id.into(),
            fetched_at: fetched_at.as_secs(),
            last_used: last_used.as_secs(),
            policy: policy.into(),
        }
    }

    /// The policy domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The TXT id the policy was fetched under.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the policy was fetched.
    pub fn fetched_at(&self) -> UnixTime {
        UnixTime::from_secs(self.fetched_at)
    }

    /// When the entry was last used by a delivery.
    pub fn last_used(&self) -> UnixTime {
        UnixTime::from_secs(self.last_used)
    }

    /// The policy text (canonical form).
    pub fn policy(&self) -> &str {
        &self.policy
    }
}

/// Why a snapshot was refused ([`Foreign`](Self::Foreign), [`UnsupportedVersion`](Self::UnsupportedVersion):
/// nothing of it is loaded), or why one of its entries was skipped (the others: listed in the
/// [`ImportReport`], the rest of the snapshot loads).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The format tag is not [`SNAPSHOT_FORMAT`]: not a snapshot of this cache.
    Foreign {
        /// The tag found.
        format: String,
    },
    /// A version this crate does not read.
    UnsupportedVersion(u32),
    /// Entry `index` has an invalid domain.
    InvalidDomain {
        /// The entry's position.
        index: usize,
        /// Why it is invalid.
        error: PolicyDomainError,
    },
    /// Entry `index` has an invalid TXT id.
    InvalidId {
        /// The entry's position.
        index: usize,
    },
    /// Entry `index` has an invalid policy.
    InvalidPolicy {
        /// The entry's position.
        index: usize,
        /// Why it is invalid.
        error: PolicyError,
    },
    /// Entry `index` was fetched or used after the import time (beyond a few minutes of clock
    /// adjustment), which would extend its life.
    FromTheFuture {
        /// The entry's position.
        index: usize,
    },
    /// Entry `index` repeats the domain of an earlier entry (the earlier one, more recently
    /// used, is kept).
    Duplicate {
        /// The entry's position.
        index: usize,
    },
    /// Entry `index` is not an entry at all (a field missing or of the wrong type).
    Malformed {
        /// The entry's position.
        index: usize,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Foreign { format } => {
                write!(
                    f,
                    "not an MTA-STS policy cache snapshot (format {format:?})"
                )
            }
            Self::UnsupportedVersion(v) => write!(f, "unsupported snapshot version {v}"),
            Self::InvalidDomain { index, error } => write!(f, "entry {index}: {error}"),
            Self::InvalidId { index } => write!(f, "entry {index}: invalid policy id"),
            Self::InvalidPolicy { index, error } => {
                write!(f, "entry {index}: invalid policy: {error}")
            }
            Self::FromTheFuture { index } => write!(f, "entry {index}: time lies in the future"),
            Self::Duplicate { index } => write!(f, "entry {index}: domain repeated"),
            Self::Malformed { index } => write!(f, "entry {index}: not a policy entry"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// The most entry problems an [`ImportReport`] lists (all of them are counted).
pub const MAX_LISTED_PROBLEMS: usize = 16;

/// What [`PolicyCache::import`] did with a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Policies loaded.
    pub loaded: usize,
    /// Entries whose policy had expired (they would have been dropped anyway).
    pub expired: usize,
    /// Entries skipped because something in them was wrong: the wrong shape, an invalid domain,
    /// TXT id or policy, a time in the future, a repeated domain.
    pub skipped: usize,
    /// Valid, unexpired entries not loaded: over the cache's capacity (the least recently used
    /// go), or older than a policy already cached for the domain.
    pub not_loaded: usize,
    /// The problems of the first [`MAX_LISTED_PROBLEMS`] entries skipped, for the log.
    pub problems: Vec<SnapshotError>,
}

impl ImportReport {
    fn skip(&mut self, problem: SnapshotError) {
        self.skipped += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(problem);
        }
    }
}

impl PolicyCache {
    /// A snapshot of the unexpired policies at `now`, most recently used first.
    pub fn export(&self, now: UnixTime) -> Snapshot {
        let entries = self
            .policies_by_recency()
            .filter(|(_, p, _)| p.is_fresh(now))
            .map(|(domain, p, last_used)| {
                SnapshotEntry::new(
                    domain.as_str(),
                    p.id(),
                    p.fetched_at(),
                    last_used,
                    p.policy().to_string(),
                )
            })
            .collect();
        Snapshot::new(entries)
    }

    /// Loads a snapshot taken by [`PolicyCache::export`], at `now`, keeping every valid entry:
    /// an entry that is wrong (the wrong shape, an invalid domain, id or policy, a time more
    /// than five minutes in the future, which would extend its life, a domain repeated) is
    /// skipped and listed in the report; the rest load. Only a snapshot of another format or
    /// version is refused whole. Expired entries are skipped; an entry never replaces a newer
    /// policy already cached; when the snapshot holds more than the capacity, the most recently
    /// used entries are kept.
    pub fn import(
        &mut self,
        snapshot: Snapshot,
        now: UnixTime,
    ) -> Result<ImportReport, SnapshotError> {
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Foreign {
                format: snapshot.format,
            });
        }
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(snapshot.version));
        }
        let mut report = ImportReport::default();
        let latest = now.saturating_add(MAX_CLOCK_SKEW);
        let mut seen = HashSet::with_capacity(snapshot.entries.len());
        let mut loaded = Vec::with_capacity(snapshot.entries.len());
        let mut malformed = snapshot.malformed.iter().copied().peekable();
        let mut position = 0;
        for e in &snapshot.entries {
            // The entry's position in the document, counting those of the wrong shape.
            while malformed.next_if_eq(&position).is_some() {
                report.skip(SnapshotError::Malformed { index: position });
                position += 1;
            }
            let index = position;
            position += 1;
            match check_entry(e, index, latest, &mut seen) {
                Ok(cached) if cached.1.is_fresh(now) => loaded.push((cached, e.last_used())),
                Ok(_) => report.expired += 1,
                Err(problem) => report.skip(problem),
            }
        }
        for index in malformed {
            report.skip(SnapshotError::Malformed { index });
        }
        let keep = loaded.len().min(self.config().capacity);
        report.not_loaded = loaded.len() - keep;
        // Least recently used first, so that the most recent end up at the head of the list.
        for ((domain, cached), last_used) in loaded.into_iter().take(keep).rev() {
            if self.insert_loaded(&domain, cached, last_used, now) {
                report.loaded += 1;
            } else {
                report.not_loaded += 1;
            }
        }
        Ok(report)
    }
}

/// Why [`PolicyCache::adopt`] did not take an entry of a shared policy store: the entry is
/// ignored (and overwritten by the next write of the domain's policy).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdoptError {
    /// The entry's domain is not a valid policy domain.
    InvalidDomain(PolicyDomainError),
    /// The entry's TXT id is not a valid id.
    InvalidId,
    /// The entry's text is not a valid policy.
    InvalidPolicy(PolicyError),
    /// The entry was fetched after `now` (beyond five minutes of clock adjustment), which would
    /// extend its life.
    FromTheFuture,
    /// The entry's policy has expired (its `max_age` counted from its fetch time has passed).
    Expired,
    /// The cache holds a policy of the domain fetched as late or later: it stays.
    NotNewer,
    /// For [`PolicyCache::adopt_refresh`]: the entry is itself due for a refresh here (it
    /// was fetched too long ago to count as one), or the domain has no cached policy to refresh.
    NotARefresh,
}

impl fmt::Display for AdoptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidDomain(e) => write!(f, "stored entry: {e}"),
            Self::InvalidId => f.write_str("stored entry: invalid policy id"),
            Self::InvalidPolicy(e) => write!(f, "stored entry: invalid policy: {e}"),
            Self::FromTheFuture => f.write_str("stored entry: fetch time lies in the future"),
            Self::Expired => f.write_str("stored entry: policy expired"),
            Self::NotNewer => f.write_str("stored entry: not newer than the cached policy"),
            Self::NotARefresh => f.write_str("stored entry: too old to count as a refresh"),
        }
    }
}

impl std::error::Error for AdoptError {}

impl PolicyCache {
    /// Adopts the entry of a shared policy store (fleet-wide cache) for `domain` at `now`: the
    /// text is parsed as a policy, and the entry is refused when it is invalid, fetched in the
    /// future (beyond five minutes of clock adjustment), expired, or not newer than the policy
    /// cached for the domain. Otherwise it is cached like a policy loaded from a
    /// [`Snapshot`] (refreshed when due; the usual TXT id checks apply to it) and returned.
    ///
    /// ```
    /// use mta_sts_core::{AdoptError, Begin, Config, PolicyCache, UnixTime};
    ///
    /// let now = UnixTime::from_secs(1_700_000_000);
    /// let text = "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 86400\n";
    /// let mut cache = PolicyCache::new(Config::default());
    /// let adopted = cache.adopt("example.net", "20260101", now, text, now)?;
    /// assert_eq!(adopted.id(), "20260101");
    /// assert!(matches!(cache.begin("example.net", now), Begin::Ready(_)));
    /// // The same entry again is not newer; hostile text is a typed error.
    /// assert_eq!(cache.adopt("example.net", "20260101", now, text, now), Err(AdoptError::NotNewer));
    /// assert!(matches!(
    ///     cache.adopt("example.org", "1", now, "{\"mx\": 1}", now),
    ///     Err(AdoptError::InvalidPolicy(_))
    /// ));
    /// # Ok::<(), AdoptError>(())
    /// ```
    pub fn adopt(
        &mut self,
        domain: &str,
        id: &str,
        fetched_at: UnixTime,
        policy: &str,
        now: UnixTime,
    ) -> Result<CachedPolicy, AdoptError> {
        let (domain, cached) = check_stored(domain, id, fetched_at, policy, now)?;
        if self.insert_loaded(&domain, cached.clone(), now, now) {
            Ok(cached)
        } else {
            Err(AdoptError::NotNewer)
        }
    }
}

/// A store's entry checked for adoption at `now`: valid, not from the future, unexpired.
pub(crate) fn check_stored(
    domain: &str,
    id: &str,
    fetched_at: UnixTime,
    policy: &str,
    now: UnixTime,
) -> Result<(PolicyDomain, CachedPolicy), AdoptError> {
    let entry = SnapshotEntry::new(domain, id, fetched_at, fetched_at.min(now), policy);
    let latest = now.saturating_add(MAX_CLOCK_SKEW);
    let (domain, cached) =
        check_entry(&entry, 0, latest, &mut HashSet::new()).map_err(|e| match e {
            SnapshotError::InvalidDomain { error, .. } => AdoptError::InvalidDomain(error),
            SnapshotError::InvalidPolicy { error, .. } => AdoptError::InvalidPolicy(error),
            SnapshotError::FromTheFuture { .. } => AdoptError::FromTheFuture,
            _ => AdoptError::InvalidId,
        })?;
    if !cached.is_fresh(now) {
        return Err(AdoptError::Expired);
    }
    Ok((domain, cached))
}

/// An entry checked: its domain and policy, or why it is skipped.
fn check_entry(
    e: &SnapshotEntry,
    index: usize,
    latest: UnixTime,
    seen: &mut HashSet<PolicyDomain>,
) -> Result<(PolicyDomain, CachedPolicy), SnapshotError> {
    let domain = PolicyDomain::parse(&e.domain)
        .map_err(|error| SnapshotError::InvalidDomain { index, error })?;
    let id = RecordId::new(&e.id).ok_or(SnapshotError::InvalidId { index })?;
    let policy =
        Policy::parse(&e.policy).map_err(|error| SnapshotError::InvalidPolicy { index, error })?;
    if e.fetched_at() > latest || e.last_used() > latest {
        return Err(SnapshotError::FromTheFuture { index });
    }
    // Checked last: a broken entry never hides a valid one of the same domain after it.
    if !seen.insert(domain.clone()) {
        return Err(SnapshotError::Duplicate { index });
    }
    let fetched_at = e.fetched_at();
    Ok((domain, CachedPolicy::new(policy, id, fetched_at)))
}
