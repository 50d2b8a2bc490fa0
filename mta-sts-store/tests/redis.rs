//! The Redis store against a real `redis-server` (and `redis-sentinel`) started by each test,
//! and against postfix-mta-sts-resolver 1.5.1's own `RedisCache` code (S4: one layout for both
//! daemons), with hostile data in the database (S3).
#![cfg(feature = "redis")]

mod peer;
mod support {
    pub(crate) mod notes;
    pub mod redis_server;
}

use std::future::Future;
use std::time::{Duration, Instant};

use mta_sts_core::UnixTime;
use mta_sts_net::{PolicyStore, StoreErrorKind, StoredPolicy};
use mta_sts_store::redis::{RedisOptions, RedisStore};
use support::redis_server::{RedisServer, Sentinel, poll_until, redis_or_skip, reply};

const ENFORCE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n";
const TESTING: &str = "version: STSv1\r\nmode: testing\r\nmx: mx.example.org\r\nmax_age: 86400\r\n";

/// postfix-mta-sts-resolver's `RedisCache` and proactive fetcher, driven by a JSON list on stdin:
/// `[URL, "set", DOMAIN, TS, ID, POLICY_JSON]`, `[URL, "get", DOMAIN]`, `[URL, "fetcher"]` (one `iterate_domains` run, as its
/// periodic task does it: SCAN over every key, each read as an entry).
const PEER: &str = r#"
import asyncio, json, sys, time
from postfix_mta_sts_resolver.redis_cache import RedisCache
from postfix_mta_sts_resolver.base_cache import CacheEntry
from postfix_mta_sts_resolver.proactive_fetcher import STSProactiveFetcher

async def main():
    argv = [''] + json.loads(sys.stdin.read())
    url, op = argv[1], argv[2]
    cache = RedisCache(url=url)
    await cache.setup()
    try:
        if op == 'set':
            await cache.set(argv[3], CacheEntry(float(argv[4]), argv[5], json.loads(argv[6])))
        elif op == 'get':
            e = await cache.get(argv[3])
            print(json.dumps(None if e is None else [e.ts, e.pol_id, e.pol_body]))
        elif op == 'fetcher':
            cfg = {'shutdown_timeout': 1, 'default_zone': {'timeout': 1},
                   'proactive_policy_fetching': {'interval': 10**9, 'concurrency_limit': 2, 'grace_ratio': 2}}
            pf = STSProactiveFetcher(cfg, asyncio.get_running_loop(), cache)
            await pf.iterate_domains()
            token, seen = None, []
            while True:
                token, items = await cache.scan(token, 1000)
                seen += [[d, e.pol_id] for d, e in items]
                if token is None:
                    break
            print(json.dumps({'fetch_ts': await cache.get_proactive_fetch_ts() > 0, 'seen': sorted(seen)}))
    finally:
        await cache.teardown()

asyncio.run(main())
"#;

/// Runs [`PEER`] with `args`.
fn peer_run(python: &str, args: &[&str]) -> String {
    peer::run(python, PEER, &serde_json::to_string(args).unwrap())
}

/// A `redis-server` of the test's own, `None` when the test is skipped.
fn server_or_skip(test: &str) -> Option<RedisServer> {
    redis_or_skip(test).then(RedisServer::start)
}

async fn put(store: &RedisStore, domain: &str, id: &str, at: u64, policy: &str) {
    store.put(&entry(domain, id, at, policy)).await.unwrap();
}

