//! The record of a chaos run: what clients asked and were told (writes and reads), what
//! executors executed and what the cluster answered to each acknowledgement, what the cluster
//! holds at the end (every order's record, the queue, each replica's digest), what the nemesis
//! did, and which processes exited without being told to. A run writes it as a directory of
//! files (JSON lines, one record per line; two single JSON objects) so that a history can be
//! kept, read, and checked again.
//!
//! All times are milliseconds since the Unix epoch from the wall clock (`CLOCK_REALTIME`) of the
//! one machine every process of a run shares, so times from different processes compare; the
//! run watches that clock for steps ([`ClockStep`]), which would make such comparisons void.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

pub use executor::AcknowledgementAnswer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// File names inside a history directory.
pub const RUN_FILE: &str = "run.json";
pub const OPERATIONS_FILE: &str = "operations.jsonl";
pub const READS_FILE: &str = "reads.jsonl";
pub const EXECUTIONS_FILE: &str = "executions.jsonl";
pub const ACKNOWLEDGEMENTS_FILE: &str = "acknowledgements.jsonl";
pub const FINAL_STATES_FILE: &str = "final.jsonl";
pub const END_FILE: &str = "end.json";
pub const NEMESIS_FILE: &str = "nemesis.jsonl";
pub const EXITS_FILE: &str = "exits.jsonl";

/// Everything the checker judges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub run: RunWindow,
    pub operations: Vec<ClientOperation>,
    pub reads: Vec<ReadOperation>,
    pub executions: Vec<Execution>,
    pub acknowledgements: Vec<Acknowledgement>,
    pub final_states: Vec<FinalState>,
    pub end: ClusterEnd,
    pub nemesis: Vec<NemesisEvent>,
    pub exits: Vec<ProcessExit>,
}

/// When the clients ran (the span the liveness floor is judged over), and what the run saw of
/// its clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunWindow {
    pub seed: u64,
    pub clients_started_at_ms: u64,
    /// When the clients stopped starting new operations (each finished the one in hand).
    pub clients_stopped_at_ms: u64,
    pub clock_steps: Vec<ClockStep>,
}

/// The wall clock moved by more than the monotonic clock allows between two looks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStep {
    pub at_ms: u64,
    /// How far the wall clock moved beyond (or, negative, short of) the monotonic clock.
    pub step_ms: i64,
}

/// How a client put an order in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// `POST /checkout` through the orchestrator.
    Checkout,
    /// An enqueue straight into the queue cluster.
    Enqueue,
}

/// What the client learned from the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged: the order is committed and must be executed.
    Ok,
    /// Definitely not enqueued (rejected, refused before any write).
    Failed,
    /// No definite answer (a timeout, a lost connection): the order may or may not be enqueued.
    Unknown,
}

/// One book line of an order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Item {
    pub title: String,
    pub quantity: u32,
}

/// What an order holds, as its client sent it or as the cluster keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderContents {
    pub customer: String,
    pub items: Vec<Item>,
}

impl OrderContents {
    /// The queue's priority: the sum of the quantities.
    pub fn priority(&self) -> u32 {
        self.items
            .iter()
            .fold(0u32, |sum, item| sum.saturating_add(item.quantity))
    }

    /// Equal customer and equal items, in any order.
    pub fn same_as(&self, other: &OrderContents) -> bool {
        let sorted = |items: &[Item]| {
            let mut items = items.to_vec();
            items.sort();
            items
        };
        self.customer == other.customer && sorted(&self.items) == sorted(&other.items)
    }
}

/// One client operation: one order, with the client's view of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientOperation {
    /// Which client ran it, for reading a history.
    pub client: String,
    pub kind: OperationKind,
    /// The order's id, known before the call (chosen by the client, or derived from its
    /// idempotency key), so that an order whose answer was lost can still be followed.
    pub order_id: String,
    /// What the client sent.
    pub contents: OrderContents,
    pub invoked_at_ms: u64,
    pub completed_at_ms: u64,
    pub outcome: Outcome,
    /// The error or rejection, for a human reading the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a read asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadKind {
    /// `GET /orders/{id}` through the orchestrator.
    OrderRest,
    /// `GetOrder` to the queue.
    GetOrder,
    /// `ListQueue` to the queue.
    ListQueue,
}

