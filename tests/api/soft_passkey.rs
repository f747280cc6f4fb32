//! A software WebAuthn authenticator and client (what the phone does), for the passkey tests only.
//! Input: the options JSON exactly as the server sends it (`CreationChallengeResponse` /
//! `RequestChallengeResponse`, i.e. `{"publicKey": {...}}`). Output: the JSON the client POSTs back
//! (`RegisterPublicKeyCredential` / `PublicKeyCredential`), built by hand with p256 + ciborium +
//! sha2 + base64 + serde_json — no webauthn crate involved.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ciborium::value::Value as Cbor;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const FLAG_UP: u8 = 0x01;
pub const FLAG_UV: u8 = 0x04;
pub const FLAG_BE: u8 = 0x08; // backup eligible (synced passkey)
pub const FLAG_BS: u8 = 0x10; // backed up
pub const FLAG_AT: u8 = 0x40; // attested credential data present
// 0x80 = ED (extension data present): never set here.

/// How the client/authenticator behaves for one ceremony; every field can be bent to make a test fail.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// clientDataJSON.origin (a browser puts the page origin; Android `android:apk-key-hash:...`).
    pub origin: String,
    /// RP id hashed into authenticatorData; `None` = take it from the options (rp.id / rpId).
    pub rp_id_override: Option<String>,
    /// Flags byte of authenticatorData (AT is added on create).
    pub flags: u8,
    /// signCount in authenticatorData. Synced passkeys (Apple, Google) send 0 forever.
    pub sign_count: u32,
}

impl Behaviour {
    pub fn browser(origin: &str) -> Self {
        Behaviour {
            origin: origin.into(),
            rp_id_override: None,
            flags: FLAG_UP | FLAG_UV,
            sign_count: 0,
        }
    }
}

/// What the authenticator keeps: the private key, bound to an RP id and a user handle.
#[derive(Clone, Debug)]
pub struct SoftCredential {
    pub id: Vec<u8>,
    pub rp_id: String,
    pub user_handle: Vec<u8>,
    pub key: SigningKey,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .expect("base64url")
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("getrandom");
    b
}

fn new_key() -> SigningKey {
    loop {
        // from_slice rejects 0 and values >= n (astronomically rare): retry.
        if let Ok(k) = SigningKey::from_slice(&random_bytes::<32>()) {
            return k;
        }
    }
}

/// clientDataJSON as a browser serialises it (key order type, challenge, origin, crossOrigin).
/// The challenge is re-encoded base64url-no-pad from the decoded bytes, as browsers do.
pub fn client_data_json(type_: &str, challenge_b64: &str, origin: &str) -> Vec<u8> {
    let challenge = b64(&unb64(challenge_b64));
    serde_json::to_vec(&json!({
        "type": type_, "challenge": challenge, "origin": origin, "crossOrigin": false
    }))
    .expect("json")
}

/// COSE_Key (RFC 9053) for an EC2 P-256 ES256 public key, CTAP2 canonical key order.
pub fn cose_key(key: &SigningKey) -> Vec<u8> {
    let point = key.verifying_key().to_sec1_point(false);
    let (x, y) = (
        point.x().expect("x").to_vec(),
        point.y().expect("y").to_vec(),
    );
    let map = Cbor::Map(vec![
        (Cbor::Integer(1.into()), Cbor::Integer(2.into())), // kty: EC2
        (Cbor::Integer(3.into()), Cbor::Integer((-7).into())), // alg: ES256
        (Cbor::Integer((-1).into()), Cbor::Integer(1.into())), // crv: P-256
        (Cbor::Integer((-2).into()), Cbor::Bytes(x)),
        (Cbor::Integer((-3).into()), Cbor::Bytes(y)),
    ]);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&map, &mut out).expect("cbor");
    out
}

/// authenticatorData: rpIdHash(32) | flags(1) | signCount(4, big-endian) | [attested credential data].
pub fn authenticator_data(
    rp_id: &str,
    flags: u8,
    sign_count: u32,
    attested: Option<(&[u8], &SigningKey)>,
) -> Vec<u8> {
    let mut ad = Vec::with_capacity(200);
    ad.extend_from_slice(&Sha256::digest(rp_id.as_bytes()));
    ad.push(if attested.is_some() {
        flags | FLAG_AT
    } else {
        flags
    });
    ad.extend_from_slice(&sign_count.to_be_bytes());
    if let Some((cred_id, key)) = attested {
        ad.extend_from_slice(&[0u8; 16]); // AAGUID: zeros (no attestation)
        ad.extend_from_slice(&(cred_id.len() as u16).to_be_bytes());
        ad.extend_from_slice(cred_id);
        ad.extend_from_slice(&cose_key(key));
    }
    ad
}

