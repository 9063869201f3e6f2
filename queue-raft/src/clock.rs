//! The queue node's one clock: every time reading the node makes for the commands it stamps, and
//! for the lease it reports, goes through a [`NodeClock`].
//!
//! Two clocks, kept apart:
//! - The monotonic clock (`std::time::Instant`, Linux's `CLOCK_MONOTONIC`: never stepped, only
//!   slewed by NTP, and counting while the process is stopped) is the only one lease time is
//!   read from. [`NodeClock::leader_stamp`] reads it as milliseconds since this node began
//!   leading the term, on a [`Timeline`] of its own (term, a random incarnation of this process,
//!   and the wall time it began at, for showing). It begins at the first reading asked for as
//!   leader of that term, which is after the node won the election: later than the election is
//!   the safe side, since it only makes a lease held over from the last leader last longer (see
//!   `crate::state_machine`, "Time").
//! - The wall clock is read only for times shown to people (`Timeline::began_at_ms`).
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
//!
//! The offset stands for a wall clock that is set wrong or stepped (by hand, by NTP, by a bad
//! real-time clock): it moves what `CLOCK_REALTIME` moves and never the monotonic clock, which no
//! such fault moves either. Since lease time is monotonic, it changes only the times shown to
//! people: a chaos run that offsets nodes proves that no decision rests on a wall clock. That it
//! took effect shows in the node's log (`clock offset changed`, with the offset) and in the shown
//! times (`executed_at_ms`, `lease_expires_at_ms`) of the next term this node leads.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::state_machine::{Stamp, Timeline};

/// The clock of one queue node. Clones share the offset file's cached value and the timeline.
#[derive(Debug, Clone)]
pub struct NodeClock {
    /// The fault-injection offset of the wall clock, when the node was started with one.
    offset: Option<Arc<OffsetFile>>,
    /// Drawn once per process: see [`Timeline::incarnation`].
    incarnation: u64,
    /// The timeline of the latest term this node was asked to read as leader, and when it began
    /// on the monotonic clock. Held only while it is read or replaced.
    leading: Arc<Mutex<Option<LeaderTimeline>>>,
}

#[derive(Debug, Clone, Copy)]
struct LeaderTimeline {
    timeline: Timeline,
    began: Instant,
}

impl NodeClock {
    /// The system clock, its wall clock offset by the file at `offset_file` if one is given.
    pub fn new(offset_file: Option<PathBuf>) -> Self {
        Self {
            offset: offset_file.map(|path| Arc::new(OffsetFile::new(path))),
            incarnation: rand::random(),
            leading: Arc::new(Mutex::new(None)),
        }
    }

    /// A reading of the monotonic clock on this node's timeline as leader of `term`, begun now
    /// if this is the first reading asked for that term. `None` if a later term was read
    /// already: the caller saw the term before it changed, and no longer leads it.
    pub fn leader_stamp(&self, term: u64) -> Option<Stamp> {
        let now = Instant::now();
        // A panic while the lock was held left the timeline whole (it is written in one piece).
        let mut leading = self.leading.lock().unwrap_or_else(PoisonError::into_inner);
        let current = match *leading {
            Some(current) if current.timeline.term == term => current,
            Some(current) if current.timeline.term > term => return None,
            _ => {
                let begun = LeaderTimeline {
                    timeline: Timeline {
                        term,
                        incarnation: self.incarnation,
                        began_at_ms: self.wall_ms(),
                    },
                    began: now,
                };
                tracing::info!(
                    term,
                    incarnation = self.incarnation,
                    "leader clock began for this term"
                );
                *leading = Some(begun);
                begun
            }
        };
        let elapsed_ms =
            u64::try_from(now.duration_since(current.began).as_millis()).unwrap_or(u64::MAX);
        Some(Stamp::new(current.timeline, elapsed_ms))
    }

    /// The wall clock in milliseconds since the Unix epoch, offset as the offset file says now.
    fn wall_ms(&self) -> u64 {
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
    fn a_term_has_one_timeline_whose_readings_only_grow() {
        let clock = NodeClock::new(None);
        let first = clock.leader_stamp(3).expect("leads term 3");
        std::thread::sleep(Duration::from_millis(20));
        let second = clock.leader_stamp(3).expect("leads term 3");
        assert_eq!(first.timeline, second.timeline);
        assert_eq!(first.timeline.term, 3);
        assert!(second.elapsed_ms >= first.elapsed_ms + 20);
        let next_term = clock.leader_stamp(5).expect("leads term 5");
        assert_eq!(next_term.timeline.term, 5);
        assert!(next_term.elapsed_ms < 20, "a new term's clock starts at 0");
        assert_eq!(clock.leader_stamp(3), None, "term 3 is over");
    }

    #[test]
    fn each_run_of_the_process_has_a_timeline_of_its_own() {
        let (one, other) = (NodeClock::new(None), NodeClock::new(None));
        let (one, other) = (one.leader_stamp(7), other.leader_stamp(7));
        let (one, other) = (one.expect("leads"), other.expect("leads"));
        assert_ne!(one.timeline.incarnation, other.timeline.incarnation);
    }

    #[test]
    fn the_offset_moves_only_the_shown_time_of_a_timeline() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("offset");
        let clock = NodeClock::new(Some(path.clone()));
        let before = clock.leader_stamp(2).expect("leads");
        set_offset(&path, "3600000");
        std::thread::sleep(Duration::from_millis(5));
        let jumped = clock.leader_stamp(2).expect("leads");
        assert_eq!(jumped.timeline, before.timeline);
        assert!(
            jumped.elapsed_ms < 1_000,
            "an hour's jump moved the monotonic reading"
        );
        let next = clock.leader_stamp(3).expect("leads");
        assert!(next.timeline.began_at_ms >= before.timeline.began_at_ms + 3_600_000);
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
