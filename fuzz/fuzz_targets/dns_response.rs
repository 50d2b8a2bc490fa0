//! A DNS response from a hostile server: parsed against TXT, A, AAAA, MX and TLSA queries, plain
//! and DNSSEC (each `DnssecType`), through TCP framing and the exchange driver. Nothing may
//! panic, a TXT answer never holds more bytes than the message, a DNSSEC answer agrees with the
//! plain parse of the same bytes, reports the header's AD bit, keeps at most
//! `MAX_TLSA_RECORDS` TLSA records and takes its TTL from the message.
//!
//! The query id is taken from the input's first two bytes, so that every input passes the id
//! check and the fuzzer spends its time on the rest of the message. Seeds: `fuzz/seeds/dns_response`.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mta_sts_core::MAX_TLSA_RECORDS;
use mta_sts_core::io::{DnssecAnswer, DnssecData, DnssecQuery, DnssecType, TxtAnswer};
use mta_sts_core::wire::dns::{AddrAnswer, DnsAnswer, DnsQuery, MxAnswer, QueryType, TcpFramer};
use mta_sts_core::wire::exchange::{Exchange, ExchangeConfig, ExchangeStep, Transport};

fuzz_target!(|data: &[u8]| {
    let id = match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    for (name, qtype) in [
        ("_mta-sts.example.com", QueryType::Txt),
        ("mta-sts.example.com", QueryType::A),
        ("mta-sts.example.com", QueryType::Aaaa),
        ("example.com", QueryType::Mx),
        ("_25._tcp.mx.example.com", QueryType::Tlsa),
    ] {
        let Ok(query) = DnsQuery::new(name, qtype, id) else {
            return;
        };
        match query.parse(data) {
            Ok(DnsAnswer::Txt(TxtAnswer::Records(records))) => {
                let total: usize = records.iter().map(Vec::len).sum();
                assert!(total <= data.len(), "TXT answer larger than the message");
            }
            Ok(DnsAnswer::Mx(mx)) => {
                // Each MX record takes at least 2 (preference) + 1 (name) bytes of RDATA.
                assert!(mx.records().len() * 3 <= data.len(), "more MX records than the message holds");
            }
            Ok(DnsAnswer::Dnssec(answer)) => {
                assert_eq!(qtype, QueryType::Tlsa, "only a TLSA query answers with DNSSEC data");
                check_dnssec(data, &answer);
            }
            _ => {}
        }
    }

    // The same bytes as the answer to each DNSSEC query.
    for (name, rtype) in [
        ("example.com", DnssecType::Mx),
        ("mta-sts.example.com", DnssecType::A),
        ("mta-sts.example.com", DnssecType::Aaaa),
        ("_25._tcp.mx.example.com", DnssecType::Tlsa),
    ] {
        let Ok(query) = DnsQuery::dnssec(&DnssecQuery::new(name, rtype), id) else {
            return;
        };
        let parsed = query.parse_dnssec(data);
        // The general parser (the exchange driver's) says the same.
        assert_eq!(query.parse(data).map(DnsAnswer::into_dnssec), parsed.clone().map(Ok));
        let Ok(answer) = parsed else { continue };
        check_dnssec(data, &answer);
        // And agrees with the plain query's parse of the same bytes, where that succeeds.
        let plain_type = match rtype {
            DnssecType::Mx => QueryType::Mx,
            DnssecType::A => QueryType::A,
            DnssecType::Aaaa => QueryType::Aaaa,
            _ => QueryType::Tlsa,
        };
        let Ok(plain) = DnsQuery::new(name, plain_type, id) else {
            return;
        };
        match (plain.parse(data), &answer.data) {
            (Ok(DnsAnswer::Mx(MxAnswer::Records(records))), DnssecData::Mx(hosts)) => {
                let mut a: Vec<(u16, String)> =
                    records.into_iter().map(|(p, h)| (p, h.to_ascii_lowercase())).collect();
                let mut b = hosts.clone();
                a.sort();
                b.sort();
                assert_eq!(a, b, "MX records differ between the plain and DNSSEC parses");
            }
            (Ok(DnsAnswer::Addrs(AddrAnswer::Addrs(addrs))), DnssecData::Addrs(d)) => {
                assert_eq!(&addrs, d, "addresses differ between the plain and DNSSEC parses");
            }
            (Ok(DnsAnswer::Mx(MxAnswer::NxDomain) | DnsAnswer::Addrs(AddrAnswer::NxDomain)), d) => {
                assert_eq!(d, &DnssecData::NxDomain);
            }
            (Ok(DnsAnswer::Mx(MxAnswer::NoData) | DnsAnswer::Addrs(AddrAnswer::NoData)), d) => {
                assert_eq!(d, &DnssecData::NoData);
            }
            (Ok(DnsAnswer::Dnssec(d)), _) => assert_eq!(d.data, answer.data),
            (Ok(other), d) => panic!("plain {other:?} but DNSSEC {d:?}"),
            (Err(_), _) => {}
        }
    }

    // The same bytes as a TCP stream, in two reads.
    let mut framer = TcpFramer::new();
    let half = data.len() / 2;
    framer.push(&data[..half]);
    if let Some(message) = framer.push(&data[half..]) {
        assert!(message.len() <= data.len());
    }

    // Through the driver: every datagram answers the current attempt; the exchange must end
    // within its plan, for a plain TXT query and for a DNSSEC TLSA query.
    let servers = vec![
        "192.0.2.1:53".parse().unwrap(),
        "192.0.2.2:53".parse().unwrap(),
    ];
    let Ok(query) = DnsQuery::new("_mta-sts.example.com", QueryType::Txt, id) else {
        return;
    };
    let _ = drive(Exchange::new(query, servers.clone(), ExchangeConfig::default(), Duration::ZERO), data);
    let tlsa = DnssecQuery::new("_25._tcp.mx.example.com", DnssecType::Tlsa);
    let Ok(ex) = Exchange::dnssec(&tlsa, id, servers, Duration::ZERO) else {
        return;
    };
    if let Ok(answer) = drive(ex, data).and_then(DnsAnswer::into_dnssec) {
        check_dnssec(data, &answer);
    }
});

