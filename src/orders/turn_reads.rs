//! `GET /v1/orders/{id}` on SQLite: the reads one worker takes up in one turn of its event loop share one
//! read transaction.
//!
//! On SQLite in WAL mode, each read transaction takes a shared lock in the WAL index (`-shm`) as it starts and
//! gives it back as it ends, each time under a mutex SQLite keeps for the file in the whole process and, most
//! times, with an `fcntl` call on that file. Two workers reading at once wait on each other there, and the
//! waiting costs a futex and a trip through the scheduler; under the load harness's order reads a second
//! worker added a quarter to each read's CPU (`docs/performance-history.md`, "The run of 2026-12-04 14:39,
//! and what it said"). So the first read of a turn is put off until the other requests the worker was woken
//! for have been handled, each read among them joins it, and all of them are answered from one transaction:
//! one lock and one release instead of one each.
//!
//! Nothing waits for a batch to fill: a read alone in its turn is made at once, as before, after a yield.
//! Every read of a batch begins after its own request arrived, so a read sees every commit that was answered
//! before its request was sent. On PostgreSQL the reads are batched across workers instead (`detail_reads`).

use std::cell::{Cell, RefCell};

use diesel::Connection;

use super::detail_reads::{self, Wanted};
use super::read::{self, OrderDetail};
use crate::db::Db;
use crate::error::AppResult;
use crate::telemetry::metrics::OrderReadTimings;

thread_local! {
    /// Set on the server's workers (`enable_on_this_thread`): elsewhere, as in a test calling the domain
    /// directly, a read is made on its own.
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    /// The reads waiting for this worker's batch; the batch takes them all.
    static WAITING: RefCell<Vec<Wanted>> = const { RefCell::new(Vec::new()) };
}

/// Lets this thread batch its order reads: called by each HTTP worker as it builds its app, on its own thread
/// and inside its `LocalSet`, where the batch runs as a local task.
pub fn enable_on_this_thread() {
    ENABLED.set(true);
}

/// The customer's order `order_id`; `NotFound` when it does not exist or is someone else's.
pub async fn detail(
    db: &Db,
    timings: &OrderReadTimings,
    customer_id: &str,
    order_id: &str,
) -> AppResult<OrderDetail> {
    if !ENABLED.get() {
        let (customer, id) = (customer_id.to_owned(), order_id.to_owned());
        return db
            .read(move |conn| read::detail(conn, &id, Some(&customer)))
            .await;
    }
    let (wanted, asked) = Wanted::ask(customer_id, order_id);
    let first = WAITING.with_borrow_mut(|waiting| {
        waiting.push(wanted);
        waiting.len() == 1
    });
    if first {
        let (db, timings) = (db.clone(), timings.clone());
        tokio::task::spawn_local(async move {
            // Behind the requests already woken: those that read an order join this batch.
            tokio::task::yield_now().await;
            let batch = WAITING.take();
            let taken = detail_reads::taken(&timings, &batch);
            answer_all(&db, batch).await;
            timings.batch.observe(taken.elapsed().as_secs_f64());
        });
    }
    asked.answer(timings).await
}

async fn answer_all(db: &Db, batch: Vec<Wanted>) {
    let (wanted, answers): (Vec<(String, String)>, Vec<_>) = batch
        .into_iter()
        .map(|w| ((w.order_id, w.customer_id), w.answer))
        .unzip();
    let found = db
        .read(move |conn| -> AppResult<Vec<AppResult<OrderDetail>>> {
            let read_each = |conn: &mut _| -> AppResult<Vec<AppResult<OrderDetail>>> {
                Ok(wanted
                    .iter()
                    .map(|(order, customer)| read::detail(conn, order, Some(customer)))
                    .collect())
            };
            if wanted.len() == 1 {
                read_each(conn)
            } else {
                conn.transaction(read_each)
            }
        })
        .await;
    match found {
        Ok(found) => {
            for (answer, detail) in answers.into_iter().zip(found) {
                let _ = answer.send(detail);
            }
        }
        Err(e) => detail_reads::fail_all(&e, answers.into_iter()),
    }
}
