//! An MTA's delivery path with MTA-STS (RFC 8461), whole, on tokio: a program to copy from.
//!
//! ```text
//! cargo run -p mta-sts-tokio --example deliver
//! ```
//!
//! What it does, step by step (each step prints what it does):
//!
//! 1. builds a [`Client`]: its trust anchors, its DNS (a resolver the MTA shares with it), its
//!    cache file, TLSRPT counting; starts the refresher;
//! 2. for each queued message: looks up the recipient domain's MX hosts, asks the client for
//!    the decision on each ([`Client::evaluate`]), and delivers over SMTP: EHLO, STARTTLS with
//!    the crate's rustls configuration ([`mx_starttls_config`], checked against the MX host name
//!    with [`server_name`]), then MAIL/RCPT/DATA. A host the policy excludes is skipped, a host
//!    whose certificate fails is treated as unreachable, and each TLS session is counted for
//!    TLSRPT ([`Client::record_tls_result`]);
//! 3. when the policy leaves no host to try, the message is deferred, never bounced, and the
//!    policy's TXT id is checked again ([`Client::recheck`]): a new policy is fetched and the
//!    delivery tried again at once;
//! 4. shuts down cleanly: the refresher stops, the cache is saved, and a new client started on
//!    the same file finds the policies again.
//!
//! The internet it talks to is `mta-sts-testkit`'s loopback world, started by the example
//! itself on 127.0.0.1: authoritative DNS, the HTTPS policy hosts and an SMTP server for every
//! MX host, with certificates from a CA of its own. Only three things differ from production,
//! each marked `TESTKIT:` below: the trust anchors (the world's CA instead of webpki-roots), the
//! DNS server (the world's instead of `/etc/resolv.conf`) and the ports (the world's instead of
//! 443 and 25). The example checks at the end, against what the world's MX received, that every
//! message went where the policies allow and only over verified TLS, and exits non-zero if not.
//!
//! The blocking version of the same path: `mta-sts-blocking/examples/deliver.rs`.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mta_sts_testkit::{Cert, Domain, World};
use mta_sts_tokio::tokio_rustls::TlsConnector;
use mta_sts_tokio::{
    Client, Config, DnsFailure, DnssecData, DnssecQuery, DnssecType, FetchFailure, Outcome,
    Reporter, Resolver, StubResolver, TlsFailure, TlsResult, TlsRptSettings, TokioRuntime,
    TrustAnchors, Verdict, WhenAllFail, classify_tls_error, mx_starttls_config, server_name,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// This MTA's name, in its EHLO.
const HELO_NAME: &str = "mail.sender.example";
/// The longest SMTP reply line read, and the most lines of one reply.
const MAX_REPLY_LINE: u64 = 1000;
const MAX_REPLY_LINES: usize = 100;
/// How long one SMTP session to an MX may take.
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// A message in this MTA's queue.
#[derive(Debug)]
struct Message {
    from: String,
    to: String,
    body: String,
}

impl Message {
    fn new(from: &str, to: &str, subject: &str) -> Self {
        let body = format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\nHello.\r\n");
        Self {
            from: from.into(),
            to: to.into(),
            body,
        }
    }

    /// The recipient's domain: the policy domain (RFC 8461 §4).
    fn domain(&self) -> &str {
        self.to.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

/// Why a message stays queued.
#[derive(Debug)]
enum Deferred {
    /// `enforce` left no MX host to deliver to: check the policy again before giving up (R39).
    RecheckPolicy,
    /// Anything else temporary: the usual SMTP retry rules.
    Temporary(String),
}

impl std::fmt::Display for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RecheckPolicy => f.write_str("no MX host allowed by the policy (re-checked)"),
            Self::Temporary(why) => write!(f, "temporary failure: {why}"),
        }
    }
}

/// A delivery attempt to one MX host that failed, with the TLS failure to report if any.
#[derive(Debug)]
struct HostFailure {
    what: String,
    tls: Option<TlsFailure>,
}

impl HostFailure {
    fn other(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            tls: None,
        }
    }

    fn tls(what: impl Into<String>, failure: TlsFailure) -> Self {
        Self {
            what: what.into(),
            tls: Some(failure),
        }
    }
}

/// The MTA's delivery agent: the MTA-STS client, the DNS it shares with it, the TLS connector
/// for MX hosts.
struct Mta {
    client: Client,
    dns: Arc<StubResolver<TokioRuntime>>,
    starttls: TlsConnector,
    /// 25 in production.
    smtp_port: u16,
}

