//! The client's DNS seam ([`Resolver`]) and its default, a stub resolver that asks the
//! configured name servers with the core's DNS codec and exchange driver over any [`Runtime`]
//! ([`StubResolver`]); also one DNS lookup of any type, for `mta-sts check` ([`lookup`]).

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_io::AsyncRead;
use futures_lite::AsyncWriteExt;
use mta_sts_core::io::{DnsFailure, DnssecQuery, DnssecResult, TxtQuery, TxtResult};
use mta_sts_core::wire::dns::{DnsAnswer, DnsQuery, QueryType};
use mta_sts_core::wire::exchange::{Exchange, ExchangeConfig, ExchangeStep, Transport};

use crate::runtime::{BoxFuture, Runtime, until};
use crate::{poll_exchange_read, query_id};

/// The DNS the client uses: the TXT query of a lookup (`_mta-sts.<domain>`, as the core asks
/// it) and the addresses of a policy host. The default is [`StubResolver`] over the name
/// servers of `/etc/resolv.conf` (or those given to the builder); an MTA that runs its own
/// resolver (with a cache, DNSSEC, DNS over TLS) implements this trait over it and hands it to
/// the builder's `resolver`. With the cargo feature `hickory`, hickory-resolver's `Resolver`
/// implements it.
///
/// The answers must follow the core's contract: TXT records after CNAMEs, each record's
/// character-strings joined without separator ([`TxtAnswer`](mta_sts_core::io::TxtAnswer));
/// NXDOMAIN and NODATA told apart from temporary failures (SERVFAIL, timeout, network), which
/// are [`DnsFailure`]s; every answer within the query's timeout.
///
/// DANE (RFC 7672) needs more: [`dnssec`](Resolver::dnssec) answers whether the resolver
/// *validated* each answer (the AD bit). A resolver that cannot tell keeps the defaults
/// ([`supports_dnssec`](Resolver::supports_dnssec) false, every DNSSEC query a
/// [`DnsFailure::Network`]), and the client then does not check DANE with it.
///
/// ```
/// use std::net::IpAddr;
/// use std::time::Duration;
/// use mta_sts_core::io::{DnsFailure, TxtAnswer, TxtQuery, TxtResult};
/// use mta_sts_net::{BoxFuture, Resolver};
///
/// /// Answers from a table, as a test or a static configuration would.
/// #[derive(Debug)]
/// struct Table;
///
/// impl Resolver for Table {
///     fn txt<'a>(&'a self, query: &'a TxtQuery) -> BoxFuture<'a, TxtResult> {
///         Box::pin(async move {
///             match query.name.as_str() {
///                 "_mta-sts.example.com" => Ok(TxtAnswer::Records(vec![b"v=STSv1; id=1;".to_vec()])),
///                 _ => Ok(TxtAnswer::NXDOMAIN),
///             }
///         })
///     }
///
///     fn addresses<'a>(&'a self, _host: &'a str, _timeout: Duration)
///         -> BoxFuture<'a, Result<Vec<IpAddr>, DnsFailure>> {
///         Box::pin(async { Ok(vec!["192.0.2.1".parse().unwrap()]) })
///     }
/// }
///
/// let answer = futures_lite::future::block_on(Table.txt(&TxtQuery::new("_mta-sts.example.com")));
/// assert!(matches!(answer, Ok(TxtAnswer::Records(_))));
/// ```
pub trait Resolver: Send + Sync + fmt::Debug + 'static {
    /// The TXT records at `query.name`, within `query.timeout`.
    fn txt<'a>(&'a self, query: &'a TxtQuery) -> BoxFuture<'a, TxtResult>;

    /// The addresses of `host` (A and AAAA), in the order to try them, within `timeout`. An
    /// empty list means the host has none; a failure is why none could be found.
    fn addresses<'a>(
        &'a self,
        host: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsFailure>>;

    /// The records of `query.rtype` at `query.name` (MX, A, AAAA or TLSA, after CNAMEs), with
    /// whether the resolver authenticated them (the AD bit of a validating resolver's answer)
    /// and their TTL, within `query.timeout`: the contract of
    /// [`DnssecQuery`](mta_sts_core::io::DnssecQuery). A bogus answer is the resolver's
    /// SERVFAIL, [`DnsFailure::ServerFailure`]; a timeout is [`DnsFailure::Timeout`].
    ///
    /// The default, for a resolver that cannot report validation, answers every query with
    /// [`DnsFailure::Network`] (never with an unauthenticated answer, which would read as
    /// "DNSSEC-insecure: no DANE"); [`supports_dnssec`](Self::supports_dnssec) says so
    /// beforehand.
    ///
    /// ```
    /// use mta_sts_core::io::{DnsFailure, DnssecQuery, DnssecType};
    /// # use mta_sts_core::io::{TxtQuery, TxtResult};
    /// # use mta_sts_net::{BoxFuture, Resolver};
    /// # #[derive(Debug)]
    /// # struct NoDnssec;
    /// # impl Resolver for NoDnssec {
    /// #     fn txt<'a>(&'a self, _: &'a TxtQuery) -> BoxFuture<'a, TxtResult> { unimplemented!() }
    /// #     fn addresses<'a>(&'a self, _: &'a str, _: std::time::Duration)
    /// #         -> BoxFuture<'a, Result<Vec<std::net::IpAddr>, DnsFailure>> { unimplemented!() }
    /// # }
    /// let q = DnssecQuery::new("_25._tcp.mx.example.com", DnssecType::Tlsa);
    /// let answer = futures_lite::future::block_on(NoDnssec.dnssec(&q));
    /// assert!(matches!(answer, Err(DnsFailure::Network(_))));
    /// assert!(!NoDnssec.supports_dnssec());
    /// ```
    fn dnssec<'a>(&'a self, query: &'a DnssecQuery) -> BoxFuture<'a, DnssecResult> {
        let _ = query;
        Box::pin(async {
            Err(DnsFailure::Network(
                "this resolver does not report DNSSEC validation (AD)".into(),
            ))
        })
    }

    /// True when [`dnssec`](Self::dnssec) reports the resolver's validation, so that DANE can
    /// be checked through this resolver. False by default.
    fn supports_dnssec(&self) -> bool {
        false
    }
}

