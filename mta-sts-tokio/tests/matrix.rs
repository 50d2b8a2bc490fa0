//! The shared scenario matrix (mta-sts-matrix) against the tokio adapter.

use mta_sts_tokio::Client;

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
