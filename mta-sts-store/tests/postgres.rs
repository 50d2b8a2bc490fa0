//! The PostgreSQL store against a real server started by the test (PostgreSQL 15 from Debian in
//! CI), and against postfix-mta-sts-resolver 1.5.1's own `PostgresCache` (asyncpg) in its venv.
//!
//! S6: postfix-mta-sts-resolver's table, read and written by both daemons.
//! S3: hostile rows give `Corrupt` for their domain and are overwritten by the next put.
#![cfg(feature = "postgres")]

mod peer;
#[path = "support/postgres_server.rs"]
mod postgres_server;
mod support {
    pub(crate) mod notes;
}

use std::time::{Duration, Instant};

use mta_sts_core::UnixTime;
use mta_sts_core::{Mode, Policy};
use mta_sts_net::{PolicyStore, StoreErrorKind, StoredPolicy};
use mta_sts_store::postgres::PostgresStore;
use postgres_server::PgServer;

const TIMEOUT: Duration = Duration::from_secs(2);

const POLICY: &str =
    "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\nmax_age: 86400\n";

/// A server, or `None` (the test returns) when PostgreSQL is not installed and may be skipped.
fn server() -> Option<PgServer> {
    let server = PgServer::start();
    if server.is_none() {
        assert!(
            !mta_sts_testkit::must_not_skip("MTA_STS_REQUIRE_POSTGRES"),
            "PostgreSQL is required (MTA_STS_REQUIRE_POSTGRES or CI) but not installed"
        );
        eprintln!("skipped: PostgreSQL not installed");
    }
    server
}

/// Runs the peer's `PostgresCache` (its own setup, get and set) once.
const PEER: &str = r#"
import asyncio, json, sys
from postfix_mta_sts_resolver.postgres_cache import PostgresCache
from postfix_mta_sts_resolver.base_cache import CacheEntry

async def main(dsn, op, domain, arg):
    cache = PostgresCache(dsn=dsn)
    await cache.setup()
    try:
        if op == "set":
            ts, pol_id, pol_body = json.loads(arg)
            await cache.set(domain, CacheEntry(ts, pol_id, pol_body))
        elif op == "get":
            entry = await cache.get(domain)
            print(json.dumps(None if entry is None else list(entry)))
        elif op == "scan":
            token, entries = await cache.scan(None, 100)
            print(json.dumps(sorted(d for d, _ in entries)))
    finally:
        await cache.teardown()

asyncio.run(main(*json.load(sys.stdin)))
"#;

fn peer(python: &str, server: &PgServer, op: &str, domain: &str, arg: &str) -> String {
    let input = serde_json::json!([server.dsn(), op, domain, arg]).to_string();
    peer::run(python, PEER, &input).trim().to_owned()
}

async fn store(server: &PgServer) -> PostgresStore {
    PostgresStore::connect_with_timeout(&server.dsn(), TIMEOUT)
        .await
        .expect("connect")
}

fn entry(domain: &str, id: &str, ts: u64) -> StoredPolicy {
    StoredPolicy::new(domain, id, UnixTime::from_secs(ts), POLICY)
}

fn assert_policy(text: &str) {
    let p = Policy::parse(text).expect("a valid policy");
    assert_eq!(p.mode(), Mode::Enforce);
    assert_eq!(p.max_age(), 86400);
    let mx: Vec<String> = p.mx().iter().map(|m| m.to_string()).collect();
    assert_eq!(mx, ["mx1.example.com", "*.example.net"]);
}

