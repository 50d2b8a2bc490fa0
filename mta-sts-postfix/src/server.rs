//! The socketmap service: listeners (TCP, unix), one task per connection, pipelined requests
//! answered in order, and a drain on shutdown.
//!
//! Bounds, because every byte is hostile: a request is at most [`MAX_REQUEST`] bytes (longer:
//! a `PERM` reply, then the connection is closed); a connection has at most [`MAX_PIPELINE`]
//! requests under way (then it is not read until replies have gone out); at most
//! `max_connections` connections are served at once: when all places are taken, a newcomer takes
//! the place of the least recently active idle connection (see [`Places`]), or waits until one
//! is idle or closed; replies a peer has not taken are bounded (at most [`WRITE_BATCH`] bytes in
//! the daemon, then the socket's send buffer of [`SEND_BUFFER`] bytes), and a peer that leaves
//! them there for `write_timeout` is disconnected; a peer that sends no complete request for
//! `idle_timeout` (after connecting or after its last reply) is disconnected. A connection only
//! ever waits on its own socket, so a slow peer holds up nobody else.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError, watch};
use tokio::time::{Instant, sleep_until, timeout};

use crate::PassedSockets;
use crate::config::Listen;
use crate::netstring::{self, Decoded};
use crate::responder::{Reply, Responder};

/// The longest request accepted, in bytes (postfix-mta-sts-resolver's limit; a request is a map
/// name and a domain, at most a few hundred bytes).
pub(crate) const MAX_REQUEST: usize = 1024;
/// Requests under way on one connection (postfix-mta-sts-resolver's queue limit).
pub(crate) const MAX_PIPELINE: usize = 128;
/// A connection yields its thread after taking this many requests (see `serve_connection`).
const YIELD_EVERY: usize = 32;
/// Read size, once a connection has more to read than its first buffer holds.
const READ_CHUNK: usize = 4096;
/// The read buffer a connection starts with, and keeps while it waits for requests.
const IDLE_READ_BUFFER: usize = 512;
/// A read is made into at least this much spare room.
const MIN_READ: usize = 256;
/// The reply buffer a connection keeps while it waits for requests.
const IDLE_WRITE_BUFFER: usize = 1024;
/// Replies are written once this many bytes are waiting, or when no other reply is ready: the
/// most a connection keeps of replies its peer has not taken, besides the socket's send buffer.
const WRITE_BATCH: usize = 16 * 1024;
/// The send buffer of every connection's socket (`SO_SNDBUF`; Linux reserves twice this for its
/// bookkeeping). The kernel's own, grown as it sees fit up to 4 MB, let a peer that never read
/// leave megabytes of replies behind before a write of the daemon waited, so that
/// `write_timeout` never began for it.
const SEND_BUFFER: usize = 64 * 1024;
/// The shortest time between two log lines about connections closed to make room.
const EVICTION_LOG_EVERY: Duration = Duration::from_secs(10);

/// What every connection shares: the current responder (swapped on reload), the shutdown signal
/// and the count of live connections.
#[derive(Debug)]
pub(crate) struct Shared {
    current: RwLock<Arc<Responder>>,
    version: AtomicU64,
    shutdown: watch::Sender<bool>,
    live: AtomicUsize,
    /// Held while `live` changes and the gauge is set to it, so that two threads cannot set
    /// the values they computed out of order (which left the gauge wrong until the next change).
    gauge: Mutex<()>,
    idle: Notify,
    idle_timeout: RwLock<Duration>,
}

impl Shared {
    pub(crate) fn new(responder: Responder) -> Arc<Self> {
        let idle_timeout = responder.config().idle_timeout;
        Arc::new(Self {
            current: RwLock::new(Arc::new(responder)),
            version: AtomicU64::new(0),
            shutdown: watch::Sender::new(false),
            live: AtomicUsize::new(0),
            gauge: Mutex::new(()),
            idle: Notify::new(),
            idle_timeout: RwLock::new(idle_timeout),
        })
    }

    /// The responder in force.
    pub(crate) fn current(&self) -> Arc<Responder> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts a new responder in force: connections pick it up at their next request.
    pub(crate) fn replace(&self, responder: Responder) -> Arc<Responder> {
        let idle_timeout = responder.config().idle_timeout;
        let old = std::mem::replace(
            &mut *self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Arc::new(responder),
        );
        *self
            .idle_timeout
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = idle_timeout;
        self.version.fetch_add(1, Ordering::Release);
        old
    }

