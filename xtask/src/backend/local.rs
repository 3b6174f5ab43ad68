//! The local backend: a cluster made with `initdb`/`pg_ctl` from the PostgreSQL binaries on this
//! machine, which provably belongs to this checkout (MIGRATIONS.md, "Shared machines").

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use xshell::cmd;

use super::{
    Backend, BackendKind,
    shared::{Halt, PortTaken, client_env, port_is_taken, port_taken_error},
};
use crate::{
    cluster_dir::{self, Place, ServerUser},
    context::Ctx,
    pg::{self, Client},
    pg_install::{self, Install},
    postmaster::{self, Postmaster},
    private_dir::Owner,
    process::{self, is_executable, output, stderr_line},
    scram,
    state_lock::{self, StateLock},
    ui,
};

/// The bootstrap superuser. It has no password, so it cannot log in over TCP; it is reachable
/// only through the server's Unix socket, in a directory that only the server's user can enter.
pub const ADMIN_ROLE: &str = "xtask_admin";

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Local {
    /// The server binaries, and why these were chosen.
    install: Install,
    install_reason: String,
    place: Place,
    /// The developer's cluster keeps PostgreSQL's durable defaults; the test cluster trades them for speed.
    durable: bool,
    /// The unprivileged user the server runs as when xtask runs as root.
    run_as: Option<ServerUser>,
    /// Serialises this cluster's lifecycle steps across processes.
    lock_file: PathBuf,
    /// "local cluster" or "test cluster", for messages.
    label: &'static str,
    /// The setting that moves this cluster's port, for messages.
    port_setting: &'static str,
}

impl Local {
    pub fn new(ctx: &Ctx) -> Result<Local> {
        let chosen = pg_install::choose_server(ctx).context(
            "the local backend needs the PostgreSQL server binaries: install them (apt install postgresql, brew install postgresql@16) or set PG_BIN",
        )?;
        let run_as = cluster_dir::server_user(ctx)?;
        if ctx.cfg.user == ADMIN_ROLE {
            bail!(
                "the user name {ADMIN_ROLE:?} is reserved for the local cluster's administration: choose another POSTGRES_USER"
            );
        }
        let state = &ctx.cfg.state_dir;
        Ok(Local {
            install: chosen.install,
            install_reason: chosen.reason,
            place: Place::developer(state),
            durable: true,
            run_as,
            lock_file: state.join("local.lock"),
            label: "local cluster",
            port_setting: "POSTGRES_PORT",
        })
    }

    /// The separate cluster that `db-test` uses: RAM-backed where `/dev/shm` exists, with
    /// fsync, synchronous_commit and full_page_writes off. Losing it loses only test databases.
    pub fn for_tests(ctx: &Ctx) -> Result<Local> {
        Ok(Local::new(ctx)?.into_test_cluster(ctx))
    }

    /// How many SCRAM rounds each login to this cluster costs (see `scram`): PostgreSQL's default
    /// for the developer's cluster, a handful for the test cluster, whose tests connect often.
    fn scram_iterations(&self) -> u32 {
        if self.durable {
            scram::DEFAULT_ITERATIONS
        } else {
            scram::TEST_CLUSTER_ITERATIONS
        }
    }

    /// The test cluster, on the same binaries and user as this one.
    fn into_test_cluster(self, ctx: &Ctx) -> Local {
        let state = &ctx.cfg.state_dir;
        Local {
            place: Place::for_tests(state),
            durable: false,
            lock_file: state.join("test-cluster.lock"),
            label: "test cluster",
            port_setting: "POSTGRES_TEST_PORT",
            ..self
        }
    }

    /// This checkout's other cluster: the test cluster for the developer's, and back.
    fn sibling(&self, ctx: &Ctx) -> Result<Local> {
        if self.place.is_private() {
            Local::new(ctx)
        } else {
            Local::for_tests(ctx)
        }
    }

