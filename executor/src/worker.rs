//! The executor's loop, a state machine of three states; each is one method that runs until the
//! state changes and returns the next:
//!
//! ```text
//!            lease free (or expired) and work waiting: campaign, granted
//!  Candidate ------------------------------------------------------------> Leader
//!     ^  ^                                                                   |
//!     |  +-- lease refused or unconfirmed, queue empty (resigned) ----------+
//!     |                                                                      | order acknowledged
//!     +------------- back-off elapsed ------------- StandingAside <---------+ (or refused), resigned
//! ```
//!
//! A leader handles exactly one order per lease: dequeue with the token; execute it for
//! `execution` while renewing the lease every third of its TTL, renew once more unless two thirds
//! of it are still confirmed; record the execution in the cluster (fenced by the token, once per
//! order); log `order <id> executed by executor <id>` and append it to the ledger; acknowledge
//! with the token; resign; stand aside for `backoff_after_lead` so that another executor leads
//! next. An order whose dequeue answer carries an execution record (an earlier holder recorded
//! it, then lost its lease before acknowledging) is not executed again: it is only acknowledged.
//!
//! What is once, and why: the execution record is the execution's effect, written once per order
//! by the cluster under a valid lease. The work before it (the `execution` wait here; preparing
//! stock and payment once the two-phase commit exists) may be done again by a next holder when a
//! holder loses its lease before recording; the record, and everything after it, never is. The
//! log line and the ledger line are written by the run whose record committed, at once when it
//! learns so, and by no other run: a run that did not record the execution, or finds it recorded
//! by another, says so in other words. A pause anywhere (SIGSTOP, a stalled VM) delays them but
//! never doubles them: a record attempt whose answer is lost is repeated, even after the lease's
//! end, until the cluster says whether it counted (a repeat under the same token is answered as
//! the first attempt was). Only a crash in the moment between the record's commit and the log
//! line (the answer's way back from the queue leader, and one write) leaves an order with its
//! record and without the line; the record, shown by `GET /orders/{id}` and `queuectl show`,
//! stays the proof.
//!
//! Safety: the executor never acts on a lease it cannot confirm. Every dequeue, record and
//! acknowledgement carries the token and the executor's holder identity (its id and the
//! incarnation drawn when this process started), and the cluster refuses a stale one; a call
//! under the lease races the lease's confirmed end ([`ConfirmedLease`]), and when a renewal is
//! refused, or none is confirmed before that end, the order in hand is dropped at once,
//! unrecorded (the cluster gives it back to the queue when the lease ends).
//!
//! Liveness: the client follows the queue's Raft leader; a failure to reach the cluster is
//! retried after a growing pause, never fatal. Waiting executors read one node's status (no Raft
//! write) and campaign only when there is something to do, so an idle system writes nothing. A
//! campaign is never answered with a token in force, so a run that restarts while its previous
//! run's lease lasts (or whose own grant's answer was lost) waits for that lease to expire.
//!
//! An acknowledgement is retried until the cluster answers it, while the lease's confirmed end
//! has not passed: a retry with the same token is answered as the first attempt was if that one
//! committed, and is refused as stale otherwise once the lease ended, so it is never applied
//! twice nor confused. An unacknowledged order goes back to the queue with its record, and the
//! next holder acknowledges it.
//!
//! Every lease decision here is on the monotonic clock (`tokio::time::Instant`); when to
//! campaign follows the time the queue's leader says the lease has left. The wall clock is read
//! only for the ledger's times.

use std::future::Future;
use std::time::Duration;

use bookstore_proto as pb;
use queue_raft::{ClientError, Holder, OrderItem, QueueClient, QueuedOrder};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::election::{ConfirmedLease, LeaseView, Outlook};
use crate::faults::{FaultPoint, FaultPoints};
use crate::ledger::{Acknowledgement, AcknowledgementAnswer, Execution, Ledger};
use crate::status::StatusBoard;

