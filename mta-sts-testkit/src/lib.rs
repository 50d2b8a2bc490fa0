//! A loopback "fake internet" for testing MTA-STS (RFC 8461) clients.
//!
//! A [`World`] starts, inside the test process and in milliseconds, three servers on
//! `127.0.0.1` (never any other address):
//!
//! - an **authoritative DNS server** on UDP and TCP (same port when possible) that serves each
//!   domain's `_mta-sts` TXT records (multi-string records, several records, CNAME chains),
//!   the policy host `mta-sts.<domain>` (A `127.0.0.1`), the domain's MX records, NXDOMAIN with
//!   the SOA and NODATA;
//! - an **HTTPS server** whose certificates come from a CA generated at start; it picks the
//!   certificate and the behaviour by SNI and serves `/.well-known/mta-sts.txt` per policy host;
//! - an **SMTP server** with STARTTLS, the fake MX of every MX host ([`World::smtp_addr`],
//!   [`Smtp`], [`World::set_mx_cert`]); with [`WorldBuilder::accept_mail`] it takes mail too and
//!   keeps what it received ([`World::received_mail`]).
//!
//! On demand, a TLSRPT report [`Collector`] ([`World::collector`]): an HTTPS server of its own
//! that records the reports POSTed to it and answers scripted statuses.
//!
//! Scenarios are data ([`Domain`], [`Http`], [`Cert`], [`DnsFault`], [`TlsVersions`]) and can
//! be changed while the world runs ([`World::set_txt_id`], [`World::set_http`],
//! [`World::set_dns_fault`], [`World::update`], …), so a test can model a policy change with a
//! new id, or an outage. Counters ([`World::queries`], [`World::fetches`],
//! [`World::connections`]) let a test prove coalescing and caching.
//!
//! The servers run on plain std threads and sockets, so clients under tokio, smol, async-std
//! or plain threads can use the same world. Dropping the world stops and joins every thread
//! ([`World::threads`] proves it).
//!
//! # Pointing a client at the world
//! - DNS: use [`World::dns_addr`] (UDP) / [`World::dns_tcp_addr`] (TCP) as the only resolver.
//! - HTTPS: every policy host resolves to `127.0.0.1`; connect to [`World::https_port`]
//!   instead of 443 and keep the policy host as SNI and `Host`.
//! - Trust: add [`World::ca_pem`] / [`World::ca_der`] as a root (or use
//!   [`World::root_store`], [`World::client_config`]).
//!
//! # Example
//! ```
//! use mta_sts_testkit::{Domain, Http, RecordType, World, probe};
//!
//! let world = World::builder()
//!     .domain("example.com", Domain::enforce(["mx1.example.com"]).txt_id("20240101"))
//!     .build()?;
//!
//! // The TXT record, through the world's DNS server (over UDP).
//! let reply = probe::lookup(&world, "_mta-sts.example.com", RecordType::Txt)?;
//! assert_eq!(reply.txt(), ["v=STSv1; id=20240101;"]);
//!
//! // The policy, through the world's HTTPS server, trusting the world's CA.
//! let policy = probe::https_get(&world, "mta-sts.example.com", "/.well-known/mta-sts.txt")?;
//! assert_eq!(policy.status, 200);
//! assert!(policy.text().contains("mode: enforce\r\n"));
//!
//! // What the servers saw.
//! assert_eq!(world.queries("_mta-sts.example.com", RecordType::Txt), 1);
//! assert_eq!(world.fetches("mta-sts.example.com"), 1);
//!
//! // A policy change with a new id, then an outage of the policy host.
//! world.set_txt_id("example.com", "20240202");
//! world.set_http("example.com", Http::Status(500));
//! let err = probe::https_get(&world, "mta-sts.example.com", "/.well-known/mta-sts.txt")?;
//! assert_eq!(err.status, 500);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Crypto provider
//! The crate uses rustls 0.23 with the `ring` provider only, passed explicitly
//! (`builder_with_provider`); it never installs a process-wide default provider.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod collector;
mod dns;
pub mod dnssec;
mod https;
mod mail;
mod pki;
pub mod probe;
mod scenario;
mod smtp;
mod state;
mod sup;
mod world;

pub use collector::{
    COLLECTOR_PATH, Collector, MAX_GUNZIPPED, MAX_POST_BODY, MAX_POSTS_KEPT, Post, tlsrpt_name,
};
pub use mail::{MAX_MAIL_KEPT, MAX_MESSAGE, MAX_RECIPIENTS, ReceivedMail};
pub use pki::IssuedCert;
pub use scenario::{Cert, DnsFault, Domain, Http, Mode, Record, RecordType, TlsVersions, Txt};
pub use smtp::{MAX_COMMANDS as SMTP_MAX_COMMANDS, MAX_LINE as SMTP_MAX_LINE, Smtp};
pub use state::Request;
pub use sup::Threads;
pub use world::{World, WorldBuilder, bulk_domain_name, tlsa_name};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The path of the policy file on a policy host (RFC 8461 §3.2).
pub const POLICY_PATH: &str = https::POLICY_PATH;

/// Whether a test whose program is missing (Postfix's `postmap`, nsd, unbound) must fail rather
/// than skip: when the variable `require` is `1`, or under CI (`CI` set to `true` or `1`, as CI
/// services and the project's `.ci/run` set it).
///
/// ```
/// // Neither variable set here: a missing program may be skipped.
/// # if std::env::var_os("CI").is_none() {
/// assert!(!mta_sts_testkit::must_not_skip("MTA_STS_TESTKIT_DOC_NEVER_SET"));
/// # }
/// ```
pub fn must_not_skip(require: &str) -> bool {
    let set = |name: &str| matches!(std::env::var(name).as_deref(), Ok("1" | "true"));
    set(require) || set("CI")
}