/// The id of the entry of `domain` (which must be readable).
async fn id_of(store: &RedisStore, domain: &str) -> String {
    store.get(domain).await.unwrap().unwrap().id
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn entry(domain: &str, id: &str, at: u64, policy: &str) -> StoredPolicy {
    StoredPolicy::new(domain, id, UnixTime::from_secs(at), policy)
}

fn quick() -> RedisOptions {
    RedisOptions::default().with_timeouts(Duration::from_secs(2), Duration::from_secs(2))
}

#[tokio::test]
async fn s4_get_put_delete_list_roundtrip() {
    let Some(server) = server_or_skip("s4_get_put_delete_list_roundtrip") else {
        return;
    };
    let store = RedisStore::connect_with(&server.url(), quick()).unwrap();
    assert_eq!(store.get("example.com").await.unwrap(), None);
    put(&store, "Example.COM.", "id1", 1000, ENFORCE).await;
    put(&store, "example.org", "id2", 2000, TESTING).await;
    let got = store.get("example.com").await.unwrap().unwrap();
    assert_eq!(got, entry("example.com", "id1", 1000, ENFORCE));
    // One member, the random prefix then the peer's JSON; key lowercase without the dot.
    assert_eq!(server.raw(&[b"ZCARD", b"example.com"]), ":1");
    assert_eq!(server.raw(&[b"TYPE", b"example.com"]), "+zset");
    let mut listed = store.list(10).await.unwrap();
    listed.sort_by(|a, b| a.domain.cmp(&b.domain));
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1], entry("example.org", "id2", 2000, TESTING));
    assert_eq!(store.list(1).await.unwrap().len(), 1);
    assert!(store.delete("example.com.").await.unwrap());
    assert!(!store.delete("example.com").await.unwrap());
    assert_eq!(store.get("example.com").await.unwrap(), None);
    assert_eq!(
        store.get("_metadata").await.unwrap_err().kind(),
        &StoreErrorKind::Other
    );
}

#[tokio::test]
async fn s4_newer_only_between_two_writers() {
    let Some(server) = server_or_skip("s4_newer_only_between_two_writers") else {
        return;
    };
    let a = RedisStore::connect_with(&server.url(), quick()).unwrap();
    let b = RedisStore::connect_with(&server.url(), quick()).unwrap();
    put(&a, "example.com", "new", 2000, ENFORCE).await;
    // An older fetch of another host, and one as old: the entry in place stays.
    put(&b, "example.com", "old", 1000, TESTING).await;
    put(&b, "example.com", "same", 2000, TESTING).await;
    assert_eq!(id_of(&a, "example.com").await, "new");
    // Concurrent writers: the highest fetch time wins, one member stays.
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let store = if i % 2 == 0 { &a } else { &b };
        tasks.push(store.put_owned(entry("example.com", &format!("id{i}"), 3000 + i, ENFORCE)));
    }
    for r in futures_join(tasks).await {
        r.unwrap();
    }
    assert_eq!(id_of(&b, "example.com").await, "id19");
    assert_eq!(server.raw(&[b"ZCARD", b"example.com"]), ":1");
    // A later fetch replaces.
    put(&a, "example.com", "later", 5000, TESTING).await;
    assert_eq!(id_of(&b, "example.com").await, "later");
}

/// Puts owning their entry, so that a test can run many at once.
trait PutOwned {
    fn put_owned(
        &self,
        e: StoredPolicy,
    ) -> impl Future<Output = Result<(), mta_sts_net::StoreError>>;
}

impl PutOwned for RedisStore {
    async fn put_owned(&self, e: StoredPolicy) -> Result<(), mta_sts_net::StoreError> {
        self.put(&e).await
    }
}

async fn futures_join<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn s4_peer_writes_we_read() {
    let Some(server) = server_or_skip("s4_peer_writes_we_read") else {
        return;
    };
    let Some(python) = peer::python() else {
        return;
    };
    let url = server.url();
    let policy = r#"{"mx": ["mail.example.com", "*.example.net"], "version": "STSv1", "mode": "enforce", "max_age": 604800}"#;
    peer_run(
        &python,
        &[
            &url,
            "set",
            "example.com",
            "1700000000.75",
            "20240101T000000",
            policy,
        ],
    );
    let store = RedisStore::connect_with(&url, quick()).unwrap();
    let got = store.get("example.com").await.unwrap().unwrap();
    // Its float score floored to whole seconds.
    assert_eq!(
        got,
        entry("example.com", "20240101T000000", 1_700_000_000, ENFORCE)
    );
    // Its entry is as new as ours of the same second: ours does not replace it; a later one does.
    put(&store, "example.com", "ours", 1_700_000_000, TESTING).await;
    assert_eq!(id_of(&store, "example.com").await, "20240101T000000");
    put(&store, "example.com", "ours", 1_700_000_001, TESTING).await;
    assert_eq!(id_of(&store, "example.com").await, "ours");
}