impl Mta {
    /// One queue run for `message`: deliver it if the policy allows, else say why it stays.
    async fn queue_run(&self, message: &Message) -> Result<String, Deferred> {
        match self.attempt(message).await {
            Err(Deferred::RecheckPolicy) => {
                // R39: under `enforce`, never fail a message before the TXT id was checked
                // again. A new id means a new policy (fetched now): try again at once with it.
                let domain = message.domain();
                let outcome = self.client.recheck(domain).await;
                println!("  recheck {domain}: {}", describe(&outcome));
                if matches!(outcome, Outcome::Fetched(_)) {
                    return self.attempt(message).await;
                }
                println!("  -> unchanged policy: the message stays queued");
                Err(Deferred::RecheckPolicy)
            }
            other => other,
        }
    }

    /// One delivery attempt: the MX hosts, the client's decision for each, SMTP in order.
    async fn attempt(&self, message: &Message) -> Result<String, Deferred> {
        let domain = message.domain();
        let mx = self.mx_hosts(domain).await.map_err(Deferred::Temporary)?;
        println!("  MX of {domain}: {mx:?}");

        let evaluation = self.client.evaluate(domain, &mx).await;
        println!("  policy: {}", describe(evaluation.outcome()));
        match evaluation.verdict() {
            Verdict::Deliver => {}
            Verdict::DeferRecheckPolicy => {
                println!("  -> no MX host is allowed by the policy: defer");
                return Err(Deferred::RecheckPolicy);
            }
            Verdict::Defer(reason) => {
                return Err(Deferred::Temporary(format!("{reason:?}")));
            }
            other => return Err(Deferred::Temporary(format!("{other:?}"))),
        }

        for candidate in evaluation.candidates() {
            let host = candidate.host();
            let decision = candidate.decision();
            if !decision.may_attempt() {
                // `enforce` and the host does not match the policy: as though unreachable.
                println!("  {host}: not allowed by the policy, skipped");
                continue;
            }
            // Under `enforce`: STARTTLS and a certificate valid for `host`, or no delivery.
            let require_tls = decision.requires_valid_tls();
            println!("  {host}: {decision:?}, delivering (verified TLS required: {require_tls})");
            let result = self.deliver_to(host, require_tls, message).await;

            // TLSRPT (RFC 8460): count every TLS session to a host of a policy that asks for
            // reports (`enforce` or `testing`); the reporting task sends the day's counts.
            if decision.reports_failures() {
                let tls_result = match &result {
                    Ok(()) => Some(TlsResult::success(domain, host)),
                    Err(HostFailure { tls: Some(f), .. }) => {
                        Some(TlsResult::failure(domain, host, f.clone()))
                    }
                    Err(_) => None, // not a TLS failure (unreachable, refused): not counted
                };
                if let Some(r) = tls_result {
                    self.client.record_tls_result(&r);
                }
            }
            match result {
                Ok(()) => return Ok(host.to_owned()),
                Err(e) => println!("  {host}: failed: {}", e.what),
            }
        }
        match evaluation.when_all_fail() {
            WhenAllFail::RecheckPolicy => Err(Deferred::RecheckPolicy),
            _ => Err(Deferred::Temporary("every MX host failed".into())),
        }
    }

    /// The MX hosts of `domain` in preference order, through the MTA's own resolver (the one
    /// the client shares); the domain itself when it has none (RFC 5321 §5.1).
    async fn mx_hosts(&self, domain: &str) -> Result<Vec<String>, String> {
        let answer = self
            .dns
            .dnssec(&DnssecQuery::new(domain, DnssecType::Mx))
            .await;
        match answer.map(|a| a.data) {
            Ok(DnssecData::Mx(mut records)) => {
                records.sort_by_key(|(preference, _)| *preference);
                Ok(records.into_iter().map(|(_, host)| host).collect())
            }
            Ok(DnssecData::NoData) => Ok(vec![domain.to_owned()]),
            Ok(other) => Err(format!("MX lookup for {domain}: {other:?}")),
            Err(e) => Err(format!("MX lookup for {domain}: {e}")),
        }
    }

