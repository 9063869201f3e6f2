//! Why a measurement could not finish. Load runs themselves do not fail on a failed request:
//! the driver counts it as an error in the report; these are the cases where there is nothing
//! meaningful to report.

use std::time::Duration;

use queue_raft::{ClientError, NodeId};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("`{command}` could not run: {source}")]
    CommandSpawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error(
        "{during}: the cluster did not settle (every node up, one leader, all applied) within {waited:?}: {state}"
    )]
    NotSettled {
        during: String,
        waited: Duration,
        state: String,
    },
    #[error(
        "round {round}: no enqueue was committed by a new leader within {waited:?} of killing node {killed}"
    )]
    NotRecovered {
        round: usize,
        killed: NodeId,
        waited: Duration,
    },
    #[error(
        "the cluster was not idle (a leader, no lease held, nothing queued) within {waited:?}: {state}"
    )]
    NotIdle { waited: Duration, state: String },
    #[error("order {order_id}: {source}")]
    Client {
        order_id: String,
        source: ClientError,
    },
    #[error("order {order_id} was already known to the queue")]
    AlreadyKnown { order_id: String },
    #[error("order {order_id} is unknown to the queue")]
    UnknownOrder { order_id: String },
    #[error("{executed} of {count} orders were executed within {waited:?}: {state}")]
    NotExecuted {
        waited: Duration,
        executed: usize,
        count: usize,
        state: String,
    },
    #[error("the cluster has no {target} to restart: {state}")]
    NoTarget { target: &'static str, state: String },
    #[error(
        "node {node} did not serve with everything applied within {waited:?} of its restart: {state}"
    )]
    NotCaughtUp {
        node: NodeId,
        waited: Duration,
        state: String,
    },
    #[error("etcd endpoint {endpoint:?} is not a valid URI: {source}")]
    EtcdEndpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("could not connect to etcd member {endpoint}: {reason}")]
    EtcdConnect { endpoint: String, reason: String },
    #[error("etcd member {endpoint} did not answer its status: {status}")]
    EtcdStatus {
        endpoint: String,
        status: tonic::Status,
    },
    #[error("no etcd member reported a leader that answers within {waited:?}: {state}")]
    NoEtcdLeader { waited: Duration, state: String },
    #[error("the HTTP client could not be built: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("could not connect to the queue leader at {addr}: {reason}")]
    QueueConnect { addr: String, reason: String },
    #[error("RabbitMQ at {uri}: {step}: {reason}")]
    Rabbitmq {
        step: String,
        uri: String,
        reason: String,
    },
}
