//! Each backend binary serves `/metrics` on its metrics port, counts the gRPC calls it answers
//! (here the standard health check), serves none with `--metrics-listen off`, and stops its
//! metrics server with the service on SIGTERM. What the backends decide is scraped by the
//! orchestrator's tests, which send them real orders.

use std::time::Duration;

use bookstore_common::probe::{Target, probe};
use bookstore_common::testing::{Service, metric_value};

const BACKENDS: [&str; 3] = ["fraud-detection", "transaction-verification", "suggestions"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_serves_metrics_beside_grpc_and_stops_both() {
    for backend in BACKENDS {
        let service = tokio::task::block_in_place(|| Service::start(backend, &[]));
        let health = Target::parse(&service.addr.to_string()).expect("a gRPC target");
        probe(&health, Duration::from_secs(10))
            .await
            .unwrap_or_else(|error| panic!("{backend} health: {error}"));

        let url = service.metrics_url();
        let response = reqwest::get(&url)
            .await
            .unwrap_or_else(|error| panic!("GET {url}: {error}"));
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = response.text().await.expect("a text body");
        assert_eq!(
            metric_value(
                &text,
                r#"bookstore_grpc_requests_total{method="/grpc.health.v1.Health/Check",code="OK"}"#
            ),
            Some(1.0),
            "{backend}:\n{text}"
        );

        let lines = service.log_lines();
        let status = tokio::task::block_in_place(|| service.terminate());
        assert!(
            status.success(),
            "{backend} exited with {status}; it logged {lines:#?}"
        );
        assert!(
            reqwest::get(&url).await.is_err(),
            "{backend}: {url} still answers after SIGTERM"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_off_serves_no_metrics() {
    let service = tokio::task::block_in_place(|| {
        Service::start("fraud-detection", &["--metrics-listen=off".to_owned()])
    });
    // The metrics server, when there is one, says so before the service listens.
    let lines = service.log_lines();
    assert!(
        !lines.iter().any(|line| line.contains("serving metrics")),
        "{lines:?}"
    );
    // Right after `listening`: the SIGTERM handler is installed before the service listens.
    let lines = service.log_lines();
    let status = tokio::task::block_in_place(|| service.terminate());
    assert!(
        status.success(),
        "fraud-detection exited with {status}; it logged {lines:#?}"
    );
}
