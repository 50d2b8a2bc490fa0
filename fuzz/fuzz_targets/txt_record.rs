//! TXT discovery on arbitrary answers (the input split into records at 0xff bytes); on success the
//! canonical record text must parse back to the same id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_core::{Profile, StsRecord};

fuzz_target!(|data: &[u8]| {
    let records: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
    for profile in [Profile::Default, Profile::Strict] {
        if let Ok(r) = StsRecord::discover_with(records.iter().copied(), profile) {
            assert!(!r.id().is_empty() && r.id().len() <= 32);
            let again = StsRecord::parse_strict(&r.to_string()).expect("canonical record is valid");
            assert_eq!(again.id(), r.id());
        }
        let _ = StsRecord::parse_bytes(data, profile);
    }
});
