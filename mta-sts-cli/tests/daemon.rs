//! `mta-sts daemon` end to end: the binary, a testkit world, socketmap over TCP and unix
//! sockets, signals.

mod daemon_support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;

use daemon_support::{
    Daemon, ENFORCE_REPLY, ask, ask_one, ask_stream, ask_unix, netstring, read_reply, scratch_dir,
    try_read_reply, world,
};
use mta_sts_testkit::{Http, RecordType};

const TCP: &str = "port: 0\ndefault_zone:\n  timeout: 2\n";

#[test]
fn answers_enforce_testing_none_no_policy_and_failing_domains_like_postfix_mta_sts_resolver() {
    let world = world();
    let dir = scratch_dir("kinds");
    let d = Daemon::start(&world, &dir, TCP);
    let replies = ask(
        d.addr(),
        &[
            "postfix enforce.test",
            "postfix testing.test",
            "postfix none.test",
            "postfix nopolicy.test",
            "postfix servfail.test",
            "postfix httpsdown.test",
            // Postfix's other key forms.
            "postfix [enforce.test]:25",
            "postfix ENFORCE.test.",
            "postfix .enforce.test",
            "postfix [192.0.2.1]",
        ],
    );
    assert_eq!(
        replies,
        [
            ENFORCE_REPLY,
            "NOTFOUND ",
            "NOTFOUND ",
            "NOTFOUND ",
            "NOTFOUND ",
            "NOTFOUND ",
            ENFORCE_REPLY,
            ENFORCE_REPLY,
            "NOTFOUND ",
            "NOTFOUND ",
        ]
    );
}

#[test]
fn strict_testing_zone_is_selected_by_the_map_name() {
    let world = world();
    let dir = scratch_dir("zones");
    let d = Daemon::start(
        &world,
        &dir,
        "port: 0\nzones:\n  strict:\n    strict_testing: true\n  nosni:\n    require_sni: false\n",
    );
    let replies = ask(
        d.addr(),
        &[
            "postfix testing.test",
            "strict testing.test",
            "strict none.test",
            "nosni enforce.test",
        ],
    );
    assert_eq!(
        replies,
        [
            "NOTFOUND ",
            "OK secure match=mx.testing.test servername=hostname",
            "NOTFOUND ",
            "OK secure match=mx1.enforce.test:.pool.enforce.test",
        ]
    );
}

#[test]
fn tlsrpt_zone_adds_the_postfix_3_10_policy_attributes() {
    let world = world();
    let dir = scratch_dir("tlsrpt");
    let d = Daemon::start(&world, &dir, "port: 0\ndefault_zone:\n  tlsrpt: true\n");
    assert_eq!(
        ask_one(d.addr(), "postfix enforce.test"),
        "OK secure match=mx1.enforce.test:.pool.enforce.test servername=hostname \
         policy_type=sts policy_domain=enforce.test \
         mx_host_pattern=mx1.enforce.test mx_host_pattern=*.pool.enforce.test \
         { policy_string = mx: mx1.enforce.test } { policy_string = mx: *.pool.enforce.test } \
         { policy_string = version: STSv1 } { policy_string = mode: enforce } \
         { policy_string = max_age: 86400 }"
    );
}

#[test]
fn defer_on_dns_failure_answers_temp_for_servfail() {
    let world = world();
    let dir = scratch_dir("defer");
    let d = Daemon::start(
        &world,
        &dir,
        "port: 0\nzones:\n  defer:\n    defer_on_dns_failure: true\n",
    );
    let replies = ask(
        d.addr(),
        &[
            "defer servfail.test",
            "postfix servfail.test",
            "defer nopolicy.test",
        ],
    );
    assert!(replies[0].starts_with("TEMP "), "{replies:?}");
    assert!(replies[0].contains("SERVFAIL"), "{replies:?}");
    assert_eq!(replies[1..], ["NOTFOUND ", "NOTFOUND "]);
}

#[test]
fn unix_socket_gets_its_mode_answers_and_is_removed_on_sigterm() {
    let world = world();
    let dir = scratch_dir("unix");
    let socket = dir.join("mta-sts.sock");
    let d = Daemon::start(
        &world,
        &dir,
        &format!("path: {}\nmode: 0660\n", socket.display()),
    );
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    assert_eq!(
        ask_unix(&socket, &["postfix enforce.test", "postfix none.test"]),
        [ENFORCE_REPLY, "NOTFOUND "]
    );
    d.signal("TERM");
    let (status, lines) = d.wait();
    assert!(status.success(), "{status:?} {lines:?}");
    assert!(!socket.exists(), "the socket file is removed on exit");
}

