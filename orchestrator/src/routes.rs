//! The HTTP surface: [`app`] builds the router; each handler is named for its resource and verb.
//!
//! Every route runs under a request timeout, permissive CORS (the page may be served from
//! elsewhere), request tracing and request metrics (served on a port of their own, not here:
//! see [`crate::config`]). What these routes answer is public: no customer data beyond the
//! caller's own order, no lease token, no internal address (see [`crate::error::queue_failure`]). Bodies are read
//! as bytes whatever their content type, since real pages post JSON as `text/plain`.
//!
//! A checkout runs under a budget of its own ([`AppState::checkout_timeout`], at most
//! [`MAX_CHECKOUT_TIMEOUT`]), shorter than the layer's [`REQUEST_TIMEOUT`], so that a checkout
//! out of time is answered by the handler, with its order id and what to do, never cut off by
//! the layer with an empty answer.

use std::time::{Duration, Instant};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, Path, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use queue_raft::RequestDigest;
use queue_raft::client::{ClientError, QueueClient};
use serde::{Deserialize, Serialize};
use tower_http::{cors::CorsLayer, timeout::TimeoutLayer, trace::TraceLayer};
use tracing::Instrument;
use uuid::Uuid;

pub use crate::idempotency::{IDEMPOTENCY_KEY, order_id_from_key};
use crate::{
    backends::Backends,
    checkout::{CatalogueBook, CheckoutRequest, CheckoutResponse},
    cluster::{ClusterMonitor, ClusterView},
    decisions,
    error::{ApiError, UnresolvedCause},
    idempotency::{CheckoutKey, RequestDigester},
    orders::OrderView,
};

/// The largest checkout body accepted; a real order is a few KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The longest any request may take before the layer answers `408` on its own: longer than a
/// checkout's budget, so that it only ever cuts other routes (whose backend and queue calls have
/// shorter deadlines of their own).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest checkout budget allowed: a few seconds short of [`REQUEST_TIMEOUT`].
pub const MAX_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(25);

/// The header that marks an answer told from the queue's record of an earlier attempt.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// What every handler shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub backends: Backends,
    pub queue: QueueClient,
    pub cluster: ClusterMonitor,
    /// Digests checkout requests for the queue's record of each decision.
    pub digester: RequestDigester,
    /// How long one checkout may take, all retries included (at most
    /// [`MAX_CHECKOUT_TIMEOUT`]).
    pub checkout_timeout: Duration,
}

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The files the pages need, compiled into the binary: path, content type, contents.
const FILES: &[(&str, &str, &str)] = &[
    ("/", HTML, include_str!("../static/index.html")),
    ("/cluster", HTML, include_str!("../static/cluster.html")),
    (
        "/assets/dom.js",
        JAVASCRIPT,
        include_str!("../static/dom.js"),
    ),
    (
        "/assets/app.js",
        JAVASCRIPT,
        include_str!("../static/app.js"),
    ),
    (
        "/assets/cluster.js",
        JAVASCRIPT,
        include_str!("../static/cluster.js"),
    ),
    (
        "/assets/style.css",
        CSS,
        include_str!("../static/style.css"),
    ),
    (
        "/assets/cluster.css",
        CSS,
        include_str!("../static/cluster.css"),
    ),
    (
        "/openapi.yaml",
        "application/yaml",
        include_str!("../openapi.yaml"),
    ),
];

pub fn app(state: AppState) -> Router {
    FILES
        .iter()
        .fold(Router::new(), |router, &(path, content_type, contents)| {
            router.route(
                path,
                get(move || async move { ([(header::CONTENT_TYPE, content_type)], contents) }),
            )
        })
        .route("/cluster/status", get(cluster_status_show))
        .route("/health", get(health_get))
        .route("/books", get(books_list))
        .route("/checkout", post(checkout_create))
        .route("/orders/{order_id}", get(order_show))
        .fallback(route_missing)
        .method_not_allowed_fallback(method_missing)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CorsLayer::permissive())
        .layer(TraceLayer::new_for_http())
        // Outermost, so that the answers of the layers inside (a timeout's 408) count too.
        .layer(axum::middleware::from_fn(
            bookstore_common::metrics::track_http,
        ))
        .with_state(state)
}

