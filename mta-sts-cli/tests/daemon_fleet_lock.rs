//! A fleet of `mta-sts daemon` processes on one Redis (S8, issue 16 item 3): cold domains asked
//! of every daemon at once are fetched about once for the whole fleet (the fleet lookup lock in
//! the store), against once per daemon without a shared store.
//!
//! The number of domains is `MTA_STS_FLEET_DOMAINS` (default 1,000).

mod daemon_support;

use std::net::SocketAddr;
use std::time::Instant;

use daemon_support::*;
use mta_sts_testkit::{World, bulk_domain_name};

// The store crate's Redis test server (std only), shared by path.
#[path = "../../mta-sts-store/tests/support/redis_server.rs"]
mod redis_server;

const DAEMONS: usize = 4;

/// Connections each daemon is asked on at once.
const CONNECTIONS: usize = 16;

fn domains() -> usize {
    std::env::var("MTA_STS_FLEET_DOMAINS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000)
}

/// `n` cold domains asked of every daemon at once (each daemon on [`CONNECTIONS`] connections,
/// all in the same order, so that the daemons ask the world for a domain at about the same
/// time); every answer must be the domain's enforce policy. Returns the fetches per domain the
/// world saw.
fn ask_all(world: &World, daemons: &[SocketAddr], n: usize) -> f64 {
    let names: Vec<String> = (0..n).map(bulk_domain_name).collect();
    let before = world.total_fetches();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for &addr in daemons {
            for c in 0..CONNECTIONS {
                let names = &names;
                scope.spawn(move || {
                    let mine: Vec<&String> = names.iter().skip(c).step_by(CONNECTIONS).collect();
                    let requests: Vec<String> =
                        mine.iter().map(|d| format!("postfix {d}")).collect();
                    let refs: Vec<&str> = requests.iter().map(String::as_str).collect();
                    for (reply, d) in ask(addr, &refs).iter().zip(&mine) {
                        let want = format!("OK secure match=mx.{d} ");
                        assert!(reply.starts_with(&want), "{d}: {reply}");
                    }
                });
            }
        }
    });
    let fetches = world.total_fetches() - before;
    let ratio = fetches as f64 / n as f64;
    eprintln!(
        "{} daemons, {n} cold domains asked of each at once: {fetches} policy fetches \
         ({ratio:.3} per domain) in {:?}",
        daemons.len(),
        start.elapsed()
    );
    ratio
}

/// The daemon's `mta_sts_fleet_*` metric lines.
fn fleet_metrics(metrics: SocketAddr) -> Vec<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(metrics).expect("connect to /metrics");
    s.set_read_timeout(Some(LOG_WAIT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("ask for /metrics");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read /metrics");
    body.lines()
        .filter(|l| l.starts_with("mta_sts_fleet_"))
        .map(str::to_owned)
        .collect()
}

/// Starts [`DAEMONS`] daemons on `yaml`, each in a directory of its own under `name`.
fn fleet(world: &World, name: &str, yaml: &str) -> Vec<Daemon> {
    let dir = scratch_dir(name);
    (0..DAEMONS)
        .map(|i| {
            let d = dir.join(format!("d{i}"));
            std::fs::create_dir_all(&d).unwrap();
            Daemon::start(world, &d, yaml)
        })
        .collect()
}

/// The daemons' configuration: Postfix's socketmap on a port of their own, the metrics, no
/// proactive refresh during the test, a lookup timeout that a loaded test machine meets (the
/// count of fetches is what is measured, not their time), and `cache`.
fn config(cache: &str) -> String {
    format!(
        "host: 127.0.0.1\nport: 0\nreuse_port: true\nmetrics:\n  port: 0\n\
         default_zone:\n  timeout: 30\n\
         proactive_policy_fetching:\n  enabled: false\n{cache}"
    )
}

#[test]
fn s8_four_daemons_one_redis_fetch_each_policy_about_once() {
    if !redis_server::redis_or_skip("s8_four_daemons_one_redis_fetch_each_policy_about_once") {
        return;
    }
    raise_fd_limit(4096);
    let n = domains();
    let world = World::builder()
        .bulk_domains(n)
        .build()
        .expect("start the testkit world");
    let server = redis_server::RedisServer::start();
    let yaml = config(&format!(
        "cache:\n  type: redis\n  options:\n    url: \"{}\"\n",
        server.url()
    ));
    let daemons = fleet(&world, "fleet-redis", &yaml);
    let addrs: Vec<SocketAddr> = daemons.iter().map(Daemon::addr).collect();
    let ratio = ask_all(&world, &addrs, n);
    for d in &daemons {
        let m = d.metrics.expect("the metrics address in the log");
        eprintln!("daemon {}: {}", d.pid(), fleet_metrics(m).join(", "));
    }
    assert!(ratio <= 1.05, "{ratio:.3} policy fetches per domain");
    // The notes are fields of `_metadata` (gone with its last field): one key per domain and at
    // most that hash, nothing else.
    let keys: usize = server
        .raw(&[b"DBSIZE"])
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!((n..=n + 1).contains(&keys), "{keys} keys for {n} domains");
}

/// The comparison: the same fleet without a shared store (each daemon its own cache).
#[test]
fn s8_four_daemons_without_a_store_fetch_each_policy_once_each() {
    raise_fd_limit(4096);
    let n = domains() / 4;
    let world = World::builder()
        .bulk_domains(n)
        .build()
        .expect("start the testkit world");
    let daemons = fleet(&world, "fleet-alone", &config("cache:\n  type: internal\n"));
    let addrs: Vec<SocketAddr> = daemons.iter().map(Daemon::addr).collect();
    let ratio = ask_all(&world, &addrs, n);
    assert!(ratio > 3.5, "{ratio:.3} policy fetches per domain");
}
