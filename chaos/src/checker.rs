//! Judges a [`History`] against the queue's guarantees. [`check`] is pure (a history in, a
//! [`Report`] out) and runs in O(n log n) over the operations and executions, so that the history
//! of a long run (about 10^5 operations) is judged in well under a second.
//!
//! # Terms
//! - An order is *asked for* when some operation that may have enqueued it names it: one whose
//!   outcome is `Ok` or `Unknown`. An order whose every operation `Failed` was, by the meaning
//!   of `Failed`, never enqueued.
//! - An order is *acknowledged* when an operation naming it has outcome `Ok`; it was acknowledged
//!   at the earliest `completed_at_ms` of those operations.
//! - The cluster *knows* an order when its final state is `Queued`, `Executing` or `Executed`; a
//!   final state `Unknown`, or none, means it does not.
//! - The *counting execution* of an order whose final state is `Executed { token: T, .. }` is its
//!   ledger line with token `T` (the earliest dequeued, if there are several). Other orders have
//!   none. Ledger lines with a token smaller than `T`, and every ledger line of an order that is
//!   not `Executed` at the end, are *fenced re-executions*: an executor executed the order and
//!   then died or lost its lease before acknowledging it, so the cluster gave the order back to
//!   the queue. They are counted, not faults (the ledger is fenced by the cluster's record).
//!
//! # Faults
//! - **lost**: an asked-for order that was acknowledged, or that an executor executed (it has a
//!   ledger line, so the cluster once held it), and that the cluster does not know at the end.
//! - **stuck**: an asked-for order that the cluster knows but that is not `Executed` at the end
//!   (`Queued` or `Executing` after healing and draining).
//! - **executed twice**: an order whose final state is `Executed { token: T, .. }` and that has
//!   more than one ledger line with token `T`, or any ledger line with a token greater than `T`
//!   (executed again after the cluster recorded it executed), or no ledger line with token `T`
//!   at all (acknowledged without being executed). One fault per order.
//! - **phantom**: an order that is not asked for, yet has a ledger line or is known to the
//!   cluster at the end. One fault per order.
//! - **tokens backwards**: the counting executions, sorted by `dequeued_at_ms` (ties by token),
//!   must have strictly increasing tokens, since each lease executes one order and then resigns;
//!   a token equal to or lower than the previous execution's is a fault.
//! - **overlapping**: in the same order, an execution whose dequeue began (`dequeued_at_ms`)
//!   before an earlier execution with another token finished (`executed_at_ms`): two executors
//!   held an order at once. The earlier execution named is the one that finished last.
//! - **priority skips**: a counting execution X skipped an order Y when Y's priority is higher
//!   than X's, Y was acknowledged before X's dequeue began, and Y's counting execution began after
//!   X's dequeue (or Y has none). One fault per skipping execution, naming the highest-priority
//!   order it skipped.
//!
//! # Why a priority skip is a fault
//! Y was acknowledged, so its enqueue was committed before `completed_at_ms`, hence before X's
//! dequeue began (all times come from one machine's clock) and before the cluster applied that
//! dequeue. At that moment Y was queued: it was not executed (its counting execution began
//! later, and an execution cannot count before its dequeue began), and it was not executing
//! either, because the cluster grants a new lease (X's) only after the previous one ended, and an
//! order executing under an ended lease returns to the queue. The dequeue takes the
//! highest-priority queued order, so it had to return Y or an order of Y's priority or higher,
//! never X. Equal priorities go in commit order, which a client's acknowledgement does not
//! reveal, so they are never judged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::history::{ClientOperation, Execution, History, OperationKind, OrderState, Outcome};

/// How many examples each kind of fault keeps; the count goes on.
pub const MAX_EXAMPLES: usize = 10;

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
    pub checkouts: OutcomeCounts,
    pub enqueues: OutcomeCounts,
    /// Ledger lines.
    pub executions: usize,
    pub fenced_re_executions: usize,
    /// Orders whose final state is `Executed`.
    pub orders_executed: usize,
}

