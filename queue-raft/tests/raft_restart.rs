//! A one-node Raft cluster on the real stores, stopped and started again on the same directory:
//! the node comes back from its persisted snapshot plus the log after it. One node needs no
//! network, so every RPC here answers "unreachable".

mod common;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, Raft};
use queue_raft::{
    Command, CommandResponse, NodeId, OrderItem, QueueState, QueuedOrder, StateMachineStore,
    TypeConfig,
};
use tempfile::TempDir;

const NODE: NodeId = 1;
const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&io::Error::other(
        "a one-node cluster has no peers",
    )))
}

struct NoPeers;

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: NodeId, _node: &BasicNode) -> Self::Network {
        NoPeers
    }
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }
}

/// Starts the node on the stores in `dir`; returns it with a handle to read its queue.
async fn start_node(dir: &TempDir) -> (Raft<TypeConfig>, StateMachineStore) {
    let log_store = tokio::task::block_in_place(|| common::open_log_store(dir));
    let state_machine = StateMachineStore::open(dir.path()).expect("open the state machine");
    let reader = state_machine.clone();
    let raft = Raft::new(NODE, config(), NoPeers, log_store, state_machine)
        .await
        .expect("start Raft");
    (raft, reader)
}

/// Purges the log right behind each snapshot, so a restart cannot succeed from the log alone.
fn config() -> Arc<Config> {
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    };
    Arc::new(config.validate().expect("valid Raft config"))
}

async fn enqueue(raft: &Raft<TypeConfig>, n: u64) {
    let order = QueuedOrder::new(
        format!("order-{n}"),
        "Ada",
        vec![OrderItem {
            title: "Dune".into(),
            quantity: (n % 4) as u32,
        }],
    );
    let written = raft
        .client_write(Command::Enqueue {
            at: common::stamp(n),
            order,
        })
        .await
        .expect("enqueue committed");
    assert!(matches!(written.data, CommandResponse::Enqueued { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_recovers_from_its_snapshot_and_log() {
    let dir = TempDir::new().expect("temporary directory");
    let (expected, last_applied) = {
        let (raft, reader) = start_node(&dir).await;
        raft.initialize(BTreeMap::from([(NODE, BasicNode::default())]))
            .await
            .expect("initialize");
        raft.wait(WAIT)
            .current_leader(NODE, "elected")
            .await
            .expect("leader");
        for n in 1..=5 {
            enqueue(&raft, n).await;
        }
        raft.trigger().snapshot().await.expect("trigger snapshot");
        raft.wait(WAIT)
            .metrics(
                |metrics| metrics.snapshot.is_some() && metrics.purged == metrics.snapshot,
                "snapshot built and the log purged behind it",
            )
            .await
            .expect("snapshot and purge");
        for n in 6..=8 {
            enqueue(&raft, n).await;
        }
        let last_applied = raft.metrics().borrow().last_applied;
        raft.shutdown().await.expect("shut down");
        (reader.read_queue(QueueState::clone).await, last_applied)
    };
    assert_eq!(expected.queue_depth(), 8);

    let (raft, reader) = start_node(&dir).await;
    raft.wait(WAIT)
        .metrics(
            |metrics| metrics.last_applied >= last_applied,
            "log after the snapshot re-applied",
        )
        .await
        .expect("re-applied");
    assert_eq!(reader.read_queue(QueueState::clone).await, expected);
    raft.shutdown().await.expect("shut down");
}
