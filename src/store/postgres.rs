//! The scaled-out backend: PostgreSQL, shared by every Roster node.
//!
//! Each operation is one transaction: a single statement where one suffices,
//! otherwise an explicit `BEGIN … COMMIT` on a pooled connection, rolled back
//! when the operation fails. Uniqueness is left to the unique indexes, so
//! concurrent writers on several nodes are refused exactly like a second
//! writer on one. The limits that a count enforces (bots per account) are
//! serialized per account with a row lock on the account, taken in
//! `FOR NO KEY UPDATE` mode so that it does not block the foreign key checks
//! of ordinary inserts.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Row};
use time::OffsetDateTime;
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

/// Connections per node. PostgreSQL's default `max_connections` is 100, so
/// three nodes fit beside an administrator's session.
const MAX_CONNECTIONS: u32 = 32;

/// How long an operation waits for a connection before the store reports
/// itself unavailable, so an outage fails requests fast instead of piling them up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PostgresStore {
    pool: PgPool,
}

/// The embedded migrations. Runs take PostgreSQL's advisory lock, so several
/// nodes starting together migrate once.
pub fn migrator() -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let mut m = Migrator::with_migrations(
        [
            (
                1,
                "init",
                include_str!("../../migrations/postgres/0001_init.sql"),
            ),
            (
                2,
                "access",
                include_str!("../../migrations/postgres/0002_access.sql"),
            ),
            (
                3,
                "sessions",
                include_str!("../../migrations/postgres/0003_sessions.sql"),
            ),
            (
                4,
                "refuse",
                include_str!("../../migrations/postgres/0004_refuse.sql"),
            ),
            (
                5,
                "email_changed",
                include_str!("../../migrations/postgres/0005_email_changed.sql"),
            ),
            (
                6,
                "events",
                include_str!("../../migrations/postgres/0006_events.sql"),
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
    );
    m.set_locking(true);
    m
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://…`) and migrates it.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        migrator().run(&pool).await?;
        Ok(Self { pool })
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(map_err)
    }
}

/// The SQLSTATE `roster_refuse()` (migration 0004) raises when a new user
/// would join more default rooms than a user may be in.
const ROOM_CAP_REFUSED: &str = "RS001";

/// SQLSTATEs that say the database, not the request, is the problem: the
/// connection (class 08), resources (53), the server shutting down or
/// starting (57P0x), a read-only standby after a failover (25006), and
/// transient refusals worth a retry (serialization failure, deadlock,
/// cancelled statement).
fn unavailable_state(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P0")
        || matches!(code, "25006" | "40001" | "40P01" | "57014")
}

/// Maps a database error to the store's vocabulary, naming the unique
/// index that refused a write.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(ROOM_CAP_REFUSED) => {
            super::room_cap_reached()
        }
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            super::unique_conflict(db.constraint().unwrap_or_else(|| db.message()))
        }
        sqlx::Error::Database(db) if db.code().is_some_and(|c| unavailable_state(&c)) => {
            StoreError::Unavailable(e.into())
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => StoreError::Unavailable(e.into()),
        _ => StoreError::Other(e.into()),
    }
}

fn account_from_row(r: &PgRow) -> std::result::Result<Account, sqlx::Error> {
    Ok(Account {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
    })
}

fn room_from_row(r: &PgRow) -> std::result::Result<Room, sqlx::Error> {
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

fn api_key_from_row(r: &PgRow) -> std::result::Result<ApiKey, sqlx::Error> {
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

/// The user, locked against concurrent changes until the transaction ends
/// when `lock` is set.
async fn select_user(
    conn: &mut PgConnection,
    account: Uuid,
    user: Uuid,
    lock: bool,
) -> Result<User> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE account_id = $1 AND id = $2{lock}"
    )))
    .bind(account)
    .bind(user)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err)?
    .ok_or(StoreError::NotFound("user"))?;
    user_from_row(&row).map_err(map_err)
}

/// Refuses one more bot beyond [`MAX_BOTS`]. Takes the account's row lock
/// first, so concurrent bot writes in one account count one after another.
async fn check_bot_cap(conn: &mut PgConnection, account: Uuid, except: Option<Uuid>) -> Result<()> {
    lock_account(conn, account).await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_roles WHERE account_id = $1 AND role = 'bot' \
         AND ($2::uuid IS NULL OR user_id <> $2)",
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

/// Serializes this transaction's limit checks with every other one in the
/// account. `FOR NO KEY UPDATE` leaves foreign key checks (`FOR KEY SHARE`)
/// of other inserts free to proceed.
async fn lock_account(conn: &mut PgConnection, account: Uuid) -> Result<()> {
    sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
        .bind(account)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

async fn replace_set(
    conn: &mut PgConnection,
    table: &'static str,
    column: &'static str,
    account: Uuid,
    user: Uuid,
    values: &[String],
) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE user_id = $1"
    )))
    .bind(user)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    insert_set(conn, table, column, account, user, values).await
}

/// Inserts one row per value into `user_tags` or `user_roles`, in one statement.
async fn insert_set(
    conn: &mut PgConnection,
    table: &'static str,
    column: &'static str,
    account: Uuid,
    user: Uuid,
    values: &[String],
) -> Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} (account_id, {column}, user_id) SELECT $1, v, $2 FROM UNNEST($3::text[]) AS v"
    )))
    .bind(account)
    .bind(user)
    .bind(values)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn insert_user(
    conn: &mut PgConnection,
    account: Uuid,
    u: &NewUser,
    token: &TokenRecord,
    change: &Change,
) -> Result<User> {
    check_roles(conn, account, &u.roles).await?;
    if let Some(room) = u.room_id {
        // FOR KEY SHARE keeps the room from being deleted before the
        // membership below refers to it.
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM rooms WHERE account_id = $1 AND id = $2 FOR KEY SHARE",
        )
        .bind(account)
        .bind(room)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
        if found.is_none() {
            return Err(StoreError::NotFound("room"));
        }
    }
    if u.roles.iter().any(|r| r == "bot") {
        check_bot_cap(conn, account, None).await?;
    }
    insert_user_rows(conn, account, u, token, change).await
}

/// Whether creating `u` must first read other rows (custom roles, its
/// room, the bot cap) inside a transaction; most creates need not.
fn needs_checks(u: &NewUser) -> bool {
    u.room_id.is_some()
        || u.roles
            .iter()
            .any(|r| r == "bot" || !BUILTIN_ROLES.contains(&r.as_str()))
}

