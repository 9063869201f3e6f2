//! A queue node's gRPC health (what the containers' healthchecks ask, `queuectl probe`) says
//! SERVING only while the node knows a working leader: a node left without a majority is
//! NOT_SERVING, a follower and a leader alike (a leader cut off goes on naming itself), and
//! SERVING again once a majority is back.

mod common;

use std::time::Duration;

use bookstore_common::probe::{ProbeError, Target, probe};
use common::cluster::{Cluster, NODE_IDS, wait_for};

const ELECTION: Duration = Duration::from_secs(20);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a node alone may take to notice that its leader is gone (election timeouts, a few
/// campaigns) and say so.
const NOTICE: Duration = Duration::from_secs(10);

/// What the node's health service answers: `Ok("SERVING")`, or the probe's error.
async fn health(cluster: &Cluster, id: u64) -> Result<String, ProbeError> {
    let target = Target::parse(&format!("grpc://{}", cluster.addr(id))).expect("a valid target");
    probe(&target, PROBE_TIMEOUT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_without_a_leader_is_not_serving() {
    node_left_alone_is_not_serving(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_its_majority_is_not_serving() {
    node_left_alone_is_not_serving(true).await;
}

/// Kills two of three nodes, leaving the leader alone (`leader_left`) or a follower, and
/// expects NOT_SERVING from the node left, then SERVING once a second node is back.
async fn node_left_alone_is_not_serving(leader_left: bool) {
    let mut cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    for id in NODE_IDS {
        let answer = health(&cluster, id).await;
        assert_eq!(answer.ok().as_deref(), Some("SERVING"), "node {id}");
    }

    // Two nodes die: the node left behind has no majority, so no working leader.
    let alone = NODE_IDS
        .into_iter()
        .find(|id| (*id == leader) == leader_left)
        .expect("a node to leave alone");
    for id in NODE_IDS.into_iter().filter(|id| *id != alone) {
        cluster.kill(id);
    }
    let refused = wait_for(NOTICE, "the lone node to say it is not serving", || {
        let cluster = &cluster;
        async move {
            match health(cluster, alone).await {
                Err(ProbeError::NotServing(status)) => Some(status),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(refused, "NOT_SERVING");

    // A majority again: a leader, and the node serves.
    let back = NODE_IDS
        .into_iter()
        .find(|id| *id != alone)
        .expect("another node");
    cluster.restart(back);
    cluster.wait_for_leader(ELECTION).await;
    let served = wait_for(NOTICE, "the node to serve again", || {
        let cluster = &cluster;
        async move { health(cluster, alone).await.ok() }
    })
    .await;
    assert_eq!(served, "SERVING");
}
