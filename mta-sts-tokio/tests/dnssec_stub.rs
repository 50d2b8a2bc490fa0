//! The built-in stub resolver's DNSSEC queries (for DANE) against small DNS servers run by the
//! test on loopback: the query carries the DO and AD bits, the answer reports the server's AD bit
//! and TTL, a truncated answer is asked again over TCP, and SERVFAIL and silence are failures.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_resolver::proto::rr::rdata::{MX, TLSA};
use hickory_resolver::proto::rr::{RData, Record};
use mta_sts_core::Tlsa;
use mta_sts_core::io::{DnsFailure, DnssecData, DnssecQuery, DnssecType};
use mta_sts_tokio::{Resolver, StubResolver, TokioRuntime};

/// What a test server saw of the queries it answered.
#[derive(Debug, Default)]
struct Seen {
    queries: AtomicUsize,
    /// Queries with the DO bit, the AD bit and an EDNS payload of 1232.
    dnssec_flags: AtomicUsize,
}

impl Seen {
    fn note(&self, query: &Message) {
        self.queries.fetch_add(1, Ordering::SeqCst);
        let edns_ok = query
            .edns
            .as_ref()
            .is_some_and(|e| e.flags().dnssec_ok && e.max_payload() == 1232);
        if edns_ok && query.metadata.authentic_data && query.metadata.recursion_desired {
            self.dnssec_flags.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The response to `query`: same id and question, the AD bit and DO echoed as given, `answers`.
fn reply(query: &Message, ad: bool, rcode: ResponseCode, answers: Vec<Record>) -> Message {
    let mut m = Message::response(query.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.metadata.authentic_data = ad;
    m.metadata.response_code = rcode;
    m.add_queries(query.queries.clone());
    m.add_answers(answers);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(true);
    m.set_edns(edns);
    m
}

/// A UDP server on 127.0.0.1 answering every query with `answer(query)` until the test ends (it
/// stops after a minute without a query).
fn udp_server(answer: impl Fn(&Message) -> Message + Send + 'static) -> (SocketAddr, Arc<Seen>) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let addr = socket.local_addr().expect("address");
    let seen = Arc::new(Seen::default());
    let counter = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            counter.note(&query);
            let bytes = answer(&query).to_vec().expect("encodable response");
            let _ = socket.send_to(&bytes, from);
        }
    });
    (addr, seen)
}

fn tlsa(owner: &hickory_resolver::proto::rr::Name, ttl: u32, usage: u8, data: &[u8]) -> Record {
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::TLSA(TLSA::new(
            CertUsage::from(usage),
            Selector::from(1),
            Matching::from(1),
            data.to_vec(),
        )),
    )
}

fn resolver(server: SocketAddr) -> StubResolver<TokioRuntime> {
    StubResolver::new(TokioRuntime, vec![server])
}

fn query(name: &str, rtype: DnssecType, timeout: Duration) -> DnssecQuery {
    let mut q = DnssecQuery::new(name, rtype);
    q.timeout = timeout;
    q
}

#[tokio::test]
async fn stub_dnssec_query_reports_the_ad_bit_and_the_tlsa_records() {
    let (addr, seen) = udp_server(|q| {
        let owner = q.queries[0].name.clone();
        reply(
            q,
            true,
            ResponseCode::NoError,
            vec![
                tlsa(&owner, 3600, 3, &[0xab; 32]),
                tlsa(&owner, 600, 2, &[0xcd; 32]),
            ],
        )
    });
    let stub = resolver(addr);
    assert!(stub.supports_dnssec());
    let q = query(
        "_25._tcp.mx.example.com",
        DnssecType::Tlsa,
        Duration::from_secs(5),
    );
    let answer = stub.dnssec(&q).await.expect("an answer");
    assert!(answer.authenticated);
    assert_eq!(answer.ttl, 600);
    assert_eq!(
        answer.data,
        DnssecData::Tlsa(vec![
            Tlsa::new(3, 1, 1, vec![0xab; 32]),
            Tlsa::new(2, 1, 1, vec![0xcd; 32])
        ])
    );
    assert_eq!(seen.queries.load(Ordering::SeqCst), 1);
    assert_eq!(
        seen.dnssec_flags.load(Ordering::SeqCst),
        1,
        "DO, AD, RD and EDNS 1232"
    );
    // Through an Arc too (a resolver shared with the MTA).
    let shared: Arc<dyn Resolver> = Arc::new(resolver(addr));
    assert!(shared.supports_dnssec());
    assert!(shared.dnssec(&q).await.expect("an answer").authenticated);
}

