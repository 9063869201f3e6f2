//! What an executor is doing now: published by the worker through a [`StatusBoard`] (a
//! `tokio::sync::watch` channel, so readers never block the worker) and served by `GET /status`;
//! whether it leads is also the gauge `bookstore_executor_leader` on `/metrics`.

use serde::Serialize;
use tokio::sync::watch;

/// The executor's part in the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// No lease is held by anyone it knows of; it campaigns when orders wait.
    Candidate,
    /// Another executor holds the lease, or it stands aside after leading.
    Following,
    /// It holds the lease.
    Leader,
}

/// The order being executed under the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentOrder {
    pub order_id: String,
    pub priority: u32,
}

/// The body of `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorStatus {
    pub id: String,
    pub state: Role,
    /// The fencing token of the lease this executor holds: for the worker's own bookkeeping,
    /// never served (it proves the lease's holder to the cluster).
    #[serde(skip)]
    pub token: Option<u64>,
    /// Who holds the lease as last seen, when another executor does.
    pub lease_holder: Option<String>,
    pub current_order: Option<CurrentOrder>,
    /// Orders whose execution this executor recorded in the cluster (the execution that
    /// counts), since it started.
    pub orders_executed: u64,
    pub last_executed_order: Option<String>,
    /// The last failure talking to the cluster or recording an execution.
    pub last_error: Option<String>,
}

/// The worker's side of the status: every change goes through one of its methods.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    /// Shared by the worker's clones; the HTTP handlers' receivers keep reading the last value
    /// after the worker ends.
    sender: watch::Sender<ExecutorStatus>,
}

impl StatusBoard {
    pub fn new(executor_id: &str) -> Self {
        let (sender, _) = watch::channel(ExecutorStatus {
            id: executor_id.to_owned(),
            state: Role::Candidate,
            token: None,
            lease_holder: None,
            current_order: None,
            orders_executed: 0,
            last_executed_order: None,
            last_error: None,
        });
        Self { sender }
    }

    /// A reader of the status; it sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<ExecutorStatus> {
        self.sender.subscribe()
    }

    pub fn current(&self) -> ExecutorStatus {
        self.sender.borrow().clone()
    }

    /// Nobody holds the lease as far as it knows.
    pub fn candidate(&self) {
        self.set_role(Role::Candidate, None, None);
    }

    /// `holder` holds the lease, or (`None`) this executor stands aside after leading.
    pub fn following(&self, holder: Option<String>) {
        self.set_role(Role::Following, None, holder);
    }

    pub fn leading(&self, token: u64) {
        self.set_role(Role::Leader, Some(token), None);
    }

    pub fn executing(&self, order_id: &str, priority: u32) {
        self.sender.send_modify(|status| {
            status.current_order = Some(CurrentOrder {
                order_id: order_id.to_owned(),
                priority,
            });
        });
    }

    /// The current order's execution was recorded in the cluster.
    pub fn executed(&self) {
        self.sender.send_modify(|status| {
            if let Some(order) = status.current_order.take() {
                status.orders_executed += 1;
                status.last_executed_order = Some(order.order_id);
            }
        });
    }

    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let message = error.to_string();
        self.sender
            .send_modify(|status| status.last_error = Some(message));
    }

    /// Any role change drops the current order: an order is only ever worked on by a leader.
    fn set_role(&self, state: Role, token: Option<u64>, lease_holder: Option<String>) {
        let leading = if state == Role::Leader { 1.0 } else { 0.0 };
        metrics::gauge!("bookstore_executor_leader").set(leading);
        self.sender.send_if_modified(|status| {
            let before = (
                status.state,
                status.token,
                status.lease_holder.clone(),
                status.current_order.clone(),
            );
            status.state = state;
            status.token = token;
            status.lease_holder = lease_holder;
            if state != Role::Leader {
                status.current_order = None;
            }
            before
                != (
                    status.state,
                    status.token,
                    status.lease_holder.clone(),
                    status.current_order.clone(),
                )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acknowledged_order_is_counted_once_and_leaving_the_lead_drops_the_order() {
        let board = StatusBoard::new("executor-1");
        board.leading(4);
        board.executing("order-1", 3);
        board.executed();
        board.executed();
        let status = board.current();
        assert_eq!(status.orders_executed, 1);
        assert_eq!(status.last_executed_order.as_deref(), Some("order-1"));

        board.executing("order-2", 1);
        board.candidate();
        let status = board.current();
        assert_eq!((status.state, status.token), (Role::Candidate, None));
        assert_eq!(status.current_order, None);
    }
}
