//! The DNS exchange driver: which server to ask next, over UDP or TCP, until when, and when to
//! give up with which [`DnsFailure`]. It does no I/O and reads no clock.
//!
//! Time is a [`Duration`] on the adapter's monotonic clock, measured from any origin it likes
//! (e.g. `start.elapsed()` of an `Instant` taken before the exchange): every call takes `now`, and
//! deadlines come back on the same clock. The same loop serves tokio, smol and blocking adapters:
//!
//! ```
//! use std::time::Duration;
//! use mta_sts_core::io::TxtQuery;
//! use mta_sts_core::wire::exchange::{Exchange, ExchangeStep, Transport};
//!
//! let servers = vec!["192.0.2.53:53".parse().unwrap()];
//! let mut ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 0x1234, servers, Duration::ZERO)?;
//! let now = Duration::ZERO; // in an adapter: start.elapsed()
//! let result = loop {
//!     match ex.poll(now) {
//!         ExchangeStep::Send(t) => {
//!             assert_eq!(t.transport(), Transport::Udp);
//!             // Open a new socket connected to t.server(), send t.payload(), then:
//!             ex.sent(now);
//!             // ... no reply came by t.deadline() in this example:
//!             ex.timed_out(t.deadline());
//!         }
//!         ExchangeStep::Wait(deadline) => ex.timed_out(deadline), // read until `deadline`, report it
//!         ExchangeStep::Done(result) => break result.and_then(|answer| answer.into_txt()),
//!     }
//! };
//! assert_eq!(result, Err(mta_sts_core::io::DnsFailure::Timeout));
//! # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
//! ```
//!
//! The plan: each server in the given order over UDP, then all of them once more (one retry).
//! A truncated UDP answer (TC bit) is asked again at once over TCP from the same server. A UDP
//! datagram that answers another query (wrong id or question) is ignored and the wait goes on.
//! SERVFAIL, REFUSED, another error code, a malformed answer, a timeout or an I/O error moves on
//! to the next attempt. The exchange ends with the first answer (records, NXDOMAIN or no-data);
//! when the plan is used up it fails with the last attempt's failure, and when the overall
//! timeout passes it fails with [`DnsFailure::Timeout`].

use core::fmt;
use core::time::Duration;
use std::net::SocketAddr;

use crate::io::{DEFAULT_DNS_TIMEOUT, DnsFailure, DnssecQuery, TxtQuery};

use super::dns::{DnsAnswer, DnsQuery, MAX_UDP_RESPONSE, QueryError, ResponseError, TcpFramer};

/// How a [`Transmit`] travels.
///
/// ```
/// use mta_sts_core::wire::exchange::Transport;
/// assert_eq!(Transport::Tcp.to_string(), "TCP");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// One datagram from a new socket connected to the server (so that the operating system
    /// drops datagrams from other addresses and picks a fresh random source port).
    Udp,
    /// A new TCP connection; the payload is already length-prefixed.
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
        })
    }
}

/// Timeouts and retries of an [`Exchange`].
///
/// ```
/// use std::time::Duration;
/// use mta_sts_core::wire::exchange::ExchangeConfig;
/// let mut cfg = ExchangeConfig::default();
/// cfg.attempt_timeout = Duration::from_secs(1);
/// assert_eq!(cfg.rounds, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExchangeConfig {
    /// The whole exchange, all servers and retries together (a [`TxtQuery`]'s `timeout`).
    pub total_timeout: Duration,
    /// How long one UDP attempt waits for its answer.
    pub attempt_timeout: Duration,
    /// How long one TCP attempt may take (connect, send, read the whole answer).
    pub tcp_timeout: Duration,
    /// How many times the server list is gone through: 2 means one retry per server.
    pub rounds: u8,
}

impl Default for ExchangeConfig {
    /// 10 s in total, 2 s per UDP attempt, 4 s per TCP attempt, one retry.
    fn default() -> Self {
        Self {
            total_timeout: DEFAULT_DNS_TIMEOUT,
            attempt_timeout: Duration::from_secs(2),
            tcp_timeout: Duration::from_secs(4),
            rounds: 2,
        }
    }
}

impl ExchangeConfig {
    /// The defaults, with the total timeout of `query`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mta_sts_core::io::TxtQuery;
    /// use mta_sts_core::wire::exchange::ExchangeConfig;
    /// let mut q = TxtQuery::new("_mta-sts.example.com");
    /// q.timeout = Duration::from_secs(3);
    /// assert_eq!(ExchangeConfig::for_query(&q).total_timeout, Duration::from_secs(3));
    /// ```
    pub fn for_query(query: &TxtQuery) -> Self {
        Self {
            total_timeout: query.timeout,
            ..Self::default()
        }
    }

