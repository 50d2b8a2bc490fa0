//! The smol client against a loopback testkit world: coalescing, cancellation, persistence
//! across a restart, the refresher, and a load of distinct domains.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mta_sts_core::{CacheReason, Config, UnixTime};
use mta_sts_smol::{Client, MxDecision, Outcome, Verdict};
use mta_sts_testkit::{DnsFault, Domain, Http, RecordType, World, bulk_domain_name};
use smol::{LocalExecutor, Timer};

const T0: u64 = 1_700_000_000;

fn config(world: &World) -> Config {
    let mut config = Config::default();
    config.https_port = world.https_port();
    config.dns_timeout = Duration::from_secs(2);
    config.fetch_timeout = Duration::from_secs(5);
    config
}

fn builder(world: &World) -> mta_sts_smol::ClientBuilder {
    Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(world))
        .config(config(world))
}

/// A virtual wall clock, moved by the test.
fn virtual_clock() -> (Arc<AtomicU64>, mta_sts_smol::Clock) {
    let now = Arc::new(AtomicU64::new(T0));
    let read = Arc::clone(&now);
    (
        now,
        Arc::new(move || UnixTime::from_secs(read.load(Ordering::SeqCst))),
    )
}

/// Waits, in short timer steps, until `done()` holds; fails after five seconds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        Timer::after(Duration::from_millis(2)).await;
    }
}

/// `fut`'s output; fails if it takes longer than `limit`.
async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    let timer = async {
        Timer::after(limit).await;
        None
    };
    match smol::future::or(async { Some(fut.await) }, timer).await {
        Some(out) => out,
        None => panic!("{what} took longer than {limit:?}"),
    }
}

/// A world with one domain.
fn world_with(name: &str, domain: Domain) -> World {
    World::builder().domain(name, domain).build().unwrap()
}

/// Every task's output, in order.
async fn all<T>(tasks: impl IntoIterator<Item = impl Future<Output = T>>) -> Vec<T> {
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(task.await);
    }
    outputs
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mta-sts-smol-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("cache.json")
}

fn is_policy(o: &Outcome) -> bool {
    matches!(
        o,
        Outcome::Fetched(_)
            | Outcome::Cached {
                reason: CacheReason::Fresh,
                ..
            }
    )
}

#[test]
fn coalesces_100_concurrent_callers_into_one_query_and_one_fetch() {
    let world = world_with("coalesce.test", Domain::enforce(["mx.coalesce.test"]));
    let client = builder(&world).build().unwrap();
    let ex = LocalExecutor::new();
    // All 100 tasks are queued before the first one runs, and the executor runs them in order:
    // the first starts the lookup and, at its first socket wait, the 99 others join it.
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            ex.spawn(async move { client.policy("coalesce.test").await })
        })
        .collect();
    let outcomes = smol::block_on(ex.run(all(tasks)));
    let fetched = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Fetched(_)))
        .count();
    assert_eq!(fetched, 100, "every caller got the one lookup's outcome");
    assert_eq!(world.queries("_mta-sts.coalesce.test", RecordType::Txt), 1);
    assert_eq!(world.queries("mta-sts.coalesce.test", RecordType::A), 1);
    assert_eq!(world.queries("mta-sts.coalesce.test", RecordType::Aaaa), 1);
    assert_eq!(world.fetches("mta-sts.coalesce.test"), 1);
}

#[test]
fn coalesces_100_async_std_tasks_into_one_query_and_one_fetch() {
    let world = world_with("coalesce.test", Domain::enforce(["mx.coalesce.test"]));
    let client = builder(&world).build().unwrap();
    let outcomes = async_std::task::block_on(all((0..100).map(|_| {
        let client = client.clone();
        async_std::task::spawn(async move { client.policy("coalesce.test").await })
    })));
    assert!(outcomes.iter().all(is_policy), "{outcomes:?}");
    assert_eq!(world.queries("_mta-sts.coalesce.test", RecordType::Txt), 1);
    assert_eq!(world.fetches("mta-sts.coalesce.test"), 1);
}

