//! The daemon on each real store server, end to end (S4, S5, S6, S3): a mixed fleet where
//! postfix-mta-sts-resolver 1.5.1's own daemon and `mta-sts daemon` share one `redis-server`
//! (one SQLite file, one PostgreSQL database) and each answers from the other's entries; two of our daemons sharing Redis, Redis Sentinel and
//! PostgreSQL (one fetch for the fleet); the store's server killed or restarted under load; the
//! SQLite file locked by another process, and on a full disk.
//!
//! The servers are the store crate's test servers (included by path: std, and tempfile for
//! PostgreSQL). Tests that need a server, the peer or a tmpfs mount fail, not skip, under CI or
//! with `MTA_STS_REQUIRE_REDIS`, `MTA_STS_REQUIRE_POSTGRES`, `MTA_STS_REQUIRE_RESOLVER` or
//! `MTA_STS_REQUIRE_ROOT_MOUNT`.

mod daemon_support;
#[path = "../../mta-sts-store/tests/peer/mod.rs"]
mod peer;
#[allow(dead_code)]
#[path = "../../mta-sts-store/tests/support/postgres_server.rs"]
mod postgres_server;
#[path = "../../mta-sts-store/tests/support/redis_server.rs"]
mod redis_server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::Duration;

use daemon_support::*;
use redis_server::{RedisServer, Sentinel, redis_or_skip};

/// The daemons' zone timeout (DNS and HTTPS, each), in seconds.
const ZONE_TIMEOUT_SECS: u64 = 2;

/// The most a request may wait, by the daemon's own bounds: a store read (the client's store
/// timeout, 2 s), then a TXT lookup and a fetch (the zone timeout each). A reply not read
/// within it is a request that waited past its timeout (the test's socket gives up and fails).
const REQUEST_DEADLINE: Duration = Duration::from_secs(2 + 2 * ZONE_TIMEOUT_SECS);

const POLICY_HOST: &str = "mta-sts.enforce.test";

/// Our daemon's configuration with this `cache` section (indented by two spaces), a metrics
/// listener, and the zone timeout.
fn config(cache: &str) -> String {
    format!(
        "host: 127.0.0.1\nport: 0\nmetrics:\n  port: 0\ndefault_zone:\n  timeout: \
         {ZONE_TIMEOUT_SECS}\ncache:\n{cache}"
    )
}

fn redis_cache(url: &str) -> String {
    format!(
        "  type: redis\n  options:\n    url: \"{url}\"\n    socket_timeout: 1\n    \
         socket_connect_timeout: 1\n"
    )
}

/// Starts a daemon of ours in a directory of its own under `dir`.
fn start(world: &mta_sts_testkit::World, dir: &Path, name: &str, yaml: &str) -> Daemon {
    let own = dir.join(name);
    std::fs::create_dir_all(&own).unwrap();
    Daemon::start(world, &own, yaml)
}

/// One request with [`REQUEST_DEADLINE`] on the reply.
fn ask_in_time(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the daemon");
    s.set_read_timeout(Some(REQUEST_DEADLINE)).unwrap();
    s.write_all(&netstring(request)).unwrap();
    try_read_reply(&mut s).unwrap_or_else(|| {
        panic!("{request:?}: no reply within the request's deadline {REQUEST_DEADLINE:?}")
    })
}

