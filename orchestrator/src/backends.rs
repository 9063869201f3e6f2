//! The gRPC clients of the three backends, and the fan-out of one checkout to all three at once.
//!
//! Each call runs as its own spawned task under the checkout's span (so its log lines carry the
//! order id) and under a deadline, so a backend that is down or slow costs at most that deadline.

use std::{future::Future, time::Duration};

use bookstore_proto::{
    self as pb, CheckOrderRequest, CheckOrderResponse, FraudDecision, ListBooksRequest,
    SuggestBooksRequest, VerifyTransactionRequest, VerifyTransactionResponse,
    fraud_detection_client::FraudDetectionClient, request_for_order,
    suggestions_client::SuggestionsClient,
    transaction_verification_client::TransactionVerificationClient,
};
use tokio::{task::JoinHandle, time::Instant};
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument;

use crate::{
    Config,
    checkout::{CheckoutResponse, OrderDecision, RejectionReason, SuggestedBook},
    error::ApiError,
};

pub const FRAUD_DETECTION: &str = "fraud-detection";
pub const TRANSACTION_VERIFICATION: &str = "transaction-verification";
pub const SUGGESTIONS: &str = "suggestions";

/// How many books a checkout suggests.
const SUGGESTION_COUNT: u32 = 3;

/// Why a backend gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendFailure {
    #[error("{service} did not answer within {} ms", timeout.as_millis())]
    Timeout {
        service: &'static str,
        timeout: Duration,
    },
    #[error("{service} is unavailable: {message}")]
    Unavailable {
        service: &'static str,
        message: String,
    },
    #[error("{service} failed ({code:?}): {message}")]
    Failed {
        service: &'static str,
        code: tonic::Code,
        message: String,
    },
}

impl BackendFailure {
    fn from_status(service: &'static str, status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::Unavailable => Self::Unavailable { service, message },
            code => Self::Failed {
                service,
                code,
                message,
            },
        }
    }
}

impl From<BackendFailure> for ApiError {
    fn from(failure: BackendFailure) -> Self {
        ApiError::BackendUnavailable(failure.to_string())
    }
}

/// Clients of the three backends. Channels connect lazily and reconnect by themselves, so the
/// orchestrator starts before its backends and survives their restarts.
#[derive(Debug, Clone)]
pub struct Backends {
    fraud_detection: FraudDetectionClient<Channel>,
    transaction_verification: TransactionVerificationClient<Channel>,
    suggestions: SuggestionsClient<Channel>,
    timeout: Duration,
}

impl Backends {
    pub fn connect_lazy(config: &Config) -> Result<Self, tonic::transport::Error> {
        let timeout = config.backend_timeout();
        let channel = |addr: &str| -> Result<Channel, tonic::transport::Error> {
            Ok(Endpoint::from_shared(addr.to_owned())?
                .connect_timeout(timeout)
                .connect_lazy())
        };
        Ok(Self {
            fraud_detection: FraudDetectionClient::new(channel(&config.fraud_detection_addr)?),
            transaction_verification: TransactionVerificationClient::new(channel(
                &config.transaction_verification_addr,
            )?),
            suggestions: SuggestionsClient::new(channel(&config.suggestions_addr)?),
            timeout,
        })
    }

    /// Asks the three backends about `order` at once and waits for all three answers (or their
    /// deadlines).
    pub async fn assess(&self, order: pb::Order) -> Assessment {
        let order_id = order.order_id.clone();
        let verification = {
            let mut client = self.transaction_verification.clone();
            let request = self.request(
                &order_id,
                VerifyTransactionRequest {
                    order: Some(order.clone()),
                },
            );
            self.spawn_call(TRANSACTION_VERIFICATION, async move {
                client.verify_transaction(request).await
            })
        };
        let fraud = {
            let mut client = self.fraud_detection.clone();
            let request = self.request(
                &order_id,
                CheckOrderRequest {
                    order: Some(order.clone()),
                },
            );
            self.spawn_call(
                FRAUD_DETECTION,
                async move { client.check_order(request).await },
            )
        };
        let suggestions = {
            let mut client = self.suggestions.clone();
            let request = self.request(
                &order_id,
                SuggestBooksRequest {
                    items: order.items,
                    limit: SUGGESTION_COUNT,
                },
            );
            self.spawn_call(
                SUGGESTIONS,
                async move { client.suggest_books(request).await },
            )
        };
        let (verification, fraud, suggestions) = tokio::join!(
            joined(TRANSACTION_VERIFICATION, verification),
            joined(FRAUD_DETECTION, fraud),
            joined(SUGGESTIONS, suggestions),
        );
        Assessment {
            verification,
            fraud,
            suggestions: suggestions.map(|answer| answer.books),
        }
    }

