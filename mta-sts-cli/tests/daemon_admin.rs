//! The operator's cache tools on a running daemon (S10), through its admin socket: list, show,
//! purge and refresh on `cache.type: internal`; the socket's permissions (mode, owner, a user
//! who is not let in, a group that is); the Postfix socket never serving admin commands; hostile
//! input on the admin socket; the CLI's fallback when no daemon listens.

mod common;
mod daemon_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Run, run};
use daemon_support::*;
use serde_json::{Value, json};

const ENFORCE_HOST: &str = "mta-sts.enforce.test";

/// A short directory for sockets (a unix socket path has at most 107 bytes), reachable by every
/// user (for the test that runs a command as `nobody`); removed on drop.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mta-sts-admin-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create the socket directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("admin.sock")
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A daemon on TCP with the internal cache and the admin socket at `socket` (`extra` YAML
/// lines added), started and its admin socket open.
fn start(world: &mta_sts_testkit::World, name: &str, socket: &Path, extra: &str) -> Daemon {
    let dir = scratch_dir(name);
    let yaml = format!(
        "host: 127.0.0.1\nport: 0\ncache_grace: 3600\ncache:\n  type: internal\n\
         admin_socket: {}\n{extra}",
        socket.display()
    );
    let mut d = Daemon::start(world, &dir, &yaml);
    d.wait_for(|l| l.contains("admin socket on"))
        .unwrap_or_else(|| panic!("no admin socket: {:?}", d.lines));
    d
}

fn cache(args: &[&str], socket: &Path) -> Run {
    let mut all = vec!["cache"];
    all.extend_from_slice(args);
    let socket = socket.to_str().unwrap();
    all.extend_from_slice(&["--socket", socket]);
    run(&all)
}

fn listed_domains(r: &Run) -> Vec<String> {
    let mut d: Vec<String> = r.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["domain"].as_str().unwrap().to_owned())
        .collect();
    d.sort();
    d
}

/// Sends raw lines on one connection to the admin socket and reads one reply per line.
struct Admin {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Admin {
    fn connect(path: &Path) -> Self {
        let w = UnixStream::connect(path).expect("connect to the admin socket");
        w.set_read_timeout(Some(LOG_WAIT)).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Self { w, r }
    }

    fn send(&mut self, raw: &[u8]) -> Value {
        self.w.write_all(raw).expect("send");
        self.reply().expect("a reply")
    }

    fn reply(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("a JSON reply")),
        }
    }
}

fn error_kind(v: &Value) -> &str {
    assert_eq!(v["ok"], json!(false), "{v}");
    v["error"]["kind"].as_str().expect("an error kind")
}

