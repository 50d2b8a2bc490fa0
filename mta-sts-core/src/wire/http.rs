//! HTTP/1.1 for a [`PolicyFetch`]: the GET request bytes, and an incremental parser of the
//! response that yields a [`FetchResult`]. With the feature `tlsrpt`, the same for a TLSRPT
//! report POST ([`post_request`], [`PostResponseParser`]).
//!
//! The parser is fed the bytes as they arrive (any split) and says when it is done. It enforces
//! every limit while reading: the head is capped at [`MAX_HEAD_SIZE`] bytes and [`MAX_HEADERS`]
//! fields, the body at the fetch's `max_body` (a larger `Content-Length` or chunk size fails at
//! once, and body bytes past the cap are never stored). Status and `Content-Type` are decided by
//! [`PolicyFetch::check_head`] as soon as the head is in: any status but 200 fails, a 3xx is
//! never followed (RFC 8461 §3.3). Bodies may be `Content-Length`, chunked (extensions and
//! trailers are skipped) or delimited by the end of the connection.
//!
//! ```
//! use mta_sts_core::io::PolicyFetch;
//! use mta_sts_core::wire::http::{Progress, ResponseParser, request};
//!
//! let fetch = PolicyFetch::new("mta-sts.example.com");
//! let req = request(&fetch)?; // write these bytes on the TLS stream
//! assert!(req.starts_with(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n"));
//!
//! let mut parser = ResponseParser::new(&fetch);
//! assert_eq!(parser.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"), Progress::Partial);
//! let Progress::Complete(result) = parser.feed(b"Content-Length: 5\r\n\r\nhello") else {
//!     panic!("the whole body is in");
//! };
//! assert_eq!(result?.body, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use crate::io::{FetchFailure, FetchResponse, FetchResult, POLICY_PATH, PolicyFetch};
#[cfg(feature = "tlsrpt")]
use crate::tlsrpt::{PostResponse, PostResult, ReportPost};

/// The `User-Agent` sent: `mta-sts/<crate version>`.
///
/// ```
/// assert!(mta_sts_core::wire::http::USER_AGENT.starts_with("mta-sts/"));
/// ```
pub const USER_AGENT: &str = concat!("mta-sts/", env!("CARGO_PKG_VERSION"));

/// The largest response head (status line and header fields, each interim 1xx response
/// counted alone) accepted, in bytes; the trailer section of a chunked body has the same cap.
///
/// ```
/// assert_eq!(mta_sts_core::wire::http::MAX_HEAD_SIZE, 16 * 1024);
/// ```
pub const MAX_HEAD_SIZE: usize = 16 * 1024;

/// The most header fields a response head may have.
///
/// ```
/// assert_eq!(mta_sts_core::wire::http::MAX_HEADERS, 64);
/// ```
pub const MAX_HEADERS: usize = 64;

/// The most interim (1xx) responses skipped before the final one.
///
/// ```
/// assert_eq!(mta_sts_core::wire::http::MAX_INTERIM_RESPONSES, 4);
/// ```
pub const MAX_INTERIM_RESPONSES: usize = 4;

/// The longest chunk-size line (size, extensions and line end) of a chunked body, in bytes.
///
/// ```
/// assert_eq!(mta_sts_core::wire::http::MAX_CHUNK_LINE, 4096);
/// ```
pub const MAX_CHUNK_LINE: usize = 4096;

/// A policy host that cannot be put in a request (not an ASCII host name).
///
/// ```
/// use mta_sts_core::io::PolicyFetch;
/// use mta_sts_core::wire::http::request;
/// let err = request(&PolicyFetch::new("evil.example\r\nX-Injected: 1")).unwrap_err();
/// assert!(err.to_string().contains("not a host name"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHost {
    host: String,
}

impl InvalidHost {
    /// The host that was refused.
    ///
    /// ```
    /// # use mta_sts_core::io::PolicyFetch;
    /// # use mta_sts_core::wire::http::request;
    /// assert_eq!(request(&PolicyFetch::new("")).unwrap_err().host(), "");
    /// ```
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl fmt::Display for InvalidHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy host {:?} is not a host name in A-labels",
            self.host
        )
    }
}

impl std::error::Error for InvalidHost {}

/// The request bytes of a [`PolicyFetch`]: `GET /.well-known/mta-sts.txt` with `Host`,
/// `User-Agent` ([`USER_AGENT`]), `Accept: text/plain` and `Connection: close`. No caching or
/// conditional header is ever sent (RFC 8461 §3.3: HTTP caching MUST NOT be used).
///
/// The host must be a host name in A-labels (letters, digits, `-`, `_`, `.`; at most 253
/// bytes), which also keeps anything from being injected into the request.
///
/// ```
/// use mta_sts_core::io::PolicyFetch;
/// use mta_sts_core::wire::http::{USER_AGENT, request};
/// let mut fetch = PolicyFetch::new("mta-sts.example.com");
/// fetch.port = 8443;
/// let req = String::from_utf8(request(&fetch)?)?;
/// assert_eq!(req, format!(
///     "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com:8443\r\n\
///      User-Agent: {USER_AGENT}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn request(fetch: &PolicyFetch) -> Result<Vec<u8>, InvalidHost> {
    let host = fetch.host.as_str();
    let valid = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(InvalidHost {
            host: host.to_owned(),
        });
    }
    let authority = if fetch.port == 443 {
        host.to_owned()
    } else {
        format!("{host}:{}", fetch.port)
    };
    Ok(format!(
        "GET {POLICY_PATH} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {USER_AGENT}\r\n\
         Accept: text/plain\r\nConnection: close\r\n\r\n"
    )
    .into_bytes())
}

