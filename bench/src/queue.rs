//! Our side of the comparison: enqueues of orders padded to a payload size and with ids unique
//! to the run, in two ways.
//!
//! - [`EnqueueOne`]: one `Enqueue` call per order, straight to the leader over one HTTP/2
//!   channel that every closed loop shares, one call in flight per loop: the way every etcd or
//!   RabbitMQ client sends one write per call, so the headline comparison charges each system
//!   for the same number of calls (`queue-bench throughput --calls one-per-order`).
//! - [`Enqueue`]: through [`QueueClient`], as the orchestrator enqueues (one channel per node,
//!   the leader followed, concurrent enqueues sent together in `EnqueueBatch` calls)
//!   (`queue-bench throughput --calls client-batched`).
//! - [`fill`]: `count` orders enqueued as fast as `clients` concurrent enqueues go, to measure a
//!   node holding a large queue (`queue-bench fill`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use std::time::Duration;

use bookstore_proto as pb;
use bookstore_proto::order_queue_client::OrderQueueClient;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use queue_raft::client::TokenClient;
use queue_raft::{ClientError, QueueClient};
use serde::Serialize;
use tokio::time::Instant;
use tonic::transport::Endpoint;

use crate::cluster::{self, Settled};
use crate::driver::chain;
use crate::{BenchError, Operation};

/// How often [`fill`] tries one order before it gives up the run: the client already retries
/// through elections for seconds, so a failure after that is worth a second look, not a third.
const FILL_ATTEMPTS: u32 = 3;

/// Makes orders with ids unique to this run and a customer padded to the payload size.
#[derive(Debug, Clone)]
pub struct OrderMaker {
    /// Unique per run, so that a run never hits the ids an earlier run left in the queue's
    /// history (enqueue is idempotent by id and would answer without a new commit).
    run: String,
    customer: String,
    /// The encoded size of an order as made (ids grow by a few digits as a run goes on).
    encoded_len: usize,
}

impl OrderMaker {
    /// Orders that encode to about `payload_bytes` (at least that, at most one byte more).
    pub fn new(payload_bytes: usize) -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut maker = Self {
            run: format!(
                "bench-{:x}-{:04x}",
                since_epoch.as_millis(),
                rand::random::<u16>()
            ),
            customer: String::new(),
            encoded_len: 0,
        };
        // Each added byte grows the encoding by one, or by two where the length prefix grows.
        while maker.order(0, 0).encoded_len() < payload_bytes {
            maker.customer.push('x');
        }
        maker.encoded_len = maker.order(0, 0).encoded_len();
        maker
    }

    /// The encoded size of the run's first order.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    /// Order `sequence` of client task `task`: one book, so every order has the same priority
    /// and the queue keeps them in commit order.
    pub fn order(&self, task: usize, sequence: u64) -> pb::QueuedOrder {
        pb::QueuedOrder {
            order_id: format!("{}-{task}-{sequence}", self.run),
            customer: self.customer.clone(),
            items: vec![pb::QueueItem {
                title: "Benchmarking Raft".to_owned(),
                quantity: 1,
            }],
        }
    }
}

/// Enqueues new orders through one shared client.
pub struct Enqueue {
    client: QueueClient,
    orders: OrderMaker,
}

impl Enqueue {
    pub fn new(client: QueueClient, payload_bytes: usize) -> Self {
        Self {
            client,
            orders: OrderMaker::new(payload_bytes),
        }
    }
}

impl Operation for Enqueue {
    type Error = ClientError;

    fn payload_bytes(&self) -> usize {
        self.orders.encoded_len
    }

    async fn call(&self, client: usize, sequence: u64) -> Result<(), ClientError> {
        self.client
            .enqueue(self.orders.order(client, sequence))
            .await
            .map(|_| ())
    }
}

/// Why one `Enqueue` call did not add its order.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueOneError {
    #[error("the leader refused the enqueue: {0}")]
    Refused(#[from] tonic::Status),
    /// Ids are unique to the run: an order already known means no new write was made.
    #[error("order {0} was already in the queue: nothing was written")]
    NotNew(String),
}

/// Enqueues new orders, one `Enqueue` call each, on one channel to the leader.
pub struct EnqueueOne {
    /// On the one channel to the leader, which every clone shares; the connection closes when
    /// the last clone is dropped.
    leader: TokenClient,
    orders: OrderMaker,
}

