//! The domain: Roster's types, their rules and limits, independent of HTTP and
//! of storage. Everything here is plain Rust: no axum, no sqlx, no redis.
//!
//! Values are parsed once at the edge into types that can only hold valid data
//! (`CustomId`, `Username`, `Email`, ...), so the store and the handlers never
//! re-check them.

pub mod access;
pub mod account;
pub mod error;
pub mod event;
pub mod permission;
pub mod room;
pub mod session;
pub mod settings;
pub mod text;
pub mod time;
pub mod user;
pub mod user_query;
pub mod webhook;
pub mod whole;

pub use error::{DomainError, ValidationError};
