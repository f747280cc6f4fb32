use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::secrets;
use crate::db::Db;
use crate::vault::Vault;

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
    }
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
    let bar = ProgressBar::new(total.max(0) as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
            .expect("a valid template"),
    );
    bar.set_message("rewrapping data keys");
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
