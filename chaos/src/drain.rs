//! The end of a run: everything healed and running again, the clients stopped, the executors
//! left to empty the queue; then what the checker needs is collected: every execution and every
//! acknowledgement's answer from the ledgers, the cluster's final word on every order a client
//! tried to place (with what it holds of it), the queue as the leader lists it, and each
//! replica's own applied state once they all agree on how far they applied.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bookstore_proto as pb;
use futures::StreamExt;
use queue_raft::QueueClient;
use tokio::time::Instant;

use crate::history::{
    Acknowledgement, ClusterEnd, Execution, FinalState, Item, OrderContents, OrderState,
    QueuePlace, ReplicaState,
};

/// How many `GetOrder` reads are in flight at once while collecting final states.
const READS_IN_FLIGHT: usize = 16;
const DRAIN_POLL: Duration = Duration::from_millis(500);
/// Reads of one order's final state before the run gives up: a node restarted at the end may
/// still cause an election while they run.
const READ_ATTEMPTS: u32 = 5;
const READ_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How long reading every order's final state may take in all.
const FINAL_READS_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the replicas may take to reach the same applied index, and how often they are
/// asked meanwhile.
const REPLICAS_TIMEOUT: Duration = Duration::from_secs(30);
const REPLICAS_POLL: Duration = Duration::from_millis(500);

