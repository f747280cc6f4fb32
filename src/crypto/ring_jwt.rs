//! The cryptography under `jsonwebtoken`: *ring*, the library rustls already runs on, plugged in through the
//! crate's own `CryptoProvider` seam. The crate's bundled RustCrypto provider would bring a second
//! generation of the RustCrypto crates and the `rsa` crate (RUSTSEC-2023-0071, no fixed version); *ring* does
//! every algorithm JWS names here: HMAC, EdDSA, ECDSA P-256/P-384, RSA PKCS#1 v1.5 and PSS.
//!
//! `install` must run before `jsonwebtoken` signs or verifies anything; every function of `jwt` and
//! `attestation` that uses it calls it first (it runs once).

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
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
    Ecdsa(sig::EcdsaKeyPair),
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
}

struct Signer(Algorithm, SigningKey);

enum VerifyingKey {
    Hmac(hmac::Key),
    Public(&'static dyn sig::VerificationAlgorithm, Vec<u8>),
    RsaComponents(&'static sig::RsaParameters, Vec<u8>, Vec<u8>),
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
    Some(match alg {
        Algorithm::RS256 => (&sig::RSA_PKCS1_2048_8192_SHA256, &sig::RSA_PKCS1_SHA256),
        Algorithm::RS384 => (&sig::RSA_PKCS1_2048_8192_SHA384, &sig::RSA_PKCS1_SHA384),
        Algorithm::RS512 => (&sig::RSA_PKCS1_2048_8192_SHA512, &sig::RSA_PKCS1_SHA512),
        Algorithm::PS256 => (&sig::RSA_PSS_2048_8192_SHA256, &sig::RSA_PSS_SHA256),
        Algorithm::PS384 => (&sig::RSA_PSS_2048_8192_SHA384, &sig::RSA_PSS_SHA384),
        Algorithm::PS512 => (&sig::RSA_PSS_2048_8192_SHA512, &sig::RSA_PSS_SHA512),
        _ => return None,
    })
}

fn ecdsa_of(
    alg: Algorithm,
) -> Option<(
    &'static sig::EcdsaSigningAlgorithm,
    &'static sig::EcdsaVerificationAlgorithm,
)> {
    match alg {
        Algorithm::ES256 => Some((
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            &sig::ECDSA_P256_SHA256_FIXED,
        )),
        Algorithm::ES384 => Some((
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            &sig::ECDSA_P384_SHA384_FIXED,
        )),
        _ => None,
    }
}

fn invalid_key(alg: Algorithm) -> Error {
    match alg {
        Algorithm::EdDSA => ErrorKind::InvalidEddsaKey.into(),
        Algorithm::ES256 | Algorithm::ES384 => ErrorKind::InvalidEcdsaKey.into(),
        _ => ErrorKind::InvalidKeyFormat.into(),
    }
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let (alg, der) = (*alg, key.as_bytes());
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let key = if let Some(hmac) = hmac_of(alg) {
        SigningKey::Hmac(hmac::Key::new(hmac, der))
    } else if let Some((_, encoding)) = rsa_of(alg) {
        let pair = sig::RsaKeyPair::from_der(der).or_else(|_| sig::RsaKeyPair::from_pkcs8(der));
        SigningKey::Rsa(pair.map_err(|_| invalid_key(alg))?, encoding)
    } else if let Some((signing, _)) = ecdsa_of(alg) {
        let pair = sig::EcdsaKeyPair::from_pkcs8(signing, der, &SystemRandom::new());
        SigningKey::Ecdsa(pair.map_err(|_| invalid_key(alg))?)
    } else {
        let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der);
        SigningKey::Ed25519(pair.map_err(|_| invalid_key(alg))?)
    };
    Ok(Box::new(Signer(alg, key)))
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let alg = *alg;
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let key = match (key.kind(), hmac_of(alg), rsa_of(alg), ecdsa_of(alg)) {
        (DecodingKeyKind::SecretOrDer(secret), Some(hmac), ..) => {
            VerifyingKey::Hmac(hmac::Key::new(hmac, secret))
        }
        (DecodingKeyKind::RsaModulusExponent { n, e }, _, Some((rsa, _)), _) => {
            VerifyingKey::RsaComponents(rsa, n.clone(), e.clone())
        }
        (DecodingKeyKind::SecretOrDer(der), _, Some((rsa, _)), _) => {
            VerifyingKey::Public(rsa, der.clone())
        }
        (DecodingKeyKind::SecretOrDer(point), _, _, Some((_, ecdsa))) => {
            VerifyingKey::Public(ecdsa, point.clone())
        }
        (DecodingKeyKind::SecretOrDer(public), ..) if alg == Algorithm::EdDSA => {
            VerifyingKey::Public(&sig::ED25519, public.clone())
        }
        _ => return Err(invalid_key(alg)),
    };
    Ok(Box::new(Verifier(alg, key)))
}

impl signature::Signer<Vec<u8>> for Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        match &self.1 {
            SigningKey::Hmac(key) => Ok(hmac::sign(key, msg).as_ref().to_vec()),
            SigningKey::Ed25519(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
            SigningKey::Ecdsa(pair) => pair
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            SigningKey::Rsa(pair, encoding) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &rng, msg, &mut out)
                    .map_err(|_| signature::Error::new())?;
                Ok(out)
            }
        }
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
            VerifyingKey::Public(alg, key) => {
                sig::UnparsedPublicKey::new(*alg, key).verify(msg, signature)
            }
            VerifyingKey::RsaComponents(params, n, e) => {
                sig::RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
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
