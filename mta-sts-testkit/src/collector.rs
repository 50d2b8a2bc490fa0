//! A TLSRPT report collector (RFC 8460 §5.4): an HTTPS server on 127.0.0.1 with a certificate
//! from the world's CA that records every POST (headers, body, gunzipped body) and answers each
//! with the next scripted status.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustls::pki_types::PrivateKeyDer;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::https::{finish, simple};
use crate::scenario::{Record, Txt};
use crate::state::{lock, normalize};
use crate::sup::{ConnGuard, Supervisor, Threads};
use crate::world::Shared;

/// The path a collector accepts reports at unless told otherwise.
pub const COLLECTOR_PATH: &str = "/tlsrpt";
/// The largest request body a collector reads; a longer one is answered 413 and recorded
/// without its body.
pub const MAX_POST_BODY: usize = 1024 * 1024;
/// The most bytes a recorded body is gunzipped to; a body that inflates further has no
/// [`Post::report`].
pub const MAX_GUNZIPPED: usize = 16 * 1024 * 1024;
/// The most requests a collector keeps (the oldest go first); [`Collector::count`] counts all.
pub const MAX_POSTS_KEPT: usize = 1024;
/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a connection may stay silent.
const IDLE: Duration = Duration::from_secs(30);

/// One request a [`Collector`] received, as it came and as it was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Post {
    /// The TLS SNI host name the request came in under.
    pub sni: String,
    /// The request method (`POST` for a report).
    pub method: String,
    /// The request target, e.g. `/tlsrpt`.
    pub path: String,
    /// The headers in order, values lossily decoded.
    pub headers: Vec<(String, String)>,
    /// The body as received (the gzip report); empty when it was over [`MAX_POST_BODY`].
    pub body: Vec<u8>,
    /// The body gunzipped (the JSON report), when it is gzip data of at most
    /// [`MAX_GUNZIPPED`] bytes.
    pub report: Option<Vec<u8>>,
    /// The status the collector answered.
    pub status: u16,
}

impl Post {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The gunzipped body as text (lossily decoded), if it was gzip data.
    pub fn report_text(&self) -> Option<String> {
        self.report
            .as_deref()
            .map(|r| String::from_utf8_lossy(r).into_owned())
    }
}

/// What a collector answers and what it recorded.
#[derive(Debug)]
struct Log {
    script: VecDeque<u16>,
    default_status: u16,
    posts: VecDeque<Post>,
    count: usize,
    wakers: Vec<Waker>,
}

#[derive(Debug)]
struct CollectorShared {
    host: String,
    path: String,
    log: Mutex<Log>,
    arrived: Condvar,
    sup: Arc<Supervisor>,
}

impl CollectorShared {
    /// The status for the next request: the next scripted one, else the default.
    fn next_status(&self) -> u16 {
        let mut log = lock(&self.log);
        let default = log.default_status;
        log.script.pop_front().unwrap_or(default)
    }

    fn record(&self, post: Post) {
        let mut log = lock(&self.log);
        if log.posts.len() == MAX_POSTS_KEPT {
            log.posts.pop_front();
        }
        log.posts.push_back(post);
        log.count += 1;
        let wakers = std::mem::take(&mut log.wakers);
        drop(log);
        self.arrived.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// A TLSRPT report collector: an HTTPS server on `127.0.0.1` (an ephemeral port) presenting a
/// certificate for its host name from the world's CA, which records every request to it
/// ([`Post`]: headers, body, the body gunzipped) and answers each with the next status of a
/// script ([`respond`](Self::respond)), then with a default status (200 unless
/// [`set_default_status`](Self::set_default_status) says otherwise), so that retries and the 2xx
/// rule of RFC 8460 §5.4 can be tested. A request to another path or with another method than
/// `POST` is recorded too, and answered 404 or 405 (without using the script).
///
/// Made by [`World::collector`](crate::World::collector), which publishes the address record
/// of its host in the world's DNS; [`publish`](Self::publish) adds a domain's
/// `_smtp._tls.<domain>` TXT record naming it. Requests are awaited without sleeping:
/// [`wait_posts`](Self::wait_posts) blocks, [`posts_async`](Self::posts_async) is a future.
/// Dropping the collector stops and joins its threads.
///
/// ```
/// use mta_sts_testkit::{RecordType, World, probe};
///
/// let world = World::builder().build()?;
/// let collector = world.collector("reports.example.net")?;
/// collector.respond([500]);
/// collector.publish("example.com");
/// let record = probe::lookup(&world, "_smtp._tls.example.com", RecordType::Txt)?;
/// assert_eq!(record.txt(), [format!("v=TLSRPTv1; rua={}", collector.uri())]);
/// assert!(collector.uri().starts_with("https://reports.example.net:"));
///
/// // A report, as a reporter POSTs it (here by hand, through the world's CA).
/// let probe = probe::HttpsProbe::new(collector.addr(), std::sync::Arc::new(world.client_config()));
/// let status = collector.post_with(&probe, "application/tlsrpt+gzip", b"not gzip")?;
/// assert_eq!(status, 500); // scripted; the next ones get 200
/// let posts = collector.wait_posts(1, std::time::Duration::from_secs(5));
/// assert_eq!(posts[0].header("content-type"), Some("application/tlsrpt+gzip"));
/// assert_eq!(posts[0].body, b"not gzip");
/// assert_eq!(posts[0].report, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Collector {
    shared: Arc<CollectorShared>,
    world: Arc<Shared>,
    addr: SocketAddr,
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector")
            .field("host", &self.shared.host)
            .field("addr", &self.addr)
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// Starts a collector for `host` at `path` (see [`World::collector`](crate::World::collector)).
    pub(crate) fn start(world: &Arc<Shared>, host: &str, path: &str) -> io::Result<Self> {
        let host = normalize(host);
        let issued = world.pki.issue(&[host.as_str()])?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![issued.cert_der], PrivateKeyDer::Pkcs8(issued.key_der))
            .map_err(io::Error::other)?;
        let config = Arc::new(config);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(CollectorShared {
            host,
            path: path.to_owned(),
            log: Mutex::new(Log {
                script: VecDeque::new(),
                default_status: 200,
                posts: VecDeque::new(),
                count: 0,
                wakers: Vec::new(),
            }),
            arrived: Condvar::new(),
            sup: Arc::new(Supervisor::new(MAX_CONNECTIONS)),
        });
        let collector = Self {
            shared: Arc::clone(&shared),
            world: Arc::clone(world),
            addr,
        };
        let sup = Arc::clone(&shared.sup);
        sup.spawn("collector", move || {
            let sh = Arc::clone(&shared);
            shared
                .sup
                .accept_loop(&listener, "collector-conn", move |stream, guard| {
                    serve_conn(&sh, &config, stream, &guard);
                });
        })?;
        collector
            .world
            .add_record_at(&collector.shared.host, Record::A(Ipv4Addr::LOCALHOST));
        Ok(collector)
    }