/// The pause after the first failed call to the cluster; it doubles with each failure in a row.
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(50);
/// The pause never grows beyond this.
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(1);
/// For how many lease TTLs an executor keeps asking whether a record attempt whose answer was
/// lost counted.
const LEARN_RECORDING_FOR: u32 = 3;

/// The executor's timings, from its flags.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How long the lease lasts unless renewed.
    pub lease_ttl: Duration,
    /// How long executing one order takes.
    pub execution: Duration,
    /// How long to stand aside after leading.
    pub backoff_after_lead: Duration,
    /// How often a waiting executor reads the lease.
    pub poll: Duration,
}

impl Timing {
    /// Renewing every third of the TTL leaves two renewals' worth of slack before it expires.
    fn renew_every(&self) -> Duration {
        self.lease_ttl / 3
    }
}

/// The loop's states.
#[derive(Debug)]
enum Phase {
    Candidate,
    Leader(ConfirmedLease),
    StandingAside,
}

/// Why work under the lease stopped before it was done.
#[derive(Debug, thiserror::Error)]
pub enum Interrupted {
    /// The cluster refused the token: the lease ended (resigned or expired) or is another's.
    #[error("the cluster refused token {token}; the current token is {current_token}")]
    LeaseRefused { token: u64, current_token: u64 },
    /// No renewal was confirmed before the lease would end.
    #[error("the lease could not be confirmed before it would end")]
    LeaseUnconfirmed,
    #[error("the executor is shutting down")]
    ShuttingDown,
    /// The cluster refused the request itself; retrying would not help.
    #[error("the queue refused the request: {0}")]
    Rejected(#[source] ClientError),
    /// The cluster refused to record the execution.
    #[error("the cluster refused to record the execution: {0}")]
    RecordRefused(String),
}

/// What the cluster said of an attempt to record an order's execution.
#[derive(Debug)]
enum Recording {
    /// Recorded under this run's lease: this execution is the one that counts.
    Recorded(pb::ExecutionRecord),
    /// An earlier holder recorded it: acknowledge it, nothing more.
    RecordedBefore(pb::ExecutionRecord),
    /// Refused (the lease ended, or the order is not executing under it): nothing recorded.
    Refused { current_token: u64, refusal: String },
}

/// One executor's worker: the election loop and the execution of orders.
pub struct Worker {
    executor_id: String,
    /// This run as the cluster knows it: the id and the incarnation drawn at start.
    holder: Holder,
    client: QueueClient,
    timing: Timing,
    ledger: Option<Ledger>,
    /// Where a test may stop this process (nothing, unless the executor was given a file).
    faults: FaultPoints,
    board: StatusBoard,
    /// Failed lease reads or campaigns in a row; sets the pause before the next, reset by any
    /// answer.
    candidate_failures: u32,
    /// The node that last answered a status read as the leader; asked first next time.
    status_node: Option<String>,
}

impl Worker {
    /// A worker for this run, `holder`, of its executor.
    pub fn new(
        holder: Holder,
        client: QueueClient,
        timing: Timing,
        ledger: Option<Ledger>,
        faults: FaultPoints,
        board: StatusBoard,
    ) -> Self {
        Self {
            executor_id: holder.executor_id.clone(),
            holder,
            client,
            timing,
            ledger,
            faults,
            board,
            candidate_failures: 0,
            status_node: None,
        }
    }

    /// Runs the loop until `stop` is cancelled; if it leads then, it gives the order in hand
    /// back and resigns before returning.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut phase = Phase::Candidate;
        loop {
            phase = match phase {
                // Even once stopped: `lead` sees the stop and gives the lease back.
                Phase::Leader(lease) => self.lead(lease, &stop).await,
                _ if stop.is_cancelled() => break,
                Phase::Candidate => self.seek_lease(&stop).await,
                Phase::StandingAside => self.stand_aside(&stop).await,
            };
        }
        self.board.candidate();
    }

