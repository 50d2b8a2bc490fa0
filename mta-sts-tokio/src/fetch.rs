//! The HTTPS GET of a policy with tokio and rustls, following the core's HTTP codec.

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
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::{Inner, dns};

/// Fetches a policy, all within `fetch.timeout`.
pub(crate) async fn fetch(inner: &Inner, fetch: &PolicyFetch) -> FetchResult {
    timeout(fetch.timeout, fetch_inner(inner, fetch))
        .await
        .unwrap_or(Err(FetchFailure::Timeout))
}

async fn fetch_inner(inner: &Inner, fetch: &PolicyFetch) -> FetchResult {
    let (name, request) = policy_request(fetch)?;

    // The policy host's addresses, through the same resolvers (A and AAAA at once).
    let (a, aaaa) = tokio::join!(
        dns::addrs(&inner.resolvers, &fetch.host, QueryType::A, fetch.timeout),
        dns::addrs(
            &inner.resolvers,
            &fetch.host,
            QueryType::Aaaa,
            fetch.timeout
        ),
    );
    let addrs = combine_addresses(&fetch.host, a, aaaa)?;

    // One connection attempt per address, in order, each with its share of the time.
    let attempt = connect_attempt_timeout(fetch.timeout, addrs.len());
    let mut errors = ConnectErrors::default();
    let mut tcp = None;
    for ip in addrs {
        let addr = SocketAddr::new(ip, fetch.port);
        match timeout(attempt, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) => errors.push(addr, e),
            Err(_) => errors.push(addr, "timed out"),
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
    tls.write_all(&request)
        .await
        .map_err(|e| classify_tls_error(&e))?;
    let mut parser = ResponseParser::new(fetch);
    // Read within each poll into the thread's read buffer: a fetch waiting for its server holds
    // no buffer of its own. A close without TLS close_notify is an error (it could be a
    // truncation), not an end.
    poll_fn(|cx| {
        poll_response_read(&mut parser, |buf| {
            let mut read = ReadBuf::new(buf);
            Pin::new(&mut tls)
                .poll_read(cx, &mut read)
                .map_ok(|()| read.filled().len())
        })
    })
    .await
}
