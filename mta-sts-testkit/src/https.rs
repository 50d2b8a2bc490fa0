//! The HTTPS server: TLS (rustls) on 127.0.0.1, certificate and behaviour chosen by SNI.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use rustls::{ServerConnection, StreamOwned, SupportedProtocolVersion};

use crate::scenario::{Http, TlsVersions};
use crate::state::{Request, normalize, read};
use crate::sup::ConnGuard;
use crate::world::Shared;

/// The only path that serves a policy.
pub(crate) const POLICY_PATH: &str = "/.well-known/mta-sts.txt";
/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;
/// Most reads while waiting for the ClientHello.
const MAX_HELLO_READS: usize = 256;
/// How long the server waits for the client to close after the response.
const LINGER: Duration = Duration::from_secs(1);
/// Size of each chunk in chunked responses (small, so there are several).
const CHUNK: usize = 16;

/// Picks the certificate for the SNI name from the world's state.
#[derive(Debug)]
struct SniResolver {
    shared: Arc<Shared>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = normalize(hello.server_name()?);
        let kind = read(&self.shared.state).policy_domain(&host)?.cert;
        self.shared.pki.certified(&host, kind).ok()
    }
}

/// One server configuration per [`TlsVersions`] setting, sharing the SNI resolver.
#[derive(Debug)]
pub(crate) struct Configs {
    any: Arc<ServerConfig>,
    tls12: Arc<ServerConfig>,
    tls13: Arc<ServerConfig>,
}

impl Configs {
    pub(crate) fn new(shared: &Arc<Shared>, provider: &Arc<CryptoProvider>) -> io::Result<Self> {
        let resolver = Arc::new(SniResolver {
            shared: Arc::clone(shared),
        });
        let make = |versions: &[&'static SupportedProtocolVersion]| {
            ServerConfig::builder_with_provider(Arc::clone(provider))
                .with_protocol_versions(versions)
                .map(|b| Arc::new(b.with_no_client_auth().with_cert_resolver(resolver.clone())))
                .map_err(io::Error::other)
        };
        Ok(Self {
            any: make(&[&rustls::version::TLS13, &rustls::version::TLS12])?,
            tls12: make(&[&rustls::version::TLS12])?,
            tls13: make(&[&rustls::version::TLS13])?,
        })
    }

    fn get(&self, v: TlsVersions) -> Arc<ServerConfig> {
        Arc::clone(match v {
            TlsVersions::Any => &self.any,
            TlsVersions::Tls12Only => &self.tls12,
            TlsVersions::Tls13Only => &self.tls13,
        })
    }
}

pub(crate) fn serve(shared: &Arc<Shared>, listener: &TcpListener, configs: &Arc<Configs>) {
    let sh = Arc::clone(shared);
    let cf = Arc::clone(configs);
    shared
        .sup
        .accept_loop(listener, "https-conn", move |stream, guard| {
            serve_conn(&sh, &cf, stream, &guard);
        });
}

/// What the host serves, copied out of the state when the request arrives.
struct Behaviour {
    http: Http,
    body: String,
    headers: Vec<(String, String)>,
}

