//! `cargo xtask db-down`: stop PostgreSQL, keeping the data unless `--volumes` says otherwise.

use std::process::ExitCode;

use anyhow::Result;

use crate::{
    backend::{self, Backend, BackendChoice, BackendKind, Ctx, Local},
    ui,
};

#[derive(clap::Args)]
pub struct Args {
    /// Also delete the data (the compose volume, or the local cluster).
    #[arg(long)]
    pub volumes: bool,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    let selected = backend::select(ctx, choice)?;
    selected.announce(ctx);
    selected.backend.stop(ctx, args.volumes)?;
    if selected.kind() == BackendKind::Local {
        Local::for_tests(ctx)?.stop(ctx, args.volumes)?;
    }
    if args.volumes {
        backend::forget_backend(&ctx.cfg, selected.kind())?;
        ui::info(format!(
            "stopped, and deleted the {} backend's data",
            selected.kind()
        ));
    } else {
        ui::info("stopped; the data is kept (`db-down --volumes` deletes it)");
    }
    Ok(ExitCode::SUCCESS)
}
