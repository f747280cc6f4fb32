//! The database: one connection type over SQLite and PostgreSQL, the pool, the embedded migrations, and the
//! one way to run diesel work: on tokio's blocking threads, off the async workers (`Db::run`; `Db::write` for
//! a transaction). Backend differences stay in match arms here.

pub mod schema;
mod sqlite_writer;

/// `const NAME: (a, b, …) = (a, b, …);` from one list of diesel columns (a column's type and its value share
/// its path): a fixed selection to use in several queries.
#[macro_export]
macro_rules! column_tuple {
    ($(#[$doc:meta])* $name:ident = $($column:path),+ $(,)?) => {
        $(#[$doc])*
        const $name: ($($column,)+) = ($($column,)+);
    };
}

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, PooledConnection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use tracing::Instrument;

use crate::config::{DatabaseConfig, DatabaseUrl};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub type Pool = diesel::r2d2::Pool<ConnectionManager<DbConnection>>;
pub type PooledConn = PooledConnection<ConnectionManager<DbConnection>>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time: the pool is exhausted or the database is down.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("blocking task failed: {0}")]
    Task(String),
}

/// Whether an error says that the transaction lost to a concurrent one — PostgreSQL's SQLSTATE 40001, which
/// serializable isolation (and the distributed engines that speak its wire protocol) raise. `Db::write` runs
/// such a transaction again.
pub trait Contention {
    fn is_contention(&self) -> bool;
}

pub fn is_serialization_failure(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::SerializationFailure,
            _
        )
    )
}

impl Contention for diesel::result::Error {
    fn is_contention(&self) -> bool {
        is_serialization_failure(self)
    }
}

impl Contention for DbError {
    fn is_contention(&self) -> bool {
        matches!(self, Self::Query(e) if is_serialization_failure(e))
    }
}

/// The pauses before each new run of a write transaction that lost to a concurrent one (each with as much
/// again at random); after the last, the error goes to the caller (a 503 for a request).
const CONTENTION_PAUSES: [Duration; 4] = [
    Duration::from_millis(2),
    Duration::from_millis(10),
    Duration::from_millis(40),
    Duration::from_millis(160),
];

/// `write_tx` of `f`, run again after a short pause while it loses to concurrent transactions (at most
/// `CONTENTION_PAUSES.len()` more times).
fn write_tx_retrying<T, E, F>(conn: &mut DbConnection, mut f: F) -> Result<T, E>
where
    F: FnMut(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error> + Contention,
{
    let mut pauses = CONTENTION_PAUSES.iter();
    loop {
        match write_tx(conn, &mut f) {
            Err(e) if e.is_contention() => {
                let Some(pause) = pauses.next() else {
                    return Err(e);
                };
                let jitter = pause.mul_f64(rand::random::<f64>());
                tracing::debug!(pause = ?(*pause + jitter), "a write transaction lost to a concurrent one; again");
                std::thread::sleep(*pause + jitter);
            }
            done => return done,
        }
    }
}

/// The pool and what it talks to. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// On SQLite, the queue of the thread that makes every write transaction (`sqlite_writer`).
    writer: Option<std::sync::mpsc::Sender<sqlite_writer::Job>>,
    backend: Backend,
    /// For connections of their own (`Db::dedicated`).
    url: DatabaseUrl,
    /// The SQLite file, checked by readiness: a deleted file would otherwise be written to, unseen, until
    /// the next restart loses it.
    sqlite_path: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish()
    }
}

/// SQLite set up for a server: WAL so readers never wait for the writer, a busy timeout instead of instant
/// `SQLITE_BUSY`, foreign keys on, NORMAL sync (durable at each checkpoint, safe with WAL).
#[derive(Debug)]
struct SqliteSetup;

