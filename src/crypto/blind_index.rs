//! Blind indexes: HMAC-SHA256 under `BLIND_INDEX_KEY` of a kind tag and a normalised value, so that a phone or
//! an e-mail can be looked up without being stored in clear, and equal values in different kinds never collide.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::keys::{KeyBytes, KeyError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Phone,
    Email,
    /// The canonical form of an order request, kept beside its idempotency key to tell a replay from a reuse
    /// without storing the shipping address (or an unkeyed hash of it) in clear.
    OrderRequest,
    /// Not a lookup: the secret of a staff invitation's link, a MAC of its id (`staff::invitations`).
    StaffInvitation,
    /// A platform sign-in's subject, as `provider:sub` (`auth::platforms`).
    ProviderSubject,
}

impl IndexKind {
    fn tag(self) -> &'static [u8] {
        match self {
            Self::Phone => b"shopd-blind-index/phone/v1",
            Self::Email => b"shopd-blind-index/email/v1",
            Self::OrderRequest => b"shopd-blind-index/order-request/v1",
            Self::StaffInvitation => b"shopd-blind-index/staff-invitation/v1",
            Self::ProviderSubject => b"shopd-blind-index/provider-subject/v1",
        }
    }

    /// Phones keep `+` and digits only (callers pass E.164); e-mails are trimmed and lower-cased.
    pub fn normalise(self, value: &str) -> String {
        match self {
            Self::Phone => value
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == '+')
                .collect(),
            Self::Email => value.trim().to_lowercase(),
            Self::OrderRequest | Self::StaffInvitation | Self::ProviderSubject => value.to_owned(),
        }
    }
}

pub struct BlindIndexKey(KeyBytes);

impl BlindIndexKey {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.trim().is_empty() {
            return Err(KeyError::Empty);
        }
        KeyBytes::from_base64("BLIND_INDEX_KEY", text).map(Self)
    }

    pub fn index(&self, kind: IndexKind, value: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0.0).expect("any key size");
        mac.update(kind.tag());
        mac.update(&[0]);
        mac.update(kind.normalise(value).as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndexKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> BlindIndexKey {
        BlindIndexKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap()
    }

    #[test]
    fn normalises_before_hashing_and_separates_kinds() {
        let k = key();
        assert_eq!(
            k.index(IndexKind::Email, " Jo@Example.COM "),
            k.index(IndexKind::Email, "jo@example.com")
        );
        assert_eq!(
            k.index(IndexKind::Phone, "+44 7700 900123"),
            k.index(IndexKind::Phone, "+447700900123")
        );
        assert_ne!(
            k.index(IndexKind::Phone, "x"),
            k.index(IndexKind::Email, "x")
        );
        let other = BlindIndexKey::parse("HwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
        assert_ne!(
            k.index(IndexKind::Phone, "+447700900123"),
            other.index(IndexKind::Phone, "+447700900123")
        );
    }
}
