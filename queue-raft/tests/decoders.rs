//! Bad input to every decoder of the queue that reads from outside the process: Raft RPC
//! payloads from peers (and their answers), snapshot files and installed snapshot data, and the
//! sled log and meta values. Whatever the bytes, the answer is a value or a clean error: never a
//! panic, never an allocation as large as a corrupt length prefix claims.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::sync::Arc;

use bookstore_proto::RaftPayload;
use bookstore_proto::raft_transport_server::RaftTransport;
use common::{enqueue_entry, open_log_store, open_stores};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::log_id;
use openraft::{
    BasicNode, Membership, Raft, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership, Vote,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use queue_raft::auth::ClusterSecret;
use queue_raft::network::GrpcNetworkFactory;
use queue_raft::raft_service::RaftTransportService;
use queue_raft::sm_store::SNAPSHOT_FILE;
use queue_raft::{NodeId, StateMachineStore, StoreOpenError, TypeConfig, codec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tempfile::TempDir;
use tonic::{Code, Request};

const CASES: u32 = 64;

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig::with_cases(CASES))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn membership() -> Membership<NodeId, BasicNode> {
    let nodes: BTreeMap<NodeId, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("127.0.0.1:{}", 50060 + id))))
        .collect();
    Membership::new(vec![nodes.keys().copied().collect::<BTreeSet<_>>()], nodes)
}

fn append_request() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(log_id(1, 1, 4)),
        entries: (5..=8).map(enqueue_entry).collect(),
        leader_commit: Some(log_id(1, 1, 4)),
    }
}

fn snapshot_request() -> InstallSnapshotRequest<TypeConfig> {
    InstallSnapshotRequest {
        vote: Vote::new_committed(2, 1),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(2, 1, 9)),
            last_membership: StoredMembership::new(Some(log_id(1, 1, 1)), membership()),
            snapshot_id: "2-1-9-1".into(),
        },
        offset: 0,
        data: vec![7; 300],
        done: true,
    }
}

/// A valid payload, a cut into it, and bit flips in it: what a broken link or a buggy peer
/// sends.
fn damaged(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    let truncated = {
        let valid = valid.clone();
        (0..len).prop_map(move |cut| valid[..cut].to_vec())
    };
    let flipped = proptest::collection::vec((0..len, 0..8u8), 1..4).prop_map(move |flips| {
        let mut bytes = valid.clone();
        for (at, bit) in flips {
            bytes[at] ^= 1 << bit;
        }
        bytes
    });
    prop_oneof![
        truncated,
        flipped,
        proptest::collection::vec(any::<u8>(), 0..512)
    ]
}

/// Decoding `bytes` as a `T` gives a clean result; what decodes re-encodes to bytes that decode
/// to the same value again (the codec loses nothing of what it accepted).
fn decodes_cleanly<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(decoded) = codec::decode::<T>(bytes) {
        let again = codec::encode(&decoded).expect("a decoded value encodes");
        let decoded_again: T = codec::decode(&again).expect("re-decodes");
        prop_assert_eq!(codec::encode(&decoded_again).expect("encodes"), again);
    }
    Ok(())
}

/// The same bytes through both sides of the Raft RPC: the requests a node decodes, the answers
/// its peer's network decodes.
#[test]
fn damaged_raft_payloads_decode_or_fail_cleanly() {
    type Append = AppendEntriesRequest<TypeConfig>;
    type AppendAnswer = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>;
    type VoteAnswer = Result<VoteResponse<NodeId>, RaftError<NodeId>>;
    type Snapshot = InstallSnapshotRequest<TypeConfig>;
    type SnapshotAnswer =
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;

    let vote = VoteRequest::new(Vote::new(3, 2), Some(log_id(2, 1, 9)));
    let answers = (
        codec::encode(&AppendAnswer::Ok(AppendEntriesResponse::Success)).expect("encodes"),
        codec::encode(&VoteAnswer::Ok(VoteResponse::new(
            Vote::new(3, 2),
            Some(log_id(2, 1, 9)),
            true,
        )))
        .expect("encodes"),
        codec::encode(&SnapshotAnswer::Ok(InstallSnapshotResponse {
            vote: Vote::new(3, 2),
        }))
        .expect("encodes"),
    );

    type Check = fn(&[u8]) -> Result<(), TestCaseError>;
    let cases: [(&str, Vec<u8>, Check); 6] = [
        (
            "append",
            codec::encode(&append_request()).expect("encodes"),
            decodes_cleanly::<Append>,
        ),
        (
            "vote",
            codec::encode(&vote).expect("encodes"),
            decodes_cleanly::<VoteRequest<NodeId>>,
        ),
        (
            "snapshot",
            codec::encode(&snapshot_request()).expect("encodes"),
            decodes_cleanly::<Snapshot>,
        ),
        ("append answer", answers.0, decodes_cleanly::<AppendAnswer>),
        ("vote answer", answers.1, decodes_cleanly::<VoteAnswer>),
        (
            "snapshot answer",
            answers.2,
            decodes_cleanly::<SnapshotAnswer>,
        ),
    ];
    for (what, valid, check) in cases {
        runner()
            .run(&damaged(valid), |bytes| check(&bytes))
            .unwrap_or_else(|failure| panic!("{what}: {failure}"));
    }
}

