//! The queue cluster as the failover and restart measurements see it, through each node's own
//! `ClusterStatus`: waiting until it has settled, describing it when it has not, and running the
//! outside commands that kill and restart its nodes.

use std::time::Duration;

use bookstore_proto as pb;
use queue_raft::{ClientError, NodeId, QueueClient};
use serde::Serialize;
use tokio::time::Instant;

use crate::BenchError;

/// How often the cluster's status is polled while waiting for it to change.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// What [`wait_for_leader`] waits for besides every node answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// A node leads (the one in the highest term, if a deposed one has not heard yet).
    Led,
    /// And every node has applied all the leader has committed: the cluster is caught up.
    AllApplied,
}

/// The leader among `statuses`: the node saying it leads in the highest term (a deposed leader
/// may not have heard of the newer term yet).
pub fn leader_of<'a>(
    statuses: impl IntoIterator<Item = &'a pb::ClusterStatusResponse>,
) -> Option<&'a pb::ClusterStatusResponse> {
    statuses
        .into_iter()
        .filter(|status| status.role == "leader")
        .max_by_key(|status| status.term)
}

/// Waits until every node answers and the cluster is `settled`; returns every node's address
/// and status, in the order the client was given them, and the leader's status. `during` names
/// the step in the error.
pub async fn wait_for_leader(
    client: &QueueClient,
    timeout: Duration,
    during: &str,
    settled: Settled,
) -> Result<
    (
        Vec<(String, pb::ClusterStatusResponse)>,
        pb::ClusterStatusResponse,
    ),
    BenchError,
> {
    let deadline = Instant::now() + timeout;
    loop {
        let answers = client.cluster_status_all().await;
        let state = describe_cluster(&answers);
        let statuses: Result<Vec<_>, _> = answers
            .into_iter()
            .map(|(addr, answer)| answer.map(|status| (addr, status)))
            .collect();
        if let Ok(statuses) = statuses
            && let Some(leader) = leader_of(statuses.iter().map(|(_, status)| status))
            && (settled == Settled::Led
                || statuses
                    .iter()
                    .all(|(_, status)| status.applied_index >= leader.commit_index))
        {
            let leader = leader.clone();
            return Ok((statuses, leader));
        }
        if Instant::now() >= deadline {
            return Err(BenchError::NotSettled {
                during: during.to_owned(),
                waited: timeout,
                state,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A settled cluster, as [`settle`] found it; printed as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct SettleReport {
    pub bench: &'static str,
    pub leader: NodeId,
    pub term: u64,
    pub commit_index: u64,
    /// Orders queued, at the leader.
    pub queue_depth: u64,
    pub nodes: Vec<NodeReport>,
    /// How long it took to settle.
    pub waited_ms: f64,
}

/// One node of a [`SettleReport`].
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub node_id: NodeId,
    pub addr: String,
    pub role: String,
    pub applied_index: u64,
    pub queue_depth: u64,
}

/// Waits until every node answers and has applied all that the leader committed (after a fill,
/// followers may still be applying), then reports each node.
pub async fn settle(client: &QueueClient, timeout: Duration) -> Result<SettleReport, BenchError> {
    let started = Instant::now();
    let (statuses, leader) =
        wait_for_leader(client, timeout, "settling", Settled::AllApplied).await?;
    Ok(SettleReport {
        bench: "settle",
        leader: leader.node_id,
        term: leader.term,
        commit_index: leader.commit_index,
        queue_depth: leader.queue_depth,
        nodes: statuses
            .into_iter()
            .map(|(addr, status)| NodeReport {
                node_id: status.node_id,
                addr,
                role: status.role,
                applied_index: status.applied_index,
                queue_depth: status.queue_depth,
            })
            .collect(),
        waited_ms: crate::stats::millis(started.elapsed()),
    })
}

/// One line on every node: role, term, commit and applied index, or why it did not answer.
pub fn describe_cluster(
    answers: &[(String, Result<pb::ClusterStatusResponse, ClientError>)],
) -> String {
    let nodes: Vec<String> = answers
        .iter()
        .map(|(addr, answer)| match answer {
            Ok(status) => format!(
                "{addr} {} term {} commit {} applied {}",
                status.role, status.term, status.commit_index, status.applied_index
            ),
            Err(error) => format!("{addr} down: {error}"),
        })
        .collect();
    nodes.join("; ")
}

/// Runs `template` with `{node}` replaced through `sh -c`; its output goes to stderr, so that
/// stdout stays the benchmark's JSON.
pub async fn run_command(template: &str, node: NodeId) -> Result<(), BenchError> {
    let command = template.replace("{node}", &node.to_string());
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| BenchError::CommandSpawn {
            command: command.clone(),
            source,
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return Err(BenchError::CommandFailed {
            command,
            status: output.status,
            output: text,
        });
    }
    eprint!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(node_id: NodeId, role: &str, term: u64) -> pb::ClusterStatusResponse {
        pb::ClusterStatusResponse {
            node_id,
            role: role.to_owned(),
            term,
            ..Default::default()
        }
    }

    #[test]
    fn the_leader_is_the_one_leading_the_highest_term() {
        let statuses = [
            status(1, "leader", 3),
            status(2, "leader", 4),
            status(3, "follower", 4),
        ];
        assert_eq!(leader_of(&statuses).map(|leader| leader.node_id), Some(2));
        assert!(leader_of(&statuses[2..]).is_none());
    }
}
