//! `cargo xtask db-test`: the whole test suite, each test on its own database cloned from a migrated template.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::backend::{BackendChoice, Ctx};

#[derive(clap::Args)]
pub struct Args {
    /// Arguments for the test runner, after `--`.
    #[arg(last = true)]
    pub runner_args: Vec<String>,
}

pub fn run(_ctx: &Ctx, _choice: BackendChoice, _args: Args) -> Result<ExitCode> {
    bail!("db-test is not available yet")
}
