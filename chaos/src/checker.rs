//! Judges a [`History`] against the queue's guarantees and the run's floors. [`check`] is pure
//! (a history in, a [`Report`] out) and runs in O(n log n) over the operations, reads and
//! executions, so that the history of a long run (about 10^5 records) is judged in about a
//! second.
//!
//! # Terms
//! - An order is *asked for* when some operation that may have enqueued it names it: one whose
//!   outcome is `Ok` or `Unknown`. An order whose every operation `Failed` was, by the meaning
//!   of `Failed`, never enqueued.
//! - An order is *acknowledged* when an operation naming it has outcome `Ok`; it was acknowledged
//!   at the earliest `completed_at_ms` of those operations.
//! - The cluster *knows* an order when its final state is `Queued`, `Executing` or `Executed`,
//!   or the final listing of the queue names it; a final state `Unknown`, or none, means it does
//!   not.
//! - The *counting execution* of an order whose final state is `Executed { token: T, .. }` is its
//!   ledger line with token `T` (the earliest dequeued, if there are several). Other orders have
//!   none. Ledger lines with a token smaller than `T`, and every ledger line of an order that is
//!   not `Executed` at the end, are *fenced re-executions*: an executor executed the order and
//!   then died or lost its lease before its acknowledgement was accepted, so the cluster gave the
//!   order back to the queue. They are counted, not faults, unless the cluster accepted their
//!   acknowledgement (see *acknowledgements lost*).
//!
//! # Faults of the queue
//! - **lost**: an asked-for order that was acknowledged, or that an executor executed (it has a
//!   ledger line, so the cluster once held it), and that the cluster does not know at the end.
//! - **stuck**: an asked-for order that the cluster knows but that is not `Executed` at the end
//!   (`Queued` or `Executing` after healing and draining), or orders queued at the end beyond
//!   what the final listing names.
//! - **executed twice**: an order whose final state is `Executed { token: T, .. }` and that has
//!   more than one ledger line with token `T`, or any ledger line with a token greater than `T`
//!   (executed again after the cluster recorded it executed), or no ledger line with token `T`
//!   at all (acknowledged without being executed). One fault per order.
//! - **phantom**: an order that is not asked for, yet has a ledger line or an acknowledgement, or
//!   is known to the cluster at the end (its final state, or the final listing of the queue).
//! - **tokens backwards**: every execution (fenced ones included), sorted by `dequeued_at_ms`
//!   (ties by token), must have strictly increasing tokens: each lease dequeues one order and
//!   resigns, and a lease is granted only after the previous one ended. An equal or lower token
//!   is a fault.
//! - **overlapping**: in the same order, an execution whose dequeue began before an earlier
//!   execution with another token finished: two executors held an order at once. The earlier
//!   execution named is the one that finished last. Fenced executions are included: an executor
//!   writes its ledger line only while its lease is confirmed, so even a zombie's line must end
//!   before the next lease's dequeue begins.
//! - **priority skips**: a counting execution X skipped an order Y when Y was acknowledged before
//!   X's dequeue began (at `t`), Y's counting execution began after `t` (or Y has none), and Y
//!   comes before X in the queue's dequeue order: `key(Y) < key(X)`, where `key(o) =
//!   (enqueued_at_queue_ms − 500 ms × priority, sequence)` (queue-raft's `DequeueKey`: priority
//!   with aging) from the enqueue time and sequence the cluster reports for each order at the end
//!   ([`crate::history::QueuePlace`]). An order the cluster reports no place for is not judged.
//!   One fault per skipping execution, naming the first order in dequeue order it skipped.
//! - **acknowledgements lost**: an executor's acknowledgement the cluster accepted (under token
//!   `T`), for an order the cluster does not end with as acknowledged under `T`
//!   (`Executed { acknowledged_token: T, .. }`): the cluster took back a committed write, and
//!   executed the order again or forgot it. The acknowledging lease may be later than the
//!   executing one (`token`): a holder that dequeues an order whose execution is recorded only
//!   acknowledges it.
//! - **refused acknowledgements counted**: an acknowledgement the cluster refused (under `T`),
//!   for an order it ends with as acknowledged under `T`. A retried acknowledgement of the same
//!   lease is answered as the first was, so a refusal means it never committed.
//! - **wrong contents**: an order whose customer or items, as the cluster ends with them, differ
//!   from what its client sent, or whose ledger line names another priority or customer.
//! - **stale reads**: a read that returned a state older than one already established when the
//!   read began (see below).
//! - **replicas diverged**: at the end, a node that gave no state, or nodes that differ in
//!   applied index or in the digest of their applied state.
//!
//! # Faults of the run
//! - **crashes**: a process exited without being told to (a panic, an exit on an error).
//! - **below liveness floor**: a window of the run (see [`LIVENESS_WINDOW_MS`]) in which fewer
//!   checkouts or enqueues were acknowledged, or fewer orders executed, than [`Bounds`] asks.
//! - **unknown outcomes over bound**: more operations ended `Unknown` than [`Bounds`] allows.
//! - **too little contention**: too few dequeues had a choice (two or more acknowledged orders
//!   waiting) for the priority check to have judged anything.
//! - **clock steps**: the machine's wall clock jumped during the run; every check above that
//!   compares times would then be void.
//!
//! # Reads: what a read may not return
//! As Jepsen's register and set checks do, each read is judged against what was established
//! before it began. All the times compared here are read from one machine's wall clock: a
//! read's `invoked_at_ms`, a client's acknowledgement's `completed_at_ms`, and an earlier read's
//! `completed_at_ms`, all taken by the runner; an executor's accepted acknowledgement's
//! `answered_at_ms`, taken by the executor after the answer arrived. Times are whole
//! milliseconds, rounded down, so `a < b` between two of them means the first event happened
//! before the second, and only that is used (never `<=`).
//! - An order is *established as known* from the earliest of: its acknowledgement, and the
//!   completion of any read that saw it (as queued, executing or executed, or listed in the
//!   queue). Enqueues are never undone and records never deleted, so a read invoked after that
//!   must not answer unknown (nor `rejected`).
//! - An order is *established as executed* from the earliest of: an accepted acknowledgement's
//!   answer, and the completion of a read that saw it executed. `Executed` is final, so a read
//!   invoked after that must answer executed: queued, executing, unknown, or a listing of the
//!   queue that names it, are stale.
//!
//! # Why a priority skip is a fault
//! Y was acknowledged, so its enqueue was committed before `completed_at_ms`, hence before X's
//! dequeue began (all times come from one machine's clock) and before the cluster applied that
//! dequeue. At that moment Y was queued: it was not executed (its counting execution began
//! later, and an execution cannot count before its dequeue began), and it was not executing
//! either, because the cluster grants a new lease (X's) only after the previous one ended, and an
//! order executing under an ended lease returns to the queue. The dequeue takes the
//! queued order that comes first in the dequeue order, and an order's key is fixed at its enqueue
//! (an order given back by an ended lease keeps it), so it had to return Y or an order whose key
//! is smaller still, never X. Keys are unique (the sequence breaks ties), so equal priorities are
//! judged too, by the cluster's own commit order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::history::{
    Acknowledgement, AcknowledgementAnswer, ClientOperation, Execution, FaultPhase, History,
    NemesisEvent, OperationKind, OrderContents, OrderState, Outcome, QueuePlace, ReadKind,
    ReadOperation, ReadResult, ReadState,
};
use queue_raft::DequeueKey;

/// How many examples each kind of fault keeps; the count goes on.
pub const MAX_EXAMPLES: usize = 10;
/// The liveness floor is judged per window of about this length: the clients' span is cut into
/// `max(1, span / LIVENESS_WINDOW_MS)` equal windows (a 3-minute run into three minutes; a
/// 150-second run into two windows of 75 s), and each window's floor is the per-minute floor
/// scaled to its length, rounded up.
pub const LIVENESS_WINDOW_MS: u64 = 60_000;

/// The floors and bounds a run is held to, beside the queue's guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bounds {
    /// Checkouts acknowledged per minute, in every window.
    pub min_checkouts_per_minute: u64,
    /// Direct enqueues acknowledged per minute, in every window.
    pub min_enqueues_per_minute: u64,
    /// Orders executed (counting executions finished) per minute, in every window.
    pub min_executions_per_minute: u64,
    /// Operations that may end `Unknown`, per thousand operations.
    pub max_unknown_per_mille: u64,
    /// Dequeues that had a choice (two or more acknowledged orders waiting): at least this
    /// many, and at least `min_contended_percent` of all dequeues.
    pub min_contended_dequeues: usize,
    pub min_contended_percent: usize,
}

impl Bounds {
    /// What `chaos run` and `chaos check` hold a run to. On this project's 2-core machine, with
    /// debug binaries, the run's nemesis and other builds running beside it, the weakest minute
    /// of any run measured acknowledged 134 checkouts and 53 enqueues and executed 185 orders
    /// (a typical minute: about 300, 140 and 450), no operation ended unknown, and more than
    /// three quarters of the dequeues had a choice (docs/RELIABILITY.md, "The floors"). The
    /// floors are a fourth to a fifth of that weakest minute; a system that stops answering for a
    /// minute, or whose queue stays empty, falls below them.
    pub const RUN: Bounds = Bounds {
        min_checkouts_per_minute: 30,
        min_enqueues_per_minute: 15,
        min_executions_per_minute: 45,
        max_unknown_per_mille: 10,
        min_contended_dequeues: 20,
        min_contended_percent: 25,
    };

    /// No floor and no bound: the queue's guarantees alone (the checker's own tests).
    pub const NONE: Bounds = Bounds {
        min_checkouts_per_minute: 0,
        min_enqueues_per_minute: 0,
        min_executions_per_minute: 0,
        max_unknown_per_mille: 1_000,
        min_contended_dequeues: 0,
        min_contended_percent: 0,
    };
}

/// One kind of fault: how many, and the first few, each a sentence for a human.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Findings {
    pub count: usize,
    pub examples: Vec<String>,
}

impl Findings {
    fn add(&mut self, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(example());
        }
    }
}

/// How the operations of one kind ended.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
}

impl OutcomeCounts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Unknown => self.unknown += 1,
        }
    }

    fn total(&self) -> usize {
        self.ok + self.failed + self.unknown
    }
}

/// The reads judged (those with an answer that says something) and those without one.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReadCounts {
    /// Judged `GET /orders/{id}` through the orchestrator.
    pub rest: usize,
    /// Judged `GetOrder` answers.
    pub get_order: usize,
    /// Judged `ListQueue` answers.
    pub list_queue: usize,
    /// Of those judged, the ones asked of one node directly (no leader following).
    pub at_one_node: usize,
    /// Reads that got no answer that says anything (errors, timeouts, "not the leader").
    pub no_answer: usize,
    /// Reads asked of one node while a fault was on it (killed, isolated, or cut off from its
    /// peers), answered or not, and of those the ones answered (and judged).
    pub tried_at_faulted_node: usize,
    pub answered_at_faulted_node: usize,
}

impl ReadCounts {
    pub fn checked(&self) -> usize {
        self.rest + self.get_order + self.list_queue
    }
}

/// How much choice the dequeues had, which is what the priority check can judge.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Contention {
    /// Counting executions (one dequeue each).
    pub dequeues: usize,
    /// Dequeues at which two or more acknowledged orders were waiting.
    pub contended: usize,
    /// Of the contended ones, those where the waiting orders had two or more priorities.
    pub with_priorities_to_choose: usize,
    pub median_waiting: usize,
    pub most_waiting: usize,
}

/// What the checker found: the faults (see the module's documentation for each), then what
/// happened, for the reader.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub lost: Findings,
    pub stuck: Findings,
    pub executed_twice: Findings,
    pub phantom: Findings,
    pub tokens_backwards: Findings,
    pub overlapping: Findings,
    pub priority_skips: Findings,
    pub acknowledgements_lost: Findings,
    pub refused_acknowledgements_counted: Findings,
    pub wrong_contents: Findings,
    pub stale_reads: Findings,
    pub replicas_diverged: Findings,
    pub crashes: Findings,
    pub below_liveness_floor: Findings,
    pub unknown_outcomes_over_bound: Findings,
    pub too_little_contention: Findings,
    pub clock_steps: Findings,
    pub checkouts: OutcomeCounts,
    pub enqueues: OutcomeCounts,
    pub reads: ReadCounts,
    /// Ledger lines.
    pub executions: usize,
    pub fenced_re_executions: usize,
    /// Orders whose final state is `Executed`.
    pub orders_executed: usize,
    pub contention: Contention,
    pub bounds: Option<Bounds>,
}

