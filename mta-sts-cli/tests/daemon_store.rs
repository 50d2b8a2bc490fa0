//! The daemon on a shared policy store (S7, S1, S2 end to end): Debian's default configuration
//! (`cache.type: sqlite`) starts and answers, two daemons share one SQLite file, and
//! postfix-mta-sts-resolver's own cache file is read as it is.

mod daemon_support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use daemon_support::*;
use mta_sts_net::PolicyStore;

/// postfix-mta-sts-resolver's `config_examples/mta-sts-daemon.yml.sqlite`, Debian's default
/// `/etc/mta-sts-daemon.yml`, with the test's port and file.
fn debian_default(db: &Path) -> String {
    format!(
        "host: 127.0.0.1
port: 0
reuse_port: true
shutdown_timeout: 20
# tlsrpt: true
cache:
  type: sqlite
  options:
    filename: \"{}\"
default_zone:
  strict_testing: false
  timeout: 4
zones:
  myzone:
    strict_testing: false
    timeout: 4
",
        db.display()
    )
}

/// The store the daemon's configuration names, opened by the test itself.
fn open(yaml: &str) -> (tokio::runtime::Runtime, Arc<dyn PolicyStore>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = mta_sts_postfix::config::parse(yaml).unwrap();
    let store = rt
        .block_on(mta_sts_postfix::store::open_store(&cfg.cache.backend))
        .unwrap()
        .expect("a store");
    (rt, store)
}

const POLICY_HOST: &str = "mta-sts.enforce.test";

#[test]
fn s7_debians_default_config_starts_and_answers_from_its_sqlite_file() {
    let world = world();
    let dir = scratch_dir("store-debian");
    let db = dir.join("cache.db");
    let yaml = debian_default(&db);
    let mut d = Daemon::start(&world, &dir, &yaml);
    assert!(
        d.lines
            .iter()
            .any(|l| l.contains("the sqlite store is open")),
        "{:?}",
        d.lines
    );
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(ask_one(d.addr(), "myzone enforce.test"), ENFORCE_REPLY);
    // The fetched policy is written to the file (in the background: waited for).
    let (rt, store) = open(&yaml);
    wait_until("the policy in the file", LOG_WAIT, || {
        rt.block_on(store.get("enforce.test")).unwrap().is_some()
    });
    let entry = rt.block_on(store.get("enforce.test")).unwrap().unwrap();
    assert_eq!(entry.id, "1");
    assert!(
        entry.policy.contains("mx1.enforce.test"),
        "{}",
        entry.policy
    );
    assert!(!d.lines.iter().any(|l| l.contains("WARN")), "{:?}", d.lines);
    d.signal("TERM");
    let _ = d.wait_for(|l| l.contains("stopped"));
    assert!(d.wait().0.success());
}

