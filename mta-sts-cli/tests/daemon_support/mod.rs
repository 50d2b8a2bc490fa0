//! Runs `mta-sts daemon` as a child process against a testkit world, and talks socketmap to it.
//!
//! Synchronisation is on the daemon's log lines (`listening on …`, `configuration reloaded`,
//! `stopped`), never on sleeps.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use mta_sts_testkit::{DnsFault, Domain, Http, World};

/// The `mta-sts` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mta-sts");

/// How long a test waits for a log line before failing (a bound, not a synchronisation).
pub const LOG_WAIT: Duration = Duration::from_secs(60);

/// The world of the end-to-end tests: one domain per kind of answer, every record with TTL 0.
pub fn world() -> World {
    world_with_ttl(0)
}

/// [`world`] with this TTL on every record: with TTL 0 a DANE state is never cached, so every
/// request looks it up again (D6), which a test of something else may not want.
pub fn world_with_ttl(ttl: u32) -> World {
    World::builder()
        .ttl(ttl)
        .domain(
            "enforce.test",
            Domain::enforce(["mx1.enforce.test", "*.pool.enforce.test"]).txt_id("1"),
        )
        .domain(
            "testing.test",
            Domain::testing(["mx.testing.test"]).txt_id("1"),
        )
        .domain("none.test", Domain::none().txt_id("1"))
        .domain("nopolicy.test", Domain::without_sts())
        .domain(
            "servfail.test",
            Domain::enforce(["mx.servfail.test"])
                .txt_id("1")
                .txt_fault(DnsFault::ServFail),
        )
        .domain(
            "httpsdown.test",
            Domain::enforce(["mx.httpsdown.test"])
                .txt_id("1")
                .http(Http::Reset),
        )
        .build()
        .expect("start the testkit world")
}

/// The reply for `enforce.test` with the default zone.
pub const ENFORCE_REPLY: &str =
    "OK secure match=mx1.enforce.test:.pool.enforce.test servername=hostname";

/// A fresh directory for one test's files.
pub fn scratch_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "daemon-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Writes `yaml` as the daemon's configuration file in `dir`.
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let config = dir.join("mta-sts-daemon.yml");
    std::fs::write(&config, yaml).expect("write the configuration");
    config
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    log: Receiver<String>,
    /// Every log line seen so far.
    pub lines: Vec<String>,
    /// The TCP address it listens on (when it listens on TCP).
    pub addr: Option<SocketAddr>,
    /// The metrics address, when the `metrics` key is set.
    pub metrics: Option<SocketAddr>,
    pub config: PathBuf,
    pub dir: PathBuf,
}

impl Daemon {
    /// Starts the daemon with `yaml` (a TCP listener on port 0 unless `yaml` says otherwise),
    /// pointed at the world by the command-line flags, and waits until it listens.
    pub fn start(world: &World, dir: &Path, yaml: &str) -> Self {
        Self::start_with(world, dir, &write_config(dir, yaml))
    }

    pub fn start_with(world: &World, dir: &Path, config: &Path) -> Self {
        let d = Self::spawn(world, dir, config);
        d.started()
    }

    /// Like [`Daemon::start`], with the daemon run by `sh -c` after `shell` (e.g. `ulimit -n 256`).
    pub fn start_after(world: &World, dir: &Path, yaml: &str, shell: &str) -> Self {
        Self::spawn_after(world, dir, &write_config(dir, yaml), Some(shell)).started()
    }

    /// Waits until the daemon listens, and notes its addresses.
    pub fn started(mut self) -> Self {
        let d = &mut self;
        let line = d
            .wait_for(|l| l.contains("listening on tcp ") || l.contains("listening on unix "))
            .unwrap_or_else(|| panic!("the daemon did not start: {:?}", d.lines));
        if let Some(addr) = line.split("listening on tcp ").nth(1) {
            d.addr = Some(addr.trim().parse().expect("a socket address"));
        }
        // The metrics line, when the listener is configured, comes before the socketmap one.
        d.metrics = d.lines.iter().find_map(|l| {
            let rest = l.split("metrics listening on http://").nth(1)?;
            rest.trim().trim_end_matches("/metrics").parse().ok()
        });
        self
    }

    /// Starts the daemon without waiting for anything.
    pub fn spawn(world: &World, dir: &Path, config: &Path) -> Self {
        Self::spawn_after(world, dir, config, None)
    }

    /// Starts the daemon, run by `sh -c` after the `shell` commands if any, without waiting.
    pub fn spawn_after(world: &World, dir: &Path, config: &Path, shell: Option<&str>) -> Self {
        Self::spawn_with(world, world.dns_addr(), dir, config, shell)
    }