/// Every row of a new user — the user, tags, roles, memberships, the first
/// token and the `user.created` event — in one statement, so one round trip
/// (and, outside a transaction, one commit). Joining more default rooms than
/// the per-user room cap allows makes the statement refuse itself, writing
/// nothing.
async fn insert_user_rows(
    conn: &mut PgConnection,
    account: Uuid,
    u: &NewUser,
    token: &TokenRecord,
    change: &Change,
) -> Result<User> {
    let at = change.at;
    let created = super::inserted_user(account, u, at);
    let joined_defaults: i64 = sqlx::query_scalar(
        "WITH new_user AS (\
           INSERT INTO users (id, account_id, room_id, custom_id, username, username_norm, name, nickname, bio, \
           email, email_norm, email_verified, phone, profile_picture, link, status, status_message, active, roles, \
           metadata, tags, custom_fields, require_password_change, password_hash, tokens_valid_after, created_at, \
           updated_at, last_seen_at, deactivated_at) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'offline', $16, $17, $18, \
           $19, $20, $21, $22, $23, NULL, $24, $24, NULL, $25)), \
         new_tags AS (INSERT INTO user_tags (account_id, tag, user_id) SELECT $2, v, $1 FROM UNNEST($26::text[]) AS v), \
         new_roles AS (INSERT INTO user_roles (account_id, role, user_id) SELECT $2, v, $1 FROM UNNEST($27::text[]) AS v), \
         new_room AS (INSERT INTO room_members (account_id, room_id, user_id, role, joined_at) \
           SELECT $2, $3, $1, 'user', $24 WHERE $3::uuid IS NOT NULL), \
         new_defaults AS (INSERT INTO room_members (account_id, room_id, user_id, role, joined_at) \
           SELECT account_id, id, $1, 'user', $24 FROM rooms \
           WHERE $28 AND account_id = $2 AND is_default AND id IS DISTINCT FROM $3::uuid RETURNING 1), \
         new_token AS (INSERT INTO tokens (id, account_id, user_id, kind, room_id, created_at, expires_at, revoked_at) \
           VALUES ($29, $2, $30, $31, $32, $33, $34, NULL)), \
         new_event AS (INSERT INTO events (id, account_id, type, actor_kind, actor_id, subject_kind, subject_id, \
           data, at, request_id) VALUES ($37, $2, 'user.created', $38, $39, 'user', $40, $41, $24, $42)) \
         SELECT CASE WHEN count(*) + $35 > $36 THEN roster_refuse('room cap') ELSE count(*) END \
         FROM new_defaults",
    )
    .bind(u.id)
    .bind(account)
    .bind(u.room_id)
    .bind(&u.custom_id)
    .bind(&u.username)
    .bind(u.username.as_deref().map(normalize_username))
    .bind(&u.name)
    .bind(&u.nickname)
    .bind(&u.bio)
    .bind(&u.email)
    .bind(u.email.as_deref().map(normalize_email))
    .bind(u.email_verified)
    .bind(&u.phone)
    .bind(&u.profile_picture)
    .bind(&u.link)
    .bind(&u.status_message)
    .bind(u.active)
    .bind(Json(&u.roles))
    .bind(Json(&u.metadata))
    .bind(Json(&u.tags))
    .bind(Json(&u.custom_fields))
    .bind(u.require_password_change)
    .bind(&u.password_hash)
    .bind(at)
    .bind(if u.active { None } else { Some(at) })
    .bind(&u.tags)
    .bind(&u.roles)
    .bind(u.join_default_rooms)
    .bind(token.id)
    .bind(token.user_id)
    .bind(token.kind)
    .bind(token.room_id)
    .bind(token.created_at)
    .bind(token.expires_at)
    .bind(i64::from(u.room_id.is_some()))
    .bind(MAX_ROOMS_PER_USER)
    .bind(Uuid::now_v7())
    .bind(change.actor.kind)
    .bind(change.actor.id)
    .bind(u.id.to_string())
    .bind(Json(super::user_data(&created)))
    .bind(&change.request_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err)?;
    debug_assert!(joined_defaults + i64::from(u.room_id.is_some()) <= MAX_ROOMS_PER_USER);
    Ok(created)
}

/// Appends one event to the log, in the caller's transaction.
async fn insert_event(
    c: &mut PgConnection,
    account: Option<Uuid>,
    change: &Change,
    kind: &str,
    subject: (&str, String),
    data: serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (id, account_id, type, actor_kind, actor_id, subject_kind, subject_id, data, at, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(Uuid::now_v7())
    .bind(account)
    .bind(kind)
    .bind(change.actor.kind)
    .bind(change.actor.id)
    .bind(subject.0)
    .bind(subject.1)
    .bind(Json(data))
    .bind(change.at)
    .bind(&change.request_id)
    .execute(&mut *c)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// One event per type of a user's change, each carrying the user after it.
async fn insert_user_events(
    c: &mut PgConnection,
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
            super::user_data(user),
        )
        .await?;
    }
    Ok(())
}