/// Where a [`ResponseParser`] stands after [`feed`](ResponseParser::feed).
///
/// ```
/// use mta_sts_core::io::{FetchFailure, PolicyFetch};
/// use mta_sts_core::wire::http::{Progress, ResponseParser};
/// let mut p = ResponseParser::new(&PolicyFetch::new("mta-sts.example.com"));
/// assert_eq!(
///     p.feed(b"HTTP/1.1 404 Not Found\r\n\r\n"),
///     Progress::Complete(Err(FetchFailure::Status(404)))
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a complete response ends the reading"]
pub enum Progress {
    /// More bytes are needed (or the end of the connection: [`ResponseParser::finish`]).
    Partial,
    /// The response is complete, or failed: stop reading and close the connection.
    Complete(FetchResult),
}

#[derive(Debug, Clone)]
enum State {
    Head {
        buf: Vec<u8>,
        interim: usize,
    },
    Body {
        response: FetchResponse,
        framing: Framing,
    },
    Done(FetchResult),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length`: this many bytes are still to come.
    Length(usize),
    /// Until the connection closes.
    Close,
    Chunked(Chunk),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line; this many bytes of it so far (kept in `line`).
    Size,
    /// This many bytes of chunk data are still to come.
    Data(usize),
    /// The CRLF after chunk data; true once the CR is seen.
    DataEnd(bool),
    /// The trailer section; this many bytes of it so far.
    Trailers(usize),
}

/// An incremental HTTP/1.x response parser for one [`PolicyFetch`] (httparse for the head).
///
/// ```
/// use mta_sts_core::io::PolicyFetch;
/// use mta_sts_core::wire::http::{Progress, ResponseParser};
/// let mut p = ResponseParser::new(&PolicyFetch::new("mta-sts.example.com"));
/// let response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
///                  4\r\nvers\r\n0\r\n\r\n";
/// for byte in response.chunks(1) {
///     if let Progress::Complete(result) = p.feed(byte) {
///         assert_eq!(result.unwrap().body, b"vers");
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ResponseParser {
    fetch: PolicyFetch,
    /// A policy response must be 200 `text/plain`; a report POST's response may have any final
    /// status ([`PostResponseParser`]).
    any_status: bool,
    state: State,
    /// The chunk-size or trailer line being read.
    line: Vec<u8>,
    /// The stream has ended ([`finish`](Self::finish)).
    eof: bool,
}

impl ResponseParser {
    /// A parser for the response to `fetch` (its `max_body` and Content-Type check apply).
    ///
    /// ```
    /// # use mta_sts_core::io::PolicyFetch;
    /// # use mta_sts_core::wire::http::ResponseParser;
    /// let p = ResponseParser::new(&PolicyFetch::new("mta-sts.example.com"));
    /// # drop(p);
    /// ```
    pub fn new(fetch: &PolicyFetch) -> Self {
        Self {
            fetch: fetch.clone(),
            any_status: false,
            state: State::Head {
                buf: Vec::new(),
                interim: 0,
            },
            line: Vec::new(),
            eof: false,
        }
    }

    /// Parses a whole response at once: [`feed`](Self::feed) then [`finish`](Self::finish).
    ///
    /// ```
    /// use mta_sts_core::io::{FetchFailure, PolicyFetch};
    /// use mta_sts_core::wire::http::ResponseParser;
    /// let fetch = PolicyFetch::new("mta-sts.example.com");
    /// let moved = b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.example/\r\n\r\n";
    /// assert_eq!(ResponseParser::parse(&fetch, moved), Err(FetchFailure::Redirect(301)));
    /// ```
    pub fn parse(fetch: &PolicyFetch, response: &[u8]) -> FetchResult {
        let mut parser = Self::new(fetch);
        match parser.feed(response) {
            Progress::Complete(result) => result,
            Progress::Partial => parser.finish(),
        }
    }

    /// Takes the next bytes read from the connection (any amount, including none). Once
    /// [`Progress::Complete`], every later call returns the same result and bytes after the end
    /// of the response are ignored.
    ///
    /// ```
    /// use mta_sts_core::io::{FetchFailure, PolicyFetch};
    /// use mta_sts_core::wire::http::{Progress, ResponseParser};
    /// let mut fetch = PolicyFetch::new("mta-sts.example.com");
    /// fetch.max_body = 10;
    /// let mut p = ResponseParser::new(&fetch);
    /// let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n";
    /// // Announced above the cap: fails before any body byte is read.
    /// assert_eq!(p.feed(head), Progress::Complete(Err(FetchFailure::BodyTooLarge { limit: 10 })));
    /// ```
    pub fn feed(&mut self, data: &[u8]) -> Progress {
        self.consume(data);
        match &self.state {
            State::Done(result) => Progress::Complete(result.clone()),
            State::Head { .. } | State::Body { .. } => Progress::Partial,
        }
    }

