//! A `redis-server` (and `redis-sentinel`) of a test's own on a free loopback port, killed on
//! drop.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How often a server is asked for PONG before it counts as not started (about 10 s).
const PING_ATTEMPTS: u32 = 200;
const PING_INTERVAL: Duration = Duration::from_millis(50);

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mta-sts-store-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True when `redis-server` and `redis-sentinel` can be run; otherwise false after saying the
/// test is skipped, or a panic when `MTA_STS_REQUIRE_REDIS=1` (or CI) forbids skipping.
pub fn redis_or_skip(test: &str) -> bool {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if have("redis-server") && have("redis-sentinel") {
        return true;
    }
    if mta_sts_testkit::must_not_skip("MTA_STS_REQUIRE_REDIS") {
        panic!(
            "{test}: redis-server or redis-sentinel missing, and MTA_STS_REQUIRE_REDIS=1 (or CI)"
        );
    }
    eprintln!("\n** SKIPPED {test}: redis-server or redis-sentinel not installed.\n");
    false
}

/// A free loopback port: bound, then released (the server binds it next; a race is retried).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Sends `command` (inline form) to the server on `port`, returns its first reply line.
pub fn ask(port: u16, command: &str) -> Option<String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(&mut s).read_line(&mut line).ok()?;
    Some(line.trim_end().to_owned())
}

/// Polls `port` with PING (bounded attempts) while `child` runs; true on PONG (or NOAUTH: a
/// server with a password answers too).
fn wait_pong(child: &mut Child, port: u16) -> bool {
    for _ in 0..PING_ATTEMPTS {
        if ask(port, "PING").is_some_and(|r| r == "+PONG" || r.starts_with("-NOAUTH")) {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(PING_INTERVAL);
    }
    false
}

fn log_of(child: &mut Child) -> String {
    let mut out = String::new();
    if let Some(mut e) = child.stdout.take() {
        let _ = e.read_to_string(&mut out);
    }
    out
}

/// Polls `ready` (bounded attempts, about 10 s) until it holds; panics naming `what` if never.
pub fn poll_until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..PING_ATTEMPTS {
        if ready() {
            return;
        }
        std::thread::sleep(PING_INTERVAL);
    }
    panic!("{what}: not within {PING_ATTEMPTS} polls");
}

/// A running `redis-server` of this test.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl RedisServer {
    /// Starts one on a free port (a few tries if another process takes the port first).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A replica of `master`.
    pub fn replica_of(master: &Self) -> Self {
        Self::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()])
    }

    /// Starts one with `extra` arguments (`--requirepass`, …).
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = TempDir::new("redis");
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn_server(port, dir.path(), extra) {
                return Self {
                    child: Some(child),
                    port,
                    dir,
                };
            }
        }
        panic!("redis-server did not start on a free port in 5 tries");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to the clients) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to the server: a stopped server accepts connections
    /// (the kernel does) and answers nothing.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pid}");
    }

    /// Starts it again on the same port (empty: nothing is saved).
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..PING_ATTEMPTS {
            if let Some(child) = spawn_server(self.port, self.dir.path(), &[]) {
                self.child = Some(child);
                return;
            }
            std::thread::sleep(PING_INTERVAL);
        }
        panic!("redis-server did not start again on port {}", self.port);
    }

    /// `redis-cli`-free raw command with binary arguments (RESP array); the reply's first line.
    pub fn raw(&self, args: &[&[u8]]) -> String {
        command(self.port, args, false)
    }

    /// `args` as a command; the whole reply, its lines joined with `\n`.
    pub fn reply(&self, args: &[&str]) -> String {
        reply(self.port, args)
    }
}

/// `args` as a command to the server on `port`; the whole reply, its lines joined with `\n`.
pub fn reply(port: u16, args: &[&str]) -> String {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    command(port, &args, true)
}

/// Sends `args` to `port`; the reply's first line, or all of it (`whole`).
fn command(port: u16, args: &[&[u8]], whole: bool) -> String {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    s.write_all(&req).unwrap();
    let mut r = BufReader::new(&mut s);
    let mut out = Vec::new();
    read_reply(&mut r, &mut out, whole);
    out.join("\n")
}

/// One RESP2 reply into `out`, a line per simple value (arrays and bulk strings recursed).
fn read_reply(r: &mut impl BufRead, out: &mut Vec<String>, whole: bool) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let line = line.trim_end().to_owned();
    if !whole {
        out.push(line);
        return;
    }
    let n: i64 = line.get(1..).and_then(|n| n.parse().ok()).unwrap_or(-1);
    match line.as_bytes().first() {
        Some(b'*') => (0..n.max(0)).for_each(|_| read_reply(r, out, true)),
        Some(b'$') if n >= 0 => {
            let mut buf = vec![0u8; usize::try_from(n).unwrap() + 2];
            r.read_exact(&mut buf).unwrap();
            buf.truncate(buf.len() - 2);
            out.push(String::from_utf8_lossy(&buf).into_owned());
        }
        _ => out.push(line),
    }
}

fn spawn_server(port: u16, dir: &Path, extra: &[&str]) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        // A replica is served at once (the default waits 5 s for more replicas to share a sync).
        .args(["--repl-diskless-sync-delay", "0"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    if wait_pong(&mut child, port) {
        // Its log is not read again: discard it so that a full pipe never blocks it.
        drop(child.stdout.take());
        return Some(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = log_of(&mut child);
    eprintln!("redis-server on {port} did not answer PING: {log}");
    None
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-sentinel` watching `master` under the name `mymaster` (down after 500 ms, quorum 1:
/// it fails over alone).
#[derive(Debug)]
pub struct Sentinel {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Sentinel {
    pub const MASTER_NAME: &'static str = "mymaster";

    pub fn start(master: &RedisServer) -> Self {
        Self::start_with(master, "")
    }

    /// One that monitors a master with `requirepass` (`auth-pass`), if not empty.
    pub fn start_with(master: &RedisServer, auth_pass: &str) -> Self {
        let dir = TempDir::new("sentinel");
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {name} 127.0.0.1 {} 1\n\
                     sentinel down-after-milliseconds {name} 500\n{auth}",
                    dir.path().display(),
                    master.port(),
                    name = Self::MASTER_NAME,
                    auth = if auth_pass.is_empty() {
                        String::new()
                    } else {
                        format!("sentinel auth-pass {} {auth_pass}\n", Self::MASTER_NAME)
                    },
                ),
            )
            .unwrap();
            let mut child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-sentinel");
            if wait_pong(&mut child, port) {
                return Self {
                    child,
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-sentinel did not start on a free port in 5 tries");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
