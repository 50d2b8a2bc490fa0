#![no_main]
//! An embedder's driving loop under the fuzzer: the loop an MTA writes around mta-sts-core's
//! `Lookup` and `PolicyCache`, with its I/O answered by the fuzzer instead of DNS and HTTPS.

use core::time::Duration;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mta_sts_core::io::{DnsFailure, FetchFailure, FetchResponse, Io, TxtAnswer};
use mta_sts_core::{Begin, Config, IoResult, Lookup, Outcome, PolicyCache, Step, UnixTime};

/// The code under test, as in the MTA: drives one lookup to its end and stores what it learned.
/// `perform` is the MTA's I/O (DNS and HTTPS in production; the fuzzer here).
fn drive(
    cache: &mut PolicyCache,
    mut lookup: Lookup,
    now: UnixTime,
    mut perform: impl FnMut(&Io) -> IoResult,
) -> (Outcome, usize) {
    let mut requests = 0;
    loop {
        match lookup.poll() {
            Step::Io(io) => {
                requests += 1;
                let result = perform(&io);
                lookup
                    .handle(result, now)
                    .expect("the result answers the request");
            }
            Step::Done(resolution) => return (cache.apply(resolution, now), requests),
        }
    }
}

/// Any answer the network could give to `io`, chosen by the fuzzer's input.
fn answer(u: &mut Unstructured<'_>, io: &Io) -> Result<IoResult> {
    Ok(match io {
        Io::Txt(_) => IoResult::Txt(match u.int_in_range(0..=3)? {
            0 => Ok(TxtAnswer::NXDOMAIN),
            1 => Err(DnsFailure::ServerFailure),
            _ => Ok(TxtAnswer::Records(vec![u.arbitrary::<Vec<u8>>()?])),
        }),
        Io::Fetch(_) => IoResult::Fetch(match u.int_in_range(0..=2)? {
            0 => Err(FetchFailure::Timeout),
            1 => Ok(FetchResponse::new(
                u.arbitrary()?,
                Some("text/plain"),
                u.arbitrary::<Vec<u8>>()?,
            )),
            _ => Ok(FetchResponse::new(
                200,
                Some("text/plain"),
                u.arbitrary::<Vec<u8>>()?,
            )),
        }),
    })
}

/// When the input runs out, the network times out.
fn timeout(io: &Io) -> IoResult {
    match io {
        Io::Txt(_) => IoResult::Txt(Err(DnsFailure::Timeout)),
        Io::Fetch(_) => IoResult::Fetch(Err(FetchFailure::Timeout)),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut cache = PolicyCache::new(Config::default());
    let mut now = UnixTime::from_secs(1_700_000_000);
    // Up to eight messages for one domain, hours or days apart.
    for _ in 0..8 {
        let Ok(wait) = u.int_in_range(0..=172_800u64) else {
            break;
        };
        now = now.saturating_add(Duration::from_secs(wait));
        let outcome = match cache.begin("example.com", now) {
            Begin::Ready(outcome) => outcome,
            Begin::Started(lookup) => {
                let (outcome, requests) = drive(&mut cache, *lookup, now, |io| {
                    answer(&mut u, io).unwrap_or_else(|_| timeout(io))
                });
                assert!(
                    requests <= 2,
                    "a lookup makes at most a TXT query and a fetch"
                );
                outcome
            }
            _ => continue, // another caller's lookup: this loop has none under way
        };
        // The MTA's decision for its MX hosts, whatever the policy said.
        let evaluation = cache.evaluate(
            "example.com",
            &outcome,
            ["mx1.example.com", "mx.example.net"],
        );
        assert_eq!(evaluation.candidates().len(), 2);
    }
});
