//! The platforms' ID tokens (Sign in with Apple, Sign in with Google; issue 30), verified with `jsonwebtoken`
//! against the provider's JWKS: RS256 only, the issuer, one of the configured audiences (client or bundle ids),
//! `exp`, `iat` not in the future, and the nonce — Apple's `nonce` claim is the SHA-256 (hex) of the raw nonce the
//! app made; Google's is the nonce itself. The JWKS is fetched once and kept; an unknown `kid` fetches it again
//! (at most once a minute, so a stream of forged kids cannot make shopd hammer the provider), and so does a set
//! older than an hour. A provider that cannot be reached with no key to go on is `Unavailable` (a 503), never a
//! sign-in and never a 500.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The longest ID token looked at.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock skew allowed on `exp` and `iat`.
const LEEWAY_SECS: u64 = 30;
/// An unknown `kid` refetches the JWKS at most this often.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(60);
/// A JWKS older than this is fetched again at its next use.
const KEEP_JWKS: Duration = Duration::from_secs(3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How a provider binds its token to the app's sign-in attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceRule {
    /// The claim is the lower-case hex SHA-256 of the raw nonce (Apple).
    Sha256Hex,
    /// The claim is the nonce itself (Google).
    Plain,
}

/// An ID-token issuer as configured.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: &'static str,
    /// Every spelling of the issuer the provider uses (Google has two).
    pub issuers: &'static [&'static str],
    /// The app's client or bundle ids: the `aud` must be one of them.
    pub audiences: Vec<String>,
    pub nonce: NonceRule,
    pub jwks: Jwks,
}

pub const APPLE_ISSUERS: &[&str] = &["https://appleid.apple.com"];
pub const GOOGLE_ISSUERS: &[&str] = &["https://accounts.google.com", "accounts.google.com"];

/// The claims shopd reads of a verified ID token.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    /// Apple and Google send a boolean; Apple has sent the string `"true"`.
    #[serde(default, deserialize_with = "loose_bool")]
    pub email_verified: Option<bool>,
    #[serde(default)]
    nonce: Option<String>,
}

