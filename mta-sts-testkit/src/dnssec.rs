//! A real validating DNS stack on loopback, for end-to-end DANE tests: zones signed with
//! ldnsutils' `ldns-signzone`, served by NLnet Labs' `nsd` (authoritative) and validated by
//! `unbound` under trust anchors the harness writes.
//!
//! [`ValidatingStack::start`] takes the zones ([`Zone`]: a name, whether it is signed, broken
//! (bogus) or unsigned, and its records as zone-file lines), and in a fresh scratch directory:
//!
//! 1. writes each zone file (with an SOA, an NS `ns.<zone>` and its A `127.0.0.1`);
//! 2. for a signed or bogus zone, makes one ECDSA P-256 key (`ldns-keygen -k`, used as a
//!    combined signing key) and signs the zone with `ldns-signzone`; a bogus zone is signed
//!    with a validity period in the past (January 2000), so every signature is expired and a
//!    validator finds the zone bogus (RFC 4035 §5.3.1);
//! 3. starts `nsd` on `127.0.0.1` on a free port serving every zone, and `unbound` on another
//!    free loopback port with a `stub-zone` per zone pointing at nsd, `do-not-query-localhost:
//!    no`, and a `trust-anchor-file` holding the DNSKEY of every signed and bogus zone. An
//!    unsigned zone has no trust anchor above it, so unbound answers it as insecure (no AD)
//!    rather than failing. Every other name is refused by unbound (`local-zone: "." refuse`)
//!    and its outgoing queries leave from 127.0.0.1 only: nothing is sent beyond loopback;
//! 4. waits for each server by polling it with a query (no fixed sleeps).
//!
//! Both servers run as the current user, in the foreground, each in its own process group,
//! for as long as the [`ValidatingStack`] lives: dropping it stops them (SIGTERM to the group,
//! SIGKILL after 5 s) and removes the scratch directory.
//!
//! The tools come from Debian's `nsd`, `unbound` and `ldnsutils` packages. Tests call
//! [`tools_or_skip`]: when a tool is missing the test is skipped with a loud message, or fails
//! when the environment variable [`REQUIRE_TOOLS_ENV`] is `1` (as in CI).
//!
//! ```no_run
//! use mta_sts_testkit::dnssec::{ValidatingStack, Zone};
//!
//! let stack = ValidatingStack::start([
//!     Zone::signed("signed.test")
//!         .record("@ MX 10 mx")
//!         .record("mx A 127.0.0.1")
//!         .record("_25._tcp.mx TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
//!     Zone::unsigned("plain.test").record("@ MX 10 mx").record("mx A 127.0.0.1"),
//!     Zone::bogus("bogus.test").record("@ MX 10 mx"),
//! ])?;
//! // Point a DNSSEC-aware stub resolver (DO bit, reads AD) at this address.
//! let resolver = stack.resolver_addr();
//! # let _ = resolver;
//! # Ok::<(), mta_sts_testkit::dnssec::StackError>(())
//! ```

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType as HType};

/// The environment variable that turns a missing tool into a test failure: set it to `1` in
/// CI (`.ci/run` does).
pub const REQUIRE_TOOLS_ENV: &str = "MTA_STS_REQUIRE_DNSSEC_TOOLS";

/// The programs the stack runs, as found on `PATH` (or in `/usr/sbin`, `/usr/local/sbin`,
/// `/sbin`, where Debian puts the servers).
pub const TOOLS: [&str; 4] = ["nsd", "unbound", "ldns-keygen", "ldns-signzone"];

/// How long each server may take to answer its first query.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one readiness query waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// The pause after a readiness query that failed at once (port not open yet).
const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// How long a stopped server may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at starting the servers on fresh ports (a port picked free may be taken meanwhile).
const START_ATTEMPTS: usize = 5;
/// The TTL of the records and the negative TTL of the SOA in the generated zone files.
const DEFAULT_TTL: u32 = 300;

/// How a [`Zone`] is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signing {
    /// Not signed and without a trust anchor: the validator answers it as insecure (no AD).
    Unsigned,
    /// Signed, with its key as a trust anchor: answers are secure (AD).
    Signed,
    /// Signed with signatures that expired in the year 2000, its key a trust anchor: every
    /// answer is bogus (the validator answers SERVFAIL).
    Bogus,
}

/// One zone of a [`ValidatingStack`]: its apex name, how it is signed, and its records.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Zone {
    name: String,
    signing: Signing,
    ttl: u32,
    records: Vec<String>,
}

