//! Bad input to the REST API, through the real router in-process, its backends and queue
//! listening nowhere: arbitrary bytes and JSON as checkout bodies, valid bodies with one field
//! mutated, arbitrary order ids and arbitrary paths and methods. Every answer is a success, a 4xx
//! whose error body names the offending field, or the documented 503 of an unreachable backend
//! or queue; never a panic, another 5xx, or a body that is not the contract's error body.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use clap::Parser;
use orchestrator::Config;
use orchestrator::backends::Backends;
use orchestrator::checkout::{SampleOrder, sample_request};
use orchestrator::cluster::ClusterMonitor;
use orchestrator::error::ErrorBody;
use orchestrator::idempotency::RequestDigester;
use orchestrator::routes::{AppState, MAX_CHECKOUT_TIMEOUT, app};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use queue_raft::{QueueClient, QueueToken};
use serde_json::{Value, json};
use tower::ServiceExt;

fn token() -> QueueToken {
    QueueToken::load(None, Some("a-token-for-the-body-tests".into())).expect("a valid token")
}

fn app_without_backends() -> Router {
    let config = Config::parse_from([
        "orchestrator",
        "--fraud-detection-addr=http://127.0.0.1:1",
        "--transaction-verification-addr=http://127.0.0.1:1",
        "--suggestions-addr=http://127.0.0.1:1",
        "--backend-timeout-ms=500",
    ]);
    app(AppState {
        backends: Backends::connect_lazy(&config).expect("valid addresses"),
        queue: QueueClient::new(vec!["127.0.0.1:1".into()], token()).expect("valid address"),
        cluster: ClusterMonitor::new(vec!["127.0.0.1:1".into()], token()).expect("valid address"),
        digester: RequestDigester::new(None),
        checkout_timeout: MAX_CHECKOUT_TIMEOUT,
    })
}

/// The router and the runtime it runs on (its clients connect lazily, from inside one).
fn runtime_and_router() -> (tokio::runtime::Runtime, Router) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let router = {
        let _entered = runtime.enter();
        app_without_backends()
    };
    (runtime, router)
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Bytes) {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router never fails");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, body)
}

/// What every answer must be: a success, or the error body with a 4xx, or one of the documented
/// 503s. Returns the error, if it is one.
fn check_answer(status: StatusCode, body: &[u8]) -> Result<Option<ErrorBody>, TestCaseError> {
    if status.is_success() {
        return Ok(None);
    }
    let error: ErrorBody = serde_json::from_slice(body).map_err(|e| {
        TestCaseError::fail(format!(
            "{status}: not an error body ({e}): {}",
            String::from_utf8_lossy(body)
        ))
    })?;
    prop_assert!(!error.error.message.is_empty());
    if status.is_server_error() {
        prop_assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        prop_assert!(
            ["backend_unavailable", "queue_unavailable"].contains(&error.error.code.as_str()),
            "{:?}",
            error
        );
    } else {
        prop_assert!(status.is_client_error(), "{status}");
    }
    Ok(Some(error))
}

fn checkout(body: impl Into<Body>) -> Request<Body> {
    Request::post("/checkout")
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request")
}

/// The sample order as the 2025 page sends it: terms under `termsAccepted`.
fn valid_body() -> Value {
    let mut body = sample_request(&SampleOrder {
        name: "Ada",
        contact: "ada@example.com",
        card_number: "4111111111111111",
        cvv: "123",
        items: &[("Dune", 2), ("The Hobbit", 1)],
    });
    let fields = body.as_object_mut().expect("the sample is an object");
    let terms = fields
        .remove("termsAndConditionsAccepted")
        .expect("the sample accepts the terms");
    fields.insert("termsAccepted".to_owned(), terms);
    body
}

/// Every field of the body as a JSON pointer, with the name the error must mention.
const FIELDS: &[(&str, &str)] = &[
    ("/user", "user"),
    ("/user/name", "name"),
    ("/user/contact", "contact"),
    ("/creditCard", "creditCard"),
    ("/creditCard/number", "number"),
    ("/creditCard/expirationDate", "expirationDate"),
    ("/creditCard/cvv", "cvv"),
    ("/userComment", "userComment"),
    ("/items", "items"),
    ("/items/0", "items[0]"),
    ("/items/0/name", "name"),
    ("/items/1/quantity", "quantity"),
    ("/discountCode", "discountCode"),
    ("/shippingMethod", "shippingMethod"),
    ("/giftMessage", "giftMessage"),
    ("/billingAddress", "billingAddress"),
    ("/billingAddress/country", "country"),
    ("/giftWrapping", "giftWrapping"),
    ("/termsAccepted", "termsAccepted"),
    ("/notificationPreferences", "notificationPreferences"),
    ("/notificationPreferences/0", "notificationPreferences[0]"),
    ("/device", "device"),
    ("/device/type", "type"),
    ("/browser/version", "version"),
    ("/appVersion", "appVersion"),
    ("/screenResolution", "screenResolution"),
    ("/referrer", "referrer"),
    ("/deviceLanguage", "deviceLanguage"),
];

