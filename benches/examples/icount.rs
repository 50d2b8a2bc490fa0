//! A driver for instruction counts under callgrind: runs one operation N times.
//!
//! ```text
//! cargo build --profile bench -p mta-sts-benches --example icount
//! valgrind --tool=callgrind target/release/examples/icount policy 1000   # minus the run with 0
//! ```
//! Operations: `policy` (typical 4-line policy), `policy3` (3-mx LF policy), `txt`, `mx_exact`,
//! `mx_wild`. (Instructions per operation = (Ir(N) - Ir(0)) / N.)

use std::hint::black_box;

use mta_sts_benches::{POLICY_TYPICAL, TXT_RECORD, canned_lookup};
use mta_sts_core::{Config, MxPattern, Policy, PolicyCache, StsRecord, UnixTime};

const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);

fn domain(i: usize) -> String {
    format!("d{i}.example-{}.com", i % 97)
}

/// A cache of 4096 policies (the engine bench's domains and bodies).
fn filled_cache() -> PolicyCache {
    let body = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.mx.example.net\r\nmax_age: 604800\r\n";
    let mut cache = PolicyCache::new(Config::default());
    for i in 0..4096 {
        canned_lookup(&mut cache, &domain(i), NOW, b"v=STSv1; id=1;", body);
    }
    cache
}

const POLICY_3MX: &str = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: backup.example.com\nmx: *.mx.example.net\nmax_age: 604800\n";

fn main() {
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let exact = MxPattern::parse("mail.example.com").unwrap();
    let wild = MxPattern::parse("*.example.com").unwrap();
    let mut cache = (op == "cache_hit").then(filled_cache);
    let keys: Vec<String> = (0..4096).map(domain).collect();
    for k in 0..n {
        match op.as_str() {
            "policy" => drop(black_box(Policy::parse(black_box(POLICY_TYPICAL)))),
            "policy3" => drop(black_box(Policy::parse(black_box(POLICY_3MX)))),
            "txt" => drop(black_box(StsRecord::parse(black_box(TXT_RECORD)))),
            "mx_exact" => drop(black_box(
                black_box(&exact).matches(black_box("MAIL.example.com")),
            )),
            "mx_wild" => drop(black_box(
                black_box(&wild).matches(black_box("mx1.example.com.")),
            )),
            "mailrs_policy3" => drop(black_box(mailrs_mta_sts::Policy::parse(black_box(
                POLICY_3MX,
            )))),
            "mailrs_policy" => drop(black_box(mailrs_mta_sts::Policy::parse(black_box(
                POLICY_TYPICAL,
            )))),
            "cache_hit" => {
                if let Some(c) = cache.as_mut() {
                    drop(black_box(c.begin(black_box(&keys[k & 4095]), NOW)));
                }
            }
            _ => {}
        }
    }
}
