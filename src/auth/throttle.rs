//! Throttling: per client address in memory (fixed windows), and per account in the database so that it
//! holds across instances.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::login_failures;

/// At most `max` events per `window` per client address.
#[derive(Clone)]
pub struct IpLimiter {
    max: u32,
    window: Duration,
    seen: Arc<Mutex<HashMap<IpAddr, (Instant, u32)>>>,
}

impl IpLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            seen: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Counts one event; `Err(retry_after)` once the address is over its limit.
    pub fn hit(&self, ip: IpAddr) -> Result<(), Duration> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            let window = self.window;
            seen.retain(|_, (start, _)| start.elapsed() < window);
        }
        let entry = seen.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        if entry.1 >= self.max {
            return Err(self
                .window
                .saturating_sub(entry.0.elapsed())
                .max(Duration::from_secs(1)));
        }
        entry.1 += 1;
        Ok(())
    }
}

impl std::fmt::Debug for IpLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IpLimiter({} per {:?})", self.max, self.window)
    }
}

pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const FREE_FAILURES: i64 = 5;
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

/// After 5 failures within 15 minutes each further attempt waits 1 s, 2 s, 4 s, … (at most 15 minutes) after
/// the last failure. `Some(wait)` while the account must wait.
pub fn login_delay(
    conn: &mut DbConnection,
    account_key: &[u8],
    now: NaiveDateTime,
) -> QueryResult<Option<Duration>> {
    let since = now - chrono::Duration::from_std(LOGIN_WINDOW).expect("short");
    let (count, last): (i64, Option<NaiveDateTime>) = login_failures::table
        .filter(login_failures::account_key.eq(account_key))
        .filter(login_failures::failed_at.gt(since))
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::max(login_failures::failed_at),
        ))
        .first(conn)?;
    let (Some(last), true) = (last, count >= FREE_FAILURES) else {
        return Ok(None);
    };
    let exponent = (count - FREE_FAILURES).min(20) as u32;
    let delay = Duration::from_secs(1u64 << exponent).min(MAX_DELAY);
    let until = last + chrono::Duration::from_std(delay).expect("short");
    Ok((until > now).then(|| (until - now).to_std().unwrap_or(Duration::from_secs(1))))
}

pub fn record_login_failure(
    conn: &mut DbConnection,
    account_key: &[u8],
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(login_failures::table)
        .values((
            login_failures::id.eq(uuid::Uuid::now_v7().to_string()),
            login_failures::account_key.eq(account_key),
            login_failures::failed_at.eq(now),
        ))
        .execute(conn)
        .map(|_| ())
}

pub fn clear_login_failures(conn: &mut DbConnection, account_key: &[u8]) -> QueryResult<()> {
    diesel::delete(login_failures::table.filter(login_failures::account_key.eq(account_key)))
        .execute(conn)
        .map(|_| ())
}
