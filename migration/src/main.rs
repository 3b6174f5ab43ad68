//! The migration command line, compatible with `sea-orm-cli migrate -d migration`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    migration::cli::run_cli::<migration::Migrator>().await
}
