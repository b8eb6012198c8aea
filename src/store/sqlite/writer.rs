//! The SQLite writer: one connection, one thread, commits in groups.
//!
//! Every write is a job on one queue. The writer takes every job waiting,
//! runs each inside its own SAVEPOINT (so one refused write does not undo
//! its neighbours), commits once, and only then answers each caller: a 2xx
//! is always a committed row, and the cost of the commit (an fsync with
//! `synchronous=FULL`) is shared by the whole group.
//!
//! Jobs come in two kinds. An *async* job runs sqlx queries on the
//! connection; each of its statements is a round trip to sqlx's own thread
//! for that connection. On this kind of machine such a hop (a futex wake and
//! two context switches) costs far more than the SQL it carries, and the
//! writer is serial, so the hops bound the write rate. A *raw* job is a
//! synchronous closure over a `rusqlite` view of the same connection: the
//! writer takes the handle from sqlx's thread once (`lock_handle`), runs
//! every consecutive raw job of the group on its own thread without a hop
//! per statement, and hands the handle back. The hot writes (creating
//! users) are raw jobs; the rest stay async.
//!
//! The writer runs on a dedicated thread with its own single-threaded
//! runtime, so that the synchronous work (and the fsync of a commit) never
//! blocks the server's runtime.

use futures::future::BoxFuture;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use super::{SqliteStore, map_err};
use crate::store::{Result, StoreError};

/// How many queued writes one commit may carry.
pub(super) const MAX_GROUP: usize = 512;

/// Answers a job's caller once the group's fate is known.
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Given the writer connection, runs and says whether it succeeded; given
/// `None` (the group's transaction could not begin or broke) it must not
/// touch the database and only answers with an error.
type AsyncJob = Box<
    dyn for<'c> FnOnce(Option<&'c mut SqliteConnection>) -> BoxFuture<'c, (bool, Completion)>
        + Send,
>;

/// The same, synchronously, on the raw handle.
type RawJob = Box<dyn FnOnce(Option<&rusqlite::Connection>) -> (bool, Completion) + Send>;

pub(super) enum Job {
    Async(AsyncJob),
    Raw(RawJob),
}

/// Starts the writer thread on `conn`; it ends when every sender is gone.
pub(super) fn spawn(conn: SqliteConnection) -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>(4096);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("roster-sqlite-writer".into())
        .spawn(move || runtime.block_on(writer(conn, rx)))?;
    Ok(tx)
}

impl SqliteStore {
    /// Runs `f` on the writer connection inside the next group commit and
    /// answers once that group is durable.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job: AsyncJob = Box::new(move |conn| {
            Box::pin(async move {
                let out = match conn {
                    Some(conn) => f(conn).await,
                    None => Err(not_begun()),
                };
                finish(out, tx)
            })
        });
        self.submit(Job::Async(job), rx).await
    }

    /// Like [`write`](Self::write), but `f` runs synchronously on the raw
    /// handle, with no thread hop per statement. Values must be bound in
    /// sqlx's SQLite encodings (UUIDs as 16-byte blobs, times as RFC 3339
    /// text, booleans as integers), since sqlx reads them back.
    pub(super) async fn write_raw<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job: RawJob = Box::new(move |conn| {
            let out = match conn {
                Some(conn) => f(conn),
                None => Err(not_begun()),
            };
            finish(out, tx)
        });
        self.submit(Job::Raw(job), rx).await
    }

    async fn submit<T>(&self, job: Job, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable(anyhow::anyhow!("writer stopped")))?;
        rx.await
            .map_err(|_| StoreError::Unavailable(anyhow::anyhow!("writer stopped")))?
    }
}

fn not_begun() -> StoreError {
    StoreError::Unavailable(anyhow::anyhow!("the write transaction could not begin"))
}

/// Whether the job succeeded, and how to answer it once the commit is known.
fn finish<T: Send + 'static>(out: Result<T>, tx: oneshot::Sender<Result<T>>) -> (bool, Completion) {
    let ok = out.is_ok();
    let done: Completion = Box::new(move |commit| {
        let answer = match (out, commit) {
            (Ok(v), Ok(())) => Ok(v),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(StoreError::Unavailable(anyhow::anyhow!(
                "commit failed: {e}"
            ))),
        };
        let _ = tx.send(answer);
    });
    (ok, done)
}

