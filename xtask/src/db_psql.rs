//! `cargo xtask db-psql`: open psql on the target database.

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Result;

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
    selected
        .backend
        .run_client(ctx, "psql", &args.psql_args, interactive)?;
    Ok(ExitCode::SUCCESS)
}
