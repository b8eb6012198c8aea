//! Users: create (the union of the four vendors' create-user APIs), read,
//! list, change, (de)activate and erase — each with its permission rules,
//! the mail that goes with it and the kicks that follow it.

use uuid::Uuid;

use super::{Actor, Error, Result};
use crate::app::App;
use crate::domain::event::Change;
use crate::domain::permission::Permission;
use crate::domain::text;
use crate::domain::user::{
    CreateUserRequest, NewUser, PasswordSource, Status, UpdateUserRequest, User, UserFilter,
    UserView,
};
use crate::domain::user_query::{Attr, Expr, Found, Op, UserQuery, Value};
use crate::realtime::bus::BusEvent;
use crate::secret;
use crate::store::sessions::UserMail;
use crate::store::{Page, Paged, StoreError, TokenRecord};

/// A created user and their 90-day `user` token.
pub struct Created {
    pub user: UserView,
    pub token: String,
}

/// `GET /users` filters as sent (text), parsed here.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub room_id: Option<String>,
    pub status: Option<String>,
    pub role: Option<String>,
    pub tag: Option<String>,
    pub q: Option<String>,
}

/// Creates a user. Needs `create-user`; `active: false` also needs
/// `edit-other-user-active-status`, roles other than `user` need
/// `assign-roles` and only roles whose permissions the actor holds.
pub async fn create(app: &App, actor: &Actor, req: CreateUserRequest) -> Result<Created> {
    actor.require(Permission::CreateUser)?;
    if req.active == Some(false) {
        actor.require(Permission::EditOtherUserActiveStatus)?;
    }
    let account = actor.account_id;
    let settings = app.settings(account).await?;
    let mut parsed = req.parse(&settings)?;
    if parsed.user.roles != ["user"] {
        may_assign_roles(actor)?;
        actor.may_grant_roles(app, &parsed.user.roles).await?;
    }
    let mut random = None;
    parsed.user.password_hash = match parsed.password {
        PasswordSource::None => None,
        PasswordSource::Given(p) => Some(app.passwords.hash(p.expose().to_owned()).await?),
        PasswordSource::Random => {
            let p = random.insert(secret::random_password()).clone();
            Some(app.passwords.hash(p).await?)
        }
    };
    let mail = super::mail::for_new_user(
        app,
        account,
        &settings,
        &parsed.user,
        parsed.send_welcome_email,
        random.as_deref(),
    );
    let change = actor.change();
    let now = change.at;
    let jti = Uuid::now_v7();
    let (token, expires_at) =
        app.keys
            .issue_user_token(account, parsed.user.id, parsed.user.room_id, jti, now)?;
    let record = TokenRecord {
        id: jti,
        user_id: parsed.user.id,
        kind: "user",
        room_id: parsed.user.room_id,
        created_at: now,
        expires_at,
    };
    let created = store_new(app, account, &parsed.user, &record, &change, mail.as_ref()).await;
    let user = created.map_err(body_ids)?;
    Ok(Created {
        user: user.view(&settings, actor.sees(user.id)),
        token,
    })
}

/// Who may give users roles (beyond `user`): holders of `assign-roles` (a
/// front door may ask before it reads the request).
pub fn may_assign_roles(actor: &Actor) -> Result<()> {
    actor.require(Permission::AssignRoles)
}

/// Stores a new user with their first token and the mail that goes with
/// them (in one transaction), and wakes the outbox if mail was queued.
pub async fn store_new(
    app: &App,
    account: Uuid,
    user: &NewUser,
    token: &TokenRecord,
    change: &Change,
    mail: Option<&UserMail>,
) -> Result<User, StoreError> {
    let created = match mail {
        Some(m) => {
            app.store
                .create_user_with_mail(account, user, token, change, m)
                .await
        }
        None => app.store.create_user(account, user, token, change).await,
    };
    if mail.is_some() && created.is_ok() {
        app.outbox.notify_one();
    }
    created
}