    /// The defaults, with the total timeout of a [`DnssecQuery`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use mta_sts_core::io::{DnssecQuery, DnssecType};
    /// use mta_sts_core::wire::exchange::ExchangeConfig;
    /// let mut q = DnssecQuery::new("example.com", DnssecType::Mx);
    /// q.timeout = Duration::from_secs(4);
    /// assert_eq!(ExchangeConfig::for_dnssec(&q).total_timeout, Duration::from_secs(4));
    /// ```
    pub fn for_dnssec(query: &DnssecQuery) -> Self {
        Self {
            total_timeout: query.timeout,
            ..Self::default()
        }
    }
}

/// A message to send: to whom, how, and until when the attempt may run.
///
/// ```
/// use std::time::Duration;
/// use mta_sts_core::io::TxtQuery;
/// use mta_sts_core::wire::exchange::{Exchange, ExchangeStep};
/// let server = "192.0.2.53:53".parse().unwrap();
/// let mut ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 1, vec![server], Duration::ZERO)?;
/// let ExchangeStep::Send(t) = ex.poll(Duration::ZERO) else { panic!("first step sends") };
/// assert_eq!(t.server(), server);
/// assert_eq!(t.deadline(), Duration::from_secs(2));
/// assert_eq!(t.timeout(Duration::from_millis(500)), Duration::from_millis(1500));
/// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    server: SocketAddr,
    transport: Transport,
    payload: Vec<u8>,
    deadline: Duration,
}

impl Transmit {
    /// The server to send to.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use mta_sts_core::io::TxtQuery;
    /// # use mta_sts_core::wire::exchange::{Exchange, ExchangeStep};
    /// # let s = "[2001:db8::53]:53".parse().unwrap();
    /// # let mut ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 1, vec![s], Duration::ZERO)?;
    /// let ExchangeStep::Send(t) = ex.poll(Duration::ZERO) else { panic!() };
    /// assert!(t.server().is_ipv6());
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// UDP or TCP.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use mta_sts_core::io::TxtQuery;
    /// # use mta_sts_core::wire::exchange::{Exchange, ExchangeStep, Transport};
    /// # let s = "192.0.2.53:53".parse().unwrap();
    /// # let mut ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 1, vec![s], Duration::ZERO)?;
    /// let ExchangeStep::Send(t) = ex.poll(Duration::ZERO) else { panic!() };
    /// assert_eq!(t.transport(), Transport::Udp);
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The bytes to send: one datagram for UDP, the whole length-prefixed message for TCP.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use mta_sts_core::io::TxtQuery;
    /// # use mta_sts_core::wire::exchange::{Exchange, ExchangeStep};
    /// # let s = "192.0.2.53:53".parse().unwrap();
    /// # let mut ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 0xabcd, vec![s], Duration::ZERO)?;
    /// let ExchangeStep::Send(t) = ex.poll(Duration::ZERO) else { panic!() };
    /// assert_eq!(&t.payload()[..2], &[0xab, 0xcd]);
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// When this attempt ends, on the adapter's clock: report [`Exchange::timed_out`] then.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use mta_sts_core::io::TxtQuery;
    /// # use mta_sts_core::wire::exchange::{Exchange, ExchangeStep};
    /// # let s = "192.0.2.53:53".parse().unwrap();
    /// # let mut ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 1, vec![s], Duration::from_secs(5))?;
    /// let ExchangeStep::Send(t) = ex.poll(Duration::from_secs(5)) else { panic!() };
    /// assert_eq!(t.deadline(), Duration::from_secs(7));
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The time left until [`deadline`](Self::deadline) at `now` (zero once it has passed): the
    /// value for a socket timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use mta_sts_core::io::TxtQuery;
    /// # use mta_sts_core::wire::exchange::{Exchange, ExchangeStep};
    /// # let s = "192.0.2.53:53".parse().unwrap();
    /// # let mut ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 1, vec![s], Duration::ZERO)?;
    /// let ExchangeStep::Send(t) = ex.poll(Duration::ZERO) else { panic!() };
    /// assert_eq!(t.timeout(Duration::from_secs(60)), Duration::ZERO);
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn timeout(&self, now: Duration) -> Duration {
        self.deadline.saturating_sub(now)
    }
}