    /// The whole catalogue, from the suggestions service.
    pub async fn list_books(&self) -> Result<Vec<pb::Book>, BackendFailure> {
        let mut client = self.suggestions.clone();
        let mut request = tonic::Request::new(ListBooksRequest {});
        request.set_timeout(self.timeout);
        let answer = self.spawn_call(SUGGESTIONS, async move { client.list_books(request).await });
        joined(SUGGESTIONS, answer).await.map(|answer| answer.books)
    }

    /// A request carrying the order id, with the deadline also sent to the server.
    fn request<T>(&self, order_id: &str, message: T) -> tonic::Request<T> {
        let mut request = request_for_order(order_id, message);
        request.set_timeout(self.timeout);
        request
    }

    fn spawn_call<T, F>(
        &self,
        service: &'static str,
        call: F,
    ) -> JoinHandle<Result<T, BackendFailure>>
    where
        T: Send + 'static,
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
    {
        let timeout = self.timeout;
        let task = async move {
            let started = Instant::now();
            tracing::info!(service, "backend call spawned");
            let result = match tokio::time::timeout(timeout, call).await {
                Err(_) => Err(BackendFailure::Timeout { service, timeout }),
                Ok(Err(status)) => Err(BackendFailure::from_status(service, status)),
                Ok(Ok(response)) => Ok(response.into_inner()),
            };
            let elapsed = started.elapsed();
            let outcome = match &result {
                Ok(_) => "ok",
                Err(BackendFailure::Timeout { .. }) => "timeout",
                Err(_) => "error",
            };
            metrics::histogram!(
                "bookstore_backend_call_duration_seconds",
                "backend" => service,
                "outcome" => outcome,
            )
            .record(elapsed.as_secs_f64());
            let elapsed_ms = elapsed.as_millis() as u64;
            match &result {
                Ok(_) => tracing::info!(service, elapsed_ms, "backend answered"),
                Err(failure) => {
                    tracing::warn!(service, elapsed_ms, %failure, "backend call failed")
                }
            }
            result
        };
        tokio::spawn(task.instrument(tracing::Span::current()))
    }
}

/// Counts a checkout decision: `approved`, `rejected`, or `undecided` (a backend failed).
fn record_decision(decision: &'static str) {
    metrics::counter!("bookstore_checkout_decisions_total", "decision" => decision).increment(1);
}

async fn joined<T>(
    service: &'static str,
    handle: JoinHandle<Result<T, BackendFailure>>,
) -> Result<T, BackendFailure> {
    handle.await.unwrap_or_else(|error| {
        Err(BackendFailure::Failed {
            service,
            code: tonic::Code::Internal,
            message: error.to_string(),
        })
    })
}

/// The three answers about one order, before the decision.
#[derive(Debug)]
pub struct Assessment {
    pub verification: Result<VerifyTransactionResponse, BackendFailure>,
    pub fraud: Result<CheckOrderResponse, BackendFailure>,
    pub suggestions: Result<Vec<pb::Book>, BackendFailure>,
}

