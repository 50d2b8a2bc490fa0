//! An MTA's delivery path with MTA-STS (RFC 8461), with blocking I/O and threads: a program to
//! copy from. The fuller version, with comments on every step, is mta-sts-tokio's
//! `examples/deliver.rs`; this is the same path without an async runtime.
//!
//! ```text
//! cargo run -p mta-sts-blocking --example deliver
//! ```
//!
//! It builds a [`Client`] (trust anchors, a resolver shared with the MTA, a cache file, TLSRPT
//! counting), starts the refresher thread, then for each message: looks up the MX hosts, asks
//! for the decision on each ([`Client::evaluate`]), and delivers over SMTP with STARTTLS
//! through [`tls_handshake`] with the crate's [`mx_starttls_config`] and the MX host name
//! ([`server_name`]). A message the policy leaves no host for is deferred and the TXT id
//! checked again ([`Client::recheck`]). At the end the refresher is stopped and the cache saved.
//!
//! Everything it talks to is `mta-sts-testkit`'s loopback world, started by the example; the
//! three differences from production (trust anchors, DNS server, ports) are marked `TESTKIT:`.
//! It exits non-zero unless the world's MX received exactly what the policies allow.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mta_sts_blocking::{
    BlockingRuntime, Client, Config, DnssecData, DnssecQuery, DnssecType, FetchFailure, Outcome,
    Reporter, Resolver, StubResolver, TlsFailure, TlsResult, TlsRptSettings, TrustAnchors, Verdict,
    block_on, classify_tls_error, mx_starttls_config, rustls, server_name, tls_handshake,
};
use mta_sts_testkit::{Cert, Domain, World};

const HELO_NAME: &str = "mail.sender.example";
const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REPLY_LINE: u64 = 1000;
const MAX_REPLY_LINES: usize = 100;

type Error = Box<dyn std::error::Error>;

/// The delivery agent: the client, the DNS it shares with the MTA, the MX TLS configuration.
struct Mta {
    client: Client,
    dns: Arc<StubResolver<BlockingRuntime>>,
    starttls: Arc<rustls::ClientConfig>,
    /// 25 in production.
    smtp_port: u16,
}

impl Mta {
    /// One delivery attempt of a message to `to`: `Ok(host)` delivered, `Err(why)` deferred.
    fn attempt(&self, from: &str, to: &str) -> Result<String, String> {
        let domain = to.rsplit_once('@').map_or("", |(_, d)| d);
        let mx = self.mx_hosts(domain)?;
        let evaluation = self.client.evaluate(domain, &mx);
        println!("  {domain}: MX {mx:?}, verdict {:?}", evaluation.verdict());
        if evaluation.verdict() == Verdict::DeferRecheckPolicy {
            // R39: never fail a message under `enforce` before the TXT id was checked again;
            // a new id means a new policy, fetched now: try again at once.
            let outcome = self.client.recheck(domain);
            if matches!(outcome, Outcome::Fetched(_)) {
                return self.attempt(from, to);
            }
            return Err("no MX host allowed by the policy (unchanged): stays queued".into());
        }
        if evaluation.verdict() != Verdict::Deliver {
            return Err(format!("deferred: {:?}", evaluation.verdict()));
        }
        for candidate in evaluation.candidates() {
            let (host, decision) = (candidate.host(), candidate.decision());
            if !decision.may_attempt() {
                println!("  {host}: not allowed by the policy, skipped");
                continue;
            }
            let result = self.deliver_to(host, decision.requires_valid_tls(), from, to);
            // TLSRPT: count the TLS sessions to hosts of a policy in `enforce` or `testing`.
            if decision.reports_failures() {
                match &result {
                    Ok(()) => {
                        let _ = self
                            .client
                            .record_tls_result(&TlsResult::success(domain, host));
                    }
                    Err((_, Some(f))) => {
                        let failure = TlsResult::failure(domain, host, f.clone());
                        let _ = self.client.record_tls_result(&failure);
                    }
                    Err((_, None)) => {}
                }
            }
            match result {
                Ok(()) => return Ok(host.to_owned()),
                Err((why, _)) => println!("  {host}: failed: {why}"),
            }
        }
        Err("every MX host failed".into())
    }

