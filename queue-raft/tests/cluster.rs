//! The queue cluster as three real `queue-node` processes: what survives crashes, how a node
//! catches up, how the client finds the leader, and that nothing hangs without one.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bookstore_proto as pb;
use bookstore_proto::enqueue_result::Outcome::{Enqueued, Invalid};
use bookstore_proto::raft_transport_client::RaftTransportClient;
use common::cluster::{Cluster, NODE_IDS, connect_as, order, wait_for};
use queue_raft::service::{LEADER_ADDR_METADATA_KEY, LEADER_ID_METADATA_KEY};
use queue_raft::{ClientError, ClientOptions, Holder, QueueClient, Role};
use tokio::time::Instant;

const ELECTION: Duration = Duration::from_secs(20);
const CATCH_UP: Duration = Duration::from_secs(30);

/// Every order in the queue, in dequeue order, read at the leader.
async fn queued_ids(client: &QueueClient) -> Vec<String> {
    let listed = client.list_queue(10_000).await.expect("list the queue");
    assert_eq!(
        listed.orders.len() as u64,
        listed.depth,
        "the listing holds the whole queue"
    );
    listed
        .orders
        .into_iter()
        .map(|state| state.order.expect("a listed order has its order").order_id)
        .collect()
}

/// Enqueues `ids` one after the other, each with 1 to 3 books; returns the answers.
async fn enqueue_all(client: &QueueClient, ids: impl IntoIterator<Item = u32>) {
    for n in ids {
        let answer = client
            .enqueue(order(&format!("order-{n}"), 1 + n % 3))
            .await
            .unwrap_or_else(|error| panic!("enqueue order-{n}: {error}"));
        assert!(answer.newly_enqueued, "order-{n} was new");
    }
}

fn other_than(excluded: &[u64]) -> u64 {
    NODE_IDS
        .into_iter()
        .find(|id| !excluded.contains(id))
        .expect("a third node")
}

/// 1,000 enqueues from 16 concurrent clients while the leader is SIGKILLed midway: every
/// acknowledged enqueue is in the queue exactly once, and the killed node, restarted on its data,
/// ends with the same queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_enqueues_survive_the_leader_being_killed() {
    const ORDERS: usize = 1_000;
    const CLIENTS: usize = 16;
    let mut cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let client = cluster.client();
    let acknowledged_count = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    let writers: Vec<_> = (0..CLIENTS)
        .map(|writer| {
            let client = client.clone();
            let acknowledged_count = Arc::clone(&acknowledged_count);
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut failed = Vec::new();
                for n in (writer..ORDERS).step_by(CLIENTS) {
                    let order_id = format!("order-{n}");
                    match client.enqueue(order(&order_id, 1 + (n % 3) as u32)).await {
                        Ok(_) => {
                            acknowledged.push((order_id, Instant::now()));
                            acknowledged_count.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => failed.push((order_id, error)),
                    }
                }
                (acknowledged, failed)
            })
        })
        .collect();

    wait_for(Duration::from_secs(60), "half of the enqueues", || {
        let count = acknowledged_count.load(Ordering::Relaxed);
        async move { (count >= ORDERS / 2).then_some(()) }
    })
    .await;
    cluster.kill(leader);
    let killed_at = Instant::now();

    let mut acknowledged = Vec::new();
    let mut failed = Vec::new();
    for writer in writers {
        let (writer_acknowledged, writer_failed) = writer.await.expect("writer task");
        acknowledged.extend(writer_acknowledged);
        failed.extend(writer_failed);
    }
    let first_after_kill = acknowledged
        .iter()
        .map(|(_, at)| *at)
        .filter(|at| *at > killed_at)
        .min();
    eprintln!(
        "{} acknowledged, {} failed in {:?}; first acknowledgement {:?} after the leader was killed",
        acknowledged.len(),
        failed.len(),
        started.elapsed(),
        first_after_kill.map(|at| at - killed_at),
    );
    assert!(
        failed.is_empty(),
        "enqueues failed through the election: {failed:?}"
    );

    let new_leader = cluster.wait_for_leader(ELECTION).await;
    assert_ne!(new_leader, leader, "a new leader replaced the killed one");
    let queued = queued_ids(&client).await;
    let distinct: BTreeSet<&String> = queued.iter().collect();
    assert_eq!(distinct.len(), queued.len(), "no order is queued twice");
    for (order_id, _) in &acknowledged {
        assert!(
            distinct.contains(order_id),
            "acknowledged {order_id} is missing"
        );
    }
    assert_eq!(
        queued.len(),
        ORDERS,
        "every enqueue was acknowledged, so all are queued"
    );

    cluster.restart(leader);
    let restarted = cluster
        .wait_until_caught_up(leader, new_leader, CATCH_UP)
        .await;
    assert_eq!(restarted.queue_depth, ORDERS as u64);
}