async fn patch_user(
    conn: &mut PgConnection,
    account: Uuid,
    id: Uuid,
    p: &UserPatch,
    at: OffsetDateTime,
) -> Result<User> {
    if let Some(roles) = &p.roles {
        check_roles(conn, account, roles).await?;
    }
    let adds_bot = p
        .roles
        .as_ref()
        .is_some_and(|roles| roles.iter().any(|r| r == "bot"));
    if adds_bot {
        // Before the user's row, in the same order as every bot write.
        lock_account(conn, account).await?;
    }
    let current = select_user(conn, account, id, true).await?;
    if adds_bot && !current.roles.iter().any(|r| r == "bot") {
        check_bot_cap(conn, account, Some(id)).await?;
    }
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("UPDATE users SET updated_at = ");
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
    set!("roles", p.roles.clone().map(Json));
    set!("metadata", p.metadata.clone().map(Json));
    set!("tags", p.tags.clone().map(Json));
    if let Some(change) = &p.custom_fields {
        let merged = super::merged_custom_fields(&current.custom_fields, change);
        q.push(", custom_fields = ").push_bind(Json(merged));
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
    select_user(conn, account, id, false).await
}

async fn insert_api_key(c: &mut PgConnection, account: Uuid, key: &NewApiKey) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, name, scope, secret_hash, created_at, last_used_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)",
    )
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

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn get_state(&self, key: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM server_state WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn put_state_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO server_state (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT kid, private_der, public_x, created_at, retired_at FROM signing_keys ORDER BY created_at",
        )
        .fetch_all(&self.pool)
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
        sqlx::query(
            "INSERT INTO signing_keys (kid, private_der, public_x, created_at, retired_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.kid)
        .bind(&key.private_der)
        .bind(&key.public_x)
        .bind(key.created_at)
        .bind(key.retired_at)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn create_account(&self, account: &Account, first_key: &NewApiKey) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO accounts (id, name, settings, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(account.id)
        .bind(&account.name)
        .bind(Json(Settings::default()))
        .bind(account.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_api_key(&mut tx, account.id, first_key).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn list_accounts(&self, page: Page) -> Result<Paged<Account>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at FROM accounts WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
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
        let row = sqlx::query("SELECT id, name, created_at FROM accounts WHERE id = $1")
            .bind(account)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound("account"))?;
        account_from_row(&row).map_err(map_err)
    }

    async fn get_settings(&self, account: Uuid) -> Result<Settings> {
        let s: Json<Settings> = sqlx::query_scalar("SELECT settings FROM accounts WHERE id = $1")
            .bind(account)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound("account"))?;
        Ok(s.0)
    }

    async fn update_custom_fields(
        &self,
        account: Uuid,
        change: BTreeMap<String, Option<CustomFieldDef>>,
    ) -> Result<Settings> {
        let mut tx = self.begin().await?;
        let Json(mut settings): Json<Settings> =
            sqlx::query_scalar("SELECT settings FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
                .bind(account)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound("account"))?;
        settings.apply_custom_fields(change)?;
        sqlx::query("UPDATE accounts SET settings = $1 WHERE id = $2")
            .bind(Json(&settings))
            .bind(account)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(settings)
    }

    async fn create_api_key(&self, account: Uuid, key: &NewApiKey) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        insert_api_key(&mut conn, account, key).await
    }

    async fn list_api_keys(&self, account: Uuid, page: Page) -> Result<Paged<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, name, scope, created_at, last_used_at FROM api_keys \
             WHERE account_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
        )
        .bind(account)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
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
        let r = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE account_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(account)
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("api key"));
        }
        Ok(())
    }

    async fn api_key_for_auth(&self, key: Uuid) -> Result<Option<ApiKeyAuth>> {
        let row = sqlx::query(
            "SELECT id, account_id, scope, secret_hash FROM api_keys WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(key)
        .fetch_optional(&self.pool)
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
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(at)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn create_room(
        &self,
        account: Uuid,
        id: Uuid,
        room: &NewRoom,
        at: OffsetDateTime,
    ) -> Result<Room> {
        let mut tx = self.begin().await?;
        if let Some(space) = room.space_id {
            exists(
                &mut tx,
                "SELECT 1 FROM spaces WHERE account_id = $1 AND id = $2",
                account,
                space,
                "space",
            )
            .await?;
        }
        sqlx::query(
            "INSERT INTO rooms (id, account_id, space_id, name, visibility, is_default, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(id)
        .bind(account)
        .bind(room.space_id)
        .bind(&room.name)
        .bind(room.visibility.as_str())
        .bind(room.is_default)
        .bind(room.created_by)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(creator) = room.created_by {
            // The creator (when a user of this account) moderates the room.
            sqlx::query(
                "INSERT INTO room_members (account_id, room_id, user_id, role, joined_at) \
                 SELECT $1, $2, id, 'moderator', $3 FROM users WHERE account_id = $1 AND id = $4",
            )
            .bind(account)
            .bind(id)
            .bind(at)
            .bind(creator)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(Room {
            id,
            account_id: account,
            space_id: room.space_id,
            name: room.name.clone(),
            visibility: room.visibility,
            is_default: room.is_default,
            created_by: room.created_by,
            created_at: at,
            updated_at: at,
        })
    }

    async fn list_rooms(
        &self,
        account: Uuid,
        visibility: Option<Visibility>,
        page: Page,
    ) -> Result<Paged<Room>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms WHERE account_id = $1 AND ($2::text IS NULL OR visibility = $2) \
             AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4"
        )))
        .bind(account)
        .bind(visibility.map(Visibility::as_str))
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
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
            "SELECT {ROOM_COLUMNS} FROM rooms WHERE account_id = $1 AND id = $2"
        )))
        .bind(account)
        .bind(room)
        .fetch_optional(&self.pool)
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
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE rooms SET name = COALESCE($1, name), visibility = COALESCE($2, visibility), \
             is_default = COALESCE($3, is_default), updated_at = $4 WHERE account_id = $5 AND id = $6 \
             RETURNING {ROOM_COLUMNS}"
        )))
        .bind(&patch.name)
        .bind(patch.visibility.map(Visibility::as_str))
        .bind(patch.is_default)
        .bind(at)
        .bind(account)
        .bind(room)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("room"))?;
        room_from_row(&row).map_err(map_err)
    }

    async fn delete_room(&self, account: Uuid, room: Uuid) -> Result<()> {
        // Memberships go with the room (ON DELETE CASCADE).
        let r = sqlx::query("DELETE FROM rooms WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(room)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("room"));
        }
        Ok(())
    }

    async fn create_user(
        &self,
        account: Uuid,
        user: &NewUser,
        token: &TokenRecord,
        change: &Change,
    ) -> Result<User> {
        if needs_checks(user) {
            let mut tx = self.begin().await?;
            let created = insert_user(&mut tx, account, user, token, change).await?;
            tx.commit().await.map_err(map_err)?;
            return Ok(created);
        }
        // One statement: atomic, and committed when it answers.
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        insert_user_rows(&mut conn, account, user, token, change).await
    }

    async fn get_user(&self, account: Uuid, user: Uuid) -> Result<User> {
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        select_user(&mut conn, account, user, false).await
    }

    async fn list_users(
        &self,
        account: Uuid,
        filter: &UserFilter,
        page: Page,
    ) -> Result<Paged<User>> {
        // A room, role or tag filter drives the query from its own table, in
        // that table's (account, value, user) index order, so that a page reads
        // about `limit` rows however rare the value is (PostgreSQL then walks that index);
        // without one, the users' primary key does.
        let driver = super::list_driver(filter);
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new(super::user_list_select(filter, driver, "JOIN"));
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
        let rows = q.build().fetch_all(&self.pool).await.map_err(map_err)?;
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
        let mut tx = self.begin().await?;
        let updated = patch_user(&mut tx, account, user, patch, change.at).await?;
        if let Some(mail) = mail {
            insert_user_mail(&mut tx, account, &updated, change.at, mail).await?;
        }
        let kinds = super::user_event_types(patch);
        insert_user_events(&mut tx, account, change, kinds, &updated).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(updated)
    }

    async fn set_user_active(
        &self,
        account: Uuid,
        user: Uuid,
        active: bool,
        change: &Change,
    ) -> Result<User> {
        let cols = USER_COLUMNS;
        let query = if active {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE users SET active = TRUE, deactivated_at = NULL, updated_at = $1 \
                 WHERE account_id = $2 AND id = $3 RETURNING {cols}"
            )))
        } else {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE users SET active = FALSE, deactivated_at = COALESCE(deactivated_at, $1), \
                 tokens_valid_after = $1, updated_at = $1 WHERE account_id = $2 AND id = $3 RETURNING {cols}"
            )))
        };
        let mut tx = self.begin().await?;
        let row = query
            .bind(change.at)
            .bind(account)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound("user"))?;
        let updated = user_from_row(&row).map_err(map_err)?;
        let kind = if active {
            "user.reactivated"
        } else {
            "user.deactivated"
        };
        insert_user_events(&mut tx, account, change, &[kind], &updated).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(updated)
    }

    async fn delete_user(&self, account: Uuid, user: Uuid, change: &Change) -> Result<()> {
        // Tags, roles, memberships and tokens go with the user (ON DELETE CASCADE).
        let cols = USER_COLUMNS;
        let mut tx = self.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM users WHERE account_id = $1 AND id = $2 RETURNING {cols}"
        )))
        .bind(account)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("user"))?;
        let gone = user_from_row(&row).map_err(map_err)?;
        insert_user_events(&mut tx, account, change, &["user.deleted"], &gone).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    async fn events_after(
        &self,
        account: Option<Uuid>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>> {
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        // The high-water mark: every seq handed out so far (`high`) belongs
        // to a transaction that had its id before it took the seq (an event
        // is always written after its change's own rows). Once every
        // transaction running when `high` was read has ended, each seq up to
        // `high` is committed or gone for good.
        let high: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_seq",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
        let horizon: String =
            sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
                .fetch_one(&mut *conn)
                .await
                .map_err(map_err)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let settled: bool =
                sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8")
                    .bind(&horizon)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(map_err)?;
            if settled {
                break;
            }
            if std::time::Instant::now() > deadline {
                // A long transaction holds the mark back: answer what is
                // settled so far (nothing new), the reader asks again.
                return Ok(Vec::new());
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let rows: Vec<super::EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM events WHERE seq > $1 AND seq <= $2 AND ($3::uuid IS NULL OR account_id = $3) \
             ORDER BY seq LIMIT $4",
            super::EVENT_COLUMNS
        )))
        .bind(after)
        .bind(high)
        .bind(account)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
        Ok(rows.into_iter().map(super::event_from_row).collect())
    }

    async fn create_space(&self, account: Uuid, space: &Space) -> Result<Space> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO spaces (id, account_id, name, visibility, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(space.id)
            .bind(account)
            .bind(&space.name)
            .bind(space.visibility.as_str())
            .bind(space.created_by)
            .bind(space.created_at)
            .bind(space.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if let Some(creator) = space.created_by {
            sqlx::query(
                "INSERT INTO space_members (account_id, space_id, user_id, role, joined_at) \
                 SELECT $1, $2, id, 'owner', $3 FROM users WHERE account_id = $1 AND id = $4",
            )
            .bind(account)
            .bind(space.id)
            .bind(space.created_at)
            .bind(creator)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(space.clone())
    }

    async fn list_spaces(
        &self,
        account: Uuid,
        viewer: Option<Uuid>,
        page: Page,
    ) -> Result<Paged<Space>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SPACE_COLUMNS} FROM spaces s WHERE account_id = $1 AND ($2::uuid IS NULL OR id > $2) \
             AND ($3::uuid IS NULL OR visibility = 'public' OR EXISTS (SELECT 1 FROM space_members m WHERE m.space_id = s.id AND m.user_id = $3)) \
             ORDER BY id LIMIT $4"
        )))
        .bind(account)
        .bind(page.after)
        .bind(viewer)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
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
            "SELECT {SPACE_COLUMNS} FROM spaces WHERE account_id = $1 AND id = $2"
        )))
        .bind(account)
        .bind(space)
        .fetch_optional(&self.pool)
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
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE spaces SET name = COALESCE($1, name), visibility = COALESCE($2, visibility), updated_at = $3 \
             WHERE account_id = $4 AND id = $5 RETURNING {SPACE_COLUMNS}"
        )))
        .bind(name)
        .bind(visibility.map(Visibility::as_str))
        .bind(at)
        .bind(account)
        .bind(space)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("space"))?;
        space_from_row(&row).map_err(map_err)
    }

    async fn delete_space(&self, account: Uuid, space: Uuid) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM rooms WHERE account_id = $1 AND space_id = $2")
            .bind(account)
            .bind(space)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let r = sqlx::query("DELETE FROM spaces WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(space)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("space"));
        }
        tx.commit().await.map_err(map_err)
    }

    async fn space_role(
        &self,
        account: Uuid,
        space: Uuid,
        user: Uuid,
    ) -> Result<Option<SpaceRole>> {
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM space_members WHERE account_id = $1 AND space_id = $2 AND user_id = $3")
            .bind(account)
            .bind(space)
            .bind(user)
            .fetch_optional(&self.pool)
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
        let mut tx = self.begin().await?;
        exists(
            &mut tx,
            "SELECT 1 FROM spaces WHERE account_id = $1 AND id = $2",
            account,
            space,
            "space",
        )
        .await?;
        exists(
            &mut tx,
            "SELECT 1 FROM users WHERE account_id = $1 AND id = $2",
            account,
            user,
            "user",
        )
        .await?;
        let conflict = if only_if_absent {
            "DO NOTHING"
        } else {
            "DO UPDATE SET role = excluded.role"
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO space_members (account_id, space_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (space_id, user_id) {conflict}"
        )))
        .bind(account)
        .bind(space)
        .bind(user)
        .bind(role.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let row = sqlx::query("SELECT user_id, role, joined_at FROM space_members WHERE space_id = $1 AND user_id = $2")
            .bind(space)
            .bind(user)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        member_from_row(&row).map_err(map_err)
    }

    async fn remove_space_member(&self, account: Uuid, space: Uuid, user: Uuid) -> Result<()> {
        let r = sqlx::query(
            "DELETE FROM space_members WHERE account_id = $1 AND space_id = $2 AND user_id = $3",
        )
        .bind(account)
        .bind(space)
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("member"));
        }
        Ok(())
    }

    async fn list_space_members(
        &self,
        account: Uuid,
        space: Uuid,
        page: Page,
    ) -> Result<Paged<Member>> {
        let rows = sqlx::query(
            "SELECT user_id, role, joined_at FROM space_members WHERE account_id = $1 AND space_id = $2 \
             AND ($3::uuid IS NULL OR user_id > $3) ORDER BY user_id LIMIT $4",
        )
        .bind(account)
        .bind(space)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
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
            "SELECT {ROOM_COLUMNS} FROM rooms r WHERE account_id = $1 AND ($2::uuid IS NULL OR id > $2) \
             AND (visibility = 'public' OR EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = r.id AND m.user_id = $3)) \
             ORDER BY id LIMIT $4"
        )))
        .bind(account)
        .bind(page.after)
        .bind(user)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
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
            "SELECT role FROM room_members WHERE account_id = $1 AND room_id = $2 AND user_id = $3",
        )
        .bind(account)
        .bind(room)
        .bind(user)
        .fetch_optional(&self.pool)
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
        let mut tx = self.begin().await?;
        exists(
            &mut tx,
            "SELECT 1 FROM rooms WHERE account_id = $1 AND id = $2",
            account,
            room,
            "room",
        )
        .await?;
        // Locking the user's row serializes their joins, so the room cap
        // holds under concurrent joins.
        exists(
            &mut tx,
            "SELECT 1 FROM users WHERE account_id = $1 AND id = $2 FOR NO KEY UPDATE",
            account,
            user,
            "user",
        )
        .await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2")
                .bind(room)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        if existing.is_none() {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM room_members WHERE user_id = $1")
                .bind(user)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
            if n >= MAX_ROOMS_PER_USER {
                return Err(super::room_cap_conflict());
            }
            sqlx::query("INSERT INTO room_members (account_id, room_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(account)
                .bind(room)
                .bind(user)
                .bind(role.as_str())
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        } else if !only_if_absent {
            sqlx::query("UPDATE room_members SET role = $1 WHERE room_id = $2 AND user_id = $3")
                .bind(role.as_str())
                .bind(room)
                .bind(user)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        let row = sqlx::query(
            "SELECT user_id, role, joined_at FROM room_members WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room)
        .bind(user)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        member_from_row(&row).map_err(map_err)
    }

    async fn remove_room_member(&self, account: Uuid, room: Uuid, user: Uuid) -> Result<()> {
        let r = sqlx::query(
            "DELETE FROM room_members WHERE account_id = $1 AND room_id = $2 AND user_id = $3",
        )
        .bind(account)
        .bind(room)
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("member"));
        }
        Ok(())
    }

    async fn list_room_members(
        &self,
        account: Uuid,
        room: Uuid,
        page: Page,
    ) -> Result<Paged<Member>> {
        let rows = sqlx::query(
            "SELECT user_id, role, joined_at FROM room_members WHERE account_id = $1 AND room_id = $2 \
             AND ($3::uuid IS NULL OR user_id > $3) ORDER BY user_id LIMIT $4",
        )
        .bind(account)
        .bind(room)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
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
        let id = Uuid::try_parse(&role.id).map_err(|e| StoreError::Other(e.into()))?;
        sqlx::query("INSERT INTO roles (id, account_id, name, name_norm, description, permissions, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)")
            .bind(id)
            .bind(account)
            .bind(&role.name)
            .bind(role.name.to_lowercase())
            .bind(&role.description)
            .bind(sqlx::types::Json(&role.permissions))
            .bind(role.created_at)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(role.clone())
    }

    async fn list_roles(&self, account: Uuid) -> Result<Vec<Role>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROLE_COLUMNS} FROM roles WHERE account_id = $1 ORDER BY id"
        )))
        .bind(account)
        .fetch_all(&self.pool)
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
            "SELECT {ROLE_COLUMNS} FROM roles WHERE account_id = $1 AND id = $2"
        )))
        .bind(account)
        .bind(id)
        .fetch_optional(&self.pool)
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
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE roles SET name = COALESCE($1, name), name_norm = COALESCE($2, name_norm), \
             description = CASE WHEN $3 THEN $4 ELSE description END, \
             permissions = COALESCE($5, permissions), updated_at = $6 \
             WHERE account_id = $7 AND id = $8 RETURNING {ROLE_COLUMNS}"
        )))
        .bind(name)
        .bind(name.map(str::to_lowercase))
        .bind(description.is_some())
        .bind(description.flatten())
        .bind(permissions.map(sqlx::types::Json))
        .bind(at)
        .bind(account)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("role"))?;
        role_from_row(&row).map_err(map_err)
    }

    async fn delete_role(&self, account: Uuid, role: &str) -> Result<()> {
        let id = Uuid::try_parse(role).map_err(|_| StoreError::NotFound("role"))?;
        let mut tx = self.begin().await?;
        // Lock the role so no user is given it while we check.
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM roles WHERE account_id = $1 AND id = $2 FOR UPDATE")
                .bind(account)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        if found.is_none() {
            return Err(StoreError::NotFound("role"));
        }
        let held: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM user_roles WHERE account_id = $1 AND role = $2 LIMIT 1",
        )
        .bind(account)
        .bind(role)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if held.is_some() {
            return Err(StoreError::conflict(
                "id",
                "users still hold this role; take it from them first",
            ));
        }
        sqlx::query("DELETE FROM roles WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn create_invite(&self, account: Uuid, invite: &Invite) -> Result<Invite> {
        let mut tx = self.begin().await?;
        exists(
            &mut tx,
            "SELECT 1 FROM spaces WHERE account_id = $1 AND id = $2",
            account,
            invite.space_id,
            "space",
        )
        .await?;
        sqlx::query("INSERT INTO invites (id, account_id, space_id, role, max_uses, uses, expires_at, revoked_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6, NULL, $7, $8)")
            .bind(invite.id)
            .bind(account)
            .bind(invite.space_id)
            .bind(invite.role.as_str())
            .bind(i32::try_from(invite.max_uses).unwrap_or(i32::MAX))
            .bind(invite.expires_at)
            .bind(invite.created_by)
            .bind(invite.created_at)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(invite.clone())
    }

    async fn list_invites(&self, account: Uuid, space: Uuid, page: Page) -> Result<Paged<Invite>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVITE_COLUMNS} FROM invites WHERE account_id = $1 AND space_id = $2 AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4"
        )))
        .bind(account)
        .bind(space)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
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
        let r = sqlx::query("UPDATE invites SET revoked_at = COALESCE(revoked_at, $1) WHERE account_id = $2 AND space_id = $3 AND id = $4")
            .bind(at)
            .bind(account)
            .bind(space)
            .bind(invite)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("invite"));
        }
        Ok(())
    }

    async fn activate_invite(
        &self,
        account: Uuid,
        space: Uuid,
        invite: Uuid,
        user: Uuid,
        at: OffsetDateTime,
    ) -> Result<Member> {
        let mut tx = self.begin().await?;
        // One conditional update: of concurrent activations of a one-use
        // invite exactly one sees a row.
        let used = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE invites SET uses = uses + 1 WHERE account_id = $1 AND space_id = $2 AND id = $3 \
             AND revoked_at IS NULL AND uses < max_uses AND (expires_at IS NULL OR expires_at > $4) \
             RETURNING {INVITE_COLUMNS}"
        )))
        .bind(account)
        .bind(space)
        .bind(invite)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let found = match used {
            Some(row) => invite_from_row(&row).map_err(map_err)?,
            None => {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {INVITE_COLUMNS} FROM invites WHERE account_id = $1 AND space_id = $2 AND id = $3"
                )))
                .bind(account)
                .bind(space)
                .bind(invite)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound("invite"))?;
                let found = invite_from_row(&row).map_err(map_err)?;
                let why =
                    super::invite_gone(&found, at).unwrap_or(crate::domain::access::Gone::UsedUp);
                return Err(StoreError::Gone(why, "invite"));
            }
        };
        sqlx::query(
            "INSERT INTO space_members (account_id, space_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4, $5) \
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
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let row = sqlx::query("SELECT user_id, role, joined_at FROM space_members WHERE space_id = $1 AND user_id = $2")
            .bind(space)
            .bind(user)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        member_from_row(&row).map_err(map_err)
    }

    async fn create_link(&self, account: Uuid, link: &AccessLink) -> Result<AccessLink> {
        let mut tx = self.begin().await?;
        exists(
            &mut tx,
            "SELECT 1 FROM rooms WHERE account_id = $1 AND id = $2",
            account,
            link.room_id,
            "room",
        )
        .await?;
        sqlx::query("INSERT INTO access_links (id, account_id, room_id, username, role, external_user_id, is_permanent, expires_at, used_at, revoked_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10)")
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
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(link.clone())
    }

    async fn list_links(&self, account: Uuid, room: Uuid, page: Page) -> Result<Paged<AccessLink>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LINK_COLUMNS} FROM access_links WHERE account_id = $1 AND room_id = $2 AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4"
        )))
        .bind(account)
        .bind(room)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
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
        let r = sqlx::query("UPDATE access_links SET revoked_at = COALESCE(revoked_at, $1) WHERE account_id = $2 AND room_id = $3 AND id = $4")
            .bind(at)
            .bind(account)
            .bind(room)
            .bind(link)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("access link"));
        }
        Ok(())
    }

    async fn use_link(&self, account: Uuid, link: Uuid, at: OffsetDateTime) -> Result<AccessLink> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LINK_COLUMNS} FROM access_links WHERE account_id = $1 AND id = $2 FOR UPDATE"
        )))
        .bind(account)
        .bind(link)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("access link"))?;
        let found = link_from_row(&row).map_err(map_err)?;
        if let Some(why) = super::link_gone(&found, at) {
            return Err(StoreError::Gone(why, "access link"));
        }
        if !found.is_permanent {
            sqlx::query("UPDATE access_links SET used_at = $1 WHERE id = $2")
                .bind(at)
                .bind(link)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(found)
    }

    async fn is_room_member(&self, account: Uuid, room: Uuid, user: Uuid) -> Result<bool> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM room_members WHERE account_id = $1 AND room_id = $2 AND user_id = $3",
        )
        .bind(account)
        .bind(room)
        .bind(user)
        .fetch_optional(&self.pool)
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
        sqlx::query(
            "UPDATE users SET status = $1, last_seen_at = $2 WHERE account_id = $3 AND id = $4",
        )
        .bind(status.as_str())
        .bind(at)
        .bind(account)
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn reset_presence(&self, at: OffsetDateTime) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE users SET status = 'offline', last_seen_at = $1 WHERE status <> 'offline'",
        )
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected())
    }

    async fn check_user_token(
        &self,
        account: Uuid,
        user: Uuid,
        jti: Uuid,
        now: OffsetDateTime,
    ) -> Result<TokenCheck> {
        let cols = super::user_columns_of("u");
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {cols} FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.id = $1 AND t.user_id = $2 AND t.account_id = $3 AND u.account_id = $3 \
             AND t.revoked_at IS NULL AND t.expires_at > $4 AND u.active \
             AND (u.tokens_valid_after IS NULL OR u.tokens_valid_after <= t.created_at)"
        )))
        .bind(jti)
        .bind(user)
        .bind(account)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        match row {
            None => Ok(TokenCheck::Invalid),
            Some(row) => Ok(TokenCheck::Valid(Box::new(
                user_from_row(&row).map_err(map_err)?,
            ))),
        }
    }

    // --- sessions ---------------------------------------------------------------

    async fn find_login(
        &self,
        account: Uuid,
        name: &sessions::LoginName,
    ) -> Result<Option<sessions::LoginCandidate>> {
        let (column, value) = name.column_and_value();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE account_id = $1 AND {column} = $2"
        )))
        .bind(account)
        .bind(value)
        .fetch_optional(&self.pool)
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
            sqlx::query_scalar("SELECT password_hash FROM users WHERE account_id = $1 AND id = $2")
                .bind(account)
                .bind(user)
                .fetch_optional(&self.pool)
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
        let r = sqlx::query(
            "UPDATE users SET password_hash = $1, updated_at = $2 WHERE account_id = $3 AND id = $4",
        )
        .bind(hash)
        .bind(at)
        .bind(account)
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }

    async fn create_session(&self, account: Uuid, s: &sessions::NewSession) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, account_id, user_id, created_at, revoked_at) VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(s.id)
        .bind(account)
        .bind(s.user_id)
        .bind(s.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_next_tokens(&mut tx, account, s.id, s.user_id, &s.tokens).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn refresh_token_owner(&self, account: Uuid, hash: &[u8]) -> Result<Option<Uuid>> {
        sqlx::query_scalar("SELECT user_id FROM refresh_tokens WHERE hash = $1 AND account_id = $2")
            .bind(hash)
            .bind(account)
            .fetch_optional(&self.pool)
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
        let mut tx = self.begin().await?;
        // Spending the token and finding it already spent are one row lock
        // apart: of two concurrent refreshes, exactly one wins and the other
        // is reuse.
        let spent: Option<(Uuid, Uuid, OffsetDateTime)> = sqlx::query_as(
            "UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2 AND account_id = $3 \
             AND used_at IS NULL AND expires_at > $1 RETURNING session_id, user_id, created_at",
        )
        .bind(now)
        .bind(presented)
        .bind(account)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some((session, user, issued)) = spent else {
            let used: Option<(Uuid, Uuid)> = sqlx::query_as(
                "SELECT session_id, user_id FROM refresh_tokens WHERE hash = $1 AND account_id = $2 AND used_at IS NOT NULL",
            )
            .bind(presented)
            .bind(account)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
            return match used {
                None => Ok(sessions::Refreshed::Invalid),
                Some((session, user)) => {
                    let mut revoked = revoke_sessions(&mut tx, "id = $2", session, now).await?;
                    tx.commit().await.map_err(map_err)?;
                    revoked.user_id = Some(user);
                    Ok(sessions::Refreshed::Reused {
                        user_id: user,
                        revoked,
                    })
                }
            };
        };
        let ok: Option<bool> = sqlx::query_scalar(
            "SELECT s.revoked_at IS NULL AND u.active \
             AND (u.tokens_valid_after IS NULL OR u.tokens_valid_after <= $3) \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1 AND u.id = $2 FOR SHARE OF s",
        )
        .bind(session)
        .bind(user)
        .bind(issued)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if ok != Some(true) || next.access.user_id != user {
            return Ok(sessions::Refreshed::Invalid);
        }
        insert_next_tokens(&mut tx, account, session, user, next).await?;
        let fresh = select_user(&mut tx, account, user, false).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(sessions::Refreshed::Rotated(Box::new(fresh)))
    }

    async fn end_session(
        &self,
        account: Uuid,
        by: &sessions::SessionRef,
        at: OffsetDateTime,
    ) -> Result<sessions::Revoked> {
        let mut tx = self.begin().await?;
        let found: Option<(Option<Uuid>, Uuid, Uuid)> = match by {
            sessions::SessionRef::Refresh(hash) => sqlx::query_as(
                "SELECT session_id, user_id, user_id FROM refresh_tokens WHERE hash = $1 AND account_id = $2",
            )
            .bind(hash.clone()),
            sessions::SessionRef::Token(id) => sqlx::query_as(
                "SELECT session_id, id, user_id FROM tokens WHERE id = $1 AND account_id = $2",
            )
            .bind(*id),
        }
        .bind(account)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let (session, token, user) = found.ok_or(StoreError::NotFound("session"))?;
        let mut revoked = match session {
            Some(session) => revoke_sessions(&mut tx, "id = $2", session, at).await?,
            None => {
                sqlx::query(
                    "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
                )
                .bind(at)
                .bind(token)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                sessions::Revoked {
                    user_id: None,
                    tokens: vec![token],
                }
            }
        };
        tx.commit().await.map_err(map_err)?;
        revoked.user_id = Some(user);
        Ok(revoked)
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
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE users SET password_hash = $1, require_password_change = FALSE, updated_at = $2 \
             WHERE account_id = $3 AND id = $4",
        )
        .bind(hash)
        .bind(at)
        .bind(account)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        let mut revoked = sessions::Revoked {
            user_id: Some(user),
            tokens: vec![],
        };
        if revoke_others {
            let keep: Option<Uuid> =
                sqlx::query_scalar("SELECT session_id FROM tokens WHERE id = $1")
                    .bind(keep_token)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .flatten();
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND id IS DISTINCT FROM $3",
            )
            .bind(at)
            .bind(user)
            .bind(keep)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            revoked.tokens = sqlx::query_scalar(
                "UPDATE tokens SET revoked_at = $1 WHERE user_id = $2 AND kind = 'access' \
                 AND revoked_at IS NULL AND session_id IS DISTINCT FROM $3 RETURNING id",
            )
            .bind(at)
            .bind(user)
            .bind(keep)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(revoked)
    }

    async fn issue_user_token(
        &self,
        account: Uuid,
        token: &TokenRecord,
        max_live: i64,
    ) -> Result<sessions::Revoked> {
        let mut tx = self.begin().await?;
        // The user's row lock serializes the cap: concurrent issues for one
        // user count one after another.
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM users WHERE account_id = $1 AND id = $2 FOR NO KEY UPDATE",
        )
        .bind(account)
        .bind(token.user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if found.is_none() {
            return Err(StoreError::NotFound("user"));
        }
        sqlx::query(
            "INSERT INTO tokens (id, account_id, user_id, kind, room_id, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, 'user', $4, $5, $6, NULL)",
        )
        .bind(token.id)
        .bind(account)
        .bind(token.user_id)
        .bind(token.room_id)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        // Ids are UUIDv7: their order is the order of issue.
        let tokens = sqlx::query_scalar(
            "UPDATE tokens SET revoked_at = $1 WHERE id IN (SELECT t.id FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.account_id = $2 AND t.user_id = $3 AND t.kind = 'user' AND t.revoked_at IS NULL \
             AND t.expires_at > $1 AND (u.tokens_valid_after IS NULL OR u.tokens_valid_after <= t.created_at) \
             ORDER BY t.id DESC OFFSET $4) RETURNING id",
        )
        .bind(token.created_at)
        .bind(account)
        .bind(token.user_id)
        .bind(max_live)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(sessions::Revoked {
            user_id: Some(token.user_id),
            tokens,
        })
    }

    async fn list_user_tokens(
        &self,
        account: Uuid,
        user: Uuid,
        now: OffsetDateTime,
        page: Page,
    ) -> Result<Paged<sessions::TokenInfo>> {
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        select_user(&mut conn, account, user, false).await?;
        let rows: Vec<TokenInfoRow> = sqlx::query_as(
            "SELECT t.id, t.room_id, t.created_at, t.expires_at, t.revoked_at FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.account_id = $1 AND t.user_id = $2 AND t.kind = 'user' AND t.revoked_at IS NULL \
             AND t.expires_at > $3 AND (u.tokens_valid_after IS NULL OR u.tokens_valid_after <= t.created_at) \
             AND ($4::uuid IS NULL OR t.id > $4) ORDER BY t.id LIMIT $5",
        )
        .bind(account)
        .bind(user)
        .bind(now)
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
        let row: Option<TokenInfoRow> = sqlx::query_as(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE account_id = $2 AND user_id = $3 AND id = $4 AND kind = 'user' \
             RETURNING id, room_id, created_at, expires_at, revoked_at",
        )
        .bind(at)
        .bind(account)
        .bind(user)
        .bind(token)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(token_info).ok_or(StoreError::NotFound("token"))
    }

    async fn revoke_tokens_before(
        &self,
        account: Uuid,
        user: Uuid,
        at: OffsetDateTime,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE users SET tokens_valid_after = $1 WHERE account_id = $2 AND id = $3",
        )
        .bind(at)
        .bind(account)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        revoke_sessions(&mut tx, "user_id = $2", user, at).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn set_signup_settings(
        &self,
        account: Uuid,
        signup: &crate::domain::settings::SignupSettings,
    ) -> Result<Settings> {
        let s: Json<Settings> = sqlx::query_scalar(
            "UPDATE accounts SET settings = jsonb_set(settings, '{signup}', $1) WHERE id = $2 RETURNING settings",
        )
        .bind(Json(signup))
        .bind(account)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("account"))?;
        Ok(s.0)
    }

    async fn request_password_reset(
        &self,
        account: Uuid,
        r: &sessions::NewPasswordReset,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO password_resets (hash, account_id, user_id, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&r.hash)
        .bind(account)
        .bind(r.user_id)
        .bind(r.created_at)
        .bind(r.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_mail(&mut tx, &r.mail).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn reset_password(
        &self,
        account: Uuid,
        hash: &[u8],
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<sessions::Revoked>> {
        let mut tx = self.begin().await?;
        let user: Option<Uuid> = sqlx::query_scalar(
            "UPDATE password_resets SET used_at = $1 WHERE hash = $2 AND account_id = $3 \
             AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
        )
        .bind(now)
        .bind(hash)
        .bind(account)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some(user) = user else { return Ok(None) };
        sqlx::query(
            "UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "UPDATE users SET password_hash = $1, require_password_change = FALSE, updated_at = $2 \
             WHERE account_id = $3 AND id = $4",
        )
        .bind(password_hash)
        .bind(now)
        .bind(account)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let mut revoked = revoke_sessions(&mut tx, "user_id = $2", user, now).await?;
        tx.commit().await.map_err(map_err)?;
        revoked.user_id = Some(user);
        Ok(Some(revoked))
    }

    async fn enqueue_mail(&self, mail: &sessions::OutboxMail) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        insert_mail(&mut conn, mail).await
    }

    async fn claim_mail(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: i64,
    ) -> Result<Vec<sessions::OutboxMail>> {
        // SKIP LOCKED: nodes polling together take different mails.
        let rows: Vec<MailRow> = sqlx::query_as(
            "UPDATE outbox SET claimed_until = $1 WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NULL \
             AND next_attempt_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $2) \
             ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id, account_id, to_addr, subject, body, created_at, attempts",
        )
        .bind(now + lease)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut mails: Vec<_> = rows.into_iter().map(mail_from_row).collect();
        mails.sort_by_key(|m: &sessions::OutboxMail| m.id);
        Ok(mails)
    }

    async fn finish_mail(
        &self,
        id: Uuid,
        at: OffsetDateTime,
        failure: Option<(&str, Option<OffsetDateTime>)>,
    ) -> Result<()> {
        match failure {
            None => sqlx::query(
                "UPDATE outbox SET sent_at = $1, attempts = attempts + 1, claimed_until = NULL WHERE id = $2",
            )
            .bind(at)
            .bind(id),
            Some((error, next)) => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $1, claimed_until = NULL, \
                 next_attempt_at = $2 WHERE id = $3",
            )
            .bind(error)
            .bind(next.unwrap_or(at + time::Duration::days(36_500)))
            .bind(id),
        }
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn create_user_with_mail(
        &self,
        account: Uuid,
        user: &NewUser,
        token: &TokenRecord,
        change: &Change,
        mail: &sessions::UserMail,
    ) -> Result<User> {
        let mut tx = self.begin().await?;
        let created = insert_user(&mut tx, account, user, token, change).await?;
        insert_user_mail(&mut tx, account, &created, change.at, mail).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(created)
    }

    async fn verify_email(
        &self,
        account: Uuid,
        hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<Option<User>> {
        let mut tx = self.begin().await?;
        let found: Option<(Uuid, String)> = sqlx::query_as(
            "UPDATE email_verifications SET used_at = $1 WHERE hash = $2 AND account_id = $3 \
             AND used_at IS NULL AND expires_at > $1 RETURNING user_id, email",
        )
        .bind(now)
        .bind(hash)
        .bind(account)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some((user, email)) = found else {
            return Ok(None);
        };
        let r = sqlx::query(
            "UPDATE users SET email_verified = TRUE, updated_at = $1 WHERE account_id = $2 AND id = $3 AND email = $4",
        )
        .bind(now)
        .bind(account)
        .bind(user)
        .bind(&email)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        let verified = select_user(&mut tx, account, user, false).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(verified))
    }

    async fn set_email_settings(
        &self,
        account: Uuid,
        email: &crate::domain::settings::EmailSettings,
    ) -> Result<Settings> {
        let s: Json<Settings> = sqlx::query_scalar(
            "UPDATE accounts SET settings = jsonb_set(settings, '{email}', $1) WHERE id = $2 RETURNING settings",
        )
        .bind(Json(email))
        .bind(account)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound("account"))?;
        Ok(s.0)
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRecord, at: OffsetDateTime) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, private_der, public_x, created_at, retired_at) VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(&key.kid)
        .bind(&key.private_der)
        .bind(&key.public_x)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }
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
    c: &mut PgConnection,
    account: Uuid,
    session: Uuid,
    user: Uuid,
    t: &sessions::NextTokens,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, session_id, account_id, user_id, created_at, expires_at, used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL)",
    )
    .bind(&t.refresh_hash)
    .bind(session)
    .bind(account)
    .bind(user)
    .bind(t.access.created_at)
    .bind(t.refresh_expires_at)
    .execute(&mut *c)
    .await
    .map_err(map_err)?;
    sqlx::query(
        "INSERT INTO tokens (id, account_id, user_id, kind, room_id, created_at, expires_at, revoked_at, session_id) \
         VALUES ($1, $2, $3, 'access', NULL, $4, $5, NULL, $6)",
    )
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