impl Assessment {
    /// Approves the order only when verification and fraud detection both approve. A rejection
    /// by either stands even when the other is down; without a rejection, a backend that gave no
    /// answer makes the checkout fail as unavailable. Suggestions never decide: without them the
    /// order is approved with none, and a warning says why.
    pub fn decide(self, order_id: String) -> Result<CheckoutResponse, ApiError> {
        let mut reasons = Vec::new();
        let mut failures = Vec::new();
        match self.verification {
            Ok(answer) => {
                tracing::info!(
                    approved = answer.approved,
                    reasons = answer.reasons.len(),
                    "verification answer"
                );
                if !answer.approved {
                    reasons.extend(answer.reasons.into_iter().map(|reason| {
                        RejectionReason::from_backend(TRANSACTION_VERIFICATION, reason)
                    }));
                    if reasons.is_empty() {
                        reasons.push(unexplained_rejection(TRANSACTION_VERIFICATION));
                    }
                }
            }
            Err(failure) => failures.push(failure),
        }
        match self.fraud {
            Ok(answer) => {
                let decision = answer.decision();
                tracing::info!(
                    ?decision,
                    score = answer.score,
                    reasons = answer.reasons.len(),
                    "fraud answer"
                );
                match decision {
                    FraudDecision::Approve => {}
                    FraudDecision::Reject => {
                        let before = reasons.len();
                        reasons.extend(
                            answer.reasons.into_iter().map(|reason| {
                                RejectionReason::from_backend(FRAUD_DETECTION, reason)
                            }),
                        );
                        if reasons.len() == before {
                            reasons.push(unexplained_rejection(FRAUD_DETECTION));
                        }
                    }
                    FraudDecision::Unspecified => failures.push(BackendFailure::Failed {
                        service: FRAUD_DETECTION,
                        code: tonic::Code::Internal,
                        message: "answered without a decision".into(),
                    }),
                }
            }
            Err(failure) => failures.push(failure),
        }
        let mut warnings: Vec<String> = failures.iter().map(ToString::to_string).collect();
        if !reasons.is_empty() {
            let codes: Vec<&str> = reasons.iter().map(|reason| reason.code.as_str()).collect();
            tracing::info!(
                reasons = reasons.len(),
                codes = pb::code_counts(codes.iter().copied()),
                "order rejected"
            );
            record_decision("rejected");
            for code in codes {
                metrics::counter!(
                    "bookstore_checkout_rejection_reasons_total",
                    "reason" => code.to_owned(),
                )
                .increment(1);
            }
            return Ok(CheckoutResponse {
                order_id,
                status: OrderDecision::Rejected,
                suggested_books: Vec::new(),
                reasons,
                warnings,
            });
        }
        if !failures.is_empty() {
            record_decision("undecided");
            return Err(ApiError::BackendUnavailable(format!(
                "cannot decide on order {order_id}: {}",
                warnings.join("; ")
            )));
        }
        let suggested_books = match self.suggestions {
            Ok(books) => books.into_iter().map(SuggestedBook::from).collect(),
            Err(failure) => {
                warnings.push(failure.to_string());
                Vec::new()
            }
        };
        tracing::info!(suggestions = suggested_books.len(), "order approved");
        record_decision("approved");
        Ok(CheckoutResponse {
            order_id,
            status: OrderDecision::Approved,
            suggested_books,
            reasons,
            warnings,
        })
    }
}

