//! The steps of DNS exchanges and policy fetches around the core's wire codecs that do not
//! depend on a runtime: where to bind, what a policy request is, what a read of the response
//! means, reads within a poll into one buffer per thread, and how failed connection attempts are
//! reported.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::task::Poll;
use std::time::Duration;

use mta_sts_core::io::{FetchFailure, FetchResult, PolicyFetch};
use mta_sts_core::wire::dns::MAX_UDP_RESPONSE;
use mta_sts_core::wire::exchange::Exchange;
use mta_sts_core::wire::http::{Progress, ResponseParser, request};
use rustls_pki_types::ServerName;

use crate::{classify_tls_error, server_name};

/// The length of the buffer [`with_read_buffer`] lends: one datagram of up to
/// [`MAX_UDP_RESPONSE`] bytes plus one, so that a longer datagram shows as filling it.
pub const READ_BUFFER_LEN: usize = MAX_UDP_RESPONSE + 1;

thread_local! {
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUFFER_LEN].into_boxed_slice());
}

/// Runs `f` over this thread's read buffer of [`READ_BUFFER_LEN`] bytes.
///
/// For reads done inside one `poll` ([`poll_exchange_read`], [`poll_response_read`]): the bytes
/// go to the core's codec before `f` returns, so a lookup waiting for its network holds no
/// buffer of its own. With 64 lookups under way, per-lookup 4 KiB buffers were 0.6 MB of a
/// 2.3 MB heap peak (heaptrack), and the daemon's resident memory after 3,000 such lookups fell
/// 0.4 MiB without them. A nested call, or one while the thread ends, gets a fresh buffer
/// instead.
///
/// ```
/// let n = mta_sts_net::with_read_buffer(|buf| {
///     buf[..4].copy_from_slice(b"data");
///     buf.len()
/// });
/// assert_eq!(n, mta_sts_net::READ_BUFFER_LEN);
/// ```
pub fn with_read_buffer<R>(mut f: impl FnMut(&mut [u8]) -> R) -> R {
    let shared = READ_BUFFER.try_with(|cell| cell.try_borrow_mut().ok().map(|mut buf| f(&mut buf)));
    match shared {
        Ok(Some(r)) => r,
        _ => f(&mut vec![0; READ_BUFFER_LEN]),
    }
}

