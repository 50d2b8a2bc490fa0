//! Small blocking clients for checking a world (or any DNS/HTTPS server) by hand: a DNS client
//! on hickory-proto's codec, an HTTPS/1.1 client on rustls and an SMTP STARTTLS client.
//!
//! They exist to test the world itself and to let embedders look at what it serves; they make
//! no MTA-STS decisions.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::opt::EdnsOption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::dns::{from_rdata, record_type_to_wire};
use crate::scenario::{Record, RecordType};
use crate::state::normalize;
use crate::world::World;

/// Default time a probe waits for an answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest HTTP response the HTTPS probe reads.
const MAX_RESPONSE: usize = 1024 * 1024;
/// Datagrams read while looking for the matching answer.
const MAX_DATAGRAMS: usize = 16;

/// A DNS response code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rcode {
    /// NOERROR
    NoError,
    /// FORMERR
    FormErr,
    /// SERVFAIL
    ServFail,
    /// NXDOMAIN
    NxDomain,
    /// NOTIMP
    NotImp,
    /// REFUSED
    Refused,
    /// Any other code.
    Other(u16),
}

impl From<ResponseCode> for Rcode {
    fn from(c: ResponseCode) -> Self {
        match c {
            ResponseCode::NoError => Self::NoError,
            ResponseCode::FormErr => Self::FormErr,
            ResponseCode::ServFail => Self::ServFail,
            ResponseCode::NXDomain => Self::NxDomain,
            ResponseCode::NotImp => Self::NotImp,
            ResponseCode::Refused => Self::Refused,
            other => Self::Other(u16::from(other)),
        }
    }
}

/// One resource record of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The owner name, lower case, without the root dot.
    pub name: String,
    /// The TTL.
    pub ttl: u32,
    /// The data.
    pub record: Record,
}

/// A decoded DNS reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsReply {
    /// The response code.
    pub rcode: Rcode,
    /// The TC bit.
    pub truncated: bool,
    /// The AA bit.
    pub authoritative: bool,
    /// Whether this reply came over TCP.
    pub tcp: bool,
    /// The AD bit (authenticated data, RFC 4035 §3.2.3).
    pub authentic_data: bool,
    /// The Extended DNS Error info codes in the reply's EDNS options (RFC 8914), in order.
    pub ede: Vec<u16>,
    /// The answer section.
    pub answers: Vec<Answer>,
    /// The authority section.
    pub authority: Vec<Answer>,
}

impl DnsReply {
    /// The TXT records of the answer section, each with its strings joined, in order.
    pub fn txt(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter_map(|a| match &a.record {
                Record::Txt(t) => Some(t.joined()),
                _ => None,
            })
            .collect()
    }

    /// The answer records of one type.
    pub fn of_type(&self, t: RecordType) -> Vec<&Record> {
        self.answers
            .iter()
            .map(|a| &a.record)
            .filter(|r| r.record_type() == t)
            .collect()
    }
}

/// A DNS client for one server.
///
/// ```
/// # use mta_sts_testkit::{Domain, RecordType, World, probe::DnsProbe};
/// let world = World::builder().domain("example.com", Domain::enforce(["mx.example.com"])).build()?;
/// let reply = DnsProbe::for_world(&world).lookup("example.com", RecordType::Mx)?;
/// assert_eq!(reply.of_type(RecordType::Mx).len(), 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct DnsProbe {
    udp: SocketAddr,
    tcp: SocketAddr,
    timeout: Duration,
    edns: Option<u16>,
    dnssec_ok: bool,
}

impl DnsProbe {
    /// A client for a server at these addresses.
    pub fn new(udp: SocketAddr, tcp: SocketAddr) -> Self {
        Self {
            udp,
            tcp,
            timeout: DEFAULT_TIMEOUT,
            edns: None,
            dnssec_ok: false,
        }
    }

    /// A client for the world's DNS server.
    pub fn for_world(world: &World) -> Self {
        Self::new(world.dns_addr(), world.dns_tcp_addr())
    }