impl Zone {
    /// A zone published as `signing` says, with only the generated SOA, NS and `ns` A.
    pub fn new(name: &str, signing: Signing) -> Self {
        Self {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            signing,
            ttl: DEFAULT_TTL,
            records: Vec::new(),
        }
    }

    /// A signed zone ([`Signing::Signed`]).
    pub fn signed(name: &str) -> Self {
        Self::new(name, Signing::Signed)
    }

    /// An unsigned zone ([`Signing::Unsigned`]).
    pub fn unsigned(name: &str) -> Self {
        Self::new(name, Signing::Unsigned)
    }

    /// A zone with broken (expired) signatures ([`Signing::Bogus`]).
    pub fn bogus(name: &str) -> Self {
        Self::new(name, Signing::Bogus)
    }

    /// Adds a record as a zone-file line (RFC 1035 §5.1), e.g. `"_25._tcp.mx TLSA 3 1 1 ab…"`
    /// or `"mx.example.test. 60 IN A 127.0.0.1"`. Relative names are relative to the zone
    /// (`$ORIGIN` is the apex); without a TTL the zone's applies. The generated zone already
    /// has the SOA, `@ NS ns` and `ns A 127.0.0.1`.
    pub fn record(mut self, line: impl Into<String>) -> Self {
        self.records.push(line.into());
        self
    }

    /// Adds several records ([`record`](Self::record)).
    pub fn records<I, S>(mut self, lines: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.records.extend(lines.into_iter().map(Into::into));
        self
    }

    /// The default TTL of the zone's records and its negative-caching TTL (SOA minimum);
    /// default 300 s.
    pub fn ttl(mut self, seconds: u32) -> Self {
        self.ttl = seconds;
        self
    }

    /// The apex, lower case, without the root dot.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How the zone is published.
    pub fn signing(&self) -> Signing {
        self.signing
    }

    fn zone_file(&self) -> String {
        let apex = &self.name;
        let ttl = self.ttl;
        let mut s = format!(
            "$ORIGIN {apex}.\n$TTL {ttl}\n\
             @ IN SOA ns.{apex}. hostmaster.{apex}. 1 3600 600 86400 {ttl}\n\
             @ IN NS ns.{apex}.\n\
             ns IN A 127.0.0.1\n"
        );
        for r in &self.records {
            s.push_str(r);
            s.push('\n');
        }
        s
    }
}

/// Why the stack could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StackError {
    /// A program of [`TOOLS`] is not installed.
    MissingTool(&'static str),
    /// A zone name is empty, not a host name, repeated, or inside another zone of the stack.
    InvalidZone(String),
    /// Writing the scratch files or starting a program failed.
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// A program exited with a failure.
    ToolFailed {
        /// The program.
        tool: &'static str,
        /// Its exit status, as displayed.
        status: String,
        /// What it wrote on stderr (and stdout).
        output: String,
    },
    /// A server did not answer a query in time, or exited.
    NotReady {
        /// The server (`nsd` or `unbound`).
        server: &'static str,
        /// What went wrong.
        reason: String,
        /// The server's log.
        log: String,
    },
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingTool(t) => write!(
                f,
                "{t} is not installed (Debian: apt-get install nsd unbound ldnsutils)"
            ),
            Self::InvalidZone(z) => write!(f, "invalid zone: {z}"),
            Self::Io { what, source } => write!(f, "{what}: {source}"),
            Self::ToolFailed {
                tool,
                status,
                output,
            } => write!(f, "{tool} failed ({status}): {}", output.trim()),
            Self::NotReady {
                server,
                reason,
                log,
            } => write!(f, "{server} not ready: {reason}; log:\n{}", log.trim()),
        }
    }
}

impl std::error::Error for StackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StackError {
    let what = what.into();
    move |source| StackError::Io { what, source }
}

/// Finds a program on `PATH` or in the sbin directories.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether every program of [`TOOLS`] is installed; the first missing one otherwise.
pub fn tools_available() -> Result<(), StackError> {
    match TOOLS.into_iter().find(|t| find_tool(t).is_none()) {
        Some(missing) => Err(StackError::MissingTool(missing)),
        None => Ok(()),
    }
}