    /// The collector's host name (its certificate's name; it resolves to 127.0.0.1 in the
    /// world's DNS).
    pub fn host(&self) -> &str {
        &self.shared.host
    }

    /// The address it listens on (127.0.0.1, an ephemeral port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The path it accepts reports at.
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    /// The `rua` URI of the collector: `https://<host>:<port><path>`.
    pub fn uri(&self) -> String {
        format!(
            "https://{}:{}{}",
            self.shared.host,
            self.port(),
            self.shared.path
        )
    }

    /// Publishes `v=TLSRPTv1; rua=<uri>` at `_smtp._tls.<domain>` in the world's DNS (besides
    /// the records already there). Returns the record's text.
    pub fn publish(&self, domain: &str) -> String {
        let text = format!("v=TLSRPTv1; rua={}", self.uri());
        self.world
            .add_record_at(&tlsrpt_name(domain), Record::Txt(Txt::new(&text)));
        text
    }

    /// Answers the next requests to the report path with these statuses, in order (after any
    /// still scripted); then the default status again. E.g. `[500, 500]` then 200: two failed
    /// submissions and a delivered one.
    pub fn respond(&self, statuses: impl IntoIterator<Item = u16>) {
        lock(&self.shared.log).script.extend(statuses);
    }

    /// The status answered once the script is used up (200 at start).
    pub fn set_default_status(&self, status: u16) {
        lock(&self.shared.log).default_status = status;
    }

    /// How many requests the collector has received (and answered) since it started.
    pub fn count(&self) -> usize {
        lock(&self.shared.log).count
    }

    /// The requests received, oldest first (at most [`MAX_POSTS_KEPT`], the latest ones).
    pub fn posts(&self) -> Vec<Post> {
        lock(&self.shared.log).posts.iter().cloned().collect()
    }

    /// Blocks until at least `n` requests have been received or `timeout` has passed, and
    /// returns the requests received (check their number: fewer than `n` means the time ran
    /// out).
    pub fn wait_posts(&self, n: usize, timeout: Duration) -> Vec<Post> {
        let deadline = Instant::now().checked_add(timeout);
        let mut log = lock(&self.shared.log);
        while log.count < n {
            let left = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                break;
            }
            log = self
                .shared
                .arrived
                .wait_timeout(log, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        log.posts.iter().cloned().collect()
    }

    /// A future that completes, with the requests received, once at least `n` have been
    /// received: for a test on an async runtime (bound it with the runtime's timeout).
    pub fn posts_async(&self, n: usize) -> impl Future<Output = Vec<Post>> + Send + 'static {
        WaitPosts {
            shared: Arc::clone(&self.shared),
            n,
        }
    }

    /// POSTs `body` with `content_type` to the collector's URI through `probe` (an HTTPS probe
    /// connected to [`addr`](Self::addr)), as a reporter would; returns the status answered.
    pub fn post_with(
        &self,
        probe: &crate::probe::HttpsProbe,
        content_type: &str,
        body: &[u8],
    ) -> Result<u16, crate::probe::ProbeError> {
        let mut s = probe.connect(&self.shared.host)?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.shared.path,
            self.shared.host,
            body.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        s.flush()?;
        let mut buf = Vec::new();
        (&mut s).take(64 * 1024).read_to_end(&mut buf)?;
        Ok(crate::probe::parse_response(&buf)?.status)
    }

