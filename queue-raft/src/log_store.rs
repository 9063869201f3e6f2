//! The Raft log, vote and committed log id of one node, in sled (openraft storage-v2
//! `RaftLogStorage`).
//!
//! Layout in the node's `sled::Db`: tree `logs` maps a log index, as 8 big-endian bytes (so that
//! sled's byte order is index order), to the bincode of its `Entry`; tree `meta` holds the bincode
//! of the vote, the committed log id and the last purged log id.
//!
//! "Durable" below means sled's flush followed by real syncs of its files ([`SledFiles::sync`]:
//! `fdatasync` of the log file, `fsync` of new blob files and their directory): sled's flush
//! alone is `sync_file_range`, which a power cut can undo.
//!
//! Invariants:
//! - Durable before acknowledged: `append` reports entries to openraft only after they are
//!   durable, and `save_vote` returns only after the vote is. One sync per `append`, whatever
//!   the number of entries openraft hands it (and each entry may carry many commands, see
//!   [`crate::proposer`]): group commit keeps the cost of syncing per batch, not per write.
//! - `last_purged` is durable before the entries it covers are deleted, so after any crash the
//!   log state never reports a last log id below what was purged.
//! - Nothing is purged past the state machine's snapshot on disk (when the store is opened with
//!   [`LogStore::purge_behind`], as a node's is): a purge waits until the snapshot covering it
//!   is written, so that after any crash the snapshot and the log still meet (see
//!   `crate::sm_store`).
//! - Purged entries are gone at once for every reader (reads start after `last_purged`), and
//!   deleted from disk in the background: openraft waits for `purge`, and deleting thousands of
//!   entries from sled takes seconds, which would hold up heartbeats and commits.
//! - `truncate` is durable before returning, so entries from a deposed leader cannot reappear
//!   after a restart behind entries that replaced them.
//! - The committed log id is written without a sync of its own: the next one (an append's, a
//!   vote's, or sled's background flusher's) carries it, and it is never ahead of the durable
//!   log (see `save_committed`).

// openraft's storage traits fix the error type; the helpers here return the same one unboxed so
// that `?` carries it through unchanged.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds, RangeInclusive};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::sled_files::SledFiles;
use crate::{NodeId, StoreOpenError, TypeConfig, codec};

const LOGS_TREE: &str = "logs";
const META_TREE: &str = "meta";
const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const LAST_PURGED_KEY: &[u8] = b"last_purged";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// sled's page cache. Its default (1 GiB) would hold the whole log in memory beside the queue;
/// the log is written once and read back only for followers that are behind, mostly its tail.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The node's Raft log store. Cloning is cheap and every clone sees the same data (sled trees are
/// shared handles); openraft's log readers are such clones.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
    /// The first index still in the log: one past `last_purged` (0 before any purge). Entries
    /// below it may still be on disk, waiting to be deleted, but are never read.
    first_kept: Arc<AtomicU64>,
    /// sled's files, synced to make writes durable.
    files: Arc<SledFiles>,
    /// How far the state machine's snapshot on disk reaches, when purges must wait for it.
    durable_snapshots: Option<watch::Receiver<Option<LogId<NodeId>>>>,
}

