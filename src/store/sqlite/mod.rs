//! The embedded backend: one SQLite file in WAL mode.
//!
//! Writes go through one writer ([`writer`]) that owns the only writing
//! connection and commits in groups, answering each caller only once its
//! group is durable: a 2xx is always a committed row, while the cost of the
//! commit (an fsync with `synchronous=FULL`) is shared by the whole group.
//! Reads use a small pool of read-only connections, which WAL lets run
//! beside the writer. [`new_user`] writes a new user's rows on the writer's
//! raw handle, the hottest write of all.

mod new_user;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    INVITE_COLUMNS, LINK_COLUMNS, NewApiKey, Page, Paged, ROLE_COLUMNS, Result, SPACE_COLUMNS,
    SigningKeyRecord, Store, StoreError, TokenCheck, TokenRecord, USER_COLUMNS, invite_from_row,
    link_from_row, member_from_row, role_from_row, sessions, space_from_row, user_from_row,
};
use crate::domain::access::{AccessLink, Invite, Member, Role, RoomRole, Space, SpaceRole};
use crate::domain::account::{Account, ApiKey, ApiKeyAuth, Scope};
use crate::domain::event::{Change, Event};
use crate::domain::permission::{BUILTIN_ROLES, Permission};
use crate::domain::room::{MAX_ROOMS_PER_USER, NewRoom, Room, RoomPatch, Visibility};
use crate::domain::settings::{CustomFieldDef, Settings};
use crate::domain::user::{
    MAX_BOTS, NewUser, Status, User, UserFilter, UserPatch, normalize_email, normalize_username,
};

pub struct SqliteStore {
    jobs: mpsc::Sender<writer::Job>,
    read: SqlitePool,
}

