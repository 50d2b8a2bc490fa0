//! The tokio client beyond the matrix: coalescing, evaluation, persistence, refresh, load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mta_sts_core::{CacheReason, Config, MxDecision, Outcome, UnixTime, Verdict};
use mta_sts_testkit::{DnsFault, Domain, RecordType, World};
use mta_sts_tokio::Client;

const T0: u64 = 1_800_000_000;

fn world() -> World {
    World::builder()
        .domain(
            "example.test",
            Domain::enforce(["mx1.example.test", "*.pool.example.test"])
                .txt_id("1")
                .max_age(604_800),
        )
        .domain(
            "testing.test",
            Domain::testing(["mx.testing.test"]).txt_id("1"),
        )
        .build()
        .unwrap()
}

fn builder(world: &World) -> mta_sts_tokio::ClientBuilder {
    Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(world))
        .config(mta_sts_matrix::config(world))
}

fn virtual_clock(start: u64) -> (Arc<AtomicU64>, mta_sts_tokio::Clock) {
    let now = Arc::new(AtomicU64::new(start));
    let n = now.clone();
    (
        now,
        Arc::new(move || UnixTime::from_secs(n.load(Ordering::SeqCst))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesces_100_concurrent_callers_into_one_query_and_one_fetch() {
    let world = world();
    let client = builder(&world).build().unwrap();
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.policy("example.test").await })
        })
        .collect();
    for call in calls {
        let outcome = call.await.unwrap();
        assert!(outcome.policy().is_some(), "{outcome:?}");
    }
    assert_eq!(world.queries("_mta-sts.example.test", RecordType::Txt), 1);
    assert_eq!(world.fetches("mta-sts.example.test"), 1);
}

#[tokio::test]
async fn r36_evaluate_skips_mismatching_mx_and_enforces_tls_on_the_others() {
    let world = world();
    let client = builder(&world).build().unwrap();
    let e = client
        .evaluate(
            "example.test",
            [
                "evil.attacker.test",
                "a.pool.example.test",
                "mx1.example.test",
            ],
        )
        .await;
    assert_eq!(e.verdict(), Verdict::Deliver);
    let decisions: Vec<_> = e.candidates().iter().map(|c| c.decision()).collect();
    assert_eq!(
        decisions,
        [MxDecision::Skip, MxDecision::Enforce, MxDecision::Enforce]
    );
    let none_match = client
        .evaluate("example.test", ["evil.attacker.test"])
        .await;
    assert_eq!(
        none_match.verdict(),
        Verdict::DeferRecheckPolicy,
        "R39: defer, never bounce"
    );
    let testing = client.evaluate("testing.test", ["other.test"]).await;
    assert_eq!(
        testing.verdict(),
        Verdict::Deliver,
        "R37: testing delivers anyway"
    );
    assert!(client.stats().decisions.enforce_skip >= 2);
}

#[tokio::test]
async fn r39_recheck_queries_the_txt_id_again() {
    let world = world();
    let client = builder(&world).build().unwrap();
    assert!(matches!(
        client.policy("example.test").await,
        Outcome::Fetched(_)
    ));
    let same = client.recheck("example.test").await;
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
    assert_eq!(world.queries("_mta-sts.example.test", RecordType::Txt), 2);
    assert_eq!(world.fetches("mta-sts.example.test"), 1);
    world.set_txt_id("example.test", "2");
    assert!(matches!(
        client.recheck("example.test").await,
        Outcome::Fetched(_)
    ));
    assert_eq!(world.fetches("mta-sts.example.test"), 2);
}