#[tokio::test]
async fn s4_we_write_peer_reads() {
    let Some(server) = server_or_skip("s4_we_write_peer_reads") else {
        return;
    };
    let Some(python) = peer::python() else {
        return;
    };
    let url = server.url();
    let store = RedisStore::connect_with(&url, quick()).unwrap();
    put(&store, "example.com", "id-7", 1_700_000_123, ENFORCE).await;
    let out = peer_run(&python, &[&url, "get", "example.com"]);
    assert_eq!(
        out.trim(),
        r#"[1700000123.0, "id-7", {"mx": ["mail.example.com", "*.example.net"], "version": "STSv1", "mode": "enforce", "max_age": 604800}]"#
    );
    // And what the peer writes over ours (newer) is what we read next.
    let policy =
        r#"{"mx": ["mx.example.org"], "version": "STSv1", "mode": "testing", "max_age": 86400}"#;
    peer_run(
        &python,
        &[&url, "set", "example.com", "1700000200.5", "peer-8", policy],
    );
    assert_eq!(
        store.get("example.com").await.unwrap().unwrap(),
        entry("example.com", "peer-8", 1_700_000_200, TESTING)
    );
    assert_eq!(server.raw(&[b"ZCARD", b"example.com"]), ":1");
}

#[tokio::test]
async fn s4_peer_proactive_fetcher_scans_our_keys() {
    let Some(server) = server_or_skip("s4_peer_proactive_fetcher_scans_our_keys") else {
        return;
    };
    let Some(python) = peer::python() else {
        return;
    };
    let url = server.url();
    let store = RedisStore::connect_with(&url, quick()).unwrap();
    // Recent entries: the fetcher skips them (no network), after reading every one.
    let t = now();
    for i in 0..50 {
        put(
            &store,
            &format!("d{i}.example"),
            &format!("id{i}"),
            t,
            ENFORCE,
        )
        .await;
    }
    store.delete("d0.example").await.unwrap();
    store.list(1000).await.unwrap();
    let out = peer_run(&python, &[&url, "fetcher"]);
    assert!(out.contains(r#""fetch_ts": true"#), "{out}");
    assert!(out.contains(r#"["d49.example", "id49"]"#), "{out}");
    assert_eq!(out.matches(".example\"").count(), 49, "{out}");
    // Its `_metadata` hash is not ours: list leaves it out, and it survives our operations.
    assert_eq!(store.list(1000).await.unwrap().len(), 49);
    assert_eq!(server.raw(&[b"TYPE", b"_metadata"]), "+hash");
    // The control: one key of another type, and the same run dies with WRONGTYPE (the peer
    // helper's panic message is printed before it is caught here).
    server.raw(&[b"SET", b"stray", b"x"]);
    let fails = std::panic::catch_unwind(|| peer_run(&python, &[&url, "fetcher"])).unwrap_err();
    let why = fails.downcast_ref::<String>().unwrap();
    assert!(why.contains("WRONGTYPE"), "{why}");
}

#[tokio::test]
async fn s3_hostile_values_are_corrupt_then_overwritten() {
    let Some(server) = server_or_skip("s3_hostile_values_are_corrupt_then_overwritten") else {
        return;
    };
    let store = RedisStore::connect_with(&server.url(), quick()).unwrap();
    let mut giant = vec![b'G'; 16];
    giant.extend_from_slice(b"[\"id\", \"");
    giant.extend(std::iter::repeat_n(b'x', 4 << 20));
    giant.extend_from_slice(b"\"]");
    let short = b"[\"a\",{}]".to_vec();
    let mut broken = vec![0u8; 16];
    broken.extend_from_slice(br#"["id", {"mx": ["a.example"], "version": "STSv1", "mo"#);
    let mut wrong_types = vec![0u8; 16];
    wrong_types.extend_from_slice(
        br#"[1, {"mx": "a.example", "version": "STSv1", "mode": "enforce", "max_age": "x"}]"#,
    );
    let mut not_a_policy = vec![0u8; 16];
    not_a_policy.extend_from_slice(
        br#"["id", {"mx": [], "version": "STSv2", "mode": "enforce", "max_age": 86400}]"#,
    );
    // A readable member under a score that is no fetch time.
    let mut good = vec![7u8; 16];
    good.extend_from_slice(
        br#"["id", {"mx": ["mail.example.com"], "version": "STSv1", "mode": "enforce", "max_age": 86400}]"#,
    );
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "inf.example",
            vec![b"ZADD".to_vec(), b"+inf".to_vec(), good.clone()],
        ),
        (
            "huge.example",
            vec![b"ZADD".to_vec(), b"1e300".to_vec(), good.clone()],
        ),
        (
            "negative.example",
            vec![b"ZADD".to_vec(), b"-5".to_vec(), good],
        ),
        ("string.example", vec![b"SET".to_vec(), b"x".to_vec()]),
        (
            "hash.example",
            vec![b"HSET".to_vec(), b"f".to_vec(), b"v".to_vec()],
        ),
        (
            "short.example",
            vec![b"ZADD".to_vec(), b"1".to_vec(), short],
        ),
        (
            "broken.example",
            vec![b"ZADD".to_vec(), b"1".to_vec(), broken],
        ),
        (
            "types.example",
            vec![b"ZADD".to_vec(), b"1".to_vec(), wrong_types],
        ),
        (
            "policy.example",
            vec![b"ZADD".to_vec(), b"1".to_vec(), not_a_policy],
        ),
        // A hostile member from the future: it must not win over a later put.
        (
            "giant.example",
            vec![b"ZADD".to_vec(), b"9e15".to_vec(), giant],
        ),
    ];
    for (key, cmd) in &cases {
        let mut args: Vec<&[u8]> = vec![&cmd[0], key.as_bytes()];
        args.extend(cmd[1..].iter().map(Vec::as_slice));
        let reply = server.raw(&args);
        assert!(!reply.starts_with('-'), "{key}: {reply}");
    }
    for (key, _) in &cases {
        let e = store.get(key).await.unwrap_err();
        assert_eq!(e.kind(), &StoreErrorKind::Corrupt, "{key}: {e}");
        assert!(e.detail().starts_with(key), "{key}: {e}");
    }
    // list leaves them out and lists the good one.
    put(&store, "good.example", "g", 10, ENFORCE).await;
    let listed = store.list(100).await.unwrap();
    assert_eq!(listed, vec![entry("good.example", "g", 10, ENFORCE)]);
    // A later put replaces each with a sorted set of one readable member.
    for (key, _) in &cases {
        put(&store, key, "fixed", 20, TESTING).await;
        assert_eq!(
            store.get(key).await.unwrap().unwrap(),
            entry(key, "fixed", 20, TESTING)
        );
        assert_eq!(server.raw(&[b"ZCARD", key.as_bytes()]), ":1", "{key}");
    }
}

#[tokio::test]
async fn s3_killed_server_is_unavailable_then_reconnects() {
    let Some(mut server) = server_or_skip("s3_killed_server_is_unavailable_then_reconnects") else {
        return;
    };
    let timeout = Duration::from_millis(800);
    let store = RedisStore::connect_with(
        &server.url(),
        RedisOptions::default().with_timeouts(timeout, timeout),
    )
    .unwrap();
    put(&store, "example.com", "id1", 1000, ENFORCE).await;
    server.kill();
    for op in 0..3 {
        let started = Instant::now();
        let e = store.get("example.com").await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(e.kind(), &StoreErrorKind::Unavailable, "{op}: {e}");
        assert!(took <= timeout * 2, "{op}: {took:?}");
        eprintln!("get #{op} with the server killed: {took:?}: {e}");
    }
    let started = Instant::now();
    let e = store
        .put(&entry("example.com", "id2", 2000, ENFORCE))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), &StoreErrorKind::Unavailable, "{e}");
    assert!(started.elapsed() <= timeout * 2);
    // Restarted (empty: nothing saved): the next operations reconnect and re-fill it.
    server.restart();
    assert_eq!(store.get("example.com").await.unwrap(), None);
    put(&store, "example.com", "id3", 3000, ENFORCE).await;
    assert_eq!(id_of(&store, "example.com").await, "id3");
}

#[tokio::test]
async fn s3_stopped_server_times_out_then_recovers() {
    let Some(server) = server_or_skip("s3_stopped_server_times_out_then_recovers") else {
        return;
    };
    let timeout = Duration::from_millis(500);
    let store = RedisStore::connect_with(
        &server.url(),
        RedisOptions::default().with_timeouts(timeout, timeout),
    )
    .unwrap();
    put(&store, "example.com", "id1", 1000, ENFORCE).await;
    server.signal("-STOP");
    // The open connection: the command times out; the next one: the connect does.
    for op in 0..2 {
        let started = Instant::now();
        let e = store.get("example.com").await.unwrap_err();
        let took = started.elapsed();
        server_resume_on_panic(&server, || {
            assert_eq!(e.kind(), &StoreErrorKind::Unavailable, "{op}: {e}");
            assert!(took >= timeout / 2 && took <= timeout * 2, "{op}: {took:?}");
        });
        eprintln!("get #{op} from a stopped server: {took:?}: {e}");
    }
    server.signal("-CONT");
    assert_eq!(id_of(&store, "example.com").await, "id1");
}

/// Runs `check`; resumes a stopped server before a failure unwinds (its drop kills it then).
fn server_resume_on_panic(server: &RedisServer, check: impl FnOnce() + std::panic::UnwindSafe) {
    if let Err(p) = std::panic::catch_unwind(check) {
        server.signal("-CONT");
        std::panic::resume_unwind(p);
    }
}

#[tokio::test]
async fn s3_unresponsive_server_times_out() {
    if !redis_or_skip("s3_unresponsive_server_times_out") {
        return;
    }
    // A listener that accepts and never answers: connect or command, bounded.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/0", listener.local_addr().unwrap());
    let timeout = Duration::from_millis(500);
    let store = RedisStore::connect_with(
        &url,
        RedisOptions::default().with_timeouts(timeout, timeout),
    )
    .unwrap();
    let started = Instant::now();
    let e = store.get("example.com").await.unwrap_err();
    let took = started.elapsed();
    eprintln!("get from a silent server: {took:?}: {e}");
    assert_eq!(e.kind(), &StoreErrorKind::Unavailable, "{e}");
    assert!(took >= timeout / 2 && took <= timeout * 3, "{took:?}");
    drop(listener);
}

#[tokio::test]
async fn s4_sentinel_master() {
    let Some(master) = server_or_skip("s4_sentinel_master") else {
        return;
    };
    let sentinel = Sentinel::start(&master);
    let store = RedisStore::sentinel(&[&sentinel.addr()], Sentinel::MASTER_NAME, quick()).unwrap();
    put(&store, "example.com", "s1", 1000, ENFORCE).await;
    assert_eq!(id_of(&store, "example.com").await, "s1");
    // It is the master's data, in the layout.
    let direct = RedisStore::connect_with(&master.url(), quick()).unwrap();
    assert_eq!(id_of(&direct, "example.com").await, "s1");
    assert_eq!(master.raw(&[b"TYPE", b"example.com"]), "+zset");
    // An unknown master name is an error, not a hang.
    let other = RedisStore::sentinel(&[&sentinel.addr()], "nosuchmaster", quick()).unwrap();
    let e = other.get("example.com").await.unwrap_err();
    assert_ne!(e.kind(), &StoreErrorKind::Corrupt, "{e}");
}

#[tokio::test]
async fn s4_sentinel_follows_a_failover() {
    let begun = Instant::now();
    let Some(mut master) = server_or_skip("s4_sentinel_follows_a_failover") else {
        return;
    };
    let replica = RedisServer::replica_of(&master);
    // The replica attached before the sentinel starts: its first INFO of the master lists it.
    poll_until("the master lists the replica", || {
        master
            .reply(&["ROLE"])
            .contains(&replica.port().to_string())
    });
    let sentinel = Sentinel::start(&master);
    let name = Sentinel::MASTER_NAME;
    let store = RedisStore::sentinel(&[&sentinel.addr()], name, quick()).unwrap();
    put(&store, "example.com", "before", 1000, ENFORCE).await;
    poll_until("the replica has the entry", || {
        replica.raw(&[b"ZCARD", b"example.com"]) == ":1"
    });
    poll_until("the sentinel knows the replica", || {
        reply(sentinel.port(), &["SENTINEL", "REPLICAS", name])
            .contains(&replica.port().to_string())
    });
    // The master dies; the sentinel promotes the replica.
    eprintln!("ready after {:?}", begun.elapsed());
    master.kill();
    let started = Instant::now();
    // Done when the sentinel lists the replica as its master, up (redis-rs asks SENTINEL
    // MASTERS and refuses a master flagged down; GET-MASTER-ADDR-BY-NAME answers earlier).
    let promoted = format!("port\n{}\n", replica.port());
    poll_until("the sentinel's master is the replica, up", || {
        let m = reply(sentinel.port(), &["SENTINEL", "MASTER", name]);
        m.contains(&promoted) && m.contains("flags\nmaster\n")
    });
    eprintln!("failover took {:?}", started.elapsed());
    // At most one failure (the dead connection), then the store asks the sentinels again and
    // reads and writes the new master.
    let mut failures = Vec::new();
    while let Err(e) = store
        .put(&entry("example.com", "after", 2000, TESTING))
        .await
    {
        assert_eq!(e.kind(), &StoreErrorKind::Unavailable, "{e}");
        failures.push(e);
        assert!(failures.len() <= 1, "{failures:?}");
    }
    eprintln!("failures after the failover: {failures:?}");
    let direct = RedisStore::connect_with(&replica.url(), quick()).unwrap();
    assert_eq!(id_of(&direct, "example.com").await, "after");
    assert_eq!(id_of(&store, "example.com").await, "after");
}

#[tokio::test]
async fn s4_sentinel_master_with_password_and_db() {
    if !redis_or_skip("s4_sentinel_master_with_password_and_db") {
        return;
    }
    let master = RedisServer::start_with(&["--requirepass", "secret"]);
    let sentinel = Sentinel::start_with(&master, "secret");
    let name = Sentinel::MASTER_NAME;
    let without = RedisStore::sentinel(&[&sentinel.addr()], name, quick()).unwrap();
    let e = without.get("example.com").await.unwrap_err();
    assert_eq!(e.kind(), &StoreErrorKind::Unavailable, "{e}");
    eprintln!("without the master's password: {e}");
    let store =
        RedisStore::sentinel_with_master(&[&sentinel.addr()], name, "redis://:secret@x/2", quick())
            .unwrap();
    put(&store, "example.com", "db2", 1000, ENFORCE).await;
    let db = |n: u8| format!("redis://:secret@127.0.0.1:{}/{n}", master.port());
    let db2 = RedisStore::connect_with(&db(2), quick()).unwrap();
    assert_eq!(id_of(&db2, "example.com").await, "db2");
    let db0 = RedisStore::connect_with(&db(0), quick()).unwrap();
    assert_eq!(db0.get("example.com").await.unwrap(), None);
}

#[tokio::test]
async fn s4_tls_and_unix_socket_urls() {
    if !redis_or_skip("s4_tls_and_unix_socket_urls") {
        return;
    }
    let dir = support::redis_server::TempDir::new("redis-tls");
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    let socket = dir.path().join("redis.sock");
    let tls_port = support::redis_server::free_port().to_string();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        cert_file.to_str().unwrap(),
        "--tls-key-file",
        key_file.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
        "--unixsocket",
        socket.to_str().unwrap(),
    ]);
    let tls_url = format!("rediss://localhost:{tls_port}/0");
    let tls = RedisStore::connect_with(&tls_url, quick().with_tls_ca_pem(cert.pem())).unwrap();
    put(&tls, "example.com", "over-tls", 1000, ENFORCE).await;
    // Without the CA: the system's roots do not know it.
    let untrusted = RedisStore::connect_with(&tls_url, quick()).unwrap();
    let e = untrusted.get("example.com").await.unwrap_err();
    eprintln!("rediss:// without the CA: {e}");
    assert_eq!(e.kind(), &StoreErrorKind::Unavailable, "{e}");
    let unix = RedisStore::connect_with(&format!("unix://{}", socket.display()), quick()).unwrap();
    assert_eq!(id_of(&unix, "example.com").await, "over-tls");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_killed_and_restarted_under_load() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

    let Some(mut server) = server_or_skip("s3_killed_and_restarted_under_load") else {
        return;
    };
    let timeout = Duration::from_millis(500);
    let store = Arc::new(
        RedisStore::connect_with(
            &server.url(),
            RedisOptions::default().with_timeouts(timeout, timeout),
        )
        .unwrap(),
    );
    #[derive(Default)]
    struct Counts {
        ok: AtomicU64,
        unavailable: AtomicU64,
        other: AtomicU64,
        slowest_us: AtomicU64,
        stop: AtomicBool,
    }
    let counts = Arc::new(Counts::default());
    let mut workers = Vec::new();
    for w in 0..16u64 {
        let (store, counts) = (Arc::clone(&store), Arc::clone(&counts));
        workers.push(tokio::spawn(async move {
            let domain = format!("w{w}.example");
            let mut at = 1000;
            while !counts.stop.load(Relaxed) {
                at += 1;
                let started = Instant::now();
                let result = if at % 2 == 0 {
                    store.put(&entry(&domain, "id", at, ENFORCE)).await
                } else {
                    store.get(&domain).await.map(drop)
                };
                let took = u64::try_from(started.elapsed().as_micros()).unwrap();
                counts.slowest_us.fetch_max(took, Relaxed);
                match result {
                    Ok(()) => counts.ok.fetch_add(1, Relaxed),
                    Err(e) if e.kind() == &StoreErrorKind::Unavailable => {
                        counts.unavailable.fetch_add(1, Relaxed)
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        counts.other.fetch_add(1, Relaxed)
                    }
                };
                tokio::task::yield_now().await;
            }
        }));
    }
    let wait_for = |what: &str, counter: &AtomicU64, at_least: u64| {
        poll_until(what, || counter.load(Relaxed) >= at_least);
    };
    wait_for("load running", &counts.ok, 500);
    server.kill();
    wait_for("errors while down", &counts.unavailable, 200);
    let ok_while_down = counts.ok.load(Relaxed);
    server.restart();
    wait_for("load after the restart", &counts.ok, ok_while_down + 500);
    counts.stop.store(true, Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let slowest = Duration::from_micros(counts.slowest_us.load(Relaxed));
    eprintln!(
        "ok {}, unavailable {}, other {}, slowest {slowest:?}",
        counts.ok.load(Relaxed),
        counts.unavailable.load(Relaxed),
        counts.other.load(Relaxed),
    );
    assert_eq!(counts.other.load(Relaxed), 0);
    assert!(slowest <= timeout * 2, "{slowest:?}");
    // Re-filled by the writes after the restart.
    assert_eq!(store.list(100).await.unwrap().len(), 16);
}

