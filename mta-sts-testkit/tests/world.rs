//! The world as a whole: start-up, loopback only, shutdown, limits, bulk domains, isolation.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mta_sts_testkit::probe::{DnsProbe, HttpsProbe, ProbeError, Rcode};
use mta_sts_testkit::{Domain, Http, Mode, POLICY_PATH, RecordType, World, bulk_domain_name};

const HOST: &str = "mta-sts.example.com";

fn enforce() -> Domain {
    Domain::enforce(["mx1.example.com"])
}

#[test]
fn world_starts_in_milliseconds_on_loopback_only() {
    let t = Instant::now();
    let w = World::builder()
        .domain("example.com", enforce())
        .build()
        .unwrap();
    let started = t.elapsed();
    println!("world started in {started:?}");
    // Generous bound: this is about "not seconds", and CI machines are slow.
    assert!(started < Duration::from_secs(5), "{started:?}");
    for addr in [w.dns_addr(), w.dns_tcp_addr(), w.https_addr()] {
        assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(addr.port(), 0);
    }
    assert_eq!(w.https_port(), w.https_addr().port());
    assert!(w.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_ne!(w.ca_der(), w.untrusted_ca_der());
}

#[test]
fn dropping_the_world_joins_every_thread_and_closes_open_connections() {
    let w = World::builder()
        .domain("example.com", enforce().http(Http::StallAfterHeaders))
        .domain(
            "hs.example",
            Domain::enforce(["mx.hs.example"]).http(Http::StallHandshake),
        )
        .build()
        .unwrap();
    let threads = w.threads();
    // An idle DNS TCP connection, an HTTPS connection that never sends a ClientHello, and a
    // stalled response: each holds a server thread.
    let mut dns_idle = TcpStream::connect(w.dns_tcp_addr()).unwrap();
    let mut https_idle = TcpStream::connect(w.https_addr()).unwrap();
    let mut stalled = HttpsProbe::for_world(&w).connect(HOST).unwrap();
    stalled
        .write_all(format!("GET {POLICY_PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .unwrap();
    let mut first = [0u8; 1];
    assert_eq!(stalled.read(&mut first).unwrap(), 1, "the head has begun");
    assert!(threads.live() >= 4);

    drop(w);
    assert_eq!(threads.live(), 0);
    for s in [&mut dns_idle, &mut https_idle] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        // EOF or reset: closed by the server, not a timeout.
        match s.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e:?}"
            ),
        }
    }
}

#[test]
fn shutdown_is_the_same_as_drop() {
    let w = World::builder().build().unwrap();
    let threads = w.threads();
    let dns = w.dns_addr();
    w.shutdown();
    assert_eq!(threads.live(), 0);
    let e = DnsProbe::new(dns, dns)
        .timeout(Duration::from_millis(200))
        .udp("example.com", RecordType::A)
        .unwrap_err();
    assert!(!e.to_string().is_empty());
}

