//! The refresher thread, with a virtual clock. This binary holds this one test only, so that
//! the threads counted in /proc/self/task are this test's.

#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mta_sts_blocking::{Client, Outcome};
use mta_sts_core::UnixTime;
use mta_sts_testkit::{Domain, World};

fn os_threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Threads named like the refresher (`comm` keeps the first 15 bytes of the name).
fn refresher_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "mta-sts-refresh")
        .count()
}

/// Polls `done` until it holds, for at most 5 s.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(5), "never: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn refresher_refetches_once_the_clock_passes_the_refresh_time_and_is_joined_on_shutdown_and_drop() {
    let threads_at_start = os_threads();
    let world = World::builder()
        .domain("enforce.test", Domain::enforce(["mx1.example.net"]))
        .domain("other.test", Domain::testing(["mx1.example.net"]))
        .build()
        .unwrap();
    let now = Arc::new(AtomicU64::new(1_700_000_000));
    let clock_now = now.clone();
    let mut config = mta_sts_matrix::config(&world);
    config.refresh_interval = Duration::from_secs(3600); // the policy's max_age is a day
    let client = Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(&world))
        .config(config)
        .clock(Arc::new(move || {
            UnixTime::from_secs(clock_now.load(Ordering::SeqCst))
        }))
        .build()
        .unwrap();

    // Started on an empty cache: it has nothing to do until a lookup stores a policy.
    let refresher = client.spawn_refresher().unwrap();
    // (The thread names itself once it runs.)
    eventually("the refresher runs", || refresher_threads() == 1);
    assert!(matches!(client.policy("enforce.test"), Outcome::Fetched(_)));
    assert_eq!(world.fetches("mta-sts.enforce.test"), 1);

    // An hour later (virtually), the next lookup's change of the cache wakes the refresher,
    // which finds enforce.test's refresh due and fetches it again.
    now.fetch_add(3601, Ordering::SeqCst);
    assert!(matches!(client.policy("other.test"), Outcome::Fetched(_)));
    assert_eq!(
        client.wait_refreshes(1, Duration::from_secs(5)),
        1,
        "the refresher never refreshed"
    );
    assert_eq!(client.stats().refresh_success, 1);
    assert_eq!(world.fetches("mta-sts.enforce.test"), 2);
    assert_eq!(world.fetches("mta-sts.other.test"), 1, "not due yet");

    // shutdown() stops the sleeping thread at once and joins it.
    let start = Instant::now();
    refresher.shutdown();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "woken, not timed out"
    );
    assert_eq!(refresher_threads(), 0);

    // Dropping the handle does the same.
    let second = client.spawn_refresher().unwrap();
    eventually("the second refresher runs", || refresher_threads() == 1);
    let start = Instant::now();
    drop(second);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "woken, not timed out"
    );
    assert_eq!(refresher_threads(), 0);

    assert_eq!(
        world.fetches("mta-sts.enforce.test"),
        2,
        "no refresh after stop"
    );
    drop(client);
    world.shutdown();
    assert_eq!(os_threads(), threads_at_start, "no thread left behind");
}
