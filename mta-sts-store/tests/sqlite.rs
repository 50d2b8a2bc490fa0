//! The SQLite store in postfix-mta-sts-resolver's layout (S5), with the peer's own `SqliteCache`
//! writing and reading the same file, and hostile rows and a locked file (S3).

#![cfg(feature = "sqlite")]

mod peer;
mod support {
    pub(crate) mod notes;
}

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use mta_sts_core::{Policy, UnixTime};
use mta_sts_net::{PolicyStore, StoreErrorKind, StoredPolicy};
use mta_sts_store::sqlite::SqliteStore;

const ENFORCE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n";
const TESTING: &str =
    "version: STSv1\r\nmode: testing\r\nmx: mx.example.org\r\nmax_age: 86400\r\nx-owner: Zoë\r\n";
const NONE: &str = "version: STSv1\r\nmode: none\r\nmax_age: 3600\r\n";

/// A fresh directory for one test's cache file.
fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mta-sts-store-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn entry(domain: &str, id: &str, ts: u64, text: &str) -> StoredPolicy {
    StoredPolicy::new(domain, id, UnixTime::from_secs(ts), text)
}

fn canonical(text: &str) -> String {
    Policy::parse(text).unwrap().to_string()
}

#[test]
fn s5_open_creates_the_peers_schema_in_wal_mode() {
    let d = dir("schema");
    let path = d.join("cache.db");
    SqliteStore::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let mut stmt = conn
        .prepare("SELECT type, name, tbl_name FROM sqlite_master ORDER BY name")
        .unwrap();
    let objects: Vec<(String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want = [
        ("table", "proactive_fetch_ts", "proactive_fetch_ts"),
        ("table", "sts_policy_cache", "sts_policy_cache"),
        ("index", "sts_policy_domain", "sts_policy_cache"),
        ("index", "sts_policy_domain_ts", "sts_policy_cache"),
    ];
    for w in want {
        assert!(
            objects
                .iter()
                .any(|(t, n, tb)| (t.as_str(), n.as_str(), tb.as_str()) == w),
            "{w:?} missing from {objects:?}"
        );
    }
    // Opening again (the peer's file, or ours) keeps what is there.
    SqliteStore::open(&path).unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}

/// Writes entries with the peer's SqliteCache: stdin is a JSON list of [domain, ts, id, text].
const PEER_WRITE: &str = r#"
import asyncio, json, sys
from postfix_mta_sts_resolver.sqlite_cache import SqliteCache
from postfix_mta_sts_resolver.base_cache import CacheEntry
from postfix_mta_sts_resolver.utils import parse_mta_sts_policy
async def main(path, rows):
    cache = SqliteCache(path, threads=1)
    await cache.setup()
    for domain, ts, pol_id, text in rows:
        pol = parse_mta_sts_policy(text)
        pol['max_age'] = int(pol['max_age'])
        await cache.set(domain, CacheEntry(ts, pol_id, pol))
    await cache.teardown()
asyncio.run(main(sys.argv[1], json.load(sys.stdin)))
"#;

/// Reads entries with the peer's SqliteCache: for each [domain, text] on stdin, what its get
/// returns and whether the policy equals its own parse of the text; then all rows of its scan.
const PEER_READ: &str = r#"
import asyncio, json, sys
from postfix_mta_sts_resolver.sqlite_cache import SqliteCache
from postfix_mta_sts_resolver.utils import parse_mta_sts_policy
async def main(path, rows):
    cache = SqliteCache(path, threads=1)
    await cache.setup()
    got = []
    for domain, text in rows:
        e = await cache.get(domain)
        pol = parse_mta_sts_policy(text)
        pol['max_age'] = int(pol['max_age'])
        got.append([e.ts, e.pol_id, e.pol_body == pol, e.pol_body['mode']])
    token, scanned = None, []
    while True:
        token, part = await cache.scan(token, 2)
        scanned += [d for d, _ in part]
        if token is None:
            break
    await cache.teardown()
    json.dump([got, sorted(scanned)], sys.stdout)
asyncio.run(main(sys.argv[1], json.load(sys.stdin)))
"#;

fn peer_script(py: &str, script: &str, path: &Path, input: &str) -> String {
    let script = format!(
        "import sys; sys.argv = ['x', {:?}]\n{script}",
        path.to_str().unwrap()
    );
    peer::run(py, &script, input)
}

#[test]
fn s5_we_read_what_the_peer_writes() {
    let Some(py) = peer::python() else { return };
    let d = dir("peer-writes");
    let path = d.join("cache.db");
    let rows = serde_json::json!([
        ["example.com", 1_700_000_000u64, "id-é1", ENFORCE],
        ["example.org", 1_700_000_100u64, "2", TESTING],
        ["example.net", 1_700_000_200u64, "3", NONE],
    ]);
    peer_script(&py, PEER_WRITE, &path, &rows.to_string());
    let store = SqliteStore::open(&path).unwrap();
    let want = [
        entry("example.com", "id-é1", 1_700_000_000, &canonical(ENFORCE)),
        entry("example.org", "2", 1_700_000_100, &canonical(TESTING)),
        entry("example.net", "3", 1_700_000_200, &canonical(NONE)),
    ];
    for w in &want {
        assert_eq!(block_on(store.get(&w.domain)).unwrap().as_ref(), Some(w));
    }
    assert_eq!(
        block_on(store.get("Example.COM.")).unwrap().as_ref(),
        Some(&want[0])
    );
    assert_eq!(block_on(store.list(100)).unwrap(), want.to_vec());
    assert_eq!(block_on(store.list(2)).unwrap(), want[..2].to_vec());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn s5_the_peer_reads_what_we_write() {
    let Some(py) = peer::python() else { return };
    let d = dir("we-write");
    let path = d.join("cache.db");
    let store = SqliteStore::open(&path).unwrap();
    block_on(store.put(&entry("example.com", "id-é1", 1_700_000_000, ENFORCE))).unwrap();
    block_on(store.put(&entry("example.org", "2", 1_700_000_100, TESTING))).unwrap();
    block_on(store.put(&entry("example.net", "3", 1_700_000_200, NONE))).unwrap();
    let input = serde_json::json!([
        ["example.com", ENFORCE],
        ["example.org", TESTING],
        ["example.net", NONE]
    ]);
    let out = peer_script(&py, PEER_READ, &path, &input.to_string());
    /// ts, pol_id, whether the policy is the peer's own parse of the text, mode.
    type Got = (u64, String, bool, String);
    let (got, scanned): (Vec<Got>, Vec<String>) = serde_json::from_str(&out).unwrap();
    assert_eq!(
        got,
        vec![
            (1_700_000_000, "id-é1".into(), true, "enforce".into()),
            (1_700_000_100, "2".into(), true, "testing".into()),
            (1_700_000_200, "3".into(), true, "none".into()),
        ]
    );
    assert_eq!(scanned, ["example.com", "example.net", "example.org"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn s5_a_row_is_replaced_only_by_a_newer_fetch() {
    let d = dir("newer");
    let store = SqliteStore::open(d.join("cache.db")).unwrap();
    let first = entry("example.com", "1", 1000, ENFORCE);
    block_on(store.put(&first)).unwrap();
    let get = || block_on(store.get("example.com")).unwrap().unwrap();
    block_on(store.put(&entry("example.com", "0", 999, TESTING))).unwrap();
    assert_eq!(get().id, "1", "an older fetch replaced a newer one");
    block_on(store.put(&entry("example.com", "x", 1000, TESTING))).unwrap();
    assert_eq!(get().id, "1", "a fetch of the same second replaced the row");
    block_on(store.put(&entry("example.com", "2", 1001, TESTING))).unwrap();
    assert_eq!(get(), entry("example.com", "2", 1001, &canonical(TESTING)));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn s5_newer_rule_holds_between_the_peer_and_us() {
    let Some(py) = peer::python() else { return };
    let d = dir("newer-peer");
    let path = d.join("cache.db");
    let store = SqliteStore::open(&path).unwrap();
    block_on(store.put(&entry("example.com", "ours", 2000, ENFORCE))).unwrap();
    // The peer's older fetch does not replace ours; its newer one does, and ours then not.
    let rows = serde_json::json!([["example.com", 1999, "theirs-old", TESTING]]);
    peer_script(&py, PEER_WRITE, &path, &rows.to_string());
    assert_eq!(
        block_on(store.get("example.com")).unwrap().unwrap().id,
        "ours"
    );
    let rows = serde_json::json!([["example.com", 2001, "theirs", TESTING]]);
    peer_script(&py, PEER_WRITE, &path, &rows.to_string());
    block_on(store.put(&entry("example.com", "ours-old", 2000, ENFORCE))).unwrap();
    let got = block_on(store.get("example.com")).unwrap().unwrap();
    assert_eq!(
        got,
        entry("example.com", "theirs", 2001, &canonical(TESTING))
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn s5_list_and_delete() {
    let d = dir("list-delete");
    let store = SqliteStore::open(d.join("cache.db")).unwrap();
    assert_eq!(block_on(store.list(10)).unwrap(), vec![]);
    for (i, dom) in ["a.example", "b.example", "c.example"].iter().enumerate() {
        block_on(store.put(&entry(dom, "1", 100 + i as u64, NONE))).unwrap();
    }
    let domains = |v: Vec<StoredPolicy>| v.into_iter().map(|e| e.domain).collect::<Vec<_>>();
    assert_eq!(
        domains(block_on(store.list(10)).unwrap()),
        ["a.example", "b.example", "c.example"]
    );
    assert_eq!(
        domains(block_on(store.list(0)).unwrap()),
        Vec::<String>::new()
    );
    assert!(block_on(store.delete("b.example")).unwrap());
    assert!(!block_on(store.delete("b.example")).unwrap());
    assert_eq!(block_on(store.get("b.example")).unwrap(), None);
    assert_eq!(
        domains(block_on(store.list(usize::MAX)).unwrap()),
        ["a.example", "c.example"]
    );
    assert_eq!(store.name(), "sqlite");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn s3_hostile_rows_are_corrupt_left_out_and_overwritten() {
    let d = dir("hostile");
    let path = d.join("cache.db");
    let store = SqliteStore::open(&path).unwrap();
    block_on(store.put(&entry("good.example", "1", 100, NONE))).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let body = r#"{"mx": [], "version": "STSv1", "mode": "none", "max_age": 60}"#;
    let giant = format!(r#"{{"mx": [], "x": "{}"}}"#, "a".repeat(4 << 20));
    let ins = |domain: &str,
               ts: rusqlite::types::Value,
               id: rusqlite::types::Value,
               b: rusqlite::types::Value| {
        conn.execute(
            "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![domain, ts, id, b],
        )
        .unwrap();
    };
    use rusqlite::types::Value::{Blob, Integer, Null, Real, Text};
    let hostile = [
        (
            "truncated.example",
            Integer(100),
            Text("1".into()),
            Text(body[..30].into()),
        ),
        (
            "notjson.example",
            Integer(100),
            Text("1".into()),
            Text("garbage".into()),
        ),
        (
            "wrongtype.example",
            Integer(100),
            Text("1".into()),
            Text(r#"{"mx": "a", "version": "STSv1", "mode": "none", "max_age": 60}"#.into()),
        ),
        (
            "badpolicy.example",
            Integer(100),
            Text("1".into()),
            Text(r#"{"mx": [], "version": "STSv1", "mode": "enforce", "max_age": 60}"#.into()),
        ),
        (
            "tstext.example",
            Text("soon".into()),
            Text("1".into()),
            Text(body.into()),
        ),
        (
            "tsreal.example",
            Real(1.5),
            Text("1".into()),
            Text(body.into()),
        ),
        (
            "tsneg.example",
            Integer(-5),
            Text("1".into()),
            Text(body.into()),
        ),
        ("tsnull.example", Null, Text("1".into()), Text(body.into())),
        (
            "idblob.example",
            Integer(100),
            Blob(vec![0xff, 0]),
            Text(body.into()),
        ),
        (
            "idgiant.example",
            Integer(100),
            Text("i".repeat(100_000)),
            Text(body.into()),
        ),
        (
            "bodyblob.example",
            Integer(100),
            Text("1".into()),
            Blob(body.as_bytes().to_vec()),
        ),
        ("bodynull.example", Integer(100), Text("1".into()), Null),
        ("giant.example", Integer(100), Text("1".into()), Text(giant)),
        // A hostile far-future ts must not pin the row forever.
        (
            "future.example",
            Integer(i64::MAX),
            Text("1".into()),
            Text("[".into()),
        ),
    ];
    for (domain, ts, id, b) in hostile.iter().cloned() {
        ins(domain, ts, id, b);
    }
    // Another program's row without a usable domain.
    conn.execute(
        "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES (x'ff00', 1, '1', ?1)",
        [body],
    )
    .unwrap();
    for (domain, ..) in &hostile {
        let e = block_on(store.get(domain)).expect_err(domain);
        assert_eq!(e.kind(), &StoreErrorKind::Corrupt, "{domain}: {e}");
        assert!(e.detail().contains(domain), "{e}");
    }
    // list leaves the unreadable rows out.
    let listed = block_on(store.list(100)).unwrap();
    assert_eq!(
        listed,
        vec![entry("good.example", "1", 100, &canonical(NONE))]
    );
    // A later put overwrites each, whatever its ts.
    for (domain, ..) in &hostile {
        block_on(store.put(&entry(domain, "new", 50, ENFORCE))).unwrap();
        assert_eq!(
            block_on(store.get(domain)).unwrap(),
            Some(entry(domain, "new", 50, &canonical(ENFORCE)))
        );
    }
    assert_eq!(block_on(store.list(100)).unwrap().len(), 1 + hostile.len());
    std::fs::remove_dir_all(&d).unwrap();
}

/// A process holding an exclusive transaction on the file, until its stdin closes.
const HOLD_LOCK: &str = r#"
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES ('lock.example', 1, '1', '{}')")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"#;

#[test]
fn s3_a_file_locked_by_another_process_is_unavailable_within_the_busy_timeout() {
    let py = std::env::var("MTA_STS_RESOLVER_PYTHON").unwrap_or_else(|_| "python3".into());
    let d = dir("locked");
    let path = d.join("cache.db");
    let timeout = Duration::from_millis(300);
    let store = SqliteStore::open_with_busy_timeout(&path, timeout).unwrap();
    block_on(store.put(&entry("example.com", "1", 100, NONE))).unwrap();
    let mut child = match Command::new(&py)
        .args(["-c", HOLD_LOCK, path.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !mta_sts_testkit::must_not_skip("MTA_STS_REQUIRE_RESOLVER"),
                "{py}: {e}"
            );
            return;
        }
    };
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    let start = Instant::now();
    let e = block_on(store.put(&entry("example.com", "2", 200, NONE))).unwrap_err();
    let waited = start.elapsed();
    assert_eq!(e.kind(), &StoreErrorKind::Unavailable, "{e}");
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(2),
        "waited {waited:?}"
    );
    eprintln!("put on a locked file: {e} after {waited:?} (busy timeout {timeout:?})");
    // WAL: readers go on while another process writes.
    let start = Instant::now();
    let got = block_on(store.get("example.com")).unwrap().unwrap();
    assert_eq!(got.id, "1");
    eprintln!("get on a locked file: answered after {:?}", start.elapsed());

    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    block_on(store.put(&entry("example.com", "2", 200, NONE))).unwrap();
    assert_eq!(block_on(store.get("example.com")).unwrap().unwrap().id, "2");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn s3_a_file_that_is_not_a_database_is_a_typed_error() {
    let d = dir("notdb");
    let path = d.join("cache.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = SqliteStore::open(&path).unwrap_err();
    assert_eq!(e.kind(), &StoreErrorKind::Corrupt, "{e}");
    let e = SqliteStore::open(d.join("missing-dir/cache.db")).unwrap_err();
    assert_eq!(e.kind(), &StoreErrorKind::Unavailable, "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn s8_sqlite_notes_contract_one_winner_and_hostile_rows() {
    let d = dir("notes");
    let path = d.join("cache.db");
    let store = SqliteStore::open(&path).unwrap();
    block_on(support::notes::contract(store.notes().unwrap(), "sqlite"));
    // Hosts with a connection each on one file: one claim wins.
    let hosts: Vec<Box<dyn support::notes::FleetNotesOwner>> = (0..6)
        .map(|_| {
            Box::new(SqliteStore::open(&path).unwrap()) as Box<dyn support::notes::FleetNotesOwner>
        })
        .collect();
    block_on(support::notes::one_winner(hosts, "sqlite"));
    // Hostile rows: a text expiry is claimable (counts as expired) and a read of it Corrupt; a
    // giant value is not copied out.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO mta_sts_notes (key, value, expires) VALUES ('lock/h.test', 'x', 'soon')",
        [],
    )
    .unwrap();
    let notes = store.notes().unwrap();
    let t = UnixTime::from_secs(1_000);
    let later = UnixTime::from_secs(1_030);
    let e = block_on(notes.read("lock/h.test", t)).unwrap_err();
    assert_eq!(e.kind(), &StoreErrorKind::Corrupt, "{e}");
    assert!(block_on(notes.claim("lock/h.test", "me", t, later)).unwrap());
    conn.execute(
        "INSERT INTO mta_sts_notes (key, value, expires) VALUES ('absent/g.test', ?1, 99999999999)",
        ["x".repeat(1_000_000)],
    )
    .unwrap();
    let e = block_on(notes.read("absent/g.test", t)).unwrap_err();
    assert_eq!(e.kind(), &StoreErrorKind::Corrupt, "{e}");
    // Expired notes are swept by later claims.
    for i in 0..40 {
        block_on(notes.set(&format!("lock/dead{i}.test"), "gone", later)).unwrap();
    }
    let far = UnixTime::from_secs(9_000);
    for i in 0..4 {
        block_on(notes.claim(&format!("lock/live{i}.test"), "h", far, far)).unwrap();
    }
    let dead: i64 = conn
        .query_row(
            "SELECT count(*) FROM mta_sts_notes WHERE key LIKE 'lock/dead%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dead, 0);
    // The peer's tables are untouched by notes.
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM sts_policy_cache", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
    let _ = std::fs::remove_dir_all(&d);
}