/// Where an order is, as a read saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadState {
    /// Not found (`404`, `found: false`).
    Unknown,
    Queued,
    Executing,
    Executed,
    /// `rejected` (REST only): never right for an order the queue accepted.
    Rejected,
}

/// What a read was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum ReadResult {
    /// One order's state (`GET /orders/{id}`, `GetOrder`).
    Order { state: ReadState },
    /// The queue's next orders (`ListQueue`): every id listed is queued.
    Queue { order_ids: Vec<String>, depth: u64 },
    /// No answer that says anything (an error, a timeout, a node that is not the leader).
    NoAnswer { error: String },
}

/// One read, with its times on the runner's clock (the same clock as the operations' times).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOperation {
    pub client: String,
    pub kind: ReadKind,
    /// `orchestrator`, `leader` (the leader-following client) or `queue-N` (that one node,
    /// asked once, its answer taken as it is).
    pub via: String,
    /// The order read; none for `ListQueue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub invoked_at_ms: u64,
    pub completed_at_ms: u64,
    #[serde(flatten)]
    pub result: ReadResult,
}

/// One execution of one order, as an executor recorded it in its ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub order_id: String,
    pub executor_id: String,
    /// The fencing token of the lease the order was executed under.
    pub token: u64,
    pub priority: u32,
    pub customer: String,
    /// When the executor began the dequeue that returned this order (before its first attempt).
    pub dequeued_at_ms: u64,
    /// When the execution finished (the ledger line was written).
    pub executed_at_ms: u64,
}

/// What the cluster answered to the acknowledgement of one execution, from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub order_id: String,
    pub executor_id: String,
    pub token: u64,
    pub answer: AcknowledgementAnswer,
    /// When the executor had the answer: an accepted acknowledgement committed before this.
    pub answered_at_ms: u64,
}

/// A ledger line whose times are not RFC 3339, or fall before the Unix epoch.
#[derive(Debug, thiserror::Error)]
#[error(
    "the ledger line of order {order_id} (token {token}): {field} {value:?} is not a time in RFC 3339 after 1970"
)]
pub struct LedgerTimeError {
    pub order_id: String,
    pub token: u64,
    pub field: &'static str,
    pub value: String,
}

/// `value` (RFC 3339) in milliseconds since the epoch, or the error naming the line and field.
fn ledger_ms(
    order_id: &str,
    token: u64,
    field: &'static str,
    value: &str,
) -> Result<u64, LedgerTimeError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .ok()
        .and_then(|time| u64::try_from(time.timestamp_millis()).ok())
        .ok_or_else(|| LedgerTimeError {
            order_id: order_id.to_owned(),
            token,
            field,
            value: value.to_owned(),
        })
}

impl Execution {
    /// The execution an executor recorded in its ledger, with its times in milliseconds.
    pub fn from_ledger(line: &executor::Execution) -> Result<Execution, LedgerTimeError> {
        let ms = |field, value: &str| ledger_ms(&line.order_id, line.token, field, value);
        Ok(Execution {
            order_id: line.order_id.clone(),
            executor_id: line.executor_id.clone(),
            token: line.token,
            priority: line.priority,
            customer: line.customer.clone(),
            dequeued_at_ms: ms("dequeued_at", &line.dequeued_at)?,
            executed_at_ms: ms("executed_at", &line.executed_at)?,
        })
    }
}

impl Acknowledgement {
    /// The answer an executor recorded in its ledger, with its time in milliseconds.
    pub fn from_ledger(
        line: &executor::Acknowledgement,
    ) -> Result<Acknowledgement, LedgerTimeError> {
        Ok(Acknowledgement {
            order_id: line.order_id.clone(),
            executor_id: line.executor_id.clone(),
            token: line.token,
            answer: line.answer,
            answered_at_ms: ledger_ms(
                &line.order_id,
                line.token,
                "answered_at",
                &line.answered_at,
            )?,
        })
    }
}

