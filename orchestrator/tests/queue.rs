//! Approved orders go into the replicated queue: `GET /orders/{id}` finds them there, a retried
//! checkout never makes a second copy, and checkouts go on while the queue's leader is killed
//! with `scripts/cluster`.

mod common;

use std::time::{Duration, Instant};

use common::{Options, ScriptedCluster, System, post_checkout_with_key, valid_order};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn order_status(system: &System, order_id: &str) -> (StatusCode, Value) {
    let response = reqwest::get(system.url(&format!("/orders/{order_id}")))
        .await
        .expect("orchestrator answers");
    let status = response.status();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_order_is_queued_by_priority_and_a_rejected_one_is_known() {
    let system = System::start().await;
    let (status, answer) = post_checkout_with_key(&system, &valid_order(), None).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("Order Approved")),
        "{answer}"
    );
    let order_id = answer["orderId"].as_str().expect("orderId");

    let (status, order) = order_status(&system, order_id).await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["status"], "queued", "{order}");
    assert_eq!(order["priority"], 3, "one Hobbit and two Emmas: {order}");
    assert_eq!(order["executor"], Value::Null);
    assert_eq!(order["executedAt"], Value::Null);
    assert!(order["enqueuedAt"].is_string(), "{order}");

    let mut rejected = valid_order();
    rejected["creditCard"]["number"] = json!("4532 0151 1283 0367");
    let (_, answer) = post_checkout_with_key(&system, &rejected, None).await;
    assert_eq!(answer["status"], "Order Rejected", "{answer}");
    let (status, order) = order_status(&system, answer["orderId"].as_str().expect("orderId")).await;
    assert_eq!(
        (status, order["status"].as_str()),
        (StatusCode::OK, Some("rejected")),
        "{order}"
    );
    assert_eq!(order["reasons"][0]["field"], "creditCard.number", "{order}");

    let (status, error) = order_status(&system, &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("order_not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_checkout_with_the_same_key_is_one_order() {
    let mut system = System::start().await;
    let (_, first) =
        post_checkout_with_key(&system, &valid_order(), Some("cart-42-attempt-1")).await;
    let (_, second) =
        post_checkout_with_key(&system, &valid_order(), Some("cart-42-attempt-1")).await;
    assert_eq!(first["status"], "Order Approved", "{first}");
    assert_eq!(first["orderId"], second["orderId"]);
    let queue = system
        .cluster()
        .client()
        .list_queue(100)
        .await
        .expect("queue listing");
    assert_eq!(queue.depth, 1, "{queue:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_queue_leader_checkout_is_a_clear_503_and_nothing_is_placed() {
    let mut system = System::start().await;
    let leader = system
        .cluster()
        .wait_for_leader(Duration::from_secs(20))
        .await;
    let survivor = (1..=3).find(|id| *id != leader).expect("a follower");
    for id in (1..=3).filter(|id| *id != survivor) {
        system.cluster().kill(id);
    }

    let started = Instant::now();
    let (status, error) = post_checkout_with_key(&system, &valid_order(), Some("no-quorum")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(error["error"]["code"], "queue_unavailable", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .expect("message")
            .contains("Idempotency-Key"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );

    for id in (1..=3).filter(|id| *id != survivor) {
        system.cluster().restart(id);
    }
    system
        .cluster()
        .wait_for_leader(Duration::from_secs(20))
        .await;
    let queue = system
        .cluster()
        .client()
        .list_queue(100)
        .await
        .expect("queue listing");
    assert_eq!(
        queue.depth, 0,
        "a follower with no leader took the order: {queue:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_go_on_while_the_queue_leader_is_killed() {
    let cluster = ScriptedCluster::up();
    let options = Options {
        fraud_detection_args: vec!["--velocity-max-orders=100000".into()],
        ..Options::default()
    };
    let system = System::start_in_front_of(None, &cluster.addrs(), &cluster.tokens_dir(), options);

    let mut approved = Vec::new();
    for n in 0..40 {
        if n == 15 {
            let leader = tokio::task::block_in_place(|| cluster.run(&["leader"]));
            tokio::task::block_in_place(|| cluster.run(&["kill", leader.trim()]));
        }
        let started = Instant::now();
        let (status, answer) = post_checkout_with_key(&system, &valid_order(), None).await;
        assert_eq!(status, StatusCode::OK, "checkout {n} failed: {answer}");
        assert_eq!(answer["status"], "Order Approved", "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "checkout {n} took {:?}",
            started.elapsed()
        );
        approved.push(answer["orderId"].as_str().expect("orderId").to_owned());
    }
    for order_id in &approved {
        let (status, order) = order_status(&system, order_id).await;
        assert_eq!(
            (status, order["status"].as_str()),
            (StatusCode::OK, Some("queued")),
            "{order_id}: {order}"
        );
    }
    let status = tokio::task::block_in_place(|| cluster.run(&["status"]));
    assert!(
        status.contains("down"),
        "the killed node shows as down:\n{status}"
    );
}
