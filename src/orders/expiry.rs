//! Expiry: unpaid orders past their `expires_at` become `expired` and give their stock back.
//!
//! Safe with any number of instances: each order is moved by `state::transition` in its own write transaction,
//! whose update is conditional on the order still being `pending_payment`. Two instances racing for one order
//! change it once; the other sees `invalid_transition` and skips it, as it does for an order paid just in time.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::state::{Actor, OrderStatus, transition};
use crate::db::schema::orders;
use crate::db::{DbConnection, write_tx};
use crate::error::{AppError, AppResult};

/// Orders expired per batch.
pub const BATCH: i64 = 200;

/// Expires every order due at `now`, in batches; returns how many it expired.
pub fn expire_due(conn: &mut DbConnection, now: NaiveDateTime) -> AppResult<usize> {
    let mut expired = 0;
    loop {
        let due: Vec<String> = orders::table
            .filter(orders::status.eq(OrderStatus::PendingPayment.as_str()))
            .filter(orders::expires_at.le(now))
            .select(orders::id)
            .order(orders::expires_at)
            .limit(BATCH)
            .load(conn)?;
        let mut changed_any = false;
        for id in &due {
            let moved = write_tx(conn, |conn| {
                transition(
                    conn,
                    id,
                    OrderStatus::Expired,
                    &Actor::System,
                    Some("not paid in time"),
                )
            });
            match moved {
                Ok(_) => {
                    expired += 1;
                    changed_any = true;
                }
                // Paid, cancelled or expired elsewhere in the meantime.
                Err(AppError::Problem(p)) if p.status == 409 => {}
                Err(AppError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        if (due.len() as i64) < BATCH || !changed_any {
            return Ok(expired);
        }
    }
}
