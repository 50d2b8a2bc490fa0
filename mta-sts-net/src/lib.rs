//! What the `mta-sts` adapters (tokio, smol, blocking) share, so that they cannot disagree: the
//! client itself, written once over a [`Runtime`] trait in the style of quinn's ([`Client`],
//! [`ClientBuilder`], [`Refresher`]); its DNS seam ([`Resolver`], with the built-in
//! [`StubResolver`] over the core's DNS codec, and hickory-resolver's with the `hickory`
//! feature); the policy fetch over any runtime ([`fetch_policy`]); the rustls configurations for
//! policy fetches and for the STARTTLS connection to an MX under a policy; trust anchors
//! (webpki-roots plus PEM files); the system's resolvers from `/etc/resolv.conf`; the mapping of
//! TLS errors to the core's [`FetchFailure`]; the cache file; the metrics; TLSRPT (RFC 8460): the
//! report POST ([`post_report`]), the client's counting and reporting task ([`TlsRptSettings`],
//! [`Client::record_tls_result`], [`Client::spawn_reporter`], [`TlsRptStats`]).
//!
//! An adapter implements [`Runtime`] (timers, UDP and TCP sockets, spawning, somewhere to
//! block) and names `Client<ItsRuntime>`; it has no client logic of its own. This crate never
//! depends on an adapter.
//!
//! The whole workspace uses one rustls crypto provider, *ring* ([`provider`]); never enable
//! aws-lc-rs beside it (rustls then cannot pick a process default and `ClientConfig::builder()`
//! panics). Every configuration here is built with an explicit provider, so it works either way.
//!
//! ```
//! use mta_sts_net::{TrustAnchors, mx_starttls_config, server_name};
//!
//! // An MTA delivering to an MX under an MTA-STS policy in mode enforce:
//! let config = mx_starttls_config(&TrustAnchors::webpki());
//! let name = server_name("MX1.Example.COM.")?; // SNI and certificate name: the MX host name
//! assert_eq!(format!("{name:?}"), r#"DnsName("mx1.example.com")"#);
//! // … after EHLO / STARTTLS / 220, hand `config` and `name` to your TLS connector.
//! # let _ = config;
//! # Ok::<(), mta_sts_net::TlsSetupError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mta_sts_core::io::FetchFailure;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

pub use rustls;

mod client;
mod dane;
mod dns;
mod fetch;
#[cfg(feature = "hickory")]
mod hickory;
mod persist;
mod report;
mod runtime;
mod store;
pub mod store_client;
mod transfer;

/// Every name an adapter's API mentions, for `pub use mta_sts_net::api::*;`: the outcome and
/// decision types of the core, its configuration, the clock and time, the DNS seam, trust
/// anchors, the MX STARTTLS configuration, TLSRPT (the settings, the MTA's TLS results, the
/// counters, and the core's [`tlsrpt`](mta_sts_core::tlsrpt) module with the names an MTA
/// uses) and the errors. The adapters name their `Client`, `ClientBuilder`, `Refresher` and
/// `ReporterTask` themselves.
pub mod api {
    pub use crate::{
        BoxFuture, CacheEntry, ClientError as Error, Clock, DEFAULT_MAX_CONCURRENT_LOOKUPS,
        DEFAULT_STORE_TIMEOUT, EntrySource, IoFuture, MAX_REFRESHER_SLEEP, MailSink, MemoryStore,
        OnStoreError, PersistError, PolicyStore, PollIo, Purged, Resolver, Runtime, StoreError,
        StoreErrorKind, StoreFault, StoredPolicy, StubResolver, TlsResult, TlsRptSettings,
        TlsRptStats, TlsSetupError, TlsStream, TrustAnchors, classify_tls_error,
        dane_starttls_config, mx_starttls_config, rustls, server_name, system_clock,
    };
    pub use mta_sts_core::io::{
        CertificateProblem, DnsFailure, DnssecAnswer, DnssecData, DnssecQuery, DnssecResult,
        DnssecType, FetchFailure,
    };
    pub use mta_sts_core::tlsrpt;
    pub use mta_sts_core::tlsrpt::{
        AggregatorLimits, OutboxConfig, PolicyType, ReportMail, Reporter, TlsFailure,
        is_report_mail,
    };
    pub use mta_sts_core::{
        CacheReason, CachedPolicy, Candidate, CandidateDane, Config, DaneConfig, DaneHost,
        DaneState, DeferReason, DnsTempFailure, DomainSettings, Evaluation, FetchProblem,
        HostCoverage, LookupError, Mode, MxDecision, NoPolicyReason, Outcome, Policy, Precedence,
        Stats, StsUsage, Tlsa, TxtProblem, UnixTime, Verdict, WhenAllFail,
    };
}

