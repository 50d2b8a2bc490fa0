//! The policy cache file as the adapters and the daemon load it: arbitrary bytes read as a
//! snapshot (serde_json, as `mta_sts_net::load_cache_file` reads it) and imported into a cache
//! at an arbitrary time with an arbitrary capacity. Checks: nothing panics; a file that is JSON
//! of the snapshot's shape is refused whole only for another format or version; otherwise every
//! entry is accounted for exactly once (loaded, expired, skipped, or not loaded), at most
//! `MAX_LISTED_PROBLEMS` problems are listed and one per skipped entry up to that, the cache
//! holds what was loaded and never more than its capacity; and what the cache then exports
//! loads again, whole, into an empty cache and exports the same snapshot.
//! Input: 5 bytes of time (seconds), 1 byte of capacity, then the file.
//! Seeds: `fuzz/seeds/cache_file`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_core::{Config, MAX_LISTED_PROBLEMS, PolicyCache, Snapshot, UnixTime};

fuzz_target!(|data: &[u8]| {
    let Some((head, file)) = data.split_at_checked(6) else {
        return;
    };
    let mut secs = [0u8; 8];
    secs[3..].copy_from_slice(&head[..5]);
    let now = UnixTime::from_secs(u64::from_be_bytes(secs));
    let mut config = Config::default();
    config.capacity = usize::from(head[5] % 16); // 0 too: a cache that keeps nothing

    let Ok(snapshot) = serde_json::from_slice::<Snapshot>(file) else {
        return;
    };
    let entries = snapshot.entries().len() + snapshot.malformed();
    let foreign = snapshot.format() != mta_sts_core::SNAPSHOT_FORMAT
        || snapshot.version() != mta_sts_core::SNAPSHOT_VERSION;
    let mut cache = PolicyCache::new(config.clone());
    let report = match cache.import(snapshot, now) {
        Ok(report) => report,
        Err(e) => {
            assert!(foreign, "a snapshot of this format and version refused whole: {e}");
            assert_eq!(cache.len(), 0);
            return;
        }
    };
    assert!(!foreign, "a foreign snapshot was imported");
    assert_eq!(
        report.loaded + report.expired + report.skipped + report.not_loaded,
        entries,
        "{report:?}"
    );
    assert_eq!(report.problems.len(), report.skipped.min(MAX_LISTED_PROBLEMS));
    assert_eq!(cache.len(), report.loaded);
    assert!(cache.len() <= config.capacity);

    // What is saved loads again whole, and saves the same.
    let saved = cache.export(now);
    assert_eq!(saved.entries().len(), cache.len());
    let bytes = serde_json::to_vec(&saved).expect("a snapshot serialises");
    let again: Snapshot = serde_json::from_slice(&bytes).expect("a saved snapshot reads back");
    assert_eq!(again.malformed(), 0);
    let mut reloaded = PolicyCache::new(config);
    let report = reloaded.import(again, now).expect("a saved snapshot imports");
    assert_eq!(
        (report.loaded, report.expired, report.skipped, report.not_loaded),
        (saved.entries().len(), 0, 0, 0),
        "{:?}",
        report.problems
    );
    assert_eq!(reloaded.export(now), saved);
});
