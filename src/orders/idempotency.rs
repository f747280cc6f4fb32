//! Idempotency keys of order placement (DESIGN §7). A key belongs to one customer and is kept 24 hours.
//!
//! - The first request with a key claims it (`claim`) in the transaction that makes its order, committed before
//!   the payment is created, so a second request with the same key, arriving while the first runs, finds the
//!   claim: 409 `idempotency_in_progress` (arriving during that transaction, it waits the few milliseconds
//!   until the claim is committed or rolled back).
//! - The row keeps a keyed digest of the request (`IndexKind::OrderRequest`): the same key with another body is
//!   422 `idempotency_key_reused`.
//! - When the order is made and its payment created, the full response (status and body bytes, the body sealed
//!   under the customer's data key: it holds the payment's client secret) is stored, and every replay returns
//!   exactly those bytes.
//! - A claim is a lease of `LEASE`: a request that died holding it (a crash) frees the key when it runs out.
//!   Every write after the claim is conditional on the claim token, so a request whose lease was taken over
//!   cannot finish twice.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::db::DbConnection;
use crate::db::schema::{idempotency_keys, orders};
use crate::error::{AppError, AppResult, Problem};
use crate::vault::{Field, Opened, Vault};

/// How long a claim holds a key. Longer than the slowest payment call (2 attempts of 10 s).
pub const LEASE: Duration = Duration::from_secs(60);
/// How long a key is kept, then purged.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// `None` (no header) or an empty value is 400 `idempotency_key_required`; anything else that is not 1–255
    /// visible ASCII characters is 400 `invalid_idempotency_key`.
    pub fn parse(value: Option<&str>) -> Result<Self, Problem> {
        let value = value.map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Err(Problem::bad_request(
                "idempotency_key_required",
                "Send an Idempotency-Key header (1 to 255 characters, a fresh UUID per order).",
            ));
        }
        if value.len() > MAX_KEY_CHARS || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Problem::bad_request(
                "invalid_idempotency_key",
                "The Idempotency-Key must be 1 to 255 visible ASCII characters.",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub(super) fn digest(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }
}

/// A response kept for replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
    /// True when this is a replay of a response given before.
    pub replayed: bool,
}

/// A claim held on a key.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub key_id: String,
    pub token: String,
}

pub(super) enum Claim {
    /// A new key: nothing was done under it yet.
    Fresh(Held),
    /// A known key whose request did not finish (the payment provider failed, or a request died): an order
    /// may exist under it already.
    Resumed(Held),
    /// A finished key: its response.
    Replay(StoredResponse),
}

pub(super) fn in_progress() -> AppError {
    Problem::conflict(
        "idempotency_in_progress",
        "A request with this Idempotency-Key is still running; retry it shortly.",
    )
    .into()
}

fn response_field(key_id: &str) -> Field<'_> {
    Field {
        table: "idempotency_keys",
        column: "response_body",
        row_id: key_id,
    }
}

#[derive(Queryable)]
struct KeyRow {
    id: String,
    request_hash: Vec<u8>,
    claimed_until: Option<NaiveDateTime>,
    response_status: Option<i32>,
    response_body: Option<Vec<u8>>,
}

fn lease_end(now: NaiveDateTime) -> NaiveDateTime {
    now + chrono::Duration::from_std(LEASE).expect("a short lease")
}

