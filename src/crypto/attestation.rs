//! App attestation tokens (DESIGN section 8), Approov-style: a JWT signed HS256 with a secret shared with the
//! attestation service, proving that the request comes from a genuine copy of the shop's app. Only HS256 is
//! accepted (the `alg` of the header is compared, never trusted to pick the check), the signature is verified
//! in constant time before any claim is read, `exp` must be in the future, and on requests that carry an
//! `Authorization` header the `pay` claim must equal base64(SHA-256(that header's value)), binding the
//! attestation to the access token it travels with. Free of I/O and of HTTP types.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
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

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
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

/// The HS256 secret shared with the attestation service. Wiped on drop, never printed.
pub struct AttestationKey(Zeroizing<Vec<u8>>);

impl AttestationKey {
    /// Parses the base64 secret (standard alphabet, padding optional; URL-safe accepted too).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim_end_matches('='))
            })
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| "is not valid base64".to_owned())?;
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < MIN_SECRET_LEN {
            return Err(format!(
                "is {} bytes long; an HS256 secret needs at least {MIN_SECRET_LEN}",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key size")
    }

    /// Signs `claims` as an HS256 token: for tests and tools that stand in for the attestation service.
    pub fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("JSON serialises"));
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
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

fn json_object(part: &str) -> Result<Map<String, Value>, Failure> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Failure::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Failure::Malformed),
    }
}

/// Checks one request: its attestation token (`None` when the header is absent), its Authorization headers,
/// the binding rule, and the time now (seconds since the epoch).
pub fn check(
    key: &AttestationKey,
    token: Option<&[u8]>,
    authorization: Authorization<'_>,
    binding: Binding,
    now: i64,
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
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::Malformed);
    };

    let header_fields = json_object(header)?;
    match header_fields.get("alg") {
        Some(Value::String(alg)) if alg == "HS256" => {}
        Some(Value::String(_)) => return Err(Failure::BadAlg),
        _ => return Err(Failure::Malformed),
    }
    if header_fields.contains_key("crit") {
        // Extensions we do not understand must not be ignored (RFC 7515 section 4.1.11).
        return Err(Failure::Malformed);
    }

    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Failure::Malformed)?;
    let mut mac = key.mac();
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| Failure::BadSignature)?;

    let claims = json_object(payload)?;
    let expires = match claims.get("exp") {
        None => return Err(Failure::Expired),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.floor() as i64))
            .ok_or(Failure::Malformed)?,
        Some(_) => return Err(Failure::Malformed),
    };
    if expires <= now {
        return Err(Failure::Expired);
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "c2hvcGQtYXR0ZXN0YXRpb24tc2VjcmV0LWZvci10ZXN0cy1vbmx5IQ==";

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
        check(&key(), Some(token.as_bytes()), auth, binding, 1_000)
    }

    #[test]
    fn a_good_token_passes_and_each_fault_has_its_reason() {
        let k = key();
        let good = k.sign(&json!({"exp": 2_000}));
        assert_eq!(run(&good, Authorization::None, Binding::Required), Ok(()));
        assert_eq!(
            check(&k, None, Authorization::None, Binding::Required, 1_000),
            Err(Failure::Missing)
        );
        let expired = k.sign(&json!({"exp": 1_000}));
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
                &json!({"exp": 2_000}),
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
        let other_key = forge(r#"{"alg":"HS256"}"#, &json!({"exp": 2_000}), &[7u8; 32]);
        assert_eq!(
            run(&other_key, Authorization::None, Binding::Required),
            Err(Failure::BadSignature)
        );
        let crit = forge(
            r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
            &json!({"exp": 2_000}),
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
        let bound = k.sign(&json!({"exp": 2_000, "pay": pay_claim(auth)}));
        let unbound = k.sign(&json!({"exp": 2_000}));
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
