//! 200 orders of mixed sizes through three executors: every order executed exactly once, a new
//! election (a new, larger token) for every order, every executor leading, orders taken by
//! priority, each ledger line's dequeue-to-execution span ending before the next begins; and
//! the executors' HTTP port and graceful shutdown.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::cluster::{Cluster, wait_for};
use common::{
    EXECUTOR_IDS, ExecutorOptions, Executors, assert_executed_exactly_once, enqueue_orders, ids_of,
    wait_until_executed,
};

const ORDERS: usize = 200;

type Timestamp = chrono::DateTime<chrono::FixedOffset>;

fn rfc3339(text: &str) -> Timestamp {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{text:?} in the ledger is not RFC 3339: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_is_executed_once_by_priority_with_an_election_per_order() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    let orders = enqueue_orders(&client, ORDERS).await;
    let order_ids = ids_of(&orders);
    let mut executors = Executors::start(&cluster, &ExecutorOptions::default());

    let states = wait_until_executed(&client, &order_ids, Duration::from_secs(90)).await;
    assert_executed_exactly_once(&states, &executors.ledger(), &executors.executions_logged());

    // In execution order, which is token order: every order its own lease.
    let mut executed: Vec<_> = states.values().collect();
    executed.sort_by_key(|state| state.token);
    let tokens: Vec<u64> = executed.iter().map(|state| state.token).collect();
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "two orders were executed under one lease: {tokens:?}"
    );
    assert!(
        executed
            .windows(2)
            .all(|pair| pair[0].executed_at_ms <= pair[1].executed_at_ms),
        "tokens and execution times disagree"
    );
    // Each ledger line spans its dequeue to its execution, and one lease's span ends before the
    // next lease's dequeue begins.
    let mut spans: Vec<(u64, Timestamp, Timestamp)> = executors
        .ledger()
        .iter()
        .map(|line| {
            (
                line.token,
                rfc3339(&line.dequeued_at),
                rfc3339(&line.executed_at),
            )
        })
        .collect();
    spans.sort_by_key(|&(token, ..)| token);
    assert!(
        spans
            .iter()
            .all(|(_, dequeued_at, executed_at)| dequeued_at <= executed_at),
        "an order executed before its dequeue began: {spans:?}"
    );
    assert!(
        spans.windows(2).all(|pair| pair[0].2 <= pair[1].1),
        "a dequeue began before the previous lease's execution ended: {spans:?}"
    );
    // Everything was queued before the first executor started, so each lease took the first
    // order left in the dequeue order (priority with aging, ties in commit order).
    let ranks: Vec<queue_raft::DequeueKey> = executed
        .iter()
        .map(|state| {
            queue_raft::DequeueKey::new(state.enqueued_at_queue_ms, state.priority, state.sequence)
        })
        .collect();
    assert!(
        ranks.windows(2).all(|pair| pair[0] < pair[1]),
        "orders were not taken by priority: {ranks:?}"
    );
    let leaders: BTreeSet<&str> = executed
        .iter()
        .map(|state| state.executor_id.as_str())
        .collect();
    assert_eq!(
        leaders,
        BTreeSet::from(EXECUTOR_IDS),
        "not every executor led"
    );
    let handovers = executed
        .windows(2)
        .filter(|pair| pair[0].executor_id != pair[1].executor_id)
        .count();
    eprintln!(
        "{handovers} of {} consecutive orders went to another executor",
        ORDERS - 1
    );
    assert!(
        handovers * 10 >= (ORDERS - 1) * 9,
        "the back-off did not move leadership: {handovers} handovers"
    );

    // Each executor's status counts what the cluster says it executed.
    let mut executed_by: BTreeMap<&str, u64> = BTreeMap::new();
    for state in &executed {
        *executed_by.entry(state.executor_id.as_str()).or_default() += 1;
    }
    let http = reqwest::Client::new();
    for id in EXECUTOR_IDS {
        let health: serde_json::Value = http
            .get(format!("{}/health", executors.url(id)))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("health answers")
            .json()
            .await
            .expect("health is JSON");
        assert_eq!(health, serde_json::json!({"status": "ok"}));
        let status: serde_json::Value = http
            .get(format!("{}/status", executors.url(id)))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("status answers")
            .json()
            .await
            .expect("status is JSON");
        assert_eq!(status["id"], id);
        assert_eq!(status["ordersExecuted"], executed_by[id], "{status}");
        assert_eq!(status["currentOrder"], serde_json::Value::Null, "{status}");
    }

    // Idle executors only read: the Raft log stays as it is. (The leader is asked for with room
    // to spare: the two hundred elections just run can leave the nodes' first answers slow on a
    // loaded machine, as in one CI run.)
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let idle_since = wait_for(Duration::from_secs(5), "the last leader to resign", || {
        let cluster = &cluster;
        async move {
            let status = cluster.status(leader).await;
            status
                .lease_holder
                .is_empty()
                .then_some(status.last_log_index)
        }
    })
    .await;
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < watch_until {
        let status = cluster.status(leader).await;
        assert_eq!(
            status.last_log_index, idle_since,
            "idle executors wrote to the Raft log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Idle, nobody holds the lease; each executor stops on SIGTERM, cleanly.
    for id in EXECUTOR_IDS {
        let exit = executors.terminate(id).await;
        assert!(exit.success(), "{id} exited with {exit:?}");
    }
}
