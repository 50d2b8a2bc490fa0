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

use crate::dns::{Resolver, far, is_timeout};
use crate::runtime::{Runtime, until};
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
    let host = &fetch.host;
    let addrs = match resolver.addresses(host, fetch.timeout).await {
        Ok(a) if a.is_empty() => {
            return Err(FetchFailure::Resolve(format!(
                "{host}: no A or AAAA record"
            )));
        }
        Ok(a) => a,
        Err(e) => return Err(FetchFailure::Resolve(format!("{host}: {e}"))),
    };

    let (addr, mut tcp) = connect_any(rt, &addrs, fetch.port, fetch.timeout, deadline)
        .await
        .map_err(ConnectErrors::into_failure)?;
    trace.addr = Some(addr);
    rt.set_deadline(&mut tcp, deadline);

    let mut tls = rt
        .connect_tls(Arc::clone(tls), name, tcp)
        .await
        .map_err(|e| classify_tls_error(&e))?;
    trace.tls_version = tls.protocol_version();
    // Flushed: the TLS stream may keep records it could not write yet.
    tls.write_all(&request)
        .await
        .map_err(|e| classify_tls_error(&e))?;
    tls.flush().await.map_err(|e| classify_tls_error(&e))?;
    let mut parser = ResponseParser::new(fetch);
    // Read within each poll into the thread's read buffer: a fetch waiting for its server holds
    // no buffer of its own. A close without TLS close_notify is an error (it could be a
    // truncation), not an end.
    poll_fn(|cx| poll_response_read(&mut parser, |buf| Pin::new(&mut tls).poll_read(cx, buf))).await
}
