//! Timers: when each entry is next refreshed or dropped, in one ordered set.

use core::time::Duration;

use super::{PolicyCache, SECOND, Slot};
use crate::outcome::CachedPolicy;
use crate::policy::Mode;
use crate::time::UnixTime;

/// The shortest time between two fetches of a policy by the refresher (R19's five minutes).
const MIN_REFRESH_PERIOD: Duration = Duration::from_secs(300);

/// The order of timers: by time in whole seconds, then slot, in one word (half the memory of a
/// `(UnixTime, u32)` pair). Times from 2106 on (2^32 s) share the last second: among them the
/// order is the slots'.
pub(super) fn timer_key(t: UnixTime, slot: u32) -> u64 {
    t.as_secs().min(u64::from(u32::MAX)) << 32 | u64::from(slot)
}

impl PolicyCache {
    /// The next timer of an entry with a policy: its refresh, or its expiry when it is not
    /// refreshed (mode `none`, idle).
    pub(super) fn schedule(&self, i: u32, now: UnixTime) -> Option<UnixTime> {
        let s = self.slot(i)?;
        let p = s.policy.as_ref()?;
        let drop_at = p.expires_at().saturating_add(SECOND);
        let at = if p.mode() == Mode::None || self.is_idle(s, now) {
            drop_at
        } else {
            self.refresh_at(s.domain.as_str(), p).min(drop_at)
        };
        Some(at.max(now.saturating_add(SECOND)))
    }

    pub(super) fn is_idle(&self, s: &Slot, now: UnixTime) -> bool {
        now.since(s.last_used) >= self.config.idle_after
    }

    /// The next instant the cache has work for [`PolicyCache::poll_refresh`] (a refresh due, an
    /// entry to drop); `None` when it has none.
    pub fn poll_timeout(&self) -> Option<UnixTime> {
        let &key = self.timers.first()?;
        self.links(key as u32).and_then(|l| l.timer)
    }

    pub(super) fn set_timer(&mut self, i: u32, at: Option<UnixTime>) {
        if self.slot(i).is_none() {
            return;
        }
        let Some(l) = self.links_mut(i) else { return };
        let old = core::mem::replace(&mut l.timer, at);
        if let Some(t) = old {
            self.timers.remove(&timer_key(t, i));
        }
        if let Some(t) = at {
            self.timers.insert(timer_key(t, i));
        }
    }

    /// Splitmix64 of the seed, the domain and the fetch time: the refresh jitter's randomness.
    pub(super) fn jitter(&self, domain: &str, fetched_at: UnixTime, period: Duration) -> Duration {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.config.seed;
        for b in domain.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut z = h ^ fetched_at.as_secs().wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Duration::from_secs(z % (period.as_secs() / 10 + 1))
    }

    /// When a stored policy is next refreshed (R44), before its expiry when `max_age` allows.
    pub(super) fn refresh_at(&self, domain: &str, p: &CachedPolicy) -> UnixTime {
        let max_age = Duration::from_secs(u64::from(p.policy().max_age()));
        let period = self.config.refresh_interval.min(max_age);
        let after = period.saturating_sub(self.jitter(domain, p.fetched_at(), period));
        p.fetched_at().saturating_add(after.max(MIN_REFRESH_PERIOD))
    }
}
