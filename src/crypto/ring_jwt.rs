//! The cryptography under `jsonwebtoken`: *ring*, the library rustls already runs on, plugged in through the
//! crate's own `CryptoProvider` seam. The crate's bundled RustCrypto provider would bring a second
//! generation of the RustCrypto crates and the `rsa` crate (RUSTSEC-2023-0071, no fixed version).
//!
//! It does the algorithms shopd's tokens use: EdDSA (access tokens) and HMAC (attestation tokens). Another
//! one (RS256 for Apple's and Google's ID tokens, ES256 for Play Integrity) is an arm here, on *ring*'s own
//! verifier. `install` must run before `jsonwebtoken` signs or verifies anything; the key parsers of `jwt`
//! and `attestation` call it (it runs once).

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::EllipticCurve;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::hmac;
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
}

struct Signer(Algorithm, SigningKey);

enum VerifyingKey {
    Hmac(hmac::Key),
    Ed25519(Vec<u8>),
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

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let key = match (hmac_of(*alg), *alg) {
        (Some(hmac), _) if key.family() == alg.family() => {
            SigningKey::Hmac(hmac::Key::new(hmac, key.as_bytes()))
        }
        (None, Algorithm::EdDSA) if key.family() == alg.family() => SigningKey::Ed25519(
            sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.as_bytes())
                .map_err(|_| ErrorKind::InvalidEddsaKey)?,
        ),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(Box::new(Signer(*alg, key)))
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let DecodingKeyKind::SecretOrDer(bytes) = key.kind() else {
        return Err(ErrorKind::InvalidKeyFormat.into());
    };
    let key = match (hmac_of(*alg), *alg) {
        (Some(hmac), _) if key.family() == alg.family() => {
            VerifyingKey::Hmac(hmac::Key::new(hmac, bytes))
        }
        (None, Algorithm::EdDSA) if key.family() == alg.family() => {
            VerifyingKey::Ed25519(bytes.clone())
        }
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(Box::new(Verifier(*alg, key)))
}

impl signature::Signer<Vec<u8>> for Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(match &self.1 {
            SigningKey::Hmac(key) => hmac::sign(key, msg).as_ref().to_vec(),
            SigningKey::Ed25519(pair) => pair.sign(msg).as_ref().to_vec(),
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
