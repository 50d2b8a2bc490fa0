//! DANE precedence (REQUIREMENTS.md section I, D1–D10): the DANE lookup, state, cache and
//! precedence over MTA-STS, with canned DNSSEC answers in virtual time.

use std::collections::HashMap;
use std::net::IpAddr;

use core::time::Duration;

use mta_sts_core::io::{
    DnsFailure, DnssecAnswer, DnssecData, DnssecQuery, DnssecResult, DnssecType, FetchResponse, Io,
    TxtAnswer,
};
use mta_sts_core::{
    Begin, CandidateDane, Config, DaneAbsent, DaneBegin, DaneCache, DaneConfig, DaneIndeterminate,
    DaneLookup, DaneLookupError, DaneQueryId, DaneState, DaneStep, DeferReason, DomainSettings,
    Evaluation, HostCoverage, IoResult, MAX_DANE_HOSTS, MAX_TLSA_RECORDS, Mode, MxDecision,
    NoPolicyReason, NotCoveredReason, Outcome, PolicyCache, Precedence, SkipReason, Step, StsUsage,
    Tlsa, UnixTime, Verdict, WhenAllFail,
};

const T0: UnixTime = UnixTime::from_secs(1_700_000_000);

// ----- A canned DNSSEC world -----

/// Canned answers by (name, type); a query without one gets a timeout.
#[derive(Default, Clone)]
struct Dns {
    answers: HashMap<(String, DnssecType), DnssecResult>,
}

fn secure(ttl: u32, data: DnssecData) -> DnssecResult {
    Ok(DnssecAnswer::new(true, ttl, data))
}

fn insecure(ttl: u32, data: DnssecData) -> DnssecResult {
    Ok(DnssecAnswer::new(false, ttl, data))
}

fn ee() -> Tlsa {
    Tlsa::new(3, 1, 1, vec![0xab; 32])
}

fn ta() -> Tlsa {
    Tlsa::new(2, 0, 2, vec![0xcd; 64])
}

fn pkix_ee() -> Tlsa {
    Tlsa::new(1, 1, 1, vec![0xab; 32])
}

fn v4() -> DnssecData {
    DnssecData::Addrs(vec!["192.0.2.25".parse().unwrap()])
}

fn v6() -> DnssecData {
    DnssecData::Addrs(vec!["2001:db8::25".parse().unwrap()])
}

impl Dns {
    fn set(&mut self, name: &str, rtype: DnssecType, r: DnssecResult) -> &mut Self {
        self.answers.insert((name.to_owned(), rtype), r);
        self
    }

    fn mx(&mut self, r: DnssecResult) -> &mut Self {
        self.set("example.com", DnssecType::Mx, r)
    }

    fn mx_hosts(&mut self, hosts: &[(u16, &str)]) -> &mut Self {
        let v = hosts.iter().map(|(p, h)| (*p, (*h).to_owned())).collect();
        self.mx(secure(3600, DnssecData::Mx(v)))
    }

    /// A host with secure A and AAAA (ttl 3600) and this TLSA result.
    fn host(&mut self, name: &str, tlsa: DnssecResult) -> &mut Self {
        self.set(name, DnssecType::A, secure(3600, v4()));
        self.set(name, DnssecType::Aaaa, secure(3600, v6()));
        self.set(&format!("_25._tcp.{name}"), DnssecType::Tlsa, tlsa)
    }

    fn answer(&self, q: &DnssecQuery) -> DnssecResult {
        self.answers
            .get(&(q.name.clone(), q.rtype))
            .cloned()
            .unwrap_or(Err(DnsFailure::Timeout))
    }
}

/// What a driven lookup did.
struct Run {
    state: DaneState,
    queries: Vec<DnssecQuery>,
    /// The most queries under way at once.
    max_in_flight: usize,
}

/// Drives a lookup as an adapter does: send every query `poll` gives, then answer the oldest
/// one under way (or the newest, with `lifo`), until `Done`.
fn drive(dns: &Dns, mut lookup: DaneLookup, lifo: bool) -> Run {
    let mut queries = Vec::new();
    let mut in_flight: Vec<(DaneQueryId, DnssecQuery)> = Vec::new();
    let mut max_in_flight = 0;
    for _ in 0..1_000 {
        match lookup.poll() {
            DaneStep::Query(id, q) => {
                queries.push(q.clone());
                in_flight.push((id, q));
                max_in_flight = max_in_flight.max(in_flight.len());
            }
            DaneStep::Wait => {
                let (id, q) = if lifo {
                    in_flight.pop().expect("a query under way")
                } else {
                    in_flight.remove(0)
                };
                lookup
                    .handle(id, dns.answer(&q), T0)
                    .expect("a query it asked");
            }
            DaneStep::Done(resolution) => {
                return Run {
                    state: resolution.into_state(),
                    queries,
                    max_in_flight,
                };
            }
        }
    }
    panic!("the lookup did not end");
}

fn run(dns: &Dns) -> Run {
    let lookup = DaneLookup::new("example.com", &DaneConfig::default()).unwrap();
    let fifo = drive(dns, lookup.clone(), false);
    let lifo = drive(dns, lookup, true);
    // The order of answers does not matter; an indeterminate state names the first failure
    // that came in.
    if fifo.state.is_indeterminate() {
        assert!(lifo.state.is_indeterminate());
    } else {
        assert_eq!(
            fifo.state, lifo.state,
            "the order of answers does not matter"
        );
    }
    fifo
}

fn state(dns: &Dns) -> DaneState {
    run(dns).state
}

fn coverage<'a>(s: &'a DaneState, host: &str) -> &'a HostCoverage {
    s.host(host)
        .unwrap_or_else(|| panic!("{host} in {s:?}"))
        .coverage()
}

fn absent_reason(s: &DaneState) -> &DaneAbsent {
    match s {
        DaneState::Absent(why, _) => why,
        other => panic!("not absent: {other:?}"),
    }
}

fn indeterminate(s: &DaneState) -> &DaneIndeterminate {
    match s {
        DaneState::Indeterminate(why) => why,
        other => panic!("not indeterminate: {other:?}"),
    }
}

