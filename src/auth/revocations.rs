//! Which sessions have ended, as this instance knows it: the authenticated read path checks a token's `sid`
//! here instead of reading the database on every request.
//!
//! A session ended through this instance is in the set at once (the very next request is refused). A
//! background task re-reads every session ended within the lifetime of an access token every
//! `POLL_INTERVAL`, so an end on another instance is seen within that interval. When the view is older than
//! `STALE_AFTER` (the database is slow or down) the check falls back to the database: deny by default.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use diesel::prelude::*;

use crate::db::schema::sessions;
use crate::db::{Db, DbError};

pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
pub const STALE_AFTER: Duration = Duration::from_millis(900);
/// Access tokens live 5 minutes with 30 s leeway; ended sessions older than this cannot matter.
const HORIZON: Duration = Duration::from_secs(6 * 60);

#[derive(Default)]
struct View {
    ended: HashSet<String>,
    /// Ended through this instance, kept beside the polled set so a poll that began before the commit
    /// cannot drop them.
    local: HashMap<String, Instant>,
    synced_at: Option<Instant>,
}

#[derive(Clone, Default)]
pub struct Revocations {
    view: Arc<RwLock<View>>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Revocations")
    }
}

/// What the view says of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Ended,
    NotEnded,
    /// The view is stale: ask the database.
    Unsure,
}

impl Revocations {
    pub fn check(&self, session_id: &str) -> Known {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        if view.ended.contains(session_id) || view.local.contains_key(session_id) {
            return Known::Ended;
        }
        match view.synced_at {
            Some(at) if at.elapsed() < STALE_AFTER => Known::NotEnded,
            _ => Known::Unsure,
        }
    }

    /// Records sessions ended through this instance (after their transaction committed).
    pub fn ended_here<'a>(&self, session_ids: impl IntoIterator<Item = &'a String>) {
        let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for id in session_ids {
            view.local.insert(id.clone(), now);
        }
    }

    /// Re-reads the sessions ended within the horizon.
    pub async fn sync(&self, db: &Db) -> Result<(), DbError> {
        let started = Instant::now();
        let since =
            chrono::Utc::now().naive_utc() - chrono::Duration::from_std(HORIZON).expect("short");
        let ended: Vec<String> = db
            .run(move |conn| {
                sessions::table
                    .filter(sessions::ended_at.ge(since))
                    .select(sessions::id)
                    .load(conn)
                    .map_err(DbError::from)
            })
            .await?;
        let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
        view.ended = ended.into_iter().collect();
        view.local.retain(|_, at| at.elapsed() < HORIZON);
        view.synced_at = Some(started);
        Ok(())
    }

    /// Polls until the process ends.
    pub fn spawn_poller(&self, db: Db) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = this.sync(&db).await {
                    tracing::warn!(error = %e, "cannot refresh the ended-session view");
                }
            }
        });
    }
}