    /// The connection was closed (end of stream): ends a close-delimited body, and fails a
    /// response that is not complete.
    ///
    /// ```
    /// use mta_sts_core::io::PolicyFetch;
    /// use mta_sts_core::wire::http::{Progress, ResponseParser};
    /// let mut p = ResponseParser::new(&PolicyFetch::new("mta-sts.example.com"));
    /// let head_and_body = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\n";
    /// assert_eq!(p.feed(head_and_body), Progress::Partial);
    /// assert_eq!(p.finish().unwrap().body, b"version: STSv1\n");
    /// ```
    pub fn finish(&mut self) -> FetchResult {
        // Give the head parser a last look at what it holds (it may be an error, or even a
        // complete head).
        if let State::Head { buf, interim } = &mut self.state {
            let pending = core::mem::take(buf);
            self.state = State::Head {
                buf: Vec::new(),
                interim: *interim,
            };
            self.eof = true;
            self.consume(&pending);
        }
        let result = match &mut self.state {
            State::Done(result) => return result.clone(),
            State::Head { buf, .. } if buf.is_empty() => {
                Err(protocol("connection closed before any response"))
            }
            State::Head { .. } => Err(protocol("connection closed inside the response head")),
            State::Body {
                response,
                framing: Framing::Close,
            } => Ok(core::mem::replace(
                response,
                FetchResponse::new(0, None, Vec::new()),
            )),
            State::Body {
                response,
                framing: Framing::Length(left),
            } => Err(protocol(&format!(
                "connection closed after {} body bytes, {left} missing",
                response.body.len()
            ))),
            State::Body {
                framing: Framing::Chunked(_),
                ..
            } => Err(protocol("connection closed inside the chunked body")),
        };
        self.state = State::Done(result.clone());
        result
    }

    fn fail(&mut self, failure: FetchFailure) {
        self.state = State::Done(Err(failure));
    }

    fn consume(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let used = match &self.state {
                State::Done(_) => return,
                State::Head { .. } => self.head(data),
                State::Body { .. } => self.body(data),
            };
            data = data.get(used..).unwrap_or_default();
        }
        // A head complete with an empty body ends the response without further bytes.
        if let State::Body {
            framing: Framing::Length(0),
            ..
        } = self.state
        {
            self.complete();
        }
    }

    fn complete(&mut self) {
        let state = core::mem::replace(&mut self.state, State::Done(Err(protocol("internal"))));
        self.state = match state {
            State::Body { response, .. } => State::Done(Ok(response)),
            other => other,
        };
    }

    /// Reads head bytes; returns how many of `data` were used.
    fn head(&mut self, data: &[u8]) -> usize {
        let State::Head { buf, .. } = &mut self.state else {
            return 0;
        };
        let old = buf.len();
        let take = data.len().min(MAX_HEAD_SIZE - old);
        buf.extend_from_slice(&data[..take]);
        // Parse only when the end of the head may have come (a line end followed by an empty
        // line), when the buffer is full, or at the end of the stream: linear time whatever the
        // read sizes. httparse's verdict on a prefix stands for any longer input, so the result
        // does not depend on where the reads were split.
        let window = &buf[old.saturating_sub(2)..];
        let maybe_end = self.eof
            || buf.len() >= MAX_HEAD_SIZE
            || window.windows(2).any(|w| w == b"\n\n")
            || window.windows(3).any(|w| w == b"\n\r\n");
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        let status = if maybe_end {
            parsed.parse(buf)
        } else {
            Ok(httparse::Status::Partial)
        };
        match status {
            Err(e) => {
                let failure = protocol(&format!("bad response head: {e}"));
                self.fail(failure);
                take
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() >= MAX_HEAD_SIZE {
                    let failure = protocol(&format!("response head over {MAX_HEAD_SIZE} bytes"));
                    self.fail(failure);
                }
                take
            }
            Ok(httparse::Status::Complete(end)) => {
                let head = Head::read(&parsed);
                // The bytes of `data` after the head, some of which may already sit in `buf`.
                let already = buf.len() - end;
                let used = take.saturating_sub(already);
                self.start_body(head);
                used
            }
        }
    }

    fn start_body(&mut self, head: Result<Head, FetchFailure>) {
        let head = match head {
            Ok(h) => h,
            Err(failure) => return self.fail(failure),
        };
        if (100..200).contains(&head.status) && head.status != 101 {
            let interim = match &self.state {
                State::Head { interim, .. } => interim + 1,
                _ => 1,
            };
            if interim > MAX_INTERIM_RESPONSES {
                return self.fail(protocol("too many interim (1xx) responses"));
            }
            self.state = State::Head {
                buf: Vec::new(),
                interim,
            };
            return;
        }
        if !self.any_status
            && let Err(failure) = self
                .fetch
                .check_head(head.status, head.content_type.as_deref())
        {
            return self.fail(failure);
        }
        let limit = self.fetch.max_body;
        let framing = match head.framing(limit) {
            Ok(f) => f,
            Err(failure) => return self.fail(failure),
        };
        let capacity = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let response = FetchResponse::new(
            head.status,
            head.content_type.as_deref(),
            Vec::with_capacity(capacity),
        );
        self.state = State::Body { response, framing };
    }

