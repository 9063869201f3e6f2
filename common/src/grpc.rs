//! How every gRPC service listens, serves and stops, so that all of them behave alike.
//!
//! [`bind`] takes the listen address (port 0 picks a free port); [`serve`] logs
//! `listening` with the bound `addr` (test harnesses and scripts parse that line), then serves
//! the service's routes together with the standard gRPC health service (the service reported
//! SERVING) and server reflection (v1 and v1alpha, so `grpcurl -plaintext HOST:PORT list`
//! works), until the `shutdown` future resolves. It then reports NOT_SERVING, lets in-flight
//! calls finish, and logs `stopped`. Every call is counted and timed for `/metrics`
//! ([`crate::metrics::GrpcMetricsLayer`]).

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

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

/// Binds the listen address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves `routes`, the gRPC service called `service_name` (for example
/// `"bookstore.FraudDetection"`), with health and reflection on `listener` until `shutdown`
/// resolves.
pub async fn serve(
    listener: TcpListener,
    service_name: &'static str,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let local_addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(service_name, ServingStatus::Serving)
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(bookstore_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let draining = async {
        shutdown.await;
        // Tell health checkers first, so that they stop sending before the server stops.
        health
            .set_service_status(service_name, ServingStatus::NotServing)
            .await;
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        tracing::info!(service = service_name, "stopping");
    };

    tracing::info!(service = service_name, addr = %local_addr, "listening");
    Server::builder()
        .layer(crate::metrics::GrpcMetricsLayer)
        .add_routes(routes)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY small answers wait for delayed ACKs: 40 ms per call.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            draining,
        )
        .await?;
    tracing::info!(service = service_name, "stopped");
    Ok(())
}