/// One MX host `mx.example.com` with this TLSA answer.
fn one_host(tlsa: DnssecResult) -> Dns {
    let mut dns = Dns::default();
    dns.mx_hosts(&[(10, "mx.example.com")])
        .host("mx.example.com", tlsa);
    dns
}

// ----- MTA-STS outcomes, from the policy cache with canned TXT and fetch -----

fn outcome_with(mode: &str) -> Outcome {
    let mut cache = PolicyCache::new(Config::default());
    let Begin::Started(lookup) = cache.begin("example.com", T0) else {
        panic!("a lookup")
    };
    let mut lookup = *lookup;
    loop {
        match lookup.poll() {
            Step::Io(Io::Txt(_)) => {
                let r = Ok(TxtAnswer::Records(vec![b"v=STSv1; id=1;".to_vec()]));
                lookup.handle(IoResult::Txt(r), T0).unwrap();
            }
            Step::Io(Io::Fetch(_)) => {
                let body =
                    format!("version: STSv1\nmode: {mode}\nmx: mx.example.com\nmax_age: 86400\n");
                let r = Ok(FetchResponse::new(200, Some("text/plain"), body));
                lookup.handle(IoResult::Fetch(r), T0).unwrap();
            }
            Step::Done(resolution) => return cache.apply(resolution, T0),
        }
    }
}

fn no_policy() -> Outcome {
    Outcome::NoPolicy(NoPolicyReason::Disabled)
}

// ----- D1: the MX RRset -----

#[test]
fn d1_mx_servfail_timeout_or_bogus_is_indeterminate() {
    for failure in [
        DnsFailure::ServerFailure, // also how a validating resolver reports "bogus"
        DnsFailure::Timeout,
        DnsFailure::Refused,
        DnsFailure::Malformed("truncated".into()),
    ] {
        let mut dns = Dns::default();
        dns.mx(Err(failure.clone()));
        let r = run(&dns);
        assert_eq!(r.queries.len(), 1, "nothing more is asked");
        let why = indeterminate(&r.state);
        assert_eq!(
            why,
            &DaneIndeterminate::Failed {
                name: "example.com".into(),
                rtype: DnssecType::Mx,
                failure
            }
        );
        assert_eq!(r.state.name(), "indeterminate");
        assert_eq!(r.state.expires_at(), None);
    }
}

#[test]
fn d1_mx_answer_of_the_wrong_kind_is_indeterminate_malformed() {
    for data in [v4(), DnssecData::Tlsa(vec![ee()])] {
        let mut dns = Dns::default();
        dns.mx(secure(300, data));
        let s = state(&dns);
        assert_eq!(
            indeterminate(&s),
            &DaneIndeterminate::WrongKind {
                name: "example.com".into(),
                rtype: DnssecType::Mx
            }
        );
        assert!(s.reason().contains("malformed"), "{}", s.reason());
    }
}

#[test]
fn d1_insecure_mx_is_absent_even_with_tlsa_behind_it() {
    let mut dns = one_host(secure(300, DnssecData::Tlsa(vec![ee()])));
    dns.mx(insecure(
        300,
        DnssecData::Mx(vec![(10, "mx.example.com".into())]),
    ));
    let r = run(&dns);
    assert_eq!(absent_reason(&r.state), &DaneAbsent::InsecureMx);
    assert_eq!(r.queries.len(), 1, "no host query for an insecure MX");
    assert!(!r.state.tls_required());
    // An insecure NXDOMAIN or NODATA proves nothing either.
    for data in [DnssecData::NxDomain, DnssecData::NoData] {
        let mut dns = Dns::default();
        dns.mx(insecure(300, data));
        assert_eq!(absent_reason(&state(&dns)), &DaneAbsent::InsecureMx);
    }
}

#[test]
fn d1_authenticated_nxdomain_is_absent() {
    let mut dns = Dns::default();
    dns.mx(secure(300, DnssecData::NxDomain));
    let s = state(&dns);
    assert_eq!(absent_reason(&s), &DaneAbsent::NxDomain);
    assert_eq!(
        s.expires_at(),
        Some(T0.saturating_add(Duration::from_secs(300)))
    );
}

#[test]
fn d1_authenticated_nodata_means_the_implicit_mx() {
    for data in [DnssecData::NoData, DnssecData::Mx(Vec::new())] {
        let mut dns = Dns::default();
        dns.mx(secure(300, data))
            .host("example.com", secure(300, DnssecData::Tlsa(vec![ee()])));
        let r = run(&dns);
        assert!(matches!(r.state, DaneState::Mandatory(_)), "{:?}", r.state);
        assert_eq!(r.state.hosts().len(), 1);
        assert_eq!(r.state.hosts()[0].name(), "example.com");
        assert!(r.queries.iter().any(|q| q.name == "_25._tcp.example.com"));
    }
}

#[test]
fn d1_null_mx_is_absent() {
    for targets in [vec![(0, ".")], vec![(0, "")], vec![(0, "."), (10, ".")]] {
        let mut dns = Dns::default();
        dns.mx_hosts(&targets);
        let r = run(&dns);
        assert_eq!(absent_reason(&r.state), &DaneAbsent::NullMx);
        assert_eq!(r.queries.len(), 1);
    }
}

// ----- D2: the hosts -----

#[test]
fn d2_hosts_in_preference_order_deduplicated() {
    let mut dns = Dns::default();
    dns.mx_hosts(&[
        (20, "mx2.example.com"),
        (10, "MX1.example.com."),
        (10, "mx1.example.com"),
        (30, "mx2.example.com."),
    ])
    .host("mx1.example.com", secure(300, DnssecData::Tlsa(vec![ee()])))
    .host("mx2.example.com", secure(300, DnssecData::Tlsa(vec![ta()])));
    let r = run(&dns);
    let names: Vec<&str> = r.state.hosts().iter().map(|h| h.name()).collect();
    assert_eq!(names, ["mx1.example.com", "mx2.example.com"]);
    assert_eq!(r.queries.len(), 1 + 3 * 2, "each host looked up once");
    assert!(matches!(r.state, DaneState::Mandatory(_)));
    assert!(r.state.host("MX2.Example.Com.").is_some());
}

