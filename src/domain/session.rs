//! The bodies of the session and token routes as sent: login, refresh,
//! password change and reset, self sign-up, and a user token's issue. The
//! use cases in `service::sessions` and `service::tokens` parse them. No
//! `Debug`: several carry a password or a token.

use serde::Deserialize;
use uuid::Uuid;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: Option<String>,
    pub email: Option<String>,
    #[serde(alias = "customId", alias = "uid")]
    pub custom_id: Option<String>,
    #[schema(min_length = 1, max_length = 128)]
    pub password: String,
    /// Also set the session cookies (always, when the server is so configured).
    #[serde(default)]
    pub cookies: bool,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// Omitted: the `roster_refresh` cookie (with `X-CSRF-Token`).
    #[serde(alias = "refreshToken")]
    #[schema(min_length = 1)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub cookies: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// Required when the user has a password.
    #[serde(alias = "currentPassword")]
    pub current_password: Option<String>,
    #[serde(alias = "newPassword")]
    #[schema(min_length = 8, max_length = 128, pattern = r"\S")]
    pub new_password: String,
    /// Default true: every other session of the user ends.
    #[serde(alias = "revokeOtherSessions")]
    pub revoke_other_sessions: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub email: String,
    pub username: String,
    pub password: String,
    pub phone: Option<String>,
    pub name: Option<String>,
    /// The captcha widget's answer; required when the account asks for one.
    #[serde(alias = "captchaToken")]
    pub captcha_token: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The `token` of the mailed link.
    pub token: String,
    #[serde(alias = "newPassword")]
    #[schema(min_length = 8, max_length = 128, pattern = r"\S")]
    pub new_password: String,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueTokenRequest {
    /// Carried in the token as `roomId` (the room CollabKit's `join()` joins).
    #[serde(alias = "roomId")]
    pub room_id: Option<Uuid>,
}
