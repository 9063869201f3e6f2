//! The cluster secret against real nodes: Raft RPCs and membership changes without it, or with
//! another, are refused `UNAUTHENTICATED` and change nothing; a node with another secret can
//! neither join the cluster nor disturb it by campaigning; a node refuses to start without a
//! usable secret, saying what is wrong.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use bookstore_proto as pb;
use bookstore_proto::order_queue_client::OrderQueueClient;
use bookstore_proto::raft_transport_client::RaftTransportClient;
use common::cluster::{Cluster, NODE_IDS, order, wait_for};
use openraft::Vote;
use openraft::error::RaftError;
use openraft::raft::{VoteRequest, VoteResponse};
use queue_raft::auth::{CLUSTER_SECRET_METADATA_KEY, REFUSAL_MESSAGE};
use queue_raft::{ClientError, ClientOptions, ClusterSecret, NodeId};
use tonic::Code;

const ELECTION: Duration = Duration::from_secs(20);
/// The message a node logs when it refuses a call for its secret.
const REFUSAL_LOG: &str = "refused a call: missing or wrong cluster secret";

fn other_secret() -> ClusterSecret {
    ClusterSecret::load(None, Some("a-secret-of-some-other-cluster".into()))
        .expect("a valid secret")
}

/// The voters as node `id` sees them.
async fn voters(cluster: &Cluster, id: NodeId) -> BTreeSet<u64> {
    cluster
        .status(id)
        .await
        .members
        .iter()
        .filter(|member| member.voter)
        .map(|member| member.node_id)
        .collect()
}

