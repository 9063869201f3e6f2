//! A node's log is never purged past the snapshot on its disk. openraft 0.9 hands a follower's
//! log store the purge of what an installed snapshot covers together with the install, without
//! waiting for the install: a crash between the two, with the purge durable and the snapshot not
//! yet written, left a node whose log starts after its snapshot ends. The chaos run's power cut
//! of all three nodes found one, which then failed every restart with "Failed to get log entries,
//! expected index: [7024, 7036), got [None, None)". A purge must wait for the snapshot.

mod common;

use std::time::Duration;

use common::enqueue_entry;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine, Snapshot};
use openraft::{BasicNode, RaftSnapshotBuilder, SnapshotMeta};
use queue_raft::{LogStore, NodeId, StateMachineStore};
use tempfile::TempDir;

/// How long a purge that must wait is watched not to finish.
const WATCHED: Duration = Duration::from_millis(500);
/// How long a purge that may go on is given to finish.
const FINISHES_WITHIN: Duration = Duration::from_secs(10);

/// A snapshot of the state after entries `1..=last`, built on a store of its own, as a leader
/// would send it.
async fn leader_snapshot(last: u64) -> (SnapshotMeta<NodeId, BasicNode>, Vec<u8>) {
    let dir = TempDir::new().expect("temporary directory");
    let mut store = StateMachineStore::open(dir.path()).expect("open the leader's state machine");
    store
        .apply((1..=last).map(enqueue_entry))
        .await
        .expect("apply the leader's entries");
    let Snapshot { meta, snapshot } = store
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build the leader's snapshot");
    (meta, snapshot.into_inner())
}

#[tokio::test]
async fn a_purge_waits_until_the_snapshot_covering_it_is_on_disk() {
    let dir = TempDir::new().expect("temporary directory");
    let mut state_machine = StateMachineStore::open(dir.path()).expect("open the state machine");
    let mut log = LogStore::open(dir.path())
        .expect("open the log store")
        .purge_behind(state_machine.durable_snapshots());
    log.blocking_append((1..=5).map(enqueue_entry))
        .await
        .expect("append the follower's entries");

    // The leader's snapshot reaches past the follower's log, as after a long partition; openraft
    // sends the purge of everything it covers while the install is still to be written.
    let (meta, data) = leader_snapshot(40).await;
    let upto = meta
        .last_log_id
        .expect("a snapshot of entries has a last log id");
    let mut purging = log.clone();
    let purge = tokio::spawn(async move { purging.purge(upto).await });
    tokio::time::sleep(WATCHED).await;
    assert!(
        !purge.is_finished(),
        "the log was purged up to {upto} while no snapshot on disk covered it: a crash now would \
         leave the node unable to restart"
    );

    state_machine
        .install_snapshot(&meta, Box::new(std::io::Cursor::new(data)))
        .await
        .expect("install the leader's snapshot");
    tokio::time::timeout(FINISHES_WITHIN, purge)
        .await
        .expect("the purge goes on once the snapshot is on disk")
        .expect("the purge task")
        .expect("the purge");
    let state = log.get_log_state().await.expect("the log state");
    assert_eq!(state.last_purged_log_id, Some(upto));

    // A purge the snapshot on disk covers already goes on at once.
    tokio::time::timeout(FINISHES_WITHIN, log.purge(upto))
        .await
        .expect("a covered purge does not wait")
        .expect("the purge");
}