/// All three nodes SIGKILLed at once and restarted: the queue is intact, same orders in the same
/// order. The small snapshot policy makes the restart recover from a snapshot plus the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_survives_every_node_being_killed() {
    let mut cluster = Cluster::start(&["--snapshot-logs=20", "--logs-to-keep=5"]).await;
    let client = cluster.client();
    enqueue_all(&client, 0..60).await;
    let before = queued_ids(&client).await;
    assert_eq!(before.len(), 60);

    for id in NODE_IDS {
        cluster.kill(id);
    }
    for id in NODE_IDS {
        cluster.restart(id);
    }
    cluster.wait_for_leader(ELECTION).await;
    let client = cluster.client();
    assert_eq!(queued_ids(&client).await, before);
    let answer = client
        .enqueue(order("order-7", 2))
        .await
        .expect("a repeated enqueue after the restart");
    assert!(
        !answer.newly_enqueued,
        "enqueue stays idempotent across restarts"
    );
}

/// A node stopped while the others write past several snapshots and purge their logs catches
/// up by installing a snapshot: first restarted on its data, then with its data wiped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_far_behind_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start(&["--snapshot-logs=50", "--logs-to-keep=10"]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let behind = other_than(&[leader]);
    let client = cluster.client();
    enqueue_all(&client, 0..5).await;
    cluster.wait_until_caught_up(behind, leader, CATCH_UP).await;

    cluster.kill(behind);
    enqueue_all(&client, 5..200).await;
    cluster.restart(behind);
    let status = cluster.wait_until_caught_up(behind, leader, CATCH_UP).await;
    assert_eq!(status.queue_depth, 200);
    assert!(
        cluster.logged(behind, "snapshot installed"),
        "the node restarted on its data caught up without a snapshot"
    );

    cluster.kill(behind);
    enqueue_all(&client, 200..300).await;
    cluster.wipe_and_restart(behind);
    let leader = cluster.wait_for_leader(ELECTION).await;
    let status = cluster.wait_until_caught_up(behind, leader, CATCH_UP).await;
    assert_eq!(status.queue_depth, 300);
    assert!(
        cluster.logged(behind, "snapshot installed"),
        "the wiped node caught up without a snapshot"
    );
    assert_eq!(queued_ids(&client).await.len(), 300);
}

