use std::process::ExitCode;

fn main() -> ExitCode {
    shopd::cli::main()
}