#[test]
fn a_cancelled_caller_hands_the_lookup_to_the_caller_waiting_on_it() {
    let world = world_with(
        "slow.test",
        Domain::enforce(["mx.slow.test"]).http(Http::StallAfterHeaders),
    );
    let client = builder(&world).build().unwrap();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let first = ex.spawn({
            let client = client.clone();
            async move { client.policy("slow.test").await }
        });
        eventually("the first caller's fetch to stall", || world.stalled() == 1).await;
        let second = ex.spawn({
            let client = client.clone();
            async move { client.policy("slow.test").await }
        });
        // Let the second caller reach the lookup under way.
        while ex.try_tick() {}
        assert_eq!(world.queries("_mta-sts.slow.test", RecordType::Txt), 1);

        world.set_http("slow.test", Http::Policy);
        assert_eq!(first.cancel().await, None, "cancelled before it finished");
        let outcome = within(Duration::from_secs(5), "the second caller", second).await;
        assert!(matches!(outcome, Outcome::Fetched(_)), "{outcome:?}");
    }));
    assert_eq!(world.queries("_mta-sts.slow.test", RecordType::Txt), 2);
    assert_eq!(world.fetches("mta-sts.slow.test"), 2);
}

#[test]
fn policy_learned_before_a_restart_is_applied_after_it_while_dns_and_https_are_down() {
    let world = world_with("persist.test", Domain::enforce(["mx1.persist.test"]));
    let path = temp_file("restart");
    let (_now, clock) = virtual_clock();
    // A client on `resolver` that keeps its cache in `path`.
    let start = |resolver| {
        builder(&world)
            .resolvers([resolver])
            .persistence(&path)
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let dns_failed = |o: &Outcome| {
        matches!(
            o,
            Outcome::Cached {
                reason: CacheReason::DnsFailure(_),
                ..
            }
        )
    };
    smol::block_on(async {
        let before = start(world.dns_addr());
        assert!(matches!(
            before.policy("persist.test").await,
            Outcome::Fetched(_)
        ));
        before.shutdown().await.unwrap();
    });
    assert!(path.exists());

    // DNS and HTTPS go down.
    world.set_dns_fault("_mta-sts.persist.test", None, Some(DnsFault::ServFail));
    world.set_http("persist.test", Http::Status(503));
    world.reset_counters();

    smol::block_on(async {
        let after = start(world.dns_addr());
        let outcome = after.policy("persist.test").await;
        assert!(
            matches!(
                &outcome,
                Outcome::Cached {
                    reason: CacheReason::Fresh,
                    ..
                }
            ),
            "{outcome:?}"
        );
        let evaluation = after
            .evaluate("persist.test", ["mx1.persist.test", "mx.attacker.test"])
            .await;
        assert_eq!(evaluation.verdict(), Verdict::Deliver);
        let decisions: Vec<_> = evaluation
            .candidates()
            .iter()
            .map(|c| c.decision())
            .collect();
        assert_eq!(decisions, [MxDecision::Enforce, MxDecision::Skip]);
        // Re-checking the id fails (SERVFAIL): the cached policy stays in force.
        let recheck = after.recheck("persist.test").await;
        assert!(dns_failed(&recheck), "{recheck:?}");
    });
    assert_eq!(world.total_fetches(), 0);

    // The same with no DNS server at all (a port nobody listens on), under async-std.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let recheck = async_std::task::block_on(start(dead_addr).recheck("persist.test"));
    assert!(dns_failed(&recheck), "{recheck:?}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn refresher_fetches_again_once_the_clock_passes_the_refresh_time_and_stops_on_shutdown() {
    let world = World::builder()
        .domain(
            "refresh.test",
            Domain::enforce(["mx.refresh.test"]).max_age(604_800),
        )
        .domain(
            "other.test",
            Domain::enforce(["mx.other.test"]).max_age(604_800),
        )
        .build()
        .unwrap();
    let (now, clock) = virtual_clock();
    let client = builder(&world).clock(clock).build().unwrap();
    smol::block_on(async {
        // Started with an empty cache: it sleeps until a lookup gives it something to refresh.
        let refresher = client.spawn_refresher();
        assert!(matches!(
            client.policy("refresh.test").await,
            Outcome::Fetched(_)
        ));
        assert_eq!(world.fetches("mta-sts.refresh.test"), 1);

        // A day later (the refresh interval; max_age is a week), any lookup's end makes the
        // refresher read the schedule again, and refresh.test is due.
        now.fetch_add(86_400 + 60, Ordering::SeqCst);
        assert!(matches!(
            client.policy("other.test").await,
            Outcome::Fetched(_)
        ));
        let done = within(
            Duration::from_secs(5),
            "the refresher's refresh",
            client.wait_refreshes(1),
        )
        .await;
        assert_eq!(done, 1);
        assert_eq!(world.fetches("mta-sts.refresh.test"), 2);
        assert_eq!(world.queries("_mta-sts.refresh.test", RecordType::Txt), 2);
        assert_eq!(client.stats().refresh_success, 1);

        within(
            Duration::from_secs(1),
            "Refresher::shutdown",
            refresher.shutdown(),
        )
        .await;
    });
    assert_eq!(
        world.fetches("mta-sts.other.test"),
        1,
        "other.test was not due"
    );
}

#[test]
fn faults_end_within_their_timeouts_and_leave_no_connection_open() {
    let world = World::builder()
        .domain(
            "stall.test",
            Domain::enforce(["mx.stall.test"]).http(Http::StallAfterHeaders),
        )
        .domain(
            "handshake.test",
            Domain::enforce(["mx.handshake.test"]).http(Http::StallHandshake),
        )
        .domain(
            "silent.test",
            Domain::enforce(["mx.silent.test"]).txt_fault(DnsFault::NoAnswer),
        )
        .build()
        .unwrap();
    let mut config = config(&world);
    config.dns_timeout = Duration::from_millis(500);
    config.fetch_timeout = Duration::from_millis(800);
    let client = builder(&world).config(config).build().unwrap();
    let threads = world.threads();
    let idle = threads.live();
    smol::block_on(async {
        let slack = Duration::from_millis(700);
        let outcomes = within(
            Duration::from_millis(800) + slack,
            "three faulty lookups at once",
            smol::future::zip(
                client.policy("stall.test"),
                smol::future::zip(
                    client.policy("handshake.test"),
                    client.policy("silent.test"),
                ),
            ),
        )
        .await;
        let (stall, (handshake, silent)) = outcomes;
        for o in [&stall, &handshake] {
            assert!(
                matches!(
                    o,
                    Outcome::NoPolicy(mta_sts_smol::NoPolicyReason::FetchFailed(_))
                ),
                "{o:?}"
            );
        }
        assert!(matches!(silent, Outcome::TemporaryFailure(_)), "{silent:?}");
        // The client closed its connections, so the server threads serving them end (they
        // would otherwise wait for the 300 s stall limit).
        eventually("the world's connection threads to end", || {
            threads.live() == idle
        })
        .await;
    });
}

#[test]
fn resolves_1000_distinct_domains_at_once_with_bounded_lookups_all_verdicts_right() {
    const N: usize = 1000;
    let world = World::builder().bulk_domains(N).build().unwrap();
    let client = builder(&world).max_concurrent_lookups(32).build().unwrap();
    let wrong = smol::block_on(all((0..N).map(|i| {
        let client = client.clone();
        smol::spawn(async move {
            let domain = bulk_domain_name(i);
            let mx = format!("mx.{domain}");
            let e = client
                .evaluate(&domain, [mx.as_str(), "mx.attacker.test"])
                .await;
            let decisions: Vec<_> = e.candidates().iter().map(|c| c.decision()).collect();
            (e.verdict() != Verdict::Deliver
                || decisions != [MxDecision::Enforce, MxDecision::Skip])
            .then(|| format!("{domain}: {:?} {decisions:?}", e.verdict()))
        })
    })));
    let wrong: Vec<String> = wrong.into_iter().flatten().collect();
    assert!(
        wrong.is_empty(),
        "{} wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(world.total_fetches(), N);
    assert_eq!(client.stats().entries, N);
}

#[test]
fn max_concurrent_lookups_makes_further_lookups_wait_their_turn() {
    // Three stalled fetches with room for two: the third starts only once one has timed out.
    let stall = |name: &str| Domain::enforce([format!("mx.{name}")]).http(Http::StallAfterHeaders);
    let world = World::builder()
        .domain("stall0.test", stall("stall0.test"))
        .domain("stall1.test", stall("stall1.test"))
        .domain("stall2.test", stall("stall2.test"))
        .build()
        .unwrap();
    let timeout = Duration::from_millis(500);
    let mut config = config(&world);
    config.fetch_timeout = timeout;
    let client = builder(&world)
        .config(config)
        .max_concurrent_lookups(2)
        .build()
        .unwrap();
    let timed = |domain: &'static str| {
        let client = client.clone();
        async move {
            let start = Instant::now();
            (client.policy(domain).await, start.elapsed())
        }
    };
    let results = smol::block_on(all([
        smol::spawn(timed("stall0.test")),
        smol::spawn(timed("stall1.test")),
        smol::spawn(timed("stall2.test")),
    ]));
    let slowest = results.iter().map(|(_, took)| *took).max().unwrap();
    assert!(
        slowest >= timeout * 2,
        "the third lookup did not wait: {slowest:?}"
    );
    assert!(slowest < timeout * 3, "{slowest:?}");
    for (outcome, _) in &results {
        assert!(outcome.fetch_problem().is_some(), "{outcome:?}");
    }
}

#[test]
fn recheck_queries_the_txt_id_again_and_fetches_only_a_new_one() {
    let world = world_with("recheck.test", Domain::enforce(["mx.recheck.test"]));
    let client = builder(&world).build().unwrap();
    async_std::task::block_on(async {
        assert!(matches!(
            client.policy("recheck.test").await,
            Outcome::Fetched(_)
        ));
        let same = client.recheck("recheck.test").await;
        assert!(
            matches!(
                same,
                Outcome::Cached {
                    reason: CacheReason::UnchangedId,
                    ..
                }
            ),
            "{same:?}"
        );
        assert_eq!(world.queries("_mta-sts.recheck.test", RecordType::Txt), 2);
        assert_eq!(world.fetches("mta-sts.recheck.test"), 1);
        world.set_txt_id("recheck.test", "2");
        assert!(matches!(
            client.recheck("recheck.test").await,
            Outcome::Fetched(_)
        ));
        assert_eq!(world.fetches("mta-sts.recheck.test"), 2);
    });
}

#[test]
fn a_damaged_cache_file_loads_what_is_valid_and_a_missing_pem_is_refused() {
    let world = world_with("x.test", Domain::enforce(["mx.x.test"]));
    mta_sts_matrix::check_damaged_cache_file(|| builder(&world), Client::stats);
    let missing = std::env::temp_dir().join("mta-sts-smol-missing.pem");
    let err = builder(&world)
        .extra_roots_file(missing)
        .build()
        .unwrap_err();
    assert!(matches!(err, mta_sts_smol::Error::Tls(_)), "{err}");
}

#[test]
fn timeouts_too_large_for_the_clock_do_not_overflow() {
    let world = world_with("big.test", Domain::enforce(["mx.big.test"]));
    let mut config = config(&world);
    config.fetch_timeout = Duration::MAX;
    config.dns_timeout = Duration::MAX;
    let client = builder(&world).config(config).build().unwrap();
    assert!(matches!(
        smol::block_on(client.policy("big.test")),
        Outcome::Fetched(_)
    ));
}

/// A client that never gets an answer (nothing listens on the discard port).
fn offline() -> Client {
    Client::builder()
        .resolvers(["127.0.0.1:9".parse().unwrap()])
        .build()
        .unwrap()
}

#[test]
fn client_futures_are_small_and_send_so_any_executor_can_run_them() {
    mta_sts_matrix::check_futures(&offline());
}

#[test]
fn the_refresher_stops_on_shutdown_and_on_drop() {
    let client = offline();
    smol::block_on(within(
        Duration::from_secs(5),
        "the refresher stops",
        async {
            client.spawn_refresher().shutdown().await;
            drop(client.spawn_refresher());
            // A new one still starts and stops: nothing was left holding the client's state.
            client.spawn_refresher().shutdown().await;
        },
    ));
}

#[test]
fn r12_a_refused_dns_query_is_a_network_error_not_a_timeout() {
    let client = mta_sts_matrix::refused(Client::builder());
    mta_sts_matrix::check_refused(&smol::block_on(client.policy("example.test")));
}

/// D8: DANE decides first through the smol client (the matrix's DANE world).
#[test]
fn d8_dane_decides_first_through_the_smol_client() {
    let world = mta_sts_matrix::dane_world();
    let client = builder(&world).build().unwrap();
    mta_sts_matrix::check_dane(&world, |d, hosts| smol::block_on(client.evaluate(d, hosts)));
}

/// P12: the re-exported `rustls` and `futures_rustls` are the ones `mx_starttls_config` is made
/// for (this compiles only if the types match), and the dependency graph has one crypto
/// provider: `ClientConfig::builder()` does not panic (with aws-lc-rs beside ring it would).
#[test]
fn p12_reexported_tls_crates_take_mx_starttls_config_and_one_provider_is_in_the_graph() {
    use mta_sts_smol::{TrustAnchors, futures_rustls, mx_starttls_config, rustls};
    let config: Arc<rustls::ClientConfig> = mx_starttls_config(&TrustAnchors::webpki());
    let _connector = futures_rustls::TlsConnector::from(config);
    let builder = std::panic::catch_unwind(rustls::ClientConfig::builder);
    assert!(builder.is_ok(), "two rustls crypto providers in the graph");
}
