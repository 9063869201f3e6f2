//! The load generator behind `queue-bench` and `scripts/bench`: what our order queue, etcd,
//! RabbitMQ's quorum queue and the whole checkout path do under load, measured from a client's
//! side on the same machine.
//!
//! Layout:
//! - [`driver`]: the closed-loop driver every throughput measurement shares: N client tasks, a
//!   warm-up, a measured window, latencies in an HDR histogram, errors counted, one
//!   [`LoadReport`], with the load generator's own CPU. What it sends is an [`Operation`].
//! - [`queue`]: our enqueue, one `Enqueue` call per order to the leader, or through
//!   [`queue_raft::QueueClient`], which batches concurrent enqueues; orders padded to a payload
//!   size; also [`queue::fill`], N orders as fast as they go.
//! - [`etcd`]: etcd's KV `Put` of values of the same size, sent to the etcd leader.
//! - [`rabbitmq`]: RabbitMQ's persistent publish to a quorum queue, each confirmed before the
//!   next, one channel per closed loop.
//! - [`checkout`]: `POST /checkout` through the orchestrator with valid, distinct orders.
//! - [`compare`]: our report against etcd's and RabbitMQ's: the ratios, the comparing targets of
//!   issue 17, the summary line.
//! - [`targets`]: every target of issue 17 judged from one run's reports.
//! - [`cluster`]: the queue cluster as the measurements below see it: waiting for it to settle,
//!   describing it, running the outside commands that kill and restart nodes.
//! - [`failover`]: the time from SIGKILLing the leader to the next enqueue committed by a new one.
//! - [`restart`]: the time a killed node takes, once restarted, to serve again and catch up.
//! - [`executors`]: how fast the order executors get through a queue, one election per order.
//! - [`stats`]: medians, percentiles and unit conversions of the reports.
//!
//! Nothing here touches a node's process or files: killing and restarting go through shell
//! commands the caller gives (`scripts/cluster kill {node}`), so the same code can drive any way
//! of running the nodes. Every result is a serializable report; the binary prints each as one
//! JSON line.

pub mod checkout;
pub mod cluster;
pub mod compare;
pub mod driver;
pub mod error;
pub mod etcd;
pub mod executors;
pub mod failover;
pub mod queue;
pub mod rabbitmq;
pub mod restart;
pub mod stats;
pub mod targets;

pub use driver::{LoadOptions, LoadReport, Operation};
pub use error::BenchError;