/// The latest sample of every queue node; answers at once, whatever state the nodes are in.
async fn cluster_status_show(State(state): State<AppState>) -> Json<ClusterView> {
    Json(state.cluster.view())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

async fn health_get() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The body of `GET /books`.
#[derive(Debug, Serialize, Deserialize)]
pub struct BookList {
    pub books: Vec<CatalogueBook>,
}

async fn books_list(State(state): State<AppState>) -> Result<Json<BookList>, ApiError> {
    let books = state.backends.list_books().await?;
    Ok(Json(BookList {
        books: books.into_iter().map(CatalogueBook::from).collect(),
    }))
}

/// A checkout's answer, and whether it was told from the record of an earlier attempt.
struct Placed {
    answer: CheckoutResponse,
    replayed: bool,
}

/// Decides on the order once per idempotency key and answers only once the queue has committed
/// the decision; a retry is answered from the queue's record (see [`checkout`]). Within the
/// checkout's budget, or else with the order id and what to do.
async fn checkout_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = CheckoutKey::from_headers(&headers)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge { limit: BODY_LIMIT }
        } else if timed_out(&rejection) {
            ApiError::BodyTimeout
        } else {
            ApiError::UnreadableBody(rejection.body_text())
        }
    })?;
    let request = CheckoutRequest::from_json(&body)?;
    let digest = state.digester.digest(&body)?;
    let span = tracing::info_span!("checkout", order_id = %key.order_id());
    let budget = state.checkout_timeout;
    let placed = tokio::time::timeout(budget, checkout(&state, &key, request, digest))
        .instrument(span.clone())
        .await;
    let Placed { answer, replayed } = match placed {
        Ok(placed) => placed?,
        Err(_) => {
            span.in_scope(|| {
                tracing::warn!(budget_ms = budget.as_millis(), "checkout out of time")
            });
            return Err(ApiError::unresolved(
                UnresolvedCause::OutOfTime(budget),
                &key,
            ));
        }
    };
    let mut response = Json(answer).into_response();
    let headers = response.headers_mut();
    // A key that was sent is a valid header value, and one made is a UUID.
    if let Ok(value) = HeaderValue::from_str(key.key()) {
        headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY), value);
    }
    if replayed {
        headers.insert(
            HeaderName::from_static(IDEMPOTENT_REPLAYED),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// Whether reading the body failed because it did not arrive in time (the server's body
/// deadline, [`bookstore_common::http::HttpLimits::body_timeout`]).
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The story of one checkout. With a key the client sent, the queue's record of the key's order
/// is read first: a decided order is answered from its record (or refused if the record was
/// made for another body), and the backends are not asked again. Otherwise the backends decide,
/// and the decision is committed to the queue, approved (queued) or rejected alike. The first
/// decision committed for the order id is final: if a concurrent attempt with the same key
/// committed first, this one answers with what that one decided.
async fn checkout(
    state: &AppState,
    key: &CheckoutKey,
    request: CheckoutRequest,
    digest: RequestDigest,
) -> Result<Placed, ApiError> {
    let order_id = key.order_id();
    tracing::info!(
        items = request.items.len(),
        key_sent = key.sent(),
        "checkout received"
    );
    if key.sent() {
        let recorded = state.queue.get_order(&order_id).await.map_err(|error| {
            ApiError::unresolved(
                UnresolvedCause::Queue(format!(
                    "the order queue cannot say whether this Idempotency-Key was used before \
                     ({})",
                    queue_failure(&error)
                )),
                key,
            )
        })?;
        if let Some(record) = recorded {
            let answer = decisions::answer_from_record(&order_id, &record, &digest)?;
            tracing::info!(status = ?answer.status, "answered from the queue's record");
            return Ok(Placed {
                answer,
                replayed: true,
            });
        }
    }
    let queued_order = request.queued_order(&order_id);
    let order = request.into_order(order_id.clone());
    let decided = state
        .backends
        .assess(order)
        .await
        .decide(order_id.clone())?;
    let started = Instant::now();
    let committed = state
        .queue
        .decide(decisions::decision(queued_order, &decided, &digest))
        .await;
    metrics::histogram!(
        "bookstore_queue_enqueue_duration_seconds",
        "outcome" => if committed.is_ok() { "committed" } else { "failed" },
    )
    .record(started.elapsed().as_secs_f64());
    let committed = committed.map_err(|error| match error {
        ClientError::InvalidArgument(reason) => ApiError::Internal(format!(
            "the order queue refused the decision on order {order_id}: {reason}"
        )),
        other => ApiError::unresolved(
            UnresolvedCause::Queue(format!(
                "it was decided, but the order queue did not confirm the decision ({})",
                queue_failure(&other)
            )),
            key,
        ),
    })?;
    tracing::info!(
        term = committed.term,
        index = committed.index,
        newly_decided = committed.newly_decided,
        "decision committed"
    );
    let record = committed.state.ok_or_else(|| {
        ApiError::Internal(format!(
            "the order queue committed the decision on order {order_id} but showed no record"
        ))
    })?;
    let mut answer = decisions::answer_from_record(&order_id, &record, &digest)?;
    if committed.newly_decided {
        answer.warnings = decided.warnings;
    }
    Ok(Placed {
        answer,
        replayed: !committed.newly_decided,
    })
}

/// Where an order is, as the queue cluster's record has it (a linearizable read at its leader),
/// so that every orchestrator answers alike.
async fn order_show(
    State(state): State<AppState>,
    order_id: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderView>, ApiError> {
    // An id that is not even UTF-8 once percent-decoded names no order either.
    let Path(order_id) = order_id.map_err(|rejection| {
        ApiError::OrderNotFound(format!("not an order id: {}", rejection.body_text()))
    })?;
    if Uuid::parse_str(&order_id).is_err() {
        return Err(ApiError::OrderNotFound(format!(
            "{order_id:?} is not an order id (a UUID)"
        )));
    }
    let found = state.queue.get_order(&order_id).await.map_err(|error| {
        ApiError::QueueUnavailable(format!(
            "cannot read order {order_id} from the order queue: {}",
            queue_failure(&error)
        ))
    })?;
    found
        .and_then(OrderView::from_queue)
        .map(Json)
        .ok_or_else(|| ApiError::OrderNotFound(format!("no order {order_id}")))
}

/// [`crate::error::queue_failure`] for an answer, the whole error (addresses included) logged.
fn queue_failure(error: &ClientError) -> String {
    tracing::warn!(%error, "an order queue call failed");
    crate::error::queue_failure(error)
}

async fn route_missing(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

async fn method_missing(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use clap::Parser;
    use tower::ServiceExt;

    use queue_raft::client_auth::QueueToken;

    use super::*;
    use crate::{Config, error::ErrorBody};

    fn token() -> QueueToken {
        QueueToken::load(None, Some("a-token-for-the-route-tests".into())).expect("a valid token")
    }

    /// A router whose backends listen nowhere: enough for everything decided before they are asked.
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
            cluster: ClusterMonitor::new(vec!["127.0.0.1:1".into()], token())
                .expect("valid address"),
            digester: RequestDigester::new(None),
            checkout_timeout: MAX_CHECKOUT_TIMEOUT,
        })
    }

    async fn send(request: Request<Body>) -> (StatusCode, Bytes) {
        let response = app_without_backends()
            .oneshot(request)
            .await
            .expect("router never fails");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, body)
    }

    async fn error_of(request: Request<Body>) -> (StatusCode, ErrorBody) {
        let (status, body) = send(request).await;
        let error = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("not an error body ({e}): {body:?}"));
        (status, error)
    }

    fn checkout(body: impl Into<Body>) -> Request<Body> {
        Request::post("/checkout")
            .body(body.into())
            .expect("request")
    }

    #[tokio::test]
    async fn malformed_json_is_a_400_with_a_message() {
        let (status, error) = error_of(checkout("{not json")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error.error.code, "malformed_json");
        assert!(!error.error.message.is_empty());
    }

    #[tokio::test]
    async fn a_wrong_type_is_a_422_naming_the_field() {
        let body = r#"{"user":{"name":1},"creditCard":{},"items":[]}"#;
        let (status, error) = error_of(checkout(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            error.error.message.starts_with("user.name:"),
            "{}",
            error.error.message
        );
    }

    #[tokio::test]
    async fn an_oversized_body_is_a_413() {
        let (status, error) = error_of(checkout(vec![b' '; BODY_LIMIT + 1])).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error.error.code, "body_too_large");
    }

    #[tokio::test]
    async fn unreachable_backends_give_a_503_naming_them() {
        let body = r#"{"user":{},"creditCard":{},"items":[{"name":"The Hobbit","quantity":1}]}"#;
        let request = Request::post("/checkout")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(body))
            .expect("request");
        let (status, error) = error_of(request).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            error.error.message.contains("transaction-verification"),
            "{}",
            error.error.message
        );
        assert!(
            error.error.message.contains("fraud-detection"),
            "{}",
            error.error.message
        );
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_with_the_error_body() {
        let (status, error) = error_of(
            Request::get("/nowhere")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(
            (status, error.error.code.as_str()),
            (StatusCode::NOT_FOUND, "not_found")
        );
        let (status, error) = error_of(
            Request::get("/checkout")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(
            (status, error.error.code.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
        );
    }

    #[tokio::test]
    async fn the_page_and_the_openapi_file_are_served() {
        let (status, body) = send(Request::get("/").body(Body::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).contains("/assets/app.js"));
        let (status, body) = send(
            Request::get("/openapi.yaml")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).starts_with("openapi: 3"));
    }

    #[tokio::test]
    async fn the_cluster_page_and_its_status_are_served_before_any_node_answers() {
        let (status, body) = send(
            Request::get("/cluster")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).contains("/assets/cluster.js"));
        let (status, body) = send(
            Request::get("/cluster/status")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let view: ClusterView = serde_json::from_slice(&body).expect("a cluster view");
        assert_eq!(view.sampled_at_ms, None);
        assert_eq!(view.nodes.len(), 1);
        assert!(!view.nodes[0].up);
    }

    #[tokio::test]
    async fn an_overlong_idempotency_key_is_a_400() {
        let request = Request::post("/checkout")
            .header(
                IDEMPOTENCY_KEY,
                "k".repeat(crate::idempotency::IDEMPOTENCY_KEY_MAX_LEN + 1),
            )
            .body(Body::from("{}"))
            .expect("request");
        let (status, error) = error_of(request).await;
        assert_eq!(
            (status, error.error.code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_header")
        );
    }

    #[tokio::test]
    async fn an_order_id_that_is_not_a_uuid_is_not_found() {
        let (status, error) = error_of(
            Request::get("/orders/nope")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(
            (status, error.error.code.as_str()),
            (StatusCode::NOT_FOUND, "order_not_found")
        );
    }

    #[tokio::test]
    async fn cors_is_open_to_any_origin() {
        let request = Request::options("/checkout")
            .header(header::ORIGIN, "http://shop.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .expect("request");
        let response = app_without_backends()
            .oneshot(request)
            .await
            .expect("router never fails");
        assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    /// The public port serves no metrics: they go on a port of their own.
    #[tokio::test]
    async fn metrics_are_not_served_on_the_public_port() {
        let (status, _) = send(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    /// A 503 says which service failed, never where it runs.
    #[tokio::test]
    async fn a_503_carries_no_internal_address() {
        let (status, error) = error_of(
            Request::get("/orders/5f0c6a8e-3d1b-4c55-9a59-0d7e2b9b1c11")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            !error.error.message.contains("127.0.0.1"),
            "{}",
            error.error.message
        );
        let body = r#"{"user":{},"creditCard":{},"items":[{"name":"The Hobbit","quantity":1}]}"#;
        let (status, error) = error_of(checkout(body)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            !error.error.message.contains("127.0.0.1"),
            "{}",
            error.error.message
        );
    }
}