    /// [`Daemon::spawn_after`] with the DNS server `resolver` (the policy hosts stay the
    /// world's: its HTTPS port and CA).
    fn spawn_with(
        world: &World,
        resolver: SocketAddr,
        dir: &Path,
        config: &Path,
        shell: Option<&str>,
    ) -> Self {
        let command = match shell {
            None => Command::new(BIN),
            Some(shell) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{shell} && exec \"$0\" \"$@\""))
                    .arg(BIN);
                c
            }
        };
        Self::spawn_in(command, world, resolver, dir, config)
    }

    /// Starts `command` with the daemon's arguments appended, without waiting: `command` is
    /// the binary ([`BIN`]), or a wrapper that runs it with those arguments (e.g. `bash -c
    /// '… exec "$0" "$@"' BIN`), with the environment the test gives it.
    pub fn spawn_command(command: Command, world: &World, dir: &Path, config: &Path) -> Self {
        Self::spawn_in(command, world, world.dns_addr(), dir, config)
    }

    fn spawn_in(
        mut command: Command,
        world: &World,
        resolver: SocketAddr,
        dir: &Path,
        config: &Path,
    ) -> Self {
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, world.ca_pem()).expect("write the CA");
        let mut child = command
            .arg("daemon")
            .arg("--config")
            .arg(config)
            .arg("--resolver")
            .arg(resolver.to_string())
            .arg("--ca-file")
            .arg(&ca)
            .arg("--https-port")
            .arg(world.https_port().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mta-sts daemon");
        let log = log_lines(child.stderr.take().expect("stderr"));
        Self {
            child,
            log,
            lines: Vec::new(),
            addr: None,
            metrics: None,
            config: config.to_path_buf(),
            dir: dir.to_path_buf(),
        }
    }

    /// Waits for a log line that satisfies `f` (at most [`LOG_WAIT`]); `None` when the daemon's
    /// log ended first.
    pub fn wait_for(&mut self, f: impl Fn(&str) -> bool) -> Option<String> {
        loop {
            match self.log.recv_timeout(LOG_WAIT) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    if f(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the daemon listens on TCP")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`HUP`, `TERM`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Rewrites the configuration, sends SIGHUP and waits until the daemon says the outcome.
    pub fn reload(&mut self, yaml: &str) -> String {
        std::fs::write(&self.config, yaml).expect("write the configuration");
        self.signal("HUP");
        self.wait_for(|l| l.contains("configuration reloaded") || l.contains("reload failed"))
            .unwrap_or_else(|| panic!("no reload outcome in {:?}", self.lines))
    }

    /// Waits for the process to end and returns its status and the rest of its log.
    pub fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.wait().expect("wait for the daemon");
        while let Ok(line) = self.log.recv_timeout(LOG_WAIT) {
            self.lines.push(line);
        }
        let lines = std::mem::take(&mut self.lines);
        (status, lines)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of a child's log, read by a thread of their own until it ends.
pub fn log_lines(log: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(log).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Frames a request.
pub fn netstring(data: &str) -> Vec<u8> {
    let mut out = format!("{}:", data.len()).into_bytes();
    out.extend_from_slice(data.as_bytes());
    out.push(b',');
    out
}

/// Reads one netstring reply (panics on a malformed one or an early end).
pub fn read_reply(r: &mut impl Read) -> String {
    try_read_reply(r).expect("a reply")
}

/// Reads one netstring reply; `None` at the end of the stream.
pub fn try_read_reply(r: &mut impl Read) -> Option<String> {
    let mut len = 0usize;
    let mut byte = [0u8; 1];
    let mut first = true;
    loop {
        if r.read(&mut byte).ok()? == 0 {
            assert!(first, "the stream ended inside a netstring length");
            return None;
        }
        first = false;
        match byte[0] {
            b'0'..=b'9' => len = len * 10 + usize::from(byte[0] - b'0'),
            b':' => break,
            b => panic!("unexpected byte {b:#x} in a netstring length"),
        }
    }
    let mut data = vec![0u8; len + 1];
    r.read_exact(&mut data).expect("netstring data");
    assert_eq!(data.pop(), Some(b','), "netstring terminator");
    Some(String::from_utf8(data).expect("a UTF-8 reply"))
}

/// Sends every request at once (pipelined) on one connection and reads the replies in order.
pub fn ask_stream<S: Read + Write>(mut s: S, requests: &[&str]) -> Vec<String> {
    let mut wire = Vec::new();
    for r in requests {
        wire.extend(netstring(r));
    }
    s.write_all(&wire).expect("send the requests");
    requests.iter().map(|_| read_reply(&mut s)).collect()
}

/// Asks over TCP.
pub fn ask(addr: SocketAddr, requests: &[&str]) -> Vec<String> {
    let s = TcpStream::connect(addr).expect("connect to the daemon");
    s.set_read_timeout(Some(LOG_WAIT)).unwrap();
    ask_stream(s, requests)
}

/// Asks over a unix socket.
pub fn ask_unix(path: &Path, requests: &[&str]) -> Vec<String> {
    let s = UnixStream::connect(path).expect("connect to the daemon's socket");
    s.set_read_timeout(Some(LOG_WAIT)).unwrap();
    ask_stream(s, requests)
}

/// One request, one reply.
pub fn ask_one(addr: SocketAddr, request: &str) -> String {
    ask(addr, &[request]).remove(0)
}

/// Raises this process's soft limit on open files to at least `need` (raising the hard limit
/// too when it is lower and this process may, as root can), and returns the soft limit now in
/// force. Panics, saying what to do, when `need` cannot be had: a load test never passes
/// without doing its work.
pub fn raise_fd_limit(need: u64) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let soft = now.current.unwrap_or(u64::MAX);
    if soft >= need {
        return soft;
    }
    let hard = now.maximum.unwrap_or(u64::MAX);
    let want = Rlimit {
        current: Some(need),
        maximum: Some(hard.max(need)),
    };
    if let Err(e) = setrlimit(Resource::Nofile, want) {
        panic!(
            "this test needs {need} open files, the limit is {soft} (hard {hard}) and cannot \
             be raised ({e}): run it with `ulimit -n {need}` or more"
        );
    }
    need
}

/// The resident memory of a process, in KiB (`VmRSS` of /proc/<pid>/status).
pub fn vm_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS")
}

/// A memory figure of /proc/<pid>/status, in KiB (`VmRSS`, `VmHWM`, the peak, …).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Polls `f` until it holds, failing with `what` after `limit` (a bound, not a
/// synchronisation: the condition is what is waited for).
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The value of a metric without labels from the daemon's `/metrics` listener.
pub fn metric(metrics: SocketAddr, name: &str) -> Option<f64> {
    let mut s = TcpStream::connect(metrics).expect("connect to /metrics");
    s.set_read_timeout(Some(LOG_WAIT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("ask for /metrics");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read /metrics");
    body.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// Waits until the peer closes `s` (end of stream or reset), without reading what it sent:
/// how long that took, or `None` when it was still open after `limit` (a bound, not a
/// synchronisation: the close is what is waited for).
pub fn wait_closed_unread(s: &TcpStream, limit: Duration) -> Option<Duration> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let start = std::time::Instant::now();
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        let timeout = Timespec::try_from(left).expect("a timeout");
        // Not POLLIN: unread replies must not end the wait, only the close (POLLRDHUP for an
        // end of stream; POLLHUP and POLLERR, always reported, for a reset).
        let mut fds = [PollFd::new(s, PollFlags::RDHUP)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return None,
            Ok(_) if !fds[0].revents().is_empty() => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// A TLSA association that is well formed and usable (DANE-EE, SPKI, SHA-256), whatever
/// certificate the MX presents: the daemon's answers depend on the DNS, not on a handshake.
pub const USABLE_TLSA: (u8, u8, u8) = (3, 1, 1);
/// A TLSA association that is authenticated but unusable for SMTP (PKIX-EE, RFC 7672 §3.1.3).
pub const UNUSABLE_TLSA: (u8, u8, u8) = (1, 1, 1);

/// Publishes the TLSA record `(usage, selector, matching type)` of `host`.
pub fn publish_tlsa(world: &World, host: &str, (usage, selector, matching_type): (u8, u8, u8)) {
    world
        .publish_mx_tlsa(host, usage, selector, matching_type)
        .expect("publish a TLSA record");
}

/// The world of the DANE end-to-end tests: one domain per DANE state, every policy in mode
/// `enforce` unless said otherwise (so that the MTA-STS answer, `OK secure …`, is told apart
/// from every DANE answer). The DNS TTL is 0: no DANE state is cached.
///
/// | domain | zone | TLSA | DANE state |
/// |---|---|---|---|
/// | `mandatory.test` | signed | usable on its MX | mandatory |
/// | `opportunistic.test` | signed | usable on `mx1`, none on `mx2` | opportunistic |
/// | `bogustlsa.test` | signed | usable, but its TLSA answer is bogus | indeterminate |
/// | `mxservfail.test` | signed | usable, but its MX answer is SERVFAIL | indeterminate |
/// | `unusable.test` (no MTA-STS) | signed | unusable only | unusable-only |
/// | `unusabletesting.test` (`testing`) | signed | unusable only | unusable-only |
/// | `unusableenforce.test` | signed | unusable only | unusable-only |
/// | `unsigned.test` | unsigned | usable (not authenticated) | absent |
/// | `signednotlsa.test` | signed | none | absent |
/// | `signednopolicy.test` (no MTA-STS) | signed | none | absent |
pub fn dane_world() -> World {
    let signed = [
        "mandatory.test",
        "opportunistic.test",
        "bogustlsa.test",
        "mxservfail.test",
        "unusable.test",
        "unusabletesting.test",
        "unusableenforce.test",
        "signednotlsa.test",
        "signednopolicy.test",
    ];
    let mut b = World::builder()
        .ttl(0)
        .domain(
            "mandatory.test",
            Domain::enforce(["mx.mandatory.test"]).txt_id("1"),
        )
        .domain(
            "opportunistic.test",
            Domain::enforce(["mx1.opportunistic.test", "mx2.opportunistic.test"]).txt_id("1"),
        )
        .domain(
            "bogustlsa.test",
            Domain::enforce(["mx.bogustlsa.test"]).txt_id("1"),
        )
        .dns_fault(
            &mta_sts_testkit::tlsa_name("mx.bogustlsa.test"),
            Some(mta_sts_testkit::RecordType::Tlsa),
            DnsFault::Bogus,
        )
        .domain(
            "mxservfail.test",
            Domain::enforce(["mx.mxservfail.test"]).txt_id("1"),
        )
        .dns_fault(
            "mxservfail.test",
            Some(mta_sts_testkit::RecordType::Mx),
            DnsFault::ServFail,
        )
        .domain(
            "unusable.test",
            Domain::without_sts().mx_records([(10, "mx.unusable.test")]),
        )
        .domain(
            "unusabletesting.test",
            Domain::testing(["mx.unusabletesting.test"]).txt_id("1"),
        )
        .domain(
            "unusableenforce.test",
            Domain::enforce(["mx.unusableenforce.test"]).txt_id("1"),
        )
        .domain(
            "unsigned.test",
            Domain::enforce(["mx.unsigned.test"]).txt_id("1"),
        )
        .domain(
            "signednotlsa.test",
            Domain::enforce(["mx.signednotlsa.test"]).txt_id("1"),
        )
        .domain(
            "signednopolicy.test",
            Domain::without_sts().mx_records([(10, "mx.signednopolicy.test")]),
        );
    for zone in signed {
        b = b.signed_zone(zone);
    }
    let world = b.build().expect("start the testkit world");
    for host in [
        "mx.mandatory.test",
        "mx1.opportunistic.test",
        "mx.bogustlsa.test",
        "mx.mxservfail.test",
        "mx.unsigned.test",
    ] {
        publish_tlsa(&world, host, USABLE_TLSA);
    }
    for host in [
        "mx.unusable.test",
        "mx.unusabletesting.test",
        "mx.unusableenforce.test",
    ] {
        publish_tlsa(&world, host, UNUSABLE_TLSA);
    }
    world
}

/// The MTA-STS answer (default zone) for a domain of [`dane_world`] whose policy is `enforce`
/// with the single MX host `mx.<domain>`.
pub fn secure_reply(domain: &str) -> String {
    format!("OK secure match=mx.{domain} servername=hostname")
}

impl Daemon {
    /// Like [`Daemon::start`], with the DNS server `resolver` instead of the world's (the
    /// policy hosts are still the world's: its HTTPS port and CA).
    pub fn start_with_resolver(
        world: &World,
        resolver: SocketAddr,
        dir: &Path,
        yaml: &str,
    ) -> Self {
        Self::spawn_with(world, resolver, dir, &write_config(dir, yaml), None).started()
    }
}

// Postfix's own socketmap client, `postmap -q` (Debian package postfix).

/// Whether `postmap` can be run.
pub fn postmap_available() -> bool {
    Command::new("postmap")
        .arg("-c")
        .arg("/nonexistent")
        .output()
        .is_ok()
}

/// `postmap -q KEY socketmap:inet:ADDR:NAME`, with a configuration directory of its own (an
/// empty main.cf) so that no Postfix set-up is needed.
pub fn postmap(conf: &Path, addr: SocketAddr, name: &str, key: &str) -> std::process::Output {
    Command::new("postmap")
        .arg("-c")
        .arg(conf)
        .arg("-q")
        .arg(key)
        .arg(format!("socketmap:inet:{addr}:{name}"))
        .output()
        .expect("run postmap")
}

/// `true` when postmap is installed; otherwise skips (`false`), or fails when
/// `MTA_STS_REQUIRE_POSTMAP=1` or under CI.
pub fn postmap_or_skip() -> bool {
    if postmap_available() {
        return true;
    }
    assert!(
        !mta_sts_testkit::must_not_skip("MTA_STS_REQUIRE_POSTMAP"),
        "postmap is missing and MTA_STS_REQUIRE_POSTMAP=1 (or CI): install Debian's postfix package"
    );
    eprintln!("skipped: postmap (Debian package postfix) is not installed");
    false
}

/// A directory for postmap's configuration (an empty main.cf) under `dir`.
pub fn postfix_conf(dir: &Path) -> PathBuf {
    let conf = dir.join("postfix");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("main.cf"), "").unwrap();
    conf
}
