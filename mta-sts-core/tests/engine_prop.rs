//! Properties of the engine for any sequence of I/O results and clock jumps: every lookup ends in
//! a bounded number of steps, nothing panics, an unexpired cached policy is never replaced by
//! nothing, and expiry is never extended without a fetch (R11, R20, R42, R43).

mod engine_harness;

use core::time::Duration;

use engine_harness::{T0, body};
use mta_sts_core::io::{
    DnsFailure, FetchFailure, FetchResponse, FetchResult, Io, TxtAnswer, TxtResult,
};
use mta_sts_core::{Begin, Config, IoResult, Lookup, Outcome, PolicyCache, Step, UnixTime};
use proptest::prelude::*;

const DOMAINS: [&str; 2] = ["example.com", "other.example"];

fn txt_result() -> impl Strategy<Value = TxtResult> {
    prop_oneof![
        4 => prop::sample::select(vec!["A", "B", "C"])
            .prop_map(|id| Ok(TxtAnswer::Records(vec![format!("v=STSv1; id={id};").into_bytes()]))),
        1 => Just(Ok(TxtAnswer::NXDOMAIN)),
        1 => Just(Ok(TxtAnswer::NODATA)),
        1 => Just(Err(DnsFailure::ServerFailure)),
        1 => Just(Err(DnsFailure::Timeout)),
        1 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..3)
            .prop_map(|r| Ok(TxtAnswer::Records(r))),
    ]
}

fn fetch_result() -> impl Strategy<Value = FetchResult> {
    let mode = prop::sample::select(vec!["enforce", "testing", "none"]);
    let max_age = prop::sample::select(vec![0u32, 60, 300, 3600, 86_400, 604_800]);
    prop_oneof![
        4 => (mode, max_age).prop_map(|(m, a)| {
            Ok(FetchResponse::new(200, Some("text/plain"), body(m, a, &["mx.example.com"])))
        }),
        1 => prop::sample::select(vec![204u16, 301, 404, 500])
            .prop_map(|s| Ok(FetchResponse::new(s, Some("text/plain"), ""))),
        1 => Just(Ok(FetchResponse::new(200, Some("text/html"), body("enforce", 60, &["mx.example"])))),
        1 => prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| Ok(FetchResponse::new(200, Some("text/plain"), b))),
        1 => Just(Ok(FetchResponse::new(200, Some("text/plain"), vec![b'a'; 70_000]))),
        1 => Just(Err(FetchFailure::Timeout)),
        1 => Just(Err(FetchFailure::Certificate(
            mta_sts_core::io::CertificateProblem::Other("bad".into())
        ))),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Deliver {
        domain: usize,
        txt: TxtResult,
        fetch: FetchResult,
        jump: u32,
    },
    Recheck {
        domain: usize,
        txt: TxtResult,
        fetch: FetchResult,
        jump: u32,
    },
    Refresh {
        txt: TxtResult,
        fetch: FetchResult,
    },
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let jump = prop_oneof![3 => Just(0u32), 1 => 0u32..120];
    prop_oneof![
        4 => (0..DOMAINS.len(), txt_result(), fetch_result(), jump.clone())
            .prop_map(|(domain, txt, fetch, jump)| Op::Deliver { domain, txt, fetch, jump }),
        2 => (0..DOMAINS.len(), txt_result(), fetch_result(), jump)
            .prop_map(|(domain, txt, fetch, jump)| Op::Recheck { domain, txt, fetch, jump }),
        2 => (txt_result(), fetch_result()).prop_map(|(txt, fetch)| Op::Refresh { txt, fetch }),
        3 => prop_oneof![0u32..600, 0u32..200_000, Just(86_400u32), Just(604_801u32)].prop_map(Op::Advance),
    ]
}

