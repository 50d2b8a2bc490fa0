//! The reader of received TLSRPT reports (`mta_sts_core::tlsrpt::read_report`) on arbitrary
//! bytes (JSON, gzip or a mail, as the reader tells them apart) under small limits. Checks:
//! nothing panics; a report read is within the limits (policies, failure details, policy
//! strings); at most `MAX_WARNINGS` warnings plus the count of the rest; `validate` runs on it
//! and gives the reader's own warnings for JSON and gzip input (a mail's come first, then
//! those); and the report written back as JSON reads again to the same report.
//! Seeds: `fuzz/seeds/tlsrpt_report`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_core::tlsrpt::{MAX_WARNINGS, ReadLimits, ReportFormat, read_report, validate};

fuzz_target!(|data: &[u8]| {
    let mut limits = ReadLimits::default();
    limits.max_input = 1 << 20;
    limits.max_decompressed = 256 << 10;
    limits.max_policies = 64;
    limits.max_failure_details = 256;
    limits.max_depth = 8;
    limits.max_strings = 256;
    let Ok(read) = read_report(data, &limits) else {
        return;
    };
    let report = &read.report;
    assert!(report.policies.len() <= limits.max_policies);
    let details: usize = report
        .policies
        .iter()
        .map(|p| p.failure_details.len())
        .sum();
    assert!(details <= limits.max_failure_details);
    let strings: usize = report
        .policies
        .iter()
        .map(|p| p.policy.policy_string.len() + p.policy.mx_host.len())
        .sum();
    // A single-string `mx-host` is no array, so it is not counted.
    assert!(
        strings <= limits.max_strings + report.policies.len(),
        "{strings}"
    );
    assert!(read.warnings.len() <= MAX_WARNINGS + 1);

    let warnings = validate(report);
    assert!(warnings.len() <= MAX_WARNINGS + 1);
    if read.format != ReportFormat::Mail {
        assert_eq!(warnings, read.warnings);
    }
    for w in &read.warnings {
        let _ = w.to_string();
    }

    let json = serde_json::to_vec(report).expect("a report serialises");
    let again = read_report(&json, &ReadLimits::default()).expect("a written report reads back");
    assert_eq!(&again.report, report);
});