#[test]
fn d2_ip_addresses_dot_and_invalid_targets_are_skipped_and_noted() {
    let mut dns = Dns::default();
    dns.mx_hosts(&[
        (5, "192.0.2.1"),
        (5, "2001:db8::1"),
        (6, "."),
        (7, "bad_name.example"),
        (8, &format!("{}.example", "a".repeat(240))),
        (10, "mx.example.com"),
    ])
    .host("mx.example.com", secure(300, DnssecData::Tlsa(vec![ee()])));
    let r = run(&dns);
    assert_eq!(r.queries.len(), 4, "only the valid host is looked up");
    assert!(matches!(r.state, DaneState::Mandatory(_)), "{:?}", r.state);
    assert_eq!(
        coverage(&r.state, "192.0.2.1"),
        &HostCoverage::Skipped(SkipReason::IpAddress)
    );
    assert_eq!(
        coverage(&r.state, "2001:db8::1"),
        &HostCoverage::Skipped(SkipReason::IpAddress)
    );
    assert_eq!(
        coverage(&r.state, "."),
        &HostCoverage::Skipped(SkipReason::NullMx)
    );
    assert!(matches!(
        coverage(&r.state, "bad_name.example"),
        HostCoverage::Skipped(SkipReason::InvalidName(_))
    ));
    // Only the hosts that can be covered are listed first.
    assert_eq!(r.state.hosts()[0].name(), "mx.example.com");
    assert_eq!(r.state.hosts().len(), 6);

    // Nothing but such targets: no host left, absent.
    let mut dns = Dns::default();
    dns.mx_hosts(&[(10, "192.0.2.1"), (20, ".")]);
    let r = run(&dns);
    assert_eq!(absent_reason(&r.state), &DaneAbsent::NoHost);
    assert_eq!(r.queries.len(), 1);
}

#[test]
fn d2_at_most_sixteen_hosts_are_looked_up() {
    let names: Vec<String> = (0..40).map(|i| format!("mx{i:02}.example.com")).collect();
    let mut dns = Dns::default();
    let targets: Vec<(u16, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (u16::try_from(40 - i).unwrap(), n.as_str()))
        .collect();
    dns.mx_hosts(&targets);
    for n in &names {
        dns.host(n, secure(300, DnssecData::Tlsa(vec![ee()])));
    }
    let r = run(&dns);
    assert_eq!(r.queries.len(), 1 + 3 * MAX_DANE_HOSTS);
    assert!(matches!(r.state, DaneState::Mandatory(_)));
    let hosts = r.state.dane_hosts().unwrap();
    // Preference 1 is mx39: the sixteen best are mx39 … mx24.
    assert_eq!(hosts.hosts()[0].name(), "mx39.example.com");
    assert_eq!(
        coverage(&r.state, "mx23.example.com"),
        &HostCoverage::Skipped(SkipReason::TooMany)
    );
    assert_eq!(
        hosts.hosts().len(),
        2 * MAX_DANE_HOSTS,
        "noted up to a bound"
    );
    assert_eq!(hosts.omitted(), 40 - 2 * MAX_DANE_HOSTS);
}

// ----- D3: address records -----

#[test]
fn d3_all_host_queries_go_out_at_once() {
    let mut dns = Dns::default();
    dns.mx_hosts(&[(10, "mx1.example.com"), (20, "mx2.example.com")])
        .host("mx1.example.com", secure(300, DnssecData::Tlsa(vec![ee()])))
        .host("mx2.example.com", secure(300, DnssecData::Tlsa(vec![ee()])));
    let r = run(&dns);
    assert_eq!(
        r.max_in_flight, 6,
        "A, AAAA and TLSA of both hosts concurrently"
    );
    let asked: Vec<(String, DnssecType)> = r
        .queries
        .iter()
        .map(|q| (q.name.clone(), q.rtype))
        .collect();
    assert_eq!(asked[0], ("example.com".into(), DnssecType::Mx));
    assert!(asked.contains(&("_25._tcp.mx2.example.com".into(), DnssecType::Tlsa)));
    assert!(asked.contains(&("mx1.example.com".into(), DnssecType::Aaaa)));
    assert!(
        r.queries
            .iter()
            .all(|q| q.timeout == DaneConfig::default().dns_timeout)
    );
}

#[test]
fn d3_address_failure_is_indeterminate() {
    for rtype in [DnssecType::A, DnssecType::Aaaa] {
        for failure in [DnsFailure::ServerFailure, DnsFailure::Timeout] {
            let mut dns = one_host(secure(300, DnssecData::Tlsa(vec![ee()])));
            dns.set("mx.example.com", rtype, Err(failure.clone()));
            let s = state(&dns);
            assert_eq!(
                indeterminate(&s),
                &DaneIndeterminate::Failed {
                    name: "mx.example.com".into(),
                    rtype,
                    failure
                }
            );
        }
    }
}

#[test]
fn d3_insecure_addresses_leave_the_host_uncovered_and_its_tlsa_ignored() {
    // Even a failing TLSA query does not matter for a host DANE cannot cover.
    let mut dns = one_host(Err(DnsFailure::ServerFailure));
    dns.set("mx.example.com", DnssecType::A, insecure(300, v4()))
        .set(
            "mx.example.com",
            DnssecType::Aaaa,
            insecure(300, DnssecData::NoData),
        );
    let s = state(&dns);
    assert_eq!(absent_reason(&s), &DaneAbsent::NotCovered);
    assert_eq!(
        coverage(&s, "mx.example.com"),
        &HostCoverage::NotCovered(NotCoveredReason::InsecureAddresses)
    );
    // One authenticated family with addresses is enough for the host's addresses to be secure.
    let mut dns = one_host(secure(300, DnssecData::Tlsa(vec![ee()])));
    dns.set("mx.example.com", DnssecType::Aaaa, insecure(300, v6()));
    assert!(matches!(state(&dns), DaneState::Mandatory(_)));
}