    /// One SMTP session to `host`: connect, EHLO, STARTTLS (required or opportunistic), EHLO
    /// again, MAIL/RCPT/DATA, QUIT.
    async fn deliver_to(
        &self,
        host: &str,
        require_tls: bool,
        message: &Message,
    ) -> Result<(), HostFailure> {
        let session = async {
            let addrs = self
                .dns
                .addresses(host, Duration::from_secs(10))
                .await
                .map_err(|e: DnsFailure| HostFailure::other(format!("no address: {e}")))?;
            let addr = addrs
                .first()
                .ok_or_else(|| HostFailure::other("no address"))?;
            let tcp = TcpStream::connect(SocketAddr::new(*addr, self.smtp_port))
                .await
                .map_err(|e| HostFailure::other(format!("connect: {e}")))?;

            let mut smtp = Smtp::new(tcp);
            smtp.expect("greeting", None, 220).await?;
            let ehlo = smtp.expect("EHLO", Some(&ehlo_line()), 250).await?;
            let offers = |l: &String| {
                l.get(4..)
                    .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
            };
            if !ehlo.iter().any(offers) {
                if require_tls {
                    // RFC 8461 §5: no STARTTLS under `enforce` is a failure of this host.
                    return Err(HostFailure::tls(
                        "STARTTLS not offered",
                        TlsFailure::StarttlsNotSupported,
                    ));
                }
                // Without a policy that requires TLS, the MTA's usual rules apply: here, clear.
                println!("    no STARTTLS offered: delivering without TLS");
                return smtp.transaction(message).await;
            }
            smtp.expect("STARTTLS", Some("STARTTLS"), 220).await?;

            // RFC 3207 §4.2: nothing the server sent before the handshake may be used after it.
            let tcp = smtp.into_inner()?;
            // The crate's rustls configuration: PKIX against the MX host name, TLS 1.2+. The
            // name must be the MX host (not the policy's pattern): SNI and certificate check.
            let name = server_name(host).map_err(|e| HostFailure::other(e.to_string()))?;
            let tls = match self.starttls.connect(name, tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    let failure = match classify_tls_error(&e) {
                        FetchFailure::Certificate(problem) => TlsFailure::Certificate(problem),
                        other => TlsFailure::Other(other.to_string()),
                    };
                    // Never fall back to clear text here: under `enforce` the host is
                    // unreachable. (Under `testing` or without a policy, a real MTA would go on
                    // with unauthenticated TLS; that needs a second, non-validating
                    // configuration and is left out of this example.)
                    return Err(HostFailure::tls(format!("TLS: {e}"), failure));
                }
            };
            let version = tls.get_ref().1.protocol_version();
            println!("    TLS up ({version:?}), certificate valid for {host}");
            let mut smtp = Smtp::new(tls);
            smtp.expect("EHLO", Some(&ehlo_line()), 250).await?;
            smtp.transaction(message).await
        };
        tokio::time::timeout(SESSION_TIMEOUT, session)
            .await
            .unwrap_or_else(|_| Err(HostFailure::other("session timed out")))
    }
}

fn ehlo_line() -> String {
    format!("EHLO {HELO_NAME}")
}

/// The SMTP client side of a session, over TCP or TLS.
struct Smtp<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Smtp<S> {
    fn new(stream: S) -> Self {
        Self {
            io: BufReader::new(stream),
        }
    }

    /// Sends `command` (if any), reads the reply and checks its code; the reply's lines.
    async fn expect(
        &mut self,
        what: &str,
        command: Option<&str>,
        code: u16,
    ) -> Result<Vec<String>, HostFailure> {
        let failed = |e: io::Error| HostFailure::other(format!("{what}: {e}"));
        if let Some(command) = command {
            let line = format!("{command}\r\n");
            self.io
                .get_mut()
                .write_all(line.as_bytes())
                .await
                .map_err(failed)?;
            self.io.get_mut().flush().await.map_err(failed)?;
        }
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = (&mut self.io)
                .take(MAX_REPLY_LINE)
                .read_line(&mut line)
                .await
                .map_err(failed)?;
            let line = line.trim_end().to_owned();
            if n == 0 || line.len() < 3 || lines.len() >= MAX_REPLY_LINES {
                return Err(HostFailure::other(format!("{what}: no valid reply")));
            }
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(format!("{line:<4}"));
            if last {
                break;
            }
        }
        if !lines[0].starts_with(&code.to_string()) {
            return Err(HostFailure::other(format!("{what}: {}", lines.join(" / "))));
        }
        Ok(lines)
    }

    /// MAIL FROM, RCPT TO, DATA (dot-stuffed), QUIT.
    async fn transaction(&mut self, message: &Message) -> Result<(), HostFailure> {
        let mail = format!("MAIL FROM:<{}>", message.from);
        self.expect("MAIL", Some(&mail), 250).await?;
        let rcpt = format!("RCPT TO:<{}>", message.to);
        self.expect("RCPT", Some(&rcpt), 250).await?;
        self.expect("DATA", Some("DATA"), 354).await?;
        let mut data = String::new();
        for line in message.body.lines() {
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        data.push('.');
        let reply = self.expect("end of data", Some(&data), 250).await?;
        println!("    accepted: {}", reply[0]);
        // The message is delivered; a failed QUIT changes nothing.
        let _ = self.expect("QUIT", Some("QUIT"), 221).await;
        Ok(())
    }
}

