//! The DNS server, checked end to end with the crate's own std client (hickory-proto codec).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::time::Duration;

use mta_sts_testkit::probe::{DnsProbe, Rcode};
use mta_sts_testkit::{DnsFault, Domain, Record, RecordType, Txt, World};

const SHORT: Duration = Duration::from_millis(300);

fn world() -> World {
    World::builder()
        .domain(
            "example.com",
            Domain::enforce(["mx1.example.com", "mx2.example.com", "*.backup.example.com"])
                .txt_id("20240101"),
        )
        .build()
        .expect("world starts")
}

fn dns(world: &World) -> DnsProbe {
    DnsProbe::for_world(world)
}

#[test]
fn txt_record_is_served_over_udp_with_aa_and_echoed_question() {
    let w = world();
    let r = dns(&w)
        .udp("_mta-sts.example.com", RecordType::Txt)
        .unwrap();
    assert_eq!(r.rcode, Rcode::NoError);
    assert!(r.authoritative);
    assert!(!r.truncated && !r.tcp);
    assert_eq!(r.txt(), ["v=STSv1; id=20240101;"]);
    assert_eq!(r.answers[0].name, "_mta-sts.example.com");
    assert_eq!(r.answers[0].ttl, 0);
}

#[test]
fn names_are_case_insensitive_and_root_dot_is_ignored() {
    let w = world();
    let r = dns(&w)
        .udp("_MTA-STS.Example.COM.", RecordType::Txt)
        .unwrap();
    assert_eq!(r.txt(), ["v=STSv1; id=20240101;"]);
    assert_eq!(w.queries("_mta-sts.example.com", RecordType::Txt), 1);
}

#[test]
fn multi_string_txt_record_keeps_its_strings() {
    let w = World::builder()
        .domain(
            "split.example",
            Domain::enforce(["mx.split.example"]).txt(Txt::strings(["v=STSv1; id=ab", "c1;"])),
        )
        .build()
        .unwrap();
    let r = dns(&w)
        .udp("_mta-sts.split.example", RecordType::Txt)
        .unwrap();
    let Record::Txt(t) = &r.answers[0].record else {
        panic!("not a TXT record: {r:?}")
    };
    assert_eq!(t.parts(), [b"v=STSv1; id=ab".to_vec(), b"c1;".to_vec()]);
    assert_eq!(r.txt(), ["v=STSv1; id=abc1;"]);
}

#[test]
fn long_txt_text_is_split_into_255_byte_strings() {
    let long = format!("v=STSv1; id=1; pad={}", "p".repeat(600));
    let w = World::builder()
        .domain(
            "long.example",
            Domain::enforce(["mx.long.example"]).txt(long.as_str()),
        )
        .build()
        .unwrap();
    let r = dns(&w)
        .lookup("_mta-sts.long.example", RecordType::Txt)
        .unwrap();
    let Record::Txt(t) = &r.answers[0].record else {
        panic!("not a TXT record")
    };
    assert_eq!(t.parts().len(), 3);
    assert!(t.parts().iter().all(|p| p.len() <= 255));
    assert_eq!(r.txt(), [long]);
}

#[test]
fn several_txt_records_are_all_returned() {
    let w = World::builder()
        .domain(
            "two.example",
            Domain::enforce(["mx.two.example"]).txts([
                Txt::new("v=spf1 -all"),
                Txt::sts("1"),
                Txt::sts("2"),
            ]),
        )
        .build()
        .unwrap();
    let r = dns(&w)
        .udp("_mta-sts.two.example", RecordType::Txt)
        .unwrap();
    assert_eq!(r.txt(), ["v=spf1 -all", "v=STSv1; id=1;", "v=STSv1; id=2;"]);
}

