//! `mta-sts demo`: the whole life of an MTA-STS policy on a sender, without any network: a
//! loopback world from mta-sts-testkit (DNS, HTTPS, in this process) and mta-sts-tokio's
//! [`Client`] on a virtual clock, step by step: discovery, fetch, cache, MX evaluation, a policy
//! change with a new id, and outages during which the cached policy still applies.
//!
//! Each delivery the walk-through makes (a STARTTLS session to the world's MX, checked as the
//! policy asks) and each outage the engine reports as a TLSRPT result is recorded into the
//! library's TLSRPT [`Aggregator`] on the virtual clock; the demo ends with the report of the
//! last day (RFC 8460 §4.4), and writes every day's `.json.gz` with `--out DIR`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use mta_sts_core::tlsrpt::{
    Aggregator, AggregatorLimits, DayReport, Failure, Recorded, Reporter, ResultType, Session,
    SessionPolicy, SessionResult, format_datetime,
};
use mta_sts_core::wire::dns::{DnsAnswer, QueryType};
use mta_sts_core::{Config, Evaluation, MxDecision, Outcome, UnixTime, Verdict};
use mta_sts_testkit::{DnsFault, Domain, Http, RecordType, World};
use mta_sts_tokio::{Client, TrustAnchors};

use crate::probe::{self, ProbeResult};
use crate::report::{self, Style};
use crate::tls::Tls;
use crate::{net, query, tlsrpt_build};

/// `mta-sts demo` arguments.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Also write the walk-through's TLSRPT reports (`.json.gz`, RFC 8460 §5.1 names) into
    /// this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

const DOMAIN: &str = "example.com";
const TXT_NAME: &str = "_mta-sts.example.com";
const POLICY_HOST: &str = "mta-sts.example.com";
/// The virtual clock starts here (2026-01-01T00:00:00Z).
const START: u64 = 1_767_225_600;
const MAX_AGE: u64 = 86_400;

/// The demo's printer: numbered steps, indented facts.
struct Out {
    style: Style,
    step: usize,
}

impl Out {
    fn step(&mut self, title: &str) {
        self.step += 1;
        println!();
        println!("{}", self.style.heading(&format!("{}. {title}", self.step)));
    }

    fn fact(&self, text: impl AsRef<str>) {
        println!("   {}", text.as_ref());
    }
}

fn world_error(e: std::io::Error) -> String {
    format!("cannot start the loopback test world: {e}")
}

/// What the servers of the world have seen so far.
fn traffic(world: &World) -> String {
    format!(
        "[world so far: {} TXT queries, {} policy fetches]",
        world.queries(TXT_NAME, RecordType::Txt),
        world.fetches(POLICY_HOST)
    )
}

fn print_outcome(out: &Out, outcome: &Outcome) {
    out.fact(format!(
        "outcome: {}: {}",
        report::outcome_kind(outcome),
        report::outcome_reason(outcome)
    ));
    if let Some(p) = outcome.policy() {
        let mx: Vec<&str> = p.policy().mx().iter().map(|m| m.as_str()).collect();
        out.fact(format!(
            "policy: mode {}, mx [{}], max_age {} s, id {}, valid until {}",
            p.mode(),
            mx.join(", "),
            p.policy().max_age(),
            p.id(),
            humantime::format_rfc3339_seconds(p.expires_at().into())
        ));
    }
}

fn print_evaluation(out: &Out, evaluation: &Evaluation) {
    for c in evaluation.candidates() {
        let what = match c.decision() {
            MxDecision::Enforce => {
                "deliver only over STARTTLS with a certificate valid for this name"
            }
            MxDecision::Skip => "never deliver here: it matches no mx pattern (enforce)",
            MxDecision::Testing { .. } => "deliver; report TLS failures (testing)",
            _ => "deliver as usual",
        };
        out.fact(format!("{:<22} {what}", c.host()));
    }
    out.fact(match evaluation.verdict() {
        Verdict::Deliver => "verdict: deliver, trying the allowed MX hosts in this order",
        Verdict::DeferRecheckPolicy => {
            "verdict: defer; no MX may be used (re-check the policy before any bounce)"
        }
        _ => "verdict: defer (sender configuration)",
    });
}