impl Report {
    /// Every kind of fault with its name, in the order the report prints them.
    pub fn faults(&self) -> [(&'static str, &Findings); 7] {
        [
            ("lost", &self.lost),
            ("stuck", &self.stuck),
            ("executed twice", &self.executed_twice),
            ("phantom", &self.phantom),
            ("tokens backwards", &self.tokens_backwards),
            ("overlapping", &self.overlapping),
            ("priority skips", &self.priority_skips),
        ]
    }

    /// No fault of any kind.
    pub fn is_clean(&self) -> bool {
        self.faults()
            .iter()
            .all(|(_, findings)| findings.count == 0)
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
        writeln!(
            f,
            "executions: {} ({} fenced re-executions), orders executed: {}",
            self.executions, self.fenced_re_executions, self.orders_executed
        )?;
        write!(
            f,
            "verdict: {}",
            if self.is_clean() { "clean" } else { "FAULTY" }
        )
    }
}

/// Loads the history in `dir` and judges it: what `chaos check --history DIR` runs.
pub fn run_check(dir: &Path) -> anyhow::Result<Report> {
    let history = History::load(dir)
        .with_context(|| format!("cannot load the history in {}", dir.display()))?;
    Ok(check(&history))
}

/// What the history says about one order.
#[derive(Default)]
struct OrderRecord<'h> {
    asked_for: bool,
    /// The earliest acknowledgement, and the priority the client gave the order.
    acknowledged: Option<(u64, u32)>,
    final_state: Option<&'h OrderState>,
    ledger_lines: Vec<&'h Execution>,
}

pub fn check(history: &History) -> Report {
    let mut report = Report {
        executions: history.executions.len(),
        ..Report::default()
    };
    let mut orders: HashMap<&str, OrderRecord> = HashMap::new();
    for operation in &history.operations {
        match operation.kind {
            OperationKind::Checkout => report.checkouts.add(operation.outcome),
            OperationKind::Enqueue => report.enqueues.add(operation.outcome),
        }
        let record = orders.entry(&operation.order_id).or_default();
        record.asked_for |= operation.outcome != Outcome::Failed;
        if operation.outcome == Outcome::Ok {
            record.acknowledged = Some(earliest_acknowledgement(record.acknowledged, operation));
        }
    }
    for state in &history.final_states {
        orders.entry(&state.order_id).or_default().final_state = Some(&state.state);
    }
    for execution in &history.executions {
        orders
            .entry(&execution.order_id)
            .or_default()
            .ledger_lines
            .push(execution);
    }

    // Sorted by id so that the examples come out the same on every run.
    let orders: BTreeMap<&str, OrderRecord> = orders.into_iter().collect();
    let mut counting: Vec<&Execution> = Vec::new();
    for (order_id, record) in &orders {
        let known = !matches!(record.final_state, None | Some(OrderState::Unknown));
        if !record.asked_for && (known || !record.ledger_lines.is_empty()) {
            report.phantom.add(|| {
                format!(
                    "{order_id} was never asked for, yet the cluster ends with {} and the ledger \
                     holds {} line(s) for it",
                    describe(record.final_state),
                    record.ledger_lines.len()
                )
            });
        }
        if record.asked_for
            && !known
            && (record.acknowledged.is_some() || !record.ledger_lines.is_empty())
        {
            report.lost.add(|| match record.acknowledged {
                Some((at_ms, _)) => {
                    format!("{order_id}, acknowledged at {at_ms}, is unknown to the cluster")
                }
                None => format!(
                    "{order_id}, executed by {}, is unknown to the cluster",
                    executors_of(&record.ledger_lines)
                ),
            });
        }
        if record.asked_for
            && matches!(
                record.final_state,
                Some(OrderState::Queued | OrderState::Executing { .. })
            )
        {
            report.stuck.add(|| {
                format!(
                    "{order_id} ends {} after healing and draining",
                    describe(record.final_state)
                )
            });
        }
        match record.final_state {
            Some(OrderState::Executed { token, .. }) => {
                report.orders_executed += 1;
                if let Some(execution) =
                    judge_executed(order_id, *token, &record.ledger_lines, &mut report)
                {
                    counting.push(execution);
                }
            }
            _ => report.fenced_re_executions += record.ledger_lines.len(),
        }
    }

    counting.sort_by_key(|execution| (execution.dequeued_at_ms, execution.token));
    check_leases(&counting, &mut report);
    check_priorities(&orders, &counting, &mut report);
    report
}