/// A value nested `depth` arrays deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

/// What a field may be replaced with: `None` removes it.
fn replacement() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        any::<bool>().prop_map(|flag| Some(json!(flag))),
        any::<i64>().prop_map(|number| Some(json!(number))),
        any::<f64>().prop_map(|number| Some(json!(number))),
        Just(Some(json!(u64::MAX))),
        Just(Some(json!(1u64 << 32))),
        Just(Some(json!(-1))),
        Just(Some(json!(1.5))),
        "\\PC{0,16}".prop_map(|text| Some(json!(text))),
        Just(Some(json!({}))),
        Just(Some(json!([]))),
        (100usize..300).prop_map(|depth| Some(nested(depth))),
        (1000usize..20_000).prop_map(|len| Some(Value::Array(vec![json!(0); len]))),
    ]
}

fn mutate(body: &mut Value, pointer: &str, replacement: Option<Value>) {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let parent = body.pointer_mut(parent).expect("the field's parent");
    match (parent, replacement) {
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (Value::Object(map), Some(value)) => {
            map.insert(key.to_owned(), value);
        }
        (Value::Array(items), None) => {
            items.remove(key.parse::<usize>().expect("an index"));
        }
        (Value::Array(items), Some(value)) => {
            items[key.parse::<usize>().expect("an index")] = value;
        }
        (other, _) => panic!("{pointer} is inside {other}"),
    }
}

#[test]
fn a_body_with_one_field_mutated_is_an_order_or_an_error_naming_the_field() {
    let (runtime, router) = runtime_and_router();
    let strategy = (prop::sample::select(FIELDS), replacement());
    TestRunner::new(ProptestConfig::with_cases(256))
        .run(&strategy, |((pointer, name), replacement)| {
            let mut body = valid_body();
            let removed = replacement.is_none();
            mutate(&mut body, pointer, replacement);
            let bytes = serde_json::to_vec(&body).expect("encodes");
            let (status, answer) = runtime.block_on(send(&router, checkout(bytes.clone())));
            let Some(error) = check_answer(status, &answer)? else {
                return Ok(());
            };
            match status {
                StatusCode::PAYLOAD_TOO_LARGE => prop_assert!(bytes.len() > 64 * 1024),
                StatusCode::SERVICE_UNAVAILABLE => {}
                // The removed element of a list is no error to name: the list is shorter.
                _ if removed && name.ends_with(']') => {}
                _ => prop_assert!(
                    error.error.message.contains(name),
                    "{} for {pointer}: {:?}",
                    status,
                    error
                ),
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|number| json!(number)),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("user".to_owned()),
                    Just("items".to_owned()),
                    Just("creditCard".to_owned()),
                    Just("quantity".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

#[test]
fn arbitrary_bytes_and_json_as_a_checkout_body_are_refused_cleanly() {
    let (runtime, router) = runtime_and_router();
    let bodies = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        any_json().prop_map(|value| serde_json::to_vec(&value).expect("encodes")),
    ];
    TestRunner::new(ProptestConfig::with_cases(256))
        .run(&bodies, |body| {
            let (status, answer) = runtime.block_on(send(&router, checkout(body)));
            check_answer(status, &answer)?;
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

#[test]
fn arbitrary_order_ids_paths_and_methods_answer_with_the_contract() {
    let (runtime, router) = runtime_and_router();
    let methods = prop::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ]);
    let segment = "[a-zA-Z0-9%._~-]{0,12}";
    let paths = prop_oneof![
        segment.prop_map(|id| format!("/orders/{id}")),
        proptest::collection::vec(segment, 0..4)
            .prop_map(|segments| format!("/{}", segments.join("/"))),
        prop::sample::select(vec![
            "/".to_owned(),
            "/health".to_owned(),
            "/cluster".to_owned(),
            "/cluster/status".to_owned(),
            "/metrics".to_owned(),
            "/openapi.yaml".to_owned(),
            "/checkout".to_owned(),
            "/orders/".to_owned(),
            "/orders/not-a-uuid".to_owned(),
        ]),
    ];
    TestRunner::new(ProptestConfig::with_cases(256))
        .run(&(methods, paths), |(method, path)| {
            let request = Request::builder()
                .method(method.clone())
                .uri(&path)
                .body(Body::empty())
                .expect("request");
            let (status, answer) = runtime.block_on(send(&router, request));
            if method != Method::HEAD {
                check_answer(status, &answer)?;
            }
            if path.starts_with("/orders/") && method == Method::GET && status.is_client_error() {
                prop_assert_eq!(status, StatusCode::NOT_FOUND);
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}