/// What the adapter does next.
///
/// ```
/// use std::time::Duration;
/// use mta_sts_core::wire::exchange::ExchangeStep;
/// let step = ExchangeStep::Wait(Duration::from_secs(1));
/// assert!(matches!(step, ExchangeStep::Wait(_)));
/// ```
///
/// Exhaustive, like [`Io`](crate::io::Io): a driver acts on every step, and a new kind of step is
/// a breaking change the compiler points out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the adapter must act on each step"]
pub enum ExchangeStep {
    /// Drop the previous socket or connection, open a new one and send; then report
    /// [`Exchange::sent`], and each read with [`Exchange::received`].
    Send(Transmit),
    /// Keep reading from the current socket or connection until this deadline (on the
    /// adapter's clock), then report [`Exchange::timed_out`].
    Wait(Duration),
    /// The exchange is over: the answer, or why there is none.
    Done(Result<DnsAnswer, DnsFailure>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Between attempts: the next `poll` starts one (or ends the exchange).
    Next,
    /// An attempt is under way.
    InFlight {
        server: usize,
        transport: Transport,
        deadline: Duration,
        framer: TcpFramer,
    },
    Done(Result<DnsAnswer, DnsFailure>),
}

/// One DNS lookup over a list of servers, driven by the adapter (sans-IO, quinn-proto style).
/// See the [module documentation](self) for the loop an adapter runs.
///
/// ```
/// use std::time::Duration;
/// use mta_sts_core::wire::dns::{DnsQuery, QueryType};
/// use mta_sts_core::wire::exchange::{Exchange, ExchangeConfig, ExchangeStep};
/// let query = DnsQuery::new("mta-sts.example.com", QueryType::A, 77)?;
/// let mut ex = Exchange::new(query, Vec::new(), ExchangeConfig::default(), Duration::ZERO);
/// // No server to ask: the exchange fails at once.
/// assert!(matches!(ex.poll(Duration::ZERO), ExchangeStep::Done(Err(_))));
/// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Exchange {
    query: DnsQuery,
    servers: Vec<SocketAddr>,
    config: ExchangeConfig,
    deadline: Duration,
    /// Index of the next planned UDP attempt (server = index % servers, round = index / servers).
    next_attempt: usize,
    /// A server whose UDP answer was truncated, to ask over TCP next.
    pending_tcp: Option<usize>,
    last_failure: Option<DnsFailure>,
    state: State,
}

impl Exchange {
    /// An exchange for `query` over `servers` (in order), starting at `now`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mta_sts_core::wire::dns::{DnsQuery, QueryType};
    /// use mta_sts_core::wire::exchange::{Exchange, ExchangeConfig, ExchangeStep};
    /// let q = DnsQuery::new("mta-sts.example.com", QueryType::Aaaa, 1)?;
    /// let servers = vec!["192.0.2.1:53".parse().unwrap(), "192.0.2.2:53".parse().unwrap()];
    /// let mut ex = Exchange::new(q, servers, ExchangeConfig::default(), Duration::ZERO);
    /// assert!(matches!(ex.poll(Duration::ZERO), ExchangeStep::Send(_)));
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn new(
        query: DnsQuery,
        servers: Vec<SocketAddr>,
        config: ExchangeConfig,
        now: Duration,
    ) -> Self {
        Self {
            query,
            servers,
            config,
            deadline: now.saturating_add(config.total_timeout),
            next_attempt: 0,
            pending_tcp: None,
            last_failure: None,
            state: State::Next,
        }
    }

    /// The exchange for a [`TxtQuery`] (its name and total timeout) with message id `id`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mta_sts_core::io::TxtQuery;
    /// use mta_sts_core::wire::exchange::Exchange;
    /// assert!(Exchange::txt(&TxtQuery::new("bad name"), 1, vec![], Duration::ZERO).is_err());
    /// ```
    pub fn txt(
        query: &TxtQuery,
        id: u16,
        servers: Vec<SocketAddr>,
        now: Duration,
    ) -> Result<Self, QueryError> {
        Ok(Self::new(
            DnsQuery::txt(query, id)?,
            servers,
            ExchangeConfig::for_query(query),
            now,
        ))
    }

    /// The exchange for a [`DnssecQuery`] (its name, type and total timeout) with message id
    /// `id`: the query of [`DnsQuery::dnssec`] (DO and AD bits), whose exchange ends with a
    /// [`DnsAnswer::Dnssec`] (narrow it with
    /// [`DnsAnswer::into_dnssec`]). UDP first, TCP after a
    /// truncated answer, like every exchange.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mta_sts_core::io::{DnssecQuery, DnssecType};
    /// use mta_sts_core::wire::exchange::{Exchange, ExchangeStep};
    /// let q = DnssecQuery::new("_25._tcp.mx.example.com", DnssecType::Tlsa);
    /// let s = "192.0.2.53:53".parse().unwrap();
    /// let mut ex = Exchange::dnssec(&q, 7, vec![s], Duration::ZERO)?;
    /// assert!(ex.query().is_dnssec());
    /// assert!(matches!(ex.poll(Duration::ZERO), ExchangeStep::Send(_)));
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn dnssec(
        query: &DnssecQuery,
        id: u16,
        servers: Vec<SocketAddr>,
        now: Duration,
    ) -> Result<Self, QueryError> {
        Ok(Self::new(
            DnsQuery::dnssec(query, id)?,
            servers,
            ExchangeConfig::for_dnssec(query),
            now,
        ))
    }

