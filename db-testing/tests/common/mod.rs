//! Support shared by the `db_testing` test binaries: raw catalog queries, child processes with deadlines, and base names no other process uses.
//!
//! Each test binary compiles this module and uses only part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use db_testing::TestTemplate;
use migration::Migrator;
use sea_orm::sqlx::{self, Connection as _, PgConnection};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value};
use url::Url;

pub const TESTDB: &str = env!("CARGO_BIN_EXE_testdb");
pub const KEPT_DATABASE_COMMENT: &str = "kept by db::testing after a failed test";
const SESSION_END_DEADLINE: Duration = Duration::from_secs(10);
const DROP_DEADLINE: Duration = Duration::from_secs(10);
/// Generous: a child may build a template and run several tests, on a loaded machine.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(180);
/// Isolated bases are `dbtesting_{tag}_{token}`: the token (six hex digits) is this process's, and
/// the advisory lock on it tells a live process's databases from a crashed one's leftovers.
const ISOLATED_PREFIX: &str = "dbtesting_";
const ISOLATED_PATTERN: &str = "^dbtesting_[a-z]+_[0-9a-f]{6}_";
const MAX_TAG_BYTES: usize = 7;
/// `pg_advisory_lock(int4, int4)` namespace of the tokens, distinct from the helper's own.
const TOKEN_NAMESPACE: i32 = i32::from_be_bytes(*b"dbtb");

pub fn database_url() -> Url {
    let raw =
        std::env::var("DATABASE_URL").expect("DATABASE_URL is set: run `cargo xtask db-test`");
    Url::parse(&raw).expect("DATABASE_URL is a URL")
}

pub fn url_for_database(database: &str) -> String {
    let mut url = database_url();
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// A connection of the test's own, independent of the helper under test.
pub async fn admin() -> DatabaseConnection {
    Database::connect(url_for_database("postgres"))
        .await
        .unwrap()
}

pub async fn database_row(admin: &DatabaseConnection, name: &str) -> Option<(bool, bool)> {
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = $1",
            [Value::from(name)],
        ))
        .await
        .unwrap()?;
    Some((
        row.try_get("", "datistemplate").unwrap(),
        row.try_get("", "datallowconn").unwrap(),
    ))
}

pub async fn database_exists(admin: &DatabaseConnection, name: &str) -> bool {
    database_row(admin, name).await.is_some()
}

/// Under `cargo xtask db-test` a dropped `TestDb` is handed to the pool's filler, which drops it
/// beside the tests; without a filler the drop itself does. Either way it goes, soon: this waits,
/// with a deadline, until it has.
pub async fn wait_until_dropped(admin: &DatabaseConnection, name: &str) {
    let deadline = Instant::now() + DROP_DEADLINE;
    while database_exists(admin, name).await {
        assert!(
            Instant::now() < deadline,
            "{name} still exists {DROP_DEADLINE:?} after its TestDb was dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The comment on database `name` (`COMMENT ON DATABASE`), if it has one.
pub async fn database_comment(admin: &DatabaseConnection, name: &str) -> Option<String> {
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1",
            [Value::from(name)],
        ))
        .await
        .unwrap()?;
    row.try_get("", "comment").unwrap()
}

pub async fn count(db: &impl ConnectionTrait, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "count").unwrap()
}

pub async fn databases_with_prefix(admin: &DatabaseConnection, prefix: &str) -> Vec<String> {
    admin
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
            [Value::from(prefix)],
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("", "datname").unwrap())
        .collect()
}

pub async fn applied_migrations(db: &DatabaseConnection) -> Vec<String> {
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT version FROM seaql_migrations ORDER BY version",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get("", "version").unwrap())
    .collect()
}

/// `(name, template, state)` of every entry in the pool bookkeeping of `base`.
pub async fn pool_entries(base: &str) -> Vec<(String, String, String)> {
    let bookkeeping = Database::connect(url_for_database(&format!("{base}_testpool")))
        .await
        .unwrap();
    let rows = bookkeeping
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT name, template, state FROM pool_databases ORDER BY name",
        ))
        .await
        .unwrap();
    bookkeeping.close().await.unwrap();
    rows.iter()
        .map(|row| {
            (
                row.try_get("", "name").unwrap(),
                row.try_get("", "template").unwrap(),
                row.try_get("", "state").unwrap(),
            )
        })
        .collect()
}

