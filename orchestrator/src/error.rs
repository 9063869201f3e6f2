//! [`ApiError`]: every way a request can fail, and the one place where a failure becomes an HTTP
//! status and the contract's `{"error": {"code", "message"}}` body.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("the body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("cannot read the body: {0}")]
    UnreadableBody(String),
    #[error("{0}")]
    BackendUnavailable(String),
    #[error("{0}")]
    QueueUnavailable(String),
    #[error("{0}")]
    InvalidHeader(String),
    #[error("{0}")]
    OrderNotFound(String),
    #[error("no such resource: {0}")]
    NotFound(String),
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::UnreadableBody(_) | Self::InvalidHeader(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::InvalidField(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BackendUnavailable(_) | Self::QueueUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::NotFound(_) | Self::OrderNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidField(_) => "invalid_field",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::UnreadableBody(_) => "unreadable_body",
            Self::BackendUnavailable(_) => "backend_unavailable",
            Self::QueueUnavailable(_) => "queue_unavailable",
            Self::InvalidHeader(_) => "invalid_header",
            Self::OrderNotFound(_) => "order_not_found",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }
}

/// The contract's error body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::info!(code = self.code(), error = %self, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}