    /// The query being asked.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use mta_sts_core::io::TxtQuery;
    /// # use mta_sts_core::wire::exchange::Exchange;
    /// let ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 5, vec![], Duration::ZERO)?;
    /// assert_eq!(ex.query().id(), 5);
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn query(&self) -> &DnsQuery {
        &self.query
    }

    /// What to do next at `now`. An attempt whose deadline has passed counts as timed out, so
    /// polling late is the same as reporting [`timed_out`](Self::timed_out). Once
    /// [`ExchangeStep::Done`], it stays done.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mta_sts_core::io::{DnsFailure, TxtQuery};
    /// use mta_sts_core::wire::exchange::{Exchange, ExchangeStep};
    /// let s = "192.0.2.53:53".parse().unwrap();
    /// let mut ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 1, vec![s], Duration::ZERO)?;
    /// assert!(matches!(ex.poll(Duration::ZERO), ExchangeStep::Send(_)));
    /// assert_eq!(ex.poll(Duration::from_secs(60)), ExchangeStep::Done(Err(DnsFailure::Timeout)));
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn poll(&mut self, now: Duration) -> ExchangeStep {
        loop {
            match &self.state {
                State::Done(r) => return ExchangeStep::Done(r.clone()),
                State::InFlight { deadline, .. } => {
                    if now < *deadline {
                        return ExchangeStep::Wait(*deadline);
                    }
                    self.fail_attempt(DnsFailure::Timeout);
                }
                State::Next => return self.start_attempt(now),
            }
        }
    }

    fn start_attempt(&mut self, now: Duration) -> ExchangeStep {
        if now >= self.deadline {
            return self.finish(Err(DnsFailure::Timeout));
        }
        let planned = self
            .servers
            .len()
            .saturating_mul(usize::from(self.config.rounds));
        let (server, transport) = if let Some(s) = self.pending_tcp.take() {
            (s, Transport::Tcp)
        } else if self.next_attempt < planned {
            let s = self.next_attempt % self.servers.len();
            self.next_attempt += 1;
            (s, Transport::Udp)
        } else {
            let failure = self
                .last_failure
                .take()
                .unwrap_or_else(|| DnsFailure::Network("no DNS server to ask".into()));
            return self.finish(Err(failure));
        };
        let Some(&addr) = self.servers.get(server) else {
            return self.finish(Err(DnsFailure::Network("no DNS server to ask".into())));
        };
        let (timeout, payload) = match transport {
            Transport::Udp => (self.config.attempt_timeout, self.query.bytes().to_vec()),
            Transport::Tcp => (self.config.tcp_timeout, self.query.tcp_bytes()),
        };
        let deadline = now.saturating_add(timeout).min(self.deadline);
        self.state = State::InFlight {
            server,
            transport,
            deadline,
            framer: TcpFramer::new(),
        };
        ExchangeStep::Send(Transmit {
            server: addr,
            transport,
            payload,
            deadline,
        })
    }

    fn finish(&mut self, result: Result<DnsAnswer, DnsFailure>) -> ExchangeStep {
        self.state = State::Done(result.clone());
        ExchangeStep::Done(result)
    }

    fn fail_attempt(&mut self, failure: DnsFailure) {
        if let State::InFlight { .. } = self.state {
            self.last_failure = Some(failure);
            self.state = State::Next;
        }
    }

    /// The message of the last [`ExchangeStep::Send`] has been sent (for TCP: connected and written).
    /// The attempt's time starts again from `now` for the answer, within the overall timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use mta_sts_core::io::TxtQuery;
    /// # use mta_sts_core::wire::exchange::{Exchange, ExchangeStep};
    /// # let s = "192.0.2.53:53".parse().unwrap();
    /// let mut ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 1, vec![s], Duration::ZERO)?;
    /// assert!(matches!(ex.poll(Duration::ZERO), ExchangeStep::Send(_)));
    /// ex.sent(Duration::from_secs(1));
    /// assert_eq!(ex.poll(Duration::from_secs(1)), ExchangeStep::Wait(Duration::from_secs(3)));
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn sent(&mut self, now: Duration) {
        let total = self.deadline;
        let config = self.config;
        if let State::InFlight {
            transport,
            deadline,
            ..
        } = &mut self.state
        {
            let timeout = match transport {
                Transport::Udp => config.attempt_timeout,
                Transport::Tcp => config.tcp_timeout,
            };
            if now < *deadline {
                *deadline = now.saturating_add(timeout).min(total);
            }
        }
    }

