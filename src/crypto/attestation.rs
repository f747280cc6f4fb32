//! App attestation tokens (DESIGN section 8), Approov-style: a JWT signed HS256 with a secret shared with the
//! attestation service, proving that the request comes from a genuine copy of the shop's app. Only HS256 is
//! accepted (the `alg` of the header is compared, never trusted to pick the check), the signature is verified
//! in constant time before any claim is read, `exp` must be in the future, and on requests that carry an
//! `Authorization` header the `pay` claim must equal base64(SHA-256(that header's value)), binding the
//! attestation to the access token it travels with. Free of I/O and of HTTP types.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Longest token looked at; anything longer is malformed (Approov tokens are a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 4096;

/// The shortest secret accepted: RFC 7518 asks for a key at least as long as the hash (256 bits).
pub const MIN_SECRET_LEN: usize = 32;

/// Why a request failed attestation. `reason()` is the metric label and the word in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No `Approov-Token` header (or more than one).
    Missing,
    /// Not three base64url parts of JSON objects, too long, an `exp` that is not a number, or a `crit` header.
    Malformed,
    /// An `alg` other than HS256 (`none`, RS256, HS512, …).
    BadAlg,
    /// The HMAC does not verify under the secret.
    BadSignature,
    /// `exp` is missing or not in the future.
    Expired,
    /// A request with an Authorization header and a token without `pay`, while the binding is required.
    MissingPay,
    /// `pay` is not base64(SHA-256) of the request's Authorization header value.
    BadPay,
    /// The request carries more than one Authorization header.
    TwoAuthorization,
}

impl Failure {
    pub const ALL: [Failure; 8] = [
        Failure::Missing,
        Failure::Malformed,
        Failure::BadAlg,
        Failure::BadSignature,
        Failure::Expired,
        Failure::MissingPay,
        Failure::BadPay,
        Failure::TwoAuthorization,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::BadAlg => "bad_alg",
            Failure::BadSignature => "bad_signature",
            Failure::Expired => "expired",
            Failure::MissingPay => "missing_pay",
            Failure::BadPay => "bad_pay",
            Failure::TwoAuthorization => "two_authorization",
        }
    }
}

/// The Authorization headers of a request, as far as the binding is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Authorization<'a> {
    None,
    One(&'a [u8]),
    Several,
}

/// Whether a token without a `pay` claim passes on a request that carries an Authorization header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Required,
    Optional,
}

/// The HS256 secret shared with the attestation service, as `jsonwebtoken` keys (wiped on drop, never printed).
pub struct AttestationKey {
    verifying: DecodingKey,
    signing: EncodingKey,
}

impl AttestationKey {
    /// Parses the base64 secret (standard alphabet, padding optional; URL-safe accepted too).
    pub fn parse(text: &str) -> Result<Self, String> {
        super::ring_jwt::install();
        let text = text.trim();
        let unpadded = text.trim_end_matches('=');
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| STANDARD_NO_PAD.decode(unpadded))
            .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
            .map_err(|_| "is not valid base64".to_owned())?;
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < MIN_SECRET_LEN {
            return Err(format!(
                "is {} bytes long; an HS256 secret needs at least {MIN_SECRET_LEN}",
                bytes.len()
            ));
        }
        Ok(Self {
            verifying: DecodingKey::from_secret(&bytes),
            signing: EncodingKey::from_secret(&bytes),
        })
    }

    /// Signs `claims` as an HS256 token: for tests and tools that stand in for the attestation service.
    pub fn sign(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.signing)
            .expect("an HMAC key signs")
    }
}

impl fmt::Debug for AttestationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttestationKey([redacted])")
    }
}

/// base64(SHA-256(value)): what the `pay` claim of a token bound to this Authorization header value holds.
pub fn pay_claim(authorization_value: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(authorization_value))
}

/// Checks one request: its attestation token (`None` when the header is absent), its Authorization headers
/// and the binding rule. `jsonwebtoken` checks the signature (HS256 only) and `exp` (required, no leeway).
pub fn check(
    key: &AttestationKey,
    token: Option<&[u8]>,
    authorization: Authorization<'_>,
    binding: Binding,
) -> Result<(), Failure> {
    if matches!(authorization, Authorization::Several) {
        return Err(Failure::TwoAuthorization);
    }
    let token = token.ok_or(Failure::Missing)?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(Failure::Malformed);
    }
    let token = std::str::from_utf8(token)
        .map_err(|_| Failure::Malformed)?
        .trim();
    let header = jsonwebtoken::decode_header(token).map_err(|e| failure(e.kind(), token))?;
    if header.crit.is_some() {
        // Extensions we do not understand must not be ignored (RFC 7515 section 4.1.11).
        return Err(Failure::Malformed);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    // Approov tokens carry no audience; a token that names one is not refused for it.
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.verifying, &validation)
        .map_err(|e| failure(e.kind(), token))?
        .claims;

    if let Authorization::One(value) = authorization {
        match claims.get("pay") {
            None if binding == Binding::Optional => {}
            None => return Err(Failure::MissingPay),
            Some(Value::String(pay)) => {
                let expected = pay_claim(value);
                if !crate::crypto::constant_time_eq(pay.as_bytes(), expected.as_bytes()) {
                    return Err(Failure::BadPay);
                }
            }
            Some(_) => return Err(Failure::BadPay),
        }
    }
    Ok(())
}

