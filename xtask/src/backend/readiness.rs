//! Waiting for a server to accept an authenticated connection, and saying why one does not.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Backend, BackendKind};
use crate::{
    context::Ctx,
    pg::{Client, PgError},
    ui,
};

/// Polls until the target database accepts an authenticated connection, or the deadline passes.
pub fn wait_ready(ctx: &Ctx, backend: &dyn Backend, deadline: Instant) -> Result<Client> {
    let url = &ctx.cfg.url;
    let mut spinner = ui::Spinner::new("waiting for PostgreSQL");
    let mut pause = Duration::from_millis(10);
    let mut created = false;
    loop {
        let attempt_timeout = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(200), Duration::from_secs(3));
        let error = match Client::connect(url, attempt_timeout) {
            Ok(client) => return Ok(client),
            Err(e) if e.is_missing_database() && !created => {
                spinner.clear();
                backend.create_database(ctx)?;
                created = true;
                continue;
            }
            Err(e) => e,
        };
        check_worth_waiting(ctx, backend.kind(), &error, deadline)?;
        spinner.tick(&error.to_string());
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Fails at once, with what to do, when another attempt cannot succeed: the server rejected
/// the login, the error is not one that waiting cures, or the deadline has passed.
fn check_worth_waiting(
    ctx: &Ctx,
    kind: BackendKind,
    error: &PgError,
    deadline: Instant,
) -> Result<()> {
    let url = ctx.cfg.redacted_url();
    if error.is_auth_failure() {
        let remedy = match kind {
            BackendKind::External => "fix DATABASE_URL",
            _ => {
                "fix DATABASE_URL/POSTGRES_PASSWORD, or recreate the dev database with `cargo xtask db-down --volumes`"
            }
        };
        bail!(
            "PostgreSQL at {url} rejected the credentials ({error}): the server runs, but with another password or user; {remedy}"
        )
    }
    if let PgError::Refused { tls, .. } = error {
        let how = if *tls { "over TLS" } else { "without TLS" };
        bail!(
            "PostgreSQL at {url} refused a connection {how} ({error}): {}",
            error.remedy().unwrap_or_default()
        )
    }
    // A name that does not resolve, or a certificate that is not trusted, will not be
    // cured by waiting: say so at once.
    if !error.is_transient() {
        bail!(
            "cannot connect to {url}: {error}; {}",
            error.remedy().as_deref().unwrap_or("check DATABASE_URL")
        );
    }
    if Instant::now() >= deadline {
        let hint = match kind {
            BackendKind::External => "check that the server runs and DATABASE_URL is right",
            _ => "see `cargo xtask db-logs`, or raise --timeout",
        };
        bail!("PostgreSQL at {url} was not ready in time; last error: {error}; {hint}");
    }
    Ok(())
}

/// What to do when `db-status` cannot connect: the error's own remedy, or where to look.
pub fn unreachable_hint(error: &PgError, kind: BackendKind) -> String {
    error.remedy().unwrap_or_else(|| match kind {
        BackendKind::External => "check that the server runs and DATABASE_URL is right".into(),
        _ => "start it with `cargo xtask db-up`".into(),
    })
}