/// How long an SQLite connection waits for another's write lock before `database is locked`: the pool's
/// connections and the single ones of `establish` alike.
const SQLITE_BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 5000;";

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for SqliteSetup {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(c) = conn {
            c.batch_execute(&format!(
                "PRAGMA journal_mode = WAL; {SQLITE_BUSY_TIMEOUT} \
                 PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;"
            ))
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

impl Db {
    /// Opens the pool (creating an SQLite file and its folder when needed). Does not migrate.
    pub fn connect(config: &DatabaseConfig) -> Result<Self, DbError> {
        let sqlite_path = match &config.url {
            DatabaseUrl::Sqlite(path) => Some(path.clone()),
            DatabaseUrl::Postgres(_) => None,
        };
        let (url, backend) = match &config.url {
            DatabaseUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        DbError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                (path.to_string_lossy().into_owned(), Backend::Sqlite)
            }
            DatabaseUrl::Postgres(url) => {
                prepare_postgres_client();
                (url.expose().clone(), Backend::Postgres)
            }
        };
        let pool = |size| {
            diesel::r2d2::Pool::builder()
                .max_size(size)
                // No connections made ahead in r2d2's background threads: a short-lived command (`shopd
                // outbox list`, `keys rotate`) would open connections it never uses. Connections are made on use.
                .min_idle(Some(0))
                // No `SELECT 1` before every checkout (a round trip per request on PostgreSQL): a broken
                // connection fails its query, is dropped by r2d2, and readiness checks the database itself.
                .test_on_check_out(false)
                .connection_timeout(config.pool_timeout)
                .connection_customizer(Box::new(SqliteSetup))
                .build(ConnectionManager::new(url.clone()))
                .map_err(|e| DbError::Unavailable(e.to_string()))
        };
        let writer = match backend {
            Backend::Sqlite => Some(sqlite_writer::start(pool(1)?)),
            Backend::Postgres => None,
        };
        Ok(Self {
            pool: pool(config.pool_size)?,
            url: config.url.clone(),
            writer,
            backend,
            sqlite_path,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool now: connections open, of which idle, and the largest size (for the metrics).
    pub fn pool_state(&self) -> (u32, u32, u32) {
        let state = self.pool.state();
        (
            state.connections,
            state.idle_connections,
            self.pool.max_size(),
        )
    }

    /// A connection outside the pool, for a thread that keeps one (`orders::detail_reads`).
    pub fn dedicated(&self) -> Result<DbConnection, DbError> {
        establish(&self.url)
    }

    pub fn get(&self) -> Result<PooledConn, DbError> {
        self.pool
            .get()
            .map_err(|e| DbError::Unavailable(e.to_string()))
    }

    /// Runs blocking diesel work on a pooled connection on tokio's blocking threads, inside the caller's
    /// tracing span (so its log lines keep the request id).
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        on_blocking_thread(self.pool.clone(), f).await
    }

    /// `run` in one write transaction (`write_tx`); on SQLite, made by the writer thread (`sqlite_writer`).
    /// On PostgreSQL a transaction that loses to a concurrent one (40001) runs again after a short pause, a
    /// few times (`CONTENTION_PAUSES`): so `f` may run more than once, and must do nothing but database work.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + From<diesel::result::Error> + Contention + Send + 'static,
    {
        let Some(writer) = &self.writer else {
            return self.run(move |conn| write_tx_retrying(conn, f)).await;
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        let job: sqlite_writer::Job = Box::new(move |conn| {
            let _ = answer.send(span.in_scope(|| write_tx(conn, f)));
        });
        let not_made = || E::from(DbError::Unavailable("the write was not made".into()));
        writer.send(job).map_err(|_| not_made())?;
        answered.await.map_err(|_| not_made())?
    }

    /// On SQLite, checkpoints the WAL every `CHECKPOINT_INTERVAL` until the process ends. With
    /// `synchronous = NORMAL` a commit is synced to disk at the next checkpoint, and SQLite's own comes only
    /// after 1,000 pages: at a low write rate a commit (an order, a payment's webhook already answered 2xx)
    /// would sit unsynced for hours. A passive checkpoint waits for no reader or writer.
    pub fn spawn_checkpoints(&self) {
        if self.backend != Backend::Sqlite {
            return;
        }
        let db = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let done = db
                    .run(|conn| {
                        conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)")
                            .map_err(DbError::from)
                    })
                    .await;
                if let Err(e) = done {
                    tracing::warn!(error = %e, "cannot checkpoint the SQLite WAL");
                }
            }
        });
    }

    pub fn run_migrations(&self) -> Result<usize, DbError> {
        let mut conn = self.get()?;
        run_pending_migrations(&mut conn)
    }

    /// Reachable and migrated: what `/readyz` reports.
    pub async fn check_ready(&self) -> Result<(), DbError> {
        if let Some(path) = &self.sqlite_path
            && !path.exists()
        {
            return Err(DbError::Unavailable(format!("{} is gone", path.display())));
        }
        self.run(|conn| {
            conn.batch_execute("SELECT 1")?;
            if has_pending_migrations(conn)? {
                return Err(DbError::Migration("migrations are pending".into()));
            }
            Ok(())
        })
        .await
    }
}

async fn on_blocking_thread<T, E, F>(pool: Pool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let mut conn = pool
            .get()
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        f(&mut conn)
    })
    .instrument(tracing::Span::current())
    .await
    .map_err(|e| DbError::Task(e.to_string()))?
}