/// Session ends are asynchronous on the server, so a closed pool's sessions linger briefly.
pub async fn wait_until_no_sessions(admin: &DatabaseConnection, name: &str) {
    let deadline = Instant::now() + SESSION_END_DEADLINE;
    loop {
        let row = admin
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT count(*) AS count FROM pg_stat_activity WHERE datname = $1",
                [Value::from(name)],
            ))
            .await
            .unwrap()
            .unwrap();
        let sessions: i64 = row.try_get("", "count").unwrap();
        if sessions == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sessions on {name} did not end within {SESSION_END_DEADLINE:?}"
        );
        tokio::task::yield_now().await;
    }
}

pub fn run_testdb(arguments: &[&str], database_url: Option<&str>) -> Output {
    let mut command = Command::new(TESTDB);
    command.args(arguments);
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    command.output().expect("the testdb binary runs")
}

/// `testdb` with `DATABASE_URL` and `DB_TEST_POOL_SIZE` set as given.
pub fn run_testdb_with_pool_size(arguments: &[&str], database_url: &str, size: &str) -> Output {
    Command::new(TESTDB)
        .args(arguments)
        .env("DATABASE_URL", database_url)
        .env("DB_TEST_POOL_SIZE", size)
        .output()
        .expect("the testdb binary runs")
}

/// The application's migrations under `base`, a base name of the test's own, so its pool and
/// template are not shared with the tests running alongside and exact counts hold.
pub fn isolated_template(base: &str, pool_size: usize) -> TestTemplate<Migrator> {
    TestTemplate::application()
        .with_base_name(base)
        .with_pool_size(pool_size)
}

/// Drops every database of `base` and checks that none is left. A child process that just ended
/// may still hold its template for a moment (the server ends its session asynchronously), which
/// spares the template, so this retries until a deadline.
pub async fn drop_everything(base: &str) {
    let template = TestTemplate::<Migrator>::new("dropping everything")
        .with_base_name(base)
        .with_pool_size(0);
    let admin = admin().await;
    let deadline = Instant::now() + SESSION_END_DEADLINE;
    loop {
        template.drop_all_databases().await.unwrap();
        let left = databases_with_prefix(&admin, &format!("{base}_")).await;
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left:?} still exist {SESSION_END_DEADLINE:?} after dropping everything of {base}"
        );
        tokio::task::yield_now().await;
    }
}

/// A child process whose stdout is read line by line as it arrives, so the parent can wait for a
/// report with a deadline, and which is killed rather than waited for forever.
pub struct Spawned {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Receiver<String>,
    deadline: Instant,
}

impl Spawned {
    pub fn start(mut command: Command) -> Spawned {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the child process starts");
        let (line_sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line_sender.send(line).is_err() {
                    return;
                }
            }
        });
        let (stderr_sender, stderr) = mpsc::channel();
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            let _ = stderr_sender.send(text);
        });
        Spawned {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
            deadline: Instant::now() + CHILD_DEADLINE,
        }
    }

    /// Runs the ignored test `test` of this test binary alone, with `env` added.
    pub fn probe(test: &str, env: &[(&str, &str)]) -> Spawned {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        command.envs(env.iter().copied());
        Spawned::start(command)
    }

    /// The rest of the first line that contains `marker`; fails when the child ends or the
    /// deadline passes first.
    pub fn expect(&mut self, marker: &str) -> String {
        loop {
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(remaining) {
                Ok(line) => {
                    let found = line
                        .split_once(marker)
                        .map(|(_, rest)| rest.trim().to_owned());
                    self.seen.push(line);
                    if let Some(rest) = found {
                        return rest;
                    }
                }
                Err(error) => {
                    let waited = match error {
                        RecvTimeoutError::Timeout => "did not report it in time",
                        RecvTimeoutError::Disconnected => "ended without reporting it",
                    };
                    let output = self.finish();
                    panic!(
                        "the child {waited} (`{marker}`)\n{}\n{}",
                        output.stdout, output.stderr
                    );
                }
            }
        }
    }

    /// Tells a probe waiting in [`wait_for_parent`] to go on.
    pub fn proceed(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        stdin.write_all(b"go\n").expect("the child reads its stdin");
        stdin.flush().expect("the child reads its stdin");
    }

    /// Waits for the child to end (killing it at the deadline) and returns what it printed.
    pub fn finish(&mut self) -> Finished {
        // Closing stdin releases a probe that is still waiting for the parent.
        drop(self.stdin.take());
        let mut timed_out = false;
        loop {
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(remaining) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    let _ = self.child.kill();
                    break;
                }
            }
        }
        let status = self.child.wait().expect("the child is waited for");
        let stderr = self.stderr.recv().unwrap_or_default();
        Finished {
            status,
            timed_out,
            stdout: self.seen.join("\n"),
            stderr,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // A parent that failed half way must not leave a probe behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub struct Finished {
    pub status: ExitStatus,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.status.success() && !self.timed_out,
            "{what} failed ({}{})\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            if self.timed_out {
                ", killed at the deadline"
            } else {
                ""
            },
            self.stdout,
            self.stderr
        );
    }
}

