//! Cold and warm policy lookups per second against a loopback testkit world.
//!
//! `cargo run --release -p mta-sts-tokio --example tokio_throughput -- [DOMAINS] [CONCURRENCY]`
//!
//! Cold: DOMAINS distinct domains, each needing a TXT query, two address queries, a TLS
//! handshake and a fetch, CONCURRENCY at a time. Warm: the same domains again, answered from the
//! cache. The world's own ceiling is measured by `cargo run --release -p mta-sts-testkit
//! --example ceiling`.

use std::sync::Arc;
use std::time::Instant;

use mta_sts_core::{Config, Outcome};
use mta_sts_net::TrustAnchors;
use mta_sts_testkit::{World, bulk_domain_name};
use mta_sts_tokio::Client;
use tokio::sync::Semaphore;

async fn round(client: &Client, n: usize, concurrency: usize) -> (f64, usize) {
    let gate = Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (c, gate) = (client.clone(), gate.clone());
            tokio::spawn(async move {
                let _p = gate.acquire().await;
                c.policy(&bulk_domain_name(i)).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if matches!(t.await, Ok(Outcome::Fetched(_) | Outcome::Cached { .. })) {
            ok += 1;
        }
    }
    (n as f64 / start.elapsed().as_secs_f64(), ok)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let n = args.next().unwrap_or(1000);
    let concurrency = args.next().unwrap_or(64);
    let world = World::builder().bulk_domains(n).build().expect("world");
    let mut anchors = TrustAnchors::empty();
    anchors.add_pem(world.ca_pem().as_bytes()).expect("CA");
    let mut config = Config::default();
    config.https_port = world.https_port();
    config.capacity = n.max(1);
    let client = Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(anchors)
        .config(config)
        .max_concurrent_lookups(concurrency)
        .build()
        .expect("client");
    let (cold, cold_ok) = round(&client, n, concurrency).await;
    let (warm, warm_ok) = round(&client, n, concurrency).await;
    println!("tokio adapter, {n} domains, concurrency {concurrency}");
    println!("cold: {cold:>10.0} lookups/s ({cold_ok}/{n} with a policy)");
    println!("warm: {warm:>10.0} lookups/s ({warm_ok}/{n} with a policy)");
}
