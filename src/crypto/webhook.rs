//! Payment webhook signatures, checked on the raw request bytes before anything is parsed.
//!
//! - Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…][,v0=…]`, HMAC-SHA256 over `t.body`, keyed with the bytes
//!   of the whole `whsec_…` string (as Stripe's own libraries do).
//! - Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> [v1,<base64> …]`,
//!   HMAC-SHA256 over `id.timestamp.body`, keyed with the base64-decoded part after `whsec_`.
//!
//! Several secrets may be live at once (rotation): any listed signature matching any secret passes. Signatures
//! are compared in constant time after their lengths. The timestamp must lie within the tolerance on either side.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::constant_time_eq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header, no `v1` entry, or an entry that is empty or not decodable.
    #[error("the signature is missing or malformed")]
    Missing,
    #[error("no signature matches")]
    Mismatch,
    /// The timestamp is not a number, or lies outside the tolerance.
    #[error("the timestamp is outside the tolerance")]
    TimestampOutsideTolerance,
}

impl SignatureError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "signature_missing",
            Self::Mismatch => "signature_mismatch",
            Self::TimestampOutsideTolerance => "timestamp_outside_tolerance",
        }
    }
}

/// A list of webhook secrets; Debug never shows them.
#[derive(Clone)]
pub struct WebhookSecrets(Vec<Zeroizing<Vec<u8>>>);

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecrets([redacted; {}])", self.0.len())
    }
}