/// navigator.credentials.create(): options JSON in, RegisterPublicKeyCredential JSON out.
pub fn create(options: &Value, how: &Behaviour) -> (Value, SoftCredential) {
    create_with(options, how, None)
}

/// Like `create`, but re-registers an existing key pair / credential id (a buggy or hostile
/// authenticator ignoring excludeCredentials).
pub fn create_with(
    options: &Value,
    how: &Behaviour,
    reuse: Option<&SoftCredential>,
) -> (Value, SoftCredential) {
    let pk = &options["publicKey"];
    assert!(
        pk["pubKeyCredParams"]
            .as_array()
            .expect("pubKeyCredParams")
            .iter()
            .any(|p| p["alg"] == -7),
        "server does not accept ES256"
    );
    let rp_id = how
        .rp_id_override
        .clone()
        .unwrap_or_else(|| pk["rp"]["id"].as_str().expect("rp.id").to_owned());
    let user_handle = unb64(pk["user"]["id"].as_str().expect("user.id"));
    let cdj = client_data_json(
        "webauthn.create",
        pk["challenge"].as_str().expect("challenge"),
        &how.origin,
    );

    let cred = match reuse {
        Some(c) => SoftCredential {
            user_handle,
            rp_id: rp_id.clone(),
            ..c.clone()
        },
        None => SoftCredential {
            id: random_bytes::<32>().to_vec(),
            rp_id: rp_id.clone(),
            user_handle,
            key: new_key(),
        },
    };
    let auth_data = authenticator_data(
        &rp_id,
        how.flags,
        how.sign_count,
        Some((&cred.id, &cred.key)),
    );
    let att_obj = Cbor::Map(vec![
        (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
        (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
        (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
    ]);
    let mut att_bytes = Vec::new();
    ciborium::ser::into_writer(&att_obj, &mut att_bytes).expect("cbor");

    let response = json!({
        "id": b64(&cred.id),
        "rawId": b64(&cred.id),
        "type": "public-key",
        "response": {
            "attestationObject": b64(&att_bytes),
            "clientDataJSON": b64(&cdj),
            "transports": ["internal", "hybrid"],
        },
        "clientExtensionResults": { "credProps": { "rk": true } },
    });
    (response, cred)
}

/// navigator.credentials.get(): options JSON in, PublicKeyCredential (assertion) JSON out.
pub fn get(options: &Value, cred: &SoftCredential, how: &Behaviour) -> Value {
    let pk = &options["publicKey"];
    if let Some(allow) = pk["allowCredentials"].as_array().filter(|a| !a.is_empty()) {
        assert!(
            allow
                .iter()
                .any(|c| unb64(c["id"].as_str().unwrap()) == cred.id),
            "credential not allowed"
        );
    }
    let rp_id = how
        .rp_id_override
        .clone()
        .unwrap_or_else(|| pk["rpId"].as_str().expect("rpId").to_owned());
    let cdj = client_data_json(
        "webauthn.get",
        pk["challenge"].as_str().expect("challenge"),
        &how.origin,
    );
    let auth_data = authenticator_data(&rp_id, how.flags, how.sign_count, None);

    // ES256: ECDSA P-256 over SHA-256(authData || SHA-256(clientDataJSON)), DER-encoded.
    let mut signed = auth_data.clone();
    signed.extend_from_slice(&Sha256::digest(&cdj));
    let sig: Signature = cred.key.sign(&signed);
    let sig_der = sig.to_der();

    json!({
        "id": b64(&cred.id),
        "rawId": b64(&cred.id),
        "type": "public-key",
        "response": {
            "authenticatorData": b64(&auth_data),
            "clientDataJSON": b64(&cdj),
            "signature": b64(sig_der.as_bytes()),
            "userHandle": b64(&cred.user_handle),
        },
        "clientExtensionResults": {},
    })
}