/// A shared resolver (one the MTA also uses itself) is one too.
impl<T: Resolver + ?Sized> Resolver for std::sync::Arc<T> {
    fn txt<'a>(&'a self, query: &'a TxtQuery) -> BoxFuture<'a, TxtResult> {
        (**self).txt(query)
    }

    fn addresses<'a>(&'a self, host: &'a str, timeout: Duration) -> BoxFuture<'a, AddrResult> {
        (**self).addresses(host, timeout)
    }

    fn dnssec<'a>(&'a self, query: &'a DnssecQuery) -> BoxFuture<'a, DnssecResult> {
        (**self).dnssec(query)
    }

    fn supports_dnssec(&self) -> bool {
        (**self).supports_dnssec()
    }
}

/// The built-in stub resolver: asks `servers` in order over UDP (TCP after a truncated answer)
/// with the core's [`Exchange`] driver, random message ids and a fresh port per query.
///
/// It supports [`Resolver::dnssec`]: the query carries the DO and AD bits and the answer
/// reports the response's AD bit. The stub does **not** validate DNSSEC itself: it trusts the AD
/// bit of the servers it asks, as Postfix does with `smtp_dns_support_level = dnssec`. For DANE
/// those servers must therefore be a validating resolver on a trusted path, normally on the
/// same host (`127.0.0.1`, e.g. unbound): an AD bit that crossed a network could have been set
/// by anyone on the way (RFC 6698 §4.1, RFC 7672 §2.1.1).
#[derive(Debug, Clone)]
pub struct StubResolver<R> {
    runtime: R,
    servers: Vec<SocketAddr>,
}

impl<R: Runtime> StubResolver<R> {
    /// A resolver asking `servers`, in order, on `runtime`.
    pub fn new(runtime: R, servers: Vec<SocketAddr>) -> Self {
        Self { runtime, servers }
    }

    /// The servers asked.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    async fn addrs(&self, host: &str, qtype: QueryType, total: Duration) -> AddrResult {
        let answer = lookup(&self.runtime, &self.servers, host, qtype, total).await?;
        Ok(answer.into_addrs()?.addrs().to_vec())
    }
}

type AddrResult = Result<Vec<IpAddr>, DnsFailure>;

