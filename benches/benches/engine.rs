//! The engine: `cargo bench -p mta-sts-benches --bench engine`.
//!
//! - `cache_hit_1m`: a delivery lookup answered from a cache of 1,000,000 policies
//!   ([`PolicyCache::begin`] → [`Begin::Ready`]), against `baseline_hashmap_get`, a plain
//!   `HashMap<String, Arc<Policy>>::get` of the same keys in the same order.
//! - `cold_lookup`: a complete cycle through the state machine with canned results (begin, TXT,
//!   fetch, apply) into an empty cache, against `baseline_parse_only`, which only discovers the
//!   TXT record and parses the policy: the parsing floor of any implementation.
//! - Bytes per cached entry, measured with a counting global allocator and printed: everything
//!   the cache allocates for 1,000,000 entries (index, slots, timers, policies), divided by the
//!   count, against the same for the baseline map.
// The counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mta_sts_benches::canned_lookup;
use mta_sts_core::io::{FetchResponse, TxtAnswer};
use mta_sts_core::{
    Begin, Config, IoResult, Lookup, Outcome, Policy, PolicyCache, Step, StsRecord, UnixTime,
};

/// Net bytes allocated by the process.
struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ENTRIES: usize = 1_000_000;
const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);
const TXT: &[u8] = b"v=STSv1; id=20240101T000000;";
const BODY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.mx.example.net\r\nmax_age: 604800\r\n";

fn domain(i: usize) -> String {
    format!("d{i}.example-{}.com", i % 97)
}

/// The canned result for a request.
fn answer(step: &Step) -> IoResult {
    match step {
        Step::Io(mta_sts_core::io::Io::Txt(_)) => {
            IoResult::Txt(Ok(TxtAnswer::Records(vec![TXT.to_vec()])))
        }
        _ => IoResult::Fetch(Ok(FetchResponse::new(200, Some("text/plain"), BODY))),
    }
}

/// One complete cold lookup: begin, TXT, fetch, apply.
fn cold_lookup(cache: &mut PolicyCache, domain: &str) -> Outcome {
    canned_lookup(cache, domain, NOW, TXT, BODY).expect("nothing else runs")
}

fn filled_cache() -> (PolicyCache, usize) {
    let mut config = Config::default();
    config.capacity = ENTRIES;
    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut cache = PolicyCache::new(config);
    for i in 0..ENTRIES {
        let o = cold_lookup(&mut cache, &domain(i));
        assert!(matches!(o, Outcome::Fetched(_)));
    }
    let bytes = (ALLOCATED.load(Ordering::Relaxed) - before) as usize;
    assert_eq!(cache.len(), ENTRIES);
    (cache, bytes)
}

fn baseline_map() -> (HashMap<String, Arc<Policy>>, usize) {
    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut map = HashMap::new();
    for i in 0..ENTRIES {
        map.insert(domain(i), Arc::new(Policy::parse(BODY).expect("valid")));
    }
    let bytes = (ALLOCATED.load(Ordering::Relaxed) - before) as usize;
    (map, bytes)
}

/// 4096 keys spread over the whole key space, visited in the same order by both benches.
fn probe_keys() -> Vec<String> {
    (0..4096)
        .map(|k| domain((k * 7919 + 13) % ENTRIES))
        .collect()
}

fn cache_hit(c: &mut Criterion) {
    let (mut cache, cache_bytes) = filled_cache();
    let (map, map_bytes) = baseline_map();
    println!(
        "bytes per cached entry ({ENTRIES} entries): cache {} B, baseline HashMap<String, Arc<Policy>> {} B, ratio {:.2}",
        cache_bytes / ENTRIES,
        map_bytes / ENTRIES,
        cache_bytes as f64 / map_bytes as f64
    );
    let keys = probe_keys();
    let mut g = c.benchmark_group("cache_hit_1m");
    let mut i = 0;
    g.bench_function("baseline_hashmap_get", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(map.get(black_box(keys[i].as_str())).map(|p| p.max_age()))
        })
    });
    let mut i = 0;
    g.bench_function("begin_ready", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            match cache.begin(black_box(keys[i].as_str()), NOW) {
                Begin::Ready(o) => black_box(o.policy().map(|p| p.policy().max_age())),
                _ => unreachable!("every key is cached and fresh"),
            }
        })
    });
    g.finish();
}

fn cold(c: &mut Criterion) {
    let mut g = c.benchmark_group("cold_lookup");
    g.bench_function("baseline_parse_only", |b| {
        b.iter(|| {
            let r = StsRecord::discover([black_box(TXT)]).expect("valid");
            let p = Policy::parse(black_box(BODY)).expect("valid");
            black_box((r.id().len(), p.max_age()))
        })
    });
    g.bench_function("begin_txt_fetch_apply", |b| {
        b.iter_batched(
            || PolicyCache::new(Config::default()),
            |mut cache| black_box(cold_lookup(&mut cache, black_box("example.com"))),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("lookup_only_no_cache", |b| {
        let config = Config::default();
        b.iter(|| {
            let d = mta_sts_core::PolicyDomain::parse(black_box("example.com")).expect("valid");
            let mut lookup = Lookup::new(d, None, &config, NOW);
            loop {
                let step = lookup.poll();
                if let Step::Done(r) = step {
                    break black_box(r.into_outcome());
                }
                let result = answer(&step);
                lookup.handle(result, NOW).expect("canned result fits");
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = cold, cache_hit
}
criterion_main!(benches);