#[test]
fn connection_limit_queues_extra_clients_until_a_slot_frees() {
    let w = World::builder()
        .max_connections(1)
        .domain("example.com", enforce().http(Http::StallAfterHeaders))
        .domain("other.example", Domain::enforce(["mx.other.example"]))
        .build()
        .unwrap();
    let mut stalled = HttpsProbe::for_world(&w).connect(HOST).unwrap();
    stalled
        .write_all(format!("GET {POLICY_PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .unwrap();
    let mut first = [0u8; 1];
    assert_eq!(stalled.read(&mut first).unwrap(), 1);
    std::thread::scope(|s| {
        let queued = s.spawn(|| {
            HttpsProbe::for_world(&w)
                .get("mta-sts.other.example", POLICY_PATH)
                .map(|r| r.status)
        });
        // Whatever the queued client has done so far, the server has not taken it on.
        assert_eq!(w.connections("mta-sts.other.example"), 0);
        assert_eq!(w.release_stalls(), 1);
        let mut rest = Vec::new();
        stalled.read_to_end(&mut rest).unwrap();
        drop(stalled);
        assert_eq!(queued.join().unwrap().unwrap(), 200);
    });
    assert_eq!(w.connections("mta-sts.other.example"), 1);
}

#[test]
fn bulk_domains_serve_valid_txt_records_and_policies() {
    let w = World::builder().bulk_domains(1000).build().unwrap();
    assert_eq!(bulk_domain_name(7), "d0007.example");
    assert_eq!(w.domain_names().len(), 1000);
    let dns = DnsProbe::for_world(&w);
    let https = HttpsProbe::for_world(&w);
    for i in [0, 1, 500, 999] {
        let d = bulk_domain_name(i);
        let txt = dns.udp(&format!("_mta-sts.{d}"), RecordType::Txt).unwrap();
        assert_eq!(txt.txt(), ["v=STSv1; id=1;"]);
        let p = https.get(&format!("mta-sts.{d}"), POLICY_PATH).unwrap();
        assert_eq!(p.status, 200);
        assert!(p.text().contains(&format!("mx: mx.{d}\r\n")));
    }
    let missing = dns.udp("_mta-sts.d1000.example", RecordType::Txt).unwrap();
    assert_eq!(missing.rcode, Rcode::NxDomain);
}

#[test]
fn bulk_domains_with_a_template() {
    let w = World::builder()
        .bulk_domains_with(3, |i, name| {
            Domain::new(
                if i == 1 { Mode::Testing } else { Mode::Enforce },
                [format!("*.{name}")],
            )
            .txt_id(&format!("id{i}"))
        })
        .build()
        .unwrap();
    let p = HttpsProbe::for_world(&w)
        .get("mta-sts.d0001.example", POLICY_PATH)
        .unwrap();
    assert!(
        p.text()
            .contains("mode: testing\r\nmx: *.d0001.example\r\n")
    );
    let txt = DnsProbe::for_world(&w)
        .udp("_mta-sts.d0002.example", RecordType::Txt)
        .unwrap();
    assert_eq!(txt.txt(), ["v=STSv1; id=id2;"]);
}

#[test]
fn update_and_domain_accessors() {
    let w = World::builder()
        .domain("example.com", enforce())
        .build()
        .unwrap();
    assert!(!w.update("missing.example", |d| d));
    let before = w.domain("Example.COM.").unwrap();
    assert!(w.update("example.com", |d| d.max_age(5)));
    let after = w.domain("example.com").unwrap();
    assert_ne!(before, after);
    assert!(after.policy_text().contains("max_age: 5\r\n"));
    assert!(w.remove_domain("example.com").is_some());
    assert!(w.domain("example.com").is_none());
    // The policy host is now unknown: no certificate for it.
    let e = HttpsProbe::for_world(&w)
        .get(HOST, POLICY_PATH)
        .unwrap_err();
    assert!(matches!(e, ProbeError::Tls(_)), "{e:?}");
}

#[test]
fn two_worlds_are_independent_and_do_not_trust_each_other() {
    let a = World::builder()
        .domain("example.com", enforce().txt_id("a"))
        .build()
        .unwrap();
    let b = World::builder()
        .domain("example.com", enforce().txt_id("b"))
        .build()
        .unwrap();
    assert_ne!(a.dns_addr(), b.dns_addr());
    assert_ne!(a.ca_der(), b.ca_der());
    let ta = DnsProbe::for_world(&a)
        .udp("_mta-sts.example.com", RecordType::Txt)
        .unwrap();
    let tb = DnsProbe::for_world(&b)
        .udp("_mta-sts.example.com", RecordType::Txt)
        .unwrap();
    assert_eq!(
        (ta.txt(), tb.txt()),
        (
            vec!["v=STSv1; id=a;".to_owned()],
            vec!["v=STSv1; id=b;".to_owned()]
        )
    );
    // A client trusting world a, connecting to world b's server.
    let cross = HttpsProbe::new(b.https_addr(), Arc::new(a.client_config()));
    let e = cross.get(HOST, POLICY_PATH).unwrap_err();
    assert!(
        matches!(
            e.tls(),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature | rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{e:?}"
    );
    assert_eq!(a.total_queries(), 1);
    assert_eq!(b.total_queries(), 1);
}

#[test]
fn peak_dns_in_flight_counts_the_queries_held_by_the_latency_at_once() {
    let latency = Duration::from_millis(500);
    let w = World::builder()
        .domain("example.com", enforce().txt_id("1"))
        .dns_latency(latency)
        .build()
        .unwrap();
    assert_eq!(w.peak_dns_in_flight(), 0);
    let probe = DnsProbe::for_world(&w);
    let ask = || {
        let t = Instant::now();
        let txt = probe.udp("_mta-sts.example.com", RecordType::Txt).unwrap();
        assert_eq!(txt.txt(), ["v=STSv1; id=1;"]);
        t.elapsed()
    };
    // Five clients at once: each answer is held half a second, far longer than it takes the
    // five to send, so the five are in flight together.
    let took = std::thread::scope(|s| {
        let calls: Vec<_> = (0..5).map(|_| s.spawn(ask)).collect();
        calls
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(took.iter().all(|t| *t >= latency), "{took:?}");
    assert_eq!(w.peak_dns_in_flight(), 5);
    // One at a time: the peak starts again from what is in flight (nothing) and stays at one.
    w.reset_counters();
    assert_eq!(w.peak_dns_in_flight(), 0);
    ask();
    ask();
    assert_eq!(w.peak_dns_in_flight(), 1);
    assert_eq!(w.total_queries(), 2);
}

#[test]
fn peak_https_in_flight_counts_the_connections_served_at_once() {
    let w = World::builder()
        .domain("example.com", enforce())
        .build()
        .unwrap();
    assert_eq!(w.peak_https_in_flight(), 0);
    let probe = HttpsProbe::for_world(&w);
    // Three handshakes done: three connections being served, none with its request yet.
    let mut streams: Vec<_> = (0..3).map(|_| probe.connect(HOST).unwrap()).collect();
    for s in &mut streams {
        s.write_all(format!("GET {POLICY_PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
            .unwrap();
        let mut response = Vec::new();
        s.read_to_end(&mut response).unwrap();
        assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
    assert_eq!(w.peak_https_in_flight(), 3);
    w.reset_counters();
    assert_eq!(w.peak_https_in_flight(), 0);
    for _ in 0..2 {
        assert_eq!(probe.get(HOST, POLICY_PATH).unwrap().status, 200);
    }
    assert_eq!(w.peak_https_in_flight(), 1);
}

/// A free port of 127.0.0.1 for TCP and UDP at once (free when asked; another process may take
/// it before the world binds it, which would only make the test fail, not pass wrongly).
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

#[test]
fn servers_bind_the_addresses_the_builder_names() {
    let dns = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let https = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let smtp = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let w = World::builder()
        .bulk_domains(2)
        .bind_dns(dns)
        .bind_https(https)
        .bind_smtp(smtp)
        .build()
        .unwrap();
    assert_eq!(w.dns_addr(), dns);
    assert_eq!(w.dns_tcp_addr(), dns);
    assert_eq!(w.https_addr(), https);
    assert_eq!(w.smtp_addr(), smtp);
    let name = format!("_mta-sts.{}", bulk_domain_name(1));
    let probe = DnsProbe::new(dns, dns);
    assert_eq!(probe.udp(&name, RecordType::Txt).unwrap().txt().len(), 1);
    assert_eq!(probe.tcp(&name, RecordType::Txt).unwrap().txt().len(), 1);
    let host = format!("mta-sts.{}", bulk_domain_name(1));
    let r = HttpsProbe::for_world(&w).get(&host, POLICY_PATH).unwrap();
    assert_eq!(r.status, 200);
    // A second world cannot take the same addresses.
    assert!(World::builder().bind_https(https).build().is_err());
    drop(w);
}
