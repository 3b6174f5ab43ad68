//! `cargo xtask db-rollback`: roll back the last applied migrations.

use std::{process::ExitCode, time::Duration};

use anyhow::Result;

use crate::{
    backend::{BackendChoice, Ctx},
    bins,
    db_up::ensure_up,
};

#[derive(clap::Args)]
pub struct Args {
    /// How many migrations to roll back.
    #[arg(long, default_value = "1", value_parser = crate::parse_steps, allow_hyphen_values = true, value_name = "N")]
    pub steps: u32,

    /// How long to wait for the server, in seconds.
    #[arg(long, default_value = "60", value_parser = crate::parse_seconds, value_name = "SECONDS")]
    pub timeout: Duration,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    ensure_up(ctx, choice, args.timeout)?;
    bins::run(ctx, &["down", "-n", &args.steps.to_string()])?;
    Ok(ExitCode::SUCCESS)
}
