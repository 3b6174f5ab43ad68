//! Where PostgreSQL comes from: the backend trait and its kinds; choosing one, remembering it
//! and waiting for it live in the submodules.

mod choice;
mod docker;
mod external;
pub mod lifecycle;
mod local;
mod memory;
mod readiness;
mod shared;

use std::{fmt, time::Instant};

use anyhow::{Result, bail};

pub use choice::{DockerProblem, select};
pub use docker::Docker;
pub use external::External;
pub use local::Local;
pub use memory::{forget_backend, recorded_backend, remember_backend};
pub use readiness::{unreachable_hint, wait_ready};
pub use shared::Halt;

use crate::{context::Ctx, pg::Client, ui};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Docker,
    Local,
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Docker,
    Local,
    External,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker",
            BackendKind::Local => "local",
            BackendKind::External => "external",
        }
    }

    fn from_name(name: &str) -> Option<BackendKind> {
        match name {
            "docker" => Some(BackendKind::Docker),
            "local" => Some(BackendKind::Local),
            "external" => Some(BackendKind::External),
            _ => None,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One way of running PostgreSQL. Each implementation lives in its own file.
pub trait Backend {
    fn kind(&self) -> BackendKind;

    /// Starts the server unless it is running; returns whether it had to start it.
    /// Readiness is checked afterwards by [`wait_ready`].
    fn start(&self, ctx: &Ctx, deadline: Instant) -> Result<bool>;

    /// Stops the server. With `delete_data` the data is deleted as well. Says what it found,
    /// so that `db-down` never claims to have stopped a server that was not running.
    fn stop(&self, ctx: &Ctx, delete_data: bool) -> Result<Halt>;

    /// Prints the server's log, following it with `follow`.
    fn logs(&self, ctx: &Ctx, follow: bool) -> Result<()>;

    /// A PostgreSQL client program (`psql`, `pg_dump`) set up to reach `database` on this server,
    /// with the password in its environment rather than on its command line.
    fn client_command<'a>(
        &self,
        ctx: &'a Ctx,
        program: &str,
        database: &str,
        interactive: bool,
    ) -> Result<xshell::Cmd<'a>>;

    /// More about the backend for the announcement, such as the binaries it runs.
    fn describe(&self) -> Option<String> {
        None
    }

    /// Why this backend's server is not running, when the backend can tell without connecting
    /// (its container is not up); `db-status` reports that rather than describe whatever other
    /// server answers on the port. `None` when the server may be running.
    fn not_running(&self, _ctx: &Ctx) -> Result<Option<NotRunning>> {
        Ok(None)
    }

    /// Proves that the server `client` reached is the one this backend runs, before anything
    /// uses it. Only the local backend can tell; the others trust their own container or URL.
    fn check_identity(&self, _ctx: &Ctx, _client: &mut Client) -> Result<()> {
        Ok(())
    }

    /// Called when the target database does not exist on a running server.
    fn create_database(&self, ctx: &Ctx) -> Result<()> {
        bail!(
            "database {:?} does not exist on {}: create it, or point DATABASE_URL at an existing one",
            ctx.cfg.database,
            ctx.cfg.redacted_url()
        )
    }
}

/// What [`Backend::not_running`] found: why the server is down, and what starts it.
pub struct NotRunning {
    pub why: String,
    pub remedy: String,
}

/// The chosen backend and the reason, which every command prints.
pub struct Selected {
    pub backend: Box<dyn Backend>,
    pub reason: String,
}

impl Selected {
    pub fn kind(&self) -> BackendKind {
        self.backend.kind()
    }

    pub fn announce(&self, ctx: &Ctx) {
        ui::info(format!("backend: {} ({})", self.kind(), self.reason));
        ui::info(format!("server:  {}", ctx.cfg.redacted_url()));
        if let Some(detail) = self.backend.describe() {
            ui::info(detail);
        }
    }
}
