//! A leader cut off while its writes are in flight, and caught up by a snapshot install once it
//! is back (issue 14, claim 2). openraft answers a pending `client_write` when its entry is
//! applied or truncated; a snapshot that jumps past the entry does neither. The node's writes
//! must not wedge: once it is back and follows, a write sent to it is refused at once as "not
//! the leader", not left waiting.

mod common;

use std::time::Duration;

use bookstore_proto as pb;
use common::cluster::{Cluster, NODE_IDS, connect_as, order, wait_for};
use queue_raft::{NodeId, QueueClient, QueueToken, Role};
use tokio::time::Instant;
use tonic::Code;

const ELECTION: Duration = Duration::from_secs(20);
const CATCH_UP: Duration = Duration::from_secs(60);
/// How long a write sent to the isolated leader waits before its caller gives up.
const ISOLATED_WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the probe write on the healed node may take: answering "not the leader" takes
/// milliseconds; a wedged node never answers.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Entries the others commit while the leader is away: several snapshots' worth at
/// `--snapshot-logs=20`, each purging the log behind it (`--logs-to-keep=0`).
const WRITES_WHILE_AWAY: u32 = 100;

/// One enqueue sent to the node at `addr` only, presenting `token`, given up after `timeout`.
async fn enqueue_at(
    addr: &str,
    token: QueueToken,
    order_id: &str,
    timeout: Duration,
) -> Result<pb::EnqueueResponse, tonic::Status> {
    let mut request = tonic::Request::new(pb::EnqueueRequest {
        order: Some(order(order_id, 1)),
    });
    request.set_timeout(timeout);
    connect_as(addr, token)
        .enqueue(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Waits until the nodes `among` agree on a leader that is one of them and says so.
async fn wait_for_leader_among(cluster: &Cluster, among: &[NodeId]) -> NodeId {
    let client = cluster.client();
    let addrs: Vec<(NodeId, String)> = among.iter().map(|id| (*id, cluster.addr(*id))).collect();
    wait_for(ELECTION, "a leader among the nodes still running", || {
        let (client, addrs) = (client.clone(), addrs.clone());
        async move {
            let mut leaders = Vec::new();
            let mut leader_says_leader = false;
            for (id, addr) in &addrs {
                let status = client.cluster_status_of(addr).await.ok()?;
                leaders.push(status.leader_id);
                leader_says_leader |= status.role == "leader" && status.leader_id == *id;
            }
            let leader = leaders[0];
            (leader_says_leader && leaders.iter().all(|id| *id == leader)).then_some(leader)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deposed_leader_caught_up_by_a_snapshot_still_answers_writes() {
    let mut cluster =
        Cluster::start_behind_proxies(&["--snapshot-logs=20", "--logs-to-keep=0"]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let followers: Vec<NodeId> = NODE_IDS.into_iter().filter(|id| *id != leader).collect();
    let leader_addr = cluster.addr(leader);
    let before = cluster.status(leader).await.last_log_index;

    // Cut the leader off: with both followers gone it keeps leading but commits nothing, so the
    // writes sent to it stay in flight, filling every proposal slot it has. Killed rather than
    // frozen, so that none of its appends wait in a follower's socket to be taken up later: a
    // partition loses them too.
    for follower in &followers {
        cluster.kill(*follower);
    }
    let isolated_writes: Vec<_> = (0..4)
        .map(|n| {
            let addr = leader_addr.clone();
            let token = cluster.token(Role::Admin);
            tokio::spawn(async move {
                enqueue_at(
                    &addr,
                    token,
                    &format!("isolated-{n}"),
                    ISOLATED_WRITE_TIMEOUT,
                )
                .await
            })
        })
        .collect();
    let client = cluster.client();
    wait_for(
        ELECTION,
        "the isolated leader to append its in-flight writes",
        || {
            let (client, addr) = (client.clone(), leader_addr.clone());
            async move {
                let status = client.cluster_status_of(&addr).await.ok()?;
                (status.last_log_index >= before + 2).then_some(())
            }
        },
    )
    .await;

    // The others come back and go on without it, past several snapshots and purges. The old
    // leader is off the network (nothing the new leader sends reaches it, now or later: openraft
    // keeps the log an append in flight needs, and an append reaching it would truncate its
    // pending entries and answer them) and frozen (its own appends would reach them).
    cluster.cut(leader);
    cluster.pause(leader);
    for follower in &followers {
        cluster.restart(*follower);
    }
    for write in isolated_writes {
        let outcome = write.await.expect("the isolated write's task");
        assert!(
            outcome.is_err(),
            "a write to the isolated leader was acknowledged without a quorum: {outcome:?}"
        );
    }
    let new_leader = wait_for_leader_among(&cluster, &followers).await;
    let others = QueueClient::new(
        followers.iter().map(|id| cluster.addr(*id)).collect(),
        cluster.token(Role::Admin),
    )
    .expect("client of the two nodes");
    for n in 0..WRITES_WHILE_AWAY {
        others
            .enqueue(order(&format!("while-away-{n}"), 1))
            .await
            .unwrap_or_else(|error| panic!("enqueue while-away-{n}: {error}"));
    }

    // Back, the old leader follows and is caught up by a snapshot install.
    cluster.heal(leader);
    cluster.resume(leader);
    cluster
        .wait_until_caught_up(leader, new_leader, CATCH_UP)
        .await;
    assert!(
        cluster.logged(leader, "snapshot installed"),
        "the old leader caught up without a snapshot install, so this test did not test the case"
    );

    let started = Instant::now();
    let probe = enqueue_at(
        &leader_addr,
        cluster.token(Role::Admin),
        "probe",
        PROBE_TIMEOUT,
    )
    .await;
    let waited = started.elapsed();
    match probe {
        Err(status) if status.code() == Code::FailedPrecondition => {}
        other => panic!(
            "a write to the old leader, now a follower, should be refused as not the leader at \
             once; after {waited:?} it ended with {other:?}"
        ),
    }
    let answer = cluster
        .client()
        .enqueue(order("after-heal", 1))
        .await
        .expect("an enqueue through the healed cluster");
    assert!(answer.newly_enqueued);
}
