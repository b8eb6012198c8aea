//! `roster migrate-sqlite-to-postgres`: moves an embedded install (one
//! SQLite file) into an empty PostgreSQL database, so that it can scale out
//! with nothing lost.
//!
//! The copy is generic on purpose: the tables are those both schemas hold
//! (minus sqlx's own `_sqlx_migrations`), taken in the order PostgreSQL's
//! foreign keys dictate, and every value is converted by looking at the
//! PostgreSQL column's type (`information_schema.columns`): SQLite's BLOB
//! UUIDs become `uuid`, RFC 3339 text `timestamptz`, integer booleans
//! `boolean`, JSON text `jsonb`. A table or column added by a later
//! migration therefore comes along without a change here. Everything lands
//! in ONE PostgreSQL transaction, with the target's tables locked, and is
//! counted again before the commit: either every row arrives or none does.
//!
//! The source is opened read-only and read inside one read transaction (a
//! consistent snapshot under WAL). A server must be stopped first (writes
//! made after the snapshot would not be copied): the command takes the
//! file's advisory lock exclusively, which fails while `roster serve` holds
//! it, and refuses.
//!
//! At a terminal, a progress bar per table shows rows copied, rows per
//! second and the time left; the JSON report goes to stdout either way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, bail};
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::postgres::{PgArguments, PgConnection};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Connection, Postgres, Row, TypeInfo, ValueRef};
use time::OffsetDateTime;
use uuid::Uuid;

/// PostgreSQL accepts at most 65535 parameters in one statement.
const MAX_PARAMS: usize = 60_000;
/// Rows per INSERT statement, at most.
const MAX_ROWS_PER_INSERT: usize = 500;

/// The command's arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    # stop the server first; the URL (it holds a password) from the environment:\n  \
    ROSTER_MIGRATE_TO=postgres://roster:secret@db/roster roster migrate-sqlite-to-postgres\n  \
    roster migrate-sqlite-to-postgres --from sqlite://roster-data/roster.db --to postgres://db/roster")]
pub struct Args {
    /// The embedded database to read, `sqlite://PATH` (default: the
    /// configured `database_url`). It is only read.
    #[arg(long)]
    pub from: Option<String>,
    /// The PostgreSQL database to fill, `postgres://…`. It is migrated
    /// first and must hold no data.
    #[arg(long, env = "ROSTER_MIGRATE_TO", hide_env_values = true)]
    pub to: String,
}

/// What was copied: rows per table, printed as JSON.
#[derive(Debug, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    /// Rows copied, per table.
    pub tables: BTreeMap<String, u64>,
    /// The tables in the order they were filled (parents first).
    pub order: Vec<String>,
    pub rows: u64,
}

/// How a PostgreSQL column takes its values.
#[derive(Debug, Clone)]
enum Kind {
    Uuid,
    TimestampTz,
    Bool,
    Bytea,
    Text,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// Anything else (`jsonb`, `numeric`, arrays, enums…): sent as text and
    /// cast by PostgreSQL to this type, which parses it exactly.
    Cast(String),
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
    /// Filled by a sequence or an identity, to be advanced after the copy.
    sequenced: bool,
    identity: bool,
    required: bool,
}

/// One value, typed for PostgreSQL (a NULL keeps its column's type, which
/// PostgreSQL needs to accept the parameter).
enum Cell {
    Uuid(Option<Uuid>),
    Time(Option<OffsetDateTime>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
    Text(Option<String>),
    I16(Option<i16>),
    I32(Option<i32>),
    I64(Option<i64>),
    F32(Option<f32>),
    F64(Option<f64>),
}

impl Cell {
    fn bind(
        self,
        q: Query<'static, Postgres, PgArguments>,
    ) -> Query<'static, Postgres, PgArguments> {
        match self {
            Cell::Uuid(v) => q.bind(v),
            Cell::Time(v) => q.bind(v),
            Cell::Bool(v) => q.bind(v),
            Cell::Bytes(v) => q.bind(v),
            Cell::Text(v) => q.bind(v),
            Cell::I16(v) => q.bind(v),
            Cell::I32(v) => q.bind(v),
            Cell::I64(v) => q.bind(v),
            Cell::F32(v) => q.bind(v),
            Cell::F64(v) => q.bind(v),
        }
    }
}

