//! The secrets shopd needs, in one registry: `shopd keys generate` prints a fresh set of them, development
//! generates them once into `data/dev-keys.env`, and production refuses to start without each one.
//! A feature that needs a new secret adds one entry here.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub struct SecretSpec {
    pub var: &'static str,
    pub meaning: &'static str,
    pub generate: fn() -> String,
}

pub const SECRETS: &[SecretSpec] = &[
    SecretSpec {
        var: "PII_KEYS",
        meaning: "master keys that wrap each person's data key: kid:base64(32 bytes), first one active",
        generate: || key_entry('k'),
    },
    SecretSpec {
        var: "BLIND_INDEX_KEY",
        meaning: "HMAC key for phone and e-mail lookups: base64(32 bytes)",
        generate: || random_base64(32),
    },
    SecretSpec {
        var: "OTP_PEPPER",
        meaning: "HMAC key under which one-time codes are stored: base64(32 bytes)",
        generate: || random_base64(32),
    },
    SecretSpec {
        var: "STANDARD_WEBHOOK_SECRETS",
        meaning: "Standard Webhooks secrets (whsec_base64), the sandbox provider's and any other's",
        generate: || format!("whsec_{}", random_base64(32)),
    },
    SecretSpec {
        var: "ACCESS_TOKEN_KEYS",
        meaning: "Ed25519 keys signing access tokens: kid:base64(32-byte seed), first one signs",
        generate: || key_entry('t'),
    },
];

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    bytes
}

/// A fresh `kid:base64(32 bytes)` entry of a key ring, its id dated (`t20261125-3f9a`) so that an operator
/// sees which key is the newest.
pub fn key_entry(prefix: char) -> String {
    format!(
        "{}:{}",
        crate::crypto::dated_key_id(prefix),
        random_base64(32)
    )
}

fn random_base64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    STANDARD.encode(bytes)
}

/// A fresh value for every registered secret, in registry order.
pub fn generate_all() -> Vec<(&'static str, String)> {
    SECRETS.iter().map(|s| (s.var, (s.generate)())).collect()
}

/// Reads `path` (KEY=value lines), generates every registered secret it lacks, and writes the file back with
/// mode 0600 when anything was added. Returns all the values and whether the file changed.
pub fn ensure_dev_keys(path: &Path) -> io::Result<(BTreeMap<String, String>, bool)> {
    let mut values = match fs::read_to_string(path) {
        Ok(text) => parse_env_lines(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e),
    };
    let mut changed = false;
    for spec in SECRETS {
        if !values.contains_key(spec.var) {
            values.insert(spec.var.to_owned(), (spec.generate)());
            changed = true;
        }
    }
    if changed {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut text = String::from(
            "# Development keys made by shopd on first start. NEVER use them in production:\n\
             # run `shopd keys generate` for a production set and keep it in your secret store.\n",
        );
        for (k, v) in &values {
            text.push_str(&format!("{k}={v}\n"));
        }
        let tmp = path.with_extension("env.tmp");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
    }
    Ok((values, changed))
}

pub fn parse_env_lines(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}
