//! The scaled-out backend: PostgreSQL, shared by every Roster node.
//!
//! Each operation is one transaction: a single statement where one suffices,
//! otherwise an explicit `BEGIN … COMMIT` on a pooled connection, rolled back
//! when the operation fails. Uniqueness is left to the unique indexes, so
//! concurrent writers on several nodes are refused exactly like a second
//! writer on one. The limits that a count enforces (bots per account) are
//! serialized per account with a row lock on the account, taken in
//! `FOR NO KEY UPDATE` mode so that it does not block the foreign key checks
//! of ordinary inserts. The SQL itself is `store/sql.rs`, shared with
//! SQLite and compiled here with this backend's dialect; what is only here
//! is the one-statement create of a user and the event log's high-water mark.

use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{Result, StoreError, TokenRecord, sessions};
use crate::domain::event::Change;
use crate::domain::permission::BUILTIN_ROLES;
use crate::domain::room::MAX_ROOMS_PER_USER;
use crate::domain::user::{NewUser, User, normalize_email, normalize_username, username_skeleton};

/// Connections per node. PostgreSQL's default `max_connections` is 100, so
/// three nodes fit beside an administrator's session.
const MAX_CONNECTIONS: u32 = 32;

/// How long an operation waits for a connection before the store reports
/// itself unavailable, so an outage fails requests fast instead of piling them up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PostgresStore {
    pool: PgPool,
    /// Transactions waiting for a connection now.
    waiting: std::sync::atomic::AtomicU64,
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
            (
                7,
                "username_skeleton",
                include_str!("../../migrations/postgres/0007_username_skeleton.sql"),
            ),
            (
                8,
                "one_live_signing_key",
                include_str!("../../migrations/postgres/0008_one_live_signing_key.sql"),
            ),
            (
                9,
                "users_without_skeleton",
                include_str!("../../migrations/postgres/0009_users_without_skeleton.sql"),
            ),
            (
                10,
                "audit",
                include_str!("../../migrations/postgres/0010_audit.sql"),
            ),
            (
                11,
                "webhooks",
                include_str!("../../migrations/postgres/0011_webhooks.sql"),
            ),
            (
                12,
                "webhook_secrets",
                include_str!("../../migrations/postgres/0012_webhook_secrets.sql"),
            ),
            (
                13,
                "webhook_health",
                include_str!("../../migrations/postgres/0013_webhook_health.sql"),
            ),
            (
                14,
                "scim",
                include_str!("../../migrations/postgres/0014_scim.sql"),
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
        Ok(Self {
            pool,
            waiting: Default::default(),
        })
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        /// Counts one waiter while it lives (a cancelled wait included).
        struct Waiting<'a>(&'a std::sync::atomic::AtomicU64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
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
        _ => super::link_error(e),
    }
}

// --- what the shared SQL (`store/sql.rs`) needs from this backend -------------

type Db = Postgres;
type Backend = PostgresStore;

/// Concurrent transactions on several nodes: limits and one-use tokens are
/// serialized with row locks.
const ROW_LOCKS: bool = true;

macro_rules! ts {
    ($e:literal) => {
        $e
    };
}
macro_rules! lock {
    ($e:literal) => {
        concat!(" ", $e)
    };
}
macro_rules! each {
    ($p:literal) => {
        concat!("jsonb_array_elements_text(", $p, ") AS e(value)")
    };
}
macro_rules! driver_join {
    () => {
        "JOIN"
    };
}
macro_rules! limit_all {
    () => {
        "LIMIT ALL"
    };
}
macro_rules! indexed_by {
    ($i:literal) => {
        ""
    };
}

// Compiled once per backend on purpose: one text, two dialects.
#[allow(clippy::duplicate_mod)]
#[path = "sql.rs"]
mod sql;

use sql::{check_bot_cap, check_roles};

impl PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn read(&self) -> &PgPool {
        &self.pool
    }

    /// The one pool reads and writes share, and the transactions waiting
    /// for a connection from it.
    fn pool_gauges(&self) -> super::Gauges {
        super::Gauges {
            pool_open: self.pool.size(),
            pool_idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            pool_max: self.pool.options().get_max_connections(),
            writes_waiting: self.waiting.load(std::sync::atomic::Ordering::Relaxed),
            ..super::Gauges::default()
        }
    }

    async fn round_trip(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Runs `f` inside one transaction and commits; a failed `f` rolls back.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let mut tx = self.begin().await?;
        let out = f(&mut tx).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    /// The high-water mark of the event log: every seq up to it is
    /// committed or gone for good. `None` while a long transaction holds it
    /// back (the reader asks again).
    async fn settled_seq(&self) -> Result<Option<i64>> {
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        // Every seq handed out so far (`high`) belongs to a transaction that
        // had its id before it took the seq (an event is always written
        // after its change's own rows). Once every transaction running when
        // `high` was read has ended, each seq up to `high` is settled.
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
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let settled: bool =
                sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8")
                    .bind(&horizon)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(map_err)?;
            if settled {
                return Ok(Some(high));
            }
            if std::time::Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A new user's rows: one statement when nothing needs checking first
    /// (atomic, and committed when it answers), else a transaction.
    async fn insert_new_user(
        &self,
        account: Uuid,
        user: &NewUser,
        token: &TokenRecord,
        change: &Change,
        mail: Option<&sessions::UserMail>,
    ) -> Result<User> {
        if mail.is_none() && !needs_checks(user) {
            let mut conn = self.pool.acquire().await.map_err(map_err)?;
            return insert_user_rows(&mut conn, account, user, token, change).await;
        }
        let mut tx = self.begin().await?;
        let created = insert_user(&mut tx, account, user, token, change).await?;
        if let Some(mail) = mail {
            sql::insert_user_mail(&mut tx, account, &created, change.at, mail).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(created)
    }
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
           updated_at, last_seen_at, deactivated_at, username_skeleton) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'offline', $16, $17, $18, \
           $19, $20, $21, $22, $23, NULL, $24, $24, NULL, $25, $43)), \
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
           data, at, request_id, surface) VALUES ($37, $2, 'user.created', $38, $39, 'user', $40, $41, $24, $42, $44)) \
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
    .bind(u.username.as_deref().map(username_skeleton))
    .bind(change.surface)
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err)?;
    debug_assert!(joined_defaults + i64::from(u.room_id.is_some()) <= MAX_ROOMS_PER_USER);
    Ok(created)
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
