//! Field sealing, opening with a cached data key, and blind indexes, on a 64-byte value, beside bare
//! AES-256-GCM for scale. `cargo bench --bench crypto`; results in docs/performance.md.

use std::hint::black_box;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use criterion::{Criterion, criterion_group, criterion_main};
use shopd::crypto::{self, BlindIndexKey, Context, DataKey, IndexKind, KeyId};

fn bench(c: &mut Criterion) {
    let value = [0x5au8; 64];
    let key = DataKey::generate(KeyId::parse("d1").unwrap()).0;
    let ctx = Context {
        table: "customers",
        column: "phone",
        row_id: "0193a6f2-7c1e-7d3a-9b2f-2c4d5e6f7a8b",
    };
    let stored = crypto::seal(&key, &ctx, &value);
    let blind = BlindIndexKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let bare = Aes256Gcm::new_from_slice(&[7u8; 32]).unwrap();
    let nonce = Nonce::from([1u8; 12]);
    let bare_ct = bare
        .encrypt(
            &nonce,
            Payload {
                msg: &value,
                aad: b"",
            },
        )
        .unwrap();

    let mut group = c.benchmark_group("pii-64-bytes");
    group.bench_function("seal", |b| {
        b.iter(|| crypto::seal(&key, &ctx, black_box(&value)))
    });
    group.bench_function("open (cached data key)", |b| {
        b.iter(|| crypto::open(&key, &ctx, black_box(&stored)).unwrap())
    });
    group.bench_function("blind index (phone)", |b| {
        b.iter(|| blind.index(IndexKind::Phone, black_box("+447700900123")))
    });
    group.bench_function("bare AES-256-GCM decrypt", |b| {
        b.iter(|| {
            bare.decrypt(
                &nonce,
                Payload {
                    msg: black_box(&bare_ct),
                    aad: b"",
                },
            )
            .unwrap()
        })
    });
    group.finish();

    // The same through the vault: the data key read (an in-memory SQLite here) and unwrapped, then the open.
    let keys = shopd::config::Config::from_vars(&shopd::config::Vars::new(
        shopd::config::secrets::generate_all(),
    ))
    .unwrap()
    .keys;
    let vault = shopd::vault::Vault::new(&keys);
    let mut conn =
        shopd::db::establish(&shopd::config::DatabaseUrl::Sqlite(":memory:".into())).unwrap();
    shopd::db::run_pending_migrations(&mut conn).unwrap();
    vault.create_data_key(&mut conn, "p1").unwrap();
    let field = shopd::vault::Field {
        table: "customers",
        column: "phone",
        row_id: "p1",
    };
    let text = "x".repeat(64);
    let sealed = vault.seal(&mut conn, "p1", field, &text).unwrap();
    c.bench_function(
        "pii-64-bytes/vault open (data key read and unwrapped)",
        |b| {
            b.iter(|| {
                vault
                    .open(&mut conn, "p1", field, black_box(&sealed))
                    .unwrap()
            })
        },
    );
}

/// Standard Webhooks verification of a 1 KiB event against a bare HMAC-SHA256 of the same bytes (target ≤ 1.3×).
fn webhook(c: &mut Criterion) {
    use hmac::{Hmac, Mac};
    use shopd::crypto::webhook::{WebhookSecrets, sign_standard, verify_standard};
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let secrets = WebhookSecrets::standard(&[secret.to_owned()]).unwrap();
    let body = vec![b'x'; 1024];
    let ts = 1_700_000_000i64;
    let signature = sign_standard(secret, "msg_1", ts, &body).unwrap();
    let key =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &secret[6..]).unwrap();
    let mut group = c.benchmark_group("webhook-1KiB");
    group.bench_function("verify_standard", |b| {
        b.iter(|| {
            verify_standard(
                Some("msg_1"),
                Some("1700000000"),
                Some(black_box(&signature)),
                black_box(&body),
                &secrets,
                ts,
                std::time::Duration::from_secs(300),
            )
            .unwrap()
        })
    });
    group.bench_function("bare HMAC-SHA256", |b| {
        b.iter(|| {
            let mut mac = <Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(&key).unwrap();
            mac.update(b"msg_1.1700000000.");
            mac.update(black_box(&body));
            mac.finalize().into_bytes()
        })
    });
    group.finish();
}

criterion_group!(benches, bench, webhook);
criterion_main!(benches);
