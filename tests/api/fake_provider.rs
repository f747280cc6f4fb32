//! A local sign-in provider for the Sign in with Apple and Google tests: it serves a JWKS over real HTTP (the
//! keys it is told to publish, or a 503 when it is "down"), counts how often it is asked, and signs ID tokens
//! and Apple notifications with RSA keys made for these tests only (`tests/api/keys/*.pem`, made with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`).
#![allow(dead_code)]

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{self as sig, KeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const KEY_A: &str = include_str!("keys/provider-a.pem");
pub const KEY_B: &str = include_str!("keys/provider-b.pem");

pub const APPLE_ISSUER: &str = "https://appleid.apple.com";
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
/// The app's bundle id (Apple) and client id (Google) the tests configure.
pub const APPLE_CLIENT: &str = "com.example.shop";
pub const GOOGLE_CLIENT: &str = "1234-android.apps.googleusercontent.com";

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("a PEM key")
}

/// A signing key and its name in the JWKS.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    der: Vec<u8>,
}

impl TestKey {
    pub fn new(kid: &str, pem: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            der: der(pem),
        }
    }

    pub fn jwk(&self) -> Value {
        let pair = sig::RsaKeyPair::from_pkcs8(&self.der).expect("an RSA key");
        let public = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
               "n": URL_SAFE_NO_PAD.encode(public.n), "e": URL_SAFE_NO_PAD.encode(public.e)})
    }

    /// `claims` as a JWT signed with this key (RS256, its kid).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        shopd::crypto::ring_jwt::install();
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(&self.der)).unwrap()
    }
}

struct Served {
    keys: Option<Vec<Value>>,
}

pub struct FakeProvider {
    /// The JWKS's URL, for `APPLE_JWKS_URL` / `GOOGLE_JWKS_URL`.
    pub jwks_url: String,
    served: Arc<Mutex<Served>>,
    fetches: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeProvider {
    /// Starts on a free port, publishing `keys`.
    pub async fn start(keys: &[&TestKey]) -> Self {
        let served = Arc::new(Mutex::new(Served {
            keys: Some(keys.iter().map(|k| k.jwk()).collect()),
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().unwrap().port();
        let (s, f) = (served.clone(), fetches.clone());
        let server = HttpServer::new(move || {
            let (s, f) = (s.clone(), f.clone());
            App::new().route(
                "/keys",
                web::get().to(move || {
                    let (s, f) = (s.clone(), f.clone());
                    async move {
                        f.fetch_add(1, Ordering::SeqCst);
                        match &s.lock().unwrap().keys {
                            Some(keys) => HttpResponse::Ok().json(json!({ "keys": keys })),
                            None => HttpResponse::ServiceUnavailable().finish(),
                        }
                    }
                }),
            )
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            jwks_url: format!("http://127.0.0.1:{port}/keys"),
            served,
            fetches,
            handle,
        }
    }

    pub fn publish(&self, keys: &[&TestKey]) {
        self.served.lock().unwrap().keys = Some(keys.iter().map(|k| k.jwk()).collect());
    }

    pub fn go_down(&self) {
        self.served.lock().unwrap().keys = None;
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The claims of an Apple identity token for `sub`, bound to the raw `nonce`.
pub fn apple_claims(sub: &str, nonce: &str) -> Value {
    json!({"iss": APPLE_ISSUER, "aud": APPLE_CLIENT, "sub": sub, "iat": now(), "exp": now() + 600,
           "nonce": hex::encode(Sha256::digest(nonce.as_bytes())), "nonce_supported": true,
           "email": format!("{sub}@privaterelay.appleid.com"), "email_verified": "true",
           "is_private_email": "true", "auth_time": now()})
}

/// The claims of a Google ID token for `sub`, bound to `nonce`.
pub fn google_claims(sub: &str, nonce: &str) -> Value {
    json!({"iss": GOOGLE_ISSUER, "aud": GOOGLE_CLIENT, "azp": GOOGLE_CLIENT, "sub": sub, "iat": now(),
           "exp": now() + 3600, "nonce": nonce, "email": "ada@example.com", "email_verified": true,
           "name": "Ada"})
}

/// Apple's server-to-server notification of `kind` for `sub` (its `events` is a JSON string).
pub fn apple_notification(kind: &str, sub: &str) -> Value {
    let events = json!({"type": kind, "sub": sub, "event_time": now() * 1000}).to_string();
    json!({"iss": APPLE_ISSUER, "aud": APPLE_CLIENT, "iat": now(), "jti": uuid::Uuid::new_v4().to_string(),
           "events": events})
}
