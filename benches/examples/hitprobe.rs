//! Cache-hit probe for callgrind's cache simulator: fills 1,000,000 entries, then runs N hits in
//! `hits` (our cache) or `map_hits` (HashMap baseline), the engine bench's keys and order.
//!
//! `valgrind --tool=callgrind --cache-sim=yes --collect-atstart=no --toggle-collect='*hits*' \
//!   target/release/examples/hitprobe cache 100000`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use mta_sts_benches::canned_lookup;
use mta_sts_core::{Begin, Config, Policy, PolicyCache, UnixTime};

const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);
const ENTRIES: usize = 1_000_000;
const TXT: &[u8] = b"v=STSv1; id=20240101T000000;";
const BODY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.mx.example.net\r\nmax_age: 604800\r\n";

fn domain(i: usize) -> String {
    format!("d{i}.example-{}.com", i % 97)
}

#[inline(never)]
fn hits(cache: &mut PolicyCache, keys: &[String], n: usize) -> u64 {
    let mut sum = 0u64;
    for k in 0..n {
        if let Begin::Ready(o) = cache.begin(black_box(keys[k & 4095].as_str()), NOW) {
            sum += o.policy().map_or(0, |p| u64::from(p.policy().max_age()));
        }
    }
    sum
}

/// The baseline with an owned result, as a cache shared between tasks hands out.
#[inline(never)]
fn map_clone_hits(map: &HashMap<String, Arc<Policy>>, keys: &[String], n: usize) -> u64 {
    let mut sum = 0u64;
    for k in 0..n {
        let p = map.get(black_box(keys[k & 4095].as_str())).cloned();
        sum += black_box(p).map_or(0, |p| u64::from(p.max_age()));
    }
    sum
}

#[inline(never)]
fn map_hits(map: &HashMap<String, Arc<Policy>>, keys: &[String], n: usize) -> u64 {
    let mut sum = 0u64;
    for k in 0..n {
        sum += map
            .get(black_box(keys[k & 4095].as_str()))
            .map_or(0, |p| u64::from(p.max_age()));
    }
    sum
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let entries: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(ENTRIES);
    let keys: Vec<String> = (0..4096)
        .map(|k| domain((k * 7919 + 13) % entries))
        .collect();
    if which == "cache" {
        let mut config = Config::default();
        config.capacity = entries;
        let mut cache = PolicyCache::new(config);
        for i in 0..entries {
            canned_lookup(&mut cache, &domain(i), NOW, TXT, BODY);
        }
        let t = std::time::Instant::now();
        let s = hits(&mut cache, &keys, n);
        println!("cache {s} {:?}/op", t.elapsed() / n as u32);
    } else {
        let mut map = HashMap::new();
        for i in 0..entries {
            map.insert(domain(i), Arc::new(Policy::parse(BODY).expect("valid")));
        }
        let t = std::time::Instant::now();
        let s = map_hits(&map, &keys, n);
        println!("map {s} {:?}/op", t.elapsed() / n as u32);
        let t = std::time::Instant::now();
        let s = map_clone_hits(&map, &keys, n);
        println!("map, Arc cloned {s} {:?}/op", t.elapsed() / n as u32);
    }
}