#[tokio::test]
async fn s8_redis_notes_contract_and_one_winner() {
    let Some(server) = server_or_skip("s8_redis_notes_contract_and_one_winner") else {
        return;
    };
    let store = RedisStore::connect_with(&server.url(), quick()).unwrap();
    support::notes::contract(store.notes().unwrap(), "redis").await;
    // They are fields of `_metadata`, the one key the peer's SCAN skips; no key of their own.
    assert_eq!(server.raw(&[b"TYPE", b"_metadata"]), "+hash");
    assert_eq!(server.raw(&[b"DBSIZE"]), ":1");
    let hosts: Vec<Box<dyn support::notes::FleetNotesOwner>> = (0..8)
        .map(|_| {
            Box::new(RedisStore::connect_with(&server.url(), quick()).unwrap())
                as Box<dyn support::notes::FleetNotesOwner>
        })
        .collect();
    support::notes::one_winner(hosts, "redis").await;
}

#[tokio::test]
async fn s8_redis_hostile_notes_are_corrupt_or_overwritten_and_expired_ones_swept() {
    let Some(server) = server_or_skip("s8_redis_hostile_notes") else {
        return;
    };
    let store = RedisStore::connect_with(&server.url(), quick()).unwrap();
    let notes = store.notes().unwrap();
    let t = UnixTime::from_secs(1_000);
    let later = UnixTime::from_secs(1_030);
    // A value without an expiry, one with a giant value: read is Corrupt, claim overwrites.
    server.raw(&[b"HSET", b"_metadata", b"mta-sts/lock/a.test", b"garbage"]);
    let e = notes.read("lock/a.test", t).await.unwrap_err();
    assert_eq!(e.kind(), &StoreErrorKind::Corrupt, "{e}");
    assert!(notes.claim("lock/a.test", "h", t, later).await.unwrap());
    let giant = format!("99999999999 {}", "x".repeat(100_000));
    server.raw(&[
        b"HSET",
        b"_metadata",
        b"mta-sts/absent/b.test",
        giant.as_bytes(),
    ]);
    let e = notes.read("absent/b.test", t).await.unwrap_err();
    assert_eq!(e.kind(), &StoreErrorKind::Corrupt, "{e}");
    // The peer's own field is left alone by every operation and by the sweep.
    server.raw(&[
        b"HSET",
        b"_metadata",
        b"proactive_fetch_ts",
        b"1700000000.5",
    ]);
    // Expired notes of hosts that died are swept after enough claims.
    for i in 0..200 {
        let key = format!("lock/dead{i}.test");
        notes.set(&key, "gone", later).await.unwrap();
    }
    let far = UnixTime::from_secs(5_000);
    for i in 0..(2 * mta_sts_store::redis::NOTE_SWEEP_EVERY) {
        let key = format!("lock/live{}.test", i % 4);
        let _ = notes
            .claim(&key, "h", far, far.saturating_add(Duration::from_secs(30)))
            .await
            .unwrap();
    }
    let left: u64 = server
        .raw(&[b"HLEN", b"_metadata"])
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(left < 200, "{left} fields left");
    assert_eq!(
        server.reply(&["HGET", "_metadata", "proactive_fetch_ts"]),
        "1700000000.5"
    );
    // `_metadata` of another type (hostile): a typed error, not a crash.
    server.raw(&[b"DEL", b"_metadata"]);
    server.raw(&[b"SET", b"_metadata", b"x"]);
    let e = notes.claim("lock/c.test", "h", t, later).await.unwrap_err();
    assert_eq!(e.kind(), &StoreErrorKind::Corrupt, "{e}");
}

