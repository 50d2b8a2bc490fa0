//! DNS over UDP and TCP with tokio, following the core's exchange driver.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mta_sts_core::io::{DnsFailure, TxtQuery, TxtResult};
use mta_sts_core::wire::dns::{DnsAnswer, MAX_UDP_RESPONSE, QueryType};
use mta_sts_core::wire::exchange::{Exchange, Step, Transport};
use mta_sts_net::{addr_exchange, txt_exchange, udp_bind_addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

enum Conn {
    Udp(UdpSocket),
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
    let mut conn: Option<Conn> = None;
    // One datagram, or one TCP read (the exchange reassembles TCP): longer datagrams go to TCP.
    let mut buf = vec![0u8; MAX_UDP_RESPONSE + 1];
    loop {
        match ex.poll(start.elapsed()) {
            Step::Send(t) => {
                conn = None;
                let deadline = start + t.deadline();
                match timeout_at(deadline, open(t.server(), t.transport(), t.payload())).await {
                    Ok(Ok(c)) => {
                        conn = Some(c);
                        ex.sent(start.elapsed());
                    }
                    Ok(Err(e)) => ex.io_error(start.elapsed(), e),
                    Err(_) => ex.timed_out(start.elapsed()),
                }
            }
            Step::Wait(until) => {
                let read = async {
                    match conn.as_mut() {
                        Some(Conn::Udp(s)) => s.recv(&mut buf).await,
                        Some(Conn::Tcp(s)) => match s.read(&mut buf).await {
                            Ok(0) => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                            other => other,
                        },
                        None => std::future::pending().await,
                    }
                };
                match timeout_at(start + until, read).await {
                    Ok(Ok(n)) => ex.received(start.elapsed(), &buf[..n]),
                    Ok(Err(e)) => ex.io_error(start.elapsed(), e),
                    Err(_) => ex.timed_out(start.elapsed()),
                }
            }
            Step::Done(result) => return result,
            _ => return Err(DnsFailure::Malformed("unsupported exchange step".into())),
        }
    }
}

async fn open(server: SocketAddr, transport: Transport, payload: &[u8]) -> std::io::Result<Conn> {
    match transport {
        Transport::Tcp => {
            let mut s = TcpStream::connect(server).await?;
            s.write_all(payload).await?;
            Ok(Conn::Tcp(s))
        }
        _ => {
            let s = UdpSocket::bind(udp_bind_addr(server)).await?;
            s.connect(server).await?;
            s.send(payload).await?;
            Ok(Conn::Udp(s))
        }
    }
}
