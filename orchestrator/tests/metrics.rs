//! `/metrics` of the orchestrator (on its metrics port, never the public one) and of the three backends (on their
//! metrics ports) after an approved and a rejected checkout: requests by route and status,
//! decisions with their reasons, backend call and enqueue latencies, and each backend's gRPC
//! calls and decisions.

mod common;

use bookstore_common::testing::{Service, metric_sum, metric_value, scrape_metrics};
use common::{System, post_checkout, valid_order};
use reqwest::StatusCode;
use serde_json::json;

async fn scrape(url: &str) -> String {
    scrape_metrics(url)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

async fn scrape_backend(service: &Option<Service>) -> String {
    scrape(&service.as_ref().expect("the harness runs it").metrics_url()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_and_the_backends_count_checkouts_and_decisions() {
    let system = System::start().await;
    let (status, approved) = post_checkout(&system, &valid_order()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(approved["status"], "Order Approved", "{approved}");
    let mut luhn = valid_order();
    luhn["creditCard"]["number"] = json!("4532 0151 1283 0367");
    let (status, rejected) = post_checkout(&system, &luhn).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rejected["status"], "Order Rejected", "{rejected}");

    let text = scrape(&system.orchestrator.metrics_url()).await;
    let value = |series: &str| metric_value(&text, series);
    assert_eq!(
        value(r#"bookstore_http_requests_total{route="/checkout",method="POST",status="200"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(r#"bookstore_http_request_duration_seconds_count{route="/checkout",method="POST"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(r#"bookstore_checkout_decisions_total{decision="approved"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(r#"bookstore_checkout_decisions_total{decision="rejected"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(r#"bookstore_checkout_rejection_reasons_total{reason="card_luhn"}"#),
        Some(1.0),
        "{text}"
    );
    for backend in ["fraud-detection", "transaction-verification", "suggestions"] {
        let calls = value(&format!(
            r#"bookstore_backend_call_duration_seconds_count{{backend="{backend}",outcome="ok"}}"#
        ));
        assert!(calls >= Some(1.0), "{backend}:\n{text}");
    }
    // Both decisions are committed to the queue, the rejection as a record of its own.
    assert_eq!(
        value(r#"bookstore_queue_enqueue_duration_seconds_count{outcome="committed"}"#),
        Some(2.0),
        "{text}"
    );

    let fraud = scrape_backend(&system.fraud_detection).await;
    assert_eq!(
        metric_value(
            &fraud,
            r#"bookstore_grpc_requests_total{method="/bookstore.FraudDetection/CheckOrder",code="OK"}"#
        ),
        Some(2.0),
        "{fraud}"
    );
    assert_eq!(
        metric_sum(&fraud, "bookstore_fraud_decisions_total"),
        2.0,
        "{fraud}"
    );
    assert!(
        metric_value(
            &fraud,
            r#"bookstore_grpc_request_duration_seconds_count{method="/bookstore.FraudDetection/CheckOrder"}"#
        ) == Some(2.0),
        "{fraud}"
    );

    let verification = scrape_backend(&system.transaction_verification).await;
    assert_eq!(
        metric_value(
            &verification,
            r#"bookstore_verification_decisions_total{decision="approved"}"#
        ),
        Some(1.0),
        "{verification}"
    );
    assert_eq!(
        metric_value(
            &verification,
            r#"bookstore_verification_decisions_total{decision="rejected"}"#
        ),
        Some(1.0),
        "{verification}"
    );
    assert_eq!(
        metric_value(
            &verification,
            r#"bookstore_verification_reasons_total{reason="card_luhn"}"#
        ),
        Some(1.0),
        "{verification}"
    );

    let suggestions = scrape_backend(&system.suggestions).await;
    assert!(
        metric_value(
            &suggestions,
            r#"bookstore_grpc_requests_total{method="/bookstore.Suggestions/SuggestBooks",code="OK"}"#
        ) >= Some(1.0),
        "{suggestions}"
    );
    assert!(
        metric_value(&suggestions, "bookstore_suggestions_books_count") >= Some(1.0),
        "{suggestions}"
    );
}