#[test]
fn d3_a_host_without_address_records_is_skipped() {
    let mut dns = Dns::default();
    dns.mx_hosts(&[(10, "gone.example.com"), (20, "mx.example.com")])
        .host("mx.example.com", secure(300, DnssecData::Tlsa(vec![ee()])))
        .host(
            "gone.example.com",
            secure(300, DnssecData::Tlsa(vec![ee()])),
        )
        .set(
            "gone.example.com",
            DnssecType::A,
            secure(300, DnssecData::NxDomain),
        )
        .set(
            "gone.example.com",
            DnssecType::Aaaa,
            secure(300, DnssecData::NxDomain),
        );
    let s = state(&dns);
    assert_eq!(
        coverage(&s, "gone.example.com"),
        &HostCoverage::Skipped(SkipReason::NoAddresses)
    );
    assert!(
        matches!(s, DaneState::Mandatory(_)),
        "the other host decides: {s:?}"
    );
    // The only host has no address: no host left.
    let mut dns = one_host(secure(300, DnssecData::Tlsa(vec![ee()])));
    dns.set(
        "mx.example.com",
        DnssecType::A,
        secure(300, DnssecData::NoData),
    )
    .set(
        "mx.example.com",
        DnssecType::Aaaa,
        secure(300, DnssecData::Addrs(vec![])),
    );
    assert_eq!(absent_reason(&state(&dns)), &DaneAbsent::NoHost);
}

#[test]
fn d3_address_answer_of_the_wrong_kind_is_indeterminate_malformed() {
    let wrong: [(DnssecType, DnssecData); 4] = [
        (DnssecType::A, v6()),
        (DnssecType::Aaaa, v4()),
        (DnssecType::A, DnssecData::Tlsa(vec![ee()])),
        (
            DnssecType::Aaaa,
            DnssecData::Mx(vec![(1, "x.example".into())]),
        ),
    ];
    for (rtype, data) in wrong {
        let mut dns = one_host(secure(300, DnssecData::Tlsa(vec![ee()])));
        dns.set("mx.example.com", rtype, secure(300, data));
        let s = state(&dns);
        assert_eq!(
            indeterminate(&s),
            &DaneIndeterminate::WrongKind {
                name: "mx.example.com".into(),
                rtype
            }
        );
    }
}

// ----- D4: TLSA records -----

#[test]
fn d4_tlsa_failure_is_indeterminate() {
    for failure in [DnsFailure::ServerFailure, DnsFailure::Timeout] {
        let s = state(&one_host(Err(failure.clone())));
        assert_eq!(
            indeterminate(&s),
            &DaneIndeterminate::Failed {
                name: "_25._tcp.mx.example.com".into(),
                rtype: DnssecType::Tlsa,
                failure: failure.clone()
            }
        );
        assert_eq!(
            s.reason(),
            format!("TLSA _25._tcp.mx.example.com: {failure}")
        );
    }
}

#[test]
fn d4_tlsa_answer_of_the_wrong_kind_is_indeterminate_malformed() {
    let s = state(&one_host(secure(300, v4())));
    assert_eq!(
        indeterminate(&s),
        &DaneIndeterminate::WrongKind {
            name: "_25._tcp.mx.example.com".into(),
            rtype: DnssecType::Tlsa
        }
    );
}

#[test]
fn d4_insecure_tlsa_or_proven_absence_leaves_the_host_uncovered() {
    let cases = [
        (
            insecure(300, DnssecData::Tlsa(vec![ee()])),
            NotCoveredReason::InsecureTlsa,
        ),
        (secure(300, DnssecData::NxDomain), NotCoveredReason::NoTlsa),
        (secure(300, DnssecData::NoData), NotCoveredReason::NoTlsa),
        (
            secure(300, DnssecData::Tlsa(vec![])),
            NotCoveredReason::NoTlsa,
        ),
    ];
    for (tlsa, why) in cases {
        let s = state(&one_host(tlsa));
        assert_eq!(absent_reason(&s), &DaneAbsent::NotCovered);
        assert_eq!(
            coverage(&s, "mx.example.com"),
            &HostCoverage::NotCovered(why)
        );
        assert_eq!(s.precedence(&no_policy()), Precedence::Sts);
    }
}

#[test]
fn d4_usable_records_are_kept_and_unusable_alone_require_tls() {
    let s = state(&one_host(secure(
        300,
        DnssecData::Tlsa(vec![pkix_ee(), ee(), Tlsa::new(3, 1, 1, vec![1; 31]), ta()]),
    )));
    assert_eq!(
        coverage(&s, "mx.example.com"),
        &HostCoverage::Usable(vec![ee(), ta()])
    );
    assert_eq!(
        s.host("mx.example.com").unwrap().usable_tlsa(),
        Some(&[ee(), ta()][..])
    );
    assert!(
        s.reason().starts_with("MX mx.example.com: TLSA 3 1 1 abab"),
        "{}",
        s.reason()
    );
    assert!(s.reason().ends_with(", authenticated"), "{}", s.reason());

    let s = state(&one_host(secure(300, DnssecData::Tlsa(vec![pkix_ee()]))));
    assert!(matches!(s, DaneState::UnusableOnly(_)));
    assert_eq!(
        coverage(&s, "mx.example.com"),
        &HostCoverage::Unusable(vec![pkix_ee()])
    );
    assert_eq!(s.name(), "absent");
    assert!(s.tls_required());
}