fn loose_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Bool(bool),
        Text(String),
    }
    Ok(match Option::<Loose>::deserialize(d)? {
        None => None,
        Some(Loose::Bool(b)) => Some(b),
        Some(Loose::Text(t)) => Some(t == "true"),
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    /// Refused: the reason, for the problem's detail and the log (never the token).
    #[error("the ID token is not valid: {0}")]
    Invalid(&'static str),
    /// The provider's keys could not be had.
    #[error("the sign-in provider's keys are unavailable: {0}")]
    Unavailable(String),
}

struct Cached {
    set: JwkSet,
    fetched: Option<Instant>,
}

/// A provider's JWKS, fetched from `url` and kept (cheap to clone: clones share it).
#[derive(Clone)]
pub struct Jwks {
    url: url::Url,
    client: reqwest::Client,
    cached: Arc<tokio::sync::Mutex<Cached>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl Jwks {
    pub fn new(url: url::Url) -> Self {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .expect("an HTTP client");
        Self {
            url,
            client,
            cached: Arc::new(tokio::sync::Mutex::new(Cached {
                set: JwkSet { keys: Vec::new() },
                fetched: None,
            })),
        }
    }

    async fn fetch(&self) -> Result<JwkSet, IdTokenError> {
        let unavailable = |e: &dyn std::fmt::Display| IdTokenError::Unavailable(e.to_string());
        let response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        if !response.status().is_success() {
            return Err(IdTokenError::Unavailable(format!(
                "the JWKS answered {}",
                response.status()
            )));
        }
        response.json::<JwkSet>().await.map_err(|e| unavailable(&e))
    }

    /// The key named `kid`: from the kept set, or after fetching it again when the set is old or does not have
    /// it (at most once a minute). A failed fetch keeps the set it had.
    pub async fn key(&self, kid: &str) -> Result<DecodingKey, IdTokenError> {
        let mut cached = self.cached.lock().await;
        let age = cached.fetched.map(|at| at.elapsed());
        let known = cached.set.find(kid).is_some();
        let stale = age.is_none_or(|a| a > KEEP_JWKS);
        let may_refetch = age.is_none_or(|a| a >= REFETCH_AT_MOST_EVERY);
        if stale || (!known && may_refetch) {
            match self.fetch().await {
                Ok(set) => {
                    cached.set = set;
                    cached.fetched = Some(Instant::now());
                }
                Err(e) if cached.set.find(kid).is_none() => return Err(e),
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "JWKS refetch failed; the kept keys serve")
                }
            }
        }
        let jwk = cached
            .set
            .find(kid)
            .ok_or(IdTokenError::Invalid("its key id is not the provider's"))?;
        DecodingKey::from_jwk(jwk)
            .map_err(|_| IdTokenError::Invalid("the provider's key is unusable"))
    }
}

/// Verifies `token` as an ID token of `provider` for the sign-in whose nonce is `nonce`, at `now` (Unix
/// seconds): the claims, or why not.
pub async fn verify(
    provider: &Provider,
    token: &str,
    nonce: &str,
    now: i64,
) -> Result<IdClaims, IdTokenError> {
    let claims: IdClaims = verify_signed(provider, token, &["exp", "sub"], now).await?;
    let expected = match provider.nonce {
        NonceRule::Sha256Hex => hex::encode(Sha256::digest(nonce.as_bytes())),
        NonceRule::Plain => nonce.to_owned(),
    };
    let matches = claims
        .nonce
        .as_deref()
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())));
    if nonce.is_empty() || !matches {
        return Err(IdTokenError::Invalid("its nonce is not this sign-in's"));
    }
    Ok(claims)
}

#[derive(Deserialize)]
struct Signed<T> {
    iat: i64,
    #[serde(flatten)]
    claims: T,
}

