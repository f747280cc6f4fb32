//! shopd's signed tokens: JWTs signed EdDSA (Ed25519, RFC 8037), made and checked by `jsonwebtoken`, of any
//! claims (the access tokens' are `auth::claims::Claims`).
//!
//! `ACCESS_TOKEN_KEYS` holds `kid:base64(32-byte Ed25519 seed)` entries: the first one signs, all of them
//! verify, so a key is rotated by putting a new one first and dropping the old one once its tokens expired.
//! The crate checks the signature with EdDSA only (the header's `alg` never chooses), then `exp` and `nbf`
//! with `LEEWAY_SECS`, `iss` and `aud`, all of them required. Around it, what the crate leaves to us: a size
//! limit, a `kid` naming one of our keys, no `crit` header and no `typ` but JWT, and claims that are an object.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::keys::{KeyError, KeyId, parse_ring};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signing algorithm is not supported")]
    UnsupportedAlgorithm,
    #[error("the token names no known signing key")]
    UnknownKey,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
}

/// Clock skew tolerated on `exp` and `nbf`, in seconds (DESIGN section 4).
pub const LEEWAY_SECS: i64 = 30;

/// Longer tokens are refused before any decoding. A customer token of ours is about 490 bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410), the form `jsonwebtoken` takes a private key in.
const PKCS8_ED25519: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The access token keys: the active key signs; every key, the active one first, verifies and is published.
pub struct SigningKeys {
    signing: EncodingKey,
    header: Header,
    verifiers: Vec<(KeyId, DecodingKey)>,
    jwks: JwkSet,
}

impl SigningKeys {
    /// Parses `kid:base64(seed),…` (`keys::parse_ring`).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        super::ring_jwt::install();
        let keys: Vec<(KeyId, EncodingKey)> = parse_ring(text)?
            .into_iter()
            .map(|(id, seed)| {
                let der = Zeroizing::new([&PKCS8_ED25519[..], &seed.0].concat());
                (id, EncodingKey::from_ed_der(&der))
            })
            .collect();
        let mut verifiers = Vec::with_capacity(keys.len());
        let mut jwks = JwkSet { keys: Vec::new() };
        for (id, key) in &keys {
            let mut jwk = Jwk::from_encoding_key(key, Algorithm::EdDSA)
                .expect("an Ed25519 seed has a public key");
            jwk.common.key_id = Some(id.as_str().to_owned());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            let public = DecodingKey::from_jwk(&jwk).expect("a JWK of ours decodes");
            verifiers.push((id.clone(), public));
            jwks.keys.push(jwk);
        }
        // The older seeds are wiped here (`EncodingKey` zeroizes on drop); only the active one is kept.
        let (active, signing) = keys.into_iter().next().ok_or(KeyError::Empty)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(active.as_str().to_owned());
        Ok(Self {
            signing,
            header,
            verifiers,
            jwks,
        })
    }

    /// The ids of every key, the active one first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.verifiers.iter().map(|(id, _)| id)
    }

    /// Signs `claims` with the active key: `{"typ":"JWT","alg":"EdDSA","kid":"<active kid>"}`.
    pub fn sign<C: Serialize>(&self, claims: &C) -> String {
        jsonwebtoken::encode(&self.header, claims, &self.signing).expect("an Ed25519 key signs")
    }

    /// Verifies `token` and returns its claims if it is signed by one of our keys, unexpired, and of `issuer`
    /// for `audience`.
    pub fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<C, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| token_error(&e, token))?;
        if header.crit.is_some() || header.typ.is_some_and(|t| !t.eq_ignore_ascii_case("JWT")) {
            return Err(TokenError::Malformed);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let (_, key) = self
            .verifiers
            .iter()
            .find(|(id, _)| id.as_str() == kid)
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS.unsigned_abs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        // Read as a map first: serde would also read a struct from an array, in field order.
        let object = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| token_error(&e, token))?
            .claims;
        serde_json::from_value(Value::Object(object)).map_err(|_| TokenError::Malformed)
    }

    /// The public keys as a JWK Set (RFC 7517, RFC 8037), every key, the active one first.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }
}

fn token_error(error: &Error, token: &str) -> TokenError {
    match error.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm => TokenError::UnsupportedAlgorithm,
        ErrorKind::Json(_) if names_an_unknown_algorithm(token) => TokenError::UnsupportedAlgorithm,
        _ => TokenError::Malformed,
    }
}

