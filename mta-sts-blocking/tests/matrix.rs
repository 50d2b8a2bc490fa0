//! The shared scenario matrix (mta-sts-matrix) against the blocking adapter: every verdict the
//! core decides, no call past its timeouts, and a cache hit without I/O; and the shared load
//! scenario.

use std::sync::Barrier;

use mta_sts_blocking::{Client, Outcome};
use mta_sts_matrix::load;

#[test]
fn matrix_blocking() {
    let world = mta_sts_matrix::world();
    let client = Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(&world))
        .config(mta_sts_matrix::config(&world))
        .build()
        .expect("client");
    mta_sts_matrix::run(&world, |domain| client.policy(domain));
}

/// Each caller's thread stack: enough for a lookup with its TLS handshake in a debug build,
/// small enough that ten thousand threads cost little memory (the pages never touched are
/// never allocated).
const CALLER_STACK: usize = 256 * 1024;

#[test]
fn ten_thousand_callers_over_a_thousand_domains_fetch_each_once_within_the_bound_blocking() {
    let world = load::world();
    let client = mta_sts_matrix::load_client!(Client, &world);
    let callers = load::callers();
    // A thread per caller, all of them started before any calls, then released together.
    let start = Barrier::new(callers.len());
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let threads: Vec<_> = callers
            .iter()
            .map(|domain| {
                let (client, start) = (&client, &start);
                std::thread::Builder::new()
                    .stack_size(CALLER_STACK)
                    .spawn_scoped(s, move || {
                        start.wait();
                        client.policy(domain)
                    })
                    .expect("start a caller thread")
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a caller thread"))
            .collect()
    });
    load::check(&world, &outcomes, &client.stats());
}

/// The TLSRPT scenario's calls on a blocking client.
struct Tlsrpt(Client);

impl mta_sts_matrix::tlsrpt::Reporting for Tlsrpt {
    fn policy(&self, domain: &str) -> Outcome {
        self.0.policy(domain)
    }
    fn record(&self, result: &mta_sts_blocking::TlsResult) -> Option<mta_sts_blocking::PolicyType> {
        self.0.record_tls_result(result)
    }
    fn report_due(&self) -> usize {
        self.0.report_due()
    }
    fn next_due(&self) -> Option<mta_sts_blocking::UnixTime> {
        self.0.next_report_due()
    }
    fn stats(&self) -> mta_sts_blocking::TlsRptStats {
        self.0.tlsrpt_stats()
    }
}

#[test]
fn t13_tlsrpt_reports_reach_the_collector_retried_until_2xx_blocking() {
    let setup = mta_sts_matrix::tlsrpt::setup();
    let client = mta_sts_matrix::tlsrpt_client!(Client, &setup);
    mta_sts_matrix::tlsrpt::check(&setup, &Tlsrpt(client));
}

#[test]
fn t13_tlsrpt_reporting_task_sends_the_day_once_a_later_session_is_recorded_blocking() {
    let setup = mta_sts_matrix::tlsrpt::setup();
    let c = Tlsrpt(mta_sts_matrix::tlsrpt_client!(Client, &setup));
    let task = c.0.spawn_reporter().expect("the reporting thread");
    mta_sts_matrix::tlsrpt::check_reporter_task(&setup, &c, |collector, n| {
        collector.wait_posts(n, std::time::Duration::from_secs(10))
    });
    // The thread is joined; the deliveries it finished are counted.
    task.shutdown();
    assert!(c.0.wait_reports(2, std::time::Duration::ZERO) >= 2);
    assert_eq!(c.0.tlsrpt_stats().delivered, 1);
}

#[test]
fn s1_two_clients_share_one_store_blocking() {
    mta_sts_matrix::check_shared_store_clients(
        |world, store| mta_sts_matrix::store_client!(Client, world, store),
        |c: &Client, d| c.policy(d),
        Client::wait_store_writes,
    );
}