    /// Stops the developer's cluster and the test cluster; with `delete_data`, deletes them.
    pub(super) fn stop_all(ctx: &Ctx, delete_data: bool) -> Result<Halt> {
        let developer = Local::new(ctx)?;
        let mut found = vec![(developer.label, developer.stop_cluster(ctx, delete_data)?)];
        let tests = developer.into_test_cluster(ctx);
        found.push((tests.label, tests.stop_cluster(ctx, delete_data)?));
        if found.iter().all(|(_, outcome)| outcome.is_none()) {
            return Ok(Halt::Nothing(format!(
                "there is no local cluster in {}",
                ctx.cfg.state_dir.display()
            )));
        }
        let ran = found
            .into_iter()
            .filter(|(_, outcome)| *outcome == Some(true));
        Ok(Halt::Stopped(ran.map(|(label, _)| label).collect()))
    }

    /// The test cluster's port: `POSTGRES_TEST_PORT`, else the one it runs on, else the one
    /// chosen before (kept in the state directory), else a free one. Parallel runs agree on it.
    pub fn test_port(&self, ctx: &Ctx) -> Result<u16> {
        if let Some(port) = ctx.cfg.test_port_setting()? {
            return Ok(port);
        }
        let _lock = self.lock()?;
        if let Some(running) = self.running()? {
            return Ok(running.port);
        }
        let record = ctx.cfg.state_dir.join("test-cluster.port");
        let recorded = fs::read_to_string(&record)
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok());
        if let Some(port) = recorded.filter(|port| !port_is_taken(*port)) {
            return Ok(port);
        }
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .context("cannot find a free port for the test cluster")?
            .port();
        fs::write(&record, format!("{port}\n"))
            .with_context(|| format!("cannot write {}", record.display()))?;
        Ok(port)
    }

    /// Where the cluster lives, for messages; the test cluster's directory is made on first start.
    pub fn describe_dir(&self) -> String {
        self.place.describe()
    }

    fn lock(&self) -> Result<StateLock> {
        state_lock::acquire(&self.lock_file, self.label)
    }

    fn owner(&self) -> Owner {
        self.run_as
            .as_ref()
            .map_or_else(Owner::current, |user| user.owner)
    }

    fn existing_home(&self) -> Result<Option<PathBuf>> {
        self.place.existing_home(self.owner())
    }

    fn running(&self) -> Result<Option<Postmaster>> {
        match self.existing_home()? {
            Some(home) => postmaster::running(&home.join("pgdata")),
            None => Ok(None),
        }
    }

    /// The cluster's directory, made now if there is none; also says whether it is new.
    fn ensure_cluster(&self, ctx: &Ctx) -> Result<(PathBuf, bool)> {
        if let Some(home) = self.place.reusable_home(self.owner())?
            && self.place.fits(&home, &self.install, self.label)?
        {
            return Ok((home, false));
        }
        let home = self
            .place
            .build(self.owner(), |staging| self.initdb(ctx, staging))?;
        ui::info(format!(
            "initialised a {} in {}",
            self.label,
            home.display()
        ));
        Ok((home, true))
    }

    fn initdb(&self, ctx: &Ctx, home: &Path) -> Result<()> {
        if let Some(user) = &self.run_as {
            let name = &user.name;
            let reachable = output(cmd!(ctx.sh, "runuser -u {name} -- test -w {home}"))?;
            if !reachable.status.success() {
                bail!(
                    "the server runs as user {name} (initdb refuses root), but {name} cannot reach {}: set DB_STATE_DIR to a directory it can reach",
                    home.display()
                );
            }
        }
        let data = home.join("pgdata");
        // No password anywhere: the superuser logs in only through the private Unix socket,
        // and the application role gets a SCRAM verifier computed here (`provision`).
        let init = output(
            self.server_cmd(ctx, "initdb")
                .arg("--pgdata")
                .arg(&data)
                .args([
                    "--username",
                    ADMIN_ROLE,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]),
        )?;
        if !init.status.success() {
            bail!("initdb failed: {}", stderr_line(&init));
        }
        Ok(())
    }

    fn bin(&self, program: &str) -> PathBuf {
        self.install.bin.join(program)
    }

    /// Warns, once per cluster, when the binaries are not the major that the compose file's
    /// image runs: tests then pass on a version production does not use.
    fn warn_on_version(&self, ctx: &Ctx) {
        if let Some(image_major) = pg_install::image_major(&ctx.cfg.image)
            && image_major != self.install.major
        {
            ui::warn(format!(
                "the local binaries are PostgreSQL {}, but the compose file's image {} runs {image_major}: set PG_BIN to a PostgreSQL {image_major} bin directory to test what it runs",
                self.install.major, ctx.cfg.image
            ));
        }
    }

    /// A server-side command, run as the unprivileged user when we are root.
    fn server_cmd<'a>(&self, ctx: &'a Ctx, program: &str) -> xshell::Cmd<'a> {
        let program = self.bin(program);
        match &self.run_as {
            Some(user) => {
                let name = &user.name;
                cmd!(ctx.sh, "runuser -u {name} -- {program}")
            }
            None => cmd!(ctx.sh, "{program}"),
        }
    }

    /// The superuser's connection, through the running server's private socket.
    fn admin(&self, running: &Postmaster) -> Result<Client> {
        let socket_dir = running
            .socket_dir
            .as_deref()
            .with_context(|| format!("the {} runs without a Unix socket: restart it with `cargo xtask db-down` and `cargo xtask db-up`", self.label))?;
        Client::connect_socket(
            socket_dir,
            running.port,
            ADMIN_ROLE,
            "postgres",
            ADMIN_TIMEOUT,
        )
        .with_context(|| {
            format!(
                "cannot reach the {} as {ADMIN_ROLE} through {}",
                self.label,
                socket_dir.display()
            )
        })
    }

    /// Makes the application role (no superuser: it can create databases and owns its own)
    /// and its database, unless they exist. The password never leaves this process.
    fn provision(&self, ctx: &Ctx, running: &Postmaster) -> Result<()> {
        let mut admin = self.admin(running)?;
        let cfg = &ctx.cfg;
        let role_exists = admin
            .query_value(&format!(
                "SELECT 1 FROM pg_roles WHERE rolname = {}",
                pg::literal(&cfg.user)
            ))
            .context("cannot list roles")?;
        if role_exists.is_none() {
            admin
                .query(&format!(
                    "CREATE ROLE {} LOGIN CREATEDB NOSUPERUSER PASSWORD {}",
                    pg::ident(&cfg.user),
                    pg::literal(&scram::verifier(&cfg.password, self.scram_iterations()))
                ))
                .with_context(|| format!("cannot create role {:?}", cfg.user))?;
        }
        create_database_as(&mut admin, &cfg.database, &cfg.user)
    }

    fn pg_ctl_start(
        &self,
        ctx: &Ctx,
        data: &Path,
        socket_dir: &Path,
        deadline: Instant,
    ) -> Result<()> {
        let log = data
            .parent()
            .context("pgdata has a parent")?
            .join("postgres.log");
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{}' -c unix_socket_permissions=0700",
            ctx.cfg.port,
            socket_dir.display()
        );
        if !self.durable {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let wait_secs = deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1)
            .to_string();
        let started = output(
            self.server_cmd(ctx, "pg_ctl")
                .args(["start", "--wait", "--timeout", &wait_secs, "--pgdata"])
                .arg(data)
                .arg("--log")
                .arg(&log)
                .args(["-o", &options]),
        )?;
        if started.status.success() {
            return Ok(());
        }
        let log_text = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = log_text.lines().rev().take(20).collect();
        if tail.iter().any(|l| l.contains("Address already in use")) {
            return Err(port_taken_error(ctx.cfg.port));
        }
        let last = tail
            .iter()
            .find(|l| l.contains("FATAL") || l.contains("ERROR"))
            .map(|l| l.trim().to_owned())
            .unwrap_or_else(|| stderr_line(&started));
        bail!(
            "pg_ctl could not start the {}: {last} (log: {})",
            self.label,
            log.display()
        );
    }

    /// Makes the cluster if there is none, and starts it unless it runs; the caller holds the lock.
    fn start_locked(&self, ctx: &Ctx, deadline: Instant) -> Result<bool> {
        let (home, fresh) = self.ensure_cluster(ctx)?;
        if fresh {
            self.warn_on_version(ctx);
        }
        let data = home.join("pgdata");
        if let Some(running) = postmaster::running(&data)? {
            if running.port != ctx.cfg.port {
                bail!(
                    "the {} already runs on port {}, not on the configured port {}, which xtask will not use: stop it with `cargo xtask db-down` and start it again, or set {} to {}",
                    self.label,
                    running.port,
                    ctx.cfg.port,
                    self.port_setting,
                    running.port
                );
            }
            return Ok(false);
        }
        if port_is_taken(ctx.cfg.port) {
            return Err(port_taken_error(ctx.cfg.port));
        }
        let socket_dir = cluster_dir::new_socket_dir(self.owner())?;
        if let Err(error) = self.pg_ctl_start(ctx, &data, &socket_dir, deadline) {
            cluster_dir::remove_socket_dir(&socket_dir, self.owner());
            return Err(error);
        }
        let running = postmaster::running(&data)?.with_context(|| {
            format!(
                "the {} stopped right after it started: see `cargo xtask db-logs`",
                self.label
            )
        })?;
        self.provision(ctx, &running)?;
        Ok(true)
    }

    /// Stops the server if it runs, and with `delete_data` deletes the cluster. Returns `None`
    /// when there is no cluster, else whether its server was running.
    fn stop_cluster(&self, ctx: &Ctx, delete_data: bool) -> Result<Option<bool>> {
        let _lock = self.lock()?;
        let Some(home) = self.existing_home()? else {
            return Ok(None);
        };
        if delete_data {
            cluster_dir::check_ours(&home)?;
        }
        let data = home.join("pgdata");
        let running = postmaster::running(&data)?;
        if let Some(running) = &running {
            let stopped = output(
                self.server_cmd(ctx, "pg_ctl")
                    .args(["stop", "--wait", "--mode=fast", "--pgdata"])
                    .arg(&data),
            )?;
            if !stopped.status.success() {
                bail!(
                    "pg_ctl could not stop the {}: {}",
                    self.label,
                    stderr_line(&stopped)
                );
            }
            if let Some(socket_dir) = &running.socket_dir {
                cluster_dir::remove_socket_dir(socket_dir, self.owner());
            }
        }
        if delete_data {
            self.place.remove(&home)?;
        }
        Ok(Some(running.is_some()))
    }

    /// Names this checkout's other cluster when it is what holds the port, as its
    /// `postmaster.pid` proves (its postmaster runs, on that port); other errors pass unchanged.
    /// Called without our lock, so that the two clusters' locks are never held together.
    fn explain_taken_port(&self, ctx: &Ctx, error: anyhow::Error) -> anyhow::Error {
        let Some(&PortTaken { port }) = error.downcast_ref::<PortTaken>() else {
            return error;
        };
        let holder = self.sibling(ctx).and_then(|other| {
            let _lock = other.lock()?;
            let runs_there = other.running()?.is_some_and(|p| p.port == port);
            Ok(runs_there.then_some(other.label))
        });
        match holder {
            Ok(Some(label)) => self.taken_by_sibling(port, label),
            _ => error,
        }
    }

    fn taken_by_sibling(&self, port: u16, holder: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "port {port} on 127.0.0.1 is taken by this checkout's own {holder}, so the {} cannot use it: stop the {holder} with `cargo xtask db-down --backend local`, or choose another port with {} in .env",
            self.label,
            self.port_advice()
        )
    }

    /// The settings that move this cluster's port.
    fn port_advice(&self) -> String {
        if self.place.is_private() {
            self.port_setting.to_owned()
        } else {
            format!("{} (and DATABASE_URL)", self.port_setting)
        }
    }

    /// The system identifier of this cluster, if it exists.
    fn system_identifier(&self) -> Result<Option<u64>> {
        Ok(self
            .existing_home()?
            .and_then(|home| cluster_dir::system_identifier(&home)))
    }
}

