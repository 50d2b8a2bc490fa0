//! DNS over UDP and TCP with async-net, following the core's exchange driver.

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use mta_sts_core::io::{DnsFailure, TxtQuery, TxtResult};
use mta_sts_core::wire::dns::{DnsAnswer, QueryType};
use mta_sts_core::wire::exchange::{Exchange, Step, Transport};
use mta_sts_net::{addr_exchange, poll_exchange_read, txt_exchange, udp_bind_addr};
use smol::Async;
use smol::io::{AsyncRead, AsyncWriteExt};
use smol::net::TcpStream;

use crate::until;

enum Conn {
    Udp(Async<UdpSocket>),
    Tcp(TcpStream),
}

/// The TXT records at `query.name`.
pub(crate) async fn txt(servers: &[SocketAddr], query: &TxtQuery) -> TxtResult {
    run(txt_exchange(servers, query)?)
        .await
        .and_then(DnsAnswer::into_txt)
}

/// The addresses of `host` (A or AAAA), within `total`.
pub(crate) async fn addrs(
    servers: &[SocketAddr],
    host: &str,
    qtype: QueryType,
    total: Duration,
) -> Result<Vec<IpAddr>, DnsFailure> {
    let answer = run(addr_exchange(servers, host, qtype, total)?)
        .await?
        .into_addrs()?;
    Ok(answer.addrs().to_vec())
}

/// Runs an exchange to its end: the core says where, how and until when; this moves the bytes.
async fn run(mut ex: Exchange) -> Result<DnsAnswer, DnsFailure> {
    let start = Instant::now();
    // The time left until a deadline on the exchange's clock.
    let left = |deadline: Duration| deadline.saturating_sub(start.elapsed());
    let mut conn: Option<Conn> = None;
    loop {
        match ex.poll(start.elapsed()) {
            Step::Send(t) => {
                conn = None;
                let opened = open(t.server(), t.transport(), t.payload());
                match until(left(t.deadline()), opened).await {
                    Some(Ok(c)) => {
                        conn = Some(c);
                        ex.sent(start.elapsed());
                    }
                    Some(Err(e)) => ex.io_error(start.elapsed(), e),
                    None => ex.timed_out(start.elapsed()),
                }
            }
            Step::Wait(deadline) => {
                let read = poll_fn(|cx| poll_receive(cx, conn.as_mut(), &mut ex, start));
                match until(left(deadline), read).await {
                    Some(Ok(())) => {}
                    Some(Err(e)) => ex.io_error(start.elapsed(), e),
                    None => ex.timed_out(start.elapsed()),
                }
            }
            Step::Done(result) => return result,
            _ => return Err(DnsFailure::Malformed("unsupported exchange step".into())),
        }
    }
}

/// One datagram, or one TCP read, handed to the exchange within the poll
/// ([`poll_exchange_read`]).
fn poll_receive(
    cx: &mut Context<'_>,
    conn: Option<&mut Conn>,
    ex: &mut Exchange,
    start: Instant,
) -> Poll<io::Result<()>> {
    let now = || start.elapsed();
    match conn {
        Some(Conn::Udp(s)) => poll_exchange_read(ex, now, false, |buf| {
            loop {
                match s.get_ref().recv(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    done => return Poll::Ready(done),
                }
                // Not readable yet: wait for the reactor (a wake-up may be spurious).
                if let Err(e) = std::task::ready!(s.poll_readable(cx)) {
                    return Poll::Ready(Err(e));
                }
            }
        }),
        Some(Conn::Tcp(s)) => {
            poll_exchange_read(ex, now, true, |buf| Pin::new(&mut *s).poll_read(cx, buf))
        }
        None => Poll::Pending,
    }
}

async fn open(server: SocketAddr, transport: Transport, payload: &[u8]) -> io::Result<Conn> {
    match transport {
        Transport::Tcp => {
            let mut s = TcpStream::connect(server).await?;
            s.write_all(payload).await?;
            Ok(Conn::Tcp(s))
        }
        _ => {
            let s = Async::<UdpSocket>::bind(udp_bind_addr(server))?;
            s.get_ref().connect(server)?;
            s.send(payload).await?;
            Ok(Conn::Udp(s))
        }
    }
}