#[tokio::test]
async fn s6_connect_creates_the_peers_tables() {
    let Some(server) = server() else { return };
    let _store = store(&server).await;
    let columns = server.psql(
        "SELECT column_name || ' ' || data_type FROM information_schema.columns \
         WHERE table_name = 'sts_policy_cache' ORDER BY ordinal_position",
    );
    assert_eq!(
        columns.lines().collect::<Vec<_>>(),
        [
            "id integer",
            "domain text",
            "ts integer",
            "pol_id text",
            "pol_body jsonb"
        ]
    );
    let indexes = server
        .psql("SELECT indexname FROM pg_indexes WHERE tablename = 'sts_policy_cache' ORDER BY 1");
    assert_eq!(
        indexes.lines().collect::<Vec<_>>(),
        [
            "sts_policy_cache_pkey",
            "sts_policy_domain",
            "sts_policy_domain_ts"
        ]
    );
    let unique = server
        .psql("SELECT indisunique FROM pg_index WHERE indexrelid = 'sts_policy_domain'::regclass");
    assert_eq!(unique.trim(), "t");
    assert_eq!(
        server
            .psql("SELECT count(*) FROM proactive_fetch_ts")
            .trim(),
        "0"
    );
    // Connecting again (tables present) is fine.
    let _again = store(&server).await;
}

#[tokio::test]
async fn s6_the_peer_writes_and_we_read() {
    let Some(server) = server() else { return };
    let Some(python) = peer::python() else { return };
    let body = r#"[1700000000, "20240101T000000", {"mx": ["mx1.example.com", "*.example.net"], "version": "STSv1", "mode": "enforce", "max_age": 86400}]"#;
    // The peer creates the tables first here; we connect to them.
    peer(&python, &server, "set", "example.com", body);
    let store = store(&server).await;
    let got = store
        .get("example.com")
        .await
        .expect("get")
        .expect("an entry");
    assert_eq!(got.domain, "example.com");
    assert_eq!(got.id, "20240101T000000");
    assert_eq!(got.fetched_at, UnixTime::from_secs(1_700_000_000));
    assert_policy(&got.policy);
    assert_eq!(store.get("other.example").await.expect("get"), None);
    let listed = store.list(10).await.expect("list");
    assert_eq!(listed, [got]);
}

