//! What a use case can refuse with: the domain's refusals, storage's, and
//! the refusals only a use case makes — a field the caller may not touch, a
//! credential that proves nothing, a bucket that is full, a link that is
//! spent, a provider that does not answer. Front doors map these to their
//! own shapes (the envelope, Rocket.Chat's errors, SCIM's).

use crate::domain::{DomainError, ValidationError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller may not do this; `field` names what they may not touch.
    #[error("{message}")]
    Forbidden {
        message: String,
        field: Option<String>,
    },
    /// What was presented (a password, a refresh token, a guest link)
    /// proves nothing.
    #[error("{0}")]
    Unauthorized(String),
    /// Too many attempts: retry after this many seconds (at least 1).
    #[error("too many attempts; retry later")]
    RateLimited { retry_after: u64 },
    /// A single-use link (password reset, address verification) that was
    /// used, expired or never existed; `field` names where it came from.
    #[error("{message}")]
    Gone {
        message: String,
        field: Option<String>,
    },
    /// Something this server depends on (the captcha provider) is missing
    /// or did not answer; the message says which.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden {
            message: message.into(),
            field: None,
        }
    }

    pub fn forbidden_field(message: impl Into<String>, field: &str) -> Self {
        Self::Forbidden {
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::Domain(ValidationError::new(field, message).into())
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(message.into())
    }

    pub fn gone_field(message: impl Into<String>, field: &str) -> Self {
        Self::Gone {
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    /// `what` not found, naming the request field that pointed at it.
    pub fn not_found_field(what: &str, field: &str) -> Self {
        Self::Domain(DomainError::not_found_field(what, field))
    }

    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        Self::Domain(DomainError::Conflict {
            field: field.to_owned(),
            message: message.into(),
        })
    }

    /// A "not found" made to name the request field that pointed at what
    /// was not found (an id in a body); any other refusal as it is.
    pub fn naming(self, field: &str) -> Self {
        match self {
            Self::Store(StoreError::NotFound(what)) => Self::not_found_field(what, field),
            Self::Domain(DomainError::NotFound { message, .. }) => {
                Self::Domain(DomainError::NotFound {
                    message,
                    field: Some(field.to_owned()),
                })
            }
            other => other,
        }
    }
}

impl From<ValidationError> for Error {
    fn from(e: ValidationError) -> Self {
        Self::Domain(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
