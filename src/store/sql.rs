//! The SQL of every [`Store`] operation, written once for both backends.
//!
//! This file is compiled twice: `sqlite/mod.rs` and `postgres.rs` each
//! include it (`#[path = …] mod sql;`) after naming their database (`Db`),
//! their store (`Backend`) and the few
//! places where the two dialects differ, as macros:
//!
//! - `ts!("col")` — a timestamp as it compares: `julianday(col)` on SQLite,
//!   where times are RFC 3339 text of varying precision; `col` on PostgreSQL;
//! - `lock!("FOR UPDATE")` — a PostgreSQL row lock; nothing on SQLite, whose
//!   single writer already serializes every write;
//! - `each!("$3")` — the text elements of a JSON array parameter, as a
//!   table with one column `value`;
//! - `driver_join!()` — the join that makes the planner read its left side
//!   first (`CROSS JOIN` on SQLite, `JOIN` on PostgreSQL);
//! - `limit_all!()` — "no limit" before an `OFFSET`.
//!
//! Each backend also gives its store `read()` (the pool reads use) and
//! `write(f)` (runs `f` on a connection inside one transaction — the
//! SQLite writer's group commit, or a PostgreSQL `BEGIN … COMMIT` — and
//! answers once it is committed), and the operations that really differ:
//! creating users (one raw statement path each), reading the event log (its
//! settling rule), `ping`. Parameters are `$n` on both: SQLite reads `$n`
//! as the n-th bind.
//!
//! Binding rules that keep one text valid on both: JSON goes through
//! [`Json`] (JSONB on PostgreSQL, text on SQLite); no `::type` casts (sqlx
//! sends each parameter's type); `IS DISTINCT FROM` for null-safe
//! comparison; no data-modifying `WITH`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{QueryBuilder, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Backend, Db};
use crate::domain::access::{AccessLink, Gone, Invite, Member, Role, RoomRole, Space, SpaceRole};
use crate::domain::account::{Account, ApiKey, ApiKeyAuth, Scope};
use crate::domain::event::{Change, Event};
use crate::domain::permission::{BUILTIN_ROLES, Permission};
use crate::domain::room::{MAX_ROOMS_PER_USER, NewRoom, Room, RoomPatch, Visibility};
use crate::domain::settings::{CustomFieldDef, EmailSettings, Settings, SignupSettings};
use crate::domain::user::{
    MAX_BOTS, NewUser, Status, User, UserFilter, UserPatch, normalize_email, normalize_username,
    username_skeleton,
};
use crate::domain::user_query::{Attr, Expr, Found, Op, UserQuery, Value};
use crate::domain::webhook::{Attempt, Delivery, Webhook};
use crate::store::{
    INVITE_COLUMNS, LINK_COLUMNS, NewApiKey, Page, Paged, ROLE_COLUMNS, ROOM_VISIBLE, Result,
    SPACE_COLUMNS, SigningKeyRecord, SpaceEdit, Store, StoreError, TokenCheck, TokenRecord,
    USER_COLUMNS, sessions,
};

pub(super) type Conn = <Db as sqlx::Database>::Connection;
type DbRow = <Db as sqlx::Database>::Row;
type Decoded<T> = std::result::Result<T, sqlx::Error>;

/// Runs `body` (an async block over `c`, the write connection) inside one
/// write transaction of the store, and answers once it is committed.
macro_rules! write {
    ($store:expr, |$c:ident| $body:block) => {
        $store.write(move |$c| Box::pin(async move $body)).await
    };
}

const ROOM_COLUMNS: &str =
    "id, account_id, space_id, name, visibility, is_default, created_by, created_at, updated_at";
const MEMBER_COLUMNS: &str = "user_id, role, joined_at";
const WEBHOOK_COLUMNS: &str =
    "id, url, events, description, enabled, failing_since, created_at, updated_at";
const DELIVERY_COLUMNS: &str =
    "id, event_id, event_seq, type, state, attempts, next_attempt_at, created_at";

/// A time as an event's `data` holds it: RFC 3339 text, as every answer
/// has it (`json!` alone would write `time`'s own tuple).
fn at_json(t: OffsetDateTime) -> String {
    crate::domain::time::format(t)
}

// --- decoding -----------------------------------------------------------------

fn account_from_row(r: &DbRow) -> Decoded<Account> {
    Ok(Account {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
    })
}

fn room_from_row(r: &DbRow) -> Decoded<Room> {
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

fn webhook_from_row(r: &DbRow) -> Decoded<Webhook> {
    let events: Json<Vec<String>> = r.try_get("events")?;
    Ok(Webhook {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        events: events.0,
        description: r.try_get("description")?,
        enabled: r.try_get("enabled")?,
        failing_since: r.try_get("failing_since")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn delivery_from_row(r: &DbRow) -> Decoded<Delivery> {
    let state: String = r.try_get("state")?;
    let next: OffsetDateTime = r.try_get("next_attempt_at")?;
    Ok(Delivery {
        id: r.try_get("id")?,
        event_id: r.try_get("event_id")?,
        event_seq: r.try_get("event_seq")?,
        kind: r.try_get("type")?,
        next_attempt_at: (state == "pending").then_some(next),
        state,
        attempts: r.try_get("attempts")?,
        created_at: r.try_get("created_at")?,
        log: Vec::new(),
    })
}

fn api_key_from_row(r: &DbRow) -> Decoded<ApiKey> {
    let scope: String = r.try_get("scope")?;
    Ok(ApiKey {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        scope: Scope::parse(&scope).unwrap_or(Scope::Read),
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
    })
}

/// A row of [`USER_COLUMNS`] (the JSON columns are JSONB on PostgreSQL,
/// text on SQLite; [`Json`] reads both).
fn user_from_row(r: &DbRow) -> Decoded<User> {
    let status: String = r.try_get(13)?;
    let roles: Json<Vec<String>> = r.try_get(16)?;
    let metadata: Json<serde_json::Map<String, serde_json::Value>> = r.try_get(17)?;
    let tags: Json<Vec<String>> = r.try_get(18)?;
    let custom_fields: Json<serde_json::Map<String, serde_json::Value>> = r.try_get(19)?;
    Ok(User {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        room_id: r.try_get(2)?,
        custom_id: r.try_get(3)?,
        username: r.try_get(4)?,
        name: r.try_get(5)?,
        nickname: r.try_get(6)?,
        bio: r.try_get(7)?,
        email: r.try_get(8)?,
        email_verified: r.try_get(9)?,
        phone: r.try_get(10)?,
        profile_picture: r.try_get(11)?,
        link: r.try_get(12)?,
        status: Status::parse(&status).unwrap_or(Status::Offline),
        status_message: r.try_get(14)?,
        active: r.try_get(15)?,
        roles: roles.0,
        metadata: metadata.0,
        tags: tags.0,
        custom_fields: custom_fields.0,
        require_password_change: r.try_get(20)?,
        has_password: r.try_get(21)?,
        created_at: r.try_get(22)?,
        updated_at: r.try_get(23)?,
        last_seen_at: r.try_get(24)?,
        deactivated_at: r.try_get(25)?,
        email_changed_at: r.try_get(26)?,
    })
}

fn bad_column(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected stored {what}").into())
}

/// A row of [`SPACE_COLUMNS`].
fn space_from_row(r: &DbRow) -> Decoded<Space> {
    let visibility: String = r.try_get(3)?;
    Ok(Space {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        name: r.try_get(2)?,
        visibility: Visibility::parse(&visibility).ok_or_else(|| bad_column("visibility"))?,
        created_by: r.try_get(4)?,
        created_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
        external_id: r.try_get(7)?,
    })
}

/// A row of [`MEMBER_COLUMNS`].
fn member_from_row(r: &DbRow) -> Decoded<Member> {
    Ok(Member {
        user_id: r.try_get(0)?,
        role: r.try_get(1)?,
        joined_at: r.try_get(2)?,
    })
}

/// A row of [`ROLE_COLUMNS`].
fn role_from_row(r: &DbRow) -> Decoded<Role> {
    let id: Uuid = r.try_get(0)?;
    let permissions: Json<Vec<Permission>> = r.try_get(3)?;
    Ok(Role {
        id: id.to_string(),
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        permissions: permissions.0,
        builtin: false,
        created_at: Some(r.try_get(4)?),
    })
}

/// A row of [`INVITE_COLUMNS`]; the counts are `INTEGER` (i32) columns.
fn invite_from_row(r: &DbRow) -> Decoded<Invite> {
    let role: String = r.try_get(2)?;
    Ok(Invite {
        id: r.try_get(0)?,
        space_id: r.try_get(1)?,
        role: SpaceRole::parse(&role).ok_or_else(|| bad_column("space role"))?,
        max_uses: i64::from(r.try_get::<i32, _>(3)?),
        uses: i64::from(r.try_get::<i32, _>(4)?),
        expires_at: r.try_get(5)?,
        revoked_at: r.try_get(6)?,
        created_by: r.try_get(7)?,
        created_at: r.try_get(8)?,
    })
}

/// A row of [`LINK_COLUMNS`].
fn link_from_row(r: &DbRow) -> Decoded<AccessLink> {
    let role: String = r.try_get(3)?;
    Ok(AccessLink {
        id: r.try_get(0)?,
        room_id: r.try_get(1)?,
        username: r.try_get(2)?,
        role: RoomRole::parse(&role).ok_or_else(|| bad_column("room role"))?,
        external_user_id: r.try_get(4)?,
        is_permanent: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        used_at: r.try_get(7)?,
        revoked_at: r.try_get(8)?,
        created_by: r.try_get(9)?,
        created_at: r.try_get(10)?,
    })
}

fn signing_key_from_row(r: &DbRow) -> Decoded<SigningKeyRecord> {
    Ok(SigningKeyRecord {
        kid: r.try_get("kid")?,
        private_der: r.try_get("private_der")?,
        public_x: r.try_get("public_x")?,
        created_at: r.try_get("created_at")?,
        retired_at: r.try_get("retired_at")?,
    })
}

/// Decodes every row.
fn all<T>(rows: Vec<DbRow>, f: fn(&DbRow) -> Decoded<T>) -> Result<Vec<T>> {
    rows.iter()
        .map(f)
        .collect::<Decoded<_>>()
        .map_err(StoreError::from)
}

/// Decodes a page fetched with `LIMIT limit + 1`.
fn paged<T>(
    rows: Vec<DbRow>,
    page: Page,
    f: fn(&DbRow) -> Decoded<T>,
    id: fn(&T) -> Uuid,
) -> Result<Paged<T>> {
    Ok(Paged::from_rows(all(rows, f)?, page.limit, id))
}

/// Decodes the row, `NotFound(what)` when there is none.
fn one<T>(row: Option<DbRow>, f: fn(&DbRow) -> Decoded<T>, what: &'static str) -> Result<T> {
    f(&row.ok_or(StoreError::NotFound(what))?).map_err(StoreError::from)
}

/// Stores deliveries due at their creation, of endpoints that still exist
/// (one deleted since its targets were read is skipped); `conflict` says
/// what a delivery of an event the endpoint already has does
/// (`ON CONFLICT …`).
async fn insert_deliveries(
    c: &mut Conn,
    deliveries: &[crate::store::NewDelivery],
    conflict: &str,
) -> Result<u64> {
    let mut n = 0;
    for d in deliveries {
        n += sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO webhook_deliveries (id, account_id, webhook_id, event_id, event_seq, type, \
             payload, state, attempts, next_attempt_at, created_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8 \
             WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = $3) ON CONFLICT {conflict}"
        )))
        .bind(d.id)
        .bind(d.account_id)
        .bind(d.webhook_id)
        .bind(d.event_id)
        .bind(d.event_seq)
        .bind(&d.kind)
        .bind(&d.payload)
        .bind(d.created_at)
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    Ok(n)
}

impl Backend {
    /// The row `id` of `table` in `account`, decoded; `NotFound(what)` when
    /// there is none (or it is another account's).
    async fn get_in<T>(
        &self,
        table: &str,
        columns: &str,
        account: Uuid,
        id: Uuid,
        f: fn(&DbRow) -> Decoded<T>,
        what: &'static str,
    ) -> Result<T> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns} FROM {table} WHERE account_id = $1 AND id = $2"
        )))
        .bind(account)
        .bind(id)
        .fetch_optional(self.read())
        .await?;
        one(row, f, what)
    }
}

/// `NotFound(what)` when a write touched no row.
fn touched(rows: u64, what: &'static str) -> Result<()> {
    if rows == 0 {
        Err(StoreError::NotFound(what))
    } else {
        Ok(())
    }
}

fn fetch_limit(page: Page) -> i64 {
    i64::from(page.limit) + 1
}

/// The column a search compares or orders an attribute by (an allow-list:
/// nothing a client sends names a column). Roles are matched in
/// [`push_user_expr`].
fn search_column(attr: Attr) -> &'static str {
    match attr {
        Attr::Username => "u.username_norm",
        Attr::Email => "u.email_norm",
        Attr::Name => "lower(u.name)",
        Attr::CustomId => "u.custom_id",
        Attr::Active => "u.active",
        Attr::Role => "u.roles",
        Attr::Tag => "u.tags",
        Attr::Status => "u.status",
        // UUID v7: in creation order.
        Attr::Created => "u.id",
        Attr::Updated => "u.updated_at",
    }
}

/// The column a time attribute is compared on.
fn time_column(attr: Attr) -> &'static str {
    match attr {
        Attr::Created => "u.created_at",
        _ => "u.updated_at",
    }
}

/// The table and column of a set attribute's members.
fn set_table(attr: Attr) -> (&'static str, &'static str) {
    match attr {
        Attr::Tag => ("user_tags", "tag"),
        _ => ("user_roles", "role"),
    }
}

/// ` WHERE` of a user search: the account, then the filter.
fn push_user_search_where(q: &mut QueryBuilder<Db>, account: Uuid, filter: Option<&Expr>) {
    q.push(" WHERE u.account_id = ").push_bind(account);
    if let Some(e) = filter {
        q.push(" AND ");
        push_user_expr(q, e);
    }
}