#[tokio::test]
async fn s8_peer_proactive_fetcher_runs_over_our_notes() {
    let Some(server) = server_or_skip("s8_peer_proactive_fetcher_runs_over_our_notes") else {
        return;
    };
    let Some(python) = peer::python() else {
        return;
    };
    let url = server.url();
    let store = RedisStore::connect_with(&url, quick()).unwrap();
    let t = now();
    for i in 0..20 {
        put(&store, &format!("d{i}.example"), "id", t, ENFORCE).await;
    }
    // Locks held and released, negative answers kept, before the peer's first run (no
    // `_metadata` yet) and after it (its field there).
    let notes = store.notes().unwrap();
    let (at, until) = (UnixTime::from_secs(t), UnixTime::from_secs(t + 60));
    for i in 0..10 {
        assert!(
            notes
                .claim(&format!("lock/d{i}.example"), "host-a", at, until)
                .await
                .unwrap()
        );
        notes
            .set(&format!("absent/n{i}.example"), "nxdomain", until)
            .await
            .unwrap();
    }
    let out = peer_run(&python, &[&url, "fetcher"]);
    assert!(out.contains(r#""fetch_ts": true"#), "{out}");
    assert_eq!(out.matches(".example\"").count(), 20, "{out}");
    assert!(!out.contains("lock/") && !out.contains("absent/"), "{out}");
    for i in 0..10 {
        notes
            .remove(&format!("lock/d{i}.example"), Some("host-a"))
            .await
            .unwrap();
        assert!(
            notes
                .claim(&format!("lock/x{i}.example"), "host-b", at, until)
                .await
                .unwrap()
        );
    }
    let out = peer_run(&python, &[&url, "fetcher"]);
    assert_eq!(out.matches(".example\"").count(), 20, "{out}");
    // The peer's timestamp field is still read back by it, and our list never shows notes.
    assert_eq!(store.list(1000).await.unwrap().len(), 20);
    assert_eq!(server.raw(&[b"DBSIZE"]), ":21");
}

#[tokio::test]
async fn s8_sentinel_notes_are_the_masters() {
    let Some(master) = server_or_skip("s8_sentinel_notes_are_the_masters") else {
        return;
    };
    let sentinel = Sentinel::start(&master);
    let store = RedisStore::sentinel(&[&sentinel.addr()], Sentinel::MASTER_NAME, quick()).unwrap();
    let direct = RedisStore::connect_with(&master.url(), quick()).unwrap();
    let (t, later) = (UnixTime::from_secs(1_000), UnixTime::from_secs(1_030));
    assert!(
        store
            .notes()
            .unwrap()
            .claim("lock/s.test", "via-sentinel", t, later)
            .await
            .unwrap()
    );
    let notes = direct.notes().unwrap();
    assert!(
        !notes
            .claim("lock/s.test", "direct", t, later)
            .await
            .unwrap()
    );
    assert_eq!(
        notes.read("lock/s.test", t).await.unwrap(),
        Some(("via-sentinel".to_owned(), later))
    );
}