/// Waits until the queue is empty and every order in `order_ids` is executed or unknown to the
/// cluster, or until `timeout`; returns the final state of each order either way (orders still
/// queued or executing then are the checker's "stuck" orders).
pub async fn wait_drained(
    queue: &QueueClient,
    order_ids: &BTreeSet<String>,
    timeout: Duration,
) -> anyhow::Result<Vec<FinalState>> {
    let deadline = Instant::now() + timeout;
    loop {
        let empty = queue_is_empty(queue).await;
        if empty || Instant::now() >= deadline {
            let states = final_states(queue, order_ids).await;
            let settled = states.iter().all(|state| {
                matches!(
                    state.state,
                    OrderState::Unknown | OrderState::Executed { .. }
                )
            });
            if settled || Instant::now() >= deadline {
                return Ok(states);
            }
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// True when the leader answers that nothing is queued and no executor holds the lease.
async fn queue_is_empty(queue: &QueueClient) -> bool {
    let statuses = queue.cluster_status_all().await;
    bookstore_bench::cluster::leader_of(
        statuses
            .iter()
            .filter_map(|(_, answer)| answer.as_ref().ok()),
    )
    .is_some_and(|leader| leader.queue_depth == 0 && leader.lease_holder.is_empty())
}

/// The cluster's state of every order, read linearizably at the leader.
/// The cluster's state of every order, read linearizably at the leader, within
/// [`FINAL_READS_TIMEOUT`]: an order not read by then (a cluster that answers no reads) is
/// `Unreadable`, for the checker to judge, rather than holding the run up.
async fn final_states(queue: &QueueClient, order_ids: &BTreeSet<String>) -> Vec<FinalState> {
    let deadline = Instant::now() + FINAL_READS_TIMEOUT;
    let reads = futures::stream::iter(order_ids.iter().cloned())
        .map(|order_id| async move {
            let read = tokio::time::timeout_at(deadline, read_order(queue, &order_id)).await;
            match read {
                Ok(Ok(state)) => FinalState {
                    order_id,
                    contents: state.as_ref().and_then(contents_of),
                    // A rejected checkout was never placed in the queue.
                    place: state
                        .as_ref()
                        .filter(|state| state.phase() != pb::OrderPhase::Rejected)
                        .map(|state| QueuePlace {
                            enqueued_at_queue_ms: state.enqueued_at_queue_ms,
                            sequence: state.sequence,
                        }),
                    state: order_state(state),
                },
                Ok(Err(error)) => unreadable(order_id, format!("{error:#}")),
                Err(_) => unreadable(
                    order_id,
                    format!("not read within {FINAL_READS_TIMEOUT:?} of reading the first"),
                ),
            }
        })
        .buffered(READS_IN_FLIGHT);
    reads.collect().await
}

fn unreadable(order_id: String, error: String) -> FinalState {
    FinalState {
        order_id,
        state: OrderState::Unreadable { error },
        contents: None,
        place: None,
    }
}

async fn read_order(queue: &QueueClient, order_id: &str) -> anyhow::Result<Option<pb::OrderState>> {
    read_with_retries(|| queue.get_order(order_id))
        .await
        .with_context(|| {
            format!("cannot read order {order_id} from the queue ({READ_ATTEMPTS} attempts)")
        })
}

/// What the cluster holds of an order.
fn contents_of(state: &pb::OrderState) -> Option<OrderContents> {
    let order = state.order.as_ref()?;
    Some(OrderContents {
        customer: order.customer.clone(),
        items: order
            .items
            .iter()
            .map(|item| Item {
                title: item.title.clone(),
                quantity: item.quantity,
            })
            .collect(),
    })
}

/// The queue as the leader lists it (every queued order, up to the service's limit; or why it
/// could not be listed), and each replica's state: asked until every node answers with the same
/// applied index twice in a row, or until [`REPLICAS_TIMEOUT`] (then as last seen, for the
/// checker to judge).
pub async fn cluster_end(queue: &QueueClient) -> ClusterEnd {
    let listing = read_with_retries(|| queue.list_queue(queue_raft::service::MAX_LIST_LIMIT)).await;
    let (queue_depth, queued_order_ids, listing_error) = match listing {
        Ok(listing) => (
            listing.depth,
            listing
                .orders
                .into_iter()
                .filter_map(|state| state.order.map(|order| order.order_id))
                .collect(),
            None,
        ),
        Err(error) => (0, Vec::new(), Some(error.to_string())),
    };
    let deadline = Instant::now() + REPLICAS_TIMEOUT;
    let mut previous: Option<Vec<ReplicaState>> = None;
    let replicas = loop {
        let replicas = replica_states(queue).await;
        let settled = replicas.iter().all(|replica| replica.error.is_none())
            && replicas
                .windows(2)
                .all(|pair| pair[0].applied_index == pair[1].applied_index);
        let stable = previous.as_ref().is_some_and(|previous| {
            previous
                .iter()
                .zip(&replicas)
                .all(|(before, now)| before.applied_index == now.applied_index)
        });
        if (settled && stable) || Instant::now() >= deadline {
            break replicas;
        }
        previous = Some(replicas);
        tokio::time::sleep(REPLICAS_POLL).await;
    };
    ClusterEnd {
        queue_depth,
        queued_order_ids,
        listing_error,
        replicas,
    }
}

/// Every node's own applied state, node 1 first.
async fn replica_states(queue: &QueueClient) -> Vec<ReplicaState> {
    let addrs: Vec<String> = queue.addrs().map(str::to_owned).collect();
    let asks = addrs.iter().enumerate().map(|(index, addr)| async move {
        let node_id = index as u64 + 1;
        match queue.cluster_status_with_digest_of(addr).await {
            Ok(status) => ReplicaState {
                node_id: status.node_id,
                role: status.role,
                term: status.term,
                last_log_index: status.last_log_index,
                commit_index: status.commit_index,
                applied_index: status.applied_index,
                state_digest: status.state_digest,
                queue_depth: status.queue_depth,
                executed_count: status.executed_count,
                error: None,
            },
            Err(error) => ReplicaState {
                node_id,
                role: String::new(),
                term: 0,
                last_log_index: 0,
                commit_index: 0,
                applied_index: 0,
                state_digest: String::new(),
                queue_depth: 0,
                executed_count: 0,
                error: Some(error.to_string()),
            },
        }
    });
    futures::future::join_all(asks).await
}

/// Runs `read` until it answers, at most [`READ_ATTEMPTS`] times: a node restarted at the end
/// may still cause an election.
async fn read_with_retries<T, F, Fut>(read: F) -> Result<T, queue_raft::ClientError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, queue_raft::ClientError>>,
{
    let mut attempt = 1;
    loop {
        match read().await {
            Ok(answer) => return Ok(answer),
            Err(error) if attempt >= READ_ATTEMPTS => return Err(error),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(READ_RETRY_PAUSE).await;
            }
        }
    }
}

fn order_state(state: Option<pb::OrderState>) -> OrderState {
    let Some(state) = state else {
        return OrderState::Unknown;
    };
    match state.phase() {
        pb::OrderPhase::Executing => OrderState::Executing {
            executor_id: state.executor_id,
            token: state.token,
        },
        pb::OrderPhase::Executed => OrderState::Executed {
            executor_id: state.executor_id,
            token: state.token,
            acknowledged_token: state.acknowledged_token,
        },
        pb::OrderPhase::Queued | pb::OrderPhase::Unspecified => OrderState::Queued,
        // A rejected checkout is a record of the queue now; it was never placed, as when the
        // queue did not know it.
        pb::OrderPhase::Rejected => OrderState::Unknown,
    }
}

/// Every execution and every acknowledgement's answer in the executors' ledgers, in ledger
/// order.
pub fn ledgers(ledgers: &[PathBuf]) -> anyhow::Result<(Vec<Execution>, Vec<Acknowledgement>)> {
    let mut executions = Vec::new();
    let mut answers = Vec::new();
    for ledger in ledgers {
        let in_ledger = || format!("in the ledger {}", ledger.display());
        for line in executor::Ledger::read_lines(ledger)? {
            match line {
                executor::LedgerLine::Execution(line) => {
                    executions.push(Execution::from_ledger(&line).with_context(in_ledger)?);
                }
                executor::LedgerLine::Acknowledgement(line) => {
                    answers.push(Acknowledgement::from_ledger(&line).with_context(in_ledger)?);
                }
            }
        }
    }
    Ok((executions, answers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_map_to_final_states() {
        assert_eq!(order_state(None), OrderState::Unknown);
        let executed = pb::OrderState {
            phase: pb::OrderPhase::Executed as i32,
            executor_id: "executor-2".into(),
            token: 9,
            acknowledged_token: 11,
            ..Default::default()
        };
        assert_eq!(
            order_state(Some(executed)),
            OrderState::Executed {
                executor_id: "executor-2".into(),
                token: 9,
                acknowledged_token: 11,
            }
        );
        let queued = pb::OrderState {
            phase: pb::OrderPhase::Queued as i32,
            ..Default::default()
        };
        assert_eq!(order_state(Some(queued)), OrderState::Queued);
    }
}
