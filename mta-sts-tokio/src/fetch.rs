//! The HTTPS GET of a policy with tokio and rustls, following the core's HTTP codec.

use std::net::SocketAddr;

use mta_sts_core::io::{FetchFailure, FetchResult, PolicyFetch};
use mta_sts_core::wire::dns::QueryType;
use mta_sts_core::wire::exchange::ExchangeConfig;
use mta_sts_core::wire::http::{Progress, ResponseParser, request};
use mta_sts_net::{classify_tls_error, combine_addresses, connect_attempt_timeout, server_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    let name = server_name(&fetch.host).map_err(|e| FetchFailure::Resolve(e.to_string()))?;
    let request = request(fetch).map_err(|e| FetchFailure::Resolve(e.to_string()))?;

    // The policy host's addresses, through the same resolvers (A and AAAA at once).
    let mut config = ExchangeConfig::default();
    config.total_timeout = fetch.timeout;
    let (a, aaaa) = tokio::join!(
        dns::addrs(&inner.resolvers, &fetch.host, QueryType::A, config),
        dns::addrs(&inner.resolvers, &fetch.host, QueryType::Aaaa, config),
    );
    let addrs = combine_addresses(&fetch.host, a, aaaa)?;

    // One connection attempt per address, in order, each with its share of the time.
    let attempt = connect_attempt_timeout(fetch.timeout, addrs.len());
    let mut errors = Vec::new();
    let mut tcp = None;
    for ip in &addrs {
        let addr = SocketAddr::new(*ip, fetch.port);
        match timeout(attempt, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
            Err(_) => errors.push(format!("{addr}: timed out")),
        }
    }
    let Some(tcp) = tcp else {
        return Err(FetchFailure::Connect(errors.join("; ")));
    };

    let mut tls = inner
        .tls
        .connect(name, tcp)
        .await
        .map_err(|e| classify_tls_error(&e))?;
    tls.write_all(&request)
        .await
        .map_err(|e| classify_tls_error(&e))?;
    let mut parser = ResponseParser::new(fetch);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) => return parser.finish(),
            Ok(n) => {
                if let Progress::Complete(result) = parser.feed(&buf[..n]) {
                    return result;
                }
            }
            // A close without TLS close_notify could be a truncation attack: not an end of body.
            Err(e) => return Err(classify_tls_error(&e)),
        }
    }
}