fn serve_conn(shared: &Shared, configs: &Configs, mut tcp: TcpStream, guard: &ConnGuard) {
    let in_flight = shared.counters.https_in_flight.hold();
    let idle = shared.settings.idle_timeout;
    let _ = tcp.set_read_timeout(Some(idle));
    let _ = tcp.set_write_timeout(Some(idle));
    let _ = tcp.set_nodelay(true);

    let mut acceptor = Acceptor::default();
    let mut accepted = None;
    for _ in 0..MAX_HELLO_READS {
        match acceptor.read_tls(&mut tcp) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        match acceptor.accept() {
            Ok(Some(a)) => {
                accepted = Some(a);
                break;
            }
            Ok(None) => {}
            Err((_, mut alert)) => {
                let _ = alert.write_all(&mut tcp);
                return;
            }
        }
    }
    let Some(accepted) = accepted else { return };
    let host = normalize(accepted.client_hello().server_name().unwrap_or(""));
    shared.counters.handshake(&host);
    let (tls, http) = read(&shared.state)
        .policy_domain(&host)
        .map_or((TlsVersions::Any, Http::Policy), |d| {
            (d.tls, d.http.clone())
        });
    match http {
        Http::Reset => return,
        Http::StallHandshake => {
            guard.set_stalled();
            stall(&tcp, shared.settings.stall_limit, guard);
            return;
        }
        _ => {}
    }
    let conn = match accepted.into_connection(configs.get(tls)) {
        Ok(c) => c,
        Err((_, mut alert)) => {
            let _ = alert.write_all(&mut tcp);
            return;
        }
    };
    let mut stream = StreamOwned::new(conn, tcp);
    let req = match read_request(&mut stream, &host) {
        Ok(r) => r,
        Err(Some(status)) => {
            drop(in_flight);
            let _ = stream.write_all(&head(status, &[], &[]));
            finish(stream);
            return;
        }
        Err(None) => return,
    };
    let (method_ok, path_ok) = (req.method == "GET", req.path == POLICY_PATH);
    shared.counters.fetch(req);
    // Served from here on: once the client has the response, it is counted so.
    drop(in_flight);
    let behaviour = read(&shared.state).policy_domain(&host).map(|d| Behaviour {
        http: d.http.clone(),
        body: d.policy_text(),
        headers: d.headers.clone(),
    });
    let result = match behaviour {
        _ if !method_ok => stream.write_all(&simple(405, &[("Allow", "GET".into())])),
        Some(b) if path_ok => respond(&mut stream, &b, shared.settings.stall_limit, guard),
        _ => stream.write_all(&simple(404, &[])),
    };
    if result.is_ok() {
        finish(stream);
    }
}