fn failure(kind: &ErrorKind, token: &str) -> Failure {
    match kind {
        ErrorKind::InvalidAlgorithm => Failure::BadAlg,
        ErrorKind::InvalidSignature => Failure::BadSignature,
        ErrorKind::ExpiredSignature | ErrorKind::MissingRequiredClaim(_) => Failure::Expired,
        ErrorKind::Json(_) if super::jwt::names_an_unknown_algorithm(token) => Failure::BadAlg,
        _ => Failure::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use serde_json::json;

    const SECRET: &str = "c2hvcGQtYXR0ZXN0YXRpb24tc2VjcmV0LWZvci10ZXN0cy1vbmx5IQ==";

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn key() -> AttestationKey {
        AttestationKey::parse(SECRET).unwrap()
    }

    fn forge(header: &str, claims: &Value, key: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        format!(
            "{h}.{p}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    fn run(token: &str, auth: Authorization<'_>, binding: Binding) -> Result<(), Failure> {
        check(&key(), Some(token.as_bytes()), auth, binding)
    }

    #[test]
    fn a_good_token_passes_and_each_fault_has_its_reason() {
        let k = key();
        let good = k.sign(&json!({"exp": now() + 300}));
        assert_eq!(run(&good, Authorization::None, Binding::Required), Ok(()));
        assert_eq!(
            check(&k, None, Authorization::None, Binding::Required),
            Err(Failure::Missing)
        );
        let expired = k.sign(&json!({"exp": now() - 1}));
        assert_eq!(
            run(&expired, Authorization::None, Binding::Required),
            Err(Failure::Expired)
        );
        let no_exp = k.sign(&json!({"sub": "x"}));
        assert_eq!(
            run(&no_exp, Authorization::None, Binding::Required),
            Err(Failure::Expired)
        );
        let secret = STANDARD.decode(SECRET).unwrap();
        for alg in ["none", "HS512", "RS256", "hs256", "ES256"] {
            let token = forge(
                &format!(r#"{{"alg":"{alg}"}}"#),
                &json!({"exp": now() + 300}),
                &secret,
            );
            assert_eq!(
                run(&token, Authorization::None, Binding::Required),
                Err(Failure::BadAlg),
                "{alg}"
            );
        }
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"exp":2000}"#)
        );
        assert_eq!(
            run(&unsigned, Authorization::None, Binding::Required),
            Err(Failure::BadAlg)
        );
        let other_key = forge(
            r#"{"alg":"HS256"}"#,
            &json!({"exp": now() + 300}),
            &[7u8; 32],
        );
        assert_eq!(
            run(&other_key, Authorization::None, Binding::Required),
            Err(Failure::BadSignature)
        );
        let crit = forge(
            r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
            &json!({"exp": now() + 300}),
            &secret,
        );
        assert_eq!(
            run(&crit, Authorization::None, Binding::Required),
            Err(Failure::Malformed)
        );
        for junk in ["", "a.b", "a.b.c.d", "!!!.e30.e30", "e30.e30.e30"] {
            assert_eq!(
                run(junk, Authorization::None, Binding::Required),
                Err(Failure::Malformed),
                "{junk}"
            );
        }
        assert_eq!(
            run(
                &"a".repeat(MAX_TOKEN_LEN + 1),
                Authorization::None,
                Binding::Required
            ),
            Err(Failure::Malformed)
        );
    }

    #[test]
    fn the_pay_claim_binds_the_token_to_the_one_authorization_header() {
        let k = key();
        let auth = b"Bearer abc.def.ghi";
        let bound = k.sign(&json!({"exp": now() + 300, "pay": pay_claim(auth)}));
        let unbound = k.sign(&json!({"exp": now() + 300}));
        assert_eq!(
            run(&bound, Authorization::One(auth), Binding::Required),
            Ok(())
        );
        assert_eq!(
            run(
                &bound,
                Authorization::One(b"Bearer other"),
                Binding::Required
            ),
            Err(Failure::BadPay)
        );
        assert_eq!(
            run(
                &bound,
                Authorization::One(b"Bearer other"),
                Binding::Optional
            ),
            Err(Failure::BadPay)
        );
        assert_eq!(
            run(&unbound, Authorization::One(auth), Binding::Required),
            Err(Failure::MissingPay)
        );
        assert_eq!(
            run(&unbound, Authorization::One(auth), Binding::Optional),
            Ok(())
        );
        assert_eq!(
            run(&bound, Authorization::Several, Binding::Optional),
            Err(Failure::TwoAuthorization)
        );
        // No Authorization header: nothing to bind to.
        assert_eq!(run(&bound, Authorization::None, Binding::Required), Ok(()));
    }

    #[test]
    fn secrets_are_checked_and_never_printed() {
        assert!(AttestationKey::parse("not base64!").is_err());
        assert!(AttestationKey::parse("c2hvcnQ=").is_err());
        let k = key();
        assert_eq!(format!("{k:?}"), "AttestationKey([redacted])");
    }
}
