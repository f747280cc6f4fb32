use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::{Zeroize, ZeroizeOnDrop};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("is empty")]
    Empty,
    #[error("entry {0} is not of the form kid:base64")]
    Malformed(usize),
    #[error("key id `{0}` is not 1 to 32 characters of letters, digits, '-' or '_'")]
    BadKeyId(String),
    #[error("key `{0}` is not valid base64")]
    BadBase64(String),
    #[error("key `{0}` is {1} bytes long; it must be 32")]
    BadLength(String, usize),
    #[error("key id `{0}` appears twice")]
    DuplicateId(String),
}

/// A key id: short, printable, safe to store beside the values it sealed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let ok = (1..=32).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(KeyError::BadKeyId(text.chars().take(40).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key id that sorts by its date and is unique within the day: `k20261125-3f9a`, so that an operator sees
/// which key is the newest and two keys made on one day never clash.
pub fn dated_key_id(prefix: char) -> String {
    let mut tag = [0u8; 2];
    getrandom::fill(&mut tag).expect("the operating system's random generator failed");
    format!(
        "{prefix}{}-{:02x}{:02x}",
        chrono::Utc::now().format("%Y%m%d"),
        tag[0],
        tag[1]
    )
}

/// 32 bytes of key material, wiped on drop and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct KeyBytes(pub(crate) [u8; 32]);

impl KeyBytes {
    pub(crate) fn from_base64(label: &str, text: &str) -> Result<Self, KeyError> {
        let mut bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::BadBase64(label.to_owned()))?;
        let result = <[u8; 32]>::try_from(bytes.as_slice())
            .map(Self)
            .map_err(|_| KeyError::BadLength(label.to_owned(), bytes.len()));
        bytes.zeroize();
        result
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A key ready to seal and open: the id it is known by and its expanded AES-256-GCM cipher.
pub struct CipherKey {
    pub(crate) id: KeyId,
    pub(crate) cipher: Aes256Gcm,
}

impl CipherKey {
    pub(crate) fn new(id: KeyId, bytes: &KeyBytes) -> Self {
        let cipher = Aes256Gcm::new_from_slice(&bytes.0).expect("32-byte key");
        Self { id, cipher }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }
}

impl fmt::Debug for CipherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CipherKey({}, [redacted])", self.id)
    }
}

/// A person's data key, unwrapped. Values of that person are sealed and opened with it.
pub type DataKey = CipherKey;

impl DataKey {
    /// A fresh data key from the operating system's generator, and its raw bytes for wrapping.
    pub fn generate(id: KeyId) -> (Self, Vec<u8>) {
        let mut bytes = KeyBytes([0u8; 32]);
        getrandom::fill(&mut bytes.0).expect("the operating system's random generator failed");
        (Self::new(id, &bytes), bytes.0.to_vec())
    }

    pub(crate) fn from_raw(id: KeyId, raw: &[u8]) -> Option<Self> {
        let bytes = KeyBytes(<[u8; 32]>::try_from(raw).ok()?);
        Some(Self::new(id, &bytes))
    }
}

/// The master keys (`PII_KEYS`): the first one wraps new data keys, all of them unwrap.
pub struct MasterKeyRing {
    keys: Vec<CipherKey>,
}

/// A key ring written `kid:base64,kid:base64,…` (32 bytes each), in its order: the first is the active one.
/// Empty entries are skipped; an empty ring, a malformed entry, a bad id or key, or an id twice is refused.
pub(crate) fn parse_ring(text: &str) -> Result<Vec<(KeyId, KeyBytes)>, KeyError> {
    let mut keys: Vec<(KeyId, KeyBytes)> = Vec::new();
    for (i, entry) in text.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        let (kid, material) = entry.split_once(':').ok_or(KeyError::Malformed(i + 1))?;
        let id = KeyId::parse(kid.trim())?;
        if keys.iter().any(|(known, _)| *known == id) {
            return Err(KeyError::DuplicateId(id.0));
        }
        let bytes = KeyBytes::from_base64(id.as_str(), material)?;
        keys.push((id, bytes));
    }
    if keys.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(keys)
}

impl MasterKeyRing {
    /// Parses `kid:base64,kid:base64,…` (`parse_ring`).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let keys = parse_ring(text)?
            .into_iter()
            .map(|(id, bytes)| CipherKey::new(id, &bytes))
            .collect();
        Ok(Self { keys })
    }

    pub fn active(&self) -> &CipherKey {
        &self.keys[0]
    }

    pub fn get(&self, id: &str) -> Option<&CipherKey> {
        self.keys.iter().find(|k| k.id.as_str() == id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|k| &k.id)
    }
}

impl fmt::Debug for MasterKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeyRing")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn parses_a_ring_with_the_first_key_active() {
        let ring = MasterKeyRing::parse(&format!("new:{K}, old:{K}")).unwrap();
        assert_eq!(ring.active().id().as_str(), "new");
        assert!(ring.get("old").is_some());
        assert!(!format!("{ring:?}").contains(K));
    }

    #[test]
    fn refuses_bad_rings_with_a_reason() {
        assert_eq!(MasterKeyRing::parse("").unwrap_err(), KeyError::Empty);
        assert_eq!(MasterKeyRing::parse(K).unwrap_err(), KeyError::Malformed(1));
        assert!(matches!(
            MasterKeyRing::parse("a:%%%"),
            Err(KeyError::BadBase64(_))
        ));
        assert!(matches!(
            MasterKeyRing::parse("a:AAAA"),
            Err(KeyError::BadLength(_, 3))
        ));
        assert!(matches!(
            MasterKeyRing::parse(&format!("a b:{K}")),
            Err(KeyError::BadKeyId(_))
        ));
        assert!(matches!(
            MasterKeyRing::parse(&format!("a:{K},a:{K}")),
            Err(KeyError::DuplicateId(_))
        ));
    }
}
