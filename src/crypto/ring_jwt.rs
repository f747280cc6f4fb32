//! The cryptography under `jsonwebtoken`: *ring*, the library rustls already runs on, plugged in through the
//! crate's own `CryptoProvider` seam. The crate's bundled RustCrypto provider would bring a second
//! generation of the RustCrypto crates and the `rsa` crate (RUSTSEC-2023-0071, no fixed version).
//!
//! It does the algorithms shopd's tokens use, EdDSA (access tokens) and HMAC (attestation tokens), and the
//! ones of the platforms' tokens that issues 29 and 30 check: RS256/384/512 (PKCS#1 v1.5, 2048 bits or more:
//! Apple's and Google's ID tokens, from a JWKS's `n` and `e` or a PKCS#1 DER key) and ES256/ES384 (the JWS
//! `r‖s` form: Play Integrity; from a JWKS's `x` and `y` or an uncompressed point). Signing RS and ES is for
//! tests that play those issuers (PKCS#8 DER keys). Anything else (PS*, ES512) is refused.
//! `install` must run before `jsonwebtoken` signs or verifies anything; the key parsers of `jwt` and
//! `attestation` call it (it runs once).

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::EllipticCurve;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        ed_pub_components_from_private_key: ed25519_public_key,
        ..KeyUtils::new_unimplemented()
    },
};

/// Makes *ring* `jsonwebtoken`'s provider for this process; later calls do nothing.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Only fails when a provider is installed already, which only this function does.
        let _ = PROVIDER.install_default();
    });
}

enum SigningKey {
    Hmac(hmac::Key),
    Ed25519(sig::Ed25519KeyPair),
    Rsa(&'static dyn sig::RsaEncoding, sig::RsaKeyPair),
    Ecdsa(sig::EcdsaKeyPair),
}

struct Signer(Algorithm, SigningKey);

enum VerifyingKey {
    Hmac(hmac::Key),
    Ed25519(Vec<u8>),
    /// A JWK's modulus and exponent.
    RsaComponents(&'static sig::RsaParameters, Vec<u8>, Vec<u8>),
    /// PKCS#1 DER of an RSA key, or an uncompressed EC point: *ring*'s own parsing.
    Unparsed(&'static dyn sig::VerificationAlgorithm, Vec<u8>),
}

struct Verifier(Algorithm, VerifyingKey);

fn hmac_of(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn rsa_of(alg: Algorithm) -> Option<(&'static sig::RsaParameters, &'static dyn sig::RsaEncoding)> {
    match alg {
        Algorithm::RS256 => Some((&sig::RSA_PKCS1_2048_8192_SHA256, &sig::RSA_PKCS1_SHA256)),
        Algorithm::RS384 => Some((&sig::RSA_PKCS1_2048_8192_SHA384, &sig::RSA_PKCS1_SHA384)),
        Algorithm::RS512 => Some((&sig::RSA_PKCS1_2048_8192_SHA512, &sig::RSA_PKCS1_SHA512)),
        _ => None,
    }
}

fn ecdsa_of(
    alg: Algorithm,
) -> Option<(
    &'static sig::EcdsaVerificationAlgorithm,
    &'static sig::EcdsaSigningAlgorithm,
)> {
    match alg {
        Algorithm::ES256 => Some((
            &sig::ECDSA_P256_SHA256_FIXED,
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
        )),
        Algorithm::ES384 => Some((
            &sig::ECDSA_P384_SHA384_FIXED,
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
        )),
        _ => None,
    }
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let bytes = key.as_bytes();
    let key = if let Some(hmac) = hmac_of(*alg) {
        SigningKey::Hmac(hmac::Key::new(hmac, bytes))
    } else if *alg == Algorithm::EdDSA {
        SigningKey::Ed25519(
            sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
                .map_err(|_| ErrorKind::InvalidEddsaKey)?,
        )
    } else if let Some((_, encoding)) = rsa_of(*alg) {
        let pair = sig::RsaKeyPair::from_pkcs8(bytes)
            .or_else(|_| sig::RsaKeyPair::from_der(bytes))
            .map_err(|_| ErrorKind::InvalidRsaKey("not a PKCS#8 or PKCS#1 RSA key".into()))?;
        SigningKey::Rsa(encoding, pair)
    } else if let Some((_, signing)) = ecdsa_of(*alg) {
        SigningKey::Ecdsa(
            sig::EcdsaKeyPair::from_pkcs8(signing, bytes, &SystemRandom::new())
                .map_err(|_| ErrorKind::InvalidEcdsaKey)?,
        )
    } else {
        return Err(ErrorKind::InvalidAlgorithm.into());
    };
    Ok(Box::new(Signer(*alg, key)))
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let key = match (key.kind(), *alg) {
        (DecodingKeyKind::RsaModulusExponent { n, e }, alg) => {
            let (params, _) = rsa_of(alg).ok_or(ErrorKind::InvalidAlgorithm)?;
            VerifyingKey::RsaComponents(params, n.clone(), e.clone())
        }
        (DecodingKeyKind::SecretOrDer(bytes), alg) => {
            if let Some(hmac) = hmac_of(alg) {
                VerifyingKey::Hmac(hmac::Key::new(hmac, bytes))
            } else if alg == Algorithm::EdDSA {
                VerifyingKey::Ed25519(bytes.clone())
            } else if let Some((params, _)) = rsa_of(alg) {
                VerifyingKey::Unparsed(params, bytes.clone())
            } else if let Some((verification, _)) = ecdsa_of(alg) {
                VerifyingKey::Unparsed(verification, bytes.clone())
            } else {
                return Err(ErrorKind::InvalidAlgorithm.into());
            }
        }
    };
    Ok(Box::new(Verifier(*alg, key)))
}

impl signature::Signer<Vec<u8>> for Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(match &self.1 {
            SigningKey::Hmac(key) => hmac::sign(key, msg).as_ref().to_vec(),
            SigningKey::Ed25519(pair) => pair.sign(msg).as_ref().to_vec(),
            SigningKey::Rsa(encoding, pair) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &SystemRandom::new(), msg, &mut out)
                    .map_err(|_| signature::Error::new())?;
                out
            }
            SigningKey::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), msg)
                .map_err(|_| signature::Error::new())?
                .as_ref()
                .to_vec(),
        })
    }
}