/// One read for a DNS exchange, within a poll: `read` (the adapter's non-blocking receive of
/// one datagram, or one TCP read) fills the thread's read buffer, and what it gave goes to
/// [`Exchange::received`] at `now()`. A TCP read of nothing is the server closing early
/// (`UnexpectedEof`); a datagram longer than the core accepts fills the buffer and the exchange
/// goes to TCP.
///
/// ```
/// use std::task::Poll;
/// use std::time::Duration;
/// use mta_sts_core::io::TxtQuery;
/// use mta_sts_core::wire::exchange::Exchange;
/// let servers = vec!["127.0.0.1:53".parse().unwrap()];
/// let mut ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 7, servers, Duration::ZERO)?;
/// let eof = mta_sts_net::poll_exchange_read(&mut ex, || Duration::ZERO, true, |_| Poll::Ready(Ok(0)));
/// assert!(matches!(eof, Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof));
/// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
/// ```
pub fn poll_exchange_read(
    ex: &mut Exchange,
    now: impl Fn() -> Duration,
    tcp: bool,
    mut read: impl FnMut(&mut [u8]) -> Poll<io::Result<usize>>,
) -> Poll<io::Result<()>> {
    with_read_buffer(|buf| match read(buf) {
        Poll::Ready(Ok(0)) if tcp => Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
        Poll::Ready(Ok(n)) => {
            ex.received(now(), &buf[..n]);
            Poll::Ready(Ok(()))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    })
}

/// Reads a policy response within a poll: `read` (the adapter's TLS stream read) fills the
/// thread's read buffer, each piece goes to the parser ([`read_progress`]), until the response
/// is complete, fails, or `read` is pending.
///
/// ```
/// use std::task::Poll;
/// use mta_sts_core::io::PolicyFetch;
/// use mta_sts_core::wire::http::ResponseParser;
/// let mut parser = ResponseParser::new(&PolicyFetch::new("mta-sts.example.com"));
/// let mut pieces = [&b"HTTP/1.1 200 OK\r\n"[..], b""].into_iter();
/// let end = mta_sts_net::poll_response_read(&mut parser, |buf| {
///     let piece = pieces.next().unwrap();
///     buf[..piece.len()].copy_from_slice(piece);
///     Poll::Ready(Ok(piece.len()))
/// });
/// assert!(matches!(end, Poll::Ready(Err(_)))); // closed before the body
/// ```
pub fn poll_response_read(
    parser: &mut ResponseParser,
    mut read: impl FnMut(&mut [u8]) -> Poll<io::Result<usize>>,
) -> Poll<FetchResult> {
    with_read_buffer(|buf| {
        loop {
            let Poll::Ready(r) = read(buf) else {
                return Poll::Pending;
            };
            if let Some(result) = read_progress(parser, r.map(|n| &buf[..n])) {
                return Poll::Ready(result);
            }
        }
    })
}

/// The local address a UDP socket for `server` binds to: any address of the same family, port 0
/// (a fresh random port chosen by the operating system for each query).
///
/// ```
/// let a = mta_sts_net::udp_bind_addr("[::1]:53".parse().unwrap());
/// assert_eq!(a, "[::]:0".parse().unwrap());
/// ```
pub fn udp_bind_addr(server: SocketAddr) -> SocketAddr {
    let ip = match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// A UDP socket for one DNS attempt: bound to a fresh ephemeral port ([`udp_bind_addr`]) and
/// connected to `server` (so that only its datagrams are received), in blocking mode; a runtime
/// registers it with its reactor.
pub fn udp_socket(server: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(udp_bind_addr(server))?;
    socket.connect(server)?;
    Ok(socket)
}

/// The TLS server name (SNI, and the name the certificate must be valid for) and the request
/// bytes of a policy fetch. A host that is not a DNS name cannot be resolved either.
///
/// ```
/// use mta_sts_core::io::PolicyFetch;
/// let (name, get) = mta_sts_net::policy_request(&PolicyFetch::new("mta-sts.example.com"))?;
/// assert_eq!(format!("{name:?}"), r#"DnsName("mta-sts.example.com")"#);
/// assert!(get.starts_with(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n"));
/// # Ok::<(), mta_sts_core::io::FetchFailure>(())
/// ```
pub fn policy_request(fetch: &PolicyFetch) -> Result<(ServerName<'static>, Vec<u8>), FetchFailure> {
    let name = server_name(&fetch.host).map_err(|e| FetchFailure::Resolve(e.to_string()))?;
    let request = request(fetch).map_err(|e| FetchFailure::Resolve(e.to_string()))?;
    Ok((name, request))
}

/// What one read of the TLS stream means for the response: `None` to read on, `Some(result)`
/// once the response is complete or failed. An end of stream (`Ok` with no bytes, after TLS
/// `close_notify`) ends a close-delimited body; a close without `close_notify` is an error
/// (it could be a truncation attack), classified like every TLS error.
///
/// ```
/// use mta_sts_core::io::PolicyFetch;
/// use mta_sts_core::wire::http::ResponseParser;
/// let mut parser = ResponseParser::new(&PolicyFetch::new("mta-sts.example.com"));
/// assert_eq!(mta_sts_net::read_progress(&mut parser, Ok(b"HTTP/1.1 200 OK\r\n")), None);
/// let eof = mta_sts_net::read_progress(&mut parser, Ok(b""));
/// assert!(matches!(eof, Some(Err(_))));
/// ```
pub fn read_progress(parser: &mut ResponseParser, read: io::Result<&[u8]>) -> Option<FetchResult> {
    match read {
        Ok([]) => Some(parser.finish()),
        Ok(data) => match parser.feed(data) {
            Progress::Complete(result) => Some(result),
            _ => None,
        },
        Err(e) => Some(Err(classify_tls_error(&e))),
    }
}

/// The connection attempts to a policy host's addresses that failed, for the operator.
///
/// ```
/// use mta_sts_core::io::FetchFailure;
/// let mut errors = mta_sts_net::ConnectErrors::default();
/// errors.push("192.0.2.1:443".parse().unwrap(), "connection refused");
/// errors.push("192.0.2.2:443".parse().unwrap(), "timed out");
/// assert_eq!(
///     errors.into_failure(),
///     FetchFailure::Connect("192.0.2.1:443: connection refused; 192.0.2.2:443: timed out".into())
/// );
/// ```
#[derive(Debug, Default, Clone)]
pub struct ConnectErrors(Vec<String>);

impl ConnectErrors {
    /// An attempt to `addr` failed with `error`.
    pub fn push(&mut self, addr: SocketAddr, error: impl fmt::Display) {
        self.0.push(format!("{addr}: {error}"));
    }

    /// The fetch failure when no attempt succeeded.
    pub fn into_failure(self) -> FetchFailure {
        FetchFailure::Connect(self.to_string())
    }
}

impl fmt::Display for ConnectErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no address to connect to");
        }
        f.write_str(&self.0.join("; "))
    }
}
