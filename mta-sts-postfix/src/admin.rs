//! The admin socket (S10): the operator's cache tools (`mta-sts cache … --socket`) on the
//! running daemon, through a unix socket of its own, never the socketmap one.
//!
//! Access is the socket file's permissions: it is created in a private directory beside its path
//! with its mode (0600, or 0660 with a group) and group set, then renamed into place, so that it
//! is never reachable with other permissions. Its directory must exist and must not be
//! world-writable without the sticky bit (anyone could replace the socket); a socket file left
//! by a daemon that stopped is replaced only when nothing listens on it.
//!
//! The protocol: one JSON object per line (at most [`MAX_REQUEST`] bytes), one JSON object per
//! line back. `{"op":"list"}` (optional `"limit"`), `{"op":"show","domain":D}`,
//! `{"op":"purge","domain":D}` or `{"op":"purge","all":true}`, `{"op":"refresh","domain":D}`,
//! `{"op":"ping"}`. A reply has `"ok": true` and the operation's fields, or `"ok": false` and
//! `"error": {"kind", "message"}`, the kind one of `too_large`, `bad_json`, `bad_request`,
//! `unknown_op`, `bad_domain`, `busy`. An entry is `{"domain", "id", "fetched"` (Unix seconds)`,
//! "policy"` (its text)`, "source"` (`memory` or `store`)`}`.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mta_sts_core::{Outcome, PolicyDomain};
use mta_sts_net::CacheEntry;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};

use crate::config::AdminSocket;
use crate::server::Shared;

/// The longest request line, in bytes (without its newline).
pub(crate) const MAX_REQUEST: usize = 4096;

/// The most admin connections served at once; one more is told `busy` and closed.
pub(crate) const MAX_CONNECTIONS: usize = 4;

/// The most entries `list` returns from memory and from the store each.
const MAX_LIST: usize = 100_000;

/// A connection with no request for this long is closed.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A reply not taken within this long closes the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The admin socket, serving.
#[derive(Debug)]
pub(crate) struct AdminServer {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    path: PathBuf,
    /// The socket file's device and inode: removed on stop only if it is still this one.
    id: Option<(u64, u64)>,
}

impl AdminServer {
    /// Creates the socket (see the module's docs) and starts serving it with the client in force.
    pub(crate) fn start(cfg: &AdminSocket, shared: Arc<Shared>) -> io::Result<Self> {
        let listener = bind(cfg)?;
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        let id = std::fs::symlink_metadata(&cfg.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared, stop_rx));
        Ok(Self {
            stop,
            task,
            path: cfg.path.clone(),
            id,
        })
    }

    /// The socket file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting and removes the socket file (unless another has replaced it).
    pub(crate) async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && Some((m.dev(), m.ino())) == self.id
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn refuse(kind: io::ErrorKind, message: String) -> io::Error {
    io::Error::new(kind, message)
}

/// Creates the socket at `cfg.path` with its mode and group, in a private directory beside it,
/// renamed into place.
fn bind(cfg: &AdminSocket) -> io::Result<std::os::unix::net::UnixListener> {
    let path = &cfg.path;
    let (Some(parent), Some(name)) = (
        path.parent().filter(|p| !p.as_os_str().is_empty()),
        path.file_name(),
    ) else {
        return Err(refuse(
            io::ErrorKind::InvalidInput,
            format!("{} is not a path to a file", path.display()),
        ));
    };
    let dir = std::fs::metadata(parent).map_err(|e| {
        refuse(
            e.kind(),
            format!(
                "{}: {e} (create the directory, e.g. with systemd's RuntimeDirectory=)",
                parent.display()
            ),
        )
    })?;
    if !dir.is_dir() {
        return Err(refuse(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", parent.display()),
        ));
    }
    if dir.mode() & 0o002 != 0 && dir.mode() & 0o1000 == 0 {
        return Err(refuse(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is writable by everyone without the sticky bit: anyone could replace the \
                 admin socket; use a directory of the daemon's own",
                parent.display()
            ),
        ));
    }
    let gid = cfg.group.as_deref().map(group_id).transpose()?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(refuse(
                        io::ErrorKind::AddrInUse,
                        format!("another process listens on {}", path.display()),
                    ));
                }
                // Nothing listens: a socket left behind, replaced below.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => {
                    return Err(refuse(
                        e.kind(),
                        format!("{}: cannot tell whether it is in use: {e}", path.display()),
                    ));
                }
            }
        }
        Ok(_) => {
            return Err(refuse(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse(e.kind(), format!("{}: {e}", path.display()))),
    }
    // Bound, given its mode and group, and renamed into place: never reachable otherwise.
    let private = parent.join(format!(
        ".{}.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| refuse(e.kind(), format!("{}: {e}", private.display())))?;
    let socket = private.join("s");
    let made = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&socket)?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(cfg.mode))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&socket, None, Some(gid))?;
        }
        std::fs::rename(&socket, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_dir(&private);
    made.map_err(|e: io::Error| refuse(e.kind(), format!("{}: {e}", path.display())))
}

