//! The world: builder, running servers, scenario changes, counters and shutdown.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use crate::collector::Collector;
use crate::dns;
use crate::https;
use crate::mail::ReceivedMail;
use crate::pki::{IssuedCert, Pki};
use crate::scenario::{Cert, DnsFault, Domain, Http, Record, RecordType, Txt};
use crate::smtp::{self, Smtp, SmtpState};
use crate::state::{Counters, Request, State, normalize, read, write};
use crate::sup::{Supervisor, Threads};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) idle_timeout: Duration,
    pub(crate) stall_limit: Duration,
    pub(crate) dns_latency: Duration,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: RwLock<State>,
    pub(crate) counters: Counters,
    pub(crate) pki: Pki,
    pub(crate) sup: Arc<Supervisor>,
    pub(crate) settings: Settings,
    pub(crate) smtp: SmtpState,
    pub(crate) delayed: dns::Delayed,
}

/// The name of the `i`-th domain added by [`WorldBuilder::bulk_domains`]: `d0000.example`,
/// `d0001.example`, …
pub fn bulk_domain_name(i: usize) -> String {
    format!("d{i:04}.example")
}

/// The name of the TLSA records of an SMTP server `host` on port 25: `_25._tcp.<host>`
/// (RFC 7672 §2.2, RFC 6698 §3).
pub fn tlsa_name(host: &str) -> String {
    format!("_25._tcp.{}", normalize(host))
}

/// Configures and starts a [`World`].
///
/// Defaults: DNS TTL 0 (so that clients with a DNS cache see scenario changes at once), idle
/// timeout 30 s, stall limit 300 s, at most 1024 open TCP connections.
#[must_use]
#[derive(Debug)]
pub struct WorldBuilder {
    domains: Vec<(String, Domain)>,
    records: Vec<(String, Record)>,
    faults: Vec<(String, Option<RecordType>, DnsFault)>,
    signed_zones: Vec<String>,
    ttl: u32,
    settings: Settings,
    max_connections: usize,
    smtp: Smtp,
    accept_mail: bool,
    mx_certs: Vec<(String, Cert)>,
    dns_bind: Option<SocketAddr>,
    https_bind: Option<SocketAddr>,
    smtp_bind: Option<SocketAddr>,
}

impl Default for WorldBuilder {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            records: Vec::new(),
            faults: Vec::new(),
            signed_zones: Vec::new(),
            ttl: 0,
            settings: Settings {
                idle_timeout: Duration::from_secs(30),
                stall_limit: Duration::from_secs(300),
                dns_latency: Duration::ZERO,
            },
            max_connections: 1024,
            smtp: Smtp::default(),
            accept_mail: false,
            mx_certs: Vec::new(),
            dns_bind: None,
            https_bind: None,
            smtp_bind: None,
        }
    }
}

impl Shared {
    /// Adds a record at `name`, besides the records the domains define.
    pub(crate) fn add_record_at(&self, name: &str, record: Record) {
        write(&self.state)
            .records
            .entry(normalize(name))
            .or_default()
            .push(record);
    }
}

impl WorldBuilder {
    /// Adds (or replaces) a policy domain.
    pub fn domain(mut self, name: &str, domain: Domain) -> Self {
        self.domains.push((normalize(name), domain));
        self
    }

    /// Adds `n` valid enforce domains [`bulk_domain_name`]`(0..n)`, each with TXT id `1` and
    /// the policy `mx: mx.<domain>`, for load tests.
    pub fn bulk_domains(self, n: usize) -> Self {
        self.bulk_domains_with(n, |_, name| Domain::enforce([format!("mx.{name}")]))
    }

    /// Adds `n` domains [`bulk_domain_name`]`(0..n)` made by `make(index, name)`.
    pub fn bulk_domains_with(mut self, n: usize, make: impl Fn(usize, &str) -> Domain) -> Self {
        self.domains.reserve(n);
        for i in 0..n {
            let name = bulk_domain_name(i);
            let d = make(i, &name);
            self.domains.push((name, d));
        }
        self
    }

