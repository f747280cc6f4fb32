//! The vault: each person's data key, stored only wrapped by the active master key, and the one API through
//! which the rest of the code seals and opens personal values. Outside `crypto` and this module no code holds
//! a raw key.
//!
//! Every function takes the caller's connection, so that sealing a value, creating a data key or shredding
//! one happens in the caller's transaction.

pub mod reindex;

use std::sync::Arc;

use diesel::prelude::*;

use crate::config::Keys;
use crate::crypto::{
    self, BlindIndexKey, Context, DataKey, IndexKind, KeyId, MasterKeyRing, OpenError,
};
use crate::db::schema::data_keys;
use crate::db::{DbConnection, DbError};
use crate::domain::Sensitive;

/// The id every data key is sealed under; a person has one data key, so its version is enough.
const DATA_KEY_ID: &str = "d1";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// Sealing for a person without a data key: never created, or erased.
    #[error("person has no data key (erased or never created)")]
    NoDataKey,
    #[error("the data key of a person is wrapped by master key `{0}`, which is not in PII_KEYS")]
    UnknownMasterKey(String),
    #[error("a stored value does not open: {0}")]
    Open(#[from] OpenError),
}

impl From<diesel::result::Error> for VaultError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

impl From<VaultError> for crate::error::AppError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Db(db) => db.into(),
            other => Self::Internal(other.into()),
        }
    }
}

/// A personal value as read back: the value, or erased because its person's data key was destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Value(Sensitive<String>),
    Erased,
}

impl Opened {
    pub fn value(&self) -> Option<&str> {
        match self {
            Self::Value(v) => Some(v.expose()),
            Self::Erased => None,
        }
    }
}

/// Where a personal value lives: the associated data that binds it to its place.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row_id: &'a str,
}

impl<'a> From<Field<'a>> for Context<'a> {
    fn from(f: Field<'a>) -> Self {
        Context {
            table: f.table,
            column: f.column,
            row_id: f.row_id,
        }
    }
}

#[derive(Clone)]
pub struct Vault {
    ring: Arc<MasterKeyRing>,
    blind: Arc<BlindIndexKey>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

fn wrap_context(person_id: &str) -> Context<'_> {
    Context {
        table: "data_keys",
        column: "wrapped",
        row_id: person_id,
    }
}

impl Vault {
    pub fn new(keys: &Keys) -> Self {
        Self {
            ring: keys.pii.clone(),
            blind: keys.blind_index.clone(),
        }
    }

    /// Makes the data key of a new person, wrapped by the active master key.
    pub fn create_data_key(
        &self,
        conn: &mut DbConnection,
        person_id: &str,
    ) -> Result<(), VaultError> {
        let (_, mut raw) = DataKey::generate(data_key_id());
        let master = self.ring.active();
        let wrapped = crypto::seal(master, &wrap_context(person_id), &raw);
        zeroize::Zeroize::zeroize(&mut raw);
        diesel::insert_into(data_keys::table)
            .values((
                data_keys::person_id.eq(person_id),
                data_keys::master_key_id.eq(master.id().as_str()),
                data_keys::wrapped.eq(&wrapped),
                data_keys::created_at.eq(now()),
            ))
            .execute(conn)?;
        Ok(())
    }

    /// The unwrapped data key of a person, read from the database each time (so an erasure on any instance
    /// holds at once); `None` once erased.
    fn data_key(
        &self,
        conn: &mut DbConnection,
        person_id: &str,
    ) -> Result<Option<DataKey>, VaultError> {
        let row: Option<(String, Vec<u8>)> = data_keys::table
            .find(person_id)
            .select((data_keys::master_key_id, data_keys::wrapped))
            .first(conn)
            .optional()?;
        let Some((master_id, wrapped)) = row else {
            return Ok(None);
        };
        Ok(Some(self.unwrap_key(person_id, &master_id, &wrapped)?))
    }