    /// Reads body bytes; returns how many of `data` were used.
    fn body(&mut self, data: &[u8]) -> usize {
        let limit = self.fetch.max_body;
        let State::Body { response, framing } = &mut self.state else {
            return 0;
        };
        let body = &mut response.body;
        match framing {
            Framing::Length(left) => {
                let take = data.len().min(*left);
                body.extend_from_slice(&data[..take]);
                *left -= take;
                if *left == 0 {
                    self.complete();
                }
                take
            }
            Framing::Close => {
                if body.len() + data.len() > limit {
                    self.fail(FetchFailure::BodyTooLarge { limit });
                } else {
                    body.extend_from_slice(data);
                }
                data.len()
            }
            Framing::Chunked(chunk) => match *chunk {
                Chunk::Data(left) => {
                    let take = data.len().min(left);
                    body.extend_from_slice(&data[..take]);
                    *chunk = if take == left {
                        Chunk::DataEnd(false)
                    } else {
                        Chunk::Data(left - take)
                    };
                    take
                }
                Chunk::DataEnd(seen_cr) => {
                    let Some(&byte) = data.first() else { return 0 };
                    match (byte, seen_cr) {
                        (b'\r', false) => *chunk = Chunk::DataEnd(true),
                        (b'\n', _) => *chunk = Chunk::Size,
                        _ => self.fail(protocol("chunk data not followed by CRLF")),
                    }
                    1
                }
                Chunk::Size => {
                    let room = MAX_CHUNK_LINE.saturating_sub(self.line.len());
                    let (used, complete) = take_line(&mut self.line, data, room);
                    if !complete {
                        if self.line.len() >= MAX_CHUNK_LINE {
                            self.fail(protocol("chunk size line too long"));
                        }
                        return used;
                    }
                    let size = chunk_size(&self.line);
                    self.line.clear();
                    let size = match size {
                        Ok(size) => size,
                        Err(failure) => {
                            self.fail(failure);
                            return used;
                        }
                    };
                    if size == 0 {
                        *chunk = Chunk::Trailers(0);
                    } else if size > limit.saturating_sub(body.len()) {
                        self.fail(FetchFailure::BodyTooLarge { limit });
                    } else {
                        *chunk = Chunk::Data(size);
                    }
                    used
                }
                Chunk::Trailers(seen) => {
                    let room = MAX_HEAD_SIZE.saturating_sub(seen);
                    let (used, complete) = take_line(&mut self.line, data, room);
                    let seen = seen + used;
                    if !complete {
                        *chunk = Chunk::Trailers(seen);
                        if seen >= MAX_HEAD_SIZE {
                            self.fail(protocol("chunked trailer section too large"));
                        }
                        return used;
                    }
                    let empty = matches!(self.line.as_slice(), b"\n" | b"\r\n");
                    self.line.clear();
                    *chunk = Chunk::Trailers(seen);
                    if empty {
                        self.complete();
                    }
                    used
                }
            },
        }
    }
}

/// Appends to `line` the bytes of `data` up to and including the first LF, taking at most
/// `max_take` bytes. Returns how many bytes of `data` were used and whether the line is complete.
fn take_line(line: &mut Vec<u8>, data: &[u8], max_take: usize) -> (usize, bool) {
    let (take, complete) = match data.iter().position(|&b| b == b'\n') {
        Some(i) if i < max_take => (i + 1, true),
        _ => (data.len().min(max_take), false),
    };
    line.extend_from_slice(&data[..take]);
    (take, complete)
}

/// The size on a chunk-size line (ending in LF or CRLF; extensions skipped).
fn chunk_size(line: &[u8]) -> Result<usize, FetchFailure> {
    if !line.first().is_some_and(u8::is_ascii_hexdigit) {
        return Err(protocol("invalid chunk size"));
    }
    // httparse wants CRLF; a bare LF is accepted as a line end (RFC 9112 §2.2).
    let mut owned;
    let line = if line.ends_with(b"\r\n") {
        line
    } else {
        owned = line[..line.len() - 1].to_vec();
        owned.extend_from_slice(b"\r\n");
        &owned
    };
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((_, size))) => {
            usize::try_from(size).map_err(|_| protocol("chunk size out of range"))
        }
        _ => Err(protocol("invalid chunk size")),
    }
}

fn protocol(detail: &str) -> FetchFailure {
    FetchFailure::Protocol(detail.to_owned())
}

/// What the parser needs from a response head.
struct Head {
    status: u16,
    content_type: Option<String>,
    content_length: Option<u64>,
    chunked: bool,
}

impl Head {
    fn read(parsed: &httparse::Response<'_, '_>) -> Result<Self, FetchFailure> {
        let status = parsed.code.ok_or_else(|| protocol("no status code"))?;
        let mut content_type: Option<String> = None;
        let mut content_length: Option<u64> = None;
        let mut codings: Vec<String> = Vec::new();
        for h in parsed.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-type") {
                if content_type.is_some() {
                    return Err(protocol("several Content-Type fields"));
                }
                content_type = Some(String::from_utf8_lossy(h.value).into_owned());
            } else if name.eq_ignore_ascii_case("content-length") {
                for v in split_list(h.value)? {
                    let n = parse_length(v)?;
                    if content_length.is_some_and(|m| m != n) {
                        return Err(protocol("conflicting Content-Length values"));
                    }
                    content_length = Some(n);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                for v in split_list(h.value)? {
                    if codings.len() >= 8 {
                        return Err(protocol("too many transfer codings"));
                    }
                    codings.push(v.to_ascii_lowercase());
                }
            } else if name.eq_ignore_ascii_case("content-encoding") {
                for v in split_list(h.value)? {
                    if !v.eq_ignore_ascii_case("identity") {
                        return Err(protocol(&format!("unsupported Content-Encoding {v:?}")));
                    }
                }
            }
        }
        let chunked = match codings.as_slice() {
            [] => false,
            [only] if only == "chunked" => true,
            other => {
                return Err(protocol(&format!(
                    "unsupported Transfer-Encoding {:?}",
                    other.join(", ")
                )));
            }
        };
        Ok(Self {
            status,
            content_type,
            content_length,
            chunked,
        })
    }

    /// How the body is delimited (RFC 9112 §6.3: Transfer-Encoding overrides Content-Length).
    fn framing(&self, limit: usize) -> Result<Framing, FetchFailure> {
        if self.chunked {
            return Ok(Framing::Chunked(Chunk::Size));
        }
        match self.content_length {
            None => Ok(Framing::Close),
            Some(n) => match usize::try_from(n) {
                Ok(n) if n <= limit => Ok(Framing::Length(n)),
                _ => Err(FetchFailure::BodyTooLarge { limit }),
            },
        }
    }
}