impl<R: Runtime> Resolver for StubResolver<R> {
    fn txt<'a>(&'a self, query: &'a TxtQuery) -> BoxFuture<'a, TxtResult> {
        Box::pin(async move {
            let exchange = Exchange::txt(query, query_id(), self.servers.clone(), Duration::ZERO)
                .map_err(|e| DnsFailure::Malformed(e.to_string()))?;
            run(&self.runtime, exchange)
                .await
                .and_then(DnsAnswer::into_txt)
        })
    }

    fn addresses<'a>(&'a self, host: &'a str, timeout: Duration) -> BoxFuture<'a, AddrResult> {
        Box::pin(async move {
            let (a, aaaa) = futures_lite::future::zip(
                self.addrs(host, QueryType::A, timeout),
                self.addrs(host, QueryType::Aaaa, timeout),
            )
            .await;
            combine_addresses(a, aaaa)
        })
    }

    /// One exchange like the TXT query's (UDP, TCP after TC, every server, one retry, within
    /// `query.timeout`), asking with the DO and AD bits; `authenticated` is the response's AD
    /// bit, taken on the servers' word.
    fn dnssec<'a>(&'a self, query: &'a DnssecQuery) -> BoxFuture<'a, DnssecResult> {
        Box::pin(async move {
            let exchange =
                Exchange::dnssec(query, query_id(), self.servers.clone(), Duration::ZERO)
                    .map_err(|e| DnsFailure::Malformed(e.to_string()))?;
            run(&self.runtime, exchange)
                .await
                .and_then(DnsAnswer::into_dnssec)
        })
    }

    /// True: the stub reports its servers' AD bit.
    fn supports_dnssec(&self) -> bool {
        true
    }
}

