//! The world's ceiling, measured from client threads in the same process: DNS queries per second
//! over UDP and complete HTTPS policy fetches (a new TLS connection each) per second. Shared by
//! the `ceiling` and `serve` examples.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mta_sts_testkit::probe::HttpsProbe;
use mta_sts_testkit::{POLICY_PATH, bulk_domain_name};

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

/// A rate, printed as `<what>: <n> <unit>, <threads> client threads, <elapsed>: <rate> <unit>/s`.
pub(crate) fn report(what: &str, n: usize, unit: &str, threads: usize, elapsed: Duration) -> f64 {
    let rate = n as f64 / elapsed.as_secs_f64();
    println!("{what}: {n} {unit}, {threads} client threads, {elapsed:?}: {rate:.0} {unit}/s");
    rate
}

/// Runs `f(thread index)` on `threads` threads at once; the time until all have finished.
fn timed_threads(threads: usize, f: impl Fn(usize) + Sync) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            let f = &f;
            s.spawn(move || f(th));
        }
    });
    t.elapsed()
}

/// `threads` clients each ask `per_thread` TXT queries of `_mta-sts.<bulk domain>` (over
/// `domains` domains), one at a time; the time they took.
pub(crate) fn dns_udp(
    dns: SocketAddr,
    threads: usize,
    per_thread: usize,
    domains: usize,
) -> Duration {
    timed_threads(threads, |th| {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        sock.connect(dns).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 1500];
        for i in 0..per_thread {
            let name = format!("_mta-sts.{}", bulk_domain_name((i + th) % domains));
            let id = u16::try_from(i % 65_536).expect("fits");
            sock.send(&query(id, &name)).expect("send");
            let n = sock.recv(&mut buf).expect("answer");
            assert!(n > 12 && buf[..2] == id.to_be_bytes());
        }
    })
}

/// `threads` clients each fetch `per_thread` policies of bulk domains (over `domains`
/// domains), each on a new TLS connection; the time they took.
pub(crate) fn https_fetches(
    https: &HttpsProbe,
    threads: usize,
    per_thread: usize,
    domains: usize,
) -> Duration {
    timed_threads(threads, |th| {
        for i in 0..per_thread {
            let host = format!("mta-sts.{}", bulk_domain_name((i * threads + th) % domains));
            let r = https.get(&host, POLICY_PATH).expect("fetch");
            assert_eq!(r.status, 200);
        }
    })
}
