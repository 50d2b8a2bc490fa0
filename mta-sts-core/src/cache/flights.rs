//! The one table of lookups under way: which domain has a lookup in flight, its identity and
//! until when it counts as under way.

use core::fmt;
use core::time::Duration;
use std::collections::HashMap;

use crate::policy_domain::PolicyDomain;
use crate::time::UnixTime;

/// The identity of one lookup under way (a *flight*), handed out with every lookup the cache
/// starts ([`Lookup::flight`](crate::Lookup::flight)) and named by
/// [`Begin::InProgress`](crate::Begin::InProgress) to the callers that should wait for it.
///
/// An adapter keeps, per flight, only what its waiters wait on (a channel, an event, a
/// condition variable): when the lookup ends, its [`Resolution`](crate::Resolution) names the
/// same flight ([`Resolution::flight`](crate::Resolution::flight)), and so does the adapter's
/// [`PolicyCache::abandon`](crate::PolicyCache::abandon) when its driver gives up. A lookup that
/// outlives [`Config::lookup_deadline`](crate::Config::lookup_deadline) is replaced by a newer
/// flight for the same domain; the two are told apart by their identities, so the late one
/// ending never ends the newer one. Identities are never reused by a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlightId(u64);

impl FlightId {
    /// The number of this flight (0 for the cache's first), for logs.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FlightId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flight {}", self.0)
    }
}

/// A flight registered for a domain.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: FlightId,
    /// Until when the flight counts as under way (its start plus the lookup deadline).
    until: UnixTime,
}

/// The flights of the cache, at most one registered per domain.
#[derive(Debug, Default)]
pub(super) struct Flights {
    table: HashMap<PolicyDomain, Entry>,
    next: u64,
}

impl Flights {
    /// The registered flights, live or not yet purged.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// The flight of `domain` under way at `now`, and until when it counts as under way.
    pub(super) fn live(&self, domain: &str, now: UnixTime) -> Option<(FlightId, UnixTime)> {
        self.table
            .get(domain)
            .filter(|e| now < e.until)
            .map(|e| (e.id, e.until))
    }

    /// A new identity, for a lookup that is not registered (the table is full).
    pub(super) fn untracked(&mut self) -> FlightId {
        let id = FlightId(self.next);
        self.next = self.next.wrapping_add(1);
        id
    }

    /// Registers a new flight for `domain` (replacing one that is no longer under way), under way
    /// for `deadline` from `now`. `None` when `max` flights are under way already: the table is
    /// bounded, and what is over the bound is not coalesced.
    pub(super) fn register(
        &mut self,
        domain: &PolicyDomain,
        now: UnixTime,
        deadline: Duration,
        max: usize,
    ) -> Option<FlightId> {
        if !self.table.contains_key(domain.as_str()) && self.table.len() >= max {
            self.table.retain(|_, e| now < e.until);
            if self.table.len() >= max {
                return None;
            }
        }
        let entry = Entry {
            id: self.untracked(),
            until: now.saturating_add(deadline),
        };
        self.table.insert(domain.clone(), entry);
        Some(entry.id)
    }

    /// Ends flight `id` of `domain`; false (and nothing changes) when `id` is not the domain's
    /// registered flight: a newer flight replaced it, or it was never registered.
    pub(super) fn end(&mut self, domain: &str, id: FlightId) -> bool {
        if self.table.get(domain).is_some_and(|e| e.id == id) {
            self.table.remove(domain);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str) -> PolicyDomain {
        PolicyDomain::parse(name).unwrap()
    }

    #[test]
    fn a_stale_flight_is_replaced_and_its_end_leaves_the_newer_one() {
        let mut f = Flights::default();
        let t0 = UnixTime::from_secs(1_000);
        let d = domain("example.com");
        let deadline = Duration::from_secs(300);
        let old = f.register(&d, t0, deadline, 8).unwrap();
        assert_eq!(
            f.live("example.com", t0),
            Some((old, t0.saturating_add(deadline)))
        );
        let late = t0.saturating_add(deadline);
        assert_eq!(f.live("example.com", late), None, "past its deadline");
        let new = f.register(&d, late, deadline, 8).unwrap();
        assert_ne!(old, new);
        assert!(!f.end("example.com", old), "the stale flight ends nothing");
        assert_eq!(f.live("example.com", late).map(|l| l.0), Some(new));
        assert!(f.end("example.com", new));
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn the_table_is_bounded_and_purges_what_is_no_longer_under_way() {
        let mut f = Flights::default();
        let t0 = UnixTime::from_secs(1_000);
        let s = Duration::from_secs(10);
        assert!(f.register(&domain("a.example"), t0, s, 2).is_some());
        assert!(f.register(&domain("b.example"), t0, s, 2).is_some());
        assert_eq!(f.register(&domain("c.example"), t0, s, 2), None, "full");
        // The same domain may always be registered again (it replaces its own entry).
        assert!(f.register(&domain("a.example"), t0, s, 2).is_some());
        let later = t0.saturating_add(s);
        assert!(f.register(&domain("c.example"), later, s, 2).is_some());
        assert_eq!(f.len(), 1, "the two stale flights were purged");
        assert_eq!(f.register(&domain("d.example"), later, s, 0), None);
        let u = f.untracked();
        assert!(!f.end("d.example", u));
    }
}
