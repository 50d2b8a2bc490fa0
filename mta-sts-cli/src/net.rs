//! The options of every command that touches the network, and the blocking I/O that `check`
//! does itself: DNS exchanges driven by the core's [`Exchange`], TCP connections with deadlines.
//!
//! `check` runs one step after the other and needs details no adapter keeps (raw TXT records, MX
//! records, HTTP status and headers, certificates), so it uses std sockets directly: the core
//! still decides where to send, when to retry and what an answer means.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use mta_sts_core::io::{DnsFailure, FetchFailure};
use mta_sts_core::wire::dns::{DnsAnswer, DnsQuery, MAX_UDP_RESPONSE, QueryType};
use mta_sts_core::wire::exchange::{Exchange, ExchangeConfig, Step, Transport};
use mta_sts_net::TrustAnchors;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The most seconds `--timeout` accepts (a day).
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// Network options: resolvers, extra trust anchors, timeout, and the ports of a test world.
#[derive(Debug, Clone, Args)]
pub(crate) struct NetArgs {
    /// A DNS server to ask, as IP or IP:PORT (repeat for several; default: the nameservers of
    /// /etc/resolv.conf).
    #[arg(long = "resolver", value_name = "IP:PORT", value_parser = parse_resolver)]
    pub(crate) resolvers: Vec<SocketAddr>,
    /// A PEM file of extra trust anchors (CA certificates), trusted besides the Mozilla roots for
    /// policy hosts and MX hosts.
    #[arg(long = "ca-file", value_name = "PEM")]
    pub(crate) ca_files: Vec<PathBuf>,
    /// How long each network step (a DNS lookup, the policy fetch, one SMTP probe) may take, in
    /// seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = parse_timeout)]
    pub(crate) timeout: u64,
    /// The HTTPS port of policy hosts (for test worlds only).
    #[arg(long, value_name = "N", default_value_t = 443)]
    pub(crate) https_port: u16,
    /// The SMTP port of MX hosts (for test worlds only).
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub(crate) smtp_port: u16,
}

/// `IP`, `IP:PORT`, `[IPv6]` or `[IPv6]:PORT` (port 53 when none is given); shared by every
/// command that takes `--resolver` and by the daemon's `resolvers` key.
pub(crate) use mta_sts_postfix::config::parse_resolver;

fn parse_timeout(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=MAX_TIMEOUT_SECS).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a timeout: use a whole number of seconds from 1 to {MAX_TIMEOUT_SECS}"
        )),
    }
}

impl NetArgs {
    /// The timeout of one step.
    pub(crate) fn step_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// The resolvers given, or the system's.
    pub(crate) fn resolvers(&self) -> Result<Vec<SocketAddr>, String> {
        if !self.resolvers.is_empty() {
            return Ok(self.resolvers.clone());
        }
        mta_sts_net::system_resolvers()
            .map_err(|e| format!("{e}; name a DNS server with --resolver IP:PORT"))
    }

    /// The trust anchors: the Mozilla roots plus every `--ca-file`.
    pub(crate) fn trust_anchors(&self) -> Result<TrustAnchors, String> {
        let mut anchors = TrustAnchors::webpki();
        for path in &self.ca_files {
            anchors
                .add_pem_file(path)
                .map_err(|e| format!("--ca-file: {e}; give a PEM file of CA certificates"))?;
        }
        Ok(anchors)
    }

