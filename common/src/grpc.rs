//! How every gRPC service listens, serves and stops, so that all of them behave alike.
//!
//! [`bind`] takes the listen address (port 0 picks a free port); [`serve`] (or
//! [`GrpcServer::serve`], to set limits or readiness) logs `listening` with the bound `addr`
//! (test harnesses and scripts parse that line), then serves the service's routes together with
//! the standard gRPC health service and server reflection (v1 and v1alpha, so that
//! `grpcurl -plaintext HOST:PORT list` works), until the `shutdown` future resolves. It then
//! reports NOT_SERVING, lets in-flight calls finish within the drain timeout, and logs
//! `stopped`. Every call is counted and timed for `/metrics`
//! ([`crate::metrics::GrpcMetricsLayer`]).
//!
//! Health says SERVING while the service is ready: always, unless [`GrpcServer::ready_while`]
//! gives a readiness signal (a queue node is ready while it knows a leader).
//!
//! No client can hold a server ([`GrpcLimits`]): connections are capped; each connection runs a
//! bounded number of calls at once (more wait their turn) and announces that bound in its
//! HTTP/2 settings; every call has a server-side deadline; the server pings every connection,
//! drops one whose pings go unanswered and one from which nothing at all arrives (a client that
//! sent one byte and stopped), and one that does not read what it is sent; and a stop waits for
//! calls in flight no longer than the drain timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::connection::{Acceptor, StallLimits};

/// Why a gRPC server could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The bound socket could not tell its own address.
    #[error("cannot read the listening socket's address: {0}")]
    LocalAddr(std::io::Error),
    /// The embedded descriptor set could not be turned into a reflection service.
    #[error("cannot build the gRPC reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed while serving.
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

type Result<T, E = ServeError> = std::result::Result<T, E>;

/// What a gRPC server allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Connections open at once; past that, clients wait in the listen backlog.
    pub max_connections: usize,
    /// Calls one connection runs at once; more wait for one of them to end. Also announced as
    /// HTTP/2's `SETTINGS_MAX_CONCURRENT_STREAMS` (twice this), so that a well-behaved client
    /// queues on its side.
    pub calls_per_connection: usize,
    /// The longest a call may run before the server cancels it (a shorter `grpc-timeout` from
    /// the client wins).
    pub call_timeout: Duration,
    /// How often the server pings each connection; a ping unanswered for `keepalive_timeout`
    /// ends it.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Nothing received for this long ends a connection: longer than `keepalive_interval`, so
    /// that a live client, which answers every ping, never reaches it.
    pub read_idle_timeout: Duration,
    /// A write making no progress for this long ends the connection.
    pub write_stall_timeout: Duration,
    /// After shutdown, how long calls in flight may take before the server stops regardless.
    pub drain_timeout: Duration,
}

