//! openraft's state machine (storage-v2 `RaftStateMachine`) around the pure [`QueueState`]:
//! applies committed entries, builds and installs snapshots, and keeps the current snapshot in a
//! file of the node's data directory ([`SNAPSHOT_FILE`]), its metadata also in memory.
//!
//! Invariants:
//! - Exactly one response per applied entry, in order; blank and membership entries answer
//!   [`CommandResponse::NoCommand`]. `last_applied` moves with every entry.
//! - A snapshot is on disk (written to a temporary file, synced, renamed over the last one, the
//!   directory synced) before it is reported built or installed. openraft purges the
//!   log only behind a built snapshot, so the persisted snapshot plus the remaining log always
//!   cover every committed entry: on restart [`StateMachineStore::open`] loads the snapshot, reports
//!   its last log id as applied, and openraft re-applies the committed entries after it.
//! - The log is never purged past the snapshot on disk: openraft 0.9 hands a follower's log store
//!   the purge of what an installed snapshot covers together with the install, without waiting
//!   for it, and a crash between the two (the purge durable, the snapshot not yet written) left a
//!   node whose log starts after its snapshot ends, which cannot restart (found by the chaos
//!   run's power cuts). [`StateMachineStore::durable_snapshots`] tells the log store how far the
//!   snapshot on disk reaches, and its purges wait for it (`LogStore::purge_behind`).
//! - The snapshot on disk only moves forward: openraft builds snapshots beside the state machine,
//!   so a build that began before an install can finish after it. Snapshots are written one at
//!   a time (a lock), each through a temporary file of its own, and one that is not newer (by
//!   last log id) than the current snapshot is not written at all: a build that loses the race
//!   hands back the current snapshot instead. An older snapshot replacing a newer one would
//!   leave the log purged past it, a node that cannot restart.
//! - The applied state is not persisted on each apply; durability comes from the log.
//! - Building a snapshot never stops applying: the state is cloned in O(1) (persistent maps, see
//!   [`QueueState`]) and encoded on a blocking thread, while entries go on being applied.
//! - A snapshot's bytes live on disk only; they are read back when openraft sends the snapshot
//!   to a follower, so a node holds its queue once in memory, not twice.
//! - Snapshots are files, not sled values: a snapshot holds the whole queue, and written through
//!   sled it would queue up in front of the log's own flushes, which every commit waits for.

use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock, watch};

use crate::{CommandResponse, NodeId, QueueState, StoreOpenError, TypeConfig, codec};

/// The current snapshot's file in the node's data directory.
pub const SNAPSHOT_FILE: &str = "queue-snapshot.bin";
/// A snapshot being written is named `{SNAPSHOT_FILE}.{N}{TEMP_SUFFIX}` until it replaces the
/// current one; one left by a crash is deleted at open.
const TEMP_SUFFIX: &str = ".tmp";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// What a snapshot's data holds: the queue and how far into the log it reflects.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    queue: QueueState,
}

/// A snapshot as kept in [`SNAPSHOT_FILE`]: openraft's metadata and the bincode of an
/// [`AppliedState`].
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn into_snapshot(self) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: self.meta,
            snapshot: Box::new(Cursor::new(self.data)),
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
    /// The metadata of the last snapshot built or installed; written only after the snapshot is
    /// on disk.
    current_snapshot: RwLock<Option<SnapshotMeta<NodeId, BasicNode>>>,
    /// The last log id the snapshot on disk covers, for the log store's purges.
    durable_snapshot: watch::Sender<Option<LogId<NodeId>>>,
    /// Held while a snapshot is compared with the current one, written and made current, so
    /// that snapshots replace each other one at a time.
    persisting: Mutex<()>,
    /// Snapshot files written since this process started, numbering their temporary names.
    temp_files: AtomicU64,
    /// The node's data directory, which holds [`SNAPSHOT_FILE`].
    dir: PathBuf,
    /// Snapshots built since this process started, appended to snapshot ids. An id can repeat
    /// only after a restart and then only with the same last log id, hence the same state.
    builds: AtomicU64,
}

/// What [`Shared::persist_snapshot`] did.
enum Persisted {
    /// The snapshot is on disk and current.
    Written(StoredSnapshot),
    /// The current snapshot was as new or newer; this one was dropped.
    NotNewer,
}

impl Shared {
    /// Writes `snapshot` to disk and makes it the current one, unless the current one is as new
    /// or newer.
    async fn persist_snapshot(&self, snapshot: StoredSnapshot) -> StorageResult<Persisted> {
        let _one_at_a_time = self.persisting.lock().await;
        let current = self
            .current_snapshot
            .read()
            .await
            .as_ref()
            .map(|meta| meta.last_log_id);
        if let Some(current) = current
            && current >= snapshot.meta.last_log_id
        {
            tracing::info!(
                snapshot_id = %snapshot.meta.snapshot_id,
                last_log_id = ?snapshot.meta.last_log_id,
                current_last_log_id = ?current,
                "snapshot not written: the current one is as new"
            );
            return Ok(Persisted::NotNewer);
        }
        let signature = snapshot.meta.signature();
        let temp = self.dir.join(format!(
            "{SNAPSHOT_FILE}.{}{TEMP_SUFFIX}",
            self.temp_files.fetch_add(1, Ordering::Relaxed)
        ));
        let dir = self.dir.clone();
        // Encoding and writing copy the whole queue: off the async workers, where they would
        // hold up Raft's own tasks (heartbeats) for as long.
        let (written, snapshot) = tokio::task::spawn_blocking(move || {
            (write_snapshot_file(&dir, &temp, &snapshot), snapshot)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(signature.clone()), AnyError::new(&e)))?;
        written.map_err(|e| StorageIOError::write_snapshot(Some(signature), AnyError::new(&e)))?;
        *self.current_snapshot.write().await = Some(snapshot.meta.clone());
        self.durable_snapshot
            .send_replace(snapshot.meta.last_log_id);
        Ok(Persisted::Written(snapshot))
    }
}

