//! The order executors: several replicas of `order-executor`, of which the one holding the queue
//! cluster's lease alone dequeues and executes orders, one order per lease, then resigns so that
//! leadership moves.
//!
//! - [`election`]: the pure decisions: when a waiting executor campaigns ([`LeaseView`]) and
//!   until when a lease may be acted on ([`ConfirmedLease`]).
//! - [`worker`]: the loop, as a state machine (candidate, leader, standing aside) that follows
//!   the queue's Raft leader and never acts on a lease it cannot confirm.
//! - [`faults`]: named points where a test makes the executor stop itself (SIGSTOP), to kill it
//!   or pause it past its lease exactly there.
//! - [`ledger`]: the visible effect of executing an order: one JSON line per execution, fsynced.
//! - [`status`]: what the executor is doing now, published by the worker, read by [`http`].
//! - [`http`]: `GET /health`, `GET /status` and `GET /metrics`.
//! - [`config`]: flags with environment twins, and [`run`] that wires the parts and shuts them
//!   down in order.
//! - [`error`]: [`ExecutorError`], why the executor could not start or serve.
//!
//! The election itself is decided by the cluster (see `queue-raft`'s state machine): a lease
//! with a fencing token that grows with every grant; a stale token is refused.

pub mod config;
pub mod election;
pub mod error;
pub mod faults;
pub mod http;
pub mod ledger;
pub mod status;
pub mod worker;

pub use config::{Config, run};
pub use election::{ConfirmedLease, LeaseView, Outlook};
pub use error::ExecutorError;
pub use faults::{FaultPoint, FaultPoints};
pub use ledger::{
    Acknowledgement, AcknowledgementAnswer, Execution, Ledger, LedgerError, LedgerLine,
};
pub use status::{ExecutorStatus, Role, StatusBoard};
pub use worker::{Timing, Worker};