    /// How long to wait for an answer (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends EDNS(0) with this UDP payload size (default: no EDNS, so UDP answers are limited
    /// to 512 bytes).
    pub fn edns(mut self, payload: u16) -> Self {
        self.edns = Some(payload);
        self
    }

    /// Sets the DNSSEC OK bit (RFC 3225) in the queries, with EDNS(0) (payload 1232 unless
    /// [`edns`](Self::edns) says otherwise), and the AD bit (RFC 6840 §5.7): the world then
    /// sets AD in answers from signed zones ([`WorldBuilder::signed_zone`](crate::WorldBuilder::signed_zone)).
    pub fn dnssec(mut self, on: bool) -> Self {
        self.dnssec_ok = on;
        self
    }

    fn query(&self, name: &str, rtype: RecordType) -> io::Result<(u16, Vec<u8>)> {
        let qname = Name::from_ascii(format!("{}.", normalize(name)))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let id = next_id();
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(qname, record_type_to_wire(rtype)));
        let payload = match (self.edns, self.dnssec_ok) {
            (Some(p), _) => Some(p),
            (None, true) => Some(1232),
            (None, false) => None,
        };
        if let Some(p) = payload {
            let mut e = Edns::new();
            e.set_max_payload(p);
            e.set_dnssec_ok(self.dnssec_ok);
            msg.set_edns(e);
        }
        msg.metadata.authentic_data = self.dnssec_ok;
        let bytes = msg.to_vec().map_err(io::Error::other)?;
        Ok((id, bytes))
    }

    /// One query over UDP (no retry over TCP).
    pub fn udp(&self, name: &str, rtype: RecordType) -> io::Result<DnsReply> {
        let (id, q) = self.query(name, rtype)?;
        let bind: SocketAddr = if self.udp.is_ipv4() {
            ([127, 0, 0, 1], 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        let sock = UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(self.timeout))?;
        sock.connect(self.udp)?;
        sock.send(&q)?;
        let mut buf = vec![0u8; 65_535];
        for _ in 0..MAX_DATAGRAMS {
            let n = sock.recv(&mut buf)?;
            if let Ok(m) = Message::from_vec(&buf[..n])
                && m.metadata.id == id
                && m.metadata.message_type == MessageType::Response
            {
                return Ok(decode(&m, false));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no matching DNS answer",
        ))
    }

    /// One query over TCP.
    pub fn tcp(&self, name: &str, rtype: RecordType) -> io::Result<DnsReply> {
        let (id, q) = self.query(name, rtype)?;
        let mut s = TcpStream::connect_timeout(&self.tcp, self.timeout)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        let len = u16::try_from(q.len()).map_err(io::Error::other)?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(&q);
        s.write_all(&out)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf)?;
        let m = Message::from_vec(&buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        if m.metadata.id != id {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong DNS id"));
        }
        Ok(decode(&m, true))
    }

    /// A query over UDP, repeated over TCP if the UDP answer is truncated.
    pub fn lookup(&self, name: &str, rtype: RecordType) -> io::Result<DnsReply> {
        let r = self.udp(name, rtype)?;
        if r.truncated {
            self.tcp(name, rtype)
        } else {
            Ok(r)
        }
    }
}