    /// One look at the lease, and a campaign if it is worth one.
    async fn seek_lease(&mut self, stop: &CancellationToken) -> Phase {
        let view = match self.observe_lease().await {
            Ok(view) => view,
            Err(error) => {
                tracing::debug!(executor_id = self.executor_id, %error, "cannot read the lease");
                return self.candidate_failed(&error, stop).await;
            }
        };
        match view.outlook() {
            Outlook::Campaign => {}
            Outlook::Idle => {
                self.candidate_failures = 0;
                self.board.candidate();
                pause(stop, self.timing.poll).await;
                return Phase::Candidate;
            }
            Outlook::HeldBy { holder, .. } => {
                self.candidate_failures = 0;
                self.board.following(Some(holder));
                pause(stop, self.timing.poll).await;
                return Phase::Candidate;
            }
        }
        // Not cut short by shutdown: a campaign that committed unseen would keep the lease from
        // the others until it expired. A lease granted now is given back by `lead` at once.
        let asked_at = Instant::now();
        let answer = self
            .client
            .campaign(&self.holder, self.timing.lease_ttl)
            .await;
        match answer {
            Ok(answer) if answer.granted => {
                self.candidate_failures = 0;
                record_election("won");
                metrics::counter!("bookstore_executor_lease_grants_total").increment(1);
                tracing::info!(
                    executor_id = self.executor_id,
                    incarnation = self.holder.incarnation,
                    token = answer.token,
                    "lease granted"
                );
                self.board.leading(answer.token);
                Phase::Leader(ConfirmedLease::granted(
                    answer.token,
                    asked_at,
                    self.timing.lease_ttl,
                ))
            }
            Ok(answer) => {
                self.candidate_failures = 0;
                record_election("lost");
                if answer.holder == self.executor_id
                    && answer.holder_incarnation == self.holder.incarnation
                {
                    tracing::info!(
                        executor_id = self.executor_id,
                        "the lease is held by this run (a grant whose answer was lost); waiting \
                         for it to expire"
                    );
                }
                self.board.following(Some(answer.holder));
                pause(stop, self.timing.poll).await;
                Phase::Candidate
            }
            Err(error) => {
                tracing::warn!(executor_id = self.executor_id, %error, "campaign failed; retrying");
                record_election("failed");
                self.candidate_failed(&error, stop).await
            }
        }
    }

    async fn candidate_failed(&mut self, error: &ClientError, stop: &CancellationToken) -> Phase {
        self.board.failed(error);
        self.board.candidate();
        pause(stop, retry_pause(self.candidate_failures)).await;
        self.candidate_failures = self.candidate_failures.saturating_add(1);
        Phase::Candidate
    }

    /// The lease as the queue's leader applied it: asks the node that last answered as leader,
    /// else every node, taking the leader's answer (or the most advanced one during an
    /// election). Reads only; no Raft write.
    async fn observe_lease(&mut self) -> Result<LeaseView, ClientError> {
        if let Some(addr) = self.status_node.clone()
            && let Ok(status) = self.client.cluster_status_of(&addr).await
            && status.role == "leader"
        {
            return Ok(LeaseView::from(&status));
        }
        let mut best: Option<(String, pb::ClusterStatusResponse)> = None;
        let mut last_error = None;
        for (addr, answer) in self.client.cluster_status_all().await {
            match answer {
                Ok(status) => {
                    let better = best.as_ref().is_none_or(|(_, best)| {
                        (status.role == "leader", status.applied_index)
                            > (best.role == "leader", best.applied_index)
                    });
                    if better {
                        best = Some((addr, status));
                    }
                }
                Err(error) => last_error = Some(error),
            }
        }
        match best {
            Some((addr, status)) => {
                self.status_node = (status.role == "leader").then_some(addr);
                Ok(LeaseView::from(&status))
            }
            None => Err(last_error.unwrap_or_else(|| ClientError::Unreachable {
                attempts: 0,
                waited: Duration::ZERO,
                last_error: "no queue node to ask".to_owned(),
            })),
        }
    }

