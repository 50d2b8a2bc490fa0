//! The HTTPS server, checked end to end with the crate's own rustls client.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use mta_sts_testkit::probe::{HttpsProbe, ProbeError, TlsStream};
use mta_sts_testkit::{Cert, Domain, Http, POLICY_PATH, TlsVersions, World};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::{CertificateError, ClientConfig, ProtocolVersion, SupportedProtocolVersion};

const HOST: &str = "mta-sts.example.com";
const SHORT: Duration = Duration::from_millis(300);
const KIB70: usize = 70 * 1024;

fn world_with(domain: Domain) -> World {
    World::builder()
        .domain("example.com", domain)
        .build()
        .expect("world starts")
}

fn enforce() -> Domain {
    Domain::enforce(["mx1.example.com"])
}

fn get(w: &World) -> Result<mta_sts_testkit::probe::HttpsResponse, ProbeError> {
    HttpsProbe::for_world(w).get(HOST, POLICY_PATH)
}

fn config(
    roots: rustls::RootCertStore,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn cert_error(e: &ProbeError) -> Option<&CertificateError> {
    match e.tls() {
        Some(rustls::Error::InvalidCertificate(c)) => Some(c),
        _ => None,
    }
}

/// Sends a GET on an open TLS stream and reads up to the end of the response head.
fn send_get_read_head(s: &mut TlsStream) -> String {
    s.write_all(format!("GET {POLICY_PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 4096, "head too long");
        let n = s.read(&mut byte).unwrap();
        assert_eq!(n, 1, "connection ended inside the head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn policy_is_served_with_text_plain_and_content_length() {
    let d = enforce().txt_id("1");
    let w = world_with(d.clone());
    let r = get(&w).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(
        r.header("content-length"),
        Some(d.policy_text().len().to_string().as_str())
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert!(!r.chunked);
    assert_eq!(
        r.text(),
        "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmax_age: 86400\r\n"
    );
}

#[test]
fn verbatim_policy_body_is_served_and_can_change_while_running() {
    let w = world_with(
        enforce().policy_body("version: STSv1\nmode: testing\nmx: a.example.com\nmax_age: 5\n"),
    );
    assert_eq!(
        get(&w).unwrap().text(),
        "version: STSv1\nmode: testing\nmx: a.example.com\nmax_age: 5\n"
    );
    assert!(w.set_policy("example.com", "garbage"));
    assert_eq!(get(&w).unwrap().text(), "garbage");
    assert!(w.update("example.com", |d| d.generated_policy().max_age(60)));
    assert!(get(&w).unwrap().text().contains("max_age: 60\r\n"));
}

#[test]
fn other_paths_are_404_and_other_methods_405() {
    let w = world_with(enforce());
    let p = HttpsProbe::for_world(&w);
    let r = p.get(HOST, "/.well-known/other.txt").unwrap();
    assert_eq!(r.status, 404);
    let mut s = p.connect(HOST).unwrap();
    s.write_all(
        format!("POST {POLICY_PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let r = mta_sts_testkit::probe::parse_response(&buf).unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    assert_eq!(w.fetches(HOST), 2);
}

#[test]
fn malformed_request_gets_400() {
    let w = world_with(enforce());
    let mut s = HttpsProbe::for_world(&w).connect(HOST).unwrap();
    s.write_all(b"GET\x01 / HTTP/9\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    assert_eq!(
        mta_sts_testkit::probe::parse_response(&buf).unwrap().status,
        400
    );
}

#[test]
fn oversized_request_head_gets_431() {
    let w = world_with(enforce());
    let mut s = HttpsProbe::for_world(&w).connect(HOST).unwrap();
    let mut req = format!("GET {POLICY_PATH} HTTP/1.1\r\nHost: {HOST}\r\n");
    req.push_str(&format!("X-Big: {}\r\n", "b".repeat(20_000)));
    // The server answers once it has read 16 KiB, before the head ends.
    let _ = s.write_all(req.as_bytes());
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert_eq!(
        mta_sts_testkit::probe::parse_response(&buf).unwrap().status,
        431
    );
}

#[test]
fn status_faults_404_and_500() {
    let w = world_with(enforce().http(Http::Status(404)));
    assert_eq!(get(&w).unwrap().status, 404);
    w.set_http("example.com", Http::Status(500));
    let r = get(&w).unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "500 Internal Server Error\n");
    w.set_http("example.com", Http::Status(204));
    let r = get(&w).unwrap();
    assert_eq!((r.status, r.body.len()), (204, 0));
}

#[test]
fn redirect_has_a_location_and_nothing_else_is_requested() {
    let w = world_with(enforce().http(Http::Redirect {
        status: 301,
        location: "https://mta-sts.elsewhere.example/.well-known/mta-sts.txt".into(),
    }));
    let r = get(&w).unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://mta-sts.elsewhere.example/.well-known/mta-sts.txt")
    );
    assert!(r.body.is_empty());
    assert_eq!(w.fetches(HOST), 1);
    w.set_http(
        "example.com",
        Http::Redirect {
            status: 302,
            location: "/x".into(),
        },
    );
    assert_eq!(get(&w).unwrap().status, 302);
}

#[test]
fn wrong_and_missing_content_type() {
    let w = world_with(enforce().http(Http::ContentType("text/html".into())));
    let r = get(&w).unwrap();
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("text/html"))
    );
    assert!(r.text().starts_with("version: STSv1"));
    w.set_http(
        "example.com",
        Http::ContentType("text/plain; charset=utf-8".into()),
    );
    assert_eq!(
        get(&w).unwrap().header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    w.set_http("example.com", Http::NoContentType);
    let r = get(&w).unwrap();
    assert_eq!((r.status, r.header("content-type")), (200, None));
    assert!(r.text().starts_with("version: STSv1"));
}

#[test]
fn chunked_body_decodes_to_the_policy() {
    let d = enforce().http(Http::Chunked);
    let w = world_with(d.clone());
    let r = get(&w).unwrap();
    assert!(r.chunked);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.text(), d.policy_text());
}

#[test]
fn chunked_body_comes_in_several_chunks() {
    let w = world_with(enforce().http(Http::Chunked));
    let mut s = HttpsProbe::for_world(&w).connect(HOST).unwrap();
    send_get_read_head(&mut s);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let text = String::from_utf8(rest).unwrap();
    assert!(
        text.starts_with("10\r\nversion: STSv1\r\n\r\n10\r\nmode: enforce\r\nm\r\n"),
        "{text:?}"
    );
    assert!(text.ends_with("\r\n0\r\n\r\n"));
}

#[test]
fn oversize_body_is_exactly_the_size_asked_and_starts_with_the_policy() {
    let d = enforce().http(Http::Oversize {
        size: KIB70,
        chunked: false,
    });
    let w = world_with(d.clone());
    let r = get(&w).unwrap();
    assert_eq!(r.header("content-length"), Some("71680"));
    assert_eq!(r.body.len(), KIB70);
    let text = r.text();
    assert!(text.starts_with(&d.policy_text()));
    assert!(
        text.lines().skip(4).all(|l| l.starts_with("pad: x")),
        "padding lines only"
    );

    w.set_http(
        "example.com",
        Http::Oversize {
            size: KIB70,
            chunked: true,
        },
    );
    let r = get(&w).unwrap();
    assert!(r.chunked);
    assert_eq!(r.body.len(), KIB70);
}

#[test]
fn short_body_announces_more_than_it_sends() {
    let d = enforce().http(Http::ShortBody { announced: KIB70 });
    let w = world_with(d.clone());
    match get(&w) {
        Err(ProbeError::ShortBody { expected, received }) => {
            assert_eq!(expected, KIB70);
            assert_eq!(received, d.policy_text().len());
        }
        other => panic!("expected a short body, got {other:?}"),
    }
    // An announced length below the body's is raised so the body is still short.
    w.set_http("example.com", Http::ShortBody { announced: 0 });
    assert!(matches!(get(&w), Err(ProbeError::ShortBody { .. })));
}

#[test]
fn stall_after_headers_holds_connection_until_released() {
    let d = enforce().http(Http::StallAfterHeaders);
    let w = world_with(d.clone());
    let mut s = HttpsProbe::for_world(&w).connect(HOST).unwrap();
    let head = send_get_read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(head.contains(&format!("Content-Length: {}\r\n", d.policy_text().len())));
    assert_eq!(w.stalled(), 1);
    // Nothing follows the head while the server stalls.
    s.sock.set_read_timeout(Some(SHORT)).unwrap();
    let mut buf = [0u8; 64];
    let err = s.read(&mut buf).unwrap_err();
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    // Released, it sends the body and closes.
    assert_eq!(w.release_stalls(), 1);
    s.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut body = Vec::new();
    s.read_to_end(&mut body).unwrap();
    assert_eq!(String::from_utf8(body).unwrap(), d.policy_text());
    assert_eq!(w.stalled(), 0);
}

#[test]
fn stall_ends_when_the_world_is_dropped() {
    let w = world_with(enforce().http(Http::StallAfterHeaders));
    let threads = w.threads();
    let mut s = HttpsProbe::for_world(&w).connect(HOST).unwrap();
    send_get_read_head(&mut s);
    drop(w);
    assert_eq!(threads.live(), 0);
    // The connection was closed without a body.
    s.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    let r = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no body after shutdown: {r:?}");
}

#[test]
fn stall_ends_when_the_client_gives_up() {
    // One connection at a time: the next request is only served once the stalled
    // connection's thread has ended.
    let w = World::builder()
        .max_connections(1)
        .domain("example.com", enforce().http(Http::StallAfterHeaders))
        .build()
        .unwrap();
    let mut s = HttpsProbe::for_world(&w).connect(HOST).unwrap();
    send_get_read_head(&mut s);
    assert_eq!(w.stalled(), 1);
    w.set_http("example.com", Http::Policy);
    drop(s);
    assert_eq!(get(&w).unwrap().status, 200);
    assert_eq!(w.stalled(), 0);
}

#[test]
fn stall_handshake_never_completes_the_handshake() {
    let w = world_with(enforce().http(Http::StallHandshake));
    let e = HttpsProbe::for_world(&w)
        .timeout(SHORT)
        .connect(HOST)
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert_eq!(w.fetches(HOST), 0);
}

#[test]
fn reset_closes_the_connection_during_the_handshake() {
    let w = world_with(enforce().http(Http::Reset));
    let e = get(&w).unwrap_err();
    assert!(!e.is_timeout(), "{e:?}");
    assert!(matches!(e, ProbeError::Io(_)), "{e:?}");
    assert_eq!(w.connections(HOST), 1);
    assert_eq!(w.fetches(HOST), 0);
}

#[test]
fn raw_response_is_sent_verbatim() {
    let w = world_with(enforce().http(Http::Raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Odd: yes\r\n\r\nhello".to_vec(),
    )));
    let r = get(&w).unwrap();
    assert_eq!(r.header("x-odd"), Some("yes"));
    assert_eq!(r.text(), "hello");
}

#[test]
fn extra_headers_are_added_to_responses() {
    let w = world_with(
        enforce()
            .header("Cache-Control", "max-age=60")
            .header("ETag", "\"abc\""),
    );
    let r = get(&w).unwrap();
    assert_eq!(r.header("cache-control"), Some("max-age=60"));
    assert_eq!(r.header("etag"), Some("\"abc\""));
}

#[test]
fn valid_and_wildcard_certificates_are_accepted() {
    let w = world_with(enforce());
    assert_eq!(get(&w).unwrap().status, 200);
    w.set_cert("example.com", Cert::Wildcard);
    assert_eq!(get(&w).unwrap().status, 200);
}

#[test]
fn untrusted_ca_certificate_is_rejected_unless_that_ca_is_trusted() {
    let w = world_with(enforce().cert(Cert::UntrustedCa));
    let e = get(&w).unwrap_err();
    assert_eq!(
        cert_error(&e),
        Some(&CertificateError::UnknownIssuer),
        "{e:?}"
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(w.untrusted_ca_der()).unwrap();
    let p = HttpsProbe::new(w.https_addr(), config(roots, rustls::DEFAULT_VERSIONS));
    assert_eq!(p.get(HOST, POLICY_PATH).unwrap().status, 200);
}

#[test]
fn self_signed_certificate_is_rejected() {
    let w = world_with(enforce().cert(Cert::SelfSigned));
    let e = get(&w).unwrap_err();
    assert_eq!(
        cert_error(&e),
        Some(&CertificateError::UnknownIssuer),
        "{e:?}"
    );
}

#[test]
fn certificate_for_the_wrong_name_is_rejected() {
    let w = world_with(enforce().cert(Cert::WrongName));
    let e = get(&w).unwrap_err();
    assert!(
        matches!(
            cert_error(&e),
            Some(CertificateError::NotValidForNameContext { .. })
        ),
        "{e:?}"
    );
}

#[test]
fn common_name_only_and_partial_wildcard_certificates_are_rejected() {
    for kind in [Cert::CommonNameOnly, Cert::PartialWildcard] {
        let w = world_with(enforce().cert(kind));
        let e = get(&w).unwrap_err();
        assert!(cert_error(&e).is_some(), "{kind:?}: {e:?}");
    }
}

#[test]
fn expired_and_not_yet_valid_certificates_are_rejected() {
    let w = world_with(enforce().cert(Cert::Expired));
    let e = get(&w).unwrap_err();
    assert!(
        matches!(
            cert_error(&e),
            Some(CertificateError::ExpiredContext { .. })
        ),
        "{e:?}"
    );
    w.set_cert("example.com", Cert::NotYetValid);
    let e = get(&w).unwrap_err();
    assert!(
        matches!(
            cert_error(&e),
            Some(CertificateError::NotValidYetContext { .. })
        ),
        "{e:?}"
    );
    w.set_cert("example.com", Cert::Valid);
    assert_eq!(get(&w).unwrap().status, 200);
}

#[test]
fn unknown_sni_gets_no_certificate() {
    let w = world_with(enforce());
    let e = HttpsProbe::for_world(&w)
        .get("mta-sts.unknown.example", POLICY_PATH)
        .unwrap_err();
    assert!(
        matches!(e, ProbeError::Tls(rustls::Error::AlertReceived(_))),
        "{e:?}"
    );
    assert_eq!(w.connections("mta-sts.unknown.example"), 1);
}

#[test]
fn tls12_only_server_negotiates_tls12_and_refuses_tls13_clients() {
    let w = world_with(enforce().tls(TlsVersions::Tls12Only));
    assert_eq!(get(&w).unwrap().tls_version, Some(ProtocolVersion::TLSv1_2));
    let only13 = HttpsProbe::new(
        w.https_addr(),
        config(w.root_store(), &[&rustls::version::TLS13]),
    );
    assert!(matches!(
        only13.get(HOST, POLICY_PATH),
        Err(ProbeError::Tls(_))
    ));
}

#[test]
fn tls13_only_server_negotiates_tls13_and_refuses_tls12_clients() {
    let w = world_with(enforce().tls(TlsVersions::Tls13Only));
    assert_eq!(get(&w).unwrap().tls_version, Some(ProtocolVersion::TLSv1_3));
    let only12 = HttpsProbe::new(
        w.https_addr(),
        config(w.root_store(), &[&rustls::version::TLS12]),
    );
    assert!(matches!(
        only12.get(HOST, POLICY_PATH),
        Err(ProbeError::Tls(_))
    ));
    w.set_http("example.com", Http::Policy);
    w.update("example.com", |d| d.tls(TlsVersions::Any));
    assert_eq!(
        only12.get(HOST, POLICY_PATH).unwrap().tls_version,
        Some(ProtocolVersion::TLSv1_2)
    );
}

#[test]
fn requests_are_counted_and_recorded_per_host() {
    let w = World::builder()
        .domain("example.com", enforce())
        .domain("other.example", Domain::testing(["mx.other.example"]))
        .build()
        .unwrap();
    let p = HttpsProbe::for_world(&w);
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| assert_eq!(p.get(HOST, POLICY_PATH).unwrap().status, 200));
        }
    });
    p.get("mta-sts.other.example", POLICY_PATH).unwrap();
    assert_eq!(w.fetches(HOST), 20);
    assert_eq!(w.connections(HOST), 20);
    assert_eq!(w.fetches("MTA-STS.other.example."), 1);
    assert_eq!(w.total_fetches(), 21);
    let reqs = w.requests("mta-sts.other.example");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, POLICY_PATH);
    assert_eq!(reqs[0].version, 1);
    assert_eq!(reqs[0].header("host"), Some("mta-sts.other.example"));
    w.reset_counters();
    assert_eq!(
        (w.fetches(HOST), w.connections(HOST), w.requests(HOST).len()),
        (0, 0, 0)
    );
}

#[test]
fn issued_certificate_serves_a_fake_mx_trusted_by_the_world_ca() {
    let w = World::builder().build().unwrap();
    let issued = w.issue_cert(&["mx1.example.com"]).unwrap();
    // PEM and DER agree.
    assert_eq!(
        CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap(),
        issued.cert_der
    );
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let server_cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![issued.cert_der.clone()], key)
        .unwrap(),
    );
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(server_cfg).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        // Read the request (the whole head fits one TLS record) before answering.
        let mut req = [0u8; 1024];
        let _ = s.read(&mut req);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        s.conn.send_close_notify();
        let _ = s.flush();
    });
    let p = HttpsProbe::new(addr, Arc::new(w.client_config()));
    let r = p.get("mx1.example.com", "/").unwrap();
    assert_eq!(r.text(), "ok");
    server.join().unwrap();
}
