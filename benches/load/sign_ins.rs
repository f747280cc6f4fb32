//! The platform sign-ins of issue 30 as the harness drives them: a local Apple serving its JWKS (shopd runs
//! with `APPLE_CLIENT_IDS` and `APPLE_JWKS_URL` pointed at it), the identity tokens it signs (RS256, the
//! tests' key), and the tests' software passkey authenticator.

use std::net::TcpListener;

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{self as sig, KeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[path = "../../tests/api/soft_passkey.rs"]
pub mod soft_passkey;

const KEY_PEM: &str = include_str!("../../tests/api/keys/provider-a.pem");
const KID: &str = "load-harness-apple";
/// The bundle id shopd is configured with (`APPLE_CLIENT_IDS`).
pub const APPLE_CLIENT: &str = "com.example.shop";

fn der() -> Vec<u8> {
    let body: String = KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    STANDARD.decode(body).expect("a PEM key")
}

pub struct FakeApple {
    /// For `APPLE_JWKS_URL`.
    pub jwks_url: String,
}

impl FakeApple {
    /// Starts on a free port, on a thread of its own: shopd fetches the set once and keeps it.
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let jwks_url = format!("http://{}/auth/keys", listener.local_addr()?);
        let pair = sig::RsaKeyPair::from_pkcs8(&der()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let public = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let set = json!({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID,
            "n": URL_SAFE_NO_PAD.encode(public.n), "e": URL_SAFE_NO_PAD.encode(public.e)}]});
        std::thread::Builder::new()
            .name("fake-apple".into())
            .spawn(move || {
                let result = actix_web::rt::System::new().block_on(async move {
                    HttpServer::new(move || {
                        let set = set.clone();
                        App::new().route(
                            "/auth/keys",
                            web::get().to(move || {
                                let set = set.clone();
                                async move { HttpResponse::Ok().json(set) }
                            }),
                        )
                    })
                    .workers(1)
                    .listen(listener)?
                    .run()
                    .await
                });
                if let Err(e) = result {
                    eprintln!("fake Apple stopped: {e}");
                }
            })?;
        Ok(Self { jwks_url })
    }
}

/// An identity token for `sub`, bound to the raw `nonce`, signed as Apple signs them.
pub fn identity_token(key: &EncodingKey, sub: &str, nonce: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": "https://appleid.apple.com", "aud": APPLE_CLIENT, "sub": sub, "iat": now,
        "exp": now + 600, "nonce": hex::encode(Sha256::digest(nonce.as_bytes())),
        "email": format!("{sub}@privaterelay.appleid.com"), "email_verified": true});
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.into());
    jsonwebtoken::encode(&header, &claims, key).expect("signing")
}

/// Signs one identity token per nonce, on every core (RSA signing is the harness's own cost, paid before the
/// measured time).
pub fn identity_tokens(nonces: &[String], subjects: usize) -> Vec<String> {
    shopd::crypto::ring_jwt::install();
    let key = EncodingKey::from_rsa_der(&der());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = nonces.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = nonces
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                let key = &key;
                scope.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(i, nonce)| {
                            let sub = format!("000123.load{:04}", (c * chunk + i) % subjects);
                            identity_token(key, &sub, nonce)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a signing thread"))
            .collect()
    })
}

/// The `/v1/auth/passkey/finish` body answering `begun` (`{ceremony_id, options}`) with `credential`.
pub fn passkey_assertion(begun: &Value, credential: &soft_passkey::SoftCredential) -> String {
    let how = soft_passkey::Behaviour::browser("https://shop.example.com");
    let assertion = soft_passkey::get(&begun["options"], credential, &how);
    json!({"ceremony_id": begun["ceremony_id"], "credential": assertion}).to_string()
}
