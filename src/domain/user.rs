//! Users: the union of the four vendor APIs' user fields, their limits, and
//! the shape a user is answered in.
//!
//! Input accepts snake_case and camelCase names and the vendors' aliases
//! (`uid`/`customId`, `avatar`/`profilePicture`, `statusText`/`statusMessage`,
//! `role` as a one-element `roles`); unknown fields are refused. Parsing turns
//! the raw request into a [`NewUser`] or [`UserPatch`] that can only hold
//! valid values.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::permission::BUILTIN_ROLES;
use super::settings::Settings;
use super::{DomainError, ValidationError, text};

pub const MAX_NAME: usize = 100;
pub const MAX_CUSTOM_ID: usize = 100;
pub const MAX_USERNAME: usize = 100;
pub const MAX_NICKNAME: usize = 100;
pub const MAX_BIO: usize = 1000;
pub const MAX_STATUS_MESSAGE: usize = 140;
pub const MAX_EMAIL: usize = 254;
pub const MAX_METADATA_BYTES: usize = 5 * 1024;
pub const MAX_TAGS: usize = 25;
pub const MAX_TAG: usize = 100;
pub const MAX_ROLES: usize = 25;
pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 128;
/// CometChat's limit of bot users per app.
pub const MAX_BOTS: i64 = 25;

/// Presence status as stored on the user record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Online,
    Away,
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Away => "away",
            Status::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "online" => Some(Status::Online),
            "away" => Some(Status::Away),
            "offline" => Some(Status::Offline),
            _ => None,
        }
    }
}

/// A user as stored. The password hash is not part of it.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub account_id: Uuid,
    pub room_id: Option<Uuid>,
    pub custom_id: Option<String>,
    pub username: Option<String>,
    pub name: Option<String>,
    pub nickname: Option<String>,
    pub bio: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone: Option<String>,
    pub profile_picture: Option<String>,
    pub link: Option<String>,
    pub status: Status,
    pub status_message: Option<String>,
    pub active: bool,
    pub roles: Vec<String>,
    pub metadata: Map<String, Value>,
    pub tags: Vec<String>,
    pub custom_fields: Map<String, Value>,
    pub require_password_change: bool,
    pub has_password: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_seen_at: Option<OffsetDateTime>,
    pub deactivated_at: Option<OffsetDateTime>,
    /// When the email address last changed (never shown: it guards password
    /// resets, see [`reset_may_mail`]).
    pub email_changed_at: Option<OffsetDateTime>,
}

/// The user as answered. Private parts (`metadata["@private"]`, `email`,
/// `phone`, private custom fields) are left out unless the viewer may see them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub account_id: Uuid,
    pub room_id: Option<Uuid>,
    pub custom_id: Option<String>,
    pub username: Option<String>,
    pub name: Option<String>,
    pub nickname: Option<String>,
    pub bio: Option<String>,
    #[serde(skip_serializing_if = "Hidden::is_hidden")]
    #[schema(value_type = Option<String>)]
    pub email: Hidden<String>,
    pub email_verified: bool,
    #[serde(skip_serializing_if = "Hidden::is_hidden")]
    #[schema(value_type = Option<String>)]
    pub phone: Hidden<String>,
    pub profile_picture: Option<String>,
    pub link: Option<String>,
    pub status: Status,
    pub status_message: Option<String>,
    pub active: bool,
    pub roles: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub tags: Vec<String>,
    #[schema(value_type = Object)]
    pub custom_fields: Map<String, Value>,
    pub require_password_change: bool,
    pub has_password: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deactivated_at: Option<String>,
}

/// A value shown (possibly null) or withheld from the answer entirely.
#[derive(Debug, Clone)]
pub enum Hidden<T> {
    Shown(Option<T>),
    Withheld,
}

impl<T> Hidden<T> {
    pub fn is_hidden(&self) -> bool {
        matches!(self, Hidden::Withheld)
    }
}

impl<T: Serialize> Serialize for Hidden<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Hidden::Shown(v) => v.serialize(s),
            Hidden::Withheld => s.serialize_none(),
        }
    }
}

/// What a viewer may see of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// API keys and holders of `view-other-user-info`: everything.
    Full,
    /// The user themself: email and phone, not `@private` metadata.
    Own,
    /// Anyone else in the account.
    Public,
}

