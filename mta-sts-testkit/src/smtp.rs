//! A fake MX: an SMTP server on 127.0.0.1 with STARTTLS (RFC 3207), for testing what an MTA-STS
//! sender or checker does with a domain's mail exchangers (RFC 8461 §4: STARTTLS offered, a
//! certificate valid for the MX host name).
//!
//! Every MX host of the world resolves to 127.0.0.1, so all of them share this one listener
//! ([`World::smtp_addr`](crate::World::smtp_addr)). What the server does before TLS (greeting,
//! EHLO, whether STARTTLS is offered) is therefore world-wide ([`Smtp`]); the certificate is
//! chosen per MX host by the SNI name of the TLS handshake
//! ([`World::set_mx_cert`](crate::World::set_mx_cert)), like the HTTPS server does for policy
//! hosts. The chain is the leaf followed by its issuer's certificate (the world's CA, or the
//! untrusted CA for [`Cert::UntrustedCa`]; a self-signed leaf alone), so that a DANE-TA(2)
//! TLSA record can name the CA (RFC 7672 §3.1.2); [`World::mx_tlsa`](crate::World::mx_tlsa)
//! computes the records.
//!
//! The session is the smallest that an MX check needs: the `220` greeting, `EHLO`/`HELO`,
//! `STARTTLS`, `NOOP`, `RSET` and `QUIT`. Mail transactions (`MAIL`, `RCPT`, `DATA`) are refused
//! with `502`, unless the world accepts mail
//! ([`WorldBuilder::accept_mail`](crate::WorldBuilder::accept_mail), see `mail.rs`). Lines are capped at [`MAX_LINE`] bytes and sessions at [`MAX_COMMANDS`] commands;
//! a longer line gets `500` and the connection is closed.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use rustls::{ServerConnection, StreamOwned};

use crate::mail::{Mailbox, Step, Transaction};
use crate::scenario::Cert;
use crate::state::{lock, normalize};
use crate::sup::ConnGuard;
use crate::world::Shared;

/// The longest command line accepted, CRLF included (RFC 5321 §4.5.3.1.4 says 512; a little
/// more is tolerated).
pub const MAX_LINE: usize = 1000;
/// The most commands one session may send.
pub const MAX_COMMANDS: usize = 100;
/// The most read/write rounds a TLS handshake may take.
const MAX_HANDSHAKE_ROUNDS: usize = 64;
/// The name the server gives itself in its greeting and EHLO reply.
const SERVER_NAME: &str = "mx.testkit.invalid";
/// The certificate name presented to a client that sends no SNI.
const NO_SNI_NAME: &str = "no-sni.testkit.invalid";

/// How the world's fake MX hosts answer before TLS (the same for every MX host: they share one
/// address). The default is [`Smtp::Starttls`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Smtp {
    /// `EHLO` advertises `STARTTLS`; `STARTTLS` gets `220` and a TLS handshake (TLS 1.2 or 1.3)
    /// with the certificate set for the SNI host ([`Cert::Valid`] unless set otherwise).
    #[default]
    Starttls,
    /// `EHLO` does not advertise `STARTTLS`, and the command gets `502` (RFC 8461 §4:
    /// `starttls-not-supported`).
    NoStarttls,
    /// `EHLO` advertises `STARTTLS`, but the command gets `454 TLS not available`.
    StarttlsUnavailable,
    /// The greeting is `554` (no SMTP service here); every command but `QUIT` gets `503`.
    Refuse,
}

/// The fake MX's settings and counters, shared by its threads.
#[derive(Debug, Default)]
pub(crate) struct SmtpState {
    inner: Mutex<Inner>,
    pub(crate) mailbox: Mailbox,
}

#[derive(Debug, Default)]
struct Inner {
    mode: Smtp,
    certs: HashMap<String, Cert>,
    sessions: usize,
    handshakes: HashMap<String, usize>,
}

/// Most distinct SNI names counted; further ones are not counted per name.
const MAX_COUNTED_NAMES: usize = 65_536;