/// Where the cluster says an order is, once the run has healed and drained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum OrderState {
    /// The cluster does not know the order.
    Unknown,
    Queued,
    Executing {
        executor_id: String,
        token: u64,
    },
    /// Executed by `executor_id` under `token` (its recorded execution), and acknowledged under
    /// `acknowledged_token`: the same lease, or a later holder's that found the execution
    /// recorded and only acknowledged it.
    Executed {
        executor_id: String,
        token: u64,
        acknowledged_token: u64,
        /// Whether the cluster holds an execution record for it (its acknowledgement needs
        /// one): an executor that cannot learn whether its record committed writes no ledger
        /// line, and the record is then all that says who executed the order.
        recorded: bool,
    },
    /// The cluster gave no answer in time: the run cannot say where the order is.
    Unreadable {
        error: String,
    },
}

/// The cluster's final word on one order, read at the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalState {
    pub order_id: String,
    #[serde(flatten)]
    pub state: OrderState,
    /// What the cluster holds of the order; none when it does not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<OrderContents>,
    /// Where the cluster placed the order in its dequeue order; none when it does not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<QueuePlace>,
}

/// What, beside its priority, fixes an order's place in the queue's dequeue order (queue-raft's
/// `DequeueKey`: `enqueued_at_queue_ms − 500 ms × priority`, then `sequence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePlace {
    /// The queue's own time at the enqueue (its replicated clock, never a wall clock).
    pub enqueued_at_queue_ms: u64,
    /// Its position in commit order.
    pub sequence: u64,
}

/// The cluster once healed and drained: the queue at the leader, and each replica's own state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEnd {
    /// The leader's queue depth, and the ids it listed (all of them, up to the listing's limit).
    pub queue_depth: u64,
    pub queued_order_ids: Vec<String>,
    /// Why the queue could not be listed at the end, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing_error: Option<String>,
    pub replicas: Vec<ReplicaState>,
}

/// One queue node's own view at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    pub node_id: u64,
    /// Its role and term, and how far its log, its commit and its state machine got: for a
    /// reader of a failed run (entries appended but not committed, or never proposed).
    pub role: String,
    pub term: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// SHA-256 of the node's applied state (see `ClusterStatusResponse.state_digest`).
    pub state_digest: String,
    pub queue_depth: u64,
    pub executed_count: u64,
    /// Why the node gave no state; the other fields are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a nemesis event starts a fault or ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultPhase {
    Inject,
    Repair,
}

/// What the nemesis did, and when: a fault of some kind (its name, e.g. `kill-queue-node`)
/// injected into or repaired on its targets (process names such as `queue-1`, `executor-2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NemesisEvent {
    pub at_ms: u64,
    pub fault: String,
    pub phase: FaultPhase,
    pub targets: Vec<String>,
}

/// A process that exited without being told to (a crash, a panic, an exit on an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessExit {
    /// When the runner noticed it (it polls every few hundred milliseconds).
    pub at_ms: u64,
    pub process: String,
    /// How it ended (`exit status: 101`, `signal: 6 (SIGABRT)`).
    pub status: String,
    /// The last lines of its log, for the report.
    pub log_tail: String,
}

/// A history file that cannot be read or written, naming the file and the line.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
}

impl History {
    /// Reads a history directory; every file must be present (an empty file is an empty list).
    pub fn load(dir: &Path) -> Result<History, HistoryError> {
        Ok(History {
            run: read_value(&dir.join(RUN_FILE))?,
            operations: read_lines(&dir.join(OPERATIONS_FILE))?,
            reads: read_lines(&dir.join(READS_FILE))?,
            executions: read_lines(&dir.join(EXECUTIONS_FILE))?,
            acknowledgements: read_lines(&dir.join(ACKNOWLEDGEMENTS_FILE))?,
            final_states: read_lines(&dir.join(FINAL_STATES_FILE))?,
            end: read_value(&dir.join(END_FILE))?,
            nemesis: read_lines(&dir.join(NEMESIS_FILE))?,
            exits: read_lines(&dir.join(EXITS_FILE))?,
        })
    }

