//! The blocking client against a loopback testkit world: coalescing across threads, waiters
//! bounded by the driver's timeouts, persistence across a restart, rechecks and MX decisions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mta_sts_blocking::{Client, Error, MxDecision, Outcome, Verdict};
use mta_sts_core::io::FetchFailure;
use mta_sts_core::{CacheReason, FetchProblem, Mode, NoPolicyReason};
use mta_sts_testkit::{Domain, Http, RecordType, World};

const MX: [&str; 2] = ["mx1.example.net", "*.mx.example.net"];

fn world() -> World {
    World::builder()
        .domain("enforce.test", Domain::enforce(MX).txt_id("20240101"))
        .domain(
            "stall.test",
            Domain::enforce(MX).http(Http::StallAfterHeaders),
        )
        .build()
        .expect("world")
}

fn client(world: &World) -> Client {
    builder(world).build().expect("client")
}

fn builder(world: &World) -> mta_sts_blocking::ClientBuilder {
    Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(world))
        .config(mta_sts_matrix::config(world))
}

fn is_enforce(o: &Outcome) -> bool {
    o.policy().is_some_and(|p| p.mode() == Mode::Enforce)
}

/// Runs `f` on `n` threads released together by a barrier; their results in thread order.
fn together<T: Send + 'static>(n: usize, f: impl Fn() -> T + Send + Sync + 'static) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, f) = (barrier.clone(), f.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn coalesces_100_concurrent_callers_into_one_query_and_one_fetch() {
    let world = world();
    let client = client(&world);
    let c = client.clone();
    let outcomes = together(100, move || c.policy("enforce.test"));
    assert!(outcomes.iter().all(is_enforce), "{outcomes:?}");
    let fetched = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Fetched(_)))
        .count();
    assert!(fetched >= 1, "the driver and its waiters get Fetched");
    assert_eq!(world.queries("_mta-sts.enforce.test", RecordType::Txt), 1);
    assert_eq!(world.fetches("mta-sts.enforce.test"), 1);
    assert_eq!(client.stats().in_flight, 0);
}

#[test]
fn coalesced_callers_of_a_stalled_fetch_all_return_within_the_fetch_timeout() {
    let world = world();
    let client = client(&world);
    let c = client.clone();
    let outcomes = together(20, move || {
        let start = Instant::now();
        (c.policy("stall.test"), start.elapsed())
    });
    let limit = mta_sts_matrix::FETCH_TIMEOUT + Duration::from_millis(1500);
    for (outcome, took) in &outcomes {
        assert!(
            matches!(
                outcome,
                Outcome::NoPolicy(NoPolicyReason::FetchFailed(FetchProblem::Fetch(
                    FetchFailure::Timeout
                )))
            ),
            "{outcome:?}"
        );
        assert!(*took < limit, "a caller waited {took:?}");
    }
    assert_eq!(world.fetches("mta-sts.stall.test"), 1);
}

