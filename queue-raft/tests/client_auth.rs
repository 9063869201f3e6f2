//! The client API against real nodes: a call without a known queue token is refused
//! `UNAUTHENTICATED` and changes nothing; a known token's role makes only its own calls
//! (`PERMISSION_DENIED` otherwise); the lease token is shown only to the roles that work the
//! lease; a node refuses to start without its client tokens.

mod common;

use std::time::Duration;

use bookstore_proto as pb;
use bookstore_proto::order_queue_client::OrderQueueClient;
use common::cluster::{Cluster, connect_as, order};
use queue_raft::client_auth::{QueueToken, Role, UNAUTHENTICATED_MESSAGE};
use queue_raft::{ClientError, Holder};
use tonic::Code;

const ELECTION: Duration = Duration::from_secs(20);

/// The code of a call's refusal, or `None` when it was answered.
fn refusal<T: std::fmt::Debug>(answer: Result<tonic::Response<T>, tonic::Status>) -> Option<Code> {
    answer.err().map(|status| status.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_calls_without_a_queue_token_are_refused() {
    let cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    cluster
        .client()
        .enqueue(order("waiting-1", 2))
        .await
        .expect("an enqueue with the admin's token");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.addr(leader)))
            .expect("an address")
            .connect()
            .await
            .expect("connect to the leader");
    let wrong =
        QueueToken::load(None, Some("a-token-no-node-accepts-0000".into())).expect("a valid token");
    let mut anonymous = OrderQueueClient::new(channel.clone());
    let mut stranger = OrderQueueClient::with_interceptor(channel, wrong);

    let campaign = || pb::CampaignRequest {
        executor_id: "intruder".to_owned(),
        ttl_ms: 3_600_000,
        incarnation: 7,
    };
    let lease = |token| pb::ResignRequest {
        executor_id: "executor-1".to_owned(),
        token,
        incarnation: 1,
    };
    for code in [
        refusal(anonymous.campaign(campaign()).await),
        refusal(stranger.campaign(campaign()).await),
        refusal(anonymous.resign(lease(1)).await),
        refusal(
            anonymous
                .dequeue(pb::DequeueRequest {
                    executor_id: "intruder".to_owned(),
                    token: 1,
                    incarnation: 7,
                })
                .await,
        ),
        refusal(
            anonymous
                .record_execution(pb::RecordExecutionRequest {
                    executor_id: "intruder".to_owned(),
                    incarnation: 7,
                    token: 1,
                    order_id: "waiting-1".to_owned(),
                })
                .await,
        ),
        refusal(
            stranger
                .acknowledge(pb::AcknowledgeRequest {
                    executor_id: "intruder".to_owned(),
                    token: 1,
                    order_id: "waiting-1".to_owned(),
                    incarnation: 7,
                })
                .await,
        ),
        refusal(
            anonymous
                .enqueue(pb::EnqueueRequest {
                    order: Some(order("intruder-1", 50)),
                })
                .await,
        ),
        refusal(
            anonymous
                .get_order(pb::GetOrderRequest {
                    order_id: "waiting-1".to_owned(),
                })
                .await,
        ),
        refusal(
            anonymous
                .list_queue(pb::ListQueueRequest { limit: 5 })
                .await,
        ),
        refusal(
            stranger
                .cluster_status(pb::ClusterStatusRequest::default())
                .await,
        ),
    ] {
        assert_eq!(code, Some(Code::Unauthenticated));
    }
    let refusal_log = format!("refused a call: {UNAUTHENTICATED_MESSAGE}");
    assert!(cluster.eventually_logged(leader, &refusal_log).await);

    let status = cluster.status(leader).await;
    assert_eq!(status.lease_holder, "", "no lease was taken: {status:?}");
    let listing = cluster.client().list_queue(10).await.expect("a listing");
    assert_eq!(listing.depth, 1, "nothing was enqueued: {listing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_makes_only_its_own_calls() {
    let cluster = Cluster::start(&[]).await;
    cluster.wait_for_leader(ELECTION).await;
    let orchestrator = cluster.client_as(Role::Orchestrator);
    let executor = cluster.client_as(Role::Executor);
    let holder = Holder::new("executor-1", 11);

    let campaign = orchestrator
        .campaign(&holder, Duration::from_secs(10))
        .await;
    assert!(
        matches!(&campaign, Err(ClientError::Rejected(status)) if status.code() == Code::PermissionDenied),
        "{campaign:?}"
    );
    let enqueue = executor.enqueue(order("by-an-executor", 1)).await;
    assert!(
        matches!(&enqueue, Err(ClientError::Rejected(status)) if status.code() == Code::PermissionDenied),
        "{enqueue:?}"
    );
    orchestrator
        .enqueue(order("by-the-orchestrator", 1))
        .await
        .expect("the orchestrator enqueues");
    let granted = executor
        .campaign(&holder, Duration::from_secs(10))
        .await
        .expect("the executor campaigns");
    assert!(granted.granted, "{granted:?}");
    executor
        .cluster_status_of(&cluster.addrs()[0])
        .await
        .expect("every role reads the status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_token_is_shown_only_to_the_roles_that_work_the_lease() {
    let cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let orchestrator = cluster.client_as(Role::Orchestrator);
    let executor = cluster.client_as(Role::Executor);
    orchestrator
        .enqueue(order("watched-1", 3))
        .await
        .expect("an enqueue");
    let holder = Holder::new("executor-1", 21);
    let granted = executor
        .campaign(&holder, Duration::from_secs(30))
        .await
        .expect("a campaign");
    assert!(granted.granted && granted.token > 0, "{granted:?}");
    let taken = executor
        .dequeue(&holder, granted.token)
        .await
        .expect("a dequeue");
    assert!(taken.accepted, "{taken:?}");

    let leader_addr = cluster.addr(leader);
    let seen_by_executor = executor
        .cluster_status_of(&leader_addr)
        .await
        .expect("a status");
    assert_eq!(seen_by_executor.lease_token, granted.token);
    let seen_by_orchestrator = orchestrator
        .cluster_status_of(&leader_addr)
        .await
        .expect("a status");
    assert_eq!(seen_by_orchestrator.lease_holder, "executor-1");
    assert_eq!(
        seen_by_orchestrator.lease_token, 0,
        "{seen_by_orchestrator:?}"
    );

    let order_seen = orchestrator
        .get_order("watched-1")
        .await
        .expect("a read")
        .expect("the order");
    assert_eq!(order_seen.executor_id, "executor-1");
    assert_eq!(order_seen.token, 0, "{order_seen:?}");
    let listed = orchestrator.list_queue(5).await.expect("a listing");
    assert!(
        listed.orders.iter().all(|state| state.token == 0),
        "{listed:?}"
    );
    let mut direct = connect_as(&leader_addr, cluster.token(Role::Orchestrator));
    let direct_status = direct
        .cluster_status(pb::ClusterStatusRequest::default())
        .await
        .expect("a status")
        .into_inner();
    assert_eq!(direct_status.lease_token, 0);

    let order_for_executor = executor
        .get_order("watched-1")
        .await
        .expect("a read")
        .expect("the order");
    assert_eq!(order_for_executor.token, granted.token);
}

#[test]
fn a_node_without_its_client_tokens_does_not_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let secret = dir.path().join("cluster-secret");
    std::fs::write(&secret, "a-cluster-secret-of-this-test\n").expect("write the secret");
    let token = dir.path().join("token");
    std::fs::write(&token, "a-token-for-every-role-at-once\n").expect("write a token");
    let data = dir.path().join("data");
    let run = |extra: &[String]| {
        let output = std::process::Command::new(bookstore_common::testing::binary("queue-node"))
            .args([
                "--id=1".to_owned(),
                "--listen=127.0.0.1:0".to_owned(),
                "--peers=1=127.0.0.1:1".to_owned(),
                format!("--data-dir={}", data.display()),
                format!("--cluster-secret-file={}", secret.display()),
            ])
            .args(extra)
            .env_remove("QUEUE_ORCHESTRATOR_TOKEN_FILE")
            .env_remove("QUEUE_EXECUTOR_TOKEN_FILE")
            .env_remove("QUEUE_ADMIN_TOKEN_FILE")
            .output()
            .expect("run queue-node");
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let missing = run(&[]);
    assert!(missing.contains("--orchestrator-token-file"), "{missing}");
    let shared = run(&[
        format!("--orchestrator-token-file={}", token.display()),
        format!("--executor-token-file={}", token.display()),
        format!("--admin-token-file={}", token.display()),
    ]);
    assert!(
        shared.contains("each role needs a token of its own"),
        "{shared}"
    );
    assert!(!shared.contains("a-token-for-every-role"), "{shared}");
    assert!(!data.exists(), "a node that cannot start touches no data");
}