#[test]
fn cname_chain_is_followed_to_the_target_txt() {
    let w = World::builder()
        .domain(
            "user.example",
            Domain::enforce(["mx.provider.example"]).txt_cname("_mta-sts.middle.example"),
        )
        .record(
            "_mta-sts.middle.example",
            Record::Cname("_mta-sts.provider.example".into()),
        )
        .domain(
            "provider.example",
            Domain::enforce(["mx.provider.example"]).txt_id("prov1"),
        )
        .build()
        .unwrap();
    let r = dns(&w)
        .udp("_mta-sts.user.example", RecordType::Txt)
        .unwrap();
    assert_eq!(r.rcode, Rcode::NoError);
    let names: Vec<(&str, RecordType)> = r
        .answers
        .iter()
        .map(|a| (a.name.as_str(), a.record.record_type()))
        .collect();
    assert_eq!(
        names,
        [
            ("_mta-sts.user.example", RecordType::Cname),
            ("_mta-sts.middle.example", RecordType::Cname),
            ("_mta-sts.provider.example", RecordType::Txt),
        ]
    );
    assert_eq!(r.txt(), ["v=STSv1; id=prov1;"]);
    // Asking for the CNAME itself returns only the first link.
    let c = dns(&w)
        .udp("_mta-sts.user.example", RecordType::Cname)
        .unwrap();
    assert_eq!(
        c.answers.iter().map(|a| &a.record).collect::<Vec<_>>(),
        [&Record::Cname("_mta-sts.middle.example".into())]
    );
}

#[test]
fn cname_loop_is_cut_without_hanging() {
    let w = World::builder()
        .record("a.loop.example", Record::Cname("b.loop.example".into()))
        .record("b.loop.example", Record::Cname("a.loop.example".into()))
        .build()
        .unwrap();
    let r = dns(&w).udp("a.loop.example", RecordType::Txt).unwrap();
    assert_eq!(r.rcode, Rcode::NoError);
    assert_eq!(r.of_type(RecordType::Cname).len(), 8);
    assert!(r.txt().is_empty());
}

#[test]
fn cname_to_a_missing_name_is_nxdomain_after_the_chain() {
    let w = World::builder()
        .domain(
            "dangling.example",
            Domain::enforce(["mx.dangling.example"]).txt_cname("_mta-sts.gone.example"),
        )
        .build()
        .unwrap();
    let r = dns(&w)
        .udp("_mta-sts.dangling.example", RecordType::Txt)
        .unwrap();
    assert_eq!(r.rcode, Rcode::NxDomain);
    assert_eq!(r.of_type(RecordType::Cname).len(), 1);
}

#[test]
fn policy_host_resolves_to_loopback_only() {
    let w = world();
    let a = dns(&w).udp("mta-sts.example.com", RecordType::A).unwrap();
    assert_eq!(a.of_type(RecordType::A), [&Record::A(Ipv4Addr::LOCALHOST)]);
    let aaaa = dns(&w)
        .udp("mta-sts.example.com", RecordType::Aaaa)
        .unwrap();
    assert_eq!(aaaa.rcode, Rcode::NoError);
    assert!(aaaa.answers.is_empty(), "no AAAA: {aaaa:?}");
    assert_eq!(aaaa.authority[0].record.record_type(), RecordType::Soa);
}

#[test]
fn policy_host_addresses_can_be_set_for_fallback_tests() {
    let w = World::builder()
        .domain(
            "multi.example",
            Domain::enforce(["mx.multi.example"]).host_addrs([
                std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
            ]),
        )
        .build()
        .unwrap();
    let a = dns(&w).udp("mta-sts.multi.example", RecordType::A).unwrap();
    assert_eq!(a.of_type(RecordType::A), [&Record::A(Ipv4Addr::LOCALHOST)]);
    let aaaa = dns(&w)
        .udp("mta-sts.multi.example", RecordType::Aaaa)
        .unwrap();
    assert_eq!(
        aaaa.of_type(RecordType::Aaaa),
        [&Record::Aaaa(std::net::Ipv6Addr::LOCALHOST)]
    );
}

#[test]
fn mx_records_follow_the_policy_and_mx_hosts_resolve_to_loopback() {
    let w = world();
    let r = dns(&w).udp("example.com", RecordType::Mx).unwrap();
    assert_eq!(
        r.of_type(RecordType::Mx),
        [
            &Record::Mx(10, "mx1.example.com".into()),
            &Record::Mx(20, "mx2.example.com".into())
        ]
    );
    let a = dns(&w).udp("mx2.example.com", RecordType::A).unwrap();
    assert_eq!(a.of_type(RecordType::A), [&Record::A(Ipv4Addr::LOCALHOST)]);
}