/// Narrows a user as an event's `data` records them (everything; see
/// `store::user_data`) to what `who` may see, as [`User::view`] does:
/// `Own` loses `@private` metadata and private custom fields, `Public` the
/// email and phone as well.
pub fn redact_user_data(data: &mut Value, settings: &Settings, who: Visibility) {
    let Some(obj) = data.as_object_mut() else {
        return;
    };
    if who == Visibility::Full {
        return;
    }
    if let Some(Value::Object(m)) = obj.get_mut("metadata") {
        m.remove("@private");
    }
    if let Some(Value::Object(fields)) = obj.get("custom_fields") {
        let public = settings.public_custom_fields(fields);
        obj.insert("custom_fields".into(), Value::Object(public));
    }
    if who == Visibility::Public {
        obj.remove("email");
        obj.remove("phone");
    }
}

impl User {
    pub fn view(&self, settings: &Settings, who: Visibility) -> UserView {
        let show_contact = who != Visibility::Public;
        let full = who == Visibility::Full;
        let mut metadata = self.metadata.clone();
        if !full {
            metadata.remove("@private");
        }
        let custom_fields = if full {
            self.custom_fields.clone()
        } else {
            settings.public_custom_fields(&self.custom_fields)
        };
        let shown = |v: &Option<String>| {
            if show_contact {
                Hidden::Shown(v.clone())
            } else {
                Hidden::Withheld
            }
        };
        UserView {
            id: self.id,
            account_id: self.account_id,
            room_id: self.room_id,
            custom_id: self.custom_id.clone(),
            username: self.username.clone(),
            name: self.name.clone(),
            nickname: self.nickname.clone(),
            bio: self.bio.clone(),
            email: shown(&self.email),
            email_verified: self.email_verified,
            phone: shown(&self.phone),
            profile_picture: self.profile_picture.clone(),
            link: self.link.clone(),
            status: self.status,
            status_message: self.status_message.clone(),
            active: self.active,
            roles: self.roles.clone(),
            metadata,
            tags: self.tags.clone(),
            custom_fields,
            require_password_change: self.require_password_change,
            has_password: self.has_password,
            created_at: super::time::format(self.created_at),
            updated_at: super::time::format(self.updated_at),
            last_seen_at: self.last_seen_at.map(super::time::format),
            deactivated_at: self.deactivated_at.map(super::time::format),
        }
    }
}

/// `POST /users` as sent: the union of the four vendors' fields.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    #[schema(schema_with = crate::domain::text::display_or_null_schema::<100>)]
    pub name: Option<String>,
    #[serde(alias = "roomId")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub room_id: Option<String>,
    #[serde(alias = "profilePicture", alias = "avatar")]
    #[schema(value_type = Option<String>, max_length = 3000, pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://(([A-Za-z0-9_-]+\.)*[A-Za-z][A-Za-z0-9_-]*)(:[0-9]{1,4})?([/?#][!-~]*)?$")]
    pub profile_picture: Option<String>,
    #[serde(alias = "customId", alias = "uid")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100, pattern = "^[A-Za-z0-9_-]+$")]
    pub custom_id: Option<String>,
    #[schema(value_type = Option<String>, max_length = 3000, pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://(([A-Za-z0-9_-]+\.)*[A-Za-z][A-Za-z0-9_-]*)(:[0-9]{1,4})?([/?#][!-~]*)?$")]
    pub link: Option<String>,
    /// CometChat's single role; the same as `roles: [role]`.
    pub role: Option<String>,
    #[schema(min_items = 1, max_items = 25)]
    pub roles: Option<Vec<String>>,
    #[serde(alias = "statusMessage", alias = "statusText", alias = "status_text")]
    #[schema(schema_with = crate::domain::text::free_or_null_schema::<140>)]
    pub status_message: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    #[schema(max_items = 25)]
    pub tags: Option<Vec<String>>,
    /// Accepted for CometChat clients; the answer always carries `token`.
    #[serde(alias = "withAuthToken")]
    pub with_auth_token: Option<bool>,
    #[schema(value_type = Option<String>, format = Email, max_length = 254)]
    pub email: Option<String>,
    pub password: Option<String>,
    #[schema(schema_with = crate::domain::text::display_or_null_schema::<100>)]
    pub username: Option<String>,
    pub active: Option<bool>,
    #[schema(schema_with = crate::domain::text::display_or_null_schema::<100>)]
    pub nickname: Option<String>,
    #[schema(schema_with = crate::domain::text::free_or_null_schema::<1000>)]
    pub bio: Option<String>,
    #[serde(alias = "joinDefaultChannels")]
    pub join_default_channels: Option<bool>,
    #[serde(alias = "requirePasswordChange")]
    pub require_password_change: Option<bool>,
    #[serde(alias = "setRandomPassword")]
    pub set_random_password: Option<bool>,
    #[serde(alias = "sendWelcomeEmail")]
    pub send_welcome_email: Option<bool>,
    pub verified: Option<bool>,
    #[serde(alias = "customFields")]
    #[schema(value_type = Option<Object>)]
    pub custom_fields: Option<Value>,
    #[schema(value_type = Option<String>, pattern = r"^\+[1-9][0-9]{0,14}$")]
    pub phone: Option<String>,
    /// LiveDigital sends it on createUser; only `POST /signup` verifies one.
    #[serde(alias = "captchaToken")]
    pub captcha_token: Option<String>,
}

