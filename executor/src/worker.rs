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
//! A leader handles exactly one order per lease: dequeue with the token, execute for
//! `execution` while renewing the lease every third of its TTL, renew once more unless two thirds
//! of it are still confirmed, record the execution in the ledger, acknowledge with the token,
//! resign, stand aside for `backoff_after_lead` so that another executor leads next.
//!
//! Safety: the executor never acts on a lease it cannot confirm. Every dequeue and
//! acknowledgement carries the token (the cluster refuses a stale one); a call under the lease
//! races the lease's confirmed end ([`ConfirmedLease`]), and when a renewal is refused, or none
//! is confirmed before that end, the order in hand is dropped at once, unacknowledged (the
//! cluster gives it back to the queue when the lease ends).
//!
//! Liveness: the client follows the queue's Raft leader; a failure to reach the cluster is
//! retried after a growing pause, never fatal. Waiting executors read one node's status (no Raft
//! write) and campaign only when there is something to do, so an idle system writes nothing.
//!
//! An acknowledgement is retried until the cluster answers it, while the lease's confirmed end
//! has not passed (after it, the executor neither executes nor acknowledges): a retry with the
//! same token is answered as the first attempt was if that one committed, and is refused as
//! stale otherwise once the lease ended, so it is never applied twice nor confused.
//!
//! Every lease decision here is on the monotonic clock (`tokio::time::Instant`); when to
//! campaign follows the time the queue's leader says the lease has left. The wall clock is read
//! only for the ledger's times.

use std::future::Future;
use std::time::Duration;

use bookstore_proto as pb;
use queue_raft::{ClientError, OrderItem, QueueClient, QueuedOrder};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::election::{ConfirmedLease, LeaseView, Outlook};
use crate::faults::{FaultPoint, FaultPoints};
use crate::ledger::{Execution, Ledger};
use crate::status::StatusBoard;

/// The pause after the first failed call to the cluster; it doubles with each failure in a row.
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(50);
/// The pause never grows beyond this.
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(1);

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
    /// The execution could not be recorded.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// One executor's worker: the election loop and the execution of orders.
pub struct Worker {
    executor_id: String,
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
    pub fn new(
        executor_id: String,
        client: QueueClient,
        timing: Timing,
        ledger: Option<Ledger>,
        faults: FaultPoints,
        board: StatusBoard,
    ) -> Self {
        Self {
            executor_id,
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
        match view.outlook(&self.executor_id) {
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
            Outlook::GiveBack { token } => {
                self.candidate_failures = 0;
                tracing::info!(
                    executor_id = self.executor_id,
                    token,
                    "giving back a lease a previous run held"
                );
                self.resign(token).await;
                return Phase::Candidate;
            }
        }
        // Not cut short by shutdown: a campaign that committed unseen would keep the lease from
        // the others until it expired. A lease granted now is given back by `lead` at once.
        let asked_at = Instant::now();
        let answer = self
            .client
            .campaign(&self.executor_id, self.timing.lease_ttl)
            .await;
        match answer {
            Ok(answer) if answer.granted => {
                self.candidate_failures = 0;
                record_election("won");
                metrics::counter!("bookstore_executor_lease_grants_total").increment(1);
                tracing::info!(
                    executor_id = self.executor_id,
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
            .call_under_lease(&lease, stop, || {
                self.client.dequeue(&self.executor_id, token)
            })
            .await;
        let order = match dequeued {
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
                order: Some(order), ..
            }) => queued_order(order),
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

        let execution = sleep(self.timing.execution);
        if let Err(interrupted) = self.hold_while(&mut lease, stop, execution).await {
            return self.give_up(&lease, interrupted, Some(&order_id)).await;
        }
        // Recording and acknowledging get most of a lease to land in: renewed once more unless
        // enough of it is still confirmed (a short execution right after the grant).
        if lease.remaining(Instant::now()) < self.timing.lease_ttl * 2 / 3
            && let Err(interrupted) = self.renew_now(&mut lease, stop).await
        {
            return self.give_up(&lease, interrupted, Some(&order_id)).await;
        }
        if !lease.is_valid_at(Instant::now()) {
            let interrupted = Interrupted::LeaseUnconfirmed;
            return self.give_up(&lease, interrupted, Some(&order_id)).await;
        }
        self.faults
            .reach(FaultPoint::Executed, &order_id, token)
            .await;
        if let Some(ledger) = &self.ledger {
            let execution = Execution {
                order_id: order_id.clone(),
                executor_id: self.executor_id.clone(),
                token,
                priority,
                customer: order.customer().to_owned(),
                dequeued_at,
                executed_at: rfc3339_now(),
            };
            if let Err(error) = ledger.record(&execution).await {
                self.board.failed(&error);
                return self.give_up(&lease, error.into(), Some(&order_id)).await;
            }
        }
        self.faults
            .reach(FaultPoint::Recorded, &order_id, token)
            .await;
        match self.acknowledge(&lease, &order_id, stop).await {
            Some(answer) if answer.accepted => {
                tracing::info!(
                    order_id,
                    executor_id = self.executor_id,
                    token,
                    priority,
                    executed_at_ms = answer.executed_at_ms,
                    "order {order_id} executed by executor {}",
                    self.executor_id
                );
                self.board.executed();
                metrics::counter!("bookstore_executor_orders_executed_total").increment(1);
            }
            Some(answer) => tracing::warn!(
                order_id,
                executor_id = self.executor_id,
                token,
                refusal = answer.refusal,
                "acknowledgement refused; the next leader executes the order again"
            ),
            None => tracing::warn!(
                order_id,
                executor_id = self.executor_id,
                token,
                "acknowledgement unconfirmed; the cluster's record says whether it counted"
            ),
        }
        self.faults
            .reach(FaultPoint::Acknowledged, &order_id, token)
            .await;
        self.resign(token).await;
        Phase::StandingAside
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
                    .renew_lease(&self.executor_id, lease.token(), self.timing.lease_ttl)
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
                    .renew_lease(&self.executor_id, token, self.timing.lease_ttl)
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
            match self
                .client
                .acknowledge(&self.executor_id, token, order_id)
                .await
            {
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
            self.client.resign(&self.executor_id, token),
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
