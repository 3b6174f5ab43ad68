//! `cargo xtask db-migrate`: bring PostgreSQL up, then apply pending migrations.

use std::{process::ExitCode, time::Duration};

use anyhow::Result;

use crate::{
    backend::{BackendChoice, Ctx},
    bins,
    db_up::ensure_up,
};

#[derive(clap::Args)]
pub struct Args {
    /// Apply at most this many pending migrations.
    #[arg(long, value_parser = crate::parse_steps, allow_hyphen_values = true, value_name = "N")]
    pub steps: Option<u32>,

    /// How long to wait for the server, in seconds.
    #[arg(long, default_value = "60", value_parser = crate::parse_seconds, value_name = "SECONDS")]
    pub timeout: Duration,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    ensure_up(ctx, choice, args.timeout)?;
    let steps = args.steps.map(|n| n.to_string());
    let mut command = vec!["up"];
    if let Some(steps) = &steps {
        command.extend(["-n", steps]);
    }
    bins::run(ctx, &command)?;
    Ok(ExitCode::SUCCESS)
}
