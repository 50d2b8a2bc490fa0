//! The TLSRPT aggregate's snapshot file (`Aggregator::from_json`): a byte of limits, then
//! arbitrary bytes read as a snapshot and restored. Checks: nothing panics; a snapshot of this
//! format and version is never refused whole; what loads stays within the limits; at most
//! `MAX_LISTED_PROBLEMS` problems are listed, none beyond the entries skipped; what the
//! aggregator then writes restores whole (nothing skipped or left out) to the same snapshot;
//! and every report it closes reads back as a report whose failure details add up to no more
//! than its failure count.
//! Input: 1 byte of limits, then the file. Seeds: `fuzz/seeds/tlsrpt_snapshot`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_core::tlsrpt::{AggregateSnapshot, Aggregator, AggregatorLimits, Report, Reporter};
use mta_sts_core::{MAX_LISTED_PROBLEMS, UnixTime};

fuzz_target!(|data: &[u8]| {
    let Some((&head, file)) = data.split_first() else {
        return;
    };
    let mut limits = AggregatorLimits::default();
    limits.max_domains = usize::from(head & 7);
    limits.max_policies_per_domain = usize::from(head >> 3 & 3);
    limits.max_details_per_domain = usize::from(head >> 5);
    limits.max_details = usize::from(head >> 4);
    limits.max_days = usize::from(head & 3);

    let Ok(snapshot) = AggregateSnapshot::from_json(file) else {
        return;
    };
    let (mut aggregator, report) = Aggregator::restore(snapshot, limits);
    assert!(report.refused.is_none(), "{:?}", report.refused);
    assert!(report.problems.len() <= MAX_LISTED_PROBLEMS.min(report.skipped));
    assert!(aggregator.domains() <= limits.max_domains);
    assert!(aggregator.details() <= limits.max_details);

    let written = aggregator.snapshot();
    let (again, second) = Aggregator::from_json(&written.to_json(), limits).expect("reads back");
    assert_eq!((second.skipped, second.not_loaded), (0, 0), "{second:?}");
    assert_eq!(again.snapshot(), written);
    assert_eq!(again.sessions(), aggregator.sessions());

    let reporter = Reporter::new("Fuzz", "tlsrpt@fuzz.example", "fuzz.example");
    for day in aggregator.close(UnixTime::MAX, &reporter) {
        let read: Report = serde_json::from_slice(&day.json()).expect("a report");
        assert_eq!(read, day.report);
        for p in &read.policies {
            let details: u64 = p
                .failure_details
                .iter()
                .map(|d| d.failed_session_count)
                .sum();
            assert!(details <= p.summary.total_failure_session_count);
        }
    }
    assert!(aggregator.is_empty());
    assert_eq!(aggregator.sessions(), 0);
});
