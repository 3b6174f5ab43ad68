//! Runs the built `xtask` binary against an isolated project state: its own directory, port and settings.

#![allow(dead_code)] // each test file uses a different part

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Arc,
};

pub const PASSWORD: &str = "test-secret-pw";

pub struct Project {
    pub port: u16,
    state: Arc<tempfile::TempDir>,
    env: Vec<(String, String)>,
    /// Only the owner tears the server down; variants made by `with_env` share it.
    owner: bool,
}

impl Project {
    /// A project on the local backend, or `None` (after printing why) where PostgreSQL is missing.
    pub fn local() -> Option<Project> {
        if !local_binaries_or_skip() {
            return None;
        }
        Some(Project::isolated())
    }

    /// A project with its own state directory and free port, whatever the backend.
    pub fn isolated() -> Project {
        Project::local_on_port(unused_port()).expect("a temporary directory")
    }

    pub fn local_on_port(port: u16) -> Option<Project> {
        let state = tempfile::Builder::new()
            .prefix("xtask-test-")
            .tempdir()
            .ok()?;
        // The server may run as an unprivileged user, which must reach the directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o755)).ok()?;
        let env = vec![
            ("DB_BACKEND".into(), "local".into()),
            ("DB_STATE_DIR".into(), state.path().display().to_string()),
            (
                "DATABASE_URL".into(),
                format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/app"),
            ),
        ];
        Some(Project {
            port,
            state: Arc::new(state),
            env,
            owner: true,
        })
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The same project with one more setting; it tears down what it starts.
    pub fn set_env(mut self, key: &str, value: &str) -> Project {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// A variant with one more setting, for one command; the original still owns the server.
    pub fn with_env(&self, key: &str, value: &str) -> Project {
        let variant = Project {
            port: self.port,
            state: Arc::clone(&self.state),
            env: self.env.clone(),
            owner: false,
        };
        variant.set_env(key, value)
    }

    pub fn with_password(&self, password: &str) -> Project {
        self.with_env(
            "DATABASE_URL",
            &format!("postgres://app:{password}@127.0.0.1:{}/app", self.port),
        )
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(args);
        self.configure(&mut cmd);
        cmd
    }

    /// Gives `cmd` this project's settings, and none of the caller's that would override them.
    pub fn configure(&self, cmd: &mut Command) {
        for key in [
            "CI",
            "POSTGRES_USER",
            "POSTGRES_PASSWORD",
            "POSTGRES_DB",
            "POSTGRES_PORT",
        ] {
            cmd.env_remove(key);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
    }

    pub fn xtask(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("xtask runs"))
    }

    /// Starts and stops the local cluster, then leaves a `postmaster.pid` naming `pid`, as a
    /// crash does once the PID has been reused; returns the file's path.
    pub fn crash_leaving_pid(&self, pid: u32) -> PathBuf {
        self.xtask(&["db-up"]).assert_success();
        let pid_file = self.state_dir().join("local/pgdata/postmaster.pid");
        let saved = std::fs::read_to_string(&pid_file).unwrap();
        self.xtask(&["db-down"]).assert_success();
        let mut lines: Vec<String> = saved.lines().map(str::to_owned).collect();
        lines[0] = pid.to_string();
        std::fs::write(&pid_file, lines.join("\n") + "\n").unwrap();
        pid_file
    }

    pub fn psql(&self, sql: &str) -> Run {
        self.xtask(&[
            "db-psql",
            "--",
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        ])
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if self.owner {
            let _ = self.command(&["db-down", "--volumes", "-q"]).output();
        }
    }
}

pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn assert_success(&self) {
        assert!(
            self.success(),
            "xtask failed ({}):\n{}",
            self.status,
            self.all()
        );
    }

    /// Fails unless the run failed with exactly one `error:` line containing `needle`, and no panic.
    #[track_caller]
    pub fn assert_one_line_error(&self, needle: &str) {
        assert!(
            !self.success(),
            "expected a failure, got success:\n{}",
            self.all()
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .collect();
        assert_eq!(errors.len(), 1, "expected one error line:\n{}", self.stderr);
        assert!(
            errors[0].contains(needle),
            "expected {needle:?} in {:?}",
            errors[0]
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("Backtrace"),
            "{}",
            self.stderr
        );
        self.assert_no_password();
    }

    /// Fails if the test password appears anywhere in the output.
    #[track_caller]
    pub fn assert_no_password(&self) {
        assert!(
            !self.all().contains(PASSWORD) && !self.all().contains("hunter2"),
            "password printed:\n{}",
            self.all()
        );
    }
}

/// True when the PostgreSQL server binaries are installed; prints why a test skips otherwise.
pub fn local_binaries_or_skip() -> bool {
    let found = which_initdb().is_some();
    if !found {
        eprintln!(
            "SKIPPED: no PostgreSQL server binaries (initdb) on this machine; install postgresql to run the local-backend tests"
        );
    }
    found
}

/// Where xtask would find `initdb`: `PG_BIN` when set (the tests honour the same choice as
/// xtask), else PATH and Debian's versioned directories.
fn which_initdb() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(dir).join("initdb")).filter(|p| p.exists());
    }
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain(
            std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("bin")),
        )
        .map(|dir| dir.join("initdb"))
        .find(|p| p.exists())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The user the local backend's server runs as: `postgres` when the tests run as root.
pub fn server_user() -> Option<String> {
    is_root().then(|| "postgres".to_owned())
}

/// A long-running process of the server's user that has nothing to do with PostgreSQL.
pub fn unrelated_process_of_the_server_user() -> std::process::Child {
    let mut cmd = match server_user() {
        Some(user) => {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                &format!("--reuid={user}"),
                &format!("--regid={user}"),
                "--clear-groups",
                "--",
                "sleep",
                "300",
            ]);
            cmd
        }
        None => {
            let mut cmd = Command::new("sleep");
            cmd.arg("300");
            cmd
        }
    };
    cmd.spawn().expect("sleep starts")
}

/// Every file under `dir` whose bytes contain `needle`, without following links.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if meta.is_file()
            && std::fs::read(&path).is_ok_and(|bytes| {
                bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
            })
        {
            found.push(path);
        }
    }
    found
}

/// Polls `done` until it holds or `limit` passes; returns whether it held.
pub fn poll_until(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
        std::thread::park_timeout(std::time::Duration::from_millis(5));
    }
}

/// A directory of stand-in PostgreSQL programs that report `version` and do nothing else, to
/// see which installation xtask picks.
pub fn fake_install(parent: &Path, version: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = parent.join(format!("fake-{version}/bin"));
    std::fs::create_dir_all(&bin).unwrap();
    for program in ["initdb", "pg_ctl", "postgres", "pg_dump", "psql"] {
        let path = bin.join(program);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nif [ \"$1\" = --version ]; then echo '{program} (PostgreSQL) {version}'; exit 0; fi\necho 'fake {program} {version} was run' >&2; exit 3\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// `PATH` with `dir` in front.
pub fn path_with(dir: &Path) -> String {
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{}:{rest}", dir.display())
}

/// A free port that no other test of this process was given: the kernel may hand a just
/// released port out again, and two tests starting servers on one port would collide.
pub fn unused_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}
