//! Real syncs of the files sled writes. sled 0.34's `flush` writes its buffers with `pwrite` and
//! then, on Linux, calls `sync_file_range`: that waits for the kernel to write the range back,
//! but flushes neither the disk's volatile cache nor the file's metadata (its size), so a power
//! cut can still lose what sled calls flushed (sled issue #1452). sled runs a real `fsync` only
//! in its background flusher, every 500 ms. [`SledFiles::sync`] follows sled's flush with the
//! syncs that make its writes durable, in this order:
//! - `blobs/`: sled stores a value or a tree page larger than a quarter of its 512 KiB segments in
//!   a file of its own there, and never syncs it; the log file only points to it. A log entry of
//!   a few hundred orders, or a leaf of the log's tree holding a few such entries, is that large.
//!   Every blob file not synced yet is synced, then the directory (for the new names), so that no
//!   pointer made durable next points to nothing.
//! - `db`: the log file itself, with `fdatasync` (its data, and its size as it grows).
//!
//! [`SledFiles::open`] syncs, once, what sled writes unsynced while it opens: its `conf`, the
//! snapshot of its page table it renames into place, and the names in its directory and in the
//! directory above (a database just created).
//!
//! Invariant: once [`SledFiles::sync`] returns, everything sled was asked to write before the
//! call survives a power cut. Writes made in the background (the log store deleting purged
//! entries) run between syncs ([`SledFiles::between_syncs`]), so that every blob a sync finds is
//! whole. Not covered: sled also writes blobs (when it moves pages) and deletes them from its own
//! background thread; one written there while a sync lists the directory may be synced
//! half-written and not again, with its pointer made durable by the next sync of the log file,
//! until the kernel's write-back completes it (seconds). Closing that window needs sled's help.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// sled's log file in its directory.
const LOG_FILE: &str = "db";
/// Where sled keeps values too large for its log.
const BLOBS_DIR: &str = "blobs";
/// sled's configuration, written once when the database is created.
const CONF_FILE: &str = "conf";
/// The prefix of the snapshots of sled's page table.
const SNAPSHOT_PREFIX: &str = "snap.";

/// Open handles on the files of one sled database, for syncing them. Shared by every clone of
/// the log store; lives as long as they do.
#[derive(Debug)]
pub struct SledFiles {
    log_file: File,
    blobs_path: PathBuf,
    blobs_dir: File,
    /// The blob files synced and not deleted since. A blob is written whole before the write
    /// that made it returns, so a name is synced once. Locked for a whole pass, which also keeps
    /// two syncs from racing over the same files.
    synced_blobs: Mutex<BTreeSet<OsString>>,
    /// Held by a sync for its whole length, and by background writers for each of their writes.
    syncing: Mutex<()>,
}

impl SledFiles {
    /// The files of the sled database in `dir`, which must be open already; syncs what sled
    /// wrote while opening it.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let dir = dir.canonicalize()?;
        let files = Self {
            log_file: File::open(dir.join(LOG_FILE))?,
            blobs_path: dir.join(BLOBS_DIR),
            blobs_dir: File::open(dir.join(BLOBS_DIR))?,
            synced_blobs: Mutex::new(BTreeSet::new()),
            syncing: Mutex::new(()),
        };
        File::open(dir.join(CONF_FILE))?.sync_all()?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(SNAPSHOT_PREFIX)
            {
                File::open(entry.path())?.sync_all()?;
            }
        }
        files.log_file.sync_all()?;
        files.sync_new_blobs()?;
        File::open(&dir)?.sync_all()?;
        if let Some(parent) = dir.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(files)
    }

    /// Makes durable what sled has written (call it after sled's flush): new blob files, then
    /// their directory, then the log file. Blocks for the length of a few syncs.
    pub fn sync(&self) -> io::Result<()> {
        let _no_background_writes = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
        self.sync_new_blobs()?;
        self.log_file.sync_data()
    }

    /// Runs `write`, a write nobody waits to be durable, while no sync runs: a blob it writes is
    /// then whole by the time a sync lists it.
    pub fn between_syncs<T>(&self, write: impl FnOnce() -> T) -> T {
        let _not_syncing = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
        write()
    }

    /// Syncs each blob file not synced yet, then the directory if there was any. One listing of
    /// the directory when there is none.
    fn sync_new_blobs(&self) -> io::Result<()> {
        // A sync that failed half-way left the set as it was: the next one syncs the rest again.
        let mut synced = self
            .synced_blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut present = BTreeSet::new();
        let mut any_new = false;
        for entry in std::fs::read_dir(&self.blobs_path)? {
            let entry = entry?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(file) => file.sync_all()?,
                    // sled deleted it since the listing: nothing points to it any more.
                    Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(error),
                }
                any_new = true;
            }
            present.insert(name);
        }
        if any_new {
            self.blobs_dir.sync_all()?;
        }
        *synced = present;
        Ok(())
    }
}
