//! An executor stopped with SIGTERM while it executes an order gives the lease back at once:
//! the order returns to the queue by resignation, long before the lease would expire, and
//! another executor executes it once.

mod common;

use std::time::Duration;

use common::cluster::{Cluster, wait_for};
use common::{
    ExecutorOptions, Executors, assert_executed_exactly_once, enqueue_orders, executing_order,
    ids_of, wait_until_executed,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_stopped_mid_order_resigns_and_the_order_is_executed_by_another() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    let orders = enqueue_orders(&client, 2).await;
    let order_ids = ids_of(&orders);
    // A lease far longer than the test waits: the order can only come back by resignation.
    let options = ExecutorOptions {
        lease_ttl_ms: 30_000,
        execution_ms: [1_500; 3],
        ..ExecutorOptions::default()
    };
    let mut executors = Executors::start(&cluster, &options);

    let held = wait_for(Duration::from_secs(20), "an order to be executing", || {
        executing_order(&client, &order_ids)
    })
    .await;
    let order_id = held.order.as_ref().expect("an order").order_id.clone();
    let stopped = held.executor_id.clone();
    let exit = executors.terminate(&stopped).await;
    assert!(exit.success(), "{stopped} exited with {exit:?}");

    let states = wait_until_executed(&client, &order_ids, Duration::from_secs(15)).await;
    assert_executed_exactly_once(&states, &executors.ledger(), &executors.executions_logged());
    assert_ne!(states[&order_id].executor_id, stopped);
    let resigned = executors.log_lines(&stopped).into_iter().any(|line| {
        line["message"] == "resigned" && line["requeued_order_id"] == order_id.as_str()
    });
    assert!(resigned, "{stopped} did not resign with {order_id} in hand");
}
