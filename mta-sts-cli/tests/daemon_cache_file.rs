//! The daemon and its cache file: a damaged file never stops it from starting and never costs
//! the valid policies in it, temporary files of interrupted saves are removed, and a file that
//! cannot be written is told at start and does not turn a clean SIGTERM into a failure.

mod daemon_support;

use std::path::Path;
use std::time::SystemTime;

use daemon_support::*;
use mta_sts_core::{Snapshot, SnapshotEntry, UnixTime};

fn yaml(cache: &Path) -> String {
    format!(
        "port: 0\ncache:\n  type: file\n  options:\n    path: {}\n",
        cache.display()
    )
}

fn files_starting_with(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.starts_with(prefix).then_some(name)
        })
        .collect()
}

#[test]
fn a_damaged_cache_file_never_stops_the_daemon_and_is_moved_aside() {
    let world = world();
    let policy = "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 86400\n";
    let now = UnixTime::from(SystemTime::now());
    let good = Snapshot::new(vec![SnapshotEntry::new("a.example", "1", now, now, policy)]);
    let good = serde_json::to_vec(&good).unwrap();
    let newer = String::from_utf8(good.clone())
        .unwrap()
        .replace("\"version\":1", "\"version\":2");
    let cases: [(&str, &[u8]); 5] = [
        ("empty", b""),
        ("truncated", &good[..good.len() / 2]),
        ("random", &[0x9c, 0xff, 0x00, 0x13, 0x37, 0x42, 0x0a]),
        (
            "foreign",
            br#"{"format":"postfix-mta-sts-resolver","version":1,"entries":[]}"#,
        ),
        ("newer", newer.as_bytes()),
    ];
    for (what, bytes) in cases {
        let dir = scratch_dir(&format!("damaged-{what}"));
        let cache = dir.join("cache.json");
        std::fs::write(&cache, bytes).unwrap();
        // Before: the daemon exited 1 here, and all outbound mail waited.
        let mut d = Daemon::start(&world, &dir, &yaml(&cache));
        assert_eq!(
            ask_one(d.addr(), "postfix enforce.test"),
            ENFORCE_REPLY,
            "{what}"
        );
        assert!(
            d.lines
                .iter()
                .any(|l| l.contains("WARN") && l.contains("moved to")),
            "{what}: {:?}",
            d.lines
        );
        let aside = files_starting_with(&dir, "cache.json.unreadable-");
        assert_eq!(aside.len(), 1, "{what}");
        assert_eq!(std::fs::read(dir.join(&aside[0])).unwrap(), bytes, "{what}");
        d.signal("TERM");
        let _ = d.wait_for(|l| l.contains("stopped"));
        let (status, _) = d.wait();
        assert!(status.success(), "{what}");
        assert!(
            cache.exists(),
            "{what}: a new file was saved beside the old one"
        );
    }
}

#[test]
fn one_bad_entry_in_a_cache_file_costs_only_itself() {
    let world = world();
    let dir = scratch_dir("bad-entries");
    let cache = dir.join("cache.json");
    // 50 policies of domains the world does not know: only the cache can answer for them.
    let policy = "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 86400\n";
    let now = UnixTime::from(SystemTime::now());
    let entry = |d: &str, at: UnixTime, p: &str| SnapshotEntry::new(d, "1", at, at, p);
    let mut entries: Vec<_> = (0..50)
        .map(|i| entry(&format!("d{i}.example"), now, policy))
        .collect();
    let hour_ahead = now.saturating_add(std::time::Duration::from_secs(3600));
    entries[10] = entry("d10.example", hour_ahead, policy); // a clock stepped back
    entries[20] = entry("d20.example", now, "version: STSv1\nmode: Enforce\n");
    entries[30] = entry("d30..example", now, policy);
    entries[40] = entry("d0.example", now, policy); // a repeated domain
    mta_sts_net::save_snapshot(&cache, &Snapshot::new(entries)).unwrap();

    let mut d = Daemon::start(&world, &dir, &yaml(&cache));
    let line = d
        .lines
        .iter()
        .find(|l| l.contains("MTA-STS cache file"))
        .cloned()
        .unwrap_or_else(|| d.wait_for(|l| l.contains("MTA-STS cache file")).unwrap());
    assert!(
        line.contains("46 policies loaded, 4 entries skipped"),
        "{line}"
    );
    let reply = "OK secure match=mx.example.net servername=hostname";
    assert_eq!(ask_one(d.addr(), "postfix d1.example"), reply);
    assert_eq!(ask_one(d.addr(), "postfix d49.example"), reply);
    // The skipped ones are looked up (and the world has no record for them).
    assert_eq!(ask_one(d.addr(), "postfix d10.example"), "NOTFOUND ");
    assert_eq!(ask_one(d.addr(), "postfix d20.example"), "NOTFOUND ");
    assert!(files_starting_with(&dir, "cache.json.unreadable-").is_empty());
    d.signal("TERM");
    assert!(d.wait().0.success());
}

#[test]
fn temporary_files_of_interrupted_saves_are_removed_at_start() {
    let world = world();
    let dir = scratch_dir("temporaries");
    let cache = dir.join("cache.json");
    // What `kill -9` during a save leaves (a pid above every pid_max: no such process).
    for n in 0..3 {
        std::fs::write(dir.join(format!("cache.json.tmp4194303-{n}")), b"{\"form").unwrap();
    }
    let d = Daemon::start(&world, &dir, &yaml(&cache));
    assert!(
        files_starting_with(&dir, "cache.json.tmp").is_empty(),
        "{:?}",
        files_starting_with(&dir, "cache.json")
    );
    assert!(
        d.lines
            .iter()
            .any(|l| l.contains("3 temporary files of interrupted saves removed")),
        "{:?}",
        d.lines
    );
}

#[test]
fn an_unwritable_cache_file_is_told_at_start_and_a_clean_sigterm_still_exits_0() {
    let world = world();
    let dir = scratch_dir("unwritable");
    let cache = dir.join("no-such-directory").join("cache.json");
    let d = Daemon::start(&world, &dir, &yaml(&cache));
    assert!(
        d.lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("will not survive a restart")),
        "warned at start: {:?}",
        d.lines
    );
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    d.signal("TERM");
    let (status, lines) = d.wait();
    assert!(
        lines.iter().any(|l| l.contains("cannot save the cache")),
        "{lines:?}"
    );
    // Before: exit status 1, which a service manager reports as a failed stop.
    assert!(status.success(), "{status:?}");
}