/// `PATCH /users/{id}`: absent leaves a field alone, `null` clears it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::domain::text::display_or_null_schema::<100>)]
    pub name: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "profilePicture",
        alias = "avatar"
    )]
    #[schema(value_type = Option<String>, max_length = 3000, pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://(([A-Za-z0-9_-]+\.)*[A-Za-z][A-Za-z0-9_-]*)(:[0-9]{1,4})?([/?#][!-~]*)?$")]
    pub profile_picture: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "customId",
        alias = "uid"
    )]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100, pattern = "^[A-Za-z0-9_-]+$")]
    pub custom_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 3000, pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://(([A-Za-z0-9_-]+\.)*[A-Za-z][A-Za-z0-9_-]*)(:[0-9]{1,4})?([/?#][!-~]*)?$")]
    pub link: Option<Option<String>>,
    pub role: Option<String>,
    #[schema(min_items = 1, max_items = 25)]
    pub roles: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "statusMessage",
        alias = "statusText",
        alias = "status_text"
    )]
    #[schema(schema_with = crate::domain::text::free_or_null_schema::<140>)]
    pub status_message: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    #[schema(max_items = 25)]
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = Email, max_length = 254)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::domain::text::display_or_null_schema::<100>)]
    pub username: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::domain::text::display_or_null_schema::<100>)]
    pub nickname: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::domain::text::free_or_null_schema::<1000>)]
    pub bio: Option<Option<String>>,
    #[serde(alias = "requirePasswordChange")]
    pub require_password_change: Option<bool>,
    pub verified: Option<bool>,
    #[serde(alias = "customFields")]
    #[schema(value_type = Option<Object>)]
    pub custom_fields: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^\+[1-9][0-9]{0,14}$")]
    pub phone: Option<Option<String>>,
    /// Sets another user's password (needs `edit-other-user-password`, and
    /// every permission the user holds); ends the user's login sessions.
    /// Write-only. A user changes their own at `POST /auth/password`.
    #[schema(write_only, min_length = 8, max_length = 128)]
    pub password: Option<String>,
}

/// Distinguishes a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// A valid new user, ready to store. The password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: Uuid,
    pub room_id: Option<Uuid>,
    pub custom_id: Option<String>,
    pub username: Option<String>,
    pub name: Option<String>,
    pub nickname: Option<String>,
    pub bio: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone: Option<String>,
    pub profile_picture: Option<String>,
    pub link: Option<String>,
    pub status_message: Option<String>,
    pub active: bool,
    pub roles: Vec<String>,
    pub metadata: Map<String, Value>,
    pub tags: Vec<String>,
    pub custom_fields: Map<String, Value>,
    pub require_password_change: bool,
    pub password_hash: Option<String>,
    pub join_default_rooms: bool,
}

/// A parsed create request whose password (if any) still has to be hashed.
#[derive(Debug)]
pub struct ParsedCreate {
    pub user: NewUser,
    pub password: PasswordSource,
    pub send_welcome_email: bool,
}

