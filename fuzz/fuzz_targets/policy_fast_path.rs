//! The policy parser's fast path against the full parser alone, on arbitrary bytes: the same
//! result, error (line, column, message), warnings and canonical text under both profiles; and
//! a body the fast path accepts, the full parser accepts alike, without warnings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_core::{Policy, PolicyError, Profile};

/// The whole outcome of a parse as text: the policy with its warnings and extensions, and its
/// canonical text; or the error with its position, and its message.
fn outcome(r: &Result<Policy, PolicyError>) -> String {
    match r {
        Ok(p) => format!("ok {p:?}\n{p}"),
        Err(e) => format!("err {e:?}\n{e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let full = |profile| Policy::parse_full_path(body, profile);
    for profile in [Profile::Default, Profile::Strict] {
        let ours = outcome(&Policy::parse_bytes(data, profile));
        assert_eq!(ours, outcome(&full(profile)), "{body:?}");
    }
    assert_eq!(
        outcome(&Policy::parse(body)),
        outcome(&full(Profile::Default))
    );
    if let Some(fast) = Policy::parse_fast_path(body) {
        let full = full(Profile::Default).expect("the full parser accepts it");
        let warnings = full.warnings();
        assert!(warnings.is_empty(), "{body:?}: {warnings:?}");
        assert_eq!(format!("{fast:?}\n{fast}"), format!("{full:?}\n{full}"));
    }
});
