//! `cargo xtask db-psql`: open psql on the target database.

use std::{io::IsTerminal, process::ExitCode};

use anyhow::{Context, Result};

use crate::backend::{self, BackendChoice, Ctx};

#[derive(clap::Args)]
pub struct Args {
    /// Arguments passed to psql, after `--`.
    #[arg(last = true)]
    pub psql_args: Vec<String>,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    let selected = backend::select(ctx, choice)?;
    selected.announce(ctx);
    let interactive = std::io::stdin().is_terminal();
    let psql = selected
        .backend
        .client_command(ctx, "psql", &ctx.cfg.database, interactive)?
        .args(&args.psql_args)
        .quiet();
    // psql replaces xtask, so that Ctrl-C cancels a query instead of orphaning psql.
    let error = std::os::unix::process::CommandExt::exec(&mut std::process::Command::from(psql));
    Err(error).context("cannot start psql")
}
