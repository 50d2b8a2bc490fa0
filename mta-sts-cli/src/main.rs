//! `mta-sts`: check a domain's MTA-STS (RFC 8461) deployment, query what a sender decides, lint,
//! match and generate policies, read and build TLSRPT (RFC 8460) reports, a demo on a loopback
//! test world (the default feature `demo`), and the Postfix policy daemon of mta-sts-postfix.
//!
//! Exit status: 0 when the answer is "healthy" / "valid" / "matches" / "a policy applies" / "a
//! report was read", 1 when it is not, 2 for usage errors.
#![forbid(unsafe_code)]

mod assets;
mod cache;
mod check;
mod daemon;
#[cfg(feature = "demo")]
mod demo;
mod net;
mod probe;
mod query;
mod report;
mod tls;
mod tlsrpt;
mod tlsrpt_build;
mod tlsrpt_check;

use std::io::Read;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use mta_sts_core::{Mode, MxPattern, Policy, Profile, StsRecord};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "mta-sts",
    version,
    about = "MTA-STS (RFC 8461): check domains, query policies, lint, match and generate policies; TLSRPT (RFC 8460) reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a domain's MTA-STS deployment: TXT record, policy fetch and certificate, policy,
    /// MX records against the policy, STARTTLS on each MX, and what senders decide. Exit 0 when
    /// healthy, 1 when a problem was found.
    Check(check::CheckArgs),
    /// What the library decides for delivery to a domain (the default profile): policy,
    /// no-policy or temporary-failure, with the reason. Exit 0 when a policy applies, 1 if not.
    Query(query::QueryArgs),
    /// Walk through discovery, fetch, cache, MX evaluation, a policy change and outages on a
    /// loopback test world started in this process (no network needed).
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Summarise received TLSRPT reports (RFC 8460) per policy domain, with a rollout verdict
    /// for a domain in mode testing; or, with `build`, write one day's reports from JSON lines
    /// of delivery attempts. Exit 0 when a report was read (or every line was), 1 if not.
    Report(tlsrpt::ReportArgs),
    /// Check a policy file (or, with --txt, a `_mta-sts` TXT answer): errors and warnings with
    /// their positions. Exit 0 when valid, 1 when invalid.
    Lint {
        /// The rules: `strict` (every deviation is an error) or `default` (what a sender accepts).
        #[arg(long, value_enum, default_value_t = ProfileArg::Strict)]
        profile: ProfileArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Lint TXT records instead of a policy file: one argument per record of the answer.
        #[arg(long)]
        txt: bool,
        /// The policy file (`-` for standard input), or with --txt the TXT records.
        #[arg(required = true, value_name = "FILE|-|RECORD")]
        inputs: Vec<String>,
    },
    /// Whether an MX host matches a policy `mx` pattern. Exit 0 on match, 1 otherwise.
    Match {
        /// The pattern, e.g. `*.example.com`.
        pattern: String,
        /// The MX host name, e.g. `mx1.example.com`.
        host: String,
    },
    /// Print a policy file and the TXT record to publish. Refuses invalid input.
    Generate {
        /// The mode: enforce, testing or none.
        #[arg(long, value_parser = parse_mode)]
        mode: Mode,
        /// An MX pattern (repeat for each MX); at least one unless the mode is none.
        #[arg(long = "mx", value_name = "PATTERN", value_parser = parse_mx_strict)]
        mx: Vec<MxPattern>,
        /// How long senders may cache the policy, in seconds (at most 31557600).
        #[arg(long, value_name = "SECONDS")]
        max_age: u32,
        /// The policy id for the TXT record (1 to 32 letters and digits); default: the UTC time,
        /// e.g. 20261123T161200Z.
        #[arg(long)]
        id: Option<String>,
        /// The policy domain, to print where to publish.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Run the Postfix socketmap policy daemon: a drop-in for postfix-mta-sts-resolver (same
    /// YAML configuration, same answers). SIGTERM drains and exits, SIGHUP reloads. Under
    /// systemd it reports readiness (Type=notify) and serves the sockets of socket activation.
    Daemon(daemon::DaemonArgs),
    /// The operator's tools for the policy store: list, show, purge, refresh. They work on the
    /// store directly (the daemon's configuration names it, or --store); a running daemon's
    /// memory (an admin socket) is not reachable yet. Exit 1 when the store fails, 2 for usage
    /// errors.
    Cache(cache::CacheArgs),
    /// Write the man pages and shell completions (bash, zsh, fish) into a directory, for
    /// packaging.
    #[command(hide = true)]
    GenerateAssets(assets::AssetsArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProfileArg {
    Strict,
    Default,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Self {
        match p {
            ProfileArg::Strict => Self::Strict,
            ProfileArg::Default => Self::Default,
        }
    }
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse::<Mode>()
        .map_err(|_| format!("{s:?} is not a mode: use enforce, testing or none"))
}

fn parse_mx_strict(s: &str) -> Result<MxPattern, String> {
    MxPattern::parse_strict(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Query(args) => query::run(args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(&args),
        Command::Report(args) => tlsrpt::run(args),
        Command::Lint {
            profile,
            json,
            txt: false,
            inputs,
        } => lint_policy(profile.into(), json, &inputs),
        Command::Lint {
            profile,
            json,
            txt: true,
            inputs,
        } => Ok(lint_txt(profile.into(), json, &inputs)),
        Command::Match { pattern, host } => Ok(match_pattern(&pattern, &host)),
        Command::Generate {
            mode,
            mx,
            max_age,
            id,
            domain,
        } => generate(mode, mx, max_age, id, domain.as_deref()),
        Command::Daemon(args) => Ok(daemon::run(args)),
        Command::Cache(args) => Ok(cache::run(args)),
        Command::GenerateAssets(args) => assets::run(&args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("mta-sts: {message}");
            ExitCode::from(2)
        }
    }
}

fn verdict(valid: bool) -> ExitCode {
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn lint_policy(profile: Profile, json: bool, inputs: &[String]) -> Result<ExitCode, String> {
    let [source] = inputs else {
        return Err(
            "lint takes one policy file (or - for standard input); use --txt for TXT records"
                .into(),
        );
    };
    let body = if source == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        b
    } else {
        std::fs::read(source).map_err(|e| format!("cannot read {source}: {e}"))?
    };
    let report = Policy::lint(&body, profile);
    let valid = report.policy.is_some();
    if json {
        let errors: Vec<Value> = report
            .errors
            .iter()
            .map(|e| json!({"line": e.line(), "column": e.column(), "message": e.kind().to_string()}))
            .collect();
        let warnings: Vec<Value> = report
            .warnings
            .iter()
            .map(|w| json!({"line": w.line(), "message": w.kind().to_string()}))
            .collect();
        let p = report.policy.as_ref();
        let out = json!({
            "valid": valid,
            "mode": p.map(|p| p.mode().as_str()),
            "mx": p.map(|p| p.mx().iter().map(|m| m.as_str()).collect::<Vec<_>>()),
            "max_age": p.map(Policy::max_age),
            "errors": errors,
            "warnings": warnings,
        });
        println!("{out}");
    } else {
        match &report.policy {
            Some(p) => {
                let mx: Vec<_> = p.mx().iter().map(|m| m.as_str()).collect();
                println!(
                    "valid: mode {}, max_age {} s, mx [{}]",
                    p.mode(),
                    p.max_age(),
                    mx.join(", ")
                );
            }
            None => println!("invalid"),
        }
        for e in &report.errors {
            println!("error: {e}");
        }
        for w in &report.warnings {
            println!("warning: {w}");
        }
    }
    Ok(verdict(valid))
}

fn lint_txt(profile: Profile, json: bool, records: &[String]) -> ExitCode {
    let result = StsRecord::discover_with(records, profile);
    let valid = result.is_ok();
    if json {
        let (id, errors, warnings) = match &result {
            Ok(r) => (
                Some(r.id()),
                Vec::new(),
                r.warnings()
                    .iter()
                    .map(|w| json!({"column": w.column(), "message": w.kind().to_string()}))
                    .collect(),
            ),
            Err(e) => (
                None,
                vec![json!({"column": e.column(), "message": e.kind().to_string()})],
                Vec::new(),
            ),
        };
        let out = json!({"policy": valid, "id": id, "errors": errors, "warnings": warnings});
        println!("{out}");
    } else {
        match &result {
            Ok(r) => {
                println!("valid: id {}", r.id());
                for w in r.warnings() {
                    println!("warning: {w}");
                }
            }
            Err(e) => println!("no policy: {e}"),
        }
    }
    verdict(valid)
}

fn match_pattern(pattern: &str, host: &str) -> ExitCode {
    match MxPattern::parse(pattern) {
        Ok(p) => {
            let m = p.matches(host);
            println!(
                "{host} {} {p}",
                if m { "matches" } else { "does not match" }
            );
            verdict(m)
        }
        Err(e) => {
            println!("{e}: it matches no host");
            ExitCode::from(1)
        }
    }
}

fn generate(
    mode: Mode,
    mx: Vec<MxPattern>,
    max_age: u32,
    id: Option<String>,
    domain: Option<&str>,
) -> Result<ExitCode, String> {
    let policy = mx
        .into_iter()
        .fold(Policy::builder(mode).max_age(max_age), |b, m| b.mx(m))
        .build()
        .map_err(|e| e.to_string())?;
    let id = match id {
        Some(id) => id,
        // e.g. 2026-11-23T16:12:00Z -> 20261123T161200Z
        None => humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace(['-', ':'], ""),
    };
    let record = StsRecord::parse_strict(&format!("v=STSv1; id={id};"))
        .map_err(|e| format!("invalid --id {id:?}: {e}"))?;
    let (host, txt_name) = match domain {
        Some(d) => (format!("mta-sts.{d}"), format!("_mta-sts.{d}")),
        None => ("mta-sts.<domain>".into(), "_mta-sts.<domain>".into()),
    };
    println!("# Serve as text/plain at https://{host}/.well-known/mta-sts.txt");
    print!("{policy}");
    println!();
    println!("# Publish as the only STS TXT record at {txt_name}");
    println!("{record}");
    Ok(ExitCode::SUCCESS)
}
