//! Prometheus metrics, alike for every service: one recorder per process, `GET /metrics` in the
//! Prometheus text format, request counters and latency histograms for HTTP and gRPC servers.
//!
//! Services record with the `metrics` crate's macros (`counter!`, `gauge!`, `histogram!`), names
//! prefixed `bookstore_`, units in the name (`_seconds`, `_total`). [`install`] must run before
//! the first one, at the start of `main`: a sample recorded before it is lost.
//!
//! HTTP services (orchestrator, executors) serve `/metrics` on their own port: merge [`routes`]
//! into the router and add [`track_http`] as a layer. gRPC services (backends, queue nodes) serve
//! it on a port of their own, `--metrics-listen`: [`MetricsListen`] reads the flag, [`alongside`]
//! runs the small HTTP server next to the service and stops it after the service has stopped.
//! Their gRPC calls are counted by [`GrpcMetricsLayer`], which [`crate::grpc::serve`] adds.
//!
//! The exporter's own HTTP listener is not used: it would pull its own hyper server set-up, and
//! the port, the shutdown and the logs would then differ from every other server here.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use prost::Message;
use prost_types::FileDescriptorSet;
use tokio::net::TcpListener;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Histogram buckets for every `*_seconds` series: from half a millisecond (a local gRPC call)
/// to ten seconds (a checkout waiting out a queue election).
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histogram buckets for every `*_commands` series (commands per Raft log entry): powers of two
/// up to the largest batch the proposer forms.
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes, so that an
/// unscraped process does not keep every sample.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A gRPC service's metrics port is its gRPC port plus this, unless `--metrics-listen` says
/// otherwise: 50051 serves metrics on 50151, queue node 50061 on 50161.
pub const METRICS_PORT_OFFSET: u16 = 100;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's Prometheus recorder (once; later calls return the same handle) and
/// starts its upkeep.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
            .and_then(|builder| {
                builder
                    .set_buckets_for_metric(Matcher::Suffix("_commands".to_owned()), COUNT_BUCKETS)
            })
            // Fails only for an empty bucket list, and both lists above are constant and full.
            .expect("constant, non-empty histogram buckets")
            .build_recorder();
        let handle = recorder.handle();
        if let Err(error) = metrics::set_global_recorder(recorder) {
            // Only another recorder installed first can cause this; `/metrics` then stays empty
            // rather than the service failing.
            tracing::warn!(%error, "cannot install the Prometheus recorder");
        }
        let upkeep = handle.clone();
        // The recorder lives as long as the process, so does its upkeep: a plain thread that
        // needs no runtime and holds nothing that must be released on shutdown.
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the metrics upkeep; scrapes still fold samples");
        }
        handle
    })
}

/// `GET /metrics`, for merging into a service's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/metrics", get(metrics_get))
}

async fn metrics_get() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        install().render(),
    )
        .into_response()
}

/// Middleware (`axum::middleware::from_fn(track_http)`) counting each HTTP request by route
/// template (`/orders/{order_id}`, never the id itself, so the series stay few), method and
/// status, and timing it: `bookstore_http_requests_total`, `bookstore_http_request_duration_seconds`.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        "bookstore_http_request_duration_seconds",
        "route" => route.clone(),
        "method" => method,
    )
    .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "bookstore_http_requests_total",
        "route" => route,
        "method" => method,
        "status" => status,
    )
    .increment(1);
    response
}

/// The standard methods by name, anything else as `other`: a client cannot invent series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Where a gRPC service serves its metrics: `off`, or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    At(SocketAddr),
}

impl MetricsListen {
    /// The flag's value if given, else the service's gRPC address with the port moved up by
    /// [`METRICS_PORT_OFFSET`] (port 0 stays 0: a free port, as for the service itself).
    pub fn or_default_for(flag: Option<MetricsListen>, grpc_listen: SocketAddr) -> MetricsListen {
        flag.unwrap_or_else(|| {
            let port = match grpc_listen.port() {
                0 => 0,
                port => port.saturating_add(METRICS_PORT_OFFSET),
            };
            MetricsListen::At(SocketAddr::new(grpc_listen.ip(), port))
        })
    }
}