/// The invariants of any DNSSEC answer parsed from `data`.
fn check_dnssec(data: &[u8], answer: &DnssecAnswer) {
    // The AD bit of the header (byte 3, 0x20).
    assert_eq!(answer.authenticated, data[3] & 0x20 != 0, "AD bit misreported");
    // The TTL is one of the message's (a record's TTL or a SOA's MINIMUM, 4 bytes on the wire),
    // or 0 when there is none to take.
    if answer.ttl != 0 {
        let ttl = answer.ttl.to_be_bytes();
        assert!(data.windows(4).any(|w| w == ttl), "TTL {} not in the message", answer.ttl);
    }
    match &answer.data {
        DnssecData::Tlsa(records) => {
            assert!(!records.is_empty(), "an empty TLSA RRset is NODATA");
            assert!(records.len() <= MAX_TLSA_RECORDS, "more than MAX_TLSA_RECORDS kept");
            let bytes: usize = records.iter().map(|r| r.data().len() + 3).sum();
            assert!(bytes <= data.len(), "TLSA records larger than the message");
        }
        DnssecData::Mx(hosts) => {
            assert!(!hosts.is_empty(), "an empty MX RRset is NODATA");
            assert!(hosts.len() * 3 <= data.len(), "more MX records than the message holds");
            for (_, host) in hosts {
                assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "MX host not lowercase: {host}");
            }
        }
        DnssecData::Addrs(addrs) => assert!(!addrs.is_empty(), "an empty address RRset is NODATA"),
        _ => {}
    }
}

/// Runs an exchange where every datagram (and every TCP read) is `data`; it must end within 64
/// steps.
fn drive(mut ex: Exchange, data: &[u8]) -> Result<DnsAnswer, mta_sts_core::io::DnsFailure> {
    let mut now = Duration::ZERO;
    for _ in 0..64 {
        match ex.poll(now) {
            ExchangeStep::Send(t) => {
                ex.sent(now);
                match t.transport() {
                    Transport::Udp => ex.received(now, data),
                    _ => ex.received(now, &framed(data)),
                }
            }
            ExchangeStep::Wait(deadline) => {
                now = deadline;
                ex.timed_out(now);
            }
            ExchangeStep::Done(result) => return result,
        }
    }
    panic!("the exchange did not end within 64 steps");
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    let mut f = len.to_be_bytes().to_vec();
    f.extend_from_slice(msg);
    f
}