    /// Bytes arrived for the attempt under way: one whole datagram for UDP, whatever one read
    /// returned for TCP. Bytes that come when no attempt is under way are ignored. A datagram
    /// longer than [`MAX_UDP_RESPONSE`] with this query's id is handled as truncated: the same
    /// server is asked again over TCP.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mta_sts_core::io::TxtQuery;
    /// use mta_sts_core::wire::exchange::{Exchange, ExchangeStep};
    /// let s = "192.0.2.53:53".parse().unwrap();
    /// let mut ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 1, vec![s], Duration::ZERO)?;
    /// assert!(matches!(ex.poll(Duration::ZERO), ExchangeStep::Send(_)));
    /// ex.sent(Duration::ZERO);
    /// // A response header with another query's id: ignored.
    /// ex.received(Duration::ZERO, &[0xff, 0xff, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]);
    /// assert_eq!(ex.poll(Duration::ZERO), ExchangeStep::Wait(Duration::from_secs(2)));
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn received(&mut self, now: Duration, data: &[u8]) {
        let State::InFlight {
            server,
            transport,
            deadline,
            framer,
        } = &mut self.state
        else {
            return;
        };
        if now >= *deadline {
            self.fail_attempt(DnsFailure::Timeout);
            return;
        }
        let (server, transport) = (*server, *transport);
        let parsed = match transport {
            // Longer than any response accepted over UDP (and perhaps cut short by the
            // receive buffer): as good as truncated, when it answers this query's id.
            Transport::Udp if data.len() > MAX_UDP_RESPONSE => {
                if data.get(..2) != Some(&self.query.id().to_be_bytes()[..]) {
                    return;
                }
                Err(ResponseError::Truncated)
            }
            Transport::Udp => self.query.parse(data),
            Transport::Tcp => match framer.push(data) {
                None => return,
                Some(message) => self.query.parse(message),
            },
        };
        match parsed {
            Ok(answer) => self.state = State::Done(Ok(answer)),
            Err(e) if e.is_mismatch() && transport == Transport::Udp => {}
            Err(ResponseError::Truncated) if transport == Transport::Udp => {
                self.pending_tcp = Some(server);
                self.state = State::Next;
            }
            Err(e) => self.fail_attempt(e.into()),
        }
    }

    /// The attempt under way got no (complete) answer by its deadline.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use mta_sts_core::io::TxtQuery;
    /// # use mta_sts_core::wire::exchange::{Exchange, ExchangeStep, Transport};
    /// let s = "192.0.2.53:53".parse().unwrap();
    /// let mut ex = Exchange::txt(&TxtQuery::new("_mta-sts.example.com"), 1, vec![s], Duration::ZERO)?;
    /// assert!(matches!(ex.poll(Duration::ZERO), ExchangeStep::Send(_)));
    /// ex.timed_out(Duration::from_secs(2));
    /// // The retry:
    /// let ExchangeStep::Send(t) = ex.poll(Duration::from_secs(2)) else { panic!() };
    /// assert_eq!((t.server(), t.transport()), (s, Transport::Udp));
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn timed_out(&mut self, now: Duration) {
        let _ = now;
        self.fail_attempt(DnsFailure::Timeout);
    }