/// A vote for an old term from a node that does not exist: harmless, and answered only past the
/// secret check.
fn stale_vote() -> pb::RaftPayload {
    let request: VoteRequest<NodeId> = VoteRequest::new(Vote::new(0, 99), None);
    pb::RaftPayload {
        data: bincode::serialize(&request).expect("encode a vote request"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_rpcs_without_the_cluster_secret_are_refused() {
    let cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let before = cluster.status(leader).await;
    let follower = NODE_IDS
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let mut raft = RaftTransportClient::connect(format!("http://{}", cluster.addr(follower)))
        .await
        .expect("connect to a follower");

    let unauthenticated = |status: tonic::Status| {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(status.message(), REFUSAL_MESSAGE);
    };
    unauthenticated(
        raft.vote(stale_vote())
            .await
            .expect_err("a vote, no secret"),
    );
    unauthenticated(
        raft.append_entries(pb::RaftPayload::default())
            .await
            .expect_err("an append, no secret"),
    );
    unauthenticated(
        raft.install_snapshot(pb::RaftPayload::default())
            .await
            .expect_err("a snapshot chunk, no secret"),
    );
    let mut wrong = tonic::Request::new(stale_vote());
    other_secret().attach(&mut wrong);
    unauthenticated(raft.vote(wrong).await.expect_err("a vote, wrong secret"));
    let mut garbled = tonic::Request::new(stale_vote());
    garbled.metadata_mut().insert(
        CLUSTER_SECRET_METADATA_KEY,
        "short".parse().expect("a metadata value"),
    );
    unauthenticated(raft.vote(garbled).await.expect_err("a vote, short secret"));
    assert!(
        cluster.eventually_logged(follower, REFUSAL_LOG).await,
        "the follower logs each refusal"
    );
    let secret_text = std::fs::read_to_string(cluster.secret_file()).expect("the secret");
    assert!(
        cluster
            .log_lines(follower)
            .iter()
            .all(|line| !line.contains(secret_text.trim())),
        "the secret never appears in a log"
    );

    let mut right = tonic::Request::new(stale_vote());
    cluster.secret().attach(&mut right);
    let answer = raft.vote(right).await.expect("a vote with the secret");
    let answer: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
        bincode::deserialize(&answer.into_inner().data).expect("decode the vote answer");
    let answer = answer.expect("the follower's openraft answers");
    assert!(!answer.vote_granted, "a vote for term 0 is not granted");

    let after = cluster.status(leader).await;
    assert_eq!(
        (after.leader_id, after.term),
        (before.leader_id, before.term)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_without_the_cluster_secret_are_refused() {
    let mut cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let follower = NODE_IDS
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let addr = cluster.start_joining_node(4);
    let client = cluster.client();

    let added = client.add_node(4, &addr, &other_secret()).await;
    assert!(
        matches!(&added, Err(ClientError::Unauthenticated(message)) if message == REFUSAL_MESSAGE),
        "{added:?}"
    );
    let removed = client.remove_node(follower, &other_secret()).await;
    assert!(
        matches!(&removed, Err(ClientError::Unauthenticated(_))),
        "{removed:?}"
    );
    let mut raw = OrderQueueClient::connect(format!("http://{}", cluster.addr(leader)))
        .await
        .expect("connect to the leader");
    let no_secret = raw
        .remove_node(pb::RemoveNodeRequest { node_id: follower })
        .await
        .expect_err("a removal without the secret");
    assert_eq!(no_secret.code(), Code::Unauthenticated, "{no_secret:?}");
    let no_secret = raw
        .add_node(pb::AddNodeRequest {
            node_id: 4,
            addr: addr.clone(),
        })
        .await
        .expect_err("an addition without the secret");
    assert_eq!(no_secret.code(), Code::Unauthenticated, "{no_secret:?}");
    assert!(cluster.eventually_logged(leader, REFUSAL_LOG).await);

    assert_eq!(voters(&cluster, leader).await, BTreeSet::from(NODE_IDS));
    assert_eq!(
        cluster.status(leader).await.members.len(),
        NODE_IDS.len(),
        "not even a learner was added"
    );
    // The client calls need a queue token, not the secret.
    client
        .enqueue(order("open-1", 1))
        .await
        .expect("enqueue needs a queue token, no secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_secret_cannot_join() {
    let mut cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let addr = cluster.start_intruder(4, true);
    let impatient = cluster.client_with(ClientOptions {
        deadline: Duration::from_secs(4),
        attempt_timeout: Duration::from_secs(4),
        ..ClientOptions::default()
    });

    let added = impatient.add_node(4, &addr, &cluster.secret()).await;
    assert!(
        matches!(&added, Err(ClientError::Unreachable { .. })),
        "{added:?}"
    );
    assert!(
        cluster.eventually_logged(4, REFUSAL_LOG).await,
        "the intruder refuses the leader's appends"
    );
    let intruder = cluster.status(4).await;
    assert_eq!(
        (intruder.leader_id, intruder.applied_index),
        (0, 0),
        "the intruder got nothing from the cluster"
    );
    cluster
        .client()
        .enqueue(order("after-intruder", 1))
        .await
        .expect("the cluster keeps serving");
    let leader_now = cluster.wait_for_leader(ELECTION).await;
    assert_eq!(leader_now, leader);
    assert_eq!(voters(&cluster, leader).await, BTreeSet::from(NODE_IDS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_secret_cannot_disturb_the_cluster() {
    let mut cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let before = cluster.status(leader).await;

    // It names the founders as its peers and campaigns among them, term after term.
    cluster.start_intruder(4, false);
    let client = cluster.client();
    let intruder_addr = cluster.addr(4);
    let beyond = before.term + 3;
    wait_for(
        ELECTION,
        "the intruder to campaign past the cluster's term",
        || {
            let (client, addr) = (client.clone(), intruder_addr.clone());
            async move {
                let status = client.cluster_status_of(&addr).await.ok()?;
                (status.term >= beyond).then_some(())
            }
        },
    )
    .await;
    assert!(
        NODE_IDS.iter().any(|id| cluster.logged(*id, REFUSAL_LOG)),
        "the founders refuse the intruder's votes"
    );

    for id in NODE_IDS {
        let status = cluster.status(id).await;
        assert_eq!(
            (status.leader_id, status.term),
            (before.leader_id, before.term),
            "node {id} still follows the same leader in the same term"
        );
    }
    client
        .enqueue(order("despite-intruder", 1))
        .await
        .expect("the cluster keeps serving");
    assert_eq!(voters(&cluster, leader).await, BTreeSet::from(NODE_IDS));
}

/// Runs `queue-node` for node 1 with `args` and no secret in its environment; it must fail
/// before it binds or opens anything. Its client token files are named, so that only the
/// secret is wanting (it is read first).
fn queue_node(args: &[&str], data_dir: &Path) -> Output {
    let token = |role: &str| format!("--{role}-token-file={}", data_dir.join(role).display());
    std::process::Command::new(env!("CARGO_BIN_EXE_queue-node"))
        .env_remove("QUEUE_CLUSTER_SECRET")
        .env_remove("QUEUE_CLUSTER_SECRET_FILE")
        .env("RUST_BACKTRACE", "0")
        .args(["--id=1", "--peers=1=127.0.0.1:1", "--listen=127.0.0.1:0"])
        .args([token("orchestrator"), token("executor"), token("admin")])
        .arg(format!("--data-dir={}", data_dir.display()))
        .args(args)
        .output()
        .expect("run queue-node")
}

#[test]
fn a_node_without_a_usable_secret_does_not_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data_dir = dir.path().join("node-1");
    let refused = |args: &[&str], expected: &[&str]| {
        let output = queue_node(args, &data_dir);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started: {output:?}");
        for part in expected {
            assert!(stderr.contains(part), "{args:?}: {part:?} not in {stderr}");
        }
    };

    refused(&[], &["no cluster secret given", "head -c 32 /dev/urandom"]);
    let missing = dir.path().join("no-such-secret");
    let missing_flag = format!("--cluster-secret-file={}", missing.display());
    refused(
        &[&missing_flag],
        &["cannot read the cluster secret file", "no-such-secret"],
    );
    let empty = dir.path().join("empty-secret");
    std::fs::write(&empty, "\n").expect("write an empty secret");
    refused(
        &[&format!("--cluster-secret-file={}", empty.display())],
        &["is empty", "empty-secret"],
    );
    let short = dir.path().join("short-secret");
    std::fs::write(&short, "only-9-by\n").expect("write a short secret");
    refused(
        &[&format!("--cluster-secret-file={}", short.display())],
        &["too short: 9 bytes", "short-secret"],
    );
    assert!(
        !data_dir.exists(),
        "a node without a secret touches no data"
    );
}
