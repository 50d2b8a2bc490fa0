//! The real validating stack (nsd + unbound, zones signed with ldns-signzone), asked with raw
//! hickory-proto queries: a signed zone answers with AD and its TLSA records, an unsigned zone
//! answers without AD, a zone with broken signatures answers SERVFAIL.
//!
//! Skipped with a loud message when nsd, unbound or ldnsutils are missing, unless
//! `MTA_STS_REQUIRE_DNSSEC_TOOLS=1` (CI), which makes that a failure.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use mta_sts_testkit::dnssec::{Signing, StackError, ValidatingStack, Zone, tools_or_skip};

const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn zones() -> Vec<Zone> {
    vec![
        Zone::signed("signed.test").records([
            "@ MX 10 mx".to_owned(),
            "mx A 127.0.0.1".to_owned(),
            format!("_25._tcp.mx TLSA 3 1 1 {HASH}"),
            format!("_25._tcp.mx TLSA 2 0 1 {}", HASH.to_uppercase()),
        ]),
        Zone::unsigned("plain.test").records([
            "@ MX 10 mx".to_owned(),
            "mx A 127.0.0.1".to_owned(),
            format!("_25._tcp.mx TLSA 3 1 1 {HASH}"),
        ]),
        Zone::bogus("bogus.test").records([
            "@ MX 10 mx".to_owned(),
            "mx A 127.0.0.1".to_owned(),
            format!("_25._tcp.mx TLSA 3 1 1 {HASH}"),
        ]),
    ]
}

/// One query with DO and AD set, as a DANE client asks.
fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let mut q = Message::new(0x1234, MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.metadata.authentic_data = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.set_dnssec_ok(true);
    q.set_edns(e);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.connect(server).unwrap();
    sock.send(&q.to_vec().unwrap()).unwrap();
    let mut buf = vec![0; 65_535];
    let n = sock.recv(&mut buf).unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(r.metadata.id, 0x1234);
    r
}

fn tlsa(m: &Message) -> Vec<(u8, u8, u8, Vec<u8>)> {
    let mut v: Vec<_> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TLSA(t) => Some((
                t.cert_usage.into(),
                t.selector.into(),
                t.matching.into(),
                t.cert_data.clone(),
            )),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn hash_bytes() -> Vec<u8> {
    (0..HASH.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&HASH[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn unbound_validates_signed_unsigned_and_bogus_zones() {
    if !tools_or_skip("unbound_validates_signed_unsigned_and_bogus_zones") {
        return;
    }
    let stack = ValidatingStack::start(zones()).expect("the validating stack starts");
    let resolver = stack.resolver_addr();
    assert!(resolver.ip().is_loopback());
    assert_eq!(stack.trust_anchors().len(), 2, "signed.test and bogus.test");

    // Signed: secure answers (AD) with the TLSA records.
    let r = ask(resolver, "_25._tcp.mx.signed.test.", RecordType::TLSA);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authentic_data, "signed TLSA has AD: {r:?}");
    assert_eq!(tlsa(&r), [(2, 0, 1, hash_bytes()), (3, 1, 1, hash_bytes())]);
    for (name, rtype) in [
        ("signed.test.", RecordType::MX),
        ("mx.signed.test.", RecordType::A),
    ] {
        let r = ask(resolver, name, rtype);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authentic_data, "{name} {rtype}: {r:?}");
        assert!(!r.answers.is_empty());
    }
    // Authenticated denial: NODATA and NXDOMAIN with AD and the SOA.
    let r = ask(resolver, "mx.signed.test.", RecordType::AAAA);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authentic_data && r.answers.is_empty());
    assert!(
        r.authorities
            .iter()
            .any(|a| matches!(a.data, RData::SOA(_)))
    );
    let r = ask(resolver, "_25._tcp.nothing.signed.test.", RecordType::TLSA);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authentic_data);
    assert!(
        r.authorities
            .iter()
            .any(|a| matches!(a.data, RData::SOA(_)))
    );

    // Unsigned: insecure, answered without AD (not SERVFAIL).
    let r = ask(resolver, "_25._tcp.mx.plain.test.", RecordType::TLSA);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(!r.metadata.authentic_data, "unsigned TLSA has no AD: {r:?}");
    assert_eq!(tlsa(&r), [(3, 1, 1, hash_bytes())]);
    let r = ask(resolver, "plain.test.", RecordType::MX);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(!r.metadata.authentic_data);

    // Bogus: SERVFAIL for every query.
    for (name, rtype) in [
        ("_25._tcp.mx.bogus.test.", RecordType::TLSA),
        ("bogus.test.", RecordType::MX),
        ("mx.bogus.test.", RecordType::A),
    ] {
        let r = ask(resolver, name, rtype);
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::ServFail,
            "{name} {rtype}: {r:?}"
        );
        assert!(r.answers.is_empty());
    }

    // Names outside the zones are refused: nothing leaves loopback.
    let r = ask(resolver, "example.com.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);

    // The authoritative server serves the signatures.
    let r = ask(stack.authoritative_addr(), "mx.signed.test.", RecordType::A);
    assert!(
        r.answers
            .iter()
            .any(|a| a.record_type() == RecordType::RRSIG)
    );

    // Dropping the stack stops both servers and removes its files.
    let dir = stack.dir().to_owned();
    drop(stack);
    assert!(!dir.exists());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    sock.connect(resolver).unwrap();
    let _ = sock.send(&[0; 12]);
    assert!(sock.recv(&mut [0; 512]).is_err(), "unbound still answers");
}

#[test]
fn invalid_and_overlapping_zones_are_refused() {
    if !tools_or_skip("invalid_and_overlapping_zones_are_refused") {
        return;
    }
    for zones in [
        vec![Zone::signed("")],
        vec![Zone::signed("bad name.test")],
        vec![Zone::signed("a.test"), Zone::unsigned("b.a.test")],
        vec![Zone::signed("a.test"), Zone::unsigned("A.test.")],
    ] {
        let err = ValidatingStack::start(zones.clone()).unwrap_err();
        assert!(
            matches!(err, StackError::InvalidZone(_)),
            "{zones:?}: {err}"
        );
    }
    assert_eq!(Zone::bogus("X.Test.").name(), "x.test");
    assert_eq!(Zone::bogus("x.test").signing(), Signing::Bogus);
}

#[test]
fn a_zone_file_error_is_reported_with_the_tool_output() {
    if !tools_or_skip("a_zone_file_error_is_reported_with_the_tool_output") {
        return;
    }
    let err = ValidatingStack::start([Zone::signed("broken.test").record("mx A not-an-address")])
        .unwrap_err();
    assert!(
        matches!(
            err,
            StackError::ToolFailed {
                tool: "ldns-signzone",
                ..
            }
        ),
        "{err}"
    );
}