/// The sender's TLSRPT side: its deliveries to the world's MX (a real STARTTLS session each)
/// and the engine's outcomes, recorded into the aggregator at the virtual time.
struct Reporting {
    aggregator: Aggregator,
    tls: Tls,
    resolvers: Vec<std::net::SocketAddr>,
    smtp_port: u16,
}

impl Reporting {
    fn record(&mut self, out: &Out, session: &Session) {
        let what = match &session.result {
            SessionResult::Failure(f) => format!("failure {}", f.result_type),
            _ => "a successful session".to_owned(),
        };
        match self.aggregator.record(session) {
            Recorded::Counted => out.fact(format!("TLSRPT: {what} recorded")),
            other => out.fact(format!("TLSRPT: {what} not recorded ({other:?})")),
        }
    }

    /// Delivers a message under the policy of `outcome`: to the first MX `evaluation` allows,
    /// over STARTTLS with the certificate checked for the MX name, and records how it went.
    fn deliver(&mut self, out: &Out, outcome: &Outcome, evaluation: &Evaluation, now: UnixTime) {
        let Some(cached) = outcome.policy() else {
            out.fact("no policy applies: nothing for TLSRPT to record");
            return;
        };
        let policy = SessionPolicy::sts(DOMAIN, cached.policy());
        let Some(host) = evaluation
            .candidates()
            .iter()
            .find(|c| !matches!(c.decision(), MxDecision::Skip))
            .map(|c| c.host().to_owned())
        else {
            out.fact("no MX may be used: nothing delivered");
            return;
        };
        let probe = probe::probe(
            &self.resolvers,
            &self.tls,
            &host,
            self.smtp_port,
            Duration::from_secs(5),
        );
        let at = probe
            .addr
            .map_or_else(|| host.clone(), |a| format!("{host} ({a})"));
        let failure = |result_type: ResultType, reason: String| {
            let mut f = Failure::new(result_type)
                .with_receiving_mx_hostname(host.clone())
                .with_failure_reason_code(reason);
            if let Some(addr) = probe.addr {
                f = f.with_receiving_ip(addr.ip());
            }
            SessionResult::Failure(f)
        };
        let result = match &probe.result {
            ProbeResult::Valid { version, .. } => {
                out.fact(format!(
                    "delivered to {at}: STARTTLS, {version}, certificate valid for {host}"
                ));
                SessionResult::Success
            }
            ProbeResult::NoStarttls | ProbeResult::StarttlsRefused(_) => {
                out.fact(format!("{at}: no STARTTLS: not delivered (mode enforce)"));
                failure(
                    ResultType::StarttlsNotSupported,
                    "STARTTLS not offered".to_owned(),
                )
            }
            ProbeResult::Tls { why, .. } => {
                out.fact(format!("{at}: STARTTLS failed: {why}"));
                failure(ResultType::ValidationFailure, why.clone())
            }
            ProbeResult::Unresolved(e) | ProbeResult::Unreachable(e) | ProbeResult::Smtp(e) => {
                out.fact(format!(
                    "{at}: {e} (no TLS negotiation: not a TLSRPT result)"
                ));
                return;
            }
        };
        self.record(out, &Session::new(now, policy, result));
    }

    /// Records the failure an outcome implies (a failed policy fetch), if any.
    fn outcome(&mut self, out: &Out, outcome: &Outcome, now: UnixTime) {
        match Session::from_outcome(DOMAIN, outcome, now) {
            Some(session) => self.record(out, &session),
            None => out.fact(
                "TLSRPT: nothing to record (RFC 8460 has no result type for a failed TXT \
                 lookup; the cached policy applied)",
            ),
        }
    }
}

