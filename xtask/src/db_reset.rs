//! `cargo xtask db-reset`: drop everything in the target database, then migrate from scratch.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, Result};

use crate::{
    backend::{
        BackendChoice,
        lifecycle::{ensure_up, guard_remote},
    },
    bins,
    context::Ctx,
    ui,
};

#[derive(clap::Args)]
pub struct Args {
    /// Allow resetting a database on a host that is not this machine.
    #[arg(long)]
    pub force: bool,

    /// How long to wait for the server, in seconds.
    #[arg(long, default_value = "60", value_parser = crate::cli_args::parse_seconds, value_name = "SECONDS")]
    pub timeout: Duration,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    guard_remote(ctx, args.force, "reset")?;
    let mut ready = ensure_up(ctx, choice, args.timeout)?;
    ready
        .client
        .query("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
        .with_context(|| format!("cannot empty database {:?}", ctx.cfg.database))?;
    ui::info(format!(
        "dropped everything in database {:?}",
        ctx.cfg.database
    ));
    bins::run_progress(ctx, &["up"])?;
    Ok(ExitCode::SUCCESS)
}