/// The claims of a JWT that `provider` signed (RS256, a key of its JWKS) for one of its audiences, issued by
/// it and not in the future; `exp` is checked when named in `also_required`, with the other claims that must be
/// there. Apple's server-to-server notifications are such tokens without an `exp` or a `sub`.
pub async fn verify_signed<T: serde::de::DeserializeOwned>(
    provider: &Provider,
    token: &str,
    also_required: &[&str],
    now: i64,
) -> Result<T, IdTokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(IdTokenError::Invalid("it is too long"));
    }
    crate::crypto::ring_jwt::install();
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| IdTokenError::Invalid("it is not a JWT"))?;
    if header.alg != Algorithm::RS256 {
        return Err(IdTokenError::Invalid("its algorithm is not RS256"));
    }
    let kid = header
        .kid
        .ok_or(IdTokenError::Invalid("it names no key id"))?;
    let key = provider.jwks.key(&kid).await?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(provider.issuers);
    validation.set_audience(&provider.audiences);
    let mut required = vec!["iat", "iss", "aud"];
    required.extend_from_slice(also_required);
    validation.set_required_spec_claims(&required);
    validation.validate_exp = also_required.contains(&"exp");
    validation.leeway = LEEWAY_SECS;
    let data = jsonwebtoken::decode::<Signed<T>>(token, &key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        IdTokenError::Invalid(match e.kind() {
            K::ExpiredSignature => "it has expired",
            K::InvalidIssuer => "its issuer is not the provider",
            K::InvalidAudience => "it is for another app",
            K::InvalidSignature => "its signature is wrong",
            K::MissingRequiredClaim(_) => "a required claim is missing",
            _ => "it cannot be read",
        })
    })?;
    if data.claims.iat > now + LEEWAY_SECS as i64 {
        return Err(IdTokenError::Invalid("it was issued in the future"));
    }
    Ok(data.claims.claims)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{self as sig, KeyPair};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::crypto::test_keys::TEST_RSA_PKCS8;

    /// A local server playing the provider's JWKS endpoint: the set it serves, whether it is up, and how many
    /// times it was asked.
    struct JwksServer {
        url: url::Url,
        served: Arc<Mutex<Option<Value>>>,
        fetches: Arc<AtomicUsize>,
    }

    async fn jwks_server(set: Value) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let served = Arc::new(Mutex::new(Some(set)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (served.clone(), fetches.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                f.fetch_add(1, Ordering::SeqCst);
                let body = s.lock().unwrap().clone();
                let response = match body {
                    Some(body) => {
                        let body = body.to_string();
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    None => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_owned(),
                };
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        JwksServer {
            url,
            served,
            fetches,
        }
    }

    fn der() -> Vec<u8> {
        STANDARD.decode(TEST_RSA_PKCS8).unwrap()
    }

    /// The test key as a JWK named `kid`.
    fn jwk(kid: &str) -> Value {
        let pair = sig::RsaKeyPair::from_pkcs8(&der()).unwrap();
        let public = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
               "n": URL_SAFE_NO_PAD.encode(public.n), "e": URL_SAFE_NO_PAD.encode(public.e)})
    }

    fn provider(jwks: &JwksServer, nonce: NonceRule) -> Provider {
        Provider {
            name: "test",
            issuers: GOOGLE_ISSUERS,
            audiences: vec!["com.example.shop".into(), "123-web.apps".into()],
            nonce,
            jwks: Jwks::new(jwks.url.clone()),
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn token(kid: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        crate::crypto::ring_jwt::install();
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(&der())).unwrap()
    }

    fn claims(nonce: &str) -> Value {
        json!({"iss": "accounts.google.com", "aud": "com.example.shop", "sub": "10769150350006150715113082367",
               "iat": now(), "exp": now() + 600, "nonce": nonce, "email": "a@example.com", "email_verified": "true"})
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    #[tokio::test]
    async fn a_good_token_verifies_and_every_check_refuses_its_own_flaw() {
        let server = jwks_server(json!({"keys": [jwk("k1")]})).await;
        let google = provider(&server, NonceRule::Plain);
        let good = verify(&google, &token("k1", claims("n-123")), "n-123", now())
            .await
            .unwrap();
        assert_eq!(good.sub, "10769150350006150715113082367");
        assert_eq!(good.email_verified, Some(true), "Apple's string form too");

        let cases: Vec<(Value, &str)> = vec![
            (
                with(claims("n-123"), "aud", json!("com.other.app")),
                "it is for another app",
            ),
            (
                with(claims("n-123"), "iss", json!("https://evil.example")),
                "its issuer is not the provider",
            ),
            (
                with(claims("n-123"), "exp", json!(now() - 120)),
                "it has expired",
            ),
            (
                with(claims("n-123"), "iat", json!(now() + 600)),
                "it was issued in the future",
            ),
            (
                with(claims("n-123"), "nonce", json!("n-456")),
                "its nonce is not this sign-in's",
            ),
        ];
        for (claims, reason) in cases {
            let refused = verify(&google, &token("k1", claims), "n-123", now()).await;
            assert_eq!(refused.unwrap_err(), IdTokenError::Invalid(reason));
        }
        let mut no_nonce = claims("n-123");
        no_nonce.as_object_mut().unwrap().remove("nonce");
        assert_eq!(
            verify(&google, &token("k1", no_nonce), "n-123", now())
                .await
                .unwrap_err(),
            IdTokenError::Invalid("its nonce is not this sign-in's")
        );
        let good = token("k1", claims("n-123"));
        let (head, signature) = good.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[5] ^= 1;
        let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(
            verify(&google, &forged, "n-123", now()).await.unwrap_err(),
            IdTokenError::Invalid("its signature is wrong")
        );
        let hs256 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("n-123"),
            &EncodingKey::from_secret(b"the public key as a secret"),
        )
        .unwrap();
        assert_eq!(
            verify(&google, &hs256, "n-123", now()).await.unwrap_err(),
            IdTokenError::Invalid("its algorithm is not RS256")
        );
        assert_eq!(server.fetches.load(Ordering::SeqCst), 1, "the JWKS is kept");
    }

    #[tokio::test]
    async fn apples_nonce_is_the_sha256_of_the_raw_one() {
        let server = jwks_server(json!({"keys": [jwk("apple-1")]})).await;
        let apple = Provider {
            issuers: APPLE_ISSUERS,
            ..provider(&server, NonceRule::Sha256Hex)
        };
        let raw = "a raw nonce the app made";
        let hashed = hex::encode(Sha256::digest(raw.as_bytes()));
        let claims = with(
            with(claims(&hashed), "iss", json!("https://appleid.apple.com")),
            "aud",
            json!("com.example.shop"),
        );
        assert!(
            verify(&apple, &token("apple-1", claims.clone()), raw, now())
                .await
                .is_ok()
        );
        assert!(
            verify(&apple, &token("apple-1", claims), &hashed, now())
                .await
                .is_err(),
            "the hash itself is not the raw nonce"
        );
    }

    #[tokio::test]
    async fn a_rotated_key_is_fetched_once_and_forged_kids_do_not_hammer_the_provider() {
        let server = jwks_server(json!({"keys": [jwk("old")]})).await;
        let google = provider(&server, NonceRule::Plain);
        assert!(
            verify(&google, &token("old", claims("n")), "n", now())
                .await
                .is_ok()
        );
        *server.served.lock().unwrap() = Some(json!({"keys": [jwk("old"), jwk("new")]}));
        // Within the minute of the first fetch the new kid is not fetched for…
        assert_eq!(
            verify(&google, &token("new", claims("n")), "n", now())
                .await
                .unwrap_err(),
            IdTokenError::Invalid("its key id is not the provider's")
        );
        assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
        // …after it, once: the rotated key serves, and unknown kids after it cost no fetch for a minute.
        google.jwks.cached.lock().await.fetched = Some(Instant::now() - REFETCH_AT_MOST_EVERY);
        assert!(
            verify(&google, &token("new", claims("n")), "n", now())
                .await
                .is_ok()
        );
        for _ in 0..5 {
            assert!(
                verify(&google, &token("forged", claims("n")), "n", now())
                    .await
                    .is_err()
            );
        }
        assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_provider_that_is_down_is_unavailable_not_a_sign_in() {
        let server = jwks_server(json!({"keys": [jwk("k1")]})).await;
        *server.served.lock().unwrap() = None;
        let google = provider(&server, NonceRule::Plain);
        let down = verify(&google, &token("k1", claims("n")), "n", now()).await;
        assert!(
            matches!(down, Err(IdTokenError::Unavailable(_))),
            "{down:?}"
        );
        // Up again: it signs in; down once more with the key kept (an old set refetched): the kept key serves.
        *server.served.lock().unwrap() = Some(json!({"keys": [jwk("k1")]}));
        assert!(
            verify(&google, &token("k1", claims("n")), "n", now())
                .await
                .is_ok()
        );
        *server.served.lock().unwrap() = None;
        google.jwks.cached.lock().await.fetched = Some(Instant::now() - KEEP_JWKS * 2);
        assert!(
            verify(&google, &token("k1", claims("n")), "n", now())
                .await
                .is_ok()
        );
        let gone = Provider {
            jwks: Jwks::new("http://127.0.0.1:9/keys".parse().unwrap()),
            ..provider(&server, NonceRule::Plain)
        };
        assert!(matches!(
            verify(&gone, &token("k1", claims("n")), "n", now()).await,
            Err(IdTokenError::Unavailable(_))
        ));
    }
}