    /// Adds a record at `name`, besides the records the domains define.
    pub fn record(mut self, name: &str, record: Record) -> Self {
        self.records.push((normalize(name), record));
        self
    }

    /// Injects a DNS fault for `name`, for one record type or (with `None`) for all.
    pub fn dns_fault(mut self, name: &str, rtype: Option<RecordType>, fault: DnsFault) -> Self {
        self.faults.push((normalize(name), rtype, fault));
        self
    }

    /// Marks the zone at `name` as DNSSEC-signed: the answers for names at or under it
    /// carry the AD bit (authenticated data, RFC 4035 §3.2.3) when the query asks for DNSSEC
    /// (the DO bit in EDNS, RFC 3225, or the AD bit in the query, RFC 6840 §5.7), as a local
    /// validating resolver's answers would. Answers for names outside every signed zone never
    /// carry it, nor do answers with an error code ([`DnsFault::Bogus`] models a failed
    /// validation). An answer following a CNAME chain carries AD only if every name of the
    /// chain is in a signed zone. `""` (the root) signs every name.
    ///
    /// The world serves no RRSIG, DNSKEY or NSEC records: the AD bit stands for a resolver's
    /// verdict. For real signatures and a real validator, see
    /// [`dnssec::ValidatingStack`](crate::dnssec::ValidatingStack).
    pub fn signed_zone(mut self, name: &str) -> Self {
        self.signed_zones.push(normalize(name));
        self
    }

    /// The TTL of every record served (and the negative TTL of the SOA).
    pub fn ttl(mut self, seconds: u32) -> Self {
        self.ttl = seconds;
        self
    }

