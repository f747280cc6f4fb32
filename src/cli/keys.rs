use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::secrets;
use crate::db::Db;
use crate::vault::Vault;
use crate::vault::reindex::INDEXED;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print a complete fresh set of secrets as KEY=value lines.
    Generate,
    /// Rewrap every data key still under an older master key with the active one (the first of PII_KEYS).
    Rotate {
        /// Data keys rewrapped per transaction.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
    /// Recompute the blind indexes after BLIND_INDEX_KEY changed (BLIND_INDEX_KEY holds the new key).
    Reindex {
        /// The previous BLIND_INDEX_KEY (base64). Read from SHOPD_OLD_BLIND_INDEX_KEY when not given.
        #[arg(long, env = "SHOPD_OLD_BLIND_INDEX_KEY", hide_env_values = true)]
        old_blind_index_key: String,
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
}

pub fn run(command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Generate => {
            for (var, value) in secrets::generate_all() {
                println!("{var}={value}");
            }
            Ok(())
        }
        KeysCommand::Rotate { batch } => rotate(batch.clamp(1, 10_000)),
        KeysCommand::Reindex {
            old_blind_index_key,
            batch,
        } => reindex(&old_blind_index_key, batch.clamp(1, 10_000)),
    }
}

fn reindex(old_key: &str, batch: i64) -> Result<(), String> {
    let old_key = crate::crypto::BlindIndexKey::parse(old_key)
        .map_err(|e| format!("--old-blind-index-key: {e}"))?;
    let config = super::load_config()?;
    let db = Db::connect(&config.database).map_err(|e| e.to_string())?;
    db.run_migrations().map_err(|e| e.to_string())?;
    let vault = Vault::new(&config.keys);
    let mut conn = db.get().map_err(|e| e.to_string())?;
    let mut total = 0i64;
    for column in INDEXED {
        total += column.count(&mut conn).map_err(|e| e.to_string())?;
    }
    let bar = progress(total, "re-indexing");
    let (mut updated, mut unmatched) = (0usize, 0usize);
    for &column in INDEXED {
        let mut after = String::new();
        loop {
            let (done, last) = crate::db::write_tx(&mut conn, |conn| {
                vault.reindex_batch(conn, column, &old_key, &after, batch)
            })
            .map_err(|e| format!("after {updated} rows: {e}"))?;
            updated += done.updated;
            unmatched += done.unmatched;
            bar.inc(done.read as u64);
            match last {
                Some(id) => after = id,
                None => break,
            }
        }
    }
    bar.finish_and_clear();
    println!("re-indexed {updated} value(s) under the new BLIND_INDEX_KEY");
    if unmatched > 0 {
        println!("{unmatched} value(s) matched neither key and were left alone");
    }
    Ok(())
}

fn progress(total: i64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(total.max(0) as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
            .expect("a valid template"),
    );
    bar.set_message(message);
    bar
}

fn rotate(batch: i64) -> Result<(), String> {
    let config = super::load_config()?;
    let db = Db::connect(&config.database).map_err(|e| e.to_string())?;
    db.run_migrations().map_err(|e| e.to_string())?;
    let vault = Vault::new(&config.keys);
    let mut conn = db.get().map_err(|e| e.to_string())?;
    let total = vault
        .count_to_rewrap(&mut conn)
        .map_err(|e| e.to_string())?;
    let bar = progress(total, "rewrapping data keys");
    let mut rewrapped = 0usize;
    loop {
        let changed = vault
            .rewrap_batch(&mut conn, batch)
            .map_err(|e| format!("after {rewrapped} data keys: {e}"))?;
        if changed == 0 {
            break;
        }
        rewrapped += changed;
        bar.inc(changed as u64);
    }
    bar.finish_and_clear();
    println!(
        "rewrapped {rewrapped} data key(s); every data key is now under master key `{}`",
        config.keys.pii.active().id()
    );
    Ok(())
}