pub fn migrator() -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    Migrator::with_migrations(
        [
            (
                1,
                "init",
                include_str!("../../../migrations/sqlite/0001_init.sql"),
            ),
            (
                2,
                "access",
                include_str!("../../../migrations/sqlite/0002_access.sql"),
            ),
            (
                3,
                "sessions",
                include_str!("../../../migrations/sqlite/0003_sessions.sql"),
            ),
            (
                5,
                "email_changed",
                include_str!("../../../migrations/sqlite/0005_email_changed.sql"),
            ),
            (
                6,
                "events",
                include_str!("../../../migrations/sqlite/0006_events.sql"),
            ),
        ]
        .into_iter()
        .map(|(v, name, sql)| {
            Migration::new(
                v,
                name.into(),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect(),
    )
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url`.
    /// `full_sync` selects `synchronous=FULL` (survives power loss) over
    /// `NORMAL` (survives a process crash).
    pub async fn open(url: &str, full_sync: bool) -> anyhow::Result<Self> {
        let base = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = Path::new(base.get_filename()).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let write_opts = base
            .clone()
            .create_if_missing(true)
            .synchronous(if full_sync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            });
        let mut conn = SqliteConnection::connect_with(&write_opts).await?;
        migrator().run(&mut conn).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(base.read_only(true))
            .await?;
        let jobs = writer::spawn(conn)?;
        Ok(Self { jobs, read })
    }
}

/// Maps a database error to the store's vocabulary, naming the unique
/// index that refused a write.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => super::unique_conflict(&format!(
            "{} {}",
            db.message(),
            db.constraint().unwrap_or("")
        )),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.into())
        }
        _ => StoreError::Other(e.into()),
    }
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn account_from_row(r: &SqliteRow) -> std::result::Result<Account, sqlx::Error> {
    Ok(Account {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
    })
}

fn room_from_row(r: &SqliteRow) -> std::result::Result<Room, sqlx::Error> {
    let visibility: String = r.try_get("visibility")?;
    Ok(Room {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        space_id: r.try_get("space_id")?,
        name: r.try_get("name")?,
        visibility: Visibility::parse(&visibility).unwrap_or(Visibility::Public),
        is_default: r.try_get("is_default")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn api_key_from_row(r: &SqliteRow) -> std::result::Result<ApiKey, sqlx::Error> {
    let scope: String = r.try_get("scope")?;
    Ok(ApiKey {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        scope: Scope::parse(&scope).unwrap_or(Scope::Read),
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
    })
}

const ROOM_COLUMNS: &str =
    "id, account_id, space_id, name, visibility, is_default, created_by, created_at, updated_at";

async fn select_user(conn: &mut SqliteConnection, account: Uuid, user: Uuid) -> Result<User> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE account_id = ? AND id = ?"
    )))
    .bind(account)
    .bind(user)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err)?
    .ok_or(StoreError::NotFound("user"))?;
    user_from_row(&row).map_err(map_err)
}

async fn check_bot_cap(
    conn: &mut SqliteConnection,
    account: Uuid,
    except: Option<Uuid>,
) -> Result<()> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_roles WHERE account_id = ? AND role = 'bot' AND user_id IS NOT ?",
    )
    .bind(account)
    .bind(except)
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err)?;
    if n >= MAX_BOTS {
        return Err(super::bot_cap_reached());
    }
    Ok(())
}

async fn replace_set(
    conn: &mut SqliteConnection,
    table: &'static str,
    column: &'static str,
    account: Uuid,
    user: Uuid,
    values: &[String],
) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE user_id = ?"
    )))
    .bind(user)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    for v in values {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (account_id, {column}, user_id) VALUES (?, ?, ?)"
        )))
        .bind(account)
        .bind(v)
        .bind(user)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    }
    Ok(())
}

async fn patch_user(
    conn: &mut SqliteConnection,
    account: Uuid,
    id: Uuid,
    p: &UserPatch,
    at: OffsetDateTime,
) -> Result<User> {
    let current = select_user(conn, account, id).await?;
    if let Some(roles) = &p.roles {
        check_roles(conn, account, roles).await?;
    }
    if let Some(roles) = &p.roles
        && roles.iter().any(|r| r == "bot")
        && !current.roles.iter().any(|r| r == "bot")
    {
        check_bot_cap(conn, account, Some(id)).await?;
    }
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE users SET updated_at = ");
    q.push_bind(at);
    macro_rules! set {
        ($col:literal, $v:expr) => {
            if let Some(v) = $v {
                q.push(concat!(", ", $col, " = "));
                q.push_bind(v);
            }
        };
    }
    set!("custom_id", p.custom_id.clone());
    if let Some(u) = &p.username {
        q.push(", username = ").push_bind(u.clone());
        q.push(", username_norm = ")
            .push_bind(u.as_deref().map(normalize_username));
    }
    set!("name", p.name.clone());
    set!("nickname", p.nickname.clone());
    set!("bio", p.bio.clone());
    if let Some(e) = &p.email {
        q.push(", email = ").push_bind(e.clone());
        q.push(", email_norm = ")
            .push_bind(e.as_deref().map(normalize_email));
        if e.as_deref().map(normalize_email) != current.email.as_deref().map(normalize_email) {
            q.push(", email_changed_at = ").push_bind(at);
        }
    }
    set!("email_verified", p.email_verified);
    set!("phone", p.phone.clone());
    set!("profile_picture", p.profile_picture.clone());
    set!("link", p.link.clone());
    set!("status_message", p.status_message.clone());
    set!("roles", p.roles.as_ref().map(json));
    set!("metadata", p.metadata.as_ref().map(json));
    set!("tags", p.tags.as_ref().map(json));
    if let Some(change) = &p.custom_fields {
        let merged = super::merged_custom_fields(&current.custom_fields, change);
        q.push(", custom_fields = ").push_bind(json(&merged));
    }
    set!("require_password_change", p.require_password_change);
    q.push(" WHERE account_id = ").push_bind(account);
    q.push(" AND id = ").push_bind(id);
    q.build().execute(&mut *conn).await.map_err(map_err)?;
    if let Some(tags) = &p.tags {
        replace_set(conn, "user_tags", "tag", account, id, tags).await?;
    }
    if let Some(roles) = &p.roles {
        replace_set(conn, "user_roles", "role", account, id, roles).await?;
    }
    select_user(conn, account, id).await
}

/// Appends one event per type of a user's change, each carrying the user
/// after it, in the writer's transaction.
async fn insert_user_events(
    c: &mut SqliteConnection,
    account: Uuid,
    change: &Change,
    kinds: &[&str],
    user: &User,
) -> Result<()> {
    for kind in kinds {
        insert_event(
            c,
            Some(account),
            change,
            kind,
            ("user", user.id.to_string()),
            &super::user_data(user),
        )
        .await?;
    }
    Ok(())
}

/// Appends one event to the log, in the writer's transaction.
async fn insert_event(
    c: &mut SqliteConnection,
    account: Option<Uuid>,
    change: &Change,
    kind: &str,
    subject: (&str, String),
    data: &serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (id, account_id, type, actor_kind, actor_id, subject_kind, subject_id, data, at, request_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(Uuid::now_v7())
    .bind(account)
    .bind(kind)
    .bind(change.actor.kind)
    .bind(change.actor.id)
    .bind(subject.0)
    .bind(subject.1)
    .bind(json(data))
    .bind(change.at)
    .bind(&change.request_id)
    .execute(&mut *c)
    .await
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn events_after(
        &self,
        account: Option<Uuid>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>> {
        // One writer: events commit in seq order, so every visible one is
        // settled.
        let rows: Vec<super::EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM events WHERE seq > ? AND (? IS NULL OR account_id = ?) ORDER BY seq LIMIT ?",
            super::EVENT_COLUMNS
        )))
        .bind(after)
        .bind(account)
        .bind(account)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        Ok(rows.into_iter().map(super::event_from_row).collect())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(map_err)?;
        self.write(|_| Box::pin(async { Ok(()) })).await
    }

    async fn get_state(&self, key: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM server_state WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(map_err)
    }

    async fn put_state_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query(
                    "INSERT INTO server_state (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(key)
                .bind(value)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                Ok(r.rows_affected() == 1)
            })
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query("SELECT kid, private_der, public_x, created_at, retired_at FROM signing_keys ORDER BY julianday(created_at)")
            .fetch_all(&self.read)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRecord {
                    kid: r.try_get("kid")?,
                    private_der: r.try_get("private_der")?,
                    public_x: r.try_get("public_x")?,
                    created_at: r.try_get("created_at")?,
                    retired_at: r.try_get("retired_at")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<()> {
        let key = key.clone();
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query("INSERT INTO signing_keys (kid, private_der, public_x, created_at, retired_at) VALUES (?, ?, ?, ?, ?)")
                    .bind(&key.kid)
                    .bind(&key.private_der)
                    .bind(&key.public_x)
                    .bind(key.created_at)
                    .bind(key.retired_at)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn create_account(&self, account: &Account, first_key: &NewApiKey) -> Result<()> {
        let (account, key) = (account.clone(), first_key.clone());
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO accounts (id, name, settings, created_at) VALUES (?, ?, ?, ?)",
                )
                .bind(account.id)
                .bind(&account.name)
                .bind(json(&Settings::default()))
                .bind(account.created_at)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                insert_api_key(c, account.id, &key).await
            })
        })
        .await
    }

    async fn list_accounts(&self, page: Page) -> Result<Paged<Account>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM accounts WHERE (? IS NULL OR id > ?) ORDER BY id LIMIT ?")
            .bind(page.after)
            .bind(page.after)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.read)
            .await
            .map_err(map_err)?;
        let items = rows
            .iter()
            .map(account_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged::from_rows(items, page.limit, |a: &Account| a.id))
    }

    async fn get_account(&self, account: Uuid) -> Result<Account> {
        let row = sqlx::query("SELECT id, name, created_at FROM accounts WHERE id = ?")
            .bind(account)
            .fetch_optional(&self.read)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound("account"))?;
        account_from_row(&row).map_err(map_err)
    }

    async fn get_settings(&self, account: Uuid) -> Result<Settings> {
        let s: String = sqlx::query_scalar("SELECT settings FROM accounts WHERE id = ?")
            .bind(account)
            .fetch_optional(&self.read)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound("account"))?;
        serde_json::from_str(&s).map_err(|e| StoreError::Other(e.into()))
    }

    async fn update_custom_fields(
        &self,
        account: Uuid,
        change: BTreeMap<String, Option<CustomFieldDef>>,
    ) -> Result<Settings> {
        self.write(move |c| {
            Box::pin(async move {
                let s: String = sqlx::query_scalar("SELECT settings FROM accounts WHERE id = ?")
                    .bind(account)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(map_err)?
                    .ok_or(StoreError::NotFound("account"))?;
                let mut settings: Settings =
                    serde_json::from_str(&s).map_err(|e| StoreError::Other(e.into()))?;
                settings.apply_custom_fields(change)?;
                sqlx::query("UPDATE accounts SET settings = ? WHERE id = ?")
                    .bind(json(&settings))
                    .bind(account)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                Ok(settings)
            })
        })
        .await
    }

    async fn create_api_key(&self, account: Uuid, key: &NewApiKey) -> Result<()> {
        let key = key.clone();
        self.write(move |c| Box::pin(async move { insert_api_key(c, account, &key).await }))
            .await
    }

    async fn list_api_keys(&self, account: Uuid, page: Page) -> Result<Paged<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, name, scope, created_at, last_used_at FROM api_keys \
             WHERE account_id = ? AND revoked_at IS NULL AND (? IS NULL OR id > ?) ORDER BY id LIMIT ?",
        )
        .bind(account)
        .bind(page.after)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        let items = rows
            .iter()
            .map(api_key_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged::from_rows(items, page.limit, |k: &ApiKey| k.id))
    }

    async fn revoke_api_key(&self, account: Uuid, key: Uuid, at: OffsetDateTime) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE account_id = ? AND id = ? AND revoked_at IS NULL")
                    .bind(at)
                    .bind(account)
                    .bind(key)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("api key"));
                }
                Ok(())
            })
        })
        .await
    }

    async fn api_key_for_auth(&self, key: Uuid) -> Result<Option<ApiKeyAuth>> {
        let row = sqlx::query("SELECT id, account_id, scope, secret_hash FROM api_keys WHERE id = ? AND revoked_at IS NULL")
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(map_err)?;
        row.map(|r| {
            let scope: String = r.try_get("scope")?;
            Ok(ApiKeyAuth {
                id: r.try_get("id")?,
                account_id: r.try_get("account_id")?,
                scope: Scope::parse(&scope).unwrap_or(Scope::Read),
                secret_hash: r.try_get("secret_hash")?,
            })
        })
        .transpose()
        .map_err(map_err)
    }

    async fn touch_api_key(&self, key: Uuid, at: OffsetDateTime) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                    .bind(at)
                    .bind(key)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn create_room(
        &self,
        account: Uuid,
        id: Uuid,
        room: &NewRoom,
        at: OffsetDateTime,
    ) -> Result<Room> {
        let room = room.clone();
        self.write(move |c| {
            Box::pin(async move {
                if let Some(space) = room.space_id {
                    exists(c, "SELECT 1 FROM spaces WHERE account_id = ? AND id = ?", account, space, "space").await?;
                }
                sqlx::query("INSERT INTO rooms (id, account_id, space_id, name, visibility, is_default, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
                    .bind(id)
                    .bind(account)
                    .bind(room.space_id)
                    .bind(&room.name)
                    .bind(room.visibility.as_str())
                    .bind(room.is_default)
                    .bind(room.created_by)
                    .bind(at)
                    .bind(at)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                if let Some(creator) = room.created_by {
                    // The creator (when a user of this account) moderates the room.
                    sqlx::query(
                        "INSERT INTO room_members (account_id, room_id, user_id, role, joined_at) \
                         SELECT ?, ?, id, 'moderator', ? FROM users WHERE account_id = ? AND id = ?",
                    )
                    .bind(account)
                    .bind(id)
                    .bind(at)
                    .bind(account)
                    .bind(creator)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                }
                Ok(Room {
                    id,
                    account_id: account,
                    space_id: room.space_id,
                    name: room.name,
                    visibility: room.visibility,
                    is_default: room.is_default,
                    created_by: room.created_by,
                    created_at: at,
                    updated_at: at,
                })
            })
        })
        .await
    }

    async fn list_rooms(
        &self,
        account: Uuid,
        visibility: Option<Visibility>,
        page: Page,
    ) -> Result<Paged<Room>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms WHERE account_id = ? AND (? IS NULL OR visibility = ?) \
             AND (? IS NULL OR id > ?) ORDER BY id LIMIT ?"
        )))
        .bind(account)
        .bind(visibility.map(Visibility::as_str))
        .bind(visibility.map(Visibility::as_str))
        .bind(page.after)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        let items = rows
            .iter()
            .map(room_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged::from_rows(items, page.limit, |r: &Room| r.id))
    }

    async fn get_room(&self, account: Uuid, room: Uuid) -> Result<Room> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms WHERE account_id = ? AND id = ?"
        )))
        .bind(account)
        .bind(room)
        .fetch_optional(&self.read)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("room"))?;
        room_from_row(&row).map_err(map_err)
    }

    async fn update_room(
        &self,
        account: Uuid,
        room: Uuid,
        patch: &RoomPatch,
        at: OffsetDateTime,
    ) -> Result<Room> {
        let patch = patch.clone();
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query(
                    "UPDATE rooms SET name = COALESCE(?, name), visibility = COALESCE(?, visibility), \
                     is_default = COALESCE(?, is_default), updated_at = ? WHERE account_id = ? AND id = ?",
                )
                .bind(&patch.name)
                .bind(patch.visibility.map(Visibility::as_str))
                .bind(patch.is_default)
                .bind(at)
                .bind(account)
                .bind(room)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("room"));
                }
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {ROOM_COLUMNS} FROM rooms WHERE account_id = ? AND id = ?"
                )))
                .bind(account)
                .bind(room)
                .fetch_one(&mut *c)
                .await
                .map_err(map_err)?;
                room_from_row(&row).map_err(map_err)
            })
        })
        .await
    }

    async fn delete_room(&self, account: Uuid, room: Uuid) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query("DELETE FROM rooms WHERE account_id = ? AND id = ?")
                    .bind(account)
                    .bind(room)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("room"));
                }
                Ok(())
            })
        })
        .await
    }

    async fn create_user(
        &self,
        account: Uuid,
        user: &NewUser,
        token: &TokenRecord,
        change: &Change,
    ) -> Result<User> {
        let (user, token, change) = (user.clone(), token.clone(), change.clone());
        self.write_raw(move |c| new_user::insert_user(c, account, &user, &token, &change))
            .await
    }

    async fn get_user(&self, account: Uuid, user: Uuid) -> Result<User> {
        let mut conn = self.read.acquire().await.map_err(map_err)?;
        select_user(&mut conn, account, user).await
    }

    async fn list_users(
        &self,
        account: Uuid,
        filter: &UserFilter,
        page: Page,
    ) -> Result<Paged<User>> {
        // A room, role or tag filter drives the query from its own table, in
        // that table's (account, value, user) index order, so that a page reads
        // about `limit` rows however rare the value is (SQLite reads the left side of a CROSS JOIN first);
        // without one, the users' primary key does.
        let driver = super::list_driver(filter);
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new(super::user_list_select(filter, driver, "CROSS JOIN"));
        q.push(" WHERE u.account_id = ").push_bind(account);
        if let Some(room) = filter.room_id {
            q.push(" AND m.account_id = ")
                .push_bind(account)
                .push(" AND m.room_id = ")
                .push_bind(room);
        }
        if let Some(role) = &filter.role {
            q.push(" AND r.account_id = ")
                .push_bind(account)
                .push(" AND r.role = ")
                .push_bind(role.clone());
        }
        if let Some(tag) = &filter.tag {
            q.push(" AND t.account_id = ")
                .push_bind(account)
                .push(" AND t.tag = ")
                .push_bind(tag.clone());
        }
        if let Some(status) = filter.status {
            q.push(" AND u.status = ").push_bind(status.as_str());
        }
        if let Some(text) = &filter.q {
            let pattern = super::like_pattern(text);
            q.push(" AND (lower(u.name) LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\'");
            q.push(" OR u.username_norm LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\'");
            q.push(" OR lower(u.custom_id) LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\'");
            q.push(" OR u.email_norm LIKE ")
                .push_bind(pattern)
                .push(" ESCAPE '\\')");
        }
        let key = driver.map_or("u.id", |d| d.key());
        if let Some(after) = page.after {
            q.push(format!(" AND {key} > ")).push_bind(after);
        }
        q.push(format!(" ORDER BY {key} LIMIT "))
            .push_bind(i64::from(page.limit) + 1);
        let rows = q.build().fetch_all(&self.read).await.map_err(map_err)?;
        let items = rows
            .iter()
            .map(user_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged::from_rows(items, page.limit, |u: &User| u.id))
    }

    async fn update_user(
        &self,
        account: Uuid,
        user: Uuid,
        patch: &UserPatch,
        change: &Change,
        mail: Option<&sessions::UserMail>,
    ) -> Result<User> {
        let (patch, mail, change) = (patch.clone(), mail.cloned(), change.clone());
        self.write(move |c| {
            Box::pin(async move {
                let at = change.at;
                let updated = patch_user(c, account, user, &patch, at).await?;
                let kinds = super::user_event_types(&patch);
                insert_user_events(c, account, &change, kinds, &updated).await?;
                if let Some(mail) = &mail {
                    if let (Some((hash, expires_at)), Some(email)) =
                        (&mail.verification, &updated.email)
                    {
                        sqlx::query(
                            "INSERT INTO email_verifications (hash, account_id, user_id, email, created_at, expires_at, used_at) \
                             VALUES (?, ?, ?, ?, ?, ?, NULL)",
                        )
                        .bind(hash)
                        .bind(account)
                        .bind(user)
                        .bind(email)
                        .bind(at)
                        .bind(*expires_at)
                        .execute(&mut *c)
                        .await
                        .map_err(map_err)?;
                    }
                    for m in &mail.mails {
                        insert_mail(c, m).await?;
                    }
                }
                Ok(updated)
            })
        })
        .await
    }

    async fn set_user_active(
        &self,
        account: Uuid,
        user: Uuid,
        active: bool,
        change: &Change,
    ) -> Result<User> {
        let change = change.clone();
        self.write(move |c| {
            Box::pin(async move {
                let at = change.at;
                let r = if active {
                    sqlx::query("UPDATE users SET active = 1, deactivated_at = NULL, updated_at = ? WHERE account_id = ? AND id = ?")
                        .bind(at)
                        .bind(account)
                        .bind(user)
                        .execute(&mut *c)
                        .await
                } else {
                    sqlx::query(
                        "UPDATE users SET active = 0, deactivated_at = COALESCE(deactivated_at, ?), \
                         tokens_valid_after = ?, updated_at = ? WHERE account_id = ? AND id = ?",
                    )
                    .bind(at)
                    .bind(at)
                    .bind(at)
                    .bind(account)
                    .bind(user)
                    .execute(&mut *c)
                    .await
                }
                .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("user"));
                }
                let updated = select_user(c, account, user).await?;
                let kind = if active {
                    "user.reactivated"
                } else {
                    "user.deactivated"
                };
                insert_user_events(c, account, &change, &[kind], &updated).await?;
                Ok(updated)
            })
        })
        .await
    }

    async fn delete_user(&self, account: Uuid, user: Uuid, change: &Change) -> Result<()> {
        let change = change.clone();
        self.write(move |c| {
            Box::pin(async move {
                // The user as they were, for the event.
                let gone = select_user(c, account, user).await?;
                sqlx::query("DELETE FROM users WHERE account_id = ? AND id = ?")
                    .bind(account)
                    .bind(user)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                insert_user_events(c, account, &change, &["user.deleted"], &gone).await?;
                Ok(())
            })
        })
        .await
    }

    async fn create_space(&self, account: Uuid, space: &Space) -> Result<Space> {
        let space = space.clone();
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query("INSERT INTO spaces (id, account_id, name, visibility, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
                    .bind(space.id)
                    .bind(account)
                    .bind(&space.name)
                    .bind(space.visibility.as_str())
                    .bind(space.created_by)
                    .bind(space.created_at)
                    .bind(space.updated_at)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                if let Some(creator) = space.created_by {
                    sqlx::query(
                        "INSERT INTO space_members (account_id, space_id, user_id, role, joined_at) \
                         SELECT ?, ?, id, 'owner', ? FROM users WHERE account_id = ? AND id = ?",
                    )
                    .bind(account)
                    .bind(space.id)
                    .bind(space.created_at)
                    .bind(account)
                    .bind(creator)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                }
                Ok(space)
            })
        })
        .await
    }

    async fn list_spaces(
        &self,
        account: Uuid,
        viewer: Option<Uuid>,
        page: Page,
    ) -> Result<Paged<Space>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SPACE_COLUMNS} FROM spaces s WHERE account_id = ? AND (? IS NULL OR id > ?) \
             AND (? IS NULL OR visibility = 'public' OR EXISTS (SELECT 1 FROM space_members m WHERE m.space_id = s.id AND m.user_id = ?)) \
             ORDER BY id LIMIT ?"
        )))
        .bind(account)
        .bind(page.after)
        .bind(page.after)
        .bind(viewer)
        .bind(viewer)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        let items = rows
            .iter()
            .map(space_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged::from_rows(items, page.limit, |s: &Space| s.id))
    }

    async fn get_space(&self, account: Uuid, space: Uuid) -> Result<Space> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SPACE_COLUMNS} FROM spaces WHERE account_id = ? AND id = ?"
        )))
        .bind(account)
        .bind(space)
        .fetch_optional(&self.read)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("space"))?;
        space_from_row(&row).map_err(map_err)
    }

    async fn update_space(
        &self,
        account: Uuid,
        space: Uuid,
        name: Option<&str>,
        visibility: Option<Visibility>,
        at: OffsetDateTime,
    ) -> Result<Space> {
        let name = name.map(str::to_owned);
        self.write(move |c| {
            Box::pin(async move {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE spaces SET name = COALESCE(?, name), visibility = COALESCE(?, visibility), updated_at = ? \
                     WHERE account_id = ? AND id = ? RETURNING {SPACE_COLUMNS}"
                )))
                .bind(name)
                .bind(visibility.map(Visibility::as_str))
                .bind(at)
                .bind(account)
                .bind(space)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound("space"))?;
                space_from_row(&row).map_err(map_err)
            })
        })
        .await
    }

    async fn delete_space(&self, account: Uuid, space: Uuid) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query("DELETE FROM rooms WHERE account_id = ? AND space_id = ?")
                    .bind(account)
                    .bind(space)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                let r = sqlx::query("DELETE FROM spaces WHERE account_id = ? AND id = ?")
                    .bind(account)
                    .bind(space)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("space"));
                }
                Ok(())
            })
        })
        .await
    }

    async fn space_role(
        &self,
        account: Uuid,
        space: Uuid,
        user: Uuid,
    ) -> Result<Option<SpaceRole>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM space_members WHERE account_id = ? AND space_id = ? AND user_id = ?",
        )
        .bind(account)
        .bind(space)
        .bind(user)
        .fetch_optional(&self.read)
        .await
        .map_err(map_err)?;
        Ok(role.as_deref().and_then(SpaceRole::parse))
    }

    async fn put_space_member(
        &self,
        account: Uuid,
        space: Uuid,
        user: Uuid,
        role: SpaceRole,
        only_if_absent: bool,
        at: OffsetDateTime,
    ) -> Result<Member> {
        self.write(move |c| {
            Box::pin(async move {
                exists(c, "SELECT 1 FROM spaces WHERE account_id = ? AND id = ?", account, space, "space").await?;
                exists(c, "SELECT 1 FROM users WHERE account_id = ? AND id = ?", account, user, "user").await?;
                let conflict = if only_if_absent { "DO NOTHING" } else { "DO UPDATE SET role = excluded.role" };
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO space_members (account_id, space_id, user_id, role, joined_at) VALUES (?, ?, ?, ?, ?) \
                     ON CONFLICT (space_id, user_id) {conflict}"
                )))
                .bind(account)
                .bind(space)
                .bind(user)
                .bind(role.as_str())
                .bind(at)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                let row = sqlx::query("SELECT user_id, role, joined_at FROM space_members WHERE space_id = ? AND user_id = ?")
                    .bind(space)
                    .bind(user)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(map_err)?;
                member_from_row(&row).map_err(map_err)
            })
        })
        .await
    }

    async fn remove_space_member(&self, account: Uuid, space: Uuid, user: Uuid) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query("DELETE FROM space_members WHERE account_id = ? AND space_id = ? AND user_id = ?")
                    .bind(account)
                    .bind(space)
                    .bind(user)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("member"));
                }
                Ok(())
            })
        })
        .await
    }

    async fn list_space_members(
        &self,
        account: Uuid,
        space: Uuid,
        page: Page,
    ) -> Result<Paged<Member>> {
        let rows = sqlx::query(
            "SELECT user_id, role, joined_at FROM space_members WHERE account_id = ? AND space_id = ? \
             AND (? IS NULL OR user_id > ?) ORDER BY user_id LIMIT ?",
        )
        .bind(account)
        .bind(space)
        .bind(page.after)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        let items = rows
            .iter()
            .map(member_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged::from_rows(items, page.limit, |m: &Member| m.user_id))
    }

    async fn list_rooms_visible_to(
        &self,
        account: Uuid,
        user: Uuid,
        page: Page,
    ) -> Result<Paged<Room>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms r WHERE account_id = ? AND (? IS NULL OR id > ?) \
             AND (visibility = 'public' OR EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = r.id AND m.user_id = ?)) \
             ORDER BY id LIMIT ?"
        )))
        .bind(account)
        .bind(page.after)
        .bind(page.after)
        .bind(user)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        let items = rows
            .iter()
            .map(room_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged::from_rows(items, page.limit, |r: &Room| r.id))
    }

    async fn room_role(&self, account: Uuid, room: Uuid, user: Uuid) -> Result<Option<RoomRole>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM room_members WHERE account_id = ? AND room_id = ? AND user_id = ?",
        )
        .bind(account)
        .bind(room)
        .bind(user)
        .fetch_optional(&self.read)
        .await
        .map_err(map_err)?;
        Ok(role.as_deref().and_then(RoomRole::parse))
    }

    async fn put_room_member(
        &self,
        account: Uuid,
        room: Uuid,
        user: Uuid,
        role: RoomRole,
        only_if_absent: bool,
        at: OffsetDateTime,
    ) -> Result<Member> {
        self.write(move |c| {
            Box::pin(async move {
                exists(c, "SELECT 1 FROM rooms WHERE account_id = ? AND id = ?", account, room, "room").await?;
                exists(c, "SELECT 1 FROM users WHERE account_id = ? AND id = ?", account, user, "user").await?;
                let existing: Option<String> = sqlx::query_scalar("SELECT role FROM room_members WHERE room_id = ? AND user_id = ?")
                    .bind(room)
                    .bind(user)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(map_err)?;
                if existing.is_none() {
                    // The writer runs one job at a time, so count-then-insert cannot race here.
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM room_members WHERE user_id = ?")
                        .bind(user)
                        .fetch_one(&mut *c)
                        .await
                        .map_err(map_err)?;
                    if n >= MAX_ROOMS_PER_USER {
                        return Err(super::room_cap_conflict());
                    }
                    sqlx::query("INSERT INTO room_members (account_id, room_id, user_id, role, joined_at) VALUES (?, ?, ?, ?, ?)")
                        .bind(account)
                        .bind(room)
                        .bind(user)
                        .bind(role.as_str())
                        .bind(at)
                        .execute(&mut *c)
                        .await
                        .map_err(map_err)?;
                } else if !only_if_absent {
                    sqlx::query("UPDATE room_members SET role = ? WHERE room_id = ? AND user_id = ?")
                        .bind(role.as_str())
                        .bind(room)
                        .bind(user)
                        .execute(&mut *c)
                        .await
                        .map_err(map_err)?;
                }
                let row = sqlx::query("SELECT user_id, role, joined_at FROM room_members WHERE room_id = ? AND user_id = ?")
                    .bind(room)
                    .bind(user)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(map_err)?;
                member_from_row(&row).map_err(map_err)
            })
        })
        .await
    }

    async fn remove_room_member(&self, account: Uuid, room: Uuid, user: Uuid) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query(
                    "DELETE FROM room_members WHERE account_id = ? AND room_id = ? AND user_id = ?",
                )
                .bind(account)
                .bind(room)
                .bind(user)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("member"));
                }
                Ok(())
            })
        })
        .await
    }

    async fn list_room_members(
        &self,
        account: Uuid,
        room: Uuid,
        page: Page,
    ) -> Result<Paged<Member>> {
        let rows = sqlx::query(
            "SELECT user_id, role, joined_at FROM room_members WHERE account_id = ? AND room_id = ? \
             AND (? IS NULL OR user_id > ?) ORDER BY user_id LIMIT ?",
        )
        .bind(account)
        .bind(room)
        .bind(page.after)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        let items = rows
            .iter()
            .map(member_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged::from_rows(items, page.limit, |m: &Member| m.user_id))
    }

    async fn create_role(&self, account: Uuid, role: &Role) -> Result<Role> {
        let role = role.clone();
        self.write(move |c| {
            Box::pin(async move {
                let id = Uuid::try_parse(&role.id).map_err(|e| StoreError::Other(e.into()))?;
                sqlx::query("INSERT INTO roles (id, account_id, name, name_norm, description, permissions, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
                    .bind(id)
                    .bind(account)
                    .bind(&role.name)
                    .bind(role.name.to_lowercase())
                    .bind(&role.description)
                    .bind(json(&role.permissions))
                    .bind(role.created_at)
                    .bind(role.created_at)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                Ok(role)
            })
        })
        .await
    }

    async fn list_roles(&self, account: Uuid) -> Result<Vec<Role>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROLE_COLUMNS} FROM roles WHERE account_id = ? ORDER BY id"
        )))
        .bind(account)
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(role_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)
    }

    async fn get_role(&self, account: Uuid, role: &str) -> Result<Role> {
        let id = Uuid::try_parse(role).map_err(|_| StoreError::NotFound("role"))?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROLE_COLUMNS} FROM roles WHERE account_id = ? AND id = ?"
        )))
        .bind(account)
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("role"))?;
        role_from_row(&row).map_err(map_err)
    }

    async fn update_role(
        &self,
        account: Uuid,
        role: &str,
        name: Option<&str>,
        description: Option<Option<&str>>,
        permissions: Option<&[Permission]>,
        at: OffsetDateTime,
    ) -> Result<Role> {
        let id = Uuid::try_parse(role).map_err(|_| StoreError::NotFound("role"))?;
        let name = name.map(str::to_owned);
        let description = description.map(|d| d.map(str::to_owned));
        let permissions = permissions.map(json);
        self.write(move |c| {
            Box::pin(async move {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE roles SET name = COALESCE(?, name), name_norm = COALESCE(?, name_norm), \
                     description = CASE WHEN ? THEN ? ELSE description END, \
                     permissions = COALESCE(?, permissions), updated_at = ? \
                     WHERE account_id = ? AND id = ? RETURNING {ROLE_COLUMNS}"
                )))
                .bind(name.clone())
                .bind(name.map(|n| n.to_lowercase()))
                .bind(description.is_some())
                .bind(description.flatten())
                .bind(permissions)
                .bind(at)
                .bind(account)
                .bind(id)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound("role"))?;
                role_from_row(&row).map_err(map_err)
            })
        })
        .await
    }

    async fn delete_role(&self, account: Uuid, role: &str) -> Result<()> {
        let id = Uuid::try_parse(role).map_err(|_| StoreError::NotFound("role"))?;
        let key = role.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let held: Option<i64> = sqlx::query_scalar(
                    "SELECT 1 FROM user_roles WHERE account_id = ? AND role = ? LIMIT 1",
                )
                .bind(account)
                .bind(&key)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?;
                if held.is_some() {
                    return Err(StoreError::conflict(
                        "id",
                        "users still hold this role; take it from them first",
                    ));
                }
                let r = sqlx::query("DELETE FROM roles WHERE account_id = ? AND id = ?")
                    .bind(account)
                    .bind(id)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("role"));
                }
                Ok(())
            })
        })
        .await
    }

    async fn create_invite(&self, account: Uuid, invite: &Invite) -> Result<Invite> {
        let invite = invite.clone();
        self.write(move |c| {
            Box::pin(async move {
                exists(c, "SELECT 1 FROM spaces WHERE account_id = ? AND id = ?", account, invite.space_id, "space").await?;
                sqlx::query("INSERT INTO invites (id, account_id, space_id, role, max_uses, uses, expires_at, revoked_at, created_by, created_at) VALUES (?, ?, ?, ?, ?, 0, ?, NULL, ?, ?)")
                    .bind(invite.id)
                    .bind(account)
                    .bind(invite.space_id)
                    .bind(invite.role.as_str())
                    .bind(invite.max_uses)
                    .bind(invite.expires_at)
                    .bind(invite.created_by)
                    .bind(invite.created_at)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                Ok(invite)
            })
        })
        .await
    }

    async fn list_invites(&self, account: Uuid, space: Uuid, page: Page) -> Result<Paged<Invite>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVITE_COLUMNS} FROM invites WHERE account_id = ? AND space_id = ? AND (? IS NULL OR id > ?) ORDER BY id LIMIT ?"
        )))
        .bind(account)
        .bind(space)
        .bind(page.after)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        let items = rows
            .iter()
            .map(invite_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged::from_rows(items, page.limit, |i: &Invite| i.id))
    }

    async fn revoke_invite(
        &self,
        account: Uuid,
        space: Uuid,
        invite: Uuid,
        at: OffsetDateTime,
    ) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query("UPDATE invites SET revoked_at = COALESCE(revoked_at, ?) WHERE account_id = ? AND space_id = ? AND id = ?")
                    .bind(at)
                    .bind(account)
                    .bind(space)
                    .bind(invite)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("invite"));
                }
                Ok(())
            })
        })
        .await
    }

    async fn activate_invite(
        &self,
        account: Uuid,
        space: Uuid,
        invite: Uuid,
        user: Uuid,
        at: OffsetDateTime,
    ) -> Result<Member> {
        self.write(move |c| {
            Box::pin(async move {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {INVITE_COLUMNS} FROM invites WHERE account_id = ? AND space_id = ? AND id = ?"
                )))
                .bind(account)
                .bind(space)
                .bind(invite)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound("invite"))?;
                let found = invite_from_row(&row).map_err(map_err)?;
                if let Some(why) = super::invite_gone(&found, at) {
                    return Err(StoreError::Gone(why, "invite"));
                }
                // The use is counted by a conditional update, as on PostgreSQL.
                let used = sqlx::query(
                    "UPDATE invites SET uses = uses + 1 WHERE id = ? AND revoked_at IS NULL AND uses < max_uses \
                     AND (expires_at IS NULL OR julianday(expires_at) > julianday(?))",
                )
                .bind(invite)
                .bind(at)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                if used.rows_affected() == 0 {
                    return Err(StoreError::Gone(crate::domain::access::Gone::UsedUp, "invite"));
                }
                sqlx::query(
                    "INSERT INTO space_members (account_id, space_id, user_id, role, joined_at) VALUES (?, ?, ?, ?, ?) \
                     ON CONFLICT (space_id, user_id) DO UPDATE SET role = CASE \
                       WHEN space_members.role = 'owner' THEN 'owner' \
                       WHEN space_members.role = 'moderator' OR excluded.role = 'moderator' THEN 'moderator' \
                       ELSE 'user' END",
                )
                .bind(account)
                .bind(space)
                .bind(user)
                .bind(found.role.as_str())
                .bind(at)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                let row = sqlx::query("SELECT user_id, role, joined_at FROM space_members WHERE space_id = ? AND user_id = ?")
                    .bind(space)
                    .bind(user)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(map_err)?;
                member_from_row(&row).map_err(map_err)
            })
        })
        .await
    }

    async fn create_link(&self, account: Uuid, link: &AccessLink) -> Result<AccessLink> {
        let link = link.clone();
        self.write(move |c| {
            Box::pin(async move {
                exists(c, "SELECT 1 FROM rooms WHERE account_id = ? AND id = ?", account, link.room_id, "room").await?;
                sqlx::query("INSERT INTO access_links (id, account_id, room_id, username, role, external_user_id, is_permanent, expires_at, used_at, revoked_at, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)")
                    .bind(link.id)
                    .bind(account)
                    .bind(link.room_id)
                    .bind(&link.username)
                    .bind(link.role.as_str())
                    .bind(&link.external_user_id)
                    .bind(link.is_permanent)
                    .bind(link.expires_at)
                    .bind(link.created_by)
                    .bind(link.created_at)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                Ok(link)
            })
        })
        .await
    }

    async fn list_links(&self, account: Uuid, room: Uuid, page: Page) -> Result<Paged<AccessLink>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LINK_COLUMNS} FROM access_links WHERE account_id = ? AND room_id = ? AND (? IS NULL OR id > ?) ORDER BY id LIMIT ?"
        )))
        .bind(account)
        .bind(room)
        .bind(page.after)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        let items = rows
            .iter()
            .map(link_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged::from_rows(items, page.limit, |l: &AccessLink| l.id))
    }

    async fn revoke_link(
        &self,
        account: Uuid,
        room: Uuid,
        link: Uuid,
        at: OffsetDateTime,
    ) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query("UPDATE access_links SET revoked_at = COALESCE(revoked_at, ?) WHERE account_id = ? AND room_id = ? AND id = ?")
                    .bind(at)
                    .bind(account)
                    .bind(room)
                    .bind(link)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("access link"));
                }
                Ok(())
            })
        })
        .await
    }

    async fn use_link(&self, account: Uuid, link: Uuid, at: OffsetDateTime) -> Result<AccessLink> {
        self.write(move |c| {
            Box::pin(async move {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {LINK_COLUMNS} FROM access_links WHERE account_id = ? AND id = ?"
                )))
                .bind(account)
                .bind(link)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound("access link"))?;
                let found = link_from_row(&row).map_err(map_err)?;
                if let Some(why) = super::link_gone(&found, at) {
                    return Err(StoreError::Gone(why, "access link"));
                }
                if !found.is_permanent {
                    let used = sqlx::query(
                        "UPDATE access_links SET used_at = ? WHERE id = ? AND used_at IS NULL",
                    )
                    .bind(at)
                    .bind(link)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                    if used.rows_affected() == 0 {
                        return Err(StoreError::Gone(
                            crate::domain::access::Gone::UsedUp,
                            "access link",
                        ));
                    }
                }
                Ok(found)
            })
        })
        .await
    }

    async fn is_room_member(&self, account: Uuid, room: Uuid, user: Uuid) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM room_members WHERE account_id = ? AND room_id = ? AND user_id = ?",
        )
        .bind(account)
        .bind(room)
        .bind(user)
        .fetch_optional(&self.read)
        .await
        .map_err(map_err)?;
        Ok(found.is_some())
    }

    async fn set_presence(
        &self,
        account: Uuid,
        user: Uuid,
        status: Status,
        at: OffsetDateTime,
    ) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE users SET status = ?, last_seen_at = ? WHERE account_id = ? AND id = ?",
                )
                .bind(status.as_str())
                .bind(at)
                .bind(account)
                .bind(user)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn reset_presence(&self, at: OffsetDateTime) -> Result<u64> {
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query("UPDATE users SET status = 'offline', last_seen_at = ? WHERE status <> 'offline'")
                    .bind(at)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                Ok(r.rows_affected())
            })
        })
        .await
    }

    async fn check_user_token(
        &self,
        account: Uuid,
        user: Uuid,
        jti: Uuid,
        now: OffsetDateTime,
    ) -> Result<TokenCheck> {
        let mut conn = self.read.acquire().await.map_err(map_err)?;
        let live: Option<i64> = sqlx::query_scalar(
            // Timestamps are RFC 3339 text with as many fractional digits as
            // needed ("…:05Z", "…:05.3Z"), which do not sort as text: compare
            // them as instants.
            "SELECT 1 FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.id = ? AND t.user_id = ? AND t.account_id = ? AND t.revoked_at IS NULL \
             AND julianday(t.expires_at) > julianday(?) AND u.active = 1 \
             AND (u.tokens_valid_after IS NULL OR julianday(u.tokens_valid_after) <= julianday(t.created_at))",
        )
        .bind(jti)
        .bind(user)
        .bind(account)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
        if live.is_none() {
            return Ok(TokenCheck::Invalid);
        }
        Ok(TokenCheck::Valid(Box::new(
            select_user(&mut conn, account, user).await?,
        )))
    }

    // --- sessions ---------------------------------------------------------------

    async fn find_login(
        &self,
        account: Uuid,
        name: &sessions::LoginName,
    ) -> Result<Option<sessions::LoginCandidate>> {
        let (column, value) = name.column_and_value();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE account_id = ? AND {column} = ?"
        )))
        .bind(account)
        .bind(value)
        .fetch_optional(&self.read)
        .await
        .map_err(map_err)?;
        row.map(|r| {
            Ok(sessions::LoginCandidate {
                user: user_from_row(&r)?,
                password_hash: r.try_get(27)?,
            })
        })
        .transpose()
        .map_err(map_err)
    }

    async fn password_hash(&self, account: Uuid, user: Uuid) -> Result<Option<String>> {
        let found: Option<Option<String>> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE account_id = ? AND id = ?")
                .bind(account)
                .bind(user)
                .fetch_optional(&self.read)
                .await
                .map_err(map_err)?;
        found.ok_or(StoreError::NotFound("user"))
    }

    async fn set_password_hash(
        &self,
        account: Uuid,
        user: Uuid,
        hash: &str,
        at: OffsetDateTime,
    ) -> Result<()> {
        let hash = hash.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query(
                    "UPDATE users SET password_hash = ?, updated_at = ? WHERE account_id = ? AND id = ?",
                )
                .bind(&hash)
                .bind(at)
                .bind(account)
                .bind(user)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("user"));
                }
                Ok(())
            })
        })
        .await
    }

    async fn create_session(&self, account: Uuid, session: &sessions::NewSession) -> Result<()> {
        let s = session.clone();
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query("INSERT INTO sessions (id, account_id, user_id, created_at, revoked_at) VALUES (?, ?, ?, ?, NULL)")
                    .bind(s.id)
                    .bind(account)
                    .bind(s.user_id)
                    .bind(s.created_at)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                insert_next_tokens(c, account, s.id, s.user_id, &s.tokens).await
            })
        })
        .await
    }

    async fn refresh_token_owner(&self, account: Uuid, hash: &[u8]) -> Result<Option<Uuid>> {
        sqlx::query_scalar("SELECT user_id FROM refresh_tokens WHERE hash = ? AND account_id = ?")
            .bind(hash)
            .bind(account)
            .fetch_optional(&self.read)
            .await
            .map_err(map_err)
    }

    async fn rotate_refresh_token(
        &self,
        account: Uuid,
        presented: &[u8],
        next: &sessions::NextTokens,
        now: OffsetDateTime,
    ) -> Result<sessions::Refreshed> {
        let (presented, next) = (presented.to_vec(), next.clone());
        self.write(move |c| {
            Box::pin(async move {
                let row = sqlx::query(
                    "SELECT r.session_id, r.user_id, r.used_at IS NOT NULL AS used, \
                     julianday(r.expires_at) > julianday(?) AS fresh, s.revoked_at IS NULL AS live, \
                     u.active AND (u.tokens_valid_after IS NULL OR julianday(u.tokens_valid_after) <= julianday(r.created_at)) AS user_ok \
                     FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = r.user_id \
                     WHERE r.hash = ? AND r.account_id = ?",
                )
                .bind(now)
                .bind(&presented)
                .bind(account)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?;
                let Some(row) = row else {
                    return Ok(sessions::Refreshed::Invalid);
                };
                let get = |r: &SqliteRow| -> std::result::Result<(Uuid, Uuid, bool, bool, bool, bool), sqlx::Error> {
                    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?))
                };
                let (session, user, used, fresh, live, user_ok) = get(&row).map_err(map_err)?;
                if used {
                    let mut revoked = revoke_sessions(c, "id = ?", session, now).await?;
                    revoked.user_id = Some(user);
                    return Ok(sessions::Refreshed::Reused { user_id: user, revoked });
                }
                if !(fresh && live && user_ok) || next.access.user_id != user {
                    return Ok(sessions::Refreshed::Invalid);
                }
                sqlx::query("UPDATE refresh_tokens SET used_at = ? WHERE hash = ?")
                    .bind(now)
                    .bind(&presented)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                insert_next_tokens(c, account, session, user, &next).await?;
                Ok(sessions::Refreshed::Rotated(Box::new(
                    select_user(c, account, user).await?,
                )))
            })
        })
        .await
    }

    async fn end_session(
        &self,
        account: Uuid,
        by: &sessions::SessionRef,
        at: OffsetDateTime,
    ) -> Result<sessions::Revoked> {
        let by = by.clone();
        self.write(move |c| {
            Box::pin(async move {
                let found: Option<(Option<Uuid>, Uuid, Uuid)> = match &by {
                    sessions::SessionRef::Refresh(hash) => sqlx::query_as(
                        "SELECT session_id, user_id, user_id FROM refresh_tokens WHERE hash = ? AND account_id = ?",
                    )
                    .bind(hash),
                    sessions::SessionRef::Token(id) => sqlx::query_as(
                        "SELECT session_id, id, user_id FROM tokens WHERE id = ? AND account_id = ?",
                    )
                    .bind(id),
                }
                .bind(account)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?;
                let (session, token, user) = found.ok_or(StoreError::NotFound("session"))?;
                let mut revoked = match session {
                    Some(session) => revoke_sessions(c, "id = ?", session, at).await?,
                    None => {
                        sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
                            .bind(at)
                            .bind(token)
                            .execute(&mut *c)
                            .await
                            .map_err(map_err)?;
                        sessions::Revoked { user_id: None, tokens: vec![token] }
                    }
                };
                revoked.user_id = Some(user);
                Ok(revoked)
            })
        })
        .await
    }

    async fn change_password(
        &self,
        account: Uuid,
        user: Uuid,
        hash: &str,
        revoke_others: bool,
        keep_token: Option<Uuid>,
        at: OffsetDateTime,
    ) -> Result<sessions::Revoked> {
        let hash = hash.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query(
                    "UPDATE users SET password_hash = ?, require_password_change = 0, updated_at = ? \
                     WHERE account_id = ? AND id = ?",
                )
                .bind(&hash)
                .bind(at)
                .bind(account)
                .bind(user)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("user"));
                }
                let mut revoked = sessions::Revoked { user_id: Some(user), tokens: vec![] };
                if revoke_others {
                    let keep: Option<Uuid> = sqlx::query_scalar("SELECT session_id FROM tokens WHERE id = ?")
                        .bind(keep_token)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(map_err)?
                        .flatten();
                    sqlx::query(
                        "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL AND id IS NOT ?",
                    )
                    .bind(at)
                    .bind(user)
                    .bind(keep)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                    revoked.tokens = sqlx::query_scalar(
                        "UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND kind = 'access' \
                         AND revoked_at IS NULL AND session_id IS NOT ? RETURNING id",
                    )
                    .bind(at)
                    .bind(user)
                    .bind(keep)
                    .fetch_all(&mut *c)
                    .await
                    .map_err(map_err)?;
                }
                Ok(revoked)
            })
        })
        .await
    }

    async fn issue_user_token(
        &self,
        account: Uuid,
        token: &TokenRecord,
        max_live: i64,
    ) -> Result<sessions::Revoked> {
        let token = token.clone();
        self.write(move |c| {
            Box::pin(async move {
                let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE account_id = ? AND id = ?")
                    .bind(account)
                    .bind(token.user_id)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(map_err)?;
                if found.is_none() {
                    return Err(StoreError::NotFound("user"));
                }
                sqlx::query("INSERT INTO tokens (id, account_id, user_id, kind, room_id, created_at, expires_at, revoked_at) VALUES (?, ?, ?, 'user', ?, ?, ?, NULL)")
                    .bind(token.id)
                    .bind(account)
                    .bind(token.user_id)
                    .bind(token.room_id)
                    .bind(token.created_at)
                    .bind(token.expires_at)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                // Ids are UUIDv7: their order is the order of issue.
                let tokens = sqlx::query_scalar(
                    "UPDATE tokens SET revoked_at = ? WHERE id IN (SELECT id FROM tokens \
                     WHERE account_id = ? AND user_id = ? AND kind = 'user' AND revoked_at IS NULL \
                     AND julianday(expires_at) > julianday(?) AND NOT EXISTS (SELECT 1 FROM users u \
                     WHERE u.id = tokens.user_id AND julianday(u.tokens_valid_after) > julianday(tokens.created_at)) \
                     ORDER BY id DESC LIMIT -1 OFFSET ?) RETURNING id",
                )
                .bind(token.created_at)
                .bind(account)
                .bind(token.user_id)
                .bind(token.created_at)
                .bind(max_live)
                .fetch_all(&mut *c)
                .await
                .map_err(map_err)?;
                Ok(sessions::Revoked { user_id: Some(token.user_id), tokens })
            })
        })
        .await
    }

    async fn list_user_tokens(
        &self,
        account: Uuid,
        user: Uuid,
        now: OffsetDateTime,
        page: Page,
    ) -> Result<Paged<sessions::TokenInfo>> {
        let mut conn = self.read.acquire().await.map_err(map_err)?;
        select_user(&mut conn, account, user).await?;
        let rows: Vec<TokenInfoRow> = sqlx::query_as(
            "SELECT t.id, t.room_id, t.created_at, t.expires_at, t.revoked_at FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.account_id = ? AND t.user_id = ? AND t.kind = 'user' AND t.revoked_at IS NULL \
             AND julianday(t.expires_at) > julianday(?) \
             AND (u.tokens_valid_after IS NULL OR julianday(u.tokens_valid_after) <= julianday(t.created_at)) \
             AND (? IS NULL OR t.id > ?) ORDER BY t.id LIMIT ?",
        )
        .bind(account)
        .bind(user)
        .bind(now)
        .bind(page.after)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
        let items = rows.into_iter().map(token_info).collect();
        Ok(Paged::from_rows(
            items,
            page.limit,
            |t: &sessions::TokenInfo| t.id,
        ))
    }

    async fn revoke_user_token(
        &self,
        account: Uuid,
        user: Uuid,
        token: Uuid,
        at: OffsetDateTime,
    ) -> Result<sessions::TokenInfo> {
        self.write(move |c| {
            Box::pin(async move {
                let row: Option<TokenInfoRow> = sqlx::query_as(
                    "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) \
                     WHERE account_id = ? AND user_id = ? AND id = ? AND kind = 'user' \
                     RETURNING id, room_id, created_at, expires_at, revoked_at",
                )
                .bind(at)
                .bind(account)
                .bind(user)
                .bind(token)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?;
                row.map(token_info).ok_or(StoreError::NotFound("token"))
            })
        })
        .await
    }

    async fn revoke_tokens_before(
        &self,
        account: Uuid,
        user: Uuid,
        at: OffsetDateTime,
    ) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query(
                    "UPDATE users SET tokens_valid_after = ? WHERE account_id = ? AND id = ?",
                )
                .bind(at)
                .bind(account)
                .bind(user)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound("user"));
                }
                sqlx::query(
                    "UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                )
                .bind(at)
                .bind(user)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                revoke_sessions(c, "user_id = ?", user, at).await?;
                Ok(())
            })
        })
        .await
    }

    async fn set_signup_settings(
        &self,
        account: Uuid,
        signup: &crate::domain::settings::SignupSettings,
    ) -> Result<Settings> {
        let signup = json(signup);
        self.write(move |c| {
            Box::pin(async move {
                let s: String = sqlx::query_scalar(
                    "UPDATE accounts SET settings = json_set(settings, '$.signup', json(?)) WHERE id = ? RETURNING settings",
                )
                .bind(&signup)
                .bind(account)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound("account"))?;
                serde_json::from_str(&s).map_err(|e| StoreError::Other(e.into()))
            })
        })
        .await
    }

    async fn request_password_reset(
        &self,
        account: Uuid,
        reset: &sessions::NewPasswordReset,
    ) -> Result<()> {
        let r = reset.clone();
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query("INSERT INTO password_resets (hash, account_id, user_id, created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, NULL)")
                    .bind(&r.hash)
                    .bind(account)
                    .bind(r.user_id)
                    .bind(r.created_at)
                    .bind(r.expires_at)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                insert_mail(c, &r.mail).await
            })
        })
        .await
    }

    async fn reset_password(
        &self,
        account: Uuid,
        hash: &[u8],
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<sessions::Revoked>> {
        let (hash, phc) = (hash.to_vec(), password_hash.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let user: Option<Uuid> = sqlx::query_scalar(
                    "UPDATE password_resets SET used_at = ? WHERE hash = ? AND account_id = ? \
                     AND used_at IS NULL AND julianday(expires_at) > julianday(?) RETURNING user_id",
                )
                .bind(now)
                .bind(&hash)
                .bind(account)
                .bind(now)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?;
                let Some(user) = user else { return Ok(None) };
                sqlx::query("UPDATE password_resets SET used_at = ? WHERE user_id = ? AND used_at IS NULL")
                    .bind(now)
                    .bind(user)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                sqlx::query(
                    "UPDATE users SET password_hash = ?, require_password_change = 0, updated_at = ? \
                     WHERE account_id = ? AND id = ?",
                )
                .bind(&phc)
                .bind(now)
                .bind(account)
                .bind(user)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                let mut revoked = revoke_sessions(c, "user_id = ?", user, now).await?;
                revoked.user_id = Some(user);
                Ok(Some(revoked))
            })
        })
        .await
    }

    async fn enqueue_mail(&self, mail: &sessions::OutboxMail) -> Result<()> {
        let mail = mail.clone();
        self.write(move |c| Box::pin(async move { insert_mail(c, &mail).await }))
            .await
    }

    async fn claim_mail(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: i64,
    ) -> Result<Vec<sessions::OutboxMail>> {
        self.write(move |c| {
            Box::pin(async move {
                let rows: Vec<MailRow> = sqlx::query_as(
                    "UPDATE outbox SET claimed_until = ? WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NULL \
                     AND julianday(next_attempt_at) <= julianday(?) \
                     AND (claimed_until IS NULL OR julianday(claimed_until) <= julianday(?)) ORDER BY id LIMIT ?) \
                     RETURNING id, account_id, to_addr, subject, body, created_at, attempts",
                )
                .bind(now + lease)
                .bind(now)
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *c)
                .await
                .map_err(map_err)?;
                let mut mails: Vec<_> = rows.into_iter().map(mail_from_row).collect();
                mails.sort_by_key(|m: &sessions::OutboxMail| m.id);
                Ok(mails)
            })
        })
        .await
    }

    async fn finish_mail(
        &self,
        id: Uuid,
        at: OffsetDateTime,
        failure: Option<(&str, Option<OffsetDateTime>)>,
    ) -> Result<()> {
        let failure = failure.map(|(e, next)| (e.to_owned(), next));
        self.write(move |c| {
            Box::pin(async move {
                match failure {
                    None => sqlx::query("UPDATE outbox SET sent_at = ?, attempts = attempts + 1, claimed_until = NULL WHERE id = ?")
                        .bind(at)
                        .bind(id),
                    Some((error, next)) => sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, claimed_until = NULL, next_attempt_at = ? WHERE id = ?",
                    )
                    .bind(error)
                    .bind(next.unwrap_or(at + time::Duration::days(36_500)))
                    .bind(id),
                }
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn create_user_with_mail(
        &self,
        account: Uuid,
        user: &NewUser,
        token: &TokenRecord,
        change: &Change,
        mail: &sessions::UserMail,
    ) -> Result<User> {
        let (user, token, mail, change) =
            (user.clone(), token.clone(), mail.clone(), change.clone());
        self.write_raw(move |c| {
            let created = new_user::insert_user(c, account, &user, &token, &change)?;
            new_user::insert_mail(c, account, &user, change.at, &mail)?;
            Ok(created)
        })
        .await
    }

    async fn verify_email(
        &self,
        account: Uuid,
        hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<Option<User>> {
        let hash = hash.to_vec();
        self.write(move |c| {
            Box::pin(async move {
                let found: Option<(Uuid, String)> = sqlx::query_as(
                    "UPDATE email_verifications SET used_at = ? WHERE hash = ? AND account_id = ? \
                     AND used_at IS NULL AND julianday(expires_at) > julianday(?) RETURNING user_id, email",
                )
                .bind(now)
                .bind(&hash)
                .bind(account)
                .bind(now)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?;
                let Some((user, email)) = found else { return Ok(None) };
                let r = sqlx::query(
                    "UPDATE users SET email_verified = 1, updated_at = ? WHERE account_id = ? AND id = ? AND email = ?",
                )
                .bind(now)
                .bind(account)
                .bind(user)
                .bind(&email)
                .execute(&mut *c)
                .await
                .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Ok(None);
                }
                Ok(Some(select_user(c, account, user).await?))
            })
        })
        .await
    }

    async fn set_email_settings(
        &self,
        account: Uuid,
        email: &crate::domain::settings::EmailSettings,
    ) -> Result<Settings> {
        let email = json(email);
        self.write(move |c| {
            Box::pin(async move {
                let s: String = sqlx::query_scalar(
                    "UPDATE accounts SET settings = json_set(settings, '$.email', json(?)) WHERE id = ? RETURNING settings",
                )
                .bind(&email)
                .bind(account)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound("account"))?;
                serde_json::from_str(&s).map_err(|e| StoreError::Other(e.into()))
            })
        })
        .await
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRecord, at: OffsetDateTime) -> Result<()> {
        let key = key.clone();
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL")
                    .bind(at)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                sqlx::query("INSERT INTO signing_keys (kid, private_der, public_x, created_at, retired_at) VALUES (?, ?, ?, ?, NULL)")
                    .bind(&key.kid)
                    .bind(&key.private_der)
                    .bind(&key.public_x)
                    .bind(key.created_at)
                    .execute(&mut *c)
                    .await
                    .map_err(map_err)?;
                Ok(())
            })
        })
        .await
    }
}

/// Every role id must name a built-in role or a custom role of the account.
async fn check_roles(c: &mut SqliteConnection, account: Uuid, roles: &[String]) -> Result<()> {
    for r in roles
        .iter()
        .filter(|r| !BUILTIN_ROLES.contains(&r.as_str()))
    {
        let id = Uuid::try_parse(r).map_err(|_| StoreError::NotFound("role"))?;
        exists(
            c,
            "SELECT 1 FROM roles WHERE account_id = ? AND id = ?",
            account,
            id,
            "role",
        )
        .await?;
    }
    Ok(())
}

/// `NotFound(what)` unless `sql` (taking account and id) finds a row.
async fn exists(
    c: &mut SqliteConnection,
    sql: &'static str,
    account: Uuid,
    id: Uuid,
    what: &'static str,
) -> Result<()> {
    let found: Option<i64> = sqlx::query_scalar(sql)
        .bind(account)
        .bind(id)
        .fetch_optional(&mut *c)
        .await
        .map_err(map_err)?;
    found.map(|_| ()).ok_or(StoreError::NotFound(what))
}

async fn insert_api_key(c: &mut SqliteConnection, account: Uuid, key: &NewApiKey) -> Result<()> {
    sqlx::query("INSERT INTO api_keys (id, account_id, name, scope, secret_hash, created_at, last_used_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)")
        .bind(key.id)
        .bind(account)
        .bind(&key.name)
        .bind(key.scope.as_str())
        .bind(&key.secret_hash)
        .bind(key.created_at)
        .execute(&mut *c)
        .await
        .map_err(map_err)?;
    Ok(())
}

// --- sessions ---------------------------------------------------------------

type TokenInfoRow = (
    Uuid,
    Option<Uuid>,
    OffsetDateTime,
    OffsetDateTime,
    Option<OffsetDateTime>,
);

fn token_info(r: TokenInfoRow) -> sessions::TokenInfo {
    sessions::TokenInfo {
        id: r.0,
        room_id: r.1,
        created_at: r.2,
        expires_at: r.3,
        revoked_at: r.4,
    }
}

/// Records a refresh token and its access token in session `session`.
async fn insert_next_tokens(
    c: &mut SqliteConnection,
    account: Uuid,
    session: Uuid,
    user: Uuid,
    t: &sessions::NextTokens,
) -> Result<()> {
    sqlx::query("INSERT INTO refresh_tokens (hash, session_id, account_id, user_id, created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?, NULL)")
        .bind(&t.refresh_hash)
        .bind(session)
        .bind(account)
        .bind(user)
        .bind(t.access.created_at)
        .bind(t.refresh_expires_at)
        .execute(&mut *c)
        .await
        .map_err(map_err)?;
    sqlx::query("INSERT INTO tokens (id, account_id, user_id, kind, room_id, created_at, expires_at, revoked_at, session_id) VALUES (?, ?, ?, 'access', NULL, ?, ?, NULL, ?)")
        .bind(t.access.id)
        .bind(account)
        .bind(user)
        .bind(t.access.created_at)
        .bind(t.access.expires_at)
        .bind(session)
        .execute(&mut *c)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Revokes the sessions matching `filter` (`id = ?` or `user_id = ?`) and
/// every access token they produced; returns those tokens.
async fn revoke_sessions(
    c: &mut SqliteConnection,
    filter: &'static str,
    value: Uuid,
    at: OffsetDateTime,
) -> Result<sessions::Revoked> {
    let ids: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?) WHERE {filter} RETURNING id"
    )))
    .bind(at)
    .bind(value)
    .fetch_all(&mut *c)
    .await
    .map_err(map_err)?;
    let mut tokens = Vec::new();
    for id in ids {
        let mut t: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE tokens SET revoked_at = ? WHERE session_id = ? AND revoked_at IS NULL RETURNING id",
        )
        .bind(at)
        .bind(id)
        .fetch_all(&mut *c)
        .await
        .map_err(map_err)?;
        tokens.append(&mut t);
    }
    Ok(sessions::Revoked {
        user_id: None,
        tokens,
    })
}

type MailRow = (
    Uuid,
    Option<Uuid>,
    String,
    String,
    String,
    OffsetDateTime,
    i32,
);

fn mail_from_row(r: MailRow) -> sessions::OutboxMail {
    sessions::OutboxMail {
        id: r.0,
        account_id: r.1,
        to: r.2,
        subject: r.3,
        body: r.4,
        created_at: r.5,
        attempts: r.6,
    }
}

async fn insert_mail(c: &mut SqliteConnection, m: &sessions::OutboxMail) -> Result<()> {
    sqlx::query("INSERT INTO outbox (id, account_id, to_addr, subject, body, created_at, attempts, next_attempt_at, claimed_until, sent_at, last_error) VALUES (?, ?, ?, ?, ?, ?, 0, ?, NULL, NULL, NULL)")
        .bind(m.id)
        .bind(m.account_id)
        .bind(&m.to)
        .bind(&m.subject)
        .bind(&m.body)
        .bind(m.created_at)
        .bind(m.created_at)
        .execute(&mut *c)
        .await
        .map_err(map_err)?;
    Ok(())
}