/// A filter as SQL, every value bound. Comparisons are two-valued (a user
/// without the value does not equal it, and `NOT` of that holds), so that
/// `NOT` means what it says.
fn push_user_expr(q: &mut QueryBuilder<Db>, e: &Expr) {
    let join = |q: &mut QueryBuilder<Db>, v: &[Expr], op: &str, empty: &str| {
        if v.is_empty() {
            q.push(empty);
            return;
        }
        q.push("(");
        for (i, e) in v.iter().enumerate() {
            if i > 0 {
                q.push(op);
            }
            push_user_expr(q, e);
        }
        q.push(")");
    };
    match e {
        Expr::And(v) => join(q, v, " AND ", "1 = 1"),
        Expr::Or(v) => join(q, v, " OR ", "1 = 0"),
        Expr::Not(e) => {
            q.push("NOT (");
            push_user_expr(q, e);
            q.push(")");
        }
        Expr::Present(attr @ (Attr::Role | Attr::Tag)) => {
            let (table, _) = set_table(*attr);
            q.push(format!("EXISTS (SELECT 1 FROM {table} s WHERE s.account_id = u.account_id AND s.user_id = u.id)"));
        }
        Expr::Present(Attr::Active | Attr::Created | Attr::Updated) => {
            q.push("1 = 1");
        }
        Expr::Present(attr) => {
            let column = search_column(*attr);
            q.push(format!("({column} IS NOT NULL AND {column} <> '')"));
        }
        Expr::Cmp {
            attr: attr @ (Attr::Role | Attr::Tag),
            op,
            value: Value::Text(member),
        } => {
            if *op == Op::Ne {
                q.push("NOT ");
            }
            let (table, column) = set_table(*attr);
            q.push(format!("EXISTS (SELECT 1 FROM {table} s WHERE s.account_id = u.account_id AND s.user_id = u.id AND s.{column} = "))
                .push_bind(member.clone())
                .push(")");
        }
        Expr::Cmp {
            attr,
            op,
            value: Value::Bool(b),
        } => {
            q.push(format!("{} ", search_column(*attr)))
                .push(if *op == Op::Ne { "<> " } else { "= " })
                .push_bind(*b);
        }
        Expr::Cmp {
            attr,
            op,
            value: Value::Time(t),
        } => {
            let sign = match op {
                Op::Ne => "<>",
                Op::Greater => ">",
                Op::GreaterOrEqual => ">=",
                Op::Less => "<",
                Op::LessOrEqual => "<=",
                _ => "=",
            };
            q.push(format!("{} {sign} ", time_column(*attr)))
                .push_bind(*t);
        }
        Expr::Cmp {
            attr,
            op,
            value: Value::Text(t),
        } => {
            let column = search_column(*attr);
            let like = crate::store::escape_like;
            let (sql, bound) = match op {
                Op::Ne => (format!("({column} IS NULL OR {column} <> "), t.clone()),
                Op::Contains => (like_on(column), format!("%{}%", like(t))),
                Op::StartsWith => (like_on(column), format!("{}%", like(t))),
                Op::EndsWith => (like_on(column), format!("%{}", like(t))),
                // `Expr::cmp` lets no ordering of text through.
                _ => (format!("({column} IS NOT NULL AND {column} = "), t.clone()),
            };
            q.push(sql).push_bind(bound);
            q.push(if matches!(op, Op::Eq | Op::Ne) {
                ")"
            } else {
                " ESCAPE '\\')"
            });
        }
    }
}

/// The start of a case-insensitive `LIKE` on `column` (its value is
/// bound next), false where the column is empty.
fn like_on(column: &str) -> String {
    let folded = if column.starts_with("lower(") || column.ends_with("_norm") {
        column.to_owned()
    } else {
        format!("lower({column})")
    };
    format!("({column} IS NOT NULL AND {folded} LIKE ")
}

// --- shared steps ------------------------------------------------------------

/// `NotFound(what)` unless the account has row `id` in `table`, read
/// with the row lock `lock` (`lock!(…)`, or `""` for none).
async fn exists(
    c: &mut Conn,
    table: &'static str,
    account: Uuid,
    id: Uuid,
    what: &'static str,
    lock: &'static str,
) -> Result<()> {
    let found: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM {table} WHERE account_id = $1 AND id = $2{lock}"
    )))
    .bind(account)
    .bind(id)
    .fetch_optional(&mut *c)
    .await?;
    found.map(|_| ()).ok_or(StoreError::NotFound(what))
}

/// Where a child row lives: its table, the columns read, the parent's
/// column and the key pages run on (`invites` of a space by `id`, the
/// `room_members` of a room by `user_id`…).
struct Below {
    table: &'static str,
    columns: &'static str,
    parent: &'static str,
    key: &'static str,
}

const INVITES: Below = Below::new("invites", INVITE_COLUMNS, "space_id", "id");
/// Newest first would read better; by id (time-ordered) like every list.
const DELIVERIES: Below = Below::new("webhook_deliveries", DELIVERY_COLUMNS, "webhook_id", "id");
const LINKS: Below = Below::new("access_links", LINK_COLUMNS, "room_id", "id");
const SPACE_MEMBERS: Below = Below::new("space_members", MEMBER_COLUMNS, "space_id", "user_id");
const ROOM_MEMBERS: Below = Below::new("room_members", MEMBER_COLUMNS, "room_id", "user_id");

impl Below {
    const fn new(
        table: &'static str,
        columns: &'static str,
        parent: &'static str,
        key: &'static str,
    ) -> Self {
        Self {
            table,
            columns,
            parent,
            key,
        }
    }

    /// One page of the children of `parent`, in key order.
    async fn page<T>(
        &self,
        db: &Backend,
        (account, parent): (Uuid, Uuid),
        page: Page,
        f: fn(&DbRow) -> Decoded<T>,
        id: fn(&T) -> Uuid,
    ) -> Result<Paged<T>> {
        let Below {
            table,
            columns,
            parent: by,
            key,
        } = self;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns} FROM {table} WHERE account_id = $1 AND {by} = $2 \
             AND ($3 IS NULL OR {key} > $3) ORDER BY {key} LIMIT $4"
        )))
        .bind(account)
        .bind(parent)
        .bind(page.after)
        .bind(fetch_limit(page))
        .fetch_all(db.read())
        .await?;
        paged(rows, page, f, id)
    }

    /// Revokes the child `id` of `parent` (`revoked_at`), the row after the
    /// change; `None` when it was revoked before, `NotFound(what)` when it
    /// is not there.
    async fn revoke(
        &self,
        c: &mut Conn,
        (account, parent, id): (Uuid, Uuid, Uuid),
        at: OffsetDateTime,
        what: &'static str,
    ) -> Result<Option<DbRow>> {
        let Below {
            table,
            columns,
            parent: by,
            ..
        } = self;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET revoked_at = $1 WHERE account_id = $2 AND {by} = $3 AND id = $4 \
             AND revoked_at IS NULL RETURNING {columns}"
        )))
        .bind(at)
        .bind(account)
        .bind(parent)
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
        if row.is_none() {
            let found: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT 1 FROM {table} WHERE account_id = $1 AND {by} = $2 AND id = $3"
            )))
            .bind(account)
            .bind(parent)
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
            found.ok_or(StoreError::NotFound(what))?;
        }
        Ok(row)
    }
}

/// The user, locked against concurrent changes until the transaction ends
/// (PostgreSQL) when `lock` is set.
pub(super) async fn select_user(
    c: &mut Conn,
    account: Uuid,
    user: Uuid,
    lock: bool,
) -> Result<User> {
    let lock = if lock { lock!("FOR UPDATE") } else { "" };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE account_id = $1 AND id = $2{lock}"
    )))
    .bind(account)
    .bind(user)
    .fetch_optional(&mut *c)
    .await?;
    one(row, user_from_row, "user")
}

/// Serializes this transaction's limit checks with every other one in the
/// account (PostgreSQL; SQLite's writer already runs one at a time).
/// `FOR NO KEY UPDATE` leaves the foreign key checks (`FOR KEY SHARE`) of
/// other inserts free to proceed.
async fn lock_account(c: &mut Conn, account: Uuid) -> Result<()> {
    if !super::ROW_LOCKS {
        return Ok(());
    }
    sqlx::query(concat!(
        "SELECT 1 FROM accounts WHERE id = $1",
        lock!("FOR NO KEY UPDATE")
    ))
    .bind(account)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Refuses one more bot beyond [`MAX_BOTS`], counting under the account's
/// lock so that concurrent bot writes count one after another.
pub(super) async fn check_bot_cap(c: &mut Conn, account: Uuid, except: Option<Uuid>) -> Result<()> {
    lock_account(c, account).await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_roles WHERE account_id = $1 AND role = 'bot' \
         AND user_id IS DISTINCT FROM $2",
    )
    .bind(account)
    .bind(except)
    .fetch_one(&mut *c)
    .await?;
    if n >= MAX_BOTS {
        return Err(crate::store::bot_cap_reached());
    }
    Ok(())
}

/// Every role id must name a built-in role or a custom role of the account;
/// `FOR SHARE` keeps a role from being deleted while it is being given.
pub(super) async fn check_roles(c: &mut Conn, account: Uuid, roles: &[String]) -> Result<()> {
    for r in roles
        .iter()
        .filter(|r| !BUILTIN_ROLES.contains(&r.as_str()))
    {
        let id = Uuid::try_parse(r).map_err(|_| StoreError::NotFound("role"))?;
        exists(c, "roles", account, id, "role", lock!("FOR SHARE")).await?;
    }
    Ok(())
}

/// Replaces a user's rows in `user_tags` or `user_roles`, in two statements.
async fn replace_set(
    c: &mut Conn,
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
    .execute(&mut *c)
    .await?;
    if values.is_empty() {
        return Ok(());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} (account_id, {column}, user_id) SELECT $1, value, $2 FROM {}",
        each!("$3")
    )))
    .bind(account)
    .bind(user)
    .bind(Json(values))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Applies a patch to a user, inside the caller's transaction.
async fn patch_user(
    c: &mut Conn,
    account: Uuid,
    id: Uuid,
    p: &UserPatch,
    at: OffsetDateTime,
) -> Result<User> {
    if let Some(roles) = &p.roles {
        check_roles(c, account, roles).await?;
    }
    let adds_bot = p
        .roles
        .as_ref()
        .is_some_and(|roles| roles.iter().any(|r| r == "bot"));
    if adds_bot {
        // Before the user's row, in the same order as every bot write.
        lock_account(c, account).await?;
    }
    let current = select_user(c, account, id, true).await?;
    if adds_bot && !current.roles.iter().any(|r| r == "bot") {
        check_bot_cap(c, account, Some(id)).await?;
    }
    let mut q: QueryBuilder<Db> = QueryBuilder::new("UPDATE users SET updated_at = ");
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
        q.push(", username_skeleton = ")
            .push_bind(u.as_deref().map(username_skeleton));
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
        let merged = crate::store::merged_custom_fields(&current.custom_fields, change);
        q.push(", custom_fields = ").push_bind(Json(merged));
    }
    set!("require_password_change", p.require_password_change);
    q.push(" WHERE account_id = ").push_bind(account);
    q.push(" AND id = ").push_bind(id);
    q.build().execute(&mut *c).await?;
    if let Some(tags) = &p.tags {
        replace_set(c, "user_tags", "tag", account, id, tags).await?;
    }
    if let Some(roles) = &p.roles {
        replace_set(c, "user_roles", "role", account, id, roles).await?;
    }
    select_user(c, account, id, false).await
}

/// Appends one event to the log, in the caller's transaction.
pub(super) async fn insert_event(
    c: &mut Conn,
    account: Option<Uuid>,
    change: &Change,
    kind: &str,
    subject: (&str, String),
    data: serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (id, account_id, type, actor_kind, actor_id, subject_kind, subject_id, data, at, request_id, surface) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
    .bind(change.surface)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Where a change's events go: its account (none for a server-wide change)
/// and the [`Change`] itself.
#[derive(Clone, Copy)]
struct Log<'a>(Option<Uuid>, &'a Change);

impl Log<'_> {
    /// Appends the event `kind` of the change to `subject` (its kind and
    /// id), carrying `data`: the resource after the change (before it, for a
    /// delete).
    async fn record<T: serde::Serialize + ?Sized>(
        self,
        c: &mut Conn,
        kind: &str,
        subject: (&str, String),
        data: &T,
    ) -> Result<()> {
        let data = serde_json::to_value(data).map_err(|e| StoreError::Other(e.into()))?;
        insert_event(c, self.0, self.1, kind, subject, data).await
    }
}

/// The event of a membership that was added or whose role changed (none
/// when `before` is already `after`'s role); `of` names the room or space.
async fn record_member(
    c: &mut Conn,
    account: Uuid,
    change: &Change,
    of: (&str, Uuid),
    before: Option<&str>,
    after: &Member,
) -> Result<()> {
    let kind = match before {
        None => "member.added",
        Some(role) if role != after.role => "member.role_changed",
        Some(_) => return Ok(()),
    };
    Log(Some(account), change)
        .record(
            c,
            kind,
            member_subject(of, after.user_id),
            &member_data(of, after),
        )
        .await
}

/// A membership as an event's subject: `room_member` or `space_member`,
/// `{room or space id}/{user id}`.
fn member_subject(of: (&str, Uuid), user: Uuid) -> (&'static str, String) {
    let kind = if of.0 == "room" {
        "room_member"
    } else {
        "space_member"
    };
    (kind, format!("{}/{user}", of.1))
}

fn member_data(of: (&str, Uuid), m: &Member) -> serde_json::Value {
    serde_json::json!({
        format!("{}_id", of.0): of.1,
        "user_id": m.user_id,
        "role": m.role,
        "joined_at": at_json(m.joined_at),
    })
}

/// Ends a membership of a room or space (`of`), with its `member.removed`.
async fn remove_member(
    c: &mut Conn,
    account: Uuid,
    of: (&str, Uuid),
    user: Uuid,
    change: &Change,
) -> Result<()> {
    let sql = if of.0 == "room" {
        "DELETE FROM room_members WHERE account_id = $1 AND room_id = $2 AND user_id = $3 RETURNING user_id, role, joined_at"
    } else {
        "DELETE FROM space_members WHERE account_id = $1 AND space_id = $2 AND user_id = $3 RETURNING user_id, role, joined_at"
    };
    let row = sqlx::query(sql)
        .bind(account)
        .bind(of.1)
        .bind(user)
        .fetch_optional(&mut *c)
        .await?;
    let gone = one(row, member_from_row, "member")?;
    let subject = member_subject(of, user);
    Log(Some(account), change)
        .record(c, "member.removed", subject, &member_data(of, &gone))
        .await
}