fn earliest_acknowledgement(
    earlier: Option<(u64, u32)>,
    operation: &ClientOperation,
) -> (u64, u32) {
    let this = (operation.completed_at_ms, operation.priority);
    earlier.map_or(this, |earlier| earlier.min(this))
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

/// Tokens backwards and overlapping executions, over the counting executions in dequeue order.
fn check_leases(counting: &[&Execution], report: &mut Report) {
    let mut finished_last: Option<&Execution> = None;
    for (index, execution) in counting.iter().enumerate() {
        if let Some(previous) = index.checked_sub(1).map(|previous| counting[previous])
            && execution.token <= previous.token
        {
            report.tokens_backwards.add(|| {
                format!(
                    "{} (token {}, dequeued at {}) follows {} (token {}, dequeued at {})",
                    execution.order_id,
                    execution.token,
                    execution.dequeued_at_ms,
                    previous.order_id,
                    previous.token,
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

/// Priority skips, by a sweep over time: an acknowledged order is *waiting* from its
/// acknowledgement until its counting execution begins (for ever if it has none); each counting
/// execution, at its dequeue, is judged against the highest priority waiting.
fn check_priorities(
    orders: &BTreeMap<&str, OrderRecord>,
    counting: &[&Execution],
    report: &mut Report,
) {
    let started: HashMap<&str, u64> = counting
        .iter()
        .map(|execution| (execution.order_id.as_str(), execution.dequeued_at_ms))
        .collect();
    // (acknowledged at, priority, order id, began at), by acknowledgement.
    let mut acknowledged: Vec<(u64, u32, &str, u64)> = orders
        .iter()
        .filter_map(|(&order_id, record)| {
            let (at_ms, priority) = record.acknowledged?;
            let began = started.get(order_id).copied().unwrap_or(u64::MAX);
            Some((at_ms, priority, order_id, began))
        })
        .collect();
    acknowledged.sort_unstable();
    // Waiting orders as (priority, acknowledged at, order id), and when each stops waiting.
    let mut waiting: BTreeSet<(u32, u64, &str)> = BTreeSet::new();
    let mut stop_waiting: BTreeMap<u64, Vec<(u32, u64, &str)>> = BTreeMap::new();
    let mut next = 0;
    for execution in counting {
        let now = execution.dequeued_at_ms;
        while let Some(&(at_ms, priority, order_id, began)) = acknowledged.get(next)
            && at_ms < now
        {
            next += 1;
            if began > now {
                waiting.insert((priority, at_ms, order_id));
                stop_waiting
                    .entry(began)
                    .or_default()
                    .push((priority, at_ms, order_id));
            }
        }
        while let Some(entry) = stop_waiting.first_entry()
            && *entry.key() <= now
        {
            for order in entry.remove() {
                waiting.remove(&order);
            }
        }
        if let Some(&(priority, at_ms, order_id)) = waiting.last()
            && priority > execution.priority
        {
            report.priority_skips.add(|| {
                format!(
                    "{} (priority {}, token {}) was dequeued at {} while {order_id} (priority \
                     {priority}, acknowledged at {at_ms}) waited",
                    execution.order_id, execution.priority, execution.token, now
                )
            });
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
        Some(OrderState::Executed { executor_id, token }) => {
            format!("executed by {executor_id} under token {token}")
        }
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
    use crate::history::FinalState;

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
            priority,
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
            dequeued_at_ms,
            executed_at_ms: dequeued_at_ms + 10,
        }
    }

    fn executed(order_id: &str, token: u64) -> FinalState {
        FinalState {
            order_id: order_id.into(),
            state: OrderState::Executed {
                executor_id: format!("executor-{}", token % 3 + 1),
                token,
            },
        }
    }

    fn final_state(order_id: &str, state: OrderState) -> FinalState {
        FinalState {
            order_id: order_id.into(),
            state,
        }
    }

    /// Three orders acknowledged at 100, 110, 120, executed by priority under tokens 1 to 3,
    /// 50 ms apart; a failed checkout; an unknown one that was enqueued and executed last (its
    /// priority is the highest, but no answer told when it was enqueued).
    fn clean_history() -> History {
        History {
            operations: vec![
                operation("a", 2, 100, Outcome::Ok),
                operation("b", 5, 110, Outcome::Ok),
                operation("c", 2, 120, Outcome::Ok),
                operation("rejected", 9, 130, Outcome::Failed),
                operation("timed-out", 9, 140, Outcome::Unknown),
            ],
            executions: vec![
                execution("b", 1, 5, 200),
                execution("a", 2, 2, 250),
                execution("c", 3, 2, 300),
                execution("timed-out", 4, 9, 350),
            ],
            final_states: vec![
                executed("a", 2),
                executed("b", 1),
                executed("c", 3),
                final_state("rejected", OrderState::Unknown),
                executed("timed-out", 4),
            ],
            nemesis: Vec::new(),
        }
    }

    /// Asserts that `history` has exactly one fault, of the kind `name`, and returns its
    /// example.
    fn the_one_fault(history: &History, name: &str) -> String {
        let report = check(history);
        let counts: Vec<(&str, usize)> = report
            .faults()
            .iter()
            .map(|(kind, findings)| (*kind, findings.count))
            .collect();
        let expected: Vec<(&str, usize)> = report
            .faults()
            .iter()
            .map(|(kind, _)| (*kind, usize::from(*kind == name)))
            .collect();
        assert_eq!(counts, expected, "{report}");
        assert!(!report.is_clean());
        let (_, findings) = report
            .faults()
            .into_iter()
            .find(|(kind, _)| *kind == name)
            .expect("every fault kind is in the report");
        findings.examples[0].clone()
    }

    #[test]
    fn a_clean_history_is_clean() {
        let report = check(&clean_history());
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
        let text = report.to_string();
        assert!(
            text.starts_with("lost: 0\nstuck: 0\nexecuted twice: 0\n"),
            "{text}"
        );
        assert!(text.ends_with("verdict: clean"), "{text}");
    }

    #[test]
    fn an_empty_history_is_clean() {
        assert!(check(&History::default()).is_clean());
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
        let example = the_one_fault(&history, "lost");
        assert!(example.contains("timed-out, executed by"), "{example}");
    }

    #[test]
    fn an_unknown_operation_whose_order_was_never_enqueued_is_fine() {
        let mut history = clean_history();
        history
            .operations
            .push(operation("maybe", 7, 400, Outcome::Unknown));
        assert!(check(&history).is_clean());
        history
            .final_states
            .push(final_state("maybe", OrderState::Unknown));
        assert!(check(&history).is_clean());
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
    fn two_ledger_lines_under_the_counting_token_are_executed_twice() {
        let mut history = clean_history();
        history.executions.push(execution("c", 3, 2, 300));
        let example = the_one_fault(&history, "executed twice");
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
        // `d` was executed under token 5 whose holder died before acknowledging; the lease
        // expired and token 6 executed it again, and counted.
        history.operations.push(operation("d", 1, 400, Outcome::Ok));
        history.executions.push(execution("d", 5, 1, 500));
        history.executions.push(execution("d", 6, 1, 700));
        history.final_states.push(executed("d", 6));
        let report = check(&history);
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.fenced_re_executions, 1);
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
    fn a_token_going_backwards_is_caught() {
        let mut history = clean_history();
        history.operations.push(operation("d", 1, 400, Outcome::Ok));
        history.executions.push(execution("d", 3, 1, 500));
        history.final_states.push(executed("d", 3));
        let example = the_one_fault(&history, "tokens backwards");
        assert!(
            example.contains("d (token 3, dequeued at 500) follows timed-out (token 4"),
            "{example}"
        );
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
    fn a_dequeue_that_passed_over_a_waiting_higher_priority_order_is_a_skip() {
        let mut history = clean_history();
        // `d` (priority 3) was acknowledged at 260, before `c` (priority 2) was dequeued at 300,
        // and executed only after it.
        history.operations.push(operation("d", 3, 260, Outcome::Ok));
        history.executions.push(execution("d", 5, 3, 400));
        history.final_states.push(executed("d", 5));
        let example = the_one_fault(&history, "priority skips");
        assert!(
            example.contains("c (priority 2, token 3) was dequeued at 300 while d"),
            "{example}"
        );
    }

    #[test]
    fn an_order_acknowledged_after_the_dequeue_began_is_not_skipped() {
        let mut history = clean_history();
        history.operations.push(operation("d", 3, 300, Outcome::Ok));
        history.executions.push(execution("d", 5, 3, 400));
        history.final_states.push(executed("d", 5));
        assert!(check(&history).is_clean());
    }

    #[test]
    fn equal_priorities_are_not_skips() {
        let mut history = clean_history();
        // Same priority as `c`, acknowledged long before it was dequeued, executed after it.
        history.operations.push(operation("d", 2, 105, Outcome::Ok));
        history.executions.push(execution("d", 5, 2, 400));
        history.final_states.push(executed("d", 5));
        assert!(check(&history).is_clean());
    }

    #[test]
    fn examples_are_capped_but_the_count_is_not() {
        let mut history = clean_history();
        for index in 0..MAX_EXAMPLES + 5 {
            history
                .operations
                .push(operation(&format!("lost-{index}"), 1, 400, Outcome::Ok));
        }
        let report = check(&history);
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
        assert!(
            run_check(dir.path())
                .expect("a saved history loads")
                .is_clean()
        );
        let error = format!("{:#}", run_check(&dir.path().join("missing")).unwrap_err());
        assert!(error.contains("cannot load the history in"), "{error}");
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
        /// A new lease dequeues the best order and executes it; a fenced one dies before
        /// acknowledging, and the order goes back to the queue.
        Execute { fenced: bool },
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let outcome = prop_oneof![
            Just(Outcome::Ok),
            Just(Outcome::Failed),
            Just(Outcome::Unknown)
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
            (0u8..4).prop_map(|fenced| Step::Execute {
                fenced: fenced == 0
            }),
        ]
    }

    /// The history of a correct queue running `steps` 10 ms apart, then draining.
    fn model_history(steps: &[Step]) -> History {
        let mut history = History::default();
        // Queued orders as (priority, commit sequence, id).
        let mut queue: Vec<(u32, usize, String)> = Vec::new();
        let mut tokens: BTreeMap<String, u64> = BTreeMap::new();
        let mut token = 0;
        let drain = std::iter::repeat_n(Step::Execute { fenced: false }, steps.len());
        for (index, step) in steps.iter().cloned().chain(drain).enumerate() {
            let now = 1_000 + 10 * index as u64;
            match step {
                Step::Enqueue {
                    priority,
                    outcome,
                    enqueued,
                    answer_delay_ms,
                } => {
                    let order_id = format!("o-{index}");
                    if enqueued {
                        queue.push((priority, index, order_id.clone()));
                    }
                    history.operations.push(ClientOperation {
                        invoked_at_ms: now - 1,
                        completed_at_ms: now + answer_delay_ms,
                        ..operation(&order_id, priority, 0, outcome)
                    });
                }
                Step::Execute { fenced } => {
                    let Some(best) = (0..queue.len())
                        .max_by_key(|&at| (queue[at].0, std::cmp::Reverse(queue[at].1)))
                    else {
                        continue;
                    };
                    token += 1;
                    let (priority, _, order_id) = queue[best].clone();
                    history.executions.push(Execution {
                        executed_at_ms: now + 5,
                        ..execution(&order_id, token, priority, now)
                    });
                    if !fenced {
                        queue.swap_remove(best);
                        tokens.insert(order_id, token);
                    }
                }
            }
        }
        for operation in &history.operations {
            history
                .final_states
                .push(match tokens.get(&operation.order_id) {
                    Some(&token) => executed(&operation.order_id, token),
                    None => final_state(&operation.order_id, OrderState::Unknown),
                });
        }
        history
    }

    proptest::proptest! {
        #[test]
        fn a_correct_queue_is_judged_clean(steps in proptest::collection::vec(step(), 0..80)) {
            let history = model_history(&steps);
            let report = check(&history);
            proptest::prop_assert!(report.is_clean(), "{report}");
            proptest::prop_assert_eq!(report.executions, history.executions.len());
        }
    }
}
