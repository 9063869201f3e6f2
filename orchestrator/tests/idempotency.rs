//! Checkout idempotency as payment APIs do it, against the real processes: the first decision
//! for an `Idempotency-Key` is final and kept in the replicated queue, so a retry is answered
//! from it (without asking the backends again) by any orchestrator, after any restart; the same
//! key with another body is refused `422 idempotency_key_reused`; `GET /orders/{id}` reads the
//! queue's record, so every orchestrator answers alike.

mod common;

use common::{Options, System, post_checkout_with_key, valid_order};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn order_status_at(base_url: &str, order_id: &str) -> (StatusCode, Value) {
    let response = reqwest::get(format!("{base_url}/orders/{order_id}"))
        .await
        .expect("orchestrator answers");
    let status = response.status();
    (status, response.json().await.expect("JSON body"))
}

/// The card's velocity limit is one order: any second assessment of the same card is a
/// rejection. A retry that asked fraud detection again would be rejected.
fn one_order_per_card() -> Options {
    Options {
        fraud_detection_args: vec!["--velocity-max-orders=1".to_owned()],
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_checkout_retried_past_the_cards_velocity_limit_stays_approved() {
    let system = System::start_with(one_order_per_card()).await;
    let key = "cart-7-velocity";
    let (status, first) = post_checkout_with_key(&system, &valid_order(), Some(key)).await;
    assert_eq!(
        (status, first["status"].as_str()),
        (StatusCode::OK, Some("Order Approved")),
        "{first}"
    );
    let order_id = first["orderId"].as_str().expect("orderId").to_owned();

    for attempt in 1..=2 {
        let (status, retried) = post_checkout_with_key(&system, &valid_order(), Some(key)).await;
        assert_eq!(status, StatusCode::OK, "retry {attempt}: {retried}");
        assert_eq!(
            retried["status"], "Order Approved",
            "retry {attempt}: {retried}"
        );
        assert_eq!(retried["orderId"], first["orderId"], "retry {attempt}");
        assert_eq!(
            retried["suggestedBooks"], first["suggestedBooks"],
            "retry {attempt}: the suggestions come from the record"
        );
        assert_eq!(retried["reasons"], json!([]), "retry {attempt}: {retried}");
    }

    // The card is past its limit: a new order with it (another key) is rejected, which shows
    // that the retries above were not assessed again.
    let (_, other) = post_checkout_with_key(&system, &valid_order(), Some("cart-8")).await;
    assert_eq!(other["status"], "Order Rejected", "{other}");

    let (status, order) = order_status_at(&system.orchestrator.url(), &order_id).await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(
        order["status"], "queued",
        "GET follows the queue's record: {order}"
    );
    assert_eq!(order["reasons"], json!([]), "{order}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_order_is_known_to_another_orchestrator_and_after_a_restart() {
    let mut system = System::start().await;
    let mut rejected = valid_order();
    rejected["creditCard"]["number"] = json!("4532 0151 1283 0367");
    let (_, answer) = post_checkout_with_key(&system, &rejected, Some("luhn-1")).await;
    assert_eq!(answer["status"], "Order Rejected", "{answer}");
    let order_id = answer["orderId"].as_str().expect("orderId").to_owned();

    let second = system.start_orchestrator();
    let (status, order) = order_status_at(&second.url(), &order_id).await;
    assert_eq!(
        (status, order["status"].as_str()),
        (StatusCode::OK, Some("rejected")),
        "from a second orchestrator: {order}"
    );
    assert_eq!(order["reasons"], answer["reasons"], "{order}");

    system.restart_orchestrator();
    let (status, order) = order_status_at(&system.orchestrator.url(), &order_id).await;
    assert_eq!(
        (status, order["status"].as_str()),
        (StatusCode::OK, Some("rejected")),
        "after a restart: {order}"
    );
    // A retry is answered from the record by whichever orchestrator gets it.
    let retry = reqwest::Client::new()
        .post(format!("{}/checkout", second.url()))
        .header("Idempotency-Key", "luhn-1")
        .json(&rejected)
        .send()
        .await
        .expect("second orchestrator answers");
    assert_eq!(retry.status(), StatusCode::OK);
    let retried: Value = retry.json().await.expect("JSON body");
    assert_eq!(retried["status"], "Order Rejected", "{retried}");
    assert_eq!(retried["orderId"], answer["orderId"]);
    assert_eq!(retried["reasons"], answer["reasons"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_with_another_body_is_refused_with_422() {
    let mut system = System::start().await;
    let key = "cart-9";
    let (_, first) = post_checkout_with_key(&system, &valid_order(), Some(key)).await;
    assert_eq!(first["status"], "Order Approved", "{first}");

    let mut other_books = valid_order();
    other_books["items"] = json!([{"name": "Dune", "quantity": 4}]);
    let mut other_card = valid_order();
    other_card["creditCard"]["number"] = json!("4556 7375 8689 9855");
    // Only the hidden digits differ: told apart by the card's keyed digest.
    let mut same_last_four = valid_order();
    same_last_four["creditCard"]["number"] = json!("4556 7375 8689 0366");
    let mut other_cvv = valid_order();
    other_cvv["creditCard"]["cvv"] = json!("321");
    for (what, body) in [
        ("other books", other_books),
        ("another card", other_card),
        (
            "another card with the same last four digits",
            same_last_four,
        ),
        ("another CVV", other_cvv),
    ] {
        let (status, error) = post_checkout_with_key(&system, &body, Some(key)).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("idempotency_key_reused")
            ),
            "{what}: {error}"
        );
        let message = error["error"]["message"].as_str().expect("message");
        assert!(
            !message.contains("4556"),
            "{what}: the card leaked: {message}"
        );
    }
    // The first order is the only one, with its own books.
    let queue = system
        .cluster()
        .client()
        .list_queue(100)
        .await
        .expect("queue listing");
    assert_eq!(queue.depth, 1, "{queue:?}");
    let (_, order) = order_status_at(
        &system.orchestrator.url(),
        first["orderId"].as_str().expect("orderId"),
    )
    .await;
    assert_eq!(order["priority"], 3, "{order}");
}
