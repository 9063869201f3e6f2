//! The leader's write path. openraft 0.9 turns each `client_write` into a log entry of its own,
//! with its own flush to disk and its own replication round; under load that per-entry cost is
//! what limits the queue. The [`Proposer`] puts the commands that arrive while earlier entries
//! are in flight into one [`Command::Batch`] entry (see [`crate::batching`]), so that one flush
//! and one round trip carry many writes, and hands every caller its own answer.
//!
//! Invariant: every entry in flight ends, and frees its slot, within [`PROPOSAL_DEADLINE`], and
//! at once when this node stops leading. openraft answers a pending `client_write` only when its
//! entry is applied or truncated here; a deposed leader caught up by a snapshot past its pending
//! entries has them purged, never answered, and would otherwise hold its slots, and every later
//! write on this node behind them, for good.

use std::future::Future;
use std::time::Duration;

use openraft::error::{ClientWriteError, Fatal, ForwardToLeader, RaftError};
use openraft::{BasicNode, LogId, Raft, RaftMetrics};
use tokio::sync::{mpsc, oneshot, watch};

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
/// The longest an entry is waited on. A commit takes milliseconds, an election about a second;
/// this is also how long the client waits in all ([`crate::ClientOptions`]), so past it nobody
/// is left to answer.
pub const PROPOSAL_DEADLINE: Duration = Duration::from_secs(5);

