//! The log store on a disk that loses power: every append and vote the store acknowledged must
//! still be there after a power cut, however soon the cut follows the acknowledgement.
//!
//! The disk is powercut-fs, which keeps only what was fsynced (file data by an fsync or
//! fdatasync of the file, names by an fsync of their directory). The store runs in a child
//! process, this test binary run again with `POWER_CUT_DATA_DIR` set: it appends through
//! openraft's storage API as the node does, saves a vote, reports each acknowledgement on stdout
//! and kills itself with SIGKILL the moment it is done, so that none of sled's threads writes or
//! syncs anything after it (as on a power cut). The parent then cuts the power and reopens the
//! store in its own process.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::enqueue_entry;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::log_id;
use openraft::{RaftLogReader, Vote};
use powercut_fs::Mount;
use queue_raft::LogStore;
use tempfile::TempDir;

/// Set in the child: the directory (a powercut-fs mount) to open the log store in.
const DATA_DIR_ENV: &str = "POWER_CUT_DATA_DIR";
/// How the child reports an acknowledgement on stdout.
const ACK_APPEND: &str = "power-cut: append acknowledged up to index";
const ACK_VOTE: &str = "power-cut: vote acknowledged";
const BATCHES: u64 = 20;
const ENTRIES_PER_BATCH: u64 = 5;
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// The vote the child saves: a candidate's own vote in term 2, then granted.
fn saved_vote() -> Vote<u64> {
    Vote::new_committed(2, 1)
}

#[test]
fn log_store_keeps_every_acknowledged_append_and_vote_across_a_power_cut() {
    if let Ok(dir) = std::env::var(DATA_DIR_ENV) {
        acknowledge_then_die(Path::new(&dir));
    }
    if let Some(reason) = powercut_fs::fuse_unavailable() {
        eprintln!("skipping the power-cut test of the log store: {reason}");
        return;
    }
    let dir = TempDir::new().expect("temporary directory");
    let data_dir = dir.path().join("node");
    std::fs::create_dir(&data_dir).expect("create the mount point");
    let mount = Mount::new(&data_dir).expect("mount powercut-fs");

    let acknowledged = run_child(&data_dir);
    let report = mount.cut();
    let survivors = names(&data_dir);

    let mut store = LogStore::open(&data_dir).expect("reopen the log store after the cut");
    let mut lost = Vec::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let vote = store.read_vote().await.expect("read the vote");
        if acknowledged.vote && vote != Some(saved_vote()) {
            lost.push(format!(
                "the vote: {:?} was acknowledged, {vote:?} read back",
                saved_vote()
            ));
        }
        let state = store.get_log_state().await.expect("read the log state");
        let expected_last = acknowledged.last_index.map(|index| log_id(1, 0, index));
        if state.last_log_id < expected_last {
            lost.push(format!(
                "the log's end: {expected_last:?} was acknowledged, {:?} read back",
                state.last_log_id
            ));
        }
        let entries = store
            .try_get_log_entries(1..=acknowledged.last_index.unwrap_or(0))
            .await
            .expect("read the entries");
        let missing: Vec<u64> = (1..=acknowledged.last_index.unwrap_or(0))
            .filter(|&index| !entries.contains(&enqueue_entry(index)))
            .collect();
        if !missing.is_empty() {
            lost.push(format!(
                "{} of {} acknowledged entries ({})",
                missing.len(),
                acknowledged.last_index.unwrap_or(0),
                ranges(&missing)
            ));
        }
    });
    drop(store);
    assert!(
        lost.is_empty(),
        "a power cut lost what the log store had acknowledged: {}. Files left in the data \
         directory: {survivors:?}; bytes live before the cut {}, durable {}",
        lost.join("; "),
        report.before.live_bytes,
        report.before.durable_bytes,
    );
}

/// What the child reported as acknowledged before it died.
#[derive(Debug, Default)]
struct Acknowledged {
    last_index: Option<u64>,
    vote: bool,
}

/// Runs the child on `data_dir`, collects its acknowledgements and checks that it died by its
/// own SIGKILL having acknowledged everything.
fn run_child(data_dir: &Path) -> Acknowledged {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(test_binary)
        .args([
            "log_store_keeps_every_acknowledged_append_and_vote_across_a_power_cut",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DATA_DIR_ENV, data_dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let mut acknowledged = Acknowledged::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the child's stdout");
        if let Some(index) = line.strip_prefix(ACK_APPEND) {
            let index = index.trim().parse().expect("an index after the prefix");
            acknowledged.last_index = Some(index);
        } else if line.starts_with(ACK_VOTE) {
            acknowledged.vote = true;
        }
    }
    let deadline = Instant::now() + CHILD_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the child did not finish within {CHILD_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child must die by its own SIGKILL once done, not {status}"
    );
    assert_eq!(acknowledged.last_index, Some(BATCHES * ENTRIES_PER_BATCH));
    assert!(acknowledged.vote, "the child acknowledged no vote");
    acknowledged
}

/// The child: appends and votes on the store in `data_dir`, reporting each acknowledgement, then
/// dies by SIGKILL with the store still open: dropping it would flush and fsync (sled's `Drop`),
/// which a power cut does not.
fn acknowledge_then_die(data_dir: &Path) -> ! {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut store = LogStore::open(data_dir).expect("open the log store");
        for batch in 0..BATCHES {
            let first = batch * ENTRIES_PER_BATCH + 1;
            let last = first + ENTRIES_PER_BATCH - 1;
            store
                .blocking_append((first..=last).map(enqueue_entry))
                .await
                .expect("append");
            println!("{ACK_APPEND} {last}");
        }
        store.save_vote(&saved_vote()).await.expect("save the vote");
        println!("{ACK_VOTE}");
        // SAFETY: kill on this process's own id; SIGKILL ends it before kill returns.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        unreachable!("SIGKILL cannot be caught, and the store is still open: {store:?}");
    })
}

fn names(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list the data directory")
        .map(|entry| PathBuf::from(entry.expect("an entry").file_name()))
        .collect();
    names.sort();
    names
}

/// `[1, 2, 3, 7]` as "1-3, 7".
fn ranges(indexes: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(", ")
}
