//! The devices a customer has signed in on with a second factor (issue 30). A sign-in that proved one — the
//! texted code of signup or of a sign-in, a passkey — gives the app a device token (`dv_` + 256 random bits,
//! stored as its SHA-256). A later password sign-in that sends it back needs no code under the default
//! `CUSTOMER_SECOND_FACTOR=new_device`. A token unused for 90 days is forgotten.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::sessions::now;
use crate::db::DbConnection;
use crate::db::schema::known_devices;
use crate::domain::Sensitive;

pub const FORGET_AFTER: chrono::Duration = chrono::Duration::days(90);

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A new device token of `customer`.
pub fn remember(conn: &mut DbConnection, customer: &str) -> QueryResult<Sensitive<String>> {
    let token = format!(
        "dv_{}",
        URL_SAFE_NO_PAD.encode(crate::config::secrets::random_bytes::<32>())
    );
    let now = now();
    diesel::insert_into(known_devices::table)
        .values((
            known_devices::token_hash.eq(hash(&token)),
            known_devices::customer_id.eq(customer),
            known_devices::created_at.eq(now),
            known_devices::last_used_at.eq(now),
        ))
        .execute(conn)?;
    Ok(Sensitive::new(token))
}

/// Whether `token` is a device token of `customer` still remembered (and, if so, marks it used).
pub fn is_known(conn: &mut DbConnection, customer: &str, token: &str) -> QueryResult<bool> {
    let now = now();
    let touched = diesel::update(
        known_devices::table
            .find(hash(token))
            .filter(known_devices::customer_id.eq(customer))
            .filter(known_devices::last_used_at.gt(now - FORGET_AFTER)),
    )
    .set(known_devices::last_used_at.eq(now))
    .execute(conn)?;
    Ok(touched == 1)
}

/// Forgets every device of `customer` (erasure; a password reset, since whoever reset it may not be whoever
/// had those devices).
pub fn forget_all(conn: &mut DbConnection, customer: &str) -> QueryResult<usize> {
    diesel::delete(known_devices::table.filter(known_devices::customer_id.eq(customer)))
        .execute(conn)
}