/// Prints a report as pretty JSON, indented like the demo's facts.
fn print_report(out: &Out, report: &DayReport) {
    // The report's own order of fields (§4.4), not a map's.
    let json = serde_json::to_string_pretty(&report.report)
        .unwrap_or_else(|e| format!("(cannot print the report: {e})"));
    for line in json.lines() {
        out.fact(line);
    }
}

pub(crate) fn run(args: &DemoArgs) -> Result<ExitCode, String> {
    let mut out = Out {
        style: Style::stdout(),
        step: 0,
    };
    println!("mta-sts demo: a sender's view of MTA-STS, on a loopback test world (no network)");

    out.step("Start a test world on 127.0.0.1");
    let world = World::builder()
        .domain(
            DOMAIN,
            Domain::enforce(["mx1.example.com", "mx2.example.com"])
                .txt_id("20260101")
                .max_age(MAX_AGE),
        )
        .build()
        .map_err(world_error)?;
    out.fact(format!(
        "DNS {} (UDP and TCP), HTTPS {}, SMTP {}; its own CA",
        world.dns_addr(),
        world.https_addr(),
        world.smtp_addr()
    ));
    out.fact(format!(
        "{DOMAIN} publishes an enforce policy for mx1 and mx2, max_age {MAX_AGE} s"
    ));

    let now = Arc::new(AtomicU64::new(START));
    let clock = Arc::clone(&now);
    let mut anchors = TrustAnchors::empty();
    anchors
        .add_pem(world.ca_pem().as_bytes())
        .map_err(|e| format!("the world's CA: {e}"))?;
    let mut config = Config::default();
    config.https_port = world.https_port();
    config.dns_timeout = Duration::from_secs(5);
    config.fetch_timeout = Duration::from_secs(5);
    let client = Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(anchors)
        .config(config)
        .clock(Arc::new(move || {
            UnixTime::from_secs(clock.load(Ordering::SeqCst))
        }))
        .build()
        .map_err(|e| e.to_string())?;
    let rt = query::runtime()?;
    let advance = |secs: u64| now.fetch_add(secs, Ordering::SeqCst) + secs;
    let clock_now = || UnixTime::from_secs(now.load(Ordering::SeqCst));
    let mut reporting = Reporting {
        aggregator: Aggregator::new(AggregatorLimits::default()),
        tls: Tls::new(world.root_store())?,
        resolvers: vec![world.dns_addr()],
        smtp_port: world.smtp_port(),
    };
    let reporter = Reporter::new("mta-sts demo", "tlsrpt@sender.example", "sender.example");
    let mut closed: Vec<DayReport> = Vec::new();
    let mx_hosts = ["mx1.example.com", "mx2.example.com"];

    out.step("Discovery: the _mta-sts TXT record");
    match net::lookup(
        &[world.dns_addr()],
        TXT_NAME,
        QueryType::Txt,
        Duration::from_secs(5),
    )
    .and_then(DnsAnswer::into_txt)
    {
        Ok(mta_sts_core::io::TxtAnswer::Records(r)) => {
            for rec in r {
                out.fact(format!(
                    "{TXT_NAME} TXT {:?}",
                    String::from_utf8_lossy(&rec)
                ));
            }
        }
        other => out.fact(format!("{TXT_NAME}: {other:?}")),
    }
    world.reset_counters();

    out.step("Fetch: a message for someone@example.com needs the policy");
    let outcome = rt.block_on(client.policy(DOMAIN));
    print_outcome(&out, &outcome);
    out.fact(format!(
        "GET https://{POLICY_HOST}/.well-known/mta-sts.txt over TLS, certificate checked"
    ));
    out.fact(traffic(&world));
    let evaluation = rt.block_on(client.evaluate(DOMAIN, mx_hosts));
    reporting.deliver(&out, &outcome, &evaluation, clock_now());

    out.step("Cache: a second message a minute later");
    advance(60);
    let outcome = rt.block_on(client.policy(DOMAIN));
    print_outcome(&out, &outcome);
    out.fact(format!("{} (no I/O at all)", traffic(&world)));
    let evaluation = rt.block_on(client.evaluate(DOMAIN, mx_hosts));
    reporting.deliver(&out, &outcome, &evaluation, clock_now());

    out.step("MX evaluation: the MX hosts in priority order");
    let evaluation = rt.block_on(client.evaluate(
        DOMAIN,
        ["mx1.example.com", "mx.attacker.example", "mx2.example.com"],
    ));
    out.fact("an attacker who spoofed DNS added mx.attacker.example:");
    print_evaluation(&out, &evaluation);
    reporting.deliver(&out, &outcome, &evaluation, clock_now());

    out.step("Policy change: the domain adds mx3 and publishes a new TXT id");
    world.update(DOMAIN, |d| {
        d.policy_mx(["mx1.example.com", "mx2.example.com", "mx3.example.com"])
            .txt_id("20260102")
    });
    let t = advance(MAX_AGE);
    out.fact(format!(
        "one day later ({}), the cached policy has expired",
        humantime::format_rfc3339_seconds(UnixTime::from_secs(t).into())
    ));
    let outcome = rt.block_on(client.policy(DOMAIN));
    print_outcome(&out, &outcome);
    out.fact(traffic(&world));
    for r in reporting.aggregator.close(clock_now(), &reporter) {
        out.fact(format!(
            "UTC midnight has passed: the TLSRPT report of {} is closed ({})",
            &format_datetime(r.day_start)[..10],
            tlsrpt_build::describe(&r)
        ));
        closed.push(r);
    }
    let evaluation = rt.block_on(client.evaluate(DOMAIN, mx_hosts));
    reporting.deliver(&out, &outcome, &evaluation, clock_now());

    out.step("Outage: the policy host fails (HTTP 503) while a newer id appears");
    world.update(DOMAIN, |d| d.txt_id("20260103").http(Http::Status(503)));
    advance(3600);
    out.fact("before giving up on a message, a sender re-checks the TXT id (RFC 8461 §5.1):");
    let outcome = rt.block_on(client.recheck(DOMAIN));
    print_outcome(&out, &outcome);
    out.fact(traffic(&world));
    reporting.outcome(&out, &outcome, clock_now());

    out.step("Outage: DNS answers SERVFAIL for the TXT record");
    world.set_dns_fault(TXT_NAME, None, Some(DnsFault::ServFail));
    advance(600);
    let outcome = rt.block_on(client.recheck(DOMAIN));
    print_outcome(&out, &outcome);
    reporting.outcome(&out, &outcome, clock_now());
    let evaluation =
        rt.block_on(client.evaluate(DOMAIN, ["mx3.example.com", "mx.attacker.example"]));
    out.fact("the MX decisions still follow the cached policy:");
    print_evaluation(&out, &evaluation);
    reporting.deliver(&out, &outcome, &evaluation, clock_now());

    out.step("TLSRPT: the day's report (RFC 8460)");
    if let Some(midnight) = reporting.aggregator.next_close() {
        out.fact(format!(
            "at UTC midnight ({}) the day closes into one report per policy domain:",
            format_datetime(midnight)
        ));
        closed.extend(reporting.aggregator.close(midnight, &reporter));
    }
    if let Some(last) = closed.last() {
        out.fact(last.file_name());
        print_report(&out, last);
    }
    match &args.out {
        Some(dir) => {
            for path in tlsrpt_build::write_reports(dir, &closed)? {
                out.fact(format!("wrote {}", path.display()));
            }
        }
        None => out.fact("(mta-sts demo --out DIR writes every day's report as .json.gz)"),
    }

    out.step("Done");
    out.fact("the policy protected every delivery decision, through a change and two outages,");
    out.fact("and the sender reported what it saw (TLSRPT).");
    out.fact("try it on a real domain: mta-sts check gmail.com");
    out.fact("read the reports a domain receives: mta-sts report FILE...");
    drop(world);
    Ok(ExitCode::SUCCESS)
}