/// Deactivates or reactivates a user, with its event (see
/// [`Store::set_user_active`]).
async fn set_active(
    c: &mut Conn,
    account: Uuid,
    user: Uuid,
    active: bool,
    change: &Change,
) -> Result<User> {
    let sql = if active {
        // Reactivating ends every token issued before it (those of a
        // user created inactive too): nothing issued while the user
        // was deactivated comes back.
        "UPDATE users SET tokens_valid_after = CASE WHEN active THEN tokens_valid_after ELSE $1 END, \
                     active = TRUE, deactivated_at = NULL, updated_at = $1 \
                     WHERE account_id = $2 AND id = $3 RETURNING {}"
    } else {
        "UPDATE users SET active = FALSE, deactivated_at = COALESCE(deactivated_at, $1), \
                     tokens_valid_after = $1, updated_at = $1 WHERE account_id = $2 AND id = $3 RETURNING {}"
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.replace("{}", USER_COLUMNS)))
        .bind(change.at)
        .bind(account)
        .bind(user)
        .fetch_optional(&mut *c)
        .await?;
    let updated = one(row, user_from_row, "user")?;
    let kind = if active {
        "user.reactivated"
    } else {
        "user.deactivated"
    };
    insert_user_events(c, account, change, &[kind], &updated).await?;
    Ok(updated)
}

/// Joins each of `add` still a user of the account and not a member yet
/// as `user`, and ends the membership of each of `remove` that is one but
/// the owner's, each with its event: [`SpaceEdit`]'s membership sync.
async fn sync_space_members(
    c: &mut Conn,
    account: Uuid,
    space: Uuid,
    add: &[Uuid],
    remove: &[Uuid],
    change: &Change,
) -> Result<()> {
    for user in add {
        match exists(c, "users", account, *user, "user", "").await {
            Err(StoreError::NotFound(_)) => continue,
            found => found?,
        }
        upsert_space_member(c, account, space, *user, "user", "DO NOTHING", change).await?;
    }
    for user in remove {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM space_members WHERE account_id = $1 AND space_id = $2 AND user_id = $3",
        )
        .bind(account)
        .bind(space)
        .bind(user)
        .fetch_optional(&mut *c)
        .await?;
        if role.is_some_and(|r| r != SpaceRole::Owner.as_str()) {
            remove_member(c, account, ("space", space), *user, change).await?;
        }
    }
    Ok(())
}

/// `token.revoked` for a user's token (an access token or a `user` token).
async fn record_token_revoked(
    c: &mut Conn,
    account: Uuid,
    change: &Change,
    token: Uuid,
    user: Uuid,
) -> Result<()> {
    let data = serde_json::json!({"id": token, "user_id": user, "revoked_at": at_json(change.at)});
    let subject = ("token", token.to_string());
    Log(Some(account), change)
        .record(c, "token.revoked", subject, &data)
        .await
}

/// `user.password_changed`, carrying the user after the change.
async fn record_password_changed(
    c: &mut Conn,
    account: Uuid,
    change: &Change,
    user: Uuid,
) -> Result<()> {
    let changed = select_user(c, account, user, false).await?;
    insert_user_events(c, account, change, &["user.password_changed"], &changed).await
}

/// `room.deleted` for each room row a delete returned, carrying the room as
/// it was.
async fn record_deleted_rooms(
    c: &mut Conn,
    account: Uuid,
    change: &Change,
    rows: Vec<DbRow>,
) -> Result<()> {
    for room in all(rows, room_from_row)? {
        let subject = ("room", room.id.to_string());
        Log(Some(account), change)
            .record(c, "room.deleted", subject, &room)
            .await?;
    }
    Ok(())
}

/// A signing key's event (server-wide: no account), naming the key by its
/// `kid`; the private part is never recorded.
async fn record_signing_key(
    c: &mut Conn,
    change: &Change,
    kind: &str,
    key: &SigningKeyRecord,
) -> Result<()> {
    let data = serde_json::json!({
        "kid": key.kid,
        "public_x": key.public_x,
        "created_at": at_json(key.created_at),
    });
    Log(None, change)
        .record(c, kind, ("signing_key", key.kid.clone()), &data)
        .await
}

/// One event per type of a user's change, each carrying the user after it.
async fn insert_user_events(
    c: &mut Conn,
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
            crate::store::user_data(user),
        )
        .await?;
    }
    Ok(())
}

async fn insert_api_key(
    c: &mut Conn,
    account: Uuid,
    key: &NewApiKey,
    change: &Change,
) -> Result<()> {
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
    .await?;
    let view = ApiKey {
        id: key.id,
        name: key.name.clone(),
        scope: key.scope,
        created_at: key.created_at,
        last_used_at: None,
    };
    Log(Some(account), change)
        .record(c, "api_key.created", ("api_key", key.id.to_string()), &view)
        .await
}

/// Reads the account's settings (locked on PostgreSQL), changes them with
/// `f` and writes them back; returns them as written.
async fn update_settings(
    c: &mut Conn,
    account: Uuid,
    change: &Change,
    f: impl FnOnce(&mut Settings) -> Result<()>,
) -> Result<Settings> {
    let found: Option<Json<Settings>> = sqlx::query_scalar(concat!(
        "SELECT settings FROM accounts WHERE id = $1",
        lock!("FOR NO KEY UPDATE")
    ))
    .bind(account)
    .fetch_optional(&mut *c)
    .await?;
    let mut settings = found.ok_or(StoreError::NotFound("account"))?.0;
    f(&mut settings)?;
    sqlx::query("UPDATE accounts SET settings = $1 WHERE id = $2")
        .bind(Json(&settings))
        .bind(account)
        .execute(&mut *c)
        .await?;
    let subject = ("settings", account.to_string());
    Log(Some(account), change)
        .record(c, "settings.updated", subject, &settings)
        .await?;
    Ok(settings)
}

/// Makes `user` a member of `space` with `role`, or changes their role
/// unless `only_if_absent`; returns the membership.
async fn upsert_space_member(
    c: &mut Conn,
    account: Uuid,
    space: Uuid,
    user: Uuid,
    role: &str,
    conflict: &'static str,
    change: &Change,
) -> Result<Member> {
    let before: Option<String> =
        sqlx::query_scalar("SELECT role FROM space_members WHERE space_id = $1 AND user_id = $2")
            .bind(space)
            .bind(user)
            .fetch_optional(&mut *c)
            .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO space_members (account_id, space_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (space_id, user_id) {conflict}"
    )))
    .bind(account)
    .bind(space)
    .bind(user)
    .bind(role)
    .bind(change.at)
    .execute(&mut *c)
    .await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MEMBER_COLUMNS} FROM space_members WHERE space_id = $1 AND user_id = $2"
    )))
    .bind(space)
    .bind(user)
    .fetch_one(&mut *c)
    .await?;
    let member = member_from_row(&row)?;
    record_member(
        c,
        account,
        change,
        ("space", space),
        before.as_deref(),
        &member,
    )
    .await?;
    Ok(member)
}

// --- sessions -------------------------------------------------------------------

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

/// Records a refresh token and its access token in session `session`.
async fn insert_next_tokens(
    c: &mut Conn,
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
    .await?;
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
    .await?;
    Ok(())
}

/// Revokes the sessions matching `filter` (`id = $2` or `user_id = $2`) and
/// every access token they produced; returns those tokens.
async fn revoke_sessions(
    c: &mut Conn,
    account: Uuid,
    filter: &'static str,
    value: Uuid,
    change: &Change,
) -> Result<sessions::Revoked> {
    let at = change.at;
    let ended: Vec<(Uuid, Uuid)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE sessions SET revoked_at = $1 WHERE {filter} AND revoked_at IS NULL RETURNING id, user_id"
    )))
    .bind(at)
    .bind(value)
    .fetch_all(&mut *c)
    .await?;
    for (session, user) in ended {
        let data = serde_json::json!({"id": session, "user_id": user, "revoked_at": at_json(at)});
        let subject = ("session", session.to_string());
        Log(Some(account), change)
            .record(c, "session.revoked", subject, &data)
            .await?;
    }
    let tokens = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE tokens SET revoked_at = $1 WHERE session_id IN (SELECT id FROM sessions WHERE {filter}) \
         AND revoked_at IS NULL RETURNING id"
    )))
    .bind(at)
    .bind(value)
    .fetch_all(&mut *c)
    .await?;
    Ok(sessions::Revoked {
        user_id: None,
        tokens,
    })
}

/// The mail that goes with a user's create or change: the link to verify
/// their (new) address, and the messages.
pub(super) async fn insert_user_mail(
    c: &mut Conn,
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
        .await?;
    }
    for m in &mail.mails {
        insert_mail(c, m).await?;
    }
    Ok(())
}

async fn insert_mail(c: &mut Conn, m: &sessions::OutboxMail) -> Result<()> {
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
    .await?;
    Ok(())
}

/// Sets a user's password hash (and clears `require_password_change` when
/// `settled`); `NotFound("user")` when there is no such user.
async fn store_password(
    c: &mut Conn,
    account: Uuid,
    user: Uuid,
    hash: &str,
    settled: bool,
    at: OffsetDateTime,
) -> Result<()> {
    let sql = if settled {
        "UPDATE users SET password_hash = $1, require_password_change = FALSE, updated_at = $2 \
         WHERE account_id = $3 AND id = $4"
    } else {
        "UPDATE users SET password_hash = $1, updated_at = $2 WHERE account_id = $3 AND id = $4"
    };
    let r = sqlx::query(sql)
        .bind(hash)
        .bind(at)
        .bind(account)
        .bind(user)
        .execute(&mut *c)
        .await?;
    touched(r.rows_affected(), "user")
}

/// Ends every login session of `user` but `keep` and their access tokens
/// (`user` tokens, issued by a backend, are not login sessions).
async fn end_login_sessions(
    c: &mut Conn,
    user: Uuid,
    keep: Option<Uuid>,
    at: OffsetDateTime,
) -> Result<sessions::Revoked> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
         AND id IS DISTINCT FROM $3",
    )
    .bind(at)
    .bind(user)
    .bind(keep)
    .execute(&mut *c)
    .await?;
    let tokens = sqlx::query_scalar(
        "UPDATE tokens SET revoked_at = $1 WHERE user_id = $2 AND kind = 'access' \
         AND revoked_at IS NULL AND session_id IS DISTINCT FROM $3 RETURNING id",
    )
    .bind(at)
    .bind(user)
    .bind(keep)
    .fetch_all(&mut *c)
    .await?;
    Ok(sessions::Revoked {
        user_id: Some(user),
        tokens,
    })
}