/// Copies the SQLite database at `from` into the empty PostgreSQL database
/// at `to`, which is migrated first.
pub async fn sqlite_to_postgres(from: &str, to: &str) -> anyhow::Result<Report> {
    if !from.starts_with("sqlite:") {
        bail!("--from must be a sqlite:// URL (got {})", redact(from));
    }
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL (got {})", redact(to));
    }
    let (mut src, _held) = open_source(from).await?;
    check_source_schema(&mut src).await?;

    let mut dst = PgConnection::connect(to)
        .await
        .with_context(|| format!("connecting to {}", redact(to)))?;
    crate::store::postgres::migrator()
        .run(&mut dst)
        .await
        .with_context(|| format!("migrating {}", redact(to)))?;

    let target = target_columns(&mut dst).await?;
    let source_tables = source_tables(&mut src).await?;
    let order = fill_order(&mut dst, &target).await?;

    // One read transaction on the source: every table from one snapshot.
    sqlx::query("BEGIN").execute(&mut src).await?;
    let mut plan: Vec<(String, Vec<Column>)> = Vec::new();
    for (table, source_cols) in &source_tables {
        let Some(target_cols) = target.get(table) else {
            let rows = count_sqlite(&mut src, table).await?;
            if rows > 0 {
                bail!(
                    "table {table} ({rows} rows) exists in the SQLite database but not in PostgreSQL; \
                     this roster does not know it — use the roster version that made the SQLite database"
                );
            }
            tracing::warn!(table, "empty table absent from PostgreSQL: skipped");
            continue;
        };
        let missing: Vec<&String> = source_cols
            .iter()
            .filter(|c| !target_cols.iter().any(|t| &t.name == *c))
            .collect();
        if !missing.is_empty() {
            bail!("columns of {table} missing in PostgreSQL: {missing:?}; nothing was copied");
        }
        let required: Vec<&String> = target_cols
            .iter()
            .filter(|t| t.required && !source_cols.contains(&t.name))
            .map(|t| &t.name)
            .collect();
        if !required.is_empty() {
            bail!(
                "columns of {table} required by PostgreSQL (NOT NULL, no default) are missing in SQLite: {required:?}"
            );
        }
        let cols = target_cols
            .iter()
            .filter(|t| source_cols.contains(&t.name))
            .cloned()
            .collect();
        plan.push((table.clone(), cols));
    }
    let position: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    plan.sort_by_key(|(t, _)| position.get(t.as_str()).copied().unwrap_or(usize::MAX));

    let mut tx = dst.begin().await?;
    // A node already serving on the target would hold its tables: fail
    // clearly rather than wait for it forever.
    sqlx::query("SET LOCAL lock_timeout = '30s'")
        .execute(&mut *tx)
        .await?;
    // Nobody writes to the target while it is checked and filled.
    let all: Vec<String> = target.keys().map(|t| quote(t)).collect();
    if !all.is_empty() {
        sqlx::query(AssertSqlSafe(format!(
            "LOCK TABLE {} IN EXCLUSIVE MODE",
            all.join(", ")
        )))
        .execute(&mut *tx)
        .await
        .context("locking the target's tables (is a Roster node running on it?)")?;
    }
    let mut occupied = Vec::new();
    for table in target.keys() {
        let any: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {})",
            quote(table)
        )))
        .fetch_one(&mut *tx)
        .await?;
        if any {
            occupied.push(table.clone());
        }
    }
    if !occupied.is_empty() {
        bail!(
            "the target database {} is not empty (rows in: {}); refusing to copy into it. \
             Point --to at a new, empty database",
            redact(to),
            occupied.join(", ")
        );
    }

    let mut report = Report {
        from: redact(from),
        to: redact(to),
        tables: BTreeMap::new(),
        order: Vec::new(),
        rows: 0,
    };
    for (table, cols) in &plan {
        let expected = count_sqlite(&mut src, table).await?;
        let bar = progress_bar(table, expected);
        let copied = copy_table(&mut src, &mut tx, table, cols, &bar).await?;
        bar.finish();
        let landed: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            quote(table)
        )))
        .fetch_one(&mut *tx)
        .await?;
        if u64::try_from(landed).ok() != Some(copied) {
            bail!("{table}: read {copied} rows but {landed} landed; nothing was committed");
        }
        advance_sequences(&mut tx, table, cols).await?;
        tracing::info!(table, rows = copied, "copied");
        report.tables.insert(table.clone(), copied);
        report.order.push(table.clone());
        report.rows += copied;
    }
    tx.commit().await.context("committing the copy")?;
    sqlx::query("COMMIT").execute(&mut src).await?;
    Ok(report)
}

