//! The shared scenario matrix and load scenario (mta-sts-matrix) against the smol adapter,
//! driven by smol and by async-std, from the calling thread and from each one's executor tasks.

use std::future::Future;

use mta_sts_matrix::load;
use mta_sts_smol::{Client, Outcome};

/// Runs the matrix with `policy(client, domain)` as the way to ask for a policy.
fn matrix(policy: impl Fn(&Client, String) -> Outcome) {
    let world = mta_sts_matrix::world();
    let client = Client::builder()
        .resolvers([world.dns_addr()])
        .trust_anchors(mta_sts_matrix::anchors(&world))
        .config(mta_sts_matrix::config(&world))
        .build()
        .expect("client");
    mta_sts_matrix::run(&world, |domain| policy(&client, domain.to_owned()));
}

#[test]
fn matrix_smol_block_on() {
    matrix(|client, domain| smol::block_on(client.policy(&domain)));
}

#[test]
fn matrix_smol_global_executor_tasks() {
    matrix(|client, domain| {
        let client = client.clone();
        // A task on smol's executor threads; this thread only waits for its output.
        smol::block_on(smol::spawn(async move { client.policy(&domain).await }))
    });
}

#[test]
fn matrix_async_std_block_on() {
    matrix(|client, domain| async_std::task::block_on(client.policy(&domain)));
}

#[test]
fn matrix_async_std_tasks() {
    matrix(|client, domain| {
        let client = client.clone();
        async_std::task::block_on(async_std::task::spawn(async move {
            client.policy(&domain).await
        }))
    });
}

/// Everything a future gives, waited on by a blocked thread.
type Join = std::pin::Pin<Box<dyn Future<Output = Vec<Outcome>>>>;

/// The load scenario: every caller a task started by `spawn`, all started before any is
/// awaited, then awaited in order on the thread `block_on` blocks.
fn load<F>(spawn: impl Fn(Client, String) -> F, block_on: impl FnOnce(Join) -> Vec<Outcome>)
where
    F: Future<Output = Outcome> + 'static,
{
    let world = load::world();
    let client = mta_sts_matrix::load_client!(Client, &world);
    let calls: Vec<F> = load::callers()
        .into_iter()
        .map(|domain| spawn(client.clone(), domain))
        .collect();
    let outcomes = block_on(Box::pin(async move {
        let mut outcomes = Vec::with_capacity(calls.len());
        for call in calls {
            outcomes.push(call.await);
        }
        outcomes
    }));
    load::check(&world, &outcomes, &client.stats());
}

#[test]
fn ten_thousand_callers_over_a_thousand_domains_fetch_each_once_within_the_bound_smol() {
    load(
        |client, domain| smol::spawn(async move { client.policy(&domain).await }),
        smol::block_on,
    );
}

#[test]
fn ten_thousand_callers_over_a_thousand_domains_fetch_each_once_within_the_bound_async_std() {
    load(
        |client, domain| async_std::task::spawn(async move { client.policy(&domain).await }),
        async_std::task::block_on,
    );
}

/// The TLSRPT scenario's calls on a smol client, each driven by `smol::block_on`.
struct Tlsrpt(Client);

impl mta_sts_matrix::tlsrpt::Reporting for Tlsrpt {
    fn policy(&self, domain: &str) -> Outcome {
        smol::block_on(self.0.policy(domain))
    }
    fn record(&self, result: &mta_sts_smol::TlsResult) -> Option<mta_sts_smol::PolicyType> {
        self.0.record_tls_result(result)
    }
    fn report_due(&self) -> usize {
        smol::block_on(self.0.report_due())
    }
    fn next_due(&self) -> Option<mta_sts_smol::UnixTime> {
        self.0.next_report_due()
    }
    fn stats(&self) -> mta_sts_smol::TlsRptStats {
        self.0.tlsrpt_stats()
    }
}

#[test]
fn t13_tlsrpt_reports_reach_the_collector_retried_until_2xx_smol() {
    let setup = mta_sts_matrix::tlsrpt::setup();
    let client = mta_sts_matrix::tlsrpt_client!(Client, &setup);
    mta_sts_matrix::tlsrpt::check(&setup, &Tlsrpt(client));
}

#[test]
fn t13_tlsrpt_reporting_task_sends_the_day_once_a_later_session_is_recorded_smol() {
    let setup = mta_sts_matrix::tlsrpt::setup();
    let c = Tlsrpt(mta_sts_matrix::tlsrpt_client!(Client, &setup));
    // On smol's global executor threads: the collector is waited on from this one.
    let task = c.0.spawn_reporter();
    mta_sts_matrix::tlsrpt::check_reporter_task(&setup, &c, |collector, n| {
        collector.wait_posts(n, std::time::Duration::from_secs(10))
    });
    smol::block_on(task.shutdown());
}

#[test]
fn s1_two_clients_share_one_store_smol() {
    mta_sts_matrix::check_shared_store_clients(
        |world, store| mta_sts_matrix::store_client!(Client, world, store),
        |c: &Client, d| smol::block_on(c.policy(d)),
        |c| smol::block_on(c.wait_store_writes()),
    );
}
