//! Parses an MTA-STS policy and `_mta-sts` TXT records and prints the verdict and the warnings.
//!
//! ```text
//! verdict [--strict] [--txt RECORD]... [--mx HOST]... [--policy FILE|-]
//! ```
//!
//! The policy is read from `--policy FILE`, or from standard input when it is `-` or not given
//! and standard input is not a terminal. Each `--txt` is one TXT record of the `_mta-sts` answer
//! (character-strings already joined). Each `--mx` is an MX host to match against the policy.
//! Exit status: 0 when everything given is valid, 1 when something is invalid, 2 on usage errors.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use mta_sts_core::{Mode, Policy, Profile, StsRecord};

const USAGE: &str = "usage: verdict [--strict] [--txt RECORD]... [--mx HOST]... [--policy FILE|-]";

struct Args {
    profile: Profile,
    txt: Vec<String>,
    mx: Vec<String>,
    policy: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        profile: Profile::Default,
        txt: Vec::new(),
        mx: Vec::new(),
        policy: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--strict" => args.profile = Profile::Strict,
            "--txt" => args.txt.push(value("--txt")?),
            "--mx" => args.mx.push(value("--mx")?),
            "--policy" => args.policy = Some(value("--policy")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn read_policy(source: Option<&str>) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    match source {
        Some("-") => std::io::stdin().read_to_end(&mut body).map(|_| ()),
        Some(path) => std::fs::read(path).map(|b| body = b),
        None if !std::io::stdin().is_terminal() => {
            std::io::stdin().read_to_end(&mut body).map(|_| ())
        }
        None => return Ok(None),
    }
    .map_err(|e| format!("cannot read the policy: {e}"))?;
    Ok(Some(body))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("verdict: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut ok = true;

    if !args.txt.is_empty() {
        match StsRecord::discover_with(&args.txt, args.profile) {
            Ok(r) => {
                println!("TXT: valid, id {}", r.id());
                for w in r.warnings() {
                    println!("  warning: {w}");
                }
            }
            Err(e) => {
                ok = false;
                println!("TXT: no policy: {e}");
            }
        }
    }

    let body = match read_policy(args.policy.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("verdict: {e}");
            return ExitCode::from(2);
        }
    };
    let policy = body.map(|body| Policy::lint(&body, args.profile));
    if let Some(report) = &policy {
        match &report.policy {
            Some(p) => {
                let mx: Vec<_> = p.mx().iter().map(|m| m.as_str()).collect();
                println!(
                    "policy: valid, mode {}, max_age {} s, mx [{}]",
                    p.mode(),
                    p.max_age(),
                    mx.join(", ")
                );
            }
            None => {
                ok = false;
                println!("policy: invalid");
                for e in &report.errors {
                    println!("  error: {e}");
                }
            }
        }
        for w in &report.warnings {
            println!("  warning: {w}");
        }
    }

    for host in &args.mx {
        let Some(Some(p)) = policy.as_ref().map(|r| r.policy.as_ref()) else {
            println!("mx {host}: no valid policy to match against");
            ok = false;
            continue;
        };
        let matched = p.matches_mx(host);
        let decision = match (p.mode(), matched) {
            (Mode::Enforce, true) => "deliver over TLS with a certificate valid for the MX host",
            (Mode::Enforce, false) => "do not deliver to this MX (enforce, no pattern matches)",
            (Mode::Testing, true) => "deliver; report TLS failures (testing)",
            (Mode::Testing, false) => "deliver; report the mismatch (testing)",
            (Mode::None, _) => "no constraint (mode none)",
        };
        println!(
            "mx {host}: {} -> {decision}",
            if matched { "matches" } else { "does not match" }
        );
    }

    if args.txt.is_empty() && policy.is_none() {
        eprintln!("verdict: nothing to check: give --txt, --policy or a policy on standard input");
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