impl JwtSigner for Signer {
    fn algorithm(&self) -> Algorithm {
        self.0
    }
}

impl signature::Verifier<Vec<u8>> for Verifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let checked = match &self.1 {
            VerifyingKey::Hmac(key) => hmac::verify(key, msg, signature),
            VerifyingKey::Ed25519(public) => {
                sig::UnparsedPublicKey::new(&sig::ED25519, public).verify(msg, signature)
            }
            VerifyingKey::RsaComponents(params, n, e) => {
                sig::RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
            }
            VerifyingKey::Unparsed(algorithm, public) => {
                sig::UnparsedPublicKey::new(*algorithm, public).verify(msg, signature)
            }
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> Algorithm {
        self.0
    }
}

/// The public key of a PKCS#8 Ed25519 private key, for `jwk::Jwk::from_encoding_key`.
fn ed25519_public_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    if *curve != EllipticCurve::Ed25519 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
        .map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(pair.public_key().as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
    use ring::rand::SystemRandom;
    use ring::signature::{self as sig, KeyPair};
    use serde_json::{Value, json};

    use crate::crypto::test_keys::TEST_RSA_PKCS8;

    fn claims() -> Value {
        json!({"sub": "001234.abcdef", "exp": chrono::Utc::now().timestamp() + 600})
    }

    fn check(token: &str, key: &DecodingKey, alg: Algorithm) -> bool {
        let mut validation = Validation::new(alg);
        validation.validate_aud = false;
        decode::<Value>(token, key, &validation).is_ok()
    }

    fn tampered(token: &str) -> String {
        let (head, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[0] ^= 1;
        format!("{head}.{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    #[test]
    fn rs256_tokens_verify_against_a_jwks_modulus_and_exponent() {
        super::install();
        let der = STANDARD.decode(TEST_RSA_PKCS8).unwrap();
        let token = encode(
            &Header::new(Algorithm::RS256),
            &claims(),
            &EncodingKey::from_rsa_der(&der),
        )
        .unwrap();
        let pair = sig::RsaKeyPair::from_pkcs8(&der).unwrap();
        let public = pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(sig::RsaPublicKeyComponents::<Vec<u8>>::from(public).n);
        let e = URL_SAFE_NO_PAD.encode(sig::RsaPublicKeyComponents::<Vec<u8>>::from(public).e);
        let jwk_key = DecodingKey::from_rsa_components(&n, &e).unwrap();
        assert!(check(&token, &jwk_key, Algorithm::RS256));
        let der_key = DecodingKey::from_rsa_der(public.as_ref());
        assert!(check(&token, &der_key, Algorithm::RS256), "PKCS#1 DER too");
        assert!(!check(&tampered(&token), &jwk_key, Algorithm::RS256));
        assert!(
            !check(&token, &jwk_key, Algorithm::RS512),
            "the algorithm is the verifier's, not the token's"
        );
        assert!(
            !check(&token, &jwk_key, Algorithm::PS256),
            "PS256 is not done"
        );
    }

    #[test]
    fn es256_tokens_verify_against_a_jwks_point_and_no_other_key() {
        super::install();
        let rng = SystemRandom::new();
        let make = || {
            let pkcs8 =
                sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .unwrap();
            let pair = sig::EcdsaKeyPair::from_pkcs8(
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                pkcs8.as_ref(),
                &rng,
            )
            .unwrap();
            let point = pair.public_key().as_ref().to_vec();
            let key = DecodingKey::from_ec_components(
                &URL_SAFE_NO_PAD.encode(&point[1..33]),
                &URL_SAFE_NO_PAD.encode(&point[33..65]),
            )
            .unwrap();
            (pkcs8.as_ref().to_vec(), key)
        };
        let (pkcs8, key) = make();
        let (_, other) = make();
        let token = encode(
            &Header::new(Algorithm::ES256),
            &claims(),
            &EncodingKey::from_ec_der(&pkcs8),
        )
        .unwrap();
        let signature = URL_SAFE_NO_PAD
            .decode(token.rsplit_once('.').unwrap().1)
            .unwrap();
        assert_eq!(signature.len(), 64, "the JWS r‖s form, not DER");
        assert!(check(&token, &key, Algorithm::ES256));
        assert!(!check(&token, &other, Algorithm::ES256));
        assert!(!check(&tampered(&token), &key, Algorithm::ES256));
        assert!(!check(&token, &key, Algorithm::ES384));
        assert!(
            !check(&token, &key, Algorithm::RS256),
            "an EC key is no RSA key"
        );
    }
}