fn redact(url: &str) -> String {
    crate::config::redact_url(url)
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The source, opened read-only, and the file held exclusively: no server
/// writes to it while it is copied (one serving refuses the copy; one
/// starting during it refuses to start).
async fn open_source(from: &str) -> anyhow::Result<(SqliteConnection, std::fs::File)> {
    let opts = SqliteConnectOptions::from_str(from)?;
    let path = opts.get_filename().to_owned();
    if !Path::new(&path).is_file() {
        bail!("no SQLite database at {}", path.display());
    }
    let held = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    match held.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by a running Roster server: stop it first, so that no write \
             is made after the copy; nothing was copied",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    let conn = SqliteConnection::connect_with(&opts.read_only(true))
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    Ok((conn, held))
}

/// The source must be a Roster database migrated exactly as far as this
/// roster knows, so that the two schemas line up.
async fn check_source_schema(src: &mut SqliteConnection) -> anyhow::Result<()> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut *src)
            .await
            .context("the source has no migration history: is it a Roster database?")?;
    let known: BTreeSet<i64> = crate::store::sqlite::migrator()
        .iter()
        .map(|m| m.version)
        .collect();
    let applied: BTreeSet<i64> = applied.into_iter().collect();
    if let Some(v) = applied.difference(&known).next() {
        bail!(
            "the SQLite database has migration {v}, which this roster does not know: \
             use the roster version that wrote it"
        );
    }
    if let Some(v) = known.difference(&applied).next() {
        bail!(
            "the SQLite database lacks migration {v}: run `roster migrate --database-url sqlite://…` \
             on it with this roster first"
        );
    }
    Ok(())
}

/// The source's tables and their columns.
async fn source_tables(
    src: &mut SqliteConnection,
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut *src)
    .await?;
    let mut out = BTreeMap::new();
    for name in names {
        let cols: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind(&name)
                .fetch_all(&mut *src)
                .await?;
        out.insert(name, cols);
    }
    Ok(out)
}

/// The target's tables (in the current schema) and their columns.
async fn target_columns(dst: &mut PgConnection) -> anyhow::Result<BTreeMap<String, Vec<Column>>> {
    let rows = sqlx::query(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.udt_schema::text, \
                c.udt_name::text, c.is_nullable::text, c.column_default::text, \
                c.is_identity::text, c.is_generated::text, c.identity_generation::text \
         FROM information_schema.columns c \
         JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
           AND c.table_name <> '_sqlx_migrations' \
         ORDER BY c.table_name, c.ordinal_position",
    )
    .fetch_all(&mut *dst)
    .await?;
    let mut out: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for r in rows {
        let table: String = r.try_get(0)?;
        let data_type: String = r.try_get(2)?;
        let udt_schema: String = r.try_get(3)?;
        let udt_name: String = r.try_get(4)?;
        let nullable = r.try_get::<String, _>(5)? == "YES";
        let default: Option<String> = r.try_get(6)?;
        let identity = r.try_get::<Option<String>, _>(7)?.as_deref() == Some("YES");
        let generated = r.try_get::<Option<String>, _>(8)?.as_deref() == Some("ALWAYS");
        let entry = out.entry(table).or_default();
        if generated {
            continue; // computed by PostgreSQL, never written
        }
        let kind = match data_type.as_str() {
            "uuid" => Kind::Uuid,
            "timestamp with time zone" => Kind::TimestampTz,
            "boolean" => Kind::Bool,
            "bytea" => Kind::Bytea,
            "text" | "character varying" | "character" => Kind::Text,
            "smallint" => Kind::Int2,
            "integer" => Kind::Int4,
            "bigint" => Kind::Int8,
            "real" => Kind::Float4,
            "double precision" => Kind::Float8,
            _ => Kind::Cast(format!("{}.{}", quote(&udt_schema), quote(&udt_name))),
        };
        entry.push(Column {
            name: r.try_get(1)?,
            kind,
            sequenced: identity
                || default
                    .as_deref()
                    .is_some_and(|d| d.starts_with("nextval(")),
            identity,
            required: !nullable && default.is_none() && !identity,
        });
    }
    Ok(out)
}

