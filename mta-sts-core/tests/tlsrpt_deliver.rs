//! TLSRPT report delivery (REQUIREMENTS.md section J, T8–T10): the HTTPS POST and its response,
//! report mail, and the outbox's schedule, retries, discovery and persistence, in virtual time.
#![cfg(all(feature = "tlsrpt", feature = "wire"))]

use core::time::Duration;

use mta_sts_core::UnixTime;
use mta_sts_core::io::{DnsFailure, FetchFailure, TxtAnswer};
use mta_sts_core::tlsrpt::MAX_URIS;
use mta_sts_core::tlsrpt::{
    DeliveryEvent, DeliveryId, DeliveryIo, DeliveryResult, Outbox, OutboxConfig, OutboxFull,
    OutboxSnapshot, OutboxSnapshotError, PendingReport, PostResponse, ReportPost, is_report_mail,
};
use mta_sts_core::wire::http::{PostProgress, PostResponseParser, USER_AGENT, post_request};

/// 2026-01-01T00:00:00Z and the day's last second.
const DAY_START: UnixTime = UnixTime::from_secs(1_767_225_600);
const DAY_END: UnixTime = UnixTime::from_secs(1_767_311_999);
const MIDNIGHT: UnixTime = UnixTime::from_secs(1_767_312_000);
const HOUR: u64 = 3600;

fn report(domain: &str, id: &str) -> PendingReport {
    PendingReport::new(
        domain,
        "mail.sender.example",
        id,
        DAY_START,
        DAY_END,
        format!("mail.sender.example!{domain}!1767225600!1767311999!{id}.json.gz"),
        vec![0x1f, 0x8b, 8, 0, 1, 2, 3],
    )
}

fn records(txt: &[&str]) -> DeliveryResult {
    DeliveryResult::Discover(Ok(TxtAnswer::Records(
        txt.iter().map(|t| t.as_bytes().to_vec()).collect(),
    )))
}

fn status(code: u16) -> DeliveryResult {
    DeliveryResult::Post(Ok(PostResponse::new(code)))
}

fn config(set: impl FnOnce(&mut OutboxConfig)) -> OutboxConfig {
    let mut config = OutboxConfig::default();
    set(&mut config);
    config
}

fn secs(t: UnixTime) -> u64 {
    t.as_secs()
}

/// An outbox holding `report`, polled to its discovery, which finds `record`; returns the time.
fn discovered(outbox: &mut Outbox, report: PendingReport, record: &str) -> UnixTime {
    outbox.push(report, DAY_END).unwrap();
    let now = outbox.poll_timeout().unwrap();
    let Some((id, DeliveryIo::Discover(_))) = outbox.poll_io(now) else {
        panic!("discovery first")
    };
    assert_eq!(outbox.handle(id, records(&[record]), now), vec![]);
    now
}

fn next_post(outbox: &mut Outbox, now: UnixTime) -> (DeliveryId, ReportPost) {
    match outbox.poll_io(now) {
        Some((id, DeliveryIo::Post(post))) => (id, post),
        other => panic!("expected a POST, got {other:?}"),
    }
}

// ----- T8: the HTTPS POST -----

#[test]
fn t8_post_request_bytes() {
    let post = ReportPost::new(
        "reports.example.net",
        443,
        "/v1/tlsrpt?k=1",
        b"GZIP".to_vec(),
    );
    let expected = format!(
        "POST /v1/tlsrpt?k=1 HTTP/1.1\r\nHost: reports.example.net\r\nUser-Agent: {USER_AGENT}\r\n\
         Content-Type: application/tlsrpt+gzip\r\nContent-Length: 4\r\nConnection: close\r\n\r\nGZIP"
    );
    assert_eq!(String::from_utf8(post.request()).unwrap(), expected);
    assert_eq!(post_request(&post), post.request());
    assert_eq!(post.url, "https://reports.example.net/v1/tlsrpt?k=1");

    let other_port = ReportPost::new("reports.example.net", 8443, "", Vec::new());
    let bytes = String::from_utf8(other_port.request()).unwrap();
    assert!(
        bytes.starts_with("POST / HTTP/1.1\r\nHost: reports.example.net:8443\r\n"),
        "{bytes}"
    );
    assert!(bytes.contains("\r\nContent-Length: 0\r\n"));

    // A hostile path or host from a DNS record cannot add header fields.
    let hostile = ReportPost::new(
        "evil.example\r\nX-A: 1",
        443,
        "/a b\r\nX-Injected: 1",
        Vec::new(),
    );
    let bytes = String::from_utf8(hostile.request()).unwrap();
    assert!(
        bytes.starts_with(
            "POST /a%20b%0D%0AX-Injected:%201 HTTP/1.1\r\nHost: evil.example%0D%0AX-A:%201\r\n"
        ),
        "{bytes}"
    );
    assert_eq!(bytes.matches("\r\n").count(), 7, "{bytes}");
}