/// A follower refuses a write with FAILED_PRECONDITION naming the leader, serves its own status,
/// and the client, sent to the follower first, ends up at the leader without the caller noticing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_names_the_leader_and_the_client_follows() {
    let cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let follower = other_than(&[leader]);

    let mut direct = cluster.node_client(follower).await;
    let refused = direct
        .enqueue(pb::EnqueueRequest {
            order: Some(order("order-1", 1)),
        })
        .await
        .expect_err("a follower does not take writes");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    let metadata = refused.metadata();
    assert_eq!(
        metadata
            .get(LEADER_ID_METADATA_KEY)
            .expect("leader id")
            .to_str()
            .unwrap(),
        leader.to_string()
    );
    assert_eq!(
        metadata
            .get(LEADER_ADDR_METADATA_KEY)
            .expect("leader address")
            .to_str()
            .unwrap(),
        cluster.addr(leader)
    );
    assert!(
        refused.message().contains(&format!("node {leader}")),
        "{}",
        refused.message()
    );
    let read = direct
        .get_order(pb::GetOrderRequest {
            order_id: "order-1".into(),
        })
        .await
        .expect_err("reads are served by the leader");
    assert_eq!(read.code(), tonic::Code::FailedPrecondition);

    let status = cluster.status(follower).await;
    assert_eq!(
        (status.node_id, status.role.as_str()),
        (follower, "follower")
    );
    assert_eq!(
        (status.leader_id, status.leader_addr.clone()),
        (leader, cluster.addr(leader))
    );
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|member| member.voter));
    assert!(status.millis_since_leader_contact < 1_000, "{status:?}");

    let follower_addr = cluster.addr(follower);
    let mut addrs = vec![follower_addr.clone()];
    addrs.extend(
        cluster
            .addrs()
            .into_iter()
            .filter(|addr| *addr != follower_addr),
    );
    let client = QueueClient::new(addrs, cluster.token(Role::Admin)).expect("client");
    let answer = client
        .enqueue(order("order-1", 2))
        .await
        .expect("enqueue via the follower");
    assert!(answer.newly_enqueued);
    assert_eq!(client.known_leader(), Some(cluster.addr(leader).as_str()));
    let state = client
        .get_order("order-1")
        .await
        .expect("read")
        .expect("found");
    assert_eq!((state.phase(), state.priority), (pb::OrderPhase::Queued, 2));
    assert_eq!(client.get_order("order-unknown").await.expect("read"), None);
    assert!(
        cluster
            .log_lines(leader)
            .iter()
            .any(|line| line.contains("\"message\":\"enqueue committed\"")
                && line.contains("\"order_ids\":\"order-1\"")),
        "the leader logs the committed enqueue"
    );

    let invalid = client.enqueue(order("order-2", 0)).await;
    assert!(
        matches!(&invalid, Err(ClientError::InvalidArgument(message)) if message.contains("order.items.quantity")),
        "{invalid:?}"
    );
}

/// Raft RPCs that do not decode are refused as invalid arguments; the node carries on.
/// One `EnqueueBatch` call: each order is answered on its own (a malformed one refused by name, a
/// repeated one not enqueued again), all from one log entry; an oversized batch is refused whole.
/// Concurrent enqueues through one client share calls and each is acknowledged exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_order_on_its_own() {
    let cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let mut direct = cluster.node_client(leader).await;
    let batch = pb::EnqueueBatchRequest {
        orders: vec![
            order("batch-1", 2),
            order("batch-2", 0),
            order("batch-1", 2),
        ],
    };
    let results = direct
        .enqueue_batch(batch)
        .await
        .expect("the batch is taken")
        .into_inner()
        .results;
    let outcomes: Vec<_> = results.into_iter().map(|result| result.outcome).collect();
    let [
        Some(Enqueued(first)),
        Some(Invalid(reason)),
        Some(Enqueued(repeated)),
    ] = outcomes.as_slice()
    else {
        panic!("one result per order, in order: {outcomes:?}");
    };
    assert!(first.newly_enqueued && !repeated.newly_enqueued);
    assert_eq!((first.term, first.index), (repeated.term, repeated.index));
    assert!(reason.contains("order.items.quantity"), "{reason}");

    let oversized = pb::EnqueueBatchRequest {
        orders: (0..=queue_raft::service::MAX_ORDERS_PER_BATCH)
            .map(|n| order(&format!("big-{n}"), 1))
            .collect(),
    };
    let refused = direct
        .enqueue_batch(oversized)
        .await
        .expect_err("too many orders in one call");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().starts_with("orders:"),
        "{}",
        refused.message()
    );

    let client = cluster.client();
    let answers = futures::future::join_all(
        (0..200).map(|n| client.enqueue(order(&format!("concurrent-{n}"), 1 + n % 3))),
    )
    .await;
    for answer in &answers {
        assert!(answer.as_ref().expect("acknowledged").newly_enqueued);
    }
    let entries: BTreeSet<u64> = answers
        .iter()
        .map(|answer| answer.as_ref().expect("acknowledged").index)
        .collect();
    assert!(
        entries.len() < answers.len(),
        "200 concurrent enqueues shared log entries"
    );
    let queued = queued_ids(&client).await;
    assert_eq!(queued.len(), 201, "batch-1 and the 200, each once");
}

