//! The replicated order queue itself, as a pure state machine: [`QueueState::apply`] takes a
//! [`Command`] and returns a [`CommandResponse`], with no I/O, no clock and no randomness.
//!
//! Invariants it keeps (checked by the tests at the bottom):
//! - Replicas applying the same commands in the same order end equal (`PartialEq`), and so do their
//!   bincode encodings: every collection is ordered (`OrdMap`, encoded in key order like a
//!   `BTreeMap`), and time comes only from the `now_ms` that the leader stamps into each command.
//! - Cloning the state is O(1): the maps are persistent (`imbl::OrdMap`, shared structure, copy
//!   on write), so a snapshot is taken of a clone while commands go on being applied.
//! - Time never goes backwards inside the state: a command stamped earlier than one already applied
//!   (a new leader with a slower clock) is applied at the latest time seen.
//! - Orders leave the ready queue by priority (sum of quantities, higher first), equal priority in
//!   the order their enqueues were applied (`sequence`).
//! - Every order id is recorded once and is in exactly one of: ready queue, executing (at most one
//!   order, under the current lease), executed. An executed order never changes again.
//! - Fencing tokens grow with each lease grant and are never reused. Only the current, unexpired
//!   lease's token, presented by its holder, can renew, resign, dequeue or acknowledge.
//! - When a lease ends (expiry or resignation) the order executing under it goes back to the ready
//!   queue with its original priority and sequence, so it is the first to be dequeued again.

use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;

/// One line of an order: a book and how many copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub title: String,
    pub quantity: u32,
}

/// An approved order as the queue keeps it: what to ship and to whom, never card data.
///
/// Its fields are private so that `priority` is always the sum of the items' quantities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedOrder {
    order_id: String,
    customer: String,
    items: Vec<OrderItem>,
    priority: u32,
}

impl QueuedOrder {
    /// Builds an order whose priority is the total number of books (saturating at `u32::MAX`).
    pub fn new(
        order_id: impl Into<String>,
        customer: impl Into<String>,
        items: Vec<OrderItem>,
    ) -> Self {
        let priority = items
            .iter()
            .fold(0u32, |total, item| total.saturating_add(item.quantity));
        Self {
            order_id: order_id.into(),
            customer: customer.into(),
            items,
            priority,
        }
    }

    pub fn order_id(&self) -> &str {
        &self.order_id
    }

    pub fn customer(&self) -> &str {
        &self.customer
    }

    pub fn items(&self) -> &[OrderItem] {
        &self.items
    }

    /// The sum of the items' quantities: more books are executed first.
    pub fn priority(&self) -> u32 {
        self.priority
    }
}

/// Where an order is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Waiting in the ready queue.
    Queued,
    /// Dequeued by the holder of the lease with `token`; returns to `Queued` if that lease ends
    /// before the order is acknowledged.
    Executing {
        executor_id: String,
        token: u64,
        since_ms: u64,
    },
    /// Acknowledged by the executor that held the lease with `token`. Final.
    Executed {
        executor_id: String,
        token: u64,
        at_ms: u64,
    },
}

/// Everything the queue knows about one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order: QueuedOrder,
    /// Position in commit order among all enqueues; breaks ties between equal priorities.
    pub sequence: u64,
    pub status: OrderStatus,
    pub enqueued_at_ms: u64,
}

/// The executors' leadership: who may dequeue, under which fencing token, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: String,
    pub token: u64,
    /// The lease is valid while the state's clock is strictly before this time.
    pub expires_at_ms: u64,
}

/// A change to the queue, as replicated in the Raft log. `now_ms` is the leader's wall clock when
/// it proposed the command; it is the only time the state machine ever sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds an order to the ready queue unless its id is already known (idempotent).
    Enqueue { order: QueuedOrder, now_ms: u64 },
    /// Asks for the lease. Granted with a new token when no lease is held (or it expired); when
    /// `executor_id` already holds it, the lease is extended to `now + ttl_ms` keeping its token.
    Campaign {
        executor_id: String,
        ttl_ms: u64,
        now_ms: u64,
    },
    /// Extends the caller's lease to `now + ttl_ms`.
    RenewLease {
        executor_id: String,
        token: u64,
        ttl_ms: u64,
        now_ms: u64,
    },
    /// Gives the lease up; an order executing under it goes back to the ready queue.
    Resign {
        executor_id: String,
        token: u64,
        now_ms: u64,
    },
    /// Takes the highest-priority order for execution, or returns the one already executing under
    /// this lease (so a retried dequeue is harmless).
    Dequeue {
        executor_id: String,
        token: u64,
        now_ms: u64,
    },
    /// Marks the order executing under this lease as executed.
    Acknowledge {
        executor_id: String,
        token: u64,
        order_id: String,
        now_ms: u64,
    },
    /// Commands proposed together in one log entry, applied one after another exactly as if
    /// each had an entry of its own. The leader groups the writes that arrive while earlier ones
    /// are being replicated, so that one flush and one round trip carry many of them.
    Batch(Vec<Command>),
}

impl Command {
    /// One command as itself, several as a [`Command::Batch`], so that an entry of a single
    /// write reads like that write. [`CommandResponse::ungroup`] splits the answer.
    pub fn group(mut commands: Vec<Command>) -> Command {
        match commands.pop() {
            Some(only) if commands.is_empty() => only,
            Some(last) => {
                commands.push(last);
                Command::Batch(commands)
            }
            None => Command::Batch(commands),
        }
    }

    /// The leader's clock when it proposed this command; for a batch, when it proposed the
    /// latest of its commands (0 for an empty batch).
    pub fn now_ms(&self) -> u64 {
        match self {
            Command::Enqueue { now_ms, .. }
            | Command::Campaign { now_ms, .. }
            | Command::RenewLease { now_ms, .. }
            | Command::Resign { now_ms, .. }
            | Command::Dequeue { now_ms, .. }
            | Command::Acknowledge { now_ms, .. } => *now_ms,
            Command::Batch(commands) => commands.iter().map(Command::now_ms).max().unwrap_or(0),
        }
    }
}

