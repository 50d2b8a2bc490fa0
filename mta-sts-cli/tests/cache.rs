//! `mta-sts cache` (S10, the operator's cache tools) on stores prepared by the tests: an SQLite
//! file written through the store crate (and a hostile row written with SQLite itself), the
//! daemon's snapshot file, and `refresh` against a loopback testkit world.

mod common;

use std::time::SystemTime;

use common::{TempDir, assert_usage_errors, ca_file, run};
use mta_sts_core::{SnapshotEntry, UnixTime};
use mta_sts_net::{PolicyStore, StoredPolicy};
use mta_sts_store::sqlite::SqliteStore;
use mta_sts_testkit::{Domain, World};

const ENFORCE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx1.fresh.example\r\nmx: *.mx.fresh.example\r\nmax_age: 604800\r\n";
const TESTING: &str = "version: STSv1\r\nmode: testing\r\nmx: mx.old.example\r\nmax_age: 86400\r\n";

/// The fields of an entry in `list --json`.
const LIST_FIELDS: [&str; 9] = [
    "domain", "expires", "fetched", "fresh", "id", "max_age", "mode", "source", "error",
];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An SQLite store in a temporary directory with a fresh enforce entry and an expired testing
/// one; the directory, the file's `--store` argument and the store.
fn sqlite_store() -> (TempDir, String, SqliteStore) {
    let dir = TempDir::new("cache");
    let path = dir.0.join("cache.db");
    let store = SqliteStore::open(&path).expect("open the store");
    let fresh = StoredPolicy::new(
        "fresh.example",
        "20240101",
        UnixTime::from_secs(now() - 60),
        ENFORCE,
    );
    let old = StoredPolicy::new(
        "old.example",
        "1",
        UnixTime::from_secs(1_600_000_000),
        TESTING,
    );
    futures_lite::future::block_on(async {
        store.put(&fresh).await.unwrap();
        store.put(&old).await.unwrap();
    });
    let arg = format!("sqlite:{}", path.display());
    (dir, arg, store)
}

fn get(store: &SqliteStore, domain: &str) -> Option<StoredPolicy> {
    futures_lite::future::block_on(store.get(domain)).expect("get")
}

fn sorted_keys(v: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    keys
}

#[test]
fn s10_list_shows_each_entry_with_mode_and_expiry() {
    let (_dir, store, _s) = sqlite_store();
    let r = run(&["cache", "--store", &store, "list"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let line = |d: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(d))
            .unwrap_or_else(|| panic!("no line for {d}: {}", r.stdout))
            .to_owned()
    };
    let fresh = line("fresh.example");
    assert!(
        fresh.contains("20240101") && fresh.contains("enforce"),
        "{fresh}"
    );
    assert!(
        fresh.contains("sqlite") && !fresh.contains("expired"),
        "{fresh}"
    );
    let old = line("old.example");
    assert!(old.contains("testing"), "{old}");
    // fetched 2020-09-13T12:26:40Z, max_age one day
    assert!(old.contains("2020-09-13T12:26:40Z"), "{old}");
    assert!(
        old.contains("2020-09-14T12:26:40Z") && old.contains("(expired)"),
        "{old}"
    );
    assert!(
        r.stdout.contains("2 entries (0 unreadable)"),
        "{}",
        r.stdout
    );
}