    /// The MX hosts of `domain` in preference order, through the MTA's resolver.
    fn mx_hosts(&self, domain: &str) -> Result<Vec<String>, String> {
        let query = DnssecQuery::new(domain, DnssecType::Mx);
        match block_on(self.dns.dnssec(&query)).map(|a| a.data) {
            Ok(DnssecData::Mx(mut records)) => {
                records.sort_by_key(|(preference, _)| *preference);
                Ok(records.into_iter().map(|(_, host)| host).collect())
            }
            Ok(DnssecData::NoData) => Ok(vec![domain.to_owned()]),
            other => Err(format!("MX lookup for {domain}: {other:?}")),
        }
    }

    /// One SMTP session: EHLO, STARTTLS (verified against `host`), EHLO, MAIL, RCPT, DATA.
    /// A failure says why, with the TLS failure to report if it was one.
    fn deliver_to(
        &self,
        host: &str,
        require_tls: bool,
        from: &str,
        to: &str,
    ) -> Result<(), (String, Option<TlsFailure>)> {
        let plain = |e: io::Error| (e.to_string(), None);
        let addrs =
            block_on(self.dns.addresses(host, TIMEOUT)).map_err(|e| (e.to_string(), None))?;
        let addr = addrs.first().ok_or(("no address".to_owned(), None))?;
        let tcp = TcpStream::connect_timeout(&SocketAddr::new(*addr, self.smtp_port), TIMEOUT)
            .map_err(plain)?;
        tcp.set_read_timeout(Some(TIMEOUT)).map_err(plain)?;
        tcp.set_write_timeout(Some(TIMEOUT)).map_err(plain)?;

        let mut smtp = BufReader::new(tcp);
        expect(&mut smtp, None, 220).map_err(plain)?;
        let ehlo = expect(&mut smtp, Some(&format!("EHLO {HELO_NAME}")), 250).map_err(plain)?;
        let offers = ehlo.iter().any(|l| {
            l.get(4..)
                .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
        });
        if !offers {
            if require_tls {
                return Err((
                    "STARTTLS not offered".into(),
                    Some(TlsFailure::StarttlsNotSupported),
                ));
            }
            return transaction(&mut smtp, from, to).map_err(plain);
        }
        expect(&mut smtp, Some("STARTTLS"), 220).map_err(plain)?;
        if !smtp.buffer().is_empty() {
            return Err(("data after the STARTTLS reply".into(), None)); // RFC 3207 §4.2
        }
        // The crate's configuration (PKIX against the MX host name, TLS 1.2+), SNI = the host.
        let name = server_name(host).map_err(|e| (e.to_string(), None))?;
        let tls =
            tls_handshake(Arc::clone(&self.starttls), name, smtp.into_inner()).map_err(|e| {
                let failure = match classify_tls_error(&e) {
                    FetchFailure::Certificate(problem) => TlsFailure::Certificate(problem),
                    other => TlsFailure::Other(other.to_string()),
                };
                // Under `enforce` the host is now unreachable: never go on in clear text.
                (format!("TLS: {e}"), Some(failure))
            })?;
        println!(
            "  {host}: TLS up ({:?}), certificate valid",
            tls.conn.protocol_version()
        );
        let mut smtp = BufReader::new(tls);
        expect(&mut smtp, Some(&format!("EHLO {HELO_NAME}")), 250).map_err(plain)?;
        transaction(&mut smtp, from, to).map_err(plain)
    }
}

/// Sends `command` (if any), reads the reply, checks its code; the reply's lines.
fn expect<S: Read + Write>(
    smtp: &mut BufReader<S>,
    command: Option<&str>,
    code: u16,
) -> io::Result<Vec<String>> {
    if let Some(command) = command {
        smtp.get_mut()
            .write_all(format!("{command}\r\n").as_bytes())?;
        smtp.get_mut().flush()?;
    }
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = smtp.by_ref().take(MAX_REPLY_LINE).read_line(&mut line)?;
        let line = format!("{:<4}", line.trim_end());
        if n == 0 || lines.len() >= MAX_REPLY_LINES {
            return Err(io::Error::other("no valid SMTP reply"));
        }
        let last = line.as_bytes()[3] != b'-';
        lines.push(line);
        if last {
            break;
        }
    }
    if !lines[0].starts_with(&code.to_string()) {
        return Err(io::Error::other(format!(
            "{command:?}: {}",
            lines.join(" / ")
        )));
    }
    Ok(lines)
}

