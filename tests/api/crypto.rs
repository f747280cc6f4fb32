//! Personal data at rest: the vault over a real database, key rotation through the `shopd` binary, and
//! crypto-shredding.

use std::process::Command;

use shopd::config::{Config, Vars};
use shopd::vault::{Field, Opened, Vault, VaultError};

use crate::helpers::{TestApp, TestDb, test_vars};

const PHONE: Field<'static> = Field {
    table: "customers",
    column: "phone",
    row_id: "row-1",
};

fn person() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn values_round_trip_and_refuse_tampering_and_moves() {
    let app = TestApp::spawn().await;
    let vault = &app.state.vault;
    let mut conn = app.state.db.get().unwrap();
    let p = person();
    vault.create_data_key(&mut conn, &p).unwrap();
    let stored = vault.seal(&mut conn, &p, PHONE, "+447700900123").unwrap();
    assert_eq!(
        vault.open(&mut conn, &p, PHONE, &stored).unwrap().value(),
        Some("+447700900123")
    );

    for i in 0..stored.len() {
        let mut bad = stored.clone();
        bad[i] ^= 0x80;
        assert!(
            vault.open(&mut conn, &p, PHONE, &bad).is_err(),
            "byte {i} flipped"
        );
    }
    let moved_row = Field {
        row_id: "row-2",
        ..PHONE
    };
    let moved_column = Field {
        column: "name",
        ..PHONE
    };
    assert!(vault.open(&mut conn, &p, moved_row, &stored).is_err());
    assert!(vault.open(&mut conn, &p, moved_column, &stored).is_err());

    let q = person();
    vault.create_data_key(&mut conn, &q).unwrap();
    assert!(
        vault.open(&mut conn, &q, PHONE, &stored).is_err(),
        "another person's key does not open it"
    );
}

#[tokio::test]
async fn the_data_key_is_stored_only_wrapped() {
    let app = TestApp::spawn().await;
    let mut conn = app.state.db.get().unwrap();
    let p = person();
    app.state.vault.create_data_key(&mut conn, &p).unwrap();
    use diesel::prelude::*;
    use shopd::db::schema::data_keys;
    let (kid, wrapped): (String, Vec<u8>) = data_keys::table
        .find(&p)
        .select((data_keys::master_key_id, data_keys::wrapped))
        .first(&mut conn)
        .unwrap();
    assert_eq!(kid, app.state.config.keys.pii.active().id().as_str());
    assert_eq!(
        wrapped.len(),
        1 + 1 + kid.len() + 12 + 32 + 16,
        "version, kid, nonce, key, tag"
    );
}

#[tokio::test]
async fn shredding_makes_values_read_as_erased_and_leaves_others_alone() {
    let app = TestApp::spawn().await;
    let vault = &app.state.vault;
    let mut conn = app.state.db.get().unwrap();
    let (gone, kept) = (person(), person());
    for p in [&gone, &kept] {
        vault.create_data_key(&mut conn, p).unwrap();
    }
    let gone_value = vault
        .seal(&mut conn, &gone, PHONE, "+447700900111")
        .unwrap();
    let kept_value = vault
        .seal(&mut conn, &kept, PHONE, "+447700900222")
        .unwrap();

    assert!(vault.shred(&mut conn, &gone).unwrap());
    assert_eq!(
        vault.open(&mut conn, &gone, PHONE, &gone_value).unwrap(),
        Opened::Erased
    );
    assert_eq!(
        vault
            .open(&mut conn, &kept, PHONE, &kept_value)
            .unwrap()
            .value(),
        Some("+447700900222")
    );
    assert!(matches!(
        vault.seal(&mut conn, &gone, PHONE, "x"),
        Err(VaultError::NoDataKey)
    ));
    assert!(
        !vault.shred(&mut conn, &gone).unwrap(),
        "a second shred finds nothing"
    );

    // Another instance (a fresh vault, so no cache) reads the same.
    let other = Vault::new(&app.state.config.keys);
    assert_eq!(
        other.open(&mut conn, &gone, PHONE, &gone_value).unwrap(),
        Opened::Erased
    );
}

fn shopd_keys_rotate(db: &TestDb, vars: &Vars) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shopd"));
    command
        .args(["keys", "rotate", "--batch", "2"])
        .current_dir(db.dir.path())
        .env_clear();
    for var in [
        "DATABASE_URL",
        "PII_KEYS",
        "BLIND_INDEX_KEY",
        "SHOPD_DATA_DIR",
    ] {
        command.env(var, vars.get(var).unwrap_or_default());
    }
    command.output().unwrap()
}

