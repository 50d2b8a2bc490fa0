//! Negative answers remembered: "no `_mta-sts` record until T" per policy domain (RFC 2308).

use core::fmt;
use core::time::Duration;
use std::collections::BTreeMap;

use crate::time::UnixTime;

/// What a negative TXT answer for `_mta-sts.<domain>` said: the name does not exist, or it has
/// no TXT record. Remembered by the [`PolicyCache`](crate::PolicyCache) until the answer's
/// negative TTL ends, and shared through a fleet's store as the text of [`Absent::as_str`].
///
/// ```
/// use mta_sts_core::Absent;
///
/// assert_eq!(Absent::NxDomain.as_str(), "nxdomain");
/// assert_eq!(Absent::parse("nodata"), Some(Absent::NoData));
/// assert_eq!(Absent::parse("NODATA "), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Absent {
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name exists but has no TXT record (NODATA).
    NoData,
}

impl Absent {
    /// `nxdomain` or `nodata`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NxDomain => "nxdomain",
            Self::NoData => "nodata",
        }
    }

    /// The inverse of [`Absent::as_str`] (exact, lowercase); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "nxdomain" => Some(Self::NxDomain),
            "nodata" => Some(Self::NoData),
            _ => None,
        }
    }

    /// The matching [`TxtProblem`](crate::TxtProblem) of an outcome.
    pub(crate) fn problem(self) -> crate::TxtProblem {
        self.into()
    }
}

/// The problem an outcome names for a negative answer: what
/// [`PolicyCache::begin`](crate::PolicyCache::begin) answers while it is remembered.
impl From<Absent> for crate::TxtProblem {
    fn from(a: Absent) -> Self {
        match a {
            Absent::NxDomain => Self::NxDomain,
            Absent::NoData => Self::NoData,
        }
    }
}

impl fmt::Display for Absent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A negative TTL (`None`: unknown) within the bounds: the default when unknown, at least
/// `min`, at most `max` (the cap wins).
pub(crate) fn clamp_ttl(
    ttl: Option<Duration>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Duration {
    ttl.unwrap_or(default).max(min).min(max)
}

/// The negative answers remembered, at most `capacity`; the one that expires first is dropped to
/// make room, and expired ones are dropped as they are met.
#[derive(Debug, Default)]
pub(crate) struct Absences {
    /// Domain → (until, sequence number, what the answer was).
    by_domain: BTreeMap<Box<str>, (UnixTime, u64, Absent)>,
    /// (until, sequence number) → domain: the order of expiry (and of eviction).
    by_expiry: BTreeMap<(UnixTime, u64), Box<str>>,
    next: u64,
}

impl Absences {
    pub(crate) fn len(&self) -> usize {
        self.by_domain.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// The unexpired negative answer of `domain` at `now`.
    pub(crate) fn get(&self, domain: &str, now: UnixTime) -> Option<(Absent, UnixTime)> {
        let &(until, _, absent) = self.by_domain.get(domain)?;
        (now < until).then_some((absent, until))
    }

    /// Remembers the negative answer of `domain` until `until`, replacing any earlier one; with
    /// `capacity` entries already, first drops the one that expires first. Nothing with a zero
    /// capacity or an `until` not after `now`.
    pub(crate) fn insert(
        &mut self,
        domain: &str,
        absent: Absent,
        until: UnixTime,
        now: UnixTime,
        capacity: usize,
    ) {
        self.purge(now);
        if capacity == 0 || until <= now {
            return;
        }
        self.remove(domain);
        while self.by_domain.len() >= capacity {
            let Some(((_, _), victim)) = self.by_expiry.pop_first() else {
                break;
            };
            self.by_domain.remove(&victim);
        }
        let seq = self.next;
        self.next = self.next.wrapping_add(1);
        self.by_domain.insert(domain.into(), (until, seq, absent));
        self.by_expiry.insert((until, seq), domain.into());
    }

    /// Forgets the negative answer of `domain`; true if there was one.
    pub(crate) fn remove(&mut self, domain: &str) -> bool {
        match self.by_domain.remove(domain) {
            Some((until, seq, _)) => {
                self.by_expiry.remove(&(until, seq));
                true
            }
            None => false,
        }
    }

    /// Drops every answer expired at `now`.
    pub(crate) fn purge(&mut self, now: UnixTime) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let domain = entry.remove();
            self.by_domain.remove(&domain);
        }
    }

    /// The two maps agree (for the fuzz target and tests).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn check(&self, capacity: usize) {
        assert_eq!(
            self.by_domain.len(),
            self.by_expiry.len(),
            "absence maps disagree"
        );
        assert!(self.by_domain.len() <= capacity, "absences over capacity");
        for (key, domain) in &self.by_expiry {
            let e = self.by_domain.get(domain).map(|&(u, s, _)| (u, s));
            assert_eq!(e, Some(*key), "absence maps disagree");
        }
    }
}