impl FromStr for MetricsListen {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.eq_ignore_ascii_case("off") {
            return Ok(MetricsListen::Off);
        }
        value
            .parse()
            .map(MetricsListen::At)
            .map_err(|_| format!("{value:?} is neither `off` nor an address like 0.0.0.0:50161"))
    }
}

impl fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsListen::Off => f.write_str("off"),
            MetricsListen::At(addr) => addr.fmt(f),
        }
    }
}

/// Why the metrics server could not start or failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the metrics socket's address: {0}")]
    LocalAddr(std::io::Error),
    #[error("the metrics server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs `service` with a metrics server on `listen` beside it (none when `off`); the metrics
/// server is bound before the service starts and stopped after it has finished, so that its
/// shutdown can still be watched. Returns the service's own result.
pub async fn alongside<F: Future>(
    listen: MetricsListen,
    service: F,
) -> Result<F::Output, MetricsError> {
    install();
    let MetricsListen::At(addr) = listen else {
        return Ok(service.await);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(MetricsError::LocalAddr)?;
    // Dropped (or sent) once the service has returned; the server then stops.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Ends when `stop` is dropped or sent.
    let server = tokio::spawn(crate::http::serve(
        listener,
        routes::<()>(),
        crate::http::HttpLimits::internal(),
        async {
            let _ = stopped.await;
        },
    ));
    // Not `listening`: test harnesses and scripts take that line for the service's own port.
    tracing::info!(addr = %local_addr, "serving metrics");
    let output = service.await;
    drop(stop);
    server.await?;
    Ok(output)
}

/// The `method` label of a gRPC call to a path that no service here defines.
pub const UNKNOWN_GRPC_METHOD: &str = "unknown";

/// Counts each gRPC call by method (`/package.Service/Method`) and status code, and times it to
/// its response headers (for unary calls, the whole call): `bookstore_grpc_requests_total`,
/// `bookstore_grpc_request_duration_seconds`. The method label comes from a fixed set, every
/// method of the services defined here ([`grpc_method_label`]): a call to any other path counts
/// as [`UNKNOWN_GRPC_METHOD`], so that a client cannot create series by inventing paths.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around a gRPC server's routes.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<axum::http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let method = grpc_method_label(request.uri().path());
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            // A failed call answers "trailers-only": its status is in the headers. A call that
            // succeeds sends its status in the trailers, after the body.
            let code = match &result {
                Ok(response) => grpc_code_name(
                    response
                        .headers()
                        .get("grpc-status")
                        .map_or(tonic::Code::Ok, |code| {
                            tonic::Code::from_bytes(code.as_bytes())
                        }),
                ),
                Err(_) => "TRANSPORT_ERROR",
            };
            metrics::histogram!(
                "bookstore_grpc_request_duration_seconds",
                "method" => method,
            )
            .record(started.elapsed().as_secs_f64());
            metrics::counter!(
                "bookstore_grpc_requests_total",
                "method" => method,
                "code" => code,
            )
            .increment(1);
            result
        })
    }
}

/// `path` when it names a method of a service defined here (the workspace's protos, health,
/// reflection), else [`UNKNOWN_GRPC_METHOD`].
pub fn grpc_method_label(path: &str) -> &'static str {
    known_grpc_methods()
        .get(path)
        .copied()
        .unwrap_or(UNKNOWN_GRPC_METHOD)
}