/// The outcome of applying one log entry, one variant per outcome so callers match, not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// The order was added to the ready queue at this position in commit order.
    Enqueued { order_id: String, sequence: u64 },
    /// The order id was already known; nothing changed.
    AlreadyEnqueued {
        order_id: String,
        status: OrderStatus,
    },
    /// A new lease with a fresh fencing token.
    LeaseGranted { token: u64, expires_at_ms: u64 },
    /// The caller's lease was extended; the token is unchanged.
    LeaseRenewed { token: u64, expires_at_ms: u64 },
    /// Another executor holds an unexpired lease.
    LeaseHeld { holder: String, expires_at_ms: u64 },
    /// The lease is released; the order that was executing under it, if any, is queued again.
    Resigned { requeued_order_id: Option<String> },
    /// The order to execute now.
    Dequeued { order: QueuedOrder },
    /// Nothing is waiting.
    QueueEmpty,
    /// The order is executed (also the answer to a repeated acknowledgement with the same token).
    Acknowledged { order_id: String, at_ms: u64 },
    /// The lease is valid, but no order with this id exists.
    UnknownOrder { order_id: String },
    /// The lease is valid, but this order is not the one executing under it.
    NotExecuting {
        order_id: String,
        status: OrderStatus,
    },
    /// The token is not the current lease's, the caller is not its holder, or it expired.
    /// `current` is the token of the lease in force, if any.
    StaleToken { current: Option<u64> },
    /// The answer to a Raft entry that carries no command (blank or membership entries).
    NoCommand,
    /// The answers to a [`Command::Batch`], one per command, in order.
    Batch(Vec<CommandResponse>),
}

impl CommandResponse {
    /// The answers, one per command, to [`Command::group`] of `count` commands.
    pub fn ungroup(self, count: usize) -> Vec<CommandResponse> {
        match self {
            CommandResponse::Batch(responses) if count != 1 => responses,
            single => vec![single],
        }
    }
}

/// Ready-queue ordering: higher priority first, then earlier sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct ReadyKey {
    rank: Reverse<u32>,
    sequence: u64,
}

impl ReadyKey {
    fn of(record: &OrderRecord) -> Self {
        Self {
            rank: Reverse(record.order.priority()),
            sequence: record.sequence,
        }
    }
}

/// The whole replicated queue: orders, ready queue, lease and the clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    /// Every order ever enqueued, by id.
    #[serde(deserialize_with = "crate::codec::deserialize_ord_map")]
    orders: OrdMap<String, OrderRecord>,
    /// Ids of `Queued` orders, in dequeue order.
    #[serde(deserialize_with = "crate::codec::deserialize_ord_map")]
    ready: OrdMap<ReadyKey, String>,
    /// The id of the one `Executing` order; only ever set while `lease` is.
    executing_order: Option<String>,
    lease: Option<Lease>,
    /// The last fencing token handed out; 0 before the first grant.
    last_granted_token: u64,
    next_sequence: u64,
    executed_count: u64,
    /// The latest `now_ms` of any applied command.
    clock_ms: u64,
}

impl QueueState {
    /// Applies one command. Every command first moves the clock forward to its `now_ms` (never
    /// back) and ends a lease that has expired by then; a batch applies its commands in turn.
    pub fn apply(&mut self, command: &Command) -> CommandResponse {
        match command {
            Command::Enqueue { order, now_ms } => self.at(*now_ms).enqueue(order),
            Command::Campaign {
                executor_id,
                ttl_ms,
                now_ms,
            } => self.at(*now_ms).campaign(executor_id, *ttl_ms),
            Command::RenewLease {
                executor_id,
                token,
                ttl_ms,
                now_ms,
            } => self.at(*now_ms).renew_lease(executor_id, *token, *ttl_ms),
            Command::Resign {
                executor_id,
                token,
                now_ms,
            } => self.at(*now_ms).resign(executor_id, *token),
            Command::Dequeue {
                executor_id,
                token,
                now_ms,
            } => self.at(*now_ms).dequeue(executor_id, *token),
            Command::Acknowledge {
                executor_id,
                token,
                order_id,
                now_ms,
            } => self.at(*now_ms).acknowledge(executor_id, *token, order_id),
            Command::Batch(commands) => {
                CommandResponse::Batch(commands.iter().map(|command| self.apply(command)).collect())
            }
        }
    }

    /// Moves the clock forward to `now_ms` (never back) and ends a lease that expired by then.
    fn at(&mut self, now_ms: u64) -> &mut Self {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.maybe_expire_lease();
        self
    }

    /// The record of one order, whatever its status.
    pub fn order_status(&self, order_id: &str) -> Option<&OrderRecord> {
        self.orders.get(order_id)
    }

    /// How many orders wait in the ready queue (not counting the executing one).
    pub fn queue_depth(&self) -> usize {
        self.ready.len()
    }

