//! The STARTTLS probe of one MX host: connect to port 25, read the greeting, EHLO, STARTTLS, the
//! TLS handshake (PKIX against the MX host name, RFC 8461 §4.2), QUIT.
//!
//! Every byte comes from the network and is distrusted: a reply line is at most [`MAX_LINE`]
//! bytes, a reply at most [`MAX_REPLY_LINES`] lines, every read has a deadline, and anything the
//! server sends after its `220` to STARTTLS before the handshake is refused (RFC 3207 §6:
//! plaintext injected there must never be taken as part of the TLS session).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::net;
use crate::tls::{CertInfo, Tls};

/// The longest reply line read, CRLF included (RFC 5321 §4.5.3.1.5 says 512).
pub(crate) const MAX_LINE: usize = 2048;
/// The most lines one reply may have.
pub(crate) const MAX_REPLY_LINES: usize = 64;

/// One SMTP reply: its code and its lines (text after the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    pub(crate) lines: Vec<String>,
}

impl Reply {
    fn first(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map_or("", String::as_str)
        )
    }
}

/// Reads replies from a stream, keeping what was read past the end of one, until a deadline
/// (so that a server trickling bytes cannot hold the probe much past its time).
#[derive(Debug)]
pub(crate) struct Replies {
    buf: Vec<u8>,
    deadline: Instant,
}

impl Replies {
    pub(crate) fn until(deadline: Instant) -> Self {
        Self {
            buf: Vec::new(),
            deadline,
        }
    }

