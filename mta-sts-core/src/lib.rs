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
//!
//! The engine decides everything else RFC 8461 asks of a sending MTA, deterministically: a
//! per-domain [`Lookup`] state machine (discovery, fetch, R9–R20), a long-lived [`PolicyCache`]
//! with coalescing, proactive refresh and persistence ([`Snapshot`]), and delivery decisions
//! ([`Policy::check_mx`], [`Evaluation`]) under the sender's [`Config`]. Adapters (tokio, smol, blocking) perform the I/O the
//! engine asks for ([`io::Io`]) and pass the wall-clock time in as a [`UnixTime`].
//!
//! # Driving the engine
//!
//! The contract, in the style of quinn-proto and str0m:
//!
//! - **Inputs** are method calls with `now`: [`PolicyCache::begin`] (a delivery needs a policy),
//!   [`Lookup::handle`] (an I/O result came in), [`PolicyCache::apply`] (a lookup finished),
//!   [`PolicyCache::poll_refresh`] (the refresh timer fired).
//! - **Outputs** are polled: [`Lookup::poll`] gives the next [`io::Io`] request or
//!   [`Step::Done`]; [`PolicyCache::poll_timeout`] gives the next instant the cache has work.
//! - A lookup has at most one request outstanding and makes at most two (a TXT query, then a
//!   fetch), so the loop below ends by construction. Every limit of a request (timeouts, body
//!   cap, no redirects, SNI name, Content-Type check) is on the request: adapters choose none.
//! - Keep the cache behind a mutex and never hold it across I/O: `begin`, `apply`, `evaluate`
//!   and `poll_refresh` are short and synchronous; the lookup itself is owned by one task.
//!
//! A complete loop, with a scripted `perform` standing in for DNS and HTTPS:
//!
//! ```
//! use core::time::Duration;
//! use mta_sts_core::io::{FetchResponse, Io, TxtAnswer};
//! use mta_sts_core::{
//!     Begin, Config, IoResult, Lookup, MxDecision, Outcome, PolicyCache, Step, UnixTime, Verdict,
//! };
//!
//! /// The adapter's only runtime-specific code: perform one request (here: canned answers).
//! fn perform(io: &Io) -> IoResult {
//!     match io {
//!         Io::Txt(query) => {
//!             assert_eq!(query.name, "_mta-sts.example.com");
//!             let record = b"v=STSv1; id=20240101T000000;".to_vec();
//!             IoResult::Txt(Ok(TxtAnswer::Records(vec![record])))
//!         }
//!         Io::Fetch(fetch) => {
//!             // An adapter connects to fetch.host:fetch.port with SNI fetch.host, validates the
//!             // certificate for fetch.host, GETs fetch.url(), never follows a redirect, stops at
//!             // fetch.max_body bytes and gives up after fetch.timeout.
//!             assert_eq!(fetch.url(), "https://mta-sts.example.com/.well-known/mta-sts.txt");
//!             let body = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n";
//!             IoResult::Fetch(Ok(FetchResponse::new(200, Some("text/plain"), body)))
//!         }
//!     }
//! }
//!
//! /// Drives one lookup to its end and stores what it learned.
//! fn drive(cache: &mut PolicyCache, mut lookup: Lookup, clock: impl Fn() -> UnixTime) -> Outcome {
//!     loop {
//!         match lookup.poll() {
//!             Step::Io(io) => {
//!                 let result = perform(&io); // the only await point in an async adapter
//!                 lookup.handle(result, clock()).expect("the result answers the request");
//!             }
//!             Step::Done(resolution) => return cache.apply(resolution, clock()),
//!         }
//!     }
//! }
//!
//! let mut cache = PolicyCache::new(Config::default());
//! let clock = || UnixTime::from_secs(1_700_000_000); // an adapter: UnixTime::from(SystemTime::now())
//!
//! // 1. A message for someone@example.com: which policy applies?
//! let outcome = match cache.begin("example.com", clock()) {
//!     Begin::Ready(outcome) => outcome,                  // cached and fresh: no I/O at all
//!     Begin::Started(lookup) => drive(&mut cache, *lookup, clock),
//!     Begin::InProgress(_flight) => unreachable!("wait for that flight's outcome instead"),
//! };
//! assert!(matches!(outcome, Outcome::Fetched(_)));
//!
//! // 2. The delivery decision for the MX hosts, in priority order.
//! let evaluation = cache.evaluate("example.com", &outcome, ["mail.example.com", "backup.example.net"]);
//! assert_eq!(evaluation.verdict(), Verdict::Deliver);
//! for candidate in evaluation.candidates() {
//!     match candidate.decision() {
//!         MxDecision::Enforce => { /* STARTTLS required, certificate valid for candidate.host() */ }
//!         MxDecision::Skip => { /* treat as unreachable, go on with the next MX */ }
//!         MxDecision::Testing { .. } | MxDecision::NoConstraint => { /* deliver as usual */ }
//!         _ => {}
//!     }
//! }
//! assert_eq!(evaluation.candidates()[1].decision(), MxDecision::Skip);
//! // When every candidate is skipped (or fails TLS) under `enforce`: Verdict::DeferRecheckPolicy /
//! // evaluation.when_all_fail(): defer, never bounce, and re-check with cache.begin_recheck().
//!
//! // 3. The second message needs no I/O.
//! assert!(matches!(cache.begin("example.com", clock()), Begin::Ready(Outcome::Cached { .. })));
//!
//! // 4. The refresher task: sleep until poll_timeout(), then drain poll_refresh().
//! let due = cache.poll_timeout().expect("a refresh is scheduled");
//! assert!(due <= clock().saturating_add(Duration::from_secs(86_400)));
//! while let Some(lookup) = cache.poll_refresh(due) {
//!     drive(&mut cache, lookup, || due);
//! }
//! assert_eq!(cache.stats().refresh_success, 1);
//!
//! // 5. On shutdown and start: keep the policies (serde with the `serde` feature).
//! let snapshot = cache.export(due);
//! let mut restarted = PolicyCache::new(Config::default());
//! assert_eq!(restarted.import(snapshot, due)?.loaded, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Coalescing: every lookup the cache starts is a *flight* with its own [`FlightId`]
//! ([`Lookup::flight`]). While it is under way, [`PolicyCache::begin`] answers
//! [`Begin::InProgress`] with that identity for the same domain; an adapter keeps, per flight,
//! only what the waiting callers wait on (a channel, an event) and hands them the outcome that
//! [`PolicyCache::apply`] returns for the lookup whose [`Resolution::flight`] it is. A driver
//! that gives up calls [`PolicyCache::abandon`] with its flight, and its waiters call `begin`
//! again. The cache alone decides how long a flight counts as under way
//! ([`Config::lookup_deadline`]), so the adapter needs no clock logic and no second table.
//!
//! # DANE first
//!
//! RFC 8461 §2: MTA-STS must never override a failing DANE validation. Before applying a policy,
//! a sender decides the destination's [`DaneState`] from DNSSEC-validated answers (RFC 7672
//! §2.2): a [`DaneLookup`] asks for the MX records, then A, AAAA and `_25._tcp` TLSA of each MX
//! host, all at once ([`io::DnssecQuery`], answered with the resolver's AD bit); a [`DaneCache`]
//! keeps each state for the smallest TTL of its answers, apart from the policy cache. The
//! state's [`Precedence`] says what decides: DANE alone (`DaneOnly`), DANE for the hosts it
//! covers (`Dane`), a temporary failure (`Defer`, never a fall-back to MTA-STS), TLS without
//! authentication (`TlsRequired`), or MTA-STS as before (`Sts`). [`Evaluation::with_dane`] and
//! [`PolicyCache::evaluate_with_dane`] give each MX candidate its [`CandidateDane`]. The rules
//! are D1–D10 in REQUIREMENTS.md.
//!
//! ```
//! use mta_sts_core::io::{DnsFailure, DnssecAnswer, DnssecData, DnssecQuery, DnssecResult, DnssecType};
//! use mta_sts_core::{
//!     CandidateDane, DaneBegin, DaneCache, DaneConfig, DaneStep, NoPolicyReason, Outcome,
//!     Precedence, Tlsa, UnixTime,
//! };
//!
//! /// The validating resolver, with canned answers: a signed zone with a DANE-EE record.
//! fn resolve(q: &DnssecQuery) -> DnssecResult {
//!     let data = match (q.name.as_str(), q.rtype) {
//!         ("example.com", DnssecType::Mx) => DnssecData::Mx(vec![(10, "mx.example.com".into())]),
//!         ("mx.example.com", DnssecType::A) => DnssecData::Addrs(vec!["192.0.2.25".parse().unwrap()]),
//!         ("mx.example.com", DnssecType::Aaaa) => DnssecData::NoData,
//!         ("_25._tcp.mx.example.com", DnssecType::Tlsa) => {
//!             DnssecData::Tlsa(vec![Tlsa::new(3, 1, 1, vec![0xab; 32])])
//!         }
//!         _ => return Err(DnsFailure::ServerFailure),
//!     };
//!     Ok(DnssecAnswer::new(true, 3600, data)) // AD set: authenticated
//! }
//!
//! let now = UnixTime::from_secs(1_700_000_000);
//! let mut cache = DaneCache::new(DaneConfig::default());
//! let state = match cache.begin("example.com", now) {
//!     DaneBegin::Ready(state) => state,
//!     DaneBegin::Started(mut lookup) => {
//!         let mut in_flight = Vec::new(); // an adapter sends these concurrently
//!         loop {
//!             match lookup.poll() {
//!                 DaneStep::Query(id, query) => in_flight.push((id, query)),
//!                 DaneStep::Wait => {
//!                     let (id, query) = in_flight.pop().expect("a query under way");
//!                     lookup.handle(id, resolve(&query), now)?;
//!                 }
//!                 DaneStep::Done(resolution) => break cache.apply(resolution, now),
//!             }
//!         }
//!     }
//! };
//! assert_eq!(state.name(), "mandatory");
//! assert!(state.reason().starts_with("MX mx.example.com: TLSA 3 1 1 abab"));
//!
//! // Whatever MTA-STS says, DANE decides for this destination (Postfix: `OK dane-only`).
//! let outcome = Outcome::NoPolicy(NoPolicyReason::Disabled);
//! assert_eq!(state.precedence(&outcome), Precedence::DaneOnly);
//! let settings = Default::default();
//! let evaluation = mta_sts_core::Evaluation::with_dane(&outcome, &state, &settings, ["mx.example.com"]);
//! assert!(matches!(evaluation.candidates()[0].dane(), CandidateDane::Dane(records) if records.len() == 1));
//! // The next message needs no DNS query until the smallest TTL (3600 s) has passed.
//! assert!(matches!(cache.begin("example.com", now), DaneBegin::Ready(_)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # TLSRPT
//!
//! With the feature `tlsrpt` (default), `mta_sts_core::tlsrpt` reports what the sender saw to each policy
//! domain (RFC 8460): the `_smtp._tls` record, the result types of what the engine and the MTA
//! saw, the aggregator that closes each UTC day into reports, the report as JSON, gzip, HTTPS
//! POST and mail, the submission schedule with its retries, and the reader of the reports a
//! domain receives. Its module docs have the driving loop.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
mod config;
mod dane;
mod domain;
mod evaluate;
pub mod io;
#[cfg(any(feature = "serde", feature = "tlsrpt"))]
mod lenient;
mod lookup;
mod mx;
mod negative;
mod outcome;
mod policy;
mod policy_domain;
mod snapshot;
mod stats;
mod time;
#[cfg(feature = "tlsrpt")]
pub mod tlsrpt;
mod txt;