/// The target's tables, parents before the tables whose foreign keys point
/// at them.
async fn fill_order(
    dst: &mut PgConnection,
    tables: &BTreeMap<String, Vec<Column>>,
) -> anyhow::Result<Vec<String>> {
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT child.relname::text, parent.relname::text \
         FROM pg_constraint c \
         JOIN pg_class child ON child.oid = c.conrelid \
         JOIN pg_class parent ON parent.oid = c.confrelid \
         JOIN pg_namespace n ON n.oid = child.relnamespace \
         WHERE c.contype = 'f' AND n.nspname = current_schema()",
    )
    .fetch_all(&mut *dst)
    .await?;
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = tables
        .keys()
        .map(|t| (t.as_str(), BTreeSet::new()))
        .collect();
    for (child, parent) in &edges {
        if child != parent
            && tables.contains_key(parent)
            && let Some(p) = parents.get_mut(child.as_str())
        {
            p.insert(parent.as_str());
        }
    }
    let mut order: Vec<String> = Vec::new();
    while !parents.is_empty() {
        let ready: Vec<&str> = parents
            .iter()
            .filter(|(_, ps)| ps.is_empty())
            .map(|(t, _)| *t)
            .collect();
        if ready.is_empty() {
            bail!(
                "the foreign keys among {:?} form a cycle; cannot order the copy",
                parents.keys().collect::<Vec<_>>()
            );
        }
        for t in ready {
            parents.remove(t);
            for ps in parents.values_mut() {
                ps.remove(t);
            }
            order.push(t.to_owned());
        }
    }
    Ok(order)
}

async fn count_sqlite(src: &mut SqliteConnection, table: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {}",
        quote(table)
    )))
    .fetch_one(&mut *src)
    .await?)
}

/// A bar for one table's rows, drawn on stderr when it is a terminal
/// (hidden otherwise, so logs and pipes see none of it).
fn progress_bar(table: &str, rows: i64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(u64::try_from(rows).unwrap_or(0));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>20} [{bar:30}] {pos}/{len} rows, {per_sec}, ETA {eta}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar.set_prefix(table.to_owned());
    bar
}

/// Streams one table from SQLite into PostgreSQL in multi-row INSERTs,
/// moving `bar` along; returns how many rows were read.
async fn copy_table(
    src: &mut SqliteConnection,
    dst: &mut PgConnection,
    table: &str,
    cols: &[Column],
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    if cols.is_empty() {
        return Ok(0);
    }
    let select = format!(
        "SELECT {} FROM {} ORDER BY rowid",
        cols.iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", "),
        quote(table)
    );
    let per_insert = (MAX_PARAMS / cols.len()).clamp(1, MAX_ROWS_PER_INSERT);
    let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(&mut *src);
    let mut batch: Vec<Vec<Cell>> = Vec::with_capacity(per_insert);
    let mut copied = 0u64;
    while let Some(row) = rows.try_next().await? {
        let cells = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                convert(&row, i, &c.kind)
                    .with_context(|| format!("{table}.{} of row {}", c.name, copied + 1))
            })
            .collect::<anyhow::Result<Vec<Cell>>>()?;
        batch.push(cells);
        copied += 1;
        if batch.len() == per_insert {
            insert(dst, table, cols, std::mem::take(&mut batch)).await?;
            bar.set_position(copied);
        }
    }
    if !batch.is_empty() {
        insert(dst, table, cols, batch).await?;
    }
    bar.set_position(copied);
    Ok(copied)
}

async fn insert(
    dst: &mut PgConnection,
    table: &str,
    cols: &[Column],
    batch: Vec<Vec<Cell>>,
) -> anyhow::Result<()> {
    let mut sql = format!(
        "INSERT INTO {} ({}){} VALUES ",
        quote(table),
        cols.iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", "),
        if cols.iter().any(|c| c.identity) {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        }
    );
    let mut n = 0;
    for (r, _) in batch.iter().enumerate() {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for (i, c) in cols.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            n += 1;
            match &c.kind {
                Kind::Cast(ty) => sql.push_str(&format!("CAST(${n} AS {ty})")),
                _ => sql.push_str(&format!("${n}")),
            }
        }
        sql.push(')');
    }
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for row in batch {
        for cell in row {
            q = cell.bind(q);
        }
    }
    q.execute(&mut *dst)
        .await
        .with_context(|| format!("inserting into {table}"))?;
    Ok(())
}

