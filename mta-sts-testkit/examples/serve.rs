//! Serves a test world on fixed addresses until killed, for senders that are not in this
//! process (postfix-mta-sts-resolver, `mta-sts daemon`, …): DNS on UDP and TCP, HTTPS, with a
//! bulk zone of valid enforce domains `d0000.example`, `d0001.example`, … (TXT id `1`, policy
//! `mode: enforce`, `mx: mx.<domain>`, `max_age: 86400`; every policy host and MX resolves to
//! 127.0.0.1). Meant for a private network namespace, where it can take the standard ports of
//! 127.0.0.1 and a client needs only `/etc/resolv.conf` and the CA file.
//!
//! ```sh
//! cargo run --release -p mta-sts-testkit --example serve -- --domains 4000 \
//!     --ca-file /tmp/world-ca.pem [--listen 127.0.0.1] [--dns-port 53] [--https-port 443] \
//!     [--ttl 0] [--ceiling] [--ceiling-threads 2]
//! ```
//!
//! It writes the world's CA certificate (PEM) to `--ca-file`. With `--ceiling` it first measures
//! the world's own ceiling on these addresses (DNS queries/s over UDP, HTTPS policy fetches/s
//! with a new TLS connection each, from client threads in this process), prints it, and a
//! `ceiling {…}` JSON line. Then it prints `ready dns=<addr> https=<addr> domains=<n>` and
//! serves until it is killed.

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use mta_sts_testkit::World;
use mta_sts_testkit::probe::HttpsProbe;

/// The options.
#[derive(Debug)]
struct Args {
    domains: usize,
    listen: IpAddr,
    dns_port: u16,
    https_port: u16,
    ttl: u32,
    ca_file: String,
    ceiling: bool,
    ceiling_threads: usize,
}

const USAGE: &str = "usage: serve --ca-file PEM [--domains N] [--listen IP] [--dns-port N] \
                     [--https-port N] [--ttl SECS] [--ceiling] [--ceiling-threads N]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        domains: 4000,
        listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
        dns_port: 53,
        https_port: 443,
        ttl: 0,
        ca_file: String::new(),
        ceiling: false,
        ceiling_threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--ceiling" {
            a.ceiling = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--domains" => a.domains = value.parse().map_err(|e| bad(&e))?,
            "--listen" => a.listen = value.parse().map_err(|e| bad(&e))?,
            "--dns-port" => a.dns_port = value.parse().map_err(|e| bad(&e))?,
            "--https-port" => a.https_port = value.parse().map_err(|e| bad(&e))?,
            "--ttl" => a.ttl = value.parse().map_err(|e| bad(&e))?,
            "--ca-file" => a.ca_file.clone_from(&value),
            "--ceiling-threads" => a.ceiling_threads = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.ca_file.is_empty() {
        return Err("--ca-file is required".into());
    }
    Ok(a)
}

/// Queries per client thread and fetches per client thread of the ceiling measurement.
const CEILING_QUERIES: usize = 20_000;
const CEILING_FETCHES: usize = 500;

fn ceiling(world: &World, domains: usize, threads: usize) {
    let domains = domains.max(1);
    let elapsed = common::dns_udp(world.dns_addr(), threads, CEILING_QUERIES, domains);
    let dns = common::report(
        "world ceiling, DNS/UDP",
        threads * CEILING_QUERIES,
        "queries",
        threads,
        elapsed,
    );
    let https = HttpsProbe::for_world(world);
    let elapsed = common::https_fetches(&https, threads, CEILING_FETCHES, domains);
    let fetches = common::report(
        "world ceiling, HTTPS (new TLS connection per fetch)",
        threads * CEILING_FETCHES,
        "fetches",
        threads,
        elapsed,
    );
    println!(
        "ceiling {{\"client_threads\":{threads},\"dns_udp_qps\":{dns:.0},\"https_fetches_per_s\":{fetches:.0}}}"
    );
    world.reset_counters();
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("serve: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let world = match World::builder()
        .bulk_domains(args.domains)
        .ttl(args.ttl)
        .bind_dns(SocketAddr::new(args.listen, args.dns_port))
        .bind_https(SocketAddr::new(args.listen, args.https_port))
        .build()
    {
        Ok(w) => w,
        Err(e) => {
            eprintln!(
                "serve: cannot start the world on {} (DNS port {}, HTTPS port {}): {e}",
                args.listen, args.dns_port, args.https_port
            );
            return ExitCode::from(1);
        }
    };
    if let Err(e) = std::fs::write(&args.ca_file, world.ca_pem()) {
        eprintln!("serve: cannot write {}: {e}", args.ca_file);
        return ExitCode::from(1);
    }
    if args.ceiling {
        ceiling(&world, args.domains, args.ceiling_threads);
    }
    println!(
        "ready dns={} https={} domains={} ca={}",
        world.dns_addr(),
        world.https_addr(),
        args.domains,
        args.ca_file
    );
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
