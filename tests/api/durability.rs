//! SQLite's commits reach the database file soon after they are made, whatever the write rate.

use std::time::{Duration, Instant};

use shopd::config::DatabaseUrl;

use crate::helpers::{TestApp, new_key, order_body};

/// The WAL's last committed frame and the last frame copied into the database file (and synced), from the
/// header of SQLite's shared WAL index (`-shm`, "WAL-index Format" in SQLite's file format documentation):
/// `mxFrame` at byte 16, `nBackfill` at byte 96, in the machine's byte order.
fn wal_frames(database: &std::path::Path) -> (u32, u32) {
    let mut shm = database.as_os_str().to_owned();
    shm.push("-shm");
    let header = std::fs::read(shm).expect("the WAL index");
    let word = |at: usize| u32::from_ne_bytes(header[at..at + 4].try_into().unwrap());
    (word(16), word(96))
}

/// A commit is checkpointed (copied into the database file, both files synced) within a second, not left in
/// the WAL until 1,000 pages have been written after it (SQLite's own checkpoint): `db::CHECKPOINT_INTERVAL`.
#[tokio::test]
async fn a_commit_is_checkpointed_within_a_second_at_a_low_write_rate() {
    let app = TestApp::spawn().await;
    let DatabaseUrl::Sqlite(database) = app.db.url.clone() else {
        return; // PostgreSQL makes its own commits durable.
    };
    let (token, _) = app.direct_customer();
    let product = app.add_product("Tea", 450, 10);
    let placed = app
        .place_order(&token, Some(&new_key()), &order_body(&[(&product, 1)]))
        .await;
    assert_eq!(placed.status(), 201);
    let (committed, _) = wal_frames(&database);
    assert!(committed > 0, "the order was committed to the WAL");
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (last, backfilled) = wal_frames(&database);
        // A WAL that starts over (fewer frames than before) does so only once every frame was checkpointed.
        if backfilled >= committed || last < committed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{backfilled} of {committed} frames checkpointed after a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