impl Smtp<TcpStream> {
    /// The TCP stream back for the TLS handshake, refusing data the server sent too early.
    fn into_inner(self) -> Result<TcpStream, HostFailure> {
        if !self.io.buffer().is_empty() {
            return Err(HostFailure::other("data after the STARTTLS reply"));
        }
        Ok(self.io.into_inner())
    }
}

/// What a policy outcome is, for the log.
fn describe(outcome: &Outcome) -> String {
    let how = match outcome {
        Outcome::Fetched(_) => "fetched",
        Outcome::Cached { .. } => "cached",
        _ => return format!("{outcome:?}"),
    };
    match outcome.policy() {
        Some(p) => {
            let mx: Vec<String> = p.policy().mx().iter().map(ToString::to_string).collect();
            format!("{how}, id {}, mode {}, mx {mx:?}", p.id(), p.mode())
        }
        None => how.to_owned(),
    }
}

/// TESTKIT: the fake internet of this example, on 127.0.0.1.
///
/// - `example.test`: `enforce`, MX `mx1` (preference 10) and `mx2` (20); `mx1` presents a
///   certificate for another name, so the delivery must go to `mx2`.
/// - `moved.test`: `enforce`, but its policy still names the MX host it had before
///   (`old-mx`) while its MX record names `new-mx`: no host may be tried, the message is
///   deferred until the domain publishes a corrected policy (with a new TXT id).
fn start_world() -> io::Result<World> {
    World::builder()
        .domain(
            "example.test",
            Domain::enforce(["mx1.example.test", "mx2.example.test"])
                .mx_records([(10, "mx1.example.test"), (20, "mx2.example.test")]),
        )
        .mx_cert("mx1.example.test", Cert::WrongName)
        .domain(
            "moved.test",
            Domain::enforce(["old-mx.moved.test"])
                .txt_id("2024a")
                .mx_records([(10, "new-mx.moved.test")]),
        )
        .accept_mail()
        .build()
}

/// Builds the MTA's client: trust anchors, DNS, cache file, TLSRPT.
fn build_client(
    world: &World,
    dns: &Arc<StubResolver<TokioRuntime>>,
    cache_file: &Path,
) -> Result<Client, Box<dyn std::error::Error>> {
    let anchors = trust_anchors(world)?;

    let mut config = Config::default();
    // TESTKIT: the world's HTTPS port for the policy hosts. In production: 443 (the default).
    config.https_port = world.https_port();

    // TLSRPT: who we are in the reports we send. The counts stay in memory here; give it a
    // `.persistence(path)` to keep them across restarts, and start `spawn_reporter()` to send
    // each day's reports after midnight.
    let reporter = Reporter::new("Example MTA", "postmaster@sender.example", "sender.example");

    let client = Client::builder()
        .config(config)
        .trust_anchors(anchors)
        // The resolver the MTA uses for MX lookups too: one DNS configuration.
        .resolver(Arc::clone(dns))
        // Policies survive restarts: loaded at build, saved by the refresher and at shutdown.
        .persistence(cache_file)
        .tlsrpt(TlsRptSettings::new(reporter))
        .build()?;
    Ok(client)
}