#[test]
fn a_stale_unix_socket_file_is_replaced() {
    let world = world();
    let dir = scratch_dir("stale");
    let socket = dir.join("mta-sts.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let _d = Daemon::start(&world, &dir, &format!("path: {}\n", socket.display()));
    assert_eq!(
        ask_unix(&socket, &["postfix enforce.test"]),
        [ENFORCE_REPLY]
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let world = world();
    let dir = scratch_dir("pipeline");
    let d = Daemon::start(&world, &dir, TCP);
    let kinds = [
        ("postfix enforce.test", ENFORCE_REPLY),
        ("postfix nopolicy.test", "NOTFOUND "),
        ("postfix testing.test", "NOTFOUND "),
        ("postfix [198.51.100.7]:25", "NOTFOUND "),
        ("nonsense", "PERM request is not \"<map name> <key>\""),
    ];
    let requests: Vec<&str> = (0..500).map(|i| kinds[i % kinds.len()].0).collect();
    let want: Vec<&str> = (0..500).map(|i| kinds[i % kinds.len()].1).collect();
    assert_eq!(ask(d.addr(), &requests), want);
}

#[test]
fn concurrent_requests_for_a_new_domain_share_one_query_and_one_fetch() {
    let world = world();
    let dir = scratch_dir("single-flight");
    let d = Daemon::start(&world, &dir, TCP);
    let addr = d.addr();
    let threads: Vec<_> = (0..32)
        .map(|_| std::thread::spawn(move || ask_one(addr, "postfix enforce.test")))
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), ENFORCE_REPLY);
    }
    assert_eq!(world.queries("_mta-sts.enforce.test", RecordType::Txt), 1);
    assert_eq!(world.fetches("mta-sts.enforce.test"), 1);
}

#[test]
fn a_thousand_concurrent_connections_are_answered() {
    let world = world();
    let dir = scratch_dir("thousand");
    let d = Daemon::start(&world, &dir, TCP);
    // All open at once, then each asks, then each reads.
    let mut conns: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(d.addr()).expect("connect"))
        .collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let domain = if i % 2 == 0 {
            "enforce.test"
        } else {
            "none.test"
        };
        c.write_all(&netstring(&format!("postfix {domain}")))
            .unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        c.set_read_timeout(Some(daemon_support::LOG_WAIT)).unwrap();
        let want = if i % 2 == 0 {
            ENFORCE_REPLY
        } else {
            "NOTFOUND "
        };
        assert_eq!(read_reply(c), want, "connection {i}");
    }
}

#[test]
fn a_client_that_does_not_read_its_replies_does_not_hold_up_others() {
    let world = world();
    let dir = scratch_dir("slow");
    let d = Daemon::start(&world, &dir, TCP);
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);

    // Pipeline requests and never read: the daemon's replies fill the socket buffers until it
    // can neither write nor read this connection. Stop when our own writes would block.
    let mut slow = TcpStream::connect(d.addr()).unwrap();
    slow.set_nonblocking(true).unwrap();
    let batch: Vec<u8> = (0..1000)
        .flat_map(|_| netstring("postfix enforce.test"))
        .collect();
    let mut sent = 0usize;
    'fill: loop {
        let mut at = 0;
        while at < batch.len() {
            match slow.write(&batch[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break 'fill,
                Err(e) => panic!("write: {e}"),
            }
        }
        sent += 1;
        assert!(sent < 100_000, "the daemon kept reading without writing");
    }

    // Everyone else is served, over new and existing connections.
    assert_eq!(
        ask(d.addr(), &["postfix enforce.test", "postfix none.test"]),
        [ENFORCE_REPLY, "NOTFOUND "]
    );
    // The slow client still gets correct replies once it reads.
    slow.set_nonblocking(false).unwrap();
    slow.set_read_timeout(Some(daemon_support::LOG_WAIT))
        .unwrap();
    for _ in 0..100 {
        assert_eq!(read_reply(&mut slow), ENFORCE_REPLY);
    }
}

