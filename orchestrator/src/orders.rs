//! The body of `GET /orders/{orderId}`: where an order is in its life, from the queue cluster's
//! replicated record (rejected orders included: a rejection is a terminal record there), and the
//! conversion into it.

use bookstore_proto::{self as pb, OrderPhase};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::{checkout::RejectionReason, decisions::reason_of};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OrderProgress {
    Queued,
    Executing,
    Executed,
    Rejected,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: String,
    pub status: OrderProgress,
    /// The sum of the quantities; more books are executed first. None for a rejected order.
    pub priority: Option<u32>,
    /// The executor executing the order, or whose execution of it counts. (Never its lease
    /// token, which proves the lease's holder to the cluster.)
    pub executor: Option<String>,
    pub enqueued_at: Option<String>,
    pub executed_at: Option<String>,
    pub items: Vec<OrderLine>,
    /// Why the order was rejected; empty otherwise.
    pub reasons: Vec<RejectionReason>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrderLine {
    pub name: String,
    pub quantity: u32,
}

impl OrderView {
    /// The view of an order the queue knows, or None when the cluster's answer has no phase
    /// (a newer cluster than this orchestrator).
    pub fn from_queue(state: pb::OrderState) -> Option<Self> {
        let status = match state.phase() {
            OrderPhase::Queued => OrderProgress::Queued,
            OrderPhase::Executing => OrderProgress::Executing,
            OrderPhase::Executed => OrderProgress::Executed,
            OrderPhase::Rejected => OrderProgress::Rejected,
            OrderPhase::Unspecified => return None,
        };
        let order = state.order.unwrap_or_default();
        if status == OrderProgress::Rejected {
            return Some(Self {
                order_id: order.order_id,
                status,
                priority: None,
                executor: None,
                enqueued_at: None,
                executed_at: None,
                items: Vec::new(),
                reasons: state.reasons.iter().map(reason_of).collect(),
            });
        }
        let assigned = status != OrderProgress::Queued;
        Some(Self {
            order_id: order.order_id,
            status,
            priority: Some(state.priority),
            executor: assigned.then_some(state.executor_id),
            enqueued_at: rfc3339(state.enqueued_at_ms),
            executed_at: (status == OrderProgress::Executed)
                .then(|| rfc3339(state.executed_at_ms))
                .flatten(),
            items: order
                .items
                .into_iter()
                .map(|item| OrderLine {
                    name: item.title,
                    quantity: item.quantity,
                })
                .collect(),
            reasons: Vec::new(),
        })
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC; None for 0 (not set) or out of range.
fn rfc3339(millis: u64) -> Option<String> {
    if millis == 0 {
        return None;
    }
    let millis = i64::try_from(millis).ok()?;
    DateTime::<Utc>::from_timestamp_millis(millis)
        .map(|time| time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(phase: OrderPhase) -> pb::OrderState {
        pb::OrderState {
            order: Some(pb::QueuedOrder {
                order_id: "o-1".into(),
                customer: "Ada".into(),
                items: vec![pb::QueueItem {
                    title: "Emma".into(),
                    quantity: 3,
                }],
            }),
            phase: phase as i32,
            priority: 3,
            sequence: 7,
            enqueued_at_ms: 1_700_000_000_000,
            executor_id: "executor-2".into(),
            token: 5,
            since_ms: 1_700_000_000_500,
            executed_at_ms: 1_700_000_001_000,
            ..Default::default()
        }
    }

    #[test]
    fn a_queued_order_has_no_executor_yet() {
        let view = OrderView::from_queue(state(OrderPhase::Queued)).expect("known phase");
        assert_eq!(view.status, OrderProgress::Queued);
        assert_eq!((view.executor, view.executed_at), (None, None));
        assert_eq!(
            view.enqueued_at.as_deref(),
            Some("2023-11-14T22:13:20.000Z")
        );
        assert_eq!(
            view.items,
            vec![OrderLine {
                name: "Emma".into(),
                quantity: 3
            }]
        );
    }

    #[test]
    fn an_executed_order_says_by_whom_and_when() {
        let view = OrderView::from_queue(state(OrderPhase::Executed)).expect("known phase");
        assert_eq!(view.executor.as_deref(), Some("executor-2"));
        assert_eq!(
            view.executed_at.as_deref(),
            Some("2023-11-14T22:13:21.000Z")
        );
    }

    #[test]
    fn an_executing_order_has_no_execution_time() {
        let view = OrderView::from_queue(state(OrderPhase::Executing)).expect("known phase");
        assert_eq!(view.status, OrderProgress::Executing);
        assert_eq!(view.executed_at, None);
    }

    #[test]
    fn an_unknown_phase_is_not_guessed() {
        assert_eq!(OrderView::from_queue(state(OrderPhase::Unspecified)), None);
    }

    #[test]
    fn a_rejected_order_shows_its_reasons_and_nothing_queued() {
        let rejected = pb::OrderState {
            reasons: vec![pb::RejectionReason {
                service: "fraud-detection".into(),
                code: "card_velocity".into(),
                field: "creditCard.number".into(),
                message: "too many orders".into(),
            }],
            ..state(OrderPhase::Rejected)
        };
        let view = OrderView::from_queue(rejected).expect("known phase");
        assert_eq!(view.status, OrderProgress::Rejected);
        assert_eq!(view.reasons[0].code, "card_velocity");
        assert_eq!(
            (
                view.priority,
                view.executor.as_deref(),
                view.enqueued_at.as_deref()
            ),
            (None, None, None)
        );
        assert!(view.items.is_empty());
        let json = serde_json::to_value(view).expect("serialise");
        assert_eq!(json["status"], "rejected");
        assert_eq!(json["executedAt"], serde_json::Value::Null);
    }

    /// The lease token proves who holds the executors' lease; a public page never shows it.
    #[test]
    fn the_view_never_carries_a_lease_token() {
        for phase in [OrderPhase::Executing, OrderPhase::Executed] {
            let view = OrderView::from_queue(state(phase)).expect("known phase");
            let json = serde_json::to_value(&view).expect("a JSON view");
            let keys: Vec<&String> = json.as_object().expect("an object").keys().collect();
            assert!(
                keys.iter().all(|key| !key.to_lowercase().contains("token")),
                "{json}"
            );
        }
    }
}