#[derive(Debug)]
pub enum PasswordSource {
    None,
    Given(Password),
    Random,
}

/// A valid change to a user; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub custom_id: Option<Option<String>>,
    pub username: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub nickname: Option<Option<String>>,
    pub bio: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub phone: Option<Option<String>>,
    pub profile_picture: Option<Option<String>>,
    pub link: Option<Option<String>>,
    pub status_message: Option<Option<String>>,
    pub roles: Option<Vec<String>>,
    pub metadata: Option<Map<String, Value>>,
    pub tags: Option<Vec<String>>,
    pub custom_fields: Option<Map<String, Value>>,
    pub require_password_change: Option<bool>,
    /// The hash of a new password, set by the use case once it has checked
    /// who may set it and hashed it.
    pub password_hash: Option<String>,
    /// Deactivate (`false`) or reactivate the user in the same transaction,
    /// set by the use case (SCIM's `active`); never read from a body.
    pub active: Option<bool>,
}

impl UserPatch {
    pub fn is_empty(&self) -> bool {
        self.active.is_none() && !self.changes_fields()
    }

    /// Does it change any field beside `active`?
    pub fn changes_fields(&self) -> bool {
        !(self.custom_id.is_none()
            && self.username.is_none()
            && self.name.is_none()
            && self.nickname.is_none()
            && self.bio.is_none()
            && self.email.is_none()
            && self.email_verified.is_none()
            && self.phone.is_none()
            && self.profile_picture.is_none()
            && self.link.is_none()
            && self.status_message.is_none()
            && self.roles.is_none()
            && self.metadata.is_none()
            && self.tags.is_none()
            && self.custom_fields.is_none()
            && self.require_password_change.is_none()
            && self.password_hash.is_none())
    }
}

impl UserPatch {
    /// The first field set that names who the user is or how they are
    /// reached or logged in as (login names, contact details, their
    /// verification, roles). Changing these on someone else is a takeover
    /// path, so only a caller holding everything the user holds may.
    pub fn identity_field(&self) -> Option<&'static str> {
        [
            ("username", self.username.is_some()),
            ("email", self.email.is_some()),
            ("verified", self.email_verified.is_some()),
            ("phone", self.phone.is_some()),
            ("custom_id", self.custom_id.is_some()),
            ("roles", self.roles.is_some()),
        ]
        .into_iter()
        .find_map(|(field, set)| set.then_some(field))
    }

    /// Settles the address change against the stored user: a new address
    /// is unverified unless the patch says otherwise. Returns whether the
    /// address changes.
    pub fn settle_email(&mut self, current: &User) -> bool {
        let Some(new) = &self.email else {
            return false;
        };
        let changes =
            new.as_deref().map(normalize_email) != current.email.as_deref().map(normalize_email);
        if changes && self.email_verified.is_none() {
            self.email_verified = Some(false);
        }
        changes
    }
}

/// How long after an address change no password reset is mailed to it.
pub const RESET_HOLD_AFTER_EMAIL_CHANGE: time::Duration = time::Duration::hours(1);

/// Whether a password reset link may be mailed to `user`'s address at
/// `now`: not within an hour of the address changing, so that whoever
/// changed it cannot at once reset the password through it.
pub fn reset_may_mail(email_changed_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    email_changed_at.is_none_or(|at| now - at >= RESET_HOLD_AFTER_EMAIL_CHANGE)
}

/// A plaintext password that met the policy. Never logged.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// 8–128 characters, any Unicode, not all whitespace.
    pub fn parse(field: &str, s: String) -> Result<Self, ValidationError> {
        let n = s.chars().count();
        if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
            return Err(ValidationError::new(
                field,
                format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters (got {n})"),
            ));
        }
        if s.chars().all(char::is_whitespace) {
            return Err(ValidationError::new(field, "must not be only whitespace"));
        }
        Ok(Self(s))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// `[A-Za-z0-9_-]{1,100}`: CometChat's uid alphabet.
pub fn custom_id(s: &str) -> Result<String, ValidationError> {
    let field = "custom_id";
    if s.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    text::check_len(field, s, MAX_CUSTOM_ID)?;
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ValidationError::new(
            field,
            "may contain only letters A-Z a-z, digits, '_' and '-'",
        ));
    }
    Ok(s.to_owned())
}