#[test]
fn oversize_and_malformed_requests_get_perm_and_a_close_and_the_daemon_goes_on() {
    let world = world();
    let dir = scratch_dir("hostile");
    let d = Daemon::start(&world, &dir, TCP);
    for garbage in [
        b"100001:".to_vec(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        b"5:abcdeX".to_vec(),
        vec![0xff; 64],
    ] {
        let mut s = TcpStream::connect(d.addr()).unwrap();
        s.set_read_timeout(Some(daemon_support::LOG_WAIT)).unwrap();
        s.write_all(&garbage).unwrap();
        let reply = read_reply(&mut s);
        assert!(reply.starts_with("PERM netstring"), "{reply}");
        assert_eq!(try_read_reply(&mut s), None, "then the daemon closes");
    }
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
}

#[test]
fn sighup_reload_changes_an_answer_and_keeps_connections() {
    let world = world();
    let dir = scratch_dir("reload");
    let mut d = Daemon::start(&world, &dir, TCP);
    let mut conn = TcpStream::connect(d.addr()).unwrap();
    conn.set_read_timeout(Some(daemon_support::LOG_WAIT))
        .unwrap();
    assert_eq!(
        ask_stream(&mut conn, &["postfix testing.test"]),
        ["NOTFOUND "]
    );

    let line = d.reload("port: 0\ndefault_zone:\n  timeout: 2\n  strict_testing: true\n");
    assert!(line.contains("configuration reloaded"), "{line}");
    // port 0 again: the listener is rebound, so the new address comes in the log.
    let new_addr = d
        .lines
        .iter()
        .rev()
        .find_map(|l| l.split("listening on tcp ").nth(1))
        .map(|a| a.trim().parse().unwrap())
        .unwrap();
    assert_eq!(
        ask_one(new_addr, "postfix testing.test"),
        "OK secure match=mx.testing.test servername=hostname"
    );
    // The connection opened before the reload gets the new answers too.
    assert_eq!(
        ask_stream(&mut conn, &["postfix testing.test"]),
        ["OK secure match=mx.testing.test servername=hostname"]
    );
    // The cache survived the reload: no new fetch.
    assert_eq!(world.fetches("mta-sts.testing.test"), 1);

    // A broken file is refused and the running configuration stays.
    let line = d.reload("port: [\n");
    assert!(line.contains("reload failed"), "{line}");
    assert_eq!(
        ask_stream(&mut conn, &["postfix testing.test"]),
        ["OK secure match=mx.testing.test servername=hostname"]
    );
}

#[test]
fn sigterm_answers_what_was_received_closes_connections_and_exits_0() {
    let world = world();
    let dir = scratch_dir("term");
    let mut d = Daemon::start(&world, &dir, "port: 0\nshutdown_timeout: 30\n");
    let mut conn = TcpStream::connect(d.addr()).unwrap();
    conn.set_read_timeout(Some(daemon_support::LOG_WAIT))
        .unwrap();
    assert_eq!(
        ask_stream(&mut conn, &["postfix enforce.test"]),
        [ENFORCE_REPLY]
    );
    d.signal("TERM");
    assert!(d.wait_for(|l| l.contains("shutting down")).is_some());
    // The idle connection is closed by the daemon, well before shutdown_timeout.
    assert_eq!(try_read_reply(&mut conn), None);
    let (status, lines) = d.wait();
    assert!(status.success(), "{status:?}");
    assert!(lines.iter().any(|l| l.contains("stopped")), "{lines:?}");
}

/// The operator's report: on SIGTERM, a connection with 1,000 pipelined requests got 128
/// answers (those under way) and the other 872 were dropped, although the daemon had received
/// them.
#[test]
fn sigterm_answers_all_1000_pipelined_requests_received_then_closes() {
    let world = world();
    world.set_http("enforce.test", Http::StallAfterHeaders);
    let dir = scratch_dir("term-pipelined");
    let mut d = Daemon::start(
        &world,
        &dir,
        "port: 0\nshutdown_timeout: 60\ndefault_zone:\n  timeout: 60\n",
    );
    let mut conn = TcpStream::connect(d.addr()).unwrap();
    conn.set_read_timeout(Some(daemon_support::LOG_WAIT))
        .unwrap();
    let wire: Vec<u8> = (0..1000)
        .flat_map(|_| netstring("postfix enforce.test"))
        .collect();
    conn.write_all(&wire).unwrap();
    // The first request's fetch is under way: none is answered before SIGTERM (the replies
    // come in order), 128 are taken and the rest wait in the daemon's buffers.
    while world.stalled() == 0 {
        std::thread::yield_now();
    }
    d.signal("TERM");
    assert!(d.wait_for(|l| l.contains("shutting down")).is_some());
    world.release_stalls();
    let mut answered = 0;
    while let Some(reply) = try_read_reply(&mut conn) {
        assert_eq!(reply, ENFORCE_REPLY, "reply {answered}");
        answered += 1;
    }
    eprintln!("SIGTERM with 1,000 pipelined requests received: {answered} answered");
    assert_eq!(answered, 1000, "every request received is answered");
    let (status, lines) = d.wait();
    assert!(status.success(), "{status:?} {lines:?}");
}

#[test]
fn cache_file_keeps_policies_across_restarts() {
    let world = world();
    let dir = scratch_dir("file-cache");
    let cache = dir.join("cache.json");
    let yaml = format!(
        "port: 0\ncache:\n  type: file\n  options:\n    path: {}\n",
        cache.display()
    );
    let d = Daemon::start(&world, &dir, &yaml);
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    d.signal("TERM");
    let (status, _) = d.wait();
    assert!(status.success());
    assert!(cache.exists());

    // The policy host is down now; the restarted daemon answers from the file.
    world.set_http("enforce.test", Http::Status(503));
    let d = Daemon::start(&world, &dir, &yaml);
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(world.fetches("mta-sts.enforce.test"), 1);
}

#[test]
fn cache_grace_zero_picks_up_a_new_policy_id_at_the_next_request() {
    let world = world();
    let dir = scratch_dir("grace");
    let d = Daemon::start(&world, &dir, "port: 0\ncache_grace: 0\n");
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    world.update("enforce.test", |dom| {
        dom.policy_mx(["mx2.enforce.test"]).txt_id("2")
    });
    // With cache_grace 0 every request re-checks the TXT id first: the new id is fetched.
    let reply = ask_one(d.addr(), "postfix enforce.test");
    assert_eq!(
        reply,
        "OK secure match=mx2.enforce.test servername=hostname"
    );
    assert_eq!(world.fetches("mta-sts.enforce.test"), 2);
    assert_eq!(world.queries("_mta-sts.enforce.test", RecordType::Txt), 2);
}

#[test]
fn within_cache_grace_a_cached_policy_is_answered_without_dns() {
    let world = world();
    let dir = scratch_dir("grace-default");
    let d = Daemon::start(&world, &dir, TCP);
    for _ in 0..5 {
        assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    }
    assert_eq!(world.queries("_mta-sts.enforce.test", RecordType::Txt), 1);
    assert_eq!(world.fetches("mta-sts.enforce.test"), 1);
}

#[test]
fn metrics_listener_exports_the_adapter_and_daemon_metrics() {
    let world = world();
    let dir = scratch_dir("metrics");
    let d = Daemon::start(&world, &dir, "port: 0\nmetrics:\n  port: 0\n");
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    let metrics = d.metrics.expect("the metrics address in the log");
    let mut s = TcpStream::connect(metrics).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    for want in [
        "mta_sts_daemon_requests_total{reply=\"ok\"} 2",
        "mta_sts_policy_fetch_total{result=\"success\"} 1",
        "mta_sts_cache_size 1",
        "mta_sts_daemon_connections",
    ] {
        assert!(body.contains(want), "{want} missing in\n{body}");
    }
    let mut s = TcpStream::connect(metrics).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut other = String::new();
    s.read_to_string(&mut other).unwrap();
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
}

#[test]
fn an_unusable_configuration_exits_2_and_names_the_key() {
    let world = world();
    let dir = scratch_dir("bad-config");
    let config = dir.join("bad.yml");
    std::fs::write(&config, "port: 0\ndefault_zone:\n  strict_testing: maybe\n").unwrap();
    let d = Daemon::spawn(&world, &dir, &config);
    let (status, lines) = d.wait();
    assert_eq!(status.code(), Some(2), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("default_zone.strict_testing")),
        "{lines:?}"
    );
}