/// Revokes the sessions matching `filter` (`id = $2` or `user_id = $2`) and
/// every access token they produced; returns those tokens.
async fn revoke_sessions(
    c: &mut PgConnection,
    filter: &'static str,
    value: Uuid,
    at: OffsetDateTime,
) -> Result<sessions::Revoked> {
    let tokens = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "WITH s AS (UPDATE sessions SET revoked_at = COALESCE(revoked_at, $1) WHERE {filter} RETURNING id) \
         UPDATE tokens SET revoked_at = $1 WHERE session_id IN (SELECT id FROM s) AND revoked_at IS NULL RETURNING id"
    )))
    .bind(at)
    .bind(value)
    .fetch_all(&mut *c)
    .await
    .map_err(map_err)?;
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

/// The mail that goes with a user's create or change: the link to verify
/// their (new) address, and the messages.
async fn insert_user_mail(
    c: &mut PgConnection,
    account: Uuid,
    user: &User,
    at: OffsetDateTime,
    mail: &sessions::UserMail,
) -> Result<()> {
    if let (Some((hash, expires_at)), Some(email)) = (&mail.verification, &user.email) {
        sqlx::query(
            "INSERT INTO email_verifications (hash, account_id, user_id, email, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(hash)
        .bind(account)
        .bind(user.id)
        .bind(email)
        .bind(at)
        .bind(expires_at)
        .execute(&mut *c)
        .await
        .map_err(map_err)?;
    }
    for m in &mail.mails {
        insert_mail(c, m).await?;
    }
    Ok(())
}

async fn insert_mail(c: &mut PgConnection, m: &sessions::OutboxMail) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (id, account_id, to_addr, subject, body, created_at, attempts, next_attempt_at, \
         claimed_until, sent_at, last_error) VALUES ($1, $2, $3, $4, $5, $6, 0, $6, NULL, NULL, NULL)",
    )
    .bind(m.id)
    .bind(m.account_id)
    .bind(&m.to)
    .bind(&m.subject)
    .bind(&m.body)
    .bind(m.created_at)
    .execute(&mut *c)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// `NotFound(what)` unless `sql` (taking account and id) finds a row.
