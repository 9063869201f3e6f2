//! Helpers shared by the tests: stores on their own temporary directory and entries (storage
//! tests), and [`cluster`], three real nodes (cluster tests) and the links between them that a
//! test can cut ([`cluster::proxy`]).

// Each test binary compiles this module and uses only its part of it.
#![allow(dead_code)]

pub mod cluster;

use openraft::testing::log_id;
use openraft::{Entry, EntryPayload};
use queue_raft::{
    Command, LogStore, OrderItem, QueuedOrder, Stamp, StateMachineStore, Timeline, TypeConfig,
};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Opens both stores of one node in `dir`, the way a node does: one sled database, shared.
pub fn open_stores(dir: &TempDir) -> (LogStore, StateMachineStore) {
    let log_store = open_log_store(dir);
    let state_machine = StateMachineStore::open(dir.path()).expect("open the state machine store");
    (log_store, state_machine)
}

/// Opens the log store in `dir`, waiting while a store dropped a moment ago in this process
/// still holds sled's file lock: sled releases it from its background threads (and openraft's
/// tasks drop their store clones) only after the drop or `Raft::shutdown` has returned. A new
/// process, as a restarted node is, never waits here.
pub fn open_log_store(dir: &TempDir) -> LogStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match LogStore::open(dir.path()) {
            Ok(store) => return store,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => panic!("open the log store: {error:?}"),
        }
    }
}

/// A reading `elapsed_ms` into the clock of the one leader of the storage tests (term 1).
pub fn stamp(elapsed_ms: u64) -> Stamp {
    let timeline = Timeline {
        term: 1,
        incarnation: 1,
        began_at_ms: 0,
    };
    Stamp::new(timeline, elapsed_ms)
}

/// A normal entry at `index` (term 1, leader node 0) carrying `command`.
pub fn command_entry(index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(1, 0, index),
        payload: EntryPayload::Normal(command),
    }
}

/// A normal entry at `index` enqueueing an order named after the index.
pub fn enqueue_entry(index: u64) -> Entry<TypeConfig> {
    let order = QueuedOrder::new(
        format!("order-{index}"),
        "Ada",
        vec![OrderItem {
            title: "Dune".into(),
            quantity: 1 + (index % 3) as u32,
        }],
    );
    command_entry(
        index,
        Command::Enqueue {
            at: stamp(index),
            order,
        },
    )
}
