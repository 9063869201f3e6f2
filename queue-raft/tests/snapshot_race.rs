//! A snapshot build racing a snapshot install on one state machine store (issue 14, claim 3):
//! openraft runs the builder beside the state machine, so a build that began before an install
//! can finish after it. Whatever the interleaving, both calls must succeed, the snapshot left on
//! disk must be whole and the newer of the two, and a store reopened on the directory must start
//! from it.

mod common;

use std::io::Cursor;
use std::time::Duration;

use common::{command_entry, enqueue_entry};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{LogId, RaftSnapshotBuilder};
use queue_raft::{Command, NodeId, OrderItem, QueuedOrder, StateMachineStore, TypeConfig};
use tempfile::TempDir;

/// Entries of the large, older state; each carries [`ORDERS_PER_ENTRY`] enqueues.
const LARGE_ENTRIES: u64 = 40;
const ORDERS_PER_ENTRY: u64 = 500;
/// Where the small, newer state's entries start: past every index of the large one.
const NEWER_FIRST_INDEX: u64 = 1_000;
/// Rounds, each on a fresh store, with the install started a little later each time, so that
/// it lands in each phase of the build (encoding, writing, renaming) in one round or another.
const ROUNDS: u32 = 24;
const STAGGER_STEP: Duration = Duration::from_millis(2);

fn large_entry(index: u64) -> openraft::Entry<TypeConfig> {
    let commands = (0..ORDERS_PER_ENTRY)
        .map(|n| Command::Enqueue {
            order: QueuedOrder::new(
                format!("order-{index}-{n}"),
                "a customer with a fairly long name, so that the snapshot is large",
                vec![OrderItem {
                    title: "The Left Hand of Darkness".into(),
                    quantity: 1 + (n % 3) as u32,
                }],
            ),
            at: common::stamp(index),
        })
        .collect();
    command_entry(index, Command::group(commands))
}

/// A store in `dir` whose state is large (slow to encode and write) and old (a low last log id).
async fn store_with_large_old_state(dir: &TempDir) -> StateMachineStore {
    let mut store = StateMachineStore::open(dir.path()).expect("open the state machine store");
    store
        .apply((1..=LARGE_ENTRIES).map(large_entry))
        .await
        .expect("apply the large state");
    store
}

/// A snapshot of a small state newer than the large one, built on a store of its own; its bytes.
async fn small_newer_snapshot() -> (openraft::SnapshotMeta<NodeId, openraft::BasicNode>, Vec<u8>) {
    let dir = TempDir::new().expect("temporary directory");
    let mut store = StateMachineStore::open(dir.path()).expect("open the state machine store");
    store
        .apply((NEWER_FIRST_INDEX..NEWER_FIRST_INDEX + 3).map(enqueue_entry))
        .await
        .expect("apply the small state");
    let Snapshot { meta, snapshot } = store
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build the small snapshot");
    (meta, snapshot.into_inner())
}

fn index_of(log_id: Option<LogId<NodeId>>) -> Option<u64> {
    log_id.map(|log_id| log_id.index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_racing_an_install_never_leaves_an_older_or_broken_snapshot() {
    let (newer_meta, newer_data) = small_newer_snapshot().await;
    let newer_index = index_of(newer_meta.last_log_id);
    for round in 0..ROUNDS {
        let dir = TempDir::new().expect("temporary directory");
        let mut store = store_with_large_old_state(&dir).await;
        let mut builder = store.get_snapshot_builder().await;
        let stagger = STAGGER_STEP * round;
        let install = async {
            tokio::time::sleep(stagger).await;
            store
                .install_snapshot(&newer_meta, Box::new(Cursor::new(newer_data.clone())))
                .await
        };
        let (built, installed) = tokio::join!(builder.build_snapshot(), install);
        installed.unwrap_or_else(|error| panic!("round {round}: the install failed: {error}"));
        let built =
            built.unwrap_or_else(|error| panic!("round {round}: the build failed: {error}"));
        assert!(
            index_of(built.meta.last_log_id) <= newer_index,
            "round {round}: the build reports a snapshot past anything applied"
        );

        let current = store
            .get_current_snapshot()
            .await
            .unwrap_or_else(|error| panic!("round {round}: the current snapshot: {error}"))
            .unwrap_or_else(|| panic!("round {round}: no current snapshot"));
        assert_eq!(
            index_of(current.meta.last_log_id),
            newer_index,
            "round {round} (install {stagger:?} after the build began): an older snapshot \
             replaced the newer one"
        );

        let mut reopened = StateMachineStore::open(dir.path())
            .unwrap_or_else(|error| panic!("round {round}: reopening the store: {error}"));
        let (applied, _) = reopened.applied_state().await.expect("applied state");
        assert_eq!(
            index_of(applied),
            newer_index,
            "round {round}: the reopened store does not start from the newer snapshot"
        );
        let leftovers: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list the data directory")
            .map(|entry| {
                entry
                    .expect("a directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "round {round}: temporary snapshot files left behind: {leftovers:?}"
        );
    }
}