    fn unwrap_key(
        &self,
        person_id: &str,
        master_id: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, VaultError> {
        let master = self
            .ring
            .get(master_id)
            .ok_or_else(|| VaultError::UnknownMasterKey(master_id.to_owned()))?;
        let mut raw = crypto::open(master, &wrap_context(person_id), wrapped)?;
        let key = DataKey::from_raw(data_key_id(), &raw).ok_or(OpenError::Malformed);
        zeroize::Zeroize::zeroize(&mut raw);
        Ok(key?)
    }

    pub fn seal(
        &self,
        conn: &mut DbConnection,
        person_id: &str,
        field: Field<'_>,
        value: &str,
    ) -> Result<Vec<u8>, VaultError> {
        let key = self
            .data_key(conn, person_id)?
            .ok_or(VaultError::NoDataKey)?;
        Ok(crypto::seal(&key, &field.into(), value.as_bytes()))
    }

    /// Opens a stored value; a person whose data key was destroyed reads as `Opened::Erased`.
    pub fn open(
        &self,
        conn: &mut DbConnection,
        person_id: &str,
        field: Field<'_>,
        stored: &[u8],
    ) -> Result<Opened, VaultError> {
        let Some(key) = self.data_key(conn, person_id)? else {
            return Ok(Opened::Erased);
        };
        let bytes = crypto::open(&key, &field.into(), stored)?;
        let text = String::from_utf8(bytes).map_err(|_| OpenError::Malformed)?;
        Ok(Opened::Value(Sensitive::new(text)))
    }

    /// Crypto-shredding: destroys the person's data key, so every value sealed under it is unreadable for
    /// good. Returns whether there was a key to destroy.
    pub fn shred(&self, conn: &mut DbConnection, person_id: &str) -> Result<bool, VaultError> {
        let deleted = diesel::delete(data_keys::table.find(person_id)).execute(conn)?;
        Ok(deleted > 0)
    }

    pub fn blind_index(&self, kind: IndexKind, value: &str) -> Vec<u8> {
        self.blind.index(kind, value).to_vec()
    }

    /// How many data keys are wrapped by a master key other than the active one.
    pub fn count_to_rewrap(&self, conn: &mut DbConnection) -> Result<i64, VaultError> {
        Ok(data_keys::table
            .filter(data_keys::master_key_id.ne(self.ring.active().id().as_str()))
            .count()
            .get_result(conn)?)
    }

    /// Rewraps up to `batch` data keys still under an older master key with the active one and returns how
    /// many it changed. Each update is conditional on the old key id, so running it again, or twice at once,
    /// changes nothing twice; 0 means done.
    pub fn rewrap_batch(&self, conn: &mut DbConnection, batch: i64) -> Result<usize, VaultError> {
        let active = self.ring.active();
        let rows: Vec<(String, String, Vec<u8>)> = data_keys::table
            .filter(data_keys::master_key_id.ne(active.id().as_str()))
            .select((
                data_keys::person_id,
                data_keys::master_key_id,
                data_keys::wrapped,
            ))
            .order(data_keys::person_id)
            .limit(batch)
            .load(conn)?;
        let mut changed = 0;
        for (person_id, old_id, wrapped) in rows {
            let mut raw = {
                let master = self
                    .ring
                    .get(&old_id)
                    .ok_or_else(|| VaultError::UnknownMasterKey(old_id.clone()))?;
                crypto::open(master, &wrap_context(&person_id), &wrapped)?
            };
            let rewrapped = crypto::seal(active, &wrap_context(&person_id), &raw);
            zeroize::Zeroize::zeroize(&mut raw);
            changed += diesel::update(
                data_keys::table
                    .filter(data_keys::person_id.eq(&person_id))
                    .filter(data_keys::master_key_id.eq(&old_id)),
            )
            .set((
                data_keys::master_key_id.eq(active.id().as_str()),
                data_keys::wrapped.eq(&rewrapped),
                data_keys::rewrapped_at.eq(Some(now())),
            ))
            .execute(conn)?;
        }
        Ok(changed)
    }
}

fn data_key_id() -> KeyId {
    KeyId::parse(DATA_KEY_ID).expect("a valid constant key id")
}

fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}