#[test]
fn d4_hostile_tlsa_wrong_lengths_unknown_usages_and_huge_rrsets() {
    let hostile = vec![
        Tlsa::new(3, 1, 1, vec![0; 33]),
        Tlsa::new(3, 1, 2, vec![0; 32]),
        Tlsa::new(3, 1, 0, vec![0; 10]),
        Tlsa::new(3, 1, 0, vec![]),
        Tlsa::new(4, 1, 1, vec![0; 32]),
        Tlsa::new(255, 255, 255, vec![0; 1000]),
        Tlsa::new(3, 2, 1, vec![0; 32]),
        Tlsa::new(0, 0, 1, vec![0; 32]),
    ];
    let s = state(&one_host(secure(300, DnssecData::Tlsa(hostile.clone()))));
    assert_eq!(
        coverage(&s, "mx.example.com"),
        &HostCoverage::Unusable(hostile)
    );
    assert_eq!(s.precedence(&no_policy()), Precedence::TlsRequired);

    // 200 records (more than an adapter should pass): at most MAX_TLSA_RECORDS are kept, and
    // a usable one beyond them is not seen.
    let mut many: Vec<Tlsa> = (0..200u8)
        .map(|i| Tlsa::new(1, 1, 1, vec![i; 32]))
        .collect();
    many[150] = ee();
    let s = state(&one_host(secure(300, DnssecData::Tlsa(many))));
    match coverage(&s, "mx.example.com") {
        HostCoverage::Unusable(kept) => assert_eq!(kept.len(), MAX_TLSA_RECORDS),
        other => panic!("{other:?}"),
    }
    let mut many: Vec<Tlsa> = (0..64u8).map(|_| ee()).collect();
    many.push(pkix_ee());
    let s = state(&one_host(secure(300, DnssecData::Tlsa(many))));
    match coverage(&s, "mx.example.com") {
        HostCoverage::Usable(kept) => assert_eq!(kept.len(), MAX_TLSA_RECORDS),
        other => panic!("{other:?}"),
    }
}

// ----- D5: the destination -----

fn two_hosts(t1: DnssecResult, t2: DnssecResult) -> DaneState {
    let mut dns = Dns::default();
    dns.mx_hosts(&[(10, "mx1.example.com"), (20, "mx2.example.com")])
        .host("mx1.example.com", t1)
        .host("mx2.example.com", t2);
    state(&dns)
}

#[test]
fn d5_the_destination_state_from_its_hosts() {
    let usable = || secure(300, DnssecData::Tlsa(vec![ee()]));
    let unusable = || secure(300, DnssecData::Tlsa(vec![pkix_ee()]));
    let none = || secure(300, DnssecData::NoData);
    let s = two_hosts(usable(), usable());
    assert!(matches!(s, DaneState::Mandatory(_)));
    assert_eq!(s.name(), "mandatory");
    let s = two_hosts(usable(), none());
    assert!(matches!(s, DaneState::Opportunistic(_)));
    assert_eq!(s.name(), "opportunistic");
    assert!(matches!(
        two_hosts(unusable(), usable()),
        DaneState::Opportunistic(_)
    ));
    assert!(matches!(
        two_hosts(unusable(), none()),
        DaneState::UnusableOnly(_)
    ));
    assert!(matches!(
        two_hosts(unusable(), unusable()),
        DaneState::UnusableOnly(_)
    ));
    let s = two_hosts(none(), insecure(300, DnssecData::Tlsa(vec![ee()])));
    assert_eq!(absent_reason(&s), &DaneAbsent::NotCovered);
    // Any indeterminate host makes the destination indeterminate.
    let s = two_hosts(usable(), Err(DnsFailure::ServerFailure));
    assert!(s.is_indeterminate());
    assert!(s.hosts().is_empty());
}

// ----- D6: caching -----

fn resolve(cache: &mut DaneCache, dns: &Dns, now: UnixTime) -> DaneState {
    match cache.begin("example.com", now) {
        DaneBegin::Ready(s) => s,
        DaneBegin::Started(lookup) => {
            let r = drive(dns, lookup, false);
            // `drive` answers at T0; re-apply at `now` as an adapter would.
            let mut again = DaneLookup::new("example.com", &DaneConfig::default()).unwrap();
            let mut in_flight = Vec::new();
            loop {
                match again.poll() {
                    DaneStep::Query(id, q) => in_flight.push((id, q)),
                    DaneStep::Wait => {
                        let (id, q) = in_flight.remove(0);
                        again.handle(id, dns.answer(&q), now).unwrap();
                    }
                    DaneStep::Done(res) => {
                        assert_eq!(res.state().name(), r.state.name());
                        return cache.apply(res, now);
                    }
                }
            }
        }
    }
}

#[test]
fn d6_a_state_is_cached_for_the_smallest_ttl_of_its_answers() {
    let mut dns = one_host(secure(600, DnssecData::Tlsa(vec![ee()])));
    dns.set("mx.example.com", DnssecType::Aaaa, secure(120, v6()));
    let mut cache = DaneCache::new(DaneConfig::default());
    let s = resolve(&mut cache, &dns, T0);
    assert_eq!(
        s.expires_at(),
        Some(T0.saturating_add(Duration::from_secs(120)))
    );
    assert_eq!(cache.len(), 1);
    let later = T0.saturating_add(Duration::from_secs(119));
    assert!(matches!(cache.begin("Example.COM.", later), DaneBegin::Ready(ref c) if *c == s));
    let expired = T0.saturating_add(Duration::from_secs(120));
    assert!(matches!(
        cache.begin("example.com", expired),
        DaneBegin::Started(_)
    ));
    assert!(cache.is_empty(), "the expired state is dropped");
    // An insecure host's TLSA TTL does not count: it did not decide anything.
    let mut dns = one_host(secure(5, DnssecData::Tlsa(vec![ee()])));
    dns.set("mx.example.com", DnssecType::A, insecure(900, v4()))
        .set("mx.example.com", DnssecType::Aaaa, insecure(900, v6()));
    let s = state(&dns);
    assert_eq!(
        s.expires_at(),
        Some(T0.saturating_add(Duration::from_secs(900)))
    );
}

#[test]
fn d6_ttl_zero_and_indeterminate_states_are_not_cached() {
    let mut cache = DaneCache::new(DaneConfig::default());
    let mut dns = one_host(secure(0, DnssecData::Tlsa(vec![ee()])));
    let s = resolve(&mut cache, &dns, T0);
    assert!(matches!(s, DaneState::Mandatory(_)));
    assert!(cache.is_empty());
    dns.host("mx.example.com", Err(DnsFailure::ServerFailure));
    let s = resolve(&mut cache, &dns, T0);
    assert!(s.is_indeterminate());
    assert!(cache.is_empty());
    assert!(matches!(
        cache.begin("example.com", T0),
        DaneBegin::Started(_)
    ));
}

