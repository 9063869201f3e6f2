//! A checkout decision as the order queue records it, and a checkout answer told from that
//! record. The record, not this orchestrator's memory, is what every answer about a decided order
//! comes from: the first answer, a retry's (by any orchestrator, after any restart), and
//! `GET /orders/{id}`'s reasons, so they always agree.
//!
//! What a record keeps is bounded (queue-raft's `MAX_REASONS`, `MAX_SUGGESTIONS`,
//! `MAX_TEXT_BYTES`): a decision is cut to those bounds before it is sent, so the answer told
//! from the record is the one the client gets the first time too.

use bookstore_proto as pb;
use queue_raft::RequestDigest;
use queue_raft::state_machine::{MAX_REASONS, MAX_SUGGESTIONS, bounded_text};

use crate::checkout::{CheckoutResponse, OrderDecision, RejectionReason, SuggestedBook};
use crate::error::ApiError;

/// The decision to record for `order` (as the queue keeps it), decided as `answer` says, on the
/// request with digest `request`.
pub fn decision(
    order: pb::QueuedOrder,
    answer: &CheckoutResponse,
    request: &RequestDigest,
) -> pb::Decision {
    let verdict = match answer.status {
        OrderDecision::Approved => pb::decision::Verdict::Approved(pb::Approval {
            suggestions: answer
                .suggested_books
                .iter()
                .take(MAX_SUGGESTIONS)
                .map(|book| pb::SuggestedBook {
                    book_id: bounded_text(&book.book_id),
                    title: bounded_text(&book.title),
                    author: bounded_text(&book.author),
                })
                .collect(),
        }),
        OrderDecision::Rejected => pb::decision::Verdict::Rejected(pb::Rejection {
            reasons: answer
                .reasons
                .iter()
                .take(MAX_REASONS)
                .map(|reason| pb::RejectionReason {
                    service: bounded_text(&reason.service),
                    code: bounded_text(&reason.code),
                    field: bounded_text(&reason.field),
                    message: bounded_text(&reason.message),
                })
                .collect(),
        }),
    };
    pb::Decision {
        order: Some(order),
        request: Some(pb::RequestDigest::from(request)),
        verdict: Some(verdict),
    }
}

/// The checkout answer the queue's record of order `order_id` gives a request with digest
/// `request`: the recorded decision, if the record was made for that same request; else
/// `422 idempotency_key_reused` (also when the order was placed other than by a checkout).
pub fn answer_from_record(
    order_id: &str,
    record: &pb::OrderState,
    request: &RequestDigest,
) -> Result<CheckoutResponse, ApiError> {
    let reused = || ApiError::IdempotencyKeyReused {
        order_id: order_id.to_owned(),
    };
    let checkout = record.checkout.as_ref().ok_or_else(reused)?;
    let recorded = checkout
        .request
        .clone()
        .and_then(|digest| RequestDigest::try_from(digest).ok())
        .ok_or_else(reused)?;
    if !recorded.matches(request) {
        return Err(reused());
    }
    let rejected = record.phase() == pb::OrderPhase::Rejected;
    Ok(CheckoutResponse {
        order_id: order_id.to_owned(),
        status: if rejected {
            OrderDecision::Rejected
        } else {
            OrderDecision::Approved
        },
        suggested_books: checkout
            .suggestions
            .iter()
            .map(|book| SuggestedBook {
                book_id: book.book_id.clone(),
                title: book.title.clone(),
                author: book.author.clone(),
            })
            .collect(),
        reasons: record.reasons.iter().map(reason_of).collect(),
        warnings: Vec::new(),
    })
}

