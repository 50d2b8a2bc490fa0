//! The scenario matrix that every adapter (tokio, smol, async-std, blocking) runs: one testkit
//! world with a domain per behaviour and fault, and the outcome the core must reach for each.
//! Adapters call [`run`] with a closure that asks their client for a policy, so the matrix is
//! written once.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::time::{Duration, Instant};

/// The README's Rust examples, compiled (and run where they need no network) as doctests here,
/// where every crate they use is at hand.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

use mta_sts_core::io::{CertificateProblem, FetchFailure};
use mta_sts_core::{CacheReason, Config, FetchProblem, Mode, NoPolicyReason, Outcome, TxtProblem};
use mta_sts_net::TrustAnchors;
use mta_sts_testkit::{Cert, DnsFault, Domain, Http, TlsVersions, Txt, World};

/// The DNS timeout the matrix configures (a "no answer" fault must end within it).
pub const DNS_TIMEOUT: Duration = Duration::from_millis(1500);
/// The fetch timeout the matrix configures (a stalled server must end within it).
pub const FETCH_TIMEOUT: Duration = Duration::from_millis(1500);

/// One row: a domain of the world and the outcome its policy lookup must have.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The policy domain to look up.
    pub domain: &'static str,
    /// What is expected, for the failure message.
    pub expect: &'static str,
    check: fn(&Outcome) -> bool,
}

impl Scenario {
    /// Whether `outcome` is the expected one.
    pub fn accepts(&self, outcome: &Outcome) -> bool {
        (self.check)(outcome)
    }
}

fn fetched(o: &Outcome, mode: Mode) -> bool {
    matches!(o, Outcome::Fetched(p) if p.mode() == mode)
}

fn fetch_failed(o: &Outcome, f: fn(&FetchFailure) -> bool) -> bool {
    matches!(o, Outcome::NoPolicy(NoPolicyReason::FetchFailed(FetchProblem::Fetch(e))) if f(e))
}

/// A certificate failure (TLSRPT `sts-webpki-invalid`) for this problem.
fn certificate(e: &FetchFailure, problem: CertificateProblem) -> bool {
    *e == FetchFailure::Certificate(problem)
}

fn no_record(o: &Outcome) -> bool {
    matches!(o, Outcome::NoPolicy(NoPolicyReason::NoRecord(_)))
}

const ENFORCE_MX: [&str; 2] = ["mx1.example.net", "*.mx.example.net"];

/// Every row of the matrix.
pub fn scenarios() -> Vec<Scenario> {
    macro_rules! row {
        ($domain:literal, $expect:literal, $check:expr) => {
            Scenario {
                domain: $domain,
                expect: $expect,
                check: $check,
            }
        };
    }
    vec![
        row!("enforce.test", "policy fetched, mode enforce", |o| fetched(
            o,
            Mode::Enforce
        )),
        row!("testing.test", "policy fetched, mode testing", |o| fetched(
            o,
            Mode::Testing
        )),
        row!("none.test", "policy fetched, mode none", |o| fetched(
            o,
            Mode::None
        )),
        row!("split.test", "multi-string TXT joined (R5)", |o| fetched(
            o,
            Mode::Enforce
        )),
        row!("spf.test", "non-STS TXT records discarded (R6)", |o| {
            fetched(o, Mode::Enforce)
        }),
        row!(
            "cname.test",
            "TXT through a CNAME, policy from mta-sts.cname.test (R10)",
            |o| { fetched(o, Mode::Enforce) }
        ),
        row!(
            "truncated.test",
            "truncated UDP answer retried over TCP",
            |o| fetched(o, Mode::Enforce)
        ),
        row!("chunked.test", "chunked policy body", |o| fetched(
            o,
            Mode::Enforce
        )),
        row!("charset.test", "text/plain; charset=utf-8", |o| fetched(
            o,
            Mode::Enforce
        )),
        row!(
            "wildcard-cert.test",
            "wildcard certificate *.domain (R14)",
            |o| fetched(o, Mode::Enforce)
        ),
        row!("tls12.test", "TLS 1.2-only policy host (R21)", |o| fetched(
            o,
            Mode::Enforce
        )),
        row!("tls13.test", "TLS 1.3-only policy host (R21)", |o| fetched(
            o,
            Mode::Enforce
        )),
        row!("nxdomain.test", "NXDOMAIN: no policy (R12)", |o| {
            matches!(
                o,
                Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NxDomain))
            )
        }),
        row!("nodata.test", "no TXT record: no policy", no_record),
        row!(
            "two-records.test",
            "two STS records: no policy (R7)",
            no_record
        ),
        row!(
            "bad-record.test",
            "invalid STS record: no policy (R7)",
            no_record
        ),
        row!("servfail.test", "SERVFAIL: temporary failure (R12)", |o| {
            matches!(o, Outcome::TemporaryFailure(_))
        }),
        row!(
            "silent.test",
            "no DNS answer: temporary failure within the DNS timeout",
            |o| { matches!(o, Outcome::TemporaryFailure(_)) }
        ),
        row!(
            "redirect.test",
            "301: not followed, fetch failure (R16)",
            |o| { fetch_failed(o, |e| matches!(e, FetchFailure::Redirect(301))) }
        ),
        row!("notfound.test", "404: fetch failure (R15)", |o| {
            fetch_failed(o, |e| matches!(e, FetchFailure::Status(404)))
        }),
        row!("error.test", "500: fetch failure (R15)", |o| {
            fetch_failed(o, |e| matches!(e, FetchFailure::Status(500)))
        }),
        row!("html.test", "text/html: fetch failure (R18)", |o| {
            fetch_failed(o, |e| matches!(e, FetchFailure::ContentType(Some(_))))
        }),
        row!("notype.test", "no Content-Type: fetch failure (R18)", |o| {
            fetch_failed(o, |e| matches!(e, FetchFailure::ContentType(None)))
        }),
        row!("oversize.test", "70 KiB body: fetch failure (R19)", |o| {
            fetch_failed(o, |e| matches!(e, FetchFailure::BodyTooLarge { .. }))
        }),
        row!(
            "oversize-chunked.test",
            "70 KiB chunked body: fetch failure (R19)",
            |o| { fetch_failed(o, |e| matches!(e, FetchFailure::BodyTooLarge { .. })) }
        ),
        row!(
            "short.test",
            "body shorter than announced: fetch failure",
            |o| {
                fetch_failed(o, |e| {
                    matches!(e, FetchFailure::Protocol(_) | FetchFailure::Tls(_))
                })
            }
        ),
        row!(
            "stall.test",
            "stall after headers: timeout within the fetch timeout (R19)",
            |o| { fetch_failed(o, |e| matches!(e, FetchFailure::Timeout)) }
        ),
        row!(
            "untrusted.test",
            "certificate from an untrusted CA (R14)",
            |o| { fetch_failed(o, |e| certificate(e, CertificateProblem::UnknownIssuer)) }
        ),
        row!(
            "wrongname.test",
            "certificate for another name (R14)",
            |o| { fetch_failed(o, |e| certificate(e, CertificateProblem::NameMismatch)) }
        ),
        row!("expired.test", "expired certificate (R14)", |o| {
            fetch_failed(o, |e| certificate(e, CertificateProblem::Expired))
        }),
        row!(
            "cn-only.test",
            "certificate with the name only in the CN (R14)",
            |o| { fetch_failed(o, |e| certificate(e, CertificateProblem::NameMismatch)) }
        ),
        row!(
            "invalid-policy.test",
            "invalid policy body: no policy (R20)",
            |o| {
                matches!(
                    o,
                    Outcome::NoPolicy(NoPolicyReason::FetchFailed(FetchProblem::Invalid(_)))
                )
            }
        ),
        row!(
            "second-address.test",
            "first address refuses: the next one is tried",
            |o| { fetched(o, Mode::Enforce) }
        ),
        row!("no-policy-host.test", "policy host does not resolve", |o| {
            fetch_failed(o, |e| matches!(e, FetchFailure::Resolve(_)))
        }),
        row!("[192.0.2.1]", "address literal: no policy (R4)", |o| {
            matches!(o, Outcome::NoPolicy(NoPolicyReason::AddressLiteral))
        }),
    ]
}