async fn run(world: &World, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    // --- 1. The client -------------------------------------------------------------------
    // TESTKIT: the world's DNS server. In production: `StubResolver::new(TokioRuntime,
    // servers)` with your resolvers, or leave `.resolver(..)` out (the system's resolv.conf).
    let dns = Arc::new(StubResolver::new(TokioRuntime, vec![world.dns_addr()]));
    let cache_file = dir.join("mta-sts-cache.json");
    let client = build_client(world, &dns, &cache_file)?;
    println!("client built; cache file {}", cache_file.display());

    // Refreshes cached policies before they expire (R44), in the background.
    let refresher = client.spawn_refresher();

    let mta = Mta {
        client: client.clone(),
        dns: Arc::clone(&dns),
        // The crate's configuration for MX STARTTLS (a rustls 0.23 `ClientConfig`), into the
        // runtime's TLS crate, re-exported by this crate so that the versions always match.
        starttls: TlsConnector::from(mx_starttls_config(&trust_anchors(world)?)),
        // TESTKIT: every MX host of the world listens on this port. In production: 25.
        smtp_port: world.smtp_port(),
    };

    // --- 2. Deliver, policy enforced -----------------------------------------------------
    let to_example = Message::new("alice@sender.example", "bob@example.test", "hello");
    println!("\nqueue run 1: {} -> {}", to_example.from, to_example.to);
    match mta.queue_run(&to_example).await {
        Ok(host) => println!("delivered to {host}"),
        Err(e) => return Err(format!("bob@example.test not delivered: {e}").into()),
    }

    // --- 3. Defer and recheck ------------------------------------------------------------
    let to_moved = Message::new("alice@sender.example", "carol@moved.test", "moved");
    println!("\nqueue run 1: {} -> {}", to_moved.from, to_moved.to);
    match mta.queue_run(&to_moved).await {
        Err(Deferred::RecheckPolicy) => println!("deferred (policy re-checked, unchanged)"),
        other => return Err(format!("carol@moved.test must be deferred: {other:?}").into()),
    }

    // TESTKIT: meanwhile, moved.test publishes a corrected policy under a new TXT id.
    world.update("moved.test", |d| {
        d.policy_mx(["new-mx.moved.test"]).txt_id("2024b")
    });
    println!("\n(moved.test now publishes a policy naming new-mx.moved.test, id 2024b)");

    println!("\nqueue run 2: {} -> {}", to_moved.from, to_moved.to);
    match mta.queue_run(&to_moved).await {
        Ok(host) => println!("delivered to {host}"),
        Err(e) => return Err(format!("carol@moved.test not delivered: {e}").into()),
    }

    // --- 4. Shut down --------------------------------------------------------------------
    let tlsrpt = client.tlsrpt_stats();
    println!(
        "\nTLSRPT sessions counted: {} successful, {} failed",
        tlsrpt.successful_sessions, tlsrpt.failed_sessions
    );
    refresher.shutdown().await;
    drop(mta);
    // Saves the cache file (and the TLSRPT state when it has a file).
    client.shutdown().await?;
    println!("refresher stopped, cache saved");

    // The next start finds the policies in the file.
    let restarted = build_client(world, &dns, &cache_file)?;
    let loaded = restarted.stats().entries;
    println!("a new client loaded {loaded} policies from the cache file");
    restarted.shutdown().await?;

    check(
        world,
        tlsrpt.successful_sessions,
        tlsrpt.failed_sessions,
        loaded,
    )
}

/// The CAs trusted for policy hosts and MX hosts. TESTKIT: the world's CA. In production:
/// `TrustAnchors::webpki()` (the client's default), plus `add_pem_file` for a private CA.
fn trust_anchors(world: &World) -> Result<TrustAnchors, Box<dyn std::error::Error>> {
    let mut anchors = TrustAnchors::empty();
    anchors.add_pem(world.ca_pem().as_bytes())?;
    Ok(anchors)
}

/// Did delivery happen as the policies say? Against what the world's MX received.
fn check(
    world: &World,
    successes: u64,
    failures: u64,
    loaded: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let received = world.received_mail();
    let got: Vec<(Option<&str>, bool, &str)> = received
        .iter()
        .map(|m| (m.sni.as_deref(), m.tls, m.to[0].as_str()))
        .collect();
    let want = [
        (Some("mx2.example.test"), true, "bob@example.test"),
        (Some("new-mx.moved.test"), true, "carol@moved.test"),
    ];
    if got != want {
        return Err(format!("the MX received {got:?}, the policies allow {want:?}").into());
    }
    // mx1 was tried (its certificate refused) and old-mx never.
    let tried = (
        world.smtp_handshakes("mx1.example.test"),
        world.smtp_handshakes("old-mx.moved.test"),
    );
    if tried != (1, 0) {
        return Err(format!("TLS handshakes with mx1 and old-mx: {tried:?}, want (1, 0)").into());
    }
    if (successes, failures, loaded) != (2, 1, 2) {
        return Err(format!(
            "TLSRPT {successes} ok / {failures} failed (want 2 / 1), {loaded} policies reloaded (want 2)"
        )
        .into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match demo().await {
        Ok(()) => {
            println!("\nOK: every message delivered as the policies say");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nFAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The whole example: a scratch directory for the cache file, the world, [`run`].
async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = std::env::temp_dir().join(format!("mta-sts-deliver-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // TESTKIT: the fake internet (stopped when dropped).
    let result = match start_world() {
        Ok(world) => run(&world, &dir).await,
        Err(e) => Err(e.into()),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

// CI runs this example through this test (`test = true` in Cargo.toml, so `cargo test` runs it).
#[cfg(test)]
#[tokio::test(flavor = "multi_thread")]
async fn p10_tokio_example_delivers_as_the_policies_say() {
    if let Err(e) = demo().await {
        panic!("the example failed: {e}");
    }
}