#[async_trait]
impl Store for Backend {
    fn backend(&self) -> &'static str {
        self.name()
    }

    async fn ping(&self) -> Result<()> {
        self.round_trip().await
    }

    async fn gauges(&self) -> Result<crate::store::Gauges> {
        let (pending, failed): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT SUM(CASE WHEN attempts < $1 THEN 1 ELSE 0 END), \
                    SUM(CASE WHEN attempts < $1 THEN 0 ELSE 1 END) \
             FROM outbox WHERE sent_at IS NULL",
        )
        .bind(crate::mail::MAX_ATTEMPTS)
        .fetch_one(self.read())
        .await?;
        Ok(crate::store::Gauges {
            mail_pending: pending.unwrap_or(0),
            mail_failed: failed.unwrap_or(0),
            ..self.pool_gauges()
        })
    }

    // --- server state -----------------------------------------------------------

    async fn get_state(&self, key: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM server_state WHERE key = $1")
            .bind(key)
            .fetch_optional(self.read())
            .await
            .map_err(StoreError::from)
    }

    async fn put_state_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        let (key, value) = (key.to_owned(), value.to_owned());
        write!(self, |c| {
            let r = sqlx::query(
                "INSERT INTO server_state (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .execute(&mut *c)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT kid, private_der, public_x, created_at, retired_at FROM signing_keys ORDER BY ",
            ts!("created_at")
        ))
        .fetch_all(self.read())
        .await?;
        all(rows, signing_key_from_row)
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord, change: &Change) -> Result<()> {
        let (key, change) = (key.clone(), change.clone());
        write!(self, |c| {
            sqlx::query(
                "INSERT INTO signing_keys (kid, private_der, public_x, created_at, retired_at) \
                     VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&key.kid)
            .bind(&key.private_der)
            .bind(&key.public_x)
            .bind(key.created_at)
            .bind(key.retired_at)
            .execute(&mut *c)
            .await?;
            record_signing_key(c, &change, "signing_key.created", &key).await
        })
    }

    // --- accounts and API keys -----------------------------------------------------

    async fn create_account(
        &self,
        account: &Account,
        first_key: &NewApiKey,
        change: &Change,
    ) -> Result<()> {
        let (account, key, change) = (account.clone(), first_key.clone(), change.clone());
        write!(self, |c| {
            sqlx::query(
                "INSERT INTO accounts (id, name, settings, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(account.id)
            .bind(&account.name)
            .bind(Json(Settings::default()))
            .bind(account.created_at)
            .execute(&mut *c)
            .await?;
            let subject = ("account", account.id.to_string());
            Log(Some(account.id), &change)
                .record(c, "account.created", subject, &account)
                .await?;
            insert_api_key(c, account.id, &key, &change).await
        })
    }

    async fn list_accounts(&self, page: Page) -> Result<Paged<Account>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at FROM accounts WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .bind(page.after)
        .bind(fetch_limit(page))
        .fetch_all(self.read())
        .await?;
        paged(rows, page, account_from_row, |a| a.id)
    }

    async fn get_account(&self, account: Uuid) -> Result<Account> {
        let row = sqlx::query("SELECT id, name, created_at FROM accounts WHERE id = $1")
            .bind(account)
            .fetch_optional(self.read())
            .await?;
        one(row, account_from_row, "account")
    }

    async fn get_settings(&self, account: Uuid) -> Result<Settings> {
        let s: Option<Json<Settings>> =
            sqlx::query_scalar("SELECT settings FROM accounts WHERE id = $1")
                .bind(account)
                .fetch_optional(self.read())
                .await?;
        Ok(s.ok_or(StoreError::NotFound("account"))?.0)
    }

    async fn update_custom_fields(
        &self,
        account: Uuid,
        fields: BTreeMap<String, Option<CustomFieldDef>>,
        change: &Change,
    ) -> Result<Settings> {
        let change = change.clone();
        write!(self, |c| {
            update_settings(c, account, &change, |s| Ok(s.apply_custom_fields(fields)?)).await
        })
    }

    async fn create_api_key(&self, account: Uuid, key: &NewApiKey, change: &Change) -> Result<()> {
        let (key, change) = (key.clone(), change.clone());
        write!(self, |c| {
            insert_api_key(c, account, &key, &change).await
        })
    }

    async fn list_api_keys(&self, account: Uuid, page: Page) -> Result<Paged<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, name, scope, created_at, last_used_at FROM api_keys \
             WHERE account_id = $1 AND revoked_at IS NULL AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
        )
        .bind(account)
        .bind(page.after)
        .bind(fetch_limit(page))
        .fetch_all(self.read())
        .await?;
        paged(rows, page, api_key_from_row, |k| k.id)
    }

    async fn revoke_api_key(&self, account: Uuid, key: Uuid, change: &Change) -> Result<()> {
        let change = change.clone();
        write!(self, |c| {
            let row = sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 WHERE account_id = $2 AND id = $3 AND revoked_at IS NULL \
                 RETURNING id, name, scope, created_at, last_used_at",
            )
            .bind(change.at)
            .bind(account)
            .bind(key)
            .fetch_optional(&mut *c)
            .await?;
            let revoked = one(row, api_key_from_row, "api key")?;
            let subject = ("api_key", key.to_string());
            Log(Some(account), &change)
                .record(c, "api_key.revoked", subject, &revoked)
                .await
        })
    }

    async fn api_key_for_auth(&self, key: Uuid) -> Result<Option<ApiKeyAuth>> {
        let row = sqlx::query(
            "SELECT id, account_id, scope, secret_hash FROM api_keys WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(key)
        .fetch_optional(self.read())
        .await?;
        row.map(|r| -> Result<ApiKeyAuth> {
            let scope: String = r.try_get("scope")?;
            Ok(ApiKeyAuth {
                id: r.try_get("id")?,
                account_id: r.try_get("account_id")?,
                scope: Scope::parse(&scope).unwrap_or(Scope::Read),
                secret_hash: r.try_get("secret_hash")?,
            })
        })
        .transpose()
    }

    async fn touch_api_key(&self, key: Uuid, at: OffsetDateTime) -> Result<()> {
        write!(self, |c| {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(at)
                .bind(key)
                .execute(&mut *c)
                .await?;
            Ok(())
        })
    }

    async fn fill_username_skeletons(
        &self,
        after: Uuid,
        limit: u32,
    ) -> Result<Option<(Uuid, u64)>> {
        write!(self, |c| {
            let rows: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
                "SELECT id, account_id, username FROM users WHERE id > $1 \
                 AND username IS NOT NULL AND username_skeleton IS NULL ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await?;
            let Some(last) = rows.last().map(|r| r.0) else {
                return Ok(None);
            };
            let mut clashes = 0;
            for (id, account, username) in rows {
                let filled = sqlx::query(
                    "UPDATE users SET username_skeleton = $1 WHERE id = $2 AND NOT EXISTS \
                     (SELECT 1 FROM users WHERE account_id = $3 AND username_skeleton = $1)",
                )
                .bind(username_skeleton(&username))
                .bind(id)
                .bind(account)
                .execute(&mut *c)
                .await?;
                if filled.rows_affected() == 0 {
                    clashes += 1;
                }
            }
            Ok(Some((last, clashes)))
        })
    }

    // --- rooms --------------------------------------------------------------------

    async fn create_room(
        &self,
        account: Uuid,
        id: Uuid,
        room: &NewRoom,
        change: &Change,
    ) -> Result<Room> {
        let (room, change) = (room.clone(), change.clone());
        let at = change.at;
        write!(self, |c| {
            if let Some(space) = room.space_id {
                exists(c, "spaces", account, space, "space", "").await?;
            }
            sqlx::query(
                    "INSERT INTO rooms (id, account_id, space_id, name, visibility, is_default, created_by, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                )
                .bind(id)
                .bind(account)
                .bind(room.space_id)
                .bind(&room.name)
                .bind(room.visibility.as_str())
                .bind(room.is_default)
                .bind(room.created_by)
                .bind(at)
                .execute(&mut *c)
                .await?;
            let created = Room {
                id,
                account_id: account,
                space_id: room.space_id,
                name: room.name,
                visibility: room.visibility,
                is_default: room.is_default,
                created_by: room.created_by,
                created_at: at,
                updated_at: at,
            };
            Log(Some(account), &change)
                .record(c, "room.created", ("room", id.to_string()), &created)
                .await?;
            if let Some(creator) = room.created_by {
                // The creator (when a user of this account) moderates the room.
                let joined = sqlx::query(
                        "INSERT INTO room_members (account_id, room_id, user_id, role, joined_at) \
                         SELECT $1, $2, id, 'moderator', $3 FROM users WHERE account_id = $1 AND id = $4",
                    )
                    .bind(account)
                    .bind(id)
                .bind(at)
                .bind(creator)
                .execute(&mut *c)
                .await?;
                if joined.rows_affected() == 1 {
                    let member = Member {
                        user_id: creator,
                        role: "moderator".into(),
                        joined_at: at,
                    };
                    record_member(c, account, &change, ("room", id), None, &member).await?;
                }
            }
            Ok(created)
        })
    }

    async fn list_rooms(
        &self,
        account: Uuid,
        visibility: Option<Visibility>,
        page: Page,
    ) -> Result<Paged<Room>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms WHERE account_id = $1 AND ($2 IS NULL OR visibility = $2) \
             AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4"
        )))
        .bind(account)
        .bind(visibility.map(Visibility::as_str))
        .bind(page.after)
        .bind(fetch_limit(page))
        .fetch_all(self.read())
        .await?;
        paged(rows, page, room_from_row, |r| r.id)
    }

    async fn get_room(&self, account: Uuid, room: Uuid) -> Result<Room> {
        self.get_in("rooms", ROOM_COLUMNS, account, room, room_from_row, "room")
            .await
    }

    async fn update_room(
        &self,
        account: Uuid,
        room: Uuid,
        patch: &RoomPatch,
        change: &Change,
    ) -> Result<Room> {
        let (patch, change) = (patch.clone(), change.clone());
        write!(self, |c| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE rooms SET name = COALESCE($1, name), visibility = COALESCE($2, visibility), \
                     is_default = COALESCE($3, is_default), updated_at = $4 WHERE account_id = $5 AND id = $6 \
                     RETURNING {ROOM_COLUMNS}"
                )))
                .bind(&patch.name)
                .bind(patch.visibility.map(Visibility::as_str))
                .bind(patch.is_default)
            .bind(change.at)
            .bind(account)
            .bind(room)
            .fetch_optional(&mut *c)
            .await?;
            let updated = one(row, room_from_row, "room")?;
            let subject = ("room", room.to_string());
            Log(Some(account), &change)
                .record(c, "room.updated", subject, &updated)
                .await?;
            Ok(updated)
        })
    }

    async fn delete_room(&self, account: Uuid, room: Uuid, change: &Change) -> Result<()> {
        let change = change.clone();
        write!(self, |c| {
            // Memberships go with the room (ON DELETE CASCADE).
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM rooms WHERE account_id = $1 AND id = $2 RETURNING {ROOM_COLUMNS}"
            )))
            .bind(account)
            .bind(room)
            .fetch_all(&mut *c)
            .await?;
            touched(rows.len() as u64, "room")?;
            record_deleted_rooms(c, account, &change, rows).await
        })
    }

    // --- users --------------------------------------------------------------------

    async fn create_user(
        &self,
        account: Uuid,
        user: &NewUser,
        token: &TokenRecord,
        change: &Change,
    ) -> Result<User> {
        self.insert_new_user(account, user, token, change, None)
            .await
    }

    async fn get_user(&self, account: Uuid, user: Uuid) -> Result<User> {
        let mut conn = self.read().acquire().await?;
        select_user(&mut conn, account, user, false).await
    }

    async fn list_users(
        &self,
        account: Uuid,
        filter: &UserFilter,
        page: Page,
    ) -> Result<Paged<User>> {
        // A room, role or tag filter drives the query from its own table, in
        // that table's (account, value, user) index order, so that a page
        // reads about `limit` rows however rare the value is; without one,
        // the users' primary key does.
        let driver = crate::store::list_driver(filter);
        let mut q: QueryBuilder<Db> = QueryBuilder::new(crate::store::user_list_select(
            filter,
            driver,
            driver_join!(),
        ));
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
            let pattern = crate::store::like_pattern(text);
            for (i, column) in [
                "lower(u.name)",
                "u.username_norm",
                "lower(u.custom_id)",
                "u.email_norm",
            ]
            .into_iter()
            .enumerate()
            {
                q.push(if i == 0 { " AND (" } else { " OR " });
                q.push(column).push(" LIKE ").push_bind(pattern.clone());
                q.push(" ESCAPE '\\'");
            }
            q.push(")");
        }
        let key = driver.map_or("u.id", |d| d.key());
        if let Some(after) = page.after {
            q.push(format!(" AND {key} > ")).push_bind(after);
        }
        q.push(format!(" ORDER BY {key} LIMIT "))
            .push_bind(fetch_limit(page));
        let rows = q.build().fetch_all(self.read()).await?;
        paged(rows, page, user_from_row, |u| u.id)
    }

    async fn search_users(&self, account: Uuid, query: &UserQuery) -> Result<Found<User>> {
        let mut count: QueryBuilder<Db> = QueryBuilder::new("SELECT COUNT(*) FROM users u");
        push_user_search_where(&mut count, account, query.filter.as_ref());
        let total: i64 = count.build_query_scalar().fetch_one(self.read()).await?;
        if query.count == 0 {
            return Ok(Found {
                items: Vec::new(),
                total: u64::try_from(total).unwrap_or(0),
            });
        }
        let mut q: QueryBuilder<Db> = QueryBuilder::new(format!(
            "SELECT {} FROM users u",
            crate::store::user_columns_of("u")
        ));
        push_user_search_where(&mut q, account, query.filter.as_ref());
        q.push(" ORDER BY ");
        for s in &query.sort {
            let column = search_column(s.attr);
            let dir = if s.descending { "DESC" } else { "ASC" };
            // Users without the value last, on both backends.
            q.push(format!("{column} IS NULL, {column} {dir}, "));
        }
        q.push("u.id LIMIT ")
            .push_bind(i64::from(query.count))
            .push(" OFFSET ")
            .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
        let rows = q.build().fetch_all(self.read()).await?;
        Ok(Found {
            items: all(rows, user_from_row)?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn update_user(
        &self,
        account: Uuid,
        user: Uuid,
        patch: &UserPatch,
        change: &Change,
        mail: Option<&sessions::UserMail>,
    ) -> Result<(User, sessions::Revoked)> {
        let (patch, change, mail) = (patch.clone(), change.clone(), mail.cloned());
        write!(self, |c| {
            let mut revoked = sessions::Revoked::default();
            // A patch of `active` alone leaves the rest (and updated_at,
            // which the (de)activation sets) to it; an empty one touches
            // updated_at, as ever.
            let mut updated = if patch.changes_fields() || patch.active.is_none() {
                let mut updated = patch_user(c, account, user, &patch, change.at).await?;
                if let Some(hash) = &patch.password_hash {
                    store_password(c, account, user, hash, false, change.at).await?;
                    updated.has_password = true;
                    record_password_changed(c, account, &change, user).await?;
                    revoked = end_login_sessions(c, user, None, change.at).await?;
                }
                if let Some(mail) = &mail {
                    insert_user_mail(c, account, &updated, change.at, mail).await?;
                }
                let kinds = crate::store::user_event_types(&patch);
                insert_user_events(c, account, &change, kinds, &updated).await?;
                updated
            } else {
                select_user(c, account, user, true).await?
            };
            if let Some(active) = patch.active
                && active != updated.active
            {
                updated = set_active(c, account, user, active, &change).await?;
            }
            Ok((updated, revoked))
        })
    }

    async fn set_user_active(
        &self,
        account: Uuid,
        user: Uuid,
        active: bool,
        change: &Change,
    ) -> Result<User> {
        let change = change.clone();
        write!(self, |c| {
            set_active(c, account, user, active, &change).await
        })
    }

    async fn delete_user(&self, account: Uuid, user: Uuid, change: &Change) -> Result<()> {
        let change = change.clone();
        write!(self, |c| {
            // Tags, roles, memberships and tokens go with the user (ON DELETE CASCADE).
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM users WHERE account_id = $1 AND id = $2 RETURNING {USER_COLUMNS}"
            )))
            .bind(account)
            .bind(user)
            .fetch_optional(&mut *c)
            .await?;
            let gone = one(row, user_from_row, "user")?;
            insert_user_events(c, account, &change, &["user.deleted"], &gone).await
        })
    }

    async fn events_after(
        &self,
        account: Option<Uuid>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>> {
        let high = self.settled_seq().await?;
        let Some(high) = high else {
            return Ok(Vec::new());
        };
        let rows: Vec<crate::store::EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM events WHERE seq > $1 AND seq <= $2 AND ($3 IS NULL OR account_id = $3) \
             ORDER BY seq LIMIT $4",
            crate::store::EVENT_COLUMNS
        )))
        .bind(after)
        .bind(high)
        .bind(account)
        .bind(i64::from(limit))
        .fetch_all(self.read())
        .await?;
        Ok(rows.into_iter().map(crate::store::event_from_row).collect())
    }

    async fn audit_events(
        &self,
        account: Uuid,
        filter: &crate::domain::event::AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        // Each filter is one bound parameter, NULL when not asked for.
        let prefix = filter.kind_prefix.as_ref().map(|p| {
            format!(
                "{}%",
                p.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        });
        let rows: Vec<crate::store::EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM events WHERE account_id = $1 AND ($2 IS NULL OR seq < $2) \
             AND ($3 IS NULL OR type = $3) AND ($4 IS NULL OR type LIKE $4 ESCAPE '\\') \
             AND ($5 IS NULL OR actor_id = $5) AND ($6 IS NULL OR subject_id = $6) \
             AND ($7 IS NULL OR {} >= {}) AND ($8 IS NULL OR {} < {}) \
             ORDER BY seq DESC LIMIT $9",
            crate::store::EVENT_COLUMNS,
            ts!("at"),
            ts!("$7"),
            ts!("at"),
            ts!("$8"),
        )))
        .bind(account)
        .bind(before)
        .bind(&filter.kind)
        .bind(prefix)
        .bind(filter.actor_id)
        .bind(&filter.subject_id)
        .bind(filter.since)
        .bind(filter.until)
        .bind(i64::from(limit))
        .fetch_all(self.read())
        .await?;
        Ok(rows.into_iter().map(crate::store::event_from_row).collect())
    }

    async fn audit_event(&self, account: Uuid, id: Uuid) -> Result<Event> {
        let row: Option<crate::store::EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM events WHERE account_id = $1 AND id = $2",
            crate::store::EVENT_COLUMNS
        )))
        .bind(account)
        .bind(id)
        .fetch_optional(self.read())
        .await?;
        row.map(crate::store::event_from_row)
            .ok_or(StoreError::NotFound("event"))
    }

    async fn prune_events(&self, before: OffsetDateTime, limit: u32) -> Result<u64> {
        let postgres = self.name() == "postgres";
        write!(self, |c| {
            if postgres {
                // The append-only trigger lets this transaction's deletes by.
                sqlx::query("SET LOCAL roster.prune = 'on'")
                    .execute(&mut *c)
                    .await?;
            }
            let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE {} < {} \
                 ORDER BY seq LIMIT $2)",
                ts!("at"),
                ts!("$1"),
            )))
            .bind(before)
            .bind(i64::from(limit))
            .execute(&mut *c)
            .await?;
            Ok(done.rows_affected())
        })
    }

    // --- webhooks -------------------------------------------------------------------

    async fn create_webhook(
        &self,
        account: Uuid,
        hook: &Webhook,
        secret: &str,
        change: &Change,
    ) -> Result<()> {
        let (hook, secret, change) = (hook.clone(), secret.to_owned(), change.clone());
        write!(self, |c| {
            sqlx::query(
                "INSERT INTO webhooks (id, account_id, url, events, description, enabled, secret, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(hook.id)
            .bind(account)
            .bind(&hook.url)
            .bind(Json(&hook.events))
            .bind(&hook.description)
            .bind(hook.enabled)
            .bind(&secret)
            .bind(hook.created_at)
            .bind(hook.updated_at)
            .execute(&mut *c)
            .await?;
            let subject = ("webhook", hook.id.to_string());
            Log(Some(account), &change)
                .record(c, "webhook.created", subject, &hook)
                .await
        })
    }

    async fn list_webhooks(&self, account: Uuid, page: Page) -> Result<Paged<Webhook>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE account_id = $1 \
             AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
        )))
        .bind(account)
        .bind(page.after)
        .bind(fetch_limit(page))
        .fetch_all(self.read())
        .await?;
        paged(rows, page, webhook_from_row, |w| w.id)
    }

    async fn get_webhook(&self, account: Uuid, id: Uuid) -> Result<Webhook> {
        self.get_in(
            "webhooks",
            WEBHOOK_COLUMNS,
            account,
            id,
            webhook_from_row,
            "webhook",
        )
        .await
    }

    async fn update_webhook(&self, account: Uuid, hook: &Webhook, change: &Change) -> Result<()> {
        let (hook, change) = (hook.clone(), change.clone());
        write!(self, |c| {
            let done = sqlx::query(
                "UPDATE webhooks SET url = $1, events = $2, description = $3, enabled = $4, \
                 updated_at = $5, failing_since = $8 WHERE account_id = $6 AND id = $7",
            )
            .bind(&hook.url)
            .bind(Json(&hook.events))
            .bind(&hook.description)
            .bind(hook.enabled)
            .bind(hook.updated_at)
            .bind(account)
            .bind(hook.id)
            .bind(hook.failing_since)
            .execute(&mut *c)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("webhook"));
            }
            let subject = ("webhook", hook.id.to_string());
            Log(Some(account), &change)
                .record(c, "webhook.updated", subject, &hook)
                .await
        })
    }

    async fn delete_webhook(&self, account: Uuid, id: Uuid, change: &Change) -> Result<()> {
        let change = change.clone();
        write!(self, |c| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM webhooks WHERE account_id = $1 AND id = $2 RETURNING {WEBHOOK_COLUMNS}"
            )))
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
            let gone = one(row, webhook_from_row, "webhook")?;
            let subject = ("webhook", id.to_string());
            Log(Some(account), &change)
                .record(c, "webhook.deleted", subject, &gone)
                .await
        })
    }

    async fn webhook_targets(&self, accounts: &[Uuid]) -> Result<Vec<crate::store::WebhookTarget>> {
        let mut out = Vec::new();
        for &account_id in accounts {
            let rows: Vec<(Uuid, Json<Vec<String>>, OffsetDateTime)> = sqlx::query_as(
                "SELECT id, events, created_at FROM webhooks WHERE account_id = $1 AND enabled",
            )
            .bind(account_id)
            .fetch_all(self.read())
            .await?;
            out.extend(rows.into_iter().map(|(id, events, created_at)| {
                crate::store::WebhookTarget {
                    account_id,
                    id,
                    events: events.0,
                    created_at,
                }
            }));
        }
        Ok(out)
    }

    async fn enqueue_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: &[crate::store::NewDelivery],
    ) -> Result<bool> {
        let deliveries = deliveries.to_vec();
        write!(self, |c| {
            sqlx::query(
                "INSERT INTO server_state (key, value) VALUES ('webhooks.fanout_seq', '0') \
                 ON CONFLICT DO NOTHING",
            )
            .execute(&mut *c)
            .await?;
            let moved = sqlx::query(
                "UPDATE server_state SET value = $1 WHERE key = 'webhooks.fanout_seq' AND value = $2",
            )
            .bind(to.to_string())
            .bind(from.to_string())
            .execute(&mut *c)
            .await?;
            if moved.rows_affected() == 0 {
                return Ok(false);
            }
            insert_deliveries(c, &deliveries, "DO NOTHING").await?;
            Ok(true)
        })
    }

    async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: i64,
        per_endpoint: i64,
    ) -> Result<Vec<crate::store::DueDelivery>> {
        write!(self, |c| {
            // The candidates are the oldest due deliveries of enabled
            // endpoints not already at their bound (so that one slow
            // endpoint's backlog does not hold up the others); of those,
            // each endpoint gets its first (bound − in hand). SKIP LOCKED:
            // nodes claiming together take different deliveries.
            // `held`: each endpoint's deliveries in hand, counted once. The
            // locking select states again what makes a delivery claimable:
            // on PostgreSQL a row another node claimed and committed since
            // this statement's snapshot is locked in its new version and
            // checked against that, so it is not claimed twice.
            let rows: Vec<(Uuid, Uuid, Uuid, String, i32)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "WITH held AS (\
                   SELECT webhook_id, COUNT(*) AS n FROM webhook_deliveries \
                   WHERE claimed_until IS NOT NULL AND {claimed} > {now} GROUP BY webhook_id\
                 ), candidates AS (\
                   SELECT id, webhook_id, {due} AS due, event_seq FROM webhook_deliveries{by_due} \
                   WHERE state = 'pending' AND {due} <= {now} \
                   AND (claimed_until IS NULL OR {claimed} <= {now}) \
                   AND webhook_id IN (SELECT id FROM webhooks WHERE enabled) \
                   AND webhook_id NOT IN (SELECT webhook_id FROM held WHERE n >= $4) \
                   ORDER BY {due}, event_seq LIMIT $5\
                 ), ranked AS (\
                   SELECT c.id, c.due, c.event_seq, \
                     ROW_NUMBER() OVER (PARTITION BY c.webhook_id ORDER BY c.due, c.event_seq) \
                       + COALESCE(h.n, 0) AS n \
                   FROM candidates c LEFT JOIN held h ON h.webhook_id = c.webhook_id\
                 ) \
                 UPDATE webhook_deliveries SET claimed_until = $1 WHERE id IN (\
                   SELECT id FROM webhook_deliveries WHERE id IN (\
                     SELECT id FROM ranked WHERE n <= $4 ORDER BY due, event_seq LIMIT $3\
                   ) AND state = 'pending' AND (claimed_until IS NULL OR {claimed} <= {now}){lock}) \
                 RETURNING id, webhook_id, event_id, payload, attempts",
                claimed = ts!("claimed_until"),
                now = ts!("$2"),
                due = ts!("next_attempt_at"),
                lock = lock!("FOR UPDATE SKIP LOCKED"),
                // Not the endpoint's index: its whole history, sorted.
                by_due = indexed_by!("webhook_deliveries_due"),
            )))
            .bind(now + lease)
            .bind(now)
            .bind(limit)
            .bind(per_endpoint)
            .bind(limit.saturating_mul(8))
            .fetch_all(&mut *c)
            .await?;
            let mut hooks: BTreeMap<Uuid, (String, Vec<String>)> = BTreeMap::new();
            let mut out = Vec::with_capacity(rows.len());
            for (id, webhook_id, event_id, payload, attempts) in rows {
                if let std::collections::btree_map::Entry::Vacant(slot) = hooks.entry(webhook_id) {
                    let (url, secret, previous, until): (
                        String,
                        String,
                        Option<String>,
                        Option<OffsetDateTime>,
                    ) = sqlx::query_as(
                        "SELECT url, secret, previous_secret, previous_secret_until FROM webhooks \
                         WHERE id = $1",
                    )
                    .bind(webhook_id)
                    .fetch_one(&mut *c)
                    .await?;
                    let mut secrets = vec![secret];
                    if let (Some(p), Some(until)) = (previous, until)
                        && until > now
                    {
                        secrets.push(p);
                    }
                    slot.insert((url, secrets));
                }
                let (url, secrets) = hooks[&webhook_id].clone();
                out.push(crate::store::DueDelivery {
                    id,
                    webhook_id,
                    url,
                    secrets,
                    event_id,
                    payload,
                    attempts,
                });
            }
            out.sort_by_key(|d| d.id);
            Ok(out)
        })
    }

    async fn finish_deliveries(
        &self,
        done: &[crate::store::FinishedDelivery],
        disable_before: OffsetDateTime,
    ) -> Result<Vec<Webhook>> {
        let mut done = done.to_vec();
        done.sort_by_key(|f| f.attempt.at);
        write!(self, |c| {
            for f in &done {
                let attempt = &f.attempt;
                sqlx::query(
                    "INSERT INTO webhook_attempts (id, delivery_id, at, status_code, latency_ms, response, error) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(Uuid::now_v7())
                .bind(f.id)
                .bind(attempt.at)
                .bind(attempt.status_code)
                .bind(attempt.latency_ms)
                .bind(&attempt.response)
                .bind(&attempt.error)
                .execute(&mut *c)
                .await?;
                let state = match (f.delivered, f.next) {
                    (true, _) => "delivered",
                    (false, Some(_)) => "pending",
                    (false, None) => "failed",
                };
                // Only while the delivery is still claimed: a retry or a
                // replay made during the attempt (which clears the claim)
                // stands.
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = $1, attempts = attempts + 1, claimed_until = NULL, \
                     next_attempt_at = COALESCE($2, next_attempt_at), finished_at = $3 \
                     WHERE id = $4 AND claimed_until IS NOT NULL",
                )
                .bind(state)
                .bind(f.next)
                .bind((state != "pending").then_some(attempt.at))
                .bind(f.id)
                .execute(&mut *c)
                .await?;
            }
            // Each endpoint's health after the batch, in one statement: a
            // success clears it, a failure starts it if unset (the attempts
            // are taken in the order they were made).
            let mut failed: Vec<Uuid> = Vec::new();
            for (hook, health) in endpoint_health(&done) {
                let update = match health {
                    Health::FailingSince(at) => sqlx::query(
                        "UPDATE webhooks SET failing_since = COALESCE(failing_since, $2) WHERE id = $1",
                    )
                    .bind(hook)
                    .bind(at),
                    Health::Reset(Some(at)) => {
                        sqlx::query("UPDATE webhooks SET failing_since = $2 WHERE id = $1")
                            .bind(hook)
                            .bind(at)
                    }
                    Health::Reset(None) => sqlx::query(
                        "UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
                    )
                    .bind(hook),
                };
                update.execute(&mut *c).await?;
                if !matches!(health, Health::Reset(None)) {
                    failed.push(hook);
                }
            }
            // Endpoints failing since before `disable_before` are disabled,
            // by the server (`webhook.disabled`).
            let mut disabled = Vec::new();
            let now = crate::domain::time::now();
            for hook in failed {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE webhooks SET enabled = FALSE, updated_at = $2 \
                     WHERE id = $1 AND enabled AND failing_since IS NOT NULL AND {} <= {} \
                     RETURNING account_id, {WEBHOOK_COLUMNS}",
                    ts!("failing_since"),
                    ts!("$3"),
                )))
                .bind(hook)
                .bind(now)
                .bind(disable_before)
                .fetch_optional(&mut *c)
                .await?;
                let Some(row) = row else { continue };
                let account: Uuid = row.try_get("account_id")?;
                let hook = webhook_from_row(&row)?;
                let subject = ("webhook", hook.id.to_string());
                Log(Some(account), &Change::system(now))
                    .record(c, "webhook.disabled", subject, &hook)
                    .await?;
                disabled.push(hook);
            }
            Ok(disabled)
        })
    }

    async fn rotate_webhook_secret(
        &self,
        account: Uuid,
        id: Uuid,
        secret: &str,
        old_until: OffsetDateTime,
        change: &Change,
    ) -> Result<Webhook> {
        let (secret, change) = (secret.to_owned(), change.clone());
        write!(self, |c| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE webhooks SET previous_secret = secret, previous_secret_until = $1, secret = $2, \
                 updated_at = $3 WHERE account_id = $4 AND id = $5 RETURNING {WEBHOOK_COLUMNS}"
            )))
            .bind(old_until)
            .bind(&secret)
            .bind(change.at)
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
            let hook = one(row, webhook_from_row, "webhook")?;
            let subject = ("webhook", id.to_string());
            Log(Some(account), &change)
                .record(c, "webhook.secret_rotated", subject, &hook)
                .await?;
            Ok(hook)
        })
    }

    async fn retry_delivery(
        &self,
        account: Uuid,
        hook: Uuid,
        delivery: Uuid,
        now: OffsetDateTime,
    ) -> Result<Delivery> {
        write!(self, |c| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $1, claimed_until = NULL, \
                 finished_at = NULL WHERE account_id = $2 AND webhook_id = $3 AND id = $4 \
                 RETURNING {DELIVERY_COLUMNS}"
            )))
            .bind(now)
            .bind(account)
            .bind(hook)
            .bind(delivery)
            .fetch_optional(&mut *c)
            .await?;
            one(row, delivery_from_row, "delivery")
        })
    }

    async fn requeue_deliveries(&self, deliveries: &[crate::store::NewDelivery]) -> Result<u64> {
        let deliveries = deliveries.to_vec();
        write!(self, |c| {
            insert_deliveries(
                c,
                &deliveries,
                "(webhook_id, event_id) DO UPDATE SET state = 'pending', attempts = 0, \
                 next_attempt_at = excluded.next_attempt_at, claimed_until = NULL, finished_at = NULL",
            )
            .await
        })
    }

    async fn list_deliveries(
        &self,
        account: Uuid,
        hook: Uuid,
        page: Page,
    ) -> Result<Paged<Delivery>> {
        let mut found = DELIVERIES
            .page(self, (account, hook), page, delivery_from_row, |d| d.id)
            .await?;
        for d in &mut found.items {
            let rows: Vec<(
                OffsetDateTime,
                Option<i32>,
                i64,
                Option<String>,
                Option<String>,
            )> = sqlx::query_as(
                "SELECT at, status_code, latency_ms, response, error FROM webhook_attempts \
                     WHERE delivery_id = $1 ORDER BY id",
            )
            .bind(d.id)
            .fetch_all(self.read())
            .await?;
            d.log = rows
                .into_iter()
                .map(|(at, status_code, latency_ms, response, error)| Attempt {
                    at,
                    status_code,
                    latency_ms,
                    response,
                    error,
                })
                .collect();
        }
        Ok(found)
    }

    // --- spaces ---------------------------------------------------------------------

    async fn create_space(
        &self,
        account: Uuid,
        space: &Space,
        members: &[Uuid],
        change: &Change,
    ) -> Result<Space> {
        let (space, members, change) = (space.clone(), members.to_vec(), change.clone());
        write!(self, |c| {
            sqlx::query(
                    "INSERT INTO spaces (id, account_id, name, visibility, created_by, created_at, updated_at, external_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(space.id)
                .bind(account)
                .bind(&space.name)
                .bind(space.visibility.as_str())
                .bind(space.created_by)
                .bind(space.created_at)
                .bind(space.updated_at)
                .bind(&space.external_id)
            .execute(&mut *c)
            .await?;
            let subject = ("space", space.id.to_string());
            Log(Some(account), &change)
                .record(c, "space.created", subject, &space)
                .await?;
            if let Some(creator) = space.created_by {
                let joined = sqlx::query(
                        "INSERT INTO space_members (account_id, space_id, user_id, role, joined_at) \
                         SELECT $1, $2, id, 'owner', $3 FROM users WHERE account_id = $1 AND id = $4",
                    )
                    .bind(account)
                    .bind(space.id)
                    .bind(space.created_at)
                .bind(creator)
                .execute(&mut *c)
                .await?;
                if joined.rows_affected() == 1 {
                    let member = Member {
                        user_id: creator,
                        role: "owner".into(),
                        joined_at: space.created_at,
                    };
                    record_member(c, account, &change, ("space", space.id), None, &member).await?;
                }
            }
            sync_space_members(c, account, space.id, &members, &[], &change).await?;
            Ok(space)
        })
    }

    async fn list_spaces(
        &self,
        account: Uuid,
        viewer: Option<Uuid>,
        page: Page,
    ) -> Result<Paged<Space>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SPACE_COLUMNS} FROM spaces s WHERE account_id = $1 AND ($2 IS NULL OR id > $2) \
             AND ($3 IS NULL OR visibility = 'public' OR EXISTS \
             (SELECT 1 FROM space_members m WHERE m.space_id = s.id AND m.user_id = $3)) \
             ORDER BY id LIMIT $4"
        )))
        .bind(account)
        .bind(page.after)
        .bind(viewer)
        .bind(fetch_limit(page))
        .fetch_all(self.read())
        .await?;
        paged(rows, page, space_from_row, |s| s.id)
    }

    async fn search_spaces(
        &self,
        account: Uuid,
        name: Option<&str>,
        offset: u64,
        count: u32,
    ) -> Result<Found<Space>> {
        let name = name.map(str::to_lowercase);
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM spaces WHERE account_id = $1 AND ($2 IS NULL OR lower(name) = $2)",
        )
        .bind(account)
        .bind(name.clone())
        .fetch_one(self.read())
        .await?;
        let rows = if count == 0 {
            Vec::new()
        } else {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SPACE_COLUMNS} FROM spaces s WHERE account_id = $1 \
                 AND ($2 IS NULL OR lower(name) = $2) ORDER BY id LIMIT $3 OFFSET $4"
            )))
            .bind(account)
            .bind(name)
            .bind(i64::from(count))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(self.read())
            .await?
        };
        Ok(Found {
            items: all(rows, space_from_row)?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn get_space(&self, account: Uuid, space: Uuid) -> Result<Space> {
        self.get_in(
            "spaces",
            SPACE_COLUMNS,
            account,
            space,
            space_from_row,
            "space",
        )
        .await
    }

    async fn update_space(
        &self,
        account: Uuid,
        space: Uuid,
        edit: &SpaceEdit,
        change: &Change,
    ) -> Result<Space> {
        let (edit, change) = (edit.clone(), change.clone());
        write!(self, |c| {
            let updated = if edit.changes_fields() {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE spaces SET name = COALESCE($1, name), visibility = COALESCE($2, visibility), \
                     updated_at = $3, external_id = CASE WHEN $6 THEN $7 ELSE external_id END \
                     WHERE account_id = $4 AND id = $5 RETURNING {SPACE_COLUMNS}"
                )))
                .bind(edit.name.as_deref())
                .bind(edit.visibility.map(Visibility::as_str))
                .bind(change.at)
                .bind(account)
                .bind(space)
                .bind(edit.external_id.is_some())
                .bind(edit.external_id.clone().flatten())
                .fetch_optional(&mut *c)
                .await?;
                let updated = one(row, space_from_row, "space")?;
                let subject = ("space", space.to_string());
                Log(Some(account), &change)
                    .record(c, "space.updated", subject, &updated)
                    .await?;
                updated
            } else {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SPACE_COLUMNS} FROM spaces WHERE account_id = $1 AND id = $2{}",
                    lock!("FOR SHARE")
                )))
                .bind(account)
                .bind(space)
                .fetch_optional(&mut *c)
                .await?;
                one(row, space_from_row, "space")?
            };
            sync_space_members(c, account, space, &edit.add, &edit.remove, &change).await?;
            Ok(updated)
        })
    }

    async fn delete_space(&self, account: Uuid, space: Uuid, change: &Change) -> Result<()> {
        let change = change.clone();
        write!(self, |c| {
            let rooms = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM rooms WHERE account_id = $1 AND space_id = $2 RETURNING {ROOM_COLUMNS}"
            )))
            .bind(account)
            .bind(space)
            .fetch_all(&mut *c)
            .await?;
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM spaces WHERE account_id = $1 AND id = $2 RETURNING {SPACE_COLUMNS}"
            )))
            .bind(account)
            .bind(space)
            .fetch_optional(&mut *c)
            .await?;
            let gone = one(row, space_from_row, "space")?;
            record_deleted_rooms(c, account, &change, rooms).await?;
            let subject = ("space", space.to_string());
            Log(Some(account), &change)
                .record(c, "space.deleted", subject, &gone)
                .await
        })
    }

    async fn space_role(
        &self,
        account: Uuid,
        space: Uuid,
        user: Uuid,
    ) -> Result<Option<SpaceRole>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM space_members WHERE account_id = $1 AND space_id = $2 AND user_id = $3",
        )
        .bind(account)
        .bind(space)
        .bind(user)
        .fetch_optional(self.read())
        .await?;
        Ok(role.as_deref().and_then(SpaceRole::parse))
    }

    async fn put_space_member(
        &self,
        account: Uuid,
        space: Uuid,
        user: Uuid,
        role: SpaceRole,
        only_if_absent: bool,
        change: &Change,
    ) -> Result<Member> {
        let change = change.clone();
        write!(self, |c| {
            exists(c, "spaces", account, space, "space", "").await?;
            exists(c, "users", account, user, "user", "").await?;
            let conflict = if only_if_absent {
                "DO NOTHING"
            } else {
                "DO UPDATE SET role = excluded.role"
            };
            upsert_space_member(c, account, space, user, role.as_str(), conflict, &change).await
        })
    }

    async fn remove_space_member(
        &self,
        account: Uuid,
        space: Uuid,
        user: Uuid,
        change: &Change,
    ) -> Result<()> {
        let change = change.clone();
        write!(self, |c| {
            remove_member(c, account, ("space", space), user, &change).await
        })
    }

    async fn list_space_members(
        &self,
        account: Uuid,
        space: Uuid,
        page: Page,
    ) -> Result<Paged<Member>> {
        SPACE_MEMBERS
            .page(self, (account, space), page, member_from_row, |m| m.user_id)
            .await
    }

    // --- room memberships -------------------------------------------------------------

    async fn list_rooms_visible_to(
        &self,
        account: Uuid,
        user: Uuid,
        page: Page,
    ) -> Result<Paged<Room>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms r WHERE account_id = $1 AND ($2 IS NULL OR id > $2) \
             AND {ROOM_VISIBLE} ORDER BY id LIMIT $4"
        )))
        .bind(account)
        .bind(page.after)
        .bind(user)
        .bind(fetch_limit(page))
        .fetch_all(self.read())
        .await?;
        paged(rows, page, room_from_row, |r| r.id)
    }

    async fn room_visible_to(&self, account: Uuid, room: Uuid, user: Uuid) -> Result<bool> {
        let found: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM rooms r WHERE r.account_id = $1 AND r.id = $2 AND {ROOM_VISIBLE}"
        )))
        .bind(account)
        .bind(room)
        .bind(user)
        .fetch_optional(self.read())
        .await?;
        Ok(found.is_some())
    }

    async fn room_role(&self, account: Uuid, room: Uuid, user: Uuid) -> Result<Option<RoomRole>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM room_members WHERE account_id = $1 AND room_id = $2 AND user_id = $3",
        )
        .bind(account)
        .bind(room)
        .bind(user)
        .fetch_optional(self.read())
        .await?;
        Ok(role.as_deref().and_then(RoomRole::parse))
    }

    async fn put_room_member(
        &self,
        account: Uuid,
        room: Uuid,
        user: Uuid,
        role: RoomRole,
        only_if_absent: bool,
        change: &Change,
    ) -> Result<Member> {
        let change = change.clone();
        let at = change.at;
        write!(self, |c| {
            exists(c, "rooms", account, room, "room", "").await?;
            // Locking the user's row serializes their joins, so the room
            // cap holds under concurrent joins.
            exists(
                c,
                "users",
                account,
                user,
                "user",
                lock!("FOR NO KEY UPDATE"),
            )
            .await?;
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2",
            )
            .bind(room)
            .bind(user)
            .fetch_optional(&mut *c)
            .await?;
            if existing.is_none() {
                let n: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM room_members WHERE user_id = $1")
                        .bind(user)
                        .fetch_one(&mut *c)
                        .await?;
                if n >= MAX_ROOMS_PER_USER {
                    return Err(crate::store::room_cap_conflict());
                }
                sqlx::query(
                    "INSERT INTO room_members (account_id, room_id, user_id, role, joined_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(account)
                .bind(room)
                .bind(user)
                .bind(role.as_str())
                .bind(at)
                .execute(&mut *c)
                .await?;
            } else if !only_if_absent {
                sqlx::query(
                    "UPDATE room_members SET role = $1 WHERE room_id = $2 AND user_id = $3",
                )
                .bind(role.as_str())
                .bind(room)
                .bind(user)
                .execute(&mut *c)
                .await?;
            }
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {MEMBER_COLUMNS} FROM room_members WHERE room_id = $1 AND user_id = $2"
            )))
            .bind(room)
            .bind(user)
            .fetch_one(&mut *c)
            .await?;
            let member = member_from_row(&row)?;
            record_member(
                c,
                account,
                &change,
                ("room", room),
                existing.as_deref(),
                &member,
            )
            .await?;
            Ok(member)
        })
    }

    async fn remove_room_member(
        &self,
        account: Uuid,
        room: Uuid,
        user: Uuid,
        change: &Change,
    ) -> Result<()> {
        let change = change.clone();
        write!(self, |c| {
            remove_member(c, account, ("room", room), user, &change).await
        })
    }

    async fn list_room_members(
        &self,
        account: Uuid,
        room: Uuid,
        page: Page,
    ) -> Result<Paged<Member>> {
        ROOM_MEMBERS
            .page(self, (account, room), page, member_from_row, |m| m.user_id)
            .await
    }

    // --- custom roles -----------------------------------------------------------------

    async fn create_role(&self, account: Uuid, role: &Role, change: &Change) -> Result<Role> {
        let (role, change) = (role.clone(), change.clone());
        let id = Uuid::try_parse(&role.id).map_err(|e| StoreError::Other(e.into()))?;
        write!(self, |c| {
            sqlx::query(
                    "INSERT INTO roles (id, account_id, name, name_norm, description, permissions, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(id)
                .bind(account)
                .bind(&role.name)
                .bind(role.name.to_lowercase())
                .bind(&role.description)
                .bind(Json(&role.permissions))
            .bind(role.created_at)
            .execute(&mut *c)
            .await?;
            let subject = ("role", role.id.clone());
            Log(Some(account), &change)
                .record(c, "role.created", subject, &role)
                .await?;
            Ok(role)
        })
    }

    async fn list_roles(&self, account: Uuid) -> Result<Vec<Role>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROLE_COLUMNS} FROM roles WHERE account_id = $1 ORDER BY id"
        )))
        .bind(account)
        .fetch_all(self.read())
        .await?;
        all(rows, role_from_row)
    }

    async fn get_role(&self, account: Uuid, role: &str) -> Result<Role> {
        let id = Uuid::try_parse(role).map_err(|_| StoreError::NotFound("role"))?;
        self.get_in("roles", ROLE_COLUMNS, account, id, role_from_row, "role")
            .await
    }

    async fn update_role(
        &self,
        account: Uuid,
        role: &str,
        name: Option<&str>,
        description: Option<Option<&str>>,
        permissions: Option<&[Permission]>,
        change: &Change,
    ) -> Result<Role> {
        let change = change.clone();
        let id = Uuid::try_parse(role).map_err(|_| StoreError::NotFound("role"))?;
        let name = name.map(str::to_owned);
        let description = description.map(|d| d.map(str::to_owned));
        let permissions = permissions.map(<[Permission]>::to_vec);
        write!(self, |c| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE roles SET name = COALESCE($1, name), name_norm = COALESCE($2, name_norm), \
                     description = CASE WHEN $3 THEN $4 ELSE description END, \
                     permissions = COALESCE($5, permissions), updated_at = $6 \
                     WHERE account_id = $7 AND id = $8 RETURNING {ROLE_COLUMNS}"
            )))
            .bind(name.as_deref())
            .bind(name.as_deref().map(str::to_lowercase))
            .bind(description.is_some())
            .bind(description.flatten())
            .bind(permissions.map(Json))
            .bind(change.at)
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
            let updated = one(row, role_from_row, "role")?;
            let subject = ("role", updated.id.clone());
            Log(Some(account), &change)
                .record(c, "role.updated", subject, &updated)
                .await?;
            Ok(updated)
        })
    }

    async fn delete_role(&self, account: Uuid, role: &str, change: &Change) -> Result<()> {
        let change = change.clone();
        let id = Uuid::try_parse(role).map_err(|_| StoreError::NotFound("role"))?;
        let role = role.to_owned();
        write!(self, |c| {
            // Lock the role so no user is given it while we check.
            exists(c, "roles", account, id, "role", lock!("FOR UPDATE")).await?;
            let held: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM user_roles WHERE account_id = $1 AND role = $2 LIMIT 1",
            )
            .bind(account)
            .bind(&role)
            .fetch_optional(&mut *c)
            .await?;
            if held.is_some() {
                return Err(StoreError::conflict(
                    "id",
                    "users still hold this role; take it from them first",
                ));
            }
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM roles WHERE account_id = $1 AND id = $2 RETURNING {ROLE_COLUMNS}"
            )))
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
            let gone = one(row, role_from_row, "role")?;
            Log(Some(account), &change)
                .record(c, "role.deleted", ("role", role), &gone)
                .await
        })
    }

    // --- invites ------------------------------------------------------------------------

    async fn create_invite(
        &self,
        account: Uuid,
        invite: &Invite,
        change: &Change,
    ) -> Result<Invite> {
        let (invite, change) = (invite.clone(), change.clone());
        write!(self, |c| {
            exists(c, "spaces", account, invite.space_id, "space", "").await?;
            sqlx::query(
                    "INSERT INTO invites (id, account_id, space_id, role, max_uses, uses, expires_at, revoked_at, \
                     created_by, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6, NULL, $7, $8)",
                )
                .bind(invite.id)
                .bind(account)
                .bind(invite.space_id)
                .bind(invite.role.as_str())
                .bind(i32::try_from(invite.max_uses).unwrap_or(i32::MAX))
                .bind(invite.expires_at)
                .bind(invite.created_by)
            .bind(invite.created_at)
            .execute(&mut *c)
            .await?;
            let subject = ("invite", invite.id.to_string());
            Log(Some(account), &change)
                .record(c, "invite.created", subject, &invite)
                .await?;
            Ok(invite)
        })
    }

    async fn list_invites(&self, account: Uuid, space: Uuid, page: Page) -> Result<Paged<Invite>> {
        INVITES
            .page(self, (account, space), page, invite_from_row, |i| i.id)
            .await
    }

    async fn revoke_invite(
        &self,
        account: Uuid,
        space: Uuid,
        invite: Uuid,
        change: &Change,
    ) -> Result<()> {
        let change = change.clone();
        write!(self, |c| {
            let ids = (account, space, invite);
            let Some(row) = INVITES.revoke(c, ids, change.at, "invite").await? else {
                return Ok(()); // revoked before: no change
            };
            let revoked = invite_from_row(&row)?;
            let subject = ("invite", invite.to_string());
            Log(Some(account), &change)
                .record(c, "invite.revoked", subject, &revoked)
                .await
        })
    }

    async fn activate_invite(
        &self,
        account: Uuid,
        space: Uuid,
        invite: Uuid,
        user: Uuid,
        change: &Change,
    ) -> Result<Member> {
        let change = change.clone();
        let at = change.at;
        write!(self, |c| {
            // One conditional update: of concurrent activations of a
            // one-use invite exactly one sees a row.
            let used = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE invites SET uses = uses + 1 WHERE account_id = $1 AND space_id = $2 AND id = $3 \
                     AND revoked_at IS NULL AND uses < max_uses AND (expires_at IS NULL OR {} > {}) \
                     RETURNING {INVITE_COLUMNS}",
                    ts!("expires_at"),
                    ts!("$4")
                )))
                .bind(account)
                .bind(space)
                .bind(invite)
                .bind(at)
                .fetch_optional(&mut *c)
                .await?;
            let found = match used {
                Some(row) => invite_from_row(&row)?,
                None => {
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT {INVITE_COLUMNS} FROM invites WHERE account_id = $1 AND space_id = $2 AND id = $3"
                        )))
                        .bind(account)
                        .bind(space)
                        .bind(invite)
                        .fetch_optional(&mut *c)
                        .await?;
                    let found = one(row, invite_from_row, "invite")?;
                    let why = crate::store::invite_gone(&found, at).unwrap_or(Gone::UsedUp);
                    return Err(StoreError::Gone(why, "invite"));
                }
            };
            // Never lowers a higher role the user already holds.
            let conflict = "DO UPDATE SET role = CASE \
                    WHEN space_members.role = 'owner' THEN 'owner' \
                    WHEN space_members.role = 'moderator' OR excluded.role = 'moderator' THEN 'moderator' \
                    ELSE 'user' END";
            let subject = ("invite", invite.to_string());
            Log(Some(account), &change)
                .record(c, "invite.activated", subject, &found)
                .await?;
            upsert_space_member(
                c,
                account,
                space,
                user,
                found.role.as_str(),
                conflict,
                &change,
            )
            .await
        })
    }

    // --- guest access links -----------------------------------------------------------------

    async fn create_link(
        &self,
        account: Uuid,
        link: &AccessLink,
        change: &Change,
    ) -> Result<AccessLink> {
        let (link, change) = (link.clone(), change.clone());
        write!(self, |c| {
            exists(c, "rooms", account, link.room_id, "room", "").await?;
            sqlx::query(
                    "INSERT INTO access_links (id, account_id, room_id, username, role, external_user_id, \
                     is_permanent, expires_at, used_at, revoked_at, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10)",
                )
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
            .await?;
            let subject = ("access_link", link.id.to_string());
            Log(Some(account), &change)
                .record(c, "access_link.created", subject, &link)
                .await?;
            Ok(link)
        })
    }

    async fn list_links(&self, account: Uuid, room: Uuid, page: Page) -> Result<Paged<AccessLink>> {
        LINKS
            .page(self, (account, room), page, link_from_row, |l| l.id)
            .await
    }

    async fn revoke_link(
        &self,
        account: Uuid,
        room: Uuid,
        link: Uuid,
        change: &Change,
    ) -> Result<()> {
        let change = change.clone();
        write!(self, |c| {
            let ids = (account, room, link);
            let Some(row) = LINKS.revoke(c, ids, change.at, "access link").await? else {
                return Ok(()); // revoked before: no change
            };
            let revoked = link_from_row(&row)?;
            let subject = ("access_link", link.to_string());
            Log(Some(account), &change)
                .record(c, "access_link.revoked", subject, &revoked)
                .await
        })
    }

    async fn use_link(&self, account: Uuid, link: Uuid, change: &Change) -> Result<AccessLink> {
        let change = change.clone();
        let at = change.at;
        write!(self, |c| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {LINK_COLUMNS} FROM access_links WHERE account_id = $1 AND id = $2{}",
                lock!("FOR UPDATE")
            )))
            .bind(account)
            .bind(link)
            .fetch_optional(&mut *c)
            .await?;
            let found = one(row, link_from_row, "access link")?;
            if let Some(why) = crate::store::link_gone(&found, at) {
                return Err(StoreError::Gone(why, "access link"));
            }
            if !found.is_permanent {
                sqlx::query("UPDATE access_links SET used_at = $1 WHERE id = $2")
                    .bind(at)
                    .bind(link)
                    .execute(&mut *c)
                    .await?;
            }
            let used = AccessLink {
                used_at: Some(at),
                ..found.clone()
            };
            let subject = ("access_link", link.to_string());
            Log(Some(account), &change)
                .record(c, "access_link.used", subject, &used)
                .await?;
            Ok(found)
        })
    }

    // --- presence and membership ----------------------------------------------------------

    async fn is_room_member(&self, account: Uuid, room: Uuid, user: Uuid) -> Result<bool> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM room_members WHERE account_id = $1 AND room_id = $2 AND user_id = $3",
        )
        .bind(account)
        .bind(room)
        .bind(user)
        .fetch_optional(self.read())
        .await?;
        Ok(found.is_some())
    }

    async fn set_presence(
        &self,
        account: Uuid,
        user: Uuid,
        status: Status,
        at: OffsetDateTime,
    ) -> Result<()> {
        write!(self, |c| {
            sqlx::query(
                "UPDATE users SET status = $1, last_seen_at = $2 WHERE account_id = $3 AND id = $4",
            )
            .bind(status.as_str())
            .bind(at)
            .bind(account)
            .bind(user)
            .execute(&mut *c)
            .await?;
            Ok(())
        })
    }

    async fn reset_presence(&self, at: OffsetDateTime) -> Result<u64> {
        write!(self, |c| {
            let r = sqlx::query(
                "UPDATE users SET status = 'offline', last_seen_at = $1 WHERE status <> 'offline'",
            )
            .bind(at)
            .execute(&mut *c)
            .await?;
            Ok(r.rows_affected())
        })
    }

    // --- tokens -------------------------------------------------------------------------------

    async fn check_user_token(
        &self,
        account: Uuid,
        user: Uuid,
        jti: Uuid,
        now: OffsetDateTime,
    ) -> Result<TokenCheck> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.id = $1 AND t.user_id = $2 AND t.account_id = $3 AND u.account_id = $3 \
             AND t.revoked_at IS NULL AND {} > {} AND u.active \
             AND (u.tokens_valid_after IS NULL OR {} <= {})",
            crate::store::user_columns_of("u"),
            ts!("t.expires_at"),
            ts!("$4"),
            ts!("u.tokens_valid_after"),
            ts!("t.created_at"),
        )))
        .bind(jti)
        .bind(user)
        .bind(account)
        .bind(now)
        .fetch_optional(self.read())
        .await?;
        Ok(match row {
            None => TokenCheck::Invalid,
            Some(row) => TokenCheck::Valid(Box::new(user_from_row(&row)?)),
        })
    }

    // --- sessions -------------------------------------------------------------------------------

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
        .fetch_optional(self.read())
        .await?;
        row.map(|r| -> Result<sessions::LoginCandidate> {
            Ok(sessions::LoginCandidate {
                user: user_from_row(&r)?,
                password_hash: r.try_get(27)?,
            })
        })
        .transpose()
    }

    async fn password_hash(&self, account: Uuid, user: Uuid) -> Result<Option<String>> {
        let found: Option<Option<String>> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE account_id = $1 AND id = $2")
                .bind(account)
                .bind(user)
                .fetch_optional(self.read())
                .await?;
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
        write!(self, |c| {
            store_password(c, account, user, &hash, false, at).await
        })
    }

    async fn create_session(
        &self,
        account: Uuid,
        s: &sessions::NewSession,
        change: &Change,
    ) -> Result<()> {
        let (s, change) = (s.clone(), change.clone());
        write!(self, |c| {
            sqlx::query(
                "INSERT INTO sessions (id, account_id, user_id, created_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, NULL)",
            )
            .bind(s.id)
            .bind(account)
            .bind(s.user_id)
            .bind(s.created_at)
            .execute(&mut *c)
            .await?;
            insert_next_tokens(c, account, s.id, s.user_id, &s.tokens).await?;
            let data = serde_json::json!({"id": s.id, "user_id": s.user_id, "created_at": at_json(s.created_at)});
            Log(Some(account), &change)
                .record(c, "session.created", ("session", s.id.to_string()), &data)
                .await
        })
    }

    async fn refresh_token_owner(&self, account: Uuid, hash: &[u8]) -> Result<Option<Uuid>> {
        sqlx::query_scalar("SELECT user_id FROM refresh_tokens WHERE hash = $1 AND account_id = $2")
            .bind(hash)
            .bind(account)
            .fetch_optional(self.read())
            .await
            .map_err(StoreError::from)
    }

    async fn rotate_refresh_token(
        &self,
        account: Uuid,
        presented: &[u8],
        next: &sessions::NextTokens,
        change: &Change,
    ) -> Result<sessions::Refreshed> {
        let (presented, next, change) = (presented.to_vec(), next.clone(), change.clone());
        let now = change.at;
        write!(self, |c| {
            // The refresh token's row lock (PostgreSQL) makes spending it
            // and finding it spent one step: of two concurrent refreshes
            // exactly one wins and the other is reuse.
            let found: Option<(Uuid, Uuid, bool, bool, bool)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT r.session_id, r.user_id, r.used_at IS NOT NULL, {} > {}, \
                         s.revoked_at IS NULL AND u.active \
                         AND (u.tokens_valid_after IS NULL OR {} <= {}) \
                         FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
                         JOIN users u ON u.id = r.user_id WHERE r.hash = $2 AND r.account_id = $3{}",
                        ts!("r.expires_at"),
                        ts!("$1"),
                        ts!("u.tokens_valid_after"),
                        ts!("r.created_at"),
                        lock!("FOR UPDATE OF r FOR SHARE OF s"),
                    )))
                    .bind(now)
                    .bind(&presented)
                    .bind(account)
                    .fetch_optional(&mut *c)
                    .await?;
            let Some((session, user, used, fresh, ok)) = found else {
                return Ok(sessions::Refreshed::Invalid);
            };
            if used {
                let mut revoked = revoke_sessions(c, account, "id = $2", session, &change).await?;
                revoked.user_id = Some(user);
                return Ok(sessions::Refreshed::Reused {
                    user_id: user,
                    revoked,
                });
            }
            if !(fresh && ok) || next.access.user_id != user {
                return Ok(sessions::Refreshed::Invalid);
            }
            sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2")
                .bind(now)
                .bind(&presented)
                .execute(&mut *c)
                .await?;
            insert_next_tokens(c, account, session, user, &next).await?;
            let data =
                serde_json::json!({"id": session, "user_id": user, "refreshed_at": at_json(now)});
            Log(Some(account), &change)
                .record(
                    c,
                    "session.refreshed",
                    ("session", session.to_string()),
                    &data,
                )
                .await?;
            let fresh = select_user(c, account, user, false).await?;
            Ok(sessions::Refreshed::Rotated(Box::new(fresh)))
        })
    }

    async fn end_session(
        &self,
        account: Uuid,
        by: &sessions::SessionRef,
        change: &Change,
    ) -> Result<sessions::Revoked> {
        let (by, change) = (by.clone(), change.clone());
        let at = change.at;
        write!(self, |c| {
            let found: Option<(Option<Uuid>, Uuid, Uuid)> = match &by {
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
                .fetch_optional(&mut *c)
                .await?;
            let (session, token, user) = found.ok_or(StoreError::NotFound("session"))?;
            let mut revoked = match session {
                Some(session) => revoke_sessions(c, account, "id = $2", session, &change).await?,
                None => {
                    sqlx::query(
                        "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
                    )
                    .bind(at)
                    .bind(token)
                    .execute(&mut *c)
                    .await?;
                    record_token_revoked(c, account, &change, token, user).await?;
                    sessions::Revoked {
                        user_id: None,
                        tokens: vec![token],
                    }
                }
            };
            revoked.user_id = Some(user);
            Ok(revoked)
        })
    }

    async fn change_password(
        &self,
        account: Uuid,
        user: Uuid,
        hash: &str,
        revoke_others: bool,
        keep_token: Option<Uuid>,
        change: &Change,
    ) -> Result<sessions::Revoked> {
        let (hash, change) = (hash.to_owned(), change.clone());
        let at = change.at;
        write!(self, |c| {
            store_password(c, account, user, &hash, true, at).await?;
            record_password_changed(c, account, &change, user).await?;
            let mut revoked = sessions::Revoked {
                user_id: Some(user),
                tokens: vec![],
            };
            if revoke_others {
                let keep: Option<Uuid> =
                    sqlx::query_scalar("SELECT session_id FROM tokens WHERE id = $1")
                        .bind(keep_token)
                        .fetch_optional(&mut *c)
                        .await?
                        .flatten();
                revoked = end_login_sessions(c, user, keep, at).await?;
            }
            Ok(revoked)
        })
    }

    async fn issue_user_token(
        &self,
        account: Uuid,
        token: &TokenRecord,
        max_live: i64,
        change: &Change,
    ) -> Result<sessions::Revoked> {
        let (token, change) = (token.clone(), change.clone());
        write!(self, |c| {
            // The user's row lock serializes the cap (concurrent issues for
            // one user count one after another) and holds their state.
            let active: Option<bool> = sqlx::query_scalar(concat!(
                "SELECT active FROM users WHERE account_id = $1 AND id = $2",
                lock!("FOR NO KEY UPDATE")
            ))
            .bind(account)
            .bind(token.user_id)
            .fetch_optional(&mut *c)
            .await?;
            match active {
                None => return Err(StoreError::NotFound("user")),
                Some(false) => {
                    return Err(StoreError::conflict(
                        "active",
                        "the user is deactivated: reactivate them before issuing a token",
                    ));
                }
                Some(true) => {}
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
                .execute(&mut *c)
                .await?;
            // Ids are UUIDv7: their order is the order of issue.
            let tokens = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "UPDATE tokens SET revoked_at = $1 WHERE id IN (SELECT t.id FROM tokens t \
                     JOIN users u ON u.id = t.user_id WHERE t.account_id = $2 AND t.user_id = $3 \
                     AND t.kind = 'user' AND t.revoked_at IS NULL AND {} > {} \
                     AND (u.tokens_valid_after IS NULL OR {} <= {}) \
                     ORDER BY t.id DESC {} OFFSET $4) RETURNING id",
                ts!("t.expires_at"),
                ts!("$1"),
                ts!("u.tokens_valid_after"),
                ts!("t.created_at"),
                limit_all!(),
            )))
            .bind(token.created_at)
            .bind(account)
            .bind(token.user_id)
            .bind(max_live)
            .fetch_all(&mut *c)
            .await?;
            let subject = ("token", token.id.to_string());
            let data = serde_json::json!({
                "id": token.id,
                "user_id": token.user_id,
                "kind": token.kind,
                "room_id": token.room_id,
                "created_at": at_json(token.created_at),
                "expires_at": at_json(token.expires_at),
            });
            Log(Some(account), &change)
                .record(c, "token.issued", subject, &data)
                .await?;
            for &old in &tokens {
                record_token_revoked(c, account, &change, old, token.user_id).await?;
            }
            Ok(sessions::Revoked {
                user_id: Some(token.user_id),
                tokens,
            })
        })
    }

    async fn list_user_tokens(
        &self,
        account: Uuid,
        user: Uuid,
        now: OffsetDateTime,
        page: Page,
    ) -> Result<Paged<sessions::TokenInfo>> {
        let mut conn = self.read().acquire().await?;
        select_user(&mut conn, account, user, false).await?;
        let rows: Vec<TokenInfoRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT t.id, t.room_id, t.created_at, t.expires_at, t.revoked_at FROM tokens t \
             JOIN users u ON u.id = t.user_id WHERE t.account_id = $1 AND t.user_id = $2 \
             AND t.kind = 'user' AND t.revoked_at IS NULL AND {} > {} \
             AND (u.tokens_valid_after IS NULL OR {} <= {}) \
             AND ($4 IS NULL OR t.id > $4) ORDER BY t.id LIMIT $5",
            ts!("t.expires_at"),
            ts!("$3"),
            ts!("u.tokens_valid_after"),
            ts!("t.created_at"),
        )))
        .bind(account)
        .bind(user)
        .bind(now)
        .bind(page.after)
        .bind(fetch_limit(page))
        .fetch_all(&mut *conn)
        .await?;
        let items = rows.into_iter().map(token_info).collect();
        Ok(Paged::from_rows(items, page.limit, |t| t.id))
    }

    async fn revoke_user_token(
        &self,
        account: Uuid,
        user: Uuid,
        token: Uuid,
        change: &Change,
    ) -> Result<sessions::TokenInfo> {
        let change = change.clone();
        write!(self, |c| {
            let row: Option<TokenInfoRow> = sqlx::query_as(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) \
                     WHERE account_id = $2 AND user_id = $3 AND id = $4 AND kind = 'user' \
                     RETURNING id, room_id, created_at, expires_at, revoked_at",
            )
            .bind(change.at)
            .bind(account)
            .bind(user)
            .bind(token)
            .fetch_optional(&mut *c)
            .await?;
            let info = row.map(token_info).ok_or(StoreError::NotFound("token"))?;
            // Revoked again: no change, no event.
            if info.revoked_at == Some(change.at) {
                record_token_revoked(c, account, &change, token, user).await?;
            }
            Ok(info)
        })
    }

    async fn revoke_tokens_before(&self, account: Uuid, user: Uuid, change: &Change) -> Result<()> {
        let change = change.clone();
        let at = change.at;
        write!(self, |c| {
            let r = sqlx::query(
                "UPDATE users SET tokens_valid_after = $1 WHERE account_id = $2 AND id = $3",
            )
            .bind(at)
            .bind(account)
            .bind(user)
            .execute(&mut *c)
            .await?;
            touched(r.rows_affected(), "user")?;
            let ended: Vec<Uuid> = sqlx::query_scalar(
                "UPDATE tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL RETURNING id",
            )
            .bind(at)
            .bind(user)
            .fetch_all(&mut *c)
            .await?;
            for token in ended {
                record_token_revoked(c, account, &change, token, user).await?;
            }
            revoke_sessions(c, account, "user_id = $2", user, &change).await?;
            Ok(())
        })
    }

    async fn set_signup_settings(
        &self,
        account: Uuid,
        signup: &SignupSettings,
        change: &Change,
    ) -> Result<Settings> {
        let (signup, change) = (signup.clone(), change.clone());
        write!(self, |c| {
            update_settings(c, account, &change, |s| {
                s.signup = signup;
                Ok(())
            })
            .await
        })
    }

    async fn request_password_reset(
        &self,
        account: Uuid,
        r: &sessions::NewPasswordReset,
        change: &Change,
    ) -> Result<()> {
        let (r, change) = (r.clone(), change.clone());
        write!(self, |c| {
            sqlx::query(
                    "INSERT INTO password_resets (hash, account_id, user_id, created_at, expires_at, used_at) \
                     VALUES ($1, $2, $3, $4, $5, NULL)",
                )
                .bind(&r.hash)
                .bind(account)
                .bind(r.user_id)
                .bind(r.created_at)
                .bind(r.expires_at)
                .execute(&mut *c)
                .await?;
            insert_mail(c, &r.mail).await?;
            let data =
                serde_json::json!({"user_id": r.user_id, "expires_at": at_json(r.expires_at)});
            let subject = ("user", r.user_id.to_string());
            Log(Some(account), &change)
                .record(c, "user.password_reset_requested", subject, &data)
                .await
        })
    }

    async fn reset_password(
        &self,
        account: Uuid,
        hash: &[u8],
        password_hash: &str,
        change: &Change,
    ) -> Result<Option<sessions::Revoked>> {
        let (hash, password_hash) = (hash.to_vec(), password_hash.to_owned());
        let change = change.clone();
        let now = change.at;
        write!(self, |c| {
            let user: Option<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "UPDATE password_resets SET used_at = $1 WHERE hash = $2 AND account_id = $3 \
                     AND used_at IS NULL AND {} > {} RETURNING user_id",
                ts!("expires_at"),
                ts!("$1")
            )))
            .bind(now)
            .bind(&hash)
            .bind(account)
            .fetch_optional(&mut *c)
            .await?;
            let Some(user) = user else { return Ok(None) };
            sqlx::query(
                "UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
            )
            .bind(now)
            .bind(user)
            .execute(&mut *c)
            .await?;
            store_password(c, account, user, &password_hash, true, now).await?;
            record_password_changed(c, account, &change, user).await?;
            let mut revoked = revoke_sessions(c, account, "user_id = $2", user, &change).await?;
            revoked.user_id = Some(user);
            Ok(Some(revoked))
        })
    }

    async fn enqueue_mail(&self, mail: &sessions::OutboxMail) -> Result<()> {
        let mail = mail.clone();
        write!(self, |c| { insert_mail(c, &mail).await })
    }

    async fn claim_mail(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: i64,
    ) -> Result<Vec<sessions::OutboxMail>> {
        write!(self, |c| {
            // SKIP LOCKED: PostgreSQL nodes polling together take different mails.
            let rows: Vec<MailRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE outbox SET claimed_until = $1 WHERE id IN (SELECT id FROM outbox \
                     WHERE sent_at IS NULL AND {} <= {} AND (claimed_until IS NULL OR {} <= {}) \
                     ORDER BY id LIMIT $3{}) \
                     RETURNING id, account_id, to_addr, subject, body, created_at, attempts",
                ts!("next_attempt_at"),
                ts!("$2"),
                ts!("claimed_until"),
                ts!("$2"),
                lock!("FOR UPDATE SKIP LOCKED"),
            )))
            .bind(now + lease)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?;
            let mut mails: Vec<_> = rows.into_iter().map(mail_from_row).collect();
            mails.sort_by_key(|m| m.id);
            Ok(mails)
        })
    }

    async fn finish_mail(
        &self,
        id: Uuid,
        at: OffsetDateTime,
        failure: Option<(&str, Option<OffsetDateTime>)>,
    ) -> Result<()> {
        let failure = failure.map(|(e, next)| (e.to_owned(), next));
        write!(self, |c| {
            match failure {
                    None => sqlx::query(
                        "UPDATE outbox SET sent_at = $1, attempts = attempts + 1, claimed_until = NULL \
                         WHERE id = $2",
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
                .execute(&mut *c)
                .await?;
            Ok(())
        })
    }

    async fn create_user_with_mail(
        &self,
        account: Uuid,
        user: &NewUser,
        token: &TokenRecord,
        change: &Change,
        mail: &sessions::UserMail,
    ) -> Result<User> {
        self.insert_new_user(account, user, token, change, Some(mail))
            .await
    }

    async fn verify_email(
        &self,
        account: Uuid,
        hash: &[u8],
        change: &Change,
    ) -> Result<Option<User>> {
        let (hash, change) = (hash.to_vec(), change.clone());
        let now = change.at;
        write!(self, |c| {
            let found: Option<(Uuid, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE email_verifications SET used_at = $1 WHERE hash = $2 AND account_id = $3 \
                     AND used_at IS NULL AND {} > {} RETURNING user_id, email",
                ts!("expires_at"),
                ts!("$1")
            )))
            .bind(now)
            .bind(&hash)
            .bind(account)
            .fetch_optional(&mut *c)
            .await?;
            let Some((user, email)) = found else {
                return Ok(None);
            };
            let r = sqlx::query(
                "UPDATE users SET email_verified = TRUE, updated_at = $1 \
                     WHERE account_id = $2 AND id = $3 AND email = $4",
            )
            .bind(now)
            .bind(account)
            .bind(user)
            .bind(&email)
            .execute(&mut *c)
            .await?;
            if r.rows_affected() == 0 {
                return Ok(None);
            }
            let verified = select_user(c, account, user, false).await?;
            insert_user_events(c, account, &change, &["user.updated"], &verified).await?;
            Ok(Some(verified))
        })
    }

    async fn set_email_settings(
        &self,
        account: Uuid,
        email: &EmailSettings,
        change: &Change,
    ) -> Result<Settings> {
        let (email, change) = (email.clone(), change.clone());
        write!(self, |c| {
            update_settings(c, account, &change, |s| {
                s.email = email;
                Ok(())
            })
            .await
        })
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRecord, change: &Change) -> Result<()> {
        let (key, change) = (key.clone(), change.clone());
        write!(self, |c| {
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                .bind(change.at)
                .execute(&mut *c)
                .await?;
            sqlx::query(
                "INSERT INTO signing_keys (kid, private_der, public_x, created_at, retired_at) \
                     VALUES ($1, $2, $3, $4, NULL)",
            )
            .bind(&key.kid)
            .bind(&key.private_der)
            .bind(&key.public_x)
            .bind(key.created_at)
            .execute(&mut *c)
            .await?;
            record_signing_key(c, &change, "signing_key.rotated", &key).await
        })
    }
}