#[tokio::test]
async fn stub_dnssec_query_reports_a_clear_ad_bit_as_not_authenticated() {
    let (addr, _) = udp_server(|q| {
        let owner = q.queries[0].name.clone();
        let exchange = hickory_resolver::proto::rr::Name::from_ascii("MX1.Example.com.").unwrap();
        let mx = Record::from_rdata(owner, 120, RData::MX(MX::new(10, exchange)));
        reply(q, false, ResponseCode::NoError, vec![mx])
    });
    let q = query("example.com", DnssecType::Mx, Duration::from_secs(5));
    let answer = resolver(addr).dnssec(&q).await.expect("an answer");
    assert!(!answer.authenticated);
    assert_eq!(answer.ttl, 120);
    assert_eq!(
        answer.data,
        DnssecData::Mx(vec![(10, "mx1.example.com".into())])
    );
}

#[tokio::test]
async fn stub_dnssec_query_servfail_is_a_server_failure_after_the_retry() {
    let (addr, seen) = udp_server(|q| reply(q, false, ResponseCode::ServFail, vec![]));
    let q = query(
        "_25._tcp.mx.example.com",
        DnssecType::Tlsa,
        Duration::from_secs(5),
    );
    assert_eq!(
        resolver(addr).dnssec(&q).await,
        Err(DnsFailure::ServerFailure)
    );
    // One server, asked twice (the exchange's one retry).
    assert_eq!(seen.queries.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stub_dnssec_query_times_out_within_the_query_timeout() {
    // A socket nobody reads: the queries queue up unanswered.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    let addr = silent.local_addr().expect("address");
    let q = query("example.com", DnssecType::Mx, Duration::from_millis(300));
    let start = Instant::now();
    assert_eq!(resolver(addr).dnssec(&q).await, Err(DnsFailure::Timeout));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The query did arrive, with the DNSSEC flags.
    silent.set_nonblocking(true).expect("non-blocking");
    let mut buf = [0u8; 512];
    let (n, _) = silent.recv_from(&mut buf).expect("a queued query");
    let m = Message::from_vec(&buf[..n]).expect("a DNS query");
    assert!(m.metadata.authentic_data);
    assert!(m.edns.expect("EDNS").flags().dnssec_ok);
}

#[tokio::test]
async fn stub_dnssec_query_truncated_over_udp_is_asked_again_over_tcp() {
    // UDP and TCP on the same port: the UDP answer is truncated, the TCP one complete.
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().expect("address")) {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().expect("address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        if let Ok((n, from)) = udp.recv_from(&mut buf) {
            let query = Message::from_vec(&buf[..n]).expect("a DNS query");
            let mut m = reply(&query, true, ResponseCode::NoError, vec![]);
            m.metadata.truncation = true;
            let _ = udp.send_to(&m.to_vec().expect("encodable"), from);
        }
    });
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = tcp.accept() else {
            return;
        };
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).expect("length");
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut msg).expect("query");
        let query = Message::from_vec(&msg).expect("a DNS query");
        assert!(query.metadata.authentic_data);
        let owner = query.queries[0].name.clone();
        let records = (0..80).map(|i| tlsa(&owner, 300, 3, &[i; 32])).collect();
        let bytes = reply(&query, true, ResponseCode::NoError, records)
            .to_vec()
            .expect("encodable");
        let mut framed = u16::try_from(bytes.len())
            .expect("fits")
            .to_be_bytes()
            .to_vec();
        framed.extend_from_slice(&bytes);
        conn.write_all(&framed).expect("response");
    });
    let q = query(
        "_25._tcp.mx.example.com",
        DnssecType::Tlsa,
        Duration::from_secs(5),
    );
    let answer = resolver(addr).dnssec(&q).await.expect("an answer");
    assert!(answer.authenticated);
    let DnssecData::Tlsa(records) = answer.data else {
        panic!("TLSA data: {:?}", answer.data);
    };
    // 80 published, the first MAX_TLSA_RECORDS kept.
    assert_eq!(records.len(), mta_sts_core::MAX_TLSA_RECORDS);
    assert_eq!(records[0].data(), &[0; 32]);
}