    /// The next `n` orders in the order they would be dequeued.
    pub fn peek(&self, n: usize) -> impl Iterator<Item = &OrderRecord> + '_ {
        self.ready
            .values()
            .take(n)
            .filter_map(|order_id| self.orders.get(order_id))
    }

    /// The lease as of the last applied command. It may have expired since, by the caller's
    /// clock; it is cleared when the next command is applied.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// The order executing under the current lease, if any.
    pub fn executing(&self) -> Option<&OrderRecord> {
        self.executing_order
            .as_ref()
            .and_then(|order_id| self.orders.get(order_id))
    }

    /// How many orders were acknowledged as executed.
    pub fn executed_count(&self) -> u64 {
        self.executed_count
    }

    /// How many orders were ever enqueued (each id once, whatever became of it).
    pub fn enqueued_count(&self) -> usize {
        self.orders.len()
    }

    /// How many leases were ever granted: tokens are handed out 1, 2, 3, ...
    pub fn lease_grants(&self) -> u64 {
        self.last_granted_token
    }

    /// The latest time of any applied command.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Ends the lease if the clock reached its expiry; returns whether it did.
    fn maybe_expire_lease(&mut self) -> bool {
        let expired = self
            .lease
            .as_ref()
            .is_some_and(|lease| self.clock_ms >= lease.expires_at_ms);
        if expired {
            self.end_lease();
        }
        expired
    }

    /// Clears the lease and puts the order executing under it back in the ready queue, at its
    /// original priority and sequence. Returns that order's id.
    fn end_lease(&mut self) -> Option<String> {
        self.lease = None;
        let order_id = self.executing_order.take()?;
        let record = self.record_mut(&order_id);
        record.status = OrderStatus::Queued;
        let key = ReadyKey::of(record);
        self.ready.insert(key, order_id.clone());
        Some(order_id)
    }

    /// The record of an order the state itself refers to (ready queue or executing slot).
    fn record_mut(&mut self, order_id: &str) -> &mut OrderRecord {
        // Cannot fail: `ready` and `executing_order` only ever hold ids inserted into `orders`,
        // and orders are never removed.
        self.orders
            .get_mut(order_id)
            .expect("ready queue and executing slot refer only to recorded orders")
    }

    /// Refuses the command unless `token` is the current lease's and `executor_id` holds it.
    /// Expiry was already applied, so a lease still present is valid at the current clock.
    fn check_lease(&self, executor_id: &str, token: u64) -> Result<(), CommandResponse> {
        match &self.lease {
            Some(lease) if lease.holder == executor_id && lease.token == token => Ok(()),
            other => Err(CommandResponse::StaleToken {
                current: other.as_ref().map(|lease| lease.token),
            }),
        }
    }

    fn enqueue(&mut self, order: &QueuedOrder) -> CommandResponse {
        if let Some(record) = self.orders.get(order.order_id()) {
            return CommandResponse::AlreadyEnqueued {
                order_id: order.order_id().to_owned(),
                status: record.status.clone(),
            };
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let record = OrderRecord {
            order: order.clone(),
            sequence,
            status: OrderStatus::Queued,
            enqueued_at_ms: self.clock_ms,
        };
        self.ready
            .insert(ReadyKey::of(&record), order.order_id().to_owned());
        self.orders.insert(order.order_id().to_owned(), record);
        CommandResponse::Enqueued {
            order_id: order.order_id().to_owned(),
            sequence,
        }
    }

    fn campaign(&mut self, executor_id: &str, ttl_ms: u64) -> CommandResponse {
        let expires_at_ms = self.clock_ms.saturating_add(ttl_ms);
        match &mut self.lease {
            Some(lease) if lease.holder == executor_id => {
                lease.expires_at_ms = expires_at_ms;
                CommandResponse::LeaseRenewed {
                    token: lease.token,
                    expires_at_ms,
                }
            }
            Some(lease) => CommandResponse::LeaseHeld {
                holder: lease.holder.clone(),
                expires_at_ms: lease.expires_at_ms,
            },
            None => {
                self.last_granted_token += 1;
                let token = self.last_granted_token;
                self.lease = Some(Lease {
                    holder: executor_id.to_owned(),
                    token,
                    expires_at_ms,
                });
                CommandResponse::LeaseGranted {
                    token,
                    expires_at_ms,
                }
            }
        }
    }

    fn renew_lease(&mut self, executor_id: &str, token: u64, ttl_ms: u64) -> CommandResponse {
        if let Err(refusal) = self.check_lease(executor_id, token) {
            return refusal;
        }
        let expires_at_ms = self.clock_ms.saturating_add(ttl_ms);
        if let Some(lease) = &mut self.lease {
            lease.expires_at_ms = expires_at_ms;
        }
        CommandResponse::LeaseRenewed {
            token,
            expires_at_ms,
        }
    }

    fn resign(&mut self, executor_id: &str, token: u64) -> CommandResponse {
        if let Err(refusal) = self.check_lease(executor_id, token) {
            return refusal;
        }
        CommandResponse::Resigned {
            requeued_order_id: self.end_lease(),
        }
    }

    fn dequeue(&mut self, executor_id: &str, token: u64) -> CommandResponse {
        if let Err(refusal) = self.check_lease(executor_id, token) {
            return refusal;
        }
        if let Some(record) = self.executing() {
            return CommandResponse::Dequeued {
                order: record.order.clone(),
            };
        }
        let Some(next) = self.ready.get_min().map(|(key, _)| *key) else {
            return CommandResponse::QueueEmpty;
        };
        let Some(order_id) = self.ready.remove(&next) else {
            return CommandResponse::QueueEmpty;
        };
        let since_ms = self.clock_ms;
        let record = self.record_mut(&order_id);
        record.status = OrderStatus::Executing {
            executor_id: executor_id.to_owned(),
            token,
            since_ms,
        };
        let order = record.order.clone();
        self.executing_order = Some(order_id);
        CommandResponse::Dequeued { order }
    }

    fn acknowledge(&mut self, executor_id: &str, token: u64, order_id: &str) -> CommandResponse {
        // A repeated acknowledgement by the same lease changes nothing, so it is answered the
        // same way even after that lease has ended: the executor only learns the truth.
        if let Some(OrderRecord {
            status:
                OrderStatus::Executed {
                    executor_id: executed_by,
                    token: executed_under,
                    at_ms,
                },
            ..
        }) = self.orders.get(order_id)
            && executed_by == executor_id
            && *executed_under == token
        {
            return CommandResponse::Acknowledged {
                order_id: order_id.to_owned(),
                at_ms: *at_ms,
            };
        }
        if let Err(refusal) = self.check_lease(executor_id, token) {
            return refusal;
        }
        if self.executing_order.as_deref() != Some(order_id) {
            return match self.orders.get(order_id) {
                None => CommandResponse::UnknownOrder {
                    order_id: order_id.to_owned(),
                },
                Some(record) => CommandResponse::NotExecuting {
                    order_id: order_id.to_owned(),
                    status: record.status.clone(),
                },
            };
        }
        let at_ms = self.clock_ms;
        self.executing_order = None;
        self.executed_count += 1;
        self.record_mut(order_id).status = OrderStatus::Executed {
            executor_id: executor_id.to_owned(),
            token,
            at_ms,
        };
        CommandResponse::Acknowledged {
            order_id: order_id.to_owned(),
            at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn order(order_id: &str, quantities: &[u32]) -> QueuedOrder {
        let items = quantities
            .iter()
            .enumerate()
            .map(|(n, &quantity)| OrderItem {
                title: format!("book {n}"),
                quantity,
            })
            .collect();
        QueuedOrder::new(order_id, "Ada", items)
    }

    fn enqueue(order_id: &str, quantities: &[u32], now_ms: u64) -> Command {
        Command::Enqueue {
            order: order(order_id, quantities),
            now_ms,
        }
    }

    fn campaign(executor_id: &str, ttl_ms: u64, now_ms: u64) -> Command {
        Command::Campaign {
            executor_id: executor_id.into(),
            ttl_ms,
            now_ms,
        }
    }

    fn renew(executor_id: &str, token: u64, ttl_ms: u64, now_ms: u64) -> Command {
        Command::RenewLease {
            executor_id: executor_id.into(),
            token,
            ttl_ms,
            now_ms,
        }
    }

    fn resign(executor_id: &str, token: u64, now_ms: u64) -> Command {
        Command::Resign {
            executor_id: executor_id.into(),
            token,
            now_ms,
        }
    }

    fn dequeue(executor_id: &str, token: u64, now_ms: u64) -> Command {
        Command::Dequeue {
            executor_id: executor_id.into(),
            token,
            now_ms,
        }
    }

    fn acknowledge(executor_id: &str, token: u64, order_id: &str, now_ms: u64) -> Command {
        Command::Acknowledge {
            executor_id: executor_id.into(),
            token,
            order_id: order_id.into(),
            now_ms,
        }
    }

    /// Applies a campaign that must be granted and returns the new token.
    fn grant(state: &mut QueueState, executor_id: &str, ttl_ms: u64, now_ms: u64) -> u64 {
        match state.apply(&campaign(executor_id, ttl_ms, now_ms)) {
            CommandResponse::LeaseGranted { token, .. } => token,
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    fn dequeued_id(response: CommandResponse) -> String {
        match response {
            CommandResponse::Dequeued { order } => order.order_id().to_owned(),
            other => panic!("expected an order, got {other:?}"),
        }
    }

    fn peeked_ids(state: &QueueState) -> Vec<&str> {
        state
            .peek(usize::MAX)
            .map(|record| record.order.order_id())
            .collect()
    }

    #[test]
    fn priority_is_the_total_quantity_and_saturates() {
        assert_eq!(order("a", &[2, 3]).priority(), 5);
        assert_eq!(order("b", &[]).priority(), 0);
        assert_eq!(order("c", &[u32::MAX, 1]).priority(), u32::MAX);
    }

    #[test]
    fn enqueue_records_the_order_as_queued_in_commit_order() {
        let mut state = QueueState::default();
        assert_eq!(
            state.apply(&enqueue("a", &[1], 10)),
            CommandResponse::Enqueued {
                order_id: "a".into(),
                sequence: 0
            }
        );
        assert_eq!(
            state.apply(&enqueue("b", &[1], 11)),
            CommandResponse::Enqueued {
                order_id: "b".into(),
                sequence: 1
            }
        );
        let record = state.order_status("a").expect("a was enqueued");
        assert_eq!(record.status, OrderStatus::Queued);
        assert_eq!(record.enqueued_at_ms, 10);
        assert_eq!(state.queue_depth(), 2);
        assert!(state.order_status("missing").is_none());
    }

    #[test]
    fn enqueue_of_a_known_id_changes_nothing() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 10));
        let before = state.clone();
        assert_eq!(
            state.apply(&enqueue("a", &[9], 10)),
            CommandResponse::AlreadyEnqueued {
                order_id: "a".into(),
                status: OrderStatus::Queued
            }
        );
        assert_eq!(state, before);
    }

    #[test]
    fn enqueue_of_an_executed_id_reports_it_executed() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", token, 1));
        state.apply(&acknowledge("e1", token, "a", 2));
        assert_eq!(
            state.apply(&enqueue("a", &[1], 3)),
            CommandResponse::AlreadyEnqueued {
                order_id: "a".into(),
                status: OrderStatus::Executed {
                    executor_id: "e1".into(),
                    token,
                    at_ms: 2
                }
            }
        );
        assert_eq!(state.queue_depth(), 0);
    }

    #[test]
    fn orders_leave_by_priority_then_commit_order() {
        let mut state = QueueState::default();
        state.apply(&enqueue("small-first", &[1], 0));
        state.apply(&enqueue("big", &[2, 3], 0));
        state.apply(&enqueue("small-second", &[1], 0));
        state.apply(&enqueue("middle", &[3], 0));
        assert_eq!(
            peeked_ids(&state),
            ["big", "middle", "small-first", "small-second"]
        );
        assert_eq!(state.peek(1).count(), 1);

        let token = grant(&mut state, "e1", 1_000, 0);
        let mut taken = Vec::new();
        for now_ms in 1..=4 {
            let order_id = dequeued_id(state.apply(&dequeue("e1", token, now_ms)));
            state.apply(&acknowledge("e1", token, &order_id, now_ms));
            taken.push(order_id);
        }
        assert_eq!(taken, ["big", "middle", "small-first", "small-second"]);
        assert_eq!(
            state.apply(&dequeue("e1", token, 5)),
            CommandResponse::QueueEmpty
        );
        assert_eq!(state.executed_count(), 4);
    }

    #[test]
    fn campaign_grants_a_lease_when_none_is_held() {
        let mut state = QueueState::default();
        assert_eq!(
            state.apply(&campaign("e1", 100, 50)),
            CommandResponse::LeaseGranted {
                token: 1,
                expires_at_ms: 150
            }
        );
        assert_eq!(
            state.lease(),
            Some(&Lease {
                holder: "e1".into(),
                token: 1,
                expires_at_ms: 150
            })
        );
    }

    #[test]
    fn campaign_against_a_held_lease_is_refused() {
        let mut state = QueueState::default();
        grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&campaign("e2", 100, 99)),
            CommandResponse::LeaseHeld {
                holder: "e1".into(),
                expires_at_ms: 100
            }
        );
    }

    #[test]
    fn campaign_by_the_holder_extends_its_lease_with_the_same_token() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&campaign("e1", 100, 60)),
            CommandResponse::LeaseRenewed {
                token,
                expires_at_ms: 160
            }
        );
    }

    #[test]
    fn campaign_after_expiry_grants_the_next_token() {
        let mut state = QueueState::default();
        let first = grant(&mut state, "e1", 100, 0);
        let second = grant(&mut state, "e2", 100, 100);
        assert!(second > first);
        assert_eq!(state.lease().map(|lease| lease.holder.as_str()), Some("e2"));
    }

    #[test]
    fn tokens_are_never_reused_after_resigning() {
        let mut state = QueueState::default();
        let first = grant(&mut state, "e1", 100, 0);
        state.apply(&resign("e1", first, 1));
        let second = grant(&mut state, "e1", 100, 2);
        assert_eq!(second, first + 1);
    }

    #[test]
    fn renew_extends_the_lease_from_now() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&renew("e1", token, 500, 90)),
            CommandResponse::LeaseRenewed {
                token,
                expires_at_ms: 590
            }
        );
        assert_eq!(state.lease().map(|lease| lease.expires_at_ms), Some(590));
    }

    #[test]
    fn renew_with_a_stale_or_foreign_token_or_after_expiry_is_refused() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 100, 0);
        let stale = CommandResponse::StaleToken {
            current: Some(token),
        };
        assert_eq!(state.apply(&renew("e1", token + 1, 100, 1)), stale);
        assert_eq!(state.apply(&renew("e2", token, 100, 1)), stale);
        assert_eq!(
            state.apply(&renew("e1", token, 100, 100)),
            CommandResponse::StaleToken { current: None }
        );
        assert!(state.lease().is_none());
    }

    #[test]
    fn resign_releases_the_lease() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&resign("e1", token, 1)),
            CommandResponse::Resigned {
                requeued_order_id: None
            }
        );
        assert!(state.lease().is_none());
        assert_eq!(
            state.apply(&resign("e1", token, 2)),
            CommandResponse::StaleToken { current: None }
        );
    }

    #[test]
    fn resign_while_executing_puts_the_order_back_first() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[2], 0));
        state.apply(&enqueue("b", &[2], 0));
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(dequeued_id(state.apply(&dequeue("e1", token, 1))), "a");
        assert_eq!(
            state.apply(&resign("e1", token, 2)),
            CommandResponse::Resigned {
                requeued_order_id: Some("a".into())
            }
        );
        assert_eq!(
            state.order_status("a").map(|record| &record.status),
            Some(&OrderStatus::Queued)
        );
        assert_eq!(peeked_ids(&state), ["a", "b"]);
        let next = grant(&mut state, "e2", 100, 3);
        assert_eq!(dequeued_id(state.apply(&dequeue("e2", next, 4))), "a");
    }

    #[test]
    fn an_expired_lease_returns_its_order_to_the_front() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        state.apply(&enqueue("b", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        dequeued_id(state.apply(&dequeue("e1", token, 1)));
        assert_eq!(
            state.executing().map(|record| record.order.order_id()),
            Some("a")
        );

        state.apply(&enqueue("c", &[1], 100));
        assert!(state.lease().is_none());
        assert!(state.executing().is_none());
        assert_eq!(peeked_ids(&state), ["a", "b", "c"]);
        assert_eq!(
            state.apply(&acknowledge("e1", token, "a", 101)),
            CommandResponse::StaleToken { current: None }
        );
    }

    #[test]
    fn one_command_groups_as_itself_and_several_as_a_batch() {
        let one = campaign("e1", 100, 1);
        let two = campaign("e2", 100, 2);
        assert_eq!(Command::group(vec![one.clone()]), one);
        assert_eq!(
            Command::group(vec![one.clone(), two.clone()]),
            Command::Batch(vec![one, two])
        );
        assert_eq!(Command::group(Vec::new()), Command::Batch(Vec::new()));
        let answer = CommandResponse::QueueEmpty;
        assert_eq!(answer.clone().ungroup(1), vec![answer.clone()]);
        let batch = CommandResponse::Batch(vec![answer.clone(), answer.clone()]);
        assert_eq!(batch.ungroup(2), vec![answer.clone(), answer.clone()]);
        // A lone command that is itself a batch keeps its answer whole.
        let nested = CommandResponse::Batch(vec![answer.clone()]);
        assert_eq!(nested.clone().ungroup(1), vec![nested]);
    }

    #[test]
    fn an_empty_batch_changes_nothing_and_a_batch_is_as_late_as_its_latest_command() {
        let mut state = QueueState::default();
        assert_eq!(
            state.apply(&Command::Batch(Vec::new())),
            CommandResponse::Batch(Vec::new())
        );
        assert_eq!(state, QueueState::default());
        let batch = Command::Batch(vec![campaign("e1", 100, 30), campaign("e2", 100, 20)]);
        assert_eq!(batch.now_ms(), 30);
        assert_eq!(Command::Batch(Vec::new()).now_ms(), 0);
    }

    #[test]
    fn maybe_expire_lease_reports_whether_it_ended_the_lease() {
        let mut state = QueueState::default();
        assert!(!state.maybe_expire_lease());
        grant(&mut state, "e1", 100, 0);
        state.clock_ms = 99;
        assert!(!state.maybe_expire_lease());
        state.clock_ms = 100;
        assert!(state.maybe_expire_lease());
        assert!(state.lease().is_none());
    }

    #[test]
    fn dequeue_marks_the_order_executing_under_the_token() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&dequeue("e1", token, 5)),
            CommandResponse::Dequeued {
                order: order("a", &[1])
            }
        );
        assert_eq!(
            state.order_status("a").map(|record| &record.status),
            Some(&OrderStatus::Executing {
                executor_id: "e1".into(),
                token,
                since_ms: 5
            })
        );
        assert_eq!(state.queue_depth(), 0);
    }

    #[test]
    fn dequeue_again_returns_the_order_already_executing() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        state.apply(&enqueue("b", &[9], 0));
        let token = grant(&mut state, "e1", 100, 0);
        let first = state.apply(&dequeue("e1", token, 1));
        let before_retry = state.clone();
        let retried = state.apply(&dequeue("e1", token, 1));
        assert_eq!(first, retried);
        assert_eq!(state, before_retry);
        assert_eq!(state.queue_depth(), 1);
    }

    #[test]
    fn dequeue_on_an_empty_queue_returns_queue_empty() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&dequeue("e1", token, 1)),
            CommandResponse::QueueEmpty
        );
    }

    #[test]
    fn dequeue_needs_the_current_unexpired_token_of_its_holder() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        assert_eq!(
            state.apply(&dequeue("e1", 1, 0)),
            CommandResponse::StaleToken { current: None }
        );
        let token = grant(&mut state, "e1", 100, 0);
        let held = CommandResponse::StaleToken {
            current: Some(token),
        };
        assert_eq!(state.apply(&dequeue("e2", token, 1)), held);
        assert_eq!(state.apply(&dequeue("e1", token - 1, 1)), held);
        assert_eq!(state.apply(&dequeue("e1", token + 1, 1)), held);
        assert_eq!(
            state.apply(&dequeue("e1", token, 100)),
            CommandResponse::StaleToken { current: None }
        );
        assert_eq!(state.queue_depth(), 1);
    }

    #[test]
    fn acknowledge_marks_the_order_executed() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", token, 1));
        assert_eq!(
            state.apply(&acknowledge("e1", token, "a", 7)),
            CommandResponse::Acknowledged {
                order_id: "a".into(),
                at_ms: 7
            }
        );
        assert_eq!(
            state.order_status("a").map(|record| &record.status),
            Some(&OrderStatus::Executed {
                executor_id: "e1".into(),
                token,
                at_ms: 7
            })
        );
        assert!(state.executing().is_none());
        assert_eq!(state.executed_count(), 1);
    }

    #[test]
    fn acknowledge_again_with_the_same_token_gives_the_same_answer() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", token, 1));
        let first = state.apply(&acknowledge("e1", token, "a", 7));
        let again = state.apply(&acknowledge("e1", token, "a", 8));
        state.apply(&resign("e1", token, 9));
        let after_resigning = state.apply(&acknowledge("e1", token, "a", 10));
        assert_eq!(first, again);
        assert_eq!(first, after_resigning);
        assert_eq!(state.executed_count(), 1);
    }

    #[test]
    fn acknowledge_with_another_token_is_refused() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let first = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", first, 1));
        state.apply(&acknowledge("e1", first, "a", 2));
        state.apply(&resign("e1", first, 3));
        let second = grant(&mut state, "e2", 100, 4);
        assert_eq!(
            state.apply(&acknowledge("e2", second, "a", 5)),
            CommandResponse::NotExecuting {
                order_id: "a".into(),
                status: OrderStatus::Executed {
                    executor_id: "e1".into(),
                    token: first,
                    at_ms: 2
                }
            }
        );
        assert_eq!(
            state.apply(&acknowledge("e1", second, "a", 5)),
            CommandResponse::StaleToken {
                current: Some(second)
            }
        );
    }

    #[test]
    fn acknowledge_of_an_order_not_executing_under_the_lease_is_refused() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&acknowledge("e1", token, "a", 1)),
            CommandResponse::NotExecuting {
                order_id: "a".into(),
                status: OrderStatus::Queued
            }
        );
        assert_eq!(
            state.apply(&acknowledge("e1", token, "nope", 1)),
            CommandResponse::UnknownOrder {
                order_id: "nope".into()
            }
        );
        assert_eq!(state.executed_count(), 0);
    }

    #[test]
    fn time_never_goes_backwards() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 100, 1_000);
        state.apply(&enqueue("a", &[1], 1_100));
        assert!(state.lease().is_none(), "the lease expired at 1100");
        // A new leader whose clock is behind: the state keeps its own time.
        state.apply(&enqueue("b", &[1], 500));
        assert_eq!(state.clock_ms(), 1_100);
        assert_eq!(
            state.order_status("b").map(|record| record.enqueued_at_ms),
            Some(1_100)
        );
        assert_eq!(
            state.apply(&dequeue("e1", token, 900)),
            CommandResponse::StaleToken { current: None }
        );
        assert_eq!(
            state.apply(&campaign("e2", 50, 0)),
            CommandResponse::LeaseGranted {
                token: token + 1,
                expires_at_ms: 1_150
            }
        );
    }

    #[test]
    fn state_survives_a_bincode_round_trip() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        state.apply(&enqueue("b", &[3], 0));
        let token = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", token, 1));
        let bytes = bincode::serialize(&state).expect("state encodes");
        let decoded: QueueState = bincode::deserialize(&bytes).expect("state decodes");
        assert_eq!(decoded, state);
    }

    /// The structural invariants of the module doc, checked from the private fields.
    fn check_invariants(state: &QueueState) -> Result<(), TestCaseError> {
        let queued = state
            .orders
            .values()
            .filter(|record| record.status == OrderStatus::Queued)
            .count();
        prop_assert_eq!(queued, state.ready.len());
        for (key, order_id) in &state.ready {
            let record = &state.orders[order_id];
            prop_assert_eq!(&record.status, &OrderStatus::Queued);
            prop_assert_eq!(*key, ReadyKey::of(record));
        }
        let executing: Vec<&OrderRecord> = state
            .orders
            .values()
            .filter(|record| matches!(record.status, OrderStatus::Executing { .. }))
            .collect();
        prop_assert_eq!(
            executing.len(),
            usize::from(state.executing_order.is_some())
        );
        if let Some(record) = executing.first() {
            prop_assert_eq!(
                Some(record.order.order_id()),
                state.executing_order.as_deref()
            );
            let lease = state
                .lease
                .as_ref()
                .expect("an order executes only under a lease");
            let OrderStatus::Executing {
                executor_id, token, ..
            } = &record.status
            else {
                unreachable!("filtered on Executing")
            };
            prop_assert_eq!(executor_id, &lease.holder);
            prop_assert_eq!(*token, lease.token);
        }
        let executed = state
            .orders
            .values()
            .filter(|record| matches!(record.status, OrderStatus::Executed { .. }))
            .count();
        prop_assert_eq!(executed as u64, state.executed_count);
        if let Some(lease) = &state.lease {
            prop_assert!(lease.token <= state.last_granted_token);
        }
        Ok(())
    }

    #[derive(Debug, Clone)]
    enum TokenChoice {
        /// The last token this executor was granted.
        Own,
        /// The token of the lease in force, whoever holds it.
        Current,
        /// One less than the executor's own token.
        Previous,
        Arbitrary(u64),
    }

    #[derive(Debug, Clone)]
    enum OrderChoice {
        /// Whatever order is executing now (an unknown id if none).
        Executing,
        Numbered(u8),
    }

    #[derive(Debug, Clone)]
    enum Step {
        Enqueue {
            order: u8,
            quantities: Vec<u32>,
        },
        Campaign {
            executor: usize,
            ttl_ms: u64,
        },
        Renew {
            executor: usize,
            token: TokenChoice,
            ttl_ms: u64,
        },
        Resign {
            executor: usize,
            token: TokenChoice,
        },
        Dequeue {
            executor: usize,
            token: TokenChoice,
        },
        Acknowledge {
            executor: usize,
            token: TokenChoice,
            order: OrderChoice,
        },
    }

    const EXECUTORS: [&str; 3] = ["executor-0", "executor-1", "executor-2"];

    fn token_choice() -> impl Strategy<Value = TokenChoice> {
        prop_oneof![
            4 => Just(TokenChoice::Own),
            1 => Just(TokenChoice::Current),
            1 => Just(TokenChoice::Previous),
            1 => (0u64..20).prop_map(TokenChoice::Arbitrary),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        let executor = 0..EXECUTORS.len();
        prop_oneof![
            3 => (0u8..12, vec(0u32..5, 0..4))
                .prop_map(|(order, quantities)| Step::Enqueue { order, quantities }),
            2 => (executor.clone(), 1u64..200)
                .prop_map(|(executor, ttl_ms)| Step::Campaign { executor, ttl_ms }),
            1 => (executor.clone(), token_choice(), 1u64..200)
                .prop_map(|(executor, token, ttl_ms)| Step::Renew { executor, token, ttl_ms }),
            1 => (executor.clone(), token_choice())
                .prop_map(|(executor, token)| Step::Resign { executor, token }),
            3 => (executor.clone(), token_choice())
                .prop_map(|(executor, token)| Step::Dequeue { executor, token }),
            3 => (
                executor,
                token_choice(),
                prop_oneof![3 => Just(OrderChoice::Executing), 1 => (0u8..12).prop_map(OrderChoice::Numbered)],
            )
                .prop_map(|(executor, token, order)| Step::Acknowledge { executor, token, order }),
        ]
    }

    /// A step and how far the proposing leader's clock moved since the previous one; negative
    /// moves stand for a new leader whose clock is behind.
    fn timed_steps() -> impl Strategy<Value = Vec<(Step, i64)>> {
        vec((step(), -30i64..100), 0..150)
    }

    /// Drives one state through generated steps, checking every property after each command,
    /// and records the commands applied and their answers.
    struct Driver {
        state: QueueState,
        commands: Vec<Command>,
        responses: Vec<CommandResponse>,
        now_ms: u64,
        own_tokens: [u64; EXECUTORS.len()],
        last_granted: u64,
        enqueued: BTreeSet<String>,
        executed: BTreeSet<String>,
    }

    impl Driver {
        fn new() -> Self {
            Self {
                state: QueueState::default(),
                commands: Vec::new(),
                responses: Vec::new(),
                now_ms: 0,
                own_tokens: [0; EXECUTORS.len()],
                last_granted: 0,
                enqueued: BTreeSet::new(),
                executed: BTreeSet::new(),
            }
        }

        fn token(&self, executor: usize, choice: &TokenChoice) -> u64 {
            match choice {
                TokenChoice::Own => self.own_tokens[executor],
                TokenChoice::Current => self.state.lease().map_or(0, |lease| lease.token),
                TokenChoice::Previous => self.own_tokens[executor].saturating_sub(1),
                TokenChoice::Arbitrary(token) => *token,
            }
        }

        fn command(&self, step: &Step) -> Command {
            let now_ms = self.now_ms;
            match step {
                Step::Enqueue { order, quantities } => {
                    enqueue(&format!("order-{order}"), quantities, now_ms)
                }
                Step::Campaign { executor, ttl_ms } => {
                    campaign(EXECUTORS[*executor], *ttl_ms, now_ms)
                }
                Step::Renew {
                    executor,
                    token,
                    ttl_ms,
                } => renew(
                    EXECUTORS[*executor],
                    self.token(*executor, token),
                    *ttl_ms,
                    now_ms,
                ),
                Step::Resign { executor, token } => {
                    resign(EXECUTORS[*executor], self.token(*executor, token), now_ms)
                }
                Step::Dequeue { executor, token } => {
                    dequeue(EXECUTORS[*executor], self.token(*executor, token), now_ms)
                }
                Step::Acknowledge {
                    executor,
                    token,
                    order,
                } => {
                    let order_id = match order {
                        OrderChoice::Executing => self
                            .state
                            .executing()
                            .map_or("order-none".to_owned(), |record| {
                                record.order.order_id().to_owned()
                            }),
                        OrderChoice::Numbered(order) => format!("order-{order}"),
                    };
                    acknowledge(
                        EXECUTORS[*executor],
                        self.token(*executor, token),
                        &order_id,
                        now_ms,
                    )
                }
            }
        }

        /// Whether `before` should honour `token` from `executor_id` at `now_ms`, decided from the
        /// lease alone rather than from the code under test.
        fn lease_valid(before: &QueueState, executor_id: &str, token: u64, now_ms: u64) -> bool {
            let clock_ms = before.clock_ms().max(now_ms);
            before.lease().is_some_and(|lease| {
                lease.holder == executor_id
                    && lease.token == token
                    && clock_ms < lease.expires_at_ms
            })
        }

        fn apply(&mut self, command: Command) -> Result<CommandResponse, TestCaseError> {
            let before = self.state.clone();
            let response = self.state.apply(&command);
            check_invariants(&self.state)?;
            self.check_response(&before, &command, &response)?;
            prop_assert_eq!(
                self.state.queue_depth()
                    + usize::from(self.state.executing().is_some())
                    + self.state.executed_count() as usize,
                self.enqueued.len(),
                "every distinct order is queued, executing or executed, once"
            );
            prop_assert_eq!(self.state.orders.len(), self.enqueued.len());
            for order_id in &self.executed {
                prop_assert!(
                    matches!(
                        self.state
                            .order_status(order_id)
                            .map(|record| &record.status),
                        Some(OrderStatus::Executed { .. })
                    ),
                    "an executed order stays executed"
                );
            }
            self.commands.push(command);
            self.responses.push(response.clone());
            Ok(response)
        }

        fn check_response(
            &mut self,
            before: &QueueState,
            command: &Command,
            response: &CommandResponse,
        ) -> Result<(), TestCaseError> {
            let now_ms = command.now_ms();
            let (executor_id, token) = match command {
                Command::RenewLease {
                    executor_id, token, ..
                }
                | Command::Resign {
                    executor_id, token, ..
                }
                | Command::Dequeue {
                    executor_id, token, ..
                }
                | Command::Acknowledge {
                    executor_id, token, ..
                } => (executor_id.as_str(), *token),
                Command::Enqueue { .. } | Command::Campaign { .. } | Command::Batch(_) => ("", 0),
            };
            let valid = Self::lease_valid(before, executor_id, token, now_ms);
            match (command, response) {
                (Command::Enqueue { order, .. }, CommandResponse::Enqueued { sequence, .. }) => {
                    prop_assert!(self.enqueued.insert(order.order_id().to_owned()));
                    prop_assert_eq!(*sequence, before.next_sequence);
                }
                (Command::Enqueue { order, .. }, CommandResponse::AlreadyEnqueued { .. }) => {
                    prop_assert!(self.enqueued.contains(order.order_id()));
                }
                (
                    Command::Campaign { executor_id, .. },
                    CommandResponse::LeaseGranted { token, .. },
                ) => {
                    prop_assert!(*token > self.last_granted, "tokens grow with each grant");
                    self.last_granted = *token;
                    // The drainer is not one of the generated executors.
                    if let Some(executor) = EXECUTORS.iter().position(|name| name == executor_id) {
                        self.own_tokens[executor] = *token;
                    }
                }
                (Command::Campaign { .. }, CommandResponse::LeaseRenewed { token, .. })
                | (Command::RenewLease { .. }, CommandResponse::LeaseRenewed { token, .. }) => {
                    prop_assert_eq!(Some(*token), self.state.lease().map(|lease| lease.token));
                }
                (Command::Campaign { .. }, CommandResponse::LeaseHeld { .. }) => {
                    prop_assert!(self.state.lease().is_some());
                }
                (_, CommandResponse::StaleToken { .. }) => {
                    prop_assert!(!valid, "a valid token was refused: {:?}", command);
                }
                (Command::Resign { .. }, CommandResponse::Resigned { .. }) => prop_assert!(valid),
                (Command::Dequeue { .. }, CommandResponse::QueueEmpty) => {
                    prop_assert!(valid);
                    prop_assert_eq!(self.state.queue_depth(), 0);
                }
                (Command::Dequeue { .. }, CommandResponse::Dequeued { order }) => {
                    prop_assert!(
                        valid,
                        "dequeue with an invalid token succeeded: {:?}",
                        command
                    );
                    let retried = before.executing().map(|record| record.order.order_id())
                        == Some(order.order_id())
                        && Self::lease_valid(before, executor_id, token, now_ms);
                    if !retried {
                        let taken = ReadyKey::of(&self.state.orders[order.order_id()]);
                        prop_assert!(
                            self.state.ready.keys().all(|waiting| *waiting > taken),
                            "an order ranked before the dequeued one is still waiting"
                        );
                    }
                }
                (Command::Acknowledge { order_id, .. }, CommandResponse::Acknowledged { .. }) => {
                    let was = before.order_status(order_id).map(|record| &record.status);
                    if let Some(OrderStatus::Executed {
                        executor_id: by,
                        token: under,
                        ..
                    }) = was
                    {
                        prop_assert_eq!((by.as_str(), *under), (executor_id, token));
                        prop_assert_eq!(
                            before.order_status(order_id),
                            self.state.order_status(order_id)
                        );
                    } else {
                        prop_assert!(
                            valid,
                            "acknowledge with an invalid token succeeded: {:?}",
                            command
                        );
                        prop_assert!(self.executed.insert(order_id.clone()), "executed twice");
                    }
                }
                (
                    Command::Acknowledge { .. },
                    CommandResponse::UnknownOrder { .. } | CommandResponse::NotExecuting { .. },
                ) => prop_assert!(valid),
                (command, response) => {
                    prop_assert!(false, "unexpected answer {:?} to {:?}", response, command)
                }
            }
            Ok(())
        }

        fn run(&mut self, steps: &[(Step, i64)]) -> Result<(), TestCaseError> {
            for (step, advance_ms) in steps {
                self.now_ms = self.now_ms.saturating_add_signed(*advance_ms);
                let command = self.command(step);
                self.apply(command)?;
            }
            Ok(())
        }

        /// Long after every lease expired, one executor takes and acknowledges every order left.
        fn drain(&mut self) -> Result<(), TestCaseError> {
            self.now_ms = self.state.clock_ms() + 1_000_000;
            let CommandResponse::LeaseGranted { token, .. } =
                self.apply(campaign("drainer", 1_000_000, self.now_ms))?
            else {
                return Err(TestCaseError::fail("the drainer was not granted the lease"));
            };
            for _ in 0..=self.enqueued.len() {
                match self.apply(dequeue("drainer", token, self.now_ms))? {
                    CommandResponse::Dequeued { order } => {
                        let response = self.apply(acknowledge(
                            "drainer",
                            token,
                            order.order_id(),
                            self.now_ms,
                        ))?;
                        prop_assert!(
                            matches!(response, CommandResponse::Acknowledged { .. }),
                            "the drainer's acknowledgement was refused: {:?}",
                            response
                        );
                    }
                    CommandResponse::QueueEmpty => break,
                    other => return Err(TestCaseError::fail(format!("drain got {other:?}"))),
                }
            }
            prop_assert_eq!(
                &self.executed,
                &self.enqueued,
                "every order executed exactly once"
            );
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Properties (a) dequeue order, (b) idempotent enqueue and conservation of orders,
        /// (c) no success with an invalid token, (d) growing tokens and (g) executed once, never
        /// lost, checked after every command, then the queue drained to the last order.
        #[test]
        fn every_command_keeps_the_queue_invariants(steps in timed_steps()) {
            let mut driver = Driver::new();
            driver.run(&steps)?;
            driver.drain()?;
        }

        /// Property (e): replicas applying the same commands end equal, answering alike; and (f)
        /// the state survives bincode, with the same bytes on every replica.
        #[test]
        fn replicas_agree_and_state_round_trips(steps in timed_steps()) {
            let mut driver = Driver::new();
            driver.run(&steps)?;
            let mut replica = QueueState::default();
            let replica_responses: Vec<CommandResponse> =
                driver.commands.iter().map(|command| replica.apply(command)).collect();
            prop_assert_eq!(&replica_responses, &driver.responses);
            prop_assert_eq!(&replica, &driver.state);
            let bytes = bincode::serialize(&driver.state).expect("state encodes");
            prop_assert_eq!(&bytes, &bincode::serialize(&replica).expect("state encodes"));
            let decoded: QueueState = bincode::deserialize(&bytes).expect("state decodes");
            prop_assert_eq!(decoded, replica);
        }

        /// Property (h): a batch is its commands applied one after another. The same commands cut
        /// into batches of random sizes end in the same state, and the batches' answers, in
        /// order, are the answers the commands got one by one.
        #[test]
        fn a_batch_applies_like_its_commands_one_by_one(
            steps in timed_steps(),
            sizes in proptest::collection::vec(1usize..8, 1..16),
        ) {
            let mut driver = Driver::new();
            driver.run(&steps)?;
            let mut batched = QueueState::default();
            let mut answers = Vec::new();
            let mut commands = driver.commands.iter().cloned();
            for size in sizes.iter().cycle() {
                let batch: Vec<Command> = commands.by_ref().take(*size).collect();
                if batch.is_empty() {
                    break;
                }
                match batched.apply(&Command::Batch(batch)) {
                    CommandResponse::Batch(batch_answers) => answers.extend(batch_answers),
                    other => prop_assert!(false, "a batch answered {:?}", other),
                }
            }
            prop_assert_eq!(&answers, &driver.responses);
            prop_assert_eq!(&batched, &driver.state);
        }
    }
}