#[cfg(feature = "wire")]
pub mod wire;

pub use cache::{Begin, FlightId, PolicyCache};
pub use config::{Config, DnsTempFailure, DomainSettings, StsUsage};
pub use dane::{
    DaneAbsent, DaneBegin, DaneCache, DaneConfig, DaneHost, DaneHosts, DaneIndeterminate,
    DaneLookup, DaneLookupError, DaneQueryId, DaneResolution, DaneState, DaneStep, HostCoverage,
    MAX_DANE_HOSTS, MAX_TLSA_RECORDS, NotCoveredReason, Precedence, SkipReason, Tlsa, TlsaProblem,
    USAGE_DANE_EE, USAGE_DANE_TA,
};
pub use evaluate::{
    Candidate, CandidateDane, DeferReason, Evaluation, MxDecision, Verdict, WhenAllFail,
};
pub use lookup::{IoResult, Lookup, LookupError, LookupKind, Resolution, Step};
pub use negative::Absent;
pub use outcome::{CacheReason, CachedPolicy, FetchProblem, NoPolicyReason, Outcome, TxtProblem};
pub use policy_domain::{PolicyDomain, PolicyDomainError};
pub use snapshot::{
    AdoptError, ImportReport, MAX_LISTED_PROBLEMS, SNAPSHOT_FORMAT, SNAPSHOT_VERSION, Snapshot,
    SnapshotEntry, SnapshotError,
};
pub use stats::{DecisionStats, Stats};
pub use time::UnixTime;

pub use domain::NameProblem;
pub use mx::{MxPattern, MxPatternError};
pub use policy::{
    Extension, Field, Layout, MAX_AGE_LIMIT, Mode, Policy, PolicyBuildError, PolicyBuilder,
    PolicyError, PolicyErrorKind, PolicyReport, PolicyWarning, PolicyWarningKind, Profile,
};
pub use txt::{
    MAX_ID_LEN, StsRecord, TxtError, TxtErrorKind, TxtLayout, TxtWarning, TxtWarningKind,
};

/// The examples of the crate's README.md (its page on the registry), run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