/// A recorded rejection reason as the REST answers show it.
pub fn reason_of(reason: &pb::RejectionReason) -> RejectionReason {
    RejectionReason {
        service: reason.service.clone(),
        code: reason.code.clone(),
        field: reason.field.clone(),
        message: reason.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(body: u8) -> RequestDigest {
        RequestDigest {
            body: [body; 32],
            card: Some([7; 32]),
        }
    }

    fn order() -> pb::QueuedOrder {
        pb::QueuedOrder {
            order_id: "o-1".into(),
            customer: "Ada".into(),
            items: vec![pb::QueueItem {
                title: "Emma".into(),
                quantity: 2,
            }],
        }
    }

    fn answer(status: OrderDecision) -> CheckoutResponse {
        CheckoutResponse {
            order_id: "o-1".into(),
            status,
            suggested_books: vec![SuggestedBook {
                book_id: "b1".into(),
                title: "Dune".into(),
                author: "Frank Herbert".into(),
            }],
            reasons: (status == OrderDecision::Rejected)
                .then(|| RejectionReason {
                    service: "fraud-detection".into(),
                    code: "card_velocity".into(),
                    field: "creditCard.number".into(),
                    message: "x".repeat(1_000),
                })
                .into_iter()
                .collect(),
            warnings: vec!["suggestions were slow".into()],
        }
    }

    /// The record the queue would keep of `decision`, as `GetOrder` shows it.
    fn recorded(decision: pb::Decision) -> pb::OrderState {
        let decision = queue_raft::Decision::try_from(decision).expect("a valid decision");
        let mut state = queue_raft::QueueState::default();
        state.apply(&queue_raft::Command::Decide {
            at: queue_raft::Stamp::default(),
            decision,
        });
        pb::OrderState::from(state.order_status("o-1").expect("recorded"))
    }

    #[test]
    fn a_retry_of_the_same_request_gets_the_recorded_answer() {
        for status in [OrderDecision::Approved, OrderDecision::Rejected] {
            let record = recorded(decision(order(), &answer(status), &digest(1)));
            let replayed = answer_from_record("o-1", &record, &digest(1)).expect("same request");
            assert_eq!(replayed.status, status);
            match status {
                OrderDecision::Approved => {
                    assert_eq!(replayed.suggested_books, answer(status).suggested_books);
                    assert!(replayed.reasons.is_empty());
                }
                OrderDecision::Rejected => {
                    assert!(replayed.suggested_books.is_empty());
                    assert_eq!(replayed.reasons[0].code, "card_velocity");
                    assert_eq!(
                        replayed.reasons[0].message.len(),
                        queue_raft::state_machine::MAX_TEXT_BYTES,
                        "kept as bounded"
                    );
                }
            }
            assert!(replayed.warnings.is_empty());
        }
    }

    #[test]
    fn a_rejection_with_thousands_of_long_reasons_keeps_a_bounded_record() {
        let mut rejected = answer(OrderDecision::Rejected);
        let long = |text: &str| text.repeat(10_000);
        rejected.reasons = (0..5_000)
            .map(|_| RejectionReason {
                service: long("s"),
                code: long("c"),
                field: long("f"),
                message: long("m"),
            })
            .collect();
        let order = pb::QueuedOrder {
            customer: "é".repeat(128),
            ..order()
        };
        let record = recorded(decision(order, &rejected, &digest(1)));
        assert_eq!(record.reasons.len(), MAX_REASONS);
        let kept = prost::Message::encoded_len(&record);
        assert!(kept < 20 * 1024, "a rejection record of {kept} bytes");
    }

    #[test]
    fn another_request_or_an_order_placed_otherwise_is_a_reused_key() {
        let record = recorded(decision(
            order(),
            &answer(OrderDecision::Approved),
            &digest(1),
        ));
        assert!(matches!(
            answer_from_record("o-1", &record, &digest(2)),
            Err(ApiError::IdempotencyKeyReused { .. })
        ));
        let enqueued = pb::OrderState {
            checkout: None,
            ..record
        };
        assert!(matches!(
            answer_from_record("o-1", &enqueued, &digest(1)),
            Err(ApiError::IdempotencyKeyReused { .. })
        ));
    }
}
