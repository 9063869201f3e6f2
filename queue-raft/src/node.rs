//! One queue node, wired: the sled stores, openraft, the gRPC services on one port, cluster
//! formation, role-change logging, metrics, health that follows the leader, and an orderly stop.
//!
//! The node's gRPC health (what container healthchecks ask) says SERVING only while the node
//! knows a leader: a node without a majority cannot commit anything, so it is not ready.
//!
//! [`run`] owns the node's lifetime. It returns after `shutdown` resolves and everything it
//! started has stopped: the server drained, Raft shut down, the role logger and the metrics
//! exporter ended, sled flushed.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bookstore_common::grpc::{self, GrpcServer, ServeError};
use openraft::error::{Fatal, InitializeError, RaftError};
use openraft::{BasicNode, Config, ConfigError, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tonic::service::Routes;

use crate::auth::ClusterSecret;
use crate::client_auth::ClientRoles;
use crate::clock::NodeClock;
use crate::metrics;
use crate::network::GrpcNetworkFactory;
use crate::raft_service::RaftTransportService;
use crate::service::{self, OrderQueueService, role_name};
use crate::{LogStore, NodeId, StateMachineStore, StoreOpenError, TypeConfig};

/// Timings tuned for a LAN or loopback, so that a dead leader is replaced within about a second.
///
/// openraft 0.9 waits longer than the election timeout alone: a follower that has heard from a
/// leader waits for the leader's lease (`election_timeout_max`) plus its own election timeout
/// (drawn once at start between min and max) since the last heartbeat before it campaigns, and
/// refuses votes while that lease lasts. With 150-300 ms a follower campaigns 450-600 ms after the
/// leader's last heartbeat; the heartbeat, which is also the append timeout, stays at 100 ms so
/// that a slow disk or a busy machine does not time appends out.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(100);
pub const DEFAULT_ELECTION_TIMEOUT_MIN: Duration = Duration::from_millis(150);
pub const DEFAULT_ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(300);
/// A snapshot is built after this many log entries since the last one.
pub const DEFAULT_SNAPSHOT_LOGS: u64 = 10_000;
/// Entries kept behind a snapshot, so that a follower a little behind catches up from the log
/// rather than with a whole snapshot.
pub const DEFAULT_LOGS_TO_KEEP: u64 = 1_000;

/// Everything a node needs to know to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id; must be a key of `peers`.
    pub id: NodeId,
    /// Where to serve the client API and the Raft RPCs (one port for both).
    pub listen: SocketAddr,
    /// Every member of the cluster, this node included: id to `host:port` as the others reach
    /// it. The same map on every node.
    pub peers: BTreeMap<NodeId, String>,
    /// The node's sled database; created if missing.
    pub data_dir: PathBuf,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Entries between snapshots (openraft's `SnapshotPolicy::LogsSinceLast`).
    pub snapshot_logs: u64,
    /// Entries kept in the log behind a snapshot (openraft's `max_in_snapshot_log_to_keep`).
    pub logs_to_keep: u64,
    /// Start without forming a cluster from `peers`, and wait to be added to a running one
    /// (`AddNode`). A node that is a member already rejoins whatever this says.
    pub join: bool,
    /// What every Raft RPC and membership change must present, to this node and to its peers.
    pub secret: ClusterSecret,
    /// The client tokens, one per role, that every other client call must present.
    pub clients: ClientRoles,
    /// A fault-injection hook: a file holding an offset for this node's wall clock (see
    /// [`crate::clock`]). `None` in normal use.
    pub clock_offset_file: Option<PathBuf>,
}

impl NodeConfig {
    /// A configuration with the default timings and snapshot policy.
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, String>,
        data_dir: impl Into<PathBuf>,
        secret: ClusterSecret,
        clients: ClientRoles,
    ) -> Self {
        Self {
            id,
            listen,
            peers,
            data_dir: data_dir.into(),
            heartbeat_interval: DEFAULT_HEARTBEAT,
            election_timeout_min: DEFAULT_ELECTION_TIMEOUT_MIN,
            election_timeout_max: DEFAULT_ELECTION_TIMEOUT_MAX,
            snapshot_logs: DEFAULT_SNAPSHOT_LOGS,
            logs_to_keep: DEFAULT_LOGS_TO_KEEP,
            join: false,
            secret,
            clients,
            clock_offset_file: None,
        }
    }

    /// openraft's configuration, checked.
    pub fn raft_config(&self) -> Result<Config, NodeError> {
        let config = Config {
            cluster_name: "bookstore-order-queue".to_owned(),
            heartbeat_interval: millis(self.heartbeat_interval),
            election_timeout_min: millis(self.election_timeout_min),
            election_timeout_max: millis(self.election_timeout_max),
            // A snapshot chunk is sent with this timeout; openraft's 200 ms is tight for a
            // debug build on a busy machine, and a timed-out chunk is sent again from scratch.
            install_snapshot_timeout: 2_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.logs_to_keep,
            ..Config::default()
        };
        config
            .validate()
            .map_err(|error| NodeError::Config(Box::new(error)))
    }

    fn members(&self) -> BTreeMap<NodeId, BasicNode> {
        self.peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Why a node could not start, or failed while running.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// `peers` must name this node too: every node gets the same full list.
    #[error("node id {id} is not in the peer list {peers:?}")]
    NotAPeer {
        id: NodeId,
        peers: BTreeMap<NodeId, String>,
    },
    /// The timings or snapshot settings are inconsistent (e.g. election timeout not above the
    /// heartbeat).
    #[error("invalid Raft configuration: {0}")]
    Config(Box<ConfigError>),
    /// The data directory does not exist and cannot be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The sled database cannot be opened (locked by another process, unreadable, corrupt).
    #[error(transparent)]
    Store(#[from] StoreOpenError),
    /// openraft stopped: a storage failure, or it was shut down while starting.
    #[error("Raft stopped with an error: {0}")]
    Raft(Box<Fatal<NodeId>>),
    /// The peer list was refused as the initial membership.
    #[error("cannot form the cluster: {0}")]
    Initialize(Box<RaftError<NodeId, InitializeError<NodeId, BasicNode>>>),
    /// The listen address cannot be bound, or the gRPC server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The last flush on shutdown failed; what Raft acknowledged was flushed already.
    #[error("cannot flush the node's storage on shutdown: {0}")]
    Flush(sled::Error),
}

impl From<Fatal<NodeId>> for NodeError {
    fn from(error: Fatal<NodeId>) -> Self {
        NodeError::Raft(Box::new(error))
    }
}

/// Runs the node until `shutdown` resolves, then stops it in order.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    if !config.peers.contains_key(&config.id) {
        return Err(NodeError::NotAPeer {
            id: config.id,
            peers: config.peers,
        });
    }
    let raft_config = Arc::new(config.raft_config()?);
    std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    // Bind before anything else: the port is the node's identity to its peers, and a node that
    // cannot have it should stop before it touches its data.
    let listener = grpc::bind(config.listen).await?;
    let state_machine = StateMachineStore::open(&config.data_dir)?;
    let log_store =
        LogStore::open(&config.data_dir)?.purge_behind(state_machine.durable_snapshots());
    let db = log_store.db().clone();
    let raft = Raft::new(
        config.id,
        raft_config,
        GrpcNetworkFactory::new(config.id, config.secret.clone()),
        log_store,
        state_machine.clone(),
    )
    .await?;
    tracing::info!(
        node_id = config.id,
        peers = ?config.peers,
        data_dir = %config.data_dir.display(),
        "raft node started"
    );
    // All three end when Raft has shut down and dropped the metrics sender.
    let role_logger = tokio::spawn(log_role_changes(raft.metrics()));
    let metrics_exporter = tokio::spawn(metrics::export(raft.clone(), state_machine.clone()));
    let (leader_known_sender, leader_known) = watch::channel(false);
    let leader_watch = tokio::spawn(watch_leader(raft.clone(), leader_known_sender));
    if let Err(error) = form_cluster(&raft, &config).await {
        stop_raft(&raft).await;
        let _ = role_logger.await;
        let _ = metrics_exporter.await;
        let _ = leader_watch.await;
        return Err(error);
    }

    let client_api = OrderQueueService::new(
        raft.clone(),
        state_machine,
        config.secret.clone(),
        config.clients.clone(),
        NodeClock::new(config.clock_offset_file.clone()),
    );
    let routes = Routes::new(client_api.into_server()).add_service(
        RaftTransportService::new(raft.clone()).into_guarded_server(config.secret.clone()),
    );
    let raft_to_stop = raft.clone();
    let served = GrpcServer::new(service::NAME)
        .ready_while(leader_known)
        .serve(listener, routes, async move {
            shutdown.await;
            // Stop Raft before the server drains: a call waiting on a quorum that is gone then
            // fails at once, instead of holding the drain open forever.
            stop_raft(&raft_to_stop).await;
        })
        .await;
    // Also when serving failed before any signal: Raft must not outlive the node.
    stop_raft(&raft).await;
    if let Err(error) = role_logger.await {
        tracing::warn!(%error, "the role-change logger ended abnormally");
    }
    if let Err(error) = metrics_exporter.await {
        tracing::warn!(%error, "the metrics exporter ended abnormally");
    }
    if let Err(error) = leader_watch.await {
        tracing::warn!(%error, "the leader watch ended abnormally");
    }
    db.flush_async().await.map_err(NodeError::Flush)?;
    tracing::info!(node_id = config.id, "raft node stopped");
    served?;
    Ok(())
}

