//! Every queue node serves Prometheus metrics on a port of its own (`--metrics-listen`): its Raft
//! role, term, leader and log positions, the queue it holds and the gRPC calls it served; and
//! it stops that server with the rest on SIGTERM.

mod common;

use std::time::Duration;

use bookstore_common::testing::{metric_sum, metric_value, scrape_metrics};
use common::cluster::{Cluster, NODE_IDS, order, wait_for};

const ORDERS: u32 = 5;

async fn scrape(url: &str) -> Option<String> {
    scrape_metrics(url).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_reports_its_role_term_log_positions_and_queue() {
    let mut cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    for n in 1..=ORDERS {
        client
            .enqueue(order(&format!("order-{n}"), n))
            .await
            .unwrap_or_else(|error| panic!("enqueue order-{n}: {error}"));
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let leader_status = cluster.status(leader).await;

    for id in NODE_IDS {
        let url = cluster.metrics_url(id);
        // Log positions and the queue are sampled every half second: wait for the sample that
        // has every order applied.
        let text = wait_for(Duration::from_secs(10), "the queue in the metrics", || {
            let url = url.clone();
            let applied = leader_status.applied_index as f64;
            async move {
                let text = scrape(&url).await?;
                let caught_up = metric_value(&text, "bookstore_queue_depth")
                    == Some(f64::from(ORDERS))
                    && metric_value(&text, "bookstore_raft_applied_index") >= Some(applied);
                caught_up.then_some(text)
            }
        })
        .await;
        let role =
            |role: &str| metric_value(&text, &format!("bookstore_raft_role{{role=\"{role}\"}}"));
        let (is, is_not) = if id == leader {
            ("leader", "follower")
        } else {
            ("follower", "leader")
        };
        assert_eq!(role(is), Some(1.0), "node {id}:\n{text}");
        assert_eq!(role(is_not), Some(0.0), "node {id}:\n{text}");
        assert_eq!(
            metric_value(&text, "bookstore_raft_term"),
            Some(leader_status.term as f64),
            "node {id}"
        );
        assert!(leader_status.term > 0);
        assert_eq!(
            metric_value(&text, "bookstore_raft_leader_id"),
            Some(leader as f64),
            "node {id}"
        );
        assert!(
            metric_value(&text, "bookstore_raft_leader_changes_total") >= Some(1.0),
            "node {id}:\n{text}"
        );
        // Membership, the leader's blank entry and at least one entry of orders.
        assert!(
            metric_value(&text, "bookstore_raft_commit_index") >= Some(3.0),
            "node {id}:\n{text}"
        );
        assert!(
            metric_value(&text, "bookstore_raft_last_log_index")
                >= metric_value(&text, "bookstore_raft_applied_index"),
            "node {id}:\n{text}"
        );
        assert_eq!(
            metric_value(&text, "bookstore_queue_orders_enqueued_total"),
            Some(f64::from(ORDERS)),
            "node {id}"
        );
        assert_eq!(
            metric_value(&text, "bookstore_queue_orders_executed_total"),
            Some(0.0),
            "node {id}"
        );
        assert_eq!(
            metric_value(&text, "bookstore_queue_lease_grants_total"),
            Some(0.0),
            "node {id}"
        );
        // Heartbeats and appends reach every follower; the leader sends them.
        if id != leader {
            assert!(
                metric_value(
                    &text,
                    "bookstore_grpc_requests_total{method=\"/bookstore.RaftTransport/AppendEntries\",code=\"OK\"}"
                ) > Some(0.0),
                "node {id}:\n{text}"
            );
        }
        if id == leader {
            // The orders went into log entries through the leader's group commit.
            assert!(
                metric_value(&text, "bookstore_raft_entry_commands_count") >= Some(1.0),
                "node {id}:\n{text}"
            );
            assert!(
                metric_sum(&text, "bookstore_grpc_request_duration_seconds_count") > 0.0,
                "node {id}:\n{text}"
            );
        }
    }

    // The metrics server goes with the node: SIGTERM stops both, cleanly.
    let follower = NODE_IDS
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let url = cluster.metrics_url(follower);
    let status = cluster.terminate(follower);
    assert!(status.success(), "node {follower} exited with {status}");
    assert!(
        reqwest::get(&url).await.is_err(),
        "{url} still answers after SIGTERM"
    );
}