#[test]
fn t8_post_response_status_decides() {
    let post = ReportPost::new("reports.example.net", 443, "/", Vec::new());
    for (code, delivered) in [
        (200, true),
        (201, true),
        (202, true),
        (204, true),
        (301, false),
        (302, false),
        (400, false),
        (404, false),
        (413, false),
        (500, false),
        (503, false),
    ] {
        let response = format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nok");
        let parsed = PostResponseParser::parse(&post, response.as_bytes()).unwrap();
        assert_eq!(parsed, PostResponse::new(code));
        assert_eq!(parsed.is_success(), delivered, "{code}");

        // Through the outbox: 2xx delivered, anything else retried.
        let mut outbox = Outbox::new(OutboxConfig::default());
        let now = discovered(
            &mut outbox,
            report("example.net", "r1"),
            "v=TLSRPTv1; rua=https://reports.example.net/",
        );
        let (id, _) = next_post(&mut outbox, now);
        let events = outbox.handle(id, DeliveryResult::Post(Ok(parsed)), now);
        match (&events[..], delivered) {
            ([DeliveryEvent::Delivered { uri, .. }], true) => {
                assert_eq!(uri, "https://reports.example.net/");
                assert!(outbox.is_empty());
            }
            ([DeliveryEvent::Retrying { error, attempt, .. }], false) => {
                assert_eq!(*attempt, 1);
                assert!(error.contains(&code.to_string()), "{error}");
                if (300..400).contains(&code) {
                    assert!(error.contains("not followed"), "{error}");
                }
                assert_eq!(outbox.len(), 1);
            }
            other => panic!("{code}: {other:?}"),
        }
    }
}

#[test]
fn t8_post_response_read_in_any_split_and_without_a_body() {
    let post = ReportPost::new("reports.example.net", 443, "/", Vec::new());
    let responses: [&[u8]; 4] = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.0 500 Oops\r\n\r\nclose-delimited",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ];
    for response in responses {
        let whole = PostResponseParser::parse(&post, response);
        assert!(whole.is_ok(), "{whole:?}");
        for cut in 0..=response.len() {
            let mut parser = PostResponseParser::new(&post);
            let got = match parser.feed(&response[..cut]) {
                PostProgress::Complete(r) => r,
                _ => match parser.feed(&response[cut..]) {
                    PostProgress::Complete(r) => r,
                    _ => parser.finish(),
                },
            };
            assert_eq!(got, whole, "cut at {cut}");
        }
    }
}

