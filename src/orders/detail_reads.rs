//! `GET /v1/orders/{id}` on PostgreSQL: the reads that arrive while others are waiting are answered by one query.
//!
//! On PostgreSQL every read is a round trip, and each one costs a hand-off to a blocking thread, a pool
//! checkout, the client library's system calls on shopd's side and a statement on the server's. An app polls
//! its orders, so this read is the busiest. Requests put what they want on a queue; `readers` threads each
//! take everything waiting (at most `MAX_BATCH`), read those orders and their lines in one statement
//! (`read::details`: `WHERE orders.id = ANY($1)`), and answer each request with its order, or `NotFound` when
//! there is none or it is someone else's. Nothing waits for a batch to fill: a request that finds the queue
//! empty is read alone, at once, by an idle reader; batches form only while every reader is busy.
//!
//! Each step is timed into `OrderReadTimings` (the wait on the queue, the batch, the whole read), so that an
//! operator can tell a slow database from too few readers, and the load harness where a tail comes from.
//!
//! On SQLite the read runs in-process on the request's own worker (`Db::read`) and is not batched.

use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

use super::read::{self, OrderDetail};
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::telemetry::metrics::OrderReadTimings;

/// The most reads answered by one statement.
pub const MAX_BATCH: usize = 64;

/// One order read waiting for its batch (here and in `turn_reads`).
pub(super) struct Wanted {
    pub(super) order_id: String,
    pub(super) customer_id: String,
    queued_at: Instant,
    pub(super) answer: oneshot::Sender<AppResult<OrderDetail>>,
}

/// Where a read waits for its answer.
pub(super) struct Asked {
    queued_at: Instant,
    answered: oneshot::Receiver<AppResult<OrderDetail>>,
}

impl Wanted {
    /// The read of `order_id` for `customer_id`, asked now, and where its answer will come.
    pub(super) fn ask(customer_id: &str, order_id: &str) -> (Self, Asked) {
        let (answer, answered) = oneshot::channel();
        let queued_at = Instant::now();
        let wanted = Self {
            order_id: order_id.to_owned(),
            customer_id: customer_id.to_owned(),
            queued_at,
            answer,
        };
        (
            wanted,
            Asked {
                queued_at,
                answered,
            },
        )
    }
}

impl Asked {
    /// The answer, once its batch has it; the whole read is timed.
    pub(super) async fn answer(self, timings: &OrderReadTimings) -> AppResult<OrderDetail> {
        let answer = self.answered.await.map_err(|_| not_read())?;
        timings.read.observe(self.queued_at.elapsed().as_secs_f64());
        answer
    }
}

/// Times a batch as it is taken (each read's wait, the batch's size) and returns when it was taken, for the
/// batch's own time.
pub(super) fn taken(timings: &OrderReadTimings, batch: &[Wanted]) -> Instant {
    let taken = Instant::now();
    for w in batch {
        timings
            .queued
            .observe(taken.duration_since(w.queued_at).as_secs_f64());
    }
    timings.batch_size.observe(batch.len() as f64);
    taken
}

/// The queue of the reader threads. The threads end when it is dropped.
pub struct DetailReads {
    queue: Sender<Wanted>,
    timings: OrderReadTimings,
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
    /// Starts `readers` threads reading through `db`'s pool (each holds a connection only while it reads).
    pub fn start(db: Db, readers: usize, timings: OrderReadTimings) -> Self {
        let (queue, wanted) = std::sync::mpsc::channel();
        let wanted = Arc::new(Mutex::new(wanted));
        for n in 0..readers.max(1) {
            let (db, wanted, timings) = (db.clone(), Arc::clone(&wanted), timings.clone());
            std::thread::Builder::new()
                .name(format!("shopd-reads-{n}"))
                .spawn(move || reader(&wanted, &timings, |batch| answer(&db, batch)))
                .expect("a thread can be started");
        }
        Self { queue, timings }
    }

    /// The customer's order `order_id`; `NotFound` when it does not exist or is someone else's.
    pub async fn detail(&self, customer_id: &str, order_id: &str) -> AppResult<OrderDetail> {
        let (wanted, asked) = Wanted::ask(customer_id, order_id);
        self.queue.send(wanted).map_err(|_| not_read())?;
        asked.answer(&self.timings).await
    }
}

/// Takes batches off the queue until it is closed. A batch whose answering panics (a bug) is answered
/// `Unavailable` as its answers are dropped, and the thread goes on: a reader that ended would leave the
/// others fewer, and the last one to end would leave every order read refused until a restart.
fn reader(
    wanted: &Mutex<Receiver<Wanted>>,
    timings: &OrderReadTimings,
    answer: impl Fn(Vec<Wanted>),
) {
    loop {
        let batch = {
            // One reader at a time waits on the queue; the others are reading or waiting for this lock.
            let queue = wanted.lock().unwrap_or_else(PoisonError::into_inner);
            let Ok(first) = queue.recv() else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            batch
        };
        let taken = taken(timings, &batch);
        let reads = batch.len();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(batch))).is_err() {
            tracing::error!(reads, "a batch of order reads panicked; the reader goes on");
        }
        timings.batch.observe(taken.elapsed().as_secs_f64());
    }
}

fn answer(db: &Db, batch: Vec<Wanted>) {
    let ids: Vec<&str> = batch.iter().map(|w| w.order_id.as_str()).collect();
    let found = db
        .get()
        .map_err(AppError::from)
        .and_then(|mut conn| read::details(&mut conn, &ids));
    let found = match found {
        Ok(found) => found,
        Err(e) => return fail_all(&e, batch.into_iter().map(|w| w.answer)),
    };
    for w in batch {
        let answer = match found.get(&w.order_id) {
            Some((owner, detail)) if *owner == w.customer_id => Ok(detail.clone()),
            _ => Err(AppError::NotFound),
        };
        let _ = w.answer.send(answer);
    }
}

/// Answers every read of a failed batch: `Unavailable` as it was, any other failure as an opaque one (its
/// cause is logged here, once for the batch).
pub(super) fn fail_all(
    e: &AppError,
    answers: impl ExactSizeIterator<Item = oneshot::Sender<AppResult<OrderDetail>>>,
) {
    tracing::error!(error = %e, reads = answers.len(), "a batch of order reads failed");
    for answer in answers {
        let error = match e {
            AppError::Unavailable(cause) => AppError::Unavailable(cause.clone()),
            _ => AppError::Internal(anyhow::anyhow!("a batch of order reads failed")),
        };
        let _ = answer.send(Err(error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::Metrics;

    #[tokio::test]
    async fn a_reader_whose_batch_panics_answers_it_unavailable_and_reads_on() {
        let timings = Metrics::new().order_reads().clone();
        let (queue, wanted) = std::sync::mpsc::channel::<Wanted>();
        let thread_timings = timings.clone();
        let thread = std::thread::spawn(move || {
            reader(&Mutex::new(wanted), &thread_timings, |batch| {
                for w in batch {
                    assert_ne!(w.order_id, "boom", "a bug in a read");
                    let _ = w.answer.send(Err(AppError::NotFound));
                }
            })
        });
        let read = |order_id: &str| {
            let (wanted, asked) = Wanted::ask("customer", order_id);
            queue.send(wanted).unwrap();
            asked.answer(&timings)
        };
        assert!(matches!(read("boom").await, Err(AppError::Unavailable(_))));
        assert!(matches!(read("fine").await, Err(AppError::NotFound)));
        drop(queue);
        thread
            .join()
            .expect("the reader ends when the queue is closed");
    }
}
