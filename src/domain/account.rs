//! Accounts (tenants) and their API keys.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ValidationError, text};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// What an API key may do: everything in its account, or only read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Full,
    Read,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Full => "full",
            Scope::Read => "read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Scope::Full),
            "read" => Some(Scope::Read),
            _ => None,
        }
    }
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub scope: Scope,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "super::time::serde_millis::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
}

/// The stored part of a key needed to authenticate with it.
#[derive(Debug, Clone)]
pub struct ApiKeyAuth {
    pub id: Uuid,
    pub account_id: Uuid,
    pub scope: Scope,
    pub secret_hash: Vec<u8>,
}

pub fn account_name(s: &str) -> Result<String, ValidationError> {
    text::display_text("name", s, 100)
}

pub fn key_name(s: &str) -> Result<String, ValidationError> {
    text::display_text("name", s, 100)
}

// The bodies of the account and API-key routes as sent.

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    #[schema(schema_with = crate::domain::text::display_schema::<100>)]
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schema(schema_with = crate::domain::text::display_schema::<100>)]
    pub name: String,
    /// `full` (default) or `read`.
    #[schema(pattern = "^(full|read)$")]
    pub scope: Option<String>,
}
