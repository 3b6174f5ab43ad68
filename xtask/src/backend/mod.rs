//! Where PostgreSQL comes from: the backend trait, the `auto` choice, and the readiness wait they share.

mod docker;
mod external;
pub mod lifecycle;
mod local;
mod shared;

use std::{
    fmt, fs,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

pub use docker::Docker;
pub use external::External;
pub use local::Local;

use crate::{
    config::Config,
    context::Ctx,
    pg::{Client, PgError},
    ui,
};

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

    /// Stops the server. With `delete_data` the data is deleted as well.
    fn stop(&self, ctx: &Ctx, delete_data: bool) -> Result<()>;

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

/// Facts about the machine that decide `auto`; gathered lazily because probing Docker costs time.
pub trait Probe {
    fn recorded_backend(&self) -> Option<BackendKind>;
    fn docker(&self) -> Result<(), String>;
    fn local(&self) -> Result<(), String>;
}

/// The outcome of the `auto` rules, before any backend is built.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    pub kind: BackendKind,
    pub reason: String,
    pub warning: Option<String>,
}

/// The backend that `choice` names, or the one the `auto` rules pick.
pub fn decide(choice: BackendChoice, cfg: &Config, probe: &dyn Probe) -> Result<Decision> {
    let kind = match choice {
        BackendChoice::Docker => BackendKind::Docker,
        BackendChoice::Local => BackendKind::Local,
        BackendChoice::External => BackendKind::External,
        BackendChoice::Auto => return decide_auto(cfg, probe),
    };
    // The flag wins over DB_BACKEND, so DB_BACKEND chose only when it names this backend.
    let from_env = cfg
        .lookup
        .value("DB_BACKEND")
        .is_some_and(|v| v.eq_ignore_ascii_case(kind.name()));
    let how = if from_env { "DB_BACKEND" } else { "--backend" };
    Ok(Decision::quiet(kind, format!("chosen by {how}")))
}

/// The `auto` rules, in order. They are documented in MIGRATIONS.md; keep the two in step.
fn decide_auto(cfg: &Config, probe: &dyn Probe) -> Result<Decision> {
    if !cfg.host_is_local() {
        return Ok(Decision::quiet(
            BackendKind::External,
            format!(
                "auto: DATABASE_URL points at the non-local host {:?}",
                cfg.host()
            ),
        ));
    }
    if cfg.ci && cfg.url_is_explicit() {
        return Ok(Decision::quiet(
            BackendKind::External,
            "auto: CI is set and DATABASE_URL names the CI service".into(),
        ));
    }
    if let Some(kind) = probe.recorded_backend() {
        return decide_recorded(kind, probe);
    }
    let docker_problem = match probe.docker() {
        Ok(()) => {
            return Ok(Decision::quiet(
                BackendKind::Docker,
                "auto: a container engine answers".into(),
            ));
        }
        Err(why) => why,
    };
    match probe.local() {
        Ok(()) => Ok(Decision {
            kind: BackendKind::Local,
            reason: "auto: no usable container engine, PostgreSQL binaries found".into(),
            warning: Some(format!(
                "docker is not usable ({docker_problem}); falling back to a local cluster"
            )),
        }),
        Err(local_problem) => bail!(
            "no PostgreSQL to run: docker is not usable ({docker_problem}) and {local_problem}; install and start Docker, install the PostgreSQL server binaries (apt install postgresql, brew install postgresql@16), or set DATABASE_URL and pass --backend external"
        ),
    }
}

/// Stays with the backend that holds the project's data, or fails: switching would silently
/// hand the developer an empty server.
fn decide_recorded(kind: BackendKind, probe: &dyn Probe) -> Result<Decision> {
    let available = match kind {
        BackendKind::Docker => probe.docker(),
        BackendKind::Local => probe.local(),
        BackendKind::External => Ok(()),
    };
    match available {
        Ok(()) => Ok(Decision::quiet(
            kind,
            format!("auto: the project's data lives in the {kind} backend"),
        )),
        Err(why) => bail!(
            "the project's data lives in the {kind} backend, which is unavailable ({why}): fix that, or pass --backend to use another, empty server"
        ),
    }
}

impl Decision {
    /// A decision with nothing to warn about.
    fn quiet(kind: BackendKind, reason: String) -> Decision {
        Decision {
            kind,
            reason,
            warning: None,
        }
    }
}

struct MachineProbe<'a> {
    ctx: &'a Ctx,
}

impl Probe for MachineProbe<'_> {
    fn recorded_backend(&self) -> Option<BackendKind> {
        recorded_backend(&self.ctx.cfg)
    }

    fn docker(&self) -> Result<(), String> {
        Docker::detect(self.ctx)
            .and_then(|d| d.check_usable(self.ctx))
            .map_err(|e| format!("{e:#}"))
    }

    fn local(&self) -> Result<(), String> {
        crate::pg_install::choose_server(self.ctx)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }
}

pub fn select(ctx: &Ctx, choice: BackendChoice) -> Result<Selected> {
    let decision = decide(choice, &ctx.cfg, &MachineProbe { ctx })?;
    if let Some(warning) = &decision.warning {
        ui::warn(warning);
    }
    let backend: Box<dyn Backend> = match decision.kind {
        BackendKind::Docker => Box::new(Docker::detect(ctx)?),
        BackendKind::Local => Box::new(Local::new(ctx)?),
        BackendKind::External => Box::new(External),
    };
    Ok(Selected {
        backend,
        reason: decision.reason,
    })
}

