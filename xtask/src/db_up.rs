//! `cargo xtask db-up`: start PostgreSQL if needed and wait for an authenticated connection.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::{
    backend::{self, Backend, BackendChoice, Ctx, Selected},
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
    pub selected: Selected,
    pub client: Client,
}

/// Chooses the backend, starts it if needed and waits until the target database answers.
pub fn ensure_up(ctx: &Ctx, choice: BackendChoice, timeout: Duration) -> Result<Ready> {
    let selected = backend::select(ctx, choice)?;
    selected.announce(ctx);
    let client = bring_up(ctx, selected.backend.as_ref(), timeout)?;
    backend::record_backend(&ctx.cfg, selected.kind())?;
    Ok(Ready { selected, client })
}

/// Starts `backend` unless it runs, then waits for an authenticated connection.
pub fn bring_up(ctx: &Ctx, backend: &dyn Backend, timeout: Duration) -> Result<Client> {
    let started_at = Instant::now();
    let deadline = started_at + timeout;
    let started = backend.start(ctx, deadline)?;
    let client = backend::wait_ready(ctx, backend, deadline)?;
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
    Ok(client)
}
