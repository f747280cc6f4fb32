//! Housekeeping of the identity tables: finished or abandoned verifications, old text and login-failure
//! records. Every step is an idempotent delete, so several instances may run it at once.

use std::time::Duration;

use diesel::prelude::*;

use super::sessions::now;
use crate::db::schema::{
    console_sessions, customers, data_keys, known_devices, login_failures, passkey_ceremonies,
    sign_in_nonces, sms_sends, staff_invitations, verifications,
};
use crate::db::{Db, DbConnection, DbError};

pub const INTERVAL: Duration = Duration::from_secs(600);
/// Verifications are kept a day past their expiry, then go.
const KEEP_VERIFICATIONS: chrono::Duration = chrono::Duration::days(1);

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub verifications: usize,
    pub orphan_data_keys: usize,
    pub sms_sends: usize,
    pub login_failures: usize,
    /// Console sign-ins past their end, and staff invitations used or expired a day ago.
    pub console: usize,
    /// Platform sign-in nonces and passkey ceremonies past their end, devices unused for 90 days.
    pub sign_in_nonces: usize,
}

pub fn purge(conn: &mut DbConnection) -> QueryResult<Purged> {
    let now = now();
    let cutoff = now - KEEP_VERIFICATIONS;
    let old: Vec<(String, String)> = verifications::table
        .filter(verifications::expires_at.lt(cutoff))
        .select((verifications::id, verifications::person_id))
        .load(conn)?;
    let mut purged = Purged::default();
    for (id, person_id) in old {
        purged.verifications += diesel::delete(verifications::table.find(&id)).execute(conn)?;
        // A signup never verified leaves a data key with no customer and no other verification: destroy it.
        let customer: i64 = customers::table.find(&person_id).count().get_result(conn)?;
        let pending: i64 = verifications::table
            .filter(verifications::person_id.eq(&person_id))
            .count()
            .get_result(conn)?;
        if customer == 0 && pending == 0 {
            purged.orphan_data_keys +=
                diesel::delete(data_keys::table.find(&person_id)).execute(conn)?;
        }
    }
    purged.sms_sends = diesel::delete(
        sms_sends::table.filter(sms_sends::sent_at.lt(now - chrono::Duration::hours(1))),
    )
    .execute(conn)?;
    purged.login_failures = diesel::delete(
        login_failures::table
            .filter(login_failures::failed_at.lt(now - chrono::Duration::minutes(15))),
    )
    .execute(conn)?;
    purged.console =
        diesel::delete(console_sessions::table.filter(console_sessions::expires_at.lt(now)))
            .execute(conn)?
            + diesel::delete(
                staff_invitations::table.filter(
                    staff_invitations::expires_at
                        .lt(cutoff)
                        .or(staff_invitations::used_at.lt(cutoff)),
                ),
            )
            .execute(conn)?;
    purged.sign_in_nonces =
        diesel::delete(sign_in_nonces::table.filter(sign_in_nonces::expires_at.lt(now)))
            .execute(conn)?
            + diesel::delete(
                passkey_ceremonies::table.filter(passkey_ceremonies::expires_at.lt(now)),
            )
            .execute(conn)?
            + diesel::delete(
                known_devices::table
                    .filter(known_devices::last_used_at.lt(now - super::devices::FORGET_AFTER)),
            )
            .execute(conn)?;
    Ok(purged)
}

pub fn spawn(db: Db) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            tick.tick().await;
            match db.write(|conn| purge(conn).map_err(DbError::from)).await {
                Ok(purged) if purged != Purged::default() => {
                    tracing::info!(?purged, "identity records purged")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "identity purge failed"),
            }
        }
    });
}
