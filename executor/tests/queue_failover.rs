//! The queue's Raft leader SIGKILLed while the executors work: they follow the new leader,
//! executions go on, none is lost and none is doubled.

mod common;

use std::time::Duration;

use common::cluster::{Cluster, wait_for};
use common::{
    ExecutorOptions, Executors, assert_executed_exactly_once, enqueue_orders, ids_of,
    wait_until_executed,
};

const ORDERS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_go_on_through_a_raft_leader_crash_with_none_lost_or_doubled() {
    let mut cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    let orders = enqueue_orders(&client, ORDERS).await;
    let order_ids = ids_of(&orders);
    // A lease that outlasts a Raft failover (about a second), so an order in hand survives it.
    let options = ExecutorOptions {
        lease_ttl_ms: 3_000,
        ..ExecutorOptions::default()
    };
    let executors = Executors::start(&cluster, &options);

    let executed_before = wait_for(Duration::from_secs(30), "a few executions", || {
        let client = client.clone();
        async move {
            client
                .cluster_status_all()
                .await
                .into_iter()
                .filter_map(|(_, status)| status.ok())
                .find(|status| status.role == "leader" && status.executed_count >= 10)
                .map(|status| status.executed_count)
        }
    })
    .await;
    let old_leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    cluster.kill(old_leader);
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, old_leader);

    let states = wait_until_executed(&client, &order_ids, Duration::from_secs(60)).await;
    assert_executed_exactly_once(&states, &executors.ledger(), &executors.executions_logged());
    assert!(
        (executed_before as usize) < ORDERS,
        "everything was executed before the crash"
    );
    let mut times: Vec<u64> = states.values().map(|state| state.executed_at_ms).collect();
    times.sort_unstable();
    let longest_pause = times.windows(2).map(|pair| pair[1] - pair[0]).max();
    eprintln!("longest pause between two executions: {longest_pause:?} ms");
}