/// The non-empty elements of a comma-separated field value.
fn split_list(value: &[u8]) -> Result<impl Iterator<Item = &str>, FetchFailure> {
    let value = core::str::from_utf8(value).map_err(|_| protocol("header value is not UTF-8"))?;
    Ok(value
        .split(',')
        .map(|v| v.trim_matches([' ', '\t']))
        .filter(|v| !v.is_empty()))
}

fn parse_length(v: &str) -> Result<u64, FetchFailure> {
    if !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(protocol(&format!("invalid Content-Length {v:?}")));
    }
    // All digits: the only possible error is overflow, which is certainly over any cap.
    Ok(v.parse::<u64>().unwrap_or(u64::MAX))
}

/// The request bytes of a TLSRPT report [`ReportPost`] (RFC 8460 §5.4): the same as
/// [`ReportPost::request`], here beside the policy fetch's [`request`] so that adapters find
/// both codecs in one place.
///
/// ```
/// use mta_sts_core::tlsrpt::ReportPost;
/// use mta_sts_core::wire::http::post_request;
///
/// let post = ReportPost::new("tlsrpt.example.net", 443, "/v1/report", vec![0x1f, 0x8b]);
/// let bytes = post_request(&post);
/// assert!(bytes.starts_with(b"POST /v1/report HTTP/1.1\r\nHost: tlsrpt.example.net\r\n"));
/// assert!(bytes.ends_with(b"\r\n\r\n\x1f\x8b"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "tlsrpt")]
pub fn post_request(post: &ReportPost) -> Vec<u8> {
    post.request()
}

/// Where a [`PostResponseParser`] stands after [`feed`](PostResponseParser::feed).
#[cfg(feature = "tlsrpt")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a complete response ends the reading"]
pub enum PostProgress {
    /// More bytes are needed (or the end of the connection: [`PostResponseParser::finish`]).
    Partial,
    /// The response is complete, or failed: stop reading and close the connection.
    Complete(PostResult),
}

/// An incremental parser of the response to a report [`ReportPost`]: the same HTTP/1.x reader
/// as [`ResponseParser`] (head capped at [`MAX_HEAD_SIZE`] bytes and [`MAX_HEADERS`] fields,
/// interim 1xx responses skipped, `Content-Length`, chunked or close-delimited bodies), with
/// the body capped at the post's `max_response` bytes and never kept.
///
/// Every final status is a [`PostResponse`]: the [`Outbox`](crate::tlsrpt::Outbox) counts a
/// 2xx as delivered and anything else (a 3xx is never followed) as a failure to retry. A body
/// over the cap, a response that is not HTTP, or a connection closed mid-response is a
/// [`FetchFailure`] (a failure as well).
///
/// ```
/// use mta_sts_core::tlsrpt::ReportPost;
/// use mta_sts_core::wire::http::{PostProgress, PostResponseParser};
///
/// let post = ReportPost::new("tlsrpt.example.net", 443, "/", Vec::new());
/// let mut parser = PostResponseParser::new(&post);
/// assert_eq!(parser.feed(b"HTTP/1.1 202 Accepted\r\n"), PostProgress::Partial);
/// let PostProgress::Complete(result) = parser.feed(b"Content-Length: 2\r\n\r\nok") else {
///     panic!("the whole response is in");
/// };
/// assert_eq!(result?.status, 202);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "tlsrpt")]
#[derive(Debug, Clone)]
pub struct PostResponseParser {
    inner: ResponseParser,
}

#[cfg(feature = "tlsrpt")]
impl PostResponseParser {
    /// A parser for the response to `post` (its `max_response` caps the body).
    pub fn new(post: &ReportPost) -> Self {
        let fetch = PolicyFetch {
            max_body: post.max_response,
            content_type: crate::io::ContentTypeCheck::Lenient,
            ..PolicyFetch::new(post.host.as_str())
        };
        let mut inner = ResponseParser::new(&fetch);
        inner.any_status = true;
        Self { inner }
    }

    /// Parses a whole response at once: [`feed`](Self::feed) then [`finish`](Self::finish).
    ///
    /// ```
    /// use mta_sts_core::tlsrpt::ReportPost;
    /// use mta_sts_core::wire::http::PostResponseParser;
    /// let post = ReportPost::new("tlsrpt.example.net", 443, "/", Vec::new());
    /// let moved = b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.example/\r\n\r\n";
    /// // Not followed: the status is handed on, and the outbox counts it as a failure.
    /// assert_eq!(PostResponseParser::parse(&post, moved)?.status, 301);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse(post: &ReportPost, response: &[u8]) -> PostResult {
        let mut parser = Self::new(post);
        match parser.feed(response) {
            PostProgress::Complete(result) => result,
            PostProgress::Partial => parser.finish(),
        }
    }

    /// Takes the next bytes read from the connection (any amount, including none). Once
    /// [`PostProgress::Complete`], every later call returns the same result.
    pub fn feed(&mut self, data: &[u8]) -> PostProgress {
        match self.inner.feed(data) {
            Progress::Partial => PostProgress::Partial,
            Progress::Complete(result) => PostProgress::Complete(post_result(result)),
        }
    }

    /// The connection was closed (end of stream): ends a close-delimited body, and fails a
    /// response that is not complete.
    pub fn finish(&mut self) -> PostResult {
        post_result(self.inner.finish())
    }
}

