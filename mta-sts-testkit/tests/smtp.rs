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

#[test]
fn p10_accepted_mail_is_kept_with_its_tls_session_and_mx_host() {
    let w = World::builder()
        .domain("example.com", Domain::enforce([MX]))
        .accept_mail()
        .build()
        .unwrap();
    // Without TLS: accepted, and kept as such.
    let mut s = connect(&w);
    command(&mut s, "EHLO client.example");
    assert!(command(&mut s, "MAIL FROM:<a@example.org>")[0].starts_with("250 "));
    assert!(command(&mut s, "RCPT TO:<b@example.com>")[0].starts_with("250 "));
    assert!(command(&mut s, "DATA")[0].starts_with("354 "));
    assert!(command(&mut s, "Subject: plain\r\n\r\n..hi\r\n.")[0].starts_with("250 "));
    // Under TLS, for the MX host named by SNI.
    let tls = starttls(&w, MX).expect("valid certificate");
    let mut r = BufReader::new(tls);
    let send = |r: &mut BufReader<StreamOwned<ClientConnection, TcpStream>>, line: &str| {
        r.get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        read_reply(r)
    };
    send(&mut r, "EHLO client.example");
    assert!(send(&mut r, "MAIL FROM:<>")[0].starts_with("250 "));
    assert!(send(&mut r, "RCPT TO:<c@example.com>")[0].starts_with("250 "));
    assert!(send(&mut r, "RCPT TO:<d@example.com>")[0].starts_with("250 "));
    assert!(send(&mut r, "DATA")[0].starts_with("354 "));
    assert!(send(&mut r, "Subject: tls\r\n\r\nbody\r\n.")[0].starts_with("250 "));
    assert!(send(&mut r, "QUIT")[0].starts_with("221 "));
    let got = w.received_mail();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((got[0].tls, got[0].sni.as_deref()), (false, None));
    assert_eq!(got[0].text(), "Subject: plain\r\n\r\n.hi\r\n");
    assert_eq!((got[1].tls, got[1].sni.as_deref()), (true, Some(MX)));
    assert_eq!(got[1].from, "");
    assert_eq!(got[1].to, ["c@example.com", "d@example.com"]);
    assert_eq!(got[1].text(), "Subject: tls\r\n\r\nbody\r\n");
    // Turned off while the world runs: 502 again.
    w.set_accept_mail(false);
    let mut s = connect(&w);
    assert!(command(&mut s, "MAIL FROM:<a@example.org>")[0].starts_with("502 "));
}