    /// Whether bytes beyond the last reply were received.
    pub(crate) fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next reply, or why there is none.
    pub(crate) fn read(&mut self, r: &mut impl Read) -> Result<Reply, String> {
        let mut code = None;
        let mut lines = Vec::new();
        loop {
            let line = self.line(r)?;
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            let (digits, rest) = text.split_at_checked(3).unwrap_or((text, ""));
            let this: u16 = match digits.parse() {
                Ok(c) if (200..600).contains(&c) && digits.bytes().all(|b| b.is_ascii_digit()) => c,
                _ => return Err(format!("not an SMTP reply line: {:?}", shorten(text))),
            };
            if code.is_some_and(|c| c != this) {
                return Err(format!(
                    "reply lines with different codes: {:?}",
                    shorten(text)
                ));
            }
            code = Some(this);
            let (more, text) = match rest.as_bytes().first() {
                Some(b'-') => (true, &rest[1..]),
                Some(b' ') => (false, &rest[1..]),
                None => (false, ""),
                Some(_) => return Err(format!("not an SMTP reply line: {:?}", shorten(text))),
            };
            lines.push(text.to_owned());
            if !more {
                return Ok(Reply { code: this, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(format!("a reply of more than {MAX_REPLY_LINES} lines"));
            }
        }
    }

    fn line(&mut self, r: &mut impl Read) -> Result<Vec<u8>, String> {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                if end >= MAX_LINE {
                    return Err(format!("a reply line longer than {MAX_LINE} bytes"));
                }
                return Ok(self.buf.drain(..=end).collect());
            }
            if self.buf.len() >= MAX_LINE {
                return Err(format!("a reply line longer than {MAX_LINE} bytes"));
            }
            if Instant::now() >= self.deadline {
                return Err("no complete reply in time".into());
            }
            match r.read(&mut chunk) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    return Err("no reply in time".into());
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

/// How the probe of one MX ended.
#[derive(Debug)]
pub(crate) enum ProbeResult {
    /// STARTTLS and a handshake with a certificate valid for the MX host.
    Valid {
        version: String,
        cert: Option<CertInfo>,
    },
    /// The MX host has no address (or its lookup failed).
    Unresolved(String),
    /// No TCP connection to the SMTP port.
    Unreachable(String),
    /// The server broke the SMTP protocol or refused the session (greeting or EHLO not 2xx).
    Smtp(String),
    /// STARTTLS is not in the EHLO reply.
    NoStarttls,
    /// STARTTLS was offered but the command was not answered 220.
    StarttlsRefused(String),
    /// The TLS handshake failed: why, and the certificate if one was shown.
    Tls { why: String, cert: Option<CertInfo> },
}

/// The probe of one MX host: where it connected and how it ended.
#[derive(Debug)]
pub(crate) struct Probe {
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) result: ProbeResult,
}

/// Probes `host` on `port`: addresses through `resolvers`, then the SMTP session.
pub(crate) fn probe(
    resolvers: &[SocketAddr],
    tls: &Tls,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Probe {
    let addrs = match net::addresses(resolvers, host, timeout) {
        Ok(a) => a,
        Err(e) => {
            return Probe {
                addr: None,
                result: ProbeResult::Unresolved(e),
            };
        }
    };
    let tcp = match net::connect(&addrs, port, timeout) {
        Ok(s) => s,
        Err(e) => {
            return Probe {
                addr: None,
                result: ProbeResult::Unreachable(e),
            };
        }
    };
    let addr = tcp.peer_addr().ok();
    Probe {
        addr,
        result: session(tcp, tls, host, Instant::now() + timeout),
    }
}

/// `EHLO [address-literal]` of our end of the connection (RFC 5321 §4.1.3).
fn ehlo_name(tcp: &TcpStream) -> String {
    match tcp.local_addr().map(|a| a.ip()) {
        Ok(IpAddr::V4(ip)) => format!("[{ip}]"),
        Ok(IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
        Err(_) => "[127.0.0.1]".to_owned(),
    }
}

/// The SMTP dialogue, all of it before `deadline`.
fn session(mut tcp: TcpStream, tls: &Tls, host: &str, deadline: Instant) -> ProbeResult {
    let mut replies = Replies::until(deadline);
    let greeting = match replies.read(&mut tcp) {
        Ok(r) if r.code == 220 => r,
        Ok(r) => return ProbeResult::Smtp(format!("greeting {}", r.first())),
        Err(e) => return ProbeResult::Smtp(format!("greeting: {e}")),
    };
    drop(greeting);
    let ehlo = format!("EHLO {}\r\n", ehlo_name(&tcp));
    if let Err(e) = tcp.write_all(ehlo.as_bytes()) {
        return ProbeResult::Smtp(format!("EHLO: {e}"));
    }
    let offered = match replies.read(&mut tcp) {
        Ok(r) if r.code == 250 => r.lines.iter().skip(1).any(|l| {
            l.split_ascii_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
        }),
        Ok(r) => return ProbeResult::Smtp(format!("EHLO answered {}", r.first())),
        Err(e) => return ProbeResult::Smtp(format!("EHLO: {e}")),
    };
    if !offered {
        quit(&mut tcp, &mut replies);
        return ProbeResult::NoStarttls;
    }
    if let Err(e) = tcp.write_all(b"STARTTLS\r\n") {
        return ProbeResult::Smtp(format!("STARTTLS: {e}"));
    }
    match replies.read(&mut tcp) {
        Ok(r) if r.code == 220 => {}
        Ok(r) => {
            quit(&mut tcp, &mut replies);
            return ProbeResult::StarttlsRefused(r.first());
        }
        Err(e) => return ProbeResult::Smtp(format!("STARTTLS: {e}")),
    }
    if replies.has_pending() {
        return ProbeResult::Smtp(
            "the server sent data after its 220 to STARTTLS, before the TLS handshake".into(),
        );
    }
    let hs = tls.handshake(tcp, host, &[], deadline);
    match (hs.stream, hs.error) {
        (Some(mut stream), None) => {
            let mut replies = Replies::until(deadline);
            quit(&mut stream, &mut replies);
            stream.conn.send_close_notify();
            let _ = stream.flush();
            ProbeResult::Valid {
                version: hs.version.unwrap_or_default(),
                cert: hs.cert,
            }
        }
        (_, Some((_, why))) => ProbeResult::Tls { why, cert: hs.cert },
        (None, None) => ProbeResult::Tls {
            why: "the TLS handshake did not finish".into(),
            cert: hs.cert,
        },
    }
}

/// QUIT politely; the answer does not matter.
fn quit(s: &mut (impl Read + Write), replies: &mut Replies) {
    if s.write_all(b"QUIT\r\n").is_ok() {
        let _ = replies.read(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8]) -> Vec<Result<Reply, String>> {
        let mut r = input;
        let mut replies = Replies::until(Instant::now() + Duration::from_secs(5));
        let mut out = Vec::new();
        for _ in 0..4 {
            let reply = replies.read(&mut r);
            let end = reply.is_err();
            out.push(reply);
            if end {
                break;
            }
        }
        out
    }

    #[test]
    fn multiline_reply_and_starttls_keyword() {
        let got = read_all(b"250-mx.example\r\n250-STARTTLS\r\n250 8BITMIME\r\n");
        assert_eq!(
            got[0],
            Ok(Reply {
                code: 250,
                lines: vec!["mx.example".into(), "STARTTLS".into(), "8BITMIME".into()]
            })
        );
        assert_eq!(got[1], Err("the server closed the connection".into()));
        // A bare code is a reply, LF alone ends a line.
        assert_eq!(read_all(b"220\n")[0].as_ref().map(|r| r.code), Ok(220));
    }

    #[test]
    fn hostile_replies_are_refused_without_panicking() {
        for bad in [
            &b"hello\r\n"[..],
            b"2x0 x\r\n",
            b"250-a\r\n251 b\r\n",
            b"250_x\r\n",
            b"999 x\r\n",
            b"\xff\xfe\r\n",
            b"25",
        ] {
            assert!(read_all(bad)[0].is_err(), "{bad:?}");
        }
        let long = [b"250 ".as_slice(), &[b'a'; MAX_LINE]].concat();
        assert!(
            read_all(&long)[0]
                .as_ref()
                .unwrap_err()
                .contains("longer than")
        );
        let many = "250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert!(
            read_all(many.as_bytes())[0]
                .as_ref()
                .unwrap_err()
                .contains("lines")
        );
    }

    #[test]
    fn no_read_after_the_deadline() {
        let mut r: &[u8] = b"220 ready\r\n";
        let mut replies = Replies::until(Instant::now());
        assert_eq!(
            replies.read(&mut r),
            Err("no complete reply in time".into())
        );
    }

    #[test]
    fn bytes_after_a_reply_are_kept_and_reported() {
        let mut r: &[u8] = b"220 go ahead\r\n\x16\x03\x01";
        let mut replies = Replies::until(Instant::now() + Duration::from_secs(5));
        assert_eq!(replies.read(&mut r).map(|r| r.code), Ok(220));
        assert!(replies.has_pending());
    }
}
