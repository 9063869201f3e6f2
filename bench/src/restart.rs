//! How long a node takes to come back: with the cluster settled (typically holding a large
//! queue, see [`crate::queue::fill`]), one node is SIGKILLed by an outside command and started
//! again at once with its data; measured from the start of the restart command to the node
//! answering its status again (serving), and to it having applied everything the leader has
//! committed (caught up). What a restarted node has to do in between, reopening its log and
//! recovering its state machine from its last snapshot and the log after it, is what grows with
//! the size of the queue.

use std::time::Duration;

use queue_raft::{NodeId, QueueClient};
use serde::Serialize;
use tokio::time::Instant;

use crate::BenchError;
use crate::cluster::{
    POLL_INTERVAL, Settled, describe_cluster, leader_of, run_command, wait_for_leader,
};
use crate::stats::millis;

/// Which node to restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartTarget {
    /// The follower with the lowest id: the others go on committing without it.
    Follower,
    /// The leader: the others elect a new one while it restarts, and it comes back a follower.
    Leader,
}

impl RestartTarget {
    /// The role's name, as the nodes report it.
    pub fn role(self) -> &'static str {
        match self {
            RestartTarget::Follower => "follower",
            RestartTarget::Leader => "leader",
        }
    }
}

/// The restart to measure.
#[derive(Debug, Clone)]
pub struct RestartOptions {
    pub target: RestartTarget,
    /// Shell command that SIGKILLs a node; `{node}` is replaced by its id.
    pub kill_cmd: String,
    /// Shell command that starts a killed node again with its data; `{node}` as above.
    pub restart_cmd: String,
    /// The longest to wait for the cluster to settle before the kill.
    pub settle_timeout: Duration,
    /// The longest to wait for the restarted node to catch up.
    pub catch_up_timeout: Duration,
}

/// What the restart took; printed as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    pub bench: &'static str,
    pub node: NodeId,
    /// The role the node had when it was killed.
    pub role: &'static str,
    /// Orders queued at the leader before the kill.
    pub queue_depth: u64,
    /// The node's applied index before the kill: the log it comes back with.
    pub applied_index: u64,
    /// How long the kill command took (it waits for the process to be gone).
    pub kill_cmd_ms: f64,
    /// From the start of the restart command to the node's first answer to a status poll.
    pub serving_ms: f64,
    /// From the start of the restart command to the node having applied all that the leader
    /// had committed at that poll.
    pub caught_up_ms: f64,
    /// The leader's commit index the node caught up with.
    pub leader_commit_index: u64,
}

/// Kills and restarts the node `options.target` names and measures its way back.
pub async fn restart(
    client: &QueueClient,
    options: &RestartOptions,
) -> Result<RestartReport, BenchError> {
    let (statuses, leader) = wait_for_leader(
        client,
        options.settle_timeout,
        "before the kill",
        Settled::AllApplied,
    )
    .await?;
    let (addr, before) = match options.target {
        RestartTarget::Leader => statuses
            .iter()
            .find(|(_, status)| status.node_id == leader.node_id),
        RestartTarget::Follower => statuses
            .iter()
            .filter(|(_, status)| status.node_id != leader.node_id)
            .min_by_key(|(_, status)| status.node_id),
    }
    .cloned()
    .ok_or_else(|| BenchError::NoTarget {
        target: options.target.role(),
        state: statuses
            .iter()
            .map(|(addr, status)| format!("{addr} is node {} ({})", status.node_id, status.role))
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    let node = before.node_id;

    let kill_started = Instant::now();
    run_command(&options.kill_cmd, node).await?;
    let kill_cmd_ms = millis(kill_started.elapsed());
    let restarted = Instant::now();
    run_command(&options.restart_cmd, node).await?;

    let deadline = restarted + options.catch_up_timeout;
    let mut serving = None;
    loop {
        let answers = client.cluster_status_all().await;
        let now = Instant::now();
        let own = answers
            .iter()
            .find(|(answered_by, _)| *answered_by == addr)
            .and_then(|(_, answer)| answer.as_ref().ok());
        if let Some(own) = own {
            let serving_at = *serving.get_or_insert(now);
            let current_leader = leader_of(
                answers
                    .iter()
                    .filter_map(|(_, answer)| answer.as_ref().ok()),
            );
            if let Some(current_leader) = current_leader
                && own.applied_index >= current_leader.commit_index
            {
                return Ok(RestartReport {
                    bench: "restart",
                    node,
                    role: options.target.role(),
                    queue_depth: leader.queue_depth,
                    applied_index: before.applied_index,
                    kill_cmd_ms,
                    serving_ms: millis(serving_at.duration_since(restarted)),
                    caught_up_ms: millis(now.duration_since(restarted)),
                    leader_commit_index: current_leader.commit_index,
                });
            }
        }
        if now >= deadline {
            return Err(BenchError::NotCaughtUp {
                node,
                waited: options.catch_up_timeout,
                state: describe_cluster(&answers),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
