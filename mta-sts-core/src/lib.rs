//! Sans-IO MTA-STS (RFC 8461): the decisions, without the sockets.
//!
//! MTA-STS lets a mail domain declare that its MX hosts accept mail only over TLS with a valid
//! certificate, so that a sending MTA can refuse STARTTLS downgrades and MX impersonation. A
//! domain publishes a TXT record at `_mta-sts.<domain>` (`v=STSv1; id=…;`) and a policy file at
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt`:
//!
//! ```text
//! version: STSv1
//! mode: enforce
//! mx: mail.example.com
//! mx: *.example.net
//! max_age: 604800
//! ```
//!
//! A sender discovers the record, fetches and caches the policy for `max_age` seconds, and before
//! delivering checks that the MX host matches one of the `mx` patterns and presents a valid
//! certificate for its name (mode `enforce`), or only reports failures (mode `testing`).
//!
//! This crate holds everything that is MTA-STS itself and does no I/O: it never opens a socket,
//! never spawns, never reads the clock. The adapters `mta-sts-tokio`, `mta-sts-smol` and
//! `mta-sts-blocking` carry out the DNS and HTTPS requests it describes ([`io`]).
//!
//! - [`Policy`]: the policy file parser (default and strict profiles), canonical printer and
//!   builder; [`StsRecord`]: the TXT record parser and the RFC 8461 §3.1 record selection;
//!   [`MxPattern`]: MX pattern parsing and matching (§4.1).
//! - Every error and warning is typed and says where: line and column for policies, column for
//!   TXT records.
//!
//! ```
//! use mta_sts_core::{Mode, Policy, StsRecord};
//!
//! // The `_mta-sts.example.com` TXT answer, each record's character-strings joined.
//! let record = StsRecord::discover(["v=spf1 -all", "v=STSv1; id=20160831085700Z;"])?;
//! assert_eq!(record.id(), "20160831085700Z");
//!
//! // The body fetched from https://mta-sts.example.com/.well-known/mta-sts.txt
//! let policy = Policy::parse("version: STSv1\nmode: enforce\nmx: *.example.net\nmax_age: 604800\n")?;
//! assert_eq!(policy.mode(), Mode::Enforce);
//! assert!(policy.matches_mx("mx1.example.net."));
//! assert!(!policy.matches_mx("mx1.attacker.example"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod domain;

/// The README's Rust examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub mod io;
mod mx;
mod policy;
mod txt;
#[cfg(feature = "wire")]
pub mod wire;

pub use domain::NameProblem;
pub use mx::{MxPattern, MxPatternError};
pub use policy::{
    Extension, Field, Layout, MAX_AGE_LIMIT, Mode, Policy, PolicyBuildError, PolicyBuilder,
    PolicyError, PolicyErrorKind, PolicyReport, PolicyWarning, PolicyWarningKind, Profile,
};
pub use txt::{
    MAX_ID_LEN, StsRecord, TxtError, TxtErrorKind, TxtLayout, TxtWarning, TxtWarningKind,
};
