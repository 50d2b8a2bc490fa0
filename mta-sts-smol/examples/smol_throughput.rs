//! Cold and warm policy lookups per second on loopback, against a testkit world of bulk domains.
//!
//! Cold: every domain looked up once (TXT query, A and AAAA of the policy host, TLS handshake,
//! GET). Warm: the same domains again, answered from the cache, in as many rounds as make at
//! least 100,000 lookups (so that the figure is not a few hundred microseconds' worth).
//! `CONCURRENCY` lookups run at a time on a smol executor with `THREADS` threads; the world's
//! servers run on their own threads.
//!
//! ```sh
//! cargo run --release -p mta-sts-smol --example smol_throughput -- [DOMAINS] [CONCURRENCY] [THREADS]
//! ```
//! (defaults: 1000 64 2)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mta_sts_smol::{CacheReason, Client, Outcome};
use mta_sts_testkit::{World, bulk_domain_name};
use smol::Executor;

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (domains, concurrency, threads) = (arg(1, 1000), arg(2, 64), arg(3, 2));
    let world = World::builder()
        .bulk_domains(domains)
        .build()
        .expect("world");
    let client = Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(&world))
        .config(mta_sts_matrix::config(&world))
        .build()
        .expect("client");

    let cold = run(&client, domains, domains, concurrency, threads, |o| {
        matches!(o, Outcome::Fetched(_))
    });
    let warm_lookups = domains * 100_000usize.div_ceil(domains);
    let warm = run(&client, domains, warm_lookups, concurrency, threads, |o| {
        matches!(
            o,
            Outcome::Cached {
                reason: CacheReason::Fresh,
                ..
            }
        )
    });
    println!(
        "{domains} domains, {concurrency} at a time, {threads} executor threads (smol, loopback)"
    );
    for (what, lookups, took) in [("cold", domains, cold), ("warm", warm_lookups, warm)] {
        println!(
            "{what}: {lookups:>7} lookups in {took:>10.3?}  {:>10.0} lookups/s",
            lookups as f64 / took.as_secs_f64()
        );
    }
}

/// Makes `lookups` lookups over the domains in turn and returns how long that took; panics on an
/// unexpected outcome.
fn run(
    client: &Client,
    domains: usize,
    lookups: usize,
    concurrency: usize,
    threads: usize,
    expected: fn(&Outcome) -> bool,
) -> Duration {
    let ex = Executor::new();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next) = (client.clone(), Arc::clone(&next));
            ex.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= lookups {
                        return;
                    }
                    let domain = bulk_domain_name(i % domains);
                    let outcome = client.policy(&domain).await;
                    assert!(expected(&outcome), "{domain}: {outcome:?}");
                }
            })
        })
        .collect();
    std::thread::scope(|s| {
        let (stop, until_stopped) = smol::channel::unbounded::<()>();
        for _ in 1..threads {
            let until_stopped = until_stopped.clone();
            let ex = &ex;
            s.spawn(move || smol::block_on(ex.run(until_stopped.recv())));
        }
        smol::block_on(ex.run(async {
            for w in workers {
                w.await;
            }
        }));
        drop(stop);
    });
    start.elapsed()
}