impl SmtpState {
    pub(crate) fn new(
        mode: Smtp,
        certs: impl IntoIterator<Item = (String, Cert)>,
        accept_mail: bool,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                mode,
                certs: certs.into_iter().collect(),
                ..Inner::default()
            }),
            mailbox: Mailbox::new(accept_mail),
        }
    }

    pub(crate) fn set_mode(&self, mode: Smtp) {
        lock(&self.inner).mode = mode;
    }

    pub(crate) fn set_cert(&self, host: &str, cert: Cert) {
        lock(&self.inner).certs.insert(normalize(host), cert);
    }

    pub(crate) fn sessions(&self) -> usize {
        lock(&self.inner).sessions
    }

    pub(crate) fn handshakes(&self, host: &str) -> usize {
        lock(&self.inner)
            .handshakes
            .get(&normalize(host))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn reset_counters(&self) {
        let mut inner = lock(&self.inner);
        inner.sessions = 0;
        inner.handshakes.clear();
    }

    /// The certificate kind set for `host` (normalized), without counting a handshake.
    pub(crate) fn cert(&self, host: &str) -> Cert {
        lock(&self.inner)
            .certs
            .get(host)
            .copied()
            .unwrap_or(Cert::Valid)
    }

    fn mode(&self) -> Smtp {
        lock(&self.inner).mode
    }

    fn session_started(&self) {
        lock(&self.inner).sessions += 1;
    }

    /// Counts a handshake for `host` and returns the certificate kind it gets.
    fn handshake(&self, host: &str) -> Cert {
        let mut inner = lock(&self.inner);
        if inner.handshakes.len() < MAX_COUNTED_NAMES || inner.handshakes.contains_key(host) {
            *inner.handshakes.entry(host.to_owned()).or_default() += 1;
        }
        inner.certs.get(host).copied().unwrap_or(Cert::Valid)
    }
}

/// Picks the MX certificate by SNI.
#[derive(Debug)]
struct MxCertResolver {
    shared: Arc<Shared>,
}

impl ResolvesServerCert for MxCertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = hello
            .server_name()
            .map_or(NO_SNI_NAME.to_owned(), normalize);
        let kind = self.shared.smtp.handshake(&host);
        self.shared.pki.mx_certified(&host, kind).ok()
    }
}

/// The TLS configuration of the fake MX (TLS 1.2 and 1.3, certificate by SNI).
pub(crate) fn tls_config(shared: &Arc<Shared>) -> io::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = Arc::new(MxCertResolver {
        shared: Arc::clone(shared),
    });
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map(|b| Arc::new(b.with_no_client_auth().with_cert_resolver(resolver)))
        .map_err(io::Error::other)
}

pub(crate) fn serve(shared: &Arc<Shared>, listener: &TcpListener, tls: &Arc<ServerConfig>) {
    let sh = Arc::clone(shared);
    let tls = Arc::clone(tls);
    shared
        .sup
        .accept_loop(listener, "smtp-conn", move |stream, guard| {
            serve_conn(&sh, &tls, stream, &guard);
        });
}

/// Reads CRLF- (or LF-) terminated command lines, at most [`MAX_LINE`] bytes each.
#[derive(Debug, Default)]
struct Lines {
    buf: Vec<u8>,
}

enum Line {
    Command(String),
    TooLong,
    Closed,
}

impl Lines {
    fn next(&mut self, r: &mut impl Read) -> Line {
        match self.next_raw(r) {
            Ok(line) => {
                let text = String::from_utf8_lossy(&line);
                Line::Command(text.trim_end_matches(['\r', '\n']).to_owned())
            }
            Err(other) => other,
        }
    }