#[test]
fn unix_socket_connection_is_served_like_tcp() {
    let world = world();
    let dir = scratch_dir("unix-pipeline");
    let socket = dir.join("s");
    let _d = Daemon::start(&world, &dir, &format!("path: {}\n", socket.display()));
    let s = UnixStream::connect(&socket).unwrap();
    let requests: Vec<&str> = (0..300)
        .map(|i| {
            if i % 3 == 0 {
                "postfix enforce.test"
            } else {
                "postfix nopolicy.test"
            }
        })
        .collect();
    let replies = ask_stream(s, &requests);
    for (i, r) in replies.iter().enumerate() {
        let want = if i % 3 == 0 {
            ENFORCE_REPLY
        } else {
            "NOTFOUND "
        };
        assert_eq!(r, want, "reply {i}");
    }
}

/// A daemon with one request whose policy fetch is stalled (headers sent, body held until
/// `world.release_stalls()`), then SIGTERM; returns once the daemon says it is shutting down.
fn shutdown_during_a_stalled_fetch(
    name: &str,
    shutdown_timeout: &str,
) -> (mta_sts_testkit::World, Daemon, TcpStream) {
    let world = world();
    world.set_http("enforce.test", Http::StallAfterHeaders);
    let dir = scratch_dir(name);
    let mut d = Daemon::start(
        &world,
        &dir,
        &format!("port: 0\nshutdown_timeout: {shutdown_timeout}\ndefault_zone:\n  timeout: 60\n"),
    );
    let mut conn = TcpStream::connect(d.addr()).unwrap();
    conn.set_read_timeout(Some(daemon_support::LOG_WAIT))
        .unwrap();
    conn.write_all(&netstring("postfix enforce.test")).unwrap();
    // The fetch is under way (its headers were sent) when SIGTERM comes.
    while world.stalled() == 0 {
        std::thread::yield_now();
    }
    d.signal("TERM");
    assert!(d.wait_for(|l| l.contains("shutting down")).is_some());
    (world, d, conn)
}

