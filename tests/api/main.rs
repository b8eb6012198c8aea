//! HTTP integration suite: the real server on port 0, driven over HTTP.
//! `ROSTER_TEST_BACKEND=postgres` runs it against PostgreSQL.

mod access;
mod accounts;
mod audit;
mod cluster;
mod cometchat;
mod envelope;
mod event_matrix;
mod events;
mod faults;
mod fuzz;
mod helpers;
mod limits;
mod mail;
mod matrix;
mod process;
mod realtime;
mod rocketchat;
mod rooms;
mod scim;
mod security;
mod sessions;
mod signup;
mod skew;
mod tls;
mod tokens;
mod transfer;
mod user_tokens;
mod users;
mod webhooks;