#[test]
fn d6_huge_ttls_are_capped_at_max_ttl() {
    let mut dns = one_host(secure(u32::MAX, DnssecData::Tlsa(vec![ee()])));
    dns.mx_hosts(&[(10, "mx.example.com")]);
    dns.set("mx.example.com", DnssecType::A, secure(u32::MAX, v4()))
        .set("mx.example.com", DnssecType::Aaaa, secure(u32::MAX, v6()))
        .mx(secure(
            u32::MAX,
            DnssecData::Mx(vec![(10, "mx.example.com".into())]),
        ));
    let mut config = DaneConfig::default();
    config.max_ttl = Duration::from_secs(3_600);
    let mut cache = DaneCache::new(config.clone());
    let DaneBegin::Started(lookup) = cache.begin("example.com", T0) else {
        panic!()
    };
    let r = drive(&dns, lookup, false);
    assert_eq!(
        r.state.expires_at(),
        Some(T0.saturating_add(config.max_ttl))
    );
    let s = state(&dns);
    assert_eq!(
        s.expires_at(),
        Some(T0.saturating_add(Duration::from_secs(86_400)))
    );
    // Applied much later, the cap counts from then at most.
    let late = T0.saturating_add(Duration::from_secs(10));
    let lookup = DaneLookup::new("example.com", &DaneConfig::default()).unwrap();
    let res = drive_resolution(&dns, lookup).expect("the lookup ends");
    let s = cache.apply(res, late);
    assert_eq!(s.expires_at(), Some(late.saturating_add(config.max_ttl)));
}

fn drive_resolution(dns: &Dns, mut lookup: DaneLookup) -> Option<mta_sts_core::DaneResolution> {
    let mut in_flight = Vec::new();
    for _ in 0..1_000 {
        match lookup.poll() {
            DaneStep::Query(id, q) => in_flight.push((id, q)),
            DaneStep::Wait => {
                let (id, q) = in_flight.remove(0);
                lookup.handle(id, dns.answer(&q), T0).ok()?;
            }
            DaneStep::Done(res) => return Some(res),
        }
    }
    None
}

#[test]
fn d6_the_cache_is_bounded() {
    let mut config = DaneConfig::default();
    config.capacity = 3;
    let mut cache = DaneCache::new(config);
    for i in 0..10 {
        let domain = format!("d{i}.example");
        let DaneBegin::Started(mut lookup) = cache.begin(&domain, T0) else {
            panic!()
        };
        let DaneStep::Query(id, _) = lookup.poll() else {
            panic!()
        };
        lookup
            .handle(id, insecure(300, DnssecData::NoData), T0)
            .unwrap();
        let DaneStep::Done(res) = lookup.poll() else {
            panic!()
        };
        let _ = cache.apply(res, T0);
        // d0 is used again and again: it stays, the others come and go.
        assert!(matches!(cache.begin("d0.example", T0), DaneBegin::Ready(_)));
        assert!(cache.len() <= 3);
    }
    assert!(matches!(cache.begin("d9.example", T0), DaneBegin::Ready(_)));
    assert!(matches!(
        cache.begin("d1.example", T0),
        DaneBegin::Started(_)
    ));
    // Capacity 0 caches nothing.
    let mut config = DaneConfig::default();
    config.capacity = 0;
    let mut cache = DaneCache::new(config);
    let dns = one_host(secure(300, DnssecData::Tlsa(vec![ee()])));
    let _ = resolve(&mut cache, &dns, T0);
    assert!(cache.is_empty());
}

/// D6: the cache is bounded in bytes too: a hostile zone can publish 64 KiB of TLSA data per MX
/// host, so counting destinations alone would not bound memory.
#[test]
fn d6_the_cache_is_bounded_in_bytes_too() {
    // 64 usable exact-match records of 1,000 bytes each (a DER SEQUENCE): about 66 KB a state.
    let mut big = vec![0x30, 0x82, 0x03, 0xe4];
    big.resize(1_000, 0xab);
    let records: Vec<Tlsa> = (0..64)
        .map(|i| {
            let mut data = big.clone();
            data[4] = i;
            Tlsa::new(3, 1, 0, data)
        })
        .collect();
    assert!(records.iter().all(Tlsa::is_usable));
    let mut dns = Dns::default();
    dns.host("mx.example.com", secure(3600, DnssecData::Tlsa(records)));
    let mut config = DaneConfig::default();
    config.max_bytes = 200_000;
    let mut cache = DaneCache::new(config.clone());
    for i in 0..10 {
        let domain = format!("d{i}.example");
        dns.set(
            &domain,
            DnssecType::Mx,
            secure(3600, DnssecData::Mx(vec![(10, "mx.example.com".into())])),
        );
        let DaneBegin::Started(lookup) = cache.begin(&domain, T0) else {
            panic!()
        };
        let res = drive_resolution(&dns, lookup).expect("the lookup ends");
        let s = cache.apply(res, T0);
        assert_eq!(s.name(), "mandatory");
        assert!(cache.bytes() <= config.max_bytes, "{} bytes", cache.bytes());
        assert!(cache.len() <= 3, "{} states", cache.len());
        // The newest stays; the oldest went.
        assert!(matches!(cache.begin(&domain, T0), DaneBegin::Ready(_)));
    }
    assert!(matches!(
        cache.begin("d0.example", T0),
        DaneBegin::Started(_)
    ));
    // A state larger than the whole budget is answered, not cached.
    config.max_bytes = 10_000;
    let mut cache = DaneCache::new(config);
    let DaneBegin::Started(lookup) = cache.begin("d0.example", T0) else {
        panic!()
    };
    let res = drive_resolution(&dns, lookup).expect("the lookup ends");
    assert_eq!(cache.apply(res, T0).name(), "mandatory");
    assert!(cache.is_empty());
    assert_eq!(cache.bytes(), 0);
}

