//! Runs the `migration` crate's command line, which links SeaORM so that xtask does not have to.

use std::path::Path;

use anyhow::Result;

use crate::{backend::Ctx, process, ui};

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
    process::run_passthrough(cmd)
}

pub fn run(ctx: &Ctx, args: &[&str]) -> Result<()> {
    run_in(ctx, &ctx.cfg.root, args)
}
