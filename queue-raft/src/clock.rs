//! The queue node's one clock: every time reading the node makes for the commands it stamps goes
//! through a [`NodeClock`].
//!
//! The wall clock it reads can be offset at run time for fault injection: with
//! `--clock-offset-file PATH` (env `QUEUE_CLOCK_OFFSET_FILE`), the file holds a signed offset in
//! milliseconds (`-3500`, `20000`; empty or missing means 0) that is added to every wall-clock
//! reading. The file is checked on every reading (one `stat`) and read again only when it changed,
//! so another process (the chaos run) skews a node or makes its clock jump, forward or backward,
//! by replacing the file. Write it whole and rename it over the path: a rename always gives a new
//! inode, which is noticed even when the size and modification time stay the same. A file that
//! does not parse leaves the last offset in force and is logged. Without the flag the clock is
//! the system's and nothing is checked.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// The clock of one queue node. Clones share the offset file's cached value.
#[derive(Debug, Clone, Default)]
pub struct NodeClock {
    /// The fault-injection offset, when the node was started with one.
    offset: Option<Arc<OffsetFile>>,
}

impl NodeClock {
    /// The system clock, offset by the file at `offset_file` if one is given.
    pub fn new(offset_file: Option<PathBuf>) -> Self {
        Self {
            offset: offset_file.map(|path| Arc::new(OffsetFile::new(path))),
        }
    }

    /// The wall clock in milliseconds since the Unix epoch, offset as the offset file says now.
    pub fn wall_ms(&self) -> u64 {
        let offset_ms = self.offset.as_ref().map_or(0, |file| file.offset_ms());
        offset_wall_ms(SystemTime::now(), offset_ms)
    }
}

/// `now` in milliseconds since the Unix epoch, moved by `offset_ms`; a clock before 1970 reads 0.
fn offset_wall_ms(now: SystemTime, offset_ms: i64) -> u64 {
    let since_epoch = now.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    });
    since_epoch.saturating_add_signed(offset_ms)
}

/// The offset file and the value last read from it.
#[derive(Debug)]
struct OffsetFile {
    path: PathBuf,
    /// Held only while the file is checked and read; never across an `.await`.
    last: Mutex<LastRead>,
}

#[derive(Debug, Default)]
struct LastRead {
    /// Which version of the file `offset_ms` came from; `None` while the file is missing.
    version: Option<FileVersion>,
    offset_ms: i64,
}

/// What tells one version of the file from the next without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileVersion {
    device: u64,
    inode: u64,
    len: u64,
    modified_s: i64,
    modified_ns: i64,
}

impl FileVersion {
    fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            modified_s: metadata.mtime(),
            modified_ns: metadata.mtime_nsec(),
        }
    }
}

impl OffsetFile {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            last: Mutex::new(LastRead::default()),
        }
    }

    /// The offset in force: the file's, read again if it changed since the last reading.
    fn offset_ms(&self) -> i64 {
        // A panic while the lock was held left `LastRead` whole (it is written in one piece).
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let version = match std::fs::metadata(&self.path) {
            Ok(metadata) => Some(FileVersion::of(&metadata)),
            Err(error) if error.kind() == ErrorKind::NotFound => None,
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot check the clock offset file; keeping the last offset");
                return last.offset_ms;
            }
        };
        if version == last.version {
            return last.offset_ms;
        }
        let offset_ms = match version {
            None => Ok(0),
            Some(_) => read_offset(&self.path),
        };
        match offset_ms {
            Ok(offset_ms) => {
                if offset_ms != last.offset_ms {
                    tracing::info!(path = %self.path.display(), offset_ms, "clock offset changed");
                }
                *last = LastRead { version, offset_ms };
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), error, "cannot read the clock offset file; keeping the last offset");
                // Not read again until it changes once more.
                last.version = version;
            }
        }
        last.offset_ms
    }
}

/// The signed milliseconds the file at `path` holds; empty means 0.
fn read_offset(path: &Path) -> Result<i64, String> {
    let text = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse()
        .map_err(|_| format!("{text:?} is not a signed number of milliseconds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Replaces the file the way the chaos run should: write a temporary file, rename it over.
    fn set_offset(path: &Path, text: &str) {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, text).expect("write the offset");
        std::fs::rename(&temporary, path).expect("rename the offset into place");
    }

    #[test]
    fn without_a_file_the_clock_is_the_systems() {
        let before = offset_wall_ms(SystemTime::now(), 0);
        let read = NodeClock::new(None).wall_ms();
        let after = offset_wall_ms(SystemTime::now(), 0);
        assert!(before <= read && read <= after);
    }

    #[test]
    fn the_offset_follows_the_file_forward_back_and_gone() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("offset");
        let clock = NodeClock::new(Some(path.clone()));
        let offset = |clock: &NodeClock| {
            let system = offset_wall_ms(SystemTime::now(), 0);
            i64::try_from(clock.wall_ms()).expect("ms fit") - i64::try_from(system).expect("ms fit")
        };
        // Readings a few ms apart: compare within a margin.
        let near = |read: i64, expected: i64| (read - expected).abs() < 1_000;
        assert!(near(offset(&clock), 0), "missing file: no offset");
        set_offset(&path, "20000\n");
        assert!(near(offset(&clock), 20_000));
        // Same length, written within the same second: the new inode gives it away.
        set_offset(&path, "-9000\n");
        assert!(near(offset(&clock), -9_000));
        set_offset(&path, "");
        assert!(near(offset(&clock), 0), "empty file: no offset");
        set_offset(&path, "-9000");
        assert!(near(offset(&clock), -9_000));
        std::fs::remove_file(&path).expect("remove the offset file");
        assert!(near(offset(&clock), 0), "removed file: no offset");
    }

    #[test]
    fn a_bad_file_keeps_the_last_offset() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("offset");
        let file = OffsetFile::new(path.clone());
        set_offset(&path, "1500");
        assert_eq!(file.offset_ms(), 1_500);
        set_offset(&path, "ten seconds");
        assert_eq!(file.offset_ms(), 1_500);
        set_offset(&path, " -250 ");
        assert_eq!(file.offset_ms(), -250);
    }

    #[test]
    fn readings_saturate_instead_of_wrapping() {
        let epoch_plus_a_second = UNIX_EPOCH + Duration::from_secs(1);
        assert_eq!(offset_wall_ms(epoch_plus_a_second, -5_000), 0);
        assert_eq!(offset_wall_ms(epoch_plus_a_second, 500), 1_500);
        assert_eq!(
            offset_wall_ms(epoch_plus_a_second, i64::MAX),
            1_000 + i64::MAX.unsigned_abs()
        );
        assert_eq!(offset_wall_ms(UNIX_EPOCH - Duration::from_secs(1), 0), 0);
    }
}
