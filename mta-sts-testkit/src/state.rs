//! The world's mutable data (domains, extra records, faults) and its counters.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::scenario::{DnsFault, Domain, Record, RecordType, TxtSetting};

/// Names are compared in lower case, without the root dot.
pub(crate) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// Upper bound on the number of labels walked for one name (a DNS name has at most 127).
const MAX_LABELS: usize = 128;

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) domains: HashMap<String, Domain>,
    pub(crate) records: HashMap<String, Vec<Record>>,
    pub(crate) faults: HashMap<(String, Option<RecordType>), DnsFault>,
    /// Apexes of the zones whose answers carry the AD bit (normalized).
    pub(crate) signed_zones: HashSet<String>,
    pub(crate) ttl: u32,
}

impl State {
    /// The records at `name` (normalized), or `None` when the name does not exist (NXDOMAIN).
    pub(crate) fn records_at(&self, name: &str) -> Option<Vec<Record>> {
        let mut out = Vec::new();
        let mut exists = false;
        if let Some(extra) = self.records.get(name) {
            exists = true;
            out.extend(extra.iter().cloned());
        }
        let mut apex = name;
        for _ in 0..MAX_LABELS {
            if let Some(d) = self.domains.get(apex) {
                let rel = name
                    .strip_suffix(apex)
                    .map(|p| p.strip_suffix('.').unwrap_or(p))
                    .unwrap_or(name);
                exists |= domain_records(name, rel, apex, d, self.ttl, &mut out);
            }
            match apex.find('.') {
                Some(i) => apex = &apex[i + 1..],
                None => break,
            }
        }
        exists.then_some(out)
    }

    /// The fault for a query, if any: per name and type, then per name, then the domain's
    /// TXT fault.
    pub(crate) fn fault(&self, name: &str, rtype: RecordType) -> Option<DnsFault> {
        if let Some(f) = self.faults.get(&(name.to_owned(), Some(rtype))) {
            return Some(*f);
        }
        if let Some(f) = self.faults.get(&(name.to_owned(), None)) {
            return Some(*f);
        }
        let domain = name.strip_prefix("_mta-sts.")?;
        self.domains.get(domain)?.txt_fault
    }

    /// Whether `name` (normalized) is at or under a signed zone.
    pub(crate) fn is_signed(&self, name: &str) -> bool {
        if self.signed_zones.is_empty() {
            return false;
        }
        let mut apex = name;
        for _ in 0..MAX_LABELS {
            if self.signed_zones.contains(apex) {
                return true;
            }
            match apex.find('.') {
                Some(i) => apex = &apex[i + 1..],
                None => break,
            }
        }
        // The root zone, when signed, covers every name.
        self.signed_zones.contains("")
    }

    /// The SOA for negative answers about `name`: the closest enclosing domain's, or the
    /// root's.
    pub(crate) fn soa_for(&self, name: &str) -> (String, Record) {
        let mut apex = name;
        for _ in 0..MAX_LABELS {
            if self.domains.contains_key(apex) {
                return (apex.to_owned(), soa(apex, self.ttl));
            }
            match apex.find('.') {
                Some(i) => apex = &apex[i + 1..],
                None => break,
            }
        }
        (String::new(), soa("", self.ttl))
    }

    /// The domain whose policy host is `host` (`mta-sts.<domain>`).
    pub(crate) fn policy_domain(&self, host: &str) -> Option<&Domain> {
        self.domains.get(host.strip_prefix("mta-sts.")?)
    }
}

fn soa(apex: &str, ttl: u32) -> Record {
    let join = |label: &str| {
        if apex.is_empty() {
            format!("{label}.testkit.invalid")
        } else {
            format!("{label}.{apex}")
        }
    };
    Record::Soa {
        mname: join("ns"),
        rname: join("hostmaster"),
        serial: 1,
        minimum: ttl,
    }
}

/// Adds the records domain `apex` defines at `name` (`rel` is `name` relative to the apex,
/// empty at the apex). Returns whether the domain defines the name.
fn domain_records(
    name: &str,
    rel: &str,
    apex: &str,
    d: &Domain,
    ttl: u32,
    out: &mut Vec<Record>,
) -> bool {
    match rel {
        "" => {
            out.extend(d.mx_list().into_iter().map(|(p, h)| Record::Mx(p, h)));
            out.push(soa(apex, ttl));
            true
        }
        "_mta-sts" => match &d.txt {
            TxtSetting::Records(v) => {
                out.extend(v.iter().cloned().map(Record::Txt));
                !v.is_empty()
            }
            TxtSetting::Cname(t) => {
                out.push(Record::Cname(t.clone()));
                true
            }
        },
        "mta-sts" => {
            out.extend(d.host_addrs.iter().map(|ip| match ip {
                IpAddr::V4(v4) => Record::A(*v4),
                IpAddr::V6(v6) => Record::Aaaa(*v6),
            }));
            true
        }
        _ if d.mx_list().iter().any(|(_, h)| h == name) => {
            out.push(Record::A(Ipv4Addr::LOCALHOST));
            true
        }
        _ => false,
    }
}

