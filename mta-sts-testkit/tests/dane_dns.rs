//! The DNS server's DANE features, asked with raw hickory-proto queries: TLSA records, the AD
//! bit per signed zone (with DO set or clear), the bogus fault with its Extended DNS Error,
//! per-type faults on MX, TLSA, A and AAAA, negative answers with the SOA, and the TLSA records
//! computed for the fake MX's certificates.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RData, RecordType as HType};
use mta_sts_testkit::probe::{DnsProbe, Rcode};
use mta_sts_testkit::{Cert, DnsFault, Domain, Record, RecordType, World, tlsa_name};
use ring::digest;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

const SIGNED: &str = "signed.example";
const PLAIN: &str = "plain.example";
const MX: &str = "mx1.signed.example";
const PLAIN_MX: &str = "mx1.plain.example";

fn world() -> World {
    World::builder()
        .domain(SIGNED, Domain::enforce([MX]))
        .domain(PLAIN, Domain::enforce([PLAIN_MX]))
        .signed_zone(SIGNED)
        .ttl(300)
        .record(
            &tlsa_name(MX),
            Record::Tlsa {
                usage: 3,
                selector: 1,
                matching_type: 1,
                data: vec![0xab; 32],
            },
        )
        .record(
            &tlsa_name(PLAIN_MX),
            Record::Tlsa {
                usage: 2,
                selector: 0,
                matching_type: 2,
                data: vec![0xcd; 64],
            },
        )
        .build()
        .expect("world starts")
}

/// How a raw query asks.
#[derive(Clone, Copy)]
struct Ask {
    /// EDNS(0) present.
    edns: bool,
    /// The DO bit (needs `edns`).
    dnssec_ok: bool,
    /// The AD bit in the query header.
    ad: bool,
}

const DO: Ask = Ask {
    edns: true,
    dnssec_ok: true,
    ad: true,
};
const PLAIN_EDNS: Ask = Ask {
    edns: true,
    dnssec_ok: false,
    ad: false,
};
const NO_EDNS: Ask = Ask {
    edns: false,
    dnssec_ok: false,
    ad: false,
};

/// One raw query over UDP, built and decoded with hickory-proto.
fn ask(w: &World, name: &str, rtype: HType, how: Ask) -> Message {
    let mut q = Message::new(0x4242, MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.metadata.authentic_data = how.ad;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if how.edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(how.dnssec_ok);
        q.set_edns(e);
    }
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.connect(w.dns_addr()).unwrap();
    sock.send(&q.to_vec().unwrap()).unwrap();
    let mut buf = vec![0; 65_535];
    let n = sock.recv(&mut buf).unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(r.metadata.id, 0x4242);
    r
}

