//! Wall-clock time as an argument: the only time type of the engine.
//!
//! Policies live for up to a year and persist across restarts, so the engine counts in wall-clock
//! seconds since the Unix epoch rather than in [`std::time::Instant`]s. The core never reads the
//! clock: adapters read it (e.g. `UnixTime::from(SystemTime::now())`) and pass it in.

use core::fmt;
use core::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in wall-clock time: whole seconds since 1970-01-01T00:00:00Z.
///
/// Arithmetic saturates: it never panics and never wraps.
///
/// ```
/// use core::time::Duration;
/// use mta_sts_core::UnixTime;
///
/// let t = UnixTime::from_secs(1_700_000_000);
/// assert_eq!(t.saturating_add(Duration::from_secs(60)).as_secs(), 1_700_000_060);
/// assert_eq!(t.saturating_add(Duration::from_secs(60)).since(t), Duration::from_secs(60));
/// assert_eq!(t.since(t.saturating_add(Duration::from_secs(60))), Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixTime(u64);

impl UnixTime {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: Self = Self(0);
    /// The latest representable time.
    pub const MAX: Self = Self(u64::MAX);

    /// The time `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    /// Seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// `self + d`, whole seconds (sub-second parts are dropped), saturating at [`UnixTime::MAX`].
    #[must_use]
    pub const fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.as_secs()))
    }

    /// `self - d`, whole seconds, saturating at the epoch.
    #[must_use]
    pub const fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d.as_secs()))
    }

    /// How long after `earlier` this is; zero if `earlier` is later.
    pub const fn since(self, earlier: Self) -> Duration {
        Duration::from_secs(self.0.saturating_sub(earlier.0))
    }

    /// The time as an RFC 3339 UTC time in whole seconds, e.g. `2026-01-01T00:00:00Z`, for texts
    /// an operator reads. Times after the year 9999 are written as [`UnixTime`]'s `Display` does.
    pub(crate) fn rfc3339(self) -> impl fmt::Display {
        Rfc3339(self)
    }
}

/// See [`UnixTime::rfc3339`].
struct Rfc3339(UnixTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// 10000-01-01T00:00:00Z: RFC 3339 has four-digit years.
        const YEAR_10000: u64 = 253_402_300_800;
        let secs = self.0.as_secs();
        if secs >= YEAR_10000 {
            return self.0.fmt(f);
        }
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Days to a civil date in the proleptic Gregorian calendar (H. Hinnant's
        // `civil_from_days`), counted from 0000-03-01 so that the leap day ends the year; no
        // value here is negative.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = era * 400 + yoe + u64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            rem / 3_600,
            rem % 3_600 / 60,
            rem % 60
        )
    }
}

impl From<SystemTime> for UnixTime {
    /// Converts a system time (e.g. `SystemTime::now()`, read by the adapter); times before the
    /// epoch become the epoch.
    fn from(t: SystemTime) -> Self {
        Self(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }
}

impl From<UnixTime> for SystemTime {
    /// The same instant as a [`SystemTime`], saturating at the platform's limit.
    fn from(t: UnixTime) -> Self {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(t.0))
            .unwrap_or(UNIX_EPOCH)
    }
}

impl fmt::Display for UnixTime {
    /// Seconds since the epoch, e.g. `@1700000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_at_both_ends() {
        assert_eq!(
            UnixTime::MAX.saturating_add(Duration::from_secs(1)),
            UnixTime::MAX
        );
        assert_eq!(
            UnixTime::EPOCH.saturating_sub(Duration::from_secs(1)),
            UnixTime::EPOCH
        );
        assert_eq!(
            UnixTime::from(UNIX_EPOCH - Duration::from_secs(5)),
            UnixTime::EPOCH
        );
        let t = UnixTime::from_secs(42);
        assert_eq!(UnixTime::from(SystemTime::from(t)), t);
    }

    #[test]
    fn rfc3339_utc_whole_seconds() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_399, "2000-02-28T23:59:59Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (951_868_800, "2000-03-01T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (1_767_225_600, "2026-01-01T00:00:00Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
            (253_402_300_800, "@253402300800"),
            (u64::MAX, "@18446744073709551615"),
        ];
        for (secs, text) in cases {
            assert_eq!(UnixTime::from_secs(secs).rfc3339().to_string(), text);
        }
    }
}
