//! The policy parser on arbitrary bytes, both profiles; on success the canonical text must parse
//! back to an equal policy, strictly and without warnings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_core::{Policy, Profile};

fuzz_target!(|data: &[u8]| {
    for profile in [Profile::Default, Profile::Strict] {
        let report = Policy::lint(data, profile);
        let parsed = Policy::parse_bytes(data, profile);
        assert_eq!(report.policy.is_some(), parsed.is_ok());
        if let Ok(p) = parsed {
            let text = p.to_string();
            let again = Policy::parse_strict(&text).expect("canonical text is strictly valid");
            assert!(again.warnings().is_empty(), "{text:?}");
            assert_eq!(again, p);
        }
    }
});