impl Report {
    /// Every kind of fault with its name, in the order the report prints them.
    pub fn faults(&self) -> [(&'static str, &Findings); 17] {
        [
            ("lost", &self.lost),
            ("stuck", &self.stuck),
            ("executed twice", &self.executed_twice),
            ("phantom", &self.phantom),
            ("tokens backwards", &self.tokens_backwards),
            ("overlapping", &self.overlapping),
            ("priority skips", &self.priority_skips),
            ("acknowledgements lost", &self.acknowledgements_lost),
            (
                "refused acknowledgements counted",
                &self.refused_acknowledgements_counted,
            ),
            ("wrong contents", &self.wrong_contents),
            ("stale reads", &self.stale_reads),
            ("replicas diverged", &self.replicas_diverged),
            ("crashes", &self.crashes),
            ("below liveness floor", &self.below_liveness_floor),
            (
                "unknown outcomes over bound",
                &self.unknown_outcomes_over_bound,
            ),
            ("too little contention", &self.too_little_contention),
            ("clock steps", &self.clock_steps),
        ]
    }

    /// No fault of any kind.
    pub fn is_clean(&self) -> bool {
        self.faults()
            .iter()
            .all(|(_, findings)| findings.count == 0)
    }

    /// Every fault kind and its count on one line: `lost 0, stuck 0, ...`.
    pub fn fault_counts(&self) -> String {
        self.faults()
            .iter()
            .map(|(name, findings)| format!("{name} {}", findings.count))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, findings) in self.faults() {
            writeln!(f, "{name}: {}", findings.count)?;
            for example in &findings.examples {
                writeln!(f, "  - {example}")?;
            }
            if findings.count > findings.examples.len() {
                writeln!(
                    f,
                    "  - and {} more",
                    findings.count - findings.examples.len()
                )?;
            }
        }
        for (name, counts) in [("checkouts", &self.checkouts), ("enqueues", &self.enqueues)] {
            writeln!(
                f,
                "{name}: {} ok, {} failed, {} unknown",
                counts.ok, counts.failed, counts.unknown
            )?;
        }
        let reads = &self.reads;
        writeln!(
            f,
            "reads checked: {} ({} GET /orders, {} GetOrder, {} ListQueue; {} asked of one node), \
             {} without an answer; {} tried at a node under a fault, {} of them answered",
            reads.checked(),
            reads.rest,
            reads.get_order,
            reads.list_queue,
            reads.at_one_node,
            reads.no_answer,
            reads.tried_at_faulted_node,
            reads.answered_at_faulted_node
        )?;
        writeln!(
            f,
            "executions: {} ({} fenced re-executions), orders executed: {}",
            self.executions, self.fenced_re_executions, self.orders_executed
        )?;
        let contention = &self.contention;
        writeln!(
            f,
            "contention: {} of {} dequeues had 2 or more acknowledged orders waiting ({} with \
             priorities to choose from; waiting median {}, most {})",
            contention.contended,
            contention.dequeues,
            contention.with_priorities_to_choose,
            contention.median_waiting,
            contention.most_waiting
        )?;
        write!(
            f,
            "verdict: {}",
            if self.is_clean() { "clean" } else { "FAULTY" }
        )
    }
}

/// Loads the history in `dir` and judges it against [`Bounds::RUN`]: what
/// `chaos check --history DIR` runs.
pub fn run_check(dir: &Path) -> anyhow::Result<Report> {
    let history = History::load(dir)
        .with_context(|| format!("cannot load the history in {}", dir.display()))?;
    Ok(check(&history, Bounds::RUN))
}

/// What the history says about one order.
#[derive(Default)]
struct OrderRecord<'h> {
    asked_for: bool,
    /// The earliest acknowledgement.
    acknowledged_at: Option<u64>,
    /// What its client sent (the first operation naming it).
    sent: Option<&'h OrderContents>,
    final_state: Option<&'h OrderState>,
    final_contents: Option<&'h OrderContents>,
    listed_at_end: bool,
    /// Where the cluster placed it in the dequeue order, as it reports at the end.
    place: Option<QueuePlace>,
    ledger_lines: Vec<&'h Execution>,
    answers: Vec<&'h Acknowledgement>,
}

impl OrderRecord<'_> {
    fn known(&self) -> bool {
        self.listed_at_end
            || matches!(
                self.final_state,
                Some(
                    OrderState::Queued | OrderState::Executing { .. } | OrderState::Executed { .. }
                )
            )
    }

    fn priority(&self) -> u32 {
        self.sent.map_or(0, OrderContents::priority)
    }

    /// Its place in the queue's dequeue order, from the cluster's report and the priority its
    /// client sent (contents the cluster changed are *wrong contents*, judged on their own).
    fn dequeue_key(&self) -> Option<DequeueKey> {
        let place = self.place?;
        Some(DequeueKey::new(
            place.enqueued_at_queue_ms,
            self.priority(),
            place.sequence,
        ))
    }
}

/// Judges `history` against the queue's guarantees and `bounds`.
pub fn check(history: &History, bounds: Bounds) -> Report {
    let mut report = Report {
        executions: history.executions.len(),
        bounds: Some(bounds),
        ..Report::default()
    };
    let orders = index_orders(history, &mut report);
    let mut counting: Vec<&Execution> = Vec::new();
    for (order_id, record) in &orders {
        judge_order(order_id, record, &mut report, &mut counting);
    }
    if let Some(error) = &history.end.listing_error {
        report
            .stuck
            .add(|| format!("the queue could not be listed at the end: {error}"));
    }
    if history.end.queue_depth > history.end.queued_order_ids.len() as u64 {
        report.stuck.add(|| {
            format!(
                "the queue ends {} deep, {} more than its final listing names",
                history.end.queue_depth,
                history.end.queue_depth - history.end.queued_order_ids.len() as u64
            )
        });
    }

    let mut every_execution: Vec<&Execution> = history.executions.iter().collect();
    every_execution.sort_by_key(|execution| (execution.dequeued_at_ms, execution.token));
    check_leases(&every_execution, &mut report);
    counting.sort_by_key(|execution| (execution.dequeued_at_ms, execution.token));
    check_priorities(&orders, &counting, bounds, &mut report);
    check_reads(history, &orders, &mut report);
    check_replicas(history, &mut report);
    check_run(history, &counting, bounds, &mut report);
    report
}

/// Everything the history says, by order id (sorted, so that examples come out the same on
/// every run).
fn index_orders<'h>(
    history: &'h History,
    report: &mut Report,
) -> BTreeMap<&'h str, OrderRecord<'h>> {
    let mut orders: HashMap<&str, OrderRecord> = HashMap::new();
    for operation in &history.operations {
        match operation.kind {
            OperationKind::Checkout => report.checkouts.add(operation.outcome),
            OperationKind::Enqueue => report.enqueues.add(operation.outcome),
        }
        let record = orders.entry(&operation.order_id).or_default();
        record.asked_for |= operation.outcome != Outcome::Failed;
        record.sent.get_or_insert(&operation.contents);
        if operation.outcome == Outcome::Ok {
            record.acknowledged_at = Some(earliest(record.acknowledged_at, operation));
        }
    }
    for state in &history.final_states {
        let record = orders.entry(&state.order_id).or_default();
        record.final_state = Some(&state.state);
        record.final_contents = state.contents.as_ref();
        record.place = state.place;
    }
    for order_id in &history.end.queued_order_ids {
        orders.entry(order_id).or_default().listed_at_end = true;
    }
    for execution in &history.executions {
        orders
            .entry(&execution.order_id)
            .or_default()
            .ledger_lines
            .push(execution);
    }
    for answer in &history.acknowledgements {
        orders
            .entry(&answer.order_id)
            .or_default()
            .answers
            .push(answer);
    }
    orders.into_iter().collect()
}

fn earliest(earlier: Option<u64>, operation: &ClientOperation) -> u64 {
    earlier.map_or(operation.completed_at_ms, |earlier| {
        earlier.min(operation.completed_at_ms)
    })
}

/// The faults one order alone can show; its counting execution, if any, joins `counting`.
fn judge_order<'h>(
    order_id: &str,
    record: &OrderRecord<'h>,
    report: &mut Report,
    counting: &mut Vec<&'h Execution>,
) {
    let known = record.known();
    if !record.asked_for && (known || !record.ledger_lines.is_empty() || !record.answers.is_empty())
    {
        report.phantom.add(|| {
            format!(
                "{order_id} was never asked for, yet the cluster ends with {}{} and the ledger \
                 holds {} line(s) for it",
                describe(record.final_state),
                if record.listed_at_end {
                    " (listed in the queue)"
                } else {
                    ""
                },
                record.ledger_lines.len()
            )
        });
    }
    let unreadable = matches!(record.final_state, Some(OrderState::Unreadable { .. }));
    if record.asked_for
        && !known
        && !unreadable
        && (record.acknowledged_at.is_some() || !record.ledger_lines.is_empty())
    {
        report.lost.add(|| match record.acknowledged_at {
            Some(at_ms) => {
                format!("{order_id}, acknowledged at {at_ms}, is unknown to the cluster")
            }
            None => format!(
                "{order_id}, executed by {}, is unknown to the cluster",
                executors_of(&record.ledger_lines)
            ),
        });
    }
    let executed = matches!(record.final_state, Some(OrderState::Executed { .. }));
    if record.asked_for && ((known && !executed) || unreadable) {
        report.stuck.add(|| {
            format!(
                "{order_id} ends {}{} after healing and draining",
                describe(record.final_state),
                if record.listed_at_end {
                    " (listed in the queue)"
                } else {
                    ""
                }
            )
        });
    }
    let acknowledged_token = match record.final_state {
        Some(OrderState::Executed {
            token,
            acknowledged_token,
            ..
        }) => {
            report.orders_executed += 1;
            if let Some(execution) = judge_executed(order_id, *token, &record.ledger_lines, report)
            {
                counting.push(execution);
            }
            Some(*acknowledged_token)
        }
        _ => {
            report.fenced_re_executions += record.ledger_lines.len();
            None
        }
    };
    judge_answers(order_id, acknowledged_token, &record.answers, report);
    judge_contents(order_id, record, report);
}

/// Judges the ledger of an order the cluster ends with as executed under `token`, and returns
/// its counting execution.
fn judge_executed<'h>(
    order_id: &str,
    token: u64,
    ledger_lines: &[&'h Execution],
    report: &mut Report,
) -> Option<&'h Execution> {
    let at_token: Vec<&Execution> = ledger_lines
        .iter()
        .copied()
        .filter(|line| line.token == token)
        .collect();
    let after: Vec<u64> = ledger_lines
        .iter()
        .map(|line| line.token)
        .filter(|&line_token| line_token > token)
        .collect();
    report.fenced_re_executions += ledger_lines
        .iter()
        .filter(|line| line.token < token)
        .count();
    if at_token.is_empty() {
        report.executed_twice.add(|| {
            format!("{order_id} is recorded executed under token {token}, which has no ledger line")
        });
    } else if at_token.len() > 1 {
        report.executed_twice.add(|| {
            format!(
                "{order_id} has {} ledger lines under token {token}, by {}",
                at_token.len(),
                executors_of(&at_token)
            )
        });
    } else if !after.is_empty() {
        report.executed_twice.add(|| {
            format!(
                "{order_id} is recorded executed under token {token}, yet executed again under \
                 token(s) {after:?}"
            )
        });
    }
    at_token.into_iter().min_by_key(|line| line.dequeued_at_ms)
}

