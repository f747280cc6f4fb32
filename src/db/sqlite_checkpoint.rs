//! SQLite's checkpoints, made by a thread of their own beside the writer.
//!
//! In WAL mode a commit appends pages to the WAL, and a checkpoint copies them back into the database file;
//! with `synchronous = NORMAL` a checkpoint is also when both files are synced to disk (`fsync`), so a commit
//! is durable against a power loss only once a checkpoint has followed it. Left to SQLite, the connection
//! whose commit takes the WAL past `wal_autocheckpoint` pages (1,000 by default) makes the checkpoint itself,
//! inside that commit: here that is always the writer thread (`sqlite_writer`), every write of the process
//! waiting behind the copy and the two `fsync`s. And at a low write rate the checkpoint may not come for
//! hours, leaving recent commits to the operating system's write-back.
//!
//! This thread checkpoints `EVERY` after a commit instead (`PRAGMA wal_checkpoint(PASSIVE)`, which neither
//! waits for the writer nor stops it), so every commit is on disk about `EVERY` later at any rate, and the
//! writer mostly only appends. The writer keeps SQLite's own checkpoint as a safety net, at
//! `WAL_SAFETY_PAGES`: under a steady stream of writes the WAL can only start over from its beginning after a
//! checkpoint that has caught up with the last commit, which in practice is the writer's own. Under the load
//! harness's webhooks on SQLite (scenario (d), docs/performance.md) this took about 5,200 to 5,950 events/s,
//! at a p99 of 38 ms instead of 27.

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use diesel::RunQueryDsl;
use diesel::sql_types::Integer;

use super::Pool;

/// How often the WAL is checkpointed.
pub(super) const EVERY: Duration = Duration::from_millis(100);

/// The WAL size, in pages, past which the committing connection checkpoints by itself (SQLite's
/// `wal_autocheckpoint`, 1,000 by default): only when this thread cannot keep up.
pub(super) const WAL_SAFETY_PAGES: u32 = 4_000;

/// Starts the checkpoint thread of `pool`. Send it `()` after each commit; it ends when the returned sender is
/// dropped.
pub(super) fn start(pool: Pool) -> Sender<()> {
    let (committed, commits) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("shopd-sqlite-checkpoint".into())
        .spawn(move || run(&pool, &commits))
        .expect("the SQLite checkpoint thread starts");
    committed
}

#[derive(diesel::QueryableByName)]
struct Checkpointed {
    /// 1 when another checkpoint was running (of another process: a `shopd` command).
    #[diesel(sql_type = Integer)]
    busy: i32,
}

/// Waits for a commit, lets `EVERY` pass (more commits come meanwhile), checkpoints; idle, it only waits.
fn run(pool: &Pool, commits: &Receiver<()>) {
    let mut failing = false;
    while commits.recv().is_ok() {
        std::thread::sleep(EVERY);
        while commits.try_recv().is_ok() {}
        let done = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
            diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
                .get_result::<Checkpointed>(&mut *conn)
                .map_err(|e| e.to_string())
        });
        match done {
            Ok(Checkpointed { busy }) => {
                if failing {
                    tracing::info!("SQLite checkpoints work again");
                }
                failing = false;
                if busy != 0 {
                    tracing::debug!("another SQLite checkpoint was running");
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "SQLite checkpoint failed; the writer checkpoints on its own meanwhile");
            }
            Err(_) => {}
        }
    }
}