/// Where `needle` starts in `haystack`.
fn position(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .expect("the bytes are there")
}

/// `bytes` with the 8-byte length prefix at `at` replaced by 2^60.
fn claiming_huge_length(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    bytes
}

/// A length prefix claiming 2^60 entries where a list starts: an error at once.
#[test]
fn huge_length_prefixes_in_raft_requests_are_errors() {
    let valid = codec::encode(&append_request()).expect("encodes");
    // vote (8 + 8 + 1), Some(prev_log_id) (1 + 8 + 8 + 8), then the entries' count.
    let entries_at = 17 + 25;
    assert_eq!(valid[entries_at..entries_at + 8], 4u64.to_le_bytes());
    assert!(
        codec::decode::<AppendEntriesRequest<TypeConfig>>(&claiming_huge_length(
            &valid, entries_at
        ))
        .is_err()
    );
}

/// The bytes of the length prefix and text of `text`, as bincode writes a string.
fn encoded_text(text: &str) -> Vec<u8> {
    codec::encode(text).expect("encodes")
}

/// The inbound service itself, with a real (single, uninitialised) Raft node behind it: what
/// does not decode is `INVALID_ARGUMENT` naming the request, and the node goes on serving.
#[test]
fn the_raft_service_refuses_bad_payloads_with_invalid_argument() {
    let runtime = runtime();
    let dir = TempDir::new().expect("temporary directory");
    let (service, raft) = runtime.block_on(async {
        let (log_store, state_machine) = open_stores(&dir);
        let config = openraft::Config::default()
            .validate()
            .expect("default config");
        let raft = Raft::new(
            1,
            Arc::new(config),
            GrpcNetworkFactory::new(
                1,
                ClusterSecret::load(None, Some("a-secret-for-the-decoder-tests".into()))
                    .expect("a valid secret"),
            ),
            log_store,
            state_machine,
        )
        .await
        .expect("raft node");
        (RaftTransportService::new(raft.clone()), raft)
    });
    let valid_append = codec::encode(&append_request()).expect("encodes");
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        (0..valid_append.len()).prop_map(move |cut| valid_append[..cut].to_vec()),
    ];
    runner()
        .run(&strategy, |data| {
            runtime.block_on(async {
                let payload = || Request::new(RaftPayload { data: data.clone() });
                for (what, answer) in [
                    ("append-entries", service.append_entries(payload()).await),
                    ("vote", service.vote(payload()).await),
                    (
                        "install-snapshot",
                        service.install_snapshot(payload()).await,
                    ),
                ] {
                    if let Err(status) = answer {
                        prop_assert_eq!(status.code(), Code::InvalidArgument);
                        prop_assert!(status.message().contains(what), "{}", status.message());
                    }
                }
                Ok(())
            })
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    runtime.block_on(async {
        let vote = VoteRequest::<NodeId>::new(Vote::new(1, 2), None);
        let data = codec::encode(&vote).expect("encodes");
        service
            .vote(Request::new(RaftPayload { data }))
            .await
            .expect("the node still answers a valid vote");
        raft.shutdown().await.expect("raft shuts down");
    });
}

/// A real snapshot file with a few orders in it.
fn build_snapshot(dir: &TempDir) -> Vec<u8> {
    runtime().block_on(async {
        let mut state_machine = StateMachineStore::open(dir.path()).expect("open");
        state_machine
            .apply((1..=5).map(enqueue_entry))
            .await
            .expect("apply");
        state_machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build snapshot");
    });
    std::fs::read(dir.path().join(SNAPSHOT_FILE)).expect("snapshot file")
}

/// The metadata and data of the snapshot stored in `dir`.
fn current_snapshot(dir: &TempDir) -> (SnapshotMeta<NodeId, BasicNode>, Vec<u8>) {
    runtime().block_on(async {
        let mut state_machine = StateMachineStore::open(dir.path()).expect("open");
        let snapshot = state_machine
            .get_current_snapshot()
            .await
            .expect("read snapshot")
            .expect("a snapshot");
        (snapshot.meta, snapshot.snapshot.into_inner())
    })
}

#[test]
fn a_corrupt_snapshot_file_is_an_error_naming_it() {
    let dir = TempDir::new().expect("temporary directory");
    let valid = build_snapshot(&dir);
    let (meta, data) = current_snapshot(&dir);
    let path = dir.path().join(SNAPSHOT_FILE);
    runner()
        .run(&damaged(valid.clone()), |bytes| {
            std::fs::write(&path, &bytes).expect("write snapshot file");
            match StateMachineStore::open(dir.path()) {
                Ok(_) => {}
                Err(StoreOpenError::Corrupt {
                    path: named, what, ..
                }) => {
                    prop_assert_eq!(&named, &path);
                    prop_assert!(what.starts_with("snapshot"));
                }
                Err(other) => prop_assert!(false, "unexpected error: {other}"),
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));

    // A string (the snapshot id) of 2^60 bytes in the file: read with bincode's defaults this
    // tried to allocate them before reading, and the process aborted.
    let id_at = position(&valid, &encoded_text(&meta.snapshot_id));
    std::fs::write(&path, claiming_huge_length(&valid, id_at)).expect("write snapshot file");
    let error = StateMachineStore::open(dir.path()).expect_err("a string past the end");
    assert!(
        matches!(&error, StoreOpenError::Corrupt { source, .. }
            if matches!(**source, bincode::ErrorKind::SizeLimit)),
        "{error}"
    );

    // 2^60 orders in the snapshot's queue: imbl's decoder reserved room for all of them (a
    // capacity-overflow panic).
    let orders_at = position(
        &data,
        &[&5u64.to_le_bytes()[..], &encoded_text("order-1")].concat(),
    );
    let data_at = position(&valid, &data);
    std::fs::write(&path, claiming_huge_length(&valid, data_at + orders_at))
        .expect("write snapshot file");
    assert!(matches!(
        StateMachineStore::open(dir.path()),
        Err(StoreOpenError::Corrupt {
            what: "snapshot data",
            ..
        })
    ));

    // A cut anywhere is always an error: a snapshot is never read as if it ended early.
    for cut in [0, 1, valid.len() / 2, valid.len() - 1] {
        std::fs::write(&path, &valid[..cut]).expect("write snapshot file");
        let error = StateMachineStore::open(dir.path()).expect_err("truncated snapshot");
        assert!(
            error.to_string().contains(SNAPSHOT_FILE),
            "the error names the file: {error}"
        );
    }
}

#[test]
fn installing_damaged_snapshot_data_is_an_error() {
    let source = TempDir::new().expect("temporary directory");
    let file = build_snapshot(&source);
    // The file is the stored snapshot: its metadata, then the data vector.
    let (meta, valid_data) = current_snapshot(&source);
    let runtime = runtime();
    assert!(file.ends_with(&valid_data));

    let target = TempDir::new().expect("temporary directory");
    runner()
        .run(&damaged(valid_data.clone()), |data| {
            runtime.block_on(async {
                let mut state_machine = StateMachineStore::open(target.path()).expect("open");
                let installed = state_machine
                    .install_snapshot(&meta, Box::new(Cursor::new(data.clone())))
                    .await;
                // Damaged data may still decode (a flipped bit in a title), but what installs is
                // always at the log id and membership its metadata names.
                if installed.is_ok() {
                    let (applied, membership) = state_machine.applied_state().await.expect("state");
                    prop_assert_eq!(applied, meta.last_log_id);
                    prop_assert_eq!(membership, meta.last_membership.clone());
                } else {
                    prop_assert_ne!(&data, &valid_data);
                }
                Ok(())
            })
        })
        .unwrap_or_else(|failure| panic!("{failure}"));

    // A peer's snapshot claiming 2^60 orders.
    let orders_at = position(
        &valid_data,
        &[&5u64.to_le_bytes()[..], &encoded_text("order-1")].concat(),
    );
    runtime.block_on(async {
        let mut state_machine = StateMachineStore::open(target.path()).expect("open");
        let data = claiming_huge_length(&valid_data, orders_at);
        assert!(
            state_machine
                .install_snapshot(&meta, Box::new(Cursor::new(data)))
                .await
                .is_err()
        );
    });
}

/// Garbage written straight into sled, where the log store keeps entries, vote, committed id and
/// purge floor: every read reports an error; none panics.
#[test]
fn garbage_in_sled_is_a_read_error() {
    let dir = TempDir::new().expect("temporary directory");
    let runtime = runtime();
    let store = open_log_store(&dir);
    runtime.block_on(async {
        let mut store = store.clone();
        store
            .blocking_append((1..=4).map(enqueue_entry))
            .await
            .expect("append");
    });
    let logs = store.db().open_tree("logs").expect("logs tree");
    let meta = store.db().open_tree("meta").expect("meta tree");
    let valid_entry = logs
        .get(3u64.to_be_bytes())
        .expect("read")
        .expect("entry 3");
    let garbage = prop_oneof![
        damaged(valid_entry.to_vec()),
        Just(codec::encode(&enqueue_entry(9)).expect("encodes")),
    ];

    runner()
        .run(&garbage, |bytes| {
            runtime.block_on(async {
                let mut store = store.clone();
                logs.insert(3u64.to_be_bytes(), bytes.clone())
                    .expect("write");
                let read = store.try_get_log_entries(1..=4).await;
                // What reads back is the entries at their own indexes: damage that moves an
                // entry to another index is an error.
                if let Ok(entries) = &read {
                    let indexes: Vec<u64> =
                        entries.iter().map(|entry| entry.log_id.index).collect();
                    prop_assert_eq!(indexes, vec![1, 2, 3, 4]);
                }
                for key in ["vote", "committed", "last_purged"] {
                    meta.insert(key, bytes.clone()).expect("write");
                }
                let _ = store.read_vote().await;
                let _ = store.read_committed().await;
                let _ = store.get_log_state().await;
                Ok(())
            })
        })
        .unwrap_or_else(|failure| panic!("{failure}"));

    // Values that are certainly not what they should be.
    logs.insert(3u64.to_be_bytes(), vec![0xff; 3])
        .expect("write");
    for key in ["vote", "committed", "last_purged"] {
        meta.insert(key, vec![0xff; 3]).expect("write");
    }
    runtime.block_on(async {
        let mut store = store.clone();
        assert!(store.try_get_log_entries(1..=4).await.is_err());
        assert!(store.read_vote().await.is_err());
        assert!(store.read_committed().await.is_err());
        assert!(store.get_log_state().await.is_err());
    });

    // A key that is not 8 bytes, sorting last, and an entry stored under another index.
    meta.clear().expect("clear meta");
    logs.insert(3u64.to_be_bytes(), valid_entry).expect("write");
    logs.insert(
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        codec::encode(&enqueue_entry(5)).expect("encodes"),
    )
    .expect("write");
    runtime.block_on(async {
        let mut store = store.clone();
        assert!(store.get_log_state().await.is_err());
        assert!(store.try_get_log_entries(..).await.is_err());
        logs.remove(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff")
            .expect("remove");
        logs.insert(
            5u64.to_be_bytes(),
            codec::encode(&enqueue_entry(6)).expect("encodes"),
        )
        .expect("write");
        assert!(store.try_get_log_entries(1..=5).await.is_err());
        assert!(store.try_get_log_entries(1..=4).await.is_ok());
    });
    meta.insert("last_purged", vec![0xff; 3]).expect("write");
    store.db().flush().expect("flush");
    drop((logs, meta, store));

    // Opening checks the purge floor: a store whose floor is garbage does not open.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match queue_raft::LogStore::open(dir.path()) {
            Err(StoreOpenError::Unreadable(_)) => break,
            // sled's lock, released by its background threads a moment after the drop.
            Err(StoreOpenError::Sled(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => panic!("expected an unreadable store, got {other:?}"),
        }
    }
}