/// The acknowledgements' answers against the cluster's final record (`acknowledged_token`, the
/// lease whose acknowledgement it counts, when it ends executed).
fn judge_answers(
    order_id: &str,
    acknowledged_token: Option<u64>,
    answers: &[&Acknowledgement],
    report: &mut Report,
) {
    let ends = || match acknowledged_token {
        Some(token) => format!("ends acknowledged under token {token}"),
        None => "does not end executed".to_owned(),
    };
    if let Some(accepted) = answers.iter().find(|answer| {
        answer.answer == AcknowledgementAnswer::Accepted && Some(answer.token) != acknowledged_token
    }) {
        report.acknowledgements_lost.add(|| {
            format!(
                "{order_id}: the acknowledgement of {} under token {} was accepted (answered at \
                 {}), yet the order {}",
                accepted.executor_id,
                accepted.token,
                accepted.answered_at_ms,
                ends()
            )
        });
    }
    if let Some(refused) = answers.iter().find(|answer| {
        answer.answer == AcknowledgementAnswer::Refused && Some(answer.token) == acknowledged_token
    }) {
        report.refused_acknowledgements_counted.add(|| {
            format!(
                "{order_id}: the acknowledgement of {} under token {} was refused (answered at \
                 {}), yet the order {}",
                refused.executor_id,
                refused.token,
                refused.answered_at_ms,
                ends()
            )
        });
    }
}

/// The order as the cluster ends with it, and as its executions name it, against what its
/// client sent. One fault per order, naming the first difference.
fn judge_contents(order_id: &str, record: &OrderRecord, report: &mut Report) {
    let Some(sent) = record.sent else {
        return;
    };
    let held = record
        .final_contents
        .filter(|held| !held.same_as(sent))
        .map(|held| format!("the cluster holds {held:?}"));
    let executed = record
        .ledger_lines
        .iter()
        .find(|line| line.priority != sent.priority() || line.customer != sent.customer)
        .map(|line| {
            format!(
                "{} executed it (token {}) as priority {} for {:?}",
                line.executor_id, line.token, line.priority, line.customer
            )
        });
    if let Some(difference) = held.or(executed) {
        report.wrong_contents.add(|| {
            format!(
                "{order_id} was sent as {sent:?} (priority {}), but {difference}",
                sent.priority()
            )
        });
    }
}

/// Tokens backwards and overlapping executions, over every execution in dequeue order.
fn check_leases(executions: &[&Execution], report: &mut Report) {
    let mut finished_last: Option<&Execution> = None;
    for (index, execution) in executions.iter().enumerate() {
        if let Some(previous) = index.checked_sub(1).map(|previous| executions[previous])
            && execution.token <= previous.token
        {
            report.tokens_backwards.add(|| {
                format!(
                    "{} (token {}, by {}, dequeued at {}) follows {} (token {}, by {}, dequeued \
                     at {})",
                    execution.order_id,
                    execution.token,
                    execution.executor_id,
                    execution.dequeued_at_ms,
                    previous.order_id,
                    previous.token,
                    previous.executor_id,
                    previous.dequeued_at_ms
                )
            });
        }
        if let Some(earlier) = finished_last
            && earlier.token != execution.token
            && execution.dequeued_at_ms < earlier.executed_at_ms
        {
            report.overlapping.add(|| {
                format!(
                    "{} (token {}, by {}) was dequeued at {}, before {} (token {}, by {}) was \
                     executed at {}",
                    execution.order_id,
                    execution.token,
                    execution.executor_id,
                    execution.dequeued_at_ms,
                    earlier.order_id,
                    earlier.token,
                    earlier.executor_id,
                    earlier.executed_at_ms
                )
            });
        }
        if finished_last.is_none_or(|earlier| execution.executed_at_ms > earlier.executed_at_ms) {
            finished_last = Some(execution);
        }
    }
}

/// One acknowledged order while it waits for its counting execution.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Waiting<'h> {
    /// Its place in the dequeue order; none when the cluster reports none (then it counts for
    /// contention but is never judged).
    key: Option<DequeueKey>,
    acknowledged_at_ms: u64,
    priority: u32,
    order_id: &'h str,
}

/// The orders waiting at one moment of the sweep: every one for contention, those with a key in
/// dequeue order for judging.
#[derive(Default)]
struct WaitingOrders<'h> {
    count: usize,
    /// How many wait with each priority.
    priorities: BTreeMap<u32, usize>,
    /// Those with a key, first in dequeue order first.
    by_key: BTreeSet<(DequeueKey, Waiting<'h>)>,
}

impl<'h> WaitingOrders<'h> {
    fn insert(&mut self, order: Waiting<'h>) {
        self.count += 1;
        *self.priorities.entry(order.priority).or_default() += 1;
        if let Some(key) = order.key {
            self.by_key.insert((key, order));
        }
    }

    fn remove(&mut self, order: &Waiting<'h>) {
        self.count -= 1;
        if let Some(count) = self.priorities.get_mut(&order.priority) {
            *count -= 1;
            if *count == 0 {
                self.priorities.remove(&order.priority);
            }
        }
        if let Some(key) = order.key {
            self.by_key.remove(&(key, *order));
        }
    }
}

/// A dequeue key as a reader checks it: `(aged ms, #sequence)`.
fn show_key(key: DequeueKey) -> String {
    format!("({} ms, #{})", key.aged_ms, key.sequence)
}

/// Priority skips and contention, by a sweep over time: an acknowledged order is *waiting* from
/// its acknowledgement until its counting execution begins (for ever if it has none); each
/// counting execution, at its dequeue, is judged against the waiting order first in the dequeue
/// order, and counts as contended when it had at least one other acknowledged order to choose
/// from.
fn check_priorities(
    orders: &BTreeMap<&str, OrderRecord>,
    counting: &[&Execution],
    bounds: Bounds,
    report: &mut Report,
) {
    let started: HashMap<&str, u64> = counting
        .iter()
        .map(|execution| (execution.order_id.as_str(), execution.dequeued_at_ms))
        .collect();
    // (acknowledged at, the order as it will wait, began at), by acknowledgement.
    let mut acknowledged: Vec<(u64, Waiting, u64)> = orders
        .iter()
        .filter_map(|(&order_id, record)| {
            let at_ms = record.acknowledged_at?;
            let began = started.get(order_id).copied().unwrap_or(u64::MAX);
            let waiting = Waiting {
                key: record.dequeue_key(),
                acknowledged_at_ms: at_ms,
                priority: record.priority(),
                order_id,
            };
            Some((at_ms, waiting, began))
        })
        .collect();
    acknowledged.sort_unstable();
    let mut waiting = WaitingOrders::default();
    let mut stop_waiting: BTreeMap<u64, Vec<Waiting>> = BTreeMap::new();
    let mut next = 0;
    let mut waiting_counts = Vec::with_capacity(counting.len());
    for execution in counting {
        let now = execution.dequeued_at_ms;
        while let Some(&(at_ms, order, began)) = acknowledged.get(next)
            && at_ms < now
        {
            next += 1;
            if began > now {
                waiting.insert(order);
                stop_waiting.entry(began).or_default().push(order);
            }
        }
        while let Some(entry) = stop_waiting.first_entry()
            && *entry.key() <= now
        {
            for order in entry.remove() {
                waiting.remove(&order);
            }
        }
        let itself = orders.get(execution.order_id.as_str());
        let itself_waited = itself
            .and_then(|record| record.acknowledged_at)
            .is_some_and(|at_ms| at_ms < now);
        let choices = waiting.count + usize::from(itself_waited);
        waiting_counts.push(choices);
        if choices >= 2 {
            report.contention.contended += 1;
            let lowest = waiting.priorities.first_key_value().map(|(&p, _)| p);
            let highest = waiting.priorities.last_key_value().map(|(&p, _)| p);
            let own = itself_waited.then_some(execution.priority);
            let priorities: BTreeSet<u32> = [lowest, highest, own].into_iter().flatten().collect();
            if priorities.len() >= 2 {
                report.contention.with_priorities_to_choose += 1;
            }
        }
        if let Some(own_key) = itself.and_then(OrderRecord::dequeue_key)
            && let Some(&(first_key, first)) = waiting.by_key.first()
            && first_key < own_key
        {
            report.priority_skips.add(|| {
                format!(
                    "{} (priority {}, token {}) was dequeued at {} while {} (priority {}, \
                     acknowledged at {}) waited, ahead of it in dequeue order: key {} < {}",
                    execution.order_id,
                    execution.priority,
                    execution.token,
                    now,
                    first.order_id,
                    first.priority,
                    first.acknowledged_at_ms,
                    show_key(first_key),
                    show_key(own_key)
                )
            });
        }
    }
    waiting_counts.sort_unstable();
    let contention = &mut report.contention;
    contention.dequeues = counting.len();
    contention.median_waiting = waiting_counts
        .get(waiting_counts.len() / 2)
        .copied()
        .unwrap_or(0);
    contention.most_waiting = waiting_counts.last().copied().unwrap_or(0);
    let required = bounds
        .min_contended_dequeues
        .max((contention.dequeues * bounds.min_contended_percent).div_ceil(100));
    if contention.contended < required {
        let (contended, dequeues) = (contention.contended, contention.dequeues);
        report.too_little_contention.add(|| {
            format!(
                "only {contended} of {dequeues} dequeues had two or more acknowledged orders \
                 waiting; judging priority needs {required} (at least {} and {}% of the \
                 dequeues)",
                bounds.min_contended_dequeues, bounds.min_contended_percent
            )
        });
    }
}

/// When something about an order was first established, and how, for a stale read's example.
#[derive(Clone, Copy)]
struct Established<'h> {
    at_ms: u64,
    how: Evidence<'h>,
}

#[derive(Clone, Copy)]
enum Evidence<'h> {
    Acknowledged,
    AcceptedBy(&'h Acknowledgement),
    Read(&'h ReadOperation),
}

impl fmt::Display for Established<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.how {
            Evidence::Acknowledged => write!(f, "its client's acknowledgement at {}", self.at_ms),
            Evidence::AcceptedBy(answer) => write!(
                f,
                "the acknowledgement of {} under token {} accepted by {}",
                answer.executor_id, answer.token, self.at_ms
            ),
            Evidence::Read(read) => write!(
                f,
                "a {} via {} completed at {}",
                read_name(read.kind),
                read.via,
                self.at_ms
            ),
        }
    }
}

/// What `map` says was established about `order_id` strictly before `at_ms`.
fn before<'h>(
    map: &HashMap<&str, Option<Established<'h>>>,
    order_id: &str,
    at_ms: u64,
) -> Option<Established<'h>> {
    map.get(order_id)
        .copied()
        .flatten()
        .filter(|established| established.at_ms < at_ms)
}

fn keep_earliest<'h>(slot: &mut Option<Established<'h>>, candidate: Established<'h>) {
    if slot.is_none_or(|held| candidate.at_ms < held.at_ms) {
        *slot = Some(candidate);
    }
}

/// Stale reads (see the module's documentation) and the read counts.
fn check_reads(history: &History, orders: &BTreeMap<&str, OrderRecord>, report: &mut Report) {
    let mut known: HashMap<&str, Option<Established>> = HashMap::new();
    let mut executed: HashMap<&str, Option<Established>> = HashMap::new();
    for (&order_id, record) in orders {
        if let Some(at_ms) = record.acknowledged_at {
            keep_earliest(
                known.entry(order_id).or_default(),
                Established {
                    at_ms,
                    how: Evidence::Acknowledged,
                },
            );
        }
        for answer in &record.answers {
            if answer.answer == AcknowledgementAnswer::Accepted {
                keep_earliest(
                    executed.entry(order_id).or_default(),
                    Established {
                        at_ms: answer.answered_at_ms,
                        how: Evidence::AcceptedBy(answer),
                    },
                );
            }
        }
    }
    for read in &history.reads {
        let seen = Established {
            at_ms: read.completed_at_ms,
            how: Evidence::Read(read),
        };
        match (&read.result, &read.order_id) {
            (ReadResult::Order { state }, Some(order_id)) => {
                if matches!(
                    state,
                    ReadState::Queued | ReadState::Executing | ReadState::Executed
                ) {
                    keep_earliest(known.entry(order_id).or_default(), seen);
                }
                if *state == ReadState::Executed {
                    keep_earliest(executed.entry(order_id).or_default(), seen);
                }
            }
            (ReadResult::Queue { order_ids, .. }, _) => {
                for order_id in order_ids {
                    keep_earliest(known.entry(order_id).or_default(), seen);
                }
            }
            _ => {}
        }
    }
    let faults = FaultWindows::of(&history.nemesis);
    for read in &history.reads {
        if faults.covers(&read.via, read.invoked_at_ms) {
            report.reads.tried_at_faulted_node += 1;
            if !matches!(read.result, ReadResult::NoAnswer { .. }) {
                report.reads.answered_at_faulted_node += 1;
            }
        }
        let counted = match (&read.result, read.kind) {
            (ReadResult::NoAnswer { .. }, _) => {
                report.reads.no_answer += 1;
                continue;
            }
            (_, ReadKind::OrderRest) => &mut report.reads.rest,
            (_, ReadKind::GetOrder) => &mut report.reads.get_order,
            (_, ReadKind::ListQueue) => &mut report.reads.list_queue,
        };
        *counted += 1;
        if read.via.starts_with("queue-") {
            report.reads.at_one_node += 1;
        }
        let stale = match (&read.result, &read.order_id) {
            (ReadResult::Order { state }, Some(order_id)) => {
                let older_than = match state {
                    ReadState::Unknown | ReadState::Rejected => {
                        before(&known, order_id, read.invoked_at_ms).map(|at| ("known", at))
                    }
                    ReadState::Queued | ReadState::Executing => {
                        before(&executed, order_id, read.invoked_at_ms).map(|at| ("executed", at))
                    }
                    ReadState::Executed => None,
                };
                older_than.map(|(what, at)| {
                    format!(
                        "{} of {order_id} via {} invoked at {} answered {}, but the order was \
                         {what} by {at}",
                        read_name(read.kind),
                        read.via,
                        read.invoked_at_ms,
                        state_name(*state)
                    )
                })
            }
            (ReadResult::Queue { order_ids, .. }, _) => order_ids.iter().find_map(|order_id| {
                before(&executed, order_id, read.invoked_at_ms).map(|at| {
                    format!(
                        "ListQueue via {} invoked at {} listed {order_id} as queued, but the \
                         order was executed by {at}",
                        read.via, read.invoked_at_ms
                    )
                })
            }),
            _ => None,
        };
        if let Some(example) = stale {
            report.stale_reads.add(|| example);
        }
    }
}