/// Most distinct keys a counter map holds; further keys are counted only in the totals.
const MAX_COUNTER_KEYS: usize = 65_536;
/// Requests remembered per host.
const MAX_REQUESTS_KEPT: usize = 64;

/// An HTTP request the HTTPS server received, as recorded by
/// [`World::requests`](crate::World::requests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The TLS SNI host name the request came in under.
    pub host: String,
    /// The request method, e.g. `GET`.
    pub method: String,
    /// The request target, e.g. `/.well-known/mta-sts.txt`.
    pub path: String,
    /// The minor HTTP version (`1` for HTTP/1.1).
    pub version: u8,
    /// The headers in order, values lossily decoded.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct HostStats {
    handshakes: usize,
    fetches: usize,
    recent: VecDeque<Request>,
}

#[derive(Debug, Default)]
struct CounterMaps {
    /// (name, type) -> [udp, tcp]
    dns: HashMap<(String, u16), [usize; 2]>,
    dns_total: usize,
    hosts: HashMap<String, HostStats>,
    fetch_total: usize,
}

/// How many of something are under way now, and the most there have been at once.
#[derive(Debug, Default)]
pub(crate) struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    /// One more is under way until [`leave`](Self::leave) is called.
    pub(crate) fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    /// One fewer is under way.
    pub(crate) fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    /// One more is under way until the guard is dropped.
    pub(crate) fn hold(&self) -> Held<'_> {
        self.enter();
        Held(self)
    }

    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// The peak starts again from what is under way now.
    fn reset_peak(&self) {
        self.peak
            .store(self.now.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// One under way in a [`Gauge`], until dropped.
#[derive(Debug)]
pub(crate) struct Held<'a>(&'a Gauge);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    maps: Mutex<CounterMaps>,
    /// DNS queries received (UDP or TCP) and not yet answered (left just before the answer is
    /// sent).
    pub(crate) dns_in_flight: Gauge,
    /// HTTPS connections being served, from the server's first read of the connection to the
    /// request read (the response follows).
    pub(crate) https_in_flight: Gauge,
}

impl Counters {
    pub(crate) fn dns_query(&self, name: &str, rtype: u16, tcp: bool) {
        let mut m = lock(&self.maps);
        m.dns_total += 1;
        let key = (name.to_owned(), rtype);
        if m.dns.len() < MAX_COUNTER_KEYS || m.dns.contains_key(&key) {
            m.dns.entry(key).or_default()[usize::from(tcp)] += 1;
        }
    }

    pub(crate) fn queries(&self, name: &str, rtype: u16) -> [usize; 2] {
        let m = lock(&self.maps);
        m.dns
            .get(&(normalize(name), rtype))
            .copied()
            .unwrap_or_default()
    }

    pub(crate) fn total_queries(&self) -> usize {
        lock(&self.maps).dns_total
    }

    fn host<'a>(m: &'a mut CounterMaps, host: &str) -> Option<&'a mut HostStats> {
        if m.hosts.len() < MAX_COUNTER_KEYS || m.hosts.contains_key(host) {
            Some(m.hosts.entry(host.to_owned()).or_default())
        } else {
            None
        }
    }

    pub(crate) fn handshake(&self, host: &str) {
        let mut m = lock(&self.maps);
        if let Some(h) = Self::host(&mut m, host) {
            h.handshakes += 1;
        }
    }

    pub(crate) fn fetch(&self, req: Request) {
        let mut m = lock(&self.maps);
        m.fetch_total += 1;
        if let Some(h) = Self::host(&mut m, &req.host.clone()) {
            h.fetches += 1;
            if h.recent.len() == MAX_REQUESTS_KEPT {
                h.recent.pop_front();
            }
            h.recent.push_back(req);
        }
    }

    pub(crate) fn handshakes(&self, host: &str) -> usize {
        lock(&self.maps)
            .hosts
            .get(&normalize(host))
            .map_or(0, |h| h.handshakes)
    }

    pub(crate) fn fetches(&self, host: &str) -> usize {
        lock(&self.maps)
            .hosts
            .get(&normalize(host))
            .map_or(0, |h| h.fetches)
    }

    pub(crate) fn total_fetches(&self) -> usize {
        lock(&self.maps).fetch_total
    }

    pub(crate) fn requests(&self, host: &str) -> Vec<Request> {
        lock(&self.maps)
            .hosts
            .get(&normalize(host))
            .map(|h| h.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn reset(&self) {
        *lock(&self.maps) = CounterMaps::default();
        self.dns_in_flight.reset_peak();
        self.https_in_flight.reset_peak();
    }
}
