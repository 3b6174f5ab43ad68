//! The external backend: a server someone else runs (a CI service container, a managed
//! PostgreSQL). xtask starts and stops nothing; it only waits for it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Backend, BackendKind, Halt, shared::client_env};
use crate::context::Ctx;
use crate::{pg::Client, pg_install};

pub struct External;

impl Backend for External {
    fn kind(&self) -> BackendKind {
        BackendKind::External
    }

    fn start(&self, _ctx: &Ctx, _deadline: Instant) -> Result<bool> {
        Ok(false)
    }

    fn stop(&self, ctx: &Ctx, _delete_data: bool) -> Result<Halt> {
        bail!(
            "the external server at {} is not managed by xtask, so it was left running: stop it where it is run",
            ctx.cfg.redacted_url()
        )
    }

    fn logs(&self, ctx: &Ctx, _follow: bool) -> Result<()> {
        bail!(
            "the external server at {} keeps its logs where it runs: read them there",
            ctx.cfg.redacted_url()
        )
    }

    fn client_command<'a>(
        &self,
        ctx: &'a Ctx,
        program: &str,
        database: &str,
        _interactive: bool,
    ) -> Result<xshell::Cmd<'a>> {
        let client = if program == "pg_dump" {
            // pg_dump refuses a newer server, and an older dump differs: match its major.
            pg_install::client_of_major(ctx, program, server_major(ctx)?)?
        } else {
            which::which(program).with_context(|| {
                format!("{program} is not installed: install the PostgreSQL client (apt install postgresql-client, brew install libpq)")
            })?
        };
        Ok(client_env(ctx, ctx.sh.cmd(client), database))
    }
}

/// The server's major version, from the version it reports when a client connects.
fn server_major(ctx: &Ctx) -> Result<u32> {
    let client = Client::connect(&ctx.cfg.url, Duration::from_secs(10))
        .with_context(|| format!("cannot connect to {}", ctx.cfg.redacted_url()))?;
    let version = client.server_version();
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|major| major.parse().ok())
        .with_context(|| format!("cannot read a major version from the server's {version:?}"))
}
