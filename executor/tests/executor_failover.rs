//! The executor leader SIGKILLed while it holds an order: the order is executed exactly once
//! afterwards, by another executor under a larger token, once the dead leader's lease expired.

mod common;

use std::time::Duration;

use bookstore_proto as pb;
use common::cluster::{Cluster, wait_for};
use common::{
    ExecutorOptions, Executors, assert_executed_exactly_once, enqueue_orders, executing_order,
    ids_of, wait_until_executed,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_held_by_a_killed_leader_is_executed_once_by_another_after_its_lease() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    let orders = enqueue_orders(&client, 3).await;
    let order_ids = ids_of(&orders);
    let options = ExecutorOptions {
        lease_ttl_ms: 1_000,
        execution_ms: [2_000; 3],
        ..ExecutorOptions::default()
    };
    let mut executors = Executors::start(&cluster, &options);

    let held = wait_for(Duration::from_secs(20), "an order to be executing", || {
        executing_order(&client, &order_ids)
    })
    .await;
    let order_id = held.order.as_ref().expect("an order").order_id.clone();
    let victim = held.executor_id.clone();
    executors.kill(&victim);
    // The dead leader's lease as the cluster recorded it: it can no longer be renewed.
    let lease_end = client
        .cluster_status_all()
        .await
        .into_iter()
        .filter_map(|(_, status)| status.ok())
        .filter(|status| status.lease_token == held.token)
        .map(|status| status.lease_expires_at_ms)
        .max()
        .unwrap_or(0);

    let taken_again = wait_for(
        Duration::from_secs(20),
        "another executor to take the order",
        || {
            let client = client.clone();
            let order_id = order_id.clone();
            async move {
                let state = client.get_order(&order_id).await.ok()??;
                (state.token != held.token && state.phase != pb::OrderPhase::Queued as i32)
                    .then_some(state)
            }
        },
    )
    .await;
    assert_ne!(taken_again.executor_id, victim);
    assert!(taken_again.token > held.token, "{taken_again:?}");
    assert!(
        taken_again.since_ms >= lease_end,
        "taken again at {} before the dead leader's lease ended at {lease_end}",
        taken_again.since_ms
    );

    let states = wait_until_executed(&client, &order_ids, Duration::from_secs(30)).await;
    assert_executed_exactly_once(&states, &executors.ledger(), &executors.executions_logged());
    let executed = &states[&order_id];
    assert_ne!(executed.executor_id, victim);
    assert!(executed.token > held.token);
}