#[tokio::test]
async fn s6_we_write_and_the_peer_reads() {
    let Some(server) = server() else { return };
    let Some(python) = peer::python() else { return };
    let store = store(&server).await;
    store
        .put(&entry("example.com", "id1", 1_700_000_000))
        .await
        .expect("put");
    let got = peer(&python, &server, "get", "example.com", "");
    let got: serde_json::Value = serde_json::from_str(&got).expect("peer's JSON");
    assert_eq!(
        got,
        serde_json::json!([1_700_000_000, "id1", {
            "mx": ["mx1.example.com", "*.example.net"],
            "version": "STSv1", "mode": "enforce", "max_age": 86400
        }])
    );
    assert_eq!(peer(&python, &server, "scan", "", ""), r#"["example.com"]"#);
    // The peer's newer write replaces ours; its older one does not.
    let newer = r#"[1700000100, "id2", {"mx": ["mx1.example.com", "*.example.net"], "version": "STSv1", "mode": "enforce", "max_age": 86400}]"#;
    peer(&python, &server, "set", "example.com", newer);
    let older = r#"[1600000000, "id0", {"mx": ["old.example.com"], "version": "STSv1", "mode": "testing", "max_age": 60}]"#;
    peer(&python, &server, "set", "example.com", older);
    let got = store.get("example.com").await.expect("get").expect("entry");
    assert_eq!(
        (got.id.as_str(), got.fetched_at.as_secs()),
        ("id2", 1_700_000_100)
    );
    assert_policy(&got.policy);
}

#[tokio::test]
async fn s6_put_replaces_only_a_newer_fetch() {
    let Some(server) = server() else { return };
    let store = store(&server).await;
    store
        .put(&entry("a.example", "id2", 2000))
        .await
        .expect("put");
    store
        .put(&entry("a.example", "id1", 1000))
        .await
        .expect("older put");
    let got = store.get("a.example").await.expect("get").expect("entry");
    assert_eq!((got.id.as_str(), got.fetched_at.as_secs()), ("id2", 2000));
    store
        .put(&entry("a.example", "id1", 2000))
        .await
        .expect("same-time put");
    let got = store.get("a.example").await.expect("get").expect("entry");
    assert_eq!(
        got.id, "id2",
        "an equal ts does not replace (the peer's `<`)"
    );
    store
        .put(&entry("a.example", "id3", 3000))
        .await
        .expect("newer put");
    let got = store.get("a.example").await.expect("get").expect("entry");
    assert_eq!((got.id.as_str(), got.fetched_at.as_secs()), ("id3", 3000));
    assert!(store.delete("a.example").await.expect("delete"));
    assert!(!store.delete("a.example").await.expect("delete again"));
    assert_eq!(store.get("a.example").await.expect("get"), None);
    // A fetch time past the peer's 32-bit column is refused, not wrapped.
    let err = store
        .put(&entry("a.example", "id4", 1 << 31))
        .await
        .expect_err("past 2038");
    assert_eq!(*err.kind(), StoreErrorKind::Refused);
}

/// Hostile rows, inserted behind the store's back: each is `Corrupt` for its domain, left out of
/// `list`, and overwritten by the next put even when its `ts` is newer.
#[tokio::test]
async fn s3_hostile_rows_are_corrupt_and_overwritten() {
    let Some(server) = server() else { return };
    let store = store(&server).await;
    store
        .put(&entry("good.example", "ok", 1000))
        .await
        .expect("put");
    // (domain, ts, pol_id, pol_body) as SQL expressions.
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "mx-number.example",
            "1000",
            "'x'",
            r#"'{"mx": 5, "mode": "enforce", "version": "STSv1", "max_age": 60}'"#,
        ),
        ("array.example", "1000", "'x'", "'[1, 2]'"),
        ("string.example", "1000", "'x'", r#"'"enforce"'"#),
        ("json-null.example", "1000", "'x'", "'null'"),
        ("sql-null.example", "1000", "'x'", "NULL"),
        (
            "ts-null.example",
            "NULL",
            "'x'",
            r#"'{"mx": ["a.example"], "mode": "enforce", "version": "STSv1", "max_age": 60}'"#,
        ),
        (
            "ts-negative.example",
            "-5",
            "'x'",
            r#"'{"mx": ["a.example"], "mode": "enforce", "version": "STSv1", "max_age": 60}'"#,
        ),
        (
            "id-null.example",
            "1000",
            "NULL",
            r#"'{"mx": ["a.example"], "mode": "enforce", "version": "STSv1", "max_age": 60}'"#,
        ),
        (
            "id-giant.example",
            "1000",
            "repeat('i', 100000)",
            r#"'{"mx": ["a.example"], "mode": "enforce", "version": "STSv1", "max_age": 60}'"#,
        ),
        (
            "max-age-string.example",
            "1000",
            "'x'",
            r#"'{"mx": ["a.example"], "mode": "enforce", "version": "STSv1", "max_age": "soon"}'"#,
        ),
        (
            "giant.example",
            "2147483647",
            "'x'",
            "jsonb_build_object('mx', jsonb_build_array('a.example'), 'mode', 'enforce', 'version', 'STSv1', 'max_age', 60, 'pad', repeat('a', 8000000))",
        ),
    ];
    // Rows list cannot name: no domain, a giant one.
    server.psql(
        "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES \
         (NULL, 1, 'x', '{}'), (repeat('d', 100000), 1, 'x', '{}')",
    );
    for (domain, ts, id, body) in cases {
        server.psql(&format!(
            "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES ('{domain}', {ts}, {id}, {body})"
        ));
    }
    for (domain, ..) in cases {
        let err = store.get(domain).await.expect_err(domain);
        assert_eq!(*err.kind(), StoreErrorKind::Corrupt, "{domain}: {err}");
    }
    let listed = store.list(100).await.expect("list");
    assert_eq!(
        listed.iter().map(|e| e.domain.as_str()).collect::<Vec<_>>(),
        ["good.example"]
    );
    for (domain, ..) in cases {
        store.put(&entry(domain, "fresh", 500)).await.expect(domain);
        let got = store.get(domain).await.expect(domain).expect(domain);
        assert_eq!(
            (got.id.as_str(), got.fetched_at.as_secs()),
            ("fresh", 500),
            "{domain}"
        );
        assert_policy(&got.policy);
    }
    let listed = store.list(100).await.expect("list");
    assert_eq!(listed.len(), cases.len() + 1);
    assert!(
        listed.iter().all(|e| e.domain.len() < 100),
        "no giant domain listed"
    );
}