/// A login name: any script, `@` allowed (identity providers' login names
/// are addresses: Entra's UPN, Okta's login), no leading or trailing
/// whitespace. Unique case-insensitively.
/// A username, in its stored form: PRECIS UsernameCasePreserved (RFC 8265:
/// fullwidth and halfwidth forms mapped to their plain ones, NFC; letters,
/// digits and ASCII punctuation — no symbols, no compatibility look-alikes
/// such as mathematical bold, nothing invisible), applied to each part
/// between single spaces as RFC 8265 §3.5 allows, so that `Some Username`
/// stays a username. Case is kept for display; [`normalize_username`] is
/// what is unique.
pub fn username(s: &str) -> Result<String, ValidationError> {
    let field = "username";
    let s = text::display_text(field, s, MAX_USERNAME)?;
    if s.trim() != s {
        return Err(ValidationError::new(
            field,
            "must not begin or end with whitespace",
        ));
    }
    let stored = userparts(&s, &precis_profiles::UsernameCasePreserved::new()).map_err(|e| {
        use precis_profiles::precis_core::Error;
        ValidationError::new(
            field,
            match e {
                Error::BadCodepoint(info) => format!(
                    "must be letters, digits, ASCII punctuation and single spaces (U+{:04X} is none of them)",
                    info.cp
                ),
                Error::Invalid => {
                    "mixes right-to-left and left-to-right text in a way that displays misleadingly".to_owned()
                }
                Error::Unexpected(_) => "is not a username this server accepts".to_owned(),
            },
        )
    })?;
    text::check_len(field, &stored, MAX_USERNAME)?;
    Ok(stored)
}

/// A PRECIS username profile applied to each single-space-separated part.
fn userparts(
    s: &str,
    profile: &impl precis_profiles::precis_core::profile::Profile,
) -> Result<String, precis_profiles::precis_core::Error> {
    let parts: Result<Vec<_>, _> = s.split(' ').map(|part| profile.enforce(part)).collect();
    Ok(parts?.join(" "))
}

/// What makes a username unique (case-insensitively): PRECIS
/// UsernameCaseMapped of each part — width-mapped, lowercased, NFC — so
/// `ＡＬＩＣＥ`, `Alice` and `alice` are one name, and `josé` is one name
/// however its accent is encoded. A login name that is no valid username
/// (one stored before these rules) falls back to plain lowercasing.
pub fn normalize_username(s: &str) -> String {
    userparts(s, &precis_profiles::UsernameCaseMapped::new()).unwrap_or_else(|_| s.to_lowercase())
}

/// The TR39 confusable skeleton of a username (of its normalized form):
/// look-alikes across scripts (`alice`, `аlice` with a Cyrillic а) share
/// it, and an account holds one username per skeleton.
pub fn username_skeleton(s: &str) -> String {
    unicode_security::skeleton(&normalize_username(s)).collect()
}

pub fn email(s: &str) -> Result<String, ValidationError> {
    let field = "email";
    text::check_len(field, s, MAX_EMAIL)?;
    text::check_safe(field, s)?;
    let parsed: email_address::EmailAddress = s
        .parse()
        .map_err(|e| ValidationError::new(field, format!("must be an email address ({e})")))?;
    if !parsed.domain().contains('.') && parsed.domain() != "localhost" {
        return Err(ValidationError::new(
            field,
            "must be an email address with a full domain",
        ));
    }
    Ok(s.to_owned())
}

pub fn normalize_email(s: &str) -> String {
    s.to_lowercase()
}

/// An E.164 number (`+` and up to 15 digits) that is a valid number for its
/// country code.
pub fn phone(s: &str) -> Result<String, ValidationError> {
    let field = "phone";
    let digits = s.strip_prefix('+').unwrap_or("");
    if digits.is_empty()
        || digits.len() > 15
        || !digits.chars().all(|c| c.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(ValidationError::new(
            field,
            "must be an E.164 number: '+' then up to 15 digits, e.g. +79671234567",
        ));
    }
    let number = phonenumber::parse(None, s)
        .map_err(|_| ValidationError::new(field, "is not a phone number"))?;
    if !phonenumber::is_valid(&number) {
        return Err(ValidationError::new(
            field,
            "is not a valid number for its country code",
        ));
    }
    Ok(s.to_owned())
}

