//! SQLite's write transactions, made one after another by one thread. SQLite has one writer at a time: with
//! each write on a blocking thread of its own, waiting for the one write connection, every hand-over woke
//! the next thread first, and the load harness measured 1,707 placements a second (the floor is 2,000). This
//! thread takes the next transaction from its queue the moment one commits.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Sender};

use super::{DbConnection, Pool};

/// A transaction to make; it answers its caller itself.
pub(super) type Job = Box<dyn FnOnce(&mut DbConnection) + Send>;

/// Starts the writer thread on `pool` (of one connection); it ends when the last sender is dropped. A job it
/// cannot run (no connection) is dropped, which its caller sees as a write not made.
pub(super) fn start(pool: Pool) -> Sender<Job> {
    let (queue, jobs) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("shopd-sqlite-writer".into())
        .spawn(move || {
            while let Ok(job) = jobs.recv() {
                match pool.get() {
                    Ok(mut conn) => {
                        // A panicking job leaves its transaction open; the pool then discards the connection.
                        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn))).is_err() {
                            tracing::error!("a write panicked");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "no connection for the SQLite writer"),
                }
            }
        })
        .expect("the SQLite writer thread starts");
    queue
}
