//! systemd: readiness notifications (`sd_notify`) and listening sockets passed by socket
//! activation (`sd_listen_fds`).
//!
//! The notifications are the few lines of the protocol written here (a datagram of
//! `KEY=VALUE` lines to the unix socket `NOTIFY_SOCKET` names, a path or an abstract name after
//! `@`): the `sd-notify` crate does not reach abstract sockets. The sockets are taken with the
//! `listenfd` crate, which checks each descriptor's kind before it becomes a listener (with no
//! `unsafe` here).

use std::io;
use std::net::TcpListener;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram, UnixListener};

use crate::Error;

/// Sends `lines` (`READY=1`, `STATUS=…`) to the service manager when `NOTIFY_SOCKET` is set;
/// does nothing otherwise. A failure is logged, never fatal: the daemon serves all the same.
pub(crate) fn notify(lines: &[&str]) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&socket, lines) {
        tracing::warn!(
            "cannot notify the service manager at {}: {e}",
            socket.to_string_lossy()
        );
    }
}

fn send(socket: &std::ffi::OsStr, lines: &[&str]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = socket.as_bytes();
    let addr = match bytes.split_first() {
        Some((b'@', name)) => abstract_addr(name)?,
        Some((b'/', _)) => UnixAddr::from_pathname(socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor an @abstract name",
            ));
        }
    };
    let mut message = String::new();
    for line in lines {
        message.push_str(line);
        message.push('\n');
    }
    let sent = UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr)?;
    if sent == message.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was cut short",
        ))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<UnixAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    UnixAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_: &[u8]) -> io::Result<UnixAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist on Linux only",
    ))
}

/// `MONOTONIC_USEC=…` for a `RELOADING=1` notification: the clock systemd compares with
/// (`CLOCK_MONOTONIC`), in microseconds.
pub(crate) fn monotonic_usec() -> String {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = i128::from(now.tv_sec) * 1_000_000 + i128::from(now.tv_nsec) / 1_000;
    format!("MONOTONIC_USEC={usec}")
}

/// Listening sockets the daemon serves in place of the configuration file's `host`/`port` or
/// `path`: those a service manager passed (socket activation: a `.socket` unit, `LISTEN_FDS`),
/// or those an embedder bound. With any, the `listen` keys (`host`, `port`, `reuse_port`,
/// `path`, `mode`) are not used, and a reload never rebinds.
///
/// ```
/// use mta_sts_postfix::PassedSockets;
///
/// let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let sockets = PassedSockets::new(vec![tcp], Vec::new());
/// assert_eq!(sockets.len(), 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct PassedSockets {
    pub(crate) tcp: Vec<TcpListener>,
    pub(crate) unix: Vec<UnixListener>,
}

impl PassedSockets {
    /// Listening TCP and unix stream sockets (bound and listening already).
    pub fn new(tcp: Vec<TcpListener>, unix: Vec<UnixListener>) -> Self {
        Self { tcp, unix }
    }

    /// How many sockets.
    pub fn len(&self) -> usize {
        self.tcp.len() + self.unix.len()
    }

    /// None: the daemon binds what its configuration file says.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the sockets the service manager passed to this process (`LISTEN_FDS` descriptors
    /// from 3 on, when `LISTEN_PID` is this process or unset), and unsets `LISTEN_FDS` and
    /// `LISTEN_PID`. Each must be a listening TCP or unix stream socket. Changes the
    /// environment: call it before the process has other threads ([`run`](crate::run) does).
    pub(crate) fn from_env() -> Result<Self, Error> {
        let mut fds = listenfd::ListenFd::from_env();
        let mut sockets = Self::default();
        for index in 0..fds.len() {
            let wrong = |what: String| Error::Activation {
                index,
                source: io::Error::new(io::ErrorKind::InvalidInput, what),
            };
            match fds.take_tcp_listener(index) {
                Ok(Some(l)) => {
                    listening(&l, index)?;
                    sockets.tcp.push(l);
                }
                Ok(None) => {}
                Err(tcp) => match fds.take_unix_listener(index) {
                    Ok(Some(l)) => {
                        listening(&l, index)?;
                        sockets.unix.push(l);
                    }
                    Ok(None) => {}
                    Err(unix) => return Err(wrong(format!("{tcp}; {unix}"))),
                },
            }
        }
        Ok(sockets)
    }
}

/// A stream socket that was never `listen`ed on would fail every accept.
fn listening(fd: impl std::os::fd::AsFd, index: usize) -> Result<(), Error> {
    match rustix::net::sockopt::socket_acceptconn(fd) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Activation {
            index,
            source: io::Error::new(io::ErrorKind::InvalidInput, "the socket is not listening"),
        }),
        Err(e) => Err(Error::Activation {
            index,
            source: e.into(),
        }),
    }
}