/// Names the client on an adapter's runtime: `pub use` of everything its API mentions
/// ([`api`]) and the type aliases `Client`, `ClientBuilder` and `Refresher` on `$runtime`, with
/// their docs; `$what` says for what, e.g. `"tokio"`.
///
/// ```ignore
/// mta_sts_net::adapter!(TokioRuntime, "tokio");
/// ```
#[macro_export]
macro_rules! adapter {
    ($runtime:ty, $what:literal) => {
        pub use $crate::api::*;

        #[doc = concat!("An MTA-STS client for ", $what, ": cheap to clone, shared by every ")]
        #[doc = "delivery task. See [`mta_sts_net::Client`] for what it does."]
        pub type Client = $crate::Client<$runtime>;

        /// Builds a [`Client`]: its DNS, trust anchors, the core's [`Config`] (sender settings,
        /// cache capacity, timeouts, per-domain overrides, the re-check period), an optional
        /// persistence file, the bound on concurrent lookups and the clock.
        pub type ClientBuilder = $crate::ClientBuilder<$runtime>;

        /// The background refresher started by [`Client::spawn_refresher`].
        pub type Refresher = $crate::Refresher<$runtime>;

        /// The TLSRPT reporting task started by [`Client::spawn_reporter`].
        pub type ReporterTask = $crate::ReporterTask<$runtime>;
    };
}

pub use client::admin::{CacheEntry, EntrySource, MAX_PURGE, Purged};
pub use client::{
    Client, ClientBuilder, ClientError, Clock, DEFAULT_MAX_CONCURRENT_LOOKUPS, MAX_REFRESHER_SLEEP,
    Refresher, ReporterTask, system_clock,
};
pub use dane::{
    ChainProblem, DaneMatch, DaneVerifyError, MatchedBy, dane_starttls_config, verify_dane,
};
pub use dns::{Resolver, StubResolver, combine_addresses, lookup};
pub use fetch::{FetchTrace, connect_any, fetch_policy, fetch_policy_traced};
pub use futures_rustls;
pub use persist::{
    CacheFileReport, MAX_CACHE_FILE, PersistError, load_cache_file, load_snapshot, save_snapshot,
};
pub use report::{
    MAX_CONCURRENT_DELIVERIES, MailSink, STATE_SAVE_INTERVAL, TlsResult, TlsRptSettings,
    TlsRptStats, post_report,
};
pub use runtime::{BoxFuture, IoFuture, PollIo, Runtime, TlsStream};
pub use store::{
    FleetNotes, MAX_NOTE_KEY, MAX_NOTE_VALUE, PolicyStore, StoreError, StoreErrorKind,
    StoredPolicy, check_note,
};
pub use store_client::{
    DEFAULT_STORE_TIMEOUT, MAX_PENDING_STORE_WRITES, MemoryStore, OnStoreError, StoreFault,
};
pub use transfer::{
    ConnectErrors, READ_BUFFER_LEN, policy_request, poll_exchange_read, poll_response_read,
    read_progress, udp_bind_addr, udp_socket, with_read_buffer,
};

/// The crypto provider of the whole workspace: *ring*.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a TLS set-up step failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A PEM file could not be read.
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        error: io::Error,
    },
    /// The PEM data has no certificate, or a certificate that is not a valid trust anchor.
    Pem(String),
    /// The name is not a DNS host name (an IP address, or not a valid name).
    InvalidName(String),
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, error } => write!(f, "cannot read {path}: {error}"),
            Self::Pem(d) => write!(f, "invalid trust anchor PEM: {d}"),
            Self::InvalidName(n) => write!(f, "{n:?} is not a DNS host name"),
        }
    }
}

