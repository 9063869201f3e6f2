//! openraft's state machine (storage-v2 `RaftStateMachine`) around the pure [`QueueState`]:
//! applies committed entries, builds and installs snapshots, and keeps the current snapshot both in
//! memory and in the node's sled database (tree `snapshot`).
//!
//! Invariants:
//! - Exactly one response per applied entry, in order; blank and membership entries answer
//!   [`CommandResponse::NoCommand`]. `last_applied` moves with every entry.
//! - A snapshot is flushed to disk before it is reported built or installed. openraft purges the
//!   log only behind a built snapshot, so the persisted snapshot plus the remaining log always
//!   cover every committed entry: on restart [`StateMachineStore::open`] loads the snapshot, reports
//!   its last log id as applied, and openraft re-applies the committed entries after it.
//! - The applied state is not persisted on each apply; durability comes from the log.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::{CommandResponse, NodeId, QueueState, StoreOpenError, TypeConfig};

const SNAPSHOT_TREE: &str = "snapshot";
const CURRENT_SNAPSHOT_KEY: &[u8] = b"current";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// What a snapshot's data holds: the queue and how far into the log it reflects.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    queue: QueueState,
}

/// A snapshot as kept in memory and in the `snapshot` tree: openraft's metadata and the bincode
/// of an [`AppliedState`].
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn to_snapshot(&self) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(self.data.clone())),
        }
    }
}

/// State shared by the state machine and the snapshot builders openraft runs beside it. Lives as
/// long as the last of them. The locks are tokio's, since they are held across `.await`.
#[derive(Debug)]
struct Shared {
    /// Written for one batch of entries or one snapshot install; read while a snapshot is
    /// serialised or a query runs. Never held across anything but those.
    applied: RwLock<AppliedState>,
    /// The last snapshot built or installed; written only after it is flushed to `snapshots`.
    current_snapshot: RwLock<Option<StoredSnapshot>>,
    /// The `snapshot` tree of the node's database; holds the current snapshot under one key.
    snapshots: sled::Tree,
    /// Snapshots built since this process started, appended to snapshot ids. An id can repeat
    /// only after a restart and then only with the same last log id, hence the same state.
    builds: AtomicU64,
}

impl Shared {
    /// Flushes `snapshot` to disk, then makes it the current one.
    async fn persist_snapshot(&self, snapshot: StoredSnapshot) -> StorageResult<()> {
        let write_error =
            |e: AnyError| StorageIOError::write_snapshot(Some(snapshot.meta.signature()), e);
        let bytes = bincode::serialize(&snapshot).map_err(|e| write_error(AnyError::new(&e)))?;
        self.snapshots
            .insert(CURRENT_SNAPSHOT_KEY, bytes)
            .map_err(|e| write_error(AnyError::new(&e)))?;
        self.snapshots
            .flush_async()
            .await
            .map_err(|e| write_error(AnyError::new(&e)))?;
        *self.current_snapshot.write().await = Some(snapshot);
        Ok(())
    }
}

/// The node's state machine. Clones share the same state: keep one to read the queue while
/// openraft owns another.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
}

impl StateMachineStore {
    /// Opens the state machine in the node's database (see `LogStore::db`), starting from the
    /// persisted snapshot if there is one, else empty.
    pub fn open(db: &sled::Db) -> Result<Self, StoreOpenError> {
        let snapshots = db.open_tree(SNAPSHOT_TREE)?;
        let current_snapshot = match snapshots.get(CURRENT_SNAPSHOT_KEY)? {
            Some(bytes) => Some(bincode::deserialize::<StoredSnapshot>(&bytes).map_err(
                |source| StoreOpenError::Corrupt {
                    what: "snapshot",
                    source,
                },
            )?),
            None => None,
        };
        let applied = match &current_snapshot {
            Some(snapshot) => {
                bincode::deserialize(&snapshot.data).map_err(|source| StoreOpenError::Corrupt {
                    what: "snapshot data",
                    source,
                })?
            }
            None => AppliedState::default(),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                applied: RwLock::new(applied),
                current_snapshot: RwLock::new(current_snapshot),
                snapshots,
                builds: AtomicU64::new(0),
            }),
        })
    }

    /// Runs `read` on the queue as applied so far (linearizable only if the caller made sure of
    /// it first, e.g. with openraft's `ensure_linearizable`).
    pub async fn read_queue<T>(&self, read: impl FnOnce(&QueueState) -> T) -> T {
        read(&self.shared.applied.read().await.queue)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = QueueSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let applied = self.shared.applied.read().await;
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.shared.applied.write().await;
        let mut responses = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::NoCommand,
                EntryPayload::Normal(command) => applied.queue.apply(&command),
                EntryPayload::Membership(membership) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::NoCommand
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        QueueSnapshotBuilder {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let read_error = |e: AnyError| StorageIOError::read_snapshot(Some(meta.signature()), e);
        let data = snapshot.into_inner();
        let installed: AppliedState =
            bincode::deserialize(&data).map_err(|e| read_error(AnyError::new(&e)))?;
        if installed.last_applied != meta.last_log_id
            || installed.last_membership != meta.last_membership
        {
            return Err(read_error(AnyError::error(format!(
                "snapshot data is at {:?} with {:?}, its metadata says {:?} with {:?}",
                installed.last_applied,
                installed.last_membership,
                meta.last_log_id,
                meta.last_membership
            )))
            .into());
        }
        self.shared
            .persist_snapshot(StoredSnapshot {
                meta: meta.clone(),
                data,
            })
            .await?;
        *self.shared.applied.write().await = installed;
        tracing::info!(snapshot_id = %meta.snapshot_id, last_log_id = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        Ok(self
            .shared
            .current_snapshot
            .read()
            .await
            .as_ref()
            .map(StoredSnapshot::to_snapshot))
    }
}

/// Builds a snapshot of the state machine as applied at the time of the call.
#[derive(Debug)]
pub struct QueueSnapshotBuilder {
    shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for QueueSnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (data, last_log_id, last_membership) = {
            let applied = self.shared.applied.read().await;
            let data = bincode::serialize(&*applied)
                .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
            (data, applied.last_applied, applied.last_membership.clone())
        };
        let build = self.shared.builds.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot_id = match last_log_id {
            Some(log_id) => format!("{}-{}-{build}", log_id.leader_id, log_id.index),
            None => format!("empty-{build}"),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id,
            },
            data,
        };
        let snapshot = stored.to_snapshot();
        self.shared.persist_snapshot(stored).await?;
        tracing::info!(snapshot_id = %snapshot.meta.snapshot_id, ?last_log_id, "snapshot built");
        Ok(snapshot)
    }
}