/// Broken JSON needs a text column (jsonb refuses it): a table altered behind our back.
#[tokio::test]
async fn s3_broken_json_in_a_text_column_is_corrupt_and_overwritten() {
    let Some(server) = server() else { return };
    let store = store(&server).await;
    server
        .psql("ALTER TABLE sts_policy_cache ALTER COLUMN pol_body TYPE text USING pol_body::text");
    let cases = [
        ("truncated.example", r#"{"mx": ["a.exa"#),
        ("garbage.example", "not json{"),
        (
            "trailing.example",
            r#"{"mx": [], "mode": "none", "version": "STSv1", "max_age": 60} x"#,
        ),
        ("nul.example", "\\u0000"),
    ];
    for (domain, body) in cases {
        server.psql(&format!(
            "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES ('{domain}', 2000, 'x', '{body}')"
        ));
        let err = store.get(domain).await.expect_err(domain);
        assert_eq!(*err.kind(), StoreErrorKind::Corrupt, "{domain}: {err}");
        store
            .put(&entry(domain, "fresh", 1000))
            .await
            .expect(domain);
        let got = store.get(domain).await.expect(domain).expect(domain);
        assert_eq!(got.id, "fresh");
        assert_policy(&got.policy);
    }
}

#[tokio::test]
async fn s6_server_stopped_is_unavailable_in_time_and_restarted_works_again() {
    let Some(mut server) = server() else { return };
    let store = store(&server).await;
    store
        .put(&entry("a.example", "id1", 1000))
        .await
        .expect("put");
    server.stop();
    for op in 0..3 {
        let started = Instant::now();
        let err = match op {
            0 => store.get("a.example").await.map(|_| ()),
            1 => store.put(&entry("a.example", "id2", 2000)).await,
            _ => store.list(10).await.map(|_| ()),
        }
        .expect_err("server stopped");
        let took = started.elapsed();
        eprintln!("op {op} with the server stopped: {err} after {took:?}");
        assert_eq!(*err.kind(), StoreErrorKind::Unavailable, "{err}");
        assert!(
            took <= TIMEOUT + Duration::from_millis(500),
            "took {took:?}"
        );
    }
    server.run();
    let started = Instant::now();
    let got = store.get("a.example").await.expect("get after restart");
    eprintln!("first get after restart: {:?}", started.elapsed());
    assert_eq!(got.map(|e| e.id).as_deref(), Some("id1"));
    store
        .put(&entry("a.example", "id2", 2000))
        .await
        .expect("put after restart");
    // A restart the store did not see between two operations: the broken connection is noticed
    // and the operation retried on a new one.
    server.stop();
    server.run();
    let got = store
        .get("a.example")
        .await
        .expect("get after a second restart");
    assert_eq!(got.map(|e| e.id).as_deref(), Some("id2"));
}

/// A server that accepts and never answers: connect gives up at the timeout.
#[tokio::test]
async fn s6_a_silent_server_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = PostgresStore::connect_with_timeout(
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        timeout,
    )
    .await
    .expect_err("silent server");
    let took = started.elapsed();
    eprintln!("silent server: {err} after {took:?}");
    assert_eq!(*err.kind(), StoreErrorKind::Unavailable);
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(500),
        "took {took:?}"
    );
    drop(listener);
}

#[tokio::test]
async fn s6_a_bad_dsn_is_a_typed_error() {
    let err = PostgresStore::connect("postgres://[::1")
        .await
        .expect_err("bad dsn");
    assert_eq!(*err.kind(), StoreErrorKind::Other, "{err}");
    let err = PostgresStore::connect("postgres://u@127.0.0.1/db?sslmode=require")
        .await
        .expect_err("no TLS yet");
    assert_eq!(*err.kind(), StoreErrorKind::Other, "{err}");
    let port = postgres_server::free_port();
    let err = PostgresStore::connect_with_timeout(
        &format!("host=127.0.0.1 port={port} user=postgres"),
        TIMEOUT,
    )
    .await
    .expect_err("nobody listening");
    assert_eq!(*err.kind(), StoreErrorKind::Unavailable, "{err}");
}