impl std::error::Error for TlsSetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The certificate authorities trusted for policy hosts and MX hosts.
#[derive(Clone)]
pub struct TrustAnchors {
    store: RootCertStore,
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustAnchors")
            .field("roots", &self.store.len())
            .finish()
    }
}

impl Default for TrustAnchors {
    fn default() -> Self {
        Self::webpki()
    }
}

impl TrustAnchors {
    /// The Mozilla root program, from webpki-roots (what RFC 8461 §3.3 calls "a set of trusted
    /// CAs similar to those in widely deployed web browsers").
    pub fn webpki() -> Self {
        let mut store = RootCertStore::empty();
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self { store }
    }

    /// No trust anchor at all: only those added later (for tests and private deployments).
    pub fn empty() -> Self {
        Self {
            store: RootCertStore::empty(),
        }
    }

    /// Adds every certificate of a PEM bundle; returns how many were added. A bundle without
    /// certificates, or with one that is not a usable anchor, is refused whole.
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<usize, TlsSetupError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsSetupError::Pem(e.to_string()))?;
        if certs.is_empty() {
            return Err(TlsSetupError::Pem("no CERTIFICATE block found".into()));
        }
        let mut store = self.store.clone();
        for cert in &certs {
            store
                .add(cert.clone())
                .map_err(|e| TlsSetupError::Pem(e.to_string()))?;
        }
        self.store = store;
        Ok(certs.len())
    }

    /// [`TrustAnchors::add_pem`] from a file.
    pub fn add_pem_file(&mut self, path: impl AsRef<Path>) -> Result<usize, TlsSetupError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|error| TlsSetupError::Read {
            path: path.display().to_string(),
            error,
        })?;
        self.add_pem(&pem)
    }

    /// How many anchors there are.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        // rustls speaks only TLS 1.2 and 1.3, as RFC 8461 §7.2 and RFC 7525 ask.
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_root_certificates(self.store.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// The client configuration for fetching policies: WebPKI validation against the policy host
/// name (SNI = that name), TLS 1.2 or 1.3, ALPN `http/1.1`.
pub fn policy_fetch_config(anchors: &TrustAnchors) -> Arc<ClientConfig> {
    anchors.client_config(&[b"http/1.1"])
}

/// The client configuration an MTA uses for the STARTTLS connection to an MX under a policy
/// (RFC 8461 §4.2, §7.1): PKIX validation against the **MX host name** (not the policy's
/// pattern), TLS 1.2 or 1.3. Connect with [`server_name`]`(mx_host)` as SNI and name.
pub fn mx_starttls_config(anchors: &TrustAnchors) -> Arc<ClientConfig> {
    anchors.client_config(&[])
}

/// The TLS server name for a host: lowercase, without root dot. IP addresses are refused: MTA-STS
/// validates host names only.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsSetupError> {
    let trimmed = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if trimmed.parse::<IpAddr>().is_ok() || trimmed.starts_with('[') {
        return Err(TlsSetupError::InvalidName(host.to_owned()));
    }
    ServerName::try_from(trimmed).map_err(|_| TlsSetupError::InvalidName(host.to_owned()))
}

/// Maps an error from a TLS handshake or TLS stream to the core's [`FetchFailure`]: certificate
/// problems (expired, untrusted, wrong name, none presented) become [`FetchFailure::Certificate`]
/// (TLSRPT `sts-webpki-invalid`) with the [`certificate_problem`], other TLS errors
/// [`FetchFailure::Tls`], a timeout [`FetchFailure::Timeout`], anything else a broken connection
/// ([`FetchFailure::Protocol`]).
pub fn classify_tls_error(error: &io::Error) -> FetchFailure {
    use mta_sts_core::io::CertificateProblem;

    if let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return match tls {
            rustls::Error::InvalidCertificate(c) => {
                FetchFailure::Certificate(certificate_problem(c))
            }
            rustls::Error::NoCertificatesPresented => {
                FetchFailure::Certificate(CertificateProblem::NoCertificate)
            }
            other => FetchFailure::Tls(other.to_string()),
        };
    }
    match error.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => FetchFailure::Timeout,
        _ => FetchFailure::Protocol(error.to_string()),
    }
}