async fn exists(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    sql: &'static str,
    account: Uuid,
    id: Uuid,
    what: &'static str,
) -> Result<()> {
    let found: Option<i32> = sqlx::query_scalar(sql)
        .bind(account)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_err)?;
    found.map(|_| ()).ok_or(StoreError::NotFound(what))
}

/// Every role id must name a built-in role or a custom role of the account;
/// FOR SHARE keeps a role from being deleted while it is being given.
async fn check_roles(c: &mut PgConnection, account: Uuid, roles: &[String]) -> Result<()> {
    for r in roles
        .iter()
        .filter(|r| !BUILTIN_ROLES.contains(&r.as_str()))
    {
        let id = Uuid::try_parse(r).map_err(|_| StoreError::NotFound("role"))?;
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM roles WHERE account_id = $1 AND id = $2 FOR SHARE")
                .bind(account)
                .bind(id)
                .fetch_optional(&mut *c)
                .await
                .map_err(map_err)?;
        found.ok_or(StoreError::NotFound("role"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_transient_refusals_are_unavailable() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P03", "25006", "40001", "40P01",
        ] {
            assert!(unavailable_state(code), "{code}");
        }
        for code in ["23505", "23503", "22021", "42P01"] {
            assert!(!unavailable_state(code), "{code}");
        }
        assert!(matches!(
            map_err(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_err(sqlx::Error::RowNotFound),
            StoreError::Other(_)
        ));
    }

    #[tokio::test]
    async fn opening_an_unreachable_server_fails_fast() {
        let started = std::time::Instant::now();
        assert!(
            PostgresStore::open("postgres://postgres@127.0.0.1:1/roster")
                .await
                .is_err()
        );
        assert!(started.elapsed() < ACQUIRE_TIMEOUT * 2);
    }
}
