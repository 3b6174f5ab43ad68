//! `cargo xtask db-lint`: lint the SQL the pending migrations run (or, with `--all`, every
//! migration's, from a scratch database) for schema changes that are unsafe on a live database.
//! The lint itself is the migration binary's `lint` command; this only brings the server up.

use std::{process::ExitCode, time::Duration};

use anyhow::Result;

use crate::{
    backend::{
        BackendChoice,
        lifecycle::{ensure_up, with_scratch_database},
    },
    bins::{self, Stdout},
    context::Ctx,
    ui,
};

#[derive(clap::Args)]
pub struct Args {
    /// Lint every migration, dry-run from an empty scratch database, not only the pending ones.
    #[arg(long)]
    pub all: bool,

    /// How to print the findings: text, or json for tools.
    #[arg(long, default_value = "text", value_parser = ["text", "json"], value_name = "FORMAT")]
    pub format: String,

    /// How long to wait for the server, in seconds.
    #[arg(long, default_value = "60", value_parser = crate::cli_args::parse_seconds, value_name = "SECONDS")]
    pub timeout: Duration,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    let mut ready = ensure_up(ctx, choice, args.timeout)?;
    if !args.all {
        bins::run(ctx, &["lint", "--format", &args.format])?;
        return Ok(ExitCode::SUCCESS);
    }
    // From empty, so that every migration runs, and the dev database's state does not matter.
    with_scratch_database(
        &mut ready.client,
        &ctx.cfg.database,
        "lint_all",
        |scratch| {
            ui::debug(format!(
                "dry-running every migration in the scratch database {scratch:?}"
            ));
            let url = ctx.cfg.url_for_database(scratch);
            let command = ["lint", "--all", "--format", &args.format];
            bins::run_with_url(ctx, &ctx.cfg.root, url.as_str(), &command, Stdout::Result)
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