fn ede_codes(m: &Message) -> Vec<u16> {
    m.edns
        .as_ref()
        .map(|e| {
            e.options()
                .options
                .iter()
                .filter_map(|(_, o)| match o {
                    EdnsOption::Unknown(15, d) => Some(u16::from_be_bytes([d[0], d[1]])),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn tlsa_of(m: &Message) -> Vec<(u8, u8, u8, Vec<u8>)> {
    m.answers
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
        .collect()
}

#[test]
fn signed_zone_sets_ad_only_when_the_query_asks_for_dnssec() {
    let w = world();
    for (name, rtype) in [
        (SIGNED, HType::MX),
        (MX, HType::A),
        ("_25._tcp.mx1.signed.example", HType::TLSA),
        ("_mta-sts.signed.example", HType::TXT),
    ] {
        let with_do = ask(&w, name, rtype, DO);
        assert_eq!(with_do.metadata.response_code, ResponseCode::NoError);
        assert!(with_do.metadata.authentic_data, "{name} {rtype} with DO");
        assert!(!with_do.answers.is_empty(), "{name} {rtype}");
        let do_only = Ask { ad: false, ..DO };
        assert!(ask(&w, name, rtype, do_only).metadata.authentic_data);
        let ad_only = Ask {
            ad: true,
            ..NO_EDNS
        };
        assert!(ask(&w, name, rtype, ad_only).metadata.authentic_data);
        assert!(!ask(&w, name, rtype, PLAIN_EDNS).metadata.authentic_data);
        assert!(!ask(&w, name, rtype, NO_EDNS).metadata.authentic_data);
    }
}

#[test]
fn unsigned_zone_never_sets_ad() {
    let w = world();
    for (name, rtype) in [
        (PLAIN, HType::MX),
        (PLAIN_MX, HType::A),
        ("_25._tcp.mx1.plain.example", HType::TLSA),
        ("nothing.plain.example", HType::A),
        ("nowhere.invalid", HType::A),
    ] {
        let r = ask(&w, name, rtype, DO);
        assert!(!r.metadata.authentic_data, "{name} {rtype}");
    }
}

#[test]
fn tlsa_records_are_served_with_their_fields() {
    let w = world();
    let r = ask(&w, "_25._tcp.mx1.signed.example.", HType::TLSA, DO);
    assert_eq!(tlsa_of(&r), [(3, 1, 1, vec![0xab; 32])]);
    assert_eq!(r.answers[0].ttl, 300);
    let r = ask(&w, "_25._tcp.mx1.plain.example.", HType::TLSA, DO);
    assert_eq!(tlsa_of(&r), [(2, 0, 2, vec![0xcd; 64])]);
    assert!(!r.metadata.authentic_data);
    // The probe decodes them too.
    let p = DnsProbe::for_world(&w).dnssec(true);
    let reply = p
        .udp("_25._tcp.mx1.signed.example", RecordType::Tlsa)
        .unwrap();
    assert!(reply.authentic_data);
    assert_eq!(
        reply.of_type(RecordType::Tlsa),
        [&Record::Tlsa {
            usage: 3,
            selector: 1,
            matching_type: 1,
            data: vec![0xab; 32]
        }]
    );
    assert_eq!(RecordType::from_code(52), RecordType::Tlsa);
    assert_eq!(RecordType::Tlsa.to_string(), "TLSA");
}

#[test]
fn malformed_and_many_tlsa_records_are_served_verbatim() {
    let w = world();
    let name = "_25._tcp.odd.signed.example";
    let odd = [
        (9, 7, 5, vec![]),
        (3, 1, 1, vec![1, 2, 3]),
        (255, 255, 255, vec![0; 300]),
    ];
    for (usage, selector, matching_type, data) in odd.clone() {
        w.add_record(
            name,
            Record::Tlsa {
                usage,
                selector,
                matching_type,
                data,
            },
        );
    }
    let r = ask(&w, name, HType::TLSA, DO);
    assert_eq!(tlsa_of(&r), odd);
    assert!(r.metadata.authentic_data);
    // A large RRset goes over TCP: the UDP answer is truncated.
    let big = "_25._tcp.big.signed.example";
    for i in 0..64u8 {
        w.add_record(
            big,
            Record::Tlsa {
                usage: 3,
                selector: 1,
                matching_type: 2,
                data: vec![i; 64],
            },
        );
    }
    let r = ask(&w, big, HType::TLSA, DO);
    assert!(r.metadata.truncation);
    let reply = DnsProbe::for_world(&w)
        .dnssec(true)
        .lookup(big, RecordType::Tlsa)
        .unwrap();
    assert!(reply.tcp && reply.authentic_data);
    assert_eq!(reply.of_type(RecordType::Tlsa).len(), 64);
}

#[test]
fn negative_answers_keep_the_soa_and_the_ad_bit() {
    let w = world();
    // NXDOMAIN in a signed zone: authenticated denial, the SOA for the negative TTL.
    let r = ask(&w, "_25._tcp.nothing.signed.example", HType::TLSA, DO);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authentic_data);
    assert!(r.answers.is_empty());
    let RData::SOA(soa) = &r.authorities[0].data else {
        panic!("no SOA: {r:?}")
    };
    assert_eq!(r.authorities[0].name.to_ascii(), "signed.example.");
    assert_eq!(soa.minimum, 300);
    assert_eq!(r.authorities[0].ttl, 300);
    // NODATA: the MX host has an A record and no AAAA.
    let r = ask(&w, MX, HType::AAAA, DO);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty() && r.metadata.authentic_data);
    assert!(matches!(r.authorities[0].data, RData::SOA(_)));
    // NODATA for a TLSA query at the MX host itself, and in the unsigned zone without AD.
    let r = ask(&w, MX, HType::TLSA, DO);
    assert!(r.answers.is_empty() && matches!(r.authorities[0].data, RData::SOA(_)));
    let r = ask(&w, "_25._tcp.nothing.plain.example", HType::TLSA, DO);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(!r.metadata.authentic_data);
    assert!(matches!(r.authorities[0].data, RData::SOA(_)));
}

#[test]
fn bogus_fault_answers_servfail_with_extended_error_6() {
    let w = world();
    w.set_dns_fault(
        &tlsa_name(MX),
        Some(RecordType::Tlsa),
        Some(DnsFault::Bogus),
    );
    let r = ask(&w, "_25._tcp.mx1.signed.example", HType::TLSA, DO);
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(!r.metadata.authentic_data);
    assert!(r.answers.is_empty() && r.authorities.is_empty());
    assert_eq!(ede_codes(&r), [6]);
    // Without EDNS there is no room for the extended error: plain SERVFAIL.
    let r = ask(&w, "_25._tcp.mx1.signed.example", HType::TLSA, NO_EDNS);
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(r.edns.is_none());
    // Other types at the name are unaffected; the probe reads the code too.
    assert_eq!(
        ask(&w, MX, HType::A, DO).metadata.response_code,
        ResponseCode::NoError
    );
    let p = DnsProbe::for_world(&w).dnssec(true);
    let reply = p.udp(&tlsa_name(MX), RecordType::Tlsa).unwrap();
    assert_eq!(
        (reply.rcode, reply.ede.as_slice()),
        (Rcode::ServFail, &[6][..])
    );
    // Cleared, the records come back.
    w.set_dns_fault(&tlsa_name(MX), Some(RecordType::Tlsa), None);
    assert_eq!(tlsa_of(&ask(&w, &tlsa_name(MX), HType::TLSA, DO)).len(), 1);
}

#[test]
fn per_type_faults_work_for_mx_tlsa_a_and_aaaa() {
    let cases = [
        (SIGNED, RecordType::Mx, HType::MX),
        ("_25._tcp.mx1.signed.example", RecordType::Tlsa, HType::TLSA),
        (MX, RecordType::A, HType::A),
        (MX, RecordType::Aaaa, HType::AAAA),
    ];
    for (name, rtype, htype) in cases {
        for (fault, rcode) in [
            (DnsFault::ServFail, ResponseCode::ServFail),
            (DnsFault::Bogus, ResponseCode::ServFail),
            (DnsFault::Refused, ResponseCode::Refused),
            (DnsFault::NxDomain, ResponseCode::NXDomain),
        ] {
            let w = World::builder()
                .domain(SIGNED, Domain::enforce([MX]))
                .signed_zone(SIGNED)
                .record(
                    "_25._tcp.mx1.signed.example",
                    Record::Tlsa {
                        usage: 3,
                        selector: 1,
                        matching_type: 1,
                        data: vec![1; 32],
                    },
                )
                .dns_fault(name, Some(rtype), fault)
                .build()
                .unwrap();
            let r = ask(&w, name, htype, DO);
            assert_eq!(r.metadata.response_code, rcode, "{name} {rtype} {fault:?}");
            // Only that type: the others at the same name answer as usual.
            for other in [HType::MX, HType::TLSA, HType::A, HType::AAAA] {
                if other != htype {
                    let r = ask(&w, name, other, DO);
                    assert_eq!(
                        r.metadata.response_code,
                        ResponseCode::NoError,
                        "{name} {other} beside {rtype} {fault:?}"
                    );
                }
            }
        }
        // No answer at all: the client times out.
        let w = World::builder()
            .domain(SIGNED, Domain::enforce([MX]))
            .dns_fault(name, Some(rtype), DnsFault::NoAnswer)
            .build()
            .unwrap();
        let p = DnsProbe::for_world(&w).timeout(Duration::from_millis(200));
        let err = p.udp(name, rtype).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err}"
        );
    }
}

#[test]
fn signed_zones_change_at_runtime_and_cover_subdomains_only() {
    let w = world();
    assert!(!ask(&w, PLAIN_MX, HType::A, DO).metadata.authentic_data);
    w.set_signed_zone("PLAIN.example.", true);
    assert!(ask(&w, PLAIN_MX, HType::A, DO).metadata.authentic_data);
    w.set_signed_zone(SIGNED, false);
    assert!(!ask(&w, MX, HType::A, DO).metadata.authentic_data);
    // A zone signs its subdomains, never its parent or siblings.
    let w = World::builder()
        .domain(SIGNED, Domain::enforce([MX]))
        .signed_zone("mx1.signed.example")
        .build()
        .unwrap();
    assert!(ask(&w, MX, HType::A, DO).metadata.authentic_data);
    assert!(!ask(&w, SIGNED, HType::MX, DO).metadata.authentic_data);
}

#[test]
fn cname_chain_is_authenticated_only_if_every_name_is_signed() {
    let w = world();
    w.add_record("alias.signed.example", Record::Cname(MX.into()));
    w.add_record("alias2.signed.example", Record::Cname(PLAIN_MX.into()));
    let r = ask(&w, "alias.signed.example", HType::A, DO);
    assert_eq!(r.answers.len(), 2);
    assert!(r.metadata.authentic_data);
    let r = ask(&w, "alias2.signed.example", HType::A, DO);
    assert_eq!(r.answers.len(), 2);
    assert!(!r.metadata.authentic_data);
}

/// The certificate chain the fake MX presents for `host` after STARTTLS.
fn mx_chain(w: &World, host: &str) -> Vec<Vec<u8>> {
    let tcp = TcpStream::connect(w.smtp_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = BufReader::new(tcp);
    let reply = |s: &mut BufReader<TcpStream>| loop {
        let mut line = String::new();
        assert!(s.read_line(&mut line).unwrap() > 0);
        if line.as_bytes().get(3) != Some(&b'-') {
            return line;
        }
    };
    assert!(reply(&mut s).starts_with("220 "));
    s.get_mut().write_all(b"EHLO client.example\r\n").unwrap();
    reply(&mut s);
    s.get_mut().write_all(b"STARTTLS\r\n").unwrap();
    assert!(reply(&mut s).starts_with("220 "));
    // Trust anything: this only reads the chain.
    let mut config = w.client_config();
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(AnyCert));
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = StreamOwned::new(conn, s.into_inner());
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls.conn
        .peer_certificates()
        .unwrap()
        .iter()
        .map(|c| c.to_vec())
        .collect()
}

#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        algorithms().supported_schemes()
    }
}

