//! `cargo xtask db-psql`: open psql on the target database.

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Result;

use crate::{
    backend::{self, BackendChoice, Ctx},
    process,
};

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
    process::run_passthrough(psql)?;
    Ok(ExitCode::SUCCESS)
}
