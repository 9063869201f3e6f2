//! The orchestrator's memory of recently rejected orders, so that `GET /orders/{id}` can say
//! "rejected" for them: a rejected order never reaches the replicated queue.
//!
//! Bounded: past [`CAPACITY`] orders the oldest is forgotten (and then reads as unknown). Kept in
//! this process only, so a restarted orchestrator forgets them too.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use crate::checkout::RejectionReason;

/// How many rejected orders are remembered.
pub const CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Default)]
pub struct RejectionLog {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    reasons: HashMap<String, Vec<RejectionReason>>,
    /// Order ids, oldest first, to know which to forget.
    arrival: VecDeque<String>,
}

impl RejectionLog {
    pub fn record(&self, order_id: &str, reasons: &[RejectionReason]) {
        let mut inner = self.lock();
        if inner
            .reasons
            .insert(order_id.to_owned(), reasons.to_vec())
            .is_none()
        {
            inner.arrival.push_back(order_id.to_owned());
        }
        while inner.arrival.len() > CAPACITY {
            if let Some(oldest) = inner.arrival.pop_front() {
                inner.reasons.remove(&oldest);
            }
        }
    }

    pub fn reasons(&self, order_id: &str) -> Option<Vec<RejectionReason>> {
        self.lock().reasons.get(order_id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent even if a holder panicked: every update is a single insert
        // or remove, so a poisoned lock is safe to keep using.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason() -> RejectionReason {
        RejectionReason {
            service: "fraud-detection".into(),
            code: "known_fraud_card".into(),
            field: "creditCard.number".into(),
            message: "known".into(),
        }
    }

    #[test]
    fn remembers_reasons_by_order_id() {
        let log = RejectionLog::default();
        log.record("a", &[reason()]);
        assert_eq!(log.reasons("a"), Some(vec![reason()]));
        assert_eq!(log.reasons("b"), None);
    }

    #[test]
    fn forgets_the_oldest_past_capacity() {
        let log = RejectionLog::default();
        for id in 0..=CAPACITY {
            log.record(&id.to_string(), &[]);
        }
        assert_eq!(log.reasons("0"), None);
        assert!(log.reasons("1").is_some());
        assert!(log.reasons(&CAPACITY.to_string()).is_some());
        log.record("1", &[]);
        assert_eq!(log.inner.lock().expect("lock").arrival.len(), CAPACITY);
    }
}