/// Why a write was not committed, the same for every command of an entry. The last two leave
/// the outcome open: the entry may still commit under another leader, and a retry (at the leader)
/// is safe, see [`crate::client`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// openraft's answer: not the leader (naming it), or Raft stopped or failed (boxed: it is
    /// large, and travels in every answer).
    #[error(transparent)]
    Raft(Box<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>),
    /// This node stopped leading while the write was in flight; the leader now, if known.
    #[error("this node stopped leading before the write committed; it may still commit")]
    Deposed(ForwardToLeader<NodeId, BasicNode>),
    /// The write did not commit within [`PROPOSAL_DEADLINE`].
    #[error("the write did not commit within {0:?}; it may still commit")]
    TimedOut(Duration),
}

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
        // Bounded by count only: each command is one client call, which the server's message
        // limit bounds already.
        let bounds = batching::BatchBounds {
            requests: MAX_COMMANDS_PER_ENTRY,
            bytes: usize::MAX,
        };
        tokio::spawn(batching::run(
            waiting,
            MAX_ENTRIES_IN_FLIGHT,
            bounds,
            |_: &Proposal| 0,
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
    WriteError::Raft(Box::new(RaftError::Fatal(Fatal::Stopped)))
}

/// Writes one entry for `batch` and answers each proposal, within [`PROPOSAL_DEADLINE`].
async fn commit(raft: Raft<TypeConfig>, batch: Vec<Proposal>) {
    let (commands, replies): (Vec<Command>, Vec<_>) = batch
        .into_iter()
        .map(|proposal| (proposal.command, proposal.reply))
        .unzip();
    metrics::histogram!("bookstore_raft_entry_commands").record(commands.len() as f64);
    // Watched from before the proposal, so that a step-down after it is seen.
    let deposed = stopped_leading(raft.metrics());
    let written = settle(
        raft.client_write(Command::group(commands)),
        deposed,
        PROPOSAL_DEADLINE,
    )
    .await;
    let answers = match written {
        Ok(written) => answers_of(written.log_id, written.data, replies.len()),
        Err(error) => {
            if !matches!(error, WriteError::Raft(_)) {
                tracing::warn!(%error, commands = replies.len(), "write given up");
            }
            vec![Err(error); replies.len()]
        }
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        // A caller that gave up (its request was cancelled) no longer waits for the answer.
        let _ = reply.send(answer);
    }
}

/// What `write` ends with, unless `deposed` resolves first (the node stopped leading) or
/// `deadline` passes. Dropping `write` only stops waiting: openraft goes on with the entry.
async fn settle<T>(
    write: impl Future<Output = Result<T, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>>,
    deposed: impl Future<Output = ForwardToLeader<NodeId, BasicNode>>,
    deadline: Duration,
) -> Result<T, WriteError> {
    tokio::select! {
        // An answer that is there wins over a step-down seen at the same time.
        biased;
        written = write => written.map_err(|error| WriteError::Raft(Box::new(error))),
        leader = deposed => Err(WriteError::Deposed(leader)),
        () = tokio::time::sleep(deadline) => Err(WriteError::TimedOut(deadline)),
    }
}

/// Resolves when this node, leading now, no longer leads in the same term, with the leader it
/// knows of then. Never resolves if it does not lead now (openraft itself then refuses the write
/// as not the leader), nor once Raft has stopped (the write then fails by itself).
async fn stopped_leading(
    mut metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
) -> ForwardToLeader<NodeId, BasicNode> {
    let leading_term = {
        let now = metrics.borrow_and_update();
        now.state.is_leader().then_some(now.current_term)
    };
    let Some(leading_term) = leading_term else {
        return std::future::pending().await;
    };
    loop {
        {
            let now = metrics.borrow_and_update();
            if !now.state.is_leader() || now.current_term != leading_term {
                return leader_known_to(&now);
            }
        }
        if metrics.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The leader `metrics` name, if it is another node, with its address.
fn leader_known_to(metrics: &RaftMetrics<NodeId, BasicNode>) -> ForwardToLeader<NodeId, BasicNode> {
    match metrics
        .current_leader
        .filter(|leader| *leader != metrics.id)
    {
        Some(leader) => ForwardToLeader {
            leader_id: Some(leader),
            leader_node: metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .cloned(),
        },
        None => ForwardToLeader::empty(),
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
    use openraft::{CommittedLeaderId, ServerState};

    /// A write that never ends, as one whose entry was purged past.
    fn never_answered()
    -> impl Future<Output = Result<(), RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>>
    {
        std::future::pending()
    }

    fn leading(term: u64) -> RaftMetrics<NodeId, BasicNode> {
        let mut metrics = RaftMetrics::new_initial(1);
        metrics.state = ServerState::Leader;
        metrics.current_term = term;
        metrics.current_leader = Some(1);
        metrics
    }

    #[tokio::test]
    async fn a_write_that_is_never_answered_times_out() {
        let deadline = Duration::from_millis(20);
        let outcome = settle(never_answered(), std::future::pending(), deadline).await;
        assert_eq!(outcome, Err(WriteError::TimedOut(deadline)));
    }

    #[tokio::test]
    async fn a_step_down_ends_the_wait_at_once_and_an_answer_there_wins_over_it() {
        let forward = ForwardToLeader::new(2, BasicNode::new("node-2:50062"));
        let outcome = settle(
            never_answered(),
            std::future::ready(forward.clone()),
            Duration::from_secs(3600),
        )
        .await;
        assert_eq!(outcome, Err(WriteError::Deposed(forward.clone())));

        let answered = settle(
            std::future::ready(Ok(7)),
            std::future::ready(forward),
            Duration::from_secs(3600),
        )
        .await;
        assert_eq!(answered, Ok(7));
    }

    #[tokio::test]
    async fn stepping_down_or_a_new_term_is_seen_and_names_the_new_leader() {
        // Each watch starts (reads the term it leads in) before the change it is to see.
        let (metrics, watched) = watch::channel(leading(3));
        let deposed = stopped_leading(watched);
        let mut follower = leading(4);
        follower.state = ServerState::Follower;
        follower.current_leader = Some(2);
        let (forward, ()) = tokio::join!(deposed, async {
            metrics.send_replace(follower);
        });
        assert_eq!(forward.leader_id, Some(2));

        metrics.send_replace(leading(4));
        let re_elected = stopped_leading(metrics.subscribe());
        let (forward, ()) = tokio::join!(re_elected, async {
            metrics.send_replace(leading(6));
        });
        assert_eq!(
            forward,
            ForwardToLeader::empty(),
            "no other leader is known"
        );
    }

    #[tokio::test]
    async fn a_node_that_does_not_lead_leaves_the_refusal_to_openraft() {
        let mut follower = leading(3);
        follower.state = ServerState::Follower;
        let (_metrics, watched) = watch::channel(follower);
        let waited =
            tokio::time::timeout(Duration::from_millis(20), stopped_leading(watched)).await;
        assert!(waited.is_err(), "a follower is never reported deposed");
    }

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