/// Replaces the snapshot file in `dir` with `snapshot`, written first to `temp`, durably: a
/// crash leaves either the old snapshot or the new one, whole. A failed write removes `temp`.
fn write_snapshot_file(dir: &Path, temp: &Path, snapshot: &StoredSnapshot) -> std::io::Result<()> {
    let written = write_synced(temp, snapshot).and_then(|()| {
        std::fs::rename(temp, dir.join(SNAPSHOT_FILE))?;
        // The rename is durable only once the directory is.
        File::open(dir)?.sync_all()
    });
    if written.is_err() {
        // Best effort: a leftover is deleted at the next open anyway.
        let _ = std::fs::remove_file(temp);
    }
    written
}

fn write_synced(path: &Path, snapshot: &StoredSnapshot) -> std::io::Result<()> {
    let mut writer = BufWriter::new(File::create_new(path)?);
    codec::encode_into(&mut writer, snapshot).map_err(std::io::Error::other)?;
    writer.flush()?;
    writer.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Deletes the temporary snapshot files a crash left in `dir`. Only at open: a store writing
/// one now would lose it.
fn remove_temp_files(dir: &Path) -> std::io::Result<()> {
    let prefix = format!("{SNAPSHOT_FILE}.");
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // No directory yet: nothing left over in it.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(TEMP_SUFFIX) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The snapshot file in `dir`, if there is one.
fn read_snapshot_file(dir: &Path) -> Result<Option<StoredSnapshot>, StoreOpenError> {
    let path = dir.join(SNAPSHOT_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StoreOpenError::Io { path, source }),
    };
    let len = file
        .metadata()
        .map_err(|source| StoreOpenError::Io {
            path: path.clone(),
            source,
        })?
        .len();
    codec::decode_from(BufReader::new(file), len)
        .map(Some)
        .map_err(|source| StoreOpenError::Corrupt {
            path,
            what: "snapshot",
            source,
        })
}

/// The node's state machine. Clones share the same state: keep one to read the queue while
/// openraft owns another.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
}

impl StateMachineStore {
    /// Opens the state machine of the node whose data directory is `dir`, starting from the
    /// snapshot stored there if there is one, else empty.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreOpenError> {
        let dir = dir.as_ref().to_path_buf();
        remove_temp_files(&dir).map_err(|source| StoreOpenError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut shared = Shared {
            applied: RwLock::new(AppliedState::default()),
            current_snapshot: RwLock::new(None),
            durable_snapshot: watch::Sender::new(None),
            persisting: Mutex::new(()),
            temp_files: AtomicU64::new(0),
            dir,
            builds: AtomicU64::new(0),
        };
        if let Some(snapshot) = read_snapshot_file(&shared.dir)? {
            *shared.applied.get_mut() =
                codec::decode(&snapshot.data).map_err(|source| StoreOpenError::Corrupt {
                    path: shared.dir.join(SNAPSHOT_FILE),
                    what: "snapshot data",
                    source,
                })?;
            shared
                .durable_snapshot
                .send_replace(snapshot.meta.last_log_id);
            *shared.current_snapshot.get_mut() = Some(snapshot.meta);
        }
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// The last log id the snapshot on disk covers, as it moves: what the log may be purged up
    /// to.
    pub fn durable_snapshots(&self) -> watch::Receiver<Option<LogId<NodeId>>> {
        self.shared.durable_snapshot.subscribe()
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
            codec::decode(&data).map_err(|e| read_error(AnyError::new(&e)))?;
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
        // Not written when the current snapshot is as new: the state is still reset to the one
        // openraft installs, and the log after it is applied on top.
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
        current_snapshot(&self.shared).await
    }
}

/// The current snapshot, read back from its file.
async fn current_snapshot(shared: &Shared) -> StorageResult<Option<Snapshot<TypeConfig>>> {
    let Some(meta) = shared.current_snapshot.read().await.clone() else {
        return Ok(None);
    };
    let read_error = |e: AnyError| StorageIOError::read_snapshot(Some(meta.signature()), e);
    // Reading copies the whole queue: off the async workers.
    let dir = shared.dir.clone();
    let stored = tokio::task::spawn_blocking(move || read_snapshot_file(&dir))
        .await
        .map_err(|e| read_error(AnyError::new(&e)))?
        .map_err(|e| read_error(AnyError::new(&e)))?;
    Ok(stored.map(StoredSnapshot::into_snapshot))
}

/// Builds a snapshot of the state machine as applied at the time of the call.
#[derive(Debug)]
pub struct QueueSnapshotBuilder {
    shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for QueueSnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        // A clone in O(1): applying goes on while the clone is encoded.
        let applied = self.shared.applied.read().await.clone();
        let (last_log_id, last_membership) =
            (applied.last_applied, applied.last_membership.clone());
        let data = tokio::task::spawn_blocking(move || codec::encode(&applied))
            .await
            .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?
            .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
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
        match self.shared.persist_snapshot(stored).await? {
            Persisted::Written(stored) => {
                tracing::info!(snapshot_id = %stored.meta.snapshot_id, ?last_log_id, "snapshot built");
                Ok(stored.into_snapshot())
            }
            // An install overtook this build: what is current is newer.
            Persisted::NotNewer => current_snapshot(&self.shared).await?.ok_or_else(|| {
                StorageIOError::read_snapshot(
                    None,
                    AnyError::error("a newer snapshot was current, and now there is none"),
                )
                .into()
            }),
        }
    }
}