#[test]
fn s10_list_show_purge_and_refresh_work_on_a_running_daemon_with_the_internal_cache() {
    let world = world();
    let dir = SocketDir::new();
    let socket = dir.socket();
    let d = start(&world, "admin-ops", &socket, "");
    let addr = d.addr();
    assert_eq!(ask_one(addr, "postfix enforce.test"), ENFORCE_REPLY);
    // Mode testing: no TLS requirement for Postfix (NOTFOUND), but the policy is cached.
    let _ = ask_one(addr, "postfix testing.test");
    assert_eq!(world.fetches(ENFORCE_HOST), 1);

    // list: both policies, from the daemon's memory, in the format of the store commands.
    let r = cache(&["list", "--json"], &socket);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(listed_domains(&r), ["enforce.test", "testing.test"]);
    for e in r.json()["entries"].as_array().unwrap() {
        assert_eq!(e["source"], "memory", "{e}");
        assert_eq!(e["id"], "1");
        assert_eq!(e["fresh"], true);
        assert!(e["expires"].is_string() && e["fetched"].is_string(), "{e}");
    }
    let text = cache(&["list"], &socket);
    assert_eq!(text.code, Some(0));
    assert!(text.stdout.contains("enforce.test") && text.stdout.contains("memory"));
    assert!(
        text.stdout.contains("2 entries (0 unreadable) in daemon:"),
        "{}",
        text.stdout
    );
    // With --config naming the admin socket, the CLI uses the running daemon too.
    let config = d.config.to_str().unwrap();
    let via_config = run(&["cache", "list", "--json", "--config", config]);
    assert_eq!(via_config.code, Some(0), "{}", via_config.stderr);
    assert_eq!(
        listed_domains(&via_config),
        ["enforce.test", "testing.test"]
    );

    // show: the fields and the policy text.
    let r = cache(&["show", "enforce.test", "--json"], &socket);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v = r.json();
    assert_eq!(
        (v["mode"].as_str(), v["source"].as_str()),
        (Some("enforce"), Some("memory"))
    );
    assert!(
        v["policy"].as_str().unwrap().contains("mx1.enforce.test"),
        "{v}"
    );
    let r = cache(&["show", "ENFORCE.test."], &socket);
    assert!(
        r.stdout.contains("source:  memory") && r.stdout.contains("policy:"),
        "{}",
        r.stdout
    );
    let r = cache(&["show", "nopolicy.test"], &socket);
    assert_eq!(r.code, Some(1));

    // refresh: the domain changes its policy without a new id. The daemon keeps the old one
    // (the id is unchanged) until the operator refreshes it; the refresh fetches.
    let new_body = "version: STSv1\r\nmode: enforce\r\nmx: mx9.enforce.test\r\nmax_age: 86400\r\n";
    assert!(world.set_policy("enforce.test", new_body));
    assert_eq!(ask_one(addr, "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(world.fetches(ENFORCE_HOST), 1);
    let r = cache(&["refresh", "enforce.test", "--json"], &socket);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(world.fetches(ENFORCE_HOST), 2, "the refresh fetched");
    assert_eq!(
        (v["id"].as_str(), v["changed"].as_bool()),
        (Some("1"), Some(true)),
        "{v}"
    );
    assert!(
        v["policy"].as_str().unwrap().contains("mx9.enforce.test"),
        "{v}"
    );
    assert!(
        v["previous"]["policy"]
            .as_str()
            .unwrap()
            .contains("mx1.enforce.test")
    );
    assert_eq!(
        ask_one(addr, "postfix enforce.test"),
        "OK secure match=mx9.enforce.test servername=hostname"
    );
    // Text output; a domain without a policy leaves the cache as it is (exit 1).
    let r = cache(&["refresh", "enforce.test"], &socket);
    assert_eq!(r.code, Some(0));
    assert!(
        r.stdout.contains("the same policy, fetched again"),
        "{}",
        r.stdout
    );
    assert_eq!(world.fetches(ENFORCE_HOST), 3);
    let r = cache(&["refresh", "nopolicy.test"], &socket);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(r.stdout.contains("no-policy"), "{}", r.stdout);

    // purge one domain: gone from the listing, fetched again by the next request.
    let r = cache(&["purge", "enforce.test"], &socket);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(
        listed_domains(&cache(&["list", "--json"], &socket)),
        ["testing.test"]
    );
    assert_eq!(cache(&["purge", "enforce.test"], &socket).code, Some(1));
    assert!(ask_one(addr, "postfix enforce.test").starts_with("OK secure"));
    assert_eq!(world.fetches(ENFORCE_HOST), 4);

    // purge --all, confirmed by --yes; unconfirmed (no terminal answer), nothing goes.
    let r = cache(&["purge", "--all"], &socket);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        listed_domains(&cache(&["list", "--json"], &socket)).len(),
        2
    );
    let r = cache(&["purge", "--all", "--yes"], &socket);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(listed_domains(&cache(&["list", "--json"], &socket)).is_empty());
    assert_eq!(cache(&["purge", "--all", "--yes"], &socket).code, Some(1));
    assert!(d.lines.iter().all(|l| !l.contains("panic")));
}

#[test]
fn s10_the_admin_socket_is_0600_and_the_postfix_socket_never_serves_admin_commands() {
    let world = world();
    let dir = SocketDir::new();
    let socket = dir.socket();
    let d = start(&world, "admin-mode", &socket, "");
    let m = std::fs::symlink_metadata(&socket).unwrap();
    assert!(m.file_type().is_socket());
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!(m.uid(), rustix::process::getuid().as_raw());
    // Nothing left of the private directory it was made in.
    let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");

    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    // Admin requests on the socketmap socket: raw, and framed as a socketmap request.
    let mut s = std::net::TcpStream::connect(d.addr()).unwrap();
    s.set_read_timeout(Some(LOG_WAIT)).unwrap();
    s.write_all(b"{\"op\":\"purge\",\"all\":true}\n").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(!String::from_utf8_lossy(&got).contains("\"ok\""), "{got:?}");
    for request in [
        "{\"op\":\"purge\",\"all\":true}",
        "postfix {\"op\":\"list\"}",
    ] {
        let reply = ask_one(d.addr(), request);
        assert!(
            !reply.contains("\"ok\"") && !reply.contains("entries"),
            "{reply}"
        );
    }
    // The cache is untouched.
    let r = cache(&["list", "--json"], &socket);
    assert_eq!(listed_domains(&r), ["enforce.test"]);
}

#[test]
fn s10_hostile_input_on_the_admin_socket_gets_typed_errors_and_never_stops_the_daemon() {
    let world = world();
    let dir = SocketDir::new();
    let socket = dir.socket();
    let d = start(&world, "admin-hostile", &socket, "");
    let mut a = Admin::connect(&socket);
    assert_eq!(a.send(b"{\"op\":\"ping\"}\n")["ok"], true);
    let cases: &[(&[u8], &str)] = &[
        (b"{\"op\":\n", "bad_json"),
        (b"\xff\xfe\x00garbage\n", "bad_json"),
        (b"\n", "bad_json"),
        (b"[1,2]\n", "bad_request"),
        (b"{\"domain\":\"enforce.test\"}\n", "bad_request"),
        (b"{\"op\":7}\n", "bad_request"),
        (b"{\"op\":\"nuke\"}\n", "unknown_op"),
        (b"{\"op\":\"show\"}\n", "bad_request"),
        (b"{\"op\":\"show\",\"domain\":5}\n", "bad_request"),
        (
            b"{\"op\":\"refresh\",\"domain\":\"[192.0.2.1]\"}\n",
            "bad_domain",
        ),
        (b"{\"op\":\"purge\",\"domain\":\"a..b\"}\n", "bad_domain"),
    ];
    for (raw, kind) in cases {
        let reply = a.send(raw);
        assert_eq!(
            error_kind(&reply),
            *kind,
            "{:?}: {reply}",
            String::from_utf8_lossy(raw)
        );
    }
    // Deeply nested JSON within the size bound: an error, not a stack overflow.
    let mut deep = "[".repeat(4000).into_bytes();
    deep.push(b'\n');
    assert_eq!(error_kind(&a.send(&deep)), "bad_json");
    // A line over the bound: `too_large`, and the connection is closed.
    let mut big = vec![b'a'; 5000];
    big.push(b'\n');
    assert_eq!(error_kind(&a.send(&big)), "too_large");
    assert!(a.reply().is_none(), "closed after a line too long");

    // At most 4 connections at once: a fifth is told `busy` and closed.
    let mut held: Vec<Admin> = (0..4).map(|_| Admin::connect(&socket)).collect();
    for h in &mut held {
        assert_eq!(h.send(b"{\"op\":\"ping\"}\n")["ok"], true);
    }
    let mut fifth = Admin::connect(&socket);
    let busy = fifth.reply().expect("a busy reply");
    assert_eq!(error_kind(&busy), "busy");
    drop(held.pop());
    wait_until("a place after a connection closed", LOG_WAIT, || {
        let mut a = Admin::connect(&socket);
        a.w.write_all(b"{\"op\":\"ping\"}\n").unwrap();
        a.reply().is_some_and(|v| v["ok"] == true)
    });
    drop(held);
    // The daemon still answers both sockets.
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    let r = cache(&["list", "--json"], &socket);
    assert_eq!(listed_domains(&r), ["enforce.test"]);
}

/// Runs `mta-sts cache list --socket` as uid 65534 with group `gid` (setpriv, as root).
fn list_as_nobody(bin: &Path, socket: &Path, gid: u32) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", &format!("--regid={gid}"), "--clear-groups"])
        .arg(bin)
        .args(["cache", "list", "--socket"])
        .arg(socket)
        .output()
        .expect("run setpriv")
}

