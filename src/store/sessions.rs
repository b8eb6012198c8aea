//! The types of the sessions part of the [`Store`](super::Store): login
//! lookups, refresh-token families, per-user auth tokens and revocations.

use time::OffsetDateTime;
use uuid::Uuid;

use super::TokenRecord;
use crate::domain::user::{User, normalize_email, normalize_username};

/// How a login names its user: one of the three unique names.
#[derive(Debug, Clone)]
pub enum LoginName {
    Username(String),
    Email(String),
    CustomId(String),
}

impl LoginName {
    /// The users column it is looked up in, and the value to compare.
    pub(crate) fn column_and_value(&self) -> (&'static str, String) {
        match self {
            LoginName::Username(u) => ("username_norm", normalize_username(u)),
            LoginName::Email(e) => ("email_norm", normalize_email(e)),
            LoginName::CustomId(c) => ("custom_id", c.clone()),
        }
    }
}

/// A user found by a login name, with their password hash (PHC or bcrypt).
#[derive(Debug)]
pub struct LoginCandidate {
    pub user: User,
    pub password_hash: Option<String>,
}

/// A refresh token to record (only its hash) and the access token that
/// comes with it.
#[derive(Debug, Clone)]
pub struct NextTokens {
    pub refresh_hash: Vec<u8>,
    pub refresh_expires_at: OffsetDateTime,
    /// Kind `access`; its `user_id` must be the refresh token's owner.
    pub access: TokenRecord,
}

/// A new session (refresh-token family) and its first tokens.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: OffsetDateTime,
    pub tokens: NextTokens,
}

/// What became of a refresh.
#[derive(Debug)]
pub enum Refreshed {
    /// The old refresh token is spent; the new ones are recorded.
    Rotated(Box<User>),
    /// The refresh token had already been spent: its session is revoked.
    Reused { user_id: Uuid, revoked: Revoked },
    /// Unknown, expired, its session revoked, or its user gone or deactivated.
    Invalid,
}

/// How a session is named when it is ended.
#[derive(Debug, Clone)]
pub enum SessionRef {
    /// By the hash of one of its refresh tokens.
    Refresh(Vec<u8>),
    /// By the id (`jti`) of one of its tokens.
    Token(Uuid),
}

/// The user and the token ids a revocation ended, so that their live
/// connections can be closed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub user_id: Option<Uuid>,
    pub tokens: Vec<Uuid>,
}

/// A `user` token as listed: `token_info` of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: Uuid,
    pub room_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A mail in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMail {
    pub id: Uuid,
    pub account_id: Option<Uuid>,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub created_at: OffsetDateTime,
    /// Delivery attempts made so far.
    pub attempts: i32,
}

/// A password reset link to record (only its hash) with the mail carrying it.
#[derive(Debug, Clone)]
pub struct NewPasswordReset {
    pub hash: Vec<u8>,
    pub user_id: Uuid,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub mail: OutboxMail,
}

/// What goes out with a new user: mails (welcome, verification) and the
/// verification link to record, in the user's own transaction.
#[derive(Debug, Clone, Default)]
pub struct UserMail {
    pub mails: Vec<OutboxMail>,
    /// SHA-256 of the verification token, and when it expires.
    pub verification: Option<(Vec<u8>, OffsetDateTime)>,
}
