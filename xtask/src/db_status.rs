//! `cargo xtask db-status`: backend, reachability, server version and migration status.

use std::{process::ExitCode, time::Duration};

use anyhow::Result;

use crate::{
    backend::{self, BackendChoice},
    bins,
    context::Ctx,
    pg::Client,
    ui,
};

#[derive(clap::Args)]
pub struct Args {
    /// Exit with status 1 when the server is unreachable, or a migration is pending or was edited after it was applied (for CI).
    #[arg(long)]
    pub check: bool,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    let selected = backend::select(ctx, choice)?;
    selected.announce(ctx);
    // Whatever else answers on the port is not this backend's server: never describe it.
    if let Some(down) = selected.backend.not_running(ctx)? {
        println!("reachable: no ({})", down.why);
        ui::info(down.remedy);
        return Ok(unreachable(&args));
    }
    match Client::connect(&ctx.cfg.url, Duration::from_secs(3)) {
        Ok(mut client) => {
            selected.backend.check_identity(ctx, &mut client)?;
            println!("reachable: yes, PostgreSQL {}", client.server_version());
        }
        Err(error) => {
            println!("reachable: no ({error})");
            ui::info(backend::unreachable_hint(&error, selected.kind()));
            return Ok(unreachable(&args));
        }
    }
    let command: &[&str] = if args.check {
        &["status", "--check"]
    } else {
        &["status"]
    };
    bins::run(ctx, command)?;
    Ok(ExitCode::SUCCESS)
}

/// An unreachable server fails the run only under `--check`.
fn unreachable(args: &Args) -> ExitCode {
    if args.check {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