#[test]
fn s10_another_user_cannot_use_the_admin_socket_unless_in_its_group() {
    let world = world();
    let dir = SocketDir::new();
    let socket = dir.socket();
    let d = start(&world, "admin-user", &socket, "");
    let m = std::fs::symlink_metadata(&socket).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600);
    assert_eq!(m.uid(), rustix::process::getuid().as_raw());
    if !rustix::process::getuid().is_root() {
        // Without root no other user can be taken on: the mode and owner above are the proof.
        eprintln!("not root: the permission is checked by mode and owner only");
        return;
    }
    // A copy of the binary that every user may run.
    let bin = dir.0.join("mta-sts");
    std::fs::copy(env!("CARGO_BIN_EXE_mta-sts"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = list_as_nobody(&bin, &socket, 65534);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ermission denied"), "{stderr}");
    drop(d);

    // With admin_socket_group, the group's members may use it, and no one else.
    let group = start(
        &world,
        "admin-group",
        &socket,
        "admin_socket_group: 65534\n",
    );
    let m = std::fs::symlink_metadata(&socket).unwrap();
    assert_eq!((m.mode() & 0o777, m.gid()), (0o660, 65534));
    let out = list_as_nobody(&bin, &socket, 65534);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 entries"));
    let out = list_as_nobody(&bin, &socket, 65533);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    drop(group);
}

#[test]
fn s10_the_socket_is_refused_in_an_unsafe_place_and_a_stale_one_is_replaced() {
    let world = world();
    // A stale socket (nothing listens) is replaced.
    let dir = SocketDir::new();
    let socket = dir.socket();
    drop(UnixListener::bind(&socket).unwrap());
    let d = start(&world, "admin-stale", &socket, "");
    assert_eq!(cache(&["list"], &socket).code, Some(0));
    // A second daemon on the same admin socket does not take it over.
    let scratch = scratch_dir("admin-taken");
    let yaml = format!(
        "host: 127.0.0.1\nport: 0\nadmin_socket: {}\n",
        socket.display()
    );
    let (status, lines) = Daemon::spawn(&world, &scratch, &write_config(&scratch, &yaml)).wait();
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("another process listens")),
        "{lines:?}"
    );
    assert_eq!(
        cache(&["list"], &socket).code,
        Some(0),
        "the first one still serves"
    );
    drop(d);

    // A world-writable directory without the sticky bit, and a file that is not a socket.
    let open = SocketDir::new();
    std::fs::set_permissions(&open.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let yaml = format!(
        "host: 127.0.0.1\nport: 0\nadmin_socket: {}\n",
        open.socket().display()
    );
    let (status, lines) = Daemon::spawn(&world, &scratch, &write_config(&scratch, &yaml)).wait();
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("without the sticky bit")),
        "{lines:?}"
    );
    let file = SocketDir::new();
    std::fs::write(file.socket(), "not a socket").unwrap();
    let yaml = format!(
        "host: 127.0.0.1\nport: 0\nadmin_socket: {}\n",
        file.socket().display()
    );
    let (status, lines) = Daemon::spawn(&world, &scratch, &write_config(&scratch, &yaml)).wait();
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("is not a socket")),
        "{lines:?}"
    );
    assert_eq!(
        std::fs::read_to_string(file.socket()).unwrap(),
        "not a socket"
    );
}

