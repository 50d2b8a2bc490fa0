//! The DANE lookup and the DANE cache on arbitrary DNSSEC results (any data kind for any query,
//! hostile MX sets and TLSA RRsets, any TTL), arbitrary tokens (unknown, repeated, late) and
//! clock values, over several destinations and a small cache.
//!
//! Checks (REQUIREMENTS.md D6, D9): nothing panics; a lookup asks at most 1 + 3 ×
//! `MAX_DANE_HOSTS` queries and none after `Done`; `Wait` only while a query is under way, so
//! `Done` comes once every query asked is answered (or earlier, when an answer makes the state
//! indeterminate: then the answers still under way are refused as late); a token not under way is refused with an
//! error; an indeterminate state is never cached; a state the cache answers with is determinate
//! and unexpired; a determinate state expires no later than the time its MX answer came plus that
//! answer's TTL, nor later than `max_ttl` after it is applied; the cache stays within its
//! capacity.
#![no_main]

use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mta_sts_core::io::{
    DnsFailure, DnssecAnswer, DnssecData, DnssecQuery, DnssecResult, DnssecType,
};
use mta_sts_core::{
    DaneBegin, DaneCache, DaneConfig, DaneLookup, DaneLookupError, DaneQueryId, DaneStep,
    MAX_DANE_HOSTS, Tlsa, UnixTime,
};

const DOMAINS: [&str; 4] = [
    "example.com",
    "EXAMPLE.com.",
    "mx.example.net",
    "[192.0.2.1]",
];
/// MX targets: valid, duplicates in other spellings, addresses, the null MX, invalid names.
const TARGETS: [&str; 12] = [
    "mx1.example.com",
    "MX1.example.com.",
    "mx2.example.com",
    "example.com",
    ".",
    "",
    "192.0.2.1",
    "2001:db8::1",
    "bad_name.example",
    "-x.example",
    "a..b",
    "xn--bcher-kva.example",
];
const MAX_STEPS: usize = 400;

fn ttl(u: &mut Unstructured<'_>) -> Result<u32> {
    Ok(match u.int_in_range(0..=5)? {
        0 => 0,
        1 => 1,
        2 => 300,
        3 => u32::MAX,
        _ => u.arbitrary()?,
    })
}

fn tlsa(u: &mut Unstructured<'_>) -> Result<Tlsa> {
    let usage = if u.arbitrary()? {
        u.int_in_range(2..=3)?
    } else {
        u.arbitrary()?
    };
    let selector = u.int_in_range(0..=2)?;
    let matching = u.int_in_range(0..=3)?;
    let len = match u.int_in_range(0..=3)? {
        0 => 32,
        1 => 64,
        _ => u.int_in_range(0..=80)?,
    };
    let mut data = u.bytes(len)?.to_vec();
    if matching == 0 && data.len() >= 2 && u.arbitrary()? {
        data[0] = 0x30;
        data[1] = u8::try_from(data.len() - 2).unwrap_or(0x7f).min(0x7f);
    }
    Ok(Tlsa::new(usage, selector, matching, data))
}

fn data(u: &mut Unstructured<'_>, asked: DnssecType) -> Result<DnssecData> {
    // Mostly the kind asked for, sometimes any kind.
    let kind = if u.ratio(3, 4)? {
        match asked {
            DnssecType::Mx => 0,
            DnssecType::A | DnssecType::Aaaa => 1,
            _ => 2,
        }
    } else {
        u.int_in_range(0..=4)?
    };
    Ok(match kind {
        0 => {
            let n = if u.ratio(1, 8)? {
                u.int_in_range(0..=300)?
            } else {
                u.int_in_range(0..=5)?
            };
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                let pref: u16 = u.arbitrary()?;
                let t = if u.ratio(1, 3)? {
                    format!("h{i}.example.org")
                } else {
                    TARGETS[u.choose_index(TARGETS.len())?].to_owned()
                };
                v.push((pref, t));
            }
            DnssecData::Mx(v)
        }
        1 => {
            let n = u.int_in_range(0..=3)?;
            let mut v = Vec::new();
            for _ in 0..n {
                let six = match asked {
                    DnssecType::A => u.ratio(1, 10)?,
                    DnssecType::Aaaa => !u.ratio(1, 10)?,
                    _ => u.arbitrary()?,
                };
                v.push(if six {
                    IpAddr::V6(Ipv6Addr::from(u.arbitrary::<u128>()?))
                } else {
                    IpAddr::V4(Ipv4Addr::from(u.arbitrary::<u32>()?))
                });
            }
            DnssecData::Addrs(v)
        }
        2 => {
            let n = if u.ratio(1, 8)? {
                u.int_in_range(0..=100)?
            } else {
                u.int_in_range(0..=4)?
            };
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(tlsa(u)?);
            }
            DnssecData::Tlsa(v)
        }
        3 => DnssecData::NxDomain,
        _ => DnssecData::NoData,
    })
}