/// Claims `key` for a request with this digest, inside the transaction that makes the order: the claim is
/// committed with the order, before the payment is created, so other requests see it while this one works.
pub(super) fn claim(
    conn: &mut DbConnection,
    vault: &Vault,
    customer_id: &str,
    key_hash: &[u8],
    request_hash: &[u8],
    now: NaiveDateTime,
) -> AppResult<Claim> {
    let held = Held {
        key_id: uuid::Uuid::now_v7().to_string(),
        token: uuid::Uuid::new_v4().to_string(),
    };
    for _ in 0..3 {
        let values = (
            idempotency_keys::id.eq(&held.key_id),
            idempotency_keys::customer_id.eq(customer_id),
            idempotency_keys::key_hash.eq(key_hash),
            idempotency_keys::request_hash.eq(request_hash),
            idempotency_keys::claim_token.eq(Some(&held.token)),
            idempotency_keys::claimed_until.eq(Some(lease_end(now))),
            idempotency_keys::created_at.eq(now),
        );
        // `ON CONFLICT DO NOTHING`, not a caught unique violation: on PostgreSQL a failed statement would
        // abort the transaction the claim is part of. A concurrent claim of the same key, not yet committed,
        // is waited for; then the key is read as it was committed.
        let inserted = match conn {
            DbConnection::Sqlite(c) => diesel::insert_into(idempotency_keys::table)
                .values(values)
                .on_conflict_do_nothing()
                .execute(c)?,
            DbConnection::Postgresql(c) => diesel::insert_into(idempotency_keys::table)
                .values(values)
                .on_conflict_do_nothing()
                .execute(c)?,
        };
        if inserted == 1 {
            return Ok(Claim::Fresh(held));
        }
        let row: Option<KeyRow> = idempotency_keys::table
            .filter(idempotency_keys::customer_id.eq(customer_id))
            .filter(idempotency_keys::key_hash.eq(key_hash))
            .select((
                idempotency_keys::id,
                idempotency_keys::request_hash,
                idempotency_keys::claimed_until,
                idempotency_keys::response_status,
                idempotency_keys::response_body,
            ))
            .first(conn)
            .optional()?;
        let Some(row) = row else {
            // Purged between the insert and the read: insert again.
            continue;
        };
        if !crate::crypto::constant_time_eq(&row.request_hash, request_hash) {
            return Err(Problem::invalid(
                "idempotency_key_reused",
                "Idempotency-Key",
                "This Idempotency-Key was used with another request; use a fresh key for a new order.",
            )
            .into());
        }
        if let (Some(status), Some(sealed)) = (row.response_status, &row.response_body) {
            let body = match vault.open(conn, customer_id, response_field(&row.id), sealed)? {
                Opened::Value(v) => v.into_inner().into_bytes(),
                Opened::Erased => return Err(AppError::NotFound),
            };
            return Ok(Claim::Replay(StoredResponse {
                status: u16::try_from(status).unwrap_or(500),
                body,
                replayed: true,
            }));
        }
        if row.claimed_until.is_some_and(|until| until > now) {
            return Err(in_progress());
        }
        // Unfinished and unclaimed (or its lease ran out): take it over, if nobody else just did.
        let taken = diesel::update(
            idempotency_keys::table
                .filter(idempotency_keys::id.eq(&row.id))
                .filter(idempotency_keys::response_status.is_null())
                .filter(
                    idempotency_keys::claimed_until
                        .is_null()
                        .or(idempotency_keys::claimed_until.le(now)),
                ),
        )
        .set((
            idempotency_keys::claim_token.eq(Some(&held.token)),
            idempotency_keys::claimed_until.eq(Some(lease_end(now))),
        ))
        .execute(conn)?;
        if taken == 1 {
            return Ok(Claim::Resumed(Held {
                key_id: row.id,
                token: held.token,
            }));
        }
    }
    Err(in_progress())
}

/// The payment an order's response names, stored on the order as the response is stored under its key.
pub(super) struct OrderPayment<'a> {
    pub order_id: &'a str,
    pub payment_id: &'a str,
}

/// Stores the response of a claimed key for replays, ends the claim, and stores the payment id on its order, in
/// the caller's transaction. Returns false when the claim was lost (its lease ran out and another request took
/// the key over); the response is then not stored, the payment id is.
pub(super) fn finish(
    conn: &mut DbConnection,
    vault: &Vault,
    customer_id: &str,
    held: &Held,
    payment: OrderPayment<'_>,
    status: u16,
    body: &[u8],
) -> AppResult<bool> {
    let text = std::str::from_utf8(body)
        .map_err(|_| AppError::Internal(anyhow::anyhow!("a response body is not UTF-8")))?;
    let sealed = vault.seal(conn, customer_id, response_field(&held.key_id), text)?;
    diesel::update(orders::table.filter(orders::id.eq(payment.order_id)))
        .set(orders::payment_id.eq(payment.payment_id))
        .execute(conn)?;
    let stored = diesel::update(
        idempotency_keys::table
            .filter(idempotency_keys::id.eq(&held.key_id))
            .filter(idempotency_keys::claim_token.eq(&held.token)),
    )
    .set((
        idempotency_keys::response_status.eq(i32::from(status)),
        idempotency_keys::response_body.eq(&sealed),
        idempotency_keys::claim_token.eq(None::<String>),
        idempotency_keys::claimed_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(stored == 1)
}

/// Ends a claim without a response, keeping the key (an order exists under it): the next request with the same
/// key and body resumes it at once.
pub(super) fn release(conn: &mut DbConnection, held: &Held) -> QueryResult<()> {
    diesel::update(
        idempotency_keys::table
            .filter(idempotency_keys::id.eq(&held.key_id))
            .filter(idempotency_keys::claim_token.eq(&held.token)),
    )
    .set((
        idempotency_keys::claim_token.eq(None::<String>),
        idempotency_keys::claimed_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(())
}

/// Deletes the keys older than `RETENTION`; returns how many.
pub fn purge(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
    let cutoff = now - chrono::Duration::from_std(RETENTION).expect("a day");
    diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(cutoff)))
        .execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(IdempotencyKey::parse(Some("a")).is_ok());
        assert!(IdempotencyKey::parse(Some(&"k".repeat(255))).is_ok());
        for (value, code) in [
            (None, "idempotency_key_required"),
            (Some(""), "idempotency_key_required"),
            (Some("   "), "idempotency_key_required"),
            (Some(&*"k".repeat(256)), "invalid_idempotency_key"),
            (Some("two words"), "invalid_idempotency_key"),
            (Some("é"), "invalid_idempotency_key"),
        ] {
            assert_eq!(IdempotencyKey::parse(value).unwrap_err().code, code);
        }
    }
}
