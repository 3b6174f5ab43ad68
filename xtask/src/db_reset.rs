//! `cargo xtask db-reset`: drop everything in the target database, then migrate from scratch.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, Result, bail};

use crate::{
    backend::{BackendChoice, Ctx},
    bins,
    db_up::ensure_up,
    ui,
};

#[derive(clap::Args)]
pub struct Args {
    /// Allow resetting a database on a host that is not this machine.
    #[arg(long)]
    pub force: bool,

    /// How long to wait for the server, in seconds.
    #[arg(long, default_value = "60", value_parser = crate::parse_seconds, value_name = "SECONDS")]
    pub timeout: Duration,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    // Decided before connecting, so that a mistyped URL cannot destroy anything.
    guard_remote(ctx, args.force)?;
    let mut ready = ensure_up(ctx, choice, args.timeout)?;
    ready
        .client
        .query("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
        .with_context(|| format!("cannot empty database {:?}", ctx.cfg.database))?;
    ui::info(format!(
        "dropped everything in database {:?}",
        ctx.cfg.database
    ));
    bins::run(ctx, &["up"])?;
    Ok(ExitCode::SUCCESS)
}

pub fn guard_remote(ctx: &Ctx, force: bool) -> Result<()> {
    if !ctx.cfg.host_is_local() && !force {
        bail!(
            "refusing to reset database {:?} on the non-local host {:?}: this deletes all its data; pass --force if you mean it",
            ctx.cfg.database,
            ctx.cfg.host()
        );
    }
    Ok(())
}
