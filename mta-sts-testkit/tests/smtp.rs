//! The fake MX: greeting, EHLO with and without STARTTLS, STARTTLS with a certificate per MX
//! host (by SNI), limits, counters and shutdown.

use std::io::{BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use mta_sts_testkit::{Cert, Domain, SMTP_MAX_LINE, Smtp, World};
use rustls::{CertificateError, ClientConnection, ProtocolVersion, StreamOwned};

const MX: &str = "mx1.example.com";

fn world(smtp: Smtp) -> World {
    World::builder()
        .domain("example.com", Domain::enforce([MX]))
        .smtp(smtp)
        .build()
        .unwrap()
}

use mta_sts_testkit::probe::{read_smtp_reply as read_reply, smtp_command as command};

fn connect(w: &World) -> BufReader<TcpStream> {
    let tcp = TcpStream::connect(w.smtp_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = BufReader::new(tcp);
    assert!(read_reply(&mut s)[0].starts_with("220 "));
    s
}

/// EHLO, STARTTLS and the TLS handshake for `sni`, trusting the world's CA.
fn starttls(
    w: &World,
    sni: &str,
) -> Result<StreamOwned<ClientConnection, TcpStream>, rustls::Error> {
    mta_sts_testkit::probe::smtp_starttls(w, Arc::new(w.client_config()), sni)
}

#[test]
fn smtp_listens_on_loopback_and_greets_with_220() {
    let w = world(Smtp::Starttls);
    assert_eq!(w.smtp_addr().ip(), Ipv4Addr::LOCALHOST);
    assert_eq!(w.smtp_port(), w.smtp_addr().port());
    let mut s = connect(&w);
    let ehlo = command(&mut s, "EHLO client.example");
    assert_eq!(ehlo.last().map(String::as_str), Some("250 8BITMIME"));
    assert!(command(&mut s, "NOOP")[0].starts_with("250 "));
    assert!(command(&mut s, "MAIL FROM:<a@example.org>")[0].starts_with("502 "));
    assert!(command(&mut s, "QUIT")[0].starts_with("221 "));
    assert_eq!(w.smtp_sessions(), 1);
}

#[test]
fn r35_starttls_handshake_with_a_certificate_valid_for_the_mx_host() {
    let w = world(Smtp::Starttls);
    let mut tls = starttls(&w, MX).expect("valid certificate for the MX host");
    assert!(matches!(
        tls.conn.protocol_version(),
        Some(ProtocolVersion::TLSv1_3 | ProtocolVersion::TLSv1_2)
    ));
    // Under TLS: EHLO no longer offers STARTTLS, QUIT ends the session.
    tls.write_all(b"EHLO client.example\r\n").unwrap();
    let mut r = BufReader::new(tls);
    let ehlo = read_reply(&mut r);
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    r.get_mut().write_all(b"QUIT\r\n").unwrap();
    assert!(read_reply(&mut r)[0].starts_with("221 "));
    assert_eq!(w.smtp_handshakes(MX), 1);
    assert_eq!(w.smtp_handshakes("mx2.example.com"), 0);
}

#[test]
fn r35_no_starttls_is_not_advertised_and_the_command_is_refused() {
    let w = world(Smtp::NoStarttls);
    let mut s = connect(&w);
    let ehlo = command(&mut s, "EHLO client.example");
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    assert!(command(&mut s, "STARTTLS")[0].starts_with("502 "));
    // The mode can change while the world runs.
    w.set_smtp(Smtp::StarttlsUnavailable);
    let mut s = connect(&w);
    assert!(
        command(&mut s, "EHLO x")
            .iter()
            .any(|l| l == "250-STARTTLS")
    );
    assert!(command(&mut s, "STARTTLS")[0].starts_with("454 "));
    w.set_smtp(Smtp::Refuse);
    let tcp = TcpStream::connect(w.smtp_addr()).unwrap();
    let mut s = BufReader::new(tcp);
    assert!(read_reply(&mut s)[0].starts_with("554 "));
    assert!(command(&mut s, "EHLO x")[0].starts_with("503 "));
}

#[test]
fn r34_certificate_chosen_per_mx_host_by_sni() {
    let w = World::builder()
        .domain("example.com", Domain::enforce([MX, "mx2.example.com"]))
        .mx_cert("mx2.example.com", Cert::WrongName)
        .build()
        .unwrap();
    assert!(starttls(&w, MX).is_ok());
    let wrong = starttls(&w, "mx2.example.com").unwrap_err();
    assert!(
        matches!(
            wrong,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
        ),
        "{wrong:?}"
    );
    w.set_mx_cert(MX, Cert::Expired);
    let expired = starttls(&w, MX).unwrap_err();
    assert!(
        matches!(
            expired,
            rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
        ),
        "{expired:?}"
    );
    assert_eq!(w.smtp_handshakes("MX2.example.com."), 1);
    w.reset_counters();
    assert_eq!((w.smtp_sessions(), w.smtp_handshakes(MX)), (0, 0));
}

#[test]
fn overlong_line_gets_500_and_the_connection_closes() {
    let w = world(Smtp::Starttls);
    let mut s = connect(&w);
    let long = format!("EHLO {}\r\n", "a".repeat(SMTP_MAX_LINE + 10));
    s.get_mut().write_all(long.as_bytes()).unwrap();
    assert!(read_reply(&mut s)[0].starts_with("500 "));
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0, "closed");
}

#[test]
fn dropping_the_world_closes_an_idle_smtp_session() {
    let w = world(Smtp::Starttls);
    let threads = w.threads();
    let mut s = connect(&w);
    drop(w);
    assert_eq!(threads.live(), 0);
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0);
}
