//! The lookup state machine and the policy cache, fed arbitrary I/O results, clock jumps and
//! interleavings of several lookups at once (deliveries, rechecks, refreshes, abandons,
//! snapshots). Checks: nothing panics, a lookup makes at most two requests, the cache keeps its
//! structure and bounds, an unexpired cached policy is never replaced by nothing, and expiry never
//! moves without a fetch.
#![no_main]

use core::time::Duration;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mta_sts_core::io::{
    DnsFailure, FetchFailure, FetchResponse, FetchResult, Io, TxtAnswer, TxtResult,
};
use mta_sts_core::{
    Begin, Config, IoResult, Lookup, NoPolicyReason, Outcome, PolicyCache, Step, UnixTime,
};

const DOMAINS: [&str; 5] = [
    "example.com",
    "EXAMPLE.com.",
    "mail.example.com",
    "xn--bcher-kva.example",
    "[192.0.2.1]",
];
const MAX_PENDING: usize = 6;

fn txt(u: &mut Unstructured<'_>) -> Result<TxtResult> {
    Ok(match u.int_in_range(0..=7)? {
        0 => Ok(TxtAnswer::NxDomain),
        1 => Ok(TxtAnswer::NoData),
        2 => Err(DnsFailure::ServerFailure),
        3 => Err(DnsFailure::Timeout),
        4 => {
            let n = u.int_in_range(0..=3)?;
            let mut records = Vec::new();
            for _ in 0..n {
                let len = u.int_in_range(0..=48)?;
                records.push(u.bytes(len)?.to_vec());
            }
            Ok(TxtAnswer::Records(records))
        }
        _ => {
            let id = *u.choose(&["A", "B", "C", "0123456789abcdefABCDEF0123456789"])?;
            Ok(TxtAnswer::Records(vec![format!("v=STSv1; id={id};").into_bytes()]))
        }
    })
}

fn policy_body(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mode = *u.choose(&["enforce", "testing", "none", "Enforce"])?;
    let max_age = *u.choose(&["0", "1", "300", "86400", "604800", "31557600", "99999999999"])?;
    let mx = *u.choose(&["mail.example.com", "*.example.com", "192.0.2.1", ""])?;
    let mut body = format!("version: STSv1\nmode: {mode}\n");
    if !mx.is_empty() {
        body.push_str(&format!("mx: {mx}\n"));
    }
    body.push_str(&format!("max_age: {max_age}\n"));
    Ok(body.into_bytes())
}

fn fetch(u: &mut Unstructured<'_>) -> Result<FetchResult> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Err(FetchFailure::Timeout),
        1 => Err(FetchFailure::Certificate(
            mta_sts_core::io::CertificateProblem::Other("bad".into()),
        )),
        2 => Err(FetchFailure::Connect("refused".into())),
        3 => {
            let status = u.int_in_range(100..=599)?;
            Ok(FetchResponse::new(status, Some("text/plain"), policy_body(u)?))
        }
        4 => {
            let ct = *u.choose(&["text/html", "TEXT/PLAIN; charset=utf-8", ""])?;
            Ok(FetchResponse::new(200, Some(ct).filter(|c| !c.is_empty()), policy_body(u)?))
        }
        5 => {
            let len = u.int_in_range(0..=200)?;
            Ok(FetchResponse::new(200, Some("text/plain"), u.bytes(len)?.to_vec()))
        }
        6 => {
            let len = u.int_in_range(65_530..=65_540)?;
            Ok(FetchResponse::new(200, Some("text/plain"), vec![b'x'; len]))
        }
        _ => Ok(FetchResponse::new(200, Some("text/plain"), policy_body(u)?)),
    })
}

struct Pending {
    lookup: Lookup,
    requests: u8,
}