/// For a test that needs the stack: `true` when the tools are installed. When one is missing,
/// prints a loud message on stderr naming `test` and returns `false` (skip), unless
/// [`REQUIRE_TOOLS_ENV`] is `1`.
///
/// # Panics
/// When a tool is missing and [`REQUIRE_TOOLS_ENV`] is `1`, or under CI
/// ([`must_not_skip`](crate::must_not_skip)): the test fails.
pub fn tools_or_skip(test: &str) -> bool {
    let Err(e) = tools_available() else {
        return true;
    };
    if crate::must_not_skip(REQUIRE_TOOLS_ENV) {
        panic!("{test}: {e}, and {REQUIRE_TOOLS_ENV}=1 (or CI) requires the DNSSEC tools");
    }
    eprintln!(
        "\n**********\n** SKIPPED {test}: {e}.\n** Set {REQUIRE_TOOLS_ENV}=1 to make this a failure.\n**********\n"
    );
    false
}

/// A running nsd + unbound pair on loopback; see the [module documentation](self).
#[derive(Debug)]
pub struct ValidatingStack {
    dir: PathBuf,
    nsd: Option<Server>,
    unbound: Option<Server>,
    authoritative: SocketAddr,
    resolver: SocketAddr,
    trust_anchors: Vec<String>,
}

impl ValidatingStack {
    /// Signs the zones, starts nsd and unbound and waits until both answer. The zones must
    /// be disjoint (none inside another: a delegation from a signed parent would need DS
    /// records).
    pub fn start<I: IntoIterator<Item = Zone>>(zones: I) -> Result<Self, StackError> {
        tools_available()?;
        let zones: Vec<Zone> = zones.into_iter().collect();
        check_zones(&zones)?;
        let dir = scratch_dir()?;
        let mut stack = Self {
            dir,
            nsd: None,
            unbound: None,
            authoritative: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            resolver: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            trust_anchors: Vec::new(),
        };
        // From here on, dropping `stack` stops what was started and removes the directory.
        stack.prepare(&zones)?;
        let probe_name = zones
            .first()
            .map_or(".".to_owned(), |z| format!("{}.", z.name));
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match stack.start_servers(&zones, &probe_name) {
                Ok(()) => return Ok(stack),
                // A port picked as free may have been taken meanwhile: try other ports.
                Err(e @ StackError::NotReady { .. }) => {
                    stack.stop();
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| StackError::InvalidZone("no attempt made".into())))
    }

    /// The validating resolver's address (unbound, UDP and TCP on 127.0.0.1): the one address
    /// clients use.
    pub fn resolver_addr(&self) -> SocketAddr {
        self.resolver
    }

    /// The authoritative server's address (nsd, UDP and TCP on 127.0.0.1), which serves the
    /// signed zones with their RRSIG, DNSKEY and NSEC records.
    pub fn authoritative_addr(&self) -> SocketAddr {
        self.authoritative
    }

    /// The trust anchors given to unbound: the DNSKEY record of each signed and bogus zone, in
    /// zone-file format.
    pub fn trust_anchors(&self) -> &[String] {
        &self.trust_anchors
    }

    /// The scratch directory (zone files, keys, configurations, logs); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes, keys and signs the zones and the trust anchor file.
    fn prepare(&mut self, zones: &[Zone]) -> Result<(), StackError> {
        for z in zones {
            let file = self.dir.join(format!("{}.zone", z.name));
            fs::write(&file, z.zone_file())
                .map_err(io_err(format!("writing {}", file.display())))?;
            if z.signing == Signing::Unsigned {
                continue;
            }
            let keygen = run(
                "ldns-keygen",
                &self.dir,
                &["-a", "ECDSAP256SHA256", "-k", "-r", "/dev/urandom", &z.name],
            )?;
            let base = keygen.trim().to_owned();
            let key = fs::read_to_string(self.dir.join(format!("{base}.key")))
                .map_err(io_err(format!("reading the key of {}", z.name)))?;
            let signed = format!("{}.zone.signed", z.name);
            let origin = format!("{}.", z.name);
            let zone = format!("{}.zone", z.name);
            let mut args = vec!["-o", &origin, "-f", &signed];
            if z.signing == Signing::Bogus {
                // A validity period long past: every signature is expired.
                args.extend(["-i", "20000101000000", "-e", "20000201000000"]);
            }
            args.extend([zone.as_str(), base.as_str()]);
            run("ldns-signzone", &self.dir, &args)?;
            self.trust_anchors.push(key.trim().to_owned());
        }
        let mut anchors = self.trust_anchors.join("\n");
        anchors.push('\n');
        fs::write(self.dir.join("anchors.key"), anchors)
            .map_err(io_err("writing the trust anchors"))?;
        Ok(())
    }

