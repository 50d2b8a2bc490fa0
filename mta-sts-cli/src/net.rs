//! The options of every command that touches the network, and the blocking I/O of `check`: it
//! runs one step after the other and needs details no client keeps (raw TXT and MX records,
//! HTTP status and headers, certificates), so it calls the pieces of the shared client directly
//! (the stub resolver's DNS exchange, the connection attempts, the policy fetch) on
//! mta-sts-blocking's runtime. It has no DNS or fetch loop of its own.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use mta_sts_blocking::{BlockingRuntime, Resolver, StubResolver, block_on};
use mta_sts_core::io::DnsFailure;
use mta_sts_core::wire::dns::{DnsAnswer, QueryType};
use mta_sts_net::TrustAnchors;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The most seconds `--timeout` accepts (a day).
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// Network options: resolvers, extra trust anchors, timeout, and the ports of a test world.
#[derive(Debug, Clone, Args)]
pub(crate) struct NetArgs {
    /// A DNS server to ask, as IP or IP:PORT (repeat for several; default: the nameservers of
    /// /etc/resolv.conf).
    #[arg(long = "resolver", value_name = "IP:PORT", value_parser = parse_resolver)]
    pub(crate) resolvers: Vec<SocketAddr>,
    /// A PEM file of extra trust anchors (CA certificates), trusted besides the Mozilla roots for
    /// policy hosts and MX hosts.
    #[arg(long = "ca-file", value_name = "PEM")]
    pub(crate) ca_files: Vec<PathBuf>,
    /// How long each network step (a DNS lookup, the policy fetch, one SMTP probe) may take, in
    /// seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = parse_timeout)]
    pub(crate) timeout: u64,
    /// The HTTPS port of policy hosts (for test worlds only).
    #[arg(long, value_name = "N", default_value_t = 443)]
    pub(crate) https_port: u16,
    /// The SMTP port of MX hosts (for test worlds only).
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub(crate) smtp_port: u16,
}

/// `IP`, `IP:PORT`, `[IPv6]` or `[IPv6]:PORT` (port 53 when none is given); shared by every
/// command that takes `--resolver` and by the daemon's `resolvers` key.
pub(crate) use mta_sts_postfix::config::parse_resolver;

fn parse_timeout(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=MAX_TIMEOUT_SECS).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a timeout: use a whole number of seconds from 1 to {MAX_TIMEOUT_SECS}"
        )),
    }
}

impl NetArgs {
    /// The timeout of one step.
    pub(crate) fn step_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// The resolvers given, or the system's.
    pub(crate) fn resolvers(&self) -> Result<Vec<SocketAddr>, String> {
        if !self.resolvers.is_empty() {
            return Ok(self.resolvers.clone());
        }
        mta_sts_net::system_resolvers()
            .map_err(|e| format!("{e}; name a DNS server with --resolver IP:PORT"))
    }

    /// The trust anchors: the Mozilla roots plus every `--ca-file`.
    pub(crate) fn trust_anchors(&self) -> Result<TrustAnchors, String> {
        let mut anchors = TrustAnchors::webpki();
        for path in &self.ca_files {
            anchors
                .add_pem_file(path)
                .map_err(|e| format!("--ca-file: {e}; give a PEM file of CA certificates"))?;
        }
        Ok(anchors)
    }

    /// The same anchors as a root store, for the verifier of `check` (which records the
    /// certificate it is shown). [`trust_anchors`](Self::trust_anchors) has checked the files.
    pub(crate) fn root_store(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in &self.ca_files {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect)
                .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            roots.add_parsable_certificates(certs);
        }
        Ok(roots)
    }
}

/// One DNS lookup of `name` for `qtype` through `servers`, within `timeout`: the shared stub
/// resolver's exchange ([`mta_sts_net::lookup`]) on the blocking runtime.
pub(crate) fn lookup(
    servers: &[SocketAddr],
    name: &str,
    qtype: QueryType,
    timeout: Duration,
) -> Result<DnsAnswer, DnsFailure> {
    block_on(mta_sts_net::lookup(
        &BlockingRuntime,
        servers,
        name,
        qtype,
        timeout,
    ))
}

/// The addresses of `host` (AAAA and A, IPv6 first, interleaved), or why there are none.
pub(crate) fn addresses(
    servers: &[SocketAddr],
    host: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, String> {
    let resolver = StubResolver::new(BlockingRuntime, servers.to_vec());
    match block_on(resolver.addresses(host, timeout)) {
        Ok(addrs) if addrs.is_empty() => Err(format!("{host}: no A or AAAA record")),
        Ok(addrs) => Ok(addrs),
        Err(e) => Err(format!("{host}: {e}")),
    }
}

/// A TCP connection to the first address of `addrs` that answers on `port`, each attempt with
/// its share of `timeout` ([`mta_sts_net::connect_any`]); read and write timeouts are set to
/// `timeout`.
pub(crate) fn connect(addrs: &[IpAddr], port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let deadline = Instant::now() + timeout;
    let connecting = mta_sts_net::connect_any(&BlockingRuntime, addrs, port, timeout, deadline);
    let (_, tcp) = block_on(connecting).map_err(|e| e.to_string())?;
    let tcp = tcp.into_std();
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_in_range() {
        assert_eq!(parse_timeout("5"), Ok(5));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("1.5").is_err());
        assert!(parse_timeout("99999999").is_err());
    }

    #[test]
    fn lookup_without_servers_fails_at_once() {
        let r = lookup(&[], "example.com", QueryType::Mx, Duration::from_secs(1));
        assert!(r.is_err());
    }
}
