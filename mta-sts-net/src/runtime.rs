//! The runtime seam: what the client needs of an async runtime (timers, sockets, spawning,
//! somewhere to block), in the style of quinn's `Runtime`. The client, its DNS stub resolver and
//! its policy fetch are written once over this trait; `mta-sts-tokio`, `mta-sts-smol` and
//! `mta-sts-blocking` each implement it in about a hundred lines.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

/// A boxed future that can move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A boxed future of an I/O result: a connection being made.
pub type IoFuture<T> = BoxFuture<'static, io::Result<T>>;

/// The answer of a poll for I/O.
pub type PollIo<T> = Poll<io::Result<T>>;

/// What the client needs of a runtime.
///
/// Every network wait the client does is bounded by a deadline it computes from [`now`]
/// (a DNS attempt, a connection attempt, a whole policy fetch): it races the I/O against
/// [`sleep_until`]. A runtime whose I/O cannot be raced (the blocking one, which does the I/O
/// inside `poll`) gets each deadline with the socket instead ([`connect_tcp`], [`bind_udp`],
/// [`set_deadline`]) and must obey it there; an async runtime may ignore those deadlines.
///
/// [`now`]: Runtime::now
/// [`sleep_until`]: Runtime::sleep_until
/// [`connect_tcp`]: Runtime::connect_tcp
/// [`bind_udp`]: Runtime::bind_udp
/// [`set_deadline`]: Runtime::set_deadline
pub trait Runtime: Clone + Send + Sync + fmt::Debug + 'static {
    /// A TCP connection: a DNS-over-TCP exchange, or the transport under a policy fetch's TLS.
    type Tcp: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// A UDP socket connected to one DNS server.
    type Udp: Send + Sync + 'static;

    /// The monotonic clock every deadline is computed from (override it to test in virtual
    /// time). The wall clock of the MTA-STS decisions is the client's [`Clock`](crate::Clock).
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// A future that completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;

    /// What [`spawn`](Runtime::spawn) gives back: kept by the refresher's handle and dropped
    /// after the task has been told to stop (the blocking runtime joins its thread there; an
    /// async runtime's task ends on its own).
    type Task: Send + 'static;

    /// Runs `future` to its end in the background (the refresher). Fails only if the runtime
    /// cannot start it (a thread that cannot be created).
    fn spawn(&self, future: BoxFuture<'static, ()>) -> io::Result<Self::Task>;

    /// Runs `work` where blocking is allowed (writing the cache file) and completes with it.
    fn unblock(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()>;

    /// A TCP connection to `addr`, with Nagle's delay off (requests go out in whole TLS
    /// records). `deadline` bounds the connection attempt (and, until [`set_deadline`] moves
    /// it, the reads and writes of a runtime that cannot race its I/O).
    ///
    /// [`set_deadline`]: Runtime::set_deadline
    fn connect_tcp(
        &self,
        addr: SocketAddr,
        deadline: Instant,
    ) -> BoxFuture<'static, io::Result<Self::Tcp>>;

    /// From now on, every read and write on `tcp` must end by `deadline`: what a runtime that
    /// cannot race its I/O must do (with socket timeouts); the default does nothing.
    fn set_deadline(&self, tcp: &mut Self::Tcp, deadline: Instant) {
        let _ = (tcp, deadline);
    }

    /// A UDP socket on a fresh ephemeral port, connected to `server` (from
    /// [`udp_socket`](crate::udp_socket)); `deadline` bounds its reads for a runtime that cannot
    /// race them.
    fn bind_udp(&self, server: SocketAddr, deadline: Instant) -> io::Result<Self::Udp>;

    /// Sends one datagram on `socket`.
    fn poll_send(&self, socket: &Self::Udp, cx: &mut Context<'_>, buf: &[u8]) -> PollIo<usize>;

    /// Receives one datagram on `socket` into `buf` (a longer one fills `buf`).
    fn poll_recv(&self, socket: &Self::Udp, cx: &mut Context<'_>, buf: &mut [u8]) -> PollIo<usize>;

    /// A TLS connection over `tcp` to the host `name` with `config` (handshake done). The
    /// default is futures-rustls, for runtimes whose reads wait by returning `Pending`; a
    /// runtime whose reads block (the blocking one) drives rustls's own blocking I/O instead,
    /// which never waits for a read while the handshake has records to write. A rustls error is
    /// an `io::Error` carrying the `rustls::Error` (as futures-rustls and rustls give them), so
    /// that [`classify_tls_error`](crate::classify_tls_error) can tell certificate problems
    /// apart.
    fn connect_tls(
        &self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        tcp: Self::Tcp,
    ) -> IoFuture<Box<dyn TlsStream>> {
        Box::pin(async move {
            let tls = futures_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(Box::new(tls) as Box<dyn TlsStream>)
        })
    }
}

/// A TLS connection made by [`Runtime::connect_tls`].
pub trait TlsStream: AsyncRead + AsyncWrite + Send + Unpin {
    /// The TLS version negotiated.
    fn protocol_version(&self) -> Option<rustls::ProtocolVersion>;
}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> TlsStream for futures_rustls::client::TlsStream<T> {
    fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.get_ref().1.protocol_version()
    }
}

/// `future`'s output, or `None` once `deadline` has passed on `runtime`'s clock.
pub(crate) async fn until<R: Runtime, T>(
    runtime: &R,
    deadline: Instant,
    future: impl Future<Output = T>,
) -> Option<T> {
    let future = std::pin::pin!(future);
    let mut sleep = runtime.sleep_until(deadline);
    let mut future = future;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        sleep.as_mut().poll(cx).map(|()| None)
    })
    .await
}