impl WebhookSecrets {
    /// Stripe: each secret's key is the bytes of the whole `whsec_…` string.
    pub fn stripe(list: &[String]) -> Result<Self, String> {
        let keys = list
            .iter()
            .map(|s| {
                if s.starts_with("whsec_") && s.len() > 6 {
                    Ok(Zeroizing::new(s.as_bytes().to_vec()))
                } else {
                    Err("a Stripe webhook secret starts with whsec_".to_owned())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::non_empty(keys)
    }

    /// Standard Webhooks: each key is the base64 after `whsec_`.
    pub fn standard(list: &[String]) -> Result<Self, String> {
        let keys = list
            .iter()
            .map(|s| {
                let b64 = s.strip_prefix("whsec_").unwrap_or(s);
                STANDARD
                    .decode(b64)
                    .ok()
                    .filter(|k| k.len() >= 16)
                    .map(Zeroizing::new)
                    .ok_or_else(|| {
                        "a Standard Webhooks secret is whsec_ and base64 of at least 16 bytes"
                            .to_owned()
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::non_empty(keys)
    }

    /// Signs a Standard Webhooks message with the first secret, as a provider does.
    pub fn sign_standard(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let ts = timestamp.to_string();
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
        let mac = self.macs(&parts).next().expect("at least one secret");
        format!("v1,{}", STANDARD.encode(mac))
    }

    fn non_empty(keys: Vec<Zeroizing<Vec<u8>>>) -> Result<Self, String> {
        if keys.is_empty() {
            Err("no secret given".into())
        } else {
            Ok(Self(keys))
        }
    }

    fn macs<'a>(&'a self, parts: &'a [&'a [u8]]) -> impl Iterator<Item = [u8; 32]> + 'a {
        self.0.iter().map(move |key| {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key size");
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().into()
        })
    }
}

fn check_time(timestamp: &str, now: i64, tolerance: Duration) -> Result<i64, SignatureError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::TimestampOutsideTolerance)?;
    let tolerance = tolerance.as_secs() as i64;
    if (now - ts).abs() > tolerance {
        return Err(SignatureError::TimestampOutsideTolerance);
    }
    Ok(ts)
}

/// Verifies a `Stripe-Signature` header for `body`.
pub fn verify_stripe(
    header: Option<&str>,
    body: &[u8],
    secrets: &WebhookSecrets,
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => timestamp = Some(value),
            "v1" => {
                if let Ok(sig) = hex::decode(value)
                    && sig.len() == 32
                {
                    signatures.push(sig);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Missing)?;
    if signatures.is_empty() {
        return Err(SignatureError::Missing);
    }
    check_time(timestamp, now, tolerance)?;
    let parts: [&[u8]; 3] = [timestamp.as_bytes(), b".", body];
    any_match(secrets.macs(&parts), &signatures)
}

/// Verifies the Standard Webhooks headers for `body`.
pub fn verify_standard(
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    secrets: &WebhookSecrets,
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let (Some(id), Some(timestamp), Some(signature)) = (id, timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let signatures: Vec<Vec<u8>> = signature
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .filter(|sig| sig.len() == 32)
        .collect();
    if signatures.is_empty() || id.is_empty() {
        return Err(SignatureError::Missing);
    }
    check_time(timestamp, now, tolerance)?;
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
    any_match(secrets.macs(&parts), &signatures)
}

fn any_match(
    expected: impl Iterator<Item = [u8; 32]>,
    given: &[Vec<u8>],
) -> Result<(), SignatureError> {
    let mut matched = false;
    for mac in expected {
        for sig in given {
            // No early exit: the work done does not depend on which entry matches.
            matched |= constant_time_eq(&mac, sig);
        }
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Signs a Standard Webhooks message, as a provider (or `shopd simulate-payment`) does.
pub fn sign_standard(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, String> {
    let secrets = WebhookSecrets::standard(&[secret.to_owned()])?;
    let ts = timestamp.to_string();
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
    let mac = secrets.macs(&parts).next().expect("one secret");
    Ok(format!("v1,{}", STANDARD.encode(mac)))
}

/// Signs a Stripe payload, as Stripe does.
pub fn sign_stripe(secret: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let secrets = WebhookSecrets::stripe(&[secret.to_owned()])?;
    let ts = timestamp.to_string();
    let parts: [&[u8]; 3] = [ts.as_bytes(), b".", body];
    let mac = secrets.macs(&parts).next().expect("one secret");
    Ok(format!("t={ts},v1={}", hex::encode(mac)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOL: Duration = Duration::from_secs(300);

    fn standard(secret: &str) -> WebhookSecrets {
        WebhookSecrets::standard(&[secret.to_owned()]).unwrap()
    }

    #[test]
    fn the_published_standard_webhooks_vectors_verify() {
        let cases = [
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330i64,
                r#"{"test": 2432232314}"#,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            (
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                r#"{"email":"test@example.com","username":"test_user"}"#,
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
        ];
        for (secret, id, ts, payload, signature) in cases {
            let secrets = standard(secret);
            let t = ts.to_string();
            let check = |signature: &str, body: &[u8], now: i64| {
                verify_standard(
                    Some(id),
                    Some(&t),
                    Some(signature),
                    body,
                    &secrets,
                    now,
                    TOL,
                )
            };
            assert_eq!(check(signature, payload.as_bytes(), ts), Ok(()));
            assert_eq!(
                sign_standard(secret, id, ts, payload.as_bytes()).unwrap(),
                signature
            );
            // Refused: tampered body, re-serialised whitespace, `v1,` alone, truncated, stale, future.
            let tampered = payload.replacen('t', "T", 1);
            let reformatted = payload.replace(": ", ":").replace(',', ", ");
            for body in [tampered.as_str(), reformatted.as_str()] {
                assert_eq!(
                    check(signature, body.as_bytes(), ts),
                    Err(SignatureError::Mismatch)
                );
            }
            for bad in ["v1,", "", "v2,abc", &signature[..signature.len() - 4]] {
                assert_eq!(
                    check(bad, payload.as_bytes(), ts),
                    Err(SignatureError::Missing),
                    "{bad}"
                );
            }
            for now in [ts + 301, ts - 301] {
                assert_eq!(
                    check(signature, payload.as_bytes(), now),
                    Err(SignatureError::TimestampOutsideTolerance)
                );
            }
            assert_eq!(
                verify_standard(
                    Some(id),
                    Some("soon"),
                    Some(signature),
                    payload.as_bytes(),
                    &secrets,
                    ts,
                    TOL
                ),
                Err(SignatureError::TimestampOutsideTolerance)
            );
        }
    }

    #[test]
    fn rotation_accepts_any_live_secret_and_refuses_a_retired_one() {
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let new = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let body = b"{}";
        let sig_old = sign_standard(old, "msg_1", 100, body).unwrap();
        let both = WebhookSecrets::standard(&[new.to_owned(), old.to_owned()]).unwrap();
        let t = "100";
        assert!(
            verify_standard(
                Some("msg_1"),
                Some(t),
                Some(&sig_old),
                body,
                &both,
                100,
                TOL
            )
            .is_ok()
        );
        let retired = standard(new);
        assert_eq!(
            verify_standard(
                Some("msg_1"),
                Some(t),
                Some(&sig_old),
                body,
                &retired,
                100,
                TOL
            ),
            Err(SignatureError::Mismatch)
        );
        let several = format!("v1,AAAA {sig_old}");
        assert!(
            verify_standard(
                Some("msg_1"),
                Some(t),
                Some(&several),
                body,
                &both,
                100,
                TOL
            )
            .is_ok()
        );
    }

    #[test]
    fn stripe_signatures() {
        let secret = "whsec_test_secret_for_stripe";
        let secrets = WebhookSecrets::stripe(&[secret.to_owned()]).unwrap();
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
        let header = sign_stripe(secret, 1_700_000_000, body).unwrap();
        assert!(verify_stripe(Some(&header), body, &secrets, 1_700_000_000, TOL).is_ok());
        let with_v0 = format!("{header},v0=deadbeef");
        assert!(verify_stripe(Some(&with_v0), body, &secrets, 1_700_000_100, TOL).is_ok());
        assert_eq!(
            verify_stripe(Some(&header), b"{}", &secrets, 1_700_000_000, TOL),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_stripe(None, body, &secrets, 1_700_000_000, TOL),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_stripe(Some("t=1700000000"), body, &secrets, 1_700_000_000, TOL),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_stripe(
                Some(&header[..header.len() - 2]),
                body,
                &secrets,
                1_700_000_000,
                TOL
            ),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_stripe(Some(&header), body, &secrets, 1_700_000_000 + 301, TOL),
            Err(SignatureError::TimestampOutsideTolerance)
        );
        assert!(WebhookSecrets::stripe(&["nope".into()]).is_err());
        assert!(!format!("{secrets:?}").contains("whsec"));
    }

    proptest! {
        #[test]
        fn a_right_signature_verifies_and_any_one_bit_change_fails(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            key in proptest::collection::vec(any::<u8>(), 16..48),
            ts in 1_000_000_000i64..2_000_000_000,
            bit in any::<proptest::sample::Index>(),
            which in 0u8..3,
        ) {
            let secret = format!("whsec_{}", STANDARD.encode(&key));
            let secrets = standard(&secret);
            let sig = sign_standard(&secret, "msg_x", ts, &body).unwrap();
            let t = ts.to_string();
            prop_assert!(verify_standard(Some("msg_x"), Some(&t), Some(&sig), &body, &secrets, ts, TOL).is_ok());
            match which {
                0 if !body.is_empty() => {
                    let mut b = body.clone();
                    let i = bit.index(b.len() * 8);
                    b[i / 8] ^= 1 << (i % 8);
                    prop_assert!(verify_standard(Some("msg_x"), Some(&t), Some(&sig), &b, &secrets, ts, TOL).is_err());
                }
                1 => {
                    let other = (ts ^ (1 << bit.index(20))).to_string();
                    prop_assert!(verify_standard(Some("msg_x"), Some(&other), Some(&sig), &body, &secrets, ts, TOL).is_err());
                }
                _ => {
                    let mut raw = STANDARD.decode(&sig[3..]).unwrap();
                    let i = bit.index(raw.len() * 8);
                    raw[i / 8] ^= 1 << (i % 8);
                    let flipped = format!("v1,{}", STANDARD.encode(raw));
                    prop_assert!(verify_standard(Some("msg_x"), Some(&t), Some(&flipped), &body, &secrets, ts, TOL).is_err());
                }
            }
        }
    }
}
