//! `GET /v1/orders/{id}`, the busiest read (an app polls its orders), in batches: reader threads answer the
//! reads waiting together, with one statement. Alone, each read was a hand-off to a blocking thread and a
//! statement of its own, and the load harness measured 9.9 % of the framework ceiling on PostgreSQL (the
//! floor is 12 %) and 22–28 % on SQLite (the floor 25 %); batched, see docs/performance.md.
//!
//! Each reader (one a core, at least two) keeps a connection of its own, takes every read waiting (at most
//! `MAX_BATCH`), reads those orders with their lines (`read::details`) and answers each request with its
//! order, or `NotFound` when there is none or it is someone else's. Nothing waits for a batch to fill: a read
//! that finds a reader idle is read at once, alone. On PostgreSQL the readers' connections plan the batch's
//! statement at each execution (`plan_cache_mode = force_custom_plan`): a plan kept from when the shop had few
//! orders would scan every order at any size until the next ANALYZE.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use diesel::connection::SimpleConnection;
use tokio::sync::oneshot;

use super::read::{self, OrderDetail};
use crate::db::{Db, DbConnection, DbError};
use crate::error::{AppError, AppResult};

/// The most reads answered by one statement.
pub const MAX_BATCH: usize = 64;

struct Wanted {
    order_id: String,
    customer_id: String,
    answer: oneshot::Sender<AppResult<OrderDetail>>,
}

/// The queue of the reader threads; they end when it is dropped.
pub struct DetailReads {
    queue: Sender<Wanted>,
}

impl std::fmt::Debug for DetailReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetailReads").finish_non_exhaustive()
    }
}

fn not_read() -> AppError {
    AppError::Unavailable("the order read was not made".into())
}

impl DetailReads {
    pub fn start(db: &Db) -> Self {
        let readers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
        let (queue, wanted) = std::sync::mpsc::channel();
        let wanted = Arc::new(Mutex::new(wanted));
        for n in 0..readers {
            let (db, wanted) = (db.clone(), Arc::clone(&wanted));
            std::thread::Builder::new()
                .name(format!("shopd-reads-{n}"))
                .spawn(move || {
                    let mut conn = None;
                    reader(&wanted, |batch| answer(&db, &mut conn, batch));
                })
                .expect("a thread can be started");
        }
        Self { queue }
    }

    /// The customer's order `order_id`; `NotFound` when it does not exist or is someone else's.
    pub async fn detail(&self, customer_id: &str, order_id: &str) -> AppResult<OrderDetail> {
        let (answer, answered) = oneshot::channel();
        let wanted = Wanted {
            order_id: order_id.to_owned(),
            customer_id: customer_id.to_owned(),
            answer,
        };
        self.queue.send(wanted).map_err(|_| not_read())?;
        answered.await.map_err(|_| not_read())?
    }
}

/// Takes batches off the queue until it is closed. A batch whose answering panics (a bug) is answered
/// `Unavailable` as its answers are dropped, and the reader goes on.
fn reader(wanted: &Mutex<Receiver<Wanted>>, mut answer: impl FnMut(Vec<Wanted>)) {
    loop {
        let batch = {
            // One reader at a time waits on the queue; the others are reading or waiting for this lock.
            let queue = wanted.lock().unwrap_or_else(PoisonError::into_inner);
            let Ok(first) = queue.recv() else {
                return;
            };
            let mut batch = vec![first];
            batch.extend(queue.try_iter().take(MAX_BATCH - 1));
            batch
        };
        let reads = batch.len();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(batch))).is_err() {
            tracing::error!(reads, "a batch of order reads panicked; the reader goes on");
        }
    }
}

/// The reader's own connection, made when it has none (at the first batch, or after a failed one).
fn connection<'c>(
    db: &Db,
    conn: &'c mut Option<DbConnection>,
) -> Result<&'c mut DbConnection, DbError> {
    if conn.is_none() {
        let mut made = db.dedicated()?;
        if let DbConnection::Postgresql(_) = made {
            made.batch_execute("SET plan_cache_mode = force_custom_plan")?;
        }
        *conn = Some(made);
    }
    Ok(conn.as_mut().expect("made above"))
}

fn answer(db: &Db, conn: &mut Option<DbConnection>, batch: Vec<Wanted>) {
    let ids: Vec<&str> = batch.iter().map(|w| w.order_id.as_str()).collect();
    let found = connection(db, conn)
        .map_err(AppError::from)
        .and_then(|c| read::details(c, &ids));
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            // The connection may be what failed: the next batch makes a new one.
            *conn = None;
            tracing::error!(error = %e, reads = batch.len(), "a batch of order reads failed");
            for w in batch {
                let error = match &e {
                    AppError::Unavailable(cause) => AppError::Unavailable(cause.clone()),
                    _ => AppError::Internal(anyhow::anyhow!("a batch of order reads failed")),
                };
                let _ = w.answer.send(Err(error));
            }
            return;
        }
    };
    for w in batch {
        let answer = match found.get(&w.order_id) {
            Some((owner, detail)) if *owner == w.customer_id => Ok(detail.clone()),
            _ => Err(AppError::NotFound),
        };
        let _ = w.answer.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reader_whose_batch_panics_answers_it_unavailable_and_reads_on() {
        let (queue, wanted) = std::sync::mpsc::channel::<Wanted>();
        let thread = std::thread::spawn(move || {
            reader(&Mutex::new(wanted), |batch| {
                for w in batch {
                    assert_ne!(w.order_id, "boom", "a bug in a read");
                    let _ = w.answer.send(Err(AppError::NotFound));
                }
            })
        });
        let reads = DetailReads { queue };
        assert!(matches!(
            reads.detail("customer", "boom").await,
            Err(AppError::Unavailable(_))
        ));
        assert!(matches!(
            reads.detail("customer", "fine").await,
            Err(AppError::NotFound)
        ));
        drop(reads);
        thread
            .join()
            .expect("the reader ends when the queue is closed");
    }
}
