//! `cargo xtask bench`: per-test database cost, local start-up and no-op migrations, as a table.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::backend::{BackendChoice, Ctx};

#[derive(clap::Args)]
pub struct Args {
    /// Also write the table into BENCHMARKS.md.
    #[arg(long)]
    pub markdown: bool,
}

pub fn run(_ctx: &Ctx, _choice: BackendChoice, _args: Args) -> Result<ExitCode> {
    bail!("bench is not available yet")
}
