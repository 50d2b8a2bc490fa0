//! The HTTPS GET of a policy with std::net and rustls (`ClientConnection` + `StreamOwned`),
//! following the core's HTTP codec. The fetch's overall deadline bounds every step: the address
//! lookups, each connection attempt, and every read and write of the TLS stream.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mta_sts_core::io::{FetchFailure, FetchResult, PolicyFetch};
use mta_sts_core::wire::dns::QueryType;
use mta_sts_core::wire::http::ResponseParser;
use mta_sts_net::{
    ConnectErrors, classify_tls_error, combine_addresses, connect_attempt_timeout, read_progress,
};
use rustls::{ClientConnection, StreamOwned};

use crate::{Inner, dns};

/// Fetches a policy, all within `fetch.timeout`.
pub(crate) fn fetch(inner: &Inner, fetch: &PolicyFetch) -> FetchResult {
    let start = Instant::now();
    // A timeout too large for the clock (a configuration of `Duration::MAX`) is a year.
    let deadline = start
        .checked_add(fetch.timeout)
        .unwrap_or_else(|| start + Duration::from_secs(365 * 86_400));
    let left = || deadline.saturating_duration_since(Instant::now());
    let (name, request) = mta_sts_net::policy_request(fetch)?;

    // The policy host's addresses, through the same resolvers, in the fetch's time.
    let a = dns::addrs(&inner.resolvers, &fetch.host, QueryType::A, left());
    let aaaa = dns::addrs(&inner.resolvers, &fetch.host, QueryType::Aaaa, left());
    if left().is_zero() {
        return Err(FetchFailure::Timeout);
    }
    let addrs = combine_addresses(&fetch.host, a, aaaa)?;

    // One connection attempt per address, in order, each with its share of the time.
    let attempt = connect_attempt_timeout(fetch.timeout, addrs.len());
    let mut errors = ConnectErrors::default();
    let mut tcp = None;
    for ip in addrs {
        let addr = SocketAddr::new(ip, fetch.port);
        let limit = attempt.min(left());
        if limit.is_zero() {
            return Err(FetchFailure::Timeout);
        }
        match TcpStream::connect_timeout(&addr, limit) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) if dns::is_timeout(&e) => errors.push(addr, "timed out"),
            Err(e) => errors.push(addr, e),
        }
    }
    let Some(tcp) = tcp else {
        return Err(errors.into_failure());
    };
    // The request goes out in whole TLS records: do not let Nagle hold the last one back.
    let _ = tcp.set_nodelay(true);

    let conn = ClientConnection::new(inner.tls.clone(), name)
        .map_err(|e| FetchFailure::Tls(e.to_string()))?;
    let mut tls = StreamOwned::new(conn, Deadlined { tcp, deadline });
    tls.write_all(&request)
        .map_err(|e| classify_tls_error(&e))?;
    let mut parser = ResponseParser::new(fetch);
    // A policy is small (a few hundred bytes); the parser takes the body in any pieces.
    let mut buf = vec![0u8; 4 * 1024];
    loop {
        let read = tls.read(&mut buf).map(|n| &buf[..n]);
        if let Some(result) = read_progress(&mut parser, read) {
            return result;
        }
    }
}

/// A TCP stream whose every read and write waits at most until `deadline`; past it, they fail
/// with `TimedOut` at once.
struct Deadlined {
    tcp: TcpStream,
    deadline: Instant,
}

impl Deadlined {
    fn left(&self) -> io::Result<Duration> {
        match self.deadline.saturating_duration_since(Instant::now()) {
            Duration::ZERO => Err(io::ErrorKind::TimedOut.into()),
            left => Ok(left),
        }
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.set_read_timeout(Some(self.left()?))?;
        self.tcp.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.set_write_timeout(Some(self.left()?))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}
