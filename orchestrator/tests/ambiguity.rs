//! Answers that cannot say whether an order was placed: the queue did not confirm an approved
//! order, or the checkout ran out of its time. Each carries the order id, a `Retry-After`, and
//! what to do; a caller that sent no `Idempotency-Key` is given one (never told to reuse "the
//! same key" it does not have), and retrying with it lands on the same order. And an
//! orchestrator that is stopped answers the checkouts in flight before it exits.

mod common;

use std::time::{Duration, Instant};

use common::{Options, System, post_checkout_with_key, valid_order};
use reqwest::StatusCode;
use serde_json::Value;

/// POSTs `body` to `/checkout` (with `key` when given); the status, the headers and the JSON.
async fn checkout(
    system: &System,
    body: &Value,
    key: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(system.url("/checkout"))
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("orchestrator answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, json)
}

fn retry_after_seconds(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {headers:?}"))
}

/// Kills every queue node but one: no majority, so nothing can commit.
async fn leave_one_node(system: &mut System) -> Vec<u64> {
    let leader = system
        .cluster()
        .wait_for_leader(Duration::from_secs(20))
        .await;
    let survivor = (1..=3).find(|id| *id != leader).expect("a follower");
    let killed: Vec<u64> = (1..=3).filter(|id| *id != survivor).collect();
    for id in &killed {
        system.cluster().kill(*id);
    }
    killed
}

async fn restore(system: &mut System, killed: &[u64]) {
    for id in killed {
        system.cluster().restart(*id);
    }
    system
        .cluster()
        .wait_for_leader(Duration::from_secs(20))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_approval_without_a_key_gives_one_and_the_order_id() {
    let mut system = System::start().await;
    let killed = leave_one_node(&mut system).await;

    let (status, headers, error) = checkout(&system, &valid_order(), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(error["error"]["code"], "queue_unavailable", "{error}");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(
        !message.contains("same Idempotency-Key"),
        "told to reuse a key it never sent: {message}"
    );
    let order_id = error["error"]["orderId"]
        .as_str()
        .unwrap_or_else(|| panic!("no order id: {error}"))
        .to_owned();
    assert!(message.contains(&order_id), "{message}");
    assert!(retry_after_seconds(&headers) >= 1);
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("no key given back: {headers:?}"))
        .to_owned();
    assert_eq!(error["error"]["idempotencyKey"], key.as_str(), "{error}");
    assert!(message.contains(&key), "{message}");

    restore(&mut system, &killed).await;
    let (status, answer) = post_checkout_with_key(&system, &valid_order(), Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "Order Approved", "{answer}");
    assert_eq!(
        answer["orderId"],
        order_id.as_str(),
        "the key leads to the same order"
    );
    let queue = system
        .cluster()
        .client()
        .list_queue(100)
        .await
        .expect("queue listing");
    assert_eq!(
        queue.depth, 1,
        "one order, however many attempts: {queue:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_approval_with_a_key_says_to_retry_with_it() {
    let mut system = System::start().await;
    let killed = leave_one_node(&mut system).await;

    let (status, headers, error) = checkout(&system, &valid_order(), Some("cart-12")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    let message = error["error"]["message"].as_str().expect("message");
    let order_id = error["error"]["orderId"].as_str().expect("orderId");
    assert_eq!(order_id, orchestrator::routes::order_id_from_key("cart-12"));
    assert!(message.contains("same Idempotency-Key"), "{message}");
    assert!(message.contains(order_id), "{message}");
    assert!(retry_after_seconds(&headers) >= 1);

    restore(&mut system, &killed).await;
    let (_, answer) = post_checkout_with_key(&system, &valid_order(), Some("cart-12")).await;
    assert_eq!(answer["status"], "Order Approved", "{answer}");
    assert_eq!(answer["orderId"], order_id);
}

/// Accepts connections and never answers: a backend that hangs.
async fn silent_listener() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (format!("http://{addr}"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_out_of_time_answers_with_the_order_id_before_any_layer_cuts_it() {
    let (hanging, listener) = silent_listener().await;
    let budget = Duration::from_secs(2);
    let system = System::start_with(Options {
        // Far longer than the budget: only the budget can end the checkout.
        backend_timeout: Duration::from_secs(60),
        fraud_detection_addr: Some(hanging),
        orchestrator_args: vec![format!("--checkout-timeout-ms={}", budget.as_millis())],
        ..Options::default()
    })
    .await;

    let started = Instant::now();
    let (status, headers, error) = checkout(&system, &valid_order(), Some("cart-13")).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(error["error"]["code"], "checkout_timeout", "{error}");
    assert_eq!(
        error["error"]["orderId"],
        orchestrator::routes::order_id_from_key("cart-13").as_str(),
        "{error}"
    );
    assert!(retry_after_seconds(&headers) >= 1);
    assert!(
        took >= budget && took < budget + Duration::from_secs(5),
        "answered after {took:?}"
    );
    listener.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_orchestrator_answers_the_checkout_in_flight_before_it_exits() {
    let (hanging, listener) = silent_listener().await;
    let backend_timeout = Duration::from_secs(3);
    let system = System::start_with(Options {
        backend_timeout,
        fraud_detection_addr: Some(hanging),
        ..Options::default()
    })
    .await;
    let orchestrator = system.start_orchestrator();
    let url = format!("{}/checkout", orchestrator.url());
    let in_flight = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(url)
            .header("Idempotency-Key", "cart-14")
            .json(&valid_order())
            .send()
            .await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.json::<Value>().await?))
    });
    // The checkout is waiting for fraud detection when the orchestrator is told to stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let exit = tokio::task::block_in_place(|| orchestrator.terminate());
    assert!(exit.success(), "the orchestrator exited with {exit:?}");
    let (status, answer) = in_flight
        .await
        .expect("the request task")
        .expect("answered, not cut off");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "backend_unavailable", "{answer}");
    assert!(
        started.elapsed() >= backend_timeout - Duration::from_millis(600),
        "the orchestrator stopped before the checkout's backend deadline"
    );
    listener.abort();
}
