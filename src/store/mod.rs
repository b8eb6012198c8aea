//! Storage: one [`Store`] trait, implemented once (`sql.rs`) for both backends
//! (`sqlite/` for the embedded default, `postgres.rs` for scaled-out
//! installs). Every method is a whole operation in one transaction and takes
//! the account it acts in, so no method can reach another tenant's rows.
//! Uniqueness lives in unique indexes; a violation becomes
//! [`StoreError::Conflict`] in one place per backend.

use async_trait::async_trait;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::access::{AccessLink, Invite, Member, Role, RoomRole, Space, SpaceRole};
use crate::domain::account::{Account, ApiKey, ApiKeyAuth, Scope};
use crate::domain::event::{Change, Event};
use crate::domain::permission::Permission;
use crate::domain::room::{MAX_ROOMS_PER_USER, NewRoom, Room, RoomPatch, Visibility};
use crate::domain::settings::{CustomFieldDef, Settings};
use crate::domain::user::{MAX_BOTS, NewUser, Status, User, UserFilter, UserPatch};
use crate::domain::webhook::{Attempt, Delivery, Webhook};

pub mod postgres;
pub mod sessions;
pub mod sqlite;

/// What [`Store::update_space`] changes: fields left `None` stay. `add`
/// joins users as `user` (one no longer a user of the account, or a member
/// already, is skipped); `remove` ends memberships (the owner's, or one
/// that does not exist, is skipped): SCIM's Group membership sync.
#[derive(Debug, Clone, Default)]
pub struct SpaceEdit {
    pub name: Option<String>,
    pub visibility: Option<Visibility>,
    pub external_id: Option<Option<String>>,
    pub add: Vec<Uuid>,
    pub remove: Vec<Uuid>,
}

impl SpaceEdit {
    /// Does it change the space's own fields?
    pub fn changes_fields(&self) -> bool {
        self.name.is_some() || self.visibility.is_some() || self.external_id.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique index or a limit refused the write; `field` names the clash.
    #[error("{message}")]
    Conflict { field: String, message: String },
    /// The database could not be reached or refused for its own reasons.
    #[error("storage unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("storage error")]
    Other(#[source] anyhow::Error),
    /// A domain rule checked inside the transaction refused the change.
    #[error(transparent)]
    Invalid(#[from] crate::domain::ValidationError),
    /// An invite or a link that was used up, expired or revoked.
    #[error("{}", .0.message(.1))]
    Gone(crate::domain::access::Gone, &'static str),
}

impl StoreError {
    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        Self::Conflict {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// A database error in the store's vocabulary, by the backend that raised
/// it (each names its unique indexes and outages its own way), so that `?`
/// maps every sqlx error in one place per backend.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db)
                if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some() =>
            {
                postgres::map_err(e)
            }
            _ => sqlite::map_err(e),
        }
    }
}

/// The errors of the link rather than of the database: the pool, the
/// connection (cut mid-conversation, even mid-handshake: a `Protocol`
/// error), TLS — an outage, answered 503 — and anything else, which is
/// ours.
pub(crate) fn link_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => StoreError::Unavailable(e.into()),
        _ => StoreError::Other(e.into()),
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Keyset pagination: rows after `after` (by id, which is time-ordered).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u32,
    pub after: Option<Uuid>,
}

/// One page of rows and the id to continue after, if there is more.
#[derive(Debug)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<Uuid>,
}

impl<T> Paged<T> {
    /// Builds a page from `limit + 1` fetched rows.
    pub fn from_rows(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> Uuid) -> Self {
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(&id)
        } else {
            None
        };
        Self { items, next }
    }
}

/// A signing key as stored. The private part is PKCS#8 DER.
#[derive(Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub private_der: Vec<u8>,
    pub public_x: String,
    pub created_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
}

/// A new API key: only the hash of its secret is stored.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: Uuid,
    pub name: String,
    pub scope: Scope,
    pub secret_hash: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// A token as recorded when issued, so it can be listed and revoked.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: &'static str,
    pub room_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// The result of checking a presented user token against storage.
#[derive(Debug)]
pub enum TokenCheck {
    Valid(Box<User>),
    /// Unknown, revoked, expired, or the user is gone or deactivated.
    Invalid,
}

/// An enabled endpoint, as the fan-out matches events to it.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub account_id: Uuid,
    pub id: Uuid,
    pub events: Vec<String>,
    /// Events from before this are not its.
    pub created_at: OffsetDateTime,
}

/// A delivery the fan-out stores.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: Uuid,
    pub account_id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub event_seq: i64,
    pub kind: String,
    /// The JSON body, as it will be signed and sent.
    pub payload: String,
    pub created_at: OffsetDateTime,
}

/// A delivery taken to be attempted, with where and how to send it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub url: String,
    /// The secrets to sign with: the current one, and a rotated-out one
    /// still within its overlap.
    pub secrets: Vec<String>,
    pub event_id: Uuid,
    pub payload: String,
    pub attempts: i32,
}

