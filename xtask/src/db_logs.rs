//! `cargo xtask db-logs`: print, or follow, the server's log.

use std::process::ExitCode;

use anyhow::Result;

use crate::backend::{self, BackendChoice};
use crate::context::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Keep printing new lines as they arrive.
    #[arg(short, long)]
    pub follow: bool,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    let selected = backend::select(ctx, choice)?;
    selected.announce(ctx);
    selected.backend.logs(ctx, args.follow)?;
    Ok(ExitCode::SUCCESS)
}
