//! The embedded backend: one SQLite file in WAL mode.
//!
//! Writes go through one writer ([`writer`]) that owns the only writing
//! connection and commits in groups, answering each caller only once its
//! group is durable: a 2xx is always a committed row, while the cost of the
//! commit (an fsync with `synchronous=FULL`) is shared by the whole group.
//! Reads use a small pool of read-only connections, which WAL lets run
//! beside the writer. [`new_user`] writes a new user's rows on the writer's
//! raw handle, the hottest write of all. Everything else is the shared SQL
//! of `store/sql.rs`, compiled here with this backend's dialect.

mod new_user;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{Result, StoreError, TokenRecord, sessions};
use crate::domain::event::Change;
use crate::domain::user::{NewUser, User};

pub struct SqliteStore {
    jobs: mpsc::Sender<writer::Job>,
    read: SqlitePool,
}

pub fn migrator() -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    Migrator::with_migrations(
        [
            (
                1,
                "init",
                include_str!("../../../migrations/sqlite/0001_init.sql"),
            ),
            (
                2,
                "access",
                include_str!("../../../migrations/sqlite/0002_access.sql"),
            ),
            (
                3,
                "sessions",
                include_str!("../../../migrations/sqlite/0003_sessions.sql"),
            ),
            (
                5,
                "email_changed",
                include_str!("../../../migrations/sqlite/0005_email_changed.sql"),
            ),
            (
                6,
                "events",
                include_str!("../../../migrations/sqlite/0006_events.sql"),
            ),
            (
                7,
                "username_skeleton",
                include_str!("../../../migrations/sqlite/0007_username_skeleton.sql"),
            ),
            (
                8,
                "one_live_signing_key",
                include_str!("../../../migrations/sqlite/0008_one_live_signing_key.sql"),
            ),
            (
                9,
                "users_without_skeleton",
                include_str!("../../../migrations/sqlite/0009_users_without_skeleton.sql"),
            ),
            (
                10,
                "audit",
                include_str!("../../../migrations/sqlite/0010_audit.sql"),
            ),
            (
                11,
                "webhooks",
                include_str!("../../../migrations/sqlite/0011_webhooks.sql"),
            ),
            (
                12,
                "webhook_secrets",
                include_str!("../../../migrations/sqlite/0012_webhook_secrets.sql"),
            ),
            (
                13,
                "webhook_health",
                include_str!("../../../migrations/sqlite/0013_webhook_health.sql"),
            ),
            (
                14,
                "scim",
                include_str!("../../../migrations/sqlite/0014_scim.sql"),
            ),
        ]
        .into_iter()
        .map(|(v, name, sql)| {
            Migration::new(
                v,
                name.into(),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect(),
    )
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url`.
    /// `full_sync` selects `synchronous=FULL` (survives power loss) over
    /// `NORMAL` (survives a process crash).
    pub async fn open(url: &str, full_sync: bool) -> anyhow::Result<Self> {
        let base = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let file = Path::new(base.get_filename()).to_path_buf();
        let on_disk = !file.as_os_str().is_empty() && file != Path::new(":memory:");
        if let Some(dir) = file.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        if on_disk {
            private_file(&file)?;
        }
        let write_opts = base
            .clone()
            .create_if_missing(true)
            .synchronous(if full_sync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            });
        let mut conn = SqliteConnection::connect_with(&write_opts).await?;
        migrator().run(&mut conn).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(base.read_only(true))
            .await?;
        if on_disk {
            // SQLite gives its -wal and -shm files the database's mode; an
            // older install's files are tightened here too.
            for suffix in ["", "-wal", "-shm"] {
                let mut name = file.clone().into_os_string();
                name.push(suffix);
                let path = std::path::PathBuf::from(name);
                if path.exists() {
                    private_file(&path)?;
                }
            }
        }
        let jobs = writer::spawn(conn)?;
        Ok(Self { jobs, read })
    }
}

/// For `roster serve` on a SQLite `database_url`: the database file
/// (created empty if missing, which SQLite takes as a new database), held
/// with a shared advisory lock (`flock`) for as long as the handle lives.
/// `migrate-sqlite-to-postgres` takes the lock exclusively, so it refuses
/// to copy a file a server is writing, and a server refuses to start on a
/// file being copied. (SQLite's own locks are `fcntl` locks; the two do not
/// meet.) `None` for other databases and `:memory:`.
pub fn hold_while_serving(database_url: &str) -> anyhow::Result<Option<std::fs::File>> {
    if !database_url.starts_with("sqlite:") {
        return Ok(None);
    }
    let opts = SqliteConnectOptions::from_str(database_url)?;
    let path = Path::new(opts.get_filename());
    if path.as_os_str().is_empty() || path == Path::new(":memory:") {
        return Ok(None);
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    private_file(path)?;
    let file = std::fs::File::open(path)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{} is being copied to PostgreSQL (roster migrate-sqlite-to-postgres): \
             start the server once the copy is done",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Makes `path` readable and writable by its owner only (creating it empty
/// if missing, which SQLite takes as a new database): it holds the accounts'
/// data and, without a master key, the signing keys as they are.
fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Maps a database error to the store's vocabulary, naming the unique
/// index that refused a write.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => super::unique_conflict(&format!(
            "{} {}",
            db.message(),
            db.constraint().unwrap_or("")
        )),
        // The disk, not the request: I/O errors, a full disk, a file that
        // cannot be opened, a lock held past the busy timeout.
        sqlx::Error::Database(db)
            if db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14)) =>
        {
            StoreError::Unavailable(e.into())
        }
        _ => super::link_error(e),
    }
}

// --- what the shared SQL (`store/sql.rs`) needs from this backend -------------

type Db = sqlx::Sqlite;
type Backend = SqliteStore;

/// The single writer serializes every write: no row locks to take.
const ROW_LOCKS: bool = false;

/// Times are RFC 3339 text of varying precision: compare them as numbers.
macro_rules! ts {
    ($e:literal) => {
        concat!("julianday(", $e, ")")
    };
}
/// Row locks are PostgreSQL's; the writer needs none.
macro_rules! lock {
    ($e:literal) => {
        ""
    };
}
macro_rules! each {
    ($p:literal) => {
        concat!("json_each(", $p, ")")
    };
}
/// SQLite reads the left side of a `CROSS JOIN` first.
macro_rules! driver_join {
    () => {
        "CROSS JOIN"
    };
}
macro_rules! limit_all {
    () => {
        "LIMIT -1"
    };
}
/// Names the index SQLite must read a table by, where its planner would
/// pick a worse one (an error, not a slow plan, if it cannot be used).
macro_rules! indexed_by {
    ($i:literal) => {
        concat!(" INDEXED BY ", $i)
    };
}

// Compiled once per backend on purpose: one text, two dialects.
#[allow(clippy::duplicate_mod)]
#[path = "../sql.rs"]
mod sql;

impl SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn read(&self) -> &SqlitePool {
        &self.read
    }

    /// The read pool, and the jobs queued for the writer.
    fn pool_gauges(&self) -> super::Gauges {
        super::Gauges {
            pool_open: self.read.size(),
            pool_idle: u32::try_from(self.read.num_idle()).unwrap_or(u32::MAX),
            pool_max: self.read.options().get_max_connections(),
            writes_waiting: (self.jobs.max_capacity() - self.jobs.capacity()) as u64,
            ..super::Gauges::default()
        }
    }

    /// A read, and a write through the writer (which proves it is alive).
    async fn round_trip(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(map_err)?;
        self.write(|_| Box::pin(async { Ok(()) })).await
    }

    /// With one writer, events commit in `seq` order: every visible one is
    /// settled.
    async fn settled_seq(&self) -> Result<Option<i64>> {
        Ok(Some(i64::MAX))
    }

    /// A new user's rows (and their mail) on the writer's raw handle.
    async fn insert_new_user(
        &self,
        account: Uuid,
        user: &NewUser,
        token: &TokenRecord,
        change: &Change,
        mail: Option<&sessions::UserMail>,
    ) -> Result<User> {
        let (user, token, change, mail) =
            (user.clone(), token.clone(), change.clone(), mail.cloned());
        self.write_raw(move |c| {
            let created = new_user::insert_user(c, account, &user, &token, &change)?;
            if let Some(mail) = &mail {
                new_user::insert_mail(c, account, &user, change.at, mail)?;
            }
            Ok(created)
        })
        .await
    }
}