/// Maps a rustls certificate error to the core's
/// [`CertificateProblem`](mta_sts_core::io::CertificateProblem): expired, not valid yet, unknown
/// issuer (untrusted or self-signed) and name mismatch, with or without their context; anything
/// else is [`Other`](mta_sts_core::io::CertificateProblem::Other) with the error's debug text
/// (e.g. `BadSignature`).
///
/// ```
/// use mta_sts_core::io::CertificateProblem;
/// use mta_sts_net::certificate_problem;
/// use mta_sts_net::rustls::CertificateError;
///
/// assert_eq!(certificate_problem(&CertificateError::Expired), CertificateProblem::Expired);
/// assert_eq!(
///     certificate_problem(&CertificateError::Revoked),
///     CertificateProblem::Other("Revoked".into())
/// );
/// ```
pub fn certificate_problem(
    error: &rustls::CertificateError,
) -> mta_sts_core::io::CertificateProblem {
    use mta_sts_core::io::CertificateProblem;
    use rustls::CertificateError as E;

    match error {
        E::Expired | E::ExpiredContext { .. } => CertificateProblem::Expired,
        E::NotValidYet | E::NotValidYetContext { .. } => CertificateProblem::NotYetValid,
        E::UnknownIssuer => CertificateProblem::UnknownIssuer,
        E::NotValidForName | E::NotValidForNameContext { .. } => CertificateProblem::NameMismatch,
        other => CertificateProblem::Other(format!("{other:?}")),
    }
}

/// Why the system's resolvers could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum ResolverConfError {
    /// `/etc/resolv.conf` could not be read.
    Read(io::Error),
    /// It could not be parsed.
    Parse(String),
    /// It lists no name server.
    NoNameServers,
}

impl fmt::Display for ResolverConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => write!(f, "cannot read /etc/resolv.conf: {e}"),
            Self::Parse(d) => write!(f, "cannot parse /etc/resolv.conf: {d}"),
            Self::NoNameServers => f.write_str("/etc/resolv.conf lists no nameserver"),
        }
    }
}

impl std::error::Error for ResolverConfError {}

/// The name servers of a resolv.conf text, port 53, in order.
pub fn parse_resolv_conf(text: &[u8]) -> Result<Vec<SocketAddr>, ResolverConfError> {
    let conf =
        resolv_conf::Config::parse(text).map_err(|e| ResolverConfError::Parse(e.to_string()))?;
    let servers: Vec<SocketAddr> = conf
        .nameservers
        .iter()
        .map(|ns| SocketAddr::new(IpAddr::from(ns), 53))
        .collect();
    if servers.is_empty() {
        return Err(ResolverConfError::NoNameServers);
    }
    Ok(servers)
}

/// The system's name servers, from `/etc/resolv.conf`.
pub fn system_resolvers() -> Result<Vec<SocketAddr>, ResolverConfError> {
    let text = std::fs::read("/etc/resolv.conf").map_err(ResolverConfError::Read)?;
    parse_resolv_conf(&text)
}

/// How long one connection attempt to a policy host may take when it has `addresses` addresses
/// and the whole fetch has `total`: an equal share, so that a black-holed first address cannot eat
/// the whole fetch timeout, but at least 2 s (or `total` if shorter).
pub fn connect_attempt_timeout(total: Duration, addresses: usize) -> Duration {
    let share = total / u32::try_from(addresses.max(1)).unwrap_or(u32::MAX);
    share.max(Duration::from_secs(2)).min(total)
}

/// A random DNS message id (RFC 5452: unpredictable ids resist spoofed answers).
pub fn query_id() -> u16 {
    let mut b = [0u8; 2];
    match getrandom::fill(&mut b) {
        Ok(()) => u16::from_be_bytes(b),
        // No OS randomness: fall back to the hasher's per-process random keys.
        Err(_) => {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::time::SystemTime::now()) as u16
        }
    }
}