#[test]
fn explicit_mx_records_replace_the_default_ones() {
    let w = World::builder()
        .domain(
            "mx.example",
            Domain::enforce(["*.mx.example"])
                .mx_records([(5, "a.mx.example"), (50, "b.other.example")]),
        )
        .domain(
            "nomx.example",
            Domain::enforce(["x.nomx.example"]).mx_records(Vec::<(u16, String)>::new()),
        )
        .build()
        .unwrap();
    let r = dns(&w).udp("mx.example", RecordType::Mx).unwrap();
    assert_eq!(
        r.of_type(RecordType::Mx),
        [
            &Record::Mx(5, "a.mx.example".into()),
            &Record::Mx(50, "b.other.example".into())
        ]
    );
    let none = dns(&w).udp("nomx.example", RecordType::Mx).unwrap();
    assert_eq!(none.rcode, Rcode::NoError);
    assert!(none.answers.is_empty());
}

#[test]
fn unknown_name_is_nxdomain_with_the_zone_soa() {
    let w = world();
    let r = dns(&w).udp("nothing.example.com", RecordType::Txt).unwrap();
    assert_eq!(r.rcode, Rcode::NxDomain);
    assert!(r.authoritative);
    assert!(r.answers.is_empty());
    assert_eq!(r.authority.len(), 1);
    assert_eq!(r.authority[0].name, "example.com");
    assert!(matches!(
        &r.authority[0].record,
        Record::Soa { mname, minimum: 0, .. } if mname == "ns.example.com"
    ));
    let outside = dns(&w).udp("elsewhere.test", RecordType::A).unwrap();
    assert_eq!(outside.rcode, Rcode::NxDomain);
    assert_eq!(outside.authority[0].name, "");
}

