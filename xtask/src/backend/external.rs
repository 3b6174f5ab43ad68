//! The external backend: a server someone else runs (a CI service container, a managed
//! PostgreSQL). xtask starts and stops nothing; it only waits for it.

use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{Backend, BackendKind, Ctx, local::client_env};

pub struct External;

impl Backend for External {
    fn kind(&self) -> BackendKind {
        BackendKind::External
    }

    fn start(&self, _ctx: &Ctx, _deadline: Instant) -> Result<bool> {
        Ok(false)
    }

    fn stop(&self, ctx: &Ctx, _delete_data: bool) -> Result<()> {
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
        let client = which::which(program).with_context(|| {
            format!("{program} is not installed: install the PostgreSQL client (apt install postgresql-client, brew install libpq)")
        })?;
        Ok(client_env(ctx, ctx.sh.cmd(client), database))
    }
}