#[test]
fn policy_learned_before_a_restart_is_applied_while_dns_and_https_are_down() {
    let dir = std::env::temp_dir().join(format!("mta-sts-blocking-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cache.json");
    let world = world();
    let (dns, config, anchors) = (
        world.dns_addr(),
        mta_sts_matrix::config(&world),
        mta_sts_matrix::anchors(&world),
    );
    let before = builder(&world).persistence(&path).build().unwrap();
    assert!(matches!(before.policy("enforce.test"), Outcome::Fetched(_)));
    before.shutdown().unwrap();
    drop(before);
    world.shutdown(); // DNS and HTTPS are gone: their ports are closed.

    let after = Client::builder()
        .resolvers([dns])
        .trust_anchors(anchors)
        .config(config)
        .persistence(&path)
        .build()
        .unwrap();
    assert!(matches!(
        after.policy("enforce.test"),
        Outcome::Cached {
            reason: CacheReason::Fresh,
            ..
        }
    ));
    // Even a recheck, whose TXT query fails now, keeps applying the policy (R12).
    let rechecked = after.recheck("enforce.test");
    assert!(
        matches!(
            &rechecked,
            Outcome::Cached {
                reason: CacheReason::DnsFailure(_),
                ..
            }
        ),
        "{rechecked:?}"
    );
    let evaluation = after.evaluate("enforce.test", ["mx1.example.net", "mx.attacker.example"]);
    let decisions: Vec<_> = evaluation
        .candidates()
        .iter()
        .map(|c| c.decision())
        .collect();
    assert_eq!(decisions, [MxDecision::Enforce, MxDecision::Skip]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn evaluate_enforces_matching_mx_hosts_and_skips_the_others() {
    let world = world();
    let client = client(&world);
    let evaluation = client.evaluate(
        "enforce.test",
        ["mx.attacker.example", "a.mx.example.net", "mx1.example.net"],
    );
    assert_eq!(evaluation.verdict(), Verdict::Deliver);
    let decisions: Vec<_> = evaluation
        .candidates()
        .iter()
        .map(|c| (c.host().to_owned(), c.decision()))
        .collect();
    assert_eq!(
        decisions,
        [
            ("mx.attacker.example".to_owned(), MxDecision::Skip),
            ("a.mx.example.net".to_owned(), MxDecision::Enforce),
            ("mx1.example.net".to_owned(), MxDecision::Enforce),
        ]
    );
    let none_match = client.evaluate("enforce.test", ["mx.attacker.example"]);
    assert_eq!(none_match.verdict(), Verdict::DeferRecheckPolicy);
    let stats = client.stats();
    assert_eq!(stats.decisions.enforce_match, 2);
    assert_eq!(stats.decisions.enforce_skip, 2);
}

#[test]
fn recheck_queries_the_txt_id_again_and_fetches_only_a_new_one() {
    let world = world();
    let client = client(&world);
    assert!(matches!(client.policy("enforce.test"), Outcome::Fetched(_)));
    let unchanged = client.recheck("enforce.test");
    assert!(
        matches!(
            unchanged,
            Outcome::Cached {
                reason: CacheReason::UnchangedId,
                ..
            }
        ),
        "{unchanged:?}"
    );
    assert_eq!(world.queries("_mta-sts.enforce.test", RecordType::Txt), 2);
    assert_eq!(world.fetches("mta-sts.enforce.test"), 1);
    assert!(world.set_txt_id("enforce.test", "20240202"));
    assert!(matches!(client.recheck("enforce.test"), Outcome::Fetched(p) if p.id() == "20240202"));
    assert_eq!(world.fetches("mta-sts.enforce.test"), 2);
}

#[test]
fn build_reports_a_missing_extra_roots_file() {
    let world = world();
    let err = builder(&world)
        .extra_roots_file("/nonexistent/extra-roots.pem")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
}

#[test]
fn timeouts_too_large_for_the_clock_do_not_overflow() {
    let world = world();
    let mut config = mta_sts_matrix::config(&world);
    config.fetch_timeout = Duration::MAX;
    config.dns_timeout = Duration::MAX;
    let client = builder(&world).config(config).build().unwrap();
    assert!(matches!(client.policy("enforce.test"), Outcome::Fetched(_)));
}

#[test]
fn max_concurrent_lookups_makes_further_lookups_wait_their_turn() {
    // Three stalled fetches with room for two: the third starts only once one has timed out.
    let stall = || Domain::enforce(MX).http(Http::StallAfterHeaders);
    let world = World::builder()
        .domain("stall0.test", stall())
        .domain("stall1.test", stall())
        .domain("stall2.test", stall())
        .build()
        .unwrap();
    let timeout = Duration::from_millis(500);
    let mut config = mta_sts_matrix::config(&world);
    config.fetch_timeout = timeout;
    let client = builder(&world)
        .config(config)
        .max_concurrent_lookups(2)
        .build()
        .unwrap();
    let next = AtomicUsize::new(0);
    let results = together(3, move || {
        let domain = format!("stall{}.test", next.fetch_add(1, Ordering::SeqCst));
        let start = Instant::now();
        (client.policy(&domain), start.elapsed())
    });
    let slowest = results.iter().map(|(_, took)| *took).max().unwrap();
    assert!(
        slowest >= timeout * 2,
        "the third lookup did not wait: {slowest:?}"
    );
    for (outcome, _) in &results {
        assert!(outcome.fetch_problem().is_some(), "{outcome:?}");
    }
}

#[test]
fn a_thousand_domains_resolved_by_64_threads_with_bounded_lookups_all_verdicts_right() {
    let world = World::builder().bulk_domains(1000).build().unwrap();
    let client = builder(&world).max_concurrent_lookups(32).build().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let c = client.clone();
    let wrong = together(64, move || {
        let mut wrong = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= 1000 {
                return wrong;
            }
            let d = mta_sts_testkit::bulk_domain_name(i);
            let outcome = c.policy(&d);
            let right = matches!(&outcome, Outcome::Fetched(p) if p.mode() == Mode::Enforce
                && p.policy().matches_mx(&format!("mx.{d}")));
            if !right {
                wrong.push(format!("{d}: {outcome:?}"));
            }
        }
    });
    let wrong: Vec<String> = wrong.into_iter().flatten().collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(world.total_fetches(), 1000);
    assert_eq!(client.stats().entries, 1000);
}

#[test]
fn a_damaged_cache_file_loads_what_is_valid_and_never_stops_the_client() {
    let world = world();
    mta_sts_matrix::check_damaged_cache_file(|| builder(&world), Client::stats);
}

#[test]
fn r12_a_refused_dns_query_is_a_network_error_not_a_timeout() {
    let client = mta_sts_matrix::refused(Client::builder());
    mta_sts_matrix::check_refused(&client.policy("example.test"));
}

/// D8: DANE decides first through the blocking client (the matrix's DANE world).
#[test]
fn d8_dane_decides_first_through_the_blocking_client() {
    let world = mta_sts_matrix::dane_world();
    let client = builder(&world).build().unwrap();
    mta_sts_matrix::check_dane(&world, |d, hosts| client.evaluate(d, hosts));
}

/// P12: the re-exported `rustls` is the one `mx_starttls_config` and `tls_handshake` are made
/// for (this compiles only if the types match), and the dependency graph has one crypto
/// provider: `ClientConfig::builder()` does not panic (with aws-lc-rs beside ring it would).
#[test]
fn p12_reexported_rustls_takes_mx_starttls_config_and_one_provider_is_in_the_graph() {
    use mta_sts_blocking::{TrustAnchors, mx_starttls_config, rustls, server_name, tls_handshake};
    let config: Arc<rustls::ClientConfig> = mx_starttls_config(&TrustAnchors::webpki());
    let name: rustls::pki_types::ServerName<'static> = server_name("mx.example").unwrap();
    // A handshake over a stream that is closed at once: a typed error, and the stream type is
    // rustls's own.
    let handshake: std::io::Result<rustls::StreamOwned<rustls::ClientConnection, _>> =
        tls_handshake(config, name, std::io::Cursor::new(Vec::<u8>::new()));
    assert!(handshake.is_err());
    let builder = std::panic::catch_unwind(rustls::ClientConfig::builder);
    assert!(builder.is_ok(), "two rustls crypto providers in the graph");
}
