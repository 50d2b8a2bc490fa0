//! `socketmap-load`: a load generator for Postfix socketmap servers (`mta-sts daemon`,
//! postfix-mta-sts-resolver, any other).
//!
//! C connections (TCP or unix; one thread each with blocking sockets, or with `--threads T`
//! spread over T threads that each run a single-threaded tokio runtime), each sending batches of D
//! pipelined requests `<len>:<map> <key>,` and reading the D replies before the next batch,
//! until N requests are answered or T seconds have passed. Every reply is checked against the
//! expected one (`--expect`, where `{key}` stands for the key; `--prefix` accepts any reply that
//! starts with it). Reports queries/s, the latency of each batch (write to last reply) and of
//! each request (batch write to its reply), wrong replies and errors: human text on standard
//! error, one JSON line on standard output.
//!
//! ```sh
//! socketmap-load --addr 127.0.0.1:8461 --connections 64 --depth 16 --seconds 5 \
//!     --bulk 1000:3000 --expect 'OK secure match=mx.{key} servername=hostname'
//! ```
//!
//! Keys: `--bulk START:COUNT` gives the test world's bulk domains (`d<START>.example`, …);
//! `--keys FILE` one key per line; `--key K` (repeatable). Request `i` (over all connections)
//! asks key `i mod keys`, so `--requests` equal to the number of keys asks each key once.
//!
//! Netstrings come from [`mta_sts_benches::socketmap`] (hand-written: see there why).

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use mta_sts_benches::socketmap::{decode, encode};
use mta_sts_testkit::bulk_domain_name;

const USAGE: &str = "usage: socketmap-load --addr HOST:PORT|unix:PATH [--connections C] \
    [--depth D] [--threads T] [--requests N] [--seconds T] [--map NAME] (--bulk START:COUNT | --keys FILE | \
    --key K...) [--expect TEMPLATE [--prefix]] [--label TEXT] [--timeout SECS]";

/// The options.
#[derive(Debug, Clone)]
struct Args {
    addr: String,
    connections: usize,
    depth: usize,
    /// 0: no bound.
    requests: u64,
    seconds: f64,
    map: String,
    keys: Vec<String>,
    expect: Option<String>,
    prefix: bool,
    label: String,
    timeout: Duration,
    /// 0: a blocking thread per connection; more: that many event-driven threads.
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: String::new(),
        connections: 1,
        depth: 1,
        requests: 0,
        seconds: 10.0,
        map: "postfix".into(),
        keys: Vec::new(),
        expect: None,
        prefix: false,
        label: String::new(),
        timeout: Duration::from_secs(60),
        threads: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--prefix" {
            a.prefix = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--addr" => a.addr.clone_from(&value),
            "--connections" => a.connections = value.parse().map_err(|e| bad(&e))?,
            "--depth" => a.depth = value.parse().map_err(|e| bad(&e))?,
            "--threads" => a.threads = value.parse().map_err(|e| bad(&e))?,
            "--requests" => a.requests = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => a.seconds = value.parse().map_err(|e| bad(&e))?,
            "--timeout" => {
                a.timeout = Duration::from_secs_f64(value.parse().map_err(|e| bad(&e))?);
            }
            "--map" => a.map.clone_from(&value),
            "--expect" => a.expect = Some(value),
            "--label" => a.label.clone_from(&value),
            "--key" => a.keys.push(value),
            "--keys" => {
                let f = std::fs::File::open(&value).map_err(|e| bad(&e))?;
                for line in io::BufReader::new(f).lines() {
                    let line = line.map_err(|e| bad(&e))?;
                    if !line.trim().is_empty() {
                        a.keys.push(line.trim().to_owned());
                    }
                }
            }
            "--bulk" => {
                let (start, count) = value
                    .split_once(':')
                    .ok_or_else(|| bad(&"want START:COUNT"))?;
                let start: usize = start.parse().map_err(|e| bad(&e))?;
                let count: usize = count.parse().map_err(|e| bad(&e))?;
                a.keys.extend((start..start + count).map(bulk_domain_name));
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.addr.is_empty() {
        return Err("--addr is required".into());
    }
    if a.keys.is_empty() {
        return Err("no keys: give --bulk, --keys or --key".into());
    }
    if a.connections == 0 || a.depth == 0 {
        return Err("--connections and --depth must be at least 1".into());
    }
    Ok(a)
}

/// A connection to the server, blocking; [`into_async`](Conn::into_async) makes it a tokio one.
trait Conn: Read + Write + Send {
    fn into_async(self: Box<Self>) -> io::Result<Box<dyn AsyncConn>>;
}

impl Conn for TcpStream {
    fn into_async(self: Box<Self>) -> io::Result<Box<dyn AsyncConn>> {
        self.set_nonblocking(true)?;
        Ok(Box::new(tokio::net::TcpStream::from_std(*self)?))
    }
}

impl Conn for UnixStream {
    fn into_async(self: Box<Self>) -> io::Result<Box<dyn AsyncConn>> {
        self.set_nonblocking(true)?;
        Ok(Box::new(tokio::net::UnixStream::from_std(*self)?))
    }
}

fn connect(addr: &str, timeout: Duration) -> io::Result<Box<dyn Conn>> {
    if let Some(path) = addr.strip_prefix("unix:") {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Box::new(s))
    } else {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Box::new(s))
    }
}

