//! SQLite's writes, made by one thread and committed in groups.
//!
//! SQLite has one writer at a time, and its busy handler makes a writer that finds the lock taken sleep (1, 2,
//! 5, 10 … up to 100 ms a try), so under load writers waited far longer than their writes took. Here every
//! write of this process is a job on one queue. The writer thread takes the jobs waiting (up to
//! `MAX_GROUP`), runs them in one `BEGIN IMMEDIATE` transaction, each inside its own savepoint (a job that
//! fails is rolled back alone; a job alone in its group needs none, and a lone job of autocommit
//! statements runs without a transaction), commits once, and only then answers each job: an answer never reports a
//! write that is not committed, and a failed commit fails every job of its group (503, retry). One commit
//! for many writes shares the WAL frames and the lock round of the commit among them.
//!
//! A job must not wait for another write of this process (jobs are plain synchronous closures, so they
//! cannot). Writers outside this queue (another process, `shopd` commands) meet the busy timeout as before.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, Sender};

use diesel::Connection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};

use super::{DbConnection, Pool, sqlite_checkpoint};

/// Given the failure of the group's commit (if any), delivers the job's answer.
pub(super) type Finish = Box<dyn FnOnce(Option<String>) + Send>;
/// Runs in the group's transaction; says whether it succeeded (else its savepoint is rolled back).
pub(super) type Work = Box<dyn FnOnce(&mut DbConnection) -> (bool, Finish) + Send>;

pub(super) struct Job {
    pub work: Work,
    /// Must be atomic (`Db::write`). A job that need not be (`Db::run_writing`, made for autocommit
    /// statements) runs without a transaction when it is alone, as it would on PostgreSQL.
    pub atomic: bool,
}

/// The most jobs one transaction takes.
const MAX_GROUP: usize = 64;

/// Starts the writer thread of `pool`; it ends when the returned queue's last sender is dropped.
pub(super) fn start(pool: Pool) -> Sender<Job> {
    let (queue, jobs) = mpsc::channel::<Job>();
    let checkpoints = sqlite_checkpoint::start(pool.clone());
    std::thread::Builder::new()
        .name("shopd-sqlite-writer".into())
        .spawn(move || run(&pool, &jobs, &checkpoints))
        .expect("the SQLite writer thread starts");
    queue
}

fn run(pool: &Pool, jobs: &Receiver<Job>, checkpoints: &Sender<()>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(pool, group);
        // The checkpoint thread may be gone only when the process is stopping; the writer's own
        // checkpoint (`WAL_SAFETY_PAGES`) still bounds the WAL then.
        let _ = checkpoints.send(());
    }
}

/// Jobs dropped without running are answered by their dropped channel: "the write was not made" (503).
fn commit_group(pool: &Pool, group: Vec<Job>) {
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "no connection for the SQLite writer");
            return;
        }
    };
    let alone = group.len() == 1;
    if alone && !group[0].atomic {
        let job = group.into_iter().next().expect("one job");
        if let Ok((_, finish)) =
            std::panic::catch_unwind(AssertUnwindSafe(|| (job.work)(&mut conn)))
        {
            finish(None);
        } else {
            tracing::error!("a write panicked");
        }
        return;
    }
    if let Err(e) = begin(&mut conn) {
        tracing::warn!(error = %e, "the SQLite writer cannot begin a transaction");
        return;
    }
    let mut finishes = Vec::with_capacity(group.len());
    for job in group {
        // A job alone needs no savepoint: when it fails, the whole transaction is rolled back.
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if alone {
                let (ok, finish) = (job.work)(&mut conn);
                (Some(ok), finish)
            } else {
                (None, in_savepoint(&mut conn, job))
            }
        }));
        match ran {
            Ok((Some(false), finish)) => {
                let _ = rollback(&mut conn);
                finish(None);
                return;
            }
            Ok((_, finish)) => finishes.push(finish),
            Err(_) => {
                // A bug in a job: nothing of this group is committed. The connection, left inside a
                // transaction, is discarded by the pool (diesel reports it broken).
                tracing::error!("a write panicked; its group of writes is rolled back");
                let _ = rollback(&mut conn);
                for finish in finishes {
                    finish(Some("a write of its group failed".into()));
                }
                return;
            }
        }
    }
    let failed = commit(&mut conn).err().map(|e| {
        tracing::warn!(error = %e, "a group of SQLite writes could not be committed");
        let _ = rollback(&mut conn);
        format!("the write could not be committed: {e}")
    });
    for finish in finishes {
        finish(failed.clone());
    }
}

