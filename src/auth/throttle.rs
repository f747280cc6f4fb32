//! Throttling: per client address in memory (`crate::limits`, the one per-address mechanism), and per
//! account in the database so that it holds across instances.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::login_failures;
use crate::limits::{AddressLimiter, Rate};

/// Texts (signup, resend, password reset) per client address: 300 an hour, sized for a carrier's NAT
/// address, where many phones sign up; the limit per phone (5 an hour) is what stops SMS pumping.
pub fn texts_per_address() -> AddressLimiter {
    AddressLimiter::new(Rate::parse("300/1h").ok().flatten().expect("a valid rate"))
}

/// Logins per client address: 300 a minute, sized for a carrier's NAT address or a store's staff; the
/// back-off per account after failed logins is what stops guessing.
pub fn logins_per_address() -> AddressLimiter {
    AddressLimiter::new(Rate::parse("300/1m").ok().flatten().expect("a valid rate"))
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
