//! Roster: a self-hosted user-and-access server for real-time apps.
//!
//! A request enters through a front door — `http/` (axum: routing, the
//! envelope, auth extractors), the realtime gateway, the CLI — which calls
//! one use case in `service/` with the [`service::Actor`] it authenticated.
//! The use case parses the input into `domain/` types that can only hold
//! valid values, checks permissions, hashes, issues tokens and queues mail,
//! and makes one whole operation on a `store::Store` (SQLite embedded, or
//! PostgreSQL), one transaction each, that records its event in the event
//! log with the change. `tokens` signs and checks the JWTs, `secret` hashes
//! keys and passwords. `app::App` holds the chosen backends; `server` binds
//! and runs it; `main.rs` is only the CLI. See `docs/architecture.md`.
//!
//! The rules: `domain/` never imports axum, sqlx or redis; `service/` never
//! imports axum or an envelope type.
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
pub mod service;
pub mod store;
pub mod tokens;
pub mod transfer;