async fn stop_raft(raft: &Raft<TypeConfig>) {
    if let Err(error) = raft.shutdown().await {
        tracing::warn!(%error, "Raft did not shut down cleanly");
    }
}

/// Forms the cluster from the configured peers unless this node already belongs to one. Every
/// node calls this with the same membership, which openraft allows: whichever node's election
/// wins, the membership is the same. A node that already has a log (a restart) skips it;
/// `NotAllowed` (it raced with a leader's first append) also means it is already formed.
async fn form_cluster(raft: &Raft<TypeConfig>, config: &NodeConfig) -> Result<(), NodeError> {
    if raft.is_initialized().await? {
        tracing::info!(node_id = config.id, "cluster already formed; rejoining");
        return Ok(());
    }
    if config.join {
        tracing::info!(
            node_id = config.id,
            "waiting to be added to a running cluster"
        );
        return Ok(());
    }
    match raft.initialize(config.members()).await {
        Ok(()) => {
            tracing::info!(node_id = config.id, peers = ?config.peers, "cluster formed from the peer list");
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
            tracing::info!(node_id = config.id, "cluster already formed; rejoining");
            Ok(())
        }
        Err(error) => Err(NodeError::Initialize(Box::new(error))),
    }
}

/// How often a leader confirms that a majority still follows it, and how long it may take.
const LEADERSHIP_CHECK: Duration = Duration::from_secs(1);

