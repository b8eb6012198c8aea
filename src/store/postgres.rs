//! Placeholder replaced by the PostgreSQL backend on the pg-store branch.
