//! Access tokens whose signature has already been checked, so the Ed25519 check (about 32 µs, the largest
//! single cost of an authenticated read) runs once per token rather than once per request.
//!
//! An entry is found by the SHA-256 of the whole token: the same bytes carry the same signature, so a hit
//! means the token verified before. Everything but the signature is checked again on every hit (expiry
//! with its leeway, not-before, issuer, audience), and the session check stays per request in the caller.
//! Only digests and claims are kept, never a token. The map is bounded: when it is full, expired entries
//! go; when it is still full, all go (the next request of each token verifies it again).

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::claims::{self, Claims, Expectations};
use crate::crypto::jwt::{LEEWAY_SECS, SigningKeys, TokenError};

/// About 300 bytes an entry: 20,000 tokens (every customer active in the last five minutes) is ~6 MB.
pub const DEFAULT_CAPACITY: usize = 20_000;

/// Expiry and not-before with `LEEWAY_SECS` (the bounds `jsonwebtoken` uses), issuer and audience: what a
/// cache hit checks again of claims whose signature was verified.
pub fn check_claims(claims: &Claims, expect: &Expectations<'_>) -> Result<(), TokenError> {
    if claims.exp < expect.now.saturating_sub(LEEWAY_SECS) {
        return Err(TokenError::Expired);
    }
    if claims.nbf > expect.now.saturating_add(LEEWAY_SECS) {
        return Err(TokenError::NotYetValid);
    }
    if claims.iss != expect.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if claims.aud != expect.audience {
        return Err(TokenError::WrongAudience);
    }
    Ok(())
}

pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Claims>>,
    capacity: usize,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The claims of `token` as `keys.verify` gives them, checking its signature only on first sight.
    pub fn verify(
        &self,
        keys: &SigningKeys,
        token: &str,
        expect: &Expectations<'_>,
    ) -> Result<Claims, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let known = self.lock().get(&digest).cloned();
        if let Some(claims) = known {
            check_claims(&claims, expect)?;
            return Ok(claims);
        }
        let claims = claims::verify(keys, token, expect)?;
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            let oldest_live = expect.now.saturating_sub(LEEWAY_SECS);
            entries.retain(|_, c| c.exp > oldest_live);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(digest, claims.clone());
        Ok(claims)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Claims>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::Audience;

    /// The tests' clock: a first verification checks `exp` and `nbf` against the system's.
    static NOW: std::sync::LazyLock<i64> =
        std::sync::LazyLock::new(|| chrono::Utc::now().timestamp());
    const ISSUER: &str = "https://shop.example.com";

    fn keys() -> SigningKeys {
        SigningKeys::parse(&crate::config::secrets::key_entry('t')).unwrap()
    }

    fn claims(aud: Audience, exp: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            aud,
            sub: "cus_1".into(),
            sid: "ses_1".into(),
            jti: "jti_1".into(),
            iat: *NOW,
            nbf: *NOW,
            exp,
            auth_time: *NOW,
            amr: vec!["pwd".into()],
            role: None,
        }
    }

    fn at(now: i64, audience: Audience) -> Expectations<'static> {
        Expectations {
            issuer: ISSUER,
            audience,
            now,
        }
    }

    #[test]
    fn a_known_token_gives_the_same_claims_and_is_checked_again_for_all_but_the_signature() {
        let keys = keys();
        let cache = VerifiedTokens::new(10);
        let token = keys.sign(&claims(Audience::Customer, *NOW + 300));
        let first = cache
            .verify(&keys, &token, &at(*NOW, Audience::Customer))
            .unwrap();
        assert_eq!(cache.lock().len(), 1);
        let again = cache
            .verify(&keys, &token, &at(*NOW + 1, Audience::Customer))
            .unwrap();
        assert_eq!(first, again);
        // a hit is still refused for the other audience, another issuer, and after expiry (with leeway)
        assert_eq!(
            cache.verify(&keys, &token, &at(*NOW, Audience::Staff)),
            Err(TokenError::WrongAudience)
        );
        let elsewhere = Expectations {
            issuer: "https://other.example",
            ..at(*NOW, Audience::Customer)
        };
        assert_eq!(
            cache.verify(&keys, &token, &elsewhere),
            Err(TokenError::WrongIssuer)
        );
        assert!(
            cache
                .verify(
                    &keys,
                    &token,
                    &at(*NOW + 300 + LEEWAY_SECS, Audience::Customer)
                )
                .is_ok()
        );
        assert_eq!(
            cache.verify(
                &keys,
                &token,
                &at(*NOW + 300 + LEEWAY_SECS + 1, Audience::Customer)
            ),
            Err(TokenError::Expired)
        );
        assert_eq!(
            cache.verify(
                &keys,
                &token,
                &at(*NOW - LEEWAY_SECS - 1, Audience::Customer)
            ),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn a_token_differing_in_any_byte_is_verified_afresh_and_refused() {
        let keys = keys();
        let cache = VerifiedTokens::new(10);
        let token = keys.sign(&claims(Audience::Customer, *NOW + 300));
        cache
            .verify(&keys, &token, &at(*NOW, Audience::Customer))
            .unwrap();
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(
            cache
                .verify(&keys, &tampered, &at(*NOW, Audience::Customer))
                .is_err()
        );
        // a token signed by a key we do not hold is never cached, however often it comes
        let other_keys = SigningKeys::parse(&crate::config::secrets::key_entry('t')).unwrap();
        let stranger = other_keys.sign(&claims(Audience::Customer, *NOW + 300));
        for _ in 0..2 {
            assert!(
                cache
                    .verify(&keys, &stranger, &at(*NOW, Audience::Customer))
                    .is_err()
            );
        }
        assert_eq!(cache.lock().len(), 1);
    }

    #[test]
    fn stays_within_its_capacity() {
        let keys = keys();
        let cache = VerifiedTokens::new(3);
        // two that expire soon, then live ones: a full map first drops the expired ones
        for exp in [*NOW + 10, *NOW + 10] {
            let token = keys.sign(&claims(Audience::Customer, exp));
            cache
                .verify(&keys, &token, &at(*NOW, Audience::Customer))
                .unwrap();
        }
        let later = *NOW + 10 + LEEWAY_SECS + 1;
        for i in 0..5 {
            let token = keys.sign(&claims(Audience::Customer, later + 300 + i));
            cache
                .verify(&keys, &token, &at(later, Audience::Customer))
                .unwrap();
            assert!(cache.lock().len() <= 3, "{} entries", cache.lock().len());
        }
        assert!(!cache.lock().is_empty());
    }

    /// The same bounds on claims already verified (the verified-token cache), to the second.
    #[test]
    fn check_claims_allows_exactly_the_leeway() {
        let claims = claims(Audience::Customer, *NOW + 300);
        let at = |now| Expectations {
            now,
            ..at(*NOW, Audience::Customer)
        };
        let exp = claims.exp;
        assert!(check_claims(&claims, &at(exp + LEEWAY_SECS)).is_ok());
        assert_eq!(
            check_claims(&claims, &at(exp + LEEWAY_SECS + 1)),
            Err(TokenError::Expired)
        );
        let nbf = claims.nbf;
        assert!(check_claims(&claims, &at(nbf - LEEWAY_SECS)).is_ok());
        assert_eq!(
            check_claims(&claims, &at(nbf - LEEWAY_SECS - 1)),
            Err(TokenError::NotYetValid)
        );
        // the clock at its extremes neither overflows nor accepts
        assert_eq!(
            check_claims(&claims, &at(i64::MAX)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check_claims(&claims, &at(i64::MIN)),
            Err(TokenError::NotYetValid)
        );
    }
}
