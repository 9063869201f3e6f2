//! The checkout path end to end: the four real binaries on free ports, driven over HTTP.

mod common;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{System, post_checkout, post_checkout_with_key, valid_order};
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
async fn one_grep_of_the_order_id_tells_the_whole_story() {
    let system = System::start().await;
    let (_, answer) = post_checkout(&system, &valid_order()).await;
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

/// The card of [`valid_order`] without its last four digits, the only ones that may be shown,
/// as digits and as the page groups them.
const CARD_SECRETS: [&[u8]; 2] = [b"453201511283", b"4532 0151 1283"];
/// A CVV that cannot turn up by chance on its own: no JSON number starts with 0, timestamps
/// and ports give longer runs of digits, and the order ids here come from fixed keys.
const CVV: &str = "0770";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_card_number_or_cvv_reaches_the_queue_data_the_logs_or_the_answers() {
    let system = System::start_with(common::Options {
        // A snapshot every few entries, so that the snapshot files are searched too.
        queue_node_args: vec![
            "--snapshot-logs=3".to_owned(),
            "--logs-to-keep=1".to_owned(),
        ],
        fraud_detection_args: vec!["--velocity-max-orders=1000".to_owned()],
        executors: 1,
        ..Default::default()
    })
    .await;
    let mut approved = valid_order();
    approved["creditCard"]["cvv"] = json!(CVV);
    let mut unspaced = approved.clone();
    unspaced["creditCard"]["number"] = json!("4532015112830366");
    let mut luhn = approved.clone();
    luhn["creditCard"]["number"] = json!("4532 0151 1283 0367");
    let mut expired = approved.clone();
    expired["creditCard"]["expirationDate"] = json!("01/20");
    let orders = [
        ("approved", approved.clone(), "Order Approved"),
        ("unspaced", unspaced, "Order Approved"),
        ("approved-again", approved, "Order Approved"),
        ("luhn", luhn, "Order Rejected"),
        ("expired", expired, "Order Rejected"),
    ];

    let mut answers = Vec::new();
    let mut order_ids = Vec::new();
    let mut approved_ids = Vec::new();
    for (key, order, expected) in orders {
        let (_, answer) =
            post_checkout_with_key(&system, &order, Some(&format!("card-grep-{key}"))).await;
        assert_eq!(answer["status"], expected, "{key}: {answer}");
        let order_id = answer["orderId"].as_str().expect("orderId").to_owned();
        answers.push(answer.to_string());
        let status = reqwest::get(system.url(&format!("/orders/{order_id}")))
            .await
            .expect("orchestrator answers")
            .text()
            .await
            .expect("body");
        answers.push(status);
        if expected == "Order Approved" {
            approved_ids.push(order_id.clone());
        }
        order_ids.push(order_id);
    }
    for order_id in &order_ids {
        assert!(!mentions_alone(order_id.as_bytes(), CVV.as_bytes()));
    }

    let data_dirs = system.queue_data_dirs();
    // Log lines reach the harness through pipes, a moment after the services wrote them. Each
    // node builds its own snapshots once it applied enough entries; one holding every approved
    // order also shows that the search reads the queue's data as stored (not compressed).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = system.all_log_lines();
        let logged = order_ids.iter().all(|order_id| {
            logs.iter()
                .any(|(name, line)| name == "orchestrator" && line.contains(order_id.as_str()))
        });
        let snapshots = data_dirs.iter().all(|dir| {
            std::fs::read(dir.join("queue-snapshot.bin")).is_ok_and(|snapshot| {
                approved_ids
                    .iter()
                    .all(|order_id| contains(&snapshot, order_id.as_bytes()))
            })
        });
        if logged && snapshots {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 20 s: every order logged {logged}, a snapshot with every approved order on \
             every node {snapshots}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answers.push(
        reqwest::get(system.url("/cluster/status"))
            .await
            .expect("orchestrator answers")
            .text()
            .await
            .expect("body"),
    );

    let mut searched = Vec::new();
    for dir in &data_dirs {
        files_under(dir, &mut searched);
    }
    assert!(
        searched.len() > data_dirs.len(),
        "found only {searched:?} in the queue nodes' data"
    );
    let files = searched.iter().map(|path| {
        let contents =
            std::fs::read(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
        (path.display().to_string(), contents)
    });
    let lines = system
        .every_log_line()
        .into_iter()
        .map(|(name, line)| (format!("a log line of {name}"), line.into_bytes()));
    let answers = answers
        .into_iter()
        .map(|answer| ("an answer".to_owned(), answer.into_bytes()));
    for (place, bytes) in files.chain(lines).chain(answers) {
        for secret in CARD_SECRETS {
            if let Some(at) = find(&bytes, secret) {
                panic!("the card number is in {place}: {}", excerpt(&bytes, at));
            }
        }
        if let Some(at) = find_alone(&bytes, CVV.as_bytes()) {
            panic!("the CVV is in {place}: {}", excerpt(&bytes, at));
        }
    }
}

/// The bytes around offset `at`, escaped, since data files are binary.
fn excerpt(bytes: &[u8], at: usize) -> String {
    let start = at.saturating_sub(80);
    let end = (at + 80).min(bytes.len());
    format!("...{}...", bytes[start..end].escape_ascii())
}

/// Appends every file under `dir`, at any depth, to `files`.
fn files_under(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|error| panic!("list {}: {error}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files_under(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// Where `token` first stands in `haystack` on its own, not inside a longer run of letters or
/// digits (as four digits of a timestamp or an id would).
fn find_alone(haystack: &[u8], token: &[u8]) -> Option<usize> {
    haystack
        .windows(token.len())
        .enumerate()
        .position(|(at, window)| {
            window == token
                && !haystack[..at].last().is_some_and(u8::is_ascii_alphanumeric)
                && !haystack
                    .get(at + token.len())
                    .is_some_and(u8::is_ascii_alphanumeric)
        })
}

fn mentions_alone(haystack: &[u8], token: &[u8]) -> bool {
    find_alone(haystack, token).is_some()
}

#[test]
fn a_token_inside_a_longer_run_is_not_a_mention() {
    assert!(!mentions_alone(
        br#"{"timestamp":"09:19:13.849876Z"}"#,
        b"9876"
    ));
    assert!(mentions_alone(br#"{"cvv":"9876"}"#, b"9876"));
    assert!(mentions_alone(b"cvv=9876", b"9876"));
    assert!(mentions_alone(b"\x04\0\0\0\0\0\0\09876", b"9876"));
}