/// The requests and the expected replies, by key index.
#[derive(Debug)]
struct Work {
    requests: Vec<Vec<u8>>,
    expected: Option<Vec<Vec<u8>>>,
    prefix: bool,
    depth: usize,
    bound: u64,
    /// Set when the clock starts.
    deadline: OnceLock<Instant>,
    next: AtomicU64,
}

impl Work {
    fn is_right(&self, key: usize, reply: &[u8]) -> bool {
        match &self.expected {
            None => true,
            Some(e) if self.prefix => reply.starts_with(&e[key]),
            Some(e) => reply == e[key].as_slice(),
        }
    }

    /// The next batch: its first request index and its size; `None` when the work is done.
    fn take(&self) -> Option<(u64, usize)> {
        if self.deadline.get().is_some_and(|&d| Instant::now() >= d) {
            return None;
        }
        let depth = self.depth as u64;
        let base = self.next.fetch_add(depth, Ordering::Relaxed);
        if self.bound == 0 {
            return Some((base, self.depth));
        }
        let n = self.bound.checked_sub(base)?.min(depth);
        (n > 0).then_some((base, n as usize))
    }
}

/// What one connection measured.
#[derive(Debug, Default)]
struct Tally {
    answered: u64,
    wrong: u64,
    errors: u64,
    batch_ns: Vec<u64>,
    request_ns: Vec<u64>,
    first_wrong: Option<String>,
    error: Option<String>,
}

/// A connection's buffers and the batch under way; the same for both I/O modes.
struct Session {
    work: Arc<Work>,
    tally: Tally,
    out: Vec<u8>,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    base: u64,
    n: usize,
    got: usize,
    sent: Instant,
    arrived: Instant,
}

impl Session {
    fn new(work: Arc<Work>) -> Self {
        let out = Vec::with_capacity(work.depth * 64);
        Self {
            work,
            tally: Tally::default(),
            out,
            buf: vec![0u8; 64 * 1024],
            pos: 0,
            filled: 0,
            base: 0,
            n: 0,
            got: 0,
            sent: Instant::now(),
            arrived: Instant::now(),
        }
    }

    /// Prepares the next batch (its requests in [`out`](Self::out)); false when the work is
    /// done.
    fn next_batch(&mut self) -> bool {
        let Some((base, n)) = self.work.take() else {
            return false;
        };
        let keys = self.work.requests.len() as u64;
        self.out.clear();
        for i in 0..n as u64 {
            self.out
                .extend_from_slice(&self.work.requests[((base + i) % keys) as usize]);
        }
        (self.base, self.n, self.got) = (base, n, 0);
        self.sent = Instant::now();
        self.arrived = self.sent;
        true
    }

    /// Checks the complete replies received; `Ok(true)` once the batch is answered.
    fn take_replies(&mut self) -> Result<bool, String> {
        let keys = self.work.requests.len() as u64;
        while self.got < self.n {
            let Some((reply, consumed)) = decode(&self.buf[self.pos..self.filled])? else {
                return Ok(false);
            };
            let key = ((self.base + self.got as u64) % keys) as usize;
            let t = &mut self.tally;
            if !self.work.is_right(key, reply) {
                t.wrong += 1;
                if t.first_wrong.is_none() {
                    t.first_wrong = Some(String::from_utf8_lossy(reply).into_owned());
                }
            }
            t.answered += 1;
            t.request_ns.push(nanos(self.arrived - self.sent));
            self.pos += consumed;
            self.got += 1;
        }
        self.tally.batch_ns.push(nanos(self.arrived - self.sent));
        Ok(true)
    }

