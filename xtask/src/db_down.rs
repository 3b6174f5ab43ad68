//! `cargo xtask db-down`: stop PostgreSQL, keeping the data unless `--volumes` says otherwise.

use std::process::ExitCode;

use anyhow::Result;

use crate::{
    backend::{BackendChoice, lifecycle::stop},
    context::Ctx,
    ui,
};

#[derive(clap::Args)]
pub struct Args {
    /// Also delete the data (the compose volume, or the local cluster).
    #[arg(long)]
    pub volumes: bool,
}

/// Says in one line what it stopped, or that the server was already stopped, or that there
/// was nothing to stop.
pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    ui::info(stop(ctx, choice, args.volumes)?);
    Ok(ExitCode::SUCCESS)
}