#[test]
fn d6_a_dane_state_never_touches_the_cached_policy_and_applies_at_once() {
    let mut policies = PolicyCache::new(Config::default());
    let Begin::Started(lookup) = policies.begin("example.com", T0) else {
        panic!()
    };
    let mut lookup = *lookup;
    let outcome = loop {
        match lookup.poll() {
            Step::Io(Io::Txt(_)) => {
                let r = Ok(TxtAnswer::Records(vec![b"v=STSv1; id=1;".to_vec()]));
                lookup.handle(IoResult::Txt(r), T0).unwrap();
            }
            Step::Io(Io::Fetch(_)) => {
                let body = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n";
                let r = Ok(FetchResponse::new(200, Some("text/plain"), body));
                lookup.handle(IoResult::Fetch(r), T0).unwrap();
            }
            Step::Done(resolution) => break policies.apply(resolution, T0),
        }
    };
    let expires = outcome.policy().unwrap().expires_at();
    let mandatory = state(&one_host(secure(1, DnssecData::Tlsa(vec![ee()]))));
    let e = policies.evaluate_with_dane("example.com", &outcome, &mandatory, ["mx.example.com"]);
    assert_eq!(
        e.precedence(),
        Precedence::DaneOnly,
        "DANE applies though a policy is cached"
    );
    let indeterminate = state(&one_host(Err(DnsFailure::Timeout)));
    let e =
        policies.evaluate_with_dane("example.com", &outcome, &indeterminate, ["mx.example.com"]);
    assert_eq!(e.verdict(), Verdict::Defer(DeferReason::DaneIndeterminate));
    // The policy is still cached, unchanged.
    match policies.begin("example.com", T0.saturating_add(Duration::from_secs(10))) {
        Begin::Ready(o) => assert_eq!(o.policy().unwrap().expires_at(), expires),
        other => panic!("{other:?}"),
    }
    let d = policies.stats().decisions;
    assert_eq!((d.dane_only, d.dane_deferred, d.enforce_match), (1, 1, 0));
}

// ----- D7: precedence -----

#[test]
fn d7_precedence_of_each_state() {
    let enforce = outcome_with("enforce");
    let testing = outcome_with("testing");
    let none = outcome_with("none");
    let nothing = no_policy();
    let usable = || secure(300, DnssecData::Tlsa(vec![ee()]));
    let unusable = || secure(300, DnssecData::Tlsa(vec![pkix_ee()]));
    let mandatory = state(&one_host(usable()));
    let opportunistic = two_hosts(usable(), secure(300, DnssecData::NoData));
    let unusable_only = state(&one_host(unusable()));
    let indeterminate = state(&one_host(Err(DnsFailure::ServerFailure)));
    let absent = state(&one_host(secure(300, DnssecData::NxDomain)));
    for o in [&enforce, &testing, &none, &nothing] {
        assert_eq!(mandatory.precedence(o), Precedence::DaneOnly);
        assert_eq!(opportunistic.precedence(o), Precedence::Dane);
        assert_eq!(indeterminate.precedence(o), Precedence::Defer);
        assert_eq!(absent.precedence(o), Precedence::Sts);
    }
    assert_eq!(unusable_only.precedence(&enforce), Precedence::Sts);
    // `testing` does not require TLS (a failure would still deliver): TLS is required anyway.
    assert_eq!(unusable_only.precedence(&testing), Precedence::TlsRequired);
    assert_eq!(unusable_only.precedence(&none), Precedence::TlsRequired);
    assert_eq!(unusable_only.precedence(&nothing), Precedence::TlsRequired);
    assert_eq!(Precedence::DaneOnly.to_string(), "dane-only");
}

// ----- D8: per candidate -----

#[test]
fn d8_each_candidate_gets_dane_sts_tls_required_none_or_defer() {
    let settings = DomainSettings::default();
    let usable = || secure(300, DnssecData::Tlsa(vec![ee()]));
    let unusable = || secure(300, DnssecData::Tlsa(vec![pkix_ee()]));
    let mut dns = Dns::default();
    dns.mx_hosts(&[
        (10, "mx.example.com"),
        (20, "plain.example.com"),
        (30, "odd.example.com"),
    ])
    .host("mx.example.com", usable())
    .host("plain.example.com", secure(300, DnssecData::NoData))
    .host("odd.example.com", unusable());
    let s = state(&dns);
    assert!(matches!(s, DaneState::Opportunistic(_)));
    let hosts = ["mx.example.com", "plain.example.com", "odd.example.com"];

    let enforce = outcome_with("enforce");
    let e = Evaluation::with_dane(&enforce, &s, &settings, hosts);
    assert_eq!(e.precedence(), Precedence::Dane);
    let c = e.candidates();
    assert_eq!(c[0].dane(), CandidateDane::Dane(&[ee()]));
    assert_eq!(c[0].decision(), MxDecision::Enforce, "informative");
    assert_eq!(c[1].dane(), CandidateDane::Sts);
    assert_eq!(c[1].decision(), MxDecision::Skip);
    assert_eq!(
        c[2].dane(),
        CandidateDane::Sts,
        "unusable TLSA under a policy: MTA-STS"
    );
    assert_eq!(e.verdict(), Verdict::Deliver);
    assert_eq!(e.dane(), Some(&s));

    let e = Evaluation::with_dane(&no_policy(), &s, &settings, hosts);
    let c = e.candidates();
    assert_eq!(c[0].dane(), CandidateDane::Dane(&[ee()]));
    assert_eq!(c[1].dane(), CandidateDane::None);
    assert_eq!(c[2].dane(), CandidateDane::TlsRequired);

    // A testing policy does not require TLS: the unusable TLSA does.
    let e = Evaluation::with_dane(&outcome_with("testing"), &s, &settings, hosts);
    assert_eq!(e.candidates()[2].dane(), CandidateDane::TlsRequired);

    let indeterminate = state(&one_host(Err(DnsFailure::ServerFailure)));
    let e = Evaluation::with_dane(&enforce, &indeterminate, &settings, hosts);
    assert!(
        e.candidates()
            .iter()
            .all(|c| c.dane() == CandidateDane::Defer)
    );
    assert_eq!(e.verdict(), Verdict::Defer(DeferReason::DaneIndeterminate));
}

