//! A deterministic harness for the engine (after quinn's `Pair` and str0m's `TestRtc`): a virtual
//! clock, a scripted network and a driver that fails on livelock.
#![allow(dead_code, unreachable_pub)]

use core::time::Duration;
use std::collections::HashMap;

use mta_sts_core::io::{
    DnsFailure, FetchFailure, FetchResponse, FetchResult, Io, TxtAnswer, TxtResult,
};
use mta_sts_core::{
    Begin, Config, IoResult, Lookup, Outcome, PolicyCache, Resolution, Step, UnixTime,
};

/// 2023-11-14T22:13:20Z: where every timeline starts.
pub const T0: UnixTime = UnixTime::from_secs(1_700_000_000);
pub const MINUTE: Duration = Duration::from_secs(60);
pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(86_400);

/// A policy body.
pub fn body(mode: &str, max_age: u32, mx: &[&str]) -> String {
    let mut s = format!("version: STSv1\r\nmode: {mode}\r\n");
    for m in mx {
        s.push_str(&format!("mx: {m}\r\n"));
    }
    s.push_str(&format!("max_age: {max_age}\r\n"));
    s
}

pub fn ok_policy(body: &str) -> FetchResult {
    Ok(FetchResponse::new(
        200,
        Some("text/plain; charset=utf-8"),
        body,
    ))
}

pub fn txt_id(id: &str) -> TxtResult {
    Ok(TxtAnswer::Records(vec![
        b"v=spf1 -all".to_vec(),
        format!("v=STSv1; id={id};").into_bytes(),
    ]))
}

/// The scripted network: answers by name, and a log of every request.
#[derive(Debug, Default)]
pub struct Net {
    txt: HashMap<String, TxtResult>,
    fetch: HashMap<String, FetchResult>,
    pub log: Vec<Io>,
}

impl Net {
    pub fn answer(&mut self, io: &Io) -> IoResult {
        self.log.push(io.clone());
        match io {
            Io::Txt(q) => IoResult::Txt(
                self.txt
                    .get(&q.name)
                    .cloned()
                    .unwrap_or(Ok(TxtAnswer::NXDOMAIN)),
            ),
            Io::Fetch(f) => IoResult::Fetch(
                self.fetch
                    .get(&f.host)
                    .cloned()
                    .unwrap_or_else(|| Err(FetchFailure::Resolve("no such host".into()))),
            ),
        }
    }
}

/// Drives a lookup to its end against `net`; panics after 4 steps (a lookup makes at most 2).
pub fn drive(mut lookup: Lookup, net: &mut Net, now: UnixTime) -> Resolution {
    for _ in 0..4 {
        match lookup.poll() {
            Step::Io(io) => {
                let r = net.answer(&io);
                lookup.handle(r, now).expect("result matches request");
            }
            Step::Done(r) => return r,
        }
    }
    panic!("lookup did not finish in 4 steps: livelock");
}

/// A cache, a virtual clock and a scripted network.
#[derive(Debug)]
pub struct World {
    pub cache: PolicyCache,
    pub now: UnixTime,
    pub net: Net,
}

impl World {
    pub fn new() -> Self {
        Self::with(Config::default())
    }

    pub fn with(config: Config) -> Self {
        Self {
            cache: PolicyCache::new(config),
            now: T0,
            net: Net::default(),
        }
    }

    /// Publishes a TXT id and a policy for `domain`.
    pub fn publish(&mut self, domain: &str, id: &str, body: &str) {
        self.set_txt(domain, txt_id(id));
        self.set_fetch(domain, ok_policy(body));
    }

    pub fn set_txt(&mut self, domain: &str, r: TxtResult) {
        self.net.txt.insert(format!("_mta-sts.{domain}"), r);
    }

    pub fn set_fetch(&mut self, domain: &str, r: FetchResult) {
        self.net.fetch.insert(format!("mta-sts.{domain}"), r);
    }

    pub fn servfail(&mut self, domain: &str) {
        self.set_txt(domain, Err(DnsFailure::ServerFailure));
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now.saturating_add(d);
    }

    /// Resolves the policy for a delivery, as an adapter would.
    pub fn deliver(&mut self, domain: &str) -> Outcome {
        let begin = self.cache.begin(domain, self.now);
        self.finish(begin)
    }

    /// Re-checks the TXT id before a permanent failure (R39).
    pub fn recheck(&mut self, domain: &str) -> Outcome {
        let begin = self.cache.begin_recheck(domain, self.now);
        self.finish(begin)
    }

    fn finish(&mut self, begin: Begin) -> Outcome {
        match begin {
            Begin::Ready(o) => o,
            Begin::Started(l) => {
                let r = drive(*l, &mut self.net, self.now);
                self.cache.apply(r, self.now)
            }
            Begin::InProgress(d) => panic!("{d} unexpectedly in progress"),
        }
    }

    /// Runs every refresh due now; returns their outcomes.
    pub fn refresh_due(&mut self) -> Vec<Outcome> {
        let mut out = Vec::new();
        while let Some(l) = self.cache.poll_refresh(self.now) {
            let r = drive(l, &mut self.net, self.now);
            out.push(self.cache.apply(r, self.now));
            assert!(out.len() <= 1_000_000, "refresh livelock");
        }
        out
    }

    /// Moves the clock to `until`, stopping at each timer of the cache to run refreshes (like
    /// quinn's `Pair::drive`). Returns the refresh outcomes.
    pub fn run_until(&mut self, until: UnixTime) -> Vec<Outcome> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            match self.cache.poll_timeout() {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    out.extend(self.refresh_due());
                }
                _ => {
                    self.now = self.now.max(until);
                    return out;
                }
            }
        }
        panic!("timers did not settle before {until}");
    }

    /// (TXT queries, fetches) made since the log was last cleared.
    pub fn io(&self) -> (usize, usize) {
        let txt = self
            .net
            .log
            .iter()
            .filter(|i| matches!(i, Io::Txt(_)))
            .count();
        (txt, self.net.log.len() - txt)
    }

    /// Clears the request log and returns it.
    pub fn take_log(&mut self) -> Vec<Io> {
        core::mem::take(&mut self.net.log)
    }
}