fn apply(cache: &mut PolicyCache, lookup: Lookup, now: UnixTime) -> Option<Outcome> {
    let Step::Done(resolution) = lookup.poll() else {
        return None;
    };
    let domain = resolution.domain().as_str().to_owned();
    let before = cache.peek(&domain).cloned();
    let fetched = resolution.fetched();
    let outcome = cache.apply(resolution, now);
    let after = cache.peek(&domain).cloned();
    if let Some(b) = before.as_ref().filter(|b| b.is_fresh(now)) {
        // Kept, or superseded by a policy fetched no earlier (which may itself have expired
        // when the lookup is applied late, e.g. a `none` policy with a small max_age, R46).
        let kept = after
            .as_ref()
            .is_some_and(|a| a.is_fresh(now) || (fetched && a.fetched_at() >= b.fetched_at()));
        assert!(kept, "unexpired {b:?} lost by {outcome:?}");
    }
    if !fetched {
        if let (Some(b), Some(a)) = (&before, &after) {
            assert_eq!(a.fetched_at(), b.fetched_at(), "expiry moved without a fetch");
        }
    }
    Some(outcome)
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut config = Config::default();
    config.capacity = u.int_in_range(0..=4)?;
    config.max_in_flight = u.int_in_range(0..=3)?;
    config.seed = u.arbitrary()?;
    config.idle_after = Duration::from_secs(u.int_in_range(0..=20 * 86_400)?);
    config.refresh_interval = Duration::from_secs(u.int_in_range(0..=2 * 86_400)?);
    let mut cache = PolicyCache::new(config);
    let mut now = UnixTime::from_secs(u.int_in_range(0..=2_000_000_000)?);
    let mut pending: Vec<Pending> = Vec::new();
    let mut last = Outcome::NoPolicy(NoPolicyReason::Disabled);
    for _ in 0..256 {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0..=8)? {
            0 | 1 => {
                let domain = *u.choose(&DOMAINS)?;
                let begin = if u.arbitrary()? {
                    cache.begin(domain, now)
                } else {
                    cache.begin_recheck(domain, now)
                };
                match begin {
                    Begin::Ready(o) => {
                        if let Some(p) = o.policy() {
                            assert!(p.is_fresh(now) || matches!(o, Outcome::Fetched(_)));
                        }
                        last = o;
                    }
                    Begin::Started(l) if pending.len() < MAX_PENDING => {
                        pending.push(Pending { lookup: *l, requests: 0 });
                    }
                    Begin::Started(l) => cache.abandon(l.domain()),
                    Begin::InProgress(d) => assert!(cache.is_in_flight(d.as_str(), now)),
                }
            }
            2 => {
                if let Some(l) = cache.poll_refresh(now) {
                    if pending.len() < MAX_PENDING {
                        pending.push(Pending { lookup: l, requests: 0 });
                    } else {
                        cache.abandon(l.domain());
                    }
                }
            }
            3 => {
                let secs: u64 = match u.int_in_range(0..=3)? {
                    0 => u.int_in_range(0..=600)?,
                    1 => u.int_in_range(0..=8 * 86_400)?,
                    2 => cache.poll_timeout().map_or(0, |t| t.since(now).as_secs()),
                    _ => u.arbitrary()?,
                };
                now = now.saturating_add(Duration::from_secs(secs));
            }
            4..=6 if !pending.is_empty() => {
                let i = u.choose_index(pending.len())?;
                match pending[i].lookup.poll() {
                    Step::Io(io) => {
                        let wrong = u.ratio(1, 16)?;
                        let result = match (io, wrong) {
                            (Io::Txt(_), false) | (Io::Fetch(_), true) => IoResult::Txt(txt(u)?),
                            _ => IoResult::Fetch(fetch(u)?),
                        };
                        let handled = pending[i].lookup.handle(result, now);
                        assert_eq!(handled.is_ok(), !wrong);
                        pending[i].requests += u8::from(!wrong);
                        assert!(pending[i].requests <= 2, "more than two requests");
                    }
                    Step::Done(_) => {
                        let p = pending.swap_remove(i);
                        last = apply(&mut cache, p.lookup, now).expect("done");
                    }
                }
            }
            7 if !pending.is_empty() => {
                let i = u.choose_index(pending.len())?;
                let p = pending.swap_remove(i);
                cache.abandon(p.lookup.domain());
            }
            _ => {
                let hosts = ["mail.example.com", "x.example.com", "evil.example", "192.0.2.1"];
                let n = u.int_in_range(0..=hosts.len())?;
                let domain = *u.choose(&DOMAINS)?;
                let e = cache.evaluate(domain, &last, hosts[..n].iter().copied());
                assert_eq!(e.candidates().len(), n);
                let snapshot = cache.export(now);
                let mut other = PolicyCache::new(cache.config().clone());
                let loaded = other.import(snapshot.clone(), now).expect("own snapshot loads");
                assert_eq!(loaded, snapshot.entries().len());
                assert_eq!(other.export(now), snapshot);
                other.check_invariants();
            }
        }
        cache.check_invariants();
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