    /// One term as leader: at most one order, then resign.
    async fn lead(&mut self, mut lease: ConfirmedLease, stop: &CancellationToken) -> Phase {
        let token = lease.token();
        let dequeued_at = rfc3339_now();
        let dequeued = self
            .call_under_lease(&lease, stop, || self.client.dequeue(&self.holder, token))
            .await;
        let (order, recorded_before) = match dequeued {
            Ok(answer) if !answer.accepted => {
                let refused = Interrupted::LeaseRefused {
                    token,
                    current_token: answer.current_token,
                };
                return self.give_up(&lease, refused, None).await;
            }
            Ok(pb::DequeueResponse { order: None, .. }) => {
                // Another leader took the last order just before this one was granted.
                tracing::debug!(executor_id = self.executor_id, token, "queue empty");
                self.resign(token).await;
                self.board.candidate();
                return Phase::Candidate;
            }
            Ok(pb::DequeueResponse {
                order: Some(order),
                execution,
                ..
            }) => (queued_order(order), execution),
            Err(interrupted) => return self.give_up(&lease, interrupted, None).await,
        };
        let (order_id, priority) = (order.order_id().to_owned(), order.priority());
        tracing::info!(
            order_id,
            executor_id = self.executor_id,
            token,
            priority,
            "order dequeued"
        );
        self.board.executing(&order_id, priority);
        self.faults
            .reach(FaultPoint::Dequeued, &order_id, token)
            .await;

        match recorded_before {
            Some(execution) => tracing::info!(
                order_id,
                executor_id = self.executor_id,
                token,
                executed_by = execution.executor_id,
                executed_under = execution.token,
                "order {order_id} was executed already; acknowledging it only"
            ),
            None => {
                if let Err(interrupted) = self.execute(&mut lease, &order, stop).await {
                    return self.give_up(&lease, interrupted, Some(&order_id)).await;
                }
                self.faults
                    .reach(FaultPoint::Executed, &order_id, token)
                    .await;
                // Before `record` checks the lease: the work ended while it was confirmed. The
                // ledger line is written later (once the record's answer comes, which a lost
                // answer or a pause delays past the lease), but names this moment.
                let executed_at = rfc3339_now();
                match self.record(&lease, &order_id).await {
                    Ok(Recording::Recorded(execution)) => {
                        let held = (dequeued_at, executed_at);
                        self.report_executed(&order, &execution, held).await;
                        self.faults
                            .reach(FaultPoint::Recorded, &order_id, token)
                            .await;
                    }
                    Ok(Recording::RecordedBefore(execution)) => tracing::warn!(
                        order_id,
                        executor_id = self.executor_id,
                        token,
                        executed_by = execution.executor_id,
                        executed_under = execution.token,
                        "order {order_id} was executed already; acknowledging it only"
                    ),
                    Ok(Recording::Refused {
                        current_token,
                        refusal,
                    }) => {
                        let refused = if current_token == token {
                            Interrupted::RecordRefused(refusal)
                        } else {
                            Interrupted::LeaseRefused {
                                token,
                                current_token,
                            }
                        };
                        return self.give_up(&lease, refused, Some(&order_id)).await;
                    }
                    Err(interrupted) => {
                        return self.give_up(&lease, interrupted, Some(&order_id)).await;
                    }
                }
            }
        }

        let answer = self.acknowledge(&lease, &order_id, stop).await;
        self.record_answer(token, &order_id, answer.as_ref()).await;
        match answer {
            Some(answer) if answer.accepted => tracing::info!(
                order_id,
                executor_id = self.executor_id,
                token,
                executed_at_ms = answer.executed_at_ms,
                "order acknowledged"
            ),
            Some(answer) => tracing::warn!(
                order_id,
                executor_id = self.executor_id,
                token,
                refusal = answer.refusal,
                "acknowledgement refused; the next leader acknowledges the recorded execution"
            ),
            None => tracing::warn!(
                order_id,
                executor_id = self.executor_id,
                token,
                "acknowledgement unconfirmed; the next leader acknowledges the recorded \
                 execution if it did not count"
            ),
        }
        self.faults
            .reach(FaultPoint::Acknowledged, &order_id, token)
            .await;
        self.resign(token).await;
        Phase::StandingAside
    }

