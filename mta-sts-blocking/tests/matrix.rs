//! The shared scenario matrix (mta-sts-matrix) against the blocking adapter: every verdict the
//! core decides, no call past its timeouts, and a cache hit without I/O.

use mta_sts_blocking::Client;

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
