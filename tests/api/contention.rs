//! A write transaction that loses to a concurrent one (PostgreSQL's SQLSTATE 40001, what serializable isolation
//! and the PostgreSQL-wire distributed engines raise) is run again by the db layer, a few times with a short
//! pause, and never reaches a client as a 500. SQLite makes its writes one at a time and never raises it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::RunQueryDsl;
use shopd::error::AppError;

use crate::helpers::TestApp;

/// What PostgreSQL says when a serializable transaction cannot be committed.
const LOSE: &str =
    "DO $$ BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $$";

#[tokio::test]
async fn a_transaction_that_loses_once_is_run_again_and_one_that_always_loses_is_a_503() {
    let app = TestApp::spawn().await;
    if !app.db.is_postgres() {
        return; // One writer thread: nothing to lose to.
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let done = app
        .state
        .db
        .write(move |conn| -> Result<usize, AppError> {
            let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
            if run == 1 {
                diesel::sql_query(LOSE).execute(conn)?;
            }
            Ok(run)
        })
        .await;
    assert_eq!(done.unwrap(), 2, "run again once it had lost");

    let runs_always = Arc::new(AtomicUsize::new(0));
    let counted = runs_always.clone();
    let lost = app
        .state
        .db
        .write(move |conn| -> Result<(), AppError> {
            counted.fetch_add(1, Ordering::SeqCst);
            diesel::sql_query(LOSE).execute(conn)?;
            Ok(())
        })
        .await;
    assert!(matches!(lost, Err(AppError::Contended)), "{lost:?}");
    assert_eq!(
        runs_always.load(Ordering::SeqCst),
        5,
        "once and four times again"
    );
    let response = actix_web::ResponseError::error_response(&lost.unwrap_err());
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}
