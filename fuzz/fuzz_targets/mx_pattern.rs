//! MX pattern parsing and matching on arbitrary text: the input is "pattern\nhost". A parsed
//! pattern's Display must parse back to itself, strictly, and match consistently.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_core::MxPattern;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, host) = text.split_once('\n').unwrap_or((text, text));
    let _ = MxPattern::parse_strict(pattern);
    if let Ok(p) = MxPattern::parse(pattern) {
        let again = MxPattern::parse_strict(&p.to_string()).expect("Display is canonical");
        assert_eq!(again, p);
        assert_eq!(p.matches(host), again.matches(host));
        if !p.is_wildcard() {
            assert!(p.matches(p.as_str()));
        }
    }
});