fn algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn tlsa_data(w: &World, host: &str, usage: u8, selector: u8, matching: u8) -> Vec<u8> {
    match w.mx_tlsa(host, usage, selector, matching).unwrap() {
        Record::Tlsa {
            usage: u,
            selector: s,
            matching_type: m,
            data,
        } => {
            assert_eq!((u, s, m), (usage, selector, matching));
            data
        }
        other => panic!("not TLSA: {other:?}"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn mx_tlsa_matches_the_chain_the_fake_mx_presents() {
    let w = world();
    let chain = mx_chain(&w, MX);
    assert_eq!(chain.len(), 2, "leaf and its CA");
    let (leaf, ca) = (&chain[0], &chain[1]);
    assert_eq!(ca, &w.ca_der().to_vec());
    // Selector 0: the full certificates.
    assert_eq!(&tlsa_data(&w, MX, 3, 0, 0), leaf);
    assert_eq!(&tlsa_data(&w, MX, 2, 0, 0), ca);
    let sha256 = |b: &[u8]| digest::digest(&digest::SHA256, b).as_ref().to_vec();
    let sha512 = |b: &[u8]| digest::digest(&digest::SHA512, b).as_ref().to_vec();
    assert_eq!(tlsa_data(&w, MX, 3, 0, 1), sha256(leaf));
    assert_eq!(tlsa_data(&w, MX, 3, 0, 2), sha512(leaf));
    assert_eq!(tlsa_data(&w, MX, 2, 0, 1), sha256(ca));
    // Selector 1: the SubjectPublicKeyInfo, which is a part of the certificate's DER.
    let leaf_spki = tlsa_data(&w, MX, 3, 1, 0);
    let ca_spki = tlsa_data(&w, MX, 2, 1, 0);
    assert!(contains(leaf, &leaf_spki) && contains(ca, &ca_spki));
    assert_ne!(leaf_spki, ca_spki);
    assert_eq!(tlsa_data(&w, MX, 3, 1, 1), sha256(&leaf_spki));
    assert_eq!(tlsa_data(&w, MX, 2, 1, 2), sha512(&ca_spki));
    // The PKIX usages select the same certificates.
    assert_eq!(tlsa_data(&w, MX, 1, 0, 1), sha256(leaf));
    assert_eq!(tlsa_data(&w, MX, 0, 0, 1), sha256(ca));
    // Unsupported parameters are refused.
    for (u, s, m) in [(4, 0, 0), (3, 2, 0), (3, 1, 3)] {
        let err = w.mx_tlsa(MX, u, s, m).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}

#[test]
fn mx_tlsa_follows_the_mx_certificate_kind() {
    let w = world();
    w.set_mx_cert(MX, Cert::SelfSigned);
    let chain = mx_chain(&w, MX);
    assert_eq!(chain.len(), 1, "a self-signed leaf alone");
    let sha256 = |b: &[u8]| digest::digest(&digest::SHA256, b).as_ref().to_vec();
    assert_eq!(tlsa_data(&w, MX, 3, 0, 1), sha256(&chain[0]));
    assert_eq!(tlsa_data(&w, MX, 2, 0, 1), sha256(&chain[0]));
    w.set_mx_cert(MX, Cert::UntrustedCa);
    let chain = mx_chain(&w, MX);
    assert_eq!(chain[1], w.untrusted_ca_der().to_vec());
    assert_eq!(tlsa_data(&w, MX, 2, 0, 0), chain[1]);
    assert_eq!(tlsa_data(&w, MX, 3, 0, 0), chain[0]);
}

#[test]
fn publish_mx_tlsa_adds_the_record_at_the_port_25_name() {
    let w = world();
    let record = w.publish_mx_tlsa(MX, 3, 1, 1).unwrap();
    let r = ask(&w, "_25._tcp.mx1.signed.example", HType::TLSA, DO);
    let served = tlsa_of(&r);
    assert_eq!(
        served.len(),
        2,
        "the builder's record and the published one"
    );
    let Record::Tlsa { data, .. } = record else {
        panic!()
    };
    assert!(served.contains(&(3, 1, 1, data)));
    assert_eq!(
        tlsa_name("MX1.Signed.Example."),
        "_25._tcp.mx1.signed.example"
    );
}
