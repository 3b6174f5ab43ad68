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
    shared::{client_env, port_is_taken, port_taken_error},
};
use crate::{
    cluster_dir::{self, Place},
    context::Ctx,
    pg::{self, Client},
    pg_install::{self, Install},
    postmaster::{self, Postmaster},
    private_dir::{self, Owner},
    process::{self, is_executable, output, stderr_line},
    state_lock::{self, StateLock},
    ui,
};

/// The bootstrap superuser. It has no password, so it cannot log in over TCP; it is reachable
/// only through the server's Unix socket, in a directory that only the server's user can enter.
pub const ADMIN_ROLE: &str = "xtask_admin";

/// Short, private socket directories: a project path can be too long for a socket path.
const SOCKET_PARENT: &str = "/tmp";
const SOCKET_PREFIX: &str = "xtask-pg-";

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Local {
    /// The server binaries, and why these were chosen.
    install: Install,
    install_reason: String,
    place: Place,
    /// The developer's cluster keeps PostgreSQL's durable defaults; the test cluster trades them for speed.
    durable: bool,
    /// The unprivileged user the server runs as when xtask runs as root.
    run_as: Option<UnprivilegedUser>,
    /// Serialises this cluster's lifecycle steps across processes.
    lock_file: PathBuf,
    /// "local cluster" or "test cluster", for messages.
    label: &'static str,
    /// The setting that moves this cluster's port, for messages.
    port_setting: &'static str,
}

#[derive(Debug, Clone)]
struct UnprivilegedUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl Local {
    pub fn new(ctx: &Ctx) -> Result<Local> {
        let chosen = pg_install::choose_server(ctx).context(
            "the local backend needs the PostgreSQL server binaries: install them (apt install postgresql, brew install postgresql@16) or set PG_BIN",
        )?;
        let run_as = if rustix::process::geteuid().is_root() {
            Some(unprivileged_user(ctx)?)
        } else {
            None
        };
        if ctx.cfg.user == ADMIN_ROLE {
            bail!(
                "the user name {ADMIN_ROLE:?} is reserved for the local cluster's administration: choose another POSTGRES_USER"
            );
        }
        let state = &ctx.cfg.state_dir;
        Ok(Local {
            install: chosen.install,
            install_reason: chosen.reason,
            place: Place::Fixed(state.join("local")),
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
        let state = &ctx.cfg.state_dir;
        let shm = Path::new("/dev/shm");
        let parent = if shm.is_dir() {
            shm.to_owned()
        } else {
            state.clone()
        };
        Ok(Local {
            place: Place::Private {
                parent,
                pointer: state.join("test-cluster"),
            },
            durable: false,
            lock_file: state.join("test-cluster.lock"),
            label: "test cluster",
            port_setting: "POSTGRES_TEST_PORT",
            ..Local::new(ctx)?
        })
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
        match &self.run_as {
            Some(user) => Owner {
                uid: user.uid,
                gid: user.gid,
            },
            None => Owner::current(),
        }
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
            && self.check_cluster_version(&home)?
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

    /// Refuses binaries of another major than the cluster's; a test cluster is disposable and
    /// is made again instead.
    fn check_cluster_version(&self, home: &Path) -> Result<bool> {
        let Some(major) = pg_install::cluster_major(&home.join("pgdata")) else {
            return Ok(true);
        };
        if major == self.install.major {
            return Ok(true);
        }
        if self.place.is_private() && postmaster::running(&home.join("pgdata"))?.is_none() {
            ui::info(format!(
                "the test cluster was made by PostgreSQL {major}; making it again with {}",
                self.install.version
            ));
            fs::remove_dir_all(home)
                .with_context(|| format!("cannot delete {}", home.display()))?;
            return Ok(false);
        }
        bail!(
            "the {} in {} was made by PostgreSQL {major}, but the binaries are {} ({}): set PG_BIN to a PostgreSQL {major} bin directory, or stop it and delete its data with `cargo xtask db-down --volumes`",
            self.label,
            home.display(),
            self.install.version,
            self.install.bin.display()
        );
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
                    pg::literal(&pg::scram_verifier(&cfg.password))
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

    /// Deletes a socket directory after its server stopped, if it is provably one of ours.
    fn remove_socket_dir(&self, dir: &Path) {
        let ours = dir.parent() == Some(Path::new(SOCKET_PARENT))
            && dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(SOCKET_PREFIX))
            && private_dir::verify(dir, self.owner()).is_ok();
        if ours {
            let _ = fs::remove_dir_all(dir);
        }
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
        let _lock = self.lock()?;
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
        let socket_dir =
            private_dir::create(Path::new(SOCKET_PARENT), SOCKET_PREFIX, self.owner())?;
        if let Err(error) = self.pg_ctl_start(ctx, &data, &socket_dir, deadline) {
            self.remove_socket_dir(&socket_dir);
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

    fn stop(&self, ctx: &Ctx, delete_data: bool) -> Result<()> {
        let _lock = self.lock()?;
        let Some(home) = self.existing_home()? else {
            return Ok(());
        };
        if delete_data {
            cluster_dir::check_ours(&home)?;
        }
        let data = home.join("pgdata");
        if let Some(running) = postmaster::running(&data)? {
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
                self.remove_socket_dir(socket_dir);
            }
        }
        if delete_data {
            self.place.remove(&home)?;
        }
        Ok(())
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
        let ours = self
            .existing_home()?
            .and_then(|home| fs::read(home.join("pgdata/global/pg_control")).ok())
            .and_then(|control| Some(u64::from_ne_bytes(control.get(..8)?.try_into().ok()?)));
        let theirs = client
            .query_value("SELECT system_identifier FROM pg_control_system()")
            .context("cannot read the server's system identifier")?
            .and_then(|id| id.parse::<u64>().ok());
        if ours.is_none() || ours != theirs {
            bail!(
                "port {} on 127.0.0.1 is served by a PostgreSQL that is not this checkout's {} (another project's or another user's), so xtask will not touch it: choose a free port with {} (and DATABASE_URL) in .env",
                ctx.cfg.port,
                self.label,
                self.port_setting
            );
        }
        Ok(())
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

fn unprivileged_user(ctx: &Ctx) -> Result<UnprivilegedUser> {
    let name = ctx
        .cfg
        .lookup
        .value("DB_LOCAL_USER")
        .unwrap_or_else(|| "postgres".to_owned());
    let id = |flag: &str| -> Option<u32> {
        let out = output(cmd!(ctx.sh, "id {flag} {name}")).ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) if uid != 0 => {
            if which::which("runuser").is_err() {
                bail!(
                    "running as root needs runuser (util-linux) to start the server as {name}: install util-linux, or run as a normal user"
                );
            }
            Ok(UnprivilegedUser { name, uid, gid })
        }
        _ => bail!(
            "running as root, and initdb refuses root, but there is no unprivileged user {name:?} to run the server: create one (useradd --system {name}), set DB_LOCAL_USER, or run as a normal user"
        ),
    }
}