/// MAIL, RCPT, DATA (a message without lines starting with a dot), QUIT.
fn transaction<S: Read + Write>(smtp: &mut BufReader<S>, from: &str, to: &str) -> io::Result<()> {
    expect(smtp, Some(&format!("MAIL FROM:<{from}>")), 250)?;
    expect(smtp, Some(&format!("RCPT TO:<{to}>")), 250)?;
    expect(smtp, Some("DATA"), 354)?;
    let message = format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: hello\r\n\r\nHello.\r\n.");
    expect(smtp, Some(&message), 250)?;
    let _ = expect(smtp, Some("QUIT"), 221);
    Ok(())
}

/// TESTKIT: `example.test` (enforce; `mx1` presents a certificate for another name, `mx2` a
/// valid one) and `moved.test` (enforce, but its policy names only a host its MX record no
/// longer lists).
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
            Domain::enforce(["old-mx.moved.test"]).mx_records([(10, "new-mx.moved.test")]),
        )
        .accept_mail()
        .build()
}

fn run(world: &World, cache_file: &Path) -> Result<(), Error> {
    // TESTKIT: the world's CA (production: `TrustAnchors::webpki()`, the default), the
    // world's DNS (production: your resolvers, or no `.resolver(..)`: /etc/resolv.conf) and
    // HTTPS port (production: 443, the default).
    let mut anchors = TrustAnchors::empty();
    anchors.add_pem(world.ca_pem().as_bytes())?;
    let dns = Arc::new(StubResolver::new(BlockingRuntime, vec![world.dns_addr()]));
    let mut config = Config::default();
    config.https_port = world.https_port();

    let reporter = Reporter::new("Example MTA", "postmaster@sender.example", "sender.example");
    let client = Client::builder()
        .config(config)
        .trust_anchors(anchors.clone())
        .resolver(Arc::clone(&dns))
        .persistence(cache_file)
        .tlsrpt(TlsRptSettings::new(reporter))
        .build()?;
    let refresher = client.spawn_refresher()?; // a thread; joined on shutdown

    let mta = Mta {
        client: client.clone(),
        dns,
        starttls: mx_starttls_config(&anchors),
        smtp_port: world.smtp_port(), // TESTKIT: production: 25
    };
    // Each message from its own delivery thread: the client is Send + Sync and cheap to clone.
    let results: Vec<Result<String, String>> = std::thread::scope(|s| {
        let threads = ["bob@example.test", "carol@moved.test"]
            .map(|to| (to, s.spawn(|| mta.attempt("alice@sender.example", to))));
        threads
            .into_iter()
            .map(|(to, t)| {
                let result = t.join().unwrap_or_else(|_| Err("thread panicked".into()));
                println!("{to}: {result:?}");
                result
            })
            .collect()
    });

    let tlsrpt = client.tlsrpt_stats();
    refresher.shutdown();
    client.shutdown()?; // saves the cache file
    println!("refresher stopped, cache saved");

    // Did it happen as the policies say? bob via mx2 over TLS; carol deferred, nothing sent.
    let received: Vec<_> = world
        .received_mail()
        .into_iter()
        .map(|m| (m.sni, m.tls, m.to))
        .collect();
    let want = vec![(
        Some("mx2.example.test".to_owned()),
        true,
        vec!["bob@example.test".to_owned()],
    )];
    if received != want || results[0].as_deref() != Ok("mx2.example.test") || results[1].is_ok() {
        return Err(format!("received {received:?} after {results:?}").into());
    }
    if (tlsrpt.successful_sessions, tlsrpt.failed_sessions) != (1, 1) {
        return Err(format!("TLSRPT counted {tlsrpt:?}").into());
    }
    Ok(())
}

/// The whole example: a scratch directory, the world, [`run`].
fn demo() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("mta-sts-deliver-blocking-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = start_world()
        .map_err(Error::from)
        .and_then(|world| run(&world, &dir.join("mta-sts-cache.json")));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn main() -> ExitCode {
    match demo() {
        Ok(()) => {
            println!("OK: delivered as the policies say");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// CI runs this example through this test (`test = true` in Cargo.toml, so `cargo test` runs it).
#[test]
fn p11_blocking_example_delivers_as_the_policies_say() {
    if let Err(e) = demo() {
        panic!("the example failed: {e}");
    }
}
