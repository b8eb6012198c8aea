//! Roster: a self-hosted user-and-access server for real-time apps.
//!
//! A request enters through `http/` (axum: routing, the envelope, auth
//! extractors), is parsed into `domain/` types that can only hold valid
//! values, and becomes one whole operation on a `store::Store` (SQLite
//! embedded, or PostgreSQL), one transaction each. `tokens` signs and checks
//! the JWTs, `secret` hashes keys and passwords. `app::App` holds the chosen
//! backends; `server` binds and runs it; `main.rs` is only the CLI.
//!
//! The one rule: `domain/` never imports axum, sqlx or redis.
//!
//! No `unsafe` except one audited block: the SQLite writer borrowing its
//! own connection's handle from sqlx (`store/sqlite/writer.rs`); the
//! `unsafe_code` lint is set to deny in Cargo.toml.

pub mod app;
pub mod cache;
pub mod config;
pub mod domain;
pub mod http;
pub mod mail;
pub mod realtime;
pub mod secret;
pub mod server;
pub mod store;
pub mod tokens;
pub mod transfer;
