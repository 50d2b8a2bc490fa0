//! Cold and warm policy lookups per second through the blocking client, on loopback against a
//! testkit world.
//!
//! Cold: `domains` distinct domains (`World::builder().bulk_domains(domains)`), each a TXT query,
//! A and AAAA queries for its policy host and an HTTPS fetch over a new TLS connection, resolved
//! by a pool of `threads` threads. Warm: the same domains again, answered from the cache, in
//! several rounds. Every outcome is checked (mode enforce, `mx.<domain>` matches).
//!
//! `cargo run --release -p mta-sts-blocking --example blocking_throughput [domains] [threads]`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mta_sts_blocking::{Client, Outcome, TrustAnchors};
use mta_sts_core::{CacheReason, Config, Mode};
use mta_sts_testkit::{World, bulk_domain_name};

/// Warm lookups in total, whatever the number of domains (in whole rounds over them).
const WARM_LOOKUPS: usize = 1_000_000;

fn arg(n: usize, default: usize) -> Result<usize, std::num::ParseIntError> {
    std::env::args().nth(n).map_or(Ok(default), |a| a.parse())
}

/// Looks every name up `rounds` times on `threads` threads; how long it took and how many
/// outcomes `ok` refused.
fn run(
    client: &Client,
    names: &[String],
    rounds: usize,
    threads: usize,
    ok: impl Fn(&str, &Outcome) -> bool + Sync,
) -> (Duration, usize) {
    let next = AtomicUsize::new(0);
    let wrong = AtomicUsize::new(0);
    let total = names.len() * rounds;
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let name = &names[i % names.len()];
                    if !ok(name, &client.policy(name)) {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    (start.elapsed(), wrong.into_inner())
}

fn enforces_its_mx(name: &str, outcome: &Outcome) -> bool {
    outcome
        .policy()
        .is_some_and(|p| p.mode() == Mode::Enforce && p.policy().matches_mx(&format!("mx.{name}")))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let domains = arg(1, 1000)?.max(1);
    let threads = arg(2, 16)?.max(1);

    let world = World::builder().bulk_domains(domains).build()?;
    let mut anchors = TrustAnchors::empty();
    anchors.add_pem(world.ca_pem().as_bytes())?;
    let mut config = Config::default();
    config.https_port = world.https_port();
    let client = Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(anchors)
        .config(config)
        .build()?;
    let names: Vec<String> = (0..domains).map(bulk_domain_name).collect();

    let (cold, wrong) = run(&client, &names, 1, threads, |name, o| {
        matches!(o, Outcome::Fetched(_)) && enforces_its_mx(name, o)
    });
    let rate = domains as f64 / cold.as_secs_f64();
    println!("cold: {domains} domains, {threads} threads, {cold:.2?}: {rate:.0} lookups/s");
    assert_eq!(wrong, 0, "cold: {wrong} wrong outcomes");
    assert_eq!(world.total_fetches(), domains, "one fetch per domain");

    let rounds = (WARM_LOOKUPS / domains).max(1);
    let (warm, wrong) = run(&client, &names, rounds, threads, |name, o| {
        matches!(
            o,
            Outcome::Cached {
                reason: CacheReason::Fresh,
                ..
            }
        ) && enforces_its_mx(name, o)
    });
    let lookups = domains * rounds;
    let rate = lookups as f64 / warm.as_secs_f64();
    println!(
        "warm: {lookups} lookups ({rounds} rounds), {threads} threads, {warm:.2?}: {rate:.0} lookups/s"
    );
    assert_eq!(wrong, 0, "warm: {wrong} wrong outcomes");
    assert_eq!(world.total_fetches(), domains, "no I/O when warm");
    Ok(())
}
