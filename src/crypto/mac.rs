use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::keys::{KeyBytes, KeyError};

/// A 32-byte HMAC-SHA256 key (such as `OTP_PEPPER`), redacted in Debug and wiped on drop.
pub struct MacKey(KeyBytes);

impl MacKey {
    pub fn parse(label: &str, text: &str) -> Result<Self, KeyError> {
        if text.trim().is_empty() {
            return Err(KeyError::Empty);
        }
        KeyBytes::from_base64(label, text).map(Self)
    }

    /// HMAC-SHA256 over the parts, each preceded by its length so that no two lists of parts collide.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0.0).expect("any key size");
        for part in parts {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_framed() {
        let k = MacKey::parse("t", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        assert_ne!(k.mac(&[b"ab", b"c"]), k.mac(&[b"a", b"bc"]));
        assert_eq!(k.mac(&[b"ab", b"c"]), k.mac(&[b"ab", b"c"]));
        assert!(!format!("{k:?}").contains("AAEC"));
    }
}