    /// Where the next read goes (after moving what is left to the front).
    fn read_buf(&mut self) -> &mut [u8] {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// `r` bytes were read into [`read_buf`](Self::read_buf); 0 is an error (closed).
    fn read_done(&mut self, r: io::Result<usize>) -> Result<(), String> {
        match r {
            Ok(0) => Err("the server closed the connection".into()),
            Ok(r) => {
                self.filled += r;
                self.arrived = Instant::now();
                Ok(())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// The connection failed: the rest of the batch counts as errors.
    fn fail(mut self, error: String) -> Tally {
        self.tally.errors += (self.n - self.got) as u64;
        self.tally.error = Some(error);
        self.tally
    }
}

/// The batch loop of a connection, for both I/O modes: `write(out) => <write all of out>` and
/// `read(buf) => <read into buf>`, with or without `.await`.
macro_rules! run_batches {
    ($s:ident, write($out:ident) => $write:expr, read($buf:ident) => $read:expr) => {{
        while $s.next_batch() {
            let $out = &$s.out;
            if let Err(e) = $write {
                return $s.fail(format!("write: {e}"));
            }
            loop {
                match $s.take_replies() {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => return $s.fail(e),
                }
                let $buf = $s.read_buf();
                let r = $read;
                if let Err(e) = $s.read_done(r) {
                    return $s.fail(e);
                }
            }
        }
        $s.tally
    }};
}

/// One connection on its own thread, blocking: batches until the work is done or the
/// connection fails.
fn run_blocking(mut conn: Box<dyn Conn>, work: Arc<Work>, start: &Barrier) -> Tally {
    let mut s = Session::new(work);
    start.wait();
    run_batches!(s, write(out) => conn.write_all(out), read(buf) => conn.read(buf))
}

/// A connection for the event-driven mode.
trait AsyncConn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncConn for T {}

/// One connection as a task of a single-threaded runtime that serves several: the same as
/// [`run_blocking`], with readiness from epoll instead of a blocked thread.
async fn run_async(mut conn: Box<dyn AsyncConn>, work: Arc<Work>) -> Tally {
    let mut s = Session::new(work);
    run_batches!(s, write(out) => conn.write_all(out).await, read(buf) => conn.read(buf).await)
}

/// `conns` connections as tasks of one single-threaded runtime on this thread.
fn run_thread_async(conns: Vec<Box<dyn Conn>>, work: &Arc<Work>, start: &Barrier) -> Vec<Tally> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a tokio runtime");
    let conns: Vec<Box<dyn AsyncConn>> = rt.block_on(async {
        conns
            .into_iter()
            .map(|c| c.into_async().expect("a non-blocking socket"))
            .collect()
    });
    start.wait();
    rt.block_on(async {
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|c| tokio::spawn(run_async(c, Arc::clone(work))))
            .collect();
        let mut tallies = Vec::with_capacity(tasks.len());
        for t in tasks {
            tallies.push(t.await.unwrap_or_default());
        }
        tallies
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The `p`-th percentile (0 to 100) of `v`, in microseconds; 0 when empty.
fn percentile_us(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    let (_, x, _) = v.select_nth_unstable(rank.min(v.len() - 1));
    *x as f64 / 1000.0
}

/// This process's CPU time (user and system) in seconds, from /proc/self/stat (clock ticks of
/// 1/100 s, Linux's USER_HZ); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3) here.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Escapes a string for JSON.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("socketmap-load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut requests = Vec::with_capacity(args.keys.len());
    for key in &args.keys {
        let mut r = Vec::new();
        encode(&mut r, format!("{} {key}", args.map).as_bytes());
        requests.push(r);
    }
    let expected = args.expect.as_ref().map(|tpl| {
        args.keys
            .iter()
            .map(|k| tpl.replace("{key}", k).into_bytes())
            .collect()
    });

    // Every connection is open before the clock starts.
    let mut conns = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        match connect(&args.addr, args.timeout) {
            Ok(c) => conns.push(c),
            Err(e) => {
                eprintln!("socketmap-load: cannot connect to {}: {e}", args.addr);
                return ExitCode::from(1);
            }
        }
    }
    // Blocking: a thread per connection. Event-driven: `threads` threads, each a
    // single-threaded tokio runtime with its share of the connections.
    let groups: Vec<Vec<Box<dyn Conn>>> = if args.threads == 0 {
        conns.into_iter().map(|c| vec![c]).collect()
    } else {
        let mut g: Vec<Vec<Box<dyn Conn>>> = (0..args.threads.min(args.connections))
            .map(|_| Vec::new())
            .collect();
        let len = g.len();
        for (i, c) in conns.into_iter().enumerate() {
            g[i % len].push(c);
        }
        g
    };
    let start = Arc::new(Barrier::new(groups.len() + 1));
    let cpu_before = cpu_seconds();
    let work = Arc::new(Work {
        requests,
        expected,
        prefix: args.prefix,
        depth: args.depth,
        bound: args.requests,
        deadline: OnceLock::new(),
        next: AtomicU64::new(0),
    });
    let event_driven = args.threads > 0;
    let threads: Vec<_> = groups
        .into_iter()
        .map(|mut g| {
            let (work, start) = (Arc::clone(&work), Arc::clone(&start));
            std::thread::spawn(move || {
                if event_driven {
                    run_thread_async(g, &work, &start)
                } else {
                    let c = g.pop().expect("one connection");
                    vec![run_blocking(c, work, &start)]
                }
            })
        })
        .collect();
    // The threads' start-up is not measured: the clock starts when they all wait.
    let began = Instant::now();
    let _ = work
        .deadline
        .set(began + Duration::from_secs_f64(args.seconds));
    start.wait();
    let mut total = Tally::default();
    for t in threads
        .into_iter()
        .flat_map(|th| th.join().unwrap_or_default())
    {
        total.answered += t.answered;
        total.wrong += t.wrong;
        total.errors += t.errors;
        total.batch_ns.extend(t.batch_ns);
        total.request_ns.extend(t.request_ns);
        total.first_wrong = total.first_wrong.or(t.first_wrong);
        total.error = total.error.or(t.error);
    }
    let elapsed = began.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(cpu_seconds()).map(|(a, b)| b - a);
    let qps = total.answered as f64 / elapsed;
    let (b50, b99) = (
        percentile_us(&mut total.batch_ns, 50.0),
        percentile_us(&mut total.batch_ns, 99.0),
    );
    let (r50, r99) = (
        percentile_us(&mut total.request_ns, 50.0),
        percentile_us(&mut total.request_ns, 99.0),
    );
    let checked = args.expect.is_some();
    eprintln!(
        "{}{} connections x depth {}: {} answered in {elapsed:.3} s = {qps:.0} queries/s; \
         batch p50 {b50:.1} us p99 {b99:.1} us; request p50 {r50:.1} us p99 {r99:.1} us; \
         wrong {}{}; errors {}; generator CPU {}",
        if args.label.is_empty() {
            String::new()
        } else {
            format!("{}: ", args.label)
        },
        args.connections,
        args.depth,
        total.answered,
        total.wrong,
        if checked { "" } else { " (not checked)" },
        total.errors,
        cpu.map_or("unknown".into(), |c| format!("{c:.2} s")),
    );
    if let Some(w) = &total.first_wrong {
        eprintln!("first wrong reply: {w:?}");
    }
    if let Some(e) = &total.error {
        eprintln!("first error: {e}");
    }
    println!(
        "{{\"label\":{},\"addr\":{},\"connections\":{},\"depth\":{},\"threads\":{},\"answered\":{},\
         \"wrong\":{},\"checked\":{checked},\"errors\":{},\"seconds\":{elapsed:.6},\"qps\":{qps:.1},\
         \"batch_p50_us\":{b50:.1},\"batch_p99_us\":{b99:.1},\"request_p50_us\":{r50:.1},\
         \"request_p99_us\":{r99:.1},\"generator_cpu_s\":{}}}",
        json_str(&args.label),
        json_str(&args.addr),
        args.connections,
        args.depth,
        args.threads,
        total.answered,
        total.wrong,
        total.errors,
        cpu.map_or("null".into(), |c| format!("{c:.2}")),
    );
    if total.wrong > 0 || total.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