impl Backend for Local {
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }

    fn describe(&self) -> Option<String> {
        Some(format!(
            "binaries: PostgreSQL {} in {} ({})",
            self.install.version,
            self.install.bin.display(),
            self.install_reason
        ))
    }

    fn start(&self, ctx: &Ctx, deadline: Instant) -> Result<bool> {
        let lock = self.lock()?;
        let started = self.start_locked(ctx, deadline);
        // Released first: the other cluster's lock is never taken while ours is held.
        drop(lock);
        started.map_err(|error| self.explain_taken_port(ctx, error))
    }

    fn stop(&self, ctx: &Ctx, delete_data: bool) -> Result<Halt> {
        Ok(match self.stop_cluster(ctx, delete_data)? {
            None => Halt::Nothing(format!("there is no {}", self.label)),
            Some(true) => Halt::Stopped(vec![self.label]),
            Some(false) => Halt::Stopped(Vec::new()),
        })
    }

    fn logs(&self, ctx: &Ctx, follow: bool) -> Result<()> {
        let log = self
            .existing_home()?
            .map(|home| home.join("postgres.log"))
            .filter(|log| log.exists())
            .context("no log yet: start the server with `cargo xtask db-up`")?;
        let tail = if follow {
            cmd!(ctx.sh, "tail -n 50 -F {log}")
        } else {
            cmd!(ctx.sh, "tail -n +1 {log}")
        };
        process::run_redacted(tail.quiet())
    }

    fn client_command<'a>(
        &self,
        ctx: &'a Ctx,
        program: &str,
        database: &str,
        _interactive: bool,
    ) -> Result<xshell::Cmd<'a>> {
        let client = self.bin(program);
        let client = if is_executable(&client) {
            client
        } else {
            which::which(program).with_context(|| format!("{program} is not installed"))?
        };
        Ok(client_env(ctx, ctx.sh.cmd(client), database))
    }

    fn create_database(&self, ctx: &Ctx) -> Result<()> {
        let running = self.running()?.with_context(|| {
            format!(
                "the {} is not running: start it with `cargo xtask db-up`",
                self.label
            )
        })?;
        create_database_as(&mut self.admin(&running)?, &ctx.cfg.database, &ctx.cfg.user)
    }

    /// Proves that the server on the port is this cluster: same system identifier as our
    /// `pg_control`. Otherwise it is another project's or another user's, and we touch nothing.
    fn check_identity(&self, ctx: &Ctx, client: &mut Client) -> Result<()> {
        let ours = self.system_identifier()?;
        let theirs = client
            .query_value("SELECT system_identifier FROM pg_control_system()")
            .context("cannot read the server's system identifier")?
            .and_then(|id| id.parse::<u64>().ok());
        if ours.is_some() && ours == theirs {
            return Ok(());
        }
        if let Ok(other) = self.sibling(ctx)
            && theirs.is_some()
            && other.system_identifier().ok().flatten() == theirs
        {
            return Err(self.taken_by_sibling(ctx.cfg.port, other.label));
        }
        bail!(
            "port {} on 127.0.0.1 is served by a PostgreSQL that is not this checkout's {} (another project's or another user's), so xtask will not touch it: choose a free port with {} in .env",
            ctx.cfg.port,
            self.label,
            self.port_advice()
        );
    }
}

/// Creates `database`, owned by `owner`, unless it exists; a parallel creator is no error.
fn create_database_as(admin: &mut Client, database: &str, owner: &str) -> Result<()> {
    let exists = admin
        .query_value(&format!(
            "SELECT 1 FROM pg_database WHERE datname = {}",
            pg::literal(database)
        ))
        .context("cannot list databases")?;
    if exists.is_some() {
        return Ok(());
    }
    match admin.query(&format!(
        "CREATE DATABASE {} OWNER {}",
        pg::ident(database),
        pg::ident(owner)
    )) {
        Ok(_) => {
            ui::info(format!("created database {database:?}"));
            Ok(())
        }
        Err(e) if e.code() == Some("42P04") => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create database {database:?}")),
    }
}
