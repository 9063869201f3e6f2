//! Bounded checkouts, through the real processes (queue cluster, backends, orchestrator):
//! - every text and list of a checkout has the bound the OpenAPI file states, and a body over one
//!   is a `422 invalid_field` naming the field, while a body at the bounds is decided;
//! - a body of thousands of empty items is neither kept nor logged in full: what the queue keeps
//!   of a rejection and every log line of every process stay small;
//! - a card number, CVV or expiry sent in any JSON type and shape never comes back in an answer
//!   and is never logged by any process.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{System, valid_order};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The longest log line any process may write about a checkout, in bytes.
const MAX_LOG_LINE_BYTES: usize = 4 * 1024;

/// The OpenAPI file the orchestrator serves.
fn openapi() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The scalar at `keys` in `yaml`, each key a direct child of the one before (block mappings
/// only, as the OpenAPI file is written).
fn yaml_scalar(yaml: &str, keys: &[&str]) -> Option<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let meaningful =
        |(_, line): &(usize, &&str)| !line.trim().is_empty() && !line.trim_start().starts_with('#');
    let (mut from, mut parent_indent) = (0, None::<usize>);
    for (depth, key) in keys.iter().enumerate() {
        let children = lines[from..]
            .iter()
            .enumerate()
            .filter(meaningful)
            .take_while(|(_, line)| parent_indent.is_none_or(|parent| indent(line) > parent));
        let mut child_indent = None;
        let mut found = None;
        for (offset, line) in children {
            let at = *child_indent.get_or_insert(indent(line));
            if indent(line) == at && line.trim_start().starts_with(&format!("{key}:")) {
                found = Some((from + offset, at));
                break;
            }
        }
        let (line, at) = found?;
        if depth + 1 == keys.len() {
            let value = lines[line].trim_start()[key.len() + 1..].trim();
            return Some(value.to_owned());
        }
        (from, parent_indent) = (line + 1, Some(at));
    }
    None
}

/// Where the OpenAPI file describes the field at `path` (`items[].name` for every item's name):
/// its schema and property, as keys under `components.schemas`.
fn schema_keys(path: &str) -> Vec<&str> {
    let (object, field) = match path.split_once('.') {
        Some((object, field)) => (object, field),
        None => ("", path),
    };
    let schema = match object {
        "" => "CheckoutRequest",
        "user" => "User",
        "creditCard" => "CreditCard",
        "items[]" => "Item",
        "billingAddress" => "BillingAddress",
        "device" => "Device",
        "browser" => "Browser",
        other => panic!("no schema known for {other}"),
    };
    match field.strip_suffix("[]") {
        Some(list) => vec![schema, "properties", list, "items"],
        None => vec![schema, "properties", field],
    }
}