/// Many callers at once on one store (one pipelined connection): every put lands, and for one
/// domain the newest fetch wins whatever the order the writes arrive in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_concurrent_puts_keep_the_newest() {
    let Some(server) = server() else { return };
    let store = std::sync::Arc::new(store(&server).await);
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let store = std::sync::Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .put(&entry(&format!("d{i}.example"), "id", 1000 + i))
                .await?;
            // Fetch times 1000..1199 for one domain, in scrambled order.
            let ts = 1000 + (i * 37) % 200;
            store
                .put(&entry("same.example", &format!("id{ts}"), ts))
                .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("put");
    }
    let got = store
        .get("same.example")
        .await
        .expect("get")
        .expect("entry");
    assert_eq!(
        (got.id.as_str(), got.fetched_at.as_secs()),
        ("id1199", 1199)
    );
    assert_eq!(store.list(1000).await.expect("list").len(), 201);
    assert_eq!(store.list(5).await.expect("list").len(), 5);
}

/// A connection whose server stops answering mid-way (a frozen proxy): the operation gives up at
/// the timeout with `Unavailable`, and once the server answers again the store reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_a_server_that_stops_answering_times_out_then_recovers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let Some(server) = server() else { return };
    let frozen = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy_port = listener.local_addr().expect("addr").port();
    let upstream_port = server.port();
    let proxy_frozen = Arc::clone(&frozen);
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let frozen = Arc::clone(&proxy_frozen);
            tokio::spawn(async move {
                let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = up.into_split();
                // Client to server always; server to client dropped while frozen (as a server
                // that hangs: the connection stays open and nothing comes back).
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        if uw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut buf = vec![0u8; 16384];
                while let Ok(n @ 1..) = ur.read(&mut buf).await {
                    if frozen.load(Ordering::SeqCst) {
                        // Swallow the answer and hold the connection.
                        std::future::pending::<()>().await;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let timeout = Duration::from_millis(500);
    let store = PostgresStore::connect_with_timeout(
        &format!("postgres://postgres@127.0.0.1:{proxy_port}/postgres"),
        timeout,
    )
    .await
    .expect("connect through the proxy");
    store
        .put(&entry("a.example", "id1", 1000))
        .await
        .expect("put");
    frozen.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let err = store.get("a.example").await.expect_err("frozen");
    let took = started.elapsed();
    eprintln!("frozen server: {err} after {took:?}");
    assert_eq!(*err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(500),
        "took {took:?}"
    );
    // New connections hang too while frozen (the startup answer is swallowed).
    let err = store.get("a.example").await.expect_err("still frozen");
    assert_eq!(*err.kind(), StoreErrorKind::Unavailable, "{err}");
    frozen.store(false, Ordering::SeqCst);
    let got = store.get("a.example").await.expect("answers again");
    assert_eq!(got.map(|e| e.id).as_deref(), Some("id1"));
}

/// A fleet starting at once on a fresh database: every host creates the tables, none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_hosts_connecting_at_once_to_a_fresh_database_all_succeed() {
    let Some(server) = server() else { return };
    let dsn = server.dsn();
    let connects: Vec<_> = (0..8)
        .map(|_| {
            let dsn = dsn.clone();
            tokio::spawn(async move { PostgresStore::connect_with_timeout(&dsn, TIMEOUT).await })
        })
        .collect();
    for c in connects {
        c.await.expect("task").expect("connect");
    }
}

#[tokio::test]
async fn s8_postgres_notes_contract_and_one_winner() {
    let Some(server) = server() else { return };
    let s = store(&server).await;
    support::notes::contract(s.notes().unwrap(), "postgres").await;
    let mut hosts: Vec<Box<dyn support::notes::FleetNotesOwner>> = Vec::new();
    for _ in 0..6 {
        hosts.push(Box::new(store(&server).await));
    }
    support::notes::one_winner(hosts, "postgres").await;
    // The notes' table is ours, beside the peer's.
    let tables = server.psql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'");
    assert!(tables.contains("mta_sts_notes"), "{tables}");
    assert!(tables.contains("sts_policy_cache"), "{tables}");
}