/// How many purged entries are deleted per sled batch: small enough that the log's own writes
/// and flushes get their turn in between.
const DELETE_CHUNK: u64 = 64;
/// How long a purge waits for the snapshot covering it to be written (an install of a large
/// queue on a slow disk) before it fails, which stops Raft rather than purge past it.
const SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl LogStore {
    /// Opens (or creates) the node's sled database at `path` and the log store in it. The
    /// database is locked until every clone of it is dropped; share it through [`LogStore::db`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreOpenError> {
        let path = path.as_ref();
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let files = SledFiles::open(path).map_err(|source| StoreOpenError::Io {
            path: path.to_owned(),
            source,
        })?;
        let store = Self {
            logs: db.open_tree(LOGS_TREE)?,
            meta: db.open_tree(META_TREE)?,
            db,
            first_kept: Arc::new(AtomicU64::new(0)),
            files: Arc::new(files),
            durable_snapshots: None,
        };
        let last_purged: Option<LogId<NodeId>> = store
            .read_meta(LAST_PURGED_KEY, StorageIOError::read_logs)
            .map_err(|error| StoreOpenError::Unreadable(error.to_string()))?;
        store
            .first_kept
            .store(first_kept_after(last_purged), Ordering::Release);
        Ok(store)
    }

    /// Makes every purge wait until `durable_snapshots` (the state machine's, see
    /// `StateMachineStore::durable_snapshots`) covers what it purges. Without it (openraft's
    /// storage test suite, which purges with no state machine) purges run at once.
    pub fn purge_behind(
        mut self,
        durable_snapshots: watch::Receiver<Option<LogId<NodeId>>>,
    ) -> Self {
        self.durable_snapshots = Some(durable_snapshots);
        self
    }

    /// Waits until the snapshot on disk covers `log_id`, if purges wait for it.
    async fn wait_for_snapshot(&self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let Some(durable_snapshots) = &self.durable_snapshots else {
            return Ok(());
        };
        let mut durable_snapshots = durable_snapshots.clone();
        let covered = durable_snapshots.wait_for(|durable| durable.as_ref() >= Some(&log_id));
        match tokio::time::timeout(SNAPSHOT_WAIT, covered).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StorageIOError::write_logs(AnyError::error(format!(
                "cannot purge the log up to {log_id}: the state machine is gone"
            )))
            .into()),
            Err(_) => Err(StorageIOError::write_logs(AnyError::error(format!(
                "cannot purge the log up to {log_id}: no snapshot on disk covers it after {} s",
                SNAPSHOT_WAIT.as_secs()
            )))
            .into()),
        }
    }

    /// The node's database, flushed once more when the node stops.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    fn read_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
        io_error: impl Fn(AnyError) -> StorageIOError<NodeId>,
    ) -> StorageResult<Option<T>> {
        let Some(bytes) = self
            .meta
            .get(key)
            .map_err(|e| io_error(AnyError::new(&e)))?
        else {
            return Ok(None);
        };
        let value = codec::decode(&bytes).map_err(|e| io_error(AnyError::new(&e)))?;
        Ok(Some(value))
    }

    /// Writes a value to `meta`; not durable until the next [`LogStore::make_durable`].
    fn write_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        io_error: impl Fn(AnyError) -> StorageIOError<NodeId>,
    ) -> StorageResult<()> {
        let bytes = codec::encode(value).map_err(|e| io_error(AnyError::new(&e)))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| io_error(AnyError::new(&e)))?;
        Ok(())
    }

    /// Makes everything written so far durable: sled's flush, then the syncs of its files, on a
    /// blocking thread (they take as long as the disk does).
    async fn make_durable(&self) -> std::io::Result<()> {
        let (db, files) = (self.db.clone(), Arc::clone(&self.files));
        tokio::task::spawn_blocking(move || {
            db.flush().map_err(std::io::Error::other)?;
            files.sync()
        })
        .await
        .map_err(std::io::Error::other)?
    }

    async fn make_durable_or(
        &self,
        io_error: impl Fn(AnyError) -> StorageIOError<NodeId>,
    ) -> StorageResult<()> {
        self.make_durable()
            .await
            .map_err(|e| io_error(AnyError::new(&e)).into())
    }

    /// The index of the first entry in the log, if any.
    fn first_index(&self) -> StorageResult<Option<u64>> {
        index_of(self.logs.first())
    }

    /// Deletes every entry from index `from` on, atomically (a truncation: a few entries).
    fn remove_from(&self, from: u64) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        for item in self.logs.range(log_key(from)..) {
            let (key, _) = item.map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
            batch.remove(key);
        }
        self.logs
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        Ok(())
    }

    /// Deletes the entries with indexes in `indexes`, atomically. By key alone: reading thousands
    /// of purged entries back only to find their keys would cost as much as writing them.
    fn remove_entries(&self, indexes: RangeInclusive<u64>) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        for index in indexes {
            batch.remove(&log_key(index));
        }
        self.logs
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        Ok(())
    }
}

/// The log index of an entry as sled returned it.
fn index_of(entry: sled::Result<Option<(sled::IVec, sled::IVec)>>) -> StorageResult<Option<u64>> {
    let Some((key, _)) = entry.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))? else {
        return Ok(None);
    };
    key_index(&key).map(Some)
}

/// The log index a key of the `logs` tree stands for.
fn key_index(key: &[u8]) -> StorageResult<u64> {
    let key: [u8; 8] = key.try_into().map_err(|_| {
        StorageIOError::read_logs(AnyError::error(format!(
            "a log key is {} bytes, not 8",
            key.len()
        )))
    })?;
    Ok(u64::from_be_bytes(key))
}