/// Membership change: a fourth node started with `--join` is added, catches up and votes; then a
/// founding voter is removed and the cluster goes on committing without it. Bad changes are
/// refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_added_and_another_removed() {
    let mut cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    let secret = cluster.secret();
    enqueue_all(&client, 0..20).await;

    let addr = cluster.start_joining_node(4);
    let added = client
        .add_node(4, &addr, &secret)
        .await
        .expect("add node 4");
    let voters = |members: &[pb::ClusterMember]| -> BTreeSet<u64> {
        members
            .iter()
            .filter(|member| member.voter)
            .map(|member| member.node_id)
            .collect()
    };
    assert_eq!(voters(&added.members), BTreeSet::from([1, 2, 3, 4]));
    let leader = cluster.wait_for_leader(ELECTION).await;
    let status = cluster.wait_until_caught_up(4, leader, CATCH_UP).await;
    assert_eq!((status.queue_depth, status.role.as_str()), (20, "follower"));

    let removed = other_than(&[leader]);
    let after = client
        .remove_node(removed, &secret)
        .await
        .expect("remove a follower");
    let mut expected = BTreeSet::from([1, 2, 3, 4]);
    expected.remove(&removed);
    assert_eq!(voters(&after.members), expected);
    enqueue_all(&client, 20..30).await;
    let status = cluster.wait_until_caught_up(4, leader, CATCH_UP).await;
    assert_eq!(
        status.queue_depth, 30,
        "the new voter follows the smaller cluster"
    );

    let again = client.remove_node(removed, &secret).await;
    assert!(
        matches!(&again, Err(ClientError::InvalidArgument(message)) if message.contains("not a voter")),
        "{again:?}"
    );
    let zero = client.add_node(0, "127.0.0.1:1", &secret).await;
    assert!(
        matches!(&zero, Err(ClientError::InvalidArgument(message)) if message.starts_with("node_id")),
        "{zero:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_raft_messages_are_refused_without_harm() {
    let cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let follower = other_than(&[leader]);
    let mut raft = RaftTransportClient::connect(format!("http://{}", cluster.addr(follower)))
        .await
        .expect("connect to the follower");
    let secret = cluster.secret();
    // With the cluster's secret, so that the garbage reaches the decoder.
    let garbage = || {
        let mut request = tonic::Request::new(pb::RaftPayload {
            data: vec![0xff; 64],
        });
        secret.attach(&mut request);
        request
    };
    let refusals = [
        raft.append_entries(garbage())
            .await
            .expect_err("garbage append"),
        raft.vote(garbage()).await.expect_err("garbage vote"),
        raft.install_snapshot(garbage())
            .await
            .expect_err("garbage snapshot"),
    ];
    for refusal in refusals {
        assert_eq!(refusal.code(), tonic::Code::InvalidArgument, "{refusal:?}");
    }
    let client = cluster.client();
    client
        .enqueue(order("order-1", 1))
        .await
        .expect("the cluster still works");
    cluster
        .wait_until_caught_up(follower, leader, CATCH_UP)
        .await;
}

