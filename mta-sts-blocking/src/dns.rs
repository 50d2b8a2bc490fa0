//! DNS over UDP and TCP with std::net, following the core's exchange driver: every socket
//! operation gets the time left until the driver's deadline as its timeout.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use mta_sts_core::io::{DnsFailure, TxtQuery, TxtResult};
use mta_sts_core::wire::dns::{DnsAnswer, MAX_UDP_RESPONSE, QueryType};
use mta_sts_core::wire::exchange::{Exchange, Step, Transmit, Transport};

/// The TXT records at `query.name`, within `query.timeout`.
pub(crate) fn txt(servers: &[SocketAddr], query: &TxtQuery) -> TxtResult {
    run(mta_sts_net::txt_exchange(servers, query)?).and_then(DnsAnswer::into_txt)
}

/// The addresses of `host` (A or AAAA), within `total`.
pub(crate) fn addrs(
    servers: &[SocketAddr],
    host: &str,
    qtype: QueryType,
    total: Duration,
) -> Result<Vec<IpAddr>, DnsFailure> {
    let ex = mta_sts_net::addr_exchange(servers, host, qtype, total)?;
    Ok(run(ex)?.into_addrs()?.addrs().to_vec())
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// Runs an exchange to its end: the core says where, how and until when; this moves the bytes.
fn run(mut ex: Exchange) -> Result<DnsAnswer, DnsFailure> {
    let start = Instant::now();
    let mut conn: Option<Conn> = None;
    // One datagram, or one TCP read (the exchange reassembles TCP): longer datagrams go to TCP.
    let mut buf = vec![0u8; MAX_UDP_RESPONSE + 1];
    loop {
        match ex.poll(start.elapsed()) {
            Step::Send(t) => {
                conn = None;
                match open(&t, t.timeout(start.elapsed())) {
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
                let read = match conn.as_mut() {
                    Some(c) if !left.is_zero() => recv(c, &mut buf, left),
                    // The deadline has passed (or, impossibly, nothing was sent).
                    _ => Err(io::ErrorKind::TimedOut.into()),
                };
                match read {
                    Ok(n) => ex.received(start.elapsed(), &buf[..n]),
                    Err(e) if is_timeout(&e) => ex.timed_out(start.elapsed()),
                    Err(e) => ex.io_error(start.elapsed(), e),
                }
            }
            Step::Done(result) => return result,
            _ => return Err(DnsFailure::Malformed("unsupported exchange step".into())),
        }
    }
}

/// Opens a new socket or connection for one attempt and sends its payload, within `left`.
fn open(t: &Transmit, left: Duration) -> io::Result<Conn> {
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    match t.transport() {
        Transport::Tcp => {
            let start = Instant::now();
            let mut s = TcpStream::connect_timeout(&t.server(), left)?;
            let rest = left.saturating_sub(start.elapsed());
            if rest.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            s.set_write_timeout(Some(rest))?;
            s.write_all(t.payload())?;
            Ok(Conn::Tcp(s))
        }
        Transport::Udp => {
            let s = UdpSocket::bind(mta_sts_net::udp_bind_addr(t.server()))?;
            s.connect(t.server())?;
            s.send(t.payload())?;
            Ok(Conn::Udp(s))
        }
        other => Err(io::Error::other(format!("unsupported transport {other}"))),
    }
}

/// One read, waiting at most `left` (not zero).
fn recv(conn: &mut Conn, buf: &mut [u8], left: Duration) -> io::Result<usize> {
    match conn {
        Conn::Udp(s) => {
            s.set_read_timeout(Some(left))?;
            s.recv(buf)
        }
        Conn::Tcp(s) => {
            s.set_read_timeout(Some(left))?;
            match s.read(buf)? {
                0 => Err(io::ErrorKind::UnexpectedEof.into()),
                n => Ok(n),
            }
        }
    }
}

/// A socket timeout: `WouldBlock` on Unix, `TimedOut` on Windows.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