#[cfg(feature = "tlsrpt")]
fn post_result(result: FetchResult) -> PostResult {
    result.map(|response| PostResponse::new(response.status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::ContentTypeCheck;

    const POLICY: &[u8] =
        b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 86400\r\n";

    fn fetch() -> PolicyFetch {
        PolicyFetch::new("mta-sts.example.com")
    }

    fn capped(limit: usize) -> PolicyFetch {
        let mut f = fetch();
        f.max_body = limit;
        f
    }

    fn ok(body: &[u8]) -> FetchResult {
        Ok(FetchResponse::new(200, Some("text/plain"), body))
    }

    fn with_length(body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn chunked(chunks: &[&[u8]], tail: &[u8]) -> Vec<u8> {
        let mut r =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        for c in chunks {
            r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            r.extend_from_slice(c);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(tail);
        r
    }

    /// Feeds `bytes` split at the given offsets, then finishes.
    fn parse_split(f: &PolicyFetch, bytes: &[u8], cuts: &[usize]) -> FetchResult {
        let mut p = ResponseParser::new(f);
        let mut start = 0;
        for &cut in cuts.iter().chain(core::iter::once(&bytes.len())) {
            let cut = cut.clamp(start, bytes.len());
            if let Progress::Complete(r) = p.feed(&bytes[start..cut]) {
                return r;
            }
            start = cut;
        }
        p.finish()
    }

    #[test]
    fn r17_request_has_no_caching_or_conditional_headers() {
        let req = String::from_utf8(request(&fetch()).expect("valid host")).expect("ascii");
        assert!(req.starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n"));
        assert!(req.contains("\r\nHost: mta-sts.example.com\r\n"));
        assert!(req.contains(&format!(
            "\r\nUser-Agent: mta-sts/{}\r\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(req.contains("\r\nConnection: close\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
        let lower = req.to_ascii_lowercase();
        for forbidden in ["if-", "cache-control", "pragma", "etag"] {
            assert!(!lower.contains(forbidden), "{forbidden} in {req}");
        }
        let mut head = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Request::new(&mut head);
        assert_eq!(
            parsed.parse(req.as_bytes()),
            Ok(httparse::Status::Complete(req.len()))
        );
    }

    #[test]
    fn r13_request_refuses_hosts_that_are_not_names() {
        for bad in [
            "",
            ".example.com",
            "a b",
            "a\r\nb",
            "bücher.example",
            "a/b",
            "a:443",
            &"a".repeat(254),
        ] {
            assert!(request(&PolicyFetch::new(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http_content_length_body() {
        assert_eq!(
            ResponseParser::parse(&fetch(), &with_length(POLICY)),
            ok(POLICY)
        );
    }

    #[test]
    fn http_empty_content_length_completes_without_more_bytes() {
        let mut p = ResponseParser::new(&fetch());
        assert_eq!(p.feed(&with_length(b"")), Progress::Complete(ok(b"")));
    }

    #[test]
    fn http_close_delimited_body_ends_at_eof() {
        let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        r.extend_from_slice(POLICY);
        let mut p = ResponseParser::new(&fetch());
        assert_eq!(p.feed(&r), Progress::Partial);
        assert_eq!(p.finish(), ok(POLICY));
        assert_eq!(
            p.feed(b"more"),
            Progress::Complete(ok(POLICY)),
            "stays done"
        );
    }

    #[test]
    fn http_chunked_body_split_at_every_byte_boundary() {
        let r = chunked(
            &[
                b"version: STSv1\r\n",
                b"mode: enforce\r\nmx: mail.example.com\r\n",
                b"max_age: 86400\r\n",
            ],
            b"0\r\n\r\n",
        );
        for a in 0..=r.len() {
            assert_eq!(parse_split(&fetch(), &r, &[a]), ok(POLICY), "split at {a}");
        }
        for a in 0..r.len() {
            for b in (a..r.len()).step_by(7) {
                assert_eq!(
                    parse_split(&fetch(), &r, &[a, b]),
                    ok(POLICY),
                    "split at {a}, {b}"
                );
            }
        }
        let one_by_one: Vec<usize> = (0..r.len()).collect();
        assert_eq!(parse_split(&fetch(), &r, &one_by_one), ok(POLICY));
    }

    #[test]
    fn http_chunk_extensions_and_trailers_are_skipped() {
        let r =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: Chunked\r\n\r\n\
                  5;name=value;other=\"q;uoted\"\r\nhello\r\n\
                  6 ; ext\r\n world\r\n\
                  0;last\r\nExpires: never\r\nX-Checksum: 1234\r\n\r\ntrailing garbage";
        assert_eq!(ResponseParser::parse(&fetch(), r), ok(b"hello world"));
    }

    #[test]
    fn http_chunked_accepts_bare_lf_line_ends() {
        let r = b"HTTP/1.1 200 OK\nContent-Type: text/plain\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n";
        assert_eq!(ResponseParser::parse(&fetch(), r), ok(b"abc"));
    }

    #[test]
    fn http_chunked_errors_are_protocol_failures() {
        for tail in [
            &b"zz\r\nab\r\n0\r\n\r\n"[..], // not hex
            b";ext\r\n\r\n",               // no size digits
            b"2\r\nabX\r\n0\r\n\r\n",      // no CRLF after data
            b"fffffffffffffffff\r\n",      // 17 hex digits
        ] {
            let r = chunked(&[], tail);
            assert!(
                matches!(
                    ResponseParser::parse(&fetch(), &r),
                    Err(FetchFailure::Protocol(_))
                ),
                "{tail:?}"
            );
        }
        // Ends before the last chunk.
        let r = chunked(&[b"abc"], b"");
        assert!(matches!(
            ResponseParser::parse(&fetch(), &r),
            Err(FetchFailure::Protocol(_))
        ));
        // A chunk-size line that never ends.
        let mut r = chunked(&[], b"1;");
        r.extend(core::iter::repeat_n(b'x', MAX_CHUNK_LINE));
        assert!(matches!(
            ResponseParser::parse(&fetch(), &r),
            Err(FetchFailure::Protocol(_))
        ));
        // A trailer section that never ends.
        let mut r = chunked(&[b"a"], b"0\r\n");
        r.extend(core::iter::repeat_n(b"X-A: b\r\n", MAX_HEAD_SIZE / 8 + 1).flatten());
        assert!(matches!(
            ResponseParser::parse(&fetch(), &r),
            Err(FetchFailure::Protocol(_))
        ));
    }

    #[test]
    fn r19_body_cap_hit_exactly_is_accepted() {
        let body = vec![b'a'; 100];
        assert_eq!(
            ResponseParser::parse(&capped(100), &with_length(&body)),
            ok(&body)
        );
        assert_eq!(
            ResponseParser::parse(
                &capped(100),
                &chunked(&[&body[..60], &body[60..]], b"0\r\n\r\n")
            ),
            ok(&body)
        );
        let mut close = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        close.extend_from_slice(&body);
        assert_eq!(ResponseParser::parse(&capped(100), &close), ok(&body));
    }

    #[test]
    fn r19_body_cap_exceeded_by_one_byte() {
        let too_big = FetchFailure::BodyTooLarge { limit: 100 };
        let body = vec![b'a'; 101];
        assert_eq!(
            ResponseParser::parse(&capped(100), &with_length(&body)),
            Err(too_big.clone())
        );
        assert_eq!(
            ResponseParser::parse(
                &capped(100),
                &chunked(&[&body[..100], &body[100..]], b"0\r\n\r\n")
            ),
            Err(too_big.clone())
        );
        let mut close = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        close.extend_from_slice(&body);
        // Fed one byte at a time: fails on byte 101, never stores it.
        let cuts: Vec<usize> = (0..close.len()).collect();
        assert_eq!(parse_split(&capped(100), &close, &cuts), Err(too_big));
    }

    #[test]
    fn r19_body_cap_exceeded_by_content_length_announcement() {
        let mut p = ResponseParser::new(&fetch());
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 70000\r\n\r\n";
        assert_eq!(
            p.feed(head),
            Progress::Complete(Err(FetchFailure::BodyTooLarge { limit: 64 * 1024 }))
        );
        let huge = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(
            ResponseParser::parse(&fetch(), huge),
            Err(FetchFailure::BodyTooLarge { limit: 64 * 1024 })
        );
    }

    #[test]
    fn r19_body_cap_exceeded_by_chunk_announcement() {
        let mut p = ResponseParser::new(&capped(10));
        let r = chunked(&[b"12345"], b"6\r\n");
        assert_eq!(
            p.feed(&r),
            Progress::Complete(Err(FetchFailure::BodyTooLarge { limit: 10 }))
        );
        assert_eq!(
            p.feed(&[]),
            Progress::Complete(Err(FetchFailure::BodyTooLarge { limit: 10 }))
        );
        let huge = chunked(&[], b"ffffffffffffff\r\n");
        assert_eq!(
            ResponseParser::parse(&capped(10), &huge),
            Err(FetchFailure::BodyTooLarge { limit: 10 })
        );
    }

    #[test]
    fn r19_seventy_kilobyte_body_is_refused_by_default() {
        let body = vec![b'x'; 70 * 1024];
        let r = chunked(&[&body[..40_000], &body[40_000..]], b"0\r\n\r\n");
        assert_eq!(
            ResponseParser::parse(&fetch(), &r),
            Err(FetchFailure::BodyTooLarge { limit: 65536 })
        );
    }

    #[test]
    fn r15_non_200_statuses_fail() {
        for (status, want) in [
            (404, FetchFailure::Status(404)),
            (500, FetchFailure::Status(500)),
            (204, FetchFailure::Status(204)),
        ] {
            let r = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc"
            );
            assert_eq!(ResponseParser::parse(&fetch(), r.as_bytes()), Err(want));
        }
    }

    #[test]
    fn r16_redirect_not_followed() {
        for status in [301, 302, 307, 308] {
            let r = format!(
                "HTTP/1.1 {status} Moved\r\nLocation: https://evil.example/.well-known/mta-sts.txt\r\n\
                 Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
            );
            let mut p = ResponseParser::new(&fetch());
            // Decided on the head alone, without waiting for a body.
            assert_eq!(
                p.feed(r.as_bytes()),
                Progress::Complete(Err(FetchFailure::Redirect(status)))
            );
        }
    }

    #[test]
    fn r18_content_types() {
        let with_type = |ct: Option<&str>| {
            let ct = ct
                .map(|c| format!("Content-Type: {c}\r\n"))
                .unwrap_or_default();
            format!("HTTP/1.1 200 OK\r\n{ct}Content-Length: 2\r\n\r\nab").into_bytes()
        };
        for good in [
            "text/plain; charset=utf-8",
            "TEXT/PLAIN",
            "text/plain",
            "Text/Plain;charset=us-ascii",
        ] {
            let got = ResponseParser::parse(&fetch(), &with_type(Some(good)));
            assert_eq!(
                got,
                Ok(FetchResponse::new(200, Some(good), b"ab".to_vec())),
                "{good}"
            );
        }
        assert_eq!(
            ResponseParser::parse(&fetch(), &with_type(Some("text/html"))),
            Err(FetchFailure::ContentType(Some("text/html".into())))
        );
        assert_eq!(
            ResponseParser::parse(&fetch(), &with_type(None)),
            Err(FetchFailure::ContentType(None))
        );
        let lenient = PolicyFetch {
            content_type: ContentTypeCheck::Lenient,
            ..fetch()
        };
        assert!(ResponseParser::parse(&lenient, &with_type(None)).is_ok());
        assert!(ResponseParser::parse(&lenient, &with_type(Some("text/html"))).is_ok());
        let two = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n\r\n";
        assert!(matches!(
            ResponseParser::parse(&fetch(), two),
            Err(FetchFailure::Protocol(_))
        ));
    }

    #[test]
    fn http_interim_responses_are_skipped_but_bounded() {
        let mut r =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n".to_vec();
        r.extend_from_slice(&with_length(b"abc"));
        assert_eq!(ResponseParser::parse(&fetch(), &r), ok(b"abc"));
        let many = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM_RESPONSES + 1);
        assert!(matches!(
            ResponseParser::parse(&fetch(), &many),
            Err(FetchFailure::Protocol(_))
        ));
    }

    #[test]
    fn http_framing_errors() {
        let bad_heads: [&[u8]; 8] = [
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1, 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n\r\n",
            b"HTTP/2 200 OK\r\nContent-Type: text/plain\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nBad Header: x\r\n\r\n",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n",
        ];
        for r in bad_heads {
            let got = ResponseParser::parse(&fetch(), r);
            assert!(
                matches!(got, Err(FetchFailure::Protocol(_))),
                "{:?}: {got:?}",
                String::from_utf8_lossy(r)
            );
        }
        // Equal repeated lengths are one length; Transfer-Encoding overrides Content-Length.
        let same = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nab";
        assert_eq!(ResponseParser::parse(&fetch(), same), ok(b"ab"));
        let both = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n";
        assert_eq!(ResponseParser::parse(&fetch(), both), ok(b"ab"));
    }

    #[test]
    fn http_truncated_responses_fail_at_eof() {
        let full = with_length(POLICY);
        for cut in [0, 5, 30, full.len() - 1] {
            let got = ResponseParser::parse(&fetch(), &full[..cut]);
            assert!(
                matches!(got, Err(FetchFailure::Protocol(_))),
                "cut {cut}: {got:?}"
            );
        }
    }

    #[test]
    fn http_head_size_and_header_count_are_capped() {
        let mut big = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Big: ".to_vec();
        big.extend(core::iter::repeat_n(b'a', MAX_HEAD_SIZE));
        let mut p = ResponseParser::new(&fetch());
        let got = p.feed(&big);
        assert!(
            matches!(got, Progress::Complete(Err(FetchFailure::Protocol(_)))),
            "{got:?}"
        );
        let mut many = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        assert!(matches!(
            ResponseParser::parse(&fetch(), &many),
            Err(FetchFailure::Protocol(_))
        ));
    }

    #[test]
    fn http_head_error_found_whatever_the_split() {
        // Found by the http_response fuzz target: an error after a parsed-but-partial head was
        // seen by a whole-buffer parse but not when the bytes came in two reads.
        let r = b"\n\r\nHTTP/1.1 200 OK\r\nHTTP/1\nCAo";
        let whole = ResponseParser::parse(&fetch(), r);
        assert!(
            matches!(&whole, Err(FetchFailure::Protocol(d)) if d.contains("header name")),
            "{whole:?}"
        );
        for cut in 0..=r.len() {
            assert_eq!(parse_split(&fetch(), r, &[cut]), whole, "split at {cut}");
        }
        // And a complete head that only EOF reveals is still read.
        let mut p = ResponseParser::new(&fetch());
        assert_eq!(
            p.feed(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r"),
            Progress::Partial
        );
        assert_eq!(p.feed(b"\n"), Progress::Partial);
        assert_eq!(p.finish(), ok(b""));
    }

    #[test]
    fn http_bytes_after_the_response_are_ignored() {
        let mut r = with_length(b"abc");
        r.extend_from_slice(b"HTTP/1.1 500 Oops\r\n\r\n");
        assert_eq!(ResponseParser::parse(&fetch(), &r), ok(b"abc"));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn responses() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                Just(with_length(POLICY)),
                Just(chunked(
                    &[b"version: STSv1\r\n", b"mode: testing\r\n"],
                    b"0;x=y\r\nT: v\r\n\r\n"
                )),
                Just(
                    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nclose-delimited".to_vec()
                ),
                Just(
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n"
                        .to_vec()
                ),
                Just(chunked(&[&[b'z'; 90], &[b'z'; 20]], b"0\r\n\r\n")),
                proptest::collection::vec(any::<u8>(), 0..300),
            ]
        }

        proptest! {
            #[test]
            fn http_result_does_not_depend_on_read_boundaries(
                bytes in responses(),
                cuts in proptest::collection::vec(0usize..400, 0..12),
            ) {
                let f = capped(100);
                let whole = ResponseParser::parse(&f, &bytes);
                let mut cuts = cuts;
                cuts.sort_unstable();
                prop_assert_eq!(parse_split(&f, &bytes, &cuts), whole);
            }

            #[test]
            fn http_parser_never_panics(
                bytes in proptest::collection::vec(any::<u8>(), 0..600),
                prefix in 0usize..4,
            ) {
                let heads: [&[u8]; 4] = [
                    b"",
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 50\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
                ];
                let mut input = heads[prefix].to_vec();
                input.extend_from_slice(&bytes);
                let r = ResponseParser::parse(&capped(64), &input);
                if let Ok(resp) = r {
                    prop_assert!(resp.body.len() <= 64);
                }
            }
        }
    }
}