/// When each target was under a fault: from each injection to the repair of the same fault on
/// the same targets (or for ever, if none came).
struct FaultWindows<'h> {
    /// By target, the windows as (from, to), sorted.
    by_target: HashMap<&'h str, Vec<(u64, u64)>>,
}

impl<'h> FaultWindows<'h> {
    fn of(events: &'h [NemesisEvent]) -> Self {
        let mut open: HashMap<(&str, &[String]), u64> = HashMap::new();
        let mut by_target: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
        let mut close = |targets: &'h [String], from: u64, to: u64| {
            for target in targets {
                by_target.entry(target).or_default().push((from, to));
            }
        };
        for event in events {
            let key = (event.fault.as_str(), event.targets.as_slice());
            match event.phase {
                FaultPhase::Inject => {
                    open.insert(key, event.at_ms);
                }
                FaultPhase::Repair => {
                    if let Some(from) = open.remove(&key) {
                        close(&event.targets, from, event.at_ms);
                    }
                }
            }
        }
        for ((_, targets), from) in open {
            close(targets, from, u64::MAX);
        }
        for windows in by_target.values_mut() {
            windows.sort_unstable();
        }
        Self { by_target }
    }

    /// Whether `target` was under a fault at `at_ms`.
    fn covers(&self, target: &str, at_ms: u64) -> bool {
        let Some(windows) = self.by_target.get(target) else {
            return false;
        };
        // The windows of one target never overlap (one fault at a time), so the last one that
        // began by `at_ms` is the only candidate.
        let began = windows.partition_point(|&(from, _)| from <= at_ms);
        began
            .checked_sub(1)
            .is_some_and(|last| at_ms <= windows[last].1)
    }
}

