//! The client's DNS seam over hickory-resolver (cargo feature `hickory`): an MTA that already
//! runs a hickory `Resolver` (its cache, DNSSEC, DNS over TLS, its own configuration) hands it to
//! the builder's `resolver` and every MTA-STS query goes through it.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::ConnectionProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use mta_sts_core::io::{DnsFailure, TxtAnswer, TxtQuery, TxtResult};

use crate::{BoxFuture, Resolver};

/// hickory-resolver as the client's DNS. Names are asked fully qualified (with the root dot),
/// so the resolver's search list never applies. Its own options bound each query (`timeout`,
/// `attempts`); the client also bounds every TXT query by the core's DNS timeout and every
/// address lookup by the fetch timeout.
///
/// DNSSEC: this implementation keeps the defaults of [`Resolver::dnssec`] and
/// [`Resolver::supports_dnssec`] (no DANE through it). hickory-resolver's lookups do not expose
/// the AD bit of the upstream resolver's response: a lookup either validates itself (its own
/// `dnssec` features, with its own trust anchor and failure modes, not the local validating
/// resolver an MTA is configured to trust) or hands back records with no way to tell whether
/// they were authenticated. Answering "not authenticated" would read as DNSSEC-insecure and
/// turn DANE off silently; for DANE, use a resolver that reports the AD bit, such as
/// [`crate::StubResolver`] over the local validating resolver.
impl<P: ConnectionProvider> Resolver for hickory_resolver::Resolver<P> {
    fn txt<'a>(&'a self, query: &'a TxtQuery) -> BoxFuture<'a, TxtResult> {
        Box::pin(async move {
            match self.txt_lookup(fqdn(&query.name)).await {
                Ok(lookup) => Ok(TxtAnswer::Records(
                    lookup
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::TXT(txt) => Some(txt.txt_data.concat()),
                            _ => None,
                        })
                        .collect(),
                )),
                Err(e) if e.is_nx_domain() => Ok(TxtAnswer::NxDomain {
                    negative_ttl: negative_ttl(&e),
                }),
                Err(e) if e.is_no_records_found() => Ok(TxtAnswer::NoData {
                    negative_ttl: negative_ttl(&e),
                }),
                Err(e) => Err(failure(&e)),
            }
        })
    }

    fn addresses<'a>(
        &'a self,
        host: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsFailure>> {
        Box::pin(async move {
            match self.lookup_ip(fqdn(host)).await {
                Ok(ips) => Ok(ips.iter().collect()),
                Err(e) if e.is_no_records_found() => Ok(Vec::new()),
                Err(e) => Err(failure(&e)),
            }
        })
    }
}

/// The negative-caching TTL hickory read from the SOA record of a NXDOMAIN or NODATA response
/// (RFC 2308 §5), `None` without one.
fn negative_ttl(e: &NetError) -> Option<Duration> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(no)) => no
            .negative_ttl
            .map(|ttl| Duration::from_secs(u64::from(ttl))),
        _ => None,
    }
}

/// `name` with the root dot: asked as is, never with the search list.
fn fqdn(name: &str) -> String {
    let mut name = name.trim_end_matches('.').to_owned();
    name.push('.');
    name
}

/// A temporary failure, as the core names them: nothing can be concluded about the records.
fn failure(e: &NetError) -> DnsFailure {
    match e {
        NetError::Timeout => DnsFailure::Timeout,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => DnsFailure::ServerFailure,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => DnsFailure::Refused,
        NetError::Dns(DnsError::ResponseCode(code)) => DnsFailure::ResponseCode(u16::from(*code)),
        NetError::Io(io) => DnsFailure::Network(io.to_string()),
        NetError::NoConnections | NetError::Busy => DnsFailure::Network(e.to_string()),
        other => DnsFailure::Malformed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_asked_fully_qualified_and_failures_keep_their_kind() {
        assert_eq!(fqdn("_mta-sts.example.com"), "_mta-sts.example.com.");
        assert_eq!(fqdn("_mta-sts.example.com."), "_mta-sts.example.com.");
        assert_eq!(failure(&NetError::Timeout), DnsFailure::Timeout);
        let servfail = NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail));
        assert_eq!(failure(&servfail), DnsFailure::ServerFailure);
        let refused = NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused));
        assert_eq!(failure(&refused), DnsFailure::Refused);
        assert!(matches!(
            failure(&NetError::NoConnections),
            DnsFailure::Network(_)
        ));
    }
}
