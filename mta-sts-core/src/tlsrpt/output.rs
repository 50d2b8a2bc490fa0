//! A closed day's report as written: the §4.4 JSON, gzip (§5.2) and the file name of §5.1.
//!
//! A [`DayReport`] comes out of [`Aggregator::close`](super::Aggregator::close): one per
//! policy domain and UTC day, every policy applied to that domain in it. Its `date-range` runs
//! from `YYYY-MM-DDT00:00:00Z` to `YYYY-MM-DDT23:59:59Z` (the last second of the day, as Google
//! writes it; RFC 8460 §4.1 asks for "a full day, from 00:00-24:00 UTC" and gives no end
//! format), and [`DayReport::day_end`] is that last second.

use std::io::Write as _;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::model::Report;
use crate::time::UnixTime;

/// Seconds in a UTC day (no leap seconds in Unix time).
pub(crate) const DAY: u64 = 86_400;

/// One policy domain's report of one UTC day (RFC 8460 §4.4), ready to be written.
///
/// ```
/// use mta_sts_core::tlsrpt::{Aggregator, Reporter, Session, SessionPolicy, SessionResult};
/// use mta_sts_core::UnixTime;
///
/// let mut aggregator = Aggregator::new(Default::default());
/// let policy = SessionPolicy::no_policy_found("example.net");
/// let time = UnixTime::from_secs(1_767_225_600 + 3_600); // 2026-01-01T01:00:00Z
/// aggregator.record(&Session::new(time, policy, SessionResult::Success));
/// let reporter = Reporter::new("Example Org", "tlsrpt@sender.example", "mail.sender.example");
/// let reports = aggregator.close(UnixTime::from_secs(1_767_312_000), &reporter);
/// let report = &reports[0];
/// assert_eq!(report.report.date_range.start_datetime, "2026-01-01T00:00:00Z");
/// assert_eq!(report.report.date_range.end_datetime, "2026-01-01T23:59:59Z");
/// assert!(report.file_name().starts_with("mail.sender.example!example.net!1767225600!1767311999!"));
/// assert!(report.file_name().ends_with(".json.gz"));
/// let json = String::from_utf8(report.json()).unwrap();
/// assert!(json.contains(r#""total-successful-session-count":1"#));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DayReport {
    /// The policy domain reported on, in A-labels.
    pub policy_domain: String,
    /// The first second of the day: `00:00:00Z`.
    pub day_start: UnixTime,
    /// The last second of the day: `23:59:59Z` (`day_start + 86399`), as in `date-range`.
    pub day_end: UnixTime,
    /// The submitter's domain ([`Reporter::submitter`](super::Reporter::submitter)), first
    /// part of the file name and the `TLS-Report-Submitter` of a mail.
    pub submitter: String,
    /// The report itself.
    pub report: Report,
}

impl DayReport {
    pub(crate) fn new(
        policy_domain: String,
        day_start: UnixTime,
        submitter: String,
        report: Report,
    ) -> Self {
        Self {
            policy_domain,
            day_start,
            day_end: UnixTime::from_secs(day_start.as_secs().saturating_add(DAY - 1)),
            submitter,
            report,
        }
    }

    /// The report as compact JSON (RFC 8460 §4.4): the exact field names, fields without a
    /// value left out, `mx-host` an array.
    pub fn json(&self) -> Vec<u8> {
        // Strings, integers and arrays of them: serde_json cannot fail on these.
        serde_json::to_vec(&self.report).unwrap_or_default()
    }

    /// [`DayReport::json`] compressed with gzip (RFC 8460 §5.2, RFC 1952). The gzip header
    /// carries no time or name, so the same report gives the same bytes.
    pub fn gzip(&self) -> Vec<u8> {
        gzip(&self.json())
    }

    /// The file name of RFC 8460 §5.1 for the gzip report:
    /// `submitter!policy-domain!begin!end!unique-id.json.gz`, begin and end the Unix seconds of
    /// [`day_start`](Self::day_start) and [`day_end`](Self::day_end), the unique id 16 hex
    /// digits derived from the `report-id` (the ABNF allows letters and digits only there).
    pub fn file_name(&self) -> String {
        format!(
            "{}!{}!{}!{}!{:016x}.json.gz",
            self.submitter,
            self.policy_domain,
            self.day_start.as_secs(),
            self.day_end.as_secs(),
            fnv1a(&[self.report.report_id.as_bytes()])
        )
    }

    /// The report's `report-id`.
    pub fn report_id(&self) -> &str {
        &self.report.report_id
    }
}

/// Gzip of `data`, without time or name in the header.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::best());
    // Writing into a Vec cannot fail.
    if encoder.write_all(data).is_err() {
        return Vec::new();
    }
    encoder.finish().unwrap_or_default()
}

/// 64-bit FNV-1a over the parts, each followed by a 0xff byte (which UTF-8 never contains), so
/// that `("ab", "c")` and `("a", "bc")` differ. Stable across Rust versions and platforms,
/// unlike `std`'s hashers: report ids must not change with the compiler.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for part in parts {
        for &b in part.iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

/// An RFC 3339 UTC date-time in whole seconds, `YYYY-MM-DDTHH:MM:SSZ`, as reports write it.
/// Times from the year 10000 on, which RFC 3339 cannot write, come out as `@<seconds>`; the
/// aggregator never reports such a day.
///
/// ```
/// use mta_sts_core::UnixTime;
/// use mta_sts_core::tlsrpt::format_datetime;
///
/// assert_eq!(format_datetime(UnixTime::from_secs(1_767_225_600)), "2026-01-01T00:00:00Z");
/// ```
pub fn format_datetime(t: UnixTime) -> String {
    t.rfc3339().to_string()
}

/// The start of the UTC day `t` lies in: `00:00:00Z` of that day.
///
/// ```
/// use mta_sts_core::UnixTime;
/// use mta_sts_core::tlsrpt::utc_day_start;
///
/// let noon = UnixTime::from_secs(1_767_225_600 + 43_200);
/// assert_eq!(utc_day_start(noon), UnixTime::from_secs(1_767_225_600));
/// ```
pub fn utc_day_start(t: UnixTime) -> UnixTime {
    UnixTime::from_secs(t.as_secs() - t.as_secs() % DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t7_fnv1a_is_the_published_function() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; ours appends 0xff after each part.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in [b'a', 0xff] {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(fnv1a(&[b"a"]), h);
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
    }
}