#[tokio::test]
async fn rotation_rewraps_every_data_key_once_and_the_old_key_can_then_go() {
    let db = TestDb::new();
    let mut vars = test_vars(&db);
    let old_ring = vars.get("PII_KEYS").unwrap().to_owned();
    let old_config = Config::from_vars(&vars).unwrap();
    let old_vault = Vault::new(&old_config.keys);
    let pool = shopd::db::Db::connect(&old_config.database).unwrap();
    pool.run_migrations().unwrap();
    let mut conn = pool.get().unwrap();

    let people: Vec<String> = (0..5).map(|_| person()).collect();
    let mut stored = Vec::new();
    for (i, p) in people.iter().enumerate() {
        old_vault.create_data_key(&mut conn, p).unwrap();
        stored.push(
            old_vault
                .seal(&mut conn, p, PHONE, &format!("+4477009001{i:02}"))
                .unwrap(),
        );
    }

    let new_key = shopd::config::secrets::generate_all()
        .into_iter()
        .find(|(v, _)| *v == "PII_KEYS")
        .unwrap()
        .1
        .replacen(':', "-next:", 1);
    vars.set("PII_KEYS", format!("{new_key},{old_ring}"));

    let first = shopd_keys_rotate(&db, &vars);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("rewrapped 5 data key(s)"));
    let second = shopd_keys_rotate(&db, &vars);
    assert!(String::from_utf8_lossy(&second.stdout).contains("rewrapped 0 data key(s)"));

    vars.set("PII_KEYS", &new_key);
    let new_vault = Vault::new(&Config::from_vars(&vars).unwrap().keys);
    for (i, (p, value)) in people.iter().zip(&stored).enumerate() {
        let opened = new_vault.open(&mut conn, p, PHONE, value).unwrap();
        assert_eq!(opened.value(), Some(format!("+4477009001{i:02}").as_str()));
    }

    // Without the key that wraps them, data keys are a clear error, never a panic.
    vars.set(
        "PII_KEYS",
        shopd::config::secrets::generate_all()
            .into_iter()
            .find(|(v, _)| *v == "PII_KEYS")
            .unwrap()
            .1
            .replacen(':', "-other:", 1),
    );
    let stray = Vault::new(&Config::from_vars(&vars).unwrap().keys);
    let err = stray
        .open(&mut conn, &people[0], PHONE, &stored[0])
        .unwrap_err();
    assert!(matches!(err, VaultError::UnknownMasterKey(_)), "{err}");
    let out = shopd_keys_rotate(&db, &vars);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in PII_KEYS"));
}

/// Every byte the database holds: the SQLite file with its WAL, or a `pg_dump` of the PostgreSQL database.
pub fn database_bytes(app: &TestApp) -> Vec<u8> {
    match &app.db.url {
        shopd::config::DatabaseUrl::Sqlite(path) => {
            let mut bytes = std::fs::read(path).unwrap();
            for suffix in ["-wal", "-journal"] {
                let mut side = path.clone().into_os_string();
                side.push(suffix);
                if let Ok(more) = std::fs::read(&side) {
                    bytes.extend(more);
                }
            }
            bytes
        }
        shopd::config::DatabaseUrl::Postgres(url) => {
            let out = Command::new("pg_dump")
                .arg(url.expose())
                .output()
                .expect("pg_dump runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }
    }
}

/// Asserts that none of `values` appears in the raw bytes of the database.
pub async fn assert_nowhere_in_the_database(app: &TestApp, values: &[&str]) {
    let bytes = database_bytes(app);
    for value in values {
        assert!(
            !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
            "the database holds a personal value in clear"
        );
    }
}

#[tokio::test]
async fn a_stolen_database_file_or_dump_holds_no_personal_value_in_clear() {
    use serde_json::json;
    let app = TestApp::spawn().await;
    let phone = crate::helpers::unique_phone();
    let pair = app.register(&phone).await;
    let token = pair["access_token"].as_str().unwrap();
    let (name, email) = (
        "Zebulon Quixotic-Farthingale",
        "zebulon.farthingale@distinctive.example",
    );
    let response = app
        .request(
            reqwest::Method::PATCH,
            "/v1/me",
            token,
            Some(&json!({"name": name, "email": email})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let digits = phone.trim_start_matches('+');
    assert_nowhere_in_the_database(
        &app,
        &[
            digits,
            &phone[phone.len() - 9..],
            name,
            "Quixotic",
            email,
            "zebulon",
        ],
    )
    .await;
    // And the values are there, sealed: the export opens them.
    let export: serde_json::Value = app
        .request(reqwest::Method::GET, "/v1/me/export", token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(export["email"], email);
}

fn shopd_with(vars: &Vars, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shopd"));
    command.args(args).current_dir(dir).env_clear();
    for var in [
        "DATABASE_URL",
        "PII_KEYS",
        "BLIND_INDEX_KEY",
        "OTP_PEPPER",
        "ACCESS_TOKEN_KEYS",
        "SHOPD_DATA_DIR",
    ] {
        command.env(var, vars.get(var).unwrap_or_default());
    }
    command.output().unwrap()
}

#[tokio::test]
async fn reindex_moves_lookups_to_a_new_blind_index_key_once() {
    use serde_json::json;
    let app = TestApp::spawn().await;
    let phone = crate::helpers::unique_phone();
    let pair = app.register(&phone).await;
    let token = pair["access_token"].as_str().unwrap();
    app.request(
        reqwest::Method::PATCH,
        "/v1/me",
        token,
        Some(&json!({"email": "reindex@example.com"})),
    )
    .await;
    let old_key = app.vars.get("BLIND_INDEX_KEY").unwrap().to_owned();
    let mut vars = app.vars.clone();
    let new_key = shopd::config::secrets::generate_all()
        .into_iter()
        .find(|(v, _)| *v == "BLIND_INDEX_KEY")
        .unwrap()
        .1;
    vars.set("BLIND_INDEX_KEY", &new_key);

    let before = TestApp::spawn_on(app.db.clone(), Some(vars.clone()), |_| {}).await;
    assert_eq!(
        before
            .login(&phone, crate::helpers::PASSWORD)
            .await
            .status(),
        401,
        "not found under the new key yet"
    );

    let dir = app.db.dir.path();
    let out = shopd_with(
        &vars,
        dir,
        &["keys", "reindex", "--old-blind-index-key", &old_key],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("re-indexed 2 value(s)"),
        "phone and e-mail"
    );
    let again = shopd_with(
        &vars,
        dir,
        &["keys", "reindex", "--old-blind-index-key", &old_key],
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("re-indexed 0 value(s)"));
    assert_eq!(
        before
            .login(&phone, crate::helpers::PASSWORD)
            .await
            .status(),
        200
    );

    let bad = shopd_with(
        &vars,
        dir,
        &["keys", "reindex", "--old-blind-index-key", "not-a-key"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--old-blind-index-key"));
}
