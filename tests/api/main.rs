//! HTTP integration suite: the real server on port 0, driven over HTTP.
//! `ROSTER_TEST_BACKEND=postgres` runs it against PostgreSQL.

mod access;
mod accounts;
mod envelope;
mod helpers;
mod limits;
mod matrix;
mod process;
mod realtime;
mod rooms;
mod tokens;
mod transfer;
mod users;