/// An attempt made, to be recorded.
#[derive(Debug, Clone)]
pub struct FinishedDelivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub attempt: Attempt,
    pub delivered: bool,
    /// When to try again; None with `delivered` false: given up.
    pub next: Option<OffsetDateTime>,
}

/// The store's load, read at each `/metrics` scrape.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// Connections the (read) pool holds open, how many of them are idle,
    /// and its ceiling. sqlx counts no waiters: a pool at its ceiling with
    /// none idle has requests waiting.
    pub pool_open: u32,
    pub pool_idle: u32,
    pub pool_max: u32,
    /// Writes waiting their turn: jobs queued for the SQLite writer, or
    /// PostgreSQL transactions waiting for a connection.
    pub writes_waiting: u64,
    /// Mail not yet delivered that will be tried (again), and mail given up
    /// on after its last attempt.
    pub mail_pending: i64,
    pub mail_failed: i64,
}

/// Every method that changes something takes the [`Change`] (when, by whom,
/// in which request) and appends the change's event(s) in the same
/// transaction. Upkeep writes none: presence, a key's last use, the outbox's
/// delivery state, server state, and upgrading the hash of an unchanged
/// password.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for `/readyz` and logs.
    fn backend(&self) -> &'static str;

    /// Cheap round trip to the database.
    async fn ping(&self) -> Result<()>;

    /// The store's load now, for a `/metrics` scrape.
    async fn gauges(&self) -> Result<Gauges>;

    // --- server state -----------------------------------------------------
    async fn get_state(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` under `key` unless a value is there; true if stored.
    async fn put_state_if_absent(&self, key: &str, value: &str) -> Result<bool>;

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;
    async fn insert_signing_key(&self, key: &SigningKeyRecord, change: &Change) -> Result<()>;

    // --- accounts and API keys ---------------------------------------------
    async fn create_account(
        &self,
        account: &Account,
        first_key: &NewApiKey,
        change: &Change,
    ) -> Result<()>;
    async fn list_accounts(&self, page: Page) -> Result<Paged<Account>>;
    async fn get_account(&self, account: Uuid) -> Result<Account>;
    async fn get_settings(&self, account: Uuid) -> Result<Settings>;
    /// Applies a custom field change atomically and returns the result.
    async fn update_custom_fields(
        &self,
        account: Uuid,
        fields: std::collections::BTreeMap<String, Option<CustomFieldDef>>,
        change: &Change,
    ) -> Result<Settings>;

    async fn create_api_key(&self, account: Uuid, key: &NewApiKey, change: &Change) -> Result<()>;
    async fn list_api_keys(&self, account: Uuid, page: Page) -> Result<Paged<ApiKey>>;
    async fn revoke_api_key(&self, account: Uuid, key: Uuid, change: &Change) -> Result<()>;
    /// A live (unrevoked) key by id, whatever its account.
    async fn api_key_for_auth(&self, key: Uuid) -> Result<Option<ApiKeyAuth>>;
    async fn touch_api_key(&self, key: Uuid, at: OffsetDateTime) -> Result<()>;
    /// Gives the usernames stored before skeletons were kept theirs (see
    /// `domain::user::username_skeleton`): those whose id follows `after`,
    /// at most `limit` of them. A username whose skeleton another of its
    /// account already holds keeps none. The last id looked at and how many
    /// were left without, or `None` when no row is left.
    async fn fill_username_skeletons(&self, after: Uuid, limit: u32)
    -> Result<Option<(Uuid, u64)>>;

    // --- rooms ----------------------------------------------------------------
    async fn create_room(
        &self,
        account: Uuid,
        id: Uuid,
        room: &NewRoom,
        change: &Change,
    ) -> Result<Room>;
    async fn list_rooms(
        &self,
        account: Uuid,
        visibility: Option<Visibility>,
        page: Page,
    ) -> Result<Paged<Room>>;
    async fn get_room(&self, account: Uuid, room: Uuid) -> Result<Room>;
    async fn update_room(
        &self,
        account: Uuid,
        room: Uuid,
        patch: &RoomPatch,
        change: &Change,
    ) -> Result<Room>;
    /// Deletes the room and its memberships.
    async fn delete_room(&self, account: Uuid, room: Uuid, change: &Change) -> Result<()>;

    // --- users ----------------------------------------------------------------
    /// Inserts the user, their tags and roles, their memberships (`room_id`
    /// and, if asked, the default rooms) and the record of their first token,
    /// in one transaction, with its `user.created` event. Refuses: unknown
    /// `room_id` (`NotFound("room")`), a clash of custom_id/username/email,
    /// the bot and room caps (`Conflict`).
    async fn create_user(
        &self,
        account: Uuid,
        user: &NewUser,
        token: &TokenRecord,
        change: &Change,
    ) -> Result<User>;
    async fn get_user(&self, account: Uuid, user: Uuid) -> Result<User>;
    async fn list_users(
        &self,
        account: Uuid,
        filter: &UserFilter,
        page: Page,
    ) -> Result<Paged<User>>;
    /// One window of the users a search matches, in its order, and how
    /// many match in all.
    async fn search_users(
        &self,
        account: Uuid,
        query: &crate::domain::user_query::UserQuery,
    ) -> Result<crate::domain::user_query::Found<User>>;
    /// Changes a user (`user.updated`, and `user.roles_changed` when the
    /// roles are set); `mail` (notices, a verification link for a new
    /// address) is queued in the same transaction. A new password
    /// (`user.password_changed`) ends every login session of the user:
    /// their ids come back so that the connections can be closed. The
    /// patch's `active`, when it differs, then (de)activates the user in the
    /// same transaction, as [`Store::set_user_active`] does.
    async fn update_user(
        &self,
        account: Uuid,
        user: Uuid,
        patch: &UserPatch,
        change: &Change,
        mail: Option<&sessions::UserMail>,
    ) -> Result<(User, sessions::Revoked)>;
    /// Deactivating (`user.deactivated`) also ends every token issued until
    /// the change; reactivating (`user.reactivated`) does not revive them,
    /// nor any token issued while the user was inactive (created so, say).
    async fn set_user_active(
        &self,
        account: Uuid,
        user: Uuid,
        active: bool,
        change: &Change,
    ) -> Result<User>;
    /// Erases the user and everything that points at them (`user.deleted`,
    /// carrying the user as they were).
    async fn delete_user(&self, account: Uuid, user: Uuid, change: &Change) -> Result<()>;

    // --- events -------------------------------------------------------------------
    /// Settled events after `after` (a `seq`), oldest first: of one account,
    /// or of all (`None`). Settled: no event with a smaller `seq` can still
    /// commit, so a reader that pages by `seq` misses none.
    async fn events_after(
        &self,
        account: Option<Uuid>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>>;
    /// The audit log: one account's events matching `filter`, newest
    /// first, with a `seq` below `before` when given.
    async fn audit_events(
        &self,
        account: Uuid,
        filter: &crate::domain::event::AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Event>>;
    /// One event of the account, by its id.
    async fn audit_event(&self, account: Uuid, id: Uuid) -> Result<Event>;
    /// Deletes up to `limit` events (of every account) older than `before`,
    /// oldest first; returns how many. The retention job's, and the only
    /// delete of events there is.
    async fn prune_events(&self, before: OffsetDateTime, limit: u32) -> Result<u64>;

    // --- webhooks -----------------------------------------------------------------
    /// Stores a new endpoint with its signing secret (`webhook.created`).
    async fn create_webhook(
        &self,
        account: Uuid,
        hook: &Webhook,
        secret: &str,
        change: &Change,
    ) -> Result<()>;
    async fn list_webhooks(&self, account: Uuid, page: Page) -> Result<Paged<Webhook>>;
    async fn get_webhook(&self, account: Uuid, id: Uuid) -> Result<Webhook>;
    /// Stores an endpoint's changed url, events, description and enabled
    /// (`webhook.updated`).
    async fn update_webhook(&self, account: Uuid, hook: &Webhook, change: &Change) -> Result<()>;
    /// Deletes an endpoint and its deliveries (`webhook.deleted`).
    async fn delete_webhook(&self, account: Uuid, id: Uuid, change: &Change) -> Result<()>;
    /// The enabled endpoints of these accounts, for the fan-out.
    async fn webhook_targets(&self, accounts: &[Uuid]) -> Result<Vec<WebhookTarget>>;
    /// Moves the fan-out cursor (server state `webhooks.fanout_seq`) from
    /// `from` to `to` and stores `deliveries` with it, in one transaction;
    /// `false`, and nothing stored, when another node moved it first.
    async fn enqueue_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
    ) -> Result<bool>;
    /// Takes up to `limit` due deliveries for `lease` (another node takes
    /// them once it lapses), oldest due first, of enabled endpoints only,
    /// leaving each endpoint at most `per_endpoint` in hand at once.
    async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: i64,
        per_endpoint: i64,
    ) -> Result<Vec<DueDelivery>>;
    /// Records attempts, in one transaction: each delivery delivered, due
    /// again at `next`, or failed for good (neither) — a delivery made due
    /// again while it was attempted (retry, replay) keeps that state; only
    /// the attempt is recorded. A success clears its endpoint's
    /// `failing_since`, a failure starts it; an endpoint failing since
    /// before `disable_before` is disabled (`webhook.disabled`, by the
    /// system) and returned.
    async fn finish_deliveries(
        &self,
        done: &[FinishedDelivery],
        disable_before: OffsetDateTime,
    ) -> Result<Vec<Webhook>>;
    /// Replaces an endpoint's signing secret; the old one keeps signing
    /// beside it until `old_until` (`webhook.secret_rotated`).
    async fn rotate_webhook_secret(
        &self,
        account: Uuid,
        id: Uuid,
        secret: &str,
        old_until: OffsetDateTime,
        change: &Change,
    ) -> Result<Webhook>;
    /// Makes one delivery of the endpoint due now again, whatever its state.
    async fn retry_delivery(
        &self,
        account: Uuid,
        hook: Uuid,
        delivery: Uuid,
        now: OffsetDateTime,
    ) -> Result<Delivery>;
    /// Stores `deliveries` as due now: new ones are added, those of events
    /// the endpoint already had are made pending again from their first
    /// attempt (a replay). Returns how many.
    async fn requeue_deliveries(&self, deliveries: &[NewDelivery]) -> Result<u64>;
    /// An endpoint's deliveries, oldest first, with their attempts.
    async fn list_deliveries(
        &self,
        account: Uuid,
        hook: Uuid,
        page: Page,
    ) -> Result<Paged<Delivery>>;

    // --- spaces -------------------------------------------------------------------
    /// Creates a space; its creator (if a user) becomes its owner and each
    /// of `members` (those still users of the account) joins as `user`,
    /// all in one transaction.
    async fn create_space(
        &self,
        account: Uuid,
        space: &Space,
        members: &[Uuid],
        change: &Change,
    ) -> Result<Space>;
    /// Spaces, all of them (`viewer` None) or those a user may see: public
    /// ones and those they are a member of.
    async fn list_spaces(
        &self,
        account: Uuid,
        viewer: Option<Uuid>,
        page: Page,
    ) -> Result<Paged<Space>>;
    /// A window of every space, oldest first, and how many there are;
    /// `name` keeps those so named (case-insensitively). SCIM's `/Groups`.
    async fn search_spaces(
        &self,
        account: Uuid,
        name: Option<&str>,
        offset: u64,
        count: u32,
    ) -> Result<crate::domain::user_query::Found<Space>>;
    async fn get_space(&self, account: Uuid, space: Uuid) -> Result<Space>;
    /// Changes a space's fields and members in one transaction; with no
    /// field to change the space itself is left as it is (no
    /// `space.updated`).
    async fn update_space(
        &self,
        account: Uuid,
        space: Uuid,
        edit: &SpaceEdit,
        change: &Change,
    ) -> Result<Space>;
    /// Deletes the space, its rooms, and every membership, invite and link of either.
    async fn delete_space(&self, account: Uuid, space: Uuid, change: &Change) -> Result<()>;
    async fn space_role(&self, account: Uuid, space: Uuid, user: Uuid)
    -> Result<Option<SpaceRole>>;
    /// Makes `user` a member with `role` (or changes their role).
    /// `only_if_absent` keeps an existing membership as it is (a join).
    async fn put_space_member(
        &self,
        account: Uuid,
        space: Uuid,
        user: Uuid,
        role: SpaceRole,
        only_if_absent: bool,
        change: &Change,
    ) -> Result<Member>;
    async fn remove_space_member(
        &self,
        account: Uuid,
        space: Uuid,
        user: Uuid,
        change: &Change,
    ) -> Result<()>;
    async fn list_space_members(
        &self,
        account: Uuid,
        space: Uuid,
        page: Page,
    ) -> Result<Paged<Member>>;

    // --- room memberships ----------------------------------------------------
    /// Rooms a user may see ([`ROOM_VISIBLE`]): those they are a member of,
    /// and public ones outside any private space they are not a member of.
    async fn list_rooms_visible_to(
        &self,
        account: Uuid,
        user: Uuid,
        page: Page,
    ) -> Result<Paged<Room>>;
    /// Whether `user` may see (and so join) the room, by [`ROOM_VISIBLE`];
    /// false for a room that is not there.
    async fn room_visible_to(&self, account: Uuid, room: Uuid, user: Uuid) -> Result<bool>;
    async fn room_role(&self, account: Uuid, room: Uuid, user: Uuid) -> Result<Option<RoomRole>>;
    /// Makes `user` a member with `role` (grantRole), within the 2000-room
    /// cap; `only_if_absent` keeps an existing membership (a join).
    async fn put_room_member(
        &self,
        account: Uuid,
        room: Uuid,
        user: Uuid,
        role: RoomRole,
        only_if_absent: bool,
        change: &Change,
    ) -> Result<Member>;
    async fn remove_room_member(
        &self,
        account: Uuid,
        room: Uuid,
        user: Uuid,
        change: &Change,
    ) -> Result<()>;
    async fn list_room_members(
        &self,
        account: Uuid,
        room: Uuid,
        page: Page,
    ) -> Result<Paged<Member>>;

    // --- custom roles ---------------------------------------------------------
    async fn create_role(&self, account: Uuid, role: &Role, change: &Change) -> Result<Role>;
    /// Custom roles of the account (built-in ones are not stored).
    async fn list_roles(&self, account: Uuid) -> Result<Vec<Role>>;
    async fn get_role(&self, account: Uuid, role: &str) -> Result<Role>;
    async fn update_role(
        &self,
        account: Uuid,
        role: &str,
        name: Option<&str>,
        description: Option<Option<&str>>,
        permissions: Option<&[Permission]>,
        change: &Change,
    ) -> Result<Role>;
    /// Refused (`Conflict`) while a user holds the role.
    async fn delete_role(&self, account: Uuid, role: &str, change: &Change) -> Result<()>;

    // --- invites ----------------------------------------------------------------
    async fn create_invite(
        &self,
        account: Uuid,
        invite: &Invite,
        change: &Change,
    ) -> Result<Invite>;
    async fn list_invites(&self, account: Uuid, space: Uuid, page: Page) -> Result<Paged<Invite>>;
    async fn revoke_invite(
        &self,
        account: Uuid,
        space: Uuid,
        invite: Uuid,
        change: &Change,
    ) -> Result<()>;
    /// Uses the invite once (a conditional update, so concurrent activations
    /// of a one-use invite admit exactly one) and makes `user` a member with
    /// its role (never lowering a higher one). Refuses with `Gone`.
    async fn activate_invite(
        &self,
        account: Uuid,
        space: Uuid,
        invite: Uuid,
        user: Uuid,
        change: &Change,
    ) -> Result<Member>;

    // --- guest access links -----------------------------------------------------
    async fn create_link(
        &self,
        account: Uuid,
        link: &AccessLink,
        change: &Change,
    ) -> Result<AccessLink>;
    async fn list_links(&self, account: Uuid, room: Uuid, page: Page) -> Result<Paged<AccessLink>>;
    async fn revoke_link(
        &self,
        account: Uuid,
        room: Uuid,
        link: Uuid,
        change: &Change,
    ) -> Result<()>;
    /// Checks a link for use at `at`; a one-time link is consumed (once).
    async fn use_link(&self, account: Uuid, link: Uuid, change: &Change) -> Result<AccessLink>;

    // --- presence and membership ----------------------------------------------
    /// Whether `user` is a member of `room`.
    async fn is_room_member(&self, account: Uuid, room: Uuid, user: Uuid) -> Result<bool>;
    /// Records a presence transition on the user record (`last_seen_at` = `at`).
    async fn set_presence(
        &self,
        account: Uuid,
        user: Uuid,
        status: Status,
        at: OffsetDateTime,
    ) -> Result<()>;
    /// Marks every user offline (on start: nobody stays online from a previous run).
    async fn reset_presence(&self, at: OffsetDateTime) -> Result<u64>;

    // --- tokens ---------------------------------------------------------------
    /// Whether a user token (by `jti`, issued at `iat`) is still good: it
    /// exists, is not revoked or expired, and its user is active.
    async fn check_user_token(
        &self,
        account: Uuid,
        user: Uuid,
        jti: Uuid,
        now: OffsetDateTime,
    ) -> Result<TokenCheck>;

    // --- sessions ---------------------------------------------------------------
    // Login sessions (refresh-token families), per-user auth tokens and their
    // revocation (issue 4). Types: [`sessions`].

    /// The user a login name names, with their password hash.
    async fn find_login(
        &self,
        account: Uuid,
        name: &sessions::LoginName,
    ) -> Result<Option<sessions::LoginCandidate>>;
    /// The user's password hash, if they have a password.
    async fn password_hash(&self, account: Uuid, user: Uuid) -> Result<Option<String>>;
    /// Replaces a password hash as is (an imported hash upgraded on login).
    async fn set_password_hash(
        &self,
        account: Uuid,
        user: Uuid,
        hash: &str,
        at: OffsetDateTime,
    ) -> Result<()>;
    /// Records a new session: its first refresh token and access token.
    async fn create_session(
        &self,
        account: Uuid,
        session: &sessions::NewSession,
        change: &Change,
    ) -> Result<()>;
    /// Whose refresh token this is (by its hash), used or not.
    async fn refresh_token_owner(&self, account: Uuid, hash: &[u8]) -> Result<Option<Uuid>>;
    /// Trades a live refresh token for `next`, atomically. A refresh token
    /// that was already traded revokes its whole session (the revocation is
    /// committed and reported as [`sessions::Refreshed::Reused`]).
    async fn rotate_refresh_token(
        &self,
        account: Uuid,
        presented: &[u8],
        next: &sessions::NextTokens,
        change: &Change,
    ) -> Result<sessions::Refreshed>;
    /// Revokes the session a refresh token or a token belongs to (a token
    /// outside any session is revoked alone); returns the access/user token
    /// ids revoked. `NotFound("session")` when nothing matches.
    async fn end_session(
        &self,
        account: Uuid,
        by: &sessions::SessionRef,
        change: &Change,
    ) -> Result<sessions::Revoked>;
    /// Sets a new password hash, clears `require_password_change` and, if
    /// asked, revokes every other session of the user (all but the one
    /// `keep_token` belongs to).
    async fn change_password(
        &self,
        account: Uuid,
        user: Uuid,
        hash: &str,
        revoke_others: bool,
        keep_token: Option<Uuid>,
        change: &Change,
    ) -> Result<sessions::Revoked>;
    /// Records a new `user` token and revokes the oldest live ones beyond
    /// `max_live`, in one transaction; returns the ids revoked. Refused
    /// (`Conflict` on `active`) for a deactivated user.
    async fn issue_user_token(
        &self,
        account: Uuid,
        token: &TokenRecord,
        max_live: i64,
        change: &Change,
    ) -> Result<sessions::Revoked>;
    /// The user's live `user` tokens, oldest first.
    async fn list_user_tokens(
        &self,
        account: Uuid,
        user: Uuid,
        now: OffsetDateTime,
        page: Page,
    ) -> Result<Paged<sessions::TokenInfo>>;
    /// Revokes one `user` token of the user (again: no change).
    async fn revoke_user_token(
        &self,
        account: Uuid,
        user: Uuid,
        token: Uuid,
        change: &Change,
    ) -> Result<sessions::TokenInfo>;
    /// Ends every token and session of the user issued until `at`.
    async fn revoke_tokens_before(&self, account: Uuid, user: Uuid, change: &Change) -> Result<()>;
    /// Replaces the account's self sign-up settings; returns all settings.
    async fn set_signup_settings(
        &self,
        account: Uuid,
        signup: &crate::domain::settings::SignupSettings,
        change: &Change,
    ) -> Result<Settings>;
    /// Records a password reset link and queues the mail that carries it.
    async fn request_password_reset(
        &self,
        account: Uuid,
        reset: &sessions::NewPasswordReset,
        change: &Change,
    ) -> Result<()>;
    /// Spends a live reset link: sets the password, ends every session of
    /// the user and every other link. `None`: unknown, used or expired.
    async fn reset_password(
        &self,
        account: Uuid,
        hash: &[u8],
        password_hash: &str,
        change: &Change,
    ) -> Result<Option<sessions::Revoked>>;
    /// Queues a mail on its own.
    async fn enqueue_mail(&self, mail: &sessions::OutboxMail) -> Result<()>;
    /// Claims up to `limit` due mails for `lease` (another worker skips them
    /// meanwhile).
    async fn claim_mail(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: i64,
    ) -> Result<Vec<sessions::OutboxMail>>;
    /// Marks a claimed mail delivered, or failed with the next attempt's time
    /// (`None`: give up).
    async fn finish_mail(
        &self,
        id: Uuid,
        at: OffsetDateTime,
        failure: Option<(&str, Option<OffsetDateTime>)>,
    ) -> Result<()>;
    /// `create_user`, queueing `mail` (and recording its verification link)
    /// in the same transaction.
    async fn create_user_with_mail(
        &self,
        account: Uuid,
        user: &NewUser,
        token: &TokenRecord,
        change: &Change,
        mail: &sessions::UserMail,
    ) -> Result<User>;
    /// Spends a live verification link: the address it was sent to becomes
    /// verified (if it is still the user's). `None`: unknown, used, expired.
    async fn verify_email(
        &self,
        account: Uuid,
        hash: &[u8],
        change: &Change,
    ) -> Result<Option<User>>;
    /// Replaces the account's email settings; returns all settings.
    async fn set_email_settings(
        &self,
        account: Uuid,
        email: &crate::domain::settings::EmailSettings,
        change: &Change,
    ) -> Result<Settings>;
    /// Retires every signing key and adds `key` as the one that signs.
    async fn rotate_signing_key(&self, key: &SigningKeyRecord, change: &Change) -> Result<()>;
}

/// Columns selected for a user, in the order [`UserColumns`] reads them.
pub(crate) const USER_COLUMNS: &str = "id, account_id, room_id, custom_id, username, name, nickname, bio, \
     email, email_verified, phone, profile_picture, link, status, status_message, active, roles, \
     metadata, tags, custom_fields, require_password_change, password_hash IS NOT NULL AS has_password, \
     created_at, updated_at, last_seen_at, deactivated_at, email_changed_at";

/// Names the request field behind a unique index, from the database's words
/// for it (SQLite's message or PostgreSQL's constraint name).
pub(crate) fn unique_field(text: &str) -> &'static str {
    if text.contains("custom_id") {
        "custom_id"
    } else if text.contains("username") {
        "username"
    } else if text.contains("email") {
        "email"
    } else if text.contains("room_members") {
        "room_id"
    } else {
        "id"
    }
}

/// The conflict a unique index raised, named from the database's words for
/// it, in the same words on every backend.
pub(crate) fn unique_conflict(text: &str) -> StoreError {
    let field = unique_field(text);
    if text.contains("skeleton") {
        return StoreError::conflict(
            field,
            "username looks like one already taken in this account (a confusable look-alike)",
        );
    }
    StoreError::conflict(field, format!("{field} is already taken in this account"))
}

/// The refusal of a bot beyond [`MAX_BOTS`].
pub(crate) fn bot_cap_reached() -> StoreError {
    StoreError::conflict(
        "roles",
        format!("this account already has {MAX_BOTS} bot users, the most it may have"),
    )
}

/// The refusal of memberships beyond [`MAX_ROOMS_PER_USER`] at creation.
pub(crate) fn room_cap_reached() -> StoreError {
    StoreError::conflict(
        "join_default_channels",
        format!("a user may be in at most {MAX_ROOMS_PER_USER} rooms"),
    )
}

/// The join table a filtered user list is read from (see `list_users`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListDriver {
    Room,
    Role,
    Tag,
}

impl ListDriver {
    pub(crate) const ALL: [ListDriver; 3] = [ListDriver::Room, ListDriver::Role, ListDriver::Tag];

    pub(crate) fn applies(self, f: &UserFilter) -> bool {
        match self {
            ListDriver::Room => f.room_id.is_some(),
            ListDriver::Role => f.role.is_some(),
            ListDriver::Tag => f.tag.is_some(),
        }
    }

    pub(crate) fn table(self) -> &'static str {
        match self {
            ListDriver::Room => "room_members",
            ListDriver::Role => "user_roles",
            ListDriver::Tag => "user_tags",
        }
    }

    pub(crate) fn alias(self) -> &'static str {
        match self {
            ListDriver::Room => "m",
            ListDriver::Role => "r",
            ListDriver::Tag => "t",
        }
    }

    /// The column pages are ordered and cut by.
    pub(crate) fn key(self) -> &'static str {
        match self {
            ListDriver::Room => "m.user_id",
            ListDriver::Role => "r.user_id",
            ListDriver::Tag => "t.user_id",
        }
    }
}

/// The first filter (room, role, tag) present, if any.
pub(crate) fn list_driver(f: &UserFilter) -> Option<ListDriver> {
    ListDriver::ALL.into_iter().find(|d| d.applies(f))
}

/// `SELECT <user columns> FROM …` of a user list, up to its `WHERE`: the
/// driving table first (joined to `users` with `driver_join`: `CROSS JOIN`
/// makes SQLite read it first), then the other filters' tables.
pub(crate) fn user_list_select(
    filter: &UserFilter,
    driver: Option<ListDriver>,
    driver_join: &str,
) -> String {
    let mut sql = format!("SELECT {} FROM ", user_columns_of("u"));
    match driver {
        Some(d) => sql.push_str(&format!(
            "{table} {alias} {driver_join} users u ON u.id = {alias}.user_id AND u.account_id = {alias}.account_id",
            table = d.table(),
            alias = d.alias()
        )),
        None => sql.push_str("users u"),
    }
    for d in ListDriver::ALL {
        if driver != Some(d) && d.applies(filter) {
            sql.push_str(&format!(
                " JOIN {table} {alias} ON {alias}.user_id = u.id AND {alias}.account_id = u.account_id",
                table = d.table(),
                alias = d.alias()
            ));
        }
    }
    sql
}

/// The user exactly as `create_user` stored it, without reading it back.
pub(crate) fn inserted_user(account: Uuid, u: &NewUser, at: OffsetDateTime) -> User {
    User {
        id: u.id,
        account_id: account,
        room_id: u.room_id,
        custom_id: u.custom_id.clone(),
        username: u.username.clone(),
        name: u.name.clone(),
        nickname: u.nickname.clone(),
        bio: u.bio.clone(),
        email: u.email.clone(),
        email_verified: u.email_verified,
        phone: u.phone.clone(),
        profile_picture: u.profile_picture.clone(),
        link: u.link.clone(),
        status: Status::Offline,
        status_message: u.status_message.clone(),
        active: u.active,
        roles: u.roles.clone(),
        metadata: u.metadata.clone(),
        tags: u.tags.clone(),
        custom_fields: u.custom_fields.clone(),
        require_password_change: u.require_password_change,
        has_password: u.password_hash.is_some(),
        created_at: at,
        updated_at: at,
        last_seen_at: None,
        deactivated_at: if u.active { None } else { Some(at) },
        email_changed_at: None,
    }
}

/// A user as an event's `data` records them: everything, private fields
/// included (readers filter).
pub(crate) fn user_data(u: &User) -> serde_json::Value {
    serde_json::to_value(u.view(
        &crate::domain::settings::Settings::default(),
        crate::domain::user::Visibility::Full,
    ))
    .unwrap_or_default()
}

/// An event row: `seq, id, account_id, type, actor_kind, actor_id,
/// subject_kind, subject_id, data, at, request_id, surface`.
pub(crate) type EventRow = (
    i64,
    Uuid,
    Option<Uuid>,
    String,
    String,
    Option<Uuid>,
    String,
    String,
    sqlx::types::Json<Value>,
    OffsetDateTime,
    Option<String>,
    Option<String>,
);

/// The columns of [`EventRow`], in its order.
pub(crate) const EVENT_COLUMNS: &str = "seq, id, account_id, type, actor_kind, actor_id, \
     subject_kind, subject_id, data, at, request_id, surface";

pub(crate) fn event_from_row(r: EventRow) -> Event {
    Event {
        seq: r.0,
        id: r.1,
        account_id: r.2,
        kind: r.3,
        actor_kind: r.4,
        actor_id: r.5,
        subject_kind: r.6,
        subject_id: r.7,
        data: r.8.0,
        at: r.9,
        request_id: r.10,
        surface: r.11,
    }
}

/// The event type of each user change.
pub(crate) fn user_event_types(patch: &UserPatch) -> &'static [&'static str] {
    if patch.roles.is_some() {
        &["user.updated", "user.roles_changed"]
    } else {
        &["user.updated"]
    }
}

