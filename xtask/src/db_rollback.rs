//! `cargo xtask db-rollback`: roll back the last applied migrations.

use std::{process::ExitCode, time::Duration};

use anyhow::Result;

use crate::{
    backend::{
        BackendChoice,
        lifecycle::{ensure_up, guard_remote},
    },
    bins,
    context::Ctx,
};

#[derive(clap::Args)]
pub struct Args {
    /// Allow rolling back a database on a host that is not this machine.
    #[arg(long)]
    pub force: bool,

    /// How many migrations to roll back.
    #[arg(long, default_value = "1", value_parser = crate::cli_args::parse_steps, allow_hyphen_values = true, value_name = "N")]
    pub steps: u32,

    /// Roll back migrations even if their source changed after they were applied (local development only).
    #[arg(long)]
    pub accept_changed: bool,

    /// How long to wait for the server, in seconds.
    #[arg(long, default_value = "60", value_parser = crate::cli_args::parse_seconds, value_name = "SECONDS")]
    pub timeout: Duration,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    guard_remote(ctx, args.force, "roll back")?;
    ensure_up(ctx, choice, args.timeout)?;
    let steps = args.steps.to_string();
    let mut command = vec!["down", "-n", &steps];
    if args.accept_changed {
        command.push("--accept-changed");
    }
    bins::run_progress(ctx, &command)?;
    Ok(ExitCode::SUCCESS)
}