/// An endpoint's health after a batch of attempts (see [`endpoint_health`]).
#[derive(Debug, PartialEq, Eq)]
enum Health {
    /// No attempt succeeded: failing since this first failure, unless it
    /// already was.
    FailingSince(OffsetDateTime),
    /// One succeeded: healthy, or failing since the first failure after
    /// the last success.
    Reset(Option<OffsetDateTime>),
}

/// Each endpoint's health after `done` (sorted by attempt time), ordered by
/// endpoint id so that concurrent batches lock the rows in one order.
fn endpoint_health(
    done: &[crate::store::FinishedDelivery],
) -> std::collections::BTreeMap<Uuid, Health> {
    let mut health = std::collections::BTreeMap::new();
    for f in done {
        let at = f.attempt.at;
        let next = match (health.remove(&f.webhook_id), f.delivered) {
            (_, true) => Health::Reset(None),
            (None, false) => Health::FailingSince(at),
            (Some(Health::Reset(None)), false) => Health::Reset(Some(at)),
            (Some(kept), false) => kept,
        };
        health.insert(f.webhook_id, next);
    }
    health
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::webhook::Attempt;
    use crate::store::FinishedDelivery;

    fn attempt(hook: Uuid, second: i64, delivered: bool) -> FinishedDelivery {
        FinishedDelivery {
            id: Uuid::now_v7(),
            webhook_id: hook,
            attempt: Attempt {
                at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(second),
                status_code: None,
                latency_ms: 1,
                response: None,
                error: None,
            },
            delivered,
            next: None,
        }
    }

    #[test]
    fn an_endpoint_health_is_its_last_success_and_the_first_failure_after_it() {
        let (a, b, c, d) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let at = |s| OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s);
        let done = [
            attempt(a, 1, false),
            attempt(a, 2, false),
            attempt(b, 1, false),
            attempt(b, 2, true),
            attempt(b, 3, false),
            attempt(b, 4, false),
            attempt(c, 1, false),
            attempt(c, 2, true),
            attempt(d, 1, true),
        ];
        let health = endpoint_health(&done);
        assert_eq!(health[&a], Health::FailingSince(at(1)));
        assert_eq!(health[&b], Health::Reset(Some(at(3))));
        assert_eq!(health[&c], Health::Reset(None));
        assert_eq!(health[&d], Health::Reset(None));
        assert_eq!(health.len(), 4);
    }
}