/// Publishes a cache's counters through the `metrics` facade, as absolute values (call it after
/// every lookup or evaluation; it is cheap). Names and labels, shared by every adapter:
///
/// - `mta_sts_policy_fetch_total{result}`: `success`, `failure` (any HTTPS failure or invalid
///   policy) and `cached` (a lookup answered from the cache without a successful fetch);
/// - `mta_sts_enforcement_total{mode,result}`: `enforce`/`match`, `enforce`/`skip`,
///   `enforce`/`defer`, `testing`/`match`, `testing`/`mismatch`, `none`/`no_constraint`,
///   `no_policy`/`no_constraint`, `config`/`defer`;
/// - `mta_sts_cache_size`: the entries in the cache (gauge);
/// - `mta_sts_negative_cache_entries`: the negative answers (NXDOMAIN, NODATA) remembered, each
///   sparing the domain's TXT lookup until its negative TTL ends (gauge).
pub fn export_metrics(stats: &mta_sts_core::Stats) {
    use metrics::{counter, gauge};
    counter!("mta_sts_policy_fetch_total", "result" => "success").absolute(stats.fetch_success);
    counter!("mta_sts_policy_fetch_total", "result" => "failure").absolute(stats.fetch_failure);
    export_cached_metric(stats);
    let d = &stats.decisions;
    for (mode, result, value) in [
        ("enforce", "match", d.enforce_match),
        ("enforce", "skip", d.enforce_skip),
        ("enforce", "defer", d.enforce_defer),
        ("testing", "match", d.testing_match),
        ("testing", "mismatch", d.testing_mismatch),
        ("none", "no_constraint", d.mode_none),
        ("no_policy", "no_constraint", d.no_policy),
        ("config", "defer", d.deferred),
    ] {
        counter!("mta_sts_enforcement_total", "mode" => mode, "result" => result).absolute(value);
    }
    gauge!("mta_sts_cache_size").set(stats.entries as f64);
    gauge!("mta_sts_negative_cache_entries").set(stats.negative_entries as f64);
}

