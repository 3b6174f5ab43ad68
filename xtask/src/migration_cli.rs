//! Runs the `migration` crate's command line, which links SeaORM so that xtask does not have to.

use std::{fmt, path::Path, process::ExitCode};

use anyhow::{Context, Result};

use crate::{backend::Ctx, ui};

/// A child process that failed after printing its own one-line error; xtask adds nothing but the exit code.
#[derive(Debug)]
pub struct ChildFailed(pub u8);

impl fmt::Display for ChildFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exited with status {}", self.0)
    }
}

impl std::error::Error for ChildFailed {}

impl ChildFailed {
    pub fn exit_code(error: &anyhow::Error) -> Option<ExitCode> {
        error
            .downcast_ref::<ChildFailed>()
            .map(|c| ExitCode::from(c.0))
    }
}

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// `cargo run -p migration -- <args>` against the configured database, from `dir`.
pub fn run_in(ctx: &Ctx, dir: &Path, args: &[&str]) -> Result<()> {
    run_with_url(ctx, dir, ctx.cfg.url.as_str(), args)
}

pub fn run_with_url(ctx: &Ctx, dir: &Path, url: &str, args: &[&str]) -> Result<()> {
    let _dir = ctx.sh.push_dir(dir);
    let cargo = cargo();
    let cmd = ctx
        .sh
        .cmd(cargo)
        .args(["run", "--quiet", "--package", "migration", "--"])
        .args(args)
        // The URL carries the password: pass it in the environment, never in argv.
        .env("DATABASE_URL", url)
        .ignore_status()
        .quiet();
    ui::debug(format!("$ {} (in {})", cmd, dir.display()));
    let status = std::process::Command::from(cmd)
        .status()
        .context("cannot run cargo")?;
    if status.success() {
        Ok(())
    } else {
        Err(ChildFailed(status.code().unwrap_or(1).clamp(1, 255) as u8).into())
    }
}

pub fn run(ctx: &Ctx, args: &[&str]) -> Result<()> {
    run_in(ctx, &ctx.cfg.root, args)
}