/// Every `/package.Service/Method` path the descriptor sets compiled into this binary define,
/// read once; kept for the life of the process, as labels must be.
fn known_grpc_methods() -> &'static HashSet<&'static str> {
    static KNOWN: OnceLock<HashSet<&'static str>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let descriptor_sets = [
            bookstore_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut known = HashSet::new();
        for encoded in descriptor_sets {
            let set = match FileDescriptorSet::decode(encoded) {
                Ok(set) => set,
                Err(error) => {
                    // Compiled in, so it decodes; if not, its calls count as unknown.
                    tracing::warn!(%error, "cannot read a compiled-in descriptor set");
                    continue;
                }
            };
            for file in &set.file {
                let prefix = match file.package() {
                    "" => String::new(),
                    package => format!("{package}."),
                };
                for service in &file.service {
                    for method in &service.method {
                        let path = format!("/{prefix}{}/{}", service.name(), method.name());
                        known.insert(&*Box::leak(path.into_boxed_str()));
                    }
                }
            }
        }
        known
    })
}

/// gRPC status codes as the gRPC specification spells them.
fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use tower::ServiceExt;

    #[test]
    fn metrics_listen_reads_off_or_an_address_and_defaults_beside_the_grpc_port() {
        assert_eq!("off".parse(), Ok(MetricsListen::Off));
        assert_eq!(
            "127.0.0.1:9000".parse(),
            Ok(MetricsListen::At(
                "127.0.0.1:9000".parse().expect("address")
            ))
        );
        assert!("nowhere".parse::<MetricsListen>().is_err());
        let grpc = "0.0.0.0:50061".parse().expect("address");
        assert_eq!(
            MetricsListen::or_default_for(None, grpc).to_string(),
            "0.0.0.0:50161"
        );
        let free = "127.0.0.1:0".parse().expect("address");
        assert_eq!(
            MetricsListen::or_default_for(None, free).to_string(),
            "127.0.0.1:0"
        );
        assert_eq!(
            MetricsListen::or_default_for(Some(MetricsListen::Off), grpc),
            MetricsListen::Off
        );
    }

    #[tokio::test]
    async fn http_requests_are_counted_by_route_template() {
        install();
        let app = Router::new()
            .route("/things/{id}", get(|| async { "a thing" }))
            .merge(routes())
            .layer(axum::middleware::from_fn(track_http));
        let request = axum::http::Request::get("/things/42")
            .body(Body::empty())
            .expect("request");
        app.clone().oneshot(request).await.expect("response");
        let request = axum::http::Request::get("/metrics")
            .body(Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("response");
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let text = String::from_utf8(body.to_vec()).expect("UTF-8");
        assert!(
            text.contains(
                r#"bookstore_http_requests_total{route="/things/{id}",method="GET",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"bookstore_http_request_duration_seconds_bucket{route="/things/{id}""#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn grpc_calls_to_unknown_paths_share_one_series() {
        use tower::Service;
        install();
        let unimplemented = tower::service_fn(|_: axum::http::Request<Body>| async {
            let response = axum::http::Response::builder()
                .header("grpc-status", "12")
                .body(Body::empty())
                .expect("response");
            Ok::<_, std::convert::Infallible>(response)
        });
        let mut service = tower::Layer::layer(&GrpcMetricsLayer, unimplemented);
        let known = "/grpc.health.v1.Health/Check";
        for path in [
            known,
            "/made.Up/a8f3",
            "/made.Up/77c1",
            "/bookstore.Nope/Guess",
        ] {
            let request = axum::http::Request::post(path)
                .body(Body::empty())
                .expect("request");
            service.ready().await.expect("ready");
            service.call(request).await.expect("response");
        }
        let text = install().render();
        assert!(
            text.contains(&format!(
                r#"bookstore_grpc_requests_total{{method="{known}""#
            )),
            "{text}"
        );
        assert!(!text.contains("made.Up"), "{text}");
        assert!(!text.contains("bookstore.Nope"), "{text}");
        assert!(
            text.contains(
                r#"bookstore_grpc_requests_total{method="unknown",code="UNIMPLEMENTED"}"#
            ),
            "{text}"
        );
    }
}