fn marker_path(cfg: &Config) -> std::path::PathBuf {
    cfg.state_dir.join("backend")
}

/// Which backend holds the project's data, so that `auto` never switches to an empty server.
pub fn recorded_backend(cfg: &Config) -> Option<BackendKind> {
    let text = fs::read_to_string(marker_path(cfg)).ok()?;
    BackendKind::from_name(text.trim())
}

pub fn record_backend(cfg: &Config, kind: BackendKind) -> Result<()> {
    if kind == BackendKind::External {
        return Ok(());
    }
    fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("cannot create {}", cfg.state_dir.display()))?;
    fs::write(marker_path(cfg), format!("{kind}\n"))
        .with_context(|| format!("cannot write {}", marker_path(cfg).display()))
}

pub fn forget_backend(cfg: &Config, kind: BackendKind) -> Result<()> {
    if recorded_backend(cfg) == Some(kind) {
        fs::remove_file(marker_path(cfg))
            .with_context(|| format!("cannot remove {}", marker_path(cfg).display()))?;
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Lookup;

    struct FakeProbe {
        recorded: Option<BackendKind>,
        docker: Result<(), &'static str>,
        local: Result<(), &'static str>,
    }

    impl Probe for FakeProbe {
        fn recorded_backend(&self) -> Option<BackendKind> {
            self.recorded
        }
        fn docker(&self) -> Result<(), String> {
            self.docker.map_err(str::to_owned)
        }
        fn local(&self) -> Result<(), String> {
            self.local.map_err(str::to_owned)
        }
    }

    const UP: Result<(), &str> = Ok(());
    const DOWN: Result<(), &str> = Err("daemon not running");
    const NO_BINS: Result<(), &str> = Err("no PostgreSQL binaries");

    /// (process environment, recorded backend, docker probe, local probe) => expected kind, or `None` for an error.
    type Row = (
        &'static [(&'static str, &'static str)],
        Option<BackendKind>,
        Result<(), &'static str>,
        Result<(), &'static str>,
        Option<BackendKind>,
    );

    #[test]
    fn auto_choice_table() {
        use BackendKind::*;
        let table: &[Row] = &[
            (&[], None, UP, UP, Some(Docker)),
            (&[], None, DOWN, UP, Some(Local)),
            (&[], None, DOWN, NO_BINS, None),
            (
                &[
                    ("CI", "true"),
                    ("DATABASE_URL", "postgres://t:t@localhost:5432/t"),
                ],
                None,
                UP,
                UP,
                Some(External),
            ),
            (&[("CI", "true")], None, DOWN, UP, Some(Local)),
            (
                &[("DATABASE_URL", "postgres://t:t@db.example.com/t")],
                None,
                UP,
                UP,
                Some(External),
            ),
            (
                &[("DATABASE_URL", "postgres://t:t@localhost:5432/t")],
                None,
                UP,
                UP,
                Some(Docker),
            ),
            (&[], Some(Local), UP, UP, Some(Local)),
            (&[], Some(Docker), UP, UP, Some(Docker)),
            (&[], Some(Docker), DOWN, UP, None),
            (&[], Some(Local), UP, NO_BINS, None),
        ];
        for (i, (env, recorded, docker, local, expected)) in table.iter().enumerate() {
            let cfg = Config::from_lookup(Path::new("/p"), Lookup::from_maps(env, &[])).unwrap();
            let probe = FakeProbe {
                recorded: *recorded,
                docker: *docker,
                local: *local,
            };
            let got = decide(BackendChoice::Auto, &cfg, &probe);
            match (expected, got) {
                (Some(kind), Ok(decision)) => {
                    assert_eq!(decision.kind, *kind, "row {i}");
                    assert!(
                        decision.reason.starts_with("auto: "),
                        "row {i}: {}",
                        decision.reason
                    );
                }
                (None, Err(e)) => assert_eq!(e.to_string().lines().count(), 1, "row {i}"),
                (expected, got) => panic!(
                    "row {i}: expected {expected:?}, got {:?}",
                    got.map(|d| d.kind)
                ),
            }
        }
    }

    #[test]
    fn fallback_to_local_warns() {
        let cfg = Config::from_lookup(Path::new("/p"), Lookup::from_maps(&[], &[])).unwrap();
        let probe = FakeProbe {
            recorded: None,
            docker: DOWN,
            local: UP,
        };
        let decision = decide(BackendChoice::Auto, &cfg, &probe).unwrap();
        assert!(decision.warning.unwrap().contains("daemon not running"));
    }

    #[test]
    fn explicit_choice_needs_no_probe() {
        let cfg = Config::from_lookup(Path::new("/p"), Lookup::from_maps(&[], &[])).unwrap();
        let probe = FakeProbe {
            recorded: Some(BackendKind::Docker),
            docker: DOWN,
            local: NO_BINS,
        };
        let decision = decide(BackendChoice::Local, &cfg, &probe).unwrap();
        assert_eq!(decision.kind, BackendKind::Local);
        assert_eq!(decision.reason, "chosen by --backend");
    }

    #[test]
    fn no_way_out_names_all_ways_out() {
        let cfg = Config::from_lookup(Path::new("/p"), Lookup::from_maps(&[], &[])).unwrap();
        let probe = FakeProbe {
            recorded: None,
            docker: DOWN,
            local: NO_BINS,
        };
        let err = decide(BackendChoice::Auto, &cfg, &probe)
            .unwrap_err()
            .to_string();
        for way_out in ["Docker", "PostgreSQL server binaries", "--backend external"] {
            assert!(err.contains(way_out), "{err}");
        }
    }
}