    /// How long a server thread waits for a silent client before closing the connection.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.settings.idle_timeout = timeout;
        self
    }

    /// How long a stall ([`Http::StallAfterHeaders`], [`Http::StallHandshake`]) lasts at most
    /// if nobody releases it and the client does not close.
    pub fn stall_limit(mut self, limit: Duration) -> Self {
        self.settings.stall_limit = limit;
        self
    }

    /// Holds every DNS answer this long before sending it (default: none), like a network's
    /// round trip. The queries a client has out at once then stay in flight long enough for
    /// [`World::peak_dns_in_flight`] to see them all.
    pub fn dns_latency(mut self, latency: Duration) -> Self {
        self.settings.dns_latency = latency;
        self
    }

    /// The most TCP connections (DNS and HTTPS together) served at once; further ones wait in
    /// the listen queue.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// How the fake MX hosts answer before TLS (default [`Smtp::Starttls`]); see
    /// [`World::smtp_addr`].
    pub fn smtp(mut self, smtp: Smtp) -> Self {
        self.smtp = smtp;
        self
    }

    /// The fake MX accepts mail: `MAIL FROM`, `RCPT TO` and `DATA`, before or after STARTTLS,
    /// and keeps each message ([`World::received_mail`]), so that a sender's delivery can be
    /// checked end to end. Off by default: the three commands then get `502`.
    pub fn accept_mail(mut self) -> Self {
        self.accept_mail = true;
        self
    }

    /// The certificate the fake MX presents for `host` (by SNI) after STARTTLS (default
    /// [`Cert::Valid`]: issued by the world's CA for `host`).
    pub fn mx_cert(mut self, host: &str, cert: Cert) -> Self {
        self.mx_certs.push((normalize(host), cert));
        self
    }

    /// Serves DNS (UDP and TCP) on this address instead of an ephemeral port of 127.0.0.1,
    /// e.g. `127.0.0.1:53` inside a private network namespace, so that a client that only
    /// reads `/etc/resolv.conf` can use the world. Building fails if the address is taken.
    pub fn bind_dns(mut self, addr: SocketAddr) -> Self {
        self.dns_bind = Some(addr);
        self
    }

    /// Serves HTTPS on this address instead of an ephemeral port of 127.0.0.1, e.g.
    /// `127.0.0.1:443`, so that a client fetching `https://mta-sts.<domain>/` with the
    /// standard port reaches the world (policy hosts resolve to 127.0.0.1 unless
    /// [`Domain::host_addrs`] says otherwise). Building fails if the address is taken.
    pub fn bind_https(mut self, addr: SocketAddr) -> Self {
        self.https_bind = Some(addr);
        self
    }

    /// Serves SMTP on this address instead of an ephemeral port of 127.0.0.1, e.g.
    /// `127.0.0.1:25`. Building fails if the address is taken.
    pub fn bind_smtp(mut self, addr: SocketAddr) -> Self {
        self.smtp_bind = Some(addr);
        self
    }

    /// Binds the servers (on ephemeral ports of 127.0.0.1 unless [`bind_dns`](Self::bind_dns),
    /// [`bind_https`](Self::bind_https) or [`bind_smtp`](Self::bind_smtp) chose an address)
    /// and starts their threads.
    pub fn build(self) -> io::Result<World> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut state = State {
            ttl: self.ttl,
            ..State::default()
        };
        for (name, d) in self.domains {
            state.domains.insert(name, d);
        }
        for (name, r) in self.records {
            state.records.entry(name).or_default().push(r);
        }
        for (name, t, f) in self.faults {
            state.faults.insert((name, t), f);
        }
        state.signed_zones.extend(self.signed_zones);
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            counters: Counters::default(),
            pki: Pki::new(Arc::clone(&provider))?,
            sup: Arc::new(Supervisor::new(self.max_connections)),
            settings: self.settings,
            smtp: SmtpState::new(self.smtp, self.mx_certs, self.accept_mail),
            delayed: dns::Delayed::default(),
        });
        let configs = Arc::new(https::Configs::new(&shared, &provider)?);
        let sockets = match self.dns_bind {
            Some(addr) => dns::bind_at(addr)?,
            None => dns::bind()?,
        };
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let https_listener = TcpListener::bind(self.https_bind.unwrap_or(loopback))?;
        let smtp_listener = TcpListener::bind(self.smtp_bind.unwrap_or(loopback))?;
        let smtp_tls = smtp::tls_config(&shared)?;
        // From here on, dropping `world` stops whatever was started.
        let world = World {
            dns_addr: sockets.udp.local_addr()?,
            dns_tcp_addr: sockets.tcp.local_addr()?,
            https_addr: https_listener.local_addr()?,
            smtp_addr: smtp_listener.local_addr()?,
            shared,
        };
        let sh = &world.shared;
        for _ in 0..dns::UDP_WORKERS {
            let sock = sockets.udp.try_clone()?;
            let s = Arc::clone(sh);
            sh.sup.spawn("dns-udp", move || dns::serve_udp(&s, &sock))?;
        }
        if !self.settings.dns_latency.is_zero() {
            let sock = sockets.udp.try_clone()?;
            let s = Arc::clone(sh);
            sh.sup
                .spawn("dns-delayed", move || dns::send_delayed(&s, &sock))?;
        }
        let s = Arc::clone(sh);
        let tcp = sockets.tcp;
        sh.sup.spawn("dns-tcp", move || dns::serve_tcp(&s, &tcp))?;
        let s = Arc::clone(sh);
        sh.sup.spawn("https", move || {
            https::serve(&s, &https_listener, &configs);
        })?;
        let s = Arc::clone(sh);
        sh.sup.spawn("smtp", move || {
            smtp::serve(&s, &smtp_listener, &smtp_tls);
        })?;
        Ok(world)
    }
}

