//! The cluster page's data: [`ClusterMonitor`] asks every queue node for its own view twice a
//! second and keeps what the page shows, [`ClusterView`], with a short memory of what changed.
//!
//! Each node is asked on its own, concurrently and with a short timeout, so that a node that is
//! down (or hangs) shows as down and never holds up the others: the page stays useful exactly
//! when someone has just killed a node. The history (leader changes, lease grants, throughput)
//! lives here rather than in the browser so that every viewer sees the same recent past, also
//! one that opens the page after the election it wants to see.
//!
//! The view is public (`GET /cluster/status`, CORS `*`), so it carries no customer data (the
//! next orders show as their size and age, without ids or names), no lease token (the
//! orchestrator's queue role is not shown them anyway) and no internal address (nodes are named
//! by id; errors say what failed, not where).

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bookstore_proto as pb;
use queue_raft::client::{ClientError, ClientOptions, QueueClient};
use queue_raft::client_auth::QueueToken;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::queue_failure;

/// How often the nodes are asked; the page polls at the same pace.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

/// Leader changes and lease grants remembered, each.
const ELECTIONS_KEPT: usize = 10;

/// Throughput samples remembered: a minute at [`SAMPLE_INTERVAL`].
const THROUGHPUT_SAMPLES_KEPT: usize = 120;

/// How many of the next orders the page lists.
const ORDERS_SHOWN: u32 = 8;

/// Short enough that a node that does not answer costs the page less than one sample interval
/// or two; a node on loopback answers in a millisecond.
fn monitor_options() -> ClientOptions {
    ClientOptions {
        deadline: Duration::from_millis(800),
        attempt_timeout: Duration::from_millis(400),
        connect_timeout: Duration::from_millis(300),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    }
}

/// The body of `GET /cluster/status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// When the nodes were last asked (orchestrator clock, ms since the Unix epoch); None
    /// before the first sample.
    pub sampled_at_ms: Option<u64>,
    pub sample_interval_ms: u64,
    /// Every node asked, in node id order (a node never seen up last).
    pub nodes: Vec<NodeView>,
    /// The node that says it leads, in the highest term any node reports; None during an
    /// election or without a majority.
    pub leader: Option<LeaderView>,
    pub queue: QueueView,
    /// The executor lease as the leader applied it (or, without a leader, the most advanced
    /// node that answered).
    pub lease: Option<LeaseView>,
    /// Raft leader changes seen, newest first.
    pub raft_elections: Vec<RaftElection>,
    /// Executor lease grants seen (new fencing tokens), newest first.
    pub executor_elections: Vec<ExecutorElection>,
    /// Orders executed and log entries applied per second, oldest first.
    pub throughput: Vec<ThroughputPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// host:port as the orchestrator reaches it: how the sampler knows the node, never shown.
    #[serde(skip)]
    pub addr: String,
    /// Known once the node, or a member list naming it, has answered.
    pub node_id: Option<u64>,
    pub up: bool,
    /// Why the node did not answer, when it is down.
    pub error: Option<String>,
    /// When the node last answered.
    pub last_seen_at_ms: Option<u64>,
    /// The node's own view, when it answered this time.
    pub status: Option<NodeStatus>,
}

/// One node's own report (protobuf `ClusterStatusResponse`, less the members and lease).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub role: String,
    pub term: u64,
    /// 0 when the node knows no leader.
    pub leader_id: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub queue_depth: u64,
    pub executed_count: u64,
    /// 0 on the leader itself.
    pub millis_since_leader_contact: u64,
}