/// Drives one lookup with the given results; the clock may jump during each I/O. Returns the
/// outcome and the time it finished.
fn drive(
    cache: &mut PolicyCache,
    mut lookup: Lookup,
    txt: &TxtResult,
    fetch: &FetchResult,
    mut now: UnixTime,
    jump: u32,
) -> Result<(Outcome, UnixTime), TestCaseError> {
    let domain = lookup.domain().as_str().to_owned();
    let mut requests = 0;
    let resolution = loop {
        match lookup.poll() {
            Step::Io(io) => {
                requests += 1;
                prop_assert!(requests <= 2, "a lookup makes at most two requests");
                now = now.saturating_add(Duration::from_secs(u64::from(jump)));
                let result = match io {
                    Io::Txt(_) => IoResult::Txt(txt.clone()),
                    Io::Fetch(_) => IoResult::Fetch(fetch.clone()),
                };
                prop_assert!(lookup.handle(result, now).is_ok());
            }
            Step::Done(r) => break r,
        }
    };
    let before = cache.peek(&domain).cloned();
    let outcome = cache.apply(resolution, now);
    let after = cache.peek(&domain).cloned();
    if let Some(b) = before.as_ref().filter(|b| b.is_fresh(now)) {
        // Never replaced by nothing while unexpired (R11, R20, R43).
        prop_assert!(
            outcome.policy().is_some(),
            "valid cached {b:?} lost: {outcome:?}"
        );
        prop_assert!(
            after.as_ref().is_some_and(|a| a.is_fresh(now)),
            "cache lost {b:?}"
        );
    }
    if !matches!(outcome, Outcome::Fetched(_)) {
        // No extension of expiry without a fetch (R42).
        if let (Some(b), Some(a)) = (&before, &after) {
            prop_assert_eq!(a.fetched_at(), b.fetched_at());
        }
    }
    if let Some(p) = outcome.policy() {
        prop_assert!(
            p.is_fresh(now) || matches!(outcome, Outcome::Fetched(_)),
            "stale {p:?}"
        );
    }
    Ok((outcome, now))
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut config = Config::default();
    config.seed = 1;
    let mut cache = PolicyCache::new(config);
    let mut now = T0;
    for op in ops {
        match op {
            Op::Deliver {
                domain,
                txt,
                fetch,
                jump,
            } => {
                now = lookup(&mut cache, false, DOMAINS[domain], &txt, &fetch, now, jump)?;
            }
            Op::Recheck {
                domain,
                txt,
                fetch,
                jump,
            } => {
                now = lookup(&mut cache, true, DOMAINS[domain], &txt, &fetch, now, jump)?;
            }
            Op::Refresh { txt, fetch } => {
                let mut n = 0;
                while let Some(l) = cache.poll_refresh(now) {
                    n += 1;
                    prop_assert!(
                        n <= DOMAINS.len(),
                        "at most one refresh per entry at a time"
                    );
                    let _ = drive(&mut cache, l, &txt, &fetch, now, 0)?;
                }
            }
            Op::Advance(s) => now = now.saturating_add(Duration::from_secs(u64::from(s))),
        }
        prop_assert!(cache.len() <= DOMAINS.len());
        prop_assert!(cache.poll_timeout().is_none() || !cache.is_empty());
        prop_assert_eq!(cache.stats().in_flight, 0);
    }
    Ok(())
}

/// A delivery lookup or a recheck (R39) through the cache; returns the time it finished.
fn lookup(
    cache: &mut PolicyCache,
    recheck: bool,
    domain: &str,
    txt: &TxtResult,
    fetch: &FetchResult,
    now: UnixTime,
    jump: u32,
) -> Result<UnixTime, TestCaseError> {
    let begin = if recheck {
        cache.begin_recheck(domain, now)
    } else {
        cache.begin(domain, now)
    };
    match begin {
        Begin::Ready(o) => {
            prop_assert!(!recheck, "a recheck always queries the TXT record");
            // A fresh policy, or a remembered negative answer (S9) while no policy is cached.
            let absent = cache.peek_absent(domain, now).is_some()
                && cache.peek(domain).is_none_or(|p| !p.is_fresh(now));
            prop_assert!(
                o.policy().is_some_and(|p| p.is_fresh(now))
                    || (absent && matches!(o, Outcome::NoPolicy(_))),
                "{o:?}"
            );
            Ok(now)
        }
        Begin::Started(l) => Ok(drive(cache, *l, txt, fetch, now, jump)?.1),
        Begin::InProgress(_) => Err(TestCaseError::fail("no lookup is left under way")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn prop_lookups_end_and_never_lose_a_valid_cached_policy(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }

    #[test]
    fn prop_lookup_alone_ends_within_two_requests(
        txt in txt_result(),
        fetch in fetch_result(),
        jump in 0u32..1_000_000,
        cached in proptest::option::of(fetch_result()),
    ) {
        // A cached policy to start from, when the scripted body is valid.
        let config = Config::default();
        let domain = mta_sts_core::PolicyDomain::parse("example.com").unwrap();
        let seed = cached.and_then(|f| {
            let mut l = Lookup::new(domain.clone(), None, &config, T0);
            l.handle(IoResult::Txt(Ok(TxtAnswer::Records(vec![b"v=STSv1; id=A;".to_vec()]))), T0).ok()?;
            l.handle(IoResult::Fetch(f), T0).ok()?;
            match l.poll() {
                Step::Done(r) => r.into_outcome().policy().cloned(),
                Step::Io(_) => None,
            }
        });
        let start = T0.saturating_add(Duration::from_secs(60));
        let mut cache = PolicyCache::new(Config::default());
        let lookup = Lookup::new(domain, seed.clone(), &config, start);
        let (outcome, end) = drive(&mut cache, lookup, &txt, &fetch, start, jump)?;
        if seed.is_some_and(|s| s.is_fresh(end)) {
            prop_assert!(outcome.policy().is_some(), "{outcome:?}");
        }
    }
}
