//! The lookup state machine and the policy cache, fed arbitrary I/O results, clock jumps and
//! interleavings of several lookups at once (deliveries, rechecks, refreshes, abandons,
//! snapshots), with the callers modelled as an adapter runs them: the caller handed a lookup
//! drives its flight, a caller told `InProgress(id)` waits on flight `id` and gets its outcome,
//! and the waiters of an abandoned flight begin again.
//!
//! Checks: nothing panics; a lookup makes at most two requests; the cache keeps its structure
//! and bounds; an unexpired cached policy is never replaced by nothing; expiry never moves
//! without a fetch; a snapshot reloads to the same snapshot. For the flights, against a model of
//! the flight table kept here: `cache.flight` always reports the model's flight (registered,
//! not ended, within `lookup_deadline`); a flight is registered exactly when fewer than
//! `max_in_flight` are under way, and `stats().in_flight` stays within that bound; flight ids
//! are never reused; `InProgress` names only the domain's live flight, which a pending lookup
//! of the same domain drives, never one started over the bound; while a flight is under way no
//! second lookup starts for its domain; ending a flight (apply or abandon) never ends another,
//! so a stale lookup applied late leaves the newer flight; a fresh cached policy answers a
//! delivery at once or, with `recheck_after` due (always with `Some(0)`), starts a re-check;
//! and once every lookup handed out has ended, no waiter is left and nothing is in flight.
#![no_main]

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mta_sts_core::io::{
    DnsFailure, FetchFailure, FetchResponse, FetchResult, Io, TxtAnswer, TxtResult,
};
use mta_sts_core::{
    Begin, CacheReason, Config, FlightId, IoResult, Lookup, LookupKind, NoPolicyReason, Outcome,
    PolicyCache, PolicyDomain, Step, UnixTime,
};

const DOMAINS: [&str; 5] = [
    "example.com",
    "EXAMPLE.com.",
    "mail.example.com",
    "xn--bcher-kva.example",
    "[192.0.2.1]",
];
const MAX_PENDING: usize = 6;
const MAX_WAITERS: usize = 8;
const MAX_STEPS: usize = 256;

/// A negative TTL: none (no SOA), or any number of seconds the wire allows.
fn negative_ttl(u: &mut Unstructured<'_>) -> Result<Option<Duration>> {
    let secs: Option<u32> = u.arbitrary()?;
    Ok(secs.map(|s| Duration::from_secs(u64::from(s))))
}