impl From<&pb::ClusterStatusResponse> for NodeStatus {
    fn from(status: &pb::ClusterStatusResponse) -> Self {
        Self {
            role: status.role.clone(),
            term: status.term,
            leader_id: status.leader_id,
            last_log_index: status.last_log_index,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            queue_depth: status.queue_depth,
            executed_count: status.executed_count,
            millis_since_leader_contact: status.millis_since_leader_contact,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaderView {
    pub node_id: u64,
    pub term: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    /// Orders waiting, from the leader (or the most advanced node when the listing failed).
    pub depth: Option<u64>,
    /// The next orders in the order executors take them.
    pub next: Vec<QueuedOrderView>,
    /// Why the orders could not be listed (no leader, no majority).
    pub error: Option<String>,
}

/// One of the next orders, as public as a queue display in a shop: no id, no customer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueuedOrderView {
    pub priority: u32,
    /// "queued" or "executing".
    pub phase: String,
    /// The executor executing it, if any.
    pub executor: Option<String>,
    pub books: u32,
    pub enqueued_at_ms: u64,
}

impl From<&pb::OrderState> for QueuedOrderView {
    fn from(state: &pb::OrderState) -> Self {
        let order = state.order.clone().unwrap_or_default();
        let phase = match state.phase() {
            pb::OrderPhase::Executing => "executing",
            pb::OrderPhase::Executed => "executed",
            // The queue's listing holds only queued orders; a rejected one is never among them.
            pb::OrderPhase::Rejected => "rejected",
            pb::OrderPhase::Queued | pb::OrderPhase::Unspecified => "queued",
        };
        Self {
            priority: state.priority,
            phase: phase.to_owned(),
            executor: Some(state.executor_id.clone()).filter(|id| !id.is_empty()),
            books: order.items.iter().map(|item| item.quantity).sum(),
            enqueued_at_ms: state.enqueued_at_ms,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaseView {
    /// None when the lease is free.
    pub holder: Option<String>,
    /// The leader's clock, ms since the Unix epoch; 0 when free.
    pub expires_at_ms: u64,
    /// Which node's applied state this is.
    pub from_node_id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RaftElection {
    pub term: u64,
    pub leader_id: u64,
    /// When the orchestrator first saw this leader.
    pub seen_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorElection {
    pub holder: String,
    /// The holder's process run: a new one is a new grant even to the same executor id.
    pub incarnation: u64,
    pub seen_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThroughputPoint {
    pub at_ms: u64,
    pub executed_per_second: f64,
    pub applied_per_second: f64,
}

/// Samples the cluster in the background and answers with the latest [`ClusterView`]. Cheap to
/// clone; clones share the view.
#[derive(Debug, Clone)]
pub struct ClusterMonitor {
    /// A client of its own, with short timeouts, so that the page never waits as long as a
    /// checkout may.
    client: QueueClient,
    /// Written by the sampler once a round and read by each request; never held across an
    /// `.await`, so a slow node cannot make a request wait for the lock.
    observed: Arc<Mutex<Observed>>,
}

impl ClusterMonitor {
    /// A monitor of the nodes at `addrs`, asked with `token`; it asks nothing until
    /// [`ClusterMonitor::run`].
    pub fn new(addrs: Vec<String>, token: QueueToken) -> Result<Self, ClientError> {
        let client = QueueClient::with_options(addrs, token, monitor_options())?;
        let observed = Observed::new(client.addrs().map(str::to_owned).collect());
        Ok(Self {
            client,
            observed: Arc::new(Mutex::new(observed)),
        })
    }

    /// The latest view; never waits for a node.
    pub fn view(&self) -> ClusterView {
        self.lock().view.clone()
    }

    /// Samples every [`SAMPLE_INTERVAL`] until `stop` changes or its sender is dropped.
    pub async fn run(self, mut stop: watch::Receiver<()>) {
        let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
        // A slow round (a node timing out) is followed by a full interval, not by a burst.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                () = async {
                    ticks.tick().await;
                    self.sample().await;
                } => {}
            }
        }
    }

    /// Asks every node and the leader's queue at once, then records the answers.
    async fn sample(&self) {
        let addrs = self.lock().addrs();
        let statuses = futures::future::join_all(addrs.into_iter().map(|addr| async move {
            let status = self.client.cluster_status_of(&addr).await;
            (addr, status)
        }));
        let (statuses, queue) = tokio::join!(statuses, self.client.list_queue(ORDERS_SHOWN));
        self.lock().record(now_ms(), statuses, queue);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Observed> {
        // The state is replaced whole by `record`, so a panic elsewhere cannot leave it torn.
        self.observed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Milliseconds since the Unix epoch; 0 for a clock set before 1970.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Counters of one sample, for the throughput line.
#[derive(Debug, Clone, Copy)]
struct Counters {
    at_ms: u64,
    executed: u64,
    applied: u64,
}

/// Everything remembered between samples. Pure: fed answers, never asks.
#[derive(Debug)]
struct Observed {
    /// The addresses the orchestrator was given.
    configured: Vec<String>,
    /// Node ids by address, from the nodes' answers and member lists; kept when a node goes down
    /// so that its card keeps its name.
    ids: BTreeMap<String, u64>,
    /// Members the cluster reported that the orchestrator was not given (a node added later).
    extra_members: Vec<String>,
    last_seen_ms: BTreeMap<String, u64>,
    raft_elections: VecDeque<RaftElection>,
    executor_elections: VecDeque<ExecutorElection>,
    /// The lease's holder and incarnation in the last sample, None when free or unknown: a
    /// holder seen after another, or after a free lease, is a new grant. (A grant to the same
    /// run between two samples is not told apart: the page never sees lease tokens.)
    last_holder: Option<(String, u64)>,
    counters: VecDeque<Counters>,
    view: ClusterView,
}

impl Observed {
    fn new(configured: Vec<String>) -> Self {
        let nodes = configured
            .iter()
            .map(|addr| NodeView {
                addr: addr.clone(),
                node_id: None,
                up: false,
                error: Some("not asked yet".to_owned()),
                last_seen_at_ms: None,
                status: None,
            })
            .collect();
        Self {
            configured,
            ids: BTreeMap::new(),
            extra_members: Vec::new(),
            last_seen_ms: BTreeMap::new(),
            raft_elections: VecDeque::new(),
            executor_elections: VecDeque::new(),
            last_holder: None,
            counters: VecDeque::new(),
            view: ClusterView {
                sample_interval_ms: millis(SAMPLE_INTERVAL),
                nodes,
                ..ClusterView::default()
            },
        }
    }

    /// The nodes to ask: those configured and any other member the cluster named.
    fn addrs(&self) -> Vec<String> {
        self.configured
            .iter()
            .chain(&self.extra_members)
            .cloned()
            .collect()
    }

    fn record(
        &mut self,
        at_ms: u64,
        statuses: Vec<(String, Result<pb::ClusterStatusResponse, ClientError>)>,
        queue: Result<pb::ListQueueResponse, ClientError>,
    ) {
        for (addr, status) in &statuses {
            if let Ok(status) = status {
                self.ids.insert(addr.clone(), status.node_id);
                self.last_seen_ms.insert(addr.clone(), at_ms);
            }
        }
        let answered = || {
            statuses
                .iter()
                .filter_map(|(addr, s)| Some((addr, s.as_ref().ok()?)))
        };
        let leader = answered()
            .filter(|(_, status)| status.role == "leader")
            .max_by_key(|(_, status)| status.term);
        // The leader's member list is the cluster's; without a leader, keep the last one known.
        if let Some((_, status)) = leader {
            self.extra_members.clear();
            for member in &status.members {
                self.ids.insert(member.addr.clone(), member.node_id);
                if !self.configured.contains(&member.addr) {
                    self.extra_members.push(member.addr.clone());
                }
            }
        }
        // Whose applied state to show when there is no leader: the most advanced that answered.
        let reference = leader.or_else(|| answered().max_by_key(|(_, s)| s.applied_index));

        let mut nodes: Vec<NodeView> = statuses
            .iter()
            .map(|(addr, status)| NodeView {
                addr: addr.clone(),
                node_id: self.ids.get(addr).copied(),
                up: status.is_ok(),
                error: status.as_ref().err().map(queue_failure),
                last_seen_at_ms: self.last_seen_ms.get(addr).copied(),
                status: status.as_ref().ok().map(NodeStatus::from),
            })
            .collect();
        nodes.sort_by_key(|node| (node.node_id.is_none(), node.node_id));

        let leader = leader.map(|(_, status)| LeaderView {
            node_id: status.node_id,
            term: status.term,
        });
        if let Some(leader) = &leader {
            let seen = self
                .raft_elections
                .front()
                .is_some_and(|last| (last.term, last.leader_id) == (leader.term, leader.node_id));
            if !seen {
                push_newest(
                    &mut self.raft_elections,
                    RaftElection {
                        term: leader.term,
                        leader_id: leader.node_id,
                        seen_at_ms: at_ms,
                    },
                );
            }
        }

        let lease = reference.map(|(_, status)| LeaseView {
            holder: Some(status.lease_holder.clone()).filter(|holder| !holder.is_empty()),
            expires_at_ms: status.lease_expires_at_ms,
            from_node_id: status.node_id,
        });
        let holder = reference
            .filter(|(_, status)| !status.lease_holder.is_empty())
            .map(|(_, status)| (status.lease_holder.clone(), status.lease_holder_incarnation));
        if let Some((holder_id, incarnation)) = &holder
            && self.last_holder.as_ref() != holder.as_ref()
        {
            push_newest(
                &mut self.executor_elections,
                ExecutorElection {
                    holder: holder_id.clone(),
                    incarnation: *incarnation,
                    seen_at_ms: at_ms,
                },
            );
        }
        self.last_holder = holder;

        // The largest counters any node reports only grow (a lagging node reports less, never
        // more), so the rate between two samples is never negative for long.
        if let Some(executed) = answered().map(|(_, s)| s.executed_count).max() {
            let applied = answered().map(|(_, s)| s.applied_index).max().unwrap_or(0);
            if self.counters.len() == THROUGHPUT_SAMPLES_KEPT + 1 {
                self.counters.pop_front();
            }
            self.counters.push_back(Counters {
                at_ms,
                executed,
                applied,
            });
        }

        let queue = match queue {
            Ok(listing) => QueueView {
                depth: Some(listing.depth),
                next: listing.orders.iter().map(QueuedOrderView::from).collect(),
                error: None,
            },
            Err(error) => QueueView {
                depth: reference.map(|(_, status)| status.queue_depth),
                next: Vec::new(),
                error: Some(queue_failure(&error)),
            },
        };

        self.view = ClusterView {
            sampled_at_ms: Some(at_ms),
            sample_interval_ms: millis(SAMPLE_INTERVAL),
            nodes,
            leader,
            queue,
            lease,
            raft_elections: self.raft_elections.iter().cloned().collect(),
            executor_elections: self.executor_elections.iter().cloned().collect(),
            throughput: throughput(&self.counters),
        };
    }
}

/// Adds `entry` at the front, forgetting the oldest beyond [`ELECTIONS_KEPT`].
fn push_newest<T>(entries: &mut VecDeque<T>, entry: T) {
    entries.push_front(entry);
    entries.truncate(ELECTIONS_KEPT);
}

/// Rates between consecutive samples.
fn throughput(counters: &VecDeque<Counters>) -> Vec<ThroughputPoint> {
    counters
        .iter()
        .zip(counters.iter().skip(1))
        .filter(|(before, after)| after.at_ms > before.at_ms)
        .map(|(before, after)| {
            let seconds = (after.at_ms - before.at_ms) as f64 / 1000.0;
            ThroughputPoint {
                at_ms: after.at_ms,
                executed_per_second: after.executed.saturating_sub(before.executed) as f64
                    / seconds,
                applied_per_second: after.applied.saturating_sub(before.applied) as f64 / seconds,
            }
        })
        .collect()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRS: [&str; 3] = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"];

    fn status(node_id: u64, role: &str, term: u64, applied: u64) -> pb::ClusterStatusResponse {
        pb::ClusterStatusResponse {
            node_id,
            role: role.to_owned(),
            term,
            applied_index: applied,
            commit_index: applied,
            executed_count: applied / 2,
            lease_holder: "executor-1".to_owned(),
            lease_holder_incarnation: term,
            lease_token: term,
            members: (1..=3)
                .map(|id| pb::ClusterMember {
                    node_id: id,
                    addr: ADDRS[id as usize - 1].to_owned(),
                    voter: true,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn down() -> Result<pb::ClusterStatusResponse, ClientError> {
        Err(ClientError::Unreachable {
            attempts: 1,
            waited: Duration::from_millis(1),
            last_error: "connection refused".to_owned(),
        })
    }

    fn no_listing() -> Result<pb::ListQueueResponse, ClientError> {
        Err(ClientError::Unreachable {
            attempts: 3,
            waited: Duration::from_millis(800),
            last_error: "no leader".to_owned(),
        })
    }

    fn answers(
        answers: [Result<pb::ClusterStatusResponse, ClientError>; 3],
    ) -> Vec<(String, Result<pb::ClusterStatusResponse, ClientError>)> {
        ADDRS
            .iter()
            .map(|addr| addr.to_string())
            .zip(answers)
            .collect()
    }

    fn observed() -> Observed {
        Observed::new(ADDRS.iter().map(|addr| addr.to_string()).collect())
    }

    #[test]
    fn a_killed_leader_stays_named_and_the_next_leader_is_an_election() {
        let mut observed = observed();
        observed.record(
            1_000,
            answers([
                Ok(status(1, "leader", 1, 10)),
                Ok(status(2, "follower", 1, 10)),
                Ok(status(3, "follower", 1, 10)),
            ]),
            Ok(pb::ListQueueResponse::default()),
        );
        assert_eq!(observed.view.leader.as_ref().map(|l| l.node_id), Some(1));

        observed.record(
            1_500,
            answers([
                down(),
                Ok(status(2, "candidate", 2, 11)),
                Ok(status(3, "follower", 2, 10)),
            ]),
            no_listing(),
        );
        let view = &observed.view;
        assert_eq!(view.leader, None);
        assert_eq!(view.nodes[0].node_id, Some(1), "the down node keeps its id");
        assert!(!view.nodes[0].up);
        assert_eq!(view.nodes[0].last_seen_at_ms, Some(1_000));
        assert!(view.queue.error.is_some());
        assert_eq!(
            view.lease.as_ref().map(|l| l.from_node_id),
            Some(2),
            "without a leader, the most advanced node's lease"
        );

        observed.record(
            2_000,
            answers([
                down(),
                Ok(status(2, "leader", 2, 14)),
                Ok(status(3, "follower", 2, 14)),
            ]),
            Ok(pb::ListQueueResponse::default()),
        );
        let elections: Vec<_> = observed
            .view
            .raft_elections
            .iter()
            .map(|e| (e.term, e.leader_id))
            .collect();
        assert_eq!(elections, [(2, 2), (1, 1)]);
        let incarnations: Vec<_> = observed
            .view
            .executor_elections
            .iter()
            .map(|e| e.incarnation)
            .collect();
        assert_eq!(incarnations, [2, 1]);
    }

    #[test]
    fn throughput_is_the_rate_between_samples() {
        let mut observed = observed();
        for (at_ms, applied) in [(0, 0), (500, 100), (1_000, 100)] {
            observed.record(
                at_ms,
                answers([Ok(status(1, "leader", 1, applied)), down(), down()]),
                no_listing(),
            );
        }
        let rates: Vec<_> = observed
            .view
            .throughput
            .iter()
            .map(|p| (p.applied_per_second, p.executed_per_second))
            .collect();
        assert_eq!(rates, [(200.0, 100.0), (0.0, 0.0)]);
    }

    #[test]
    fn history_is_bounded() {
        let mut observed = observed();
        for term in 1..=(ELECTIONS_KEPT as u64 + 5) {
            observed.record(
                term * 500,
                answers([Ok(status(1, "leader", term, term)), down(), down()]),
                no_listing(),
            );
        }
        assert_eq!(observed.view.raft_elections.len(), ELECTIONS_KEPT);
        assert_eq!(
            observed.view.raft_elections[0].term,
            ELECTIONS_KEPT as u64 + 5
        );
        for at_ms in 0..(THROUGHPUT_SAMPLES_KEPT as u64 * 2) {
            observed.record(
                10_000 + at_ms * 500,
                answers([Ok(status(1, "leader", 99, at_ms)), down(), down()]),
                no_listing(),
            );
        }
        assert_eq!(observed.view.throughput.len(), THROUGHPUT_SAMPLES_KEPT);
    }

    /// Every key of `json`, at any depth.
    fn keys_of(json: &serde_json::Value) -> Vec<String> {
        match json {
            serde_json::Value::Object(map) => map
                .iter()
                .flat_map(|(key, value)| std::iter::once(key.clone()).chain(keys_of(value)))
                .collect(),
            serde_json::Value::Array(items) => items.iter().flat_map(keys_of).collect(),
            _ => Vec::new(),
        }
    }

    /// `/cluster/status` is public (CORS `*`): the next orders show without their ids or
    /// customers, and no lease token shows at all.
    #[test]
    fn the_public_view_has_no_customer_data_and_no_lease_token() {
        let mut observed = observed();
        let waiting = pb::OrderState {
            order: Some(pb::QueuedOrder {
                order_id: "order-of-ada-0001".to_owned(),
                customer: "Ada Lovelace".to_owned(),
                items: vec![pb::QueueItem {
                    title: "Emma".to_owned(),
                    quantity: 2,
                }],
            }),
            phase: pb::OrderPhase::Queued as i32,
            priority: 2,
            ..Default::default()
        };
        observed.record(
            1_000,
            answers([
                Ok(status(1, "leader", 4, 10)),
                Ok(status(2, "follower", 4, 10)),
                Ok(status(3, "follower", 4, 10)),
            ]),
            Ok(pb::ListQueueResponse {
                orders: vec![waiting],
                depth: 1,
            }),
        );
        let json = serde_json::to_value(&observed.view).expect("a JSON view");
        let text = json.to_string();
        assert!(!text.contains("Ada Lovelace"), "{text}");
        assert!(!text.contains("order-of-ada-0001"), "{text}");
        let keys = keys_of(&json);
        assert!(
            keys.iter().all(|key| !key.to_lowercase().contains("token")),
            "{keys:?}"
        );
        assert_eq!(json["queue"]["next"][0]["books"], 2, "{text}");
    }
}