/// A serial or identity column's sequence continues after the copied values.
async fn advance_sequences(
    dst: &mut PgConnection,
    table: &str,
    cols: &[Column],
) -> anyhow::Result<()> {
    for c in cols.iter().filter(|c| c.sequenced) {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), m) FROM (SELECT max({}) AS m FROM {}) x \
             WHERE m IS NOT NULL",
            quote(&c.name),
            quote(table)
        )))
        .bind(quote(table))
        .bind(&c.name)
        .execute(&mut *dst)
        .await
        .with_context(|| format!("advancing the sequence of {table}.{}", c.name))?;
    }
    Ok(())
}

/// SQLite's value (whatever storage class it has) as the PostgreSQL column
/// wants it.
fn convert(row: &SqliteRow, i: usize, kind: &Kind) -> anyhow::Result<Cell> {
    let raw = row.try_get_raw(i)?;
    let class = if raw.is_null() {
        None
    } else {
        Some(raw.type_info().name().to_owned())
    };
    let Some(class) = class else {
        return Ok(match kind {
            Kind::Uuid => Cell::Uuid(None),
            Kind::TimestampTz => Cell::Time(None),
            Kind::Bool => Cell::Bool(None),
            Kind::Bytea => Cell::Bytes(None),
            Kind::Text | Kind::Cast(_) => Cell::Text(None),
            Kind::Int2 => Cell::I16(None),
            Kind::Int4 => Cell::I32(None),
            Kind::Int8 => Cell::I64(None),
            Kind::Float4 => Cell::F32(None),
            Kind::Float8 => Cell::F64(None),
        });
    };
    let class = class.as_str();
    let text = || -> anyhow::Result<String> {
        Ok(match class {
            "INTEGER" => row.try_get_unchecked::<i64, _>(i)?.to_string(),
            "REAL" => row.try_get_unchecked::<f64, _>(i)?.to_string(),
            "BLOB" => String::from_utf8(row.try_get_unchecked::<Vec<u8>, _>(i)?)
                .context("a BLOB that is not UTF-8 text")?,
            _ => row.try_get_unchecked::<String, _>(i)?,
        })
    };
    let int = || -> anyhow::Result<i64> {
        Ok(match class {
            "INTEGER" => row.try_get_unchecked::<i64, _>(i)?,
            _ => text()?.trim().parse().context("not an integer")?,
        })
    };
    let float = || -> anyhow::Result<f64> {
        Ok(match class {
            "INTEGER" | "REAL" => row.try_get_unchecked::<f64, _>(i)?,
            _ => text()?.trim().parse().context("not a number")?,
        })
    };
    Ok(match kind {
        Kind::Uuid => Cell::Uuid(Some(match class {
            "BLOB" => Uuid::from_slice(&row.try_get_unchecked::<Vec<u8>, _>(i)?)
                .context("a BLOB that is not a 16-byte UUID")?,
            _ => Uuid::parse_str(text()?.trim()).context("not a UUID")?,
        })),
        Kind::TimestampTz => Cell::Time(Some(
            row.try_get_unchecked::<OffsetDateTime, _>(i)
                .context("not a timestamp")?,
        )),
        Kind::Bool => Cell::Bool(Some(match class {
            "INTEGER" | "REAL" => float()? != 0.0,
            _ => match text()?.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "t" | "yes" | "on" => true,
                "0" | "false" | "f" | "no" | "off" => false,
                other => bail!("not a boolean: {other:?}"),
            },
        })),
        Kind::Bytea => Cell::Bytes(Some(match class {
            "BLOB" => row.try_get_unchecked::<Vec<u8>, _>(i)?,
            _ => text()?.into_bytes(),
        })),
        Kind::Text | Kind::Cast(_) => Cell::Text(Some(text()?)),
        Kind::Int2 => Cell::I16(Some(
            i16::try_from(int()?).context("out of smallint range")?,
        )),
        Kind::Int4 => Cell::I32(Some(i32::try_from(int()?).context("out of integer range")?)),
        Kind::Int8 => Cell::I64(Some(int()?)),
        Kind::Float4 => Cell::F32(Some(float()? as f32)),
        Kind::Float8 => Cell::F64(Some(float()?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("users"), "\"users\"");
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
    }
}