    /// The next line as received, line end included (a message line of `DATA`).
    fn next_raw(&mut self, r: &mut impl Read) -> Result<Vec<u8>, Line> {
        let mut chunk = [0u8; 512];
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                if line.len() > MAX_LINE {
                    return Err(Line::TooLong);
                }
                return Ok(line);
            }
            if self.buf.len() >= MAX_LINE {
                return Err(Line::TooLong);
            }
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => return Err(Line::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// What the session does after a command.
enum Next {
    Continue,
    StartTls,
    Close,
}

/// The reply to one command (`tls`: the session is already under TLS).
fn reply(mode: Smtp, command: &str, tls: bool) -> (String, Next) {
    let verb = command
        .split_ascii_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    let refuse = mode == Smtp::Refuse;
    let one = |text: &str, next| (format!("{text}\r\n"), next);
    match verb.as_str() {
        "QUIT" => one("221 2.0.0 Bye", Next::Close),
        _ if refuse => one("503 5.5.1 No SMTP service here", Next::Continue),
        "EHLO" => {
            let starttls = !tls && mode != Smtp::NoStarttls;
            let mut r = format!("250-{SERVER_NAME}\r\n250-PIPELINING\r\n");
            if starttls {
                r.push_str("250-STARTTLS\r\n");
            }
            r.push_str("250 8BITMIME\r\n");
            (r, Next::Continue)
        }
        "HELO" => one(&format!("250 {SERVER_NAME}"), Next::Continue),
        "NOOP" | "RSET" => one("250 2.0.0 OK", Next::Continue),
        "STARTTLS" if tls => one("503 5.5.1 TLS already active", Next::Continue),
        "STARTTLS" => match mode {
            Smtp::Starttls => one("220 2.0.0 Ready to start TLS", Next::StartTls),
            Smtp::StarttlsUnavailable => one("454 4.7.0 TLS not available", Next::Continue),
            _ => one("502 5.5.1 Command not implemented", Next::Continue),
        },
        _ => one("502 5.5.1 Command not implemented", Next::Continue),
    }
}

/// Runs the command loop on `stream` until QUIT, STARTTLS (returns true), an error or a limit.
/// `mail`: the session's mail transaction when the world accepts mail.
fn session(
    mode: Smtp,
    stream: &mut (impl Read + Write),
    tls: bool,
    commands: &mut usize,
    mut mail: Option<(&Mailbox, Transaction)>,
) -> io::Result<bool> {
    let mut lines = Lines::default();
    while *commands < MAX_COMMANDS {
        *commands += 1;
        let command = match lines.next(stream) {
            Line::Command(c) => c,
            Line::TooLong => {
                stream.write_all(b"500 5.5.2 Line too long\r\n")?;
                return Ok(false);
            }
            Line::Closed => return Ok(false),
        };
        let step = match &mut mail {
            Some((_, transaction)) if mode != Smtp::Refuse => {
                let verb = command.split_ascii_whitespace().next().unwrap_or("");
                transaction.command(&verb.to_ascii_uppercase(), &command)
            }
            _ => None,
        };
        let (text, next) = match (step, &mut mail) {
            (Some(Step::Reply(text)), _) => (text, Next::Continue),
            (Some(Step::ReadData), Some((mailbox, transaction))) => {
                stream.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                stream.flush()?;
                match transaction.data(mailbox, || lines.next_raw(stream).ok()) {
                    Some(text) => (text, Next::Continue),
                    None => return Ok(false),
                }
            }
            _ => reply(mode, &command, tls),
        };
        stream.write_all(text.as_bytes())?;
        stream.flush()?;
        match next {
            Next::Continue => {}
            Next::Close => return Ok(false),
            // Anything the client sent after STARTTLS in the same read is dropped with `lines`
            // (RFC 3207 §4.2: no plaintext command may survive into the TLS session).
            Next::StartTls => return Ok(true),
        }
    }
    stream.write_all(b"421 4.7.0 Too many commands\r\n")?;
    Ok(false)
}

fn serve_conn(shared: &Shared, tls: &Arc<ServerConfig>, mut tcp: TcpStream, _guard: &ConnGuard) {
    let idle = shared.settings.idle_timeout;
    let _ = tcp.set_read_timeout(Some(idle));
    let _ = tcp.set_write_timeout(Some(idle));
    let _ = tcp.set_nodelay(true);
    shared.smtp.session_started();
    let mode = shared.smtp.mode();
    let greeting = if mode == Smtp::Refuse {
        format!("554 5.3.2 {SERVER_NAME} no SMTP service here\r\n")
    } else {
        format!("220 {SERVER_NAME} ESMTP mta-sts-testkit\r\n")
    };
    if tcp.write_all(greeting.as_bytes()).is_err() {
        return;
    }
    let mut commands = 0;
    let mailbox = &shared.smtp.mailbox;
    let mail = |tls, sni| {
        mailbox
            .accepts()
            .then(|| (mailbox, Transaction::new(tls, sni)))
    };
    if !matches!(
        session(mode, &mut tcp, false, &mut commands, mail(false, None)),
        Ok(true)
    ) {
        return;
    }
    let Ok(conn) = ServerConnection::new(Arc::clone(tls)) else {
        return;
    };
    let mut stream = StreamOwned::new(conn, tcp);
    // The handshake: a failure (e.g. the client rejects the certificate) ends the session.
    for _ in 0..MAX_HANDSHAKE_ROUNDS {
        if !stream.conn.is_handshaking() {
            break;
        }
        if stream.conn.complete_io(&mut stream.sock).is_err() {
            return;
        }
    }
    if stream.conn.is_handshaking() {
        return;
    }
    let sni = stream.conn.server_name().map(normalize);
    let _ = session(mode, &mut stream, true, &mut commands, mail(true, sni));
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

#[cfg(test)]
mod tests {
    use super::{Line, Lines, MAX_LINE, Next, Smtp, reply};

    #[test]
    fn ehlo_advertises_starttls_only_before_tls_and_when_offered() {
        let (r, _) = reply(Smtp::Starttls, "EHLO client.example", false);
        assert!(r.contains("250-STARTTLS\r\n") && r.ends_with("250 8BITMIME\r\n"));
        let (r, _) = reply(Smtp::Starttls, "ehlo client.example", true);
        assert!(!r.contains("STARTTLS"));
        let (r, _) = reply(Smtp::NoStarttls, "EHLO x", false);
        assert!(!r.contains("STARTTLS"));
        assert!(
            reply(Smtp::StarttlsUnavailable, "EHLO x", false)
                .0
                .contains("STARTTLS")
        );
    }

    #[test]
    fn starttls_replies_by_mode() {
        assert!(
            matches!(reply(Smtp::Starttls, "STARTTLS", false), (r, Next::StartTls) if r.starts_with("220 "))
        );
        assert!(
            reply(Smtp::NoStarttls, "STARTTLS", false)
                .0
                .starts_with("502 ")
        );
        assert!(
            reply(Smtp::StarttlsUnavailable, "starttls", false)
                .0
                .starts_with("454 ")
        );
        assert!(
            reply(Smtp::Starttls, "STARTTLS", true)
                .0
                .starts_with("503 ")
        );
        assert!(reply(Smtp::Refuse, "EHLO x", false).0.starts_with("503 "));
        assert!(
            matches!(reply(Smtp::Refuse, "QUIT", false), (r, Next::Close) if r.starts_with("221 "))
        );
        assert!(
            reply(Smtp::Starttls, "MAIL FROM:<a@b>", false)
                .0
                .starts_with("502 ")
        );
    }

    #[test]
    fn lines_are_capped_and_split_on_lf() {
        let mut input: &[u8] = b"EHLO a\r\nNOOP\nQUIT";
        let mut lines = Lines::default();
        assert!(matches!(lines.next(&mut input), Line::Command(c) if c == "EHLO a"));
        assert!(matches!(lines.next(&mut input), Line::Command(c) if c == "NOOP"));
        assert!(matches!(lines.next(&mut input), Line::Closed));
        let long = vec![b'a'; MAX_LINE + 10];
        let mut input: &[u8] = &long;
        assert!(matches!(Lines::default().next(&mut input), Line::TooLong));
    }
}