    /// Appends the cluster's answer to the acknowledgement to the ledger, after the execution's
    /// own line. A failure to write it is only logged: the order is executed and acknowledged
    /// either way, and the line only tells a reader what the executor heard.
    async fn record_answer(
        &self,
        token: u64,
        order_id: &str,
        answer: Option<&pb::AcknowledgeResponse>,
    ) {
        let Some(ledger) = &self.ledger else {
            return;
        };
        let (answer, refusal) = match answer {
            Some(answer) if answer.accepted => (AcknowledgementAnswer::Accepted, String::new()),
            Some(answer) => (AcknowledgementAnswer::Refused, answer.refusal.clone()),
            None => (AcknowledgementAnswer::Unanswered, String::new()),
        };
        let acknowledgement = Acknowledgement {
            order_id: order_id.to_owned(),
            executor_id: self.executor_id.clone(),
            token,
            answer,
            refusal,
            answered_at: rfc3339_now(),
        };
        if let Err(error) = ledger.record_acknowledgement(&acknowledgement).await {
            self.board.failed(&error);
            tracing::warn!(executor_id = self.executor_id, order_id, token, %error, "cannot record the acknowledgement's answer");
        }
    }

    /// Executes `order` (the work before its record) while holding the lease, and leaves most of
    /// a lease for recording and acknowledging it: renewed once more unless enough of it is
    /// still confirmed (a short execution right after the grant).
    async fn execute(
        &self,
        lease: &mut ConfirmedLease,
        order: &QueuedOrder,
        stop: &CancellationToken,
    ) -> Result<(), Interrupted> {
        tracing::debug!(
            order_id = order.order_id(),
            executor_id = self.executor_id,
            "executing"
        );
        self.hold_while(lease, stop, sleep(self.timing.execution))
            .await?;
        if lease.remaining(Instant::now()) < self.timing.lease_ttl * 2 / 3 {
            self.renew_now(lease, stop).await?;
        }
        if !lease.is_valid_at(Instant::now()) {
            return Err(Interrupted::LeaseUnconfirmed);
        }
        Ok(())
    }

    /// Records the execution of `order_id` under the lease. The first attempt is made only
    /// while the lease is confirmed. An attempt in flight is never cut off (by shutdown or by
    /// the lease's end), and one whose answer is lost is repeated, also after the lease's end,
    /// until the cluster says whether the execution counts: a repeat under the same token is
    /// answered as the first attempt was, or refused as stale if that one never committed. After
    /// [`LEARN_RECORDING_FOR`] leases without an answer it gives up, and the order's record in
    /// the cluster is all that says.
    async fn record(
        &self,
        lease: &ConfirmedLease,
        order_id: &str,
    ) -> Result<Recording, Interrupted> {
        let token = lease.token();
        if !lease.is_valid_at(Instant::now()) {
            return Err(Interrupted::LeaseUnconfirmed);
        }
        let give_up_at = Instant::now() + self.timing.lease_ttl * LEARN_RECORDING_FOR;
        let mut failures = 0;
        let answer = loop {
            match self
                .client
                .record_execution(&self.holder, token, order_id)
                .await
            {
                Ok(answer) => break answer,
                Err(error @ ClientError::Unreachable { .. }) if Instant::now() < give_up_at => {
                    tracing::debug!(executor_id = self.executor_id, order_id, %error, "record failed; asking again");
                    self.board.failed(&error);
                }
                Err(error @ ClientError::Unreachable { .. }) => {
                    tracing::warn!(
                        order_id,
                        executor_id = self.executor_id,
                        token,
                        %error,
                        "cannot learn whether the execution was recorded; the order's record in \
                         the cluster says"
                    );
                    return Err(Interrupted::LeaseUnconfirmed);
                }
                Err(other) => return Err(Interrupted::Rejected(other)),
            }
            sleep(retry_pause(failures)).await;
            failures += 1;
        };
        Ok(match answer {
            pb::RecordExecutionResponse {
                recorded: true,
                execution: Some(execution),
                ..
            } => Recording::Recorded(execution),
            pb::RecordExecutionResponse {
                execution: Some(execution),
                ..
            } => Recording::RecordedBefore(execution),
            pb::RecordExecutionResponse {
                current_token,
                refusal,
                ..
            } => Recording::Refused {
                current_token,
                refusal,
            },
        })
    }

