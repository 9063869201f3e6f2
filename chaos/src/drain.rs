//! The end of a run: everything healed and running again, the clients stopped, the executors
//! left to empty the queue; then what the checker needs is collected: every execution from the
//! ledgers, and the cluster's final word on every order a client tried to place.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bookstore_proto as pb;
use futures::StreamExt;
use queue_raft::QueueClient;
use tokio::time::Instant;

use crate::history::{Execution, FinalState, OrderState};

/// How many `GetOrder` reads are in flight at once while collecting final states.
const READS_IN_FLIGHT: usize = 16;
const DRAIN_POLL: Duration = Duration::from_millis(500);
/// Reads of one order's final state before the run gives up: a node restarted at the end may
/// still cause an election while they run.
const READ_ATTEMPTS: u32 = 5;
const READ_RETRY_PAUSE: Duration = Duration::from_secs(1);

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
            let states = final_states(queue, order_ids).await?;
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
async fn final_states(
    queue: &QueueClient,
    order_ids: &BTreeSet<String>,
) -> anyhow::Result<Vec<FinalState>> {
    let reads = futures::stream::iter(order_ids.iter().cloned())
        .map(|order_id| async move {
            let state = read_order(queue, &order_id).await?;
            anyhow::Ok(FinalState {
                order_id,
                state: order_state(state),
            })
        })
        .buffered(READS_IN_FLIGHT);
    reads.collect::<Vec<_>>().await.into_iter().collect()
}

async fn read_order(queue: &QueueClient, order_id: &str) -> anyhow::Result<Option<pb::OrderState>> {
    let mut attempt = 1;
    loop {
        match queue.get_order(order_id).await {
            Ok(state) => return Ok(state),
            Err(error) if attempt >= READ_ATTEMPTS => {
                return Err(error).with_context(|| {
                    format!("cannot read order {order_id} from the queue ({attempt} attempts)")
                });
            }
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
        },
        pb::OrderPhase::Queued | pb::OrderPhase::Unspecified => OrderState::Queued,
        // A rejected checkout is a record of the queue now; it was never placed, as when the
        // queue did not know it.
        pb::OrderPhase::Rejected => OrderState::Unknown,
    }
}

/// Every execution in the executors' ledgers, in ledger order.
pub fn executions(ledgers: &[PathBuf]) -> anyhow::Result<Vec<Execution>> {
    let mut executions = Vec::new();
    for ledger in ledgers {
        for line in executor::ledger::Ledger::read_all(ledger)? {
            executions.push(
                Execution::from_ledger(&line)
                    .with_context(|| format!("in the ledger {}", ledger.display()))?,
            );
        }
    }
    Ok(executions)
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
            ..Default::default()
        };
        assert_eq!(
            order_state(Some(executed)),
            OrderState::Executed {
                executor_id: "executor-2".into(),
                token: 9
            }
        );
        let queued = pb::OrderState {
            phase: pb::OrderPhase::Queued as i32,
            ..Default::default()
        };
        assert_eq!(order_state(Some(queued)), OrderState::Queued);
    }
}
