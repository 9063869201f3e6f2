//! The orchestrator's configuration and the function that serves it.

use std::{future::Future, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use bookstore_common::http::HttpLimits;
use bookstore_common::metrics::{self, MetricsListen};
use clap::Parser;
use queue_raft::client::{QueueClient, QueueNodes};
use queue_raft::client_auth::QueueTokenSource;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    backends::Backends,
    cluster::ClusterMonitor,
    idempotency::{IdempotencySecret, RequestDigester, SECRET_ENV},
    routes::{self, AppState},
};

/// Flags, each with an environment twin so that the same binary runs natively and in compose.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "orchestrator",
    about = "The bookstore's REST API and checkout page"
)]
pub struct Config {
    /// Address to serve HTTP on; port 0 picks a free port (logged as `listening`).
    #[arg(long, env = "ORCHESTRATOR_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,
    /// Address to serve Prometheus metrics on (`GET /metrics`), or `off`: a port of its own,
    /// never the public one, so that it is published only where asked.
    #[arg(
        long,
        env = "ORCHESTRATOR_METRICS_LISTEN",
        default_value = "0.0.0.0:8181"
    )]
    pub metrics_listen: MetricsListen,
    /// The fraud detection service.
    #[arg(
        long,
        env = "FRAUD_DETECTION_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub fraud_detection_addr: String,
    /// The transaction verification service.
    #[arg(
        long,
        env = "TRANSACTION_VERIFICATION_ADDR",
        default_value = "http://127.0.0.1:50052"
    )]
    pub transaction_verification_addr: String,
    /// The suggestions service.
    #[arg(
        long,
        env = "SUGGESTIONS_ADDR",
        default_value = "http://127.0.0.1:50053"
    )]
    pub suggestions_addr: String,
    #[command(flatten)]
    pub queue_nodes: QueueNodes,
    /// The orchestrator role's queue token (enqueue, decide, read).
    #[command(flatten)]
    pub queue_token: QueueTokenSource,
    /// How long each backend call may take, in milliseconds, before the checkout gives up on it.
    #[arg(long, env = "BACKEND_TIMEOUT_MS", default_value_t = 2000)]
    pub backend_timeout_ms: u64,
    /// How long one checkout may take, in milliseconds, every backend and queue call included
    /// (at most 25000, short of the 30 s any request may take). A checkout out of time is
    /// answered `503 checkout_timeout` with its order id and idempotency key. A container's
    /// stop grace period must be longer (docker-compose.yaml gives 35 s).
    #[arg(long, env = "CHECKOUT_TIMEOUT_MS", default_value_t = 25_000,
          value_parser = clap::value_parser!(u64).range(1..=25_000))]
    pub checkout_timeout_ms: u64,
    /// File holding the secret the orchestrators share to digest card numbers in the queue's
    /// record of each checkout (at least 16 bytes; a trailing newline is ignored). Without it,
    /// env IDEMPOTENCY_SECRET holds the secret itself; without either, card numbers are left out
    /// of the digest (a retry that changes only the card's hidden digits is then not told
    /// apart). Make one with: head -c 32 /dev/urandom | base64 > data/idempotency-secret
    #[arg(long, env = "IDEMPOTENCY_SECRET_FILE")]
    pub idempotency_secret_file: Option<PathBuf>,
    /// Connections served at once; past that, clients wait in the listen backlog until one
    /// closes (a stalled one is closed by the 10 s header-read timeout).
    #[arg(long, env = "ORCHESTRATOR_MAX_CONNECTIONS", default_value_t = HttpLimits::default().max_connections,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    pub max_connections: usize,
    /// After SIGTERM, how long requests in flight may take, in milliseconds, before their
    /// connections are cut (a checkout cut off is retried with its Idempotency-Key). With the
    /// rest of a stop, the default ends the process within 10 s whatever the clients do.
    #[arg(long, env = "ORCHESTRATOR_DRAIN_TIMEOUT_MS", default_value_t = 6_000,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub drain_timeout_ms: u64,
}

impl Config {
    pub fn backend_timeout(&self) -> Duration {
        Duration::from_millis(self.backend_timeout_ms)
    }

    pub fn checkout_timeout(&self) -> Duration {
        Duration::from_millis(self.checkout_timeout_ms)
    }

    /// The HTTP server's limits: the defaults of a public port, with the connection limit and
    /// drain timeout of the flags.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.max_connections,
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            ..HttpLimits::default()
        }
    }
}

/// Serves the orchestrator until `shutdown` resolves, then stops accepting connections and
/// gives the requests in flight the drain timeout to finish before returning (see
/// [`bookstore_common::http`] for every limit a client is held to).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let secret = IdempotencySecret::load(
        config.idempotency_secret_file.as_deref(),
        std::env::var_os(SECRET_ENV),
    )?;
    if secret.is_none() {
        tracing::warn!(
            "no idempotency secret (--idempotency-secret-file or {SECRET_ENV}): card numbers are \
             left out of the request digests, so a retry that changes only a card's hidden \
             digits is not told apart"
        );
    }
    let token = config.queue_token.load()?;
    let state = AppState {
        backends: Backends::connect_lazy(&config).context("invalid backend address")?,
        queue: QueueClient::new(config.queue_nodes.addrs.clone(), token.clone())
            .context("invalid queue address")?,
        cluster: ClusterMonitor::new(config.queue_nodes.addrs.clone(), token)
            .context("invalid queue address")?,
        digester: RequestDigester::new(secret),
        checkout_timeout: config.checkout_timeout(),
    };
    // Dropping `stop_sampling` (on shutdown, or when serving fails) ends the sampler.
    let (stop_sampling, sampling_stopped) = watch::channel(());
    let sampler = tokio::spawn(state.cluster.clone().run(sampling_stopped));
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("listener has no local address")?;
    tracing::info!(service = "orchestrator", %addr, "listening");
    let served = metrics::alongside(
        config.metrics_listen,
        bookstore_common::http::serve(listener, routes::app(state), config.http_limits(), shutdown),
    )
    .await;
    drop(stop_sampling);
    if let Err(error) = sampler.await {
        tracing::warn!(%error, "the cluster sampler failed");
    }
    served.context("the metrics server failed")?;
    tracing::info!(service = "orchestrator", "stopped");
    Ok(())
}