/// Sends close_notify, half-closes and waits briefly for the client to close, so that the
/// client reads the whole response before the socket goes away.
pub(crate) fn finish(mut stream: StreamOwned<ServerConnection, TcpStream>) {
    stream.conn.send_close_notify();
    if stream.flush().is_err() {
        return;
    }
    let _ = stream.sock.shutdown(Shutdown::Write);
    let _ = stream.sock.set_read_timeout(Some(LINGER));
    let mut sink = [0u8; 4096];
    for _ in 0..64 {
        match stream.sock.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Blocks until the client closes, the connection is released or closed by the world, or
/// `limit` passes. Data the client sends meanwhile is discarded. Returns whether it was
/// released.
fn stall(tcp: &TcpStream, limit: Duration, guard: &ConnGuard) -> bool {
    let _ = tcp.set_read_timeout(Some(limit));
    let mut reader = tcp;
    let mut sink = [0u8; 4096];
    for _ in 0..1024 {
        match reader.read(&mut sink) {
            Ok(0) => return guard.released(),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    false
}

fn read_request(
    stream: &mut StreamOwned<ServerConnection, TcpStream>,
    host: &str,
) -> Result<Request, Option<u16>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if buf.len() > MAX_HEAD {
            return Err(Some(431));
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                return Ok(Request {
                    host: host.to_owned(),
                    method: req.method.unwrap_or_default().to_owned(),
                    path: req.path.unwrap_or_default().to_owned(),
                    version: req.version.unwrap_or_default(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                });
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(Some(431)),
            Err(_) => return Err(Some(400)),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A response head; `Connection: close` is always added.
fn head(status: u16, headers: &[(&str, String)], extra: &[(String, String)]) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("Connection: close\r\n\r\n");
    h.into_bytes()
}

/// A complete response with a short text body (none where the status forbids one).
pub(crate) fn simple(status: u16, headers: &[(&str, String)]) -> Vec<u8> {
    simple_with(status, headers, &[])
}

fn simple_with(status: u16, headers: &[(&str, String)], extra: &[(String, String)]) -> Vec<u8> {
    if status < 200 || status == 204 || status == 304 {
        return head(status, headers, extra);
    }
    let body = format!("{status} {}\n", reason(status));
    let mut all = vec![("Content-Type", "text/plain".to_owned())];
    all.extend(headers.iter().cloned());
    all.push(("Content-Length", body.len().to_string()));
    let mut out = head(status, &all, extra);
    out.extend_from_slice(body.as_bytes());
    out
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / CHUNK * 8 + 8);
    for c in body.chunks(CHUNK) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The policy followed by `pad: xxx` lines, exactly `size` bytes (cut if the policy is
/// longer).
pub(crate) fn padded(policy: &str, size: usize) -> Vec<u8> {
    let mut body = policy.as_bytes().to_vec();
    if !body.is_empty() && !body.ends_with(b"\n") {
        body.extend_from_slice(b"\r\n");
    }
    while body.len() < size {
        let remaining = size - body.len();
        let n = if remaining <= 200 {
            remaining
        } else if remaining - 200 >= 8 {
            200
        } else {
            remaining - 8
        };
        if n < 8 {
            break;
        }
        body.extend_from_slice(b"pad: ");
        body.resize(body.len() + n - 7, b'x');
        body.extend_from_slice(b"\r\n");
    }
    body.resize(size, b'x');
    body
}

fn respond(
    w: &mut StreamOwned<ServerConnection, TcpStream>,
    b: &Behaviour,
    stall_limit: Duration,
    guard: &ConnGuard,
) -> io::Result<()> {
    let body = b.body.as_bytes();
    let text = || ("Content-Type", "text/plain".to_owned());
    let len = |n: usize| ("Content-Length", n.to_string());
    let te = || ("Transfer-Encoding", "chunked".to_owned());
    let x = &b.headers;
    let with_body = |mut h: Vec<u8>, body: &[u8]| {
        h.extend_from_slice(body);
        h
    };
    let out = match &b.http {
        Http::Policy => with_body(head(200, &[text(), len(body.len())], x), body),
        Http::Status(s) => simple_with(*s, &[], x),
        Http::Redirect { status, location } => head(
            *status,
            &[("Location", location.clone()), len(0), text()],
            x,
        ),
        Http::ContentType(ct) => with_body(
            head(200, &[("Content-Type", ct.clone()), len(body.len())], x),
            body,
        ),
        Http::NoContentType => with_body(head(200, &[len(body.len())], x), body),
        Http::Chunked => with_body(head(200, &[text(), te()], x), &chunked(body)),
        Http::Oversize { size, chunked: c } => {
            let big = padded(&b.body, *size);
            if *c {
                with_body(head(200, &[text(), te()], x), &chunked(&big))
            } else {
                with_body(head(200, &[text(), len(big.len())], x), &big)
            }
        }
        Http::ShortBody { announced } => {
            let announced = (*announced).max(body.len() + 1);
            with_body(head(200, &[text(), len(announced)], x), body)
        }
        Http::StallAfterHeaders => {
            guard.set_stalled();
            w.write_all(&head(200, &[text(), len(body.len())], x))?;
            w.flush()?;
            if !stall(&w.sock, stall_limit, guard) {
                return Err(io::Error::other("stall ended without release"));
            }
            body.to_vec()
        }
        Http::Raw(bytes) => bytes.clone(),
        // Handled before the handshake.
        Http::Reset | Http::StallHandshake => Vec::new(),
    };
    w.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::{chunked, padded};

    #[test]
    fn padding_gives_exactly_the_size_and_keeps_lines_well_formed() {
        let policy = "version: STSv1\r\nmode: enforce\r\nmx: a.example\r\nmax_age: 1\r\n";
        for size in (policy.len()..policy.len() + 600).chain([70 * 1024, 1 << 20]) {
            let body = padded(policy, size);
            assert_eq!(body.len(), size);
            assert!(body.starts_with(policy.as_bytes()));
            let text = String::from_utf8(body).unwrap();
            let extra = &text[policy.len()..];
            // Every padding line is complete, except when fewer than 8 bytes were left.
            if size - policy.len() >= 8 || size == policy.len() {
                assert!(extra.is_empty() || extra.ends_with("\r\n"), "{size}");
                assert!(extra.lines().all(|l| l.starts_with("pad: x")), "{size}");
            }
        }
        assert_eq!(padded(policy, 5), b"versi");
        assert_eq!(padded("no newline", 14), b"no newline\r\nxx");
    }

    #[test]
    fn chunked_encoding_ends_with_the_last_chunk() {
        assert_eq!(chunked(b""), b"0\r\n\r\n");
        assert_eq!(chunked(b"abc"), b"3\r\nabc\r\n0\r\n\r\n");
        let big = chunked(&[b'x'; 40]);
        assert!(big.starts_with(b"10\r\nxxxxxxxxxxxxxxxx\r\n10\r\n"));
        assert!(big.ends_with(b"8\r\nxxxxxxxx\r\n0\r\n\r\n"));
    }
}
