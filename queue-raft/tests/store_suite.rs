//! openraft's own conformance suite, run against the sled log store and the queue state machine,
//! each case on a fresh temporary directory.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use queue_raft::{LogStore, NodeId, StateMachineStore, TypeConfig};
use tempfile::TempDir;

/// The suite sleeps inside some cases (about 8 s in all); a store that never calls back would
/// hang it forever instead.
const SUITE_TIMEOUT: Duration = Duration::from_secs(120);

struct TempDirStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempDirStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = TempDir::new().expect("create a temporary directory");
        let log_store = LogStore::open(dir.path()).expect("open the log store");
        let state_machine =
            StateMachineStore::open(dir.path()).expect("open the state machine store");
        Ok((dir, log_store, state_machine))
    }
}

/// `Suite` builds a runtime per case, so it runs from a plain test, on its own thread so that a
/// hang fails the test instead of stalling the run.
#[test]
fn openraft_storage_suite_passes() {
    let (done, outcome) = mpsc::channel();
    let started = Instant::now();
    thread::spawn(move || {
        let result = Suite::test_all(TempDirStores);
        // The receiver is gone only if the test already failed on its timeout.
        let _ = done.send(result);
    });
    match outcome.recv_timeout(SUITE_TIMEOUT) {
        Ok(Ok(())) => eprintln!("openraft storage suite passed in {:?}", started.elapsed()),
        Ok(Err(error)) => panic!("openraft storage suite failed: {error}"),
        Err(_) => panic!("openraft storage suite did not finish within {SUITE_TIMEOUT:?}"),
    }
}