/// Exports the one counter an answer without a lookup changes (a fresh cached policy:
/// `mta_sts_policy_fetch_total{result="cached"}`): a cache hit updates one metric, not twelve.
pub(crate) fn export_cached_metric(stats: &mta_sts_core::Stats) {
    metrics::counter!("mta_sts_policy_fetch_total", "result" => "cached").absolute(stats.cached);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_share_of_the_fetch_timeout() {
        let s = Duration::from_secs;
        assert_eq!(connect_attempt_timeout(s(60), 1), s(60));
        assert_eq!(connect_attempt_timeout(s(60), 4), s(15));
        assert_eq!(connect_attempt_timeout(s(60), 100), s(2));
        assert_eq!(connect_attempt_timeout(s(1), 3), s(1));
        assert_eq!(connect_attempt_timeout(s(60), 0), s(60));
    }

    #[test]
    fn metrics_names_and_labels_are_the_documented_ones() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let mut stats = mta_sts_core::Stats::default();
        stats.fetch_success = 3;
        stats.fetch_failure = 2;
        stats.cached = 7;
        stats.entries = 5;
        stats.negative_entries = 6;
        stats.decisions.enforce_skip = 4;
        stats.decisions.testing_mismatch = 1;
        metrics::with_local_recorder(&recorder, || export_metrics(&stats));
        let mut seen = std::collections::BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let k = key.key();
            let mut labels: Vec<String> = k
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let v = match value {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => f64::NAN,
            };
            seen.insert(format!("{}{{{}}}", k.name(), labels.join(",")), v);
        }
        assert_eq!(seen["mta_sts_policy_fetch_total{result=success}"], 3.0);
        assert_eq!(seen["mta_sts_policy_fetch_total{result=failure}"], 2.0);
        assert_eq!(seen["mta_sts_policy_fetch_total{result=cached}"], 7.0);
        assert_eq!(
            seen["mta_sts_enforcement_total{mode=enforce,result=skip}"],
            4.0
        );
        assert_eq!(
            seen["mta_sts_enforcement_total{mode=testing,result=mismatch}"],
            1.0
        );
        assert_eq!(seen["mta_sts_cache_size{}"], 5.0);
        assert_eq!(seen["mta_sts_negative_cache_entries{}"], 6.0);
        assert_eq!(seen.len(), 3 + 8 + 2, "{seen:?}");
    }

    #[test]
    fn query_ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| query_id()).collect();
        assert!(ids.len() > 50);
    }

    #[test]
    fn resolv_conf_nameservers_in_order_port_53() {
        let s = parse_resolv_conf(b"# comment\nsearch example.com\nnameserver 127.0.0.53\nnameserver ::1\noptions ndots:1\n")
            .unwrap();
        assert_eq!(
            s,
            [
                "127.0.0.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert!(matches!(
            parse_resolv_conf(b"search x\n"),
            Err(ResolverConfError::NoNameServers)
        ));
    }

    #[test]
    fn r34_server_name_is_the_host_without_root_dot() {
        assert_eq!(
            server_name("MX.Example.com.").unwrap(),
            ServerName::try_from("mx.example.com").unwrap()
        );
        assert!(server_name("192.0.2.1").is_err());
        assert!(server_name("[192.0.2.1]").is_err());
        assert!(server_name("bad name").is_err());
    }

    #[test]
    fn extra_anchors_from_pem() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let mut anchors = TrustAnchors::empty();
        assert_eq!(anchors.add_pem(ca.cert.pem().as_bytes()).unwrap(), 1);
        assert_eq!(anchors.len(), 1);
        assert!(matches!(
            anchors.add_pem(b"not pem"),
            Err(TlsSetupError::Pem(_))
        ));
        assert_eq!(anchors.len(), 1);
        assert!(TrustAnchors::webpki().len() > 100);
        assert!(matches!(
            anchors.add_pem_file("/nonexistent.pem"),
            Err(TlsSetupError::Read { .. })
        ));
    }

    #[test]
    fn r21_configs_offer_tls12_and_tls13_only() {
        let c = policy_fetch_config(&TrustAnchors::webpki());
        assert_eq!(c.alpn_protocols, [b"http/1.1".to_vec()]);
        let versions: Vec<_> = c
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.version().version)
            .collect();
        assert!(versions.iter().all(|v| matches!(
            v,
            rustls::ProtocolVersion::TLSv1_2 | rustls::ProtocolVersion::TLSv1_3
        )));
        assert!(
            mx_starttls_config(&TrustAnchors::webpki())
                .alpn_protocols
                .is_empty()
        );
    }

    #[test]
    fn tls_errors_are_classified() {
        use mta_sts_core::io::CertificateProblem;

        let cert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        assert_eq!(
            classify_tls_error(&cert),
            FetchFailure::Certificate(CertificateProblem::Expired)
        );
        let none = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert_eq!(
            classify_tls_error(&none),
            FetchFailure::Certificate(CertificateProblem::NoCertificate)
        );
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion),
        );
        assert!(matches!(classify_tls_error(&alert), FetchFailure::Tls(_)));
        assert_eq!(
            classify_tls_error(&io::Error::from(io::ErrorKind::TimedOut)),
            FetchFailure::Timeout
        );
        assert!(matches!(
            classify_tls_error(&io::Error::from(io::ErrorKind::ConnectionReset)),
            FetchFailure::Protocol(_)
        ));
    }

    #[test]
    fn r14_certificate_errors_map_to_their_problem() {
        use mta_sts_core::io::CertificateProblem as P;
        use rustls::CertificateError as E;
        use rustls_pki_types::UnixTime;

        let time = UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000));
        let other = UnixTime::since_unix_epoch(Duration::from_secs(1_600_000_000));
        let name = ServerName::try_from("mta-sts.example.com").unwrap();
        let cases = [
            (E::Expired, P::Expired),
            (
                E::ExpiredContext {
                    time,
                    not_after: other,
                },
                P::Expired,
            ),
            (E::NotValidYet, P::NotYetValid),
            (
                E::NotValidYetContext {
                    time: other,
                    not_before: time,
                },
                P::NotYetValid,
            ),
            (E::UnknownIssuer, P::UnknownIssuer),
            (E::NotValidForName, P::NameMismatch),
            (
                E::NotValidForNameContext {
                    expected: name,
                    presented: vec!["DnsName(\"other.example\")".into()],
                },
                P::NameMismatch,
            ),
            (E::BadSignature, P::Other("BadSignature".into())),
            (E::Revoked, P::Other("Revoked".into())),
        ];
        for (error, problem) in cases {
            assert_eq!(certificate_problem(&error), problem, "{error:?}");
            let io = io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(error),
            );
            assert_eq!(classify_tls_error(&io), FetchFailure::Certificate(problem));
        }
    }
}

/// The examples of the crate's README.md (its page on the registry), run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
