//! Cryptography for personal data, free of I/O: AES-256-GCM field sealing, the master key ring, HMAC blind
//! indexes, HMAC keys, Ed25519 access-token keys (`jwt`), app attestation tokens (`attestation`) and
//! constant-time comparison. Only this module and the vault ever hold a raw key.

pub mod attestation;
mod blind_index;
pub mod jwt;
mod keys;
mod mac;
pub mod ring_jwt;
mod sealed;
#[cfg(test)]
pub(crate) mod test_keys;
pub mod webhook;

pub use blind_index::{BlindIndexKey, IndexKind};
pub use keys::{DataKey, KeyError, KeyId, MasterKeyRing, dated_key_id};
pub use mac::MacKey;
pub use sealed::{Context, OpenError, SealedValue, open, seal};

/// Compares two secrets in constant time (lengths are compared first; a length is no secret here).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