/// One group's transaction: which statements open the next job's
/// savepoint, and whether the group is already lost.
#[derive(Default)]
struct Group {
    /// `None` before the first job; then whether the last job succeeded.
    previous_ok: Option<bool>,
    failed: Option<String>,
    done: Vec<Completion>,
}

impl Group {
    /// The statements before the next job, as one string: the transaction
    /// control between two jobs then costs one round trip, not two.
    fn opening(&self) -> &'static str {
        match self.previous_ok {
            None => "BEGIN IMMEDIATE; SAVEPOINT job",
            Some(true) => "RELEASE job; SAVEPOINT job",
            Some(false) => "ROLLBACK TO job; RELEASE job; SAVEPOINT job",
        }
    }

    fn closing(&self) -> &'static str {
        match self.previous_ok {
            Some(false) => "ROLLBACK TO job; RELEASE job; COMMIT",
            _ => "RELEASE job; COMMIT",
        }
    }

    fn live(&self) -> bool {
        self.failed.is_none()
    }

    fn fail(&mut self, e: impl ToString) {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
        }
    }

    fn record(&mut self, (ok, done): (bool, Completion)) {
        self.previous_ok = Some(ok);
        self.done.push(done);
    }

    fn answer(self, commit: Result<(), String>) {
        metrics::histogram!("roster_sqlite_group_size").record(self.done.len() as f64);
        for c in self.done {
            c(commit.clone());
        }
    }
}

/// The writer loop: group, commit, answer.
async fn writer(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut batch, MAX_GROUP).await > 0 {
        let mut group = Group::default();
        let mut jobs = batch.drain(..).peekable();
        let mut committed = None;
        while let Some(job) = jobs.next() {
            match job {
                Job::Async(job) => {
                    if group.live()
                        && let Err(e) = sqlx::query(group.opening()).execute(&mut conn).await
                    {
                        group.fail(e);
                    }
                    let out = if group.live() {
                        job(Some(&mut conn)).await
                    } else {
                        job(None).await
                    };
                    group.record(out);
                }
                Job::Raw(first) => {
                    let mut run = vec![first];
                    while let Some(Job::Raw(_)) = jobs.peek() {
                        if let Some(Job::Raw(next)) = jobs.next() {
                            run.push(next);
                        }
                    }
                    let last = jobs.peek().is_none();
                    committed = run_raw(&mut conn, &mut group, run, last).await;
                }
            }
        }
        drop(jobs);
        let commit = match committed {
            Some(c) => c,
            None => match group.failed.clone() {
                Some(e) => Err(e),
                None => sqlx::query(group.closing())
                    .execute(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            },
        };
        if let Err(e) = &commit {
            tracing::error!(error = %e, "sqlite: group commit failed, rolling back");
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        }
        group.answer(commit);
    }
}

/// Runs consecutive raw jobs while holding the handle; with `last`, also
/// commits (or gives up) the group there and returns that outcome.
async fn run_raw(
    conn: &mut SqliteConnection,
    group: &mut Group,
    jobs: Vec<RawJob>,
    last: bool,
) -> Option<Result<(), String>> {
    let mut locked = match conn.lock_handle().await {
        Ok(l) => l,
        Err(e) => {
            group.fail(map_err(e));
            for job in jobs {
                group.record(job(None));
            }
            return None;
        }
    };
    // SAFETY: `locked` keeps sqlx's thread off this handle (and off every
    // statement of it) until it is dropped, and `raw` — which does not own
    // the handle, so never closes it — is dropped first, finalizing the
    // statements it prepared while the handle is still ours.
    #[allow(unsafe_code)]
    let raw = unsafe { rusqlite::Connection::from_handle(locked.as_raw_handle().as_ptr()) };
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            group.fail(e);
            for job in jobs {
                group.record(job(None));
            }
            return None;
        }
    };
    for job in jobs {
        if group.live()
            && let Err(e) = steps(&raw, group.opening())
        {
            group.fail(e);
        }
        let out = if group.live() {
            job(Some(&raw))
        } else {
            job(None)
        };
        group.record(out);
    }
    let outcome = last.then(|| match group.failed.clone() {
        Some(e) => Err(e),
        None => steps(&raw, group.closing()).map_err(|e| e.to_string()),
    });
    drop(raw);
    drop(locked);
    outcome
}

/// Runs `"A; B; C"` statement by statement, each prepared once per handle.
fn steps(raw: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    for step in sql.split("; ") {
        raw.prepare_cached(step)?.execute([])?;
    }
    Ok(())
}