fn result(u: &mut Unstructured<'_>, asked: DnssecType) -> Result<DnssecResult> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Err(DnsFailure::ServerFailure),
        1 => Err(DnsFailure::Timeout),
        2 => Err(DnsFailure::Malformed("fuzz".into())),
        _ => Ok(DnssecAnswer::new(u.ratio(4, 5)?, ttl(u)?, data(u, asked)?)),
    })
}

fn advance(u: &mut Unstructured<'_>, now: &mut UnixTime) -> Result<()> {
    let secs = match u.int_in_range(0..=3)? {
        0 => 0,
        1 => u.int_in_range(0..=10)?,
        2 => u.int_in_range(0..=100_000)?,
        _ => u.arbitrary()?,
    };
    *now = now.saturating_add(Duration::from_secs(secs));
    Ok(())
}

/// One lookup driven to its end, as an adapter would, with hostile interleavings.
fn drive(
    u: &mut Unstructured<'_>,
    cache: &mut DaneCache,
    domain: &str,
    mut lookup: DaneLookup,
    now: &mut UnixTime,
) -> Result<()> {
    let bound = 1 + 3 * MAX_DANE_HOSTS;
    let mut in_flight: Vec<(DaneQueryId, DnssecQuery)> = Vec::new();
    let mut answered: Vec<DaneQueryId> = Vec::new();
    let mut asked = 0usize;
    // The MX answer: when it came and its TTL (it always decides the state).
    let mut mx_limit: Option<UnixTime> = None;
    // The lookup refused an answer as late: it has concluded.
    let mut finished = false;
    for step in 0..MAX_STEPS {
        // Past the input (or the step budget), answer in order so that the lookup ends.
        let exhausted = u.is_empty() || step + 2 * bound >= MAX_STEPS;
        let action = if exhausted { 0 } else { u.int_in_range(0..=5)? };
        match action {
            // Poll, then answer the oldest query under way if it says Wait.
            0 | 1 => match lookup.poll() {
                DaneStep::Query(id, q) => {
                    assert!(!finished, "a query after the lookup concluded");
                    asked += 1;
                    assert!(asked <= bound, "{asked} queries");
                    assert!(!in_flight.iter().any(|(i, _)| *i == id), "id reused");
                    assert!(!answered.contains(&id), "id reused");
                    in_flight.push((id, q));
                }
                DaneStep::Wait => {
                    assert!(!in_flight.is_empty(), "Wait with nothing under way");
                    let (id, q) = in_flight.remove(0);
                    let r = if exhausted {
                        Err(DnsFailure::Timeout)
                    } else {
                        result(u, q.rtype)?
                    };
                    if q.rtype == DnssecType::Mx {
                        let ttl = r.as_ref().map_or(0, |a| a.ttl);
                        mx_limit = Some(now.saturating_add(Duration::from_secs(u64::from(ttl))));
                    }
                    lookup
                        .handle(id, r, *now)
                        .expect("a query under way is taken");
                    answered.push(id);
                }
                DaneStep::Done(resolution) => {
                    assert_eq!(resolution.domain(), lookup.domain());
                    // Nothing more is asked after Done, and Done stays.
                    assert!(matches!(lookup.poll(), DaneStep::Done(ref r) if *r == resolution));
                    // Late answers to queries still under way are refused.
                    for (id, q) in in_flight.drain(..) {
                        let r = result(u, q.rtype).unwrap_or(Err(DnsFailure::Timeout));
                        assert!(lookup.handle(id, r, *now).is_err());
                    }
                    let indeterminate = resolution.state().is_indeterminate();
                    let state = cache.apply(resolution, *now);
                    if indeterminate {
                        assert!(state.is_indeterminate());
                        assert_eq!(state.expires_at(), None);
                        assert!(
                            matches!(cache.begin(domain, *now), DaneBegin::Started(_)),
                            "an indeterminate state is never cached"
                        );
                    } else {
                        let expires = state.expires_at().expect("a determinate state expires");
                        let mx = mx_limit.expect("a determinate state has an MX answer");
                        assert!(expires <= mx, "{expires} after the MX answer's TTL {mx}");
                        let cap = now.saturating_add(cache.config().max_ttl);
                        assert!(expires <= cap, "{expires} after max_ttl");
                        match cache.begin(domain, *now) {
                            DaneBegin::Ready(cached) => {
                                assert!(*now < expires, "an expired state is served");
                                assert_eq!(cached, state);
                            }
                            DaneBegin::Started(_) => assert!(
                                *now >= expires || cache.config().capacity == 0,
                                "a fresh state is not cached"
                            ),
                        }
                    }
                    assert!(cache.len() <= cache.config().capacity);
                    return Ok(());
                }
            },
            // Answer a query under way, out of order.
            2 => {
                if in_flight.is_empty() {
                    continue;
                }
                let (id, q) = in_flight.remove(u.choose_index(in_flight.len())?);
                let r = result(u, q.rtype)?;
                if q.rtype == DnssecType::Mx {
                    let ttl = r.as_ref().map_or(0, |a| a.ttl);
                    mx_limit = Some(now.saturating_add(Duration::from_secs(u64::from(ttl))));
                }
                match lookup.handle(id, r, *now) {
                    Ok(()) => {}
                    // An earlier answer concluded the lookup (indeterminate): Done is next.
                    Err(DaneLookupError::Finished(f)) if f == id => {
                        assert!(matches!(lookup.poll(), DaneStep::Done(_)));
                        finished = true;
                    }
                    Err(e) => panic!("a query under way is refused: {e}"),
                }
                answered.push(id);
            }
            // A token that is not under way: unknown or repeated, an error.
            3 => {
                let id = if !answered.is_empty() && u.arbitrary()? {
                    answered[u.choose_index(answered.len())?]
                } else {
                    DaneQueryId::from_u32(u.arbitrary()?)
                };
                if in_flight.iter().any(|(i, _)| *i == id) {
                    continue;
                }
                let r = result(u, DnssecType::Tlsa)?;
                assert!(lookup.handle(id, r, *now).is_err(), "{id} taken");
            }
            // The clock moves.
            _ => advance(u, now)?,
        }
    }
    panic!("the lookup did not end within {MAX_STEPS} steps");
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut config = DaneConfig::default();
    config.capacity = u.int_in_range(0..=3)?;
    config.max_ttl = Duration::from_secs(match u.int_in_range(0..=3)? {
        0 => 0,
        1 => 60,
        2 => 86_400,
        _ => u64::from(u.arbitrary::<u32>()?),
    });
    let mut cache = DaneCache::new(config);
    let mut now = UnixTime::from_secs(u.arbitrary::<u64>()? >> u.int_in_range(0..=63)?);
    for _ in 0..6 {
        if u.is_empty() {
            break;
        }
        advance(u, &mut now)?;
        let domain = DOMAINS[u.choose_index(DOMAINS.len())?];
        match cache.begin(domain, now) {
            DaneBegin::Ready(state) => {
                assert!(
                    !state.is_indeterminate(),
                    "an indeterminate state is served"
                );
                if let Some(expires) = state.expires_at() {
                    assert!(now < expires, "an expired state is served");
                }
            }
            DaneBegin::Started(lookup) => drive(u, &mut cache, domain, lookup, &mut now)?,
        }
        assert!(cache.len() <= cache.config().capacity);
    }
    Ok(())
}

fuzz_target!(|bytes: &[u8]| {
    let mut u = Unstructured::new(bytes);
    let _ = run(&mut u);
});
