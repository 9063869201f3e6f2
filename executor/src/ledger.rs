//! The executions ledger: the visible effect of executing an order, one JSON line per execution
//! appended to a file (several executors may share it: each line is one `write` to a file opened
//! for appending), and flushed to disk before the executor acknowledges the order.
//!
//! Each line carries the fencing token it was written under. The executor writes only while its
//! lease is confirmed and right after renewing it, so the acknowledgement has a whole lease to
//! commit in; if it still does not (the executor dies in between, or the cluster stays leaderless
//! longer than a lease), the order is executed again by the next leader and the ledger holds two
//! lines for it. The cluster's executed record names the token that counts: a reader keeps the
//! line with that token, which is what fencing means for a store that cannot check tokens itself.
//!
//! After the acknowledgement, a second line records the cluster's answer to it
//! ([`Acknowledgement`]): accepted, refused, or never answered. The ledger is not fenced by it;
//! it is what lets a reader (the chaos checker) tell an execution the cluster gave back from one
//! whose acknowledgement the cluster accepted and then forgot.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One execution of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub order_id: String,
    pub executor_id: String,
    /// The fencing token of the lease it was executed under.
    pub token: u64,
    pub priority: u32,
    pub customer: String,
    /// When the executor began the dequeue that returned the order (before its first attempt),
    /// RFC 3339 with milliseconds: with `executed_at` it bounds the time the order was in hand,
    /// so that a history checker can tell overlapping executions apart.
    pub dequeued_at: String,
    /// When the execution's work finished, while the lease was still confirmed (before its
    /// record was asked for), RFC 3339 with milliseconds. The line itself is written once the
    /// record is known to have committed, which may be much later.
    pub executed_at: String,
}

/// The cluster's answer to the acknowledgement of one execution, as the executor heard it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub order_id: String,
    pub executor_id: String,
    /// The token of the execution acknowledged.
    pub token: u64,
    pub answer: AcknowledgementAnswer,
    /// Why the cluster refused it; empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub refusal: String,
    /// When the answer arrived (or the executor stopped waiting for one), RFC 3339 with
    /// milliseconds: an accepted acknowledgement was committed before this.
    pub answered_at: String,
}

/// What the cluster said to an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcknowledgementAnswer {
    /// Committed: the order is recorded executed under this token.
    Accepted,
    /// Definitely not recorded under this token (stale token, order not executing under it).
    Refused,
    /// No answer before the executor gave up (shutting down, or the cluster refused the call as
    /// malformed): the cluster's record says whether it counted.
    Unanswered,
}

/// One line of the ledger. Untagged, so that an execution's line reads as it always has; an
/// acknowledgement's line is told apart by its `answer` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LedgerLine {
    Acknowledgement(Acknowledgement),
    Execution(Execution),
}

/// Why an execution could not be recorded; the order is then not acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("cannot append to the ledger {path}: {source}")]
pub struct LedgerError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// An append-only file of [`Execution`]s.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `execution` as one line and waits until it is on disk.
    pub async fn record(&self, execution: &Execution) -> Result<(), LedgerError> {
        self.append(execution).await
    }

    /// Appends the answer to an acknowledgement as one line and waits until it is on disk.
    pub async fn record_acknowledgement(
        &self,
        acknowledgement: &Acknowledgement,
    ) -> Result<(), LedgerError> {
        self.append(acknowledgement).await
    }

    async fn append(&self, record: &impl Serialize) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let error = |source| LedgerError {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(record).map_err(|json| error(json.into()))?;
        line.push(b'\n');
        tokio::task::spawn_blocking(move || append_durably(&path, &line))
            .await
            .map_err(|join| error(std::io::Error::other(join)))?
            .map_err(error)
    }

    /// Every execution recorded so far, in file order; for tests and tools.
    pub fn read_all(path: &Path) -> Result<Vec<Execution>, LedgerError> {
        Ok(Self::read_lines(path)?
            .into_iter()
            .filter_map(|line| match line {
                LedgerLine::Execution(execution) => Some(execution),
                LedgerLine::Acknowledgement(_) => None,
            })
            .collect())
    }

    /// Every line recorded so far, executions and acknowledgements, in file order.
    pub fn read_lines(path: &Path) -> Result<Vec<LedgerLine>, LedgerError> {
        let error = |source| LedgerError {
            path: path.to_owned(),
            source,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(missing) if missing.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(other) => return Err(error(other)),
        };
        text.lines()
            .map(|line| serde_json::from_str(line).map_err(|json| error(json.into())))
            .collect()
    }
}

/// One `write` of the whole line, so that concurrent appenders never interleave, then `fsync`.
fn append_durably(path: &Path, line: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(order_id: &str, token: u64) -> Execution {
        Execution {
            order_id: order_id.to_owned(),
            executor_id: "executor-1".to_owned(),
            token,
            priority: 3,
            customer: "Ada".to_owned(),
            dequeued_at: "2026-11-27T09:59:59.500Z".to_owned(),
            executed_at: "2026-11-27T10:00:00.000Z".to_owned(),
        }
    }

    #[tokio::test]
    async fn executions_are_appended_one_line_each() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("executions.jsonl");
        assert_eq!(Ledger::read_all(&path).expect("no ledger yet"), []);
        let ledger = Ledger::new(&path);
        ledger.record(&execution("a", 1)).await.expect("append");
        ledger.record(&execution("b", 2)).await.expect("append");
        assert_eq!(
            Ledger::read_all(&path).expect("read back"),
            [execution("a", 1), execution("b", 2)]
        );
    }

    #[tokio::test]
    async fn acknowledgements_are_lines_of_their_own() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("executions.jsonl");
        let ledger = Ledger::new(&path);
        let acknowledgement = Acknowledgement {
            order_id: "a".to_owned(),
            executor_id: "executor-1".to_owned(),
            token: 1,
            answer: AcknowledgementAnswer::Refused,
            refusal: "stale token".to_owned(),
            answered_at: "2026-11-27T10:00:00.100Z".to_owned(),
        };
        ledger.record(&execution("a", 1)).await.expect("append");
        ledger
            .record_acknowledgement(&acknowledgement)
            .await
            .expect("append");
        assert_eq!(
            Ledger::read_lines(&path).expect("read back"),
            [
                LedgerLine::Execution(execution("a", 1)),
                LedgerLine::Acknowledgement(acknowledgement)
            ]
        );
        assert_eq!(
            Ledger::read_all(&path).expect("read back"),
            [execution("a", 1)]
        );
    }

    #[tokio::test]
    async fn an_unwritable_ledger_is_an_error() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ledger = Ledger::new(dir.path().join("missing-dir").join("executions.jsonl"));
        let error = ledger.record(&execution("a", 1)).await.unwrap_err();
        assert_eq!(error.source.kind(), std::io::ErrorKind::NotFound);
    }
}