/// `$work` on the backend's own connection `$c` with its migrations `$m`, its error a `DbError::Migration`.
macro_rules! with_migrations {
    ($conn:expr, |$c:ident, $m:ident| $work:expr) => {
        match $conn {
            DbConnection::Sqlite($c) => {
                let $m = SQLITE_MIGRATIONS;
                $work
            }
            DbConnection::Postgresql($c) => {
                let $m = POSTGRES_MIGRATIONS;
                $work
            }
        }
        .map_err(|e| DbError::Migration(e.to_string()))
    };
}

pub fn run_pending_migrations(conn: &mut DbConnection) -> Result<usize, DbError> {
    with_migrations!(conn, |c, m| c.run_pending_migrations(m).map(|v| v.len()))
}

pub fn has_pending_migrations(conn: &mut DbConnection) -> Result<bool, DbError> {
    with_migrations!(conn, |c, m| c.has_pending_migration(m))
}

/// Reverts every applied migration, newest first. For the migration tests and for operators only.
pub fn revert_all_migrations(conn: &mut DbConnection) -> Result<usize, DbError> {
    with_migrations!(conn, |c, m| c.revert_all_migrations(m).map(|v| v.len()))
}

/// Reverts the newest applied migration.
pub fn revert_last_migration(conn: &mut DbConnection) -> Result<(), DbError> {
    with_migrations!(conn, |c, m| c.revert_last_migration(m).map(|_| ()))
}

/// Applies the oldest pending migration.
pub fn run_next_migration(conn: &mut DbConnection) -> Result<bool, DbError> {
    with_migrations!(conn, |c, m| c.pending_migrations(m).and_then(|pending| {
        match pending.first() {
            Some(next) => c.run_migration(next.as_ref()).map(|_| true),
            None => Ok(false),
        }
    }))
}

/// Whether `conn` is inside a transaction already.
fn in_transaction(conn: &mut DbConnection) -> bool {
    use diesel::connection::TransactionManager;
    matches!(
        <DbConnection as Connection>::TransactionManager::transaction_manager_status_mut(conn)
            .transaction_depth(),
        Ok(Some(_))
    )
}

/// Runs `f` in a write transaction: `BEGIN IMMEDIATE` on SQLite, so concurrent writers queue on the busy
/// timeout instead of failing when a read lock cannot be upgraded (a savepoint inside a transaction); an
/// ordinary transaction on PostgreSQL.
pub fn write_tx<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let nested = in_transaction(conn);
    match conn {
        DbConnection::Postgresql(_) => conn.transaction(f),
        DbConnection::Sqlite(_) if nested => conn.transaction(f),
        DbConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
            let result = f(conn);
            let DbConnection::Sqlite(c) = conn else {
                unreachable!("the connection does not change backend")
            };
            match result {
                Ok(value) => {
                    <AnsiTransactionManager as TransactionManager<SqliteConnection>>::commit_transaction(c)?;
                    Ok(value)
                }
                Err(e) => {
                    let _ = <AnsiTransactionManager as TransactionManager<SqliteConnection>>::rollback_transaction(c);
                    Err(e)
                }
            }
        }
    }
}

/// Readies the PostgreSQL client library; it must run before the process's first PostgreSQL connection
/// (`Db::connect` and `establish` call it). libpq encrypts through the system OpenSSL, which by default
/// frees its state from an `atexit` handler, under any thread still inside libpq at that moment (a pool
/// closing its connections as the process ends): SIGSEGV at exit. Initialising OpenSSL the way the
/// `openssl` crate does (`OPENSSL_INIT_NO_ATEXIT`) leaves that memory to the operating system.
pub fn prepare_postgres_client() {
    openssl::init();
}

/// Establishes one connection outside any pool (for tools and tests).
pub fn establish(url: &DatabaseUrl) -> Result<DbConnection, DbError> {
    let text = match url {
        DatabaseUrl::Sqlite(path) => path.to_string_lossy().into_owned(),
        DatabaseUrl::Postgres(url) => {
            prepare_postgres_client();
            url.expose().clone()
        }
    };
    let mut conn =
        DbConnection::establish(&text).map_err(|e| DbError::Unavailable(e.to_string()))?;
    if let DbConnection::Sqlite(c) = &mut conn {
        // Beside a running server's writes, wait for the lock as the pool's connections do, instead of
        // failing at once with `database is locked`.
        c.batch_execute(SQLITE_BUSY_TIMEOUT)
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
    }
    Ok(conn)
}

pub const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_secs(2);

/// How often a serving instance checkpoints SQLite's WAL (`Db::spawn_checkpoints`): the longest a commit
/// waits to be synced to disk.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);
