//! The record of a chaos run: what clients asked and were told, what executors executed, what the
//! cluster holds at the end, and what the nemesis did. A run writes it as a directory of files
//! (JSON lines, one record per line) so that a history can be kept, read, and checked again.
//!
//! All times are milliseconds since the Unix epoch, read from the one machine every process of a
//! run shares, so times from different processes compare.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// File names inside a history directory.
pub const OPERATIONS_FILE: &str = "operations.jsonl";
pub const EXECUTIONS_FILE: &str = "executions.jsonl";
pub const FINAL_STATES_FILE: &str = "final.jsonl";
pub const NEMESIS_FILE: &str = "nemesis.jsonl";

/// Everything the checker judges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub operations: Vec<ClientOperation>,
    pub executions: Vec<Execution>,
    pub final_states: Vec<FinalState>,
    pub nemesis: Vec<NemesisEvent>,
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

/// One client operation: one order, with the client's view of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientOperation {
    /// Which client ran it, for reading a history.
    pub client: String,
    pub kind: OperationKind,
    /// The order's id, known before the call (chosen by the client, or derived from its
    /// idempotency key), so that an order whose answer was lost can still be followed.
    pub order_id: String,
    /// The order's priority: the sum of its quantities.
    pub priority: u32,
    pub invoked_at_ms: u64,
    pub completed_at_ms: u64,
    pub outcome: Outcome,
    /// The error or rejection, for a human reading the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One execution of one order, as an executor recorded it in its ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub order_id: String,
    pub executor_id: String,
    /// The fencing token of the lease the order was executed under.
    pub token: u64,
    pub priority: u32,
    /// When the executor began the dequeue that returned this order (before its first attempt).
    pub dequeued_at_ms: u64,
    /// When the execution finished (the ledger line was written).
    pub executed_at_ms: u64,
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

impl Execution {
    /// The execution an executor recorded in its ledger, with its times in milliseconds.
    pub fn from_ledger(line: &executor::ledger::Execution) -> Result<Execution, LedgerTimeError> {
        let milliseconds = |field: &'static str, value: &str| {
            chrono::DateTime::parse_from_rfc3339(value)
                .ok()
                .and_then(|time| u64::try_from(time.timestamp_millis()).ok())
                .ok_or_else(|| LedgerTimeError {
                    order_id: line.order_id.clone(),
                    token: line.token,
                    field,
                    value: value.to_owned(),
                })
        };
        Ok(Execution {
            order_id: line.order_id.clone(),
            executor_id: line.executor_id.clone(),
            token: line.token,
            priority: line.priority,
            dequeued_at_ms: milliseconds("dequeued_at", &line.dequeued_at)?,
            executed_at_ms: milliseconds("executed_at", &line.executed_at)?,
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
    Executed {
        executor_id: String,
        token: u64,
    },
}

/// The cluster's final word on one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalState {
    pub order_id: String,
    #[serde(flatten)]
    pub state: OrderState,
}

/// What the nemesis did, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum NemesisAction {
    /// SIGKILLed a process (`queue-1`, `executor-2`, ...).
    Kill {
        target: String,
    },
    Restart {
        target: String,
    },
    /// Cut a queue node off the network.
    Partition {
        target: String,
    },
    Heal {
        target: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NemesisEvent {
    pub at_ms: u64,
    #[serde(flatten)]
    pub action: NemesisAction,
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
            operations: read_lines(&dir.join(OPERATIONS_FILE))?,
            executions: read_lines(&dir.join(EXECUTIONS_FILE))?,
            final_states: read_lines(&dir.join(FINAL_STATES_FILE))?,
            nemesis: read_lines(&dir.join(NEMESIS_FILE))?,
        })
    }

    /// Writes the history into `dir` (which must exist), replacing its files.
    pub fn save(&self, dir: &Path) -> Result<(), HistoryError> {
        write_lines(&dir.join(OPERATIONS_FILE), &self.operations)?;
        write_lines(&dir.join(EXECUTIONS_FILE), &self.executions)?;
        write_lines(&dir.join(FINAL_STATES_FILE), &self.final_states)?;
        write_lines(&dir.join(NEMESIS_FILE), &self.nemesis)
    }
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
        let history = History {
            operations: vec![ClientOperation {
                client: "checkout-1".into(),
                kind: OperationKind::Checkout,
                order_id: "o-1".into(),
                priority: 3,
                invoked_at_ms: 10,
                completed_at_ms: 20,
                outcome: Outcome::Unknown,
                detail: Some("timed out".into()),
            }],
            executions: vec![Execution {
                order_id: "o-1".into(),
                executor_id: "executor-1".into(),
                token: 7,
                priority: 3,
                dequeued_at_ms: 30,
                executed_at_ms: 40,
            }],
            final_states: vec![FinalState {
                order_id: "o-1".into(),
                state: OrderState::Executed {
                    executor_id: "executor-1".into(),
                    token: 7,
                },
            }],
            nemesis: vec![NemesisEvent {
                at_ms: 5,
                action: NemesisAction::Partition {
                    target: "queue-2".into(),
                },
            }],
        };
        history.save(dir.path()).expect("the history is written");
        assert_eq!(
            History::load(dir.path()).expect("a saved history loads"),
            history
        );
    }

    fn ledger_line(dequeued_at: &str, executed_at: &str) -> executor::ledger::Execution {
        executor::ledger::Execution {
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
                dequeued_at_ms: 1_795_773_600_250,
                executed_at_ms: 1_795_773_600_500,
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
        let path = dir.path().join(NEMESIS_FILE);
        std::fs::write(
            &path,
            "{\"at_ms\":1,\"action\":\"heal\",\"target\":\"q\"}\n\nnot json\n",
        )
        .expect("history file written");
        let error = read_lines::<NemesisEvent>(&path).unwrap_err().to_string();
        assert!(error.contains("nemesis.jsonl, line 3"), "{error}");
    }
}
