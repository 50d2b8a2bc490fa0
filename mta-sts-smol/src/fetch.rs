//! The HTTPS GET of a policy with async-net and futures-rustls, following the core's HTTP codec.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;

use mta_sts_core::io::{FetchFailure, FetchResult, PolicyFetch};
use mta_sts_core::wire::dns::QueryType;
use mta_sts_core::wire::http::ResponseParser;
use mta_sts_net::{
    ConnectErrors, classify_tls_error, combine_addresses, connect_attempt_timeout, policy_request,
    poll_response_read,
};
use smol::io::{AsyncRead, AsyncWriteExt};
use smol::net::TcpStream;

use crate::{Inner, dns, until};

/// Fetches a policy, all within `fetch.timeout`.
pub(crate) async fn fetch(inner: &Inner, fetch: &PolicyFetch) -> FetchResult {
    until(fetch.timeout, get(inner, fetch))
        .await
        .unwrap_or(Err(FetchFailure::Timeout))
}

async fn get(inner: &Inner, fetch: &PolicyFetch) -> FetchResult {
    let (name, request) = policy_request(fetch)?;

    // The policy host's addresses, through the same resolvers (A and AAAA at once).
    let resolvers = &inner.resolvers;
    let (a, aaaa) = smol::future::zip(
        dns::addrs(resolvers, &fetch.host, QueryType::A, fetch.timeout),
        dns::addrs(resolvers, &fetch.host, QueryType::Aaaa, fetch.timeout),
    )
    .await;
    let addrs = combine_addresses(&fetch.host, a, aaaa)?;

    // One connection attempt per address, in order, each with its share of the time.
    let attempt = connect_attempt_timeout(fetch.timeout, addrs.len());
    let mut errors = ConnectErrors::default();
    let mut tcp = None;
    for ip in addrs {
        let addr = SocketAddr::new(ip, fetch.port);
        match until(attempt, TcpStream::connect(addr)).await {
            Some(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Some(Err(e)) => errors.push(addr, e),
            None => errors.push(addr, "timed out"),
        }
    }
    let Some(tcp) = tcp else {
        return Err(errors.into_failure());
    };
    // The request goes out in whole TLS records: do not let Nagle hold the last one back.
    let _ = tcp.set_nodelay(true);

    let mut tls = inner
        .tls
        .connect(name, tcp)
        .await
        .map_err(|e| classify_tls_error(&e))?;
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