#[tokio::test]
async fn persisted_policy_applies_after_restart_while_dns_and_https_are_down() {
    let world = world();
    let path =
        std::env::temp_dir().join(format!("mta-sts-tokio-persist-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (_now, clock) = virtual_clock(T0);
    let first = builder(&world)
        .persistence(&path)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(matches!(
        first.policy("example.test").await,
        Outcome::Fetched(_)
    ));
    first.shutdown().await.unwrap();
    drop(first);

    // The outage: the TXT lookup fails and the policy host is gone.
    world.set_dns_fault("_mta-sts.example.test", None, Some(DnsFault::ServFail));
    world.set_dns_fault("mta-sts.example.test", None, Some(DnsFault::ServFail));
    let second = builder(&world)
        .persistence(&path)
        .clock(clock)
        .build()
        .unwrap();
    let outcome = second.policy("example.test").await;
    assert!(
        matches!(
            outcome,
            Outcome::Cached {
                reason: CacheReason::Fresh,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(world.fetches("mta-sts.example.test"), 1);
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn a_damaged_cache_file_loads_what_is_valid_and_never_stops_the_client() {
    let world = world();
    mta_sts_matrix::check_damaged_cache_file(|| builder(&world), Client::stats);
}

#[tokio::test]
async fn r44_refresher_refetches_when_due_and_stops_on_shutdown() {
    let world = world();
    let (now, clock) = virtual_clock(T0);
    let client = builder(&world).clock(clock).build().unwrap();
    assert!(matches!(
        client.policy("example.test").await,
        Outcome::Fetched(_)
    ));
    assert_eq!(client.refresh_due().await, 0, "nothing is due yet");

    let refresher = client.spawn_refresher();
    // A day later the policy is due for its proactive refresh (whatever the TXT says).
    now.fetch_add(
        Config::default().refresh_interval.as_secs() + 1,
        Ordering::SeqCst,
    );
    // Wake the refresher (a cache change notifies it) by asking for another domain.
    let _ = client.policy("testing.test").await;
    let done = tokio::time::timeout(Duration::from_secs(30), client.wait_refreshes(1)).await;
    assert_eq!(done, Ok(1), "the refresher never refreshed");
    assert_eq!(world.fetches("mta-sts.example.test"), 2);
    assert_eq!(client.stats().refresh_success, 1);
    refresher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_domains_resolved_concurrently_with_bounded_lookups() {
    let world = World::builder().bulk_domains(1000).build().unwrap();
    let client = builder(&world).max_concurrent_lookups(32).build().unwrap();
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let c = client.clone();
            let d = mta_sts_testkit::bulk_domain_name(i);
            tokio::spawn(async move { (c.policy(&d).await, d) })
        })
        .collect();
    for call in calls {
        let (outcome, d) = call.await.unwrap();
        assert!(matches!(outcome, Outcome::Fetched(_)), "{d}: {outcome:?}");
        assert!(
            outcome
                .policy()
                .unwrap()
                .policy()
                .matches_mx(&format!("mx.{d}"))
        );
    }
    assert_eq!(world.total_fetches(), 1000);
    assert_eq!(client.stats().entries, 1000);
}

#[tokio::test]
async fn timeouts_too_large_for_the_clock_do_not_overflow() {
    let world = world();
    let mut config = mta_sts_matrix::config(&world);
    config.fetch_timeout = Duration::MAX;
    config.dns_timeout = Duration::MAX;
    let client = builder(&world).config(config).build().unwrap();
    assert!(matches!(
        client.policy("example.test").await,
        Outcome::Fetched(_)
    ));
}

#[test]
fn client_futures_are_small_and_send() {
    // Nothing listens on the discard port: the futures are made, never run.
    let client = Client::builder()
        .resolvers(["127.0.0.1:9".parse().unwrap()])
        .build()
        .unwrap();
    mta_sts_matrix::check_futures(&client);
}

#[tokio::test]
async fn r12_a_refused_dns_query_is_a_network_error_not_a_timeout() {
    let client = mta_sts_matrix::refused(Client::builder());
    mta_sts_matrix::check_refused(&client.policy("example.test").await);
}

/// D8: DANE decides first through the tokio client (the matrix's DANE world).
#[test]
fn d8_dane_decides_first_through_the_tokio_client() {
    let world = mta_sts_matrix::dane_world();
    let client = builder(&world).build().unwrap();
    assert!(client.dane_enabled(), "the stub resolver reports DNSSEC");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    mta_sts_matrix::check_dane(&world, |d, hosts| rt.block_on(client.evaluate(d, hosts)));
}

/// P12: the re-exported `rustls` and `tokio_rustls` are the ones `mx_starttls_config` is made
/// for (this compiles only if the types match), and the dependency graph has one crypto
/// provider: `ClientConfig::builder()`, which picks the process default from the enabled
/// features, does not panic (with aws-lc-rs beside ring it would).
#[test]
fn p12_reexported_tls_crates_take_mx_starttls_config_and_one_provider_is_in_the_graph() {
    use mta_sts_tokio::{TrustAnchors, mx_starttls_config, rustls, tokio_rustls};
    let config: Arc<rustls::ClientConfig> = mx_starttls_config(&TrustAnchors::webpki());
    let _connector = tokio_rustls::TlsConnector::from(config);
    let builder = std::panic::catch_unwind(rustls::ClientConfig::builder);
    assert!(builder.is_ok(), "two rustls crypto providers in the graph");
}