    /// The same anchors as a root store, for the verifier of `check` (which records the
    /// certificate it is shown). [`trust_anchors`](Self::trust_anchors) has checked the files.
    pub(crate) fn root_store(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in &self.ca_files {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect)
                .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            roots.add_parsable_certificates(certs);
        }
        Ok(roots)
    }
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// One DNS lookup of `name` for `qtype` through `servers`, within `timeout`.
pub(crate) fn lookup(
    servers: &[SocketAddr],
    name: &str,
    qtype: QueryType,
    timeout: Duration,
) -> Result<DnsAnswer, DnsFailure> {
    let query = DnsQuery::new(name, qtype, mta_sts_net::query_id())
        .map_err(|e| DnsFailure::Malformed(e.to_string()))?;
    let mut config = ExchangeConfig::default();
    config.total_timeout = timeout;
    config.attempt_timeout = config.attempt_timeout.min(timeout);
    config.tcp_timeout = config.tcp_timeout.min(timeout);
    let mut ex = Exchange::new(query, servers.to_vec(), config, Duration::ZERO);
    let start = Instant::now();
    let mut conn: Option<Conn> = None;
    // One datagram, or one TCP read (the exchange reassembles TCP): longer datagrams go to TCP.
    let mut buf = vec![0u8; MAX_UDP_RESPONSE + 1];
    // Every step either moves the exchange on or ends it; the bound only guards the loop.
    for _ in 0..10_000 {
        match ex.poll(start.elapsed()) {
            Step::Send(t) => {
                conn = None;
                let left = t.deadline().saturating_sub(start.elapsed());
                match send(t.server(), t.transport(), t.payload(), left) {
                    Ok(c) => {
                        conn = Some(c);
                        ex.sent(start.elapsed());
                    }
                    Err(e) if is_timeout(&e) => ex.timed_out(start.elapsed()),
                    Err(e) => ex.io_error(start.elapsed(), e),
                }
            }
            Step::Wait(until) => {
                let left = until.saturating_sub(start.elapsed());
                match conn.as_mut().map(|c| receive(c, &mut buf, left)) {
                    Some(Ok(n)) => ex.received(start.elapsed(), &buf[..n]),
                    Some(Err(e)) if !is_timeout(&e) => ex.io_error(start.elapsed(), e),
                    _ => ex.timed_out(start.elapsed().max(until)),
                }
            }
            Step::Done(result) => return result,
            _ => break,
        }
    }
    Err(DnsFailure::Malformed("the DNS exchange did not end".into()))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// A read timeout of at least a millisecond (zero means "block forever" to std).
fn at_least_1ms(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

fn send(
    server: SocketAddr,
    transport: Transport,
    payload: &[u8],
    left: Duration,
) -> io::Result<Conn> {
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    if transport == Transport::Tcp {
        let mut s = TcpStream::connect_timeout(&server, left)?;
        s.set_write_timeout(Some(at_least_1ms(left)))?;
        s.write_all(payload)?;
        return Ok(Conn::Tcp(s));
    }
    let s = UdpSocket::bind(mta_sts_net::udp_bind_addr(server))?;
    s.connect(server)?;
    s.send(payload)?;
    Ok(Conn::Udp(s))
}

fn receive(conn: &mut Conn, buf: &mut [u8], left: Duration) -> io::Result<usize> {
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    match conn {
        Conn::Udp(s) => {
            s.set_read_timeout(Some(at_least_1ms(left)))?;
            s.recv(buf)
        }
        Conn::Tcp(s) => {
            s.set_read_timeout(Some(at_least_1ms(left)))?;
            match s.read(buf)? {
                0 => Err(io::ErrorKind::UnexpectedEof.into()),
                n => Ok(n),
            }
        }
    }
}

/// The addresses of `host` (AAAA and A, IPv6 first, interleaved), or why there are none.
pub(crate) fn addresses(
    servers: &[SocketAddr],
    host: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, String> {
    let addrs = |qtype| {
        lookup(servers, host, qtype, timeout)
            .and_then(DnsAnswer::into_addrs)
            .map(|a| a.addrs().to_vec())
    };
    mta_sts_net::combine_addresses(host, addrs(QueryType::A), addrs(QueryType::Aaaa)).map_err(|e| {
        match e {
            FetchFailure::Resolve(detail) => detail,
            other => other.to_string(),
        }
    })
}

/// A TCP connection to the first address of `addrs` that answers on `port`, each attempt with
/// its share of `timeout`; read and write timeouts are set to `timeout`.
pub(crate) fn connect(addrs: &[IpAddr], port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let attempt = mta_sts_net::connect_attempt_timeout(timeout, addrs.len());
    let mut errors = Vec::new();
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        match TcpStream::connect_timeout(&addr, attempt) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))
                    .map_err(|e| e.to_string())?;
                s.set_write_timeout(Some(timeout))
                    .map_err(|e| e.to_string())?;
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_in_range() {
        assert_eq!(parse_timeout("5"), Ok(5));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("1.5").is_err());
        assert!(parse_timeout("99999999").is_err());
    }

    #[test]
    fn lookup_without_servers_fails_at_once() {
        let r = lookup(&[], "example.com", QueryType::Mx, Duration::from_secs(1));
        assert!(r.is_err());
    }
}
