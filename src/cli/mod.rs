//! The `shopd` command line: `serve` (the default), `migrate`, `openapi`, `keys …`, `staff …`, `outbox …`,
//! `products import`, `pins …`. Each command exits non-zero with a one-line reason on failure.

mod keys;
mod outbox;
mod pins;
mod products;
mod simulate;
mod staff;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use utoipa::OpenApi;

use crate::config::{Config, LoadReport};
use crate::startup::Application;

#[derive(Parser)]
#[command(name = "shopd", version, about = "The backend of a mobile shop")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Generate, rotate or reindex keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Inspect the e-mail outbox, or queue a failed message again.
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// Manage the catalogue.
    #[command(subcommand)]
    Products(products::ProductsCommand),
    /// Add, disable or list store staff.
    #[command(subcommand)]
    Staff(staff::StaffCommand),
    /// Post a signed sandbox payment webhook for an order to the running server.
    SimulatePayment(simulate::SimulatePayment),
    /// Print the SPKI SHA-256 pins of certificates for the app (Android and iOS snippets).
    Pins(pins::PinsArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::Migrate => migrate(),
        Command::Openapi => {
            println!(
                "{}",
                crate::api::openapi::ApiDoc::openapi()
                    .to_pretty_json()
                    .expect("the document serialises")
            );
            Ok(())
        }
        Command::Keys(command) => keys::run(command),
        Command::Outbox(command) => outbox::run(command),
        Command::Products(command) => products::run(command),
        Command::Staff(command) => staff::run(command),
        Command::SimulatePayment(args) => simulate::run(args),
        Command::Pins(args) => pins::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("shopd: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration and starts logging, for every command that needs both.
pub(crate) fn load_config() -> Result<Config, String> {
    let (config, report) = Config::load().map_err(|e| format!("configuration: {e}"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    crate::telemetry::init(
        config.environment,
        &config.log_filter,
        ansi,
        std::io::stderr,
    );
    warn_dev_keys(&report);
    Ok(config)
}

fn warn_dev_keys(report: &LoadReport) {
    if let Some(path) = &report.dev_keys_file {
        tracing::warn!(
            file = %path.display(),
            generated = report.dev_keys_generated,
            "DEVELOPMENT KEYS in use: personal data is encrypted under keys kept beside the database. \
             Never use them in production; run `shopd keys generate` for a real set."
        );
    }
}

fn serve() -> Result<(), String> {
    let config = load_config()?;
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(port = app.port(), "listening");
        app.run_until_stopped().await.map_err(|e| e.to_string())
    })
}

fn migrate() -> Result<(), String> {
    let config = load_config()?;
    let db = crate::db::Db::connect(&config.database).map_err(|e| e.to_string())?;
    let applied = db.run_migrations().map_err(|e| e.to_string())?;
    println!("applied {applied} migration(s) to {}", config.database.url);
    Ok(())
}
