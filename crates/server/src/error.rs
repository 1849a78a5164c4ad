//! API errors: each kind maps to one HTTP status and OpenAI's error JSON, in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for something impossible (400).
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
        /// The offending field, if one.
        param: Option<String>,
    },
    /// Missing or wrong API key (401).
    #[error("invalid or missing API key (send `Authorization: Bearer KEY`)")]
    Unauthorized,
    /// The requested model is not the one served (404).
    #[error("the model {0:?} does not exist; GET /v1/models lists the served one")]
    UnknownModel(String),
    /// No such endpoint (404).
    #[error("no such endpoint: {0}; the API has /v1/chat/completions, /v1/completions, /v1/models and /health")]
    NoRoute(String),
    /// The request body is larger than the server accepts (413); the limit in bytes.
    #[error("the request body is larger than the {0}-byte limit")]
    TooLarge(usize),
    /// The queue is full (429).
    #[error("the server is busy: {0} requests are already queued; retry later")]
    Overloaded(usize),
    /// The model is still loading (503).
    #[error("the model is still loading; retry shortly")]
    Loading,
    /// The server is shutting down and takes no new requests (503).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Something failed while running the request (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            message: message.into(),
            param: Some(param.to_owned()),
        }
    }

    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "authentication_error"),
            ApiError::UnknownModel(_) | ApiError::NoRoute(_) => {
                (StatusCode::NOT_FOUND, "invalid_request_error")
            }
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error"),
            ApiError::Overloaded(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
            ApiError::Loading | ApiError::ShuttingDown => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_error")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }

    /// The OpenAI error object.
    pub fn body(&self) -> serde_json::Value {
        let (status, kind) = self.status();
        let param = match self {
            ApiError::Invalid { param, .. } => param.clone(),
            ApiError::UnknownModel(_) => Some("model".into()),
            _ => None,
        };
        json!({"error": {"message": self.to_string(), "type": kind, "param": param, "code": status.as_u16()}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status();
        (status, Json(self.body())).into_response()
    }
}