fn txt(u: &mut Unstructured<'_>) -> Result<TxtResult> {
    Ok(match u.int_in_range(0..=7)? {
        0 => Ok(TxtAnswer::NxDomain {
            negative_ttl: negative_ttl(u)?,
        }),
        1 => Ok(TxtAnswer::NoData {
            negative_ttl: negative_ttl(u)?,
        }),
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

/// A lookup the harness drives: the caller that was handed it.
struct Driver {
    lookup: Lookup,
    flight: FlightId,
    requests: u8,
}

/// A caller waiting on a flight, with the name it asked for (it begins again with that name
/// if the flight is abandoned).
struct Waiter {
    flight: FlightId,
    domain: &'static str,
}

/// Applies a finished lookup, checking what it may do to the cached policy.
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

struct Harness {
    cache: PolicyCache,
    now: UnixTime,
    drivers: Vec<Driver>,
    waiters: Vec<Waiter>,
    /// The model of the cache's flight table: per normalised domain, the flight registered and
    /// until when it counts as under way. Kept from what the cache hands out and from the rules
    /// of the contract, never read from the cache, so that the cache is checked against it.
    flights: BTreeMap<String, (FlightId, UnixTime)>,
    /// Every flight id handed out, to check that none is reused.
    seen: BTreeSet<FlightId>,
    /// The flights of lookups started over `max_in_flight`: never to be waited on.
    unregistered: BTreeSet<FlightId>,
    /// Callers that waited on a flight, and of those, the ones that got its outcome (they are
    /// done) and the ones that began again after it was abandoned.
    waited: u64,
    served: u64,
    restarted: u64,
    last: Outcome,
}

impl Harness {
    fn new(u: &mut Unstructured<'_>) -> Result<Self> {
        let mut config = Config::default();
        config.capacity = u.int_in_range(0..=4)?;
        config.max_in_flight = u.int_in_range(0..=3)?;
        config.negative_capacity = u.int_in_range(0..=3)?;
        config.seed = u.arbitrary()?;
        config.idle_after = Duration::from_secs(u.int_in_range(0..=20 * 86_400)?);
        config.refresh_interval = Duration::from_secs(u.int_in_range(0..=2 * 86_400)?);
        // Not zero: with no deadline nothing is ever under way, and no flight could be checked.
        config.lookup_deadline = Duration::from_secs(*u.choose(&[1, 60, 300, 3600])?);
        config.recheck_after = match u.int_in_range(0..=3)? {
            0 => None,
            1 => Some(Duration::ZERO),
            2 => Some(Duration::from_secs(u.int_in_range(1..=600)?)),
            _ => Some(Duration::from_secs(u.int_in_range(86_400..=30 * 86_400)?)),
        };
        Ok(Self {
            cache: PolicyCache::new(config),
            now: UnixTime::from_secs(u.int_in_range(0..=2_000_000_000)?),
            drivers: Vec::new(),
            waiters: Vec::new(),
            flights: BTreeMap::new(),
            seen: BTreeSet::new(),
            unregistered: BTreeSet::new(),
            waited: 0,
            served: 0,
            restarted: 0,
            last: Outcome::NoPolicy(NoPolicyReason::Disabled),
        })
    }

    /// The model's flight under way for a normalised domain.
    fn live(&self, domain: &str) -> Option<FlightId> {
        let (id, until) = self.flights.get(domain)?;
        (self.now < *until).then_some(*id)
    }

    /// The flights under way: stale ones still in the model do not count towards the bound,
    /// as the cache purges them when it is full.
    fn live_count(&self) -> usize {
        self.flights.values().filter(|(_, until)| self.now < *until).count()
    }

    /// A lookup handed out by the cache at `now`: a new flight id, registered exactly when
    /// fewer than `max_in_flight` flights are under way (the domain has none: checked by the
    /// caller). Returns its flight.
    fn handed_out(&mut self, lookup: &Lookup) -> FlightId {
        let id = lookup.flight().expect("a lookup the cache starts has a flight");
        assert!(self.seen.insert(id), "{id} handed out twice");
        if self.live_count() < self.cache.config().max_in_flight {
            let until = self.now.saturating_add(self.cache.config().lookup_deadline);
            self.flights.insert(lookup.domain().as_str().to_owned(), (id, until));
        } else {
            self.unregistered.insert(id);
        }
        id
    }

    /// Holds a lookup handed out, or gives it up at once when the harness holds enough (it has
    /// no waiters yet, so nobody starts over).
    fn drive(&mut self, lookup: Lookup, flight: FlightId) {
        if self.drivers.len() < MAX_PENDING {
            self.drivers.push(Driver { lookup, flight, requests: 0 });
        } else {
            let domain = lookup.domain().clone();
            self.end(&domain, flight, |cache| cache.abandon(&domain, flight));
        }
    }

    /// Ends `flight` of `domain` in the cache (by `how`: apply or abandon) and in the model:
    /// only if it is still the domain's registered flight, so a stale flight ends no newer one.
    fn end<T>(
        &mut self,
        domain: &PolicyDomain,
        flight: FlightId,
        how: impl FnOnce(&mut PolicyCache) -> T,
    ) -> T {
        let d = domain.as_str();
        let other = self.live(d).filter(|&f| f != flight);
        let result = how(&mut self.cache);
        if self.flights.get(d).is_some_and(|(f, _)| *f == flight) {
            self.flights.remove(d);
        }
        let left = self.cache.flight(d, self.now);
        assert_eq!(left, other, "ending {flight} of {d} left the wrong flight under way");
        result
    }

    /// A caller for `domain`: a delivery, or a re-check before a permanent failure.
    fn call(&mut self, domain: &'static str, recheck: bool) {
        let now = self.now;
        let key = PolicyDomain::parse(domain).ok();
        let live = key.as_ref().and_then(|d| self.live(d.as_str()));
        let fresh = self.cache.peek(domain).is_some_and(|p| p.is_fresh(now));
        let absent = self.cache.peek_absent(domain, now).is_some();
        assert!(!(fresh && absent), "{domain}: a negative answer beside a fresh policy");
        let recheck_after = self.cache.config().recheck_after;
        let begin = if recheck {
            self.cache.begin_recheck(domain, now)
        } else {
            self.cache.begin(domain, now)
        };
        match begin {
            Begin::Ready(o) => {
                if let Some(p) = o.policy() {
                    assert!(p.is_fresh(now) || matches!(o, Outcome::Fetched(_)));
                }
                if key.is_some() && absent && !fresh {
                    // A remembered negative answer (S9), to a delivery only.
                    assert!(!recheck, "a re-check always asks");
                    let no_record = matches!(&o, Outcome::NoPolicy(NoPolicyReason::NoRecord(_)));
                    assert!(no_record, "{o:?}");
                } else if key.is_some() {
                    // Without I/O, a valid name is answered only from a fresh policy, and only
                    // to a delivery; with a re-check due at every delivery, only while another
                    // lookup of the domain is under way.
                    assert!(!recheck && fresh, "{domain} answered at once without a fresh policy");
                    let hit = matches!(&o, Outcome::Cached { reason: CacheReason::Fresh, .. });
                    assert!(hit, "{o:?}");
                    assert!(recheck_after != Some(Duration::ZERO) || live.is_some(), "no re-check");
                } else {
                    assert!(matches!(o, Outcome::NoPolicy(_)), "{o:?}");
                }
                self.last = o;
            }
            Begin::Started(l) => {
                let key = key.expect("a lookup starts only for a valid name");
                assert_eq!(l.domain(), &key);
                assert_eq!(live, None, "a second lookup of {key} started during {live:?}");
                // A delivery on a fresh policy starts only the re-check `recheck_after` asks for.
                let kind =
                    if recheck || fresh { LookupKind::Recheck } else { LookupKind::Delivery };
                assert_eq!(l.kind(), kind);
                assert!(recheck || !fresh || recheck_after.is_some(), "re-check not configured");
                let flight = self.handed_out(&l);
                self.drive(*l, flight);
            }
            Begin::InProgress(id) => {
                let key = key.expect("only a valid name has a flight");
                assert_eq!(live, Some(id), "{key}: told to wait on {id}, the model has {live:?}");
                assert_eq!(self.cache.flight(domain, now), Some(id));
                assert!(!self.unregistered.contains(&id), "{id} started over the bound is named");
                assert!(recheck || !fresh, "a fresh policy made a delivery wait");
                let driver = self.drivers.iter().find(|p| p.flight == id);
                let driver = driver.unwrap_or_else(|| panic!("{id} is named but nobody drives it"));
                assert_eq!(driver.lookup.domain(), &key, "{id} is another domain's flight");
                // Beyond the bound, the caller gives up waiting (as on a timeout).
                if self.waiters.len() < MAX_WAITERS {
                    self.waiters.push(Waiter { flight: id, domain });
                    self.waited += 1;
                }
            }
        }
    }

    /// A proactive refresh, if one is due.
    fn refresh(&mut self) {
        let Some(l) = self.cache.poll_refresh(self.now) else {
            return;
        };
        assert_eq!(l.kind(), LookupKind::Refresh);
        let d = l.domain().as_str();
        assert_eq!(self.live(d), None, "a refresh of {d} started during another flight");
        assert!(self.live_count() < self.cache.config().max_in_flight, "refresh over the bound");
        let flight = self.handed_out(&l);
        self.drive(l, flight);
    }

    /// Hands a result to driver `i`'s request, or applies its lookup once finished.
    fn step(&mut self, i: usize, u: &mut Unstructured<'_>) -> Result<()> {
        let p = &mut self.drivers[i];
        match p.lookup.poll() {
            Step::Io(io) => {
                let wrong = u.ratio(1, 16)?;
                let result = match (io, wrong) {
                    (Io::Txt(_), false) | (Io::Fetch(_), true) => IoResult::Txt(txt(u)?),
                    _ => IoResult::Fetch(fetch(u)?),
                };
                let handled = p.lookup.handle(result, self.now);
                assert_eq!(handled.is_ok(), !wrong);
                p.requests += u8::from(!wrong);
                assert!(p.requests <= 2, "more than two requests");
            }
            Step::Done(_) => self.finish(i),
        }
        Ok(())
    }

    /// Driver `i`'s lookup is finished: its outcome goes to every waiter of its flight.
    fn finish(&mut self, i: usize) {
        let p = self.drivers.swap_remove(i);
        let Step::Done(resolution) = p.lookup.poll() else {
            unreachable!("finished")
        };
        assert_eq!(resolution.flight(), Some(p.flight), "the resolution names another flight");
        let domain = p.lookup.domain().clone();
        let now = self.now;
        let outcome = self.end(&domain, p.flight, |cache| apply(cache, p.lookup, now));
        let before = self.waiters.len();
        self.waiters.retain(|w| w.flight != p.flight);
        self.served += (before - self.waiters.len()) as u64;
        self.last = outcome.expect("done");
    }

    /// Driver `i` gives up: its flight ends, and its waiters begin again (as deliveries).
    fn give_up(&mut self, i: usize) {
        let p = self.drivers.swap_remove(i);
        let domain = p.lookup.domain().clone();
        self.end(&domain, p.flight, |cache| cache.abandon(&domain, p.flight));
        let (again, keep) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition::<Vec<_>, _>(|w| w.flight == p.flight);
        self.waiters = keep;
        self.restarted += again.len() as u64;
        for w in again {
            self.call(w.domain, false);
        }
    }

    /// The flight table against the model, after every step.
    fn check(&self) {
        self.cache.check_invariants();
        for domain in DOMAINS {
            let live = PolicyDomain::parse(domain).ok().and_then(|d| self.live(d.as_str()));
            assert_eq!(self.cache.flight(domain, self.now), live, "the flight of {domain}");
        }
        let in_flight = self.cache.stats().in_flight;
        assert!(in_flight <= self.cache.config().max_in_flight, "{in_flight} flights");
        assert!(in_flight >= self.live_count(), "a flight under way is not counted");
    }

    fn run(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        for _ in 0..MAX_STEPS {
            if u.is_empty() {
                break;
            }
            match u.int_in_range(0..=8)? {
                0 | 1 => {
                    let domain = *u.choose(&DOMAINS)?;
                    let recheck = u.arbitrary()?;
                    self.call(domain, recheck);
                }
                2 => self.refresh(),
                3 => {
                    let deadline = self.cache.config().lookup_deadline.as_secs();
                    let secs: u64 = match u.int_in_range(0..=4)? {
                        0 => u.int_in_range(0..=600)?,
                        1 => u.int_in_range(0..=8 * 86_400)?,
                        2 => self.cache.poll_timeout().map_or(0, |t| t.since(self.now).as_secs()),
                        // To just before, at or just after the deadline of a flight begun now.
                        3 => deadline + u.int_in_range(0..=2)? - 1,
                        _ => u.arbitrary()?,
                    };
                    self.now = self.now.saturating_add(Duration::from_secs(secs));
                }
                4..=6 if !self.drivers.is_empty() => {
                    let i = u.choose_index(self.drivers.len())?;
                    self.step(i, u)?;
                }
                7 if !self.drivers.is_empty() => {
                    let i = u.choose_index(self.drivers.len())?;
                    self.give_up(i);
                }
                _ => {
                    let hosts = ["mail.example.com", "x.example.com", "evil.example", "192.0.2.1"];
                    let n = u.int_in_range(0..=hosts.len())?;
                    let domain = *u.choose(&DOMAINS)?;
                    let e = self.cache.evaluate(domain, &self.last, hosts[..n].iter().copied());
                    assert_eq!(e.candidates().len(), n);
                    let snapshot = self.cache.export(self.now);
                    let mut other = PolicyCache::new(self.cache.config().clone());
                    let report =
                        other.import(snapshot.clone(), self.now).expect("own snapshot loads");
                    assert_eq!(report.loaded, snapshot.entries().len());
                    assert_eq!((report.skipped, report.expired, report.not_loaded), (0, 0, 0));
                    assert_eq!(other.export(self.now), snapshot);
                    other.check_invariants();
                }
            }
            self.check();
        }
        Ok(())
    }

    /// Finishes every lookup still pending (each TXT query answers NXDOMAIN, each fetch times
    /// out); then every waiter has its outcome and no flight is left in the table.
    fn drain(&mut self) {
        while let Some(i) = self.drivers.len().checked_sub(1) {
            let p = &mut self.drivers[i];
            while let Step::Io(io) = p.lookup.poll() {
                let result = match io {
                    Io::Txt(_) => IoResult::Txt(Ok(TxtAnswer::NXDOMAIN)),
                    _ => IoResult::Fetch(Err(FetchFailure::Timeout)),
                };
                p.lookup.handle(result, self.now).expect("the result asked for");
                p.requests += 1;
                assert!(p.requests <= 2, "more than two requests");
            }
            self.finish(i);
            self.check();
        }
        assert!(self.waiters.is_empty(), "waiters left on a flight nobody drives");
        assert_eq!(self.waited, self.served + self.restarted, "a waiter was lost");
        assert!(self.flights.is_empty());
        assert_eq!(self.cache.stats().in_flight, 0, "a flight outlived its lookup");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(mut harness) = Harness::new(&mut u) else {
        return;
    };
    // Out of input mid-step is the end of the run, not a failure.
    let _ = harness.run(&mut u);
    harness.drain();
});
