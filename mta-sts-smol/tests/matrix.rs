//! The shared scenario matrix (mta-sts-matrix) against the smol adapter, driven by smol and by
//! async-std, from the calling thread and from each one's executor tasks.

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