fn next_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0x5151);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn decode(m: &Message, tcp: bool) -> DnsReply {
    let conv = |rs: &[hickory_proto::rr::Record]| {
        rs.iter()
            .map(|r| Answer {
                name: normalize(&r.name.to_ascii()),
                ttl: r.ttl,
                record: from_rdata(&r.data),
            })
            .collect()
    };
    DnsReply {
        rcode: m.metadata.response_code.into(),
        truncated: m.metadata.truncation,
        authoritative: m.metadata.authoritative,
        tcp,
        authentic_data: m.metadata.authentic_data,
        ede: m
            .edns
            .as_ref()
            .map(|e| {
                e.options()
                    .options
                    .iter()
                    .filter_map(|(_, o)| match o {
                        EdnsOption::Unknown(15, data) => {
                            let code = data.get(..2)?;
                            Some(u16::from_be_bytes([code[0], code[1]]))
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        answers: conv(&m.answers),
        authority: conv(&m.authorities),
    }
}

/// Looks `name` up in the world's DNS (UDP, then TCP if truncated).
pub fn lookup(world: &World, name: &str, rtype: RecordType) -> io::Result<DnsReply> {
    DnsProbe::for_world(world).lookup(name, rtype)
}

/// Why an HTTPS probe failed.
#[derive(Debug)]
pub enum ProbeError {
    /// A socket error, including a timeout ([`is_timeout`](Self::is_timeout)).
    Io(io::Error),
    /// A TLS error (e.g. a certificate the client rejects, or an alert from the server).
    Tls(rustls::Error),
    /// The response is not valid HTTP/1.1.
    Http(String),
    /// The connection ended before the announced `Content-Length`.
    ShortBody {
        /// The announced length.
        expected: usize,
        /// The bytes received.
        received: usize,
    },
}

impl ProbeError {
    /// Whether this is a read or connect timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }

    /// The TLS error, if this is one.
    pub fn tls(&self) -> Option<&rustls::Error> {
        match self {
            Self::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "i/o: {e}"),
            Self::Tls(e) => write!(f, "tls: {e}"),
            Self::Http(e) => write!(f, "http: {e}"),
            Self::ShortBody { expected, received } => {
                write!(f, "body ended after {received} of {expected} bytes")
            }
        }
    }
}

impl std::error::Error for ProbeError {}

impl From<io::Error> for ProbeError {
    fn from(e: io::Error) -> Self {
        if !e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
            return Self::Io(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|i| i.downcast::<rustls::Error>()) {
            Some(Ok(tls)) => Self::Tls(*tls),
            Some(Err(other)) => Self::Io(io::Error::new(kind, other)),
            None => Self::Io(kind.into()),
        }
    }
}

/// A TLS client stream, as returned by [`HttpsProbe::connect`].
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// An HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsResponse {
    /// The status code.
    pub status: u16,
    /// The headers in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked if it was chunked).
    pub body: Vec<u8>,
    /// Whether the body came in chunked transfer encoding.
    pub chunked: bool,
    /// The TLS version negotiated.
    pub tls_version: Option<rustls::ProtocolVersion>,
}

impl HttpsResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTPS/1.1 client that connects to one address and sets SNI to the host it is asked for.
#[derive(Clone, Debug)]
pub struct HttpsProbe {
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    timeout: Duration,
}

impl HttpsProbe {
    /// A client connecting to `addr` with this configuration.
    pub fn new(addr: SocketAddr, config: Arc<ClientConfig>) -> Self {
        Self {
            addr,
            config,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A client for the world's HTTPS server, trusting the world's CA.
    pub fn for_world(world: &World) -> Self {
        Self::new(world.https_addr(), Arc::new(world.client_config()))
    }

    /// How long each connect, read and write may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects and completes the TLS handshake with SNI `host`.
    pub fn connect(&self, host: &str) -> Result<TlsStream, ProbeError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| ProbeError::Http(format!("bad host name: {e}")))?;
        let conn =
            ClientConnection::new(Arc::clone(&self.config), name).map_err(ProbeError::Tls)?;
        let tcp = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_write_timeout(Some(self.timeout))?;
        let mut s = StreamOwned::new(conn, tcp);
        // The handshake takes a few round trips; each call makes progress or fails.
        for _ in 0..16 {
            if !s.conn.is_handshaking() {
                return Ok(s);
            }
            s.conn.complete_io(&mut s.sock)?;
        }
        Err(ProbeError::Http("handshake did not finish".into()))
    }

    /// `GET https://<host><path>` and the whole response (up to 1 MiB).
    pub fn get(&self, host: &str, path: &str) -> Result<HttpsResponse, ProbeError> {
        let mut s = self.connect(host)?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mta-sts-testkit-probe\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())?;
        s.flush()?;
        let mut buf = Vec::new();
        (&mut s).take(MAX_RESPONSE as u64).read_to_end(&mut buf)?;
        let mut resp = parse_response(&buf)?;
        resp.tls_version = s.conn.protocol_version();
        Ok(resp)
    }
}

/// Fetches `https://<host><path>` from the world's HTTPS server.
pub fn https_get(world: &World, host: &str, path: &str) -> Result<HttpsResponse, ProbeError> {
    HttpsProbe::for_world(world).get(host, path)
}

/// Parses a complete HTTP/1.1 response (head and body) read until the connection closed.
pub fn parse_response(buf: &[u8]) -> Result<HttpsResponse, ProbeError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let off = match r.parse(buf) {
        Ok(httparse::Status::Complete(off)) => off,
        Ok(httparse::Status::Partial) => return Err(ProbeError::Http("incomplete head".into())),
        Err(e) => return Err(ProbeError::Http(e.to_string())),
    };
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut resp = HttpsResponse {
        status: r.code.unwrap_or_default(),
        headers,
        body: Vec::new(),
        chunked: false,
        tls_version: None,
    };
    let rest = &buf[off..];
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        resp.chunked = true;
        resp.body = dechunk(rest)?;
    } else if let Some(cl) = resp.header("content-length") {
        let expected: usize = cl
            .trim()
            .parse()
            .map_err(|_| ProbeError::Http(format!("bad Content-Length {cl:?}")))?;
        if rest.len() < expected {
            return Err(ProbeError::ShortBody {
                expected,
                received: rest.len(),
            });
        }
        resp.body = rest[..expected].to_vec();
    } else {
        resp.body = rest.to_vec();
    }
    Ok(resp)
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, ProbeError> {
    let mut body = Vec::new();
    // Each round consumes at least the size line, so the input bounds the loop.
    while !rest.is_empty() {
        let (used, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Err(ProbeError::Http("partial chunk".into())),
            Err(_) => return Err(ProbeError::Http("bad chunk size".into())),
        };
        rest = &rest[used..];
        let size = usize::try_from(size).map_err(|_| ProbeError::Http("huge chunk".into()))?;
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return Err(ProbeError::Http("truncated chunk".into()));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    Err(ProbeError::Http("missing last chunk".into()))
}

/// Reads one SMTP reply, all its lines (without their line ends), from `r`.
///
/// # Panics
/// When the connection closes or fails before the reply ends (a probe for tests).
pub fn read_smtp_reply(r: &mut impl BufRead) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).expect("read an SMTP reply") > 0,
            "connection closed"
        );
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.trim_end().to_owned());
        if last {
            return lines;
        }
    }
}