    fn start_servers(&mut self, zones: &[Zone], probe_name: &str) -> Result<(), StackError> {
        let dir = self.dir.display().to_string();
        let nsd_port = free_port()?;
        self.authoritative = SocketAddr::from((Ipv4Addr::LOCALHOST, nsd_port));
        let mut nsd_conf = format!(
            "server:\n    ip-address: 127.0.0.1\n    port: {nsd_port}\n    do-ip6: no\n    \
             username: \"\"\n    chroot: \"\"\n    zonesdir: \"{dir}\"\n    database: \"\"\n    \
             zonelistfile: \"{dir}/zone.list\"\n    xfrdfile: \"{dir}/xfrd.state\"\n    \
             xfrdir: \"{dir}\"\n    pidfile: \"{dir}/nsd.pid\"\n    logfile: \"{dir}/nsd.log\"\n    \
             server-count: 1\n    reuseport: no\n    verbosity: 1\n\
             remote-control:\n    control-enable: no\n"
        );
        for z in zones {
            let file = match z.signing {
                Signing::Unsigned => format!("{}.zone", z.name),
                _ => format!("{}.zone.signed", z.name),
            };
            nsd_conf.push_str(&format!(
                "zone:\n    name: \"{}\"\n    zonefile: \"{file}\"\n",
                z.name
            ));
        }
        let conf = self.dir.join("nsd.conf");
        fs::write(&conf, nsd_conf).map_err(io_err("writing nsd.conf"))?;
        let nsd = Server::spawn("nsd", &self.dir, &["-d", "-c", &conf.display().to_string()])?;
        let nsd = self.nsd.insert(nsd);
        nsd.wait_ready(self.authoritative, probe_name, &self.dir.join("nsd.log"))?;

        let unbound_port = free_port()?;
        self.resolver = SocketAddr::from((Ipv4Addr::LOCALHOST, unbound_port));
        let mut ub = format!(
            "server:\n    interface: 127.0.0.1\n    port: {unbound_port}\n    do-ip4: yes\n    \
             do-ip6: no\n    do-udp: yes\n    do-tcp: yes\n    do-daemonize: no\n    \
             username: \"\"\n    chroot: \"\"\n    directory: \"{dir}\"\n    pidfile: \"\"\n    \
             use-syslog: no\n    logfile: \"\"\n    verbosity: 1\n    val-log-level: 2\n    \
             num-threads: 1\n    so-reuseport: no\n    \
             access-control: 127.0.0.0/8 allow\n    do-not-query-localhost: no\n    \
             outgoing-interface: 127.0.0.1\n    module-config: \"validator iterator\"\n    \
             val-permissive-mode: no\n    trust-anchor-signaling: no\n    \
             root-key-sentinel: no\n    ede: yes\n    \
             trust-anchor-file: \"{dir}/anchors.key\"\n    local-zone: \".\" refuse\n"
        );
        for z in zones {
            ub.push_str(&format!("    local-zone: \"{}.\" transparent\n", z.name));
        }
        ub.push_str("remote-control:\n    control-enable: no\n");
        for z in zones {
            ub.push_str(&format!(
                "stub-zone:\n    name: \"{}.\"\n    stub-addr: 127.0.0.1@{nsd_port}\n",
                z.name
            ));
        }
        if self.trust_anchors.is_empty() {
            // unbound refuses an empty trust anchor file; without one nothing is validated.
            ub = ub.replace(
                &format!("    trust-anchor-file: \"{dir}/anchors.key\"\n"),
                "",
            );
        }
        let conf = self.dir.join("unbound.conf");
        fs::write(&conf, ub).map_err(io_err("writing unbound.conf"))?;
        let unbound = Server::spawn(
            "unbound",
            &self.dir,
            &["-d", "-c", &conf.display().to_string()],
        )?;
        let unbound = self.unbound.insert(unbound);
        unbound.wait_ready(self.resolver, probe_name, &self.dir.join("unbound.log"))
    }

    fn stop(&mut self) {
        // The resolver first, then the server it asks.
        if let Some(s) = self.unbound.take() {
            s.stop();
        }
        if let Some(s) = self.nsd.take() {
            s.stop();
        }
    }
}