#[test]
fn s10_without_a_daemon_the_cli_uses_the_store_or_says_the_daemon_is_not_running() {
    let dir = SocketDir::new();
    let scratch = scratch_dir("admin-fallback");
    // The internal cache: nothing to fall back to.
    let yaml = format!(
        "cache:\n  type: internal\nadmin_socket: {}\n",
        dir.socket().display()
    );
    let config = write_config(&scratch, &yaml);
    let r = run(&["cache", "list", "--config", config.to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("is the daemon running"), "{}", r.stderr);
    // A store: the CLI says so and works on it directly.
    let db = scratch.join("cache.db");
    drop(mta_sts_store::sqlite::SqliteStore::open(&db).unwrap());
    let yaml = format!(
        "cache:\n  type: sqlite\n  options:\n    filename: {}\nadmin_socket: {}\n",
        db.display(),
        dir.socket().display()
    );
    let config = write_config(&scratch, &yaml);
    let r = run(&["cache", "list", "--config", config.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("working on the daemon's store directly"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("0 entries"), "{}", r.stdout);
    // --socket with nothing listening is an error, never a store.
    let r = cache(&["list"], &dir.socket());
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("admin.sock"), "{}", r.stderr);
    // --socket with --store or --config is a usage error.
    common::assert_usage_errors(&[
        &["cache", "list", "--socket", "/x", "--store", "sqlite:/y"],
        &["cache", "list", "--socket", "/x", "--config", "/y"],
    ]);
}

#[test]
fn s10_on_a_daemon_with_a_store_list_shows_both_and_purge_removes_from_both() {
    use mta_sts_net::{PolicyStore, StoredPolicy};
    use mta_sts_store::sqlite::SqliteStore;
    let world = world();
    let dir = SocketDir::new();
    let socket = dir.socket();
    let scratch = scratch_dir("admin-store");
    let db = scratch.join("cache.db");
    let store = SqliteStore::open(&db).unwrap();
    let get = |d: &str| futures_lite::future::block_on(store.get(d)).unwrap();
    // An entry only the store has (another host fetched it).
    let body = "version: STSv1\nmode: testing\nmx: mx.other.test\nmax_age: 86400\n";
    let fetched = mta_sts_core::UnixTime::from(std::time::SystemTime::now());
    let other = StoredPolicy::new("other.test", "7", fetched, body);
    futures_lite::future::block_on(store.put(&other)).unwrap();
    let extra = format!(
        "cache:\n  type: sqlite\n  options:\n    filename: {}\n",
        db.display()
    );
    let yaml = format!(
        "host: 127.0.0.1\nport: 0\nadmin_socket: {}\n{extra}",
        socket.display()
    );
    let mut d = Daemon::start(&world, &scratch, &yaml);
    d.wait_for(|l| l.contains("admin socket on"))
        .expect("the admin socket");
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    wait_until("the fetch in the store", LOG_WAIT, || {
        get("enforce.test").is_some()
    });

    let r = cache(&["list", "--json"], &socket);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v = r.json();
    let mut seen: Vec<(String, String)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("domain"), s("source"))
        })
        .collect();
    seen.sort();
    // The fetch is listed once (memory), the other host's entry from the store.
    assert_eq!(
        seen,
        [
            ("enforce.test".to_owned(), "memory".to_owned()),
            ("other.test".to_owned(), "store".to_owned())
        ]
    );
    let r = cache(&["show", "other.test", "--json"], &socket);
    assert_eq!(r.json()["source"], "store");

    // purge: from memory and from the store, so the next request fetches again.
    let r = cache(&["purge", "enforce.test"], &socket);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("1 removed from the daemon's memory, 1 from its store"),
        "{}",
        r.stdout
    );
    assert!(get("enforce.test").is_none());
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(world.fetches(ENFORCE_HOST), 2);

    // refresh writes the new fetch to the store before it answers.
    let before = get("enforce.test").map(|e| e.fetched_at);
    let r = cache(&["refresh", "enforce.test", "--json"], &socket);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(world.fetches(ENFORCE_HOST), 3);
    assert!(get("enforce.test").is_some_and(|e| Some(e.fetched_at) >= before));

    let r = cache(&["purge", "--all", "--yes"], &socket);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(get("enforce.test").is_none() && get("other.test").is_none());
    assert!(listed_domains(&cache(&["list", "--json"], &socket)).is_empty());
}