/// The world that serves every row of [`scenarios`].
pub fn world() -> World {
    let enforce = || Domain::enforce(ENFORCE_MX).txt_id("20240101");
    World::builder()
        .domain("enforce.test", enforce())
        .domain("testing.test", Domain::testing(ENFORCE_MX).txt_id("1"))
        .domain("none.test", Domain::none().txt_id("1"))
        .domain(
            "split.test",
            enforce().txt(Txt::strings(["v=STSv1; id=ab", "c1;"])),
        )
        .domain(
            "spf.test",
            enforce().txts([Txt::new("v=spf1 -all"), Txt::sts("7")]),
        )
        .domain("provider.test", enforce())
        .domain("cname.test", enforce().txt_cname("_mta-sts.provider.test"))
        .domain("truncated.test", enforce().txt_fault(DnsFault::TruncateUdp))
        .domain("chunked.test", enforce().http(Http::Chunked))
        .domain(
            "charset.test",
            enforce().http(Http::ContentType("text/plain; charset=utf-8".into())),
        )
        .domain("wildcard-cert.test", enforce().cert(Cert::Wildcard))
        .domain("tls12.test", enforce().tls(TlsVersions::Tls12Only))
        .domain("tls13.test", enforce().tls(TlsVersions::Tls13Only))
        .domain("nxdomain.test", enforce().txt_fault(DnsFault::NxDomain))
        .domain("nodata.test", enforce().no_txt())
        .domain(
            "two-records.test",
            enforce().txts([Txt::sts("1"), Txt::sts("2")]),
        )
        .domain(
            "bad-record.test",
            enforce().txt(Txt::new("v=STSv1; id=a-b")),
        )
        .domain("servfail.test", enforce().txt_fault(DnsFault::ServFail))
        .domain("silent.test", enforce().txt_fault(DnsFault::NoAnswer))
        .domain(
            "redirect.test",
            enforce().http(Http::Redirect {
                status: 301,
                location: "https://mta-sts.enforce.test/.well-known/mta-sts.txt".into(),
            }),
        )
        .domain("notfound.test", enforce().http(Http::Status(404)))
        .domain("error.test", enforce().http(Http::Status(500)))
        .domain(
            "html.test",
            enforce().http(Http::ContentType("text/html".into())),
        )
        .domain("notype.test", enforce().http(Http::NoContentType))
        .domain(
            "oversize.test",
            enforce().http(Http::Oversize {
                size: 70 * 1024,
                chunked: false,
            }),
        )
        .domain(
            "oversize-chunked.test",
            enforce().http(Http::Oversize {
                size: 70 * 1024,
                chunked: true,
            }),
        )
        .domain(
            "short.test",
            enforce().http(Http::ShortBody { announced: 4096 }),
        )
        .domain("stall.test", enforce().http(Http::StallAfterHeaders))
        .domain("untrusted.test", enforce().cert(Cert::UntrustedCa))
        .domain("wrongname.test", enforce().cert(Cert::WrongName))
        .domain("expired.test", enforce().cert(Cert::Expired))
        .domain("cn-only.test", enforce().cert(Cert::CommonNameOnly))
        .domain(
            "invalid-policy.test",
            enforce().policy_body("version: STSv1\nmode: Enforce\nmx: a.test\nmax_age: 1\n"),
        )
        .domain("no-policy-host.test", enforce().host_addrs([]))
        // Nothing listens on 127.0.0.2 (the world binds 127.0.0.1 only).
        .domain(
            "second-address.test",
            enforce().host_addrs(["127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap()]),
        )
        .build()
        .expect("start the testkit world")
}

/// The engine configuration for a world: its HTTPS port and the matrix's short timeouts.
pub fn config(world: &World) -> Config {
    let mut config = Config::default();
    config.https_port = world.https_port();
    config.dns_timeout = DNS_TIMEOUT;
    config.fetch_timeout = FETCH_TIMEOUT;
    config
}

/// The trust anchors for a world: its CA only.
pub fn anchors(world: &World) -> TrustAnchors {
    let mut anchors = TrustAnchors::empty();
    anchors
        .add_pem(world.ca_pem().as_bytes())
        .expect("the world's CA is valid PEM");
    anchors
}

/// A damaged cache file never stops a client from starting and never costs the valid policies
/// in it: `builder`'s client is built on a file with two valid policies and a bad entry (two
/// policies loaded, the file kept), then on a file that is not a cache file at all (built
/// empty, the file moved aside, not overwritten). `stats` reads the client's counters.
pub fn check_damaged_cache_file<R, C>(
    builder: impl Fn() -> mta_sts_net::ClientBuilder<R, C>,
    stats: impl Fn(&C) -> mta_sts_core::Stats,
) where
    R: mta_sts_net::Runtime,
    C: From<mta_sts_net::Client<R>>,
{
    use mta_sts_core::{Snapshot, SnapshotEntry, UnixTime};
    let dir = std::env::temp_dir().join(format!(
        "mta-sts-matrix-damaged-{}-{}",
        std::process::id(),
        std::thread::current()
            .name()
            .unwrap_or("t")
            .replace("::", "-")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a test directory");
    let path = dir.join("cache.json");
    let now = UnixTime::from(std::time::SystemTime::now());
    let policy = "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 604800\n";
    let entry = |d: &str, p: &str| SnapshotEntry::new(d, "1", now, now, p);
    let snapshot = Snapshot::new(vec![
        entry("a.example", policy),
        entry("b.example", "mode: nonsense"),
        entry("c.example", policy),
    ]);
    mta_sts_net::save_snapshot(&path, &snapshot).expect("write the cache file");
    let client = builder()
        .persistence(&path)
        .build()
        .expect("a damaged file never stops build");
    assert_eq!(stats(&client).entries, 2, "the two valid policies loaded");
    drop(client);
    std::fs::write(&path, b"\x00not a cache file").expect("damage the file");
    let client = builder()
        .persistence(&path)
        .build()
        .expect("an unusable file never stops build");
    assert_eq!(stats(&client).entries, 0);
    let aside = std::fs::read_dir(&dir)
        .expect("the directory")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("cache.json.unreadable-")
        });
    assert!(aside, "the unusable file was moved aside");
    drop(client);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The client of `builder` asking a DNS server that refuses every query: a UDP port nothing
/// listens on (the kernel answers ICMP port unreachable).
pub fn refused<R: mta_sts_net::Runtime, C: From<mta_sts_net::Client<R>>>(
    builder: mta_sts_net::ClientBuilder<R, C>,
) -> C {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    let server = closed.local_addr().expect("its address");
    drop(closed);
    builder.resolvers([server]).build().expect("a client")
}

/// A lookup of a client made by [`refused`] must end as a network error naming the refusal,
/// not as a timeout after every attempt's wait (R12: a temporary failure, told for what it is).
pub fn check_refused(outcome: &Outcome) {
    assert!(
        matches!(outcome, Outcome::TemporaryFailure(mta_sts_core::io::DnsFailure::Network(d)) if d.contains("refused")),
        "{outcome:?}"
    );
}

/// The futures of a client on any runtime are `Send` (any executor can run them) and a
/// caller's stays small: the lookup's own state (DNS, TLS) is allocated only by the caller that
/// drives it, so ten thousand callers waiting on a thousand lookups stay cheap and small-stack
/// threads can block on one.
pub fn check_futures<R: mta_sts_net::Runtime>(client: &mta_sts_net::Client<R>) {
    fn send<T: Send>(_: &T) {}
    let policy = client.policy("example.com");
    assert!(
        size_of_val(&policy) <= 1024,
        "{} bytes",
        size_of_val(&policy)
    );
    send(&policy);
    send(&client.recheck("example.com"));
    send(&client.evaluate("example.com", ["mx.example.com"]));
    send(&client.refresh_due());
    send(&client.save());
}

/// Runs every scenario through `policy` (an adapter's `Client::policy`, made synchronous) and
/// panics with every mismatch. Also checks that no call takes longer than its timeouts allow and
/// that a second call is answered from the cache without any new DNS query or fetch.
pub fn run(world: &World, mut policy: impl FnMut(&str) -> Outcome) {
    let mut failures = Vec::new();
    let limit = DNS_TIMEOUT + FETCH_TIMEOUT * 2 + Duration::from_secs(2);
    for s in scenarios() {
        let start = Instant::now();
        let outcome = policy(s.domain);
        let took = start.elapsed();
        if !s.accepts(&outcome) {
            failures.push(format!(
                "{}: expected {}, got {outcome:?}",
                s.domain, s.expect
            ));
        }
        if took > limit {
            failures.push(format!(
                "{}: took {took:?}, more than its timeouts allow",
                s.domain
            ));
        }
    }
    // A policy fetched once is then served from the cache: no DNS query, no fetch (R42).
    let (queries, fetches) = (world.total_queries(), world.total_fetches());
    let again = policy("enforce.test");
    if !matches!(
        again,
        Outcome::Cached {
            reason: CacheReason::Fresh,
            ..
        }
    ) {
        failures.push(format!(
            "enforce.test again: expected a fresh cached policy, got {again:?}"
        ));
    }
    if (world.total_queries(), world.total_fetches()) != (queries, fetches) {
        failures.push("enforce.test again: the cache hit did I/O".into());
    }
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Items the [`load_client`] macro names; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use mta_sts_testkit::World;
}

/// The load scenario every adapter runs (issue 7): [`CALLERS`](load::CALLERS) concurrent
/// `policy()` calls spread over [`DOMAINS`](load::DOMAINS) domains, with the client's
/// `max_concurrent_lookups` set to [`MAX_CONCURRENT_LOOKUPS`](load::MAX_CONCURRENT_LOOKUPS).
/// [`check`](load::check) then asks the world whether each domain was looked up once and how
/// many DNS queries and HTTPS connections it ever had at once.
pub mod load {
    use std::time::Duration;

    use mta_sts_core::{CacheReason, Config, Mode, Outcome, Stats};
    use mta_sts_testkit::{RecordType, World, bulk_domain_name};

    /// The distinct domains asked for.
    pub const DOMAINS: usize = 1_000;
    /// The concurrent callers: ten per domain.
    pub const CALLERS: usize = 10 * DOMAINS;
    /// The bound on lookups doing DNS and HTTPS at once that the clients are built with.
    pub const MAX_CONCURRENT_LOOKUPS: usize = 16;
    /// How long the world holds each DNS answer: long enough for the queries a client has out
    /// at once to overlap at the server, so that its peak count shows the client's concurrency.
    pub const DNS_LATENCY: Duration = Duration::from_millis(5);
    /// The DNS and fetch timeouts: generous, since the scenario is about coalescing and bounds,
    /// and a loaded CI machine must not turn it into a timeout test.
    pub const TIMEOUT: Duration = Duration::from_secs(20);

    /// A world with [`DOMAINS`] valid enforce domains (`mx: mx.<domain>`) and
    /// [`DNS_LATENCY`].
    pub fn world() -> World {
        World::builder()
            .bulk_domains(DOMAINS)
            .dns_latency(DNS_LATENCY)
            .build()
            .expect("start the testkit world")
    }

    /// The client of the load scenario: `<$client>::builder()` with `$world` (a `&World`) as
    /// its only resolver and its CA as its only trust anchor, [`config`] and
    /// [`MAX_CONCURRENT_LOOKUPS`]. A macro, since each adapter has a builder type of its own
    /// (with the same setters).
    #[macro_export]
    macro_rules! load_client {
        ($client:ty, $world:expr) => {{
            let world: &$crate::__private::World = $world;
            <$client>::builder()
                .resolvers([world.dns_addr()])
                .trust_anchors($crate::anchors(world))
                .config($crate::load::config(world))
                .max_concurrent_lookups($crate::load::MAX_CONCURRENT_LOOKUPS)
                .build()
                .expect("build the client")
        }};
    }

    /// The engine configuration: the world's HTTPS port and [`TIMEOUT`].
    pub fn config(world: &World) -> Config {
        let mut config = super::config(world);
        config.dns_timeout = TIMEOUT;
        config.fetch_timeout = TIMEOUT;
        config
    }

    /// The domain of each caller, in the order to start them: interleaved (caller `i` asks for
    /// domain `i % DOMAINS`), so that the ten callers of a domain come among the others'.
    pub fn callers() -> Vec<String> {
        (0..CALLERS)
            .map(|i| bulk_domain_name(i % DOMAINS))
            .collect()
    }

    /// The most DNS queries and HTTPS connections the world saw at once.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Peaks {
        /// DNS queries in flight ([`World::peak_dns_in_flight`]).
        pub dns: usize,
        /// HTTPS connections being served ([`World::peak_https_in_flight`]).
        pub https: usize,
    }

    /// Checks a run: `outcomes[i]` is what caller `i` of [`callers`] got, `stats` the client's
    /// counters afterwards. Panics with every problem found:
    /// - every caller got its domain's policy (fetched, or fresh from the cache for a caller
    ///   that came after the fetch): mode enforce, `mx.<domain>` matches;
    /// - each domain was looked up once: one TXT query, one A and one AAAA query for its
    ///   policy host, one TLS connection and one fetch; the cache holds each domain once and no
    ///   lookup is left under way;
    /// - at most [`MAX_CONCURRENT_LOOKUPS`] HTTPS connections were served at once, and at most
    ///   twice as many DNS queries were in flight (a lookup asks for the policy host's A and
    ///   AAAA records at once).
    ///
    /// Returns the peaks, for the test's output.
    pub fn check(world: &World, outcomes: &[Outcome], stats: &Stats) -> Peaks {
        let mut problems = Vec::new();
        if outcomes.len() != CALLERS {
            problems.push(format!("{} outcomes for {CALLERS} callers", outcomes.len()));
        }
        for (i, outcome) in outcomes.iter().enumerate() {
            let domain = bulk_domain_name(i % DOMAINS);
            let timely = matches!(
                outcome,
                Outcome::Fetched(_)
                    | Outcome::Cached {
                        reason: CacheReason::Fresh,
                        ..
                    }
            );
            let right = outcome.policy().is_some_and(|p| {
                p.mode() == Mode::Enforce && p.policy().matches_mx(&format!("mx.{domain}"))
            });
            if !(timely && right) {
                problems.push(format!("caller {i} ({domain}): {outcome:?}"));
            }
        }
        for d in 0..DOMAINS {
            let domain = bulk_domain_name(d);
            let host = format!("mta-sts.{domain}");
            let seen = [
                world.queries(&format!("_mta-sts.{domain}"), RecordType::Txt),
                world.queries(&host, RecordType::A),
                world.queries(&host, RecordType::Aaaa),
                world.connections(&host),
                world.fetches(&host),
            ];
            if seen != [1; 5] {
                problems.push(format!(
                    "{domain}: TXT, A, AAAA queries, TLS connections, fetches: {seen:?}, not once each"
                ));
            }
        }
        let totals = (world.total_queries(), world.total_fetches());
        if totals != (3 * DOMAINS, DOMAINS) {
            problems.push(format!("total DNS queries and fetches: {totals:?}"));
        }
        if (stats.entries, stats.in_flight, stats.fetch_success) != (DOMAINS, 0, DOMAINS as u64) {
            problems.push(format!("client stats: {stats:?}"));
        }
        let peaks = Peaks {
            dns: world.peak_dns_in_flight(),
            https: world.peak_https_in_flight(),
        };
        if peaks.https > MAX_CONCURRENT_LOOKUPS || peaks.dns > 2 * MAX_CONCURRENT_LOOKUPS {
            problems.push(format!(
                "{peaks:?} over the bound of {MAX_CONCURRENT_LOOKUPS} lookups at once"
            ));
        }
        let found = problems.len();
        problems.truncate(20);
        assert!(
            problems.is_empty(),
            "{found} problem(s), the first ones:\n{}",
            problems.join("\n")
        );
        eprintln!("peaks with at most {MAX_CONCURRENT_LOOKUPS} lookups at once: {peaks:?}");
        peaks
    }
}

/// The MX host of [`dane_world`]'s DANE domain.
pub const DANE_MX: &str = "mx.dane.test";

/// A world for [`check_dane`]: `dane.test` (a signed zone, its MX host with a DANE-EE TLSA
/// record of the certificate the world's MX presents, and an `enforce` policy naming that
/// host), `bogus.test` (signed, the TLSA query answers bogus) and `plain.test` (unsigned), each
/// with an `enforce` policy for its own MX host.
pub fn dane_world() -> World {
    dane_world_with_ttl(0)
}

/// [`dane_world`] serving its records with this TTL (a DANE state is cached for the smallest
/// TTL of its answers: none with 0).
pub fn dane_world_with_ttl(ttl: u32) -> World {
    use mta_sts_testkit::{Record, RecordType};
    let localhost = Record::A(std::net::Ipv4Addr::LOCALHOST);
    let mut builder = World::builder()
        .ttl(ttl)
        .signed_zone("dane.test")
        .signed_zone("bogus.test");
    for d in ["dane.test", "bogus.test", "plain.test"] {
        let mx = format!("mx.{d}");
        builder = builder
            .domain(d, Domain::enforce([mx.as_str()]).txt_id("1"))
            .record(d, Record::Mx(10, mx.clone()))
            .record(&mx, localhost.clone());
    }
    let world = builder
        .dns_fault(
            &mta_sts_testkit::tlsa_name("mx.bogus.test"),
            Some(RecordType::Tlsa),
            DnsFault::Bogus,
        )
        .build()
        .expect("start the DANE world");
    world
        .publish_mx_tlsa(DANE_MX, 3, 1, 1)
        .expect("a TLSA record for the MX");
    world
}

/// DANE decides first in every adapter (RFC 8461 §2; D1, D5, D7, D8): `evaluate` is the
/// adapter's `Client::evaluate` (DANE on, the world's DNS as resolver) made synchronous.
/// `dane.test` is DANE-mandatory: its MX candidate is delivered to under DANE with the published
/// record, the policy not applied; `bogus.test` is indeterminate: every candidate and the
/// delivery defer; `plain.test` (unsigned) has no DANE: MTA-STS decides as without DANE.
pub fn check_dane(world: &World, evaluate: impl Fn(&str, &[&str]) -> mta_sts_core::Evaluation) {
    use mta_sts_core::{CandidateDane, DeferReason, MxDecision, Precedence, Tlsa, Verdict};
    let published = match world
        .mx_tlsa(DANE_MX, 3, 1, 1)
        .expect("the TLSA record of the MX")
    {
        mta_sts_testkit::Record::Tlsa {
            usage,
            selector,
            matching_type,
            data,
        } => Tlsa::new(usage, selector, matching_type, data),
        other => panic!("not a TLSA record: {other:?}"),
    };

    let e = evaluate("dane.test", &[DANE_MX]);
    let state = e.dane().expect("the client looked DANE up");
    assert_eq!(state.name(), "mandatory", "{}", state.reason());
    assert_eq!(e.precedence(), Precedence::DaneOnly);
    assert_eq!(
        e.candidates()[0].dane(),
        CandidateDane::Dane(std::slice::from_ref(&published))
    );
    assert_eq!(e.verdict(), Verdict::Deliver);

    let e = evaluate("bogus.test", &["mx.bogus.test"]);
    assert_eq!(e.precedence(), Precedence::Defer);
    assert_eq!(e.verdict(), Verdict::Defer(DeferReason::DaneIndeterminate));
    assert!(
        e.candidates()
            .iter()
            .all(|c| c.dane() == CandidateDane::Defer)
    );

    let e = evaluate("plain.test", &["mx.plain.test", "mx.other.test"]);
    assert_eq!(e.dane().map(|d| d.name()), Some("absent"));
    assert_eq!(e.precedence(), Precedence::Sts);
    assert_eq!(e.candidates()[0].dane(), CandidateDane::Sts);
    assert_eq!(e.candidates()[0].decision(), MxDecision::Enforce);
    assert_eq!(e.candidates()[1].decision(), MxDecision::Skip);
    assert_eq!(e.verdict(), Verdict::Deliver);
}

/// The TLSRPT scenario every adapter runs (T13): a client with a virtual clock counts the
/// sessions of a day (successes, an MX certificate failure, a policy fetch failure it meets by
/// itself), the clock passes midnight, and the reports reach the testkit's collectors: POSTed
/// with `Content-Type: application/tlsrpt+gzip` and the right totals, retried after a 500
/// until a 200, never counted delivered on a 404, mailed through the embedder's callback for a
/// `mailto:` URI, dropped for a domain without a record.
pub mod tlsrpt {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use mta_sts_core::io::{CertificateProblem, FetchFailure};
    use mta_sts_core::tlsrpt::{
        OutboxConfig, PolicyType, Report, ReportMail, Reporter, TlsFailure, is_report_mail,
    };
    use mta_sts_core::{FetchProblem, Mode, NoPolicyReason, Outcome, UnixTime};
    use mta_sts_net::{Clock, TlsResult, TlsRptSettings, TlsRptStats};
    use mta_sts_testkit::{Collector, Domain, Http, Post, Record, Txt, World, tlsrpt_name};

    /// 2026-01-01T00:00:00Z: the day whose sessions are reported.
    pub const DAY: u64 = 1_767_225_600;
    /// The MX hosts of the reported domains.
    pub const MX: [&str; 2] = ["mx1.reports.test", "mx2.reports.test"];
    /// How long the first retry waits ([`OutboxConfig::first_retry`]).
    pub const FIRST_RETRY: Duration = Duration::from_secs(300);

    /// The world of the scenario, its collectors, the virtual clock and the mail the client
    /// handed over.
    #[derive(Debug)]
    pub struct Setup {
        /// The world: `reports.test`, `broken.test` (its policy host answers 500), `none.test`
        /// (mode none), `retry.test`, `gone.test`, `mail.test` (a `mailto:` record) and
        /// `unreported.test` (no record).
        pub world: World,
        /// Answers 200: the reports of `reports.test`, `broken.test` and `none.test`.
        pub ok: Collector,
        /// Answers 500 once, then 200: `retry.test`'s.
        pub flaky: Collector,
        /// Answers 404, always: `gone.test`'s.
        pub gone: Collector,
        /// The virtual clock, in Unix seconds.
        pub now: Arc<AtomicU64>,
        /// The messages handed to the `mailto` callback.
        pub mail: Arc<Mutex<Vec<ReportMail>>>,
    }

    /// The world and collectors of the scenario, the clock at noon of [`DAY`].
    pub fn setup() -> Setup {
        let enforce = || Domain::enforce(MX).txt_id("1");
        let world = World::builder()
            .domain("reports.test", enforce())
            .domain("broken.test", enforce().http(Http::Status(500)))
            .domain("none.test", Domain::none().txt_id("1"))
            .domain("retry.test", enforce())
            .domain("gone.test", enforce())
            .domain("mail.test", enforce())
            .domain("unreported.test", enforce())
            .build()
            .expect("start the testkit world");
        let ok = world.collector("collector.test").expect("a collector");
        let flaky = world
            .collector("flaky.collector.test")
            .expect("a collector");
        let gone = world.collector("gone.collector.test").expect("a collector");
        for d in ["reports.test", "broken.test", "none.test"] {
            ok.publish(d);
        }
        flaky.respond([500]);
        flaky.publish("retry.test");
        gone.set_default_status(404);
        gone.publish("gone.test");
        world.add_record(
            &tlsrpt_name("mail.test"),
            Record::Txt(Txt::new("v=TLSRPTv1; rua=mailto:tlsrpt@mail.test")),
        );
        Setup {
            world,
            ok,
            flaky,
            gone,
            now: Arc::new(AtomicU64::new(DAY + 12 * 3600)),
            mail: Arc::default(),
        }
    }

    impl Setup {
        /// The client's clock: [`now`](Self::now).
        pub fn clock(&self) -> Clock {
            let now = Arc::clone(&self.now);
            Arc::new(move || UnixTime::from_secs(now.load(Ordering::SeqCst)))
        }

        /// Sets the virtual clock.
        pub fn set_time(&self, t: UnixTime) {
            self.now.store(t.as_secs(), Ordering::SeqCst);
        }

        /// The TLSRPT settings: reports first sent at midnight (no spread), retried after
        /// [`FIRST_RETRY`], `mailto:` reports kept in [`mail`](Self::mail).
        pub fn settings(&self) -> TlsRptSettings {
            let mut outbox = OutboxConfig::default();
            outbox.spread = Duration::ZERO;
            outbox.first_retry = FIRST_RETRY;
            outbox.post_timeout = super::FETCH_TIMEOUT;
            let mail = Arc::clone(&self.mail);
            TlsRptSettings::new(Reporter::new(
                "mta-sts matrix",
                "tlsrpt@sender.test",
                "sender.test",
            ))
            .outbox(outbox)
            .mailto(move |m| {
                mail.lock().unwrap_or_else(PoisonError::into_inner).push(m);
                Ok(())
            })
        }
    }

    /// The client of the scenario: `<$client>::builder()` with the world as its only resolver,
    /// its CA as its only trust anchor, [`config`](crate::config), the virtual clock and the
    /// TLSRPT settings of `$setup` (a `&Setup`).
    #[macro_export]
    macro_rules! tlsrpt_client {
        ($client:ty, $setup:expr) => {{
            let setup: &$crate::tlsrpt::Setup = $setup;
            <$client>::builder()
                .resolvers([setup.world.dns_addr()])
                .trust_anchors($crate::anchors(&setup.world))
                .config($crate::config(&setup.world))
                .clock(setup.clock())
                .tlsrpt(setup.settings())
                .build()
                .expect("build the client")
        }};
    }

    /// What the scenario asks of an adapter's client, made synchronous.
    pub trait Reporting {
        /// `Client::policy`.
        fn policy(&self, domain: &str) -> Outcome;
        /// `Client::record_tls_result`.
        fn record(&self, result: &TlsResult) -> Option<PolicyType>;
        /// `Client::report_due`.
        fn report_due(&self) -> usize;
        /// `Client::next_report_due`.
        fn next_due(&self) -> Option<UnixTime>;
        /// `Client::tlsrpt_stats`.
        fn stats(&self) -> TlsRptStats;
    }

    /// A policy's successful and failed session counts.
    fn totals(p: &mta_sts_core::tlsrpt::PolicyReport) -> (u64, u64) {
        let s = &p.summary;
        (
            s.total_successful_session_count,
            s.total_failure_session_count,
        )
    }

    fn report(post: &Post) -> Report {
        let json = post.report.as_deref().expect("a gzip body");
        serde_json::from_slice(json).expect("a JSON report")
    }

    /// The sessions of [`DAY`]: three successes and a certificate failure for `reports.test`
    /// (under its `sts` policy), the fetch failure of `broken.test` (recorded by the client
    /// itself), nothing for `none.test` (mode none), a success for each other domain.
    pub fn record_day(c: &impl Reporting) {
        assert!(
            matches!(c.policy("reports.test"), Outcome::Fetched(p) if p.mode() == Mode::Enforce)
        );
        assert!(matches!(
            c.policy("broken.test"),
            Outcome::NoPolicy(NoPolicyReason::FetchFailed(FetchProblem::Fetch(
                FetchFailure::Status(500)
            )))
        ));
        assert!(matches!(c.policy("none.test"), Outcome::Fetched(p) if p.mode() == Mode::None));
        let ip = |s: &str| s.parse().expect("an address");
        for _ in 0..3 {
            let ok = TlsResult::success("reports.test", MX[0]).receiving_ip(ip("127.0.0.1"));
            assert_eq!(c.record(&ok), Some(PolicyType::Sts));
        }
        let expired = TlsFailure::Certificate(CertificateProblem::Expired);
        let failed = TlsResult::failure("reports.test", MX[1], expired)
            .receiving_ip(ip("192.0.2.25"))
            .sending_ip(ip("198.51.100.7"));
        assert_eq!(c.record(&failed), Some(PolicyType::Sts));
        assert_eq!(c.record(&TlsResult::success("none.test", MX[0])), None);
        for d in ["retry.test", "gone.test", "mail.test", "unreported.test"] {
            assert!(matches!(c.policy(d), Outcome::Fetched(_)), "{d}");
            assert_eq!(
                c.record(&TlsResult::success(d, MX[0])),
                Some(PolicyType::Sts)
            );
        }
        // A domain the client never looked up: no policy known.
        assert_eq!(
            c.record(&TlsResult::success("unknown.test", "mx.unknown.test")),
            Some(PolicyType::NoPolicyFound)
        );
        let s = c.stats();
        assert_eq!((s.successful_sessions, s.failed_sessions), (3 + 4 + 1, 2));
    }

    /// The whole scenario on `c`, a client made by [`tlsrpt_client!`] on `setup`.
    pub fn check(setup: &Setup, c: &impl Reporting) {
        record_day(c);
        // Nothing is sent before the day is over.
        let midnight = UnixTime::from_secs(DAY + 86_400);
        assert_eq!(c.next_due(), Some(midnight));
        setup.set_time(UnixTime::from_secs(DAY + 86_399));
        assert_eq!(c.report_due(), 0);
        assert_eq!(setup.ok.count(), 0);

        // Past midnight: each domain's record is discovered and its report sent.
        setup.set_time(UnixTime::from_secs(DAY + 86_401));
        // Discoveries of 7 domains (unknown.test has none: NXDOMAIN), then 3 POSTs to `ok`, one
        // to each other collector and one mail. (none.test had no session: no report.)
        let ran = c.report_due();
        let s = c.stats();
        assert_eq!(s.reports, 7, "{s:?}");
        assert_eq!(ran, 7 + 2 + 1 + 1 + 1, "{s:?}");
        let posts = setup.ok.wait_posts(2, Duration::ZERO);
        assert_eq!(posts.len(), 2, "{posts:?}");
        for post in &posts {
            assert_eq!(post.method, "POST");
            assert_eq!(post.path, "/tlsrpt");
            assert_eq!(post.header("content-type"), Some("application/tlsrpt+gzip"));
            assert_eq!(post.status, 200);
        }
        let reports: Vec<Report> = posts.iter().map(report).collect();
        let of = |domain: &str| {
            reports
                .iter()
                .find(|r| r.policies[0].policy.policy_domain == domain)
                .unwrap_or_else(|| panic!("no report for {domain}: {reports:?}"))
        };
        let r = of("reports.test");
        assert_eq!(r.organization_name, "mta-sts matrix");
        assert_eq!(r.contact_info, "tlsrpt@sender.test");
        assert_eq!(r.date_range.start_datetime, "2026-01-01T00:00:00Z");
        assert_eq!(r.date_range.end_datetime, "2026-01-01T23:59:59Z");
        assert_eq!(r.policies.len(), 1);
        let p = &r.policies[0];
        assert_eq!(p.policy.policy_type, "sts");
        assert_eq!(p.policy.mx_host, MX);
        assert_eq!(totals(p), (3, 1));
        let f = &p.failure_details[..];
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].result_type, "certificate-expired");
        assert_eq!(f[0].receiving_mx_hostname.as_deref(), Some(MX[1]));
        assert_eq!(f[0].receiving_ip.as_deref(), Some("192.0.2.25"));
        assert_eq!(f[0].sending_mta_ip.as_deref(), Some("198.51.100.7"));
        assert_eq!(f[0].failed_session_count, 1);
        let p = &of("broken.test").policies[0];
        assert_eq!(p.policy.policy_type, "sts");
        assert_eq!(totals(p), (0, 1));
        assert_eq!(p.failure_details[0].result_type, "sts-policy-fetch-error");

        let mail = setup
            .mail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert_eq!(mail.len(), 1);
        assert_eq!(mail[0].to, "tlsrpt@mail.test");
        assert_eq!(mail[0].policy_domain, "mail.test");
        assert!(is_report_mail(&mail[0].message));

        // The 500 and the 404 are failures to retry; the domains without a record are dropped.
        assert_eq!(setup.flaky.posts()[0].status, 500);
        assert_eq!(setup.gone.posts()[0].status, 404);
        let s = c.stats();
        assert_eq!(
            (s.delivered, s.retry, s.failed, s.no_record),
            (3, 2, 0, 2),
            "{s:?}"
        );
        assert_eq!(s.pending, 2);

        // The retry: the 500 collector now answers 200, the 404 one still 404.
        let retry_at = c.next_due().expect("retries are due");
        assert_eq!(retry_at.as_secs(), DAY + 86_401 + FIRST_RETRY.as_secs());
        setup.set_time(retry_at);
        assert_eq!(c.report_due(), 2);
        assert_eq!(setup.flaky.wait_posts(2, Duration::ZERO)[1].status, 200);
        let s = c.stats();
        assert_eq!((s.delivered, s.retry, s.failed), (4, 3, 0), "{s:?}");

        // The 404 is retried within 24 hours, then given up: never delivered.
        for _ in 0..64 {
            let Some(due) = c.next_due() else { break };
            setup.set_time(due);
            c.report_due();
        }
        let s = c.stats();
        assert_eq!((s.delivered, s.failed, s.pending), (4, 1, 0), "{s:?}");
        assert_eq!(s.retry as usize, 1 + setup.gone.count() - 1, "{s:?}");
        assert!(setup.gone.count() > 3, "retried: {}", setup.gone.count());
        assert!(setup.gone.posts().iter().all(|p| p.status == 404));
        assert_eq!(setup.ok.count(), 2, "delivered reports are not sent again");
        assert_eq!(setup.flaky.count(), 2);
    }

    /// The reporting task of a client made by [`tlsrpt_client!`] on `setup`, started by the
    /// adapter before: sessions of [`DAY`], then the clock passes midnight and a session of
    /// the next day is recorded, which wakes the task; it closes the day and the report of
    /// `reports.test` reaches the collector without any call to `report_due`. `wait(collector,
    /// n)` waits for `n` requests at the collector (the adapter's way: blocking, or a future
    /// on its runtime).
    pub fn check_reporter_task(
        setup: &Setup,
        c: &impl Reporting,
        wait: impl Fn(&Collector, usize) -> Vec<Post>,
    ) {
        assert!(matches!(c.policy("reports.test"), Outcome::Fetched(_)));
        let ok = TlsResult::success("reports.test", MX[0]);
        let expired = TlsFailure::Certificate(CertificateProblem::Expired);
        let failed = TlsResult::failure("reports.test", MX[1], expired);
        for result in [&ok, &ok, &failed] {
            assert_eq!(c.record(result), Some(PolicyType::Sts));
        }
        setup.set_time(UnixTime::from_secs(DAY + 86_401));
        assert_eq!(c.record(&ok), Some(PolicyType::Sts));
        let posts = wait(&setup.ok, 1);
        assert_eq!(posts.len(), 1, "the reporting task sent nothing");
        assert_eq!(
            posts[0].header("content-type"),
            Some("application/tlsrpt+gzip")
        );
        let r = report(&posts[0]);
        let p = &r.policies[0];
        assert_eq!(p.policy.policy_domain, "reports.test");
        assert_eq!(r.date_range.start_datetime, "2026-01-01T00:00:00Z");
        assert_eq!(totals(p), (2, 1));
        assert_eq!(p.failure_details[0].result_type, "certificate-expired");
    }
}

