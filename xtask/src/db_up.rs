//! `cargo xtask db-up`: start PostgreSQL if needed and wait for an authenticated connection.

use std::{process::ExitCode, time::Duration};

use anyhow::Result;

use crate::backend::{BackendChoice, lifecycle::ensure_up};
use crate::context::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// How long to wait for the server, in seconds.
    #[arg(long, default_value = "60", value_parser = crate::cli_args::parse_seconds, value_name = "SECONDS")]
    pub timeout: Duration,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    ensure_up(ctx, choice, args.timeout)?;
    Ok(ExitCode::SUCCESS)
}
