//! A fleet sharing a policy store: when another host's fetch counts as this host's refresh.

use super::PolicyCache;
use crate::outcome::CachedPolicy;
use crate::snapshot::{AdoptError, check_stored};
use crate::time::UnixTime;

impl PolicyCache {
    /// Adopts a shared store's entry for `domain` *as this cache's proactive refresh* (R44) at
    /// `now`, so that a fleet refreshes each policy about once per interval rather than once per
    /// host: call it when a refresh is due ([`poll_refresh`](Self::poll_refresh) handed out its
    /// lookup), before fetching.
    ///
    /// The entry counts as a refresh when it is valid and unexpired (as for
    /// [`adopt`](Self::adopt)), newer than the cached policy, and fetched recently enough that
    /// this cache would not refresh it yet: its own refresh time, by this cache's interval and
    /// jitter, lies after `now`. Otherwise it is refused ([`AdoptError::NotARefresh`] when it is
    /// due itself or the domain has no cached policy) and the refresh goes on with a fetch.
    /// Adopted, it replaces the cached policy and the next refresh is scheduled from its fetch
    /// time; the entry's last use is not changed (a refresh is not a use, so an idle policy
    /// still stops being refreshed). The refresh's lookup is then given up with
    /// [`abandon`](Self::abandon).
    ///
    /// ```
    /// use std::time::Duration;
    /// use mta_sts_core::{AdoptError, Config, PolicyCache, UnixTime};
    ///
    /// let text = "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 604800\n";
    /// let t0 = UnixTime::from_secs(1_700_000_000);
    /// let mut cache = PolicyCache::new(Config::default());
    /// cache.adopt("example.net", "1", t0, text, t0)?;
    /// // A day later the refresh is due; another host fetched the policy an hour ago.
    /// let now = t0.saturating_add(Duration::from_secs(86_400));
    /// let theirs = now.saturating_sub(Duration::from_secs(3_600));
    /// let lookup = cache.poll_refresh(now).expect("due");
    /// cache.adopt_refresh("example.net", "1", theirs, text, now)?;
    /// # let _ = lookup;
    /// // An entry as old as the cached one is not a refresh.
    /// assert_eq!(cache.adopt_refresh("example.net", "1", t0, text, now), Err(AdoptError::NotNewer));
    /// # Ok::<(), AdoptError>(())
    /// ```
    pub fn adopt_refresh(
        &mut self,
        domain: &str,
        id: &str,
        fetched_at: UnixTime,
        policy: &str,
        now: UnixTime,
    ) -> Result<CachedPolicy, AdoptError> {
        let (domain, cached) = check_stored(domain, id, fetched_at, policy, now)?;
        let i = self.find(domain.as_str()).ok_or(AdoptError::NotARefresh)?;
        let old = self
            .slot(i)
            .and_then(|s| s.policy.as_ref())
            .ok_or(AdoptError::NotARefresh)?;
        if old.fetched_at() >= cached.fetched_at() {
            return Err(AdoptError::NotNewer);
        }
        if self.refresh_at(domain.as_str(), &cached) <= now {
            return Err(AdoptError::NotARefresh);
        }
        self.store(i, cached.clone(), false, now);
        Ok(cached)
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use crate::{AdoptError, Begin, Config, PolicyCache, UnixTime};

    const TEXT: &str = "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 604800\n";
    const DAY: u64 = 86_400;

    fn at(secs: u64) -> UnixTime {
        UnixTime::from_secs(1_700_000_000 + secs)
    }

    fn cache(seed: u64) -> PolicyCache {
        let mut config = Config::default();
        config.seed = seed;
        let mut cache = PolicyCache::new(config);
        cache.adopt("example.net", "1", at(0), TEXT, at(0)).unwrap();
        cache
    }

    #[test]
    fn s8_a_recent_fetch_of_another_host_counts_as_the_refresh() {
        let mut cache = cache(7);
        let now = at(DAY);
        let lookup = cache.poll_refresh(now).expect("refresh due after a day");
        let flight = lookup.flight().unwrap();
        let p = cache
            .adopt_refresh("example.net", "2", at(DAY - 600), TEXT, now)
            .unwrap();
        assert_eq!(p.id(), "2");
        cache.abandon(lookup.domain(), flight);
        // Nothing due now; the next refresh counts from the other host's fetch.
        assert!(cache.poll_refresh(now).is_none());
        let next = cache.poll_timeout().unwrap();
        assert!(next > at(DAY + DAY * 8 / 10), "{next:?}");
        assert!(next <= at(2 * DAY - 600), "{next:?}");
        assert_eq!(cache.peek("example.net").unwrap().id(), "2");
        cache.check_invariants();
    }

    #[test]
    fn s8_an_entry_due_itself_older_or_unknown_is_not_a_refresh() {
        let mut cache = cache(7);
        let now = at(3 * DAY);
        // Newer than the cached one, but due for a refresh itself: fetching goes on.
        assert_eq!(
            cache.adopt_refresh("example.net", "2", at(DAY), TEXT, now),
            Err(AdoptError::NotARefresh)
        );
        assert_eq!(
            cache.adopt_refresh("example.net", "1", at(0), TEXT, now),
            Err(AdoptError::NotNewer)
        );
        assert_eq!(
            cache.adopt_refresh("other.example", "1", at(3 * DAY - 5), TEXT, now),
            Err(AdoptError::NotARefresh)
        );
        assert!(matches!(
            cache.adopt_refresh("example.net", "1", at(3 * DAY - 5), "mode: what", now),
            Err(AdoptError::InvalidPolicy(_))
        ));
        assert_eq!(
            cache.adopt_refresh("example.net", "1", at(4 * DAY), TEXT, now),
            Err(AdoptError::FromTheFuture)
        );
        assert_eq!(cache.peek("example.net").unwrap().id(), "1");
    }

    #[test]
    fn s8_adopted_refreshes_are_not_uses_so_idle_policies_stop() {
        let mut config = Config::default();
        config.seed = 3;
        config.idle_after = Duration::from_secs(2 * DAY);
        let mut cache = PolicyCache::new(config);
        cache.adopt("example.net", "1", at(0), TEXT, at(0)).unwrap();
        // Every day another host refreshes it; this host adopts, and never delivers.
        let mut handed = 0;
        for day in 1..=5 {
            let now = at(day * DAY);
            if let Some(lookup) = cache.poll_refresh(now) {
                handed += 1;
                let _ = cache.adopt_refresh("example.net", "1", at(day * DAY - 60), TEXT, now);
                cache.abandon(lookup.domain(), lookup.flight().unwrap());
            }
        }
        // Unused for idle_after (two days): no more refreshes, though the policy (a week's
        // max_age) is still cached. Were an adoption a use, there would be one each day.
        assert!((1..=2).contains(&handed), "{handed} refreshes handed out");
        assert!(matches!(
            cache.begin("example.net", at(5 * DAY)),
            Begin::Ready(_)
        ));
    }

    #[test]
    fn s8_two_hosts_with_their_own_jitter_fetch_about_once_per_interval() {
        // Host a and b share a store; each refreshes when due, adopting the other's fetch when
        // it counts. Over 30 days: about one fetch per day between them, not two.
        let mut hosts = [cache(11), cache(12)];
        let mut store = at(0);
        let mut fetches = 0;
        for minute in 1..=(30 * 24 * 60) {
            let now = at(minute * 60);
            for h in &mut hosts {
                // Keep it in use.
                let _ = h.begin("example.net", now);
                while let Some(lookup) = h.poll_refresh(now) {
                    let flight = lookup.flight().unwrap();
                    if h.adopt_refresh("example.net", "1", store, TEXT, now)
                        .is_err()
                    {
                        fetches += 1;
                        store = now;
                        h.adopt_refresh("example.net", "1", now, TEXT, now).unwrap();
                    }
                    h.abandon(lookup.domain(), flight);
                }
            }
        }
        assert!((30..=34).contains(&fetches), "{fetches} fetches in 30 days");
    }
}
