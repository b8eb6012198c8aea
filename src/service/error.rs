//! What a use case can refuse with: the domain's refusals, storage's, and a
//! refusal that names the field it is about. Front doors map these to their
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
}

impl From<ValidationError> for Error {
    fn from(e: ValidationError) -> Self {
        Self::Domain(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