/// The executors' path through the cluster: campaign, dequeue, record the execution,
/// acknowledge, resign, each safe to retry, and a stale token refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_takes_records_and_acknowledges_an_order_under_its_lease() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    client.enqueue(order("small", 1)).await.expect("enqueue");
    client.enqueue(order("large", 5)).await.expect("enqueue");
    let ttl = Duration::from_secs(10);
    let executor_1 = Holder::new("executor-1", 101);
    let executor_2 = Holder::new("executor-2", 202);

    let granted = client.campaign(&executor_1, ttl).await.expect("campaign");
    assert!(granted.granted);
    let again = client
        .campaign(&executor_1, ttl)
        .await
        .expect("campaign again");
    assert_eq!(
        (again.granted, again.token, again.holder_incarnation),
        (false, 0, executor_1.incarnation),
        "a campaign never hands back a token in force, not even to its holder"
    );
    let contender = client.campaign(&executor_2, ttl).await.expect("campaign");
    assert_eq!(
        (contender.granted, contender.holder.as_str()),
        (false, "executor-1")
    );

    let taken = client
        .dequeue(&executor_1, granted.token)
        .await
        .expect("dequeue");
    let taken_id = taken.order.expect("an order").order_id;
    assert_eq!(taken_id, "large", "more books first");
    assert_eq!(taken.execution, None);
    let retried = client
        .dequeue(&executor_1, granted.token)
        .await
        .expect("dequeue again");
    assert_eq!(retried.order.expect("the same order").order_id, taken_id);
    let stale = client
        .dequeue(&executor_2, granted.token + 1)
        .await
        .expect("dequeue");
    assert!(!stale.accepted);
    assert_eq!(stale.current_token, granted.token);

    let early = client
        .acknowledge(&executor_1, granted.token, &taken_id)
        .await
        .expect("acknowledge");
    assert!(!early.accepted, "acknowledged before any record: {early:?}");
    for attempt in ["record", "record again"] {
        let recorded = client
            .record_execution(&executor_1, granted.token, &taken_id)
            .await
            .unwrap_or_else(|error| panic!("{attempt}: {error}"));
        assert!(recorded.recorded, "{attempt}: {recorded:?}");
        let execution = recorded.execution.expect("the record");
        assert_eq!(
            (execution.executor_id.as_str(), execution.token),
            ("executor-1", granted.token)
        );
    }
    let acknowledged = client
        .acknowledge(&executor_1, granted.token, &taken_id)
        .await
        .expect("acknowledge");
    assert!(acknowledged.accepted, "{acknowledged:?}");
    let state = client
        .get_order(&taken_id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(state.phase(), pb::OrderPhase::Executed);
    assert_eq!(state.executor_id, "executor-1");
    assert_eq!(
        state.execution.map(|execution| execution.token),
        Some(granted.token)
    );

    let resigned = client
        .resign(&executor_1, granted.token)
        .await
        .expect("resign");
    assert!(resigned.accepted);
    let next = client.campaign(&executor_2, ttl).await.expect("campaign");
    assert!(
        next.granted && next.token > granted.token,
        "fencing tokens grow"
    );
    let status = cluster
        .status(cluster.wait_for_leader(ELECTION).await)
        .await;
    assert_eq!(
        (
            status.lease_holder.as_str(),
            status.lease_holder_incarnation,
            status.lease_token
        ),
        ("executor-2", executor_2.incarnation, next.token)
    );
    assert_eq!((status.queue_depth, status.executed_count), (1, 1));
}

/// With two of three nodes killed no leader can be elected: an enqueue fails with the typed
/// error within the client's deadline, and the last node still stops promptly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_calls_fail_in_bounded_time() {
    let mut cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let survivor = other_than(&[leader]);
    cluster.kill(leader);
    cluster.kill(other_than(&[leader, survivor]));

    let deadline = Duration::from_secs(2);
    let client = cluster.client_with(ClientOptions {
        deadline,
        attempt_timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    });
    let started = Instant::now();
    let result = client.enqueue(order("order-1", 1)).await;
    let waited = started.elapsed();
    assert!(
        matches!(result, Err(ClientError::Unreachable { .. })),
        "{result:?}"
    );
    assert!(
        waited <= deadline + Duration::from_millis(500),
        "took {waited:?}"
    );

    let dead = client.cluster_status_of(&cluster.addr(leader)).await;
    assert!(
        matches!(dead, Err(ClientError::Unreachable { .. })),
        "{dead:?}"
    );
    let status = cluster.status(survivor).await;
    assert_ne!(status.role, "leader");

    let exit = cluster.terminate(survivor);
    assert!(exit.success(), "the node exited with {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_confirms_its_status_only_with_a_majority() {
    let mut cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let addr = cluster.addr(leader);
    let token = cluster.token(Role::Admin);
    let ask = |confirm_leadership: bool| {
        let (addr, token) = (addr.clone(), token.clone());
        async move {
            let mut client = connect_as(&addr, token);
            let mut request = tonic::Request::new(pb::ClusterStatusRequest {
                confirm_leadership,
                ..Default::default()
            });
            request.set_timeout(Duration::from_secs(2));
            client
                .cluster_status(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let confirmed = ask(true).await.expect("a leader with a majority confirms");
    assert_eq!(confirmed.role, "leader");

    for follower in NODE_IDS.into_iter().filter(|id| *id != leader) {
        cluster.kill(follower);
    }
    let unconfirmed = ask(true).await;
    assert!(
        unconfirmed.is_err(),
        "a leader alone confirmed its leadership: {unconfirmed:?}"
    );
    let local = ask(false).await.expect("the local view needs no majority");
    assert_eq!(local.node_id, leader);
}