impl Drop for ValidatingStack {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn check_zones(zones: &[Zone]) -> Result<(), StackError> {
    for (i, z) in zones.iter().enumerate() {
        let ok = !z.name.is_empty()
            && z.name.len() <= 253
            && z.name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !ok {
            return Err(StackError::InvalidZone(format!(
                "{:?} is not a zone name",
                z.name
            )));
        }
        for other in &zones[..i] {
            let inside = |a: &str, b: &str| a == b || a.ends_with(&format!(".{b}"));
            if inside(&z.name, &other.name) || inside(&other.name, &z.name) {
                return Err(StackError::InvalidZone(format!(
                    "{} and {} overlap (zones must be disjoint)",
                    z.name, other.name
                )));
            }
        }
    }
    Ok(())
}

/// A fresh private directory under the system's temporary directory.
fn scratch_dir() -> Result<PathBuf, StackError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "mta-sts-dnssec-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// A loopback port free for both UDP and TCP right now.
fn free_port() -> Result<u16, StackError> {
    for _ in 0..64 {
        let udp =
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("finding a free port"))?;
        let port = udp
            .local_addr()
            .map_err(io_err("finding a free port"))?
            .port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(StackError::Io {
        what: "finding a free port".into(),
        source: io::Error::new(io::ErrorKind::AddrInUse, "no port free for UDP and TCP"),
    })
}

/// Runs a tool to completion in `dir`; its stdout on success.
fn run(tool: &'static str, dir: &Path, args: &[&str]) -> Result<String, StackError> {
    let path = find_tool(tool).ok_or(StackError::MissingTool(tool))?;
    let out = Command::new(path)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("running {tool}")))?;
    if !out.status.success() {
        return Err(StackError::ToolFailed {
            tool,
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A server process in its own process group, its output in `<dir>/<name>.out`.
#[derive(Debug)]
struct Server {
    name: &'static str,
    child: Child,
    out: PathBuf,
}

impl Server {
    fn spawn(name: &'static str, dir: &Path, args: &[&str]) -> Result<Self, StackError> {
        let path = find_tool(name).ok_or(StackError::MissingTool(name))?;
        let out = dir.join(format!("{name}.out"));
        let file = File::create(&out).map_err(io_err(format!("creating {}", out.display())))?;
        let file2 = file.try_clone().map_err(io_err("duplicating a log file"))?;
        let child = Command::new(path)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            // Its own group, so that stopping it reaches the processes it forks (nsd's).
            .process_group(0)
            .spawn()
            .map_err(io_err(format!("starting {name}")))?;
        Ok(Self { name, child, out })
    }

    fn log(&self, extra: &Path) -> String {
        let mut log = fs::read_to_string(&self.out).unwrap_or_default();
        if let Ok(more) = fs::read_to_string(extra) {
            log.push_str(&more);
        }
        log
    }

    /// Polls the server with a query for `name` SOA until any answer comes back.
    fn wait_ready(&mut self, addr: SocketAddr, name: &str, log: &Path) -> Result<(), StackError> {
        let not_ready = |s: &Self, reason: String| StackError::NotReady {
            server: s.name,
            reason,
            log: s.log(log),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let query = readiness_query(name).map_err(|e| not_ready(self, e))?;
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("binding a probe"))?;
        sock.set_read_timeout(Some(PROBE_TIMEOUT))
            .map_err(io_err("setting a probe timeout"))?;
        sock.connect(addr).map_err(io_err("connecting a probe"))?;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(not_ready(self, format!("exited with {status}")));
            }
            if Instant::now() > deadline {
                return Err(not_ready(
                    self,
                    format!("no answer on {addr} in {READY_TIMEOUT:?}"),
                ));
            }
            let answered = sock.send(&query).is_ok()
                && matches!(sock.recv(&mut buf), Ok(n) if Message::from_vec(&buf[..n])
                    .is_ok_and(|m| m.metadata.message_type == MessageType::Response));
            if answered {
                return Ok(());
            }
            // Refused at once (port not open yet) or timed out: ask again shortly.
            std::thread::sleep(PROBE_INTERVAL);
        }
    }

    /// SIGTERM to the process group, SIGKILL after [`STOP_TIMEOUT`]; then SIGKILL to whatever
    /// is left in the group (e.g. nsd's forked servers), sent while the leader is a zombie not
    /// yet reaped, so that the group id cannot have been reused.
    fn stop(mut self) {
        let pid = self.child.id();
        let group = format!("-{pid}");
        let signal = |sig: &str| {
            Command::new("kill")
                .args([sig, "--", &group])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if signal("-TERM") {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while !exited_unreaped(pid) && Instant::now() < deadline {
                std::thread::sleep(PROBE_INTERVAL);
            }
            let _ = signal("-KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the child `pid` has exited (a zombie until reaped), from `/proc`; `true` when that
/// cannot be read (the caller then kills it).
fn exited_unreaped(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

fn readiness_query(name: &str) -> Result<Vec<u8>, String> {
    let name = Name::from_ascii(name).map_err(|e| e.to_string())?;
    let mut m = Message::new(0x7e57, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, HType::SOA));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    m.to_vec().map_err(|e| e.to_string())
}