/// Keeps `leader_known` true while this node knows a working leader, until the metrics channel
/// closes (Raft stopped). A follower trusts the leader it names; a leader must confirm its
/// majority every [`LEADERSHIP_CHECK`], since a leader cut off from it (its followers dead or
/// partitioned away) goes on naming itself.
async fn watch_leader(raft: Raft<TypeConfig>, leader_known: watch::Sender<bool>) {
    let mut metrics = raft.metrics();
    loop {
        let (named, leading) = {
            let current = metrics.borrow_and_update();
            (
                current.current_leader.is_some(),
                current.state == ServerState::Leader,
            )
        };
        let known = if leading {
            matches!(
                tokio::time::timeout(LEADERSHIP_CHECK, raft.ensure_linearizable()).await,
                Ok(Ok(_))
            )
        } else {
            named
        };
        leader_known.send_if_modified(|was| std::mem::replace(was, known) != known);
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(LEADERSHIP_CHECK), if leading => {}
        }
    }
}

/// What a role-change line reports; a new line is logged whenever it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RoleView {
    role: ServerState,
    term: u64,
    leader: Option<NodeId>,
}

impl RoleView {
    fn of(metrics: &RaftMetrics<NodeId, BasicNode>) -> Self {
        Self {
            role: metrics.state,
            term: metrics.current_term,
            leader: metrics.current_leader,
        }
    }
}

/// Logs `raft role changed` each time this node's role, term or known leader changes, until
/// the metrics channel closes (Raft stopped). `leader_id` 0 means no leader is known.
async fn log_role_changes(mut metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>) {
    let mut last: Option<RoleView> = None;
    loop {
        let (node_id, view) = {
            let current = metrics.borrow_and_update();
            (current.id, RoleView::of(&current))
        };
        if last != Some(view) {
            tracing::info!(
                node_id,
                role = role_name(view.role),
                term = view.term,
                leader_id = view.leader.unwrap_or(0),
                "raft role changed"
            );
            last = Some(view);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