/// The addresses of a host from its A and AAAA answers, in the order to try them: IPv6 first,
/// then IPv4, interleaved (RFC 8305 "Happy Eyeballs" order, without the racing). With no address
/// at all, a failure of either lookup says why; two empty answers are an empty list.
///
/// ```
/// use mta_sts_core::io::DnsFailure;
/// let v4 = vec!["192.0.2.1".parse().unwrap()];
/// let v6 = vec!["2001:db8::1".parse().unwrap()];
/// let both = mta_sts_net::combine_addresses(Ok(v4.clone()), Ok(v6.clone()))?;
/// assert_eq!(both, [v6[0], v4[0]]);
/// assert_eq!(mta_sts_net::combine_addresses(Ok(vec![]), Err(DnsFailure::Timeout)), Err(DnsFailure::Timeout));
/// # Ok::<(), DnsFailure>(())
/// ```
pub fn combine_addresses(a: AddrResult, aaaa: AddrResult) -> AddrResult {
    let (v4, v4_err) = a.map_or_else(|e| (Vec::new(), Some(e)), |v| (v, None));
    let (v6, v6_err) = aaaa.map_or_else(|e| (Vec::new(), Some(e)), |v| (v, None));
    let mut out = Vec::with_capacity(v4.len() + v6.len());
    let (mut i4, mut i6) = (v4.into_iter(), v6.into_iter());
    loop {
        match (i6.next(), i4.next()) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
    match (out.is_empty(), v4_err.or(v6_err)) {
        (true, Some(e)) => Err(e),
        _ => Ok(out),
    }
}

/// One DNS lookup of `name` for `qtype` through `servers`, within `timeout` (each attempt within
/// it too): the raw answer, for tools that show what DNS says (`mta-sts check`).
pub async fn lookup<R: Runtime>(
    runtime: &R,
    servers: &[SocketAddr],
    name: &str,
    qtype: QueryType,
    timeout: Duration,
) -> Result<DnsAnswer, DnsFailure> {
    let query =
        DnsQuery::new(name, qtype, query_id()).map_err(|e| DnsFailure::Malformed(e.to_string()))?;
    let mut config = ExchangeConfig::default();
    config.total_timeout = timeout;
    config.attempt_timeout = config.attempt_timeout.min(timeout);
    config.tcp_timeout = config.tcp_timeout.min(timeout);
    run(
        runtime,
        Exchange::new(query, servers.to_vec(), config, Duration::ZERO),
    )
    .await
}

/// A socket of one attempt.
enum Conn<R: Runtime> {
    Udp(R::Udp),
    Tcp(R::Tcp),
}

/// Runs an exchange to its end: the core says where, how and until when; this moves the bytes.
/// The exchange's clock is the time since this call began, on the runtime's clock.
pub(crate) async fn run<R: Runtime>(rt: &R, mut ex: Exchange) -> Result<DnsAnswer, DnsFailure> {
    let start = rt.now();
    let elapsed = || rt.now().saturating_duration_since(start);
    let at = |deadline: Duration| start.checked_add(deadline).unwrap_or_else(|| far(start));
    let mut conn: Option<Conn<R>> = None;
    loop {
        let failure = match ex.poll(elapsed()) {
            ExchangeStep::Send(t) => {
                conn = None;
                let deadline = at(t.deadline());
                match until(
                    rt,
                    deadline,
                    open(rt, t.server(), t.transport(), t.payload(), deadline),
                )
                .await
                {
                    Some(Ok(c)) => {
                        conn = Some(c);
                        ex.sent(elapsed());
                        continue;
                    }
                    Some(Err(e)) => e,
                    None => io::ErrorKind::TimedOut.into(),
                }
            }
            ExchangeStep::Wait(deadline) => {
                let read = poll_fn(|cx| receive(rt, cx, conn.as_mut(), &mut ex, &elapsed));
                match until(rt, at(deadline), read).await {
                    Some(Ok(())) => continue,
                    Some(Err(e)) => e,
                    None => io::ErrorKind::TimedOut.into(),
                }
            }
            ExchangeStep::Done(result) => return result,
        };
        if is_timeout(&failure) {
            ex.timed_out(elapsed());
        } else {
            ex.io_error(elapsed(), failure);
        }
    }
}

/// An instant far enough ahead to stand for "no deadline" (a timeout too large for the clock).
pub(crate) fn far(from: Instant) -> Instant {
    from + Duration::from_secs(365 * 86_400)
}

/// A socket timeout: `WouldBlock` on Unix, `TimedOut` on Windows.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Opens the socket of one attempt and sends its query.
async fn open<R: Runtime>(
    rt: &R,
    server: SocketAddr,
    transport: Transport,
    payload: &[u8],
    deadline: Instant,
) -> io::Result<Conn<R>> {
    if transport == Transport::Tcp {
        let mut s = rt.connect_tcp(server, deadline).await?;
        rt.set_deadline(&mut s, deadline);
        s.write_all(payload).await?;
        s.flush().await?;
        return Ok(Conn::Tcp(s));
    }
    let s = rt.bind_udp(server, deadline)?;
    poll_fn(|cx| rt.poll_send(&s, cx, payload)).await?;
    Ok(Conn::Udp(s))
}

/// One datagram, or one TCP read, handed to the exchange within the poll
/// ([`poll_exchange_read`]).
fn receive<R: Runtime>(
    rt: &R,
    cx: &mut Context<'_>,
    conn: Option<&mut Conn<R>>,
    ex: &mut Exchange,
    now: &impl Fn() -> Duration,
) -> Poll<io::Result<()>> {
    match conn {
        Some(Conn::Udp(s)) => poll_exchange_read(ex, now, false, |buf| rt.poll_recv(s, cx, buf)),
        Some(Conn::Tcp(s)) => poll_exchange_read(ex, now, true, |buf| {
            std::pin::Pin::new(&mut *s).poll_read(cx, buf)
        }),
        // Nothing was sent (cannot happen): wait for the deadline.
        None => Poll::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_interleaved_v6_first_and_failures_kept() {
        let v4: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()];
        let v6: Vec<IpAddr> = vec!["2001:db8::1".parse().unwrap()];
        let all = combine_addresses(Ok(v4.clone()), Ok(v6.clone())).unwrap();
        assert_eq!(all, [v6[0], v4[0], v4[1]]);
        let only4 = combine_addresses(Ok(v4.clone()), Err(DnsFailure::Timeout));
        assert_eq!(only4.unwrap(), v4);
        assert_eq!(combine_addresses(Ok(vec![]), Ok(vec![])), Ok(vec![]));
        let failed = combine_addresses(Err(DnsFailure::ServerFailure), Ok(vec![]));
        assert_eq!(failed, Err(DnsFailure::ServerFailure));
    }
}
