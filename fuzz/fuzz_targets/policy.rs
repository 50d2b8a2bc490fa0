//! The policy parser on arbitrary bytes, both profiles; on success the canonical text must parse
//! back to an equal policy, strictly and without warnings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_core::{Policy, PolicyWarningKind, Profile};

fuzz_target!(|data: &[u8]| {
    for profile in [Profile::Default, Profile::Strict] {
        let report = Policy::lint(data, profile);
        let parsed = Policy::parse_bytes(data, profile);
        assert_eq!(report.policy.is_some(), parsed.is_ok());
        if let Ok(p) = parsed {
            let text = p.to_string();
            let again = Policy::parse_strict(&text).expect("canonical text is strictly valid");
            // Only an extension spelled like a known key (`Mode: x`) may still warn.
            let layout_free = again
                .warnings()
                .iter()
                .all(|w| matches!(w.kind(), PolicyWarningKind::KeyCase { .. }));
            assert!(layout_free, "{text:?}: {:?}", again.warnings());
            assert_eq!(again, p);
        }
    }
});