/// The first log index kept after purging up to `last_purged`.
fn first_kept_after(last_purged: Option<LogId<NodeId>>) -> u64 {
    last_purged.map_or(0, |log_id| log_id.index.saturating_add(1))
}

/// The key of log index `index`: big-endian, so that keys sort as indexes do.
fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_bound(bound: Bound<&u64>) -> Bound<[u8; 8]> {
    match bound {
        Bound::Included(index) => Bound::Included(log_key(*index)),
        Bound::Excluded(index) => Bound::Excluded(log_key(*index)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The entry stored under `key`, checked to be the entry of that index: a value copied or
/// written under the wrong key would otherwise hand openraft a log with holes or repeats.
fn decode_entry(key: &[u8], bytes: &[u8]) -> StorageResult<Entry<TypeConfig>> {
    let read_error = |message: String| StorageIOError::read_logs(AnyError::error(message)).into();
    let index = key_index(key)?;
    let entry: Entry<TypeConfig> = codec::decode(bytes)
        .map_err(|e| read_error(format!("the log entry at index {index} is corrupt: {e}")))?;
    if entry.log_id.index != index {
        return Err(read_error(format!(
            "the log entry at index {index} says it is at index {}",
            entry.log_id.index
        )));
    }
    Ok(entry)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let first_kept = log_key(self.first_kept.load(Ordering::Acquire));
        let start = match key_bound(range.start_bound()) {
            Bound::Included(key) | Bound::Excluded(key) if key < first_kept => {
                Bound::Included(first_kept)
            }
            Bound::Unbounded => Bound::Included(first_kept),
            bound => bound,
        };
        let keys = (start, key_bound(range.end_bound()));
        self.logs
            .range(keys)
            .map(|item| {
                let (key, bytes) =
                    item.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
                decode_entry(&key, &bytes)
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            self.read_meta(LAST_PURGED_KEY, StorageIOError::read_logs)?;
        let last_entry = self
            .logs
            .last()
            .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
        let last_log_id = match last_entry {
            Some((key, bytes))
                if key.as_ref() >= log_key(first_kept_after(last_purged_log_id)).as_slice() =>
            {
                Some(decode_entry(&key, &bytes)?.log_id)
            }
            // Nothing kept: what is left on disk is purged, waiting to be deleted.
            _ => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.write_meta(VOTE_KEY, vote, StorageIOError::write_vote)?;
        self.make_durable_or(StorageIOError::write_vote).await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.read_meta(VOTE_KEY, StorageIOError::read_vote)
    }

    /// Not synced here: the committed id only lets a restarted node re-apply its log sooner, so
    /// it waits for the next sync (the next append's, or sled's background flusher's, within
    /// 500 ms); an older value on disk only means less re-applied. It is never ahead of the
    /// durable log: entries are durable before they can commit. A sync here would double the
    /// syncs per write on the leader, which saves it right after each append commits.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.write_meta(COMMITTED_KEY, &committed, StorageIOError::write)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self
            .read_meta(COMMITTED_KEY, StorageIOError::read)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = codec::encode(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, AnyError::new(&e)))?;
            batch.insert(&log_key(entry.log_id.index), bytes);
        }
        self.logs
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        // Durable before acknowledged: openraft counts these entries towards a commit quorum as
        // soon as the callback runs.
        match self.make_durable().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = StorageIOError::write_logs(AnyError::new(&e)).into();
                callback.log_io_completed(Err(e));
                Err(error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.remove_from(log_id.index)?;
        self.make_durable_or(StorageIOError::write_logs).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.wait_for_snapshot(log_id).await?;
        self.write_meta(LAST_PURGED_KEY, &log_id, StorageIOError::write_logs)?;
        self.make_durable_or(StorageIOError::write_logs).await?;
        self.first_kept
            .fetch_max(first_kept_after(Some(log_id)), Ordering::AcqRel);
        let Some(first) = self.first_index()? else {
            return Ok(());
        };
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut from = first;
            while from <= log_id.index {
                let to = from.saturating_add(DELETE_CHUNK - 1).min(log_id.index);
                if let Err(error) = store
                    .files
                    .between_syncs(|| store.remove_entries(from..=to))
                {
                    // Left on disk, never read; the next purge deletes them.
                    tracing::warn!(%error, from, to, "cannot delete purged log entries");
                    return;
                }
                let Some(next) = to.checked_add(1) else {
                    return;
                };
                from = next;
            }
        });
        Ok(())
    }
}
