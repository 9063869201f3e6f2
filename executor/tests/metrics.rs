//! `/metrics` of the executors (on their HTTP port) and of the queue nodes after a handful of
//! orders: elections won, lease grants and orders executed add up across the executors, and the
//! queue counts the same grants and executions.

mod common;

use std::time::Duration;

use bookstore_common::testing::{metric_sum, metric_value, scrape_metrics};
use common::cluster::{Cluster, NODE_IDS, wait_for};
use common::{
    EXECUTOR_IDS, ExecutorOptions, Executors, enqueue_orders, ids_of, wait_until_executed,
};

const ORDERS: usize = 6;

async fn scrape(url: &str) -> String {
    scrape_metrics(url)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_and_queue_nodes_count_elections_grants_and_executions() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    let orders = enqueue_orders(&client, ORDERS).await;
    let executors = Executors::start(&cluster, &ExecutorOptions::default());
    wait_until_executed(&client, &ids_of(&orders), Duration::from_secs(60)).await;

    let mut executed = 0.0;
    let mut grants = 0.0;
    let mut won = 0.0;
    for id in EXECUTOR_IDS {
        let text = scrape(&format!("{}/metrics", executors.url(id))).await;
        // Every executor has campaigned or followed by now, so its role is known.
        assert!(
            metric_value(&text, "bookstore_executor_leader").is_some(),
            "{id}:\n{text}"
        );
        executed += metric_sum(&text, "bookstore_executor_orders_executed_total");
        grants += metric_sum(&text, "bookstore_executor_lease_grants_total");
        won += metric_value(
            &text,
            r#"bookstore_executor_elections_total{outcome="won"}"#,
        )
        .unwrap_or(0.0);
    }
    assert_eq!(executed, ORDERS as f64);
    // One lease per order at least (a lease that expired unused is granted again).
    assert!(grants >= ORDERS as f64, "{grants} lease grants");
    assert_eq!(won, grants);

    // The scrape itself was counted, by route.
    let text = scrape(&format!("{}/metrics", executors.url(EXECUTOR_IDS[0]))).await;
    assert!(
        metric_value(
            &text,
            r#"bookstore_http_requests_total{route="/metrics",method="GET",status="200"}"#
        ) >= Some(1.0),
        "{text}"
    );

    // The replicated queue counts the same: every node, once its sample has caught up.
    for node in NODE_IDS {
        let url = cluster.metrics_url(node);
        wait_for(
            Duration::from_secs(10),
            "the executions in the queue's metrics",
            || {
                let url = url.clone();
                async move {
                    let text = scrape(&url).await;
                    let done = metric_value(&text, "bookstore_queue_orders_executed_total")
                        == Some(ORDERS as f64)
                        && metric_value(&text, "bookstore_queue_lease_grants_total")
                            >= Some(grants)
                        && metric_value(&text, "bookstore_queue_depth") == Some(0.0);
                    done.then_some(())
                }
            },
        )
        .await;
    }
}
