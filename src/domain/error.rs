//! Errors a domain rule can raise, before storage is involved.

use std::fmt;

/// One field of a request broke one of its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Canonical snake_case name of the field (`custom_id`, `tags[3]`).
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

/// What an operation can refuse with, named after the envelope's codes.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("{message}")]
    NotFound {
        message: String,
        field: Option<String>,
    },
    #[error("{message}")]
    Conflict { field: String, message: String },
    #[error("{0}")]
    Forbidden(String),
}

impl DomainError {
    pub fn not_found(what: &str) -> Self {
        Self::NotFound {
            message: format!("{what} not found"),
            field: None,
        }
    }

    pub fn not_found_field(what: &str, field: &str) -> Self {
        Self::NotFound {
            message: format!("{what} not found"),
            field: Some(field.to_owned()),
        }
    }
}