/// The id of `group`: a number, or a name from /etc/group.
fn group_id(group: &str) -> io::Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group")?;
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| {
            refuse(
                io::ErrorKind::NotFound,
                format!("admin_socket_group: no group {group:?} in /etc/group"),
            )
        })
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => match Arc::clone(&permits).try_acquire_owned() {
                Ok(permit) => {
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let connection = serve(stream, &shared).await;
                        // The place is free before the peer sees the connection close.
                        drop(permit);
                        drop(connection);
                    });
                }
                Err(_) => {
                    // Told without waiting for the peer, and closed.
                    let mut line = error(
                        "busy",
                        format!("{MAX_CONNECTIONS} admin connections are open already; try again"),
                    )
                    .to_string();
                    line.push('\n');
                    let _ = stream.try_write(line.as_bytes());
                }
            },
            Err(e) => {
                tracing::warn!("admin socket: cannot accept a connection: {e}");
                // Out of files, most likely: give the others time to close some.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers the requests of one connection, one per line, until it closes, sends a line that is
/// too long, or is idle for [`READ_TIMEOUT`]; returns the connection, to be closed.
async fn serve(stream: UnixStream, shared: &Shared) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = Vec::new();
        let limit = MAX_REQUEST as u64 + 1;
        let read = tokio::time::timeout(
            READ_TIMEOUT,
            (&mut r).take(limit).read_until(b'\n', &mut line),
        )
        .await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
        }
        let too_large = !complete && line.len() > MAX_REQUEST;
        let reply = if too_large {
            error(
                "too_large",
                format!("a request is one line of at most {MAX_REQUEST} bytes"),
            )
        } else {
            answer(&line, shared).await
        };
        let mut out = reply.to_string().into_bytes();
        out.push(b'\n');
        match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(&out)).await {
            Ok(Ok(())) if !too_large => {}
            // After a line too long there is no telling where the next request starts.
            _ => break,
        }
    }
    (r, w)
}

fn error(kind: &str, message: impl Into<String>) -> Value {
    json!({"ok": false, "error": {"kind": kind, "message": message.into()}})
}

fn entry_json(e: &CacheEntry) -> Value {
    json!({
        "domain": e.domain,
        "id": e.id,
        "fetched": e.fetched_at.as_secs(),
        "policy": e.policy,
        "source": e.source.as_str(),
    })
}

/// Whether two entries are the same policy fetch (then the store's is not listed again).
fn same(a: &CacheEntry, b: &CacheEntry) -> bool {
    a.domain == b.domain && a.id == b.id && a.fetched_at == b.fetched_at
}

/// The request's `domain`, as a policy domain.
fn domain(request: &serde_json::Map<String, Value>) -> Result<PolicyDomain, Value> {
    let Some(d) = request.get("domain").and_then(Value::as_str) else {
        return Err(error("bad_request", "this op needs a \"domain\" string"));
    };
    PolicyDomain::parse(d).map_err(|e| {
        let shown: String = d.chars().take(80).collect();
        error("bad_domain", format!("{shown:?}: {e}"))
    })
}

