//! The HTTPS GET of a policy over any [`Runtime`], following the core's HTTP codec: the policy
//! host's addresses from the [`Resolver`], one connection attempt per address, the runtime's
//! TLS, the request, and the response read within each poll into the thread's read
//! buffer. The whole fetch is bounded by the request's timeout.

use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_io::AsyncRead;
use futures_lite::AsyncWriteExt;
use mta_sts_core::io::{FetchFailure, FetchResult, PolicyFetch};
use mta_sts_core::wire::http::ResponseParser;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::dns::{Resolver, far, is_timeout};
use crate::runtime::{Runtime, TlsStream, until};
use crate::{
    ConnectErrors, classify_tls_error, connect_attempt_timeout, policy_request, poll_response_read,
};

/// What a fetch saw of its connection, for tools that show it (`mta-sts check`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchTrace {
    /// The address connected to.
    pub addr: Option<SocketAddr>,
    /// The TLS version negotiated, once the handshake succeeded.
    pub tls_version: Option<rustls::ProtocolVersion>,
}

/// Fetches a policy as [`PolicyFetch`] describes it, all within `fetch.timeout`: through
/// `resolver` for the policy host's addresses, with `tls` (a configuration such as
/// [`policy_fetch_config`](crate::policy_fetch_config)), on `rt`'s sockets and TLS.
pub async fn fetch_policy<R: Runtime>(
    rt: &R,
    resolver: &dyn Resolver,
    tls: &Arc<ClientConfig>,
    fetch: &PolicyFetch,
) -> FetchResult {
    fetch_policy_traced(rt, resolver, tls, fetch, &mut FetchTrace::default()).await
}

/// [`fetch_policy`], recording in `trace` what it saw of the connection.
pub async fn fetch_policy_traced<R: Runtime>(
    rt: &R,
    resolver: &dyn Resolver,
    tls: &Arc<ClientConfig>,
    fetch: &PolicyFetch,
    trace: &mut FetchTrace,
) -> FetchResult {
    let start = rt.now();
    let deadline = start
        .checked_add(fetch.timeout)
        .unwrap_or_else(|| far(start));
    until(rt, deadline, get(rt, resolver, tls, fetch, deadline, trace))
        .await
        .unwrap_or(Err(FetchFailure::Timeout))
}

/// A TCP connection to the first of `addrs` that accepts one on `port`, trying them in order,
/// each attempt with its share of `timeout` ([`connect_attempt_timeout`]: a black-holed first
/// address cannot eat the whole time), none past `deadline`; or every attempt's failure.
pub async fn connect_any<R: Runtime>(
    rt: &R,
    addrs: &[IpAddr],
    port: u16,
    timeout: Duration,
    deadline: Instant,
) -> Result<(SocketAddr, R::Tcp), ConnectErrors> {
    let share = connect_attempt_timeout(timeout, addrs.len());
    let mut errors = ConnectErrors::default();
    for &ip in addrs {
        let addr = SocketAddr::new(ip, port);
        let attempt = rt
            .now()
            .checked_add(share)
            .map_or(deadline, |a| a.min(deadline));
        match until(rt, attempt, rt.connect_tcp(addr, attempt)).await {
            Some(Ok(tcp)) => return Ok((addr, tcp)),
            Some(Err(e)) if !is_timeout(&e) => errors.push(addr, e),
            _ => errors.push(addr, "timed out"),
        }
    }
    Err(errors)
}

async fn get<R: Runtime>(
    rt: &R,
    resolver: &dyn Resolver,
    tls: &Arc<ClientConfig>,
    fetch: &PolicyFetch,
    deadline: Instant,
    trace: &mut FetchTrace,
) -> FetchResult {
    let (name, request) = policy_request(fetch)?;
    let target = Target {
        host: &fetch.host,
        name,
        port: fetch.port,
        timeout: fetch.timeout,
        deadline,
    };
    let mut tls = open_tls(rt, resolver, tls, target, trace).await?;
    send(&mut tls, &request).await?;
    let mut parser = ResponseParser::new(fetch);
    // Read within each poll into the thread's read buffer: a fetch waiting for its server holds
    // no buffer of its own. A close without TLS close_notify is an error (it could be a
    // truncation), not an end.
    poll_fn(|cx| poll_response_read(&mut parser, |buf| Pin::new(&mut tls).poll_read(cx, buf))).await
}

/// Where an HTTPS request goes: the host (resolved through the client's resolver), its TLS
/// name, the port, the request's timeout and the deadline of the whole request.
pub(crate) struct Target<'a> {
    pub(crate) host: &'a str,
    pub(crate) name: ServerName<'static>,
    pub(crate) port: u16,
    pub(crate) timeout: Duration,
    pub(crate) deadline: Instant,
}

/// A TLS connection to `target`: its addresses from `resolver`, one connection attempt per
/// address ([`connect_any`]), the handshake with `tls` on `rt`. What a policy fetch and a
/// TLSRPT report POST share.
pub(crate) async fn open_tls<R: Runtime>(
    rt: &R,
    resolver: &dyn Resolver,
    tls: &Arc<ClientConfig>,
    target: Target<'_>,
    trace: &mut FetchTrace,
) -> Result<Box<dyn TlsStream>, FetchFailure> {
    let host = target.host;
    let addrs = match resolver.addresses(host, target.timeout).await {
        Ok(a) if a.is_empty() => {
            return Err(FetchFailure::Resolve(format!(
                "{host}: no A or AAAA record"
            )));
        }
        Ok(a) => a,
        Err(e) => return Err(FetchFailure::Resolve(format!("{host}: {e}"))),
    };

    let (addr, mut tcp) = connect_any(rt, &addrs, target.port, target.timeout, target.deadline)
        .await
        .map_err(ConnectErrors::into_failure)?;
    trace.addr = Some(addr);
    rt.set_deadline(&mut tcp, target.deadline);

    let tls = rt
        .connect_tls(Arc::clone(tls), target.name, tcp)
        .await
        .map_err(|e| classify_tls_error(&e))?;
    trace.tls_version = tls.protocol_version();
    Ok(tls)
}

/// Writes a whole request, flushed: the TLS stream may keep records it could not write yet.
pub(crate) async fn send(tls: &mut Box<dyn TlsStream>, request: &[u8]) -> Result<(), FetchFailure> {
    tls.write_all(request)
        .await
        .map_err(|e| classify_tls_error(&e))?;
    tls.flush().await.map_err(|e| classify_tls_error(&e))
}
