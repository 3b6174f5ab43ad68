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

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    let selected = stop(ctx, choice, args.volumes)?;
    if args.volumes {
        ui::info(format!(
            "stopped, and deleted the {} backend's data",
            selected.kind()
        ));
    } else {
        ui::info("stopped; the data is kept (`db-down --volumes` deletes it)");
    }
    Ok(ExitCode::SUCCESS)
}