fn unexplained_rejection(service: &str) -> RejectionReason {
    RejectionReason {
        service: service.to_owned(),
        code: "rejected".into(),
        field: String::new(),
        message: format!("{service} rejected the order without giving a reason"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: &str) -> pb::Reason {
        pb::Reason {
            code: code.into(),
            field: "creditCard.number".into(),
            message: format!("{code} failed"),
        }
    }

    fn approved() -> Result<VerifyTransactionResponse, BackendFailure> {
        Ok(VerifyTransactionResponse {
            approved: true,
            reasons: vec![],
        })
    }

    fn fraud(
        decision: FraudDecision,
        reasons: Vec<pb::Reason>,
    ) -> Result<CheckOrderResponse, BackendFailure> {
        Ok(CheckOrderResponse {
            decision: decision as i32,
            score: 0,
            reasons,
        })
    }

    fn down(service: &'static str) -> BackendFailure {
        BackendFailure::Unavailable {
            service,
            message: "connection refused".into(),
        }
    }

    fn book(id: &str) -> pb::Book {
        pb::Book {
            book_id: id.into(),
            title: format!("Title {id}"),
            author: "Author".into(),
            ..pb::Book::default()
        }
    }

    #[test]
    fn both_approving_approves_with_the_suggestions() {
        let assessment = Assessment {
            verification: approved(),
            fraud: fraud(FraudDecision::Approve, vec![]),
            suggestions: Ok(vec![book("b1"), book("b2")]),
        };
        let answer = assessment.decide("o".into()).expect("decided");
        assert_eq!(answer.status, OrderDecision::Approved);
        assert_eq!(answer.suggested_books.len(), 2);
        assert!(answer.reasons.is_empty() && answer.warnings.is_empty());
    }

    #[test]
    fn rejections_of_both_are_all_reported_without_suggestions() {
        let assessment = Assessment {
            verification: Ok(VerifyTransactionResponse {
                approved: false,
                reasons: vec![reason("card_luhn")],
            }),
            fraud: fraud(FraudDecision::Reject, vec![reason("known_fraudulent_card")]),
            suggestions: Ok(vec![book("b1")]),
        };
        let answer = assessment.decide("o".into()).expect("decided");
        assert_eq!(answer.status, OrderDecision::Rejected);
        let services: Vec<&str> = answer
            .reasons
            .iter()
            .map(|reason| reason.service.as_str())
            .collect();
        assert_eq!(services, [TRANSACTION_VERIFICATION, FRAUD_DETECTION]);
        assert!(answer.suggested_books.is_empty());
    }

    #[test]
    fn fraud_reasons_on_an_approved_order_do_not_reject_it() {
        let assessment = Assessment {
            verification: approved(),
            fraud: fraud(FraudDecision::Approve, vec![reason("country_mismatch")]),
            suggestions: Ok(vec![]),
        };
        assert_eq!(
            assessment.decide("o".into()).expect("decided").status,
            OrderDecision::Approved
        );
    }

    #[test]
    fn a_rejection_stands_when_the_other_backend_is_down() {
        let assessment = Assessment {
            verification: Ok(VerifyTransactionResponse {
                approved: false,
                reasons: vec![reason("card_expired")],
            }),
            fraud: Err(down(FRAUD_DETECTION)),
            suggestions: Ok(vec![]),
        };
        let answer = assessment.decide("o".into()).expect("decided");
        assert_eq!(answer.status, OrderDecision::Rejected);
        assert!(answer.warnings[0].contains(FRAUD_DETECTION));
    }

    #[test]
    fn without_a_rejection_a_silent_backend_makes_the_checkout_unavailable() {
        for (verification, fraud_answer, silent) in [
            (
                Err(down(TRANSACTION_VERIFICATION)),
                fraud(FraudDecision::Approve, vec![]),
                TRANSACTION_VERIFICATION,
            ),
            (
                approved(),
                Err(BackendFailure::Timeout {
                    service: FRAUD_DETECTION,
                    timeout: Duration::from_secs(2),
                }),
                FRAUD_DETECTION,
            ),
            (
                approved(),
                fraud(FraudDecision::Unspecified, vec![]),
                FRAUD_DETECTION,
            ),
        ] {
            let assessment = Assessment {
                verification,
                fraud: fraud_answer,
                suggestions: Ok(vec![]),
            };
            match assessment.decide("o".into()) {
                Err(ApiError::BackendUnavailable(message)) => {
                    assert!(message.contains(silent), "{message}")
                }
                other => panic!("expected BackendUnavailable, got {other:?}"),
            }
        }
    }

    #[test]
    fn missing_suggestions_only_warn() {
        let assessment = Assessment {
            verification: approved(),
            fraud: fraud(FraudDecision::Approve, vec![]),
            suggestions: Err(down(SUGGESTIONS)),
        };
        let answer = assessment.decide("o".into()).expect("decided");
        assert_eq!(answer.status, OrderDecision::Approved);
        assert!(answer.suggested_books.is_empty());
        assert!(answer.warnings[0].contains(SUGGESTIONS));
    }

    #[test]
    fn a_rejection_without_reasons_still_explains_itself() {
        let assessment = Assessment {
            verification: Ok(VerifyTransactionResponse {
                approved: false,
                reasons: vec![],
            }),
            fraud: fraud(FraudDecision::Approve, vec![]),
            suggestions: Ok(vec![]),
        };
        let answer = assessment.decide("o".into()).expect("decided");
        assert_eq!(answer.reasons[0].service, TRANSACTION_VERIFICATION);
    }
}
