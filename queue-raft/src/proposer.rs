//! The leader's write path. openraft 0.9 turns each `client_write` into a log entry of its own,
//! with its own flush to disk and its own replication round; under load that per-entry cost is
//! what limits the queue. The [`Proposer`] puts the commands that arrive while earlier entries
//! are in flight into one [`Command::Batch`] entry (see [`crate::batching`]), so that one flush
//! and one round trip carry many writes, and hands every caller its own answer.

use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::{BasicNode, LogId, Raft};
use tokio::sync::{mpsc, oneshot};

use crate::batching;
use crate::{Command, CommandResponse, NodeId, TypeConfig};

/// How many log entries of client writes may be in flight (proposed, not yet committed and
/// applied) at once. Two let the next entry be flushed and replicated while one is answered.
pub const MAX_ENTRIES_IN_FLIGHT: usize = 2;
/// The most commands one entry carries. It bounds the size of an entry (orders are a few hundred
/// bytes) and so of an append message, which carries up to openraft's `max_payload_entries`.
pub const MAX_COMMANDS_PER_ENTRY: usize = 256;
/// Commands waiting for an entry; a caller beyond this waits to hand its command over.
const WAITING_CAPACITY: usize = 4 * MAX_COMMANDS_PER_ENTRY;

/// Why a write was not committed: openraft's own error, the same for every command of an entry
/// (boxed: it is large, and travels in every answer).
pub type WriteError = Box<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>;

/// A committed command: where it is in the log and what the state machine answered to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub log_id: LogId<NodeId>,
    pub response: CommandResponse,
}

struct Proposal {
    command: Command,
    reply: oneshot::Sender<Result<Committed, WriteError>>,
}

/// Proposes commands to Raft in batches. Clones share one batching task, which ends when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Proposer {
    proposals: mpsc::Sender<Proposal>,
}

impl Proposer {
    /// Starts the batching task on the current tokio runtime.
    pub fn start(raft: Raft<TypeConfig>) -> Self {
        let (proposals, waiting) = mpsc::channel(WAITING_CAPACITY);
        tokio::spawn(batching::run(
            waiting,
            MAX_ENTRIES_IN_FLIGHT,
            MAX_COMMANDS_PER_ENTRY,
            move |batch| commit(raft.clone(), batch),
        ));
        Self { proposals }
    }

    /// Commits `command` through Raft: returns once a majority made it durable and it is applied
    /// on this node, with its log position and the state machine's answer.
    pub async fn write(&self, command: Command) -> Result<Committed, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.proposals
            .send(Proposal { command, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The batching task gone means Raft shut down under it.
fn stopped() -> WriteError {
    Box::new(RaftError::Fatal(Fatal::Stopped))
}

/// Writes one entry for `batch` and answers each proposal.
async fn commit(raft: Raft<TypeConfig>, batch: Vec<Proposal>) {
    let (commands, replies): (Vec<Command>, Vec<_>) = batch
        .into_iter()
        .map(|proposal| (proposal.command, proposal.reply))
        .unzip();
    metrics::histogram!("bookstore_raft_entry_commands").record(commands.len() as f64);
    let answers = match raft.client_write(Command::group(commands)).await {
        Ok(written) => answers_of(written.log_id, written.data, replies.len()),
        Err(error) => vec![Err(Box::new(error)); replies.len()],
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        // A caller that gave up (its request was cancelled) no longer waits for the answer.
        let _ = reply.send(answer);
    }
}

/// One answer for each of `count` commands committed together at `log_id`.
fn answers_of(
    log_id: LogId<NodeId>,
    response: CommandResponse,
    count: usize,
) -> Vec<Result<Committed, WriteError>> {
    let responses = response.ungroup(count);
    debug_assert_eq!(responses.len(), count, "one answer per command of an entry");
    responses
        .into_iter()
        .map(|response| Ok(Committed { log_id, response }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log_id() -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(3, 1), 42)
    }

    #[test]
    fn a_batch_answer_is_split_in_order_and_a_single_one_is_kept_whole() {
        let first = CommandResponse::Enqueued {
            order_id: "a".to_owned(),
            sequence: 1,
        };
        let second = CommandResponse::QueueEmpty;
        let answers = answers_of(
            log_id(),
            CommandResponse::Batch(vec![first.clone(), second.clone()]),
            2,
        );
        let responses: Vec<CommandResponse> = answers
            .into_iter()
            .map(|answer| answer.expect("committed").response)
            .collect();
        assert_eq!(responses, vec![first.clone(), second]);

        let single = answers_of(log_id(), first.clone(), 1);
        assert_eq!(
            single,
            vec![Ok(Committed {
                log_id: log_id(),
                response: first,
            })]
        );
    }
}