    /// Says, once, that this run's execution of `order` counts: the log line, the ledger line
    /// (with `held`: when the dequeue began and when the work ended), the status and the metric. The record is committed already; a ledger that cannot be
    /// written is reported and changes nothing.
    async fn report_executed(
        &self,
        order: &QueuedOrder,
        execution: &pb::ExecutionRecord,
        (dequeued_at, executed_at): (String, String),
    ) {
        let order_id = order.order_id();
        tracing::info!(
            order_id,
            executor_id = self.executor_id,
            incarnation = self.holder.incarnation,
            token = execution.token,
            priority = order.priority(),
            recorded_at_ms = execution.recorded_at_ms,
            "order {order_id} executed by executor {}",
            self.executor_id
        );
        self.board.executed();
        metrics::counter!("bookstore_executor_orders_executed_total").increment(1);
        if let Some(ledger) = &self.ledger {
            let line = Execution {
                order_id: order_id.to_owned(),
                executor_id: self.executor_id.clone(),
                token: execution.token,
                priority: order.priority(),
                customer: order.customer().to_owned(),
                dequeued_at,
                executed_at,
            };
            if let Err(error) = ledger.record(&line).await {
                self.board.failed(&error);
                tracing::error!(
                    order_id,
                    executor_id = self.executor_id,
                    %error,
                    "the execution is recorded in the cluster but not in the ledger"
                );
            }
        }
    }

    /// Stops working under the lease: drops the order in hand unacknowledged and, unless the
    /// cluster already refused the token, resigns so the order goes back to the queue now
    /// rather than when the lease expires.
    async fn give_up(
        &mut self,
        lease: &ConfirmedLease,
        interrupted: Interrupted,
        order_id: Option<&str>,
    ) -> Phase {
        let token = lease.token();
        match &interrupted {
            Interrupted::ShuttingDown => tracing::info!(
                executor_id = self.executor_id,
                token,
                order_id,
                "shutting down; giving the lease back"
            ),
            other => {
                self.board.failed(other);
                tracing::warn!(
                    executor_id = self.executor_id,
                    token,
                    order_id,
                    reason = %other,
                    "lease lost; order abandoned"
                );
            }
        }
        if !matches!(interrupted, Interrupted::LeaseRefused { .. }) {
            self.resign(token).await;
        }
        self.board.candidate();
        Phase::Candidate
    }

    /// Runs `work` while renewing the lease every third of its TTL. Returns as soon as a
    /// renewal is refused, the lease's confirmed end passes, or `stop` is cancelled, dropping
    /// `work` unfinished.
    async fn hold_while<F: Future>(
        &self,
        lease: &mut ConfirmedLease,
        stop: &CancellationToken,
        work: F,
    ) -> Result<F::Output, Interrupted> {
        let mut work = std::pin::pin!(work);
        let mut next_renewal = Instant::now() + self.timing.renew_every();
        let mut failures = 0;
        loop {
            let renewal = async {
                sleep_until(next_renewal).await;
                let asked_at = Instant::now();
                let answer = self
                    .client
                    .renew_lease(&self.holder, lease.token(), self.timing.lease_ttl)
                    .await;
                (asked_at, answer)
            };
            // Biased: a lease that ran out wins over work that finished at the same moment.
            tokio::select! {
                biased;
                () = stop.cancelled() => return Err(Interrupted::ShuttingDown),
                () = sleep_until(lease.valid_until()) => return Err(Interrupted::LeaseUnconfirmed),
                output = &mut work => return Ok(output),
                (asked_at, answer) = renewal => match answer {
                    Ok(answer) if answer.accepted => {
                        failures = 0;
                        lease.renewed(asked_at, self.timing.lease_ttl);
                        next_renewal = Instant::now() + self.timing.renew_every();
                    }
                    Ok(answer) => {
                        return Err(Interrupted::LeaseRefused {
                            token: lease.token(),
                            current_token: answer.current_token,
                        });
                    }
                    Err(ClientError::Unreachable { last_error, .. }) => {
                        tracing::debug!(executor_id = self.executor_id, last_error, "renewal failed; retrying");
                        next_renewal = Instant::now() + retry_pause(failures);
                        failures += 1;
                    }
                    Err(other) => return Err(Interrupted::Rejected(other)),
                },
            }
        }
    }