    /// Writes the history into `dir` (which must exist), replacing its files.
    pub fn save(&self, dir: &Path) -> Result<(), HistoryError> {
        write_value(&dir.join(RUN_FILE), &self.run)?;
        write_lines(&dir.join(OPERATIONS_FILE), &self.operations)?;
        write_lines(&dir.join(READS_FILE), &self.reads)?;
        write_lines(&dir.join(EXECUTIONS_FILE), &self.executions)?;
        write_lines(&dir.join(ACKNOWLEDGEMENTS_FILE), &self.acknowledgements)?;
        write_lines(&dir.join(FINAL_STATES_FILE), &self.final_states)?;
        write_value(&dir.join(END_FILE), &self.end)?;
        write_lines(&dir.join(NEMESIS_FILE), &self.nemesis)?;
        write_lines(&dir.join(EXITS_FILE), &self.exits)
    }
}

/// Reads one JSON value, the whole file.
pub fn read_value<T: DeserializeOwned>(path: &Path) -> Result<T, HistoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| HistoryError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| HistoryError::Parse {
        path: path.to_owned(),
        line: 1,
        source,
    })
}

/// Writes one JSON value, pretty, as the whole file.
pub fn write_value<T: Serialize>(path: &Path, value: &T) -> Result<(), HistoryError> {
    let write_error = |source| HistoryError::Write {
        path: path.to_owned(),
        source,
    };
    let text = serde_json::to_string_pretty(value).map_err(|error| write_error(error.into()))?;
    std::fs::write(path, text + "\n").map_err(write_error)
}