/// The bound `keyword` (maxLength, maxItems, maximum) the OpenAPI file gives the field at `path`.
fn documented_bound(openapi: &str, path: &str, keyword: &str) -> usize {
    let mut keys = vec!["components", "schemas"];
    keys.extend(schema_keys(path));
    keys.push(keyword);
    let value = yaml_scalar(openapi, &keys)
        .unwrap_or_else(|| panic!("the OpenAPI file states no {keyword} for {path}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("{keyword} of {path} is not a number: {value}"))
}

/// Every text field of a checkout, as the OpenAPI file's bounds name them.
const TEXT_FIELDS: &[&str] = &[
    "user.name",
    "user.contact",
    "creditCard.number",
    "creditCard.expirationDate",
    "creditCard.cvv",
    "userComment",
    "items[].name",
    "discountCode",
    "shippingMethod",
    "giftMessage",
    "billingAddress.street",
    "billingAddress.city",
    "billingAddress.state",
    "billingAddress.zip",
    "billingAddress.country",
    "notificationPreferences[]",
    "device.type",
    "device.model",
    "device.os",
    "browser.name",
    "browser.version",
    "appVersion",
    "screenResolution",
    "referrer",
    "deviceLanguage",
];

/// The JSON pointer of the field at `path` in a body, the first element standing for a list's.
fn pointer(path: &str) -> String {
    format!("/{}", path.replace("[]", "/0").replace('.', "/"))
}

/// How an error names the field at `path`.
fn named(path: &str) -> String {
    path.replace("[]", "[0]")
}

async fn post(system: &System, body: &[u8], key: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(system.url("/checkout"))
        .header("Idempotency-Key", key)
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("the orchestrator answers");
    let status = response.status();
    let text = response.text().await.expect("a body");
    let answer = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    (status, answer)
}

/// A body with the field at `pointer` set to `value`.
fn with(pointer: &str, value: Value) -> Value {
    let mut body = valid_order();
    *body
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} in the order")) = value;
    body
}

fn assert_refused_naming(status: StatusCode, answer: &Value, field: &str, what: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {answer}");
    assert_eq!(answer["error"]["code"], "invalid_field", "{what}: {answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(field), "{what}: {message}");
    assert!(message.len() < 300, "{what}: a long message: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_over_its_documented_bound_is_a_422_naming_it() {
    let system = System::start_with(common::Options {
        fraud_detection_args: vec!["--velocity-max-orders=100000".to_owned()],
        ..Default::default()
    })
    .await;
    let openapi = openapi();
    for (n, &path) in TEXT_FIELDS.iter().enumerate() {
        let max = documented_bound(&openapi, path, "maxLength");
        assert!((1..=4096).contains(&max), "{path}: maxLength {max}");
        let over = with(&pointer(path), json!("x".repeat(max + 1)));
        let (status, answer) = post(
            &system,
            &serde_json::to_vec(&over).unwrap(),
            &format!("over-{n}"),
        )
        .await;
        assert_refused_naming(status, &answer, &named(path), &format!("{path} over {max}"));
        // Counted in characters, as JSON Schema counts maxLength: two bytes each here.
        let at = with(&pointer(path), json!("é".repeat(max)));
        let (status, answer) = post(
            &system,
            &serde_json::to_vec(&at).unwrap(),
            &format!("at-{n}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path} at {max}: {answer}");
    }

    let max_items = documented_bound(&openapi, "items", "maxItems");
    let max_quantity = documented_bound(&openapi, "items[].quantity", "maximum");
    let line = json!({"name": "Emma", "quantity": 1});
    let over = with("/items", json!(vec![line.clone(); max_items + 1]));
    let (status, answer) = post(&system, &serde_json::to_vec(&over).unwrap(), "items-over").await;
    assert_refused_naming(status, &answer, "items", "items over maxItems");
    let at = with("/items", json!(vec![line; max_items]));
    let (status, answer) = post(&system, &serde_json::to_vec(&at).unwrap(), "items-at").await;
    assert_eq!(status, StatusCode::OK, "items at {max_items}: {answer}");
    let over = with("/items/0/quantity", json!(max_quantity + 1));
    let (status, answer) = post(
        &system,
        &serde_json::to_vec(&over).unwrap(),
        "quantity-over",
    )
    .await;
    assert_refused_naming(
        status,
        &answer,
        "items[0].quantity",
        "quantity over maximum",
    );
    let at = with("/items/0/quantity", json!(max_quantity));
    let (status, answer) = post(&system, &serde_json::to_vec(&at).unwrap(), "quantity-at").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "quantity at {max_quantity}: {answer}"
    );

    let max_preferences = documented_bound(&openapi, "notificationPreferences", "maxItems");
    let over = with(
        "/notificationPreferences",
        json!(vec!["email"; max_preferences + 1]),
    );
    let (status, answer) = post(
        &system,
        &serde_json::to_vec(&over).unwrap(),
        "preferences-over",
    )
    .await;
    assert_refused_naming(
        status,
        &answer,
        "notificationPreferences",
        "preferences over maxItems",
    );

    // The largest body accepted is the one documented for 413.
    let huge = with("/userComment", json!("x".repeat(64 * 1024)));
    let (status, answer) = post(&system, &serde_json::to_vec(&huge).unwrap(), "huge").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
}

/// Waits until the orchestrator has logged a line containing each of `needles`.
async fn wait_for_orchestrator_lines(system: &System, needles: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = system.orchestrator.log_lines();
        let missing: Vec<&String> = needles
            .iter()
            .filter(|needle| !lines.iter().any(|line| line.contains(needle.as_str())))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the orchestrator never logged {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_empty_items_are_neither_kept_nor_logged_in_full() {
    let system = System::start().await;
    let empty = json!({"name": "", "quantity": 0});
    let mut body = with("/items", json!([]));
    let base = serde_json::to_vec(&body).unwrap().len();
    let per_item = serde_json::to_vec(&empty).unwrap().len() + 1;
    let count = (64 * 1024 - base) / per_item;
    body["items"] = json!(vec![empty.clone(); count]);
    let bytes = serde_json::to_vec(&body).unwrap();
    assert!(
        bytes.len() <= 64 * 1024 && count > 2_000,
        "{} bytes",
        bytes.len()
    );
    let (huge_status, huge_answer) = post(&system, &bytes, "empty-items-64k").await;

    // At the documented bound of items, every one empty: a rejection with many reasons.
    let max_items = documented_bound(&openapi(), "items", "maxItems");
    body["items"] = json!(vec![empty; max_items]);
    let (status, answer) = post(
        &system,
        &serde_json::to_vec(&body).unwrap(),
        "empty-items-max",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "Order Rejected", "{answer}");
    let order_id = answer["orderId"].as_str().expect("an order id").to_owned();
    let reasons = answer["reasons"].as_array().expect("reasons").len();
    assert!(
        (1..=queue_raft::state_machine::MAX_REASONS).contains(&reasons),
        "{reasons} reasons answered"
    );
    let recorded = reqwest::get(system.url(&format!("/orders/{order_id}")))
        .await
        .expect("the orchestrator answers")
        .text()
        .await
        .expect("a body");
    assert!(
        recorded.len() < 16 * 1024,
        "{} bytes recorded",
        recorded.len()
    );

    let mut logged = vec![order_id.clone()];
    if huge_status == StatusCode::OK {
        logged.push(
            huge_answer["orderId"]
                .as_str()
                .expect("an order id")
                .to_owned(),
        );
    }
    wait_for_orchestrator_lines(&system, &logged).await;
    for (process, line) in system.every_log_line() {
        assert!(
            line.len() <= MAX_LOG_LINE_BYTES,
            "{process} logged a line of {} bytes: {}...",
            line.len(),
            &line[..line.floor_char_boundary(300)]
        );
    }
    assert_refused_naming(huge_status, &huge_answer, "items", "64 KiB of empty items");
}

/// The card number (its first twelve digits, the ones never to be shown, as sent in each form),
/// the CVVs and the expiry the bodies below carry.
const CARD_SECRETS: [&str; 3] = ["453201511283", "4532 0151 1283", "4532-0151-1283"];
const CVV_SECRETS: [&str; 2] = ["0770", "90770"];
const EXPIRY_SECRET: &str = "209912";

/// Bodies carrying the card's number, CVV and expiry in every JSON type and shape, in the payment
/// fields and elsewhere.
fn bodies_with_card_data() -> Vec<(String, Value)> {
    let number_shapes = [
        json!(4532015112830366u64),
        json!(-4532015112830366i64),
        json!(4532015112830366.0),
        json!("4532015112830366"),
        json!("4532 0151 1283 0366"),
        json!("4532-0151-1283-0366"),
        json!(" 4532015112830366 "),
        json!([4532015112830366u64]),
        json!(["4532 0151 1283 0366"]),
        json!({"number": 4532015112830366u64}),
        json!([[[{"n": "4532-0151-1283-0366"}]]]),
        json!(true),
        json!(null),
    ];
    let cvv_shapes = [
        json!(90770),
        json!("0770"),
        json!([90770]),
        json!({"cvv": "0770"}),
        json!(90770.5),
        json!("0770 "),
    ];
    let expiry_shapes = [
        json!(209912),
        json!("209912"),
        json!([20, 99, 12, 209912]),
        json!({"month": 209912}),
    ];
    let mut bodies = Vec::new();
    for (n, shape) in number_shapes.iter().enumerate() {
        bodies.push((
            format!("number-{n}"),
            with("/creditCard/number", shape.clone()),
        ));
        bodies.push((format!("user-name-{n}"), with("/user/name", shape.clone())));
        bodies.push((
            format!("quantity-{n}"),
            with("/items/0/quantity", shape.clone()),
        ));
        bodies.push((format!("item-{n}"), with("/items/0", shape.clone())));
        bodies.push((format!("card-{n}"), with("/creditCard", shape.clone())));
    }
    for (n, shape) in cvv_shapes.iter().enumerate() {
        bodies.push((format!("cvv-{n}"), with("/creditCard/cvv", shape.clone())));
    }
    for (n, shape) in expiry_shapes.iter().enumerate() {
        bodies.push((
            format!("expiry-{n}"),
            with("/creditCard/expirationDate", shape.clone()),
        ));
    }
    bodies.push((
        "card-as-array".to_owned(),
        with("/creditCard", json!([4532015112830366u64, 209912, 90770])),
    ));
    bodies.push((
        "card-as-strings".to_owned(),
        with(
            "/creditCard",
            json!(["4532 0151 1283 0366", "209912", "0770"]),
        ),
    ));
    bodies.push((
        "whole-body-array".to_owned(),
        json!([{"creditCard": {"number": 4532015112830366u64, "cvv": 90770}}]),
    ));
    bodies
}

/// Where `token` first stands in `haystack` on its own, not inside a longer run of digits (as
/// in a timestamp or an id).
fn find_alone(haystack: &str, token: &str) -> Option<usize> {
    haystack.match_indices(token).map(|(at, _)| at).find(|&at| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + token.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_data_in_any_json_shape_is_never_answered_or_logged() {
    let system = System::start_with(common::Options {
        fraud_detection_args: vec!["--velocity-max-orders=100000".to_owned()],
        ..Default::default()
    })
    .await;
    let mut answers = Vec::new();
    let mut order_ids = Vec::new();
    for (name, body) in bodies_with_card_data() {
        let (status, answer) = post(
            &system,
            &serde_json::to_vec(&body).unwrap(),
            &format!("card-{name}"),
        )
        .await;
        assert!(
            status.is_success() || status.is_client_error(),
            "{name}: {status} {answer}"
        );
        if let Some(order_id) = answer["orderId"].as_str() {
            order_ids.push(order_id.to_owned());
            let shown = reqwest::get(system.url(&format!("/orders/{order_id}")))
                .await
                .expect("the orchestrator answers")
                .text()
                .await
                .expect("a body");
            answers.push((format!("GET /orders of {name}"), shown));
        }
        answers.push((format!("the answer to {name}"), answer.to_string()));
    }
    assert!(
        answers
            .iter()
            .any(|(_, answer)| answer.contains("invalid_field")),
        "some bodies are refused"
    );
    // Every refusal and every decision is logged by the orchestrator.
    let refused = answers
        .iter()
        .filter(|(_, answer)| answer.contains("\"error\""))
        .count();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = system.orchestrator.log_lines();
        let refusals = lines
            .iter()
            .filter(|line| line.contains("request refused"))
            .count();
        let decided = order_ids
            .iter()
            .all(|id| lines.iter().any(|line| line.contains(id.as_str())));
        if refusals >= refused && decided {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "logged {refusals} of {refused} refusals, every decision {decided}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = system
        .every_log_line()
        .into_iter()
        .map(|(process, line)| (format!("a log line of {process}"), line));
    for (place, text) in answers.into_iter().chain(lines) {
        for secret in CARD_SECRETS {
            assert!(
                !text.contains(secret),
                "the card number is in {place}: {text}"
            );
        }
        for secret in CVV_SECRETS.into_iter().chain([EXPIRY_SECRET]) {
            if let Some(at) = find_alone(&text, secret) {
                panic!(
                    "{secret} is in {place}: ...{}...",
                    &text[text.floor_char_boundary(at.saturating_sub(120))
                        ..text.floor_char_boundary(at + 120)]
                );
            }
        }
    }
}