#[test]
fn t8_post_response_garbage_and_oversized_body_fail() {
    let mut post = ReportPost::new("reports.example.net", 443, "/", Vec::new());
    post.max_response = 16;
    let protocol = |r: &[u8]| {
        let got = PostResponseParser::parse(&post, r);
        assert!(matches!(got, Err(FetchFailure::Protocol(_))), "{got:?}");
    };
    protocol(b"");
    protocol(b"garbage\r\n\r\n");
    protocol(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n");
    protocol(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"); // closed early
    protocol(b"HTTP/1.1 200 OK\r\nContent-"); // closed inside the head

    let too_large = Err(FetchFailure::BodyTooLarge { limit: 16 });
    // Announced over the cap: decided on the head, before any body byte.
    let mut parser = PostResponseParser::new(&post);
    assert_eq!(
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n"),
        PostProgress::Complete(too_large.clone())
    );
    // Read over the cap, close-delimited or chunked.
    let mut close = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    close.extend_from_slice(&[b'x'; 17]);
    assert_eq!(PostResponseParser::parse(&post, &close), too_large);
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n";
    assert_eq!(PostResponseParser::parse(&post, chunked), too_large);
    // At the cap exactly: read.
    let mut exact = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    exact.extend_from_slice(&[b'x'; 16]);
    assert_eq!(
        PostResponseParser::parse(&post, &exact),
        Ok(PostResponse::new(200))
    );

    // A failed POST is a failure to retry, whatever it is.
    let mut outbox = Outbox::new(OutboxConfig::default());
    let now = discovered(
        &mut outbox,
        report("example.net", "r1"),
        "v=TLSRPTv1; rua=https://reports.example.net/",
    );
    let (id, post) = next_post(&mut outbox, now);
    assert_eq!(post.max_response, OutboxConfig::default().max_response);
    assert_eq!(post.timeout, OutboxConfig::default().post_timeout);
    let events = outbox.handle(id, DeliveryResult::Post(too_large), now);
    assert!(
        matches!(&events[..], [DeliveryEvent::Retrying { error, .. }] if error.contains("over 16 bytes")),
        "{events:?}"
    );
}

// ----- T9: mail -----

#[test]
fn t9_outbox_mails_a_mailto_uri() {
    let mut outbox = Outbox::new(OutboxConfig::default());
    let now = discovered(
        &mut outbox,
        report("example.net", "r1"),
        "v=TLSRPTv1;rua=mailto:tlsrpt@example.net",
    );
    let Some((id, DeliveryIo::Mail(mail))) = outbox.poll_io(now) else {
        panic!("a mail")
    };
    assert_eq!(mail.to, "tlsrpt@example.net");
    assert_eq!(mail.from, "tlsrpt-noreply@mail.sender.example");
    assert_eq!(
        (mail.policy_domain.as_str(), mail.report_id.as_str()),
        ("example.net", "r1")
    );
    assert!(is_report_mail(&mail.message));
    let text = String::from_utf8(mail.message.clone()).unwrap();
    assert!(text.contains("To: <tlsrpt@example.net>\r\n"), "{text}");
    assert!(text.contains("TLS-Required: No\r\n"), "{text}");

    // The MTA would not queue it: retried, with the same message.
    let events = outbox.handle(id, DeliveryResult::Mail(Err("queue full".into())), now);
    let [
        DeliveryEvent::Retrying {
            next, error, uri, ..
        },
    ] = &events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!(uri, "mailto:tlsrpt@example.net");
    assert!(error.contains("queue full"));
    let Some((id, DeliveryIo::Mail(again))) = outbox.poll_io(*next) else {
        panic!("the mail again")
    };
    assert_eq!(again.to, mail.to);
    let events = outbox.handle(id, DeliveryResult::Mail(Ok(())), *next);
    assert!(matches!(&events[..], [DeliveryEvent::Delivered { .. }]));
    assert!(outbox.is_empty());

    // A configured From.
    let config = config(|c| {
        c.from = "postmaster@mail.sender.example".into();
    });
    let mut outbox = Outbox::new(config);
    let now = discovered(
        &mut outbox,
        report("example.net", "r1"),
        "v=TLSRPTv1;rua=mailto:tlsrpt@example.net",
    );
    let Some((_, DeliveryIo::Mail(mail))) = outbox.poll_io(now) else {
        panic!("a mail")
    };
    assert_eq!(mail.from, "postmaster@mail.sender.example");
}

// ----- T10: the schedule -----

#[test]
fn t10_schedule_is_spread_deterministically_after_midnight() {
    let spread = 4 * HOUR;
    let mut slots = Vec::new();
    for n in 0..200 {
        let domain = format!("d{n}.example");
        let mut a = Outbox::new(OutboxConfig::default());
        let mut b = Outbox::new(OutboxConfig::default());
        a.push(report(&domain, "r1"), DAY_END).unwrap();
        b.push(report(&domain, "r1"), DAY_START).unwrap();
        let at = a.poll_timeout().unwrap();
        assert_eq!(Some(at), b.poll_timeout(), "{domain}");
        assert!(
            (secs(MIDNIGHT)..secs(MIDNIGHT) + spread).contains(&secs(at)),
            "{domain}: {at}"
        );
        // Nothing before the slot.
        assert!(
            a.poll_io(at.saturating_sub(Duration::from_secs(1)))
                .is_none()
        );
        assert!(a.poll_io(at).is_some());
        slots.push(secs(at) - secs(MIDNIGHT));
    }
    // Spread over the window: every hour of it is used.
    for hour in 0..4 {
        assert!(
            slots.iter().any(|s| s / HOUR == hour),
            "hour {hour}: {slots:?}"
        );
    }
    // The report id takes part: the same domain's other report has its own slot.
    let at = |id: &str| {
        let mut o = Outbox::new(OutboxConfig::default());
        o.push(report("example.net", id), DAY_END).unwrap();
        o.poll_timeout().unwrap()
    };
    assert!((1..20).any(|n| at(&format!("r{n}")) != at("r0")));

    // Pushed late (the sender was down at midnight): due at once.
    let late = MIDNIGHT.saturating_add(Duration::from_secs(10 * HOUR));
    let mut o = Outbox::new(OutboxConfig::default());
    o.push(report("example.net", "r1"), late).unwrap();
    assert_eq!(o.poll_timeout(), Some(late));

    // No spread: at midnight.
    let mut o = Outbox::new(config(|c| {
        c.spread = Duration::ZERO;
    }));
    o.push(report("example.net", "r1"), DAY_END).unwrap();
    assert_eq!(o.poll_timeout(), Some(MIDNIGHT));
}

#[test]
fn t10_retries_back_off_and_give_up_after_24_hours() {
    let mut outbox = Outbox::new(OutboxConfig::default());
    let first = discovered(
        &mut outbox,
        report("example.net", "r1"),
        "v=TLSRPTv1; rua=https://reports.example.net/",
    );
    let deadline = secs(first) + 24 * HOUR;
    let mut now = first;
    let mut waits = Vec::new();
    let gave_up = loop {
        let (id, _) = next_post(&mut outbox, now);
        let events = outbox.handle(id, status(503), now);
        match &events[..] {
            [DeliveryEvent::Retrying { attempt, next, .. }] => {
                assert_eq!(*attempt as usize, waits.len() + 1);
                // Not due before its time.
                assert!(
                    outbox
                        .poll_io(next.saturating_sub(Duration::from_secs(1)))
                        .is_none()
                );
                assert_eq!(outbox.poll_timeout(), Some(*next));
                waits.push(secs(*next) - secs(now));
                now = *next;
            }
            [DeliveryEvent::GaveUp { error, uri, .. }] => break (error.clone(), uri.clone()),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        waits[..6],
        [300, 600, 1200, 2400, 4800, 7200],
        "5 min doubling, capped at 2 h"
    );
    assert!(waits[6..].iter().all(|&w| w == 7200), "{waits:?}");
    // The last attempt was within 24 hours of the first; the next would not have been.
    assert!(secs(now) < deadline);
    assert!(secs(now) + 7200 >= deadline);
    assert_eq!(gave_up.0, "HTTP 503");
    assert_eq!(gave_up.1, "https://reports.example.net/");
    assert!(outbox.is_empty());
    assert_eq!(outbox.poll_timeout(), None);
    // 16,500 s in the first six waits, then 9 × 2 h: 81,300 s; 2 h more would pass 24 h.
    assert_eq!(waits.len(), 15, "{waits:?}");
}

#[test]
fn t10_two_uris_are_delivered_independently() {
    let mut outbox = Outbox::new(OutboxConfig::default());
    let now = discovered(
        &mut outbox,
        report("example.net", "r1"),
        "v=TLSRPTv1; rua=https://a.example.net/r,https://b.example.net/r",
    );
    let (id_a, post_a) = next_post(&mut outbox, now);
    let (id_b, post_b) = next_post(&mut outbox, now);
    assert!(outbox.poll_io(now).is_none());
    assert_eq!(
        (post_a.host.as_str(), post_b.host.as_str()),
        ("a.example.net", "b.example.net")
    );
    assert_eq!(post_a.body, report("example.net", "r1").gzip);

    // Answers in any order.
    let events = outbox.handle(id_b, status(500), now);
    let [DeliveryEvent::Retrying { uri, next, .. }] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(uri, "https://b.example.net/r");
    let next = *next;
    let events = outbox.handle(id_a, status(200), now);
    assert!(
        matches!(&events[..], [DeliveryEvent::Delivered { uri, .. }] if uri == "https://a.example.net/r")
    );
    assert_eq!(outbox.len(), 1);
    // A second answer for the same id is ignored.
    assert_eq!(outbox.handle(id_a, status(200), now), vec![]);

    // Only b is tried again.
    let (id, post) = next_post(&mut outbox, next);
    assert_eq!(post.host, "b.example.net");
    assert!(outbox.poll_io(next).is_none());
    let events = outbox.handle(id, status(202), next);
    assert!(matches!(&events[..], [DeliveryEvent::Delivered { .. }]));
    assert!(outbox.is_empty());
}

#[test]
fn t10_discovery_failures() {
    let no_record = |answer: DeliveryResult, want: &str| {
        let mut outbox = Outbox::new(OutboxConfig::default());
        outbox.push(report("example.net", "r1"), DAY_END).unwrap();
        let now = outbox.poll_timeout().unwrap();
        let (id, io) = outbox.poll_io(now).unwrap();
        let DeliveryIo::Discover(query) = io else {
            panic!("{io:?}")
        };
        assert_eq!(query.name, "_smtp._tls.example.net");
        let events = outbox.handle(id, answer, now);
        let [
            DeliveryEvent::NoRecord {
                policy_domain,
                report_id,
                error,
            },
        ] = &events[..]
        else {
            panic!("{events:?}")
        };
        assert_eq!(
            (policy_domain.as_str(), report_id.as_str()),
            ("example.net", "r1")
        );
        assert!(error.contains(want), "{error}");
        assert!(outbox.is_empty());
        assert!(outbox.poll_io(UnixTime::MAX).is_none());
    };
    no_record(
        DeliveryResult::Discover(Ok(TxtAnswer::NXDOMAIN)),
        "NXDOMAIN",
    );
    no_record(DeliveryResult::Discover(Ok(TxtAnswer::NODATA)), "no TXT");
    no_record(records(&["v=spf1 -all"]), "no TXT record begins with");
    no_record(
        records(&[
            "v=TLSRPTv1; rua=mailto:a@example.net",
            "v=TLSRPTv1; rua=mailto:b@example.net",
        ]),
        "2",
    );
    no_record(
        records(&["v=TLSRPTv1; rua=ftp://x.example/"]),
        "column 17: URI scheme \"ftp\" is not supported",
    );

    // A temporary DNS failure is retried; the record found later is used.
    let mut outbox = Outbox::new(OutboxConfig::default());
    outbox.push(report("example.net", "r1"), DAY_END).unwrap();
    let now = outbox.poll_timeout().unwrap();
    let (id, _) = outbox.poll_io(now).unwrap();
    let events = outbox.handle(
        id,
        DeliveryResult::Discover(Err(DnsFailure::ServerFailure)),
        now,
    );
    let [
        DeliveryEvent::Retrying {
            uri,
            attempt: 1,
            next,
            error,
            ..
        },
    ] = &events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!(uri, "_smtp._tls.example.net");
    assert!(error.contains("SERVFAIL"), "{error}");
    assert_eq!(secs(*next), secs(now) + 300);
    let next = *next;
    let Some((id, DeliveryIo::Discover(_))) = outbox.poll_io(next) else {
        panic!("discovery again")
    };
    assert_eq!(
        outbox.handle(
            id,
            records(&["v=TLSRPTv1; rua=https://r.example.net/"]),
            next
        ),
        vec![]
    );
    let (id, _) = next_post(&mut outbox, next);
    assert!(matches!(
        &outbox.handle(id, status(200), next)[..],
        [DeliveryEvent::Delivered { .. }]
    ));

    // DNS failing all day: given up at the end of the window.
    let mut outbox = Outbox::new(OutboxConfig::default());
    outbox.push(report("example.net", "r1"), DAY_END).unwrap();
    let mut now = outbox.poll_timeout().unwrap();
    let mut attempts = 0;
    loop {
        let (id, _) = outbox.poll_io(now).unwrap();
        attempts += 1;
        match &outbox.handle(id, DeliveryResult::Discover(Err(DnsFailure::Timeout)), now)[..] {
            [DeliveryEvent::Retrying { next, .. }] => now = *next,
            [DeliveryEvent::GaveUp { uri, .. }] => {
                assert_eq!(uri, "_smtp._tls.example.net");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(attempts, 16, "as for a POST: the first and 15 retries");
    assert!(outbox.is_empty());
}

#[test]
fn t10_outbox_is_bounded() {
    let mut outbox = Outbox::new(config(|c| {
        c.max_reports = 2;
        c.max_bytes = 20;
    }));
    outbox.push(report("a.example", "r1"), DAY_END).unwrap();
    // The same report again is not added twice.
    outbox.push(report("a.example", "r1"), DAY_END).unwrap();
    assert_eq!(outbox.len(), 1);
    let mut big = report("b.example", "r1");
    big.gzip = vec![0; 14];
    assert_eq!(
        outbox.push(big, DAY_END),
        Err(OutboxFull::Bytes { limit: 20 })
    );
    outbox.push(report("b.example", "r1"), DAY_END).unwrap();
    let full = outbox.push(report("c.example", "r1"), DAY_END);
    assert_eq!(full, Err(OutboxFull::Reports { limit: 2 }));
    assert!(full.unwrap_err().to_string().contains("2 reports"));
    assert_eq!(outbox.len(), 2);

    // A record lists at most MAX_URIS URIs; each is delivered once.
    let mut outbox = Outbox::new(OutboxConfig::default());
    let mut many: Vec<String> = (0..MAX_URIS - 1)
        .map(|n| format!("https://r{n}.example/"))
        .collect();
    many.push("https://r0.example/".into()); // repeated: one POST
    let now = discovered(
        &mut outbox,
        report("example.net", "r1"),
        &format!("v=TLSRPTv1; rua={}", many.join(",")),
    );
    let mut hosts = Vec::new();
    while let Some((_, io)) = outbox.poll_io(now) {
        let DeliveryIo::Post(post) = io else {
            panic!("{io:?}")
        };
        hosts.push(post.host);
    }
    assert_eq!(hosts.len(), MAX_URIS - 1, "{hosts:?}");
    // One more URI makes the record invalid: no report.
    let mut outbox = Outbox::new(OutboxConfig::default());
    outbox.push(report("example.net", "r1"), DAY_END).unwrap();
    let now = outbox.poll_timeout().unwrap();
    let (id, _) = outbox.poll_io(now).unwrap();
    let too_many: Vec<String> = (0..=MAX_URIS)
        .map(|n| format!("https://r{n}.example/"))
        .collect();
    let record = format!("v=TLSRPTv1; rua={}", too_many.join(","));
    let events = outbox.handle(id, records(&[&record]), now);
    assert!(
        matches!(&events[..], [DeliveryEvent::NoRecord { error, .. }] if error.contains("more than 16")),
        "{events:?}"
    );
}

#[test]
fn t10_odd_settings_do_not_loop_or_panic() {
    let mut outbox = Outbox::new(config(|c| {
        c.first_retry = Duration::ZERO;
        c.max_retry = Duration::ZERO;
        c.retry_for = Duration::from_secs(10);
        c.spread = Duration::ZERO;
    }));
    let now = discovered(
        &mut outbox,
        report("example.net", "r1"),
        "v=TLSRPTv1; rua=https://r.example/",
    );
    let (id, _) = next_post(&mut outbox, now);
    let events = outbox.handle(id, status(500), now);
    let [DeliveryEvent::Retrying { next, .. }] = &events[..] else {
        panic!("{events:?}")
    };
    // At least a second between attempts, never a busy loop.
    assert_eq!(secs(*next), secs(now) + 1);
    assert!(outbox.poll_io(now).is_none());

    // Day end at the end of time.
    let mut outbox = Outbox::new(OutboxConfig::default());
    let mut r = report("example.net", "r1");
    r.day_end = UnixTime::MAX;
    outbox.push(r, UnixTime::MAX).unwrap();
    assert_eq!(outbox.poll_timeout(), Some(UnixTime::MAX));
}

#[test]
fn t10_wrong_or_unknown_answers() {
    let mut outbox = Outbox::new(OutboxConfig::default());
    outbox.push(report("example.net", "r1"), DAY_END).unwrap();
    let now = outbox.poll_timeout().unwrap();
    let (id, _) = outbox.poll_io(now).unwrap();
    assert_eq!(
        outbox.handle(DeliveryId::from_u64(999), status(200), now),
        vec![]
    );
    // A POST result for a discovery: a failure, retried.
    let events = outbox.handle(id, status(200), now);
    assert!(
        matches!(&events[..], [DeliveryEvent::Retrying { error, .. }] if error.contains("discovery")),
        "{events:?}"
    );
}

#[test]
fn t10_snapshot_round_trip() {
    let mut outbox = Outbox::new(OutboxConfig::default());
    // One report discovered, one URI delivered and one retrying; one not yet due.
    let now = discovered(
        &mut outbox,
        report("a.example", "r1"),
        "v=TLSRPTv1; rua=https://a.example/r,mailto:tlsrpt@a.example",
    );
    let (id, _) = next_post(&mut outbox, now);
    let Some((mail_id, DeliveryIo::Mail(_))) = outbox.poll_io(now) else {
        panic!("a mail")
    };
    outbox.handle(id, status(200), now);
    outbox.handle(mail_id, DeliveryResult::Mail(Err("later".into())), now);
    let mut later = report("b.example", "r1");
    later.day_end = DAY_END.saturating_add(Duration::from_secs(86_400));
    outbox.push(later, now).unwrap();
    assert_eq!(outbox.len(), 2);

    let json = serde_json::to_string(&outbox.snapshot()).unwrap();
    let snapshot: OutboxSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snapshot.len(), 2);
    let mut restored = Outbox::new(OutboxConfig::default());
    let loaded = restored.restore(snapshot, now).unwrap();
    assert_eq!((loaded.loaded, loaded.skipped, loaded.expired), (2, 0, 0));
    assert_eq!(restored.len(), 2);
    assert_eq!(restored.poll_timeout(), outbox.poll_timeout());
    assert_eq!(
        serde_json::to_string(&restored.snapshot()).unwrap(),
        json,
        "the same state"
    );

    // The restored outbox carries on: only the mail is tried again, as attempt 2.
    let next = restored.poll_timeout().unwrap();
    assert_eq!(secs(next), secs(now) + 300);
    let Some((id, DeliveryIo::Mail(mail))) = restored.poll_io(next) else {
        panic!("the mail")
    };
    assert_eq!(mail.to, "tlsrpt@a.example");
    let events = restored.handle(id, DeliveryResult::Mail(Err("again".into())), next);
    assert!(matches!(
        &events[..],
        [DeliveryEvent::Retrying { attempt: 2, .. }]
    ));

    // I/O under way at the snapshot is due again after a restart.
    let mut busy = Outbox::new(OutboxConfig::default());
    busy.push(report("c.example", "r1"), DAY_END).unwrap();
    let due = busy.poll_timeout().unwrap();
    let _in_flight = busy.poll_io(due).unwrap();
    assert_eq!(busy.poll_timeout(), None);
    let mut again = Outbox::new(OutboxConfig::default());
    again.restore(busy.snapshot(), due).unwrap();
    assert!(matches!(
        again.poll_io(due),
        Some((_, DeliveryIo::Discover(_)))
    ));

    // Expired entries are dropped.
    let mut after = Outbox::new(OutboxConfig::default());
    let end = UnixTime::from_secs(secs(MIDNIGHT) + 40 * HOUR);
    let json_snapshot: OutboxSnapshot = serde_json::from_str(&json).unwrap();
    let r = after.restore(json_snapshot, end).unwrap();
    assert_eq!((r.loaded, r.expired), (1, 1));
}

#[test]
fn t10_damaged_snapshot_entries_are_skipped() {
    let mut outbox = Outbox::new(OutboxConfig::default());
    outbox.push(report("a.example", "r1"), DAY_END).unwrap();
    outbox.push(report("b.example", "r1"), DAY_END).unwrap();
    let mut doc: serde_json::Value = serde_json::to_value(outbox.snapshot()).unwrap();
    let entries = doc["entries"].as_array_mut().unwrap();
    entries[0]["gzip"] = serde_json::json!("not bytes");
    let mut inconsistent = entries[1].clone();
    inconsistent["report_id"] = serde_json::json!("r2");
    inconsistent["discovery"]["done"] = serde_json::json!(true); // done, but no URIs
    entries.push(inconsistent);
    entries.push(serde_json::json!(42));
    let snapshot: OutboxSnapshot = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(snapshot.malformed(), 2);
    let mut restored = Outbox::new(OutboxConfig::default());
    let report = restored.restore(snapshot, DAY_END).unwrap();
    assert_eq!((report.loaded, report.skipped), (1, 3));
    assert_eq!(restored.len(), 1);

    // Over the caps: not loaded.
    let mut small = Outbox::new(config(|c| {
        c.max_reports = 0;
    }));
    let r = small
        .restore(serde_json::from_value(doc.clone()).unwrap(), DAY_END)
        .unwrap();
    assert_eq!((r.loaded, r.not_loaded), (0, 1));

    // Another format or version: refused whole.
    doc["format"] = serde_json::json!("mta-sts-policy-cache");
    assert!(matches!(
        restored.restore(serde_json::from_value(doc.clone()).unwrap(), DAY_END),
        Err(OutboxSnapshotError::Foreign { .. })
    ));
    doc["format"] = serde_json::json!("mta-sts-tlsrpt-outbox");
    doc["version"] = serde_json::json!(2);
    let err = restored
        .restore(serde_json::from_value(doc).unwrap(), DAY_END)
        .unwrap_err();
    assert_eq!(err, OutboxSnapshotError::UnsupportedVersion(2));
    // Not JSON of a snapshot at all: a serde error, no panic.
    assert!(serde_json::from_str::<OutboxSnapshot>("{\"entries\": 1}").is_err());
}

#[test]
fn t10_report_mail_is_recognised_so_it_is_never_reported() {
    assert!(is_report_mail(
        b"From: a@b.example\r\nTLS-Report-Domain: example.net\r\n\r\n"
    ));
    assert!(is_report_mail(b"tls-report-domain: example.net\r\n\r\n"));
    assert!(is_report_mail(
        b"Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"x\"\r\n\r\n"
    ));
    assert!(is_report_mail(
        b"Content-Type: Multipart/Report;\r\n\tboundary=x;\r\n\treport-type=TLSRPT\r\n\r\n--x--\r\n"
    ));
    for not in [
        &b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\n"[..],
        b"Content-Type: multipart/mixed; report-type=tlsrpt\r\n\r\n",
        b"Subject: TLS-Report-Domain: example.net\r\n\r\n",
        b"X-TLS-Report-Domain: example.net\r\n\r\n",
        b"",
        b"\xff\xfe\x00garbage",
    ] {
        assert!(!is_report_mail(not), "{:?}", String::from_utf8_lossy(not));
    }
    // What the outbox mails is recognised.
    let mut outbox = Outbox::new(OutboxConfig::default());
    let now = discovered(
        &mut outbox,
        report("example.net", "r1"),
        "v=TLSRPTv1; rua=mailto:r@example.net",
    );
    let Some((_, DeliveryIo::Mail(mail))) = outbox.poll_io(now) else {
        panic!("a mail")
    };
    assert!(is_report_mail(&mail.message));
}
