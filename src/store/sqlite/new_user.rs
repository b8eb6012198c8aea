//! Creating a user, on the SQLite writer's raw handle (see [`super::writer`]):
//! the checks a new user needs (its custom roles and room exist, the bot
//! cap), its rows (user, tags, roles, memberships, first token) and, for
//! users created with mail, the verification and outbox rows — every
//! statement prepared once per commit group and run without a thread hop.
//!
//! Values are bound in sqlx's SQLite encodings, because everything else
//! reads these rows through sqlx: UUIDs as 16-byte blobs, times as RFC 3339
//! text, booleans as integers, JSON as text.

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::domain::event::Change;
use crate::domain::permission::BUILTIN_ROLES;
use crate::domain::room::MAX_ROOMS_PER_USER;
use crate::domain::user::{
    MAX_BOTS, NewUser, User, normalize_email, normalize_username, username_skeleton,
};
use crate::store::{Result, StoreError, TokenRecord, sessions};

/// Inserts every row of a new user; the user as stored.
pub(super) fn insert_user(
    c: &Connection,
    account: Uuid,
    u: &NewUser,
    token: &TokenRecord,
    change: &Change,
) -> Result<User> {
    let at = change.at;
    check(c, account, u)?;
    let now = text(at)?;
    c.prepare_cached(
        "INSERT INTO users (id, account_id, room_id, custom_id, username, username_norm, name, nickname, bio, \
         email, email_norm, email_verified, phone, profile_picture, link, status, status_message, active, roles, \
         metadata, tags, custom_fields, require_password_change, password_hash, tokens_valid_after, created_at, \
         updated_at, last_seen_at, deactivated_at, username_skeleton) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 'offline', ?16, ?17, ?18, ?19, \
         ?20, ?21, ?22, ?23, NULL, ?24, ?24, NULL, ?25, ?26)",
    )
    .and_then(|mut s| {
        s.execute(params![
            blob(&u.id),
            blob(&account),
            u.room_id.as_ref().map(blob),
            u.custom_id,
            u.username,
            u.username.as_deref().map(normalize_username),
            u.name,
            u.nickname,
            u.bio,
            u.email,
            u.email.as_deref().map(normalize_email),
            u.email_verified,
            u.phone,
            u.profile_picture,
            u.link,
            u.status_message,
            u.active,
            json(&u.roles),
            json(&u.metadata),
            json(&u.tags),
            json(&u.custom_fields),
            u.require_password_change,
            u.password_hash,
            now,
            (!u.active).then_some(&now),
            u.username.as_deref().map(username_skeleton),
        ])
    })
    .map_err(map_err)?;
    for (sql, values) in [
        (
            "INSERT INTO user_tags (account_id, tag, user_id) VALUES (?1, ?2, ?3)",
            &u.tags,
        ),
        (
            "INSERT INTO user_roles (account_id, role, user_id) VALUES (?1, ?2, ?3)",
            &u.roles,
        ),
    ] {
        let mut s = c.prepare_cached(sql).map_err(map_err)?;
        for v in values {
            s.execute(params![blob(&account), v, blob(&u.id)])
                .map_err(map_err)?;
        }
    }
    if let Some(room) = &u.room_id {
        c.prepare_cached(
            "INSERT INTO room_members (account_id, room_id, user_id, role, joined_at) VALUES (?1, ?2, ?3, 'user', ?4)",
        )
        .and_then(|mut s| s.execute(params![blob(&account), blob(room), blob(&u.id), now]))
        .map_err(map_err)?;
    }
    if u.join_default_rooms {
        let joined = c
            .prepare_cached(
                "INSERT INTO room_members (account_id, room_id, user_id, role, joined_at) \
                 SELECT account_id, id, ?1, 'user', ?2 FROM rooms WHERE account_id = ?3 AND is_default = 1 \
                 ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![blob(&u.id), now, blob(&account)]))
            .map_err(map_err)?;
        if joined as i64 + i64::from(u.room_id.is_some()) > MAX_ROOMS_PER_USER {
            return Err(crate::store::room_cap_reached());
        }
    }
    c.prepare_cached(
        "INSERT INTO tokens (id, account_id, user_id, kind, room_id, created_at, expires_at, revoked_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
    )
    .and_then(|mut s| {
        s.execute(params![
            blob(&token.id),
            blob(&account),
            blob(&token.user_id),
            token.kind,
            token.room_id.as_ref().map(blob),
            text(token.created_at).map_err(to_sql_error)?,
            text(token.expires_at).map_err(to_sql_error)?,
        ])
    })
    .map_err(map_err)?;
    let created = crate::store::inserted_user(account, u, at);
    c.prepare_cached(
        "INSERT INTO events (id, account_id, type, actor_kind, actor_id, subject_kind, subject_id, data, at, request_id, surface) \
         VALUES (?1, ?2, 'user.created', ?3, ?4, 'user', ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            blob(&Uuid::now_v7()),
            blob(&account),
            change.actor.kind,
            change.actor.id.as_ref().map(blob),
            u.id.to_string(),
            json(&crate::store::user_data(&created)),
            now,
            change.request_id,
            change.surface,
        ])
    })
    .map_err(map_err)?;
    Ok(created)
}