#[test]
fn d8_a_dane_host_outside_the_policy_is_still_delivered_to() {
    // enforce policy names mx.example.com; DANE covers other.example.com only.
    let mut dns = Dns::default();
    dns.mx_hosts(&[(10, "other.example.com")]).host(
        "other.example.com",
        secure(300, DnssecData::Tlsa(vec![ee()])),
    );
    let s = state(&dns);
    let enforce = outcome_with("enforce");
    let settings = DomainSettings::default();
    let without = Evaluation::new(&enforce, &settings, ["other.example.com"]);
    assert_eq!(without.verdict(), Verdict::DeferRecheckPolicy);
    let with = Evaluation::with_dane(&enforce, &s, &settings, ["other.example.com"]);
    assert_eq!(with.verdict(), Verdict::Deliver);
    assert_eq!(with.precedence(), Precedence::DaneOnly);
    assert_eq!(with.when_all_fail(), WhenAllFail::Usual);
    // DANE-mandatory decides even when MTA-STS is required by configuration or failed.
    let mut require = DomainSettings::default();
    require.usage = StsUsage::Require;
    let e = Evaluation::with_dane(&no_policy(), &s, &require, ["other.example.com"]);
    assert_eq!(e.verdict(), Verdict::Deliver);
}

// ----- D9: bounds and hostile drivers -----

#[test]
fn d9_unknown_repeated_and_late_results_are_errors_not_panics() {
    let mut lookup = DaneLookup::new("example.com", &DaneConfig::default()).unwrap();
    let t = || secure(300, DnssecData::NoData);
    for raw in [1, 2, 49, u32::MAX] {
        let id = DaneQueryId::from_u32(raw);
        assert_eq!(
            lookup.handle(id, t(), T0),
            Err(DaneLookupError::UnknownQuery(id))
        );
    }
    let id0 = DaneQueryId::from_u32(0);
    assert_eq!(
        lookup.handle(id0, t(), T0),
        Err(DaneLookupError::UnknownQuery(id0)),
        "not asked yet"
    );
    let DaneStep::Query(id, _) = lookup.poll() else {
        panic!()
    };
    assert_eq!(id.as_u32(), 0);
    lookup
        .handle(
            id,
            secure(300, DnssecData::Mx(vec![(1, "mx.example.com".into())])),
            T0,
        )
        .unwrap();
    assert_eq!(
        lookup.handle(id, t(), T0),
        Err(DaneLookupError::Repeated(id))
    );
    let mut ids = Vec::new();
    while let DaneStep::Query(id, _) = lookup.poll() {
        ids.push(id);
    }
    assert_eq!(ids.len(), 3);
    // The A query fails: the lookup concludes at once; later answers are refused.
    lookup
        .handle(ids[0], Err(DnsFailure::ServerFailure), T0)
        .unwrap();
    assert!(matches!(lookup.poll(), DaneStep::Done(_)));
    assert_eq!(
        lookup.handle(ids[1], t(), T0),
        Err(DaneLookupError::Finished(ids[1]))
    );
    assert_eq!(
        lookup.handle(ids[1], t(), T0),
        Err(DaneLookupError::Repeated(ids[1]))
    );
    assert!(
        matches!(lookup.poll(), DaneStep::Done(_)),
        "Done again, the same"
    );
    assert!(!DaneLookupError::Finished(ids[1]).to_string().is_empty());
    // Not a domain: no lookup.
    assert!(DaneLookup::new("[192.0.2.1]", &DaneConfig::default()).is_err());
    assert!(DaneLookup::new("", &DaneConfig::default()).is_err());
}

#[test]
fn d9_a_lookup_asks_at_most_1_plus_3_times_max_hosts_queries() {
    // 1,000 distinct MX hosts, every query timing out but the MX one: bounded work.
    let names: Vec<String> = (0..1000).map(|i| format!("h{i}.example.com")).collect();
    let mut dns = Dns::default();
    let targets: Vec<(u16, &str)> = names.iter().map(|n| (10, n.as_str())).collect();
    dns.mx_hosts(&targets);
    let r = run(&dns);
    assert!(r.queries.len() <= 1 + 3 * MAX_DANE_HOSTS);
    assert!(r.state.is_indeterminate());
    let noted = r.state.dane_hosts().map_or(0, |h| h.hosts().len());
    assert!(noted <= 2 * MAX_DANE_HOSTS);
}

// ----- D10: without DANE, nothing changes -----

#[test]
fn d10_an_absent_dane_state_changes_no_evaluation() {
    let absent = state(&one_host(secure(300, DnssecData::NoData)));
    let hosts = ["mx.example.com", "other.example.net"];
    let mut require = DomainSettings::default();
    require.usage = StsUsage::Require;
    for mode in ["enforce", "testing", "none"] {
        for settings in [DomainSettings::default(), require] {
            let o = outcome_with(mode);
            let plain = Evaluation::new(&o, &settings, hosts);
            let with = Evaluation::with_dane(&o, &absent, &settings, hosts);
            assert_eq!(plain.verdict(), with.verdict(), "{mode}");
            assert_eq!(plain.when_all_fail(), with.when_all_fail());
            assert_eq!(plain.mode(), with.mode());
            assert_eq!(plain.candidates(), with.candidates(), "{mode}");
            assert_eq!(plain.precedence(), Precedence::Sts);
            assert_eq!(with.precedence(), Precedence::Sts);
            assert_eq!(plain.dane(), None);
        }
    }
    let o = outcome_with("enforce");
    let e = Evaluation::new(&o, &DomainSettings::default(), hosts);
    assert_eq!(e.candidates()[0].dane(), CandidateDane::Sts);
    assert_eq!(e.mode(), Some(Mode::Enforce));
    let e = Evaluation::new(&no_policy(), &DomainSettings::default(), hosts);
    assert_eq!(e.candidates()[0].dane(), CandidateDane::None);
    // Address literals and invalid names have no DANE lookup: absent, ready at once.
    let mut cache = DaneCache::new(DaneConfig::default());
    for d in ["[192.0.2.1]", "192.0.2.1", "a..b"] {
        let DaneBegin::Ready(s) = cache.begin(d, T0) else {
            panic!("{d}")
        };
        assert!(matches!(absent_reason(&s), DaneAbsent::NotADomain(_)));
        assert_eq!(s.precedence(&no_policy()), Precedence::Sts);
    }
    let _: IpAddr = "192.0.2.1".parse().unwrap();
}