/// Called by a probe: blocks until the parent calls [`Spawned::proceed`] or closes stdin.
pub async fn wait_for_parent() {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await
    .unwrap();
}

/// A base name for `tag` that no other live process uses, so that a test which counts, cleans up
/// or drops everything of its base cannot meet the same test of another run (a second clone of
/// the repository, or the same clone twice) on a shared server. Also drops what tests of processes
/// that are gone left behind under such names.
pub async fn isolated_base(tag: &str) -> String {
    assert!(
        tag.len() <= MAX_TAG_BYTES && tag.bytes().all(|byte| byte.is_ascii_lowercase()),
        "tag `{tag}` must be at most {MAX_TAG_BYTES} lowercase letters, to fit the base name limit"
    );
    let token = process_token();
    sweep_abandoned_bases().await;
    format!("{ISOLATED_PREFIX}{tag}_{token:06x}")
}

/// This process's token, unique among live processes: a thread keeps a session holding the
/// advisory lock on it until the process exits.
fn process_token() -> u32 {
    static TOKEN: OnceLock<u32> = OnceLock::new();
    *TOKEN.get_or_init(|| {
        let (sender, receiver) = mpsc::channel();
        let url = url_for_database("postgres");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut session = PgConnection::connect(&url).await.unwrap();
                let token = loop {
                    let candidate = random_u32() & 0xff_ffff;
                    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                        .bind(TOKEN_NAMESPACE)
                        .bind(candidate as i32)
                        .fetch_one(&mut session)
                        .await
                        .unwrap();
                    if locked {
                        break candidate;
                    }
                };
                sender.send(token).unwrap();
                // Keeps the session, and with it the lock, for the life of the process.
                std::future::pending::<()>().await;
            })
        });
        receiver
            .recv_timeout(CHILD_DEADLINE)
            .expect("the token session connects and locks a token")
    })
}

fn random_u32() -> u32 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(Instant::now()) as u32
}

/// Drops every database of the isolated bases whose process holds its token no longer. Listing
/// first and checking the locks second is what makes it safe: a live process locks its token
/// before it creates anything under it.
async fn sweep_abandoned_bases() {
    let admin = admin().await;
    let names: Vec<String> = admin
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT datname FROM pg_database WHERE datname ~ $1",
            [Value::from(ISOLATED_PATTERN)],
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("", "datname").unwrap())
        .collect();
    let live: BTreeSet<i64> = admin
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT objid::int8 AS token FROM pg_locks \
             WHERE locktype = 'advisory' AND objsubid = 2 AND granted AND classid::int8 = $1",
            [Value::from(i64::from(TOKEN_NAMESPACE as u32))],
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("", "token").unwrap())
        .collect();
    admin.close().await.unwrap();
    let abandoned: BTreeSet<String> = names
        .iter()
        .filter_map(|name| {
            let mut parts = name.splitn(4, '_');
            let (prefix, tag, token) = (parts.next()?, parts.next()?, parts.next()?);
            let token = i64::from_str_radix(token, 16).ok()?;
            (!live.contains(&token)).then(|| format!("{prefix}_{tag}_{token:06x}"))
        })
        .collect();
    for base in abandoned {
        // Another sweeper may be dropping the same leftovers; what is left goes next time.
        let _ = TestTemplate::<Migrator>::new("sweep")
            .with_base_name(&base)
            .with_pool_size(0)
            .drop_all_databases()
            .await;
    }
}
