//! The executor's small HTTP port: `GET /health` (the process serves), `GET /status` (its part
//! in the election, the order it executes, what it executed, its last error) and `GET /metrics`
//! (Prometheus). Served under the limits of an internal port
//! ([`bookstore_common::http::HttpLimits::internal`]), so that no client can hold it.

use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::status::ExecutorStatus;

/// The longest a request may take; every handler only reads memory.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
}

pub fn app(status: watch::Receiver<ExecutorStatus>) -> Router {
    Router::new()
        .route("/health", get(health_get))
        .route("/status", get(status_get))
        .merge(bookstore_common::metrics::routes())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(
            bookstore_common::metrics::track_http,
        ))
        .with_state(status)
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the requests in flight
/// (within the drain timeout).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    bookstore_common::http::serve(
        listener,
        app,
        bookstore_common::http::HttpLimits::internal(),
        shutdown,
    )
    .await;
}

async fn health_get() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn status_get(State(status): State<watch::Receiver<ExecutorStatus>>) -> Json<ExecutorStatus> {
    Json(status.borrow().clone())
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::status::StatusBoard;

    async fn get_json(app: Router, path: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let response = app.oneshot(request).await.expect("response");
        let status = response.status();
        let body = to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("body");
        let json = serde_json::from_slice(&body).expect("JSON body");
        (status, json)
    }

    #[tokio::test]
    async fn health_says_ok() {
        let board = StatusBoard::new("executor-1");
        let (code, body) = get_json(app(board.subscribe()), "/health").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body, serde_json::json!({"status": "ok"}));
    }

    #[tokio::test]
    async fn status_shows_the_lease_and_the_order_in_hand() {
        let board = StatusBoard::new("executor-2");
        board.leading(9);
        board.executing("order-7", 4);
        let (code, body) = get_json(app(board.subscribe()), "/status").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            body,
            serde_json::json!({
                "id": "executor-2",
                "state": "leader",
                "leaseHolder": null,
                "currentOrder": {"orderId": "order-7", "priority": 4},
                "ordersExecuted": 0,
                "lastExecutedOrder": null,
                "lastError": null,
            })
        );
    }

    /// `/status` is served to anyone who reaches the port: the lease token, which proves the
    /// holder to the cluster, is never in it.
    #[tokio::test]
    async fn status_never_shows_the_lease_token() {
        let board = StatusBoard::new("executor-3");
        board.leading(31_337);
        let (_, body) = get_json(app(board.subscribe()), "/status").await;
        assert!(!body.to_string().contains("31337"), "{body}");
        assert!(body.get("token").is_none(), "{body}");
    }
}
