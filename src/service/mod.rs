//! The use cases: one async function per operation, over the application
//! core ([`App`](crate::app::App)), an [`Actor`] and a typed input, returning
//! a typed result or an [`Error`]. Permission checks, parsing, hashing, token
//! issue, mail, events, throttles and kicks happen here, once; the front
//! doors (`http/`, the realtime gateway, the CLI, and the compat and SCIM
//! adapters to come) only translate their own shapes to these calls and
//! back.
//!
//! The one rule: nothing here imports axum or an envelope type.

pub mod actor;
pub mod error;
pub mod mail;
pub mod throttle;
pub mod users;

pub use crate::domain::event::{ActorRef, Change};
pub use actor::{Actor, ActorKind, Operator};
pub use error::{Error, Result};