#[test]
fn s1_two_daemons_on_one_sqlite_file_fetch_a_policy_once() {
    let world = world();
    let dir = scratch_dir("store-two");
    let db = dir.join("cache.db");
    let yaml = debian_default(&db);
    let a_dir = dir.join("a");
    let b_dir = dir.join("b");
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let a = Daemon::start(&world, &a_dir, &yaml);
    let b = Daemon::start(&world, &b_dir, &yaml);
    assert_eq!(ask_one(a.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(world.fetches(POLICY_HOST), 1);
    let (rt, store) = open(&yaml);
    wait_until("A's policy in the file", LOG_WAIT, || {
        rt.block_on(store.get("enforce.test")).unwrap().is_some()
    });
    // B has never seen the domain: it answers from the file, without a fetch of its own.
    assert_eq!(ask_one(b.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(ask_one(b.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(world.fetches(POLICY_HOST), 1, "B fetched the policy again");
    // And the other way round, for a domain B fetches first.
    assert_eq!(ask_one(b.addr(), "postfix testing.test"), "NOTFOUND ");
    wait_until("B's policy in the file", LOG_WAIT, || {
        rt.block_on(store.get("testing.test")).unwrap().is_some()
    });
    let before = world.fetches("mta-sts.testing.test");
    assert_eq!(before, 1);
    assert_eq!(ask_one(a.addr(), "postfix testing.test"), "NOTFOUND ");
    assert_eq!(world.fetches("mta-sts.testing.test"), before);
    eprintln!(
        "two daemons, one SQLite file: {} policy fetches for 2 domains asked of both",
        world.total_fetches()
    );
}

#[test]
fn s7_a_store_that_cannot_be_opened_stops_the_start_only_with_defer() {
    let world = world();
    let dir = scratch_dir("store-unopenable");
    // A directory that does not exist: SQLite cannot create the file.
    let db = dir.join("missing/cache.db");
    let local = debian_default(&db);
    let mut d = Daemon::start(&world, &dir, &local);
    assert!(
        d.lines.iter().any(|l| l.contains("WARN")
            && l.contains("cannot open the sqlite store, going on without it")),
        "{:?}",
        d.lines
    );
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    d.signal("TERM");
    let _ = d.wait_for(|l| l.contains("stopped"));
    assert!(d.wait().0.success());

    let defer = local.replace(
        "  type: sqlite\n",
        "  type: sqlite\n  on_store_error: defer\n",
    );
    let d = Daemon::spawn(&world, &dir, &write_config(&dir, &defer));
    let (status, lines) = d.wait();
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("ERROR")
            && l.contains("cannot open the sqlite store (cache.on_store_error: defer")),
        "{lines:?}"
    );
}

#[test]
fn s7_unknown_cache_options_are_logged_and_the_daemon_starts() {
    let world = world();
    let dir = scratch_dir("store-warn");
    let yaml = debian_default(&dir.join("cache.db")).replace(
        "    filename:",
        "    threads: 4\n    colour: blue\n    filename:",
    );
    let d = Daemon::start(&world, &dir, &yaml);
    for key in [
        "cache.options.threads: ignored",
        "cache.options.colour: unknown",
    ] {
        assert!(
            d.lines
                .iter()
                .any(|l| l.contains("WARN") && l.contains(key)),
            "{key}: {:?}",
            d.lines
        );
    }
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
}

/// Writes one entry with postfix-mta-sts-resolver's own `SqliteCache`: argv is the file, the
/// domain, the fetch time, the id; the policy text on stdin.
const PEER_WRITE: &str = r#"
import asyncio, sys
from postfix_mta_sts_resolver.sqlite_cache import SqliteCache
from postfix_mta_sts_resolver.base_cache import CacheEntry
from postfix_mta_sts_resolver.utils import parse_mta_sts_policy
async def main(path, domain, ts, pol_id, text):
    cache = SqliteCache(path, threads=1)
    await cache.setup()
    pol = parse_mta_sts_policy(text)
    pol['max_age'] = int(pol['max_age'])
    await cache.set(domain, CacheEntry(ts, pol_id, pol))
    await cache.teardown()
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.stdin.read()))
"#;

#[test]
fn s2_the_peers_existing_cache_file_is_read_as_it_is() {
    let python = match std::env::var("MTA_STS_RESOLVER_PYTHON") {
        Ok(p) if Path::new(&p).exists() => p,
        _ => {
            assert!(
                !mta_sts_testkit::must_not_skip("MTA_STS_REQUIRE_RESOLVER"),
                "MTA_STS_RESOLVER_PYTHON is not set to postfix-mta-sts-resolver's interpreter"
            );
            eprintln!("skipped: MTA_STS_RESOLVER_PYTHON not set");
            return;
        }
    };
    let world = world();
    let dir = scratch_dir("store-peer");
    let db = dir.join("cache.db");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The world's policy for enforce.test, with its TXT id, fetched by the peer a minute ago.
    let policy = "version: STSv1\nmode: enforce\nmx: mx1.enforce.test\nmx: *.pool.enforce.test\nmax_age: 86400\n";
    let mut child = Command::new(&python)
        .args(["-c", PEER_WRITE])
        .arg(&db)
        .args(["enforce.test", &(now - 60).to_string(), "1"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run the peer's python");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), policy.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());

    let d = Daemon::start(&world, &dir, &debian_default(&db));
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(
        world.fetches(POLICY_HOST),
        0,
        "the policy was fetched, not read from the peer's file"
    );
}