/// A client of an adapter (`$client`, with a `builder()`) on the matrix's `$world`, over the
/// shared store `$store` (an `Arc<MemoryStore>`), for [`check_shared_store`].
#[macro_export]
macro_rules! store_client {
    ($client:ty, $world:expr, $store:expr) => {
        <$client>::builder()
            .resolvers([$world.dns_addr()])
            .trust_anchors($crate::anchors($world))
            .config($crate::config($world))
            .store($store.clone())
            .build()
            .expect("client")
    };
}

/// [`check_shared_store`] on a new world and store, with two clients made by `build` (such as
/// [`store_client!`]), asked through `policy`; `wait_written` waits for a client's store writes.
pub fn check_shared_store_clients<C>(
    build: impl Fn(&World, &std::sync::Arc<mta_sts_net::MemoryStore>) -> C,
    policy: impl Fn(&C, &str) -> Outcome,
    wait_written: impl Fn(&C),
) {
    let world = world();
    let store = std::sync::Arc::new(mta_sts_net::MemoryStore::new());
    let (a, b) = (build(&world, &store), build(&world, &store));
    check_shared_store(
        &world,
        &store,
        |d| policy(&a, d),
        || wait_written(&a),
        |d| policy(&b, d),
    );
}

/// The fleet scenario (issue 16, S1): two clients share one policy store. Client A (`a`) fetches
/// the policy of `enforce.test` and writes it to the store (`a_written` waits until its store
/// writes are done); client B (`b`), which has never seen the domain, answers from the store
/// with the same policy, without any HTTPS fetch of its own.
pub fn check_shared_store(
    world: &World,
    store: &mta_sts_net::MemoryStore,
    a: impl Fn(&str) -> Outcome,
    a_written: impl Fn(),
    b: impl Fn(&str) -> Outcome,
) {
    const DOMAIN: &str = "enforce.test";
    let before = world.total_fetches();
    let first = a(DOMAIN);
    let Outcome::Fetched(policy) = &first else {
        panic!("client A fetches the policy: {first:?}")
    };
    assert_eq!(world.total_fetches(), before + 1, "one fetch by client A");
    a_written();
    let stored = store
        .entry(DOMAIN)
        .expect("client A wrote the policy to the store");
    assert_eq!(
        (stored.id.as_str(), stored.fetched_at),
        (policy.id(), policy.fetched_at())
    );
    let second = b(DOMAIN);
    match &second {
        Outcome::Cached { policy: p, .. } => assert_eq!(p, policy, "the same policy"),
        other => panic!("client B answers from the store: {other:?}"),
    }
    assert_eq!(
        world.total_fetches(),
        before + 1,
        "client B fetched nothing: it answered from the store"
    );
}
