//! The TLSRPT report collector: the record it publishes, what it records of each POST, the
//! scripted statuses, the answers to other paths and methods, the bound on the body, waiting
//! for requests synchronously and as a future, and its threads stopping on drop.

use std::future::Future;
use std::io::{Read, Write};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use mta_sts_testkit::probe::{self, HttpsProbe};
use mta_sts_testkit::{Collector, MAX_POST_BODY, RecordType, World};

const WAIT: Duration = Duration::from_secs(10);

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn probe(world: &World, collector: &Collector) -> HttpsProbe {
    HttpsProbe::new(collector.addr(), Arc::new(world.client_config()))
}

/// Sends `request` (head and body) on a TLS connection to the collector; the status answered.
fn raw(world: &World, collector: &Collector, request: &[u8]) -> u16 {
    let mut s = probe(world, collector).connect(collector.host()).unwrap();
    s.write_all(request).unwrap();
    s.flush().unwrap();
    let mut buf = Vec::new();
    let _ = (&mut s).take(64 * 1024).read_to_end(&mut buf);
    probe::parse_response(&buf).unwrap().status
}

#[test]
fn t13_collector_publishes_its_record_and_resolves() {
    let world = World::builder().build().unwrap();
    let collector = world.collector("Reports.Example.NET").unwrap();
    assert_eq!(collector.host(), "reports.example.net");
    let text = collector.publish("example.com");
    assert_eq!(
        text,
        format!(
            "v=TLSRPTv1; rua=https://reports.example.net:{}/tlsrpt",
            collector.port()
        )
    );
    let txt = probe::lookup(&world, "_smtp._tls.example.com", RecordType::Txt).unwrap();
    assert_eq!(txt.txt(), [text]);
    let a = probe::lookup(&world, "reports.example.net", RecordType::A).unwrap();
    assert_eq!(
        a.of_type(RecordType::A),
        [&mta_sts_testkit::Record::A(std::net::Ipv4Addr::LOCALHOST)]
    );
}

#[test]
fn t13_collector_records_headers_and_gunzips_the_body() {
    let world = World::builder().build().unwrap();
    let collector = world.collector("reports.example.net").unwrap();
    let report = br#"{"organization-name":"test"}"#;
    let body = gzip(report);
    let status = collector
        .post_with(&probe(&world, &collector), "application/tlsrpt+gzip", &body)
        .unwrap();
    assert_eq!(status, 200);
    let posts = collector.wait_posts(1, WAIT);
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(
        (post.method.as_str(), post.path.as_str(), post.sni.as_str()),
        ("POST", "/tlsrpt", "reports.example.net")
    );
    assert_eq!(post.header("Content-Type"), Some("application/tlsrpt+gzip"));
    assert_eq!(
        post.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(post.body, body);
    assert_eq!(post.report.as_deref(), Some(&report[..]));
    assert_eq!(
        post.report_text().unwrap(),
        r#"{"organization-name":"test"}"#
    );
    assert_eq!(post.status, 200);
}

#[test]
fn t13_collector_answers_the_scripted_statuses_then_the_default() {
    let world = World::builder().build().unwrap();
    let collector = world.collector("reports.example.net").unwrap();
    collector.respond([500, 503]);
    collector.respond([200]);
    let p = probe(&world, &collector);
    let post = || {
        collector
            .post_with(&p, "application/tlsrpt+gzip", b"x")
            .unwrap()
    };
    assert_eq!([post(), post(), post(), post()], [500, 503, 200, 200]);
    collector.set_default_status(404);
    assert_eq!(post(), 404);
    let statuses: Vec<u16> = collector.posts().iter().map(|p| p.status).collect();
    assert_eq!(statuses, [500, 503, 200, 200, 404]);
    assert_eq!(collector.count(), 5);
}

#[test]
fn t13_collector_refuses_other_paths_methods_and_oversize_bodies_without_using_the_script() {
    let world = World::builder().build().unwrap();
    let collector = world.collector_at("reports.example.net", "/in").unwrap();
    assert!(collector.uri().ends_with("/in"));
    collector.respond([503]);
    let host = collector.host().to_owned();
    let other_path = format!("POST /tlsrpt HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(raw(&world, &collector, other_path.as_bytes()), 404);
    let get = format!("GET /in HTTP/1.1\r\nHost: {host}\r\n\r\n");
    assert_eq!(raw(&world, &collector, get.as_bytes()), 405);
    let big = format!(
        "POST /in HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
        MAX_POST_BODY + 1
    );
    assert_eq!(raw(&world, &collector, big.as_bytes()), 413);
    let chunked =
        format!("POST /in HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(raw(&world, &collector, chunked.as_bytes()), 411);
    assert_eq!(raw(&world, &collector, b"\x01\x02 nonsense\r\n\r\n"), 400);
    // The script is still there for the first report to the right path.
    let p = probe(&world, &collector);
    assert_eq!(
        collector
            .post_with(&p, "application/tlsrpt+gzip", b"x")
            .unwrap(),
        503
    );
    let posts = collector.wait_posts(6, WAIT);
    let seen: Vec<(&str, u16, usize)> = posts
        .iter()
        .map(|p| (p.method.as_str(), p.status, p.body.len()))
        .collect();
    assert_eq!(
        seen,
        [
            ("POST", 404, 1),
            ("GET", 405, 0),
            ("POST", 413, 0),
            ("POST", 411, 0),
            ("", 400, 0),
            ("POST", 503, 1)
        ]
    );
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this thread until it completes (woken by the collector, never by a timer).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn t13_collector_requests_are_awaited_without_sleeping() {
    let world = World::builder().build().unwrap();
    let collector = world.collector("reports.example.net").unwrap();
    // Nothing yet: the sync wait gives up at its timeout with what it has.
    assert!(
        collector
            .wait_posts(1, Duration::from_millis(50))
            .is_empty()
    );
    let waiting = collector.posts_async(2);
    let p = probe(&world, &collector);
    let uri = collector.uri();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..2 {
                collector
                    .post_with(&p, "application/tlsrpt+gzip", b"x")
                    .unwrap();
            }
        });
        let posts = block_on(waiting);
        assert_eq!(posts.len(), 2, "{uri}");
    });
    // Already there: both waits answer at once.
    assert_eq!(block_on(collector.posts_async(1)).len(), 2);
    assert_eq!(collector.wait_posts(2, Duration::ZERO).len(), 2);
}

#[test]
fn t13_collector_threads_stop_when_it_is_dropped() {
    let world = World::builder().build().unwrap();
    let collector = world.collector("reports.example.net").unwrap();
    let threads = collector.threads();
    let p = probe(&world, &collector);
    // A connection left open, idle, is closed by the drop too.
    let _idle = p.connect(collector.host()).unwrap();
    assert!(threads.live() >= 1);
    drop(collector);
    assert_eq!(threads.live(), 0);
}
