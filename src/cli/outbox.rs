use clap::Subcommand;

use crate::db::Db;
use crate::notify::outbox::{self, OutboxRow};

#[derive(Subcommand)]
pub enum OutboxCommand {
    /// List e-mail of the outbox, newest first: one line each, with no address in it.
    List {
        /// Only messages that failed for good or are being retried after a failed attempt.
        #[arg(long)]
        failed: bool,
        /// At most this many lines.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put a failed message back in the queue, due now (after fixing what made it fail).
    Retry {
        /// The message's id, as `outbox list` prints it.
        id: String,
    },
}

pub fn run(command: OutboxCommand) -> Result<(), String> {
    let config = super::load_config()?;
    let db = Db::connect(&config.database).map_err(|e| e.to_string())?;
    db.run_migrations().map_err(|e| e.to_string())?;
    let mut conn = db.get().map_err(|e| e.to_string())?;
    match command {
        OutboxCommand::List { failed, limit } => {
            let rows = outbox::list(&mut conn, failed, limit.clamp(1, 10_000))
                .map_err(|e| e.to_string())?;
            println!(
                "{:<36}  {:<28}  {:<11}  {:<8}  {:>8}  {:<19}  last error",
                "id", "template", "recipient", "state", "attempts", "next attempt"
            );
            for row in &rows {
                println!("{}", line(row));
            }
            if rows.is_empty() {
                println!(
                    "(no {}messages)",
                    if failed { "failed or retrying " } else { "" }
                );
            }
            Ok(())
        }
        OutboxCommand::Retry { id } => {
            if outbox::retry(&mut conn, &id).map_err(|e| e.to_string())? {
                println!("{id} is queued again");
                Ok(())
            } else {
                Err(format!("no failed message with id {id}"))
            }
        }
    }
}

fn line(row: &OutboxRow) -> String {
    let state = match row.status.as_str() {
        outbox::PENDING if row.attempts > 0 => "retrying",
        other => other,
    };
    let next = if row.status == outbox::PENDING {
        row.next_attempt_at.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        "-".to_owned()
    };
    format!(
        "{:<36}  {:<28}  {:<11}  {:<8}  {:>8}  {:<19}  {}",
        row.id,
        row.template,
        row.recipient_kind,
        state,
        row.attempts,
        next,
        row.last_error.as_deref().unwrap_or("-")
    )
}
