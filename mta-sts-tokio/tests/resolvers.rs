//! The client's DNS seam: hickory-resolver's tokio resolver (cargo feature `hickory`) and a
//! resolver written here, each answering every query of the tokio client against a loopback
//! test world, and the built-in stub resolver's failures told apart.

#![cfg(feature = "hickory")]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use mta_sts_core::io::{DnsFailure, TxtAnswer, TxtQuery, TxtResult};
use mta_sts_testkit::{DnsFault, Domain, RecordType, World};
use mta_sts_tokio::{
    BoxFuture, CacheReason, Client, HickoryResolver, NoPolicyReason, Outcome, Resolver, TxtProblem,
};

fn world() -> World {
    World::builder()
        .domain(
            "enforce.test",
            Domain::enforce(["mx1.example.net"]).txt_id("1"),
        )
        .domain("testing.test", Domain::testing(["mx1.example.net"]))
        .domain(
            "servfail.test",
            Domain::enforce(["mx1.example.net"]).txt_fault(DnsFault::ServFail),
        )
        .build()
        .expect("start the test world")
}

/// hickory's tokio resolver asking only the test world's DNS server.
fn hickory(world: &World) -> HickoryResolver {
    let mut server = NameServerConfig::udp_and_tcp(world.dns_addr().ip());
    for connection in &mut server.connections {
        connection.port = world.dns_addr().port();
    }
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_millis(500);
    opts.attempts = 1;
    let config = ResolverConfig::from_name_servers(vec![server]);
    hickory_resolver::Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .expect("a hickory resolver")
}

fn client_with(world: &World, resolver: impl Resolver) -> Client {
    Client::builder()
        .resolver(resolver)
        .trust_anchors(mta_sts_matrix::anchors(world))
        .config(mta_sts_matrix::config(world))
        .build()
        .expect("a client")
}

#[tokio::test]
async fn r1_hickory_resolver_answers_the_txt_query_and_the_policy_hosts_addresses() {
    let world = world();
    let client = client_with(&world, hickory(&world));
    let fetched = client.policy("enforce.test").await;
    assert!(
        matches!(&fetched, Outcome::Fetched(p) if p.id() == "1"),
        "{fetched:?}"
    );
    assert!(world.queries("_mta-sts.enforce.test", RecordType::Txt) >= 1);
    assert!(world.queries("mta-sts.enforce.test", RecordType::A) >= 1);
    assert_eq!(world.fetches("mta-sts.enforce.test"), 1);
    // An unchanged id on a re-check: hickory's answer compared with the cached id (R43).
    let rechecked = client.recheck("enforce.test").await;
    assert!(
        matches!(
            &rechecked,
            Outcome::Cached {
                reason: CacheReason::UnchangedId,
                ..
            }
        ),
        "{rechecked:?}"
    );
}

#[tokio::test]
async fn r12_hickory_failures_keep_their_meaning_nxdomain_is_no_policy_servfail_is_temporary() {
    let world = world();
    let client = client_with(&world, hickory(&world));
    assert_eq!(
        client.policy("absent.test").await,
        Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NxDomain))
    );
    let servfail = client.policy("servfail.test").await;
    assert!(
        matches!(
            servfail,
            Outcome::TemporaryFailure(DnsFailure::ServerFailure)
        ),
        "{servfail:?}"
    );
}

#[tokio::test]
async fn s9_hickory_reports_the_soa_negative_ttl_of_nxdomain_and_nodata() {
    let world = World::builder()
        .ttl(900)
        .domain("enforce.test", Domain::enforce(["mx1.example.net"]))
        .record(
            "_mta-sts.nodata.test",
            mta_sts_testkit::Record::A(Ipv4Addr::LOCALHOST),
        )
        .build()
        .expect("start the test world");
    let resolver = hickory(&world);
    let negative_ttl = Some(Duration::from_secs(900));
    let nx = resolver.txt(&TxtQuery::new("_mta-sts.absent.test")).await;
    assert_eq!(nx, Ok(TxtAnswer::NxDomain { negative_ttl }));
    let nodata = resolver.txt(&TxtQuery::new("_mta-sts.nodata.test")).await;
    assert_eq!(nodata, Ok(TxtAnswer::NoData { negative_ttl }));
}

/// A resolver written by an MTA: a fixed TXT answer and the loopback address, counting what it
/// was asked.
#[derive(Debug, Default)]
struct Fixed {
    txt: AtomicUsize,
    addresses: AtomicUsize,
}

impl Resolver for Fixed {
    fn txt<'a>(&'a self, query: &'a TxtQuery) -> BoxFuture<'a, TxtResult> {
        self.txt.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            Ok(match query.name.as_str() {
                "_mta-sts.enforce.test" => {
                    TxtAnswer::Records(vec![b"v=STSv1; id=fromtheseam;".to_vec()])
                }
                _ => TxtAnswer::NXDOMAIN,
            })
        })
    }

    fn addresses<'a>(
        &'a self,
        host: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsFailure>> {
        self.addresses.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            assert_eq!(host, "mta-sts.enforce.test");
            Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
        })
    }
}

#[tokio::test]
async fn r1_a_resolver_written_by_the_embedder_answers_every_query_and_the_world_is_never_asked() {
    let world = world();
    let fixed = std::sync::Arc::new(Fixed::default());
    let client = client_with(&world, fixed.clone());
    let fetched = client.policy("enforce.test").await;
    assert!(
        matches!(&fetched, Outcome::Fetched(p) if p.id() == "fromtheseam"),
        "{fetched:?}"
    );
    assert_eq!(
        client.policy("other.test").await,
        Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NxDomain))
    );
    assert_eq!(fixed.txt.load(Ordering::SeqCst), 2);
    assert_eq!(fixed.addresses.load(Ordering::SeqCst), 1);
    assert_eq!(
        world.total_queries(),
        0,
        "the test world's DNS was never asked"
    );
    assert_eq!(world.fetches("mta-sts.enforce.test"), 1);
}

/// A resolver that never answers: the client bounds it by the core's DNS timeout.
#[derive(Debug)]
struct Silent;

impl Resolver for Silent {
    fn txt<'a>(&'a self, _: &'a TxtQuery) -> BoxFuture<'a, TxtResult> {
        Box::pin(std::future::pending())
    }

    fn addresses<'a>(
        &'a self,
        _: &'a str,
        _: Duration,
    ) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsFailure>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(start_paused = true)]
async fn r12_a_resolver_that_never_answers_is_a_timeout_within_the_dns_timeout() {
    let world = world();
    let client = client_with(&world, Silent);
    assert_eq!(
        client.policy("enforce.test").await,
        Outcome::TemporaryFailure(DnsFailure::Timeout)
    );
}