/// Sends one SMTP command line and reads its reply.
///
/// # Panics
/// When the connection fails (a probe for tests).
pub fn smtp_command(s: &mut BufReader<TcpStream>, line: &str) -> Vec<String> {
    s.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .expect("send an SMTP command");
    read_smtp_reply(s)
}

/// Connects to the world's fake MX, reads its greeting, sends EHLO and STARTTLS, and does the
/// TLS handshake with `config` and SNI `host`: the stream, or the handshake's rustls error.
///
/// # Panics
/// When the MX cannot be reached, or does not greet, offer STARTTLS or accept it (a probe for
/// tests; the TLS handshake is what it reports).
pub fn smtp_starttls(
    world: &World,
    config: Arc<ClientConfig>,
    host: &str,
) -> Result<TlsStream, rustls::Error> {
    let tcp = TcpStream::connect(world.smtp_addr()).expect("connect to the fake MX");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let mut s = BufReader::new(tcp);
    assert!(
        read_smtp_reply(&mut s)[0].starts_with("220 "),
        "no greeting"
    );
    let ehlo = smtp_command(&mut s, "EHLO client.example");
    assert!(ehlo.iter().any(|l| l == "250-STARTTLS"), "{ehlo:?}");
    assert!(smtp_command(&mut s, "STARTTLS")[0].starts_with("220 "));
    let name = ServerName::try_from(host.to_owned()).expect("a host name");
    let conn = ClientConnection::new(config, name).expect("a TLS client");
    let mut tls = StreamOwned::new(conn, s.into_inner());
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            let inner = e
                .into_inner()
                .and_then(|e| e.downcast::<rustls::Error>().ok());
            return Err(inner.map_or(rustls::Error::HandshakeNotComplete, |e| *e));
        }
    }
    Ok(tls)
}