    /// A handle on the number of the collector's running threads.
    pub fn threads(&self) -> Threads {
        self.shared.sup.threads()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shared.sup.close();
        // Wake the accept loop; it sees `closed` and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        self.shared.sup.join_all();
    }
}

/// The name of a domain's TLSRPT record: `_smtp._tls.<domain>` (RFC 8460 §3).
pub fn tlsrpt_name(domain: &str) -> String {
    format!("_smtp._tls.{}", normalize(domain))
}

struct WaitPosts {
    shared: Arc<CollectorShared>,
    n: usize,
}

impl Future for WaitPosts {
    type Output = Vec<Post>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<Post>> {
        let mut log = lock(&self.shared.log);
        if log.count >= self.n {
            return Poll::Ready(log.posts.iter().cloned().collect());
        }
        if !log.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            log.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

fn serve_conn(shared: &CollectorShared, config: &Arc<ServerConfig>, tcp: TcpStream, _: &ConnGuard) {
    let _ = tcp.set_read_timeout(Some(IDLE));
    let _ = tcp.set_write_timeout(Some(IDLE));
    let _ = tcp.set_nodelay(true);
    let Ok(conn) = ServerConnection::new(Arc::clone(config)) else {
        return;
    };
    let mut stream = StreamOwned::new(conn, tcp);
    let request = read_request(&mut stream);
    let sni = normalize(stream.conn.server_name().unwrap_or(""));
    let (head, body, error) = match request {
        Ok((head, body)) => (head, body, None),
        Err(ReadError::Status(head, status)) => (head, Vec::new(), Some(status)),
        Err(ReadError::Broken) => return,
    };
    let status = match error {
        Some(status) => status,
        None if head.path != shared.path => 404,
        None if head.method != "POST" => 405,
        None => shared.next_status(),
    };
    let report = gunzip(&body);
    let allow = [("Allow", "POST".to_owned())];
    let response = simple(status, if status == 405 { &allow } else { &[] });
    // Recorded before the answer goes out: once a client has its answer, the request is there.
    shared.record(Post {
        sni,
        method: head.method,
        path: head.path,
        headers: head.headers,
        body,
        report,
        status,
    });
    if stream.write_all(&response).is_ok() {
        finish(stream);
    }
}

/// The head of a request.
#[derive(Default)]
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

enum ReadError {
    /// Answer with this status (the head, as far as it was read, is recorded).
    Status(Head, u16),
    /// The connection broke: nothing to answer.
    Broken,
}

/// Reads a request head and its `Content-Length` body (at most [`MAX_POST_BODY`] bytes).
fn read_request(
    stream: &mut StreamOwned<ServerConnection, TcpStream>,
) -> Result<(Head, Vec<u8>), ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (head, body_start) = loop {
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Status(Head::default(), 431));
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(ReadError::Broken),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let head = Head {
                    method: req.method.unwrap_or_default().to_owned(),
                    path: req.path.unwrap_or_default().to_owned(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value).into_owned();
                            (h.name.to_owned(), value)
                        })
                        .collect(),
                };
                break (head, len);
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ReadError::Status(Head::default(), 431));
            }
            Err(_) => return Err(ReadError::Status(Head::default(), 400)),
        }
    };
    if header(&head.headers, "transfer-encoding").is_some() {
        // Reports are sent with a length (RFC 8460 §5.4 needs nothing else).
        return Err(ReadError::Status(head, 411));
    }
    let length = match header(&head.headers, "content-length").map(|v| v.trim().parse::<usize>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Err(ReadError::Status(head, 400)),
    };
    if length > MAX_POST_BODY {
        return Err(ReadError::Status(head, 413));
    }
    let mut body = buf.split_off(body_start.min(buf.len()));
    body.truncate(length);
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => return Err(ReadError::Broken),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Ok((head, body))
}

/// The first header of that name (case-insensitive).
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The gunzipped body, when it is gzip data inflating to at most [`MAX_GUNZIPPED`] bytes.
fn gunzip(body: &[u8]) -> Option<Vec<u8>> {
    if !body.starts_with(&[0x1f, 0x8b]) {
        return None;
    }
    let mut out = Vec::new();
    let limit = MAX_GUNZIPPED as u64 + 1;
    flate2::read::GzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() <= MAX_GUNZIPPED).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::gunzip;
    use std::io::Write;

    #[test]
    fn gunzip_reads_gzip_and_refuses_the_rest() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"report-id\":\"1\"}").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(gunzip(&gz).as_deref(), Some(&b"{\"report-id\":\"1\"}"[..]));
        assert_eq!(gunzip(b"plain"), None);
        assert_eq!(gunzip(&gz[..gz.len() / 2]), None);
    }

    #[test]
    fn gunzip_stops_at_the_cap() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(super::MAX_GUNZIPPED >> 20) + 1 {
            gz.write_all(&zeros).unwrap();
        }
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 100 * 1024);
        assert_eq!(gunzip(&gz), None);
    }
}