    /// Renews the lease now, within its confirmed end.
    async fn renew_now(
        &self,
        lease: &mut ConfirmedLease,
        stop: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let asked_at = Instant::now();
        let token = lease.token();
        let answer = self
            .call_under_lease(lease, stop, || {
                self.client
                    .renew_lease(&self.holder, token, self.timing.lease_ttl)
            })
            .await?;
        if !answer.accepted {
            return Err(Interrupted::LeaseRefused {
                token,
                current_token: answer.current_token,
            });
        }
        lease.renewed(asked_at, self.timing.lease_ttl);
        Ok(())
    }

    /// Makes `call` (a request carrying the lease's token), retrying while the cluster cannot be
    /// reached, until it is answered or the lease's confirmed end passes.
    async fn call_under_lease<T, F, Fut>(
        &self,
        lease: &ConfirmedLease,
        stop: &CancellationToken,
        call: F,
    ) -> Result<T, Interrupted>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut failures = 0;
        loop {
            // Checked before the request is made: a request on a lapsed lease is never sent.
            if !lease.is_valid_at(Instant::now()) {
                return Err(Interrupted::LeaseUnconfirmed);
            }
            let outcome = tokio::select! {
                biased;
                () = stop.cancelled() => return Err(Interrupted::ShuttingDown),
                () = sleep_until(lease.valid_until()) => return Err(Interrupted::LeaseUnconfirmed),
                outcome = call() => outcome,
            };
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(error @ ClientError::Unreachable { .. }) => {
                    tracing::debug!(executor_id = self.executor_id, %error, "call under the lease failed; retrying");
                    self.board.failed(&error);
                }
                Err(other) => return Err(Interrupted::Rejected(other)),
            }
            tokio::select! {
                () = stop.cancelled() => return Err(Interrupted::ShuttingDown),
                () = sleep_until(lease.valid_until()) => return Err(Interrupted::LeaseUnconfirmed),
                () = sleep(retry_pause(failures)) => {}
            }
            failures += 1;
        }
    }

    /// Acknowledges the order until the cluster answers, each attempt only while the lease may
    /// still be relied on: once its confirmed end has passed, another executor may hold the
    /// lease, and the order is left for the cluster to give back (an earlier attempt may have
    /// counted; the cluster's record says). An attempt in flight is never cut off, by shutdown or
    /// by the lease's end (the effect is already recorded, and the cluster judges the token);
    /// only the pauses between attempts are.
    async fn acknowledge(
        &self,
        lease: &ConfirmedLease,
        order_id: &str,
        stop: &CancellationToken,
    ) -> Option<pb::AcknowledgeResponse> {
        let token = lease.token();
        let mut failures = 0;
        loop {
            if !lease.is_valid_at(Instant::now()) {
                tracing::warn!(
                    executor_id = self.executor_id,
                    order_id,
                    token,
                    "the lease may have ended; not acknowledging"
                );
                return None;
            }
            match self.client.acknowledge(&self.holder, token, order_id).await {
                Ok(answer) => return Some(answer),
                Err(error @ ClientError::Unreachable { .. }) => {
                    tracing::warn!(
                        executor_id = self.executor_id,
                        order_id,
                        %error,
                        "acknowledgement failed; retrying"
                    );
                    self.board.failed(&error);
                }
                Err(other) => {
                    tracing::error!(executor_id = self.executor_id, order_id, error = %other, "acknowledgement rejected");
                    self.board.failed(&other);
                    return None;
                }
            }
            if !pause(stop, retry_pause(failures)).await {
                return None;
            }
            failures += 1;
        }
    }

    /// Gives the lease back, waiting at most one TTL (after which it has expired anyway).
    async fn resign(&self, token: u64) {
        let resigned = tokio::time::timeout(
            self.timing.lease_ttl,
            self.client.resign(&self.holder, token),
        )
        .await;
        match resigned {
            Ok(Ok(answer)) if answer.accepted => tracing::info!(
                executor_id = self.executor_id,
                token,
                requeued_order_id = answer.requeued_order_id,
                "resigned"
            ),
            // Either the lease expired, or an earlier attempt of this same call committed.
            Ok(Ok(_)) => {
                tracing::info!(executor_id = self.executor_id, token, "lease already ended")
            }
            Ok(Err(error)) => {
                self.board.failed(&error);
                tracing::warn!(executor_id = self.executor_id, token, %error, "resignation failed; the lease will expire");
            }
            Err(_) => tracing::warn!(
                executor_id = self.executor_id,
                token,
                "resignation unanswered; the lease will expire"
            ),
        }
    }

    async fn stand_aside(&mut self, stop: &CancellationToken) -> Phase {
        self.board.following(None);
        pause(stop, self.timing.backoff_after_lead).await;
        Phase::Candidate
    }
}

