//! The shared scenario matrix and load scenario (mta-sts-matrix) against the tokio adapter.

use std::time::Duration;

use mta_sts_matrix::load;
use mta_sts_tokio::Client;
use tokio::runtime::Runtime;

fn client(world: &mta_sts_testkit::World) -> Client {
    Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(world))
        .config(mta_sts_matrix::config(world))
        .build()
        .expect("client")
}

#[test]
fn matrix_tokio_current_thread() {
    let world = mta_sts_matrix::world();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = client(&world);
    mta_sts_matrix::run(&world, |domain| rt.block_on(client.policy(domain)));
    // Every fault ended its lookup: no task is left behind (timeouts, stalls, refusals).
    assert_eq!(rt.metrics().num_alive_tasks(), 0);
}

#[test]
fn matrix_tokio_multi_thread() {
    let world = mta_sts_matrix::world();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = client(&world);
    mta_sts_matrix::run(&world, |domain| rt.block_on(client.policy(domain)));
    assert_eq!(rt.metrics().num_alive_tasks(), 0);
}

/// The load scenario on `rt`: every caller a task of its own, all spawned before any is awaited.
fn load_on(rt: &Runtime) {
    let world = load::world();
    let client = mta_sts_matrix::load_client!(Client, &world);
    let outcomes = rt.block_on(async {
        let calls: Vec<_> = load::callers()
            .into_iter()
            .map(|domain| {
                let client = client.clone();
                tokio::spawn(async move { client.policy(&domain).await })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(calls.len());
        for call in calls {
            outcomes.push(call.await.expect("the caller's task"));
        }
        outcomes
    });
    load::check(&world, &outcomes, &client.stats());
    assert_eq!(rt.metrics().num_alive_tasks(), 0);
}

#[test]
fn ten_thousand_callers_over_a_thousand_domains_fetch_each_once_within_the_bound_multi_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    load_on(&rt);
}

#[test]
fn ten_thousand_callers_over_a_thousand_domains_fetch_each_once_within_the_bound_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    load_on(&rt);
}

/// The TLSRPT scenario's calls on a tokio client.
struct Tlsrpt<'a>(&'a Runtime, Client);

impl mta_sts_matrix::tlsrpt::Reporting for Tlsrpt<'_> {
    fn policy(&self, domain: &str) -> mta_sts_tokio::Outcome {
        self.0.block_on(self.1.policy(domain))
    }
    fn record(&self, result: &mta_sts_tokio::TlsResult) -> Option<mta_sts_tokio::PolicyType> {
        self.1.record_tls_result(result)
    }
    fn report_due(&self) -> usize {
        self.0.block_on(self.1.report_due())
    }
    fn next_due(&self) -> Option<mta_sts_tokio::UnixTime> {
        self.1.next_report_due()
    }
    fn stats(&self) -> mta_sts_tokio::TlsRptStats {
        self.1.tlsrpt_stats()
    }
}

#[test]
fn t13_tlsrpt_reports_reach_the_collector_retried_until_2xx_tokio_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let setup = mta_sts_matrix::tlsrpt::setup();
    let client = mta_sts_matrix::tlsrpt_client!(Client, &setup);
    mta_sts_matrix::tlsrpt::check(&setup, &Tlsrpt(&rt, client));
    assert_eq!(rt.metrics().num_alive_tasks(), 0);
}

#[test]
fn t13_tlsrpt_reports_reach_the_collector_retried_until_2xx_tokio_multi_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let setup = mta_sts_matrix::tlsrpt::setup();
    let client = mta_sts_matrix::tlsrpt_client!(Client, &setup);
    mta_sts_matrix::tlsrpt::check(&setup, &Tlsrpt(&rt, client));
}

#[test]
fn t13_tlsrpt_reporting_task_sends_the_day_once_a_later_session_is_recorded_tokio() {
    for rt in [
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    ] {
        let setup = mta_sts_matrix::tlsrpt::setup();
        let client = mta_sts_matrix::tlsrpt_client!(Client, &setup);
        let task = rt.block_on(async { client.spawn_reporter() });
        let c = Tlsrpt(&rt, client);
        mta_sts_matrix::tlsrpt::check_reporter_task(&setup, &c, |collector, n| {
            let wait = collector.posts_async(n);
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), wait).await })
                .unwrap_or_default()
        });
        rt.block_on(task.shutdown());
        assert!(c.1.tlsrpt_stats().delivered >= 1);
    }
}

#[test]
fn s1_two_clients_share_one_store_tokio() {
    let rt = Runtime::new().unwrap();
    mta_sts_matrix::check_shared_store_clients(
        |world, store| mta_sts_matrix::store_client!(Client, world, store),
        |c: &Client, d| rt.block_on(c.policy(d)),
        |c| rt.block_on(c.wait_store_writes()),
    );
}
