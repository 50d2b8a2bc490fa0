//! Measures the world's own ceiling on this machine: start-up time, DNS queries per second
//! over UDP and complete HTTPS policy fetches (new TLS connection each) per second.
//!
//! `cargo run --release -p mta-sts-testkit --example ceiling [client-threads]`

mod common;

use std::time::{Duration, Instant};

use mta_sts_testkit::World;
use mta_sts_testkit::probe::HttpsProbe;

const DOMAINS: usize = 1000;
const QUERIES_PER_THREAD: usize = 20_000;
const FETCHES_PER_THREAD: usize = 500;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = std::env::args().nth(1).map_or(Ok(2), |a| a.parse())?;

    let mut best = Duration::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        let w = World::builder().bulk_domains(DOMAINS).build()?;
        best = best.min(t.elapsed());
        drop(w);
    }
    println!("start-up with {DOMAINS} domains: best of 10 = {best:?}");

    let world = World::builder().bulk_domains(DOMAINS).build()?;

    let elapsed = common::dns_udp(world.dns_addr(), threads, QUERIES_PER_THREAD, DOMAINS);
    let q = threads * QUERIES_PER_THREAD;
    common::report("DNS/UDP", q, "queries", threads, elapsed);
    assert_eq!(world.total_queries(), q);

    let https = HttpsProbe::for_world(&world);
    let elapsed = common::https_fetches(&https, threads, FETCHES_PER_THREAD, DOMAINS);
    let f = threads * FETCHES_PER_THREAD;
    common::report(
        "HTTPS (new TLS connection per fetch)",
        f,
        "fetches",
        threads,
        elapsed,
    );
    assert_eq!(world.total_fetches(), f);
    Ok(())
}
