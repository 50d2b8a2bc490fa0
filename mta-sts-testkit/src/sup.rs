//! Thread and connection supervision: every thread the world starts is counted and joined at
//! shutdown; every open TCP connection is registered so that shutdown can close it, which
//! wakes whatever thread is blocked on it.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::state::lock;

/// A handle on the number of threads of a world that are still running.
///
/// Obtained from [`World::threads`](crate::World::threads); it stays usable after the world is
/// dropped, so a test can check that dropping the world stopped every thread:
///
/// ```
/// let world = mta_sts_testkit::World::builder().build()?;
/// let threads = world.threads();
/// assert!(threads.live() > 0);
/// drop(world);
/// assert_eq!(threads.live(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Threads(Arc<AtomicUsize>);

impl Threads {
    /// How many of the world's threads are running now.
    pub fn live(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    stalled: bool,
    released: bool,
}

#[derive(Debug, Default)]
struct Inner {
    closed: bool,
    next_id: u64,
    conns: HashMap<u64, Conn>,
    handles: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
pub(crate) struct Supervisor {
    inner: Mutex<Inner>,
    slot_freed: Condvar,
    live: Threads,
    max_conns: usize,
}

impl Supervisor {
    pub(crate) fn new(max_conns: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            slot_freed: Condvar::new(),
            live: Threads::default(),
            max_conns: max_conns.max(1),
        }
    }

    pub(crate) fn threads(&self) -> Threads {
        self.live.clone()
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.inner).closed
    }

    /// Starts a supervised thread, unless the world is shutting down.
    pub(crate) fn spawn<F>(&self, name: &str, f: F) -> io::Result<()>
    where
        F: FnOnce() + Send + 'static,
    {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return Err(io::Error::other("world is shutting down"));
        }
        // Finished threads are joined, not dropped: a thread whose function has returned may
        // still be exiting, and a dropped handle would leave it detached, so that it could
        // outlive the world (`join_all` would not see it). Joining a finished thread returns
        // at once.
        let (finished, running): (Vec<_>, Vec<_>) = std::mem::take(&mut inner.handles)
            .into_iter()
            .partition(JoinHandle::is_finished);
        inner.handles = running;
        for h in finished {
            let _ = h.join();
        }
        self.live.0.fetch_add(1, Ordering::SeqCst);
        let guard = LiveGuard(self.live.0.clone());
        let handle = std::thread::Builder::new()
            .name(format!("mta-sts-testkit-{name}"))
            .spawn(move || {
                let _guard = guard;
                f();
            })?;
        inner.handles.push(handle);
        Ok(())
    }

    /// Registers a connection, waiting while `max_conns` are open. `None` when shutting down
    /// (the stream is then closed).
    pub(crate) fn register(self: &Arc<Self>, stream: &TcpStream) -> Option<ConnGuard> {
        let clone = stream.try_clone().ok()?;
        let mut inner = lock(&self.inner);
        while !inner.closed && inner.conns.len() >= self.max_conns {
            inner = self
                .slot_freed
                .wait(inner)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if inner.closed {
            let _ = stream.shutdown(Shutdown::Both);
            return None;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.conns.insert(
            id,
            Conn {
                stream: clone,
                stalled: false,
                released: false,
            },
        );
        Some(ConnGuard {
            sup: Arc::clone(self),
            id,
        })
    }

    /// Accepts connections until the world closes; each one is registered and served by
    /// `serve` on its own supervised thread.
    pub(crate) fn accept_loop<F>(self: &Arc<Self>, listener: &TcpListener, name: &str, serve: F)
    where
        F: Fn(TcpStream, ConnGuard) + Clone + Send + 'static,
    {
        for conn in listener.incoming() {
            if self.is_closed() {
                break;
            }
            let Ok(stream) = conn else { continue };
            let Some(guard) = self.register(&stream) else {
                break;
            };
            let serve = serve.clone();
            let _ = self.spawn(name, move || serve(stream, guard));
        }
    }

    /// Wakes every connection stalled now; returns how many.
    pub(crate) fn release_stalls(&self) -> usize {
        let mut inner = lock(&self.inner);
        let mut n = 0;
        for c in inner.conns.values_mut() {
            if c.stalled && !c.released {
                c.released = true;
                let _ = c.stream.shutdown(Shutdown::Read);
                n += 1;
            }
        }
        n
    }

    /// How many connections are stalled now (and not yet released).
    pub(crate) fn stalled(&self) -> usize {
        lock(&self.inner)
            .conns
            .values()
            .filter(|c| c.stalled && !c.released)
            .count()
    }

    /// Stops accepting new threads and connections and closes every open connection.
    pub(crate) fn close(&self) {
        let mut inner = lock(&self.inner);
        inner.closed = true;
        for c in inner.conns.values() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        drop(inner);
        self.slot_freed.notify_all();
    }

    /// Joins every thread. Call after [`close`](Self::close) and after waking the listeners.
    pub(crate) fn join_all(&self) {
        // Threads that are still running may spawn none (closed), so this ends once the
        // handles taken are joined; the bound is only a guard against a logic error.
        for _ in 0..1024 {
            let handles = std::mem::take(&mut lock(&self.inner).handles);
            if handles.is_empty() {
                return;
            }
            for h in handles {
                let _ = h.join();
            }
        }
    }
}

/// A registered connection; unregisters on drop.
#[derive(Debug)]
pub(crate) struct ConnGuard {
    sup: Arc<Supervisor>,
    id: u64,
}

impl ConnGuard {
    /// Marks the connection as stalled, so that `release_stalls` wakes it.
    pub(crate) fn set_stalled(&self) {
        if let Some(c) = lock(&self.sup.inner).conns.get_mut(&self.id) {
            c.stalled = true;
        }
    }

    /// Whether `release_stalls` released this connection.
    pub(crate) fn released(&self) -> bool {
        lock(&self.sup.inner)
            .conns
            .get(&self.id)
            .is_some_and(|c| c.released)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        lock(&self.sup.inner).conns.remove(&self.id);
        self.sup.slot_freed.notify_one();
    }
}