/// Waits `duration` unless `stop` is cancelled first; returns whether it waited it out.
/// Counts one campaign of this executor by how it ended: `won`, `lost` (another holds the
/// lease) or `failed` (no answer from the cluster).
fn record_election(outcome: &'static str) {
    metrics::counter!("bookstore_executor_elections_total", "outcome" => outcome).increment(1);
}

async fn pause(stop: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = sleep(duration) => true,
    }
}

/// The pause after `failures` failed calls in a row: doubling from [`RETRY_PAUSE_MIN`] up to
/// [`RETRY_PAUSE_MAX`].
fn retry_pause(failures: u32) -> Duration {
    RETRY_PAUSE_MIN
        .saturating_mul(1u32 << failures.min(16))
        .min(RETRY_PAUSE_MAX)
}

/// The order as the queue defines it, so that its priority is computed the queue's way.
fn queued_order(order: pb::QueuedOrder) -> QueuedOrder {
    let items = order
        .items
        .into_iter()
        .map(|item| OrderItem {
            title: item.title,
            quantity: item.quantity,
        })
        .collect();
    QueuedOrder::new(order.order_id, order.customer, items)
}

/// This machine's wall clock as the ledger writes it: RFC 3339, UTC, milliseconds.
fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_pauses_double_up_to_a_cap() {
        assert_eq!(retry_pause(0), Duration::from_millis(50));
        assert_eq!(retry_pause(1), Duration::from_millis(100));
        assert_eq!(retry_pause(4), Duration::from_millis(800));
        assert_eq!(retry_pause(5), RETRY_PAUSE_MAX);
        assert_eq!(retry_pause(u32::MAX), RETRY_PAUSE_MAX);
    }

    #[test]
    fn renewals_come_every_third_of_the_lease() {
        let timing = Timing {
            lease_ttl: Duration::from_millis(900),
            execution: Duration::ZERO,
            backoff_after_lead: Duration::ZERO,
            poll: Duration::from_millis(10),
        };
        assert_eq!(timing.renew_every(), Duration::from_millis(300));
    }

    #[test]
    fn a_dequeued_order_has_the_queues_priority() {
        let order = queued_order(pb::QueuedOrder {
            order_id: "o".to_owned(),
            customer: "Ada".to_owned(),
            items: vec![
                pb::QueueItem {
                    title: "Dune".to_owned(),
                    quantity: 2,
                },
                pb::QueueItem {
                    title: "Emma".to_owned(),
                    quantity: 3,
                },
            ],
        });
        assert_eq!(order.priority(), 5);
    }
}
