//! The checkout path end to end: the four real binaries on free ports, driven over HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{System, post_checkout, valid_order};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn reason_fields(answer: &Value) -> Vec<(String, String)> {
    answer["reasons"]
        .as_array()
        .expect("reasons array")
        .iter()
        .map(|reason| {
            (
                reason["code"].as_str().unwrap_or("").to_owned(),
                reason["field"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_order_is_approved_with_three_suggestions_it_did_not_order() {
    let system = System::start().await;
    let (status, answer) = post_checkout(&system, &valid_order()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "Order Approved", "{answer}");
    let order_id = answer["orderId"].as_str().expect("orderId");
    uuid::Uuid::parse_str(order_id).expect("the order id is a UUID");
    let suggested = answer["suggestedBooks"].as_array().expect("suggestedBooks");
    assert_eq!(suggested.len(), 3, "{answer}");
    for book in suggested {
        let title = book["title"].as_str().expect("title");
        assert!(
            !["The Hobbit", "Emma"].contains(&title),
            "suggested an ordered book: {answer}"
        );
        assert!(
            book["bookId"].is_string() && book["author"].is_string(),
            "{book}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_cards_and_missing_items_are_rejected_with_reasons_naming_them() {
    let system = System::start().await;

    let mut luhn = valid_order();
    luhn["creditCard"]["number"] = json!("4532 0151 1283 0367");
    let (status, answer) = post_checkout(&system, &luhn).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("Order Rejected")),
        "{answer}"
    );
    assert!(
        reason_fields(&answer)
            .iter()
            .any(|(_, field)| field == "creditCard.number"),
        "{answer}"
    );
    assert_eq!(answer["suggestedBooks"], json!([]));

    let mut expired = valid_order();
    expired["creditCard"]["expirationDate"] = json!("01/20");
    let (_, answer) = post_checkout(&system, &expired).await;
    assert_eq!(answer["status"], "Order Rejected", "{answer}");
    assert!(
        reason_fields(&answer)
            .iter()
            .any(|(_, field)| field == "creditCard.expirationDate"),
        "{answer}"
    );

    let mut empty = valid_order();
    empty["items"] = json!([]);
    let (_, answer) = post_checkout(&system, &empty).await;
    assert_eq!(answer["status"], "Order Rejected", "{answer}");
    assert!(
        reason_fields(&answer)
            .iter()
            .any(|(_, field)| field == "items"),
        "{answer}"
    );

    let mut missing = valid_order();
    missing.as_object_mut().expect("object").remove("items");
    let (status, answer) = post_checkout(&system, &missing).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("message")
            .contains("items"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_and_wrong_types_are_refused_with_a_message() {
    let system = System::start().await;
    let client = reqwest::Client::new();

    let response = client
        .post(system.url("/checkout"))
        .body("{\"user\": ")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["error"]["code"], "malformed_json");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty())
    );

    let mut wrong = valid_order();
    wrong["items"][0]["quantity"] = json!("two");
    let (status, answer) = post_checkout(&system, &wrong).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("items[0].quantity"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_plain_body_is_accepted() {
    let system = System::start().await;
    let response = reqwest::Client::new()
        .post(system.url("/checkout"))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(valid_order().to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["status"], "Order Approved", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backend_gives_a_clear_503_within_the_deadline() {
    let deadline = Duration::from_secs(2);
    let mut system = System::start_with(common::Options {
        backend_timeout: deadline,
        ..Default::default()
    })
    .await;
    let fraud_detection = system.fraud_detection.take().expect("running");
    assert!(
        fraud_detection.terminate().success(),
        "fraud detection exits cleanly on SIGTERM"
    );

    let started = Instant::now();
    let (status, answer) = post_checkout(&system, &valid_order()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "backend_unavailable");
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("message")
            .contains("fraud-detection"),
        "{answer}"
    );
    assert!(
        started.elapsed() < deadline + Duration::from_secs(3),
        "answered only after {:?}",
        started.elapsed()
    );

    let suggestions = system.suggestions.take().expect("running");
    assert!(
        suggestions.terminate().success(),
        "suggestions exits cleanly on SIGTERM"
    );
    let response = reqwest::get(system.url("/books")).await.expect("answer");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_lists_at_least_a_hundred_books() {
    let system = System::start().await;
    let books: Value = reqwest::get(system.url("/books"))
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    let books = books["books"].as_array().expect("books");
    assert!(books.len() >= 100, "only {} books", books.len());
    assert!(books.iter().any(|book| book["title"] == "The Hobbit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_grep_of_the_order_id_tells_the_whole_story_and_no_log_shows_the_card() {
    let system = System::start().await;
    let mut order = valid_order();
    order["creditCard"]["cvv"] = json!("9876");
    let (_, answer) = post_checkout(&system, &order).await;
    let order_id = answer["orderId"].as_str().expect("orderId").to_owned();

    let services = [
        "fraud-detection",
        "transaction-verification",
        "suggestions",
        "orchestrator",
    ];
    let lines_with_id = |logs: &[(String, String)], service: &str| {
        logs.iter()
            .filter(|(name, line)| name == service && line.contains(&order_id))
            .count()
    };
    // Log lines reach the harness through pipes, a moment after the services wrote them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = system.all_log_lines();
        if services
            .iter()
            .all(|service| lines_with_id(&logs, service) >= 2)
            || Instant::now() > deadline
        {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for service in services {
        let lines = lines_with_id(&logs, service);
        assert!(
            lines >= 2,
            "{service} logged {lines} lines with the order id"
        );
    }
    for (service, line) in &logs {
        for secret in ["4532015112830366", "4532 0151 1283 0366"] {
            assert!(!line.contains(secret), "{service} logged {secret}: {line}");
        }
        assert!(
            !mentions_alone(line, "9876"),
            "{service} logged the CVV: {line}"
        );
    }
    assert!(
        !answer.to_string().contains("4532"),
        "the answer shows the card: {answer}"
    );

    for service in [
        system.orchestrator,
        system.fraud_detection.expect("running"),
    ] {
        let name = service.name.clone();
        assert!(
            service.terminate().success(),
            "{name} exits cleanly on SIGTERM"
        );
    }
}

/// Whether `token` stands in `line` on its own, not inside a longer run of letters or digits
/// (as four digits of a timestamp or an id would).
fn mentions_alone(line: &str, token: &str) -> bool {
    line.match_indices(token).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + token.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

#[test]
fn a_token_inside_a_longer_run_is_not_a_mention() {
    assert!(!mentions_alone(
        r#"{"timestamp":"09:19:13.849876Z"}"#,
        "9876"
    ));
    assert!(mentions_alone(r#"{"cvv":"9876"}"#, "9876"));
    assert!(mentions_alone("cvv=9876", "9876"));
}
