//! [`ApiError`]: every way a request can fail, and the one place where a failure becomes an HTTP
//! status and the contract's `{"error": {"code", "message"}}` body.
//!
//! A checkout whose outcome the answer cannot tell ([`ApiError::Unresolved`]: the queue did not
//! confirm the decision, or the checkout ran out of its time) is a `503` that carries everything
//! the caller needs to find out without placing a second order: the order id and the
//! idempotency key (in the body and in the `Idempotency-Key` header; for a caller that sent no
//! key, the one made for it), a `Retry-After`, and a message saying what to do.

use std::time::Duration;

use axum::{
    Json,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use queue_raft::client::ClientError;

use crate::idempotency::{CheckoutKey, IDEMPOTENCY_KEY};

/// How long a caller is asked to wait before retrying an unresolved checkout: about one queue
/// election.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("the body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The client stopped sending its body before the whole of it had arrived in time.
    #[error("the body did not arrive within {:?}", bookstore_common::http::HttpLimits::default().body_timeout)]
    BodyTimeout,
    #[error("cannot read the body: {0}")]
    UnreadableBody(String),
    #[error("{0}")]
    BackendUnavailable(String),
    #[error("{0}")]
    QueueUnavailable(String),
    /// The checkout may or may not have placed its order.
    #[error("{}", .0.message())]
    Unresolved(Box<Unresolved>),
    /// The `Idempotency-Key` was used before for another request body.
    #[error(
        "the Idempotency-Key was used before for another request (order {order_id}); use a new \
         key for a new order"
    )]
    IdempotencyKeyReused { order_id: String },
    #[error("{0}")]
    InvalidHeader(String),
    #[error("{0}")]
    OrderNotFound(String),
    #[error("no such resource: {0}")]
    NotFound(String),
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// Something this server should not have done: a bug, not the caller's doing.
    #[error("{0}")]
    Internal(String),
}

/// What a public answer says of a failed queue call: what went wrong, never where (the nodes'
/// addresses, which the client's own error names, belong in logs only).
pub fn queue_failure(error: &ClientError) -> String {
    match error {
        ClientError::Unreachable {
            attempts, waited, ..
        } => format!(
            "the order queue did not answer ({attempts} attempts in {} ms)",
            waited.as_millis()
        ),
        ClientError::InvalidArgument(reason) => {
            format!("the order queue refused the request: {reason}")
        }
        ClientError::Unauthenticated(_) => {
            "the order queue refused this orchestrator's credentials".to_owned()
        }
        ClientError::Rejected(status) => {
            format!("the order queue refused the request ({:?})", status.code())
        }
        ClientError::InvalidAddress { .. } => {
            "the order queue's address is misconfigured".to_owned()
        }
        ClientError::ShuttingDown => "the orchestrator is shutting down".to_owned(),
    }
}

/// Why a checkout's outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnresolvedCause {
    /// The order queue did not answer a read of the key's record or the write of the decision;
    /// the message says which and why.
    Queue(String),
    /// The checkout ran out of its time budget.
    OutOfTime(Duration),
}

/// A checkout whose outcome is unknown, and how to find it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub cause: UnresolvedCause,
    pub order_id: String,
    pub key: CheckoutKey,
}

impl Unresolved {
    fn message(&self) -> String {
        let order_id = &self.order_id;
        let what = match &self.cause {
            UnresolvedCause::Queue(why) => why.clone(),
            UnresolvedCause::OutOfTime(budget) => {
                format!(
                    "the checkout did not finish within {} ms",
                    budget.as_millis()
                )
            }
        };
        let advice = if self.key.sent() {
            format!(
                "retry with the same Idempotency-Key: the first decision for it stands, and no \
                 second order is placed; or look the order up at GET /orders/{order_id}"
            )
        } else {
            format!(
                "this request sent no Idempotency-Key; retry with the header Idempotency-Key: {} \
                 (given in this answer's Idempotency-Key header): the first decision for it \
                 stands, and no second order is placed; or look the order up at GET \
                 /orders/{order_id}. A retry without that key places a new order",
                self.key.key()
            )
        };
        format!("order {order_id} may or may not have been placed: {what}; {advice}")
    }
}

impl ApiError {
    /// The checkout with key `key` may or may not have placed its order, for `cause`.
    pub fn unresolved(cause: UnresolvedCause, key: &CheckoutKey) -> Self {
        ApiError::Unresolved(Box::new(Unresolved {
            cause,
            order_id: key.order_id(),
            key: key.clone(),
        }))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::UnreadableBody(_) | Self::InvalidHeader(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::InvalidField(_) | Self::IdempotencyKeyReused { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BackendUnavailable(_) | Self::QueueUnavailable(_) | Self::Unresolved(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::NotFound(_) | Self::OrderNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidField(_) => "invalid_field",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyTimeout => "body_timeout",
            Self::UnreadableBody(_) => "unreadable_body",
            Self::BackendUnavailable(_) => "backend_unavailable",
            Self::QueueUnavailable(_) => "queue_unavailable",
            Self::Unresolved(unresolved) => match unresolved.cause {
                UnresolvedCause::Queue(_) => "queue_unavailable",
                UnresolvedCause::OutOfTime(_) => "checkout_timeout",
            },
            Self::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            Self::InvalidHeader(_) => "invalid_header",
            Self::OrderNotFound(_) => "order_not_found",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Internal(_) => "internal_error",
        }
    }
}

/// The contract's error body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// The order an unresolved checkout is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The key to retry an unresolved checkout with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::info!(code = self.code(), error = %self, "request refused");
        }
        let unresolved = match &self {
            Self::Unresolved(unresolved) => Some(unresolved.as_ref().clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                order_id: unresolved.as_ref().map(|it| it.order_id.clone()),
                idempotency_key: unresolved.as_ref().map(|it| it.key.key().to_owned()),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(unresolved) = unresolved {
            let headers = response.headers_mut();
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER.as_secs()),
            );
            // A key that was sent is a valid header value, and one made is a UUID.
            if let Ok(key) = HeaderValue::from_str(unresolved.key.key()) {
                headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY), key);
            }
        }
        response
    }
}
