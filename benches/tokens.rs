//! Signing and verifying a typical customer access token (EdDSA, `jsonwebtoken` on ring), verifying it
//! again through the cache of verified tokens (what an authenticated request pays after the token's first
//! request), and the token work of a refresh (a new refresh token and the SHA-256 it is stored and found
//! under).
//! `cargo bench --bench tokens`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shopd::auth::claims::{Audience, Claims, Expectations, verify};
use shopd::auth::sessions::{hash_refresh_token, new_refresh_token};
use shopd::auth::verified::{DEFAULT_CAPACITY, VerifiedTokens};
use shopd::crypto::jwt::SigningKeys;

fn bench(c: &mut Criterion) {
    let keys = SigningKeys::parse(&format!(
        "{},{}",
        shopd::config::secrets::key_entry('t'),
        "older:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
    ))
    .unwrap();
    // The time now: `jsonwebtoken` checks `exp` and `nbf` against the system clock.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = Claims {
        iss: "https://shop.example".to_owned(),
        aud: Audience::Customer,
        sub: "0193a6f2-7c1e-7d3a-9b2f-2c4d5e6f7a8b".to_owned(),
        sid: "0193a6f2-8000-7000-8000-000000000001".to_owned(),
        jti: "0193a6f2-8000-7000-8000-000000000002".to_owned(),
        iat: now,
        nbf: now,
        exp: now + 900,
        auth_time: now - 60,
        amr: vec!["pwd".into()],
        role: None,
    };
    let expect = Expectations {
        issuer: "https://shop.example",
        audience: Audience::Customer,
        now,
    };
    let token = keys.sign(&claims);
    assert_eq!(verify(&keys, &token, &expect), Ok(claims.clone()));

    let mut group = c.benchmark_group("access-token-customer");
    group.bench_function("sign", |b| b.iter(|| keys.sign(black_box(&claims))));
    group.bench_function("verify", |b| {
        b.iter(|| verify(&keys, black_box(&token), &expect).unwrap())
    });
    let verified = VerifiedTokens::new(DEFAULT_CAPACITY);
    verified.verify(&keys, &token, &expect).unwrap();
    group.bench_function("verify again (verified-token cache hit)", |b| {
        b.iter(|| verified.verify(&keys, black_box(&token), &expect).unwrap())
    });
    group.finish();

    let presented = new_refresh_token();
    let mut group = c.benchmark_group("refresh-token");
    group.bench_function("new token and its stored hash", |b| {
        b.iter(|| hash_refresh_token(&new_refresh_token()))
    });
    group.bench_function("hash of the presented token", |b| {
        b.iter(|| hash_refresh_token(black_box(&presented)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
