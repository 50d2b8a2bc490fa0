//! TLSRPT in the blocking client beyond the shared scenario: the day's counts and the outbox
//! survive a restart, a damaged state file never stops the start, a session to a host DANE
//! covers is counted under `tlsa`, and a client without TLSRPT counts nothing.

use std::time::Duration;

use mta_sts_blocking::{Client, PolicyType, TlsResult, UnixTime};
use mta_sts_matrix::tlsrpt::{DAY, MX, setup};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mta-sts-tlsrpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn t13_the_days_counts_and_pending_reports_survive_a_restart() {
    let setup = setup();
    let dir = temp_dir("restart");
    let state = dir.join("tlsrpt.json");
    let build = || {
        Client::builder()
            .resolvers([setup.world.dns_addr()])
            .trust_anchors(mta_sts_matrix::anchors(&setup.world))
            .config(mta_sts_matrix::config(&setup.world))
            .clock(setup.clock())
            .tlsrpt(setup.settings().persistence(&state))
            .build()
            .unwrap()
    };
    let client = build();
    assert!(matches!(
        client.policy("reports.test"),
        mta_sts_blocking::Outcome::Fetched(_)
    ));
    for _ in 0..2 {
        let ok = TlsResult::success("reports.test", MX[0]);
        assert_eq!(client.record_tls_result(&ok), Some(PolicyType::Sts));
    }
    // retry.test's collector answers 500 first: its report stays pending across the restart.
    assert_eq!(
        client.record_tls_result(&TlsResult::success("retry.test", MX[0])),
        Some(PolicyType::NoPolicyFound)
    );
    drop(client); // the last handle saves
    assert!(state.exists());

    let client = build();
    setup.set_time(UnixTime::from_secs(DAY + 86_401));
    assert_eq!(client.report_due(), 2 + 2);
    let post = &setup.ok.wait_posts(1, Duration::ZERO)[0];
    let report = post.report_text().unwrap();
    assert!(
        report.contains(r#""total-successful-session-count":2"#),
        "{report}"
    );
    assert_eq!(client.tlsrpt_stats().pending, 1);
    client.shutdown().unwrap();
    drop(client);

    // The pending report comes back with the next start and is delivered at its retry.
    let client = build();
    assert_eq!(client.tlsrpt_stats().pending, 1);
    let due = client.next_report_due().unwrap();
    setup.set_time(due);
    assert_eq!(client.report_due(), 1);
    assert_eq!(setup.flaky.count(), 2);
    assert_eq!(client.tlsrpt_stats().delivered, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn t13_a_damaged_state_file_never_stops_the_start() {
    let setup = setup();
    let dir = temp_dir("damaged");
    let state = dir.join("tlsrpt.json");
    std::fs::write(&state, b"\x00 not a state file").unwrap();
    std::fs::write(dir.join("tlsrpt.json.outbox"), b"{\"format\": 7}").unwrap();
    let client = Client::builder()
        .resolvers([setup.world.dns_addr()])
        .clock(setup.clock())
        .tlsrpt(setup.settings().persistence(&state))
        .build()
        .expect("a damaged file never stops build");
    assert_eq!(client.tlsrpt_stats().pending, 0);
    let aside: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains(".unreadable-"))
        .collect();
    assert_eq!(aside.len(), 2, "both files moved aside: {aside:?}");
    assert_eq!(
        client.record_tls_result(&TlsResult::success("example.net", "mx.example.net")),
        Some(PolicyType::NoPolicyFound)
    );
    client.save().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn t13_a_session_to_a_host_dane_covers_is_counted_under_tlsa() {
    // The DANE state is cached (for its TTL) by the evaluation; the record finds it there.
    let world = mta_sts_matrix::dane_world_with_ttl(300);
    let client = Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(&world))
        .config(mta_sts_matrix::config(&world))
        .dane(true)
        .tlsrpt(setup().settings())
        .build()
        .unwrap();
    let mx = mta_sts_matrix::DANE_MX;
    // Before the DANE state is known, the session is under the domain's MTA-STS policy (none
    // known yet either: no policy).
    let before = TlsResult::success("dane.test", mx);
    assert_eq!(
        client.record_tls_result(&before),
        Some(PolicyType::NoPolicyFound)
    );
    let _ = client.evaluate("dane.test", [mx]);
    assert_eq!(client.record_tls_result(&before), Some(PolicyType::Tlsa));
    // plain.test is unsigned: its enforce policy applies.
    let _ = client.evaluate("plain.test", ["mx.plain.test"]);
    let plain = TlsResult::success("plain.test", "mx.plain.test");
    assert_eq!(client.record_tls_result(&plain), Some(PolicyType::Sts));
}

#[test]
fn t13_without_tlsrpt_nothing_is_counted() {
    let setup = setup();
    let client = Client::builder()
        .resolvers([setup.world.dns_addr()])
        .build()
        .unwrap();
    assert_eq!(
        client.record_tls_result(&TlsResult::success("reports.test", MX[0])),
        None
    );
    assert_eq!(client.report_due(), 0);
    assert_eq!(client.next_report_due(), None);
    assert_eq!(client.wait_reports(0, Duration::ZERO), 0);
}