/// A running fake internet on 127.0.0.1: an authoritative DNS server (UDP and TCP), an HTTPS
/// server for the policy hosts `mta-sts.<domain>` and an SMTP server with STARTTLS for the MX
/// hosts, with certificates from a CA generated at start.
///
/// Dropping the world (or [`shutdown`](Self::shutdown)) stops and joins every thread it
/// started, closing open connections and releasing stalls.
pub struct World {
    shared: Arc<Shared>,
    dns_addr: SocketAddr,
    dns_tcp_addr: SocketAddr,
    https_addr: SocketAddr,
    smtp_addr: SocketAddr,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("dns_addr", &self.dns_addr)
            .field("dns_tcp_addr", &self.dns_tcp_addr)
            .field("https_addr", &self.https_addr)
            .field("smtp_addr", &self.smtp_addr)
            .finish_non_exhaustive()
    }
}

impl World {
    /// A builder for a world.
    pub fn builder() -> WorldBuilder {
        WorldBuilder::default()
    }

    // ----- addresses and trust -----

    /// The DNS server's UDP address (127.0.0.1).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns_addr
    }

    /// The DNS server's TCP address (127.0.0.1; the same port as UDP unless that port was
    /// taken for TCP).
    pub fn dns_tcp_addr(&self) -> SocketAddr {
        self.dns_tcp_addr
    }

    /// The HTTPS server's address (127.0.0.1). Every policy host resolves to 127.0.0.1, so a
    /// client must connect to this port instead of 443.
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The HTTPS server's port.
    pub fn https_port(&self) -> u16 {
        self.https_addr.port()
    }

    /// The SMTP server's address (127.0.0.1): the fake MX of every MX host of the world (they
    /// all resolve to 127.0.0.1), so a client connects to this port instead of 25. Before TLS
    /// it behaves as [`Smtp`] says for all hosts; after STARTTLS it presents the certificate
    /// set for the SNI host ([`World::set_mx_cert`]).
    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtp_addr
    }

    /// The SMTP server's port.
    pub fn smtp_port(&self) -> u16 {
        self.smtp_addr.port()
    }

    /// The trust anchor clients add: the world's CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.shared.pki.ca_pem()
    }

    /// The world's CA certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.shared.pki.ca_der()
    }

    /// The CA behind [`Cert::UntrustedCa`], PEM (clients should not trust it).
    pub fn untrusted_ca_pem(&self) -> String {
        self.shared.pki.untrusted_ca_pem()
    }

    /// The CA behind [`Cert::UntrustedCa`], DER.
    pub fn untrusted_ca_der(&self) -> CertificateDer<'static> {
        self.shared.pki.untrusted_ca_der()
    }

    /// A root store holding only the world's CA.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        // The CA was made by this crate; it always parses.
        let _ = roots.add(self.ca_der());
        roots
    }

    /// A rustls client configuration (ring provider, TLS 1.2 and 1.3) trusting only the
    /// world's CA.
    pub fn client_config(&self) -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(self.root_store())
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
    }

    /// A fresh key and a certificate for `names` issued by the world's CA, e.g. for a fake MX
    /// host's STARTTLS.
    pub fn issue_cert(&self, names: &[&str]) -> io::Result<IssuedCert> {
        self.shared.pki.issue(names)
    }

    // ----- scenario changes -----

    /// Adds or replaces a domain.
    pub fn add_domain(&self, name: &str, domain: Domain) {
        write(&self.shared.state)
            .domains
            .insert(normalize(name), domain);
    }

    /// Removes a domain; its names become NXDOMAIN and its policy host unknown.
    pub fn remove_domain(&self, name: &str) -> Option<Domain> {
        write(&self.shared.state).domains.remove(&normalize(name))
    }

    /// A copy of a domain's current settings.
    pub fn domain(&self, name: &str) -> Option<Domain> {
        read(&self.shared.state)
            .domains
            .get(&normalize(name))
            .cloned()
    }

    /// Replaces a domain by `f(domain)`, atomically for the servers. Returns false if there is
    /// no such domain.
    ///
    /// ```
    /// # use mta_sts_testkit::{Domain, Http, World};
    /// # let world = World::builder().domain("example.com", Domain::enforce(["mx.example.com"])).build()?;
    /// world.update("example.com", |d| d.txt_id("2").http(Http::Status(503)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn update(&self, name: &str, f: impl FnOnce(Domain) -> Domain) -> bool {
        let mut st = write(&self.shared.state);
        let Some(slot) = st.domains.get_mut(&normalize(name)) else {
            return false;
        };
        let old = std::mem::replace(slot, Domain::none());
        *slot = f(old);
        true
    }

    /// Sets the domain's TXT record to `v=STSv1; id=<id>;` (a policy change).
    pub fn set_txt_id(&self, name: &str, id: &str) -> bool {
        self.update(name, |d| d.txt_id(id))
    }

    /// Sets the domain's TXT records.
    pub fn set_txt<I: IntoIterator<Item = Txt>>(&self, name: &str, records: I) -> bool {
        self.update(name, |d| d.txts(records))
    }

    /// Serves this body verbatim as the domain's policy.
    pub fn set_policy(&self, name: &str, body: impl Into<String>) -> bool {
        self.update(name, |d| d.policy_body(body))
    }

    /// Sets how the domain's policy host answers (e.g. an outage with [`Http::Status`]).
    pub fn set_http(&self, name: &str, http: Http) -> bool {
        self.update(name, |d| d.http(http))
    }

    /// Sets the certificate the domain's policy host presents.
    pub fn set_cert(&self, name: &str, cert: Cert) -> bool {
        self.update(name, |d| d.cert(cert))
    }

    /// Sets (`Some`) or clears (`None`) a DNS fault for `name`, for one record type or (with
    /// `rtype` `None`) for all.
    pub fn set_dns_fault(&self, name: &str, rtype: Option<RecordType>, fault: Option<DnsFault>) {
        let key = (normalize(name), rtype);
        let mut st = write(&self.shared.state);
        match fault {
            Some(f) => st.faults.insert(key, f),
            None => st.faults.remove(&key),
        };
    }

    /// Marks the zone at `name` as signed (`true`) or unsigned (`false`), from the next query
    /// on; see [`WorldBuilder::signed_zone`].
    pub fn set_signed_zone(&self, name: &str, signed: bool) {
        let name = normalize(name);
        let mut st = write(&self.shared.state);
        if signed {
            st.signed_zones.insert(name);
        } else {
            st.signed_zones.remove(&name);
        }
    }

    /// A TLSA record (RFC 6698) for the certificate the world's fake MX presents for `host`
    /// after STARTTLS (as set with [`WorldBuilder::mx_cert`] / [`World::set_mx_cert`],
    /// [`Cert::Valid`] by default), to publish at `_25._tcp.<host>` (RFC 7672 §2.2; see
    /// [`publish_mx_tlsa`](Self::publish_mx_tlsa)).
    ///
    /// - `usage` 3 (DANE-EE) or 1 (PKIX-EE) associates the leaf certificate; 2 (DANE-TA) or
    ///   0 (PKIX-TA) its issuer, which the fake MX sends after the leaf (the world's CA, the
    ///   untrusted CA for [`Cert::UntrustedCa`]; the leaf itself for [`Cert::SelfSigned`]);
    /// - `selector` 0 is the full certificate (DER), 1 its SubjectPublicKeyInfo (DER);
    /// - `matching_type` 0 is the selected bytes themselves, 1 their SHA-256, 2 their SHA-512.
    ///
    /// Errors with [`io::ErrorKind::InvalidInput`] for another usage, selector or matching
    /// type (write a [`Record::Tlsa`] by hand for those). The leaf certificate is made once
    /// per host and kind and kept, so its hash stays valid for the world's lifetime; every
    /// leaf of a world shares one key, so selector 1 gives the same data for every host.
    ///
    /// ```
    /// # use mta_sts_testkit::{Domain, Record, World};
    /// let world = World::builder()
    ///     .domain("example.com", Domain::enforce(["mx1.example.com"]))
    ///     .signed_zone("example.com")
    ///     .build()?;
    /// let tlsa = world.publish_mx_tlsa("mx1.example.com", 3, 1, 1)?;
    /// assert!(matches!(tlsa, Record::Tlsa { usage: 3, ref data, .. } if data.len() == 32));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn mx_tlsa(
        &self,
        host: &str,
        usage: u8,
        selector: u8,
        matching_type: u8,
    ) -> io::Result<Record> {
        let host = normalize(host);
        let kind = self.shared.smtp.cert(&host);
        let data = self
            .shared
            .pki
            .tlsa_data(&host, kind, usage, selector, matching_type)?;
        Ok(Record::Tlsa {
            usage,
            selector,
            matching_type,
            data,
        })
    }

    /// Computes [`mx_tlsa`](Self::mx_tlsa) and adds it at `_25._tcp.<host>` (besides the
    /// records already there), returning it. Changing the host's certificate afterwards
    /// ([`World::set_mx_cert`]) does not update the record.
    pub fn publish_mx_tlsa(
        &self,
        host: &str,
        usage: u8,
        selector: u8,
        matching_type: u8,
    ) -> io::Result<Record> {
        let record = self.mx_tlsa(host, usage, selector, matching_type)?;
        self.add_record(&tlsa_name(host), record.clone());
        Ok(record)
    }

    /// Adds a record at `name`, besides the records the domains define.
    pub fn add_record(&self, name: &str, record: Record) {
        self.shared.add_record_at(name, record);
    }

    /// Starts a TLSRPT report [`Collector`] for `host` (RFC 8460 §5.4): an HTTPS server on an
    /// ephemeral port of 127.0.0.1 with a certificate for `host` from the world's CA, accepting
    /// reports at [`COLLECTOR_PATH`](crate::COLLECTOR_PATH) (`/tlsrpt`). `host` gets an A
    /// record `127.0.0.1` in the world's DNS; [`Collector::publish`] names the collector in a
    /// domain's `_smtp._tls` record.
    pub fn collector(&self, host: &str) -> io::Result<Collector> {
        Collector::start(&self.shared, host, crate::COLLECTOR_PATH)
    }

    /// [`collector`](Self::collector) accepting reports at `path` instead.
    pub fn collector_at(&self, host: &str, path: &str) -> io::Result<Collector> {
        Collector::start(&self.shared, host, path)
    }

    /// Removes the records added at `name` with [`add_record`](Self::add_record) or
    /// [`WorldBuilder::record`].
    pub fn remove_records(&self, name: &str) {
        write(&self.shared.state).records.remove(&normalize(name));
    }

    /// Sets how the fake MX hosts answer before TLS, from the next SMTP session on.
    pub fn set_smtp(&self, smtp: Smtp) {
        self.shared.smtp.set_mode(smtp);
    }

    /// Whether the fake MX accepts mail (`MAIL`, `RCPT`, `DATA`) from the next SMTP session on;
    /// see [`WorldBuilder::accept_mail`].
    pub fn set_accept_mail(&self, accept: bool) {
        self.shared.smtp.mailbox.set_accept(accept);
    }

    /// The messages the fake MX accepted, oldest first (at most
    /// [`MAX_MAIL_KEPT`](crate::MAX_MAIL_KEPT)): under TLS or not, for which MX host (SNI),
    /// from whom, to whom, what.
    pub fn received_mail(&self) -> Vec<ReceivedMail> {
        self.shared.smtp.mailbox.received()
    }

    /// Sets the certificate the fake MX presents for `host` after STARTTLS.
    pub fn set_mx_cert(&self, host: &str, cert: Cert) {
        self.shared.smtp.set_cert(host, cert);
    }

    /// Releases the connections stalled now: a [`Http::StallAfterHeaders`] connection sends
    /// its body, a [`Http::StallHandshake`] connection is closed. Returns how many.
    pub fn release_stalls(&self) -> usize {
        self.shared.sup.release_stalls()
    }

    /// How many connections are stalled now.
    pub fn stalled(&self) -> usize {
        self.shared.sup.stalled()
    }

    // ----- counters -----

    /// DNS queries received for `name` and `rtype`, over UDP and TCP.
    pub fn queries(&self, name: &str, rtype: RecordType) -> usize {
        let [udp, tcp] = self.shared.counters.queries(name, rtype.code());
        udp + tcp
    }

    /// DNS queries received over TCP for `name` and `rtype`.
    pub fn tcp_queries(&self, name: &str, rtype: RecordType) -> usize {
        self.shared.counters.queries(name, rtype.code())[1]
    }

    /// All DNS queries received.
    pub fn total_queries(&self) -> usize {
        self.shared.counters.total_queries()
    }

    /// TLS connections whose ClientHello named `host` (SNI), whether or not the handshake
    /// then succeeded.
    pub fn connections(&self, host: &str) -> usize {
        self.shared.counters.handshakes(host)
    }

    /// HTTP requests received for `host` (any method and path).
    pub fn fetches(&self, host: &str) -> usize {
        self.shared.counters.fetches(host)
    }

    /// All HTTP requests received.
    pub fn total_fetches(&self) -> usize {
        self.shared.counters.total_fetches()
    }

    /// The last requests (at most 64) received for `host`, oldest first.
    pub fn requests(&self, host: &str) -> Vec<Request> {
        self.shared.counters.requests(host)
    }

    /// SMTP sessions (TCP connections) the fake MX accepted.
    pub fn smtp_sessions(&self) -> usize {
        self.shared.smtp.sessions()
    }

    /// TLS handshakes after STARTTLS whose ClientHello named `host` (SNI), whether or not the
    /// handshake then succeeded.
    pub fn smtp_handshakes(&self, host: &str) -> usize {
        self.shared.smtp.handshakes(host)
    }

    /// The most DNS queries (UDP and TCP) that were in flight at once: from their receipt until
    /// just before the answer is sent (answers held by [`WorldBuilder::dns_latency`] count
    /// until then; a query a fault leaves unanswered, until the server decides so). Each such
    /// interval lies within the client's own (it sent the query before, gets the answer after),
    /// so a client never had fewer queries out at once than this. Without a latency the server
    /// answers as fast as its two UDP threads read, and this says little about the client.
    pub fn peak_dns_in_flight(&self) -> usize {
        self.shared.counters.dns_in_flight.peak()
    }

    /// The most HTTPS connections that were being served at once: from the server's first read
    /// of the connection (the ClientHello) until the request has been read, just before the
    /// response is written. Each such interval lies within the client's connection (it
    /// connected before, gets the response after), so a client never had fewer connections
    /// open at once than this.
    pub fn peak_https_in_flight(&self) -> usize {
        self.shared.counters.https_in_flight.peak()
    }

    /// Sets every counter back to zero and forgets the recorded requests (the peaks start again
    /// from what is in flight now).
    pub fn reset_counters(&self) {
        self.shared.counters.reset();
        self.shared.smtp.reset_counters();
    }

    // ----- lifecycle -----

    /// A handle on the number of the world's running threads.
    pub fn threads(&self) -> Threads {
        self.shared.sup.threads()
    }

    /// Stops the servers and joins their threads (the same as dropping the world).
    pub fn shutdown(self) {
        drop(self);
    }

    /// The names of the world's domains, sorted.
    pub fn domain_names(&self) -> Vec<String> {
        let st = read(&self.shared.state);
        let mut names: Vec<String> = st.domains.keys().cloned().collect();
        names.sort();
        names
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.shared.sup.close();
        self.shared.delayed.wake();
        // Wake the threads blocked in recv_from and accept; each sees `closed` and returns.
        if let Ok(s) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) {
            for _ in 0..dns::UDP_WORKERS {
                let _ = s.send_to(&[0], self.dns_addr);
            }
        }
        for addr in [self.dns_tcp_addr, self.https_addr, self.smtp_addr] {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        self.shared.sup.join_all();
    }
}
