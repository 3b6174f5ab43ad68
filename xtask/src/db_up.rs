//! `cargo xtask db-up`: start PostgreSQL if needed and wait for an authenticated connection.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::{
    backend::{self, BackendChoice, Ctx, Selected},
    pg::Client,
    ui,
};

#[derive(clap::Args)]
pub struct Args {
    /// How long to wait for the server, in seconds.
    #[arg(long, default_value = "60", value_parser = crate::parse_seconds, value_name = "SECONDS")]
    pub timeout: Duration,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    ensure_up(ctx, choice, args.timeout)?;
    Ok(ExitCode::SUCCESS)
}

/// A server that accepts the configured credentials, and the backend that runs it.
pub struct Ready {
    #[allow(dead_code)] // read by db-test and bench
    pub selected: Selected,
    pub client: Client,
}

/// Chooses the backend, starts it if needed and waits until the target database answers.
pub fn ensure_up(ctx: &Ctx, choice: BackendChoice, timeout: Duration) -> Result<Ready> {
    let started_at = Instant::now();
    let deadline = started_at + timeout;
    let selected = backend::select(ctx, choice)?;
    selected.announce(ctx);
    let backend = selected.backend.as_ref();
    let started = backend.start(ctx, deadline)?;
    let client = backend::wait_ready(ctx, backend, deadline)?;
    backend::record_backend(&ctx.cfg, selected.kind())?;
    let how = if started {
        "started"
    } else {
        "already running"
    };
    ui::info(format!(
        "ready: PostgreSQL {} ({how}, {:.2}s)",
        client.server_version(),
        started_at.elapsed().as_secs_f64()
    ));
    Ok(Ready { selected, client })
}
