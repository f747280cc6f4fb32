//! Recomputing blind indexes after `BLIND_INDEX_KEY` changes. Each indexed column is opened through the vault
//! and re-indexed under the new key; a row is updated only while it still carries the index of the old key,
//! so the work is resumable and a second run changes nothing.
//!
//! A feature that adds a blind-indexed column adds it to `INDEXED` with its two match arms below.

use diesel::prelude::*;

use super::{Field, Opened, Vault, VaultError};
use crate::crypto::{BlindIndexKey, IndexKind, constant_time_eq};
use crate::db::DbConnection;
use crate::db::schema::customers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexed {
    CustomerPhone,
    CustomerEmail,
}

pub const INDEXED: &[Indexed] = &[Indexed::CustomerPhone, Indexed::CustomerEmail];

/// One row of an indexed column: the row (and person) id, the sealed value and its current index.
type IndexedRow = (String, Option<Vec<u8>>, Option<Vec<u8>>);

impl Indexed {
    fn kind(self) -> IndexKind {
        match self {
            Self::CustomerPhone => IndexKind::Phone,
            Self::CustomerEmail => IndexKind::Email,
        }
    }

    fn field(self, row_id: &str) -> Field<'_> {
        let column = match self {
            Self::CustomerPhone => "phone",
            Self::CustomerEmail => "email",
        };
        Field {
            table: "customers",
            column,
            row_id,
        }
    }

    pub fn count(self, conn: &mut DbConnection) -> QueryResult<i64> {
        match self {
            Self::CustomerPhone => customers::table
                .filter(customers::phone_index.is_not_null())
                .count()
                .get_result(conn),
            Self::CustomerEmail => customers::table
                .filter(customers::email_index.is_not_null())
                .count()
                .get_result(conn),
        }
    }

    fn batch(
        self,
        conn: &mut DbConnection,
        after: &str,
        limit: i64,
    ) -> QueryResult<Vec<IndexedRow>> {
        match self {
            Self::CustomerPhone => customers::table
                .filter(customers::phone_index.is_not_null())
                .filter(customers::id.gt(after))
                .order(customers::id)
                .limit(limit)
                .select((customers::id, customers::phone, customers::phone_index))
                .load(conn),
            Self::CustomerEmail => customers::table
                .filter(customers::email_index.is_not_null())
                .filter(customers::id.gt(after))
                .order(customers::id)
                .limit(limit)
                .select((customers::id, customers::email, customers::email_index))
                .load(conn),
        }
    }

    fn replace(
        self,
        conn: &mut DbConnection,
        id: &str,
        old: &[u8],
        new: &[u8],
    ) -> QueryResult<usize> {
        match self {
            Self::CustomerPhone => diesel::update(
                customers::table
                    .find(id)
                    .filter(customers::phone_index.eq(old)),
            )
            .set(customers::phone_index.eq(new))
            .execute(conn),
            Self::CustomerEmail => diesel::update(
                customers::table
                    .find(id)
                    .filter(customers::email_index.eq(old)),
            )
            .set(customers::email_index.eq(new))
            .execute(conn),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReindexBatch {
    /// Rows read in this batch (0 when the column is done).
    pub read: usize,
    pub updated: usize,
    /// Rows whose index matches neither key: left alone and reported.
    pub unmatched: usize,
}

impl Vault {
    /// Re-indexes up to `limit` rows of `column` after `after` (an id), and returns what it did and the last
    /// id read, from which the next batch starts.
    pub fn reindex_batch(
        &self,
        conn: &mut DbConnection,
        column: Indexed,
        old_key: &BlindIndexKey,
        after: &str,
        limit: i64,
    ) -> Result<(ReindexBatch, Option<String>), VaultError> {
        let rows = column.batch(conn, after, limit)?;
        let mut done = ReindexBatch {
            read: rows.len(),
            ..ReindexBatch::default()
        };
        let last = rows.last().map(|r| r.0.clone());
        for (id, sealed, index) in rows {
            let (Some(sealed), Some(index)) = (sealed, index) else {
                continue;
            };
            let Opened::Value(value) = self.open(conn, &id, column.field(&id), &sealed)? else {
                continue;
            };
            let new = self.blind_index(column.kind(), value.expose());
            if constant_time_eq(&index, &new) {
                continue;
            }
            let old = old_key.index(column.kind(), value.expose());
            if constant_time_eq(&index, &old) {
                done.updated += column.replace(conn, &id, &old, &new)?;
            } else {
                done.unmatched += 1;
            }
        }
        Ok((done, last))
    }
}
