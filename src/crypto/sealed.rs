//! The stored form of a sealed value: version ‖ key id length ‖ key id ‖ 96-bit nonce ‖ ciphertext and tag.
//! The associated data binds it to its table, column and row and to the key id, so a value copied
//! elsewhere does not open.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use super::keys::{CipherKey, KeyId};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Where a value lives: its table, column and row id.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row_id: &'a str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the stored value is malformed")]
    Malformed,
    #[error("the stored value has the unknown format version {0}")]
    UnknownVersion(u8),
    #[error("the stored value was sealed under key `{0}`, which is not at hand")]
    UnknownKey(String),
    #[error("the stored value does not open: tampered, moved or sealed under another key")]
    Refused,
}

/// A parsed stored value, borrowing the bytes it came from.
#[derive(Debug)]
pub struct SealedValue<'a> {
    key_id: &'a str,
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

impl<'a> SealedValue<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, OpenError> {
        let (&version, rest) = bytes.split_first().ok_or(OpenError::Malformed)?;
        if version != VERSION {
            return Err(OpenError::UnknownVersion(version));
        }
        let (&kid_len, rest) = rest.split_first().ok_or(OpenError::Malformed)?;
        let kid_len = usize::from(kid_len);
        if kid_len == 0 || rest.len() < kid_len + NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let (kid, rest) = rest.split_at(kid_len);
        let key_id = std::str::from_utf8(kid).map_err(|_| OpenError::Malformed)?;
        KeyId::parse(key_id).map_err(|_| OpenError::Malformed)?;
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        Ok(Self {
            key_id,
            nonce,
            ciphertext,
        })
    }

    pub fn key_id(&self) -> &'a str {
        self.key_id
    }
}

fn associated_data(ctx: &Context<'_>, key_id: &str) -> Vec<u8> {
    let parts = [ctx.table, ctx.column, ctx.row_id, key_id];
    let mut aad = Vec::with_capacity(16 + parts.iter().map(|p| p.len() + 4).sum::<usize>());
    aad.extend_from_slice(b"shopd-field");
    aad.push(VERSION);
    for part in parts {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

pub fn seal(key: &CipherKey, ctx: &Context<'_>, plaintext: &[u8]) -> Vec<u8> {
    let kid = key.id().as_str();
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("the operating system's random generator failed");
    let aad = associated_data(ctx, kid);
    let ciphertext = cipher_of(key)
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(2 + kid.len() + NONCE_LEN + ciphertext.len());
    out.push(VERSION);
    out.push(kid.len() as u8);
    out.extend_from_slice(kid.as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

/// Opens `stored` with `key`; the key's id must be the one the value names.
pub fn open(key: &CipherKey, ctx: &Context<'_>, stored: &[u8]) -> Result<Vec<u8>, OpenError> {
    let sealed = SealedValue::parse(stored)?;
    if sealed.key_id != key.id().as_str() {
        return Err(OpenError::UnknownKey(sealed.key_id.to_owned()));
    }
    let nonce: [u8; NONCE_LEN] = sealed.nonce.try_into().map_err(|_| OpenError::Malformed)?;
    let aad = associated_data(ctx, sealed.key_id);
    cipher_of(key)
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: sealed.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| OpenError::Refused)
}

fn cipher_of(key: &CipherKey) -> &Aes256Gcm {
    &key.cipher
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DataKey;
    use proptest::prelude::*;

    fn key(id: &str) -> CipherKey {
        DataKey::generate(KeyId::parse(id).unwrap()).0
    }

    const CTX: Context<'static> = Context {
        table: "customers",
        column: "phone",
        row_id: "c1",
    };

    #[test]
    fn round_trip_and_every_flipped_byte_is_refused() {
        let k = key("dk1");
        let stored = seal(&k, &CTX, b"+447700900123");
        assert_eq!(open(&k, &CTX, &stored).unwrap(), b"+447700900123");
        for i in 0..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= 0x01;
            assert!(
                open(&k, &CTX, &bad).is_err(),
                "flipping byte {i} must be refused"
            );
        }
    }

    #[test]
    fn a_value_moved_to_another_row_or_column_does_not_open() {
        let k = key("dk1");
        let stored = seal(&k, &CTX, b"secret");
        let other_row = Context {
            row_id: "c2",
            ..CTX
        };
        let other_col = Context {
            column: "name",
            ..CTX
        };
        let other_table = Context {
            table: "staff",
            ..CTX
        };
        for ctx in [other_row, other_col, other_table] {
            assert_eq!(open(&k, &ctx, &stored), Err(OpenError::Refused));
        }
        assert_eq!(open(&key("dk1"), &CTX, &stored), Err(OpenError::Refused));
        assert!(matches!(
            open(&key("dk2"), &CTX, &stored),
            Err(OpenError::UnknownKey(_))
        ));
    }

    #[test]
    fn nonces_differ_between_seals() {
        let k = key("dk1");
        assert_ne!(seal(&k, &CTX, b"same"), seal(&k, &CTX, b"same"));
    }

    proptest! {
        #[test]
        fn the_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SealedValue::parse(&bytes);
            let _ = open(&key("dk1"), &CTX, &bytes);
        }

        #[test]
        fn seal_then_open_returns_the_input(value in proptest::collection::vec(any::<u8>(), 0..512),
                                            row in "[a-z0-9-]{1,40}") {
            let k = key("dk1");
            let ctx = Context { row_id: &row, ..CTX };
            prop_assert_eq!(open(&k, &ctx, &seal(&k, &ctx, &value)).unwrap(), value);
        }
    }
}