impl GrpcLimits {
    /// 256 connections of 64 calls, 10 s a call, a ping every 5 s, 20 s without a byte or
    /// without write progress, 5 s to drain. Every client here gives its calls 2 s or less.
    pub const DEFAULT: Self = Self {
        max_connections: 256,
        calls_per_connection: 64,
        call_timeout: Duration::from_secs(10),
        keepalive_interval: Duration::from_secs(5),
        keepalive_timeout: Duration::from_secs(10),
        read_idle_timeout: Duration::from_secs(20),
        write_stall_timeout: Duration::from_secs(20),
        drain_timeout: Duration::from_secs(5),
    };
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Binds the listen address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves `routes`, the gRPC service called `service_name` (for example
/// `"bookstore.FraudDetection"`), with health and reflection on `listener` until `shutdown`
/// resolves, under the default [`GrpcLimits`] and always ready.
pub async fn serve(
    listener: TcpListener,
    service_name: &'static str,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    GrpcServer::new(service_name)
        .serve(listener, routes, shutdown)
        .await
}

/// A gRPC server's settings: its service's name, its limits and what makes it ready.
#[derive(Debug, Clone)]
pub struct GrpcServer {
    service_name: &'static str,
    limits: GrpcLimits,
    /// SERVING while this holds `true`; `None`: always.
    ready: Option<watch::Receiver<bool>>,
}

impl GrpcServer {
    pub fn new(service_name: &'static str) -> Self {
        Self {
            service_name,
            limits: GrpcLimits::default(),
            ready: None,
        }
    }

    pub fn limits(mut self, limits: GrpcLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Health says SERVING only while `ready` holds `true`, and NOT_SERVING otherwise.
    pub fn ready_while(mut self, ready: watch::Receiver<bool>) -> Self {
        self.ready = Some(ready);
        self
    }

    /// Serves `routes` with health and reflection on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        routes: Routes,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let Self {
            service_name,
            limits,
            ready,
        } = self;
        let local_addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(bookstore_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        // Resolves once the drain has begun; the server then has `drain_timeout` to finish.
        let (drain_started, drain_begun) = tokio::sync::oneshot::channel::<()>();
        let draining = async {
            let mut shutdown = std::pin::pin!(shutdown);
            tokio::select! {
                () = &mut shutdown => {}
                () = report_readiness(&health, service_name, ready) => shutdown.await,
            }
            // Tell health checkers first, so that they stop sending before the server stops.
            set_status(&health, service_name, ServingStatus::NotServing).await;
            tracing::info!(service = service_name, "stopping");
            let _ = drain_started.send(());
        };

        let acceptor = Acceptor::new(
            listener,
            limits.max_connections,
            StallLimits {
                read_idle: Some(limits.read_idle_timeout),
                write_stall: limits.write_stall_timeout,
            },
        );
        let incoming = futures::stream::unfold(acceptor, |acceptor| async move {
            let stream = acceptor.accept().await;
            Some((Ok::<_, std::io::Error>(stream), acceptor))
        });
        let streams_per_connection =
            u32::try_from(limits.calls_per_connection.saturating_mul(2)).unwrap_or(u32::MAX);

        tracing::info!(service = service_name, addr = %local_addr, "listening");
        let serving = Server::builder()
            .concurrency_limit_per_connection(limits.calls_per_connection)
            .max_concurrent_streams(streams_per_connection)
            .timeout(limits.call_timeout)
            .http2_keepalive_interval(Some(limits.keepalive_interval))
            .http2_keepalive_timeout(Some(limits.keepalive_timeout))
            .layer(crate::metrics::GrpcMetricsLayer)
            .add_routes(routes)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(incoming, draining);
        let drain_timed_out = async {
            // An error means the server ended before any shutdown: `serving` wins the race.
            if drain_begun.await.is_ok() {
                tokio::time::sleep(limits.drain_timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = serving => served?,
            () = drain_timed_out => tracing::warn!(
                service = service_name,
                drain_timeout = ?limits.drain_timeout,
                "calls still in flight after the drain timeout are abandoned"
            ),
        }
        tracing::info!(service = service_name, "stopped");
        Ok(())
    }
}

/// Keeps the health status at SERVING while `ready` holds `true` (always, without a signal) and
/// NOT_SERVING otherwise; returns when the signal's sender is gone.
async fn report_readiness(
    health: &HealthReporter,
    service_name: &'static str,
    ready: Option<watch::Receiver<bool>>,
) {
    let Some(mut ready) = ready else {
        set_status(health, service_name, ServingStatus::Serving).await;
        return;
    };
    loop {
        let status = if *ready.borrow_and_update() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        set_status(health, service_name, status).await;
        if ready.changed().await.is_err() {
            return;
        }
    }
}

/// Sets the status of the service and of the whole server (service `""`, what probes ask).
async fn set_status(health: &HealthReporter, service_name: &'static str, status: ServingStatus) {
    health.set_service_status(service_name, status).await;
    health.set_service_status("", status).await;
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tonic::codegen::http;
    use tonic::server::NamedService;
    use tonic::transport::Channel;
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

    use super::*;

    const LIMITS: GrpcLimits = GrpcLimits::DEFAULT;

    /// A gRPC service whose every call waits for ever; it counts the calls inside it at once.
    #[derive(Debug, Clone, Default)]
    struct Stall {
        inside: Arc<AtomicUsize>,
        most_inside: Arc<AtomicUsize>,
    }

    impl NamedService for Stall {
        const NAME: &'static str = "test.Stall";
    }

    /// Counts a call out when the server drops it (timed out, cancelled, shut down).
    struct Inside(Arc<AtomicUsize>);

    impl Drop for Inside {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl tower::Service<http::Request<tonic::body::Body>> for Stall {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = std::pin::Pin<
            Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send + 'static>,
        >;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
            let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_inside.fetch_max(now, Ordering::SeqCst);
            let inside = Inside(Arc::clone(&self.inside));
            Box::pin(async move {
                let _inside = inside;
                std::future::pending().await
            })
        }
    }

    /// A server of [`Stall`] on a free port, stopped by the returned sender.
    async fn stall_server() -> (
        SocketAddr,
        Stall,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<()>>,
    ) {
        let listener = bind("127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("bound address");
        let stall = Stall::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            "test.Stall",
            Routes::new(stall.clone()),
            async {
                let _ = stopped.await;
            },
        ));
        (addr, stall, stop, server)
    }

    /// One call to `test.Stall/Wait` on `channel`, without a deadline of the client's own.
    async fn call_stall(channel: Channel) -> std::result::Result<(), tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        grpc.unary(
            tonic::Request::new(HealthCheckRequest::default()),
            http::uri::PathAndQuery::from_static("/test.Stall/Wait"),
            codec,
        )
        .await
        .map(drop)
    }

    async fn channel_to(addr: SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{addr}"))
            .expect("a valid URI")
            .connect()
            .await
            .expect("connects")
    }

    #[tokio::test]
    async fn a_flood_of_calls_is_held_to_the_concurrency_limit() {
        let (addr, stall, _stop, _server) = stall_server().await;
        const CONNECTIONS: usize = 2;
        const CALLS_EACH: usize = 150;
        let mut calls = Vec::new();
        for _ in 0..CONNECTIONS {
            let channel = channel_to(addr).await;
            for _ in 0..CALLS_EACH {
                calls.push(tokio::spawn(call_stall(channel.clone())));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let most = stall.most_inside.load(Ordering::SeqCst);
        eprintln!("{most} of {} calls ran at once", CONNECTIONS * CALLS_EACH);
        assert!(
            most <= CONNECTIONS * LIMITS.calls_per_connection,
            "{most} calls ran at once on {CONNECTIONS} connections"
        );
        for call in calls {
            call.abort();
        }
    }

    #[tokio::test]
    async fn a_call_that_never_ends_is_cut_by_the_server_timeout() {
        let (addr, stall, _stop, _server) = stall_server().await;
        let started = Instant::now();
        let answer = tokio::time::timeout(
            LIMITS.call_timeout + Duration::from_secs(5),
            call_stall(channel_to(addr).await),
        )
        .await
        .unwrap_or_else(|_| panic!("a call was still running after {:?}", started.elapsed()));
        let status = answer.expect_err("a call that never ends fails");
        assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");
        assert_eq!(stall.inside.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_client_that_sends_one_byte_and_stalls_is_closed_and_does_not_hold_the_shutdown() {
        let (addr, _stall, stop, server) = stall_server().await;
        let mut stalled = TcpStream::connect(addr).await.expect("connects");
        stalled.write_all(b"P").await.expect("one byte sent");
        let started = Instant::now();
        let mut buffer = [0_u8; 64];
        let closed =
            tokio::time::timeout(LIMITS.read_idle_timeout + Duration::from_secs(5), async {
                while !matches!(stalled.read(&mut buffer).await, Ok(0) | Err(_)) {}
            })
            .await;
        assert!(
            closed.is_ok(),
            "a client that sent one byte was held for {:?}",
            started.elapsed()
        );

        let mut stalled = TcpStream::connect(addr).await.expect("connects");
        stalled.write_all(b"P").await.expect("one byte sent");
        let stopping = Instant::now();
        stop.send(()).expect("the server runs");
        let stopped =
            tokio::time::timeout(LIMITS.drain_timeout + Duration::from_secs(3), server).await;
        assert!(
            stopped.is_ok(),
            "the server had not stopped {:?} after shutdown, held by a stalled client",
            stopping.elapsed()
        );
    }
}