/// Lists users, filtered, oldest first. Needs `view-other-user-info`
/// (every API key holds it).
pub async fn list(
    app: &App,
    actor: &Actor,
    query: ListQuery,
    page: Page,
) -> Result<Paged<UserView>> {
    actor.require(Permission::ViewOtherUserInfo)?;
    let filter = UserFilter {
        room_id: query
            .room_id
            .as_deref()
            .map(|s| {
                Uuid::try_parse(s).map_err(|_| Error::validation("room_id", "must be a room id"))
            })
            .transpose()?,
        status: query
            .status
            .as_deref()
            .map(|s| {
                Status::parse(s)
                    .ok_or_else(|| Error::validation("status", "must be online, away or offline"))
            })
            .transpose()?,
        role: query
            .role
            .map(|r| text::display_text("role", &r, 100))
            .transpose()?,
        tag: query
            .tag
            .map(|t| text::display_text("tag", &t, 100))
            .transpose()?,
        q: query
            .q
            .map(|s| text::display_text("q", &s, 100))
            .transpose()?,
    };
    let found = app
        .store
        .list_users(actor.account_id, &filter, page)
        .await?;
    let settings = app.settings(actor.account_id).await?;
    Ok(Paged {
        items: found
            .items
            .iter()
            .map(|u| u.view(&settings, actor.sees(u.id)))
            .collect(),
        next: found.next,
    })
}

/// Searches users: one window of a filtered, ordered search and the total
/// (Rocket.Chat's `users.list`, SCIM's `/Users`). Needs
/// `view-other-user-info`, as the list does.
pub async fn search(app: &App, actor: &Actor, query: &UserQuery) -> Result<Found<UserView>> {
    actor.require(Permission::ViewOtherUserInfo)?;
    if let Some(f) = &query.filter {
        f.check_size("query")?;
    }
    let found = app.store.search_users(actor.account_id, query).await?;
    let settings = app.settings(actor.account_id).await?;
    Ok(Found {
        items: found
            .items
            .iter()
            .map(|u| u.view(&settings, actor.sees(u.id)))
            .collect(),
        total: found.total,
    })
}

/// Finds a user by a login name: exactly one of `username` or `email`
/// (case-insensitively, as they are unique). Others need
/// `view-other-user-info`.
pub async fn find(app: &App, actor: &Actor, attr: Attr, value: &str) -> Result<UserView> {
    let filter = Expr::cmp(attr, Op::Eq, Value::Text(value.to_owned()), "username")?;
    let query = UserQuery {
        filter: Some(filter),
        count: 1,
        ..UserQuery::default()
    };
    let found = app.store.search_users(actor.account_id, &query).await?;
    // Without the permission, only oneself is found: someone else's name
    // is "not found", so that names cannot be probed.
    let may_see_others = actor.holds(Permission::ViewOtherUserInfo);
    let user = found
        .items
        .into_iter()
        .next()
        .filter(|u| may_see_others || actor.user_id() == Some(u.id))
        .ok_or(StoreError::NotFound("user"))?;
    let settings = app.settings(actor.account_id).await?;
    Ok(user.view(&settings, actor.sees(user.id)))
}

/// Reads a user. Anyone may read themself; others need `view-other-user-info`.
pub async fn get(app: &App, actor: &Actor, id: Uuid) -> Result<UserView> {
    if actor.user_id() != Some(id) {
        actor.require(Permission::ViewOtherUserInfo)?;
    }
    let user = app.store.get_user(actor.account_id, id).await?;
    let settings = app.settings(actor.account_id).await?;
    Ok(user.view(&settings, actor.sees(id)))
}

/// Changes a user. Others need `edit-other-user-info`, and to change their
/// login names, contact details or roles every permission they hold; roles
/// need `assign-roles` and nobody changes their own. A user may change their
/// own profile, but not their custom_id, email, verification or roles. A
/// changed address is unverified again and its old address is told.
pub async fn update(
    app: &App,
    actor: &Actor,
    id: Uuid,
    req: UpdateUserRequest,
) -> Result<UserView> {
    update_and_set_active(app, actor, id, req, None).await
}