    /// Tells every connection to finish the requests it has and close.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Connections being served now.
    pub(crate) fn live_connections(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Waits until no connection is left.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live_connections() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn idle_timeout(&self) -> Duration {
        *self
            .idle_timeout
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn enter(self: &Arc<Self>) -> LiveGuard {
        let _gauge = self.lock_gauge();
        let n = self.live.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::gauge!("mta_sts_daemon_connections").set(n as f64);
        LiveGuard(self.clone())
    }

    fn lock_gauge(&self) -> std::sync::MutexGuard<'_, ()> {
        self.gauge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Counts a connection as live until dropped.
struct LiveGuard(Arc<Shared>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let n = {
            let _gauge = self.0.lock_gauge();
            let n = self.0.live.fetch_sub(1, Ordering::AcqRel) - 1;
            metrics::gauge!("mta_sts_daemon_connections").set(n as f64);
            n
        };
        if n == 0 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The places of one listener's connections (`max_connections` of them), and its idle
/// connections in the order they became idle (that is, of their last reply, or of their
/// accept), so that a newcomer finding every place taken can take the place of the least
/// recently active idle one: idle connections cannot lock out Postfix until `idle_timeout`.
///
/// A connection is idle when it has no request under way and no reply left to write (a partial
/// request does not count: bytes that make no request do not keep a connection either). The
/// bookkeeping is a slab of one slot per place with a doubly linked list through the idle slots:
/// every change is O(1) under one lock, and it never holds more slots than connections at once.
#[derive(Debug)]
pub(crate) struct Places {
    permits: Arc<Semaphore>,
    max: usize,
    slots: Mutex<Slots>,
    /// Woken when a connection becomes idle while a newcomer waits for a place.
    became_idle: Notify,
}

const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// The least recently active idle connection, and the most recently active one.
    head: u32,
    tail: u32,
    /// A newcomer found no idle connection and waits for one.
    waiting: bool,
    /// Connections closed to make room since the last log line about it.
    unlogged: u64,
    next_log: Option<Instant>,
}

#[derive(Debug)]
struct Slot {
    prev: u32,
    next: u32,
    state: SlotState,
    /// Tells the connection it was closed to make room.
    evict: Option<Arc<Notify>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Busy,
    Idle,
    Evicted,
}

impl Slots {
    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let slot = &self.slots[i as usize];
            (slot.prev, slot.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let slot = &mut self.slots[i as usize];
        slot.prev = NIL;
        slot.next = NIL;
    }

    /// Puts `i` at the most recently active end of the idle list.
    fn push_idle(&mut self, i: u32) {
        let tail = self.tail;
        {
            let slot = &mut self.slots[i as usize];
            slot.state = SlotState::Idle;
            slot.prev = tail;
            slot.next = NIL;
        }
        if tail == NIL {
            self.head = i;
        } else {
            self.slots[tail as usize].next = i;
        }
        self.tail = i;
    }
}

impl Places {
    pub(crate) fn new(max_connections: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max_connections)),
            max: max_connections,
            slots: Mutex::new(Slots {
                slots: Vec::new(),
                free: Vec::new(),
                head: NIL,
                tail: NIL,
                waiting: false,
                unlogged: 0,
                next_log: None,
            }),
            became_idle: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes a newcomer waiting for an idle connection, if any (called with the lock held).
    fn wake_waiting(&self, slots: &mut Slots) {
        if slots.waiting {
            slots.waiting = false;
            self.became_idle.notify_waiters();
        }
    }

    /// Takes a place for a connection just accepted (idle until its first request).
    fn enter(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Place {
        let evict = Arc::new(Notify::new());
        let mut slots = self.lock();
        let slot = Slot {
            prev: NIL,
            next: NIL,
            state: SlotState::Busy,
            evict: Some(evict.clone()),
        };
        let index = if let Some(i) = slots.free.pop() {
            slots.slots[i as usize] = slot;
            i
        } else {
            slots.slots.push(slot);
            u32::try_from(slots.slots.len() - 1).unwrap_or(NIL)
        };
        slots.push_idle(index);
        self.wake_waiting(&mut slots);
        drop(slots);
        Place {
            places: self.clone(),
            index,
            evict,
            _permit: permit,
        }
    }

    /// A place for a newcomer when every place is taken: the least recently active idle
    /// connection is closed for it, or, when none is idle, it waits for the first one to become
    /// idle or to close. `None` once the places are closed.
    async fn make_room(&self) -> Option<OwnedSemaphorePermit> {
        let acquire = self.permits.clone().acquire_owned();
        tokio::pin!(acquire);
        loop {
            let became_idle = self.became_idle.notified();
            tokio::pin!(became_idle);
            became_idle.as_mut().enable();
            // Queued for a permit before anyone is closed, so that the place freed is this one's.
            if let Poll::Ready(permit) = poll_fn(|cx| Poll::Ready(acquire.as_mut().poll(cx))).await
            {
                return permit.ok();
            }
            if self.evict_least_recent() {
                return acquire.await.ok();
            }
            tokio::select! {
                permit = &mut acquire => return permit.ok(),
                () = &mut became_idle => {}
            }
        }
    }

    /// Closes the least recently active idle connection; false when none is idle (then the next
    /// connection to become idle wakes `became_idle`).
    fn evict_least_recent(&self) -> bool {
        let mut slots = self.lock();
        let i = slots.head;
        if i == NIL {
            slots.waiting = true;
            return false;
        }
        slots.unlink(i);
        let slot = &mut slots.slots[i as usize];
        slot.state = SlotState::Evicted;
        if let Some(evict) = &slot.evict {
            evict.notify_one();
        }
        metrics::counter!("mta_sts_daemon_connections_evicted_total").increment(1);
        slots.unlogged += 1;
        let now = Instant::now();
        if slots.next_log.is_none_or(|at| now >= at) {
            tracing::warn!(
                "max_connections ({}) reached: closed {} idle connection(s) to make room for new \
                 ones (least recently active first; counted in \
                 mta_sts_daemon_connections_evicted_total)",
                self.max,
                slots.unlogged
            );
            slots.unlogged = 0;
            slots.next_log = Some(now + EVICTION_LOG_EVERY);
        }
        true
    }
}

/// A connection's place among `max_connections`: its slot in [`Places`] and its permit, both
/// given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    places: Arc<Places>,
    index: u32,
    evict: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

impl Place {
    /// The connection has no request under way and no reply to write: it may be closed to make
    /// room, least recently active first.
    fn idle(&self) {
        let mut slots = self.places.lock();
        if slots.slots[self.index as usize].state == SlotState::Busy {
            slots.push_idle(self.index);
            self.places.wake_waiting(&mut slots);
        }
    }

    /// The connection takes a request; false when it was closed to make room meanwhile.
    fn busy(&self) -> bool {
        let mut slots = self.places.lock();
        match slots.slots[self.index as usize].state {
            SlotState::Idle => {
                slots.unlink(self.index);
                slots.slots[self.index as usize].state = SlotState::Busy;
                true
            }
            SlotState::Evicted => false,
            SlotState::Busy | SlotState::Free => true,
        }
    }

    /// Completes once the connection has been closed to make room.
    async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut slots = self.places.lock();
        if slots.slots[self.index as usize].state == SlotState::Idle {
            slots.unlink(self.index);
        }
        let slot = &mut slots.slots[self.index as usize];
        slot.state = SlotState::Free;
        slot.evict = None;
        slots.free.push(self.index);
    }
}

/// Bound sockets for a [`Listen`] setting, not yet accepting.
#[derive(Debug)]
pub(crate) enum Bound {
    Tcp(Vec<TcpListener>),
    Unix(UnixListener, UnixSocketFile),
    /// Sockets passed by the service manager or an embedder ([`PassedSockets`]): their files
    /// are not this daemon's to remove.
    Passed(Vec<TcpListener>, Vec<UnixListener>),
}

/// A unix socket file this daemon created; removed when the listener stops, unless another
/// socket has replaced it meanwhile.
#[derive(Debug)]
pub(crate) struct UnixSocketFile {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

impl UnixSocketFile {
    fn remove(&self) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && Some((m.dev(), m.ino())) == self.id
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Bound {
    /// Binds what `listen` says. A stale unix socket file at the path is replaced (as
    /// postfix-mta-sts-resolver does); any other file there is an error.
    pub(crate) async fn bind(listen: &Listen) -> io::Result<Self> {
        match listen {
            Listen::Tcp {
                host,
                port,
                reuse_port,
            } => {
                let mut listeners = Vec::new();
                let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                    .await?
                    .collect();
                addrs.dedup();
                for addr in addrs {
                    let socket = if addr.is_ipv4() {
                        TcpSocket::new_v4()?
                    } else {
                        TcpSocket::new_v6()?
                    };
                    socket.set_reuseaddr(true)?;
                    socket.set_reuseport(*reuse_port)?;
                    socket.bind(addr)?;
                    listeners.push(socket.listen(1024)?);
                }
                if listeners.is_empty() {
                    return Err(io::Error::other(format!("{host} has no address")));
                }
                Ok(Self::Tcp(listeners))
            }
            Listen::Unix { path, mode } => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path)?;
                if let Some(mode) = mode {
                    set_mode(path, *mode)?;
                }
                use std::os::unix::fs::MetadataExt;
                let id = std::fs::symlink_metadata(path)
                    .ok()
                    .map(|m| (m.dev(), m.ino()));
                Ok(Self::Unix(
                    listener,
                    UnixSocketFile {
                        path: path.clone(),
                        id,
                    },
                ))
            }
        }
    }

    /// Listeners for sockets bound by someone else (within a tokio runtime).
    pub(crate) fn passed(sockets: PassedSockets) -> io::Result<Self> {
        let mut tcp = Vec::new();
        for l in sockets.tcp {
            l.set_nonblocking(true)?;
            tcp.push(TcpListener::from_std(l)?);
        }
        let mut unix = Vec::new();
        for l in sockets.unix {
            l.set_nonblocking(true)?;
            unix.push(UnixListener::from_std(l)?);
        }
        Ok(Self::Passed(tcp, unix))
    }

    /// What the sockets are bound to, for the log (`tcp 127.0.0.1:8461`, `unix /path`).
    pub(crate) fn describe(&self) -> Vec<String> {
        match self {
            Self::Tcp(listeners) => listeners
                .iter()
                .filter_map(|l| l.local_addr().ok())
                .map(|a| format!("tcp {a}"))
                .collect(),
            Self::Unix(_, file) => vec![format!("unix {}", file.path.display())],
            Self::Passed(tcp, unix) => tcp
                .iter()
                .filter_map(|l| l.local_addr().ok())
                .map(|a| format!("tcp {a}"))
                .chain(unix.iter().map(|l| match l.local_addr() {
                    Ok(a) => match a.as_pathname() {
                        Some(path) => format!("unix {}", path.display()),
                        None => format!("unix {a:?}"),
                    },
                    Err(_) => "unix (unknown address)".to_owned(),
                }))
                .collect(),
        }
    }

    /// Starts accepting: one task per socket. Returns the handle that stops them.
    pub(crate) fn serve(self, shared: &Arc<Shared>, max_connections: usize) -> Serving {
        let local_addrs = match &self {
            Self::Tcp(listeners) | Self::Passed(listeners, _) => listeners
                .iter()
                .filter_map(|l| l.local_addr().ok())
                .collect(),
            Self::Unix(..) => Vec::new(),
        };
        let (stop, stop_rx) = watch::channel(false);
        let places = Places::new(max_connections);
        let mut tasks = Vec::new();
        let mut socket_file = None;
        match self {
            Self::Tcp(listeners) => {
                for l in listeners {
                    tasks.push(tokio::spawn(accept_loop(
                        Acceptor::Tcp(l),
                        shared.clone(),
                        places.clone(),
                        stop_rx.clone(),
                    )));
                }
            }
            Self::Unix(l, file) => {
                socket_file = Some(file);
                tasks.push(tokio::spawn(accept_loop(
                    Acceptor::Unix(l),
                    shared.clone(),
                    places,
                    stop_rx,
                )));
            }
            Self::Passed(tcp, unix) => {
                let acceptors = tcp
                    .into_iter()
                    .map(Acceptor::Tcp)
                    .chain(unix.into_iter().map(Acceptor::Unix));
                for a in acceptors {
                    tasks.push(tokio::spawn(accept_loop(
                        a,
                        shared.clone(),
                        places.clone(),
                        stop_rx.clone(),
                    )));
                }
            }
        }
        Serving {
            stop,
            tasks,
            socket_file,
            local_addrs,
        }
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets the unix socket's file mode.
pub(crate) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Listeners accepting connections.
#[derive(Debug)]
pub(crate) struct Serving {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    socket_file: Option<UnixSocketFile>,
    local_addrs: Vec<SocketAddr>,
}

impl Serving {
    /// The addresses of the TCP listeners.
    pub(crate) fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Stops accepting (connections already accepted go on) and removes the unix socket file.
    pub(crate) async fn stop(self) {
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(file) = &self.socket_file {
            file.remove();
        }
    }
}

enum Acceptor {
    Tcp(TcpListener),
    Unix(UnixListener),
}

async fn accept_loop(
    acceptor: Acceptor,
    shared: Arc<Shared>,
    places: Arc<Places>,
    mut stop: watch::Receiver<bool>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *stop.borrow() || *shutdown.borrow() {
            return;
        }
        let accepted = tokio::select! {
            a = accept(&acceptor) => a,
            _ = stop.changed() => continue,
            _ = shutdown.changed() => continue,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Every place taken: this connection waits here (the next ones in the listen queue)
        // until an idle connection is closed for it, or one becomes idle or closes.
        let permit = match places.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return,
            Err(TryAcquireError::NoPermits) => {
                let permit = tokio::select! {
                    p = places.make_room() => p,
                    _ = stop.changed() => continue,
                    _ = shutdown.changed() => continue,
                };
                match permit {
                    Some(permit) => permit,
                    None => return,
                }
            }
        };
        let place = places.enter(permit);
        match stream {
            Stream::Tcp(s) => {
                let _ = s.set_nodelay(true);
                let _ = rustix::net::sockopt::set_socket_send_buffer_size(&s, SEND_BUFFER);
                let (r, w) = s.into_split();
                spawn_connection(r, w, &shared, place);
            }
            Stream::Unix(s) => {
                let _ = rustix::net::sockopt::set_socket_send_buffer_size(&s, SEND_BUFFER);
                let (r, w) = s.into_split();
                spawn_connection(r, w, &shared, place);
            }
        }
    }
}

/// Serves a connection in its own task; it counts as live, and holds its place among
/// `max_connections`, until it ends.
fn spawn_connection<R, W>(r: R, w: W, shared: &Arc<Shared>, place: Place)
where
    R: AsyncRead + Unread + Unpin + Send + 'static,
    W: AsyncWrite + Reset + Unpin + Send + 'static,
{
    let guard = shared.enter();
    let shared = shared.clone();
    tokio::spawn(async move {
        serve_connection(r, w, &shared, Some(&place)).await;
        drop((guard, place));
    });
}

/// The bytes a connection's socket has received that the daemon has not read yet (`FIONREAD`),
/// when that can be known.
pub(crate) trait Unread {
    fn unread(&self) -> Option<usize>;
}

fn unread_on(fd: impl AsFd) -> Option<usize> {
    rustix::io::ioctl_fionread(fd)
        .ok()
        .and_then(|n| usize::try_from(n).ok())
}

impl Unread for tokio::net::tcp::OwnedReadHalf {
    fn unread(&self) -> Option<usize> {
        unread_on(self.as_ref())
    }
}

impl Unread for tokio::net::unix::OwnedReadHalf {
    fn unread(&self) -> Option<usize> {
        unread_on(self.as_ref())
    }
}

/// A connection that is given up on (its peer does not take its replies) is reset when closed,
/// rather than left to the kernel with a close queued behind replies the peer will never take.
pub(crate) trait Reset {
    fn reset_on_close(&self) {}
}

impl Reset for tokio::net::tcp::OwnedWriteHalf {
    fn reset_on_close(&self) {
        let _ = rustix::net::sockopt::set_socket_linger(self.as_ref(), Some(Duration::ZERO));
    }
}

/// A unix socket's buffers go with it when closed.
impl Reset for tokio::net::unix::OwnedWriteHalf {}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(acceptor: &Acceptor) -> io::Result<Stream> {
    match acceptor {
        Acceptor::Tcp(l) => l.accept().await.map(|(s, _)| Stream::Tcp(s)),
        Acceptor::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
    }
}

type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// The requests under way on a connection, answered in the order they came.
#[derive(Default)]
struct Pipeline {
    slots: VecDeque<(Option<ReplyFuture>, Option<Reply>)>,
}

impl Pipeline {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn push(&mut self, f: ReplyFuture) {
        self.slots.push_back((Some(f), None));
    }

    /// Polls every request under way; gives the first one's reply once it is there.
    fn poll_front(&mut self, cx: &mut Context<'_>) -> Poll<Reply> {
        for (future, done) in &mut self.slots {
            if let Some(f) = future
                && let Poll::Ready(reply) = f.as_mut().poll(cx)
            {
                *done = Some(reply);
                *future = None;
            }
        }
        match self.slots.front_mut() {
            Some((_, done)) if done.is_some() => {
                let reply = done.take();
                self.slots.pop_front();
                reply.map_or(Poll::Pending, Poll::Ready)
            }
            _ => Poll::Pending,
        }
    }

    async fn next(&mut self) -> Reply {
        poll_fn(|cx| self.poll_front(cx)).await
    }

    /// The first reply if it is ready now, without waiting.
    async fn ready(&mut self) -> Option<Reply> {
        poll_fn(|cx| {
            Poll::Ready(match self.poll_front(cx) {
                Poll::Ready(reply) => Some(reply),
                Poll::Pending => None,
            })
        })
        .await
    }
}

fn push_reply(out: &mut Vec<u8>, reply: &Reply) {
    metrics::counter!("mta_sts_daemon_requests_total", "reply" => reply.kind()).increment(1);
    reply.encode(out);
}

/// What a connection may still read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Requests as they come.
    Open,
    /// Shutting down: at most this many more bytes, those its socket had received (and the
    /// daemon had not read yet) when the shutdown reached the connection.
    Rest(usize),
    /// Nothing more: the peer closed its side, a read failed, or the protocol was broken.
    Done,
}

impl Reading {
    fn more(self) -> bool {
        match self {
            Self::Open => true,
            Self::Rest(left) => left > 0,
            Self::Done => false,
        }
    }

    /// Where a connection that learns of the shutdown goes on: the bytes its socket holds are
    /// received requests too (TCP has acknowledged them to the client), nothing after them.
    fn shutting_down(rd: &impl Unread) -> Self {
        Self::Rest(rd.unread().unwrap_or(0))
    }
}

/// Takes the connection off the idle list when `listed`; false when it was closed to make room
/// meanwhile.
fn leave_idle(place: Option<&Place>, listed: &mut bool) -> bool {
    if !std::mem::replace(listed, false) {
        return true;
    }
    place.is_none_or(Place::busy)
}

/// Completes once the connection has been closed to make room (never without a place).
async fn evicted(place: Option<&Place>) {
    match place {
        Some(place) => place.evicted().await,
        None => std::future::pending().await,
    }
}

/// Serves one connection until the peer closes it, breaks the protocol, stops reading, idles,
/// its idle place is taken by a newcomer, or the daemon shuts down (then the requests already
/// received are answered first: those read and those its socket holds at that moment).
pub(crate) async fn serve_connection<R, W>(
    mut rd: R,
    mut wr: W,
    shared: &Arc<Shared>,
    place: Option<&Place>,
) where
    R: AsyncRead + Unread + Unpin,
    W: AsyncWrite + Reset + Unpin,
{
    let mut shutdown = shared.shutdown.subscribe();
    let mut version = shared.version.load(Ordering::Acquire);
    let mut responder = shared.current();
    let idle_timeout = shared.idle_timeout();
    let idle = sleep_until(Instant::now() + idle_timeout);
    tokio::pin!(idle);

    let mut buf: Vec<u8> = Vec::with_capacity(IDLE_READ_BUFFER);
    let mut out: Vec<u8> = Vec::new();
    let mut pipeline = Pipeline::default();
    let mut reading = if *shutdown.borrow() {
        Reading::shutting_down(&rd)
    } else {
        Reading::Open
    };
    // Requests taken since this task last yielded its thread.
    let mut taken = 0usize;
    // On its place's idle list (a connection starts there, see `Places::enter`).
    let mut idle_listed = true;

    loop {
        // A peer that keeps its connection busy (a pipelined flood always has a request ready)
        // would keep its worker thread until tokio's budget of I/O operations ran out, thousands
        // of requests later; it yields after every YIELD_EVERY requests instead, so that other
        // connections, and the I/O events that wake them, get their turn.
        if taken >= YIELD_EVERY {
            taken = 0;
            tokio::task::yield_now().await;
        }
        // The shutdown is seen at every step, not only while waiting below: from then on only
        // the bytes the socket holds are read.
        if reading == Reading::Open && shutdown.has_changed().unwrap_or(true) {
            reading = Reading::shutting_down(&rd);
        }
        // Take every complete request already read, while there is room.
        let mut start = 0;
        while pipeline.len() < MAX_PIPELINE {
            match netstring::decode(&buf[start..], MAX_REQUEST) {
                Ok(Decoded::Complete { data, consumed }) => {
                    if !leave_idle(place, &mut idle_listed) {
                        return;
                    }
                    let request = buf[start + data.start..start + data.end].to_vec();
                    start += consumed;
                    taken += 1;
                    let now = shared.version.load(Ordering::Acquire);
                    if now != version {
                        version = now;
                        responder = shared.current();
                    }
                    let r = responder.clone();
                    pipeline.push(Box::pin(async move { r.answer(&request).await }));
                }
                Ok(Decoded::Incomplete) => break,
                Err(e) => {
                    if !leave_idle(place, &mut idle_listed) {
                        return;
                    }
                    tracing::debug!(error = %e, "closing a socketmap connection");
                    let reason = match e {
                        netstring::NetstringError::TooLong => {
                            format!("{e} (at most {MAX_REQUEST} bytes)")
                        }
                        _ => e.to_string(),
                    };
                    pipeline.push(Box::pin(async move { Reply::Perm(reason) }));
                    reading = Reading::Done;
                    buf.clear();
                    start = 0;
                }
            }
        }
        buf.drain(..start);

        // Collect the replies that are ready, in order, and write them in one go.
        while out.len() < WRITE_BATCH {
            match pipeline.ready().await {
                Some(reply) => push_reply(&mut out, &reply),
                None => break,
            }
        }
        if !out.is_empty() {
            // Nothing is read while replies wait here (at most WRITE_BATCH bytes and one reply):
            // a peer that does not take them for this long is disconnected. The socket's send
            // buffer (SEND_BUFFER) is small, so this wait begins soon after a peer stops reading.
            let write_timeout = responder.config().write_timeout;
            match timeout(write_timeout, wr.write_all(&out)).await {
                Ok(Ok(())) => {
                    out.clear();
                    // Idle time counts from the last reply too, not only from the last read.
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                }
                Ok(Err(_)) => return, // the peer is gone
                Err(_) => {
                    // The peer does not read: a reset tells it at once.
                    wr.reset_on_close();
                    return;
                }
            }
            continue;
        }
        if !reading.more() && pipeline.is_empty() {
            let _ = timeout(responder.config().write_timeout, wr.shutdown()).await;
            return;
        }

        if pipeline.is_empty() {
            if buf.is_empty() {
                // Waiting for the next request: the buffers of a burst go back, so that an idle
                // connection holds little memory however busy it once was.
                release_burst_buffers(&mut buf, &mut out);
            }
            if !idle_listed {
                // No request under way, no reply to write: this place may be taken.
                idle_listed = true;
                if let Some(place) = place {
                    place.idle();
                }
            }
        }
        let can_read = reading.more() && pipeline.len() < MAX_PIPELINE;
        tokio::select! {
            reply = pipeline.next(), if !pipeline.is_empty() => push_reply(&mut out, &reply),
            // A read does not restart the idle time: bytes that do not make a request (one
            // trickled a byte at a time, a length that stalls) would keep the connection
            // forever. A request keeps it open until its reply is written, which restarts it.
            read = read_some(&mut rd, &mut buf, reading), if can_read => match read {
                Ok(0) | Err(_) => reading = Reading::Done,
                Ok(n) => {
                    if let Reading::Rest(left) = &mut reading {
                        *left = left.saturating_sub(n);
                    }
                }
            },
            changed = shutdown.changed(), if reading == Reading::Open => {
                // Shutting down (or the daemon is gone): answer what came, read nothing more
                // than the socket holds now.
                let _ = changed;
                reading = Reading::shutting_down(&rd);
            },
            () = &mut idle, if reading == Reading::Open && pipeline.is_empty() => return,
            () = evicted(place), if idle_listed => return,
        }
    }
}

/// Reads what the socket has (at most what `reading` still allows).
async fn read_some<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    reading: Reading,
) -> io::Result<usize> {
    // Reserved only when the room left is small: reserving a chunk before every read gave each
    // idle connection 4 KiB (40 MB for 10,000 of them) before its first byte.
    if buf.capacity() - buf.len() < MIN_READ {
        buf.reserve(READ_CHUNK);
    }
    match reading {
        Reading::Rest(left) => rd.take(left as u64).read_buf(buf).await,
        Reading::Open | Reading::Done => rd.read_buf(buf).await,
    }
}

/// Shrinks the (empty) buffers of a connection back to their idle sizes.
fn release_burst_buffers(buf: &mut Vec<u8>, out: &mut Vec<u8>) {
    if buf.capacity() > IDLE_READ_BUFFER {
        buf.shrink_to(IDLE_READ_BUFFER);
    }
    if out.capacity() > IDLE_WRITE_BUFFER {
        out.shrink_to(IDLE_WRITE_BUFFER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf, duplex};

    impl Unread for ReadHalf<DuplexStream> {
        fn unread(&self) -> Option<usize> {
            None
        }
    }

    impl Reset for WriteHalf<DuplexStream> {}
    impl Reset for DuplexStream {}

    /// A responder whose client never touches the network: every request in these tests is
    /// answered without a lookup (IP addresses, parent domains, malformed requests).
    fn shared() -> Arc<Shared> {
        let client = mta_sts_tokio::Client::builder()
            .resolvers(["127.0.0.1:9".parse().unwrap()])
            .build()
            .unwrap();
        let cfg = Arc::new(config::parse("").unwrap());
        Shared::new(Responder::new(client, cfg))
    }

    fn wire(requests: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in requests {
            netstring::encode(&mut out, r.as_bytes());
        }
        out
    }

    async fn run(input: Vec<u8>) -> Vec<u8> {
        let shared = shared();
        let (client, server) = duplex(1 << 20);
        let (sr, sw) = tokio::io::split(server);
        let task = tokio::spawn(async move { serve_connection(sr, sw, &shared, None).await });
        let (mut cr, mut cw) = tokio::io::split(client);
        cw.write_all(&input).await.unwrap();
        cw.shutdown().await.unwrap();
        let mut got = Vec::new();
        cr.read_to_end(&mut got).await.unwrap();
        task.await.unwrap();
        got
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order() {
        let got = run(wire(&[
            "postfix 192.0.2.1",
            "postfix",
            "postfix .example.com",
            "postfix [2001:db8::1]:25",
        ]))
        .await;
        assert_eq!(
            got,
            wire(&[
                "NOTFOUND ",
                "PERM request is not \"<map name> <key>\"",
                "NOTFOUND ",
                "NOTFOUND ",
            ])
        );
    }

    #[tokio::test]
    async fn requests_split_across_reads_are_reassembled() {
        let shared = shared();
        let (client, server) = duplex(64);
        let (sr, sw) = tokio::io::split(server);
        let task = tokio::spawn(async move { serve_connection(sr, sw, &shared, None).await });
        let (mut cr, mut cw) = tokio::io::split(client);
        let input = wire(&["postfix 192.0.2.1", "postfix 192.0.2.2"]);
        for byte in input {
            cw.write_all(&[byte]).await.unwrap();
            cw.flush().await.unwrap();
        }
        cw.shutdown().await.unwrap();
        let mut got = Vec::new();
        cr.read_to_end(&mut got).await.unwrap();
        task.await.unwrap();
        assert_eq!(got, wire(&["NOTFOUND ", "NOTFOUND "]));
    }

    /// One good request, then `bad`: the good one is answered, then a `PERM`, then the close
    /// (whatever follows `bad` is not read).
    async fn assert_answered_then_perm(bad: &[u8], perm: &str) {
        let mut input = wire(&["postfix 192.0.2.1"]);
        input.extend_from_slice(bad);
        input.extend(wire(&["postfix 192.0.2.2"]));
        let mut want = wire(&["NOTFOUND "]);
        netstring::encode(&mut want, perm.as_bytes());
        assert_eq!(run(input).await, want);
    }

    #[tokio::test]
    async fn an_oversize_request_gets_perm_then_the_connection_closes() {
        let mut bad = b"100000:".to_vec();
        bad.extend(std::iter::repeat_n(b'a', 5000));
        assert_answered_then_perm(
            &bad,
            "PERM netstring longer than the request limit (at most 1024 bytes)",
        )
        .await;
    }

    #[tokio::test]
    async fn a_malformed_netstring_answers_what_came_before_and_closes() {
        assert_answered_then_perm(b"5:abcdeX", "PERM netstring does not end with a comma").await;
    }

    #[tokio::test]
    async fn invalid_utf8_gets_perm_and_the_connection_goes_on() {
        let mut input = Vec::new();
        netstring::encode(&mut input, b"postfix \xff\xfe");
        input.extend(wire(&["postfix 192.0.2.1"]));
        let got = run(input).await;
        assert_eq!(got, wire(&["PERM request is not UTF-8", "NOTFOUND "]));
    }

    #[tokio::test]
    async fn more_requests_than_the_pipeline_holds_are_all_answered() {
        let requests: Vec<String> = (0..1000)
            .map(|i| format!("postfix 10.0.{}.{}", i / 256, i % 256))
            .collect();
        let refs: Vec<&str> = requests.iter().map(String::as_str).collect();
        let got = run(wire(&refs)).await;
        assert_eq!(got, wire(&vec!["NOTFOUND "; 1000]));
    }

    fn permit(places: &Arc<Places>) -> OwnedSemaphorePermit {
        places.permits.clone().try_acquire_owned().unwrap()
    }

    fn idle_order(places: &Places) -> Vec<u32> {
        let slots = places.lock();
        let mut order = Vec::new();
        let mut i = slots.head;
        while i != NIL {
            order.push(i);
            i = slots.slots[i as usize].next;
        }
        order
    }

    #[tokio::test]
    async fn the_least_recently_active_idle_connection_is_evicted_first() {
        let places = Places::new(3);
        let p: Vec<Place> = (0..3).map(|_| places.enter(permit(&places))).collect();
        assert_eq!(idle_order(&places), [0, 1, 2]);
        // 0 takes a request and answers it: it is the most recently active now.
        assert!(p[0].busy());
        assert_eq!(idle_order(&places), [1, 2]);
        p[0].idle();
        assert_eq!(idle_order(&places), [1, 2, 0]);
        assert!(places.evict_least_recent());
        assert_eq!(idle_order(&places), [2, 0]);
        // The evicted one is told, and cannot take a request any more.
        p[1].evicted().await;
        assert!(!p[1].busy());
        p[1].idle();
        assert_eq!(idle_order(&places), [2, 0]);
    }

    #[tokio::test]
    async fn a_newcomer_evicts_an_idle_connection_or_waits_for_one_to_become_idle() {
        let places = Places::new(2);
        let a = places.enter(permit(&places));
        let b = places.enter(permit(&places));
        assert!(a.busy() && b.busy());
        // None idle: the newcomer waits, and gets a place once one is idle (and so evicted).
        let waiting = tokio::spawn({
            let places = places.clone();
            async move { places.make_room().await.map(|p| places.enter(p)) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        b.idle();
        b.evicted().await;
        assert!(!b.busy());
        drop(b);
        let c = waiting.await.unwrap().expect("a place");
        assert_eq!(idle_order(&places), [c.index]);
        drop(a);
        // The slots are reused: never more than max_connections of them.
        for _ in 0..100 {
            let n = places.enter(permit(&places));
            drop(n);
        }
        assert_eq!(places.lock().slots.len(), 2);
        drop(c);
    }

    /// A request stream that says how many bytes its "socket" holds: those of the first
    /// `received` bytes the connection has not read yet.
    struct Socket {
        inner: DuplexStream,
        read: usize,
        received: usize,
    }

    impl AsyncRead for Socket {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let before = buf.filled().len();
            let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
            self.read += buf.filled().len() - before;
            poll
        }
    }

    impl Unread for Socket {
        fn unread(&self) -> Option<usize> {
            Some(self.received.saturating_sub(self.read))
        }
    }

    #[tokio::test]
    async fn shutdown_answers_what_the_socket_holds_and_reads_nothing_after_it() {
        let shared = shared();
        let requests: Vec<String> = (0..2000)
            .map(|i| format!("postfix 10.0.{}.{}", i / 256, i % 256))
            .collect();
        let refs: Vec<&str> = requests.iter().map(String::as_str).collect();
        let input = wire(&refs);
        // The socket had received 1,000 requests when the shutdown came; the rest came later.
        let received = wire(&refs[..1000]).len();
        let (mut client_requests, server_requests) = duplex(1 << 16);
        // Replies back up after 1 KiB: the connection is writing when the shutdown comes.
        let (server_replies, mut client_replies) = duplex(1024);
        client_requests.write_all(&input).await.unwrap();
        let socket = Socket {
            inner: server_requests,
            read: 0,
            received,
        };
        let s = shared.clone();
        let task =
            tokio::spawn(async move { serve_connection(socket, server_replies, &s, None).await });
        let mut first = vec![0u8; 64];
        client_replies.read_exact(&mut first).await.unwrap();
        shared.begin_shutdown();
        let mut got = first;
        client_replies.read_to_end(&mut got).await.unwrap();
        task.await.unwrap();
        assert_eq!(got, wire(&vec!["NOTFOUND "; 1000]));
    }

    #[tokio::test]
    async fn a_peer_that_takes_no_reply_for_write_timeout_is_reset() {
        let client = mta_sts_tokio::Client::builder()
            .resolvers(["127.0.0.1:9".parse().unwrap()])
            .build()
            .unwrap();
        let cfg = Arc::new(config::parse("write_timeout: 0.2").unwrap());
        let shared = Shared::new(Responder::new(client, cfg));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(1024).unwrap();
        let mut peer = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        rustix::net::sockopt::set_socket_send_buffer_size(&server, 1024).unwrap();
        let (r, w) = server.into_split();
        // 510 bytes of requests, read at once (a connection's first read takes up to 512),
        // whose 7.5 KB of replies (PERM) fill both small buffers: the connection has read
        // everything when its write waits, so a plain close would be queued behind replies the
        // peer never takes, and the peer would see nothing.
        let requests: Vec<u8> = (0..170).flat_map(|_| wire(&[""])).collect();
        peer.write_all(&requests).await.unwrap();
        serve_connection(r, w, &shared, None).await;
        let mut reset = None;
        for _ in 0..1000 {
            reset = peer.take_error().unwrap();
            if reset.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            reset.map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionReset)
        );
    }

    #[tokio::test]
    async fn shutdown_answers_received_requests_then_closes() {
        let shared = shared();
        let (client, server) = duplex(1 << 16);
        let (sr, sw) = tokio::io::split(server);
        let s = shared.clone();
        let guard = shared.enter();
        let task = tokio::spawn(async move {
            serve_connection(sr, sw, &s, None).await;
            drop(guard);
        });
        let (mut cr, mut cw) = tokio::io::split(client);
        cw.write_all(&wire(&["postfix 192.0.2.1"])).await.unwrap();
        let mut first = vec![0u8; wire(&["NOTFOUND "]).len()];
        cr.read_exact(&mut first).await.unwrap();
        assert_eq!(first, wire(&["NOTFOUND "]));
        assert_eq!(shared.live_connections(), 1);
        shared.begin_shutdown();
        // The connection closes by itself although the peer keeps its side open.
        shared.wait_idle().await;
        let mut rest = Vec::new();
        cr.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        task.await.unwrap();
        drop(cw);
    }
}