    /// The attempt under way failed at the socket level (connect refused, no route, connection
    /// closed before the whole answer came, …); `error` describes it for the operator.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use mta_sts_core::io::{DnsFailure, TxtQuery};
    /// # use mta_sts_core::wire::exchange::{Exchange, ExchangeConfig, ExchangeStep};
    /// # use mta_sts_core::wire::dns::{DnsQuery, QueryType};
    /// let s = "192.0.2.53:53".parse().unwrap();
    /// let q = DnsQuery::new("example.com", QueryType::A, 1)?;
    /// let mut cfg = ExchangeConfig::default();
    /// cfg.rounds = 1;
    /// let mut ex = Exchange::new(q, vec![s], cfg, Duration::ZERO);
    /// assert!(matches!(ex.poll(Duration::ZERO), ExchangeStep::Send(_)));
    /// ex.io_error(Duration::ZERO, "network unreachable");
    /// assert_eq!(
    ///     ex.poll(Duration::ZERO),
    ///     ExchangeStep::Done(Err(DnsFailure::Network("192.0.2.53:53 (UDP): network unreachable".into())))
    /// );
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn io_error(&mut self, now: Duration, error: impl fmt::Display) {
        let _ = now;
        if let State::InFlight {
            server, transport, ..
        } = &self.state
        {
            let addr = self
                .servers
                .get(*server)
                .map(ToString::to_string)
                .unwrap_or_default();
            let failure = DnsFailure::Network(format!("{addr} ({transport}): {error}"));
            self.fail_attempt(failure);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::TxtAnswer;
    use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    const S1: &str = "192.0.2.1:53";
    const S2: &str = "192.0.2.2:53";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn exchange(servers: &[&str]) -> Exchange {
        let q = TxtQuery::new("_mta-sts.example.com");
        Exchange::txt(
            &q,
            0x5151,
            servers.iter().map(|s| addr(s)).collect(),
            Duration::ZERO,
        )
        .expect("valid")
    }

    fn reply(rcode: ResponseCode, truncated: bool, id: u16) -> Vec<u8> {
        let name = Name::from_ascii("_mta-sts.example.com.").expect("name");
        let mut m = Message::response(id, OpCode::Query);
        m.metadata.response_code = rcode;
        m.metadata.truncation = truncated;
        m.add_query(Query::query(name.clone(), RecordType::TXT));
        if rcode == ResponseCode::NoError && !truncated {
            m.add_answer(Record::from_rdata(
                name,
                60,
                RData::TXT(TXT::from_bytes(vec![b"v=STSv1; id=1;"])),
            ));
        }
        m.to_vec().expect("encodable")
    }

    /// A message with its TCP length prefix, built independently of the code under test.
    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut f = u16::try_from(msg.len())
            .expect("small")
            .to_be_bytes()
            .to_vec();
        f.extend_from_slice(msg);
        f
    }

    fn expect_send(
        ex: &mut Exchange,
        now: Duration,
        server: &str,
        transport: Transport,
    ) -> Transmit {
        match ex.poll(now) {
            ExchangeStep::Send(t) => {
                assert_eq!((t.server(), t.transport()), (addr(server), transport));
                t
            }
            other => panic!("expected a send to {server} over {transport}, got {other:?}"),
        }
    }

    fn records() -> Result<DnsAnswer, DnsFailure> {
        Ok(DnsAnswer::Txt(TxtAnswer::Records(vec![
            b"v=STSv1; id=1;".to_vec(),
        ])))
    }

    #[test]
    fn exchange_first_answer_wins() {
        let mut ex = exchange(&[S1, S2]);
        let t = expect_send(&mut ex, secs(0), S1, Transport::Udp);
        assert_eq!(t.payload(), ex.query().bytes());
        ex.sent(secs(0));
        ex.received(secs(1), &reply(ResponseCode::NoError, false, 0x5151));
        assert_eq!(ex.poll(secs(1)), ExchangeStep::Done(records()));
        assert_eq!(
            ex.poll(secs(100)),
            ExchangeStep::Done(records()),
            "stays done"
        );
    }

    #[test]
    fn exchange_servers_in_order_then_one_retry_then_last_failure() {
        let mut ex = exchange(&[S1, S2]);
        expect_send(&mut ex, secs(0), S1, Transport::Udp);
        ex.timed_out(secs(2));
        expect_send(&mut ex, secs(2), S2, Transport::Udp);
        ex.received(secs(2), &reply(ResponseCode::ServFail, false, 0x5151));
        expect_send(&mut ex, secs(2), S1, Transport::Udp);
        ex.io_error(secs(3), "connection refused");
        expect_send(&mut ex, secs(3), S2, Transport::Udp);
        ex.received(secs(3), &reply(ResponseCode::Refused, false, 0x5151));
        assert_eq!(
            ex.poll(secs(3)),
            ExchangeStep::Done(Err(DnsFailure::Refused))
        );
    }

    #[test]
    fn exchange_nxdomain_is_an_answer_not_a_retry() {
        let mut ex = exchange(&[S1, S2]);
        expect_send(&mut ex, secs(0), S1, Transport::Udp);
        ex.received(secs(0), &reply(ResponseCode::NXDomain, false, 0x5151));
        assert_eq!(
            ex.poll(secs(0)),
            ExchangeStep::Done(Ok(DnsAnswer::Txt(TxtAnswer::NXDOMAIN)))
        );
    }

    #[test]
    fn exchange_truncated_udp_goes_to_tcp_on_same_server() {
        let mut ex = exchange(&[S1, S2]);
        expect_send(&mut ex, secs(0), S1, Transport::Udp);
        ex.received(secs(0), &reply(ResponseCode::NoError, true, 0x5151));
        let t = expect_send(&mut ex, secs(0), S1, Transport::Tcp);
        assert_eq!(t.payload(), ex.query().tcp_bytes());
        assert_eq!(t.deadline(), secs(4));
        ex.sent(secs(1));
        // The answer comes in pieces, length prefix split too.
        let body = reply(ResponseCode::NoError, false, 0x5151);
        let framed = framed(&body);
        for chunk in framed.chunks(3) {
            assert_eq!(ex.poll(secs(1)), ExchangeStep::Wait(secs(5)));
            ex.received(secs(1), chunk);
        }
        assert_eq!(ex.poll(secs(1)), ExchangeStep::Done(records()));
    }

    #[test]
    fn exchange_udp_datagram_longer_than_accepted_goes_to_tcp_on_same_server() {
        // A receive buffer of MAX_UDP_RESPONSE + 1 bytes filled: the datagram was at least that
        // long (cut short by the kernel), beyond the 1232 bytes the query advertised.
        let mut ex = exchange(&[S1, S2]);
        expect_send(&mut ex, secs(0), S1, Transport::Udp);
        let mut long = reply(ResponseCode::NoError, false, 0x5151);
        long.resize(MAX_UDP_RESPONSE + 1, 0);
        // Another query's id: ignored like any mismatched datagram.
        let mut other = long.clone();
        other[..2].copy_from_slice(&0x1234u16.to_be_bytes());
        ex.received(secs(0), &other);
        assert_eq!(ex.poll(secs(0)), ExchangeStep::Wait(secs(2)));
        ex.received(secs(0), &long);
        expect_send(&mut ex, secs(0), S1, Transport::Tcp);
        // At the limit, a datagram is parsed as usual (here the answer, with bytes after its
        // end, which the decoder leaves alone).
        let mut ex = exchange(&[S1, S2]);
        expect_send(&mut ex, secs(0), S1, Transport::Udp);
        let mut at_limit = reply(ResponseCode::NoError, false, 0x5151);
        at_limit.resize(MAX_UDP_RESPONSE, 0);
        ex.received(secs(0), &at_limit);
        assert_eq!(ex.poll(secs(0)), ExchangeStep::Done(records()));
    }

    #[test]
    fn exchange_tcp_failure_moves_to_next_server() {
        let mut ex = exchange(&[S1, S2]);
        expect_send(&mut ex, secs(0), S1, Transport::Udp);
        ex.received(secs(0), &reply(ResponseCode::NoError, true, 0x5151));
        expect_send(&mut ex, secs(0), S1, Transport::Tcp);
        ex.io_error(secs(0), "connection closed");
        expect_send(&mut ex, secs(0), S2, Transport::Udp);
    }

    #[test]
    fn exchange_truncated_or_mismatched_over_tcp_is_malformed() {
        let cfg = ExchangeConfig {
            rounds: 1,
            ..ExchangeConfig::default()
        };
        let q = DnsQuery::txt(&TxtQuery::new("_mta-sts.example.com"), 0x5151).expect("valid");
        for bad in [
            reply(ResponseCode::NoError, true, 0x5151),
            reply(ResponseCode::NoError, false, 1),
        ] {
            let mut ex = Exchange::new(q.clone(), vec![addr(S1)], cfg, secs(0));
            expect_send(&mut ex, secs(0), S1, Transport::Udp);
            ex.received(secs(0), &reply(ResponseCode::NoError, true, 0x5151));
            expect_send(&mut ex, secs(0), S1, Transport::Tcp);
            let framed = framed(&bad);
            ex.received(secs(0), &framed);
            assert!(matches!(
                ex.poll(secs(0)),
                ExchangeStep::Done(Err(DnsFailure::Malformed(_)))
            ));
        }
    }

    #[test]
    fn exchange_udp_mismatch_is_ignored_and_wait_goes_on() {
        let mut ex = exchange(&[S1]);
        expect_send(&mut ex, secs(0), S1, Transport::Udp);
        ex.sent(secs(0));
        ex.received(secs(1), &reply(ResponseCode::ServFail, false, 0x0001));
        assert_eq!(ex.poll(secs(1)), ExchangeStep::Wait(secs(2)));
        ex.received(secs(1), &reply(ResponseCode::NoError, false, 0x5151));
        assert_eq!(ex.poll(secs(1)), ExchangeStep::Done(records()));
    }

    #[test]
    fn exchange_malformed_udp_moves_on() {
        let mut ex = exchange(&[S1, S2]);
        expect_send(&mut ex, secs(0), S1, Transport::Udp);
        ex.received(secs(0), &[0x51, 0x51, 0x81, 0x80, 0]);
        expect_send(&mut ex, secs(0), S2, Transport::Udp);
    }

    #[test]
    fn exchange_polling_past_deadline_is_a_timeout() {
        let mut ex = exchange(&[S1, S2]);
        let t = expect_send(&mut ex, secs(0), S1, Transport::Udp);
        assert_eq!(t.deadline(), secs(2));
        expect_send(&mut ex, secs(2), S2, Transport::Udp);
        // Late bytes from the old attempt's server cannot be told apart: they go to the current
        // attempt; a late answer after the deadline is a timeout.
        ex.received(secs(9), &reply(ResponseCode::NoError, false, 0x5151));
        expect_send(&mut ex, secs(9), S1, Transport::Udp);
    }

    #[test]
    fn exchange_overall_timeout_caps_attempts_and_ends_with_timeout() {
        let mut q = TxtQuery::new("_mta-sts.example.com");
        q.timeout = secs(3);
        let mut ex = Exchange::txt(&q, 1, vec![addr(S1), addr(S2)], secs(10)).expect("valid");
        expect_send(&mut ex, secs(10), S1, Transport::Udp);
        ex.received(secs(10), &reply(ResponseCode::ServFail, false, 1));
        let t = expect_send(&mut ex, secs(12), S2, Transport::Udp);
        assert_eq!(t.deadline(), secs(13), "capped by the overall deadline");
        ex.sent(secs(12));
        assert_eq!(ex.poll(secs(12)), ExchangeStep::Wait(secs(13)));
        assert_eq!(
            ex.poll(secs(13)),
            ExchangeStep::Done(Err(DnsFailure::Timeout))
        );
    }

    #[test]
    fn exchange_without_servers_fails_at_once() {
        let mut ex = exchange(&[]);
        assert!(matches!(
            ex.poll(secs(0)),
            ExchangeStep::Done(Err(DnsFailure::Network(_)))
        ));
    }

    #[test]
    fn exchange_events_out_of_turn_are_ignored() {
        let mut ex = exchange(&[S1]);
        ex.received(secs(0), &reply(ResponseCode::NoError, false, 0x5151));
        ex.timed_out(secs(0));
        ex.io_error(secs(0), "x");
        ex.sent(secs(0));
        expect_send(&mut ex, secs(0), S1, Transport::Udp);
        ex.received(secs(0), &reply(ResponseCode::NoError, false, 0x5151));
        ex.received(secs(0), &reply(ResponseCode::ServFail, false, 0x5151));
        ex.timed_out(secs(0));
        assert_eq!(ex.poll(secs(0)), ExchangeStep::Done(records()));
    }

    #[test]
    fn exchange_ends_within_its_plan_whatever_happens() {
        // Every attempt is answered with garbage: the exchange ends after servers * rounds
        // attempts (plus one TCP attempt per truncated answer), never loops.
        let mut ex = exchange(&[S1, S2]);
        let mut sends = 0;
        let now = secs(0);
        loop {
            match ex.poll(now) {
                ExchangeStep::Send(t) => {
                    sends += 1;
                    let truncated = reply(ResponseCode::NoError, true, 0x5151);
                    if t.transport() == Transport::Udp {
                        ex.received(now, &truncated);
                    } else {
                        let framed = framed(&truncated);
                        ex.received(now, &framed);
                    }
                }
                ExchangeStep::Wait(_) => panic!("no attempt should stay open"),
                ExchangeStep::Done(r) => {
                    assert!(matches!(r, Err(DnsFailure::Malformed(_))), "{r:?}");
                    break;
                }
            }
        }
        assert_eq!(sends, 8);
    }

    #[test]
    fn exchange_carries_a_dnssec_query_from_udp_to_tcp() {
        use crate::Tlsa;
        use crate::io::{DnssecAnswer, DnssecData, DnssecQuery, DnssecType};
        use hickory_proto::rr::rdata::TLSA;
        let mut q = DnssecQuery::new("_25._tcp.mx.example.com", DnssecType::Tlsa);
        q.timeout = secs(5);
        let mut ex = Exchange::dnssec(&q, 0x6161, vec![addr(S1)], Duration::ZERO).expect("valid");
        assert!(ex.query().is_dnssec());
        let reply = |truncated: bool| {
            let owner = Name::from_ascii("_25._tcp.mx.example.com.").expect("name");
            let mut m = Message::response(0x6161, OpCode::Query);
            m.metadata.truncation = truncated;
            m.metadata.authentic_data = true;
            m.add_query(Query::query(owner.clone(), RecordType::TLSA));
            m.add_answer(Record::from_rdata(
                owner,
                77,
                RData::TLSA(TLSA::new(3.into(), 1.into(), 1.into(), vec![0x11; 32])),
            ));
            m.to_vec().expect("encodable")
        };
        let t = expect_send(&mut ex, secs(0), S1, Transport::Udp);
        assert_eq!(t.payload(), ex.query().bytes());
        ex.sent(secs(0));
        ex.received(secs(0), &reply(true));
        let t = expect_send(&mut ex, secs(0), S1, Transport::Tcp);
        assert_eq!(t.payload(), ex.query().tcp_bytes());
        ex.sent(secs(0));
        ex.received(secs(1), &framed(&reply(false)));
        let want = DnssecAnswer::new(
            true,
            77,
            DnssecData::Tlsa(vec![Tlsa::new(3, 1, 1, vec![0x11; 32])]),
        );
        assert_eq!(
            ex.poll(secs(1)),
            ExchangeStep::Done(Ok(DnsAnswer::Dnssec(want)))
        );
        // The query's timeout bounds the exchange.
        let mut ex = Exchange::dnssec(&q, 1, vec![addr(S1)], Duration::ZERO).expect("valid");
        expect_send(&mut ex, secs(0), S1, Transport::Udp);
        assert_eq!(
            ex.poll(secs(5)),
            ExchangeStep::Done(Err(DnsFailure::Timeout))
        );
    }
}
