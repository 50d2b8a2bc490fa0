//! Measures the world's own ceiling on this machine: start-up time, DNS queries per second
//! over UDP and complete HTTPS policy fetches (new TLS connection each) per second.
//!
//! `cargo run --release -p mta-sts-testkit --example ceiling [client-threads]`

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use mta_sts_testkit::probe::HttpsProbe;
use mta_sts_testkit::{POLICY_PATH, World, bulk_domain_name};

const DOMAINS: usize = 1000;
const QUERIES_PER_THREAD: usize = 20_000;
const FETCHES_PER_THREAD: usize = 500;

/// A DNS query for `<name>` TXT, written by hand so the client costs little.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).expect("short label"));
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 16, 0, 1]);
    q
}

fn report(what: &str, n: usize, unit: &str, threads: usize, elapsed: Duration) {
    let rate = n as f64 / elapsed.as_secs_f64();
    println!("{what}: {n} {unit}, {threads} client threads, {elapsed:?}: {rate:.0} {unit}/s");
}

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
    let dns = world.dns_addr();

    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            s.spawn(move || {
                let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
                sock.connect(dns).expect("connect");
                sock.set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("timeout");
                let mut buf = [0u8; 1500];
                for i in 0..QUERIES_PER_THREAD {
                    let name = format!("_mta-sts.{}", bulk_domain_name((i + th) % DOMAINS));
                    let id = u16::try_from(i % 65_536).expect("fits");
                    sock.send(&query(id, &name)).expect("send");
                    let n = sock.recv(&mut buf).expect("answer");
                    assert!(n > 12 && buf[..2] == id.to_be_bytes());
                }
            });
        }
    });
    let q = threads * QUERIES_PER_THREAD;
    report("DNS/UDP", q, "queries", threads, t.elapsed());
    assert_eq!(world.total_queries(), q);

    let https = HttpsProbe::for_world(&world);
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            let https = https.clone();
            s.spawn(move || {
                for i in 0..FETCHES_PER_THREAD {
                    let host =
                        format!("mta-sts.{}", bulk_domain_name((i * threads + th) % DOMAINS));
                    let r = https.get(&host, POLICY_PATH).expect("fetch");
                    assert_eq!(r.status, 200);
                }
            });
        }
    });
    let f = threads * FETCHES_PER_THREAD;
    report(
        "HTTPS (new TLS connection per fetch)",
        f,
        "fetches",
        threads,
        t.elapsed(),
    );
    assert_eq!(world.total_fetches(), f);
    Ok(())
}