/// A patch's custom fields laid over the stored ones: named fields are
/// replaced, the others kept.
pub(crate) fn merged_custom_fields(
    current: &Map<String, Value>,
    change: &Map<String, Value>,
) -> Map<String, Value> {
    let mut merged = current.clone();
    for (k, v) in change {
        merged.insert(k.clone(), v.clone());
    }
    merged
}

/// The `LIKE` pattern (with `\` as escape) of a case-insensitive substring
/// search for `text`.
pub(crate) fn like_pattern(text: &str) -> String {
    format!("%{}%", escape_like(text))
}

/// `text` lowercased, with `LIKE`'s wildcards and its escape (`\\`) escaped.
pub(crate) fn escape_like(text: &str) -> String {
    text.to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// [`USER_COLUMNS`] qualified by a table alias, for joins.
pub(crate) fn user_columns_of(alias: &str) -> String {
    USER_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The one rule of who sees a room `r`, as SQL over the user `$3`: its
/// members; otherwise nobody if it is private, and if it is public, whoever
/// may see its space (everyone for a public space or none, members for a
/// private one). REST reads, lists and joins and the realtime gateway's
/// join all decide by it.
pub const ROOM_VISIBLE: &str = "(EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = r.id AND m.user_id = $3) \
     OR (r.visibility = 'public' AND (r.space_id IS NULL OR EXISTS (SELECT 1 FROM spaces s \
     WHERE s.id = r.space_id AND (s.visibility = 'public' OR EXISTS (SELECT 1 FROM space_members sm \
     WHERE sm.space_id = s.id AND sm.user_id = $3))))))";

pub(crate) const SPACE_COLUMNS: &str =
    "id, account_id, name, visibility, created_by, created_at, updated_at, external_id";

pub(crate) const ROLE_COLUMNS: &str = "id, name, description, permissions, created_at";

pub(crate) const INVITE_COLUMNS: &str =
    "id, space_id, role, max_uses, uses, expires_at, revoked_at, created_by, created_at";

pub(crate) const LINK_COLUMNS: &str = "id, room_id, username, role, external_user_id, is_permanent, \
     expires_at, used_at, revoked_at, created_by, created_at";

/// Why an invite cannot be used now, if it cannot.
pub(crate) fn invite_gone(i: &Invite, at: OffsetDateTime) -> Option<crate::domain::access::Gone> {
    use crate::domain::access::Gone;
    if i.revoked_at.is_some() {
        Some(Gone::Revoked)
    } else if i.expires_at.is_some_and(|e| e <= at) {
        Some(Gone::Expired)
    } else if i.uses >= i.max_uses {
        Some(Gone::UsedUp)
    } else {
        None
    }
}

/// Why a link cannot be used now, if it cannot.
pub(crate) fn link_gone(l: &AccessLink, at: OffsetDateTime) -> Option<crate::domain::access::Gone> {
    use crate::domain::access::Gone;
    if l.revoked_at.is_some() {
        Some(Gone::Revoked)
    } else if l.expires_at <= at {
        Some(Gone::Expired)
    } else if !l.is_permanent && l.used_at.is_some() {
        Some(Gone::UsedUp)
    } else {
        None
    }
}

/// The room cap's refusal, shared by both backends.
pub(crate) fn room_cap_conflict() -> StoreError {
    StoreError::conflict(
        "room_id",
        format!(
            "a user may be in at most {} rooms; leave one first",
            crate::domain::room::MAX_ROOMS_PER_USER
        ),
    )
}
