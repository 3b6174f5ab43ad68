//! The local backend: a throwaway cluster inside the project, made with `initdb`/`pg_ctl`
//! from the PostgreSQL binaries on this machine.

use std::{
    fs,
    io::Write,
    os::unix::fs::{PermissionsExt, chown},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use xshell::cmd;

use super::{
    Backend, BackendKind, Ctx, create_database_via_sql, is_executable, output, port_is_taken,
    port_taken_error,
};
use crate::{process, ui};

/// The major version the project targets; other versions work but earn a warning.
const TARGET_MAJOR: u32 = 16;

pub struct Local {
    bin_dir: PathBuf,
    dir: PathBuf,
    /// The developer's cluster keeps PostgreSQL's durable defaults; the test cluster trades them for speed.
    durable: bool,
    /// The unprivileged user the server runs as when xtask runs as root.
    run_as: Option<UnprivilegedUser>,
}

#[derive(Debug, Clone)]
struct UnprivilegedUser {
    name: String,
    uid: u32,
    gid: u32,
}

/// Finds the server binaries: `PG_BIN`, then `pg_config --bindir`, then `PATH`, then the highest
/// version in the usual versioned locations (Debian, Homebrew's keg-only formulae, PGDG RPMs).
pub fn find_bin_dir(ctx: &Ctx) -> Result<PathBuf> {
    let has_server =
        |dir: &Path| is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl"));
    if let Some(dir) = ctx.cfg.lookup.value("PG_BIN") {
        let dir = ctx.cfg.root.join(dir);
        if has_server(&dir) {
            return Ok(dir);
        }
        bail!(
            "PG_BIN={} holds no initdb and pg_ctl: point it at the PostgreSQL bin directory",
            dir.display()
        );
    }
    if let Ok(pg_config) = which::which("pg_config")
        && let Ok(out) = output(cmd!(ctx.sh, "{pg_config} --bindir"))
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    if let Ok(pg_ctl) = which::which("pg_ctl")
        && let Some(dir) = pg_ctl.parent()
        && has_server(dir)
    {
        return Ok(dir.to_owned());
    }
    // (directory to list, prefix of the entries holding a version number)
    const VERSIONED: [(&str, &str); 4] = [
        ("/usr/lib/postgresql", ""),
        ("/opt/homebrew/opt", "postgresql@"),
        ("/usr/local/opt", "postgresql@"),
        ("/usr", "pgsql-"),
    ];
    let mut versioned: Vec<(u32, PathBuf)> = VERSIONED
        .iter()
        .flat_map(|(parent, prefix)| {
            fs::read_dir(parent)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(move |entry| {
                    let name = entry.file_name();
                    let major = name.to_str()?.strip_prefix(prefix)?.parse().ok()?;
                    let dir = entry.path().join("bin");
                    has_server(&dir).then_some((major, dir))
                })
        })
        .collect();
    versioned.sort();
    versioned
        .pop()
        .map(|(_, dir)| dir)
        .context("no PostgreSQL server binaries found (looked at PG_BIN, pg_config --bindir, PATH, /usr/lib/postgresql/*/bin and Homebrew's postgresql@*)")
}

impl Local {
    pub fn new(ctx: &Ctx) -> Result<Local> {
        let bin_dir = find_bin_dir(ctx).context(
            "the local backend needs the PostgreSQL server binaries: install them (apt install postgresql, brew install postgresql@16) or set PG_BIN",
        )?;
        let run_as = if is_root(ctx)? {
            Some(unprivileged_user(ctx)?)
        } else {
            None
        };
        Ok(Local {
            bin_dir,
            dir: ctx.cfg.state_dir.join("local"),
            durable: true,
            run_as,
        })
    }

    /// The separate cluster that `db-test` uses: RAM-backed where `/dev/shm` exists, with
    /// fsync, synchronous_commit and full_page_writes off. Losing it loses only test databases.
    pub fn for_tests(ctx: &Ctx) -> Result<Local> {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            let mut hasher = Sha256::new();
            hasher.update(ctx.cfg.state_dir.as_os_str().as_encoded_bytes());
            let digest = hasher.finalize();
            let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
            shm.join(format!("dbops-test-{tag}"))
        } else {
            ctx.cfg.state_dir.join("test")
        };
        Ok(Local {
            dir,
            durable: false,
            ..Local::new(ctx)?
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("pgdata")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn bin(&self, program: &str) -> PathBuf {
        self.bin_dir.join(program)
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

    fn give_to_server_user(&self, path: &Path) -> Result<()> {
        if let Some(user) = &self.run_as {
            chown(path, Some(user.uid), Some(user.gid))
                .with_context(|| format!("cannot hand {} to user {}", path.display(), user.name))?;
        }
        Ok(())
    }

    fn is_running(&self, ctx: &Ctx) -> Result<bool> {
        let data = self.data_dir();
        if !data.join("PG_VERSION").exists() {
            return Ok(false);
        }
        let status = output(
            self.server_cmd(ctx, "pg_ctl")
                .args(["status", "--pgdata"])
                .arg(&data),
        )?;
        Ok(status.status.success())
    }

    fn ensure_cluster(&self, ctx: &Ctx) -> Result<bool> {
        let data = self.data_dir();
        if data.join("PG_VERSION").exists() {
            return Ok(false);
        }
        if data.exists()
            && fs::read_dir(&data)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            bail!(
                "{} exists but is not a PostgreSQL cluster (no PG_VERSION): move it away, or set DB_STATE_DIR to another directory",
                data.display()
            );
        }
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        self.give_to_server_user(&self.dir)?;
        if let Some(user) = &self.run_as {
            let dir = &self.dir;
            let name = &user.name;
            let reachable = output(cmd!(ctx.sh, "runuser -u {name} -- test -w {dir}"))?;
            if !reachable.status.success() {
                bail!(
                    "the server runs as user {name} (initdb refuses root), but {name} cannot reach {}: set DB_STATE_DIR to a directory it can reach",
                    dir.display()
                );
            }
        }
        fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set mode 0700 on {}", data.display()))?;
        self.give_to_server_user(&data)?;

        // The password goes through a 0600 file so that it never shows on a command line.
        let mut pwfile = tempfile::Builder::new()
            .prefix(".pwfile")
            .tempfile_in(&self.dir)
            .context("cannot create the initdb password file")?;
        writeln!(pwfile, "{}", ctx.cfg.password)
            .context("cannot write the initdb password file")?;
        pwfile
            .flush()
            .context("cannot write the initdb password file")?;
        self.give_to_server_user(pwfile.path())?;

        let user = &ctx.cfg.user;
        let pwfile_arg = format!("--pwfile={}", pwfile.path().display());
        let init = output(
            self.server_cmd(ctx, "initdb")
                .args(["--pgdata"])
                .arg(&data)
                .args([
                    "--username",
                    user,
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ])
                .arg(pwfile_arg),
        )?;
        if !init.status.success() {
            let _ = fs::remove_dir_all(&data);
            bail!("initdb failed: {}", super::stderr_line(&init));
        }
        ui::info(format!("initialised a cluster in {}", data.display()));
        Ok(true)
    }

    /// Removes a `postmaster.pid` whose process is gone or is no longer PostgreSQL, as after a crash.
    fn clear_stale_pid(&self, ctx: &Ctx) -> Result<()> {
        let pid_file = self.data_dir().join("postmaster.pid");
        let Ok(text) = fs::read_to_string(&pid_file) else {
            return Ok(());
        };
        let pid = text.lines().next().unwrap_or("").trim().to_owned();
        // /proc answers without `ps`, which minimal container images lack; `ps` covers macOS.
        let command = match fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(comm) => Some(comm),
            Err(_) if Path::new("/proc/self").exists() => None,
            Err(_) => {
                let ps = output(cmd!(ctx.sh, "ps -o comm= -p {pid}"))?;
                ps.status
                    .success()
                    .then(|| String::from_utf8_lossy(&ps.stdout).into_owned())
            }
        };
        if command.is_some_and(|c| c.contains("postgres") || c.contains("postmaster")) {
            return Ok(());
        }
        fs::remove_file(&pid_file)
            .with_context(|| format!("cannot remove stale {}", pid_file.display()))?;
        ui::warn(format!(
            "removed a stale postmaster.pid (process {pid} is not running PostgreSQL)"
        ));
        Ok(())
    }

    fn warn_on_version(&self, ctx: &Ctx) {
        let pg_ctl = self.bin("pg_ctl");
        let Ok(out) = output(cmd!(ctx.sh, "{pg_ctl} --version")) else {
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let major = text
            .split_whitespace()
            .find_map(|word| word.split('.').next()?.parse::<u32>().ok());
        if let Some(major) = major
            && major != TARGET_MAJOR
        {
            ui::warn(format!(
                "the local binaries are PostgreSQL {major}; the project targets {TARGET_MAJOR} (set PG_BIN to use another version)"
            ));
        }
    }
}

impl Backend for Local {
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }

    fn start(&self, ctx: &Ctx, deadline: Instant) -> Result<bool> {
        let fresh = self.ensure_cluster(ctx)?;
        if !fresh && self.is_running(ctx)? {
            return Ok(false);
        }
        self.clear_stale_pid(ctx)?;
        if port_is_taken(ctx.cfg.port) {
            return Err(port_taken_error(ctx.cfg.port));
        }
        self.warn_on_version(ctx);
        let data = self.data_dir();
        let log = self.log_file();
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{}'",
            ctx.cfg.port,
            data.display()
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
                .arg(&data)
                .arg("--log")
                .arg(&log)
                .args(["-o", &options]),
        )?;
        if !started.status.success() {
            let log_text = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log_text.lines().rev().take(20).collect();
            if tail.iter().any(|l| l.contains("Address already in use")) {
                return Err(port_taken_error(ctx.cfg.port));
            }
            let last = tail
                .iter()
                .find(|l| l.contains("FATAL") || l.contains("ERROR"))
                .map(|l| l.trim().to_owned())
                .unwrap_or_else(|| super::stderr_line(&started));
            bail!(
                "pg_ctl could not start the local cluster: {last} (log: {})",
                log.display()
            );
        }
        Ok(true)
    }

    fn stop(&self, ctx: &Ctx, delete_data: bool) -> Result<()> {
        if self.is_running(ctx)? {
            let data = self.data_dir();
            let stopped = output(
                self.server_cmd(ctx, "pg_ctl")
                    .args(["stop", "--wait", "--mode=fast", "--pgdata"])
                    .arg(&data),
            )?;
            if !stopped.status.success() {
                bail!(
                    "pg_ctl could not stop the local cluster: {}",
                    super::stderr_line(&stopped)
                );
            }
        }
        if delete_data && self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("cannot delete {}", self.dir.display()))?;
        }
        Ok(())
    }

    fn logs(&self, ctx: &Ctx, follow: bool) -> Result<()> {
        let log = self.log_file();
        if !log.exists() {
            bail!(
                "no log yet at {}: start the server with `cargo xtask db-up`",
                log.display()
            );
        }
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
        create_database_via_sql(ctx)
    }
}

/// Connection settings for libpq clients; the password travels in the environment, not in argv.
pub fn client_env<'a>(ctx: &Ctx, cmd: xshell::Cmd<'a>, database: &str) -> xshell::Cmd<'a> {
    let cfg = &ctx.cfg;
    cmd.env(
        "PGHOST",
        cfg.host().trim_start_matches('[').trim_end_matches(']'),
    )
    .env("PGPORT", cfg.port.to_string())
    .env("PGUSER", &cfg.user)
    .env("PGPASSWORD", &cfg.password)
    .env("PGDATABASE", database)
}

fn is_root(ctx: &Ctx) -> Result<bool> {
    let out = output(cmd!(ctx.sh, "id -u"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
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
