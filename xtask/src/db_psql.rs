//! `cargo xtask db-psql`: open psql on the target database.

use std::{io::IsTerminal, process::ExitCode, time::Duration};

use anyhow::{Context, Result};

use crate::{
    backend::{self, BackendChoice},
    context::Ctx,
    pg::Client,
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
    // psql would talk to whatever answers on the port: prove first that it is our server.
    if let Ok(mut client) = Client::connect(&ctx.cfg.url, Duration::from_secs(3)) {
        selected.backend.check_identity(ctx, &mut client)?;
    }
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
