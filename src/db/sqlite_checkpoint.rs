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
//! harness's webhooks on SQLite (scenario (d), docs/performance.md) this raised the rate from about 5,200 to
//! about 5,950 events/s, and the p99 from 27 to 38 ms.

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Duration;

use diesel::RunQueryDsl;
use diesel::sql_types::Integer;

use super::Pool;

/// How long after a commit the WAL is checkpointed; the commits made meanwhile share that checkpoint.
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
    /// The frames in the WAL.
    #[diesel(sql_type = Integer)]
    log: i32,
    /// The frames of the WAL now in the database file.
    #[diesel(sql_type = Integer)]
    checkpointed: i32,
}

/// Waits for a commit, lets `EVERY` pass (more commits come meanwhile), checkpoints; idle, it only waits. A
/// checkpoint that could not copy every frame (a reader still used an older snapshot) is tried again `EVERY`
/// later, commit or not.
fn run(pool: &Pool, commits: &Receiver<()>) {
    let mut failing = false;
    let mut behind = false;
    loop {
        if !behind && commits.recv().is_err() {
            return;
        }
        std::thread::sleep(EVERY);
        let writer_gone = loop {
            match commits.try_recv() {
                Ok(()) => {}
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        let done = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
            diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
                .get_result::<Checkpointed>(&mut *conn)
                .map_err(|e| e.to_string())
        });
        behind = match done {
            Ok(Checkpointed {
                busy,
                log,
                checkpointed,
            }) => {
                if failing {
                    tracing::info!("SQLite checkpoints work again");
                }
                failing = false;
                if busy != 0 {
                    tracing::debug!("another SQLite checkpoint was running");
                }
                checkpointed < log
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; the writer checkpoints on its own meanwhile");
                }
                failing = true;
                false
            }
        };
        if writer_gone {
            return;
        }
    }
}
