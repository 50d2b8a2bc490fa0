//! Throughput of the Postfix socketmap daemon for cached lookups, on loopback: requests per
//! second with 1 and with 64 connections, each keeping 64 requests pipelined.
//!
//! ```sh
//! cargo bench -p mta-sts-postfix --bench daemon_throughput
//! ```
//!
//! It starts a testkit world with the end-to-end tests' `enforce.test`, the daemon in this process
//! ([`Daemon`] on a multi-threaded runtime, as `mta-sts daemon` runs it) pointed at it, warms the
//! cache with one request, then runs the load generator: each connection writes 64 requests at
//! once, reads the 64 replies (checked byte for byte), and repeats for `DAEMON_BENCH_SECONDS`
//! (default 5) per run. Run without `--bench` (`cargo test --bench daemon_throughput`), it only
//! checks that the load generator works, for a fraction of a second.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mta_sts_postfix::{Daemon, Options};
use mta_sts_testkit::{Domain, World};

const DEPTH: usize = 64;
const REQUEST: &str = "postfix enforce.test";
const REPLY: &str = "OK secure match=mx1.enforce.test:.pool.enforce.test servername=hostname";

/// Frames `data` as a netstring.
fn netstring(data: &str) -> Vec<u8> {
    let mut out = Vec::new();
    mta_sts_postfix::netstring::encode(&mut out, data.as_bytes());
    out
}

/// Runs `connections` connections for `duration`; returns the replies received.
fn load(addr: SocketAddr, connections: usize, duration: Duration) -> u64 {
    let batch: Arc<Vec<u8>> = Arc::new((0..DEPTH).flat_map(|_| netstring(REQUEST)).collect());
    let expected: Arc<Vec<u8>> = Arc::new((0..DEPTH).flat_map(|_| netstring(REPLY)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (batch, expected, stop) = (batch.clone(), expected.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_nodelay(true).unwrap();
                let mut got = vec![0u8; expected.len()];
                let mut replies = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    s.write_all(&batch).expect("write");
                    s.read_exact(&mut got).expect("read");
                    assert!(got == *expected, "unexpected reply");
                    replies += DEPTH as u64;
                }
                replies
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    workers.into_iter().map(|w| w.join().unwrap()).sum()
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let seconds: f64 = std::env::var("DAEMON_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let duration = if benching {
        Duration::from_secs_f64(seconds)
    } else {
        Duration::from_millis(200)
    };

    let world = World::builder()
        .domain(
            "enforce.test",
            Domain::enforce(["mx1.enforce.test", "*.pool.enforce.test"]).txt_id("1"),
        )
        .build()
        .expect("start the testkit world");
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("daemon-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    let config = dir.join("mta-sts-daemon.yml");
    // A long cache_grace: every request is a cached lookup, none re-checks DNS.
    std::fs::write(&config, "port: 0\ncache_grace: 86400\n").expect("write the configuration");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, world.ca_pem()).expect("write the CA");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the runtime");
    let daemon = runtime
        .block_on(Daemon::start(Options {
            config,
            resolvers: vec![world.dns_addr()],
            ca_file: Some(ca),
            https_port: Some(world.https_port()),
            ..Options::default()
        }))
        .expect("start the daemon");
    let addr = daemon.local_addrs()[0];

    // Warm the cache (the only DNS query and fetch of the run).
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&netstring(REQUEST)).unwrap();
    let mut got = vec![0u8; netstring(REPLY).len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, netstring(REPLY));

    for connections in [1, 64] {
        let start = Instant::now();
        let replies = load(addr, connections, duration);
        let rate = replies as f64 / start.elapsed().as_secs_f64();
        println!(
            "mta-sts daemon, cached lookups, {connections} connection(s), {DEPTH} pipelined: \
             {rate:.0} requests/s ({replies} in {:.1} s)",
            start.elapsed().as_secs_f64()
        );
    }
    drop(s);
    runtime
        .block_on(daemon.shutdown())
        .expect("stop the daemon");
    let _ = std::fs::remove_dir_all(&dir);
}