#[test]
fn sigterm_lets_a_lookup_under_way_finish_and_answers_it() {
    let (world, d, mut conn) = shutdown_during_a_stalled_fetch("drain", "60");
    world.release_stalls();
    assert_eq!(read_reply(&mut conn), ENFORCE_REPLY);
    assert_eq!(try_read_reply(&mut conn), None);
    let (status, lines) = d.wait();
    assert!(status.success(), "{status:?} {lines:?}");
}

#[test]
fn sigterm_gives_up_on_connections_after_shutdown_timeout() {
    let (world, mut d, mut conn) = shutdown_during_a_stalled_fetch("drain-timeout", "0.2");
    assert!(
        d.wait_for(|l| l.contains("shutdown_timeout expired"))
            .is_some(),
        "{:?}",
        d.lines
    );
    let (status, _) = d.wait();
    assert!(status.success());
    // The connection was closed without a reply.
    assert_eq!(try_read_reply(&mut conn), None);
    world.release_stalls();
}

#[test]
fn idle_connections_are_closed_after_idle_timeout() {
    let world = world();
    let dir = scratch_dir("idle");
    let d = Daemon::start(&world, &dir, "port: 0\nidle_timeout: 0.2\n");
    let mut conn = TcpStream::connect(d.addr()).unwrap();
    conn.set_read_timeout(Some(daemon_support::LOG_WAIT))
        .unwrap();
    assert_eq!(ask_stream(&mut conn, &["postfix none.test"]), ["NOTFOUND "]);
    assert_eq!(try_read_reply(&mut conn), None, "closed by the daemon");
}

#[test]
fn beyond_max_connections_a_new_connection_waits_while_every_connection_is_busy() {
    let world = world();
    // Three domains whose fetches stall: three connections, each with a request under way.
    let stalled = [
        ("enforce.test", ENFORCE_REPLY),
        ("testing.test", "NOTFOUND "),
        ("none.test", "NOTFOUND "),
    ];
    for (domain, _) in stalled {
        assert!(world.set_http(domain, Http::StallAfterHeaders));
    }
    let dir = scratch_dir("max-connections");
    let d = Daemon::start(
        &world,
        &dir,
        "port: 0\nmax_connections: 3\ndefault_zone:\n  timeout: 60\n",
    );
    let mut busy: Vec<TcpStream> = stalled
        .iter()
        .map(|(domain, _)| {
            let mut c = TcpStream::connect(d.addr()).unwrap();
            c.set_read_timeout(Some(daemon_support::LOG_WAIT)).unwrap();
            c.write_all(&netstring(&format!("postfix {domain}")))
                .unwrap();
            c
        })
        .collect();
    while world.stalled() < stalled.len() {
        std::thread::yield_now();
    }
    let mut newcomer = TcpStream::connect(d.addr()).unwrap();
    newcomer.write_all(&netstring("postfix 192.0.2.1")).unwrap();
    // Not served while no connection is idle (a bounded wait: a pass proves nothing on a slow
    // machine, a failure is a real failure).
    newcomer
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let err = newcomer.read(&mut byte).expect_err("no reply yet");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    // Once the busy ones are answered, the first to be idle is closed to make room.
    world.release_stalls();
    newcomer
        .set_read_timeout(Some(daemon_support::LOG_WAIT))
        .unwrap();
    assert_eq!(read_reply(&mut newcomer), "NOTFOUND ");
    for (c, (domain, reply)) in busy.iter_mut().zip(stalled) {
        assert_eq!(read_reply(c), reply, "{domain}");
    }
    let mut closed = 0;
    for c in &mut busy {
        let _ = c.write_all(&netstring("postfix 192.0.2.2"));
        match try_read_reply(c) {
            Some(reply) => assert_eq!(reply, "NOTFOUND "),
            None => closed += 1,
        }
    }
    assert_eq!(closed, 1, "one connection made room for the new one");
}
