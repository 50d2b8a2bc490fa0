//! `mta-sts query <domain>`: what the library decides for delivery to a domain (default profile),
//! through mta-sts-tokio's [`Client`], as a delivering MTA would ask it.

use std::process::ExitCode;

use clap::Args;
use mta_sts_core::{Config, DaneState, Outcome, PolicyDomain, Precedence};
use mta_sts_tokio::Client;
use serde_json::{Value, json};

use crate::net::NetArgs;
use crate::report::{self, Progress};

/// `mta-sts query` arguments.
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// The policy domain, e.g. example.com.
    domain: String,
    /// Print JSON: {"domain","outcome","mode","mx","max_age","id","reason","dane"}.
    #[arg(long)]
    json: bool,
    /// Do not look up the DANE state (DNSSEC-validated MX, address and TLSA records).
    #[arg(long)]
    no_dane: bool,
    #[command(flatten)]
    net: NetArgs,
}

/// The tokio client for these options: resolvers, trust anchors, ports and timeouts.
/// With `dane`, the client looks up DANE states too.
pub(crate) fn client(net: &NetArgs, dane: bool) -> Result<Client, String> {
    let mut config = Config::default();
    config.https_port = net.https_port;
    config.dns_timeout = net.step_timeout();
    config.fetch_timeout = net.step_timeout();
    Client::builder()
        .resolvers(net.resolvers()?)
        .trust_anchors(net.trust_anchors()?)
        .config(config)
        .dane(dane)
        .build()
        .map_err(|e| e.to_string())
}

/// A runtime for one command: current thread, IO and timers.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// What decides delivery to the domain, in words: DANE or MTA-STS, and why.
pub(crate) fn precedence_text(dane: &DaneState, outcome: &Outcome) -> &'static str {
    match dane.precedence(outcome) {
        Precedence::DaneOnly => "DANE-mandatory; MTA-STS policy not applied (RFC 8461 §2)",
        Precedence::Dane => {
            "DANE-opportunistic: DANE for the MX hosts with usable TLSA; MTA-STS policy not applied to them (RFC 8461 §2)"
        }
        Precedence::Defer => "indeterminate: delivery defers (never a fall-back to MTA-STS)",
        Precedence::TlsRequired => {
            "TLSA present but unusable: TLS required without authentication (RFC 7672 §2.2)"
        }
        // Unusable TLSA under an MTA-STS policy in enforce: the policy applies (it requires TLS).
        Precedence::Sts if matches!(dane, DaneState::UnusableOnly(_)) => {
            "TLSA present but unusable: the MTA-STS policy (enforce) decides; it requires TLS (RFC 7672 §2.2)"
        }
        Precedence::Sts => "DANE absent: MTA-STS decides",
        #[allow(unreachable_patterns)]
        _ => "unknown precedence",
    }
}

/// The `"dane"` member of `query --json`: the state, why, and which mechanism wins.
pub(crate) fn dane_json(dane: Option<&DaneState>, outcome: &Outcome) -> Value {
    match dane {
        None => json!({"state": "not-checked", "reason": "DANE lookups are off"}),
        Some(d) => json!({
            "state": d.name(),
            "reason": d.reason(),
            "tls_required": d.tls_required(),
            "decides": precedence_text(d, outcome),
        }),
    }
}

/// The `query --json` object for an outcome.
pub(crate) fn outcome_json(domain: &str, outcome: &Outcome) -> Value {
    let p = outcome.policy();
    json!({
        "domain": domain,
        "outcome": report::outcome_kind(outcome),
        "mode": p.map(|p| p.mode().as_str()),
        "mx": p.map(|p| p.policy().mx().iter().map(|m| m.as_str()).collect::<Vec<_>>()),
        "max_age": p.map(|p| p.policy().max_age()),
        "id": p.map(|p| p.id()),
        "reason": report::outcome_reason(outcome),
    })
}

pub(crate) fn run(args: QueryArgs) -> Result<ExitCode, String> {
    let domain = PolicyDomain::parse(&args.domain).map_err(|e| {
        format!(
            "{:?} is not a policy domain ({e}): give a domain name such as example.com",
            args.domain
        )
    })?;
    let client = client(&args.net, !args.no_dane)?;
    let progress = Progress::new(args.json);
    progress.step(format!(
        "looking up the MTA-STS policy and the DANE state of {domain}"
    ));
    let (outcome, dane) = runtime()?.block_on(client.policy_and_dane(domain.as_str()));
    progress.clear();
    if args.json {
        let mut out = outcome_json(domain.as_str(), &outcome);
        out["dane"] = dane_json(dane.as_ref(), &outcome);
        println!("{out}");
    } else {
        println!("{domain}: {}", report::outcome_kind(&outcome));
        if let Some(p) = outcome.policy() {
            let mx: Vec<&str> = p.policy().mx().iter().map(|m| m.as_str()).collect();
            println!("  mode:    {}", p.mode());
            println!("  mx:      {}", mx.join(", "));
            println!("  max_age: {} s", p.policy().max_age());
            println!("  id:      {}", p.id());
        }
        println!("  reason:  {}", report::outcome_reason(&outcome));
        match &dane {
            Some(d) => {
                println!("  dane:    {}: {}", d.name(), d.reason());
                println!("  decides: {}", precedence_text(d, &outcome));
            }
            None => println!("  dane:    not checked"),
        }
    }
    // Like `match`: 0 when the answer is yes (a policy applies), 1 when it is no.
    Ok(if outcome.policy().is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