/// Every replica gave its state, and all applied the same log to the same state.
fn check_replicas(history: &History, report: &mut Report) {
    let replicas = &history.end.replicas;
    for replica in replicas {
        if let Some(error) = &replica.error {
            report.replicas_diverged.add(|| {
                format!(
                    "queue-{} gave no state at the end: {error}",
                    replica.node_id
                )
            });
        }
    }
    let answered: Vec<_> = replicas
        .iter()
        .filter(|replica| replica.error.is_none())
        .collect();
    let distinct: BTreeSet<(u64, &str)> = answered
        .iter()
        .map(|replica| (replica.applied_index, replica.state_digest.as_str()))
        .collect();
    if distinct.len() > 1 {
        report.replicas_diverged.add(|| {
            answered
                .iter()
                .map(|replica| {
                    format!(
                        "queue-{} applied {} (digest {:.12}, depth {}, {} executed)",
                        replica.node_id,
                        replica.applied_index,
                        replica.state_digest,
                        replica.queue_depth,
                        replica.executed_count
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        });
    }
}

/// The run's own faults: crashes, the liveness floor, the unknown bound, clock steps.
fn check_run(history: &History, counting: &[&Execution], bounds: Bounds, report: &mut Report) {
    for exit in &history.exits {
        report.crashes.add(|| {
            let last_line = exit.log_tail.lines().last().unwrap_or("");
            format!(
                "{} exited by itself at {} ({}); its log ends: {last_line}",
                exit.process, exit.at_ms, exit.status
            )
        });
    }
    for step in &history.run.clock_steps {
        report.clock_steps.add(|| {
            format!(
                "the wall clock stepped {} ms against the monotonic clock at {}",
                step.step_ms, step.at_ms
            )
        });
    }
    check_liveness(history, counting, bounds, report);

    let operations = report.checkouts.total() + report.enqueues.total();
    let unknown = report.checkouts.unknown + report.enqueues.unknown;
    if (unknown as u64) * 1_000 > bounds.max_unknown_per_mille * operations as u64 {
        let examples: Vec<&str> = history
            .operations
            .iter()
            .filter(|operation| operation.outcome == Outcome::Unknown)
            .take(3)
            .map(|operation| operation.order_id.as_str())
            .collect();
        report.unknown_outcomes_over_bound.add(|| {
            format!(
                "{unknown} of {operations} operations ended unknown; the bound is {} per \
                 thousand (first: {})",
                bounds.max_unknown_per_mille,
                examples.join(", ")
            )
        });
    }
}

/// Every window of the clients' span must reach the per-minute floors, scaled to its length.
fn check_liveness(history: &History, counting: &[&Execution], bounds: Bounds, report: &mut Report) {
    let (start, stop) = (
        history.run.clients_started_at_ms,
        history.run.clients_stopped_at_ms,
    );
    let span = stop.saturating_sub(start);
    if span == 0 {
        return;
    }
    let windows = (span / LIVENESS_WINDOW_MS).max(1);
    let window_of = |at_ms: u64| {
        (at_ms >= start && at_ms < stop).then(|| ((at_ms - start) * windows / span) as usize)
    };
    let mut counts = vec![[0u64; 3]; windows as usize];
    for operation in &history.operations {
        if operation.outcome != Outcome::Ok {
            continue;
        }
        if let Some(window) = window_of(operation.completed_at_ms) {
            let kind = match operation.kind {
                OperationKind::Checkout => 0,
                OperationKind::Enqueue => 1,
            };
            counts[window][kind] += 1;
        }
    }
    for execution in counting {
        if let Some(window) = window_of(execution.executed_at_ms) {
            counts[window][2] += 1;
        }
    }
    let floors = [
        ("checkouts acknowledged", bounds.min_checkouts_per_minute),
        ("enqueues acknowledged", bounds.min_enqueues_per_minute),
        ("orders executed", bounds.min_executions_per_minute),
    ];
    for (window, counted) in counts.iter().enumerate() {
        let from = span * window as u64 / windows;
        let to = span * (window as u64 + 1) / windows;
        for ((what, per_minute), &count) in floors.iter().zip(counted) {
            let floor = (per_minute * (to - from)).div_ceil(60_000);
            if count < floor {
                report.below_liveness_floor.add(|| {
                    format!(
                        "{count} {what} from {:.0} s to {:.0} s of the run; the floor is {floor} \
                         ({per_minute} a minute)",
                        from as f64 / 1_000.0,
                        to as f64 / 1_000.0
                    )
                });
            }
        }
    }
}

fn describe(state: Option<&OrderState>) -> String {
    match state {
        None | Some(OrderState::Unknown) => "unknown".to_owned(),
        Some(OrderState::Queued) => "queued".to_owned(),
        Some(OrderState::Executing { executor_id, token }) => {
            format!("executing by {executor_id} under token {token}")
        }
        Some(OrderState::Executed {
            executor_id,
            token,
            acknowledged_token,
        }) => {
            format!(
                "executed by {executor_id} under token {token}, acknowledged under token \
                 {acknowledged_token}"
            )
        }
        Some(OrderState::Unreadable { error }) => format!("unreadable ({error})"),
    }
}

fn read_name(kind: ReadKind) -> &'static str {
    match kind {
        ReadKind::OrderRest => "GET /orders",
        ReadKind::GetOrder => "GetOrder",
        ReadKind::ListQueue => "ListQueue",
    }
}

fn state_name(state: ReadState) -> &'static str {
    match state {
        ReadState::Unknown => "unknown",
        ReadState::Queued => "queued",
        ReadState::Executing => "executing",
        ReadState::Executed => "executed",
        ReadState::Rejected => "rejected",
    }
}

fn executors_of(lines: &[&Execution]) -> String {
    lines
        .iter()
        .map(|line| format!("{} (token {})", line.executor_id, line.token))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{
        ClockStep, ClusterEnd, FinalState, Item, ProcessExit, ReplicaState, RunWindow,
    };

    fn contents(order_id: &str, priority: u32) -> OrderContents {
        OrderContents {
            customer: format!("customer of {order_id}"),
            items: vec![Item {
                title: "Emma".into(),
                quantity: priority,
            }],
        }
    }

    fn operation(
        order_id: &str,
        priority: u32,
        completed_at_ms: u64,
        outcome: Outcome,
    ) -> ClientOperation {
        ClientOperation {
            client: "client-1".into(),
            kind: OperationKind::Checkout,
            order_id: order_id.into(),
            contents: contents(order_id, priority),
            invoked_at_ms: completed_at_ms.saturating_sub(5),
            completed_at_ms,
            outcome,
            detail: None,
        }
    }

    fn execution(order_id: &str, token: u64, priority: u32, dequeued_at_ms: u64) -> Execution {
        Execution {
            order_id: order_id.into(),
            executor_id: format!("executor-{}", token % 3 + 1),
            token,
            priority,
            customer: format!("customer of {order_id}"),
            dequeued_at_ms,
            executed_at_ms: dequeued_at_ms + 10,
        }
    }

    fn answer(
        order_id: &str,
        token: u64,
        answer: AcknowledgementAnswer,
        answered_at_ms: u64,
    ) -> Acknowledgement {
        Acknowledgement {
            order_id: order_id.into(),
            executor_id: format!("executor-{}", token % 3 + 1),
            token,
            answer,
            answered_at_ms,
        }
    }

    fn executed(order_id: &str, token: u64) -> FinalState {
        final_state(
            order_id,
            OrderState::Executed {
                executor_id: format!("executor-{}", token % 3 + 1),
                token,
                acknowledged_token: token,
            },
        )
    }

    fn final_state(order_id: &str, state: OrderState) -> FinalState {
        FinalState {
            order_id: order_id.into(),
            state,
            contents: None,
            place: None,
        }
    }

    /// `state`, placed by the cluster at `enqueued_at_queue_ms` of its time, `sequence`-th.
    fn placed(state: FinalState, enqueued_at_queue_ms: u64, sequence: u64) -> FinalState {
        FinalState {
            place: Some(QueuePlace {
                enqueued_at_queue_ms,
                sequence,
            }),
            ..state
        }
    }

    fn read(
        order_id: Option<&str>,
        kind: ReadKind,
        invoked_at_ms: u64,
        result: ReadResult,
    ) -> ReadOperation {
        ReadOperation {
            client: "reader-1".into(),
            kind,
            via: "queue-1".into(),
            order_id: order_id.map(str::to_owned),
            invoked_at_ms,
            completed_at_ms: invoked_at_ms + 3,
            result,
        }
    }

    fn read_order(order_id: &str, invoked_at_ms: u64, state: ReadState) -> ReadOperation {
        read(
            Some(order_id),
            ReadKind::GetOrder,
            invoked_at_ms,
            ReadResult::Order { state },
        )
    }

    fn replica(node_id: u64, applied_index: u64, digest: &str) -> ReplicaState {
        ReplicaState {
            node_id,
            role: if node_id == 1 { "leader" } else { "follower" }.into(),
            term: 2,
            last_log_index: applied_index,
            commit_index: applied_index,
            applied_index,
            state_digest: digest.into(),
            queue_depth: 0,
            executed_count: 4,
            error: None,
        }
    }

    /// Three orders acknowledged at 100, 110, 120 (placed by the cluster at those times of its
    /// own, sequences 0 to 2), executed in dequeue order under tokens 1 to 3, 50 ms apart, each
    /// acknowledgement accepted; a failed checkout; an unknown one that was enqueued and executed
    /// last (first in dequeue order, but no answer told when it was enqueued); reads that saw
    /// each order as it was; three equal replicas.
    fn clean_history() -> History {
        History {
            run: RunWindow {
                seed: 7,
                clients_started_at_ms: 90,
                clients_stopped_at_ms: 400,
                clock_steps: Vec::new(),
            },
            operations: vec![
                operation("a", 2, 100, Outcome::Ok),
                operation("b", 5, 110, Outcome::Ok),
                operation("c", 2, 120, Outcome::Ok),
                operation("rejected", 9, 130, Outcome::Failed),
                operation("timed-out", 9, 140, Outcome::Unknown),
            ],
            reads: vec![
                read_order("a", 105, ReadState::Queued),
                read(
                    None,
                    ReadKind::ListQueue,
                    150,
                    ReadResult::Queue {
                        order_ids: vec!["b".into(), "a".into(), "c".into()],
                        depth: 3,
                    },
                ),
                read_order("b", 230, ReadState::Executed),
                ReadOperation {
                    via: "orchestrator".into(),
                    ..read(
                        Some("c"),
                        ReadKind::OrderRest,
                        240,
                        ReadResult::Order {
                            state: ReadState::Queued,
                        },
                    )
                },
                read_order("a", 250, ReadState::Executing),
                read(
                    Some("c"),
                    ReadKind::GetOrder,
                    260,
                    ReadResult::NoAnswer {
                        error: "not the leader".into(),
                    },
                ),
            ],
            executions: vec![
                execution("b", 1, 5, 200),
                execution("a", 2, 2, 250),
                execution("c", 3, 2, 300),
                execution("timed-out", 4, 9, 350),
            ],
            acknowledgements: vec![
                answer("b", 1, AcknowledgementAnswer::Accepted, 215),
                answer("a", 2, AcknowledgementAnswer::Accepted, 265),
                answer("c", 3, AcknowledgementAnswer::Accepted, 315),
                answer("timed-out", 4, AcknowledgementAnswer::Accepted, 365),
            ],
            final_states: vec![
                placed(executed("a", 2), 100, 0),
                placed(executed("b", 1), 110, 1),
                placed(
                    FinalState {
                        contents: Some(contents("c", 2)),
                        ..executed("c", 3)
                    },
                    120,
                    2,
                ),
                final_state("rejected", OrderState::Unknown),
                placed(executed("timed-out", 4), 140, 3),
            ],
            end: ClusterEnd {
                queue_depth: 0,
                queued_order_ids: Vec::new(),
                listing_error: None,
                replicas: vec![
                    replica(1, 40, "d1"),
                    replica(2, 40, "d1"),
                    replica(3, 40, "d1"),
                ],
            },
            nemesis: Vec::new(),
            exits: Vec::new(),
        }
    }

    fn counts(report: &Report) -> Vec<(&'static str, usize)> {
        report
            .faults()
            .iter()
            .map(|(kind, findings)| (*kind, findings.count))
            .collect()
    }

    /// Asserts that `history`, judged with no floors, has faults of exactly the kinds `names`
    /// (one each), and returns the first example of the first.
    fn the_faults(history: &History, names: &[&str]) -> String {
        let report = check(history, Bounds::NONE);
        let expected: Vec<(&str, usize)> = report
            .faults()
            .iter()
            .map(|(kind, _)| (*kind, usize::from(names.contains(kind))))
            .collect();
        assert_eq!(counts(&report), expected, "{report}");
        assert!(!report.is_clean());
        let (_, findings) = report
            .faults()
            .into_iter()
            .find(|(kind, _)| *kind == names[0])
            .expect("every fault kind is in the report");
        findings.examples[0].clone()
    }

    fn the_one_fault(history: &History, name: &str) -> String {
        the_faults(history, &[name])
    }

    fn clean(history: &History) -> bool {
        check(history, Bounds::NONE).is_clean()
    }

    #[test]
    fn a_clean_history_is_clean() {
        let report = check(&clean_history(), Bounds::NONE);
        assert!(report.is_clean(), "{report}");
        assert_eq!(
            (
                &report.checkouts,
                report.executions,
                report.fenced_re_executions,
                report.orders_executed
            ),
            (
                &OutcomeCounts {
                    ok: 3,
                    failed: 1,
                    unknown: 1
                },
                4,
                0,
                4
            )
        );
        assert_eq!(report.enqueues, OutcomeCounts::default());
        assert_eq!(
            report.reads,
            ReadCounts {
                rest: 1,
                get_order: 3,
                list_queue: 1,
                at_one_node: 4,
                no_answer: 1,
                tried_at_faulted_node: 0,
                answered_at_faulted_node: 0,
            }
        );
        let text = report.to_string();
        assert!(
            text.starts_with("lost: 0\nstuck: 0\nexecuted twice: 0\n"),
            "{text}"
        );
        assert!(text.ends_with("verdict: clean"), "{text}");
        assert!(
            report.fault_counts().starts_with("lost 0, stuck 0, ")
                && report.fault_counts().ends_with("clock steps 0"),
            "{}",
            report.fault_counts()
        );
    }

    #[test]
    fn contention_is_counted_from_the_history() {
        // At 200 all three were waiting (b's own dequeue included); at 250 a and c; at 300 only
        // c itself; timed-out was never acknowledged.
        let report = check(&clean_history(), Bounds::NONE);
        assert_eq!(
            report.contention,
            Contention {
                dequeues: 4,
                contended: 2,
                with_priorities_to_choose: 1,
                median_waiting: 2,
                most_waiting: 3,
            }
        );
    }

    #[test]
    fn too_little_contention_fails_the_run() {
        let bounds = Bounds {
            min_contended_dequeues: 3,
            ..Bounds::NONE
        };
        let report = check(&clean_history(), bounds);
        assert_eq!(report.too_little_contention.count, 1, "{report}");
        assert!(
            report.too_little_contention.examples[0].contains("only 2 of 4 dequeues"),
            "{report}"
        );
        let bounds = Bounds {
            min_contended_percent: 75,
            ..Bounds::NONE
        };
        assert_eq!(
            check(&clean_history(), bounds).too_little_contention.count,
            1
        );
        let bounds = Bounds {
            min_contended_dequeues: 2,
            min_contended_percent: 50,
            ..Bounds::NONE
        };
        assert!(check(&clean_history(), bounds).is_clean());
    }

    #[test]
    fn an_empty_history_is_clean_without_floors_but_not_as_a_run() {
        assert!(clean(&History::default()));
        let report = check(&History::default(), Bounds::RUN);
        assert_eq!(report.too_little_contention.count, 1, "{report}");
    }

    #[test]
    fn an_acknowledged_order_the_cluster_forgot_is_lost() {
        let mut history = clean_history();
        history.operations.push(operation("d", 1, 400, Outcome::Ok));
        let example = the_one_fault(&history, "lost");
        assert!(example.contains("d, acknowledged at 400"), "{example}");

        history
            .final_states
            .push(final_state("d", OrderState::Unknown));
        the_one_fault(&history, "lost");
    }

    #[test]
    fn an_executed_order_the_cluster_forgot_is_lost_even_if_its_answer_was() {
        let mut history = clean_history();
        history
            .final_states
            .retain(|state| state.order_id != "timed-out");
        // Its acknowledgement was accepted, so that is lost too.
        let example = the_faults(&history, &["lost", "acknowledgements lost"]);
        assert!(example.contains("timed-out, executed by"), "{example}");
    }

    #[test]
    fn an_unknown_operation_whose_order_was_never_enqueued_is_fine() {
        let mut history = clean_history();
        history
            .operations
            .push(operation("maybe", 7, 400, Outcome::Unknown));
        assert!(clean(&history));
        history
            .final_states
            .push(final_state("maybe", OrderState::Unknown));
        assert!(clean(&history));
    }

    #[test]
    fn an_order_left_in_the_queue_is_stuck() {
        let mut history = clean_history();
        history
            .operations
            .push(operation("d", 1, 400, Outcome::Unknown));
        history
            .final_states
            .push(final_state("d", OrderState::Queued));
        let example = the_one_fault(&history, "stuck");
        assert!(example.contains("d ends queued"), "{example}");

        history.final_states.pop();
        history.final_states.push(final_state(
            "d",
            OrderState::Executing {
                executor_id: "executor-2".into(),
                token: 9,
            },
        ));
        the_one_fault(&history, "stuck");
    }

    #[test]
    fn an_order_or_a_queue_the_cluster_cannot_read_at_the_end_is_stuck() {
        let mut history = clean_history();
        history.final_states[2].state = OrderState::Unreadable {
            error: "queue unreachable".into(),
        };
        // `c` is neither lost nor judged executed, so its ledger line and answer are fenced.
        let example = the_faults(&history, &["stuck", "acknowledgements lost"]);
        assert!(
            example.contains("c ends unreadable (queue unreachable)"),
            "{example}"
        );

        let mut history = clean_history();
        history.end.listing_error = Some("no leader".into());
        let example = the_one_fault(&history, "stuck");
        assert!(
            example.contains("could not be listed at the end: no leader"),
            "{example}"
        );
    }

    #[test]
    fn a_queue_deeper_than_its_listing_is_stuck() {
        let mut history = clean_history();
        history.end.queue_depth = 2;
        let example = the_one_fault(&history, "stuck");
        assert!(
            example.contains("2 more than its final listing"),
            "{example}"
        );
    }

    #[test]
    fn two_ledger_lines_under_the_counting_token_are_executed_twice() {
        let mut history = clean_history();
        history.executions.push(execution("c", 3, 2, 300));
        // One lease executing twice also repeats its token.
        let example = the_faults(&history, &["executed twice", "tokens backwards"]);
        assert!(
            example.contains("c has 2 ledger lines under token 3"),
            "{example}"
        );
    }

    #[test]
    fn an_execution_after_the_counting_one_is_executed_twice() {
        let mut history = clean_history();
        history.executions.push(execution("a", 5, 2, 400));
        let example = the_one_fault(&history, "executed twice");
        assert!(example.contains("token(s) [5]"), "{example}");
    }

    #[test]
    fn an_acknowledgement_without_execution_is_executed_twice() {
        let mut history = clean_history();
        history.operations.push(operation("d", 1, 400, Outcome::Ok));
        history.final_states.push(executed("d", 5));
        let example = the_one_fault(&history, "executed twice");
        assert!(
            example.contains("token 5, which has no ledger line"),
            "{example}"
        );
    }

    #[test]
    fn fenced_re_executions_are_counted_not_faults() {
        let mut history = clean_history();
        // `d` was executed under token 5 whose holder died before acknowledging (no answer
        // line); token 6's holder was refused (its lease had ended); token 7 executed it again,
        // and counted.
        history.operations.push(operation("d", 1, 400, Outcome::Ok));
        history.executions.push(execution("d", 5, 1, 500));
        history.executions.push(execution("d", 6, 1, 700));
        history
            .acknowledgements
            .push(answer("d", 6, AcknowledgementAnswer::Refused, 720));
        history.executions.push(execution("d", 7, 1, 900));
        history
            .acknowledgements
            .push(answer("d", 7, AcknowledgementAnswer::Accepted, 920));
        history.final_states.push(executed("d", 7));
        let report = check(&history, Bounds::NONE);
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.fenced_re_executions, 2);
    }

    #[test]
    fn an_accepted_acknowledgement_the_cluster_did_not_keep_is_lost() {
        // `d`'s acknowledgement under token 5 was accepted, yet the cluster executed it again
        // under token 6 and counts that one: the old checker called line 5 a fenced
        // re-execution.
        let mut history = clean_history();
        history.operations.push(operation("d", 1, 400, Outcome::Ok));
        history.executions.push(execution("d", 5, 1, 500));
        history
            .acknowledgements
            .push(answer("d", 5, AcknowledgementAnswer::Accepted, 520));
        history.executions.push(execution("d", 6, 1, 700));
        history.final_states.push(executed("d", 6));
        let example = the_one_fault(&history, "acknowledgements lost");
        assert!(
            example.contains("under token 5 was accepted")
                && example.contains("ends acknowledged under token 6"),
            "{example}"
        );

        // Or the cluster ends with it queued again.
        history.executions.pop();
        history.final_states.pop();
        history
            .final_states
            .push(final_state("d", OrderState::Queued));
        the_faults(&history, &["acknowledgements lost", "stuck"]);
    }

    #[test]
    fn a_later_lease_acknowledging_a_recorded_execution_is_no_fault() {
        // `d` was executed and recorded under token 5, whose acknowledgement went unanswered;
        // the holder of token 6 dequeued it, found the execution recorded, and acknowledged it
        // without executing it again (the chaos run of seed 13641929818053651221 saw this six
        // times, and the checker that compared the acknowledgement with the executing token
        // called each an acknowledgement lost).
        let mut history = clean_history();
        history.operations.push(operation("d", 1, 400, Outcome::Ok));
        history.executions.push(execution("d", 5, 1, 500));
        history
            .acknowledgements
            .push(answer("d", 5, AcknowledgementAnswer::Unanswered, 520));
        history
            .acknowledgements
            .push(answer("d", 6, AcknowledgementAnswer::Accepted, 700));
        let acknowledged_by_6 = |acknowledged_token| {
            final_state(
                "d",
                OrderState::Executed {
                    executor_id: "executor-3".into(),
                    token: 5,
                    acknowledged_token,
                },
            )
        };
        history.final_states.push(acknowledged_by_6(6));
        let report = check(&history, Bounds::NONE);
        assert!(report.is_clean(), "{report}");

        // The same answers, but the cluster ends counting the acknowledgement of token 5 only:
        // the accepted one under 6 was lost.
        history.final_states.pop();
        history.final_states.push(acknowledged_by_6(5));
        let example = the_one_fault(&history, "acknowledgements lost");
        assert!(
            example.contains("under token 6 was accepted")
                && example.contains("ends acknowledged under token 5"),
            "{example}"
        );
    }

    #[test]
    fn a_refused_acknowledgement_the_cluster_counts_is_a_fault() {
        let mut history = clean_history();
        history.acknowledgements[2].answer = AcknowledgementAnswer::Refused;
        let example = the_one_fault(&history, "refused acknowledgements counted");
        assert!(
            example.contains("c: the acknowledgement of executor-1 under token 3 was refused"),
            "{example}"
        );
        // An unanswered one says nothing.
        history.acknowledgements[2].answer = AcknowledgementAnswer::Unanswered;
        assert!(clean(&history));
    }

    #[test]
    fn an_execution_of_an_order_nobody_asked_for_is_a_phantom() {
        let mut history = clean_history();
        history.executions.push(execution("stranger", 5, 1, 400));
        let example = the_one_fault(&history, "phantom");
        assert!(
            example.contains("stranger was never asked for"),
            "{example}"
        );

        history
            .operations
            .push(operation("stranger", 1, 150, Outcome::Failed));
        the_one_fault(&history, "phantom");
    }

    #[test]
    fn an_order_the_cluster_knows_without_a_ledger_line_or_a_client_is_a_phantom() {
        let mut history = clean_history();
        history
            .final_states
            .push(final_state("stranger", OrderState::Queued));
        let example = the_one_fault(&history, "phantom");
        assert!(example.contains("ends with queued"), "{example}");

        // Listed in the final queue, with no final state read for it.
        let mut history = clean_history();
        history.end.queue_depth = 1;
        history.end.queued_order_ids.push("stranger".into());
        let example = the_one_fault(&history, "phantom");
        assert!(example.contains("(listed in the queue)"), "{example}");
    }

    #[test]
    fn a_token_going_backwards_is_caught() {
        let mut history = clean_history();
        history.operations.push(operation("d", 1, 400, Outcome::Ok));
        history.executions.push(execution("d", 3, 1, 500));
        history.final_states.push(executed("d", 3));
        let example = the_one_fault(&history, "tokens backwards");
        assert!(
            example
                .contains("d (token 3, by executor-1, dequeued at 500) follows timed-out (token 4"),
            "{example}"
        );
    }

    #[test]
    fn equal_tokens_in_a_row_are_tokens_backwards() {
        let mut history = clean_history();
        history.operations.push(operation("d", 1, 400, Outcome::Ok));
        history.executions.push(execution("d", 4, 1, 500));
        history.final_states.push(executed("d", 4));
        let example = the_one_fault(&history, "tokens backwards");
        assert!(example.contains("d (token 4"), "{example}");
    }

    #[test]
    fn a_fenced_execution_out_of_token_order_is_caught() {
        // A zombie: executor-3 dequeued `d` under token 2 after token 4's dequeue began; its
        // line is fenced (the cluster counts token 5), but the token order still breaks.
        let mut history = clean_history();
        history.operations.push(operation("d", 1, 400, Outcome::Ok));
        history.executions.push(execution("d", 2, 1, 360));
        history.executions.push(execution("d", 5, 1, 500));
        history.final_states.push(executed("d", 5));
        let example = the_one_fault(&history, "tokens backwards");
        assert!(example.contains("d (token 2, by executor-3"), "{example}");
    }

    #[test]
    fn executions_that_overlap_are_caught() {
        let mut history = clean_history();
        history.operations.push(operation("d", 1, 400, Outcome::Ok));
        history.executions.push(execution("d", 5, 1, 500));
        history.final_states.push(executed("d", 5));
        // `timed-out` now finishes after `d` began.
        history.executions[3].executed_at_ms = 501;
        let example = the_one_fault(&history, "overlapping");
        assert!(
            example.contains("d (token 5, by executor-3) was dequeued at 500, before timed-out"),
            "{example}"
        );
    }

    #[test]
    fn a_fenced_execution_that_overlaps_the_next_lease_is_caught() {
        // `d` under token 5 is fenced (the cluster counts token 6), but its holder wrote its
        // line after token 6's holder began: the old checker left fenced lines out.
        let mut history = clean_history();
        history.operations.push(operation("d", 1, 400, Outcome::Ok));
        history.executions.push(Execution {
            executed_at_ms: 650,
            ..execution("d", 5, 1, 500)
        });
        history.executions.push(execution("d", 6, 1, 600));
        history.final_states.push(executed("d", 6));
        let example = the_one_fault(&history, "overlapping");
        assert!(example.contains("d (token 6"), "{example}");
    }

    #[test]
    fn a_dequeue_that_passed_over_a_waiting_order_ahead_of_it_is_a_skip() {
        let mut history = clean_history();
        // `d` (priority 3, placed at 255: key 255 − 1500) was acknowledged at 260, before `c`
        // (priority 2, key 120 − 1000) was dequeued at 300, and executed only after it.
        history.operations.push(operation("d", 3, 260, Outcome::Ok));
        history.executions.push(execution("d", 5, 3, 400));
        history.final_states.push(placed(executed("d", 5), 255, 4));
        let example = the_one_fault(&history, "priority skips");
        assert!(
            example.contains(
                "c (priority 2, token 3) was dequeued at 300 while d (priority 3, acknowledged \
                 at 260) waited, ahead of it in dequeue order: key (-1245 ms, #4) < (-880 ms, #2)"
            ),
            "{example}"
        );
    }

    #[test]
    fn a_skipped_order_that_was_never_executed_is_a_skip_too() {
        let mut history = clean_history();
        // `d` (priority 3), acknowledged at 260, is still queued at the end: `c` (at 300) and
        // `timed-out` (at 350, first in dequeue order, not skipping) ran past it.
        history.operations.push(operation("d", 3, 260, Outcome::Ok));
        history
            .final_states
            .push(placed(final_state("d", OrderState::Queued), 255, 4));
        let report = check(&history, Bounds::NONE);
        assert_eq!(
            (report.priority_skips.count, report.stuck.count),
            (1, 1),
            "{report}"
        );
        assert!(
            report.priority_skips.examples[0].contains("c (priority 2"),
            "{report}"
        );
    }

    #[test]
    fn an_order_acknowledged_after_the_dequeue_began_is_not_skipped() {
        let mut history = clean_history();
        history.operations.push(operation("d", 3, 300, Outcome::Ok));
        history.executions.push(execution("d", 5, 3, 400));
        history.final_states.push(executed("d", 5));
        assert!(clean(&history));
    }

    #[test]
    fn equal_priorities_are_judged_by_the_clusters_commit_order() {
        // Same priority as `c`, acknowledged long before it was dequeued, executed after it:
        // right when the cluster committed it after `c`, a skip when before.
        let mut history = clean_history();
        history.operations.push(operation("d", 2, 105, Outcome::Ok));
        history.executions.push(execution("d", 5, 2, 400));
        history.final_states.push(placed(executed("d", 5), 120, 4));
        assert!(clean(&history));
        history.final_states.last_mut().expect("d").place = Some(QueuePlace {
            enqueued_at_queue_ms: 120,
            sequence: 1,
        });
        let example = the_one_fault(&history, "priority skips");
        assert!(example.starts_with("c (priority 2, token 3)"), "{example}");
    }

    /// Aging: an order of fewer books that waited long enough goes first, and one of more books
    /// enqueued too late for its books to make up for goes after.
    #[test]
    fn a_small_order_that_waited_long_enough_goes_before_a_bigger_one() {
        let mut history = clean_history();
        // `small` (1 book, placed at 0: key -500) waits from 150; `big` (3 books, placed at 1100:
        // key -400) is dequeued at 2000 before it, and `small` at 2100.
        history
            .operations
            .push(operation("small", 1, 150, Outcome::Ok));
        history
            .operations
            .push(operation("big", 3, 1_150, Outcome::Ok));
        history.executions.push(execution("big", 5, 3, 2_000));
        history.executions.push(execution("small", 6, 1, 2_100));
        history
            .final_states
            .push(placed(executed("small", 6), 0, 4));
        history
            .final_states
            .push(placed(executed("big", 5), 1_100, 5));
        let example = the_one_fault(&history, "priority skips");
        assert!(
            example.starts_with("big (priority 3, token 5) was dequeued at 2000 while small"),
            "{example}"
        );
        // Enqueued at 900 instead, `big` (key -600) was right to go first, which strict priority
        // would have called right either way.
        history.final_states.last_mut().expect("big").place = Some(QueuePlace {
            enqueued_at_queue_ms: 900,
            sequence: 5,
        });
        assert!(clean(&history));
    }

    #[test]
    fn an_order_the_cluster_reports_no_place_for_is_not_judged() {
        let mut history = clean_history();
        history.operations.push(operation("d", 3, 260, Outcome::Ok));
        history.executions.push(execution("d", 5, 3, 400));
        history.final_states.push(executed("d", 5));
        assert!(clean(&history));
    }

    #[test]
    fn contents_other_than_the_client_sent_are_wrong() {
        let mut history = clean_history();
        history.final_states[2].contents = Some(contents("c", 3));
        let example = the_one_fault(&history, "wrong contents");
        assert!(example.contains("the cluster holds"), "{example}");

        let mut history = clean_history();
        history.executions[1].customer = "someone else".into();
        let example = the_one_fault(&history, "wrong contents");
        assert!(example.contains("executed it (token 2)"), "{example}");
    }

    #[test]
    fn a_read_of_an_acknowledged_order_as_unknown_is_stale() {
        let mut history = clean_history();
        history.reads.push(read_order("c", 121, ReadState::Unknown));
        let example = the_one_fault(&history, "stale reads");
        assert!(
            example.contains("GetOrder of c via queue-1 invoked at 121 answered unknown")
                && example.contains("its client's acknowledgement at 120"),
            "{example}"
        );
        // Invoked before the acknowledgement completed, it is concurrent with the write: fine.
        history.reads.pop();
        history.reads.push(read_order("c", 120, ReadState::Unknown));
        assert!(clean(&history));
        // A REST read answering `rejected` for an order the queue accepted is stale as well.
        history.reads.push(read(
            Some("c"),
            ReadKind::OrderRest,
            130,
            ReadResult::Order {
                state: ReadState::Rejected,
            },
        ));
        the_one_fault(&history, "stale reads");
    }

    #[test]
    fn a_read_of_an_order_another_read_saw_as_unknown_is_stale() {
        // `timed-out` was never acknowledged; once a read saw it queued, none may miss it.
        let mut history = clean_history();
        history
            .reads
            .push(read_order("timed-out", 200, ReadState::Queued));
        history
            .reads
            .push(read_order("timed-out", 204, ReadState::Unknown));
        let example = the_one_fault(&history, "stale reads");
        assert!(
            example.contains("a GetOrder via queue-1 completed at 203"),
            "{example}"
        );
    }

    #[test]
    fn a_read_of_an_executed_order_as_queued_is_stale() {
        // `b`'s acknowledgement was accepted at 215.
        let mut history = clean_history();
        history.reads.push(read_order("b", 216, ReadState::Queued));
        let example = the_one_fault(&history, "stale reads");
        assert!(example.contains("accepted by 215"), "{example}");
        history.reads.pop();
        history
            .reads
            .push(read_order("b", 215, ReadState::Executing));
        assert!(clean(&history));

        // After a read saw `c` executed (completed at 303), another may not see it queued.
        let mut history = clean_history();
        history.acknowledgements.remove(2);
        history
            .reads
            .push(read_order("c", 300, ReadState::Executed));
        history
            .reads
            .push(read_order("c", 304, ReadState::Executing));
        the_one_fault(&history, "stale reads");

        // Nor list it in the queue.
        let mut history = clean_history();
        history.reads.push(read(
            None,
            ReadKind::ListQueue,
            216,
            ReadResult::Queue {
                order_ids: vec!["b".into()],
                depth: 1,
            },
        ));
        let example = the_one_fault(&history, "stale reads");
        assert!(example.contains("listed b as queued"), "{example}");
    }

    #[test]
    fn reads_at_a_node_under_a_fault_are_counted() {
        let mut history = clean_history();
        let event = |at_ms, phase| crate::history::NemesisEvent {
            at_ms,
            fault: "partition-queue-node".into(),
            phase,
            targets: vec!["queue-1".into()],
        };
        history.nemesis = vec![
            event(100, FaultPhase::Inject),
            event(200, FaultPhase::Repair),
            event(255, FaultPhase::Inject),
        ];
        // Reads via queue-1 at 105 and 150 fall in the first window, at 260 (no answer) in the
        // second, which is never repaired; those at 230 and 250 in none, and the one at 240 went
        // through the orchestrator.
        let report = check(&history, Bounds::NONE);
        assert_eq!(
            (
                report.reads.tried_at_faulted_node,
                report.reads.answered_at_faulted_node
            ),
            (3, 2),
            "{report}"
        );
    }

    #[test]
    fn replicas_that_differ_or_do_not_answer_diverged() {
        let mut history = clean_history();
        history.end.replicas[1].state_digest = "d2".into();
        let example = the_one_fault(&history, "replicas diverged");
        assert!(
            example.contains("queue-2 applied 40 (digest d2"),
            "{example}"
        );

        let mut history = clean_history();
        history.end.replicas[2].applied_index = 39;
        the_one_fault(&history, "replicas diverged");

        let mut history = clean_history();
        history.end.replicas[0] = ReplicaState {
            error: Some("no answer within 2s".into()),
            ..replica(1, 0, "")
        };
        let example = the_one_fault(&history, "replicas diverged");
        assert!(example.contains("queue-1 gave no state"), "{example}");
    }

    #[test]
    fn a_process_that_exited_by_itself_is_a_crash() {
        let mut history = clean_history();
        history.exits.push(ProcessExit {
            at_ms: 300,
            process: "queue-2".into(),
            status: "exit status: 101".into(),
            log_tail: "starting\nthread 'main' panicked at src/node.rs:1".into(),
        });
        let example = the_one_fault(&history, "crashes");
        assert!(
            example.contains("queue-2 exited by itself at 300 (exit status: 101)")
                && example.contains("panicked"),
            "{example}"
        );
    }

    #[test]
    fn a_clock_step_voids_the_run() {
        let mut history = clean_history();
        history.run.clock_steps.push(ClockStep {
            at_ms: 200,
            step_ms: 3_000,
        });
        the_one_fault(&history, "clock steps");
    }

    /// A steady run of `minutes`: every `gap_ms` one checkout and, every other time, one enqueue
    /// acknowledged, each executed 30 ms later.
    fn steady_run(minutes: u64, gap_ms: u64) -> History {
        let start = 1_000_000;
        let stop = start + minutes * 60_000;
        let mut history = History {
            run: RunWindow {
                seed: 1,
                clients_started_at_ms: start,
                clients_stopped_at_ms: stop,
                clock_steps: Vec::new(),
            },
            ..History::default()
        };
        let mut token = 0;
        for (index, at) in (start + 10..stop).step_by(gap_ms as usize).enumerate() {
            let order_id = format!("o-{index}");
            let mut write = operation(&order_id, 1, at, Outcome::Ok);
            if index % 3 == 2 {
                write.kind = OperationKind::Enqueue;
            }
            history.operations.push(write);
            token += 1;
            history
                .executions
                .push(execution(&order_id, token, 1, at + 20));
            history.final_states.push(executed(&order_id, token));
        }
        history
    }

    #[test]
    fn a_system_that_keeps_answering_is_above_the_liveness_floor() {
        let bounds = Bounds {
            min_contended_dequeues: 0,
            min_contended_percent: 0,
            ..Bounds::RUN
        };
        // One order a second, much less than a run does (several a second), meets every floor.
        let report = check(&steady_run(3, 1_000), bounds);
        assert!(report.is_clean(), "{report}");
    }

    #[test]
    fn a_system_that_stops_answering_falls_below_the_liveness_floor() {
        let bounds = Bounds {
            min_contended_dequeues: 0,
            min_contended_percent: 0,
            ..Bounds::RUN
        };
        // The orchestrator killed for good after the first minute: no checkout is acknowledged
        // in the second and third minutes, while enqueues and executions go on.
        let mut history = steady_run(3, 1_000);
        let cut = history.run.clients_started_at_ms + 60_000;
        let dropped: BTreeSet<String> = history
            .operations
            .iter()
            .filter(|op| op.kind == OperationKind::Checkout && op.completed_at_ms >= cut)
            .map(|op| op.order_id.clone())
            .collect();
        for operation in &mut history.operations {
            if dropped.contains(&operation.order_id) {
                operation.outcome = Outcome::Failed;
            }
        }
        history
            .executions
            .retain(|execution| !dropped.contains(&execution.order_id));
        history
            .final_states
            .retain(|state| !dropped.contains(&state.order_id));
        // Without checkouts the executors run short of orders too: two floors in each of the
        // last two minutes.
        let report = check(&history, bounds);
        assert_eq!(report.below_liveness_floor.count, 4, "{report}");
        assert!(
            report.below_liveness_floor.examples[0]
                .starts_with("0 checkouts acknowledged from 60 s to 120 s of the run"),
            "{report}"
        );
        assert_eq!(
            counts(&report)
                .iter()
                .filter(|(_, count)| *count > 0)
                .count(),
            1,
            "{report}"
        );

        // Everything stopping in the last minute fails that minute for all three floors.
        let mut history = steady_run(3, 1_000);
        let cut = history.run.clients_started_at_ms + 120_000;
        history.operations.retain(|op| op.completed_at_ms < cut);
        history.executions.retain(|ex| ex.executed_at_ms < cut);
        let kept: BTreeSet<&str> = history
            .operations
            .iter()
            .map(|op| op.order_id.as_str())
            .collect();
        let final_states = history
            .final_states
            .iter()
            .filter(|state| kept.contains(state.order_id.as_str()))
            .cloned()
            .collect();
        history.final_states = final_states;
        assert_eq!(check(&history, bounds).below_liveness_floor.count, 3);
    }

    #[test]
    fn a_short_run_is_one_window_with_a_scaled_floor() {
        let bounds = Bounds {
            min_checkouts_per_minute: 60,
            ..Bounds::NONE
        };
        // 30 s at one checkout (and a third of them enqueues) every second: 20 checkouts
        // against a floor of 30.
        let mut history = steady_run(1, 1_000);
        history.run.clients_stopped_at_ms = history.run.clients_started_at_ms + 30_000;
        let report = check(&history, bounds);
        assert_eq!(report.below_liveness_floor.count, 1, "{report}");
        assert!(
            report.below_liveness_floor.examples[0]
                .contains("20 checkouts acknowledged from 0 s to 30 s"),
            "{report}"
        );
    }

    #[test]
    fn unknown_outcomes_are_bounded() {
        let mut history = clean_history();
        let bounds = Bounds {
            max_unknown_per_mille: 200,
            ..Bounds::NONE
        };
        // One unknown of five operations is 200 per thousand: at the bound.
        assert!(check(&history, bounds).is_clean());
        history
            .operations
            .push(operation("maybe", 1, 400, Outcome::Unknown));
        let report = check(&history, bounds);
        assert_eq!(report.unknown_outcomes_over_bound.count, 1, "{report}");
        assert!(
            report.unknown_outcomes_over_bound.examples[0]
                .starts_with("2 of 6 operations ended unknown"),
            "{report}"
        );
    }

    #[test]
    fn examples_are_capped_but_the_count_is_not() {
        let mut history = clean_history();
        for index in 0..MAX_EXAMPLES + 5 {
            history
                .operations
                .push(operation(&format!("lost-{index}"), 1, 400, Outcome::Ok));
        }
        let report = check(&history, Bounds::NONE);
        assert_eq!(report.lost.count, MAX_EXAMPLES + 5);
        assert_eq!(report.lost.examples.len(), MAX_EXAMPLES);
        assert!(report.to_string().contains("  - and 5 more\n"), "{report}");
        assert!(report.to_string().ends_with("verdict: FAULTY"));
    }

    #[test]
    fn run_check_judges_a_saved_history_and_names_a_missing_one() {
        let dir = tempfile::tempdir().expect("temporary directory");
        clean_history()
            .save(dir.path())
            .expect("the history is written");
        // The run's floors: this tiny history has too little of everything.
        let report = run_check(dir.path()).expect("a saved history loads");
        assert_eq!(report.too_little_contention.count, 1, "{report}");
        let error = format!("{:#}", run_check(&dir.path().join("missing")).unwrap_err());
        assert!(error.contains("cannot load the history in"), "{error}");
    }

    /// How an executor's lease ends, in the model below.
    #[derive(Debug, Clone, Copy)]
    enum LeaseEnd {
        /// Acknowledged and accepted.
        Acknowledged,
        /// Died after executing, before acknowledging: no answer line.
        Died,
        /// Acknowledged too late: refused, the order went back to the queue.
        Refused,
    }

    /// One step of a correct queue's life, for the model below.
    #[derive(Debug, Clone)]
    enum Step {
        /// A client enqueues an order; `enqueued` says whether the cluster committed it (always
        /// for `Ok`, never for `Failed`, either way for `Unknown`).
        Enqueue {
            priority: u32,
            outcome: Outcome,
            enqueued: bool,
            answer_delay_ms: u64,
        },
        /// A new lease dequeues the best order and executes it.
        Execute(LeaseEnd),
        /// A read of one order (chosen by `pick` among those asked for so far), or of the queue.
        Read {
            pick: usize,
            kind: ReadKind,
            answer_delay_ms: u64,
        },
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let outcome = prop_oneof![
            Just(Outcome::Ok),
            Just(Outcome::Failed),
            Just(Outcome::Unknown)
        ];
        let lease_end = prop_oneof![
            6 => Just(LeaseEnd::Acknowledged),
            1 => Just(LeaseEnd::Died),
            1 => Just(LeaseEnd::Refused),
        ];
        let read_kind = prop_oneof![
            Just(ReadKind::OrderRest),
            Just(ReadKind::GetOrder),
            Just(ReadKind::ListQueue)
        ];
        prop_oneof![
            (1u32..6, outcome, any::<bool>(), 0u64..40).prop_map(
                |(priority, outcome, enqueued, answer_delay_ms)| Step::Enqueue {
                    priority,
                    outcome,
                    enqueued: match outcome {
                        Outcome::Ok => true,
                        Outcome::Failed => false,
                        Outcome::Unknown => enqueued,
                    },
                    answer_delay_ms,
                }
            ),
            lease_end.prop_map(Step::Execute),
            (any::<usize>(), read_kind, 0u64..40).prop_map(|(pick, kind, answer_delay_ms)| {
                Step::Read {
                    pick,
                    kind,
                    answer_delay_ms,
                }
            }),
        ]
    }

    /// The history of a correct queue running `steps` 10 ms apart, then draining. A step at
    /// time `t` takes effect at `t`: an enqueue commits (at `t` of the queue's own time, which
    /// the model runs 100 times as fast as the runner's, so that orders age by many books'
    /// worth), a read is linearized, a dequeue is applied (its execution finishes at `t + 5`,
    /// its acknowledgement commits at `t + 6` and is answered at `t + 7`; a lease that ends
    /// otherwise gives the order back at `t + 8`).
    fn model_history(steps: &[Step]) -> History {
        let mut history = History::default();
        // Queued orders in dequeue order, with their ids.
        let mut queue: BTreeMap<DequeueKey, String> = BTreeMap::new();
        let mut places: BTreeMap<String, QueuePlace> = BTreeMap::new();
        let mut tokens: BTreeMap<String, u64> = BTreeMap::new();
        let mut enqueued: BTreeMap<String, u32> = BTreeMap::new();
        let mut asked: Vec<String> = Vec::new();
        let mut token = 0;
        let drain = std::iter::repeat_n(Step::Execute(LeaseEnd::Acknowledged), steps.len());
        let mut now = 1_000;
        for (index, step) in steps.iter().cloned().chain(drain).enumerate() {
            now = 1_000 + 10 * index as u64;
            match step {
                Step::Enqueue {
                    priority,
                    outcome,
                    enqueued: committed,
                    answer_delay_ms,
                } => {
                    let order_id = format!("o-{index}");
                    if committed {
                        let place = QueuePlace {
                            enqueued_at_queue_ms: 100 * now,
                            sequence: places.len() as u64,
                        };
                        let key =
                            DequeueKey::new(place.enqueued_at_queue_ms, priority, place.sequence);
                        queue.insert(key, order_id.clone());
                        places.insert(order_id.clone(), place);
                        enqueued.insert(order_id.clone(), priority);
                    }
                    asked.push(order_id.clone());
                    history.operations.push(ClientOperation {
                        invoked_at_ms: now - 1,
                        completed_at_ms: now + answer_delay_ms,
                        ..operation(&order_id, priority, 0, outcome)
                    });
                }
                Step::Execute(end) => {
                    let Some((&first, order_id)) = queue.first_key_value() else {
                        continue;
                    };
                    let order_id = order_id.clone();
                    let priority = enqueued[&order_id];
                    token += 1;
                    history.executions.push(Execution {
                        executed_at_ms: now + 5,
                        ..execution(&order_id, token, priority, now)
                    });
                    let answer_of = |kind| answer(&order_id, token, kind, now + 7);
                    match end {
                        LeaseEnd::Acknowledged => {
                            history
                                .acknowledgements
                                .push(answer_of(AcknowledgementAnswer::Accepted));
                            queue.remove(&first);
                            tokens.insert(order_id, token);
                        }
                        LeaseEnd::Refused => history
                            .acknowledgements
                            .push(answer_of(AcknowledgementAnswer::Refused)),
                        LeaseEnd::Died => {}
                    }
                }
                Step::Read {
                    pick,
                    kind,
                    answer_delay_ms,
                } => {
                    let result = match kind {
                        ReadKind::ListQueue => ReadResult::Queue {
                            depth: queue.len() as u64,
                            order_ids: queue.values().cloned().collect(),
                        },
                        _ if asked.is_empty() => continue,
                        _ => {
                            let order_id = &asked[pick % asked.len()];
                            let state = if tokens.contains_key(order_id) {
                                ReadState::Executed
                            } else if enqueued.contains_key(order_id) {
                                ReadState::Queued
                            } else {
                                ReadState::Unknown
                            };
                            ReadResult::Order { state }
                        }
                    };
                    let order_id = match &result {
                        ReadResult::Order { .. } => Some(asked[pick % asked.len()].clone()),
                        _ => None,
                    };
                    history.reads.push(ReadOperation {
                        client: "reader-1".into(),
                        kind,
                        via: "leader".into(),
                        order_id,
                        invoked_at_ms: now,
                        completed_at_ms: now + answer_delay_ms,
                        result,
                    });
                }
            }
        }
        for operation in &history.operations {
            let order_id = &operation.order_id;
            history.final_states.push(match tokens.get(order_id) {
                Some(&token) => FinalState {
                    contents: Some(operation.contents.clone()),
                    place: places.get(order_id).copied(),
                    ..executed(order_id, token)
                },
                None => final_state(order_id, OrderState::Unknown),
            });
        }
        history.run = RunWindow {
            seed: 0,
            clients_started_at_ms: 1_000,
            clients_stopped_at_ms: now,
            clock_steps: Vec::new(),
        };
        history.end.replicas = (1..=3).map(|node| replica(node, 99, "same")).collect();
        history
    }

    proptest::proptest! {
        #[test]
        fn a_correct_queue_is_judged_clean(steps in proptest::collection::vec(step(), 0..80)) {
            let history = model_history(&steps);
            let report = check(&history, Bounds::NONE);
            proptest::prop_assert!(report.is_clean(), "{report}");
            proptest::prop_assert_eq!(report.executions, history.executions.len());
        }
    }

    /// Ways to break a correct history, each of which a correct checker must notice.
    #[derive(Debug, Clone, Copy)]
    enum Mutation {
        DropCountingExecution,
        DuplicateExecution,
        SwapDequeueTimes,
        ChangeContents,
        StaleRead,
        AcceptRefusedAnswer,
        ForgetAcknowledgedOrder,
        Crash,
        DivergeReplica,
        ExecuteStranger,
        /// The cluster reports an order that waited while another was dequeued as placed first
        /// of all (enqueued at 0 of the queue's time, sequence 0).
        PlaceFirst,
    }

    /// Applies `mutation` at `pick` (an index into whatever it changes); false when the history
    /// has nothing it applies to.
    fn mutate(history: &mut History, mutation: Mutation, pick: usize) -> bool {
        let executed: Vec<(String, u64)> = history
            .final_states
            .iter()
            .filter_map(|state| match &state.state {
                OrderState::Executed { token, .. } => Some((state.order_id.clone(), *token)),
                _ => None,
            })
            .collect();
        match mutation {
            Mutation::DropCountingExecution => {
                let Some((order_id, token)) = executed.get(pick % executed.len().max(1)) else {
                    return false;
                };
                history
                    .executions
                    .retain(|line| !(line.order_id == *order_id && line.token == *token));
            }
            Mutation::DuplicateExecution => {
                let Some(line) = history
                    .executions
                    .get(pick % history.executions.len().max(1))
                else {
                    return false;
                };
                history.executions.push(line.clone());
            }
            Mutation::SwapDequeueTimes => {
                let count = history.executions.len();
                if count < 2 {
                    return false;
                }
                let (first, second) = (pick % count, (pick / count) % count);
                if first == second {
                    return false;
                }
                let times = (
                    history.executions[first].dequeued_at_ms,
                    history.executions[second].dequeued_at_ms,
                );
                history.executions[first].dequeued_at_ms = times.1;
                history.executions[second].dequeued_at_ms = times.0;
            }
            Mutation::ChangeContents => {
                let with_contents: Vec<usize> = (0..history.final_states.len())
                    .filter(|&at| history.final_states[at].contents.is_some())
                    .collect();
                let Some(&at) = with_contents.get(pick % with_contents.len().max(1)) else {
                    return false;
                };
                if let Some(contents) = &mut history.final_states[at].contents {
                    contents.items[0].quantity += 1;
                }
            }
            Mutation::StaleRead => {
                let acknowledged: Vec<&ClientOperation> = history
                    .operations
                    .iter()
                    .filter(|operation| operation.outcome == Outcome::Ok)
                    .collect();
                let Some(operation) = acknowledged.get(pick % acknowledged.len().max(1)) else {
                    return false;
                };
                let stale = read_order(
                    &operation.order_id,
                    operation.completed_at_ms + 1,
                    ReadState::Unknown,
                );
                history.reads.push(stale);
            }
            Mutation::AcceptRefusedAnswer => {
                let refused: Vec<usize> = (0..history.acknowledgements.len())
                    .filter(|&at| {
                        history.acknowledgements[at].answer == AcknowledgementAnswer::Refused
                    })
                    .collect();
                let Some(&at) = refused.get(pick % refused.len().max(1)) else {
                    return false;
                };
                history.acknowledgements[at].answer = AcknowledgementAnswer::Accepted;
            }
            Mutation::ForgetAcknowledgedOrder => {
                let acknowledged: Vec<String> = history
                    .operations
                    .iter()
                    .filter(|operation| operation.outcome == Outcome::Ok)
                    .map(|operation| operation.order_id.clone())
                    .collect();
                let Some(order_id) = acknowledged.get(pick % acknowledged.len().max(1)) else {
                    return false;
                };
                history
                    .final_states
                    .retain(|state| state.order_id != *order_id);
            }
            Mutation::Crash => history.exits.push(ProcessExit {
                at_ms: 1_000,
                process: format!("executor-{}", pick % 3 + 1),
                status: "signal: 6 (SIGABRT)".into(),
                log_tail: String::new(),
            }),
            Mutation::DivergeReplica => {
                let count = history.end.replicas.len();
                history.end.replicas[pick % count].state_digest = "other".into();
            }
            Mutation::PlaceFirst => {
                let acknowledged_at: HashMap<&str, u64> = history
                    .operations
                    .iter()
                    .filter(|operation| operation.outcome == Outcome::Ok)
                    .map(|operation| (operation.order_id.as_str(), operation.completed_at_ms))
                    .collect();
                let counted: HashMap<&str, u64> = executed
                    .iter()
                    .filter_map(|(order_id, token)| {
                        let line = history
                            .executions
                            .iter()
                            .find(|line| line.order_id == *order_id && line.token == *token)?;
                        Some((line.order_id.as_str(), line.dequeued_at_ms))
                    })
                    .collect();
                let waited: Vec<String> = counted
                    .iter()
                    .filter(|&(order_id, &began)| {
                        acknowledged_at.get(order_id).is_some_and(|&at_ms| {
                            counted
                                .values()
                                .any(|&other| at_ms < other && other < began)
                        })
                    })
                    .map(|(order_id, _)| (*order_id).to_owned())
                    .collect();
                let mut waited = waited;
                waited.sort();
                let Some(order_id) = waited.get(pick % waited.len().max(1)) else {
                    return false;
                };
                let state = history
                    .final_states
                    .iter_mut()
                    .find(|state| state.order_id == *order_id)
                    .expect("an executed order has a final state");
                state.place = Some(QueuePlace {
                    enqueued_at_queue_ms: 0,
                    sequence: 0,
                });
            }
            Mutation::ExecuteStranger => {
                let token = history.executions.iter().map(|line| line.token).max();
                let dequeued = history
                    .executions
                    .iter()
                    .map(|line| line.executed_at_ms)
                    .max();
                history.executions.push(execution(
                    "stranger",
                    token.unwrap_or(0) + 1,
                    1,
                    dequeued.unwrap_or(0) + 1,
                ));
            }
        }
        true
    }

    fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Mutation::DropCountingExecution),
            Just(Mutation::DuplicateExecution),
            Just(Mutation::SwapDequeueTimes),
            Just(Mutation::ChangeContents),
            Just(Mutation::StaleRead),
            Just(Mutation::AcceptRefusedAnswer),
            Just(Mutation::ForgetAcknowledgedOrder),
            Just(Mutation::Crash),
            Just(Mutation::DivergeReplica),
            Just(Mutation::ExecuteStranger),
            Just(Mutation::PlaceFirst),
        ]
    }

    proptest::proptest! {
        #[test]
        fn a_broken_history_is_judged_faulty(
            steps in proptest::collection::vec(step(), 1..60),
            mutation in mutation(),
            pick in proptest::prelude::any::<usize>(),
        ) {
            let mut history = model_history(&steps);
            proptest::prop_assume!(mutate(&mut history, mutation, pick));
            let report = check(&history, Bounds::NONE);
            proptest::prop_assert!(!report.is_clean(), "{:?} went unnoticed:\n{}", mutation, report);
        }
    }
}
