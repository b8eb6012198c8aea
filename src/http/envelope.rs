//! The envelope every JSON answer wears, success or error, and the one
//! `ApiError` that produces error envelopes. Internals are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::{DomainError, ValidationError};
use crate::store::StoreError;

tokio::task_local! {
    /// The current request's id, set by the envelope middleware.
    pub static REQUEST_ID: String;
}

pub fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    success: bool,
    description: &'a str,
    data: Option<T>,
    error: Option<ErrorBody<'a>>,
    request_id: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Value>,
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// A success answer: `data` inside the envelope.
pub fn ok<T: Serialize>(status: StatusCode, description: &str, data: T) -> Response {
    let env = Envelope {
        kind: "response",
        success: true,
        description,
        data: Some(data),
        error: None,
        request_id: request_id(),
    };
    match serde_json::to_vec(&env) {
        Ok(body) => json_response(status, body),
        Err(e) => ApiError::internal(e.into()).into_response(),
    }
}

/// An error answer with its envelope code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub details: Option<serde_json::Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            details: None,
            retry_after: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message).with_field(field)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} not found"),
        )
    }

    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "CONFLICT", message).with_field(field)
    }

    pub fn internal(e: anyhow::Error) -> Self {
        tracing::error!(error = ?e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "internal error",
        )
    }

    pub fn unavailable(e: anyhow::Error) -> Self {
        tracing::error!(error = ?e, "storage unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the service is temporarily unavailable; retry shortly",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let env = Envelope::<()> {
            kind: "response",
            success: false,
            description: &self.message,
            data: None,
            error: Some(ErrorBody {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
                details: self.details.as_ref(),
            }),
            request_id: request_id(),
        };
        let body = serde_json::to_vec(&env).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = json_response(self.status, body);
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::validation(e.field, e.message)
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Validation(v) => v.into(),
            DomainError::NotFound { message, field } => ApiError {
                field,
                ..ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
            },
            DomainError::Conflict { field, message } => ApiError::conflict(field, message),
            DomainError::Forbidden(m) => ApiError::forbidden(m),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict { field, message } => ApiError::conflict(field, message),
            StoreError::Invalid(v) => v.into(),
            StoreError::Gone(why, what) => {
                ApiError::new(StatusCode::GONE, "GONE", why.message(what))
            }
            StoreError::Unavailable(e) => ApiError::unavailable(e),
            StoreError::Other(e) => ApiError::internal(e),
        }
    }
}

impl From<crate::service::Error> for ApiError {
    fn from(e: crate::service::Error) -> Self {
        use crate::service::Error;
        match e {
            Error::Domain(d) => d.into(),
            Error::Store(s) => s.into(),
            Error::Forbidden { message, field } => ApiError {
                field,
                ..ApiError::forbidden(message)
            },
            Error::Unauthorized(message) => ApiError::unauthorized(message),
            Error::RateLimited { retry_after } => ApiError {
                retry_after: Some(retry_after.max(1)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    "too many attempts; retry later",
                )
            },
            Error::Gone { message, field } => ApiError {
                field,
                ..ApiError::new(StatusCode::GONE, "GONE", message)
            },
            Error::Unavailable(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
            }
            Error::Internal(e) => ApiError::internal(e),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(e)
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;
