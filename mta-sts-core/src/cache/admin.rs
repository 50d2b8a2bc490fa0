//! The operator's entry points into the cache (S10): list what is cached, purge an entry or all
//! of them, and refetch a domain's policy now whatever its TXT id says (for domains that change
//! their policy without publishing a new id).

use super::{Begin, PolicyCache, rejected};
use crate::config::StsUsage;
use crate::lookup::{Lookup, LookupKind, Params};
use crate::outcome::{CachedPolicy, NoPolicyReason, Outcome};
use crate::policy_domain::PolicyDomain;
use crate::time::UnixTime;

impl PolicyCache {
    /// The cached policies, fresh or expired (an expired one is dropped at the next
    /// [`poll_refresh`](Self::poll_refresh)), most recently used first: domain and policy.
    /// Entries that only remember a failed fetch are not listed. Counts no use.
    pub fn policies(&self) -> impl Iterator<Item = (&str, &CachedPolicy)> + '_ {
        self.policies_by_recency()
            .map(|(domain, policy, _)| (domain.as_str(), policy))
    }

    /// Removes the entry of `domain` (its policy and the memory of a failed fetch): the next
    /// delivery looks it up again. True when there was one. A lookup under way is not stopped:
    /// a delivery lookup that ends after the purge stores what it fetched (it is newer than what
    /// was purged), a refresh brings nothing back.
    ///
    /// ```
    /// use mta_sts_core::{Config, PolicyCache};
    ///
    /// let mut cache = PolicyCache::new(Config::default());
    /// assert!(!cache.purge("example.com"));
    /// assert_eq!(cache.purge_all(), 0);
    /// ```
    pub fn purge(&mut self, domain: &str) -> bool {
        let Ok(d) = PolicyDomain::normalised(domain) else {
            return false;
        };
        match self.find(&d) {
            Some(i) => {
                self.remove(i);
                true
            }
            None => false,
        }
    }

    /// Removes every entry (as [`purge`](Self::purge) does each); returns how many there were.
    pub fn purge_all(&mut self) -> usize {
        let live: Vec<u32> = (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        for &i in &live {
            self.remove(i);
        }
        live.len()
    }

    /// Starts fetching the policy of `domain` now, whatever its TXT record says: the operator's
    /// refresh, for a domain that changed its policy without a new id (where
    /// [`begin_recheck`](Self::begin_recheck) would keep the cached policy). It runs as a
    /// proactive refresh does (R44): the TXT record is queried for the id to cache the policy
    /// under, the policy is fetched even when the id is unchanged (and, without a usable TXT
    /// answer, under the cached id), and a failed fetch keeps the cached policy. The back-off
    /// after a failed fetch (R19) does not apply: the operator asked for a fetch now. Without a
    /// cached policy it is a [`begin_recheck`](Self::begin_recheck) without that back-off.
    ///
    /// Like [`begin`](Self::begin), it returns [`Begin::InProgress`] while another lookup of the
    /// domain is under way (wait for it, then call again), and registers the lookup it starts as
    /// the domain's flight, so that deliveries meanwhile wait for its outcome.
    pub fn begin_refetch(&mut self, domain: &str, now: UnixTime) -> Begin {
        let domain = match PolicyDomain::normalised(domain) {
            Ok(d) => PolicyDomain::from_normalised(d.into_owned()),
            Err(e) => return Begin::Ready(Outcome::NoPolicy(rejected(e))),
        };
        if self.config.settings_for(&domain).usage == StsUsage::Disable {
            return Begin::Ready(Outcome::NoPolicy(NoPolicyReason::Disabled));
        }
        if let Some((flight, _)) = self.flights.live(domain.as_str(), now) {
            return Begin::InProgress(flight);
        }
        let (max, deadline) = (self.config.max_in_flight, self.config.lookup_deadline);
        let flight = match self.flights.register(&domain, now, deadline, max) {
            Some(flight) => flight,
            None => self.flights.untracked(),
        };
        let cached = self
            .find(domain.as_str())
            .and_then(|i| self.slot(i))
            .and_then(|s| s.policy.clone());
        let params = Params::new(&self.config, &domain);
        let kind = LookupKind::Refresh;
        let lookup = Lookup::with(domain, kind, params, cached, None, Some(flight), now);
        Begin::Started(Box::new(lookup))
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use crate::io::{FetchFailure, FetchResponse, Io, TxtAnswer};
    use crate::lookup::{IoResult, Step};
    use crate::outcome::CacheReason;
    use crate::{Config, Policy};

    use super::*;

    const T0: UnixTime = UnixTime::from_secs(1_700_000_000);
    const OLD: &str = "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400\n";
    const NEW: &str = "version: STSv1\nmode: enforce\nmx: mx2.example.com\nmax_age: 86400\n";

    fn txt(id: &str) -> IoResult {
        let record = format!("v=STSv1; id={id};").into_bytes();
        IoResult::Txt(Ok(TxtAnswer::Records(vec![record])))
    }

    fn body(text: &str) -> IoResult {
        IoResult::Fetch(Ok(FetchResponse::new(200, Some("text/plain"), text)))
    }

    /// Drives `begin`'s lookup with `answers` in order; the requests it made and its outcome.
    fn drive(
        cache: &mut PolicyCache,
        begin: Begin,
        answers: Vec<IoResult>,
        now: UnixTime,
    ) -> (Vec<&'static str>, Outcome) {
        let mut lookup = match begin {
            Begin::Started(l) => l,
            other => panic!("a lookup was expected, not {other:?}"),
        };
        let mut asked = Vec::new();
        let mut answers = answers.into_iter();
        loop {
            match lookup.poll() {
                Step::Io(io) => {
                    asked.push(match io {
                        Io::Txt(_) => "txt",
                        Io::Fetch(_) => "fetch",
                    });
                    let answer = answers.next().expect("an answer for each request");
                    lookup.handle(answer, now).expect("the answer fits");
                }
                Step::Done(r) => return (asked, cache.apply(r, now)),
            }
        }
    }

    fn cached_text(cache: &PolicyCache) -> String {
        let p = cache.peek("example.com").expect("a cached policy");
        p.policy().to_string()
    }

    #[test]
    fn s10_a_refetch_fetches_under_an_unchanged_id_where_a_recheck_does_not() {
        let mut cache = PolicyCache::new(Config::default());
        let begin = cache.begin("example.com", T0);
        let (asked, outcome) = drive(&mut cache, begin, vec![txt("1"), body(OLD)], T0);
        assert_eq!(asked, ["txt", "fetch"]);
        assert!(matches!(outcome, Outcome::Fetched(_)));

        // The domain changes its policy but not its id. An hour later, a recheck keeps the old
        // policy: the id is unchanged.
        let t1 = T0.saturating_add(Duration::from_secs(3600));
        let begin = cache.begin_recheck("example.com", t1);
        let (asked, outcome) = drive(&mut cache, begin, vec![txt("1")], t1);
        assert_eq!(asked, ["txt"]);
        assert!(matches!(
            outcome,
            Outcome::Cached {
                reason: CacheReason::UnchangedId,
                ..
            }
        ));
        assert_eq!(cached_text(&cache), Policy::parse(OLD).unwrap().to_string());

        // The operator's refetch fetches it.
        let begin = cache.begin_refetch("Example.COM.", t1);
        let (asked, outcome) = drive(&mut cache, begin, vec![txt("1"), body(NEW)], t1);
        assert_eq!(asked, ["txt", "fetch"]);
        assert!(matches!(outcome, Outcome::Fetched(_)), "{outcome:?}");
        assert_eq!(cached_text(&cache), Policy::parse(NEW).unwrap().to_string());
        let p = cache.peek("example.com").unwrap();
        assert_eq!((p.id(), p.fetched_at()), ("1", t1));
        // A delivery now answers from the cache, with the new policy.
        match cache.begin("example.com", t1) {
            Begin::Ready(Outcome::Cached { policy, .. }) => {
                assert_eq!(policy.policy().to_string(), cached_text(&cache));
            }
            other => panic!("{other:?}"),
        }
        cache.check_invariants();
    }

    #[test]
    fn s10_a_failed_refetch_keeps_the_policy_and_ignores_the_back_off() {
        let mut cache = PolicyCache::new(Config::default());
        let begin = cache.begin("example.com", T0);
        let _ = drive(&mut cache, begin, vec![txt("1"), body(OLD)], T0);
        let t1 = T0.saturating_add(Duration::from_secs(60));
        let reset = IoResult::Fetch(Err(FetchFailure::Timeout));
        let begin = cache.begin_refetch("example.com", t1);
        let (asked, outcome) = drive(&mut cache, begin, vec![txt("1"), reset], t1);
        assert_eq!(asked, ["txt", "fetch"]);
        assert!(
            matches!(outcome, Outcome::Cached { .. }),
            "the cached policy answers: {outcome:?}"
        );
        assert_eq!(cached_text(&cache), Policy::parse(OLD).unwrap().to_string());
        // A second refetch a second later fetches again: no back-off for the operator.
        let t2 = t1.saturating_add(Duration::from_secs(1));
        let begin = cache.begin_refetch("example.com", t2);
        let (asked, outcome) = drive(&mut cache, begin, vec![txt("2"), body(NEW)], t2);
        assert_eq!(asked, ["txt", "fetch"]);
        assert!(matches!(outcome, Outcome::Fetched(_)));
        assert_eq!(cache.peek("example.com").unwrap().id(), "2");
        cache.check_invariants();
    }

    #[test]
    fn s10_a_refetch_waits_for_the_flight_under_way_and_deliveries_wait_for_it() {
        let mut cache = PolicyCache::new(Config::default());
        let Begin::Started(first) = cache.begin("example.com", T0) else {
            panic!("a lookup");
        };
        let flight = first.flight().unwrap();
        assert!(matches!(
            cache.begin_refetch("example.com", T0),
            Begin::InProgress(f) if f == flight
        ));
        let (_, _) = drive(
            &mut cache,
            Begin::Started(first),
            vec![txt("1"), body(OLD)],
            T0,
        );
        let Begin::Started(refetch) = cache.begin_refetch("example.com", T0) else {
            panic!("a refetch once the delivery lookup ended");
        };
        let mine = refetch.flight().unwrap();
        assert_ne!(mine, flight);
        // A recheck meanwhile (deliveries of a fresh policy answer from the cache) waits on it.
        assert!(matches!(
            cache.begin_recheck("example.com", T0),
            Begin::InProgress(f) if f == mine
        ));
        let _ = drive(
            &mut cache,
            Begin::Started(refetch),
            vec![txt("1"), body(NEW)],
            T0,
        );
        assert!(!cache.is_in_flight("example.com", T0));
        assert_eq!(cached_text(&cache), Policy::parse(NEW).unwrap().to_string());
    }

    #[test]
    fn s10_an_uncached_domain_is_looked_up_and_bad_names_are_refused() {
        let mut cache = PolicyCache::new(Config::default());
        let begin = cache.begin_refetch("example.com", T0);
        let (asked, _) = drive(&mut cache, begin, vec![txt("1"), body(OLD)], T0);
        assert_eq!(asked, ["txt", "fetch"]);
        assert!(cache.peek("example.com").is_some());
        for bad in ["", "[192.0.2.1]", "a..b", &"x".repeat(300)] {
            assert!(
                matches!(
                    cache.begin_refetch(bad, T0),
                    Begin::Ready(Outcome::NoPolicy(_))
                ),
                "{bad}"
            );
            assert!(!cache.purge(bad));
        }
    }

    #[test]
    fn s10_purge_removes_one_entry_or_all_and_list_shows_what_is_cached() {
        let mut cache = PolicyCache::new(Config::default());
        for (i, d) in ["a.example", "b.example", "c.example"].iter().enumerate() {
            let now = T0.saturating_add(Duration::from_secs(i as u64));
            let begin = cache.begin(d, now);
            let _ = drive(&mut cache, begin, vec![txt("1"), body(OLD)], now);
        }
        let listed: Vec<&str> = cache.policies().map(|(d, _)| d).collect();
        assert_eq!(listed, ["c.example", "b.example", "a.example"]);
        assert!(cache.purge("B.example."));
        assert!(!cache.purge("b.example"));
        cache.check_invariants();
        let listed: Vec<&str> = cache.policies().map(|(d, _)| d).collect();
        assert_eq!(listed, ["c.example", "a.example"]);
        // A purged domain is looked up again by the next delivery.
        assert!(matches!(cache.begin("b.example", T0), Begin::Started(_)));
        assert_eq!(cache.purge_all(), 2);
        assert!(cache.is_empty());
        assert_eq!(cache.policies().count(), 0);
        cache.check_invariants();
        // The cache works as before.
        let begin = cache.begin("a.example", T0);
        let _ = drive(&mut cache, begin, vec![txt("1"), body(OLD)], T0);
        assert_eq!(cache.len(), 1);
        cache.check_invariants();
    }
}