#[test]
fn s10_list_json_has_the_documented_fields() {
    let (_dir, store, _s) = sqlite_store();
    let r = run(&["cache", "list", "--store", &store, "--json"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["store"], store.as_str());
    let entries = v["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    let mut want: Vec<String> = LIST_FIELDS.iter().map(|s| s.to_string()).collect();
    want.sort();
    for e in entries {
        assert_eq!(sorted_keys(e), want, "{e}");
    }
    let fresh = entries
        .iter()
        .find(|e| e["domain"] == "fresh.example")
        .unwrap();
    assert_eq!(fresh["id"], "20240101");
    assert_eq!(fresh["mode"], "enforce");
    assert_eq!(fresh["max_age"], 604800);
    assert_eq!(fresh["fresh"], true);
    assert_eq!(fresh["source"], "sqlite");
    assert!(fresh["error"].is_null());
    let old = entries
        .iter()
        .find(|e| e["domain"] == "old.example")
        .unwrap();
    assert_eq!(old["fetched"], "2020-09-13T12:26:40Z");
    assert_eq!(old["expires"], "2020-09-14T12:26:40Z");
    assert_eq!(old["fresh"], false);
}

#[test]
fn s10_show_prints_one_entry_and_its_policy() {
    let (_dir, store, _s) = sqlite_store();
    let r = run(&["cache", "--store", &store, "show", "Fresh.Example."]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("  mode:    enforce\n"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("  mx:      mx1.fresh.example, *.mx.fresh.example\n")
    );
    assert!(r.stdout.contains("(fresh)"), "{}", r.stdout);
    assert!(r.stdout.contains("    max_age: 604800\n"), "{}", r.stdout);

    let r = run(&[
        "cache",
        "--store",
        &store,
        "show",
        "fresh.example",
        "--json",
    ]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(
        v["mx"],
        serde_json::json!(["mx1.fresh.example", "*.mx.fresh.example"])
    );
    assert!(v["policy"].as_str().unwrap().contains("mode: enforce"));
    assert_eq!(v["fresh"], true);

    let r = run(&["cache", "--store", &store, "show", "absent.example"]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("absent.example: no entry"),
        "{}",
        r.stdout
    );
}

#[test]
fn s10_purge_one_then_all_with_confirmation() {
    let (_dir, store, s) = sqlite_store();
    let r = run(&["cache", "--store", &store, "purge", "old.example"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(get(&s, "old.example").is_none());
    assert!(get(&s, "fresh.example").is_some());
    // Nothing left to remove: exit 1.
    let r = run(&["cache", "--store", &store, "purge", "old.example"]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    // --all without --yes asks; no answer (standard input is empty) removes nothing.
    let r = run(&["cache", "--store", &store, "purge", "--all"]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("not confirmed"), "{}", r.stderr);
    assert!(get(&s, "fresh.example").is_some());
    let r = run(&["cache", "--store", &store, "purge", "--all", "--yes"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("1 entries removed"), "{}", r.stdout);
    assert!(get(&s, "fresh.example").is_none());
}

#[test]
fn s10_hostile_row_is_listed_as_unreadable_and_purged() {
    let (dir, store, s) = sqlite_store();
    let conn = rusqlite::Connection::open(dir.0.join("cache.db")).unwrap();
    conn.execute(
        "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES \
         ('hostile.example', 1700000000, 'x', '{\"mx\": [\"a\"'), \
         ('types.example', 'yesterday', 5, x'00ff'), \
         (x'ff00', 1, 'x', '{}')",
        [],
    )
    .unwrap();
    drop(conn);
    let r = run(&["cache", "--store", &store, "list"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("hostile.example") && l.contains("unreadable")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("4 entries (2 unreadable)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("1 more rows without a readable domain"),
        "{}",
        r.stdout
    );

    let r = run(&["cache", "--store", &store, "list", "--json"]);
    let v = r.json();
    let hostile = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["domain"] == "types.example")
        .expect("the hostile row is listed");
    assert!(hostile["mode"].is_null() && hostile["fresh"].is_null());
    assert!(
        hostile["error"].as_str().unwrap().contains("ts"),
        "{hostile}"
    );
    assert_eq!(v["unreadable_keys"], 1);

    let r = run(&["cache", "--store", &store, "show", "hostile.example"]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("unreadable"), "{}", r.stdout);

    let r = run(&["cache", "--store", &store, "purge", "--all", "--yes"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("4 entries removed"), "{}", r.stdout);
    assert!(get(&s, "fresh.example").is_none());
}

/// The world's policy of enforce.example under id 20240101, and a store holding an older policy
/// under the same id (the domain changed its policy without a new id).
fn refresh_world() -> World {
    World::builder()
        .domain(
            "enforce.example",
            Domain::enforce(["mx1.enforce.example", "*.mx.enforce.example"]).txt_id("20240101"),
        )
        .domain("none.example", Domain::without_sts())
        .build()
        .expect("world")
}

fn refresh(world: &World, store: &str, domain: &str, extra: &[&str]) -> common::Run {
    let ca = ca_file(world);
    let resolver = world.dns_addr().to_string();
    let https = world.https_port().to_string();
    let mut args = vec![
        "cache",
        "--store",
        store,
        "refresh",
        domain,
        "--resolver",
        &resolver,
        "--ca-file",
        ca.0.to_str().unwrap(),
        "--https-port",
        &https,
        "--timeout",
        "5",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn s10_refresh_writes_the_fetched_policy_even_with_the_same_id() {
    let w = refresh_world();
    let (_dir, store, s) = sqlite_store();
    let before = now() - 3600;
    let stale = StoredPolicy::new(
        "enforce.example",
        "20240101",
        UnixTime::from_secs(before),
        TESTING,
    );
    futures_lite::future::block_on(s.put(&stale)).unwrap();

    let r = refresh(&w, &store, "enforce.example", &["--json"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["changed"], true);
    assert_eq!(v["mode"], "enforce");
    assert_eq!(v["previous"]["mode"], "testing");

    let got = get(&s, "enforce.example").expect("an entry");
    assert_eq!(got.id, "20240101");
    assert!(got.fetched_at.as_secs() > before);
    assert!(got.policy.contains("mode: enforce"), "{}", got.policy);
    assert!(
        got.policy.contains("mx: mx1.enforce.example"),
        "{}",
        got.policy
    );
    assert!(!got.policy.contains("mx.old.example"), "{}", got.policy);

    // Again at once (same second, same policy): still written, nothing changed.
    let r = refresh(&w, &store, "enforce.example", &[]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("the same policy as stored"),
        "{}",
        r.stdout
    );
    // The other entries are untouched.
    assert!(get(&s, "fresh.example").is_some());
}

#[test]
fn s10_refresh_without_a_policy_leaves_the_store_alone() {
    let w = refresh_world();
    let (_dir, store, s) = sqlite_store();
    let r = refresh(&w, &store, "none.example", &[]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("left as it is"), "{}", r.stdout);
    assert!(get(&s, "none.example").is_none());
}

fn snapshot_file(dir: &TempDir) -> String {
    let path = dir.0.join("cache.json");
    let t = UnixTime::from_secs(now() - 10);
    let snapshot = mta_sts_core::Snapshot::new(vec![
        SnapshotEntry::new("fresh.example", "20240101", t, t, ENFORCE),
        SnapshotEntry::new(
            "bad.example",
            "7",
            t,
            t,
            "version: STSv1\r\nmode: sometimes\r\n",
        ),
    ]);
    mta_sts_net::save_snapshot(&path, &snapshot).unwrap();
    path.display().to_string()
}

#[test]
fn s10_daemon_snapshot_file_is_read_only() {
    let dir = TempDir::new("cache-file");
    let path = snapshot_file(&dir);
    let store = format!("file:{path}");
    let r = run(&["cache", "--store", &store, "list", "--json"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v = r.json();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["mode"], "enforce");
    assert_eq!(entries[0]["source"], "file");
    assert!(
        entries[1]["error"].as_str().unwrap().contains("not valid"),
        "{v}"
    );
    let r = run(&["cache", "--store", &store, "show", "fresh.example"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let r = run(&["cache", "--store", &store, "purge", "fresh.example"]);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("read only"), "{}", r.stderr);
    let before = std::fs::read(&path).unwrap();
    let r = run(&["cache", "--store", &store, "purge", "--all", "--yes"]);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn s10_the_daemon_configuration_names_the_store() {
    let dir = TempDir::new("cache-config");
    let path = snapshot_file(&dir);
    let config = dir.path("mta-sts-daemon.yml");
    std::fs::write(
        &config,
        format!("cache:\n  type: file\n  options:\n    path: {path}\n"),
    )
    .unwrap();
    let r = run(&["cache", "--config", &config, "list"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("fresh.example"), "{}", r.stdout);

    // The in-memory cache of a running daemon is not reachable from outside (yet).
    std::fs::write(&config, "cache:\n  type: internal\n").unwrap();
    let r = run(&["cache", "list", "-c", &config]);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--store"), "{}", r.stderr);
}

#[test]
fn s10_usage_errors() {
    let dir = TempDir::new("cache-usage");
    let db = format!("sqlite:{}", dir.path("c.db"));
    assert_usage_errors(&[
        &["cache", "--store", "mysql://h/db", "list"],
        &["cache", "--store", "sqlite:", "list"],
        &["cache", "--store", &db, "purge"],
        &["cache", "--store", &db, "purge", "a.example", "--all"],
        &["cache", "--store", &db, "show", "not a domain"],
        &["cache", "--store", &db, "--config", "x.yml", "list"],
        &["cache", "--store", &db],
    ]);
    // A missing SQLite file is not created by a read.
    let r = run(&["cache", "--store", &db, "list"]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("no such file"), "{}", r.stderr);
    assert!(!dir.0.join("c.db").exists());
}

#[test]
fn s10_the_daemon_configuration_names_an_sqlite_store() {
    let (dir, _store, _s) = sqlite_store();
    let config = dir.path("mta-sts-daemon.yml");
    let db = dir.path("cache.db");
    std::fs::write(
        &config,
        format!("cache:\n  type: sqlite\n  options:\n    filename: {db}\n"),
    )
    .unwrap();
    let r = run(&["cache", "-c", &config, "list", "--json"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["entries"].as_array().unwrap().len(), 2);
    let r = run(&["cache", "-c", &config, "purge", "old.example"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
}

// The store crate's Redis test server (std only), shared by path.
#[path = "../../mta-sts-store/tests/support/redis_server.rs"]
mod redis_server;

#[test]
fn s10_list_show_purge_on_redis() {
    if !redis_server::redis_or_skip("s10_list_show_purge_on_redis") {
        return;
    }
    let server = redis_server::RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = mta_sts_store::redis::RedisStore::connect(&url).unwrap();
    let fresh = StoredPolicy::new(
        "fresh.example",
        "20240101",
        UnixTime::from_secs(now() - 60),
        ENFORCE,
    );
    rt.block_on(store.put(&fresh)).unwrap();
    // Another program's key in the same database is listed as unreadable or left out, never a
    // crash.
    server.raw(&[b"SET", b"other.example", b"not a sorted set"]);

    let r = run(&["cache", "--store", &url, "list", "--json"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v = r.json();
    let e = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["domain"] == "fresh.example")
        .expect("listed");
    assert_eq!(e["mode"], "enforce");
    assert_eq!(e["source"], "redis");
    let r = run(&["cache", "--store", &url, "show", "fresh.example"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let r = run(&["cache", "--store", &url, "show", "other.example"]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("unreadable"), "{}", r.stdout);
    let r = run(&["cache", "--store", &url, "purge", "fresh.example"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(rt.block_on(store.get("fresh.example")).unwrap().is_none());
}
