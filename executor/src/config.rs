//! The executor's flags (each with an environment twin, so the same binary runs natively and in
//! compose) and [`run`], which wires the worker and the HTTP port and shuts them down in order.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use queue_raft::client_auth::QueueTokenSource;
use queue_raft::{ClientOptions, Holder, QueueClient, QueueNodes};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::ExecutorError;
use crate::faults::FaultPoints;
use crate::http;
use crate::ledger::Ledger;
use crate::status::StatusBoard;
use crate::worker::{Timing, Worker};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "order-executor",
    about = "An order executor: leads through the queue cluster's lease, executes one order per lease"
)]
pub struct Config {
    /// This executor's id, as logs, ledgers and the cluster page name it. Each process adds an
    /// incarnation of its own (drawn at start), so two processes given one id by mistake, or a
    /// restarted one, are never the same lease holder.
    #[arg(long, env = "EXECUTOR_ID")]
    pub id: String,
    #[command(flatten)]
    pub queue_nodes: QueueNodes,
    /// The executor role's queue token (campaign, renew, resign, dequeue, record, acknowledge).
    #[command(flatten)]
    pub queue_token: QueueTokenSource,
    /// How long the lease lasts unless renewed, in milliseconds; renewed every third of it. It
    /// should outlast a Raft failover (about a second), or an order in hand is abandoned then.
    #[arg(long, env = "EXECUTOR_LEASE_TTL_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub lease_ttl_ms: u64,
    /// How long executing one order takes, in milliseconds (long values show failover).
    #[arg(long, env = "EXECUTOR_EXECUTION_MS", default_value_t = 300)]
    pub execution_ms: u64,
    /// How long an executor that has just led waits before campaigning again, in milliseconds,
    /// so that leadership moves to another executor. Should exceed --poll-ms.
    #[arg(long, env = "EXECUTOR_BACKOFF_AFTER_LEAD_MS", default_value_t = 300)]
    pub backoff_after_lead_ms: u64,
    /// How often a waiting executor reads the lease and queue depth, in milliseconds (a read of
    /// one node's status, no Raft write).
    #[arg(long, env = "EXECUTOR_POLL_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub poll_ms: u64,
    /// A file to append one JSON line per execution to (the execution's visible effect);
    /// executors may share it.
    #[arg(long, env = "EXECUTOR_LEDGER")]
    pub ledger: Option<PathBuf>,
    /// Fault injection for tests: a file naming points (`dequeued`, `executed`, `recorded`,
    /// `acknowledged`, one per line) at which the executor stops itself with SIGSTOP; read at
    /// each point (see `executor::faults`).
    #[arg(long, env = "EXECUTOR_FAULT_POINTS_FILE")]
    pub fault_points_file: Option<PathBuf>,
    /// Address to serve HTTP (health, status) on; port 0 picks a free port (logged as
    /// `listening`).
    #[arg(long, env = "EXECUTOR_LISTEN", default_value = "0.0.0.0:50071")]
    pub listen: SocketAddr,
}

impl Config {
    pub fn timing(&self) -> Timing {
        Timing {
            lease_ttl: Duration::from_millis(self.lease_ttl_ms),
            execution: Duration::from_millis(self.execution_ms),
            backoff_after_lead: Duration::from_millis(self.backoff_after_lead_ms),
            poll: Duration::from_millis(self.poll_ms),
        }
    }

    /// One client call gives up after a lease's time (at least a second): a call that outlives
    /// the lease it was made under is of no use, and the worker retries on its own terms.
    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            deadline: Duration::from_millis(self.lease_ttl_ms).max(Duration::from_secs(1)),
            ..ClientOptions::default()
        }
    }
}

/// Runs the executor until `shutdown` resolves. Then the worker stops taking orders, abandons
/// the order in hand (resigning, so the order goes back to the queue at once) or finishes an
/// acknowledgement in flight, and resigns if it leads; only then does the HTTP server stop, so
/// `/status` answers through the shutdown.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ExecutorError> {
    let token = config.queue_token.load()?;
    let client = QueueClient::with_options(
        config.queue_nodes.addrs.clone(),
        token,
        config.client_options(),
    )
    .map_err(ExecutorError::InvalidQueueNodes)?;
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ExecutorError::Bind {
                addr: config.listen,
                source,
            })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ExecutorError::Bind {
            addr: config.listen,
            source,
        })?;
    // Never 0, which the cluster refuses as unset.
    let incarnation = rand::random::<u64>().max(1);
    tracing::info!(
        service = "order-executor",
        executor_id = config.id,
        incarnation,
        %addr,
        "listening"
    );

    let board = StatusBoard::new(&config.id);
    let worker = Worker::new(
        Holder::new(config.id.clone(), incarnation),
        client,
        config.timing(),
        config.ledger.clone().map(Ledger::new),
        FaultPoints::new(config.fault_points_file.clone()),
        board.clone(),
    );
    // Cancelled on shutdown; the worker's loop and every wait in it end on it.
    let stop_worker = CancellationToken::new();
    // Cancelled once the worker has finished, so the HTTP port outlives it.
    let stop_http = CancellationToken::new();
    let mut worker_task = tokio::spawn(worker.run(stop_worker.clone()));
    let mut http_task = tokio::spawn(http::serve(
        listener,
        http::app(board.subscribe()),
        stop_http.clone().cancelled_owned(),
    ));

    let http_ended_early = tokio::select! {
        () = shutdown => None,
        http = &mut http_task => Some(http),
        worker = &mut worker_task => {
            // The worker only returns once stopped; anything else is a panic.
            worker.map_err(|source| ExecutorError::TaskPanicked { task: "worker", source })?;
            None
        }
    };
    stop_worker.cancel();
    if !worker_task.is_finished() {
        worker_task
            .await
            .map_err(|source| ExecutorError::TaskPanicked {
                task: "worker",
                source,
            })?;
    }
    stop_http.cancel();
    let http = match http_ended_early {
        Some(http) => http,
        None => http_task.await,
    };
    http.map_err(|source| ExecutorError::TaskPanicked {
        task: "HTTP server",
        source,
    })?;
    tracing::info!(
        service = "order-executor",
        executor_id = config.id,
        "stopped"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_architecture() {
        let config = Config::try_parse_from(["order-executor", "--id", "executor-1"])
            .expect("defaults parse");
        assert_eq!(config.listen, "0.0.0.0:50071".parse().expect("address"));
        assert_eq!(
            config.queue_nodes.addrs,
            ["127.0.0.1:50061", "127.0.0.1:50062", "127.0.0.1:50063"]
        );
        assert_eq!(config.timing().lease_ttl, Duration::from_secs(2));
        assert_eq!(config.ledger, None);
    }

    #[test]
    fn an_id_is_required_and_a_tiny_lease_is_refused() {
        assert!(Config::try_parse_from(["order-executor"]).is_err());
        assert!(Config::try_parse_from(["order-executor", "--id=e", "--lease-ttl-ms=10"]).is_err());
    }
}