/// Whether a header `jsonwebtoken` could not read names one `alg` it does not know (`none`, `eddsa`, …): the
/// crate refuses those before reading the rest, and the reason is then the algorithm, not the shape.
pub(crate) fn names_an_unknown_algorithm(token: &str) -> bool {
    #[derive(Deserialize)]
    struct Alg {
        alg: String,
    }
    let header = token.split('.').next().unwrap_or_default();
    URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|json| serde_json::from_slice::<Alg>(&json).ok())
        .is_some_and(|header| header.alg.parse::<Algorithm>().is_err())
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::{Audience, Claims, Expectations, verify};
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;
    use serde_json::json;

    /// Seeds 0..=31 and 32..=63, standard base64 as in `ACCESS_TOKEN_KEYS`.
    const SEED_NEW: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const SEED_OLD: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    const ISS: &str = "https://shop.example";
    /// The tests' clock: `jsonwebtoken` checks `exp` and `nbf` against the system's.
    static NOW: std::sync::LazyLock<i64> = std::sync::LazyLock::new(unix_now);

    fn ring() -> SigningKeys {
        SigningKeys::parse(&format!("new:{SEED_NEW}, old:{SEED_OLD}")).unwrap()
    }

    fn claims_at(now: i64, aud: Audience) -> Claims {
        Claims {
            iss: ISS.to_owned(),
            aud,
            sub: "0193a6f2-7c1e-7d3a-9b2f-2c4d5e6f7a8b".to_owned(),
            sid: "0193a6f2-8000-7000-8000-000000000001".to_owned(),
            jti: "0193a6f2-8000-7000-8000-000000000002".to_owned(),
            iat: now,
            nbf: now,
            exp: now + 900,
            auth_time: now - 60,
            amr: vec!["pwd".into()],
            role: None,
        }
    }

    fn claims(aud: Audience) -> Claims {
        claims_at(*NOW, aud)
    }

    fn expect(aud: Audience) -> Expectations<'static> {
        Expectations {
            issuer: ISS,
            audience: aud,
            now: *NOW,
        }
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode_segment(segment: &str) -> Result<Vec<u8>, base64::DecodeError> {
        URL_SAFE_NO_PAD.decode(segment)
    }

    /// The raw public keys, from the JWKS.
    fn public_keys(keys: &SigningKeys) -> Vec<Vec<u8>> {
        let jwks = serde_json::to_value(keys.jwks()).unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| decode_segment(k["x"].as_str().unwrap()).unwrap())
            .collect()
    }

    fn sign_input(keys: &SigningKeys, input: &[u8]) -> String {
        jsonwebtoken::crypto::sign(input, &keys.signing, Algorithm::EdDSA).unwrap()
    }

    /// A token with any header and payload, correctly signed by the active key: what an attacker who could
    /// sign would send, so that each check is seen to hold on its own, not only because the signature fails.
    fn forge(keys: &SigningKeys, header: &str, payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let signature = sign_input(keys, input.as_bytes());
        format!("{input}.{signature}")
    }

    /// A header naming our active key.
    const HEADER: &str = r#"{"alg":"EdDSA","kid":"new"}"#;

    /// `payload` signed by our active key under `header`, verified where a customer token is expected.
    fn with_header(keys: &SigningKeys, header: &str, payload: &[u8]) -> Result<Claims, TokenError> {
        verify(
            keys,
            &forge(keys, header, payload),
            &expect(Audience::Customer),
        )
    }

    fn segments(token: &str) -> Vec<String> {
        token.split('.').map(str::to_owned).collect()
    }

    /// Replaces the character in the middle of `segment` with another base64url character.
    fn change_middle_char(segment: &str) -> String {
        let mut chars: Vec<char> = segment.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect()
    }

    #[test]
    fn signs_and_verifies_a_round_trip() {
        let keys = ring();
        let mut staff = claims(Audience::Staff);
        staff.role = Some("manager".to_owned());
        for claims in [claims(Audience::Customer), staff] {
            let token = keys.sign(&claims);
            assert_eq!(verify(&keys, &token, &expect(claims.aud)), Ok(claims));
        }
        let token = keys.sign(&claims(Audience::Customer));
        let header: serde_json::Value =
            serde_json::from_slice(&decode_segment(&segments(&token)[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "EdDSA", "typ": "JWT", "kid": "new"}));
        let payload = String::from_utf8(decode_segment(&segments(&token)[1]).unwrap()).unwrap();
        assert!(
            !payload.contains("role"),
            "no role member when there is no role"
        );
        assert!(payload.contains(r#""aud":"customer""#));
        assert!(token.len() < 600, "{} bytes", token.len());
    }

    #[test]
    fn a_token_signed_by_an_older_key_still_verifies() {
        let before_rotation = SigningKeys::parse(&format!("old:{SEED_OLD}")).unwrap();
        let token = before_rotation.sign(&claims(Audience::Customer));
        assert_eq!(
            verify(&ring(), &token, &expect(Audience::Customer)),
            Ok(claims(Audience::Customer))
        );
        // and once the old key is retired, it no longer does
        let after_retirement = SigningKeys::parse(&format!("new:{SEED_NEW}")).unwrap();
        assert_eq!(
            verify(&after_retirement, &token, &expect(Audience::Customer)),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn the_jwks_lists_every_public_key() {
        let keys = ring();
        let jwks = serde_json::to_value(keys.jwks()).unwrap();
        let listed = jwks["keys"].as_array().unwrap();
        assert_eq!(listed.len(), 2);
        for (public, jwk) in public_keys(&keys).iter().zip(listed) {
            assert_eq!(public.len(), 32);
            assert_eq!(
                *jwk,
                json!({
                    "kty": "OKP", "crv": "Ed25519", "x": b64(public),
                    "kid": jwk["kid"], "alg": "EdDSA", "use": "sig",
                })
            );
        }
        assert_ne!(listed[0]["x"], listed[1]["x"]);
        assert_eq!(listed[0]["kid"], "new");
        assert_eq!(listed[1]["kid"], "old");
        assert!(!jwks.to_string().contains(SEED_NEW.trim_end_matches('=')));
    }

    /// RFC 8037 appendix A: the example key's public `x` and the signature of the A.4 signing input.
    #[test]
    fn matches_the_rfc_8037_ed25519_example() {
        let keys = SigningKeys::parse("rfc:nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=").unwrap();
        assert_eq!(
            b64(&public_keys(&keys)[0]),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        let signature = sign_input(
            &keys,
            b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc",
        );
        assert_eq!(
            signature,
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
    }

    fn unix_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn refuses_alg_none() {
        let keys = ring();
        let payload = b64(serde_json::to_vec(&claims(Audience::Customer)).unwrap());
        for alg in ["none", "None", "NONE", ""] {
            let header = b64(json!({"alg": alg, "typ": "JWT", "kid": "new"}).to_string());
            let unsigned = format!("{header}.{payload}.");
            assert_eq!(
                verify(&keys, &unsigned, &expect(Audience::Customer)),
                Err(TokenError::UnsupportedAlgorithm),
                "{alg:?}"
            );
            let two_segments = format!("{header}.{payload}");
            assert_eq!(
                verify(&keys, &two_segments, &expect(Audience::Customer)),
                Err(TokenError::Malformed)
            );
        }
        // nor does an EdDSA header make an empty signature acceptable
        let header = b64(json!({"alg": "EdDSA", "typ": "JWT", "kid": "new"}).to_string());
        assert_eq!(
            verify(
                &keys,
                &format!("{header}.{payload}."),
                &expect(Audience::Customer)
            ),
            Err(TokenError::BadSignature)
        );
    }

    /// The key-confusion attack: HS256 with the public key as the HMAC secret.
    #[test]
    fn refuses_hs256_made_with_the_public_key() {
        use hmac::{Hmac, KeyInit, Mac};

        let keys = ring();
        let jwks = serde_json::to_value(keys.jwks()).unwrap();
        let x = jwks["keys"][0]["x"].as_str().unwrap();
        let public_raw = public_keys(&keys).remove(0);
        let header = b64(json!({"alg": "HS256", "typ": "JWT", "kid": "new"}).to_string());
        let payload = b64(serde_json::to_vec(&claims(Audience::Staff)).unwrap());
        let input = format!("{header}.{payload}");
        for secret in [&public_raw[..], x.as_bytes()] {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
            mac.update(input.as_bytes());
            let token = format!("{input}.{}", b64(mac.finalize().into_bytes()));
            assert_eq!(
                verify(&keys, &token, &expect(Audience::Staff)),
                Err(TokenError::UnsupportedAlgorithm)
            );
        }
    }

    #[test]
    fn refuses_every_other_spelling_of_the_algorithm() {
        let keys = ring();
        let payload = serde_json::to_vec(&claims(Audience::Customer)).unwrap();
        for alg in [
            "eddsa", "EDDSA", "Ed25519", "EdDSA ", " EdDSA", "ES256", "RS256", "HS512",
        ] {
            let header = json!({"alg": alg, "kid": "new"}).to_string();
            assert_eq!(
                with_header(&keys, &header, &payload),
                Err(TokenError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
        for header in [
            r#"{"kid":"new"}"#,
            r#"{"alg":["EdDSA"],"kid":"new"}"#,
            r#"{"alg":null}"#,
        ] {
            assert_eq!(
                with_header(&keys, header, &payload),
                Err(TokenError::Malformed),
                "{header}"
            );
        }
    }

    #[test]
    fn refuses_headers_that_could_be_read_two_ways_or_need_extensions() {
        let keys = ring();
        let payload = serde_json::to_vec(&claims(Audience::Customer)).unwrap();
        for header in [
            r#"{"alg":"EdDSA","alg":"none","kid":"new"}"#,
            r#"{"alg":"EdDSA","kid":"old","kid":"new"}"#,
            r#"{"alg":"EdDSA","kid":"new","crit":["b64"],"b64":false}"#,
            r#"{"alg":"EdDSA","kid":"new","typ":"JWE"}"#,
            r#"["EdDSA"]"#,
            "not json",
        ] {
            assert_eq!(
                with_header(&keys, header, &payload),
                Err(TokenError::Malformed),
                "{header}"
            );
        }
        // members we do not use are ignored, and never used to find a key
        let header = r#"{"alg":"EdDSA","kid":"new","typ":"jwt","jku":"https://evil.example/jwks","x5u":"x"}"#;
        assert!(with_header(&keys, header, &payload).is_ok());
    }

    #[test]
    fn refuses_unknown_and_missing_key_ids() {
        let keys = ring();
        let payload = serde_json::to_vec(&claims(Audience::Customer)).unwrap();
        for header in [
            r#"{"alg":"EdDSA","kid":"other"}"#,
            r#"{"alg":"EdDSA","kid":""}"#,
            r#"{"alg":"EdDSA","kid":"NEW"}"#,
            r#"{"alg":"EdDSA","kid":null}"#,
            r#"{"alg":"EdDSA","typ":"JWT"}"#,
        ] {
            assert_eq!(
                with_header(&keys, header, &payload),
                Err(TokenError::UnknownKey),
                "{header}"
            );
        }
    }

    #[test]
    fn refuses_a_token_signed_by_a_foreign_key_under_our_key_id() {
        let stranger = SigningKeys::parse(&format!("new:{SEED_OLD}")).unwrap();
        let token = stranger.sign(&claims(Audience::Customer));
        assert_eq!(
            verify(&ring(), &token, &expect(Audience::Customer)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn refuses_the_wrong_audience_and_issuer() {
        let keys = ring();
        let customer = keys.sign(&claims(Audience::Customer));
        assert_eq!(
            verify(&keys, &customer, &expect(Audience::Staff)),
            Err(TokenError::WrongAudience)
        );
        let staff = keys.sign(&claims(Audience::Staff));
        assert_eq!(
            verify(&keys, &staff, &expect(Audience::Customer)),
            Err(TokenError::WrongAudience)
        );
        let elsewhere = Expectations {
            issuer: "https://shop.example/",
            ..expect(Audience::Customer)
        };
        assert_eq!(
            verify(&keys, &customer, &elsewhere),
            Err(TokenError::WrongIssuer)
        );
    }

    /// `jsonwebtoken` checks `exp` and `nbf` against the system clock, with the leeway.
    #[test]
    fn expiry_and_not_before_allow_the_leeway_and_no_more() {
        let keys = ring();
        let expect = expect(Audience::Customer);
        let with_times = |nbf: i64, exp: i64| {
            keys.sign(&Claims {
                nbf,
                exp,
                ..claims(Audience::Customer)
            })
        };
        // two seconds of margin either side, for the clock ticking during the test
        let now = unix_now();
        let within = LEEWAY_SECS - 2;
        let beyond = LEEWAY_SECS + 2;
        assert!(verify(&keys, &with_times(now, now - within), &expect).is_ok());
        assert_eq!(
            verify(&keys, &with_times(now - 900, now - beyond), &expect),
            Err(TokenError::Expired)
        );
        assert!(verify(&keys, &with_times(now + within, now + 900), &expect).is_ok());
        assert_eq!(
            verify(&keys, &with_times(now + beyond, now + 900), &expect),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn refuses_a_tampered_payload() {
        let keys = ring();
        let token = keys.sign(&claims(Audience::Customer));
        let parts = segments(&token);

        let one_char = format!(
            "{}.{}.{}",
            parts[0],
            change_middle_char(&parts[1]),
            parts[2]
        );
        assert_eq!(
            verify(&keys, &one_char, &expect(Audience::Customer)),
            Err(TokenError::BadSignature)
        );

        // the escalation an attacker wants: the same signature on a staff payload
        let mut escalated = claims(Audience::Staff);
        escalated.role = Some("owner".to_owned());
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            b64(serde_json::to_vec(&escalated).unwrap()),
            parts[2]
        );
        assert_eq!(
            verify(&keys, &swapped, &expect(Audience::Staff)),
            Err(TokenError::BadSignature)
        );

        // a header swapped for another spelling of the same header is also a different signing input
        let respelled = format!(
            "{}.{}.{}",
            b64(r#"{"kid":"new","alg":"EdDSA","typ":"JWT"}"#),
            parts[1],
            parts[2]
        );
        assert_eq!(
            verify(&keys, &respelled, &expect(Audience::Customer)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn refuses_a_tampered_signature() {
        let keys = ring();
        let token = keys.sign(&claims(Audience::Customer));
        let parts = segments(&token);
        let expect = expect(Audience::Customer);

        let one_char = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            change_middle_char(&parts[2])
        );
        assert_eq!(
            verify(&keys, &one_char, &expect),
            Err(TokenError::BadSignature)
        );

        let signature = decode_segment(&parts[2]).unwrap();
        for wrong_length in [
            &signature[..63],
            &[][..],
            &[signature.as_slice(), &[0]].concat(),
        ] {
            let token = format!("{}.{}.{}", parts[0], parts[1], b64(wrong_length));
            assert_eq!(
                verify(&keys, &token, &expect),
                Err(TokenError::BadSignature)
            );
        }

        // malleability: S + L is the same signature to a lax verifier, and must be refused
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut malleated = signature.clone();
        let mut carry = 0u16;
        for (byte, l) in malleated[32..].iter_mut().zip(L) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        let token = format!("{}.{}.{}", parts[0], parts[1], b64(&malleated));
        assert_eq!(
            verify(&keys, &token, &expect),
            Err(TokenError::BadSignature)
        );

        // the signature of another token
        let other = keys.sign(&claims(Audience::Staff));
        let token = format!("{}.{}.{}", parts[0], parts[1], segments(&other)[2]);
        assert_eq!(
            verify(&keys, &token, &expect),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn refuses_anything_but_three_canonical_base64url_segments() {
        let keys = ring();
        // A token with a character of base64url's own (`-` or `_`), for the standard-alphabet case below.
        let token = (0..)
            .map(|n| {
                keys.sign(&Claims {
                    jti: format!("jti-{n}"),
                    ..claims(Audience::Customer)
                })
            })
            .find(|token| token.contains(['-', '_']))
            .unwrap();
        let parts = segments(&token);
        let expect = expect(Audience::Customer);
        let oversized = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
        for bad in [
            String::new(),
            ".".to_owned(),
            "..".to_owned(),
            "...".to_owned(),
            "garbage".to_owned(),
            "not.a.token".to_owned(),
            "\u{0}\u{ffff}.\u{1F600}.é".to_owned(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
            format!("{token}."),
            format!(".{token}"),
            format!(" {token}"),
            format!("{token}\n"),
            format!("Bearer {token}"),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}==", parts[0], parts[1], parts[2]),
            token.replace('-', "+").replace('_', "/"),
            oversized,
        ] {
            assert_eq!(
                verify(&keys, &bad, &expect),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
        // a payload we signed ourselves is still checked for shape
        // serde alone would read these claims from an array in field order
        let c = claims(Audience::Customer);
        let as_array = json!([
            c.iss,
            "customer",
            c.sub,
            c.sid,
            c.jti,
            c.iat,
            c.nbf,
            c.exp,
            c.auth_time,
            c.amr
        ])
        .to_string()
        .into_bytes();
        assert_eq!(serde_json::from_slice::<Claims>(&as_array).ok(), Some(c));
        for payload in [
            &b"{}"[..],
            b"null",
            b"\xff",
            br#"{"aud":"admin"}"#,
            &as_array,
        ] {
            assert_eq!(
                with_header(&keys, HEADER, payload),
                Err(TokenError::Malformed)
            );
        }
        let mut missing_exp = serde_json::to_value(claims(Audience::Customer)).unwrap();
        missing_exp.as_object_mut().unwrap().remove("exp");
        let missing_exp = missing_exp.to_string();
        assert_eq!(
            with_header(&keys, HEADER, missing_exp.as_bytes()),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn parse_refuses_bad_rings_with_a_reason() {
        assert_eq!(SigningKeys::parse("").unwrap_err(), KeyError::Empty);
        assert_eq!(SigningKeys::parse(" , ").unwrap_err(), KeyError::Empty);
        assert_eq!(
            SigningKeys::parse(SEED_NEW).unwrap_err(),
            KeyError::Malformed(1)
        );
        assert_eq!(
            SigningKeys::parse("a:%%%").unwrap_err(),
            KeyError::BadBase64("a".to_owned())
        );
        assert_eq!(
            SigningKeys::parse("a:AAAA").unwrap_err(),
            KeyError::BadLength("a".to_owned(), 3)
        );
        assert!(matches!(
            SigningKeys::parse(&format!("a:{SEED_NEW}{SEED_NEW}")),
            Err(KeyError::BadBase64(_) | KeyError::BadLength(..))
        ));
        assert!(matches!(
            SigningKeys::parse(&format!("a b:{SEED_NEW}")),
            Err(KeyError::BadKeyId(_))
        ));
        assert_eq!(
            SigningKeys::parse(&format!("a:{SEED_NEW},a:{SEED_OLD}")).unwrap_err(),
            KeyError::DuplicateId("a".to_owned())
        );
    }

    #[test]
    fn debug_shows_key_ids_and_never_material() {
        let keys = ring();
        let shown = format!("{keys:?}");
        assert!(shown.contains("new") && shown.contains("old"), "{shown}");
        for seed in [SEED_NEW, SEED_OLD] {
            let raw = STANDARD.decode(seed).unwrap();
            assert!(!shown.contains(seed.trim_end_matches('=')));
            assert!(!shown.contains(&b64(&raw)));
            assert!(!shown.contains(format!("{:?}", &raw[..8]).trim_end_matches(']')));
            assert!(!shown.contains(&hex::encode(&raw[..8])));
        }
    }

    #[test]
    fn generates_entries_that_parse() {
        let entry = crate::config::secrets::key_entry('t');
        let (kid, seed) = entry.split_once(':').unwrap();
        assert!(
            kid.starts_with('t') && kid.len() == 14 && &kid[9..10] == "-",
            "{kid}"
        );
        assert!(kid[1..9].bytes().all(|b| b.is_ascii_digit()), "{kid}");
        let other = crate::config::secrets::key_entry('t');
        assert_ne!(
            other.split_once(':').unwrap().0,
            kid,
            "two keys of one day do not clash"
        );
        assert_eq!(STANDARD.decode(seed).unwrap().len(), 32);
        let keys = SigningKeys::parse(&entry).unwrap();
        assert_eq!(keys.ids().next().unwrap().as_str(), kid);
        let token = keys.sign(&claims(Audience::Customer));
        assert!(verify(&keys, &token, &expect(Audience::Customer)).is_ok());
        assert_ne!(
            crate::config::secrets::key_entry('t')
                .split_once(':')
                .unwrap()
                .1,
            seed
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = verify(&ring(), &text, &expect(Audience::Customer));
        }

        #[test]
        fn arbitrary_dotted_base64url_never_panics_or_verifies(
            text in "[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,400}\\.[A-Za-z0-9_-]{0,90}"
        ) {
            prop_assert!(verify(&ring(), &text, &expect(Audience::Customer)).is_err());
        }

        #[test]
        fn arbitrary_header_json_never_panics(header in any::<String>(), sig in any::<Vec<u8>>()) {
            let token = format!("{}.e30.{}", b64(&header), b64(&sig));
            prop_assert!(verify(&ring(), &token, &expect(Audience::Customer)).is_err());
        }

        /// Changing any one character of a good token, anywhere, makes it fail.
        #[test]
        fn any_single_character_change_is_refused(
            position in any::<prop::sample::Index>(),
            replacement in prop::sample::select(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "
                    .chars()
                    .collect::<Vec<_>>()
            ),
        ) {
            let keys = ring();
            let token = keys.sign(&claims(Audience::Customer));
            let i = position.index(token.len());
            prop_assume!(token.as_bytes()[i] != replacement as u8);
            let mut changed = token.clone();
            changed.replace_range(i..=i, replacement.encode_utf8(&mut [0; 4]));
            prop_assert!(verify(&keys, &changed, &expect(Audience::Customer)).is_err());
        }
    }
}
