use std::io::{BufRead, IsTerminal};

use clap::Subcommand;

use crate::domain::Sensitive;
use crate::staff::Role;
use crate::state::AppState;

#[derive(Subcommand)]
pub enum StaffCommand {
    /// Add a staff member. The password is asked for without echo, or read from standard input.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["clerk", "manager", "admin"])]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a staff member; every session of theirs ends at once.
    Disable { email: String },
    /// List the staff (e-mails masked).
    List,
}

fn read_password(from_stdin: bool) -> Result<Sensitive<String>, String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading the password: {e}"))?;
        return Ok(Sensitive::new(
            line.trim_end_matches(['\r', '\n']).to_owned(),
        ));
    }
    let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
    let again = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
    if first != again {
        return Err("the passwords differ".into());
    }
    Ok(Sensitive::new(first))
}

/// Where the console is, as the operator would type it.
fn console_origin(state: &AppState) -> String {
    let scheme = if state.config.edge.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", state.config.bind)
}

pub fn run(command: StaffCommand) -> Result<(), String> {
    let password = match &command {
        StaffCommand::Add { password_stdin, .. } => Some(read_password(*password_stdin)?),
        _ => None,
    };
    let config = super::load_config()?;
    actix_web::rt::System::new().block_on(async move {
        let state = AppState::build(config).await.map_err(|e| e.to_string())?;
        match command {
            StaffCommand::Add { email, role, .. } => {
                let role = Role::parse(&role).ok_or("--role: clerk, manager or admin")?;
                let id = state
                    .staff
                    .add(&email, role, password.expect("read above"))
                    .await?;
                println!("added {role} {id}");
                let factor = if state.staff.needs_factor(role) {
                    "and set up the authenticator app their role needs (a QR code, then its first code)"
                } else {
                    "(an authenticator app is optional for clerks here; they can set one up later)"
                };
                println!(
                    "they sign in to the staff console at {}/staff/ with this e-mail and password, {factor}",
                    console_origin(&state)
                );
            }
            StaffCommand::Disable { email } => {
                let ended = state.staff.disable(&email).await?;
                println!("disabled; {ended} session(s) ended");
            }
            StaffCommand::List => {
                for m in state.staff.list().await.map_err(|e| e.to_string())? {
                    let status = m
                        .disabled_at
                        .map_or("active".to_owned(), |at| format!("disabled {at}"));
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        m.id, m.email_masked, m.role, m.created_at, status
                    );
                }
            }
        }
        Ok(())
    })
}
