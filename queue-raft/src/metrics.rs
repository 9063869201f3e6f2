//! What a queue node reports on `/metrics`: its Raft role, term, leader and log positions from
//! openraft's metrics channel, and the queue (depth, orders enqueued and executed, lease grants)
//! from the applied state. It only reads; the state machine itself records nothing, so that
//! applying an entry stays pure.
//!
//! Role, term and leader are updated on every change openraft publishes (an election is never
//! missed between two samples); log positions and the queue every [`SAMPLE_INTERVAL`], since
//! under load they change on every entry.

use std::time::Duration;

use openraft::{BasicNode, Raft, RaftMetrics, ServerState};
use tokio::time::MissedTickBehavior;

use crate::service::role_name;
use crate::{NodeId, StateMachineStore, TypeConfig};

/// How often the log positions and the queue are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

const ROLES: [ServerState; 5] = [
    ServerState::Leader,
    ServerState::Follower,
    ServerState::Candidate,
    ServerState::Learner,
    ServerState::Shutdown,
];

/// Exports the node's metrics until Raft has shut down and dropped its metrics sender.
pub async fn export(raft: Raft<TypeConfig>, state: StateMachineStore) {
    let mut changes = raft.metrics();
    let mut sample = tokio::time::interval(SAMPLE_INTERVAL);
    sample.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_role: Option<(ServerState, u64, Option<NodeId>)> = None;
    // The last leader this node knew of, kept across spells without one, so that only a
    // different leader counts as a change.
    let mut last_leader: Option<NodeId> = None;
    loop {
        let role = {
            let current = changes.borrow_and_update();
            (current.state, current.current_term, current.current_leader)
        };
        if last_role != Some(role) {
            record_role(role.0, role.1, role.2);
            if let Some(leader) = role.2
                && last_leader != Some(leader)
            {
                metrics::counter!("bookstore_raft_leader_changes_total").increment(1);
                last_leader = Some(leader);
            }
            last_role = Some(role);
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = sample.tick() => {
                let current = changes.borrow().clone();
                sample_progress(&raft, &state, &current).await;
            }
        }
    }
}

fn record_role(role: ServerState, term: u64, leader: Option<NodeId>) {
    for each in ROLES {
        let value = if each == role { 1.0 } else { 0.0 };
        metrics::gauge!("bookstore_raft_role", "role" => role_name(each)).set(value);
    }
    metrics::gauge!("bookstore_raft_term").set(term as f64);
    // 0: no leader known, as in the status answers.
    metrics::gauge!("bookstore_raft_leader_id").set(leader.unwrap_or(0) as f64);
}

async fn sample_progress(
    raft: &Raft<TypeConfig>,
    state: &StateMachineStore,
    current: &RaftMetrics<NodeId, BasicNode>,
) {
    // openraft 0.9's metrics lack the commit index; its state has it. Reading it fails only
    // once Raft has stopped, and the channel's closing ends the loop right after.
    if let Ok(committed) = raft.with_raft_state(|state| state.committed).await {
        metrics::gauge!("bookstore_raft_commit_index")
            .set(committed.map_or(0, |log_id| log_id.index) as f64);
    }
    metrics::gauge!("bookstore_raft_last_log_index")
        .set(current.last_log_index.unwrap_or(0) as f64);
    metrics::gauge!("bookstore_raft_applied_index")
        .set(current.last_applied.map_or(0, |log_id| log_id.index) as f64);
    let (depth, enqueued, executed, grants) = state
        .read_queue(|queue| {
            (
                queue.queue_depth(),
                queue.enqueued_count(),
                queue.executed_count(),
                queue.lease_grants(),
            )
        })
        .await;
    metrics::gauge!("bookstore_queue_depth").set(depth as f64);
    // Counted by the replicated state itself, so every replica reports the same totals and a
    // restarted node resumes from them.
    metrics::counter!("bookstore_queue_orders_enqueued_total").absolute(enqueued as u64);
    metrics::counter!("bookstore_queue_orders_executed_total").absolute(executed);
    metrics::counter!("bookstore_queue_lease_grants_total").absolute(grants);
}
