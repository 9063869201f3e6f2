//! The bookstore's order queue, replicated with Raft (openraft 0.9, storage-v2).
//!
//! Layout:
//! - [`state_machine`]: the queue itself, pure: the one record of every order (its checkout
//!   decision, its execution record, where it is), the ready queue by priority, the executors'
//!   lease with its fencing token, and the rules for all of them. Replicas applying the same log
//!   end equal.
//! - [`log_store`]: the Raft log, vote and committed id in sled; an append is reported durable
//!   only after sled has flushed it and its files are synced.
//! - [`sled_files`]: the real syncs of sled's files (its own flush is only `sync_file_range`).
//! - [`sm_store`]: openraft's state machine around [`QueueState`]: applies entries, builds and
//!   installs snapshots, and persists the current snapshot so a restarted node recovers from it.
//! - [`clock`]: the node's one clock, which every command's time is read from, with the
//!   fault-injection hook that offsets it (`--clock-offset-file`).
//! - [`codec`]: the one bincode configuration of everything the queue encodes, decoding with
//!   lengths bounded by the bytes actually there.
//! - [`error`]: what can go wrong opening the stores.
//! - [`auth`]: the cluster's shared secret, required by the Raft RPCs and membership changes,
//!   loaded from a file or the environment and compared in constant time.
//! - [`client_auth`]: the client API's roles (orchestrator, executor, admin), each with a token
//!   of its own that the nodes read from a file: who may make which call, and who sees lease
//!   tokens.
//! - [`network`]: outbound Raft RPCs to the peers over gRPC (`RaftTransport`).
//! - [`raft_service`]: inbound Raft RPCs, handed to openraft.
//! - [`batching`]: group commit, the one batching loop of the crate.
//! - [`proposer`]: group commit of Raft entries: the writes that arrive while earlier entries are in flight go
//!   into one log entry, so that one flush and one replication round carry many of them; every
//!   entry is waited on until a deadline, and no longer once the node stops leading.
//! - [`service`]: the client API (`OrderQueue`): requests become commands through Raft, answers
//!   become protobuf; the one place a failure becomes a gRPC status.
//! - [`metrics`]: what the node reports on `/metrics` (role, term, log positions, the queue),
//!   read from openraft's metrics and the applied state.
//! - [`client`]: the leader-following client the orchestrator and executors use.
//! - [`node`]: one node wired together: stores, Raft, both services on one port, cluster
//!   formation, role-change logs, shutdown. `src/bin/queue-node.rs` parses flags and calls it.
//!
//! Both stores live in the node's data directory: the log in a `sled::Db` opened by
//! [`LogStore::open`], the snapshot in a file of its own beside it. Storage code never sees gRPC;
//! the services never see sled.
//!
//! What the crate guarantees, and where that is tested:
//! - Replicas applying the same log end equal: applying a command reads nothing but the command
//!   (time included) and the state (property tests in `state_machine`).
//! - No order executed twice, none lost: one execution record per order, written under the
//!   current lease's fencing token, required before an acknowledgement; only the current
//!   lease's holder (executor id and process incarnation) may dequeue, record or acknowledge; a
//!   campaign never hands back a token in force; the first checkout decision for an order id is
//!   final (same).
//! - Nothing is acknowledged to openraft before it is synced to disk (`fdatasync`), one sync per
//!   appended batch (`tests/durable_writes.rs` checks it under strace); a restarted node finds its
//!   log, vote and last snapshot again (`tests/store_suite.rs`, `tests/store_restart.rs`,
//!   `tests/raft_restart.rs`); the snapshot on disk never goes back to an older one, however
//!   builds and installs interleave (`tests/snapshot_race.rs`).
//! - A leader deposed with writes in flight, even one caught up by a snapshot past them, answers
//!   later writes at once as not the leader (`tests/deposed_leader.rs`).
//! - Three `queue-node` processes keep every acknowledged enqueue exactly once through a leader
//!   crash, a whole-cluster crash, and a node catching up by snapshot; the client follows the
//!   leader and fails in bounded time without one (`tests/cluster.rs`).

pub mod auth;
pub mod batching;
pub mod client;
pub mod client_auth;
pub mod clock;
pub mod codec;
pub mod error;
pub mod log_store;
pub mod metrics;
pub mod network;
pub mod node;
pub mod proposer;
pub mod raft_service;
pub mod service;
pub mod sled_files;
pub mod sm_store;
pub mod state_machine;

use std::io::Cursor;

pub use auth::{ClusterSecret, ClusterSecretSource, SecretError};
pub use client::{ClientError, ClientOptions, QueueClient, QueueNodes};
pub use client_auth::{ClientRoles, ClientTokenFiles, QueueToken, QueueTokenSource, Role};
pub use error::StoreOpenError;
pub use log_store::LogStore;
pub use node::{NodeConfig, NodeError};
pub use sm_store::{QueueSnapshotBuilder, StateMachineStore};
pub use state_machine::{
    AGING_MS_PER_BOOK, Command, CommandResponse, Decision, DequeueKey, Execution, Holder, Lease,
    OrderItem, OrderRecord, OrderStatus, QueueState, QueuedOrder, RequestDigest, Stamp, Timeline,
    Verdict,
};

/// A Raft node's id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for the order queue.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);
