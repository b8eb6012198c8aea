//! The use cases: one async function per operation, over the application
//! core ([`App`](crate::app::App)), an [`Actor`] (or, above the accounts,
//! the [`Operator`]) and a typed input, returning a typed result or an
//! [`Error`]. Permission checks, parsing, hashing, token issue, mail,
//! events, throttles and kicks happen here, once; the front doors (`http/`,
//! the realtime gateway, the CLI, and the compat and SCIM adapters to come)
//! only translate their own shapes to these calls and back.
//!
//! One module per aggregate: `users`, `rooms`, `spaces`, `members` (of
//! rooms and spaces), `invites`, `access_links`, `tokens`, `sessions`,
//! `api_keys`, `roles`, `settings`, `accounts`, `signing_keys`, `audit` (the
//! event log as administrators read it), `webhooks` (endpoints and the
//! worker that delivers the event log to them); `access`
//! holds where an actor stands in a space or room, `mail` the mail that goes
//! with a user, `throttle` the brute-force buckets.
//!
//! The one rule: nothing here imports axum or an envelope type.

pub mod access;
pub mod access_links;
pub mod accounts;
pub mod actor;
pub mod api_keys;
pub mod audit;
pub mod error;
pub mod invites;
pub mod mail;
pub mod members;
pub mod roles;
pub mod rooms;
pub mod sessions;
pub mod settings;
pub mod signing_keys;
pub mod spaces;
pub mod throttle;
pub mod tokens;
pub mod users;
pub mod webhooks;

pub use crate::domain::event::{ActorRef, Change};
pub use actor::{Actor, ActorKind, Operator};
pub use error::{Error, Result};

use crate::app::App;

/// The base of the links this server hands out (`ROSTER_PUBLIC_URL`, else
/// its listen address), without a trailing `/`.
pub fn public_base(app: &App) -> String {
    app.config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", app.config.listen))
        .trim_end_matches('/')
        .to_owned()
}