/// A JSON object of at most 5 KB once serialized; `@private`, if present,
/// must itself be an object.
pub fn metadata(v: Value) -> Result<Map<String, Value>, ValidationError> {
    let field = "metadata";
    let Value::Object(map) = v else {
        return Err(ValidationError::new(field, "must be a JSON object"));
    };
    text::check_json_strings(field, &Value::Object(map.clone()))?;
    let size = serde_json::to_vec(&map)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_METADATA_BYTES} bytes as JSON (got {size})"),
        ));
    }
    if let Some(p) = map.get("@private")
        && !p.is_object()
    {
        return Err(ValidationError::new(
            "metadata.@private",
            "must be a JSON object",
        ));
    }
    Ok(map)
}

/// At most 25 tags of 1–100 characters; duplicates are dropped, order kept.
pub fn tags(v: Vec<String>) -> Result<Vec<String>, ValidationError> {
    if v.len() > MAX_TAGS {
        return Err(ValidationError::new(
            "tags",
            format!("at most {MAX_TAGS} tags (got {})", v.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for (i, t) in v.into_iter().enumerate() {
        let t = text::display_text(&format!("tags[{i}]"), &t, MAX_TAG)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// Role ids: 1–25 of them, each a built-in role name or a custom role's id.
/// Whether a custom id names a role of the account is the store's to check
/// (an id naming nothing is `NOT_FOUND`).
pub fn roles(v: Vec<String>) -> Result<Vec<String>, DomainError> {
    if v.is_empty() {
        return Err(ValidationError::new("roles", "must name at least one role").into());
    }
    if v.len() > MAX_ROLES {
        return Err(ValidationError::new("roles", format!("at most {MAX_ROLES} roles")).into());
    }
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for r in v {
        if !BUILTIN_ROLES.contains(&r.as_str()) && Uuid::try_parse(&r).is_err() {
            return Err(DomainError::NotFound {
                message: format!(
                    "role {:?} not found",
                    r.chars().take(64).collect::<String>()
                ),
                field: Some("roles".into()),
            });
        }
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

fn custom_fields(
    settings: &Settings,
    v: Value,
    creating: bool,
) -> Result<Map<String, Value>, ValidationError> {
    let Value::Object(map) = v else {
        return Err(ValidationError::new(
            "custom_fields",
            "must be a JSON object",
        ));
    };
    text::check_json_strings("custom_fields", &Value::Object(map.clone()))?;
    settings.check_custom_fields(&map, creating)?;
    Ok(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
}

fn opt<T>(
    v: Option<String>,
    f: impl FnOnce(&str) -> Result<T, ValidationError>,
) -> Result<Option<T>, ValidationError> {
    v.as_deref().map(f).transpose()
}

fn opt2<T>(
    v: Option<Option<String>>,
    f: impl FnOnce(&str) -> Result<T, ValidationError>,
) -> Result<Option<Option<T>>, ValidationError> {
    match v {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(s)) => Ok(Some(Some(f(&s)?))),
    }
}

fn one_of_role_or_roles(
    role: Option<String>,
    roles: Option<Vec<String>>,
) -> Result<Option<Vec<String>>, DomainError> {
    match (role, roles) {
        (Some(_), Some(_)) => {
            Err(ValidationError::new("role", "send either role or roles, not both").into())
        }
        (Some(r), None) => Ok(Some(self::roles(vec![r])?)),
        (None, Some(rs)) => Ok(Some(self::roles(rs)?)),
        (None, None) => Ok(None),
    }
}

impl CreateUserRequest {
    /// Checks every field against its limits. Existence of `room_id` and
    /// uniqueness are the store's to check.
    pub fn parse(self, settings: &Settings) -> Result<ParsedCreate, DomainError> {
        let room_id = match self.room_id {
            None => None,
            Some(s) => Some(
                Uuid::parse_str(&s).map_err(|_| DomainError::not_found_field("room", "room_id"))?,
            ),
        };
        let roles =
            one_of_role_or_roles(self.role, self.roles)?.unwrap_or_else(|| vec!["user".into()]);
        let password = match (self.password, self.set_random_password.unwrap_or(false)) {
            (Some(_), true) => {
                return Err(ValidationError::new(
                    "set_random_password",
                    "cannot be combined with password",
                )
                .into());
            }
            (Some(p), false) => PasswordSource::Given(Password::parse("password", p)?),
            (None, true) => PasswordSource::Random,
            (None, false) => PasswordSource::None,
        };
        if let Some(c) = &self.captcha_token {
            text::free_text("captcha_token", c, 4096)?;
        }
        let username = opt(self.username, username)?;
        let email = opt(self.email, email)?;
        let name = match opt(self.name, |s| text::display_text("name", s, MAX_NAME))? {
            Some(name) => Some(name),
            // Every vendor requires a name. A username stands in for it; an
            // address does not (it is private, a name is not), but the user
            // is then still someone the account can reach.
            None if username.is_some() => username.clone(),
            None if email.is_some() => None,
            None => {
                return Err(ValidationError::new(
                    "name",
                    "is required unless a username or an email is given",
                )
                .into());
            }
        };
        let user = NewUser {
            id: Uuid::now_v7(),
            room_id,
            custom_id: opt(self.custom_id, custom_id)?,
            username,
            name,
            nickname: opt(self.nickname, |s| {
                text::display_text("nickname", s, MAX_NICKNAME)
            })?,
            bio: opt(self.bio, |s| text::free_text("bio", s, MAX_BIO))?,
            email,
            email_verified: self.verified.unwrap_or(false),
            phone: opt(self.phone, phone)?,
            profile_picture: opt(self.profile_picture, |s| {
                text::http_url("profile_picture", s)
            })?,
            link: opt(self.link, |s| text::http_url("link", s))?,
            status_message: opt(self.status_message, |s| {
                text::free_text("status_message", s, MAX_STATUS_MESSAGE)
            })?,
            active: self.active.unwrap_or(true),
            roles,
            metadata: self.metadata.map(metadata).transpose()?.unwrap_or_default(),
            tags: self.tags.map(tags).transpose()?.unwrap_or_default(),
            custom_fields: custom_fields(
                settings,
                self.custom_fields.unwrap_or(Value::Object(Map::new())),
                true,
            )?,
            require_password_change: self.require_password_change.unwrap_or(false),
            password_hash: None,
            join_default_rooms: self.join_default_channels.unwrap_or(true),
        };
        Ok(ParsedCreate {
            user,
            password,
            send_welcome_email: self.send_welcome_email.unwrap_or(false),
        })
    }
}

impl UpdateUserRequest {
    /// Does it name any field to change?
    pub fn changes_any(&self) -> bool {
        let Self {
            name,
            profile_picture,
            custom_id,
            link,
            role,
            roles,
            status_message,
            metadata,
            tags,
            email,
            username,
            nickname,
            bio,
            require_password_change,
            verified,
            custom_fields,
            phone,
            password,
        } = self;
        name.is_some()
            || profile_picture.is_some()
            || custom_id.is_some()
            || link.is_some()
            || role.is_some()
            || roles.is_some()
            || status_message.is_some()
            || metadata.is_some()
            || tags.is_some()
            || email.is_some()
            || username.is_some()
            || nickname.is_some()
            || bio.is_some()
            || require_password_change.is_some()
            || verified.is_some()
            || custom_fields.is_some()
            || phone.is_some()
            || password.is_some()
    }

    /// The valid change, and the new password (still to be hashed) if one
    /// is set.
    pub fn parse(self, settings: &Settings) -> Result<(UserPatch, Option<Password>), DomainError> {
        let password = self
            .password
            .map(|p| Password::parse("password", p))
            .transpose()?;
        let patch = UserPatch {
            custom_id: opt2(self.custom_id, custom_id)?,
            username: opt2(self.username, username)?,
            name: opt2(self.name, |s| text::display_text("name", s, MAX_NAME))?,
            nickname: opt2(self.nickname, |s| {
                text::display_text("nickname", s, MAX_NICKNAME)
            })?,
            bio: opt2(self.bio, |s| text::free_text("bio", s, MAX_BIO))?,
            email: opt2(self.email, email)?,
            email_verified: self.verified,
            phone: opt2(self.phone, phone)?,
            profile_picture: opt2(self.profile_picture, |s| {
                text::http_url("profile_picture", s)
            })?,
            link: opt2(self.link, |s| text::http_url("link", s))?,
            status_message: opt2(self.status_message, |s| {
                text::free_text("status_message", s, MAX_STATUS_MESSAGE)
            })?,
            roles: one_of_role_or_roles(self.role, self.roles)?,
            metadata: self.metadata.map(metadata).transpose()?,
            tags: self.tags.map(tags).transpose()?,
            custom_fields: self
                .custom_fields
                .map(|v| custom_fields(settings, v, false))
                .transpose()?,
            require_password_change: self.require_password_change,
            password_hash: None,
            active: None,
        };
        Ok((patch, password))
    }
}

/// Filters of `GET /users`.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub room_id: Option<Uuid>,
    pub status: Option<Status>,
    pub role: Option<String>,
    pub tag: Option<String>,
    /// Case-insensitive substring of name, username, custom_id or email.
    pub q: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_ids_take_cometchat_alphabet_up_to_100() {
        assert!(custom_id(&"a".repeat(100)).is_ok());
        assert!(custom_id(&"a".repeat(101)).is_err());
        assert!(custom_id("alice-001_X").is_ok());
        for bad in ["", "a b", "a.b", "é", "a/b"] {
            assert!(custom_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_are_8_to_128_characters_not_blank() {
        assert!(Password::parse("password", "1234567".into()).is_err());
        assert!(Password::parse("password", "12345678".into()).is_ok());
        assert!(Password::parse("password", "ü".repeat(128)).is_ok());
        assert!(Password::parse("password", "ü".repeat(129)).is_err());
        assert!(Password::parse("password", " ".repeat(10)).is_err());
    }

    #[test]
    fn usernames_are_precis_mapped_and_look_alikes_share_a_skeleton() {
        assert_eq!(username("\u{ff2b}ate").unwrap(), "Kate");
        assert_eq!(username("jose\u{301}").unwrap(), "jos\u{e9}");
        assert_eq!(
            username("Some Username Here").unwrap(),
            "Some Username Here"
        );
        for bad in ["a  b", "\u{1d41a}b", "al\u{200b}ice", "\u{1f600}", " a"] {
            assert!(username(bad).is_err(), "{bad:?}");
        }
        assert_eq!(normalize_username("\u{ff21}LICE"), "alice");
        assert_eq!(
            normalize_username("Zo\u{cb}"),
            normalize_username("zoe\u{308}")
        );
        assert_eq!(username_skeleton("\u{430}lice"), username_skeleton("alice"));
        assert_ne!(username_skeleton("jos\u{e9}"), username_skeleton("jose"));
    }

    #[test]
    fn phones_are_e164() {
        assert!(phone("+79671234567").is_ok());
        assert!(phone("+14155552671").is_ok());
        for bad in [
            "79671234567",
            "+0123",
            "+1 415 555",
            "+1234567890123456",
            "+999999999",
        ] {
            assert!(phone(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metadata_is_capped_at_5kb() {
        let fits = serde_json::json!({"k": "x".repeat(MAX_METADATA_BYTES - 8)});
        assert_eq!(serde_json::to_vec(&fits).unwrap().len(), MAX_METADATA_BYTES);
        assert!(metadata(fits).is_ok());
        let over = serde_json::json!({"k": "x".repeat(MAX_METADATA_BYTES - 7)});
        assert!(metadata(over).is_err());
        assert!(metadata(serde_json::json!([1])).is_err());
    }

    #[test]
    fn a_reset_is_not_mailed_within_an_hour_of_an_address_change() {
        let now = crate::domain::time::now();
        assert!(reset_may_mail(None, now), "never changed");
        assert!(!reset_may_mail(
            Some(now - time::Duration::minutes(59)),
            now
        ));
        assert!(reset_may_mail(Some(now - time::Duration::minutes(60)), now));
    }

    #[test]
    fn usernames_take_at_signs_and_refuse_edges() {
        assert!(username("Some Username Here").is_ok());
        assert_eq!(username("Alice@Contoso.com").unwrap(), "Alice@Contoso.com");
        assert!(username(" a").is_err());
        assert!(username("a ").is_err());
    }
}
