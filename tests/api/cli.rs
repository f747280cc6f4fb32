//! The `shopd` binary itself, run as an operator would.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn shopd(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopd"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("shopd runs")
}

#[test]
fn production_refuses_to_start_naming_the_missing_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = shopd(dir.path(), &[("SHOPD_ENV", "production")], &["serve"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DATABASE_URL") && stderr.contains("required"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "production generates no keys"
    );
}

#[test]
fn production_refuses_development_keys() {
    let dir = tempfile::tempdir().unwrap();
    assert!(shopd(dir.path(), &[], &["migrate"]).status.success());
    let dev = std::fs::read_to_string(dir.path().join("data/dev-keys.env")).unwrap();
    let pii = dev
        .lines()
        .find_map(|l| l.strip_prefix("PII_KEYS="))
        .unwrap()
        .to_owned();
    let fresh = String::from_utf8(shopd(dir.path(), &[], &["keys", "generate"]).stdout).unwrap();
    let blind = fresh
        .lines()
        .find_map(|l| l.strip_prefix("BLIND_INDEX_KEY="))
        .unwrap()
        .to_owned();
    let out = shopd(
        dir.path(),
        &[
            ("SHOPD_ENV", "production"),
            ("DATABASE_URL", "sqlite://data/prod.db"),
            ("SHOP_DOMAIN", "shop.example.com"),
            ("PII_KEYS", &pii),
            ("BLIND_INDEX_KEY", &blind),
        ],
        &["migrate"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PII_KEYS") && stderr.contains("development key"),
        "{stderr}"
    );
}

#[test]
fn a_bad_value_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = shopd(dir.path(), &[("SHOPD_BIND", "everywhere")], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SHOPD_BIND"), "{stderr}");
}

#[test]
fn development_keys_are_generated_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let first = shopd(dir.path(), &[], &["migrate"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains("DEVELOPMENT KEYS"));
    let path = dir.path().join("data/dev-keys.env");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let keys = std::fs::read_to_string(&path).unwrap();
    for var in [
        "PII_KEYS=",
        "BLIND_INDEX_KEY=",
        "OTP_PEPPER=",
        "ACCESS_TOKEN_KEYS=",
    ] {
        assert!(keys.contains(var), "{var} in {keys}");
    }
    assert!(dir.path().join("data/shopd.db").exists());
    assert!(shopd(dir.path(), &[], &["migrate"]).status.success());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        keys,
        "generated once, then kept"
    );
}

#[test]
fn keys_generate_prints_a_fresh_complete_set() {
    let dir = tempfile::tempdir().unwrap();
    let a = String::from_utf8(shopd(dir.path(), &[], &["keys", "generate"]).stdout).unwrap();
    let b = String::from_utf8(shopd(dir.path(), &[], &["keys", "generate"]).stdout).unwrap();
    assert_ne!(a, b);
    let vars = shopd::config::Vars::new(
        a.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let mut vars = vars;
    vars.set("SHOPD_ENV", "production");
    vars.set("DATABASE_URL", "postgres://db.internal/shop");
    vars.set("SHOP_DOMAIN", "shop.example.com");
    vars.set("SMS_PROVIDER", "twilio");
    vars.set("TWILIO_ACCOUNT_SID", "AC123");
    vars.set("TWILIO_AUTH_TOKEN", "token");
    vars.set("TWILIO_FROM", "+15005550006");
    vars.set("SMS_ALLOWED_REGIONS", "GB");
    vars.set("SMTP_URL", "smtps://shop:password@mail.example.com");
    vars.set("PAYMENT_PROVIDER", "stripe");
    vars.set("STRIPE_SECRET_KEY", "sk_live_example");
    vars.set("STRIPE_WEBHOOK_SECRETS", "whsec_live_example");
    shopd::config::Config::from_vars(&vars).expect("a generated set holds every secret");
    assert!(
        !dir.path().join("data").exists(),
        "keys generate writes nothing"
    );
}

#[test]
fn openapi_prints_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let out = shopd(dir.path(), &[], &["openapi"]);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["paths"]["/readyz"].is_object());
}

/// A short command must exit cleanly, every time: with connections made ahead in the pool's background threads,
/// one in four runs on PostgreSQL crashed on exit (SIGSEGV inside libpq) after printing its output.
#[tokio::test]
async fn short_commands_exit_cleanly_every_time() {
    let app = crate::helpers::TestApp::spawn().await;
    for run in 0..25 {
        let out = app.cli(&["outbox", "list"], "");
        assert!(
            out.status.success(),
            "run {run} ended with {:?}",
            out.status
        );
    }
}