enum SavepointError {
    JobFailed,
    Diesel(diesel::result::Error),
}

impl From<diesel::result::Error> for SavepointError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Diesel(e)
    }
}

fn in_savepoint(conn: &mut DbConnection, job: Job) -> Finish {
    let mut finish: Option<Finish> = None;
    let result = conn.transaction::<(), SavepointError, _>(|conn| {
        let (ok, f) = (job.work)(conn);
        finish = Some(f);
        if ok {
            Ok(())
        } else {
            Err(SavepointError::JobFailed)
        }
    });
    // No finish: the savepoint could not be made, and the job was dropped without running.
    let finish = finish.unwrap_or_else(|| Box::new(|_| {}));
    match result {
        Ok(()) | Err(SavepointError::JobFailed) => finish,
        Err(SavepointError::Diesel(e)) => {
            let why = format!("the write's savepoint failed: {e}");
            Box::new(move |_| finish(Some(why)))
        }
    }
}

fn sqlite(conn: &mut DbConnection) -> &mut diesel::SqliteConnection {
    match conn {
        DbConnection::Sqlite(c) => c,
        DbConnection::Postgresql(_) => unreachable!("the SQLite writer runs on SQLite only"),
    }
}

fn begin(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    AnsiTransactionManager::begin_transaction_sql(sqlite(conn), "BEGIN IMMEDIATE")
}

fn commit(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    <AnsiTransactionManager as TransactionManager<diesel::SqliteConnection>>::commit_transaction(
        sqlite(conn),
    )
}

fn rollback(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    <AnsiTransactionManager as TransactionManager<diesel::SqliteConnection>>::rollback_transaction(
        sqlite(conn),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    use crate::config::{DatabaseConfig, DatabaseUrl};
    use crate::db::{Db, DbError};

    #[derive(Debug)]
    enum Failed {
        Db,
        OnPurpose,
    }

    impl From<DbError> for Failed {
        fn from(_: DbError) -> Self {
            Self::Db
        }
    }

    impl From<diesel::result::Error> for Failed {
        fn from(_: diesel::result::Error) -> Self {
            Self::Db
        }
    }

    fn count(db: &Db) -> i64 {
        diesel::dsl::sql::<diesel::sql_types::BigInt>("SELECT count(*) FROM t")
            .get_result(&mut *db.get().unwrap())
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writes_in_one_group_succeed_or_fail_alone_and_answer_after_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&DatabaseConfig {
            url: DatabaseUrl::Sqlite(dir.path().join("w.db")),
            pool_size: 4,
            pool_timeout: Duration::from_secs(5),
        })
        .unwrap();
        db.get()
            .unwrap()
            .batch_execute("CREATE TABLE t (n INTEGER NOT NULL UNIQUE)")
            .unwrap();
        // 200 writes at once: every third inserts its row and then fails, so its row must not stay; the
        // others insert theirs. Many of them share a group (the writer takes what is waiting).
        let writes = (0..200).map(|n: i64| {
            let db = db.clone();
            tokio::spawn(async move {
                let answer = db
                    .write(move |conn| -> Result<i64, Failed> {
                        diesel::sql_query(format!("INSERT INTO t (n) VALUES ({n})"))
                            .execute(conn)?;
                        if n % 3 == 0 {
                            return Err(Failed::OnPurpose);
                        }
                        Ok(n)
                    })
                    .await;
                // once answered, a success is visible to any other connection
                if let Ok(n) = answer {
                    let seen: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
                        "SELECT count(*) FROM t WHERE n = {n}"
                    ))
                    .get_result(&mut *db.get().unwrap())
                    .unwrap();
                    assert_eq!(seen, 1, "row {n} answered but not committed");
                }
                (n, answer)
            })
        });
        let answers = futures_util::future::join_all(writes).await;
        for answer in answers {
            let (n, answer) = answer.unwrap();
            match answer {
                Ok(m) => assert_eq!(m, n),
                Err(Failed::OnPurpose) => assert_eq!(n % 3, 0),
                Err(Failed::Db) => panic!("write {n} failed in the database"),
            }
        }
        assert_eq!(count(&db), (0..200).filter(|n| n % 3 != 0).count() as i64);
        // a write that breaks a constraint fails alone too
        let duplicate = db
            .write(|conn| -> Result<(), Failed> {
                diesel::sql_query("INSERT INTO t (n) VALUES (1)").execute(conn)?;
                Ok(())
            })
            .await;
        assert!(matches!(duplicate, Err(Failed::Db)));
        assert_eq!(count(&db), (0..200).filter(|n| n % 3 != 0).count() as i64);
    }
}
