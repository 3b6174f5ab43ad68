//! `cargo xtask db-migrate`: bring PostgreSQL up, then apply pending migrations.

use std::{process::ExitCode, time::Duration};

use anyhow::Result;

use crate::{
    backend::{BackendChoice, lifecycle::ensure_up},
    bins,
    context::Ctx,
};

#[derive(clap::Args)]
pub struct Args {
    /// Apply at most this many pending migrations.
    #[arg(long, value_parser = crate::cli_args::parse_steps, allow_hyphen_values = true, value_name = "N")]
    pub steps: Option<u32>,

    /// Print the SQL the pending migrations would run, and change nothing.
    #[arg(long, conflicts_with = "accept_changed")]
    pub dry_run: bool,

    /// Re-record the checksums of applied migrations whose source changed (local development only).
    #[arg(long)]
    pub accept_changed: bool,

    /// How long to wait for the server, in seconds.
    #[arg(long, default_value = "60", value_parser = crate::cli_args::parse_seconds, value_name = "SECONDS")]
    pub timeout: Duration,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    ensure_up(ctx, choice, args.timeout)?;
    let steps = args.steps.map(|n| n.to_string());
    let mut command = vec!["up"];
    if let Some(steps) = &steps {
        command.extend(["-n", steps]);
    }
    if args.dry_run {
        command.push("--dry-run");
    }
    if args.accept_changed {
        command.push("--accept-changed");
    }
    if args.dry_run {
        // The SQL is what the user asked for: shown even with -q.
        bins::run(ctx, &command)?;
    } else {
        bins::run_progress(ctx, &command)?;
    }
    Ok(ExitCode::SUCCESS)
}