async fn answer(line: &[u8], shared: &Shared) -> Value {
    let request: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return error("bad_json", format!("not JSON: {e}")),
    };
    let Some(request) = request.as_object() else {
        return error("bad_request", "a request is a JSON object with an \"op\"");
    };
    let Some(op) = request.get("op").and_then(Value::as_str) else {
        return error("bad_request", "a request needs an \"op\" string");
    };
    let client = shared.current().client().clone();
    let reply = match op {
        "ping" => json!({"ok": true}),
        "list" => {
            let limit = request
                .get("limit")
                .and_then(Value::as_u64)
                .map_or(MAX_LIST, |n| usize::try_from(n).unwrap_or(MAX_LIST))
                .min(MAX_LIST);
            let memory = client.cached_entries(limit);
            let mut entries: Vec<Value> = memory.iter().map(entry_json).collect();
            let mut store_error = None;
            match client.stored_entries(limit).await {
                None => {}
                Some(Ok(stored)) => entries.extend(
                    stored
                        .iter()
                        .filter(|s| !memory.iter().any(|m| same(m, s)))
                        .map(entry_json),
                ),
                Some(Err(e)) => store_error = Some(e.to_string()),
            }
            json!({"ok": true, "entries": entries, "store": client.has_store(),
                   "store_error": store_error})
        }
        "show" => {
            let d = match domain(request) {
                Ok(d) => d,
                Err(e) => return e,
            };
            let memory = client.cached_entry(d.as_str());
            let mut entries: Vec<Value> = memory.iter().map(entry_json).collect();
            let mut store_error = None;
            match client.stored_entry(d.as_str()).await {
                Some(Ok(Some(s))) if !memory.as_ref().is_some_and(|m| same(m, &s)) => {
                    entries.push(entry_json(&s));
                }
                Some(Err(e)) => store_error = Some(e.to_string()),
                _ => {}
            }
            json!({"ok": true, "domain": d.as_str(), "entries": entries,
                   "store": client.has_store(), "store_error": store_error})
        }
        "purge" => {
            let purged = if request.get("all") == Some(&Value::Bool(true)) {
                client.purge_all().await
            } else {
                match domain(request) {
                    Ok(d) => client.purge(d.as_str()).await,
                    Err(e) => return e,
                }
            };
            let (store, store_error) = match purged.store {
                None => (None, None),
                Some(Ok(n)) => (Some(n), None),
                Some(Err(e)) => (None, Some(e.to_string())),
            };
            json!({"ok": true, "memory": purged.memory, "store": store,
                   "store_error": store_error})
        }
        "refresh" => {
            let d = match domain(request) {
                Ok(d) => d,
                Err(e) => return e,
            };
            let previous = client.cached_entry(d.as_str());
            let outcome = client.refresh_now(d.as_str()).await;
            let entry = client.cached_entry(d.as_str());
            json!({
                "ok": true,
                "domain": d.as_str(),
                "fetched": matches!(outcome, Outcome::Fetched(_)),
                "kind": outcome_kind(&outcome),
                "outcome": outcome.to_string(),
                "entry": entry.as_ref().map(entry_json),
                "previous": previous.as_ref().map(entry_json),
            })
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return error(
                "unknown_op",
                format!("unknown op {shown:?}: list, show, purge, refresh or ping"),
            );
        }
    };
    let target = request.get("domain").and_then(Value::as_str).unwrap_or("");
    tracing::info!(op, domain = target, "admin socket request");
    reply
}

/// `policy`, `temporary-failure`, `internal-error` or `no-policy`, as `mta-sts query` says.
fn outcome_kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Fetched(_) | Outcome::Cached { .. } => "policy",
        Outcome::TemporaryFailure(_) | Outcome::StoreUnavailable(_) => "temporary-failure",
        Outcome::Internal(_) => "internal-error",
        _ => "no-policy",
    }
}