/// Changes a user as [`update`] does and, when `active` is given,
/// (de)activates them as [`set_active`] does, in one transaction (SCIM's
/// PUT and PATCH, where `active` sits beside the other attributes). With
/// `active` the request may change no other field.
pub async fn update_and_set_active(
    app: &App,
    actor: &Actor,
    id: Uuid,
    req: UpdateUserRequest,
    active: Option<bool>,
) -> Result<UserView> {
    let account = actor.account_id;
    let own = actor.user_id() == Some(id);
    let sets_password = req.password.is_some();
    if active.is_some() {
        actor.require(Permission::EditOtherUserActiveStatus)?;
    }
    if own && sets_password {
        return Err(Error::forbidden_field(
            "a user changes their own password at POST /auth/password, with the current one",
            "password",
        ));
    }
    if !own && sets_password && !actor.holds(Permission::EditOtherUserPassword) {
        return Err(Error::forbidden_field(
            "setting another user's password needs the `edit-other-user-password` permission",
            "password",
        ));
    }
    if !own && !sets_password && active.is_none() {
        actor.require(Permission::EditOtherUserInfo)?;
    }
    let settings = app.settings(account).await?;
    let (mut patch, password) = req.parse(&settings)?;
    patch.active = active;
    // Any other field of someone else needs `edit-other-user-info`, beside
    // the password (which alone does not).
    if !own && patch.changes_fields() {
        actor.require(Permission::EditOtherUserInfo)?;
    }
    let current = app.store.get_user(account, id).await?;
    if own && let Some(metadata) = patch.metadata.as_mut() {
        // `@private` is the servers' part, which the user never sees: they
        // neither set it nor wipe it by replacing the rest.
        if metadata.contains_key("@private") {
            return Err(Error::forbidden_field(
                "only servers (API keys) set metadata[\"@private\"]",
                "metadata.@private",
            ));
        }
        if let Some(private) = current.metadata.get("@private") {
            metadata.insert("@private".to_owned(), private.clone());
        }
    }
    let identity = patch
        .identity_field()
        .or(sets_password.then_some("password"));
    if !own && let Some(field) = identity {
        actor.may_act_on(app, &current, field).await?;
    }
    if let Some(roles) = &patch.roles {
        if own {
            return Err(Error::forbidden("nobody changes their own roles"));
        }
        may_assign_roles(actor)?;
        actor.may_grant_roles(app, roles).await?;
    }
    if own && !actor.holds(Permission::EditOtherUserInfo) {
        for (field, set) in [
            ("custom_id", patch.custom_id.is_some()),
            ("email", patch.email.is_some()),
            ("verified", patch.email_verified.is_some()),
            (
                "require_password_change",
                patch.require_password_change.is_some(),
            ),
        ] {
            if set {
                return Err(Error::forbidden_field(
                    format!("a user cannot change their own {field}"),
                    field,
                ));
            }
        }
    }
    if let Some(password) = password {
        patch.password_hash = Some(app.passwords.hash(password.expose().to_owned()).await?);
    }
    if patch.is_empty() {
        return Err(Error::validation(
            "body",
            "name at least one field to change",
        ));
    }
    let mail = if patch.settle_email(&current) {
        super::mail::for_changed_email(
            app,
            account,
            &settings,
            &current,
            patch.email.as_ref().and_then(|e| e.as_deref()),
            patch.email_verified == Some(true),
        )
    } else {
        None
    };
    let (user, revoked) = app
        .store
        .update_user(account, id, &patch, &actor.change(), mail.as_ref())
        .await
        .map_err(body_ids)?;
    if mail.is_some() {
        app.outbox.notify_one();
    }
    super::tokens::kick_tokens(app, account, &revoked, "password changed");
    if active == Some(false) {
        kick(app, account, id, "user deactivated");
    }
    Ok(user.view(&settings, actor.sees(id)))
}

/// Erases a user and everything that points at them; their connections
/// close. Needs `delete-user`.
pub async fn delete(app: &App, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(Permission::DeleteUser)?;
    app.store
        .delete_user(actor.account_id, id, &actor.change())
        .await?;
    kick(app, actor.account_id, id, "user deleted");
    Ok(())
}

/// Deactivates (their tokens stop at once, for good, and their connections
/// close) or reactivates a user. Needs `edit-other-user-active-status`.
pub async fn set_active(app: &App, actor: &Actor, id: Uuid, active: bool) -> Result<UserView> {
    actor.require(Permission::EditOtherUserActiveStatus)?;
    let user = app
        .store
        .set_user_active(actor.account_id, id, active, &actor.change())
        .await?;
    if !active {
        kick(app, actor.account_id, id, "user deactivated");
    }
    let settings = app.settings(actor.account_id).await?;
    Ok(user.view(&settings, actor.sees(id)))
}

/// Closes the user's live realtime connections, on every node.
pub fn kick(app: &App, account: Uuid, user: Uuid, reason: &str) {
    app.bus.publish(BusEvent::Kick {
        account_id: account,
        user_id: user,
        reason: reason.to_owned(),
    });
}

/// Ids in a request body that name nothing are `NOT_FOUND`, naming the field.
fn body_ids(e: StoreError) -> Error {
    match e {
        StoreError::NotFound("room") => {
            crate::domain::DomainError::not_found_field("room", "room_id").into()
        }
        StoreError::NotFound("role") => {
            crate::domain::DomainError::not_found_field("role", "roles").into()
        }
        other => other.into(),
    }
}