/// Reads one JSON value per non-empty line.
pub fn read_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, HistoryError> {
    let read_error = |source| HistoryError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut records = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
            path: path.to_owned(),
            line: number + 1,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Writes one JSON value per line.
pub fn write_lines<T: Serialize>(path: &Path, records: &[T]) -> Result<(), HistoryError> {
    let write_error = |source| HistoryError::Write {
        path: path.to_owned(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(write_error)?);
    for record in records {
        serde_json::to_writer(&mut out, record).map_err(|error| write_error(error.into()))?;
        out.write_all(b"\n").map_err(write_error)?;
    }
    out.flush().map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_round_trips_through_its_directory() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let contents = OrderContents {
            customer: "Ada".into(),
            items: vec![Item {
                title: "Emma".into(),
                quantity: 3,
            }],
        };
        let history = History {
            run: RunWindow {
                seed: 42,
                clients_started_at_ms: 1,
                clients_stopped_at_ms: 99,
                clock_steps: vec![ClockStep {
                    at_ms: 50,
                    step_ms: -1_000,
                }],
            },
            operations: vec![ClientOperation {
                client: "checkout-1".into(),
                kind: OperationKind::Checkout,
                order_id: "o-1".into(),
                contents: contents.clone(),
                invoked_at_ms: 10,
                completed_at_ms: 20,
                outcome: Outcome::Unknown,
                detail: Some("timed out".into()),
            }],
            reads: vec![
                ReadOperation {
                    client: "reader-1".into(),
                    kind: ReadKind::GetOrder,
                    via: "queue-2".into(),
                    order_id: Some("o-1".into()),
                    invoked_at_ms: 21,
                    completed_at_ms: 22,
                    result: ReadResult::Order {
                        state: ReadState::Queued,
                    },
                },
                ReadOperation {
                    client: "reader-2".into(),
                    kind: ReadKind::ListQueue,
                    via: "leader".into(),
                    order_id: None,
                    invoked_at_ms: 23,
                    completed_at_ms: 24,
                    result: ReadResult::Queue {
                        order_ids: vec!["o-1".into()],
                        depth: 1,
                    },
                },
            ],
            executions: vec![Execution {
                order_id: "o-1".into(),
                executor_id: "executor-1".into(),
                token: 7,
                priority: 3,
                customer: "Ada".into(),
                dequeued_at_ms: 30,
                executed_at_ms: 40,
            }],
            acknowledgements: vec![Acknowledgement {
                order_id: "o-1".into(),
                executor_id: "executor-1".into(),
                token: 7,
                answer: AcknowledgementAnswer::Accepted,
                answered_at_ms: 41,
            }],
            final_states: vec![FinalState {
                order_id: "o-1".into(),
                state: OrderState::Executed {
                    executor_id: "executor-1".into(),
                    token: 7,
                    acknowledged_token: 7,
                    recorded: true,
                },
                contents: Some(contents),
                place: Some(QueuePlace {
                    enqueued_at_queue_ms: 1_250,
                    sequence: 4,
                }),
            }],
            end: ClusterEnd {
                queue_depth: 0,
                queued_order_ids: Vec::new(),
                listing_error: None,
                replicas: vec![ReplicaState {
                    node_id: 1,
                    role: "leader".into(),
                    term: 3,
                    last_log_index: 12,
                    commit_index: 12,
                    applied_index: 12,
                    state_digest: "ab".into(),
                    queue_depth: 0,
                    executed_count: 1,
                    error: None,
                }],
            },
            nemesis: vec![NemesisEvent {
                at_ms: 5,
                fault: "partition-queue-node".into(),
                phase: FaultPhase::Inject,
                targets: vec!["queue-2".into()],
            }],
            exits: vec![ProcessExit {
                at_ms: 60,
                process: "orchestrator".into(),
                status: "exit status: 101".into(),
                log_tail: "panicked".into(),
            }],
        };
        history.save(dir.path()).expect("the history is written");
        assert_eq!(
            History::load(dir.path()).expect("a saved history loads"),
            history
        );
    }

    fn ledger_line(dequeued_at: &str, executed_at: &str) -> executor::Execution {
        executor::Execution {
            order_id: "o-1".into(),
            executor_id: "executor-2".into(),
            token: 9,
            priority: 4,
            customer: "Ada".into(),
            dequeued_at: dequeued_at.into(),
            executed_at: executed_at.into(),
        }
    }

    #[test]
    fn a_ledger_line_becomes_an_execution_in_milliseconds() {
        let line = ledger_line("2026-11-27T10:00:00.250Z", "2026-11-27T11:00:00.500+01:00");
        assert_eq!(
            Execution::from_ledger(&line).expect("both times are RFC 3339"),
            Execution {
                order_id: "o-1".into(),
                executor_id: "executor-2".into(),
                token: 9,
                priority: 4,
                customer: "Ada".into(),
                dequeued_at_ms: 1_795_773_600_250,
                executed_at_ms: 1_795_773_600_500,
            }
        );
        let answer = executor::Acknowledgement {
            order_id: "o-1".into(),
            executor_id: "executor-2".into(),
            token: 9,
            answer: AcknowledgementAnswer::Refused,
            refusal: "stale".into(),
            answered_at: "2026-11-27T10:00:00.750Z".into(),
        };
        assert_eq!(
            Acknowledgement::from_ledger(&answer).expect("RFC 3339"),
            Acknowledgement {
                order_id: "o-1".into(),
                executor_id: "executor-2".into(),
                token: 9,
                answer: AcknowledgementAnswer::Refused,
                answered_at_ms: 1_795_773_600_750,
            }
        );
    }

    #[test]
    fn a_ledger_line_with_a_bad_time_is_an_error_naming_the_field() {
        let error =
            Execution::from_ledger(&ledger_line("yesterday", "2026-11-27T10:00:00Z")).unwrap_err();
        assert_eq!(
            (error.field, error.value.as_str()),
            ("dequeued_at", "yesterday")
        );
        let error =
            Execution::from_ledger(&ledger_line("2026-11-27T10:00:00Z", "1969-12-31T23:59:59Z"))
                .unwrap_err();
        assert_eq!(error.field, "executed_at");
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_number() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(EXITS_FILE);
        std::fs::write(
            &path,
            "{\"at_ms\":1,\"process\":\"q\",\"status\":\"x\",\"log_tail\":\"\"}\n\nnot json\n",
        )
        .expect("history file written");
        let error = read_lines::<ProcessExit>(&path).unwrap_err().to_string();
        assert!(error.contains("exits.jsonl, line 3"), "{error}");
    }

    #[test]
    fn contents_compare_in_any_item_order_and_give_the_priority() {
        let item = |title: &str, quantity| Item {
            title: title.into(),
            quantity,
        };
        let one = OrderContents {
            customer: "Ada".into(),
            items: vec![item("Emma", 2), item("Persuasion", 3)],
        };
        let reordered = OrderContents {
            customer: "Ada".into(),
            items: vec![item("Persuasion", 3), item("Emma", 2)],
        };
        assert!(one.same_as(&reordered));
        assert_eq!(one.priority(), 5);
        let changed = OrderContents {
            items: vec![item("Emma", 2), item("Persuasion", 4)],
            ..reordered
        };
        assert!(!one.same_as(&changed));
    }
}