impl EnqueueOne {
    /// Finds the leader of the cluster `client` knows (waiting up to `timeout` for one) and
    /// opens the channel to it. Returns the leader's address too. Calls are not redirected
    /// during the run: a leader change shows as failed calls in the report.
    pub async fn connect(
        client: &QueueClient,
        payload_bytes: usize,
        timeout: Duration,
    ) -> Result<(String, Self), BenchError> {
        let (statuses, leader) =
            cluster::wait_for_leader(client, timeout, "finding the leader", Settled::Led).await?;
        let addr = statuses
            .iter()
            .find(|(_, status)| status.node_id == leader.node_id)
            .map(|(addr, _)| addr.clone())
            // The leader was picked from these statuses.
            .ok_or_else(|| BenchError::QueueConnect {
                addr: leader.leader_addr.clone(),
                reason: "the leader is not among the nodes given".to_owned(),
            })?;
        let connect_failed = |reason: String| BenchError::QueueConnect {
            addr: addr.clone(),
            reason,
        };
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|error| connect_failed(chain(&error)))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|error| connect_failed(chain(&error)))?;
        Ok((
            addr.clone(),
            Self {
                leader: OrderQueueClient::with_interceptor(channel, client.token().clone()),
                orders: OrderMaker::new(payload_bytes),
            },
        ))
    }
}

impl Operation for EnqueueOne {
    type Error = EnqueueOneError;

    fn payload_bytes(&self) -> usize {
        self.orders.encoded_len
    }

    async fn call(&self, client: usize, sequence: u64) -> Result<(), EnqueueOneError> {
        let order = self.orders.order(client, sequence);
        let order_id = order.order_id.clone();
        // A client is a handle on the shared channel: cloning it opens no connection.
        let answer = self
            .leader
            .clone()
            .enqueue(pb::EnqueueRequest { order: Some(order) })
            .await?
            .into_inner();
        if answer.newly_enqueued {
            Ok(())
        } else {
            Err(EnqueueOneError::NotNew(order_id))
        }
    }
}

/// How many orders to enqueue, and how many at once.
#[derive(Debug, Clone)]
pub struct FillOptions {
    pub count: u64,
    pub clients: usize,
    pub payload_bytes: usize,
}

/// What [`fill`] did; printed as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct FillReport {
    pub bench: &'static str,
    pub orders: u64,
    pub clients: usize,
    pub payload_bytes: usize,
    pub seconds: f64,
    pub orders_per_sec: f64,
    /// Enqueues tried again after an error (the same order: enqueue is idempotent by id).
    pub retries: u64,
}

/// Enqueues `options.count` new orders, `options.clients` at a time, each acknowledged by a
/// majority; fails when an order could not be enqueued in [`FILL_ATTEMPTS`] tries. Prints its
/// progress to stderr every tenth of the way.
pub async fn fill(client: &QueueClient, options: &FillOptions) -> Result<FillReport, BenchError> {
    let orders = OrderMaker::new(options.payload_bytes);
    let done = AtomicU64::new(0);
    let retries = AtomicU64::new(0);
    let tenth = (options.count / 10).max(1);
    let started = Instant::now();
    futures::stream::iter(0..options.count)
        .map(|sequence| {
            let (orders, done, retries) = (&orders, &done, &retries);
            async move {
                let order = orders.order(0, sequence);
                let mut attempt = 1;
                loop {
                    match client.enqueue(order.clone()).await {
                        Ok(_) => break,
                        Err(source) if attempt >= FILL_ATTEMPTS => {
                            return Err(BenchError::Client {
                                order_id: order.order_id,
                                source,
                            });
                        }
                        Err(_) => {
                            attempt += 1;
                            retries.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let done = done.fetch_add(1, Ordering::Relaxed) + 1;
                if done.is_multiple_of(tenth) {
                    eprintln!(
                        "queue-bench fill: {done} of {} orders after {:.1} s",
                        options.count,
                        started.elapsed().as_secs_f64()
                    );
                }
                Ok(())
            }
        })
        .buffer_unordered(options.clients.max(1))
        .try_collect::<()>()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(FillReport {
        bench: "fill",
        orders: options.count,
        clients: options.clients,
        payload_bytes: orders.encoded_len,
        seconds,
        orders_per_sec: crate::stats::ratio(options.count as f64, seconds),
        retries: retries.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_padded_to_the_payload_size_and_ids_are_unique() {
        for payload in [64, 256, 1024] {
            let maker = OrderMaker::new(payload);
            let order = maker.order(0, 0);
            assert!(
                (payload..payload + 2).contains(&order.encoded_len()),
                "{payload}: {}",
                order.encoded_len()
            );
            assert_eq!(maker.encoded_len(), order.encoded_len());
        }
        let maker = OrderMaker::new(256);
        assert_ne!(maker.order(1, 12).order_id, maker.order(11, 2).order_id);
        assert_ne!(maker.order(1, 2).order_id, maker.order(2, 1).order_id);
    }
}