/// The rows that go with a user created with mail: the address to verify
/// and the messages to send.
pub(super) fn insert_mail(
    c: &Connection,
    account: Uuid,
    u: &NewUser,
    at: OffsetDateTime,
    mail: &sessions::UserMail,
) -> Result<()> {
    if let (Some((hash, expires_at)), Some(email)) = (&mail.verification, &u.email) {
        c.prepare_cached(
            "INSERT INTO email_verifications (hash, account_id, user_id, email, created_at, expires_at, used_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
        )
        .and_then(|mut s| {
            s.execute(params![
                hash,
                blob(&account),
                blob(&u.id),
                email,
                text(at).map_err(to_sql_error)?,
                text(*expires_at).map_err(to_sql_error)?,
            ])
        })
        .map_err(map_err)?;
    }
    for m in &mail.mails {
        let created = text(m.created_at)?;
        c.prepare_cached(
            "INSERT INTO outbox (id, account_id, to_addr, subject, body, created_at, attempts, next_attempt_at, \
             claimed_until, sent_at, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?6, NULL, NULL, NULL)",
        )
        .and_then(|mut s| {
            s.execute(params![
                blob(&m.id),
                m.account_id.as_ref().map(blob),
                m.to,
                m.subject,
                m.body,
                created
            ])
        })
        .map_err(map_err)?;
    }
    Ok(())
}

/// The reads a new user needs first: custom roles and the room exist, and
/// a new bot fits under the cap.
fn check(c: &Connection, account: Uuid, u: &NewUser) -> Result<()> {
    for r in u
        .roles
        .iter()
        .filter(|r| !BUILTIN_ROLES.contains(&r.as_str()))
    {
        let id = Uuid::try_parse(r).map_err(|_| StoreError::NotFound("role"))?;
        exists(
            c,
            "SELECT 1 FROM roles WHERE account_id = ?1 AND id = ?2",
            account,
            id,
            "role",
        )?;
    }
    if let Some(room) = u.room_id {
        exists(
            c,
            "SELECT 1 FROM rooms WHERE account_id = ?1 AND id = ?2",
            account,
            room,
            "room",
        )?;
    }
    if u.roles.iter().any(|r| r == "bot") {
        let bots: i64 = c
            .prepare_cached(
                "SELECT COUNT(*) FROM user_roles WHERE account_id = ?1 AND role = 'bot'",
            )
            .and_then(|mut s| s.query_row(params![blob(&account)], |r| r.get(0)))
            .map_err(map_err)?;
        if bots >= MAX_BOTS {
            return Err(crate::store::bot_cap_reached());
        }
    }
    Ok(())
}

fn exists(
    c: &Connection,
    sql: &'static str,
    account: Uuid,
    id: Uuid,
    what: &'static str,
) -> Result<()> {
    c.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_row(params![blob(&account), blob(&id)], |_| Ok(()))
                .optional()
        })
        .map_err(map_err)?
        .ok_or(StoreError::NotFound(what))
}

/// A UUID as sqlx stores it in SQLite: its 16 bytes.
fn blob(id: &Uuid) -> &[u8] {
    id.as_bytes()
}

/// A time as sqlx stores it in SQLite: RFC 3339 text.
fn text(at: OffsetDateTime) -> Result<String> {
    at.format(&Rfc3339)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("formatting a time: {e}")))
}

fn to_sql_error(e: StoreError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.to_string().into())
}

/// The store's vocabulary for a failed statement, naming the unique index
/// that refused a write — as [`super::map_err`] does for sqlx.
fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, message)
            if f.code == ErrorCode::ConstraintViolation
                && matches!(
                    f.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
        {
            crate::store::unique_conflict(message.as_deref().unwrap_or_default())
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::CannotOpen
            ) =>
        {
            StoreError::Unavailable(e.into())
        }
        _ => StoreError::Other(e.into()),
    }
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}
