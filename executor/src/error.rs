//! [`ExecutorError`]: why an executor could not start or stopped serving. Failures of the queue
//! cluster are not here: the worker retries those, they never end the process.

use std::net::SocketAddr;

use queue_raft::ClientError;
use queue_raft::client_auth::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// `--queue-nodes` names no node, or an address that is not `host:port`.
    #[error("invalid --queue-nodes: {0}")]
    InvalidQueueNodes(#[source] ClientError),
    /// No usable queue token (`--queue-token-file` or env `QUEUE_TOKEN`).
    #[error(transparent)]
    QueueToken(#[from] TokenError),
    /// The HTTP port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The worker or the HTTP server task panicked.
    #[error("the {task} task panicked: {source}")]
    TaskPanicked {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}