/// The value of `mta_sts_store_operations_total{store, op, result}` (0 when not yet counted).
fn store_ops(metrics: SocketAddr, store: &str, op: &str, result: &str) -> f64 {
    let mut s = TcpStream::connect(metrics).expect("connect to /metrics");
    s.set_read_timeout(Some(LOG_WAIT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let labels = [
        format!("store=\"{store}\""),
        format!("op=\"{op}\""),
        format!("result=\"{result}\""),
    ];
    body.lines()
        .filter(|l| l.starts_with("mta_sts_store_operations_total{"))
        .filter(|l| labels.iter().all(|x| l.contains(x.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Requests asked again and again on one connection (pipelined, 8 at a time) until stopped,
/// each reply read within [`REQUEST_DEADLINE`].
struct Load {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, Vec<String>)>,
}

impl Load {
    fn start(addr: SocketAddr, request: &'static str, expect: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).expect("connect to the daemon");
            s.set_read_timeout(Some(REQUEST_DEADLINE)).unwrap();
            let batch: Vec<u8> = (0..8).flat_map(|_| netstring(request)).collect();
            let (mut answered, mut wrong) = (0u64, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                s.write_all(&batch).expect("send requests");
                for _ in 0..8 {
                    let reply = try_read_reply(&mut s).unwrap_or_else(|| {
                        panic!("a request waited past its deadline {REQUEST_DEADLINE:?}")
                    });
                    answered += 1;
                    if reply != expect && wrong.len() < 10 {
                        wrong.push(reply);
                    }
                }
            }
            (answered, wrong)
        });
        Self { stop, thread }
    }

    /// Stops it; panics when a reply was wrong or none came.
    fn finish(self, what: &str) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let (answered, wrong) = self.thread.join().expect("the load thread");
        assert!(
            wrong.is_empty(),
            "{what}: wrong replies under load: {wrong:?}"
        );
        assert!(answered > 0, "{what}: no request answered");
        answered
    }
}

// ---------------------------------------------------------------------------------------------
// The mixed fleet: postfix-mta-sts-resolver 1.5.1 and mta-sts on one Redis.

/// Writes one entry with the peer's own cache code (`utils.create_cache` from the `cache`
/// section's type and options, as its daemon builds it; the policy parsed by its
/// `parse_mta_sts_policy`, `max_age` made an integer, the fetch time `time.time()`, as its
/// daemon does after a fetch): the type, the options, the domain, the id and the policy text,
/// a JSON list on stdin.
const PEER_WRITE: &str = r#"
import asyncio, json, sys, time
from postfix_mta_sts_resolver.base_cache import CacheEntry
from postfix_mta_sts_resolver.utils import create_cache, parse_mta_sts_policy
async def main(cache_type, options, domain, pol_id, text):
    cache = create_cache(cache_type, options)
    await cache.setup()
    pol = parse_mta_sts_policy(text)
    pol['max_age'] = int(pol['max_age'])
    await cache.set(domain, CacheEntry(time.time(), pol_id, pol))
    await cache.teardown()
asyncio.run(main(*json.loads(sys.stdin.read())))
"#;

/// postfix-mta-sts-resolver's `mta-sts-daemon`, run from its venv, its log read line by line.
struct PeerDaemon {
    child: Child,
    log: Receiver<String>,
    lines: Vec<String>,
    addr: SocketAddr,
}

impl PeerDaemon {
    /// Starts it on a free loopback port with `yaml` (the `host` and `port` keys added here)
    /// and waits for "Server started.".
    fn start(python: &str, dir: &Path, yaml: &str) -> Self {
        let port = redis_server::free_port();
        let config = dir.join("peer.yml");
        std::fs::write(&config, format!("host: 127.0.0.1\nport: {port}\n{yaml}")).unwrap();
        let daemon = Path::new(python).with_file_name("mta-sts-daemon");
        let mut child = Command::new(&daemon)
            .arg("-c")
            .arg(&config)
            .args(["-v", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", daemon.display()));
        let log = log_lines(child.stderr.take().unwrap());
        let mut peer = Self {
            child,
            log,
            lines: Vec::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        assert!(
            peer.wait_for(|l| l.contains("Server started.")),
            "the peer's daemon did not start: {:?}",
            peer.lines
        );
        peer
    }

    /// Waits for a log line that satisfies `f` (at most [`LOG_WAIT`]); false when the log ended.
    fn wait_for(&mut self, f: impl Fn(&str) -> bool) -> bool {
        while let Ok(line) = self.log.recv_timeout(LOG_WAIT) {
            self.lines.push(line.clone());
            if f(&line) {
                return true;
            }
        }
        false
    }
}

impl Drop for PeerDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The MX patterns of an `OK secure match=A:B …` reply, sorted (the peer's order is a Python
/// set's).
fn matched(reply: &str) -> Vec<String> {
    let list = reply
        .split(' ')
        .find_map(|w| w.strip_prefix("match="))
        .unwrap_or_else(|| panic!("no match= in {reply:?}"));
    let mut v: Vec<String> = list.split(':').map(str::to_owned).collect();
    v.sort();
    v
}

/// The mixed fleet on one store: our daemon with the `cache` section `ours` and the peer's
/// daemon with `cache: {type: cache_type, options: options}` (JSON is YAML); `stored` says
/// whether a domain's entry is in the store.
fn mixed_fleet(
    python: &str,
    test: &str,
    ours: &str,
    cache_type: &str,
    options: &serde_json::Value,
    stored: impl Fn(&str) -> bool,
) {
    let world = world();
    let dir = scratch_dir(test);
    let ours = start(&world, &dir, "ours", &config(ours));

    // Ours fetches; its entries land in the store (written in the background: waited for). A
    // policy of mode none and a domain without MTA-STS are asked too, so that whatever our
    // daemon keeps for them is in the database the peer scans.
    assert_eq!(ask_one(ours.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(ask_one(ours.addr(), "postfix none.test"), "NOTFOUND ");
    assert_eq!(ask_one(ours.addr(), "postfix nopolicy.test"), "NOTFOUND ");
    for key in ["enforce.test", "none.test"] {
        wait_until(&format!("{key} in the store"), LOG_WAIT, || stored(key));
    }

    // The peer's entry, written by the peer's own cache code. Its daemon cannot write one
    // here by fetching: it resolves through the system's resolver (c-ares, /etc/resolv.conf:
    // no network in the tests) and fetches from port 443, neither of which can be pointed at
    // the test's world.
    let policy =
        "version: STSv1\nmode: enforce\nmx: mx.peer.test\nmx: *.backup.peer.test\nmax_age: 86400\n";
    let input = serde_json::json!([cache_type, options, "peer.test", "p1", policy]).to_string();
    peer::run(python, PEER_WRITE, &input);

    // The peer's daemon on the same database. cache_grace: an entry fetched within it answers
    // without any lookup (its responder's is_stale), so the peer never needs the network. Its
    // proactive fetcher runs every second (its cache's scan: every entry read; on Redis a SCAN
    // over every key, each read as a sorted set) and
    // skips every entry as recent (interval / grace_ratio is a million seconds).
    let mut peer = PeerDaemon::start(
        python,
        &dir,
        &format!(
            "reuse_port: true\nshutdown_timeout: 1\ncache_grace: 86400\n\
             proactive_policy_fetching:\n  enabled: true\n  interval: 1\n  \
             concurrency_limit: 2\n  grace_ratio: 0.000001\n\
             default_zone:\n  strict_testing: false\n  timeout: 1\n\
             cache: {}\n",
            serde_json::json!({"type": cache_type, "options": options})
        ),
    );

    // The peer answers from the entry our daemon wrote, without a lookup of its own.
    let reply = ask_in_time(peer.addr, "postfix enforce.test");
    assert!(
        reply.starts_with("OK secure match=") && reply.ends_with(" servername=hostname"),
        "{reply:?}"
    );
    assert_eq!(
        matched(&reply),
        [".pool.enforce.test", "mx1.enforce.test"],
        "{reply:?}"
    );
    assert_eq!(ask_in_time(peer.addr, "postfix none.test"), "NOTFOUND ");
    assert!(
        peer.wait_for(|l| l.contains("Lookup skipped: domain = enforce.test")),
        "{:?}",
        peer.lines
    );

    // Ours answers from the entry the peer wrote: peer.test is not in the world at all.
    let reply = ask_in_time(ours.addr(), "postfix peer.test");
    assert_eq!(
        reply,
        "OK secure match=mx.peer.test:.backup.peer.test servername=hostname"
    );
    assert_eq!(world.fetches("mta-sts.peer.test"), 0);
    assert_eq!(world.fetches(POLICY_HOST), 1);

    // The peer's proactive fetcher keeps running over the database our daemon wrote to: two
    // whole runs after both wrote (each SCANs every key and reads it), and no WRONGTYPE.
    for run in 0..2 {
        assert!(
            peer.wait_for(
                |l| l.contains("Proactive policy fetching for all domains in cache finished")
            ),
            "run {run} of the peer's proactive fetcher did not finish (a key it cannot read \
             kills it without a word: WRONGTYPE): {:?}",
            peer.lines
        );
    }
    // Nothing was looked up by the peer (each answer and each run read the store only).
    for bad in [
        "Lookup PERFORMED",
        "WRONGTYPE",
        "Traceback",
        "Unhandled exception",
        "Cache get failed",
    ] {
        assert!(
            !peer.lines.iter().any(|l| l.contains(bad)),
            "{bad} in the peer's log: {:?}",
            peer.lines
        );
    }
    assert!(
        peer.lines
            .iter()
            .any(|l| l.contains("Domain enforce.test skipped (cache recent enough)")),
        "the fetcher did not read our entry: {:?}",
        peer.lines
    );
    eprintln!(
        "mixed fleet on {cache_type}: policy fetches {}",
        world.total_fetches()
    );
}

#[test]
fn s4_mixed_fleet_the_peer_and_our_daemon_answer_from_each_others_redis_entries() {
    if !redis_or_skip("s4_mixed_fleet") {
        return;
    }
    let Some(python) = peer::python() else {
        return;
    };
    let redis = RedisServer::start();
    let options = serde_json::json!({"url": redis.url()});
    mixed_fleet(
        &python,
        "fleet-mixed-redis",
        &redis_cache(&redis.url()),
        "redis",
        &options,
        |key| redis.reply(&["TYPE", key]) == "+zset",
    );
    // Nothing but the two daemons' policies and the peer's fetcher's hash.
    let mut keys: Vec<String> = redis
        .reply(&["KEYS", "*"])
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["_metadata", "enforce.test", "none.test", "peer.test"]
    );
}

#[test]
fn s5_mixed_fleet_the_peer_and_our_daemon_answer_from_each_others_sqlite_rows() {
    let Some(python) = peer::python() else {
        return;
    };
    let dir = scratch_dir("fleet-mixed-sqlite-file");
    let db = dir.join("cache.db");
    let options = serde_json::json!({"filename": db});
    let ours = format!(
        "  type: sqlite\n  options:\n    filename: \"{}\"\n    timeout: 1\n",
        db.display()
    );
    mixed_fleet(
        &python,
        "fleet-mixed-sqlite",
        &ours,
        "sqlite",
        &options,
        |key| sqlite_has(&db, key),
    );
}

#[test]
fn s6_mixed_fleet_the_peer_and_our_daemon_answer_from_each_others_postgres_rows() {
    let Some(pg) = postgres_or_skip("s6_mixed_fleet") else {
        return;
    };
    let Some(python) = peer::python() else {
        return;
    };
    let options = serde_json::json!({"dsn": pg.dsn()});
    let ours = format!(
        "  type: postgres\n  options:\n    dsn: \"{}\"\n    timeout: 1\n",
        pg.dsn()
    );
    mixed_fleet(
        &python,
        "fleet-mixed-postgres",
        &ours,
        "postgres",
        &options,
        |key| in_postgres(&pg, key),
    );
}

// ---------------------------------------------------------------------------------------------
// Two of our daemons on each real server; the server killed or restarted under load.

/// Two daemons of ours with `yaml`: A fetches a policy, which `stored` then finds in the
/// store; B, which has never seen it, answers from the store without a fetch of its own.
fn two_daemons_share<S>(
    world: &mta_sts_testkit::World,
    test: &str,
    yaml: &str,
    server: &S,
    stored: impl Fn(&S, &str) -> bool,
) -> (Daemon, Daemon) {
    let dir = scratch_dir(test);
    let a = start(world, &dir, "a", yaml);
    let b = start(world, &dir, "b", yaml);
    assert_eq!(ask_one(a.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    wait_until("A's entry in the store", LOG_WAIT, || {
        stored(server, "enforce.test")
    });
    assert_eq!(ask_one(b.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(world.fetches(POLICY_HOST), 1, "B fetched the policy again");
    let name = if yaml.contains("type: postgres") {
        "postgres"
    } else {
        "redis"
    };
    assert_eq!(
        store_ops(b.metrics.unwrap(), name, "get", "hit"),
        1.0,
        "B did not read the entry from the store"
    );
    (a, b)
}

/// Under load on daemon `a` (answering from memory), `down` takes the store's server away: a
/// domain `a` has not seen is looked up (on_store_error local) and every request is answered
/// within its deadline; the failed read is counted. `up` brings the server back: the next
/// fetch is in the store again (`stored`), and the policy in memory was never lost. Returns
/// the requests answered under load and the failed reads counted.
fn outage_under_load<S>(
    world: &mta_sts_testkit::World,
    a: &Daemon,
    store: &str,
    server: &mut S,
    down: impl FnOnce(&mut S),
    up: impl FnOnce(&mut S),
    stored: impl Fn(&S, &str) -> bool,
) -> (u64, f64) {
    let load = Load::start(a.addr(), "postfix enforce.test", ENFORCE_REPLY);
    let metrics = a.metrics.unwrap();
    let before = failed_reads(metrics, store);
    down(server);
    assert_eq!(ask_in_time(a.addr(), "postfix testing.test"), "NOTFOUND ");
    assert_eq!(world.fetches("mta-sts.testing.test"), 1);
    let failed = failed_reads(metrics, store);
    assert!(failed > before, "the failed read is not counted");
    up(server);
    assert_eq!(ask_in_time(a.addr(), "postfix none.test"), "NOTFOUND ");
    wait_until("none.test in the store again", LOG_WAIT, || {
        stored(server, "none.test")
    });
    assert_eq!(ask_in_time(a.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    let answered = load.finish(store);
    assert_eq!(
        world.fetches(POLICY_HOST),
        1,
        "the policy was lost from memory"
    );
    (answered, failed)
}

/// Reads of the store that failed (unavailable or timed out), as the daemon counted them.
fn failed_reads(metrics: SocketAddr, store: &str) -> f64 {
    store_ops(metrics, store, "get", "unavailable") + store_ops(metrics, store, "get", "timeout")
}

fn in_redis(redis: &RedisServer, domain: &str) -> bool {
    redis.reply(&["EXISTS", domain]) == ":1"
}

#[test]
fn s4_two_daemons_on_one_redis_fetch_once_and_survive_its_restart_under_load() {
    if !redis_or_skip("s4_two_daemons_on_one_redis") {
        return;
    }
    let world = world();
    let mut redis = RedisServer::start();
    let yaml = config(&redis_cache(&redis.url()));
    let (a, _b) = two_daemons_share(&world, "fleet-redis", &yaml, &redis, in_redis);
    let (answered, failed) = outage_under_load(
        &world,
        &a,
        "redis",
        &mut redis,
        |redis| {
            // First silent (SIGSTOP: connections accepted, nothing answered), then killed.
            redis.signal("-STOP");
            assert_eq!(ask_in_time(a.addr(), "postfix nopolicy.test"), "NOTFOUND ");
            assert!(
                failed_reads(a.metrics.unwrap(), "redis") >= 1.0,
                "the read of a silent server is not counted"
            );
            redis.signal("-CONT");
            redis.kill();
        },
        // Restarted empty (nothing is saved).
        RedisServer::restart,
        in_redis,
    );
    eprintln!(
        "redis silent, killed and restarted: {answered} requests answered under load, {failed} \
         failed reads counted"
    );
}

#[test]
fn s7_on_store_error_defer_defers_unseen_domains_while_redis_is_down() {
    if !redis_or_skip("s7_on_store_error_defer") {
        return;
    }
    let world = world();
    let dir = scratch_dir("fleet-redis-defer");
    let mut redis = RedisServer::start();
    let cache = redis_cache(&redis.url()).replace(
        "  type: redis\n",
        "  type: redis\n  on_store_error: defer\n",
    );
    let a = start(&world, &dir, "a", &config(&cache));
    assert_eq!(ask_one(a.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    let load = Load::start(a.addr(), "postfix enforce.test", ENFORCE_REPLY);
    redis.kill();
    // A domain without a policy in memory: a temporary failure, in time, without a lookup.
    let reply = ask_in_time(a.addr(), "postfix testing.test");
    assert!(
        reply.starts_with("TEMP MTA-STS lookup for testing.test failed"),
        "{reply:?}"
    );
    assert_eq!(world.fetches("mta-sts.testing.test"), 0);
    assert!(failed_reads(a.metrics.unwrap(), "redis") >= 1.0);
    redis.restart();
    assert_eq!(ask_in_time(a.addr(), "postfix testing.test"), "NOTFOUND ");
    assert_eq!(world.fetches("mta-sts.testing.test"), 1);
    wait_until("testing.test in the restarted Redis", LOG_WAIT, || {
        in_redis(&redis, "testing.test")
    });
    let answered = load.finish("defer while Redis was down");
    assert_eq!(
        world.fetches(POLICY_HOST),
        1,
        "the policy was lost from memory"
    );
    eprintln!("on_store_error defer: {answered} requests answered from memory under load");
}

#[test]
fn s3_hostile_redis_entries_are_looked_up_past_and_overwritten_by_the_daemon() {
    if !redis_or_skip("s3_hostile_redis_entries") {
        return;
    }
    let world = world();
    let dir = scratch_dir("fleet-redis-hostile");
    let redis = RedisServer::start();
    // Another program's string key; a member without its 16-byte prefix and JSON; an entry
    // in the layout whose policy is not one (mx missing for mode enforce).
    redis.reply(&["SET", "enforce.test", "not a sorted set"]);
    redis.reply(&["ZADD", "testing.test", "1", "{truncated"]);
    let no_mx = format!(
        "0123456789abcdef{}",
        serde_json::json!(["1", {"mx": [], "version": "STSv1", "mode": "enforce", "max_age": 86400}])
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    redis.reply(&["ZADD", "none.test", &now, &no_mx]);
    let a = start(&world, &dir, "a", &config(&redis_cache(&redis.url())));
    assert_eq!(ask_one(a.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(ask_one(a.addr(), "postfix testing.test"), "NOTFOUND ");
    assert_eq!(ask_one(a.addr(), "postfix none.test"), "NOTFOUND ");
    for (domain, mx) in [
        ("enforce.test", "mx1.enforce.test"),
        ("testing.test", "mx.testing.test"),
        ("none.test", "\"mode\": \"none\""),
    ] {
        wait_until(&format!("{domain} overwritten"), LOG_WAIT, || {
            redis.reply(&["TYPE", domain]) == "+zset"
                && redis.reply(&["ZRANGE", domain, "0", "-1"]).contains(mx)
        });
        assert_eq!(redis.reply(&["ZCARD", domain]), ":1");
        assert_eq!(world.fetches(&format!("mta-sts.{domain}")), 1);
    }
    let metrics = a.metrics.unwrap();
    assert_eq!(store_ops(metrics, "redis", "get", "corrupt"), 3.0);
    // Counted once the write has returned (just after it is seen in Redis).
    wait_until("the three writes counted", LOG_WAIT, || {
        store_ops(metrics, "redis", "put", "ok") == 3.0
    });
}

#[test]
fn s4_two_daemons_on_redis_sentinel_fetch_once() {
    if !redis_or_skip("s4_two_daemons_on_redis_sentinel") {
        return;
    }
    let world = world();
    let master = RedisServer::start();
    let sentinel = Sentinel::start(&master);
    let yaml = config(&format!(
        "  type: redis_sentinel\n  options:\n    sentinels: [[\"127.0.0.1\", {}]]\n    \
         sentinel_master_name: {}\n    socket_timeout: 1\n    socket_connect_timeout: 1\n",
        sentinel.port(),
        Sentinel::MASTER_NAME
    ));
    two_daemons_share(&world, "fleet-sentinel", &yaml, &master, in_redis);
}

/// A PostgreSQL server of the test's own, `None` when the test is skipped.
fn postgres_or_skip(test: &str) -> Option<postgres_server::PgServer> {
    let server = postgres_server::PgServer::start();
    if server.is_none() {
        assert!(
            !mta_sts_testkit::must_not_skip("MTA_STS_REQUIRE_POSTGRES"),
            "{test}: PostgreSQL is not installed and MTA_STS_REQUIRE_POSTGRES=1 (or CI)"
        );
        eprintln!("\n** SKIPPED {test}: PostgreSQL not installed.\n");
    }
    server
}

fn in_postgres(pg: &postgres_server::PgServer, domain: &str) -> bool {
    let sql = format!("SELECT count(*) FROM sts_policy_cache WHERE domain = '{domain}'");
    pg.psql(&sql).trim() == "1"
}

#[test]
fn s6_two_daemons_on_one_postgres_fetch_once_and_survive_its_restart_under_load() {
    let Some(mut pg) = postgres_or_skip("s6_two_daemons_on_one_postgres") else {
        return;
    };
    let world = world();
    let yaml = config(&format!(
        "  type: postgres\n  options:\n    dsn: \"{}\"\n    timeout: 1\n",
        pg.dsn()
    ));
    let (a, _b) = two_daemons_share(&world, "fleet-postgres", &yaml, &pg, in_postgres);
    // Stopped (fast shutdown) and started again on the same port and data.
    let (answered, failed) = outage_under_load(
        &world,
        &a,
        "postgres",
        &mut pg,
        postgres_server::PgServer::stop,
        postgres_server::PgServer::run,
        in_postgres,
    );
    eprintln!(
        "postgres stopped and started: {answered} requests answered under load, {failed} \
         failed reads counted"
    );
}

// ---------------------------------------------------------------------------------------------
// SQLite faults.

fn sqlite_cache(file: &Path) -> String {
    // The busy timeout (cache.options.timeout) below the client's store timeout (2 s), so that
    // a locked file is seen as such.
    format!(
        "  type: sqlite\n  options:\n    filename: \"{}\"\n    timeout: 0.3\n",
        file.display()
    )
}

fn sqlite_has(file: &Path, domain: &str) -> bool {
    let conn = rusqlite::Connection::open(file).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row(
        "SELECT count(*) FROM sts_policy_cache WHERE domain = ?1",
        [domain],
        |r| r.get::<_, i64>(0),
    )
    .unwrap()
        == 1
}

/// The daemon on the SQLite file `db` fetches a policy (written), then `fault` puts the file
/// in a fault (and returns what lifts it): under load the daemon answers every request from
/// memory in time, a new domain is looked up and its write counted `put` `result` and logged;
/// lifted, the next fetch is written again. The daemon, stopped with SIGTERM, exits cleanly.
fn sqlite_fault(
    test: &str,
    db: &Path,
    result: &str,
    fault: impl FnOnce() -> Box<dyn FnOnce()>,
) -> u64 {
    let world = world();
    let dir = scratch_dir(test);
    let mut d = start(&world, &dir, "a", &config(&sqlite_cache(db)));
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    wait_until("the policy in the file", LOG_WAIT, || {
        sqlite_has(db, "enforce.test")
    });

    let lift = fault();
    let load = Load::start(d.addr(), "postfix enforce.test", ENFORCE_REPLY);
    assert_eq!(ask_in_time(d.addr(), "postfix testing.test"), "NOTFOUND ");
    let metrics = d.metrics.unwrap();
    wait_until(&format!("the write counted {result}"), LOG_WAIT, || {
        store_ops(metrics, "sqlite", "put", result) >= 1.0
    });
    assert!(
        d.wait_for(|l| l.contains("MTA-STS policy store error") && l.contains("put"))
            .is_some(),
        "{:?}",
        d.lines
    );
    let answered = load.finish(test);
    lift();

    assert_eq!(ask_in_time(d.addr(), "postfix none.test"), "NOTFOUND ");
    wait_until("none.test in the file", LOG_WAIT, || {
        sqlite_has(db, "none.test")
    });
    assert!(!sqlite_has(db, "testing.test"));
    assert_eq!(ask_in_time(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(world.fetches(POLICY_HOST), 1);
    d.signal("TERM");
    assert!(d.wait_for(|l| l.contains("stopped")).is_some());
    let (status, lines) = d.wait();
    assert!(status.success(), "{lines:?}");
    answered
}

#[test]
fn s3_daemon_on_an_sqlite_file_locked_by_another_process_answers_and_counts() {
    let test = "fleet-sqlite-locked";
    let dir = scratch_dir(test);
    let db = dir.join("cache.db");
    let answered = sqlite_fault(test, &db, "unavailable", || {
        // Another process holds the write lock (an open EXCLUSIVE transaction).
        let locker = rusqlite::Connection::open(&db).unwrap();
        locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        Box::new(move || locker.execute_batch("ROLLBACK").unwrap())
    });
    eprintln!("sqlite locked: {answered} requests answered under load");
}

/// A tmpfs of 256 KiB (the file, its 32 KiB WAL index and its WAL fit) mounted on a directory, unmounted (lazily if busy) on drop.
struct TinyTmpfs(PathBuf);

impl TinyTmpfs {
    /// Mounts it; `None` (the test skipped) when this process may not mount, unless
    /// `MTA_STS_REQUIRE_ROOT_MOUNT=1` or CI, when the test fails.
    fn mount(dir: PathBuf) -> Option<Self> {
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = rustix::process::geteuid().is_root()
            && Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
        if mounted {
            return Some(Self(dir));
        }
        assert!(
            !mta_sts_testkit::must_not_skip("MTA_STS_REQUIRE_ROOT_MOUNT"),
            "cannot mount a tmpfs (not root, or mount refused) and MTA_STS_REQUIRE_ROOT_MOUNT=1 \
             (or CI)"
        );
        eprintln!("\n** SKIPPED: cannot mount a tmpfs (run as root for the full-disk test).\n");
        None
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Fills the file system of `dir` with a file until it has no room left; the file's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = [0u8; 512];
    loop {
        match f.write_all(&block).and_then(|()| f.sync_all()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    path
}

#[test]
fn s3_daemon_on_a_full_disk_answers_from_memory_and_counts_the_refusal() {
    let test = "fleet-sqlite-full";
    let Some(mount) = TinyTmpfs::mount(scratch_dir(test).join("tmpfs")) else {
        return;
    };
    let db = mount.0.join("cache.db");
    let answered = sqlite_fault(test, &db, "refused", || {
        let filler = fill(&mount.0);
        // Room again.
        Box::new(move || std::fs::remove_file(&filler).unwrap())
    });
    drop(mount);
    eprintln!("sqlite on a full disk: {answered} requests answered under load");
}
