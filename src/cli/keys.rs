use clap::Subcommand;

use crate::config::secrets;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print a complete fresh set of secrets as KEY=value lines.
    Generate,
}

pub fn run(command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Generate => {
            for (var, value) in secrets::generate_all() {
                println!("{var}={value}");
            }
            Ok(())
        }
    }
}