#[test]
fn existing_name_without_the_type_is_nodata_with_soa() {
    let w = world();
    let r = dns(&w).udp("_mta-sts.example.com", RecordType::A).unwrap();
    assert_eq!(r.rcode, Rcode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(r.authority[0].record.record_type(), RecordType::Soa);
}

#[test]
fn domain_without_sts_has_no_txt_record() {
    let w = World::builder()
        .domain(
            "plain.example",
            Domain::without_sts().mx_records([(10, "mx.plain.example")]),
        )
        .build()
        .unwrap();
    let r = dns(&w)
        .udp("_mta-sts.plain.example", RecordType::Txt)
        .unwrap();
    assert_eq!(r.rcode, Rcode::NxDomain);
    let mx = dns(&w).udp("plain.example", RecordType::Mx).unwrap();
    assert_eq!(mx.of_type(RecordType::Mx).len(), 1);
}

#[test]
fn servfail_refused_and_nxdomain_faults() {
    let w = world();
    w.set_dns_fault("_mta-sts.example.com", None, Some(DnsFault::ServFail));
    let r = dns(&w)
        .udp("_mta-sts.example.com", RecordType::Txt)
        .unwrap();
    assert_eq!(r.rcode, Rcode::ServFail);
    assert!(r.answers.is_empty() && !r.authoritative);

    w.set_dns_fault("_mta-sts.example.com", None, Some(DnsFault::Refused));
    let r = dns(&w)
        .udp("_mta-sts.example.com", RecordType::Txt)
        .unwrap();
    assert_eq!(r.rcode, Rcode::Refused);

    w.set_dns_fault("_mta-sts.example.com", None, Some(DnsFault::NxDomain));
    let r = dns(&w)
        .udp("_mta-sts.example.com", RecordType::Txt)
        .unwrap();
    assert_eq!(r.rcode, Rcode::NxDomain);
    assert!(r.answers.is_empty());
    assert_eq!(r.authority[0].record.record_type(), RecordType::Soa);

    w.set_dns_fault("_mta-sts.example.com", None, None);
    let r = dns(&w)
        .udp("_mta-sts.example.com", RecordType::Txt)
        .unwrap();
    assert_eq!(r.txt(), ["v=STSv1; id=20240101;"]);
}

#[test]
fn fault_for_one_type_leaves_other_types_alone() {
    let w = World::builder()
        .domain("example.com", Domain::enforce(["mx1.example.com"]))
        .dns_fault("example.com", Some(RecordType::Mx), DnsFault::ServFail)
        .build()
        .unwrap();
    let mx = dns(&w).udp("example.com", RecordType::Mx).unwrap();
    assert_eq!(mx.rcode, Rcode::ServFail);
    let soa = dns(&w).udp("example.com", RecordType::Soa).unwrap();
    assert_eq!(soa.rcode, Rcode::NoError);
    assert_eq!(soa.of_type(RecordType::Soa).len(), 1);
}

#[test]
fn domain_txt_fault_applies_to_the_sts_name() {
    let w = World::builder()
        .domain(
            "example.com",
            Domain::enforce(["mx1.example.com"]).txt_fault(DnsFault::ServFail),
        )
        .build()
        .unwrap();
    let r = dns(&w)
        .udp("_mta-sts.example.com", RecordType::Txt)
        .unwrap();
    assert_eq!(r.rcode, Rcode::ServFail);
    let a = dns(&w).udp("mta-sts.example.com", RecordType::A).unwrap();
    assert_eq!(a.rcode, Rcode::NoError);
}

#[test]
fn no_answer_fault_drops_the_query_over_udp_and_tcp() {
    let w = world();
    w.set_dns_fault(
        "_mta-sts.example.com",
        Some(RecordType::Txt),
        Some(DnsFault::NoAnswer),
    );
    let p = dns(&w).timeout(SHORT);
    let udp = p.udp("_mta-sts.example.com", RecordType::Txt).unwrap_err();
    assert!(matches!(
        udp.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    let tcp = p.tcp("_mta-sts.example.com", RecordType::Txt).unwrap_err();
    assert!(matches!(
        tcp.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    // The queries were received and counted all the same, and other names still answer.
    assert_eq!(w.queries("_mta-sts.example.com", RecordType::Txt), 2);
    assert_eq!(
        p.udp("example.com", RecordType::Mx).unwrap().rcode,
        Rcode::NoError
    );
}

#[test]
fn truncated_udp_answer_is_complete_over_tcp() {
    let w = world();
    w.set_dns_fault("_mta-sts.example.com", None, Some(DnsFault::TruncateUdp));
    let p = dns(&w);
    let udp = p.udp("_mta-sts.example.com", RecordType::Txt).unwrap();
    assert!(udp.truncated);
    assert!(udp.answers.is_empty());
    let full = p.lookup("_mta-sts.example.com", RecordType::Txt).unwrap();
    assert!(full.tcp && !full.truncated);
    assert_eq!(full.txt(), ["v=STSv1; id=20240101;"]);
    assert_eq!(w.queries("_mta-sts.example.com", RecordType::Txt), 3);
    assert_eq!(w.tcp_queries("_mta-sts.example.com", RecordType::Txt), 1);
}

#[test]
fn answer_larger_than_512_bytes_is_truncated_without_edns_and_fits_with_edns() {
    let many: Vec<Txt> = (0..12)
        .map(|i| Txt::new(format!("filler-{i}-{}", "f".repeat(80))))
        .collect();
    let w = World::builder()
        .domain(
            "big.example",
            Domain::enforce(["mx.big.example"]).txts(many),
        )
        .build()
        .unwrap();
    let plain = dns(&w)
        .udp("_mta-sts.big.example", RecordType::Txt)
        .unwrap();
    assert!(plain.truncated, "over 512 bytes without EDNS");
    let edns = dns(&w)
        .edns(4096)
        .udp("_mta-sts.big.example", RecordType::Txt)
        .unwrap();
    assert!(!edns.truncated);
    assert_eq!(edns.txt().len(), 12);
    let tcp = dns(&w)
        .tcp("_mta-sts.big.example", RecordType::Txt)
        .unwrap();
    assert_eq!(tcp.txt().len(), 12);
}

#[test]
fn scenario_changes_are_visible_to_the_next_query() {
    let w = world();
    let p = dns(&w);
    assert_eq!(
        p.udp("_mta-sts.example.com", RecordType::Txt)
            .unwrap()
            .txt(),
        ["v=STSv1; id=20240101;"]
    );
    assert!(w.set_txt_id("example.com", "20240202"));
    assert_eq!(
        p.udp("_mta-sts.example.com", RecordType::Txt)
            .unwrap()
            .txt(),
        ["v=STSv1; id=20240202;"]
    );
    assert!(w.set_txt("example.com", []));
    assert_eq!(
        p.udp("_mta-sts.example.com", RecordType::Txt)
            .unwrap()
            .rcode,
        Rcode::NxDomain
    );
    w.remove_domain("example.com");
    assert_eq!(
        p.udp("example.com", RecordType::Mx).unwrap().rcode,
        Rcode::NxDomain
    );
    w.add_domain(
        "late.example",
        Domain::enforce(["mx.late.example"]).txt_id("late"),
    );
    assert_eq!(
        p.udp("_mta-sts.late.example", RecordType::Txt)
            .unwrap()
            .txt(),
        ["v=STSv1; id=late;"]
    );
    assert!(!w.set_txt_id("missing.example", "1"));
}

#[test]
fn extra_records_are_served_and_removable() {
    let w = world();
    w.add_record("smtp.example.net", Record::A(Ipv4Addr::LOCALHOST));
    w.add_record("smtp.example.net", Record::Txt(Txt::new("hello")));
    let p = dns(&w);
    assert_eq!(
        p.udp("smtp.example.net", RecordType::A)
            .unwrap()
            .answers
            .len(),
        1
    );
    assert_eq!(
        p.udp("smtp.example.net", RecordType::Other(255))
            .unwrap()
            .answers
            .len(),
        2
    );
    w.remove_records("smtp.example.net");
    assert_eq!(
        p.udp("smtp.example.net", RecordType::A).unwrap().rcode,
        Rcode::NxDomain
    );
}

#[test]
fn ttl_is_configurable() {
    let w = World::builder()
        .ttl(300)
        .domain("example.com", Domain::enforce(["mx1.example.com"]))
        .build()
        .unwrap();
    let r = dns(&w)
        .udp("_mta-sts.example.com", RecordType::Txt)
        .unwrap();
    assert_eq!(r.answers[0].ttl, 300);
    let nx = dns(&w).udp("nope.example.com", RecordType::Txt).unwrap();
    assert!(matches!(
        nx.authority[0].record,
        Record::Soa { minimum: 300, .. }
    ));
}

#[test]
fn query_counters_count_per_name_type_and_transport() {
    let w = world();
    let p = dns(&w);
    for _ in 0..3 {
        p.udp("_mta-sts.example.com", RecordType::Txt).unwrap();
    }
    p.tcp("_mta-sts.example.com", RecordType::Txt).unwrap();
    p.udp("mta-sts.example.com", RecordType::A).unwrap();
    assert_eq!(w.queries("_mta-sts.example.com", RecordType::Txt), 4);
    assert_eq!(w.tcp_queries("_mta-sts.example.com", RecordType::Txt), 1);
    assert_eq!(w.queries("mta-sts.example.com", RecordType::A), 1);
    assert_eq!(w.queries("mta-sts.example.com", RecordType::Aaaa), 0);
    assert_eq!(w.total_queries(), 5);
    w.reset_counters();
    assert_eq!(w.total_queries(), 0);
}

#[test]
fn udp_and_tcp_share_one_port_on_loopback() {
    let w = world();
    assert_eq!(w.dns_addr().ip(), Ipv4Addr::LOCALHOST);
    assert_eq!(w.dns_tcp_addr().ip(), Ipv4Addr::LOCALHOST);
    assert_eq!(w.dns_addr().port(), w.dns_tcp_addr().port());
}

#[test]
fn several_tcp_queries_on_one_connection_are_answered_in_order() {
    let w = world();
    let mut s = TcpStream::connect(w.dns_tcp_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Two hand-made queries (ids 1 and 2) for "_mta-sts.example.com" TXT.
    let mut out = Vec::new();
    for id in [1u16, 2] {
        let q = raw_query(id, "_mta-sts.example.com", 16);
        out.extend_from_slice(&u16::try_from(q.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&q);
    }
    s.write_all(&out).unwrap();
    for id in [1u16, 2] {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut msg).unwrap();
        assert_eq!(u16::from_be_bytes([msg[0], msg[1]]), id);
        assert_eq!(msg[3] & 0x0f, 0, "NOERROR");
    }
}

/// A minimal DNS query, written by hand (independent of hickory).
fn raw_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// xorshift64*: deterministic pseudo-random bytes for the hostile-input test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next().to_le_bytes()[3]).collect()
    }
}

#[test]
fn hostile_datagrams_get_formerr_or_silence_and_the_server_keeps_answering() {
    let w = world();
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.connect(w.dns_addr()).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let good = raw_query(7, "_mta-sts.example.com", 16);
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 11],
        vec![0xff; 12],
        good[..good.len() - 3].to_vec(),
        // A response (QR set): must never be answered.
        {
            let mut r = good.clone();
            r[2] |= 0x80;
            r
        },
        // Two questions.
        {
            let mut r = good.clone();
            r[5] = 2;
            r.extend_from_slice(&good[12..]);
            r
        },
        // A compression pointer loop in the question name.
        {
            let mut r = good[..12].to_vec();
            r.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1]);
            r
        },
        // A label longer than 63 bytes.
        {
            let mut r = good[..12].to_vec();
            r.push(64);
            r.extend_from_slice(&[b'a'; 64]);
            r.extend_from_slice(&[0, 0, 16, 0, 1]);
            r
        },
        // An unknown opcode.
        {
            let mut r = good.clone();
            r[2] = 0x78;
            r
        },
    ];
    for i in 0..400 {
        let n = usize::try_from(rng.next() % 600).unwrap();
        let mut b = rng.bytes(n);
        if i % 2 == 0 && b.len() > 12 {
            // Keep a plausible header so the parser goes deeper.
            b[2] &= 0x7f;
            b[4] = 0;
            b[5] = 1;
        }
        inputs.push(b);
        // Mutations of a valid query.
        let mut m = good.clone();
        let at = usize::try_from(rng.next()).unwrap() % m.len();
        m[at] = rng.bytes(1)[0];
        inputs.push(m);
    }
    for input in &inputs {
        sock.send(input).unwrap();
    }
    // Every answer that came back is either a FORMERR/NOTIMP or an answer to a query.
    sock.set_read_timeout(Some(SHORT)).unwrap();
    let mut buf = [0u8; 4096];
    let mut answers = 0;
    for _ in 0..inputs.len() {
        match sock.recv(&mut buf) {
            Ok(n) => {
                assert!(n >= 12);
                assert_ne!(buf[2] & 0x80, 0, "only responses come back");
                answers += 1;
            }
            Err(_) => break,
        }
    }
    assert!(answers > 0 && answers < inputs.len());
    // The server still answers properly, over UDP and TCP.
    let p = dns(&w);
    assert_eq!(
        p.udp("_mta-sts.example.com", RecordType::Txt)
            .unwrap()
            .txt()
            .len(),
        1
    );
    assert_eq!(
        p.tcp("_mta-sts.example.com", RecordType::Txt)
            .unwrap()
            .txt()
            .len(),
        1
    );
}

#[test]
fn hostile_tcp_frames_close_the_connection_at_worst() {
    let w = world();
    let mut rng = Rng(42);
    for i in 0..50 {
        let mut s = TcpStream::connect(w.dns_tcp_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = usize::try_from(rng.next() % 300).unwrap();
        let body = rng.bytes(n);
        let mut frame = match i % 3 {
            // Length prefix longer than the data, then half-close: the server must not wait
            // forever for the rest.
            0 => 1000u16.to_be_bytes().to_vec(),
            _ => u16::try_from(body.len()).unwrap().to_be_bytes().to_vec(),
        };
        frame.extend_from_slice(&body);
        s.write_all(&frame).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut sink = Vec::new();
        // Ends with EOF (closed by the server after its answer, if any).
        let _ = s.read_to_end(&mut sink);
    }
    let p = dns(&w);
    assert_eq!(
        p.tcp("_mta-sts.example.com", RecordType::Txt)
            .unwrap()
            .txt()
            .len(),
        1
    );
}
