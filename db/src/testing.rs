//! Real-PostgreSQL databases for tests: each [`TestDb`] is a database of its own, migrated to head, taken from a pool of template clones or cloned on demand.
//!
//! The server comes from `DATABASE_URL` (its host, port and credentials; the database in the URL
//! only names the test databases), so plain `cargo test` and `cargo xtask db-test` behave alike.
//!
//! * The template `{base}_tpl_{fingerprint}` is built once per migration set ([`TestTemplate`]: a
//!   migrator and the fingerprint of its sources) and server major version, under a PostgreSQL
//!   advisory lock so parallel threads and processes (nextest) agree on one builder. It is marked
//!   `IS_TEMPLATE` only after every migration succeeded, so a run that crashed half way is
//!   detected and rebuilt.
//! * Every test database `{base}_test_{pid}_{counter}_{owner}` is a `CREATE DATABASE … TEMPLATE`
//!   copy, dropped again when the [`TestDb`] is dropped. With `DB_TEST_KEEP=1` the database of a
//!   failing test is kept for inspection.
//! * Several test runs may share one server (two clones of the repository, or one clone twice).
//!   Each process holds advisory locks naming what it uses (the `lease` module): `{owner}` is its
//!   token, and cleanup (the `cleanup` module) and template replacement spare what a live process
//!   holds, so one run's `testdb cleanup` or rebuild never breaks another run.
//! * `CREATE DATABASE` costs more the more relations the template holds, so [`prepare`] clones a
//!   pool of `DB_TEST_POOL_SIZE` databases (default 4; `0` clones on demand only) ahead of time,
//!   [`TestDb::new`] claims a ready one and only connects, and dropping a [`TestDb`] clones its
//!   replacement. When no clone is ready, or a claimed one has vanished, [`TestDb::new`] clones on
//!   demand, so correctness never depends on the pool. The bookkeeping is in the `pool` module.
//! * Creating and dropping databases runs on a private runtime owned by this module, because each
//!   `#[tokio::test]` has its own short-lived runtime and a connection pool must not outlive the
//!   runtime it was created on.

mod cleanup;
mod lease;
mod pool;

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};
use std::{fmt, io};

use migration::MigratorTrait;
use sea_orm::sqlx::{self, Connection as _, PgConnection};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, RuntimeErr,
    Statement, Value,
};
use tokio::runtime::Runtime;
use tokio::sync::OnceCell;
use url::Url;

use lease::{Lease, OWNER_DIGITS};
use pool::{Bookkeeping, bookkeeping_database_name};

/// Fingerprint of the migration sources and the `sea-orm-migration` version, computed by `build.rs`.
const MIGRATIONS_FINGERPRINT: &str = env!("DB_TESTING_MIGRATIONS_FINGERPRINT");
const TEMPLATE_LOCK_NAME: &str = "db-testing-template";
const KEEP_ON_FAILURE_ENV: &str = "DB_TEST_KEEP";
const POOL_SIZE_ENV: &str = "DB_TEST_POOL_SIZE";
/// Enough for the two to four tests a small machine runs at once; each ready clone costs disk.
const DEFAULT_POOL_SIZE: usize = 4;
const MAX_POOL_SIZE: usize = 64;
const KEPT_DATABASE_COMMENT: &str = "kept by db::testing after a failed test";
const RUN_SUITE_HINT: &str = "run `cargo xtask db-test`";

/// Leaves room for `_test_{pid}_{counter}_{owner}` inside PostgreSQL's 63-byte identifier limit:
/// 6 + 7 (the largest pid on Linux) + 1 + up to 16 + 1 + 8 bytes.
const MAX_BASE_NAME_BYTES: usize = 24;
const MAX_IDENTIFIER_BYTES: usize = 63;
const TCP_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
const TEST_POOL_MAX_CONNECTIONS: u32 = 3;
const ADMIN_POOL_MAX_CONNECTIONS: u32 = 3;
/// Upper bound for the synchronous drop in [`TestDb`]'s `Drop`, so a wedged server cannot hang a test run.
const DROP_TIMEOUT: Duration = Duration::from_secs(60);

/// The `STRATEGY` of `CREATE DATABASE … TEMPLATE …` (PostgreSQL 15 and later).
///
/// Which one is faster depends on the server's durability (`testdb measure` compares them): each
/// `FILE_COPY` forces two checkpoints, which are nearly free with `fsync = off` (RAM-backed test
/// server, median clone + connect: FILE_COPY 8.1–9.0 ms, WAL_LOG 9.9–11.1 ms) but expensive on a
/// durable one (FILE_COPY 116 ms, WAL_LOG 76 ms). [`CloneStrategy::for_server`] picks accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneStrategy {
    /// Copies the template block by block through the write-ahead log.
    WalLog,
    /// Copies the template's files after a checkpoint.
    FileCopy,
}

impl CloneStrategy {
    /// The faster strategy for a server whose `fsync` setting is `fsync_enabled`.
    pub fn for_server(fsync_enabled: bool) -> CloneStrategy {
        if fsync_enabled {
            CloneStrategy::WalLog
        } else {
            CloneStrategy::FileCopy
        }
    }

    fn sql_keyword(self) -> &'static str {
        match self {
            CloneStrategy::WalLog => "WAL_LOG",
            CloneStrategy::FileCopy => "FILE_COPY",
        }
    }
}

impl fmt::Display for CloneStrategy {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.pad(self.sql_keyword())
    }
}

/// Why a test database could not be provided; every message is one line, names what to do and
/// never contains a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestDbError {
    /// `DATABASE_URL` is not set.
    NotConfigured,
    /// `DATABASE_URL` is not a PostgreSQL URL.
    InvalidUrl { reason: String },
    /// No server answered, or it refused the connection.
    Unreachable { url: String, cause: String },
    /// The server answered but an operation on it failed.
    Failed {
        action: String,
        cause: String,
        remedy: &'static str,
    },
}

impl fmt::Display for TestDbError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestDbError::NotConfigured => write!(
                formatter,
                "DATABASE_URL is not set: {RUN_SUITE_HINT}, or set DATABASE_URL=postgres://user:password@host:port/database"
            ),
            TestDbError::InvalidUrl { reason } => write!(
                formatter,
                "DATABASE_URL is not a PostgreSQL URL ({reason}): set it to postgres://user:password@host:port/database"
            ),
            TestDbError::Unreachable { url, cause } => {
                write!(
                    formatter,
                    "no PostgreSQL reachable at {url} ({cause}): {RUN_SUITE_HINT}"
                )
            }
            TestDbError::Failed {
                action,
                cause,
                remedy,
            } => write!(formatter, "{action} failed ({cause}): {remedy}"),
        }
    }
}

impl std::error::Error for TestDbError {}

/// A fresh database of its own for one test, dropped when this value is dropped.
///
/// ```no_run
/// # async fn example() {
/// let test_db = db::testing::TestDb::new().await;
/// let created = db::projects::create(test_db.conn(), db::projects::NewProject {
///     name: "Apollo".into(),
///     description: None,
/// })
/// .await
/// .unwrap();
/// # let _ = created;
/// # }
/// ```
pub struct TestDb {
    name: String,
    url: String,
    redacted_url: String,
    connection: Option<DatabaseConnection>,
    claimed_from_pool: bool,
    /// The pool this database's drop tops up again; `None` for databases made outside the pool.
    refills: Option<PoolSlot>,
}

impl TestDb {
    /// A database migrated to head: a ready clone from the pool, or a fresh clone of the template.
    /// Panics with a one-line message naming the fix when no server is reachable, because a test
    /// cannot proceed without one.
    pub async fn new() -> TestDb {
        TestTemplate::application()
            .test_db()
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// An empty, unmigrated database (copied from `template0`), for testing migrations themselves.
    pub async fn empty() -> TestDb {
        Self::create_empty()
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// A small pool (at most three connections) to this database.
    pub fn conn(&self) -> &DatabaseConnection {
        self.connection
            .as_ref()
            .expect("the connection is only taken while dropping")
    }

    /// The full URL of this database, password included, for raw connections and child processes.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The database's name on the server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this database was cloned ahead of time and claimed from the pool, rather than
    /// cloned on demand.
    pub fn claimed_from_pool(&self) -> bool {
        self.claimed_from_pool
    }

    async fn create_empty() -> Result<TestDb, TestDbError> {
        let provisioned = on_admin_runtime(async {
            let admin = admin().await?;
            let base = admin.server.base_name.clone();
            admin
                .clone_on_demand(&base, "template0", admin.clone_strategy, None)
                .await
        })
        .await?;
        Self::open(provisioned).await
    }

    /// Connects to a provisioned database. A claimed clone that cannot be reached (dropped by a
    /// `testdb cleanup` running alongside, say) is discarded and replaced by an on-demand clone.
    async fn open(provisioned: Provisioned) -> Result<TestDb, TestDbError> {
        let provisioned = match connect_pool(&provisioned.url, TEST_POOL_MAX_CONNECTIONS).await {
            Ok(connection) => return Ok(provisioned.into_test_db(connection)),
            Err(_) if provisioned.claimed_from_pool => {
                on_admin_runtime(async move {
                    let admin = admin().await?;
                    provisioned.discard(&admin).await?;
                    admin
                        .clone_on_demand(
                            &provisioned.base,
                            &provisioned.source,
                            admin.clone_strategy,
                            provisioned.refills.clone(),
                        )
                        .await
                })
                .await?
            }
            Err(error) => return Err(Self::discard_unreachable(provisioned, &error).await),
        };
        match connect_pool(&provisioned.url, TEST_POOL_MAX_CONNECTIONS).await {
            Ok(connection) => Ok(provisioned.into_test_db(connection)),
            Err(error) => Err(Self::discard_unreachable(provisioned, &error).await),
        }
    }

    async fn discard_unreachable(provisioned: Provisioned, error: &DbErr) -> TestDbError {
        let cause = match Server::parse(&provisioned.url) {
            Ok(server) => server.scrub(&describe_db_error(error)),
            Err(_) => one_line(&describe_db_error(error)),
        };
        let name = provisioned.name.clone();
        let discarded =
            on_admin_runtime(async move { provisioned.discard(&*admin().await?).await }).await;
        if let Err(discard_error) = discarded {
            return discard_error;
        }
        TestDbError::Failed {
            action: format!("connecting to test database {name}"),
            cause,
            remedy: "check that the DATABASE_URL user may connect to the databases it creates",
        }
    }
}

impl fmt::Debug for TestDb {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TestDb")
            .field("name", &self.name)
            .field("url", &self.redacted_url)
            .field("claimed_from_pool", &self.claimed_from_pool)
            .finish()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Closes this pool's sockets now; the forced drop below ends whatever the server still runs.
        drop(self.connection.take());
        let name = self.name.clone();
        let claimed_from_pool = self.claimed_from_pool;
        let refills = self.refills.clone();
        let keep = std::thread::panicking() && keep_on_failure_requested();

        let finished = block_on_admin_runtime(
            async move {
                let admin = admin().await?;
                let released = if keep {
                    admin.mark_kept(&name).await
                } else {
                    admin.drop_database_force(&name).await
                };
                // Refilled even when the release failed: the next test should not pay for this one.
                let refilled = match refills {
                    Some(slot) => {
                        slot.release_and_refill(&admin, &name, claimed_from_pool)
                            .await
                    }
                    None => Ok(()),
                };
                released.and(refilled)
            },
            DROP_TIMEOUT,
        );
        match finished {
            Some(Ok(())) => {}
            Some(Err(error)) => eprintln!("{error}"),
            None => eprintln!(
                "dropping test database {} took longer than {}s: `testdb cleanup` (run by `cargo xtask db-test`) removes it later",
                self.name,
                DROP_TIMEOUT.as_secs()
            ),
        }
        if keep {
            eprintln!(
                "kept test database {} for debugging: {}",
                self.name, self.redacted_url
            );
        }
    }
}

/// The migration set a template database is built from: a migrator and a fingerprint that changes
/// whenever its migrations do.
///
/// [`TestDb::new`] and the free functions of this module use [`TestTemplate::application`];
/// `db-bench` and the helper's own tests use synthetic migrators or base names of their own,
/// through exactly the same code.
pub struct TestTemplate<M> {
    fingerprint: String,
    base_name: Option<String>,
    pool_size: Option<usize>,
    migrator: PhantomData<fn() -> M>,
}

impl TestTemplate<migration::Migrator> {
    /// The application's migrations, fingerprinted by `build.rs`.
    pub fn application() -> Self {
        Self::new(MIGRATIONS_FINGERPRINT)
    }
}

impl<M> Clone for TestTemplate<M> {
    fn clone(&self) -> Self {
        TestTemplate {
            fingerprint: self.fingerprint.clone(),
            base_name: self.base_name.clone(),
            pool_size: self.pool_size,
            migrator: PhantomData,
        }
    }
}

impl<M> fmt::Debug for TestTemplate<M> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TestTemplate")
            .field("migrator", &std::any::type_name::<M>())
            .field("fingerprint", &self.fingerprint)
            .field("base_name", &self.base_name)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl<M: MigratorTrait + 'static> TestTemplate<M> {
    /// Templates for `M`; `fingerprint` must change whenever `M`'s migrations do, because a
    /// template whose name is unchanged is reused as it is.
    pub fn new(fingerprint: impl Into<String>) -> Self {
        TestTemplate {
            fingerprint: fingerprint.into(),
            base_name: None,
            pool_size: None,
            migrator: PhantomData,
        }
    }

    /// Names the databases `{base_name}_…` instead of after the `DATABASE_URL` database. Templates
    /// of one base replace each other (the newest fingerprint wins, once no other live process
    /// clones from the older), so give every migrator that must coexist with the application's a
    /// base of its own.
    pub fn with_base_name(mut self, base_name: &str) -> Self {
        self.base_name = Some(sanitize_base_name(base_name));
        self
    }

    /// Keeps `size` ready clones instead of `DB_TEST_POOL_SIZE` (default 4); `0` clones on demand.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = Some(size.min(MAX_POOL_SIZE));
        self
    }

    /// Builds the template if it is missing or stale, drops the outdated templates of its base
    /// that no other test run uses (with their pooled clones), tops the pool up, and returns the
    /// template's name.
    pub async fn prepare(&self) -> Result<String, TestDbError> {
        let template = self.clone();
        on_admin_runtime(async move {
            let admin = admin().await?;
            let plan = template.plan(&admin)?;
            let slot = ensure_prepared::<M>(&admin, &plan).await?;
            admin
                .drop_templates(&plan.base, Some(&plan.template))
                .await?;
            if let Some(slot) = slot {
                slot.fill(&admin).await?;
            }
            Ok(plan.template)
        })
        .await
    }

    /// A database migrated to head: claims a ready clone from the pool and connects to it, or
    /// clones the template on demand when none is ready.
    pub async fn test_db(&self) -> Result<TestDb, TestDbError> {
        self.provide(Acquisition::ClaimOrClone).await
    }

    /// A database migrated to head, always cloned on demand (what [`TestTemplate::test_db`] falls
    /// back to), for comparing the two. Dropping it does not refill the pool.
    pub async fn cloned_test_db(&self) -> Result<TestDb, TestDbError> {
        self.provide(Acquisition::Clone(None)).await
    }

    /// How many clones of the current template are ready to be claimed.
    pub async fn ready_in_pool(&self) -> Result<usize, TestDbError> {
        let template = self.clone();
        on_admin_runtime(async move {
            let admin = admin().await?;
            let plan = template.plan(&admin)?;
            let bookkeeping_name = bookkeeping_database_name(&plan.base);
            if !admin.database_exists(&bookkeeping_name).await? {
                return Ok(0);
            }
            Bookkeeping::open(&admin, &plan.base)
                .await?
                .ready_count(&plan.template)
                .await
        })
        .await
    }

    async fn provide(&self, acquisition: Acquisition) -> Result<TestDb, TestDbError> {
        let template = self.clone();
        let provisioned = on_admin_runtime(async move {
            let admin = admin().await?;
            let plan = template.plan(&admin)?;
            let slot = ensure_prepared::<M>(&admin, &plan).await?;
            let (refills, strategy) = match acquisition {
                Acquisition::ClaimOrClone => (slot, admin.clone_strategy),
                Acquisition::Clone(strategy) => (None, strategy.unwrap_or(admin.clone_strategy)),
            };
            if let Some(slot) = &refills
                && let Some(claimed) = slot.claim(&admin, &plan.base).await?
            {
                return Ok(claimed);
            }
            admin
                .clone_on_demand(&plan.base, &plan.template, strategy, refills)
                .await
        })
        .await?;
        TestDb::open(provisioned).await
    }

    fn plan(&self, admin: &Admin) -> Result<Plan, TestDbError> {
        let base = self
            .base_name
            .clone()
            .unwrap_or_else(|| admin.server.base_name.clone());
        let template = template_name(&base, &self.fingerprint, admin.server_major_version);
        let pool_size = match self.pool_size {
            Some(size) => size,
            None => parse_pool_size(std::env::var(POOL_SIZE_ENV).ok().as_deref())?,
        };
        Ok(Plan {
            base,
            template,
            pool_size,
        })
    }
}

/// Builds the application's template if it is missing or stale, tops its pool up to
/// `DB_TEST_POOL_SIZE` ready clones, and returns the template's name.
pub async fn prepare() -> Result<String, TestDbError> {
    TestTemplate::application().prepare().await
}

/// Drops every test database of this `DATABASE_URL` that no live test holds (left behind by
/// crashed or killed runs, and the pool's ready clones), except those kept with `DB_TEST_KEEP=1`.
/// Returns how many it dropped. Safe while other test runs use the same server: what their live
/// processes hold is spared.
pub async fn drop_stale_test_databases() -> Result<usize, TestDbError> {
    TestTemplate::application()
        .drop_stale_test_databases()
        .await
}

/// Like [`drop_stale_test_databases`], and also drops the databases kept with `DB_TEST_KEEP=1`.
pub async fn drop_kept_test_databases() -> Result<usize, TestDbError> {
    TestTemplate::application().drop_kept_test_databases().await
}

/// The strategy [`TestDb::new`] uses on the `DATABASE_URL` server.
pub async fn chosen_clone_strategy() -> Result<CloneStrategy, TestDbError> {
    on_admin_runtime(async { Ok(admin().await?.clone_strategy) }).await
}

/// Times `runs` on-demand clones of the template with `strategy`, each from the start of
/// `CREATE DATABASE` until a pool is connected to the clone.
pub async fn measure_clone(
    strategy: CloneStrategy,
    runs: usize,
) -> Result<Vec<Duration>, TestDbError> {
    let template = TestTemplate::application();
    template.prepare().await?;
    let mut durations = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let test_db = template.provide(Acquisition::Clone(Some(strategy))).await?;
        durations.push(started.elapsed());
        drop(test_db);
    }
    Ok(durations)
}

#[derive(Debug, Clone, Copy)]
enum Acquisition {
    ClaimOrClone,
    Clone(Option<CloneStrategy>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeptDatabases {
    Spare,
    Drop,
}

/// A [`TestTemplate`] resolved against the server: names and the pool size in effect.
#[derive(Debug, Clone)]
struct Plan {
    base: String,
    template: String,
    pool_size: usize,
}

/// One pool: the clones of `template` kept ready in the bookkeeping of its base.
#[derive(Clone)]
struct PoolSlot {
    bookkeeping: Arc<Bookkeeping>,
    template: String,
    size: usize,
}

impl PoolSlot {
    async fn claim(&self, admin: &Admin, base: &str) -> Result<Option<Provisioned>, TestDbError> {
        let Some(name) = self
            .bookkeeping
            .claim(&self.template, admin.lease.owner())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Provisioned::new(
            admin,
            base,
            &self.template,
            name,
            true,
            Some(self.clone()),
        )))
    }

    async fn fill(&self, admin: &Admin) -> Result<usize, TestDbError> {
        self.bookkeeping
            .fill(admin, &self.template, self.size)
            .await
    }

    async fn release_and_refill(
        &self,
        admin: &Admin,
        name: &str,
        claimed_from_pool: bool,
    ) -> Result<(), TestDbError> {
        let forgotten = if claimed_from_pool {
            self.bookkeeping.forget(name).await
        } else {
            Ok(())
        };
        let filled = self.fill(admin).await.map(|_| ());
        forgotten.and(filled)
    }
}

/// A database created or claimed for a test, not yet connected to.
struct Provisioned {
    name: String,
    url: String,
    redacted_url: String,
    base: String,
    /// The template it was cloned from, for an on-demand replacement.
    source: String,
    claimed_from_pool: bool,
    refills: Option<PoolSlot>,
}

impl Provisioned {
    fn new(
        admin: &Admin,
        base: &str,
        source: &str,
        name: String,
        claimed_from_pool: bool,
        refills: Option<PoolSlot>,
    ) -> Provisioned {
        Provisioned {
            url: admin.server.database_url(&name),
            redacted_url: admin.server.redacted_database_url(&name),
            name,
            base: base.to_owned(),
            source: source.to_owned(),
            claimed_from_pool,
            refills,
        }
    }

    fn into_test_db(self, connection: DatabaseConnection) -> TestDb {
        TestDb {
            name: self.name,
            url: self.url,
            redacted_url: self.redacted_url,
            connection: Some(connection),
            claimed_from_pool: self.claimed_from_pool,
            refills: self.refills,
        }
    }

    async fn discard(&self, admin: &Admin) -> Result<(), TestDbError> {
        let dropped = admin.drop_database_force(&self.name).await;
        let forgotten = match (&self.refills, self.claimed_from_pool) {
            (Some(slot), true) => slot.bookkeeping.forget(&self.name).await,
            _ => Ok(()),
        };
        dropped.and(forgotten)
    }
}

fn parse_pool_size(raw: Option<&str>) -> Result<usize, TestDbError> {
    let Some(text) = raw.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(DEFAULT_POOL_SIZE);
    };
    text.parse::<usize>()
        .ok()
        .filter(|size| *size <= MAX_POOL_SIZE)
        .ok_or_else(|| TestDbError::Failed {
            action: format!("reading {POOL_SIZE_ENV}"),
            cause: format!(
                "`{}` is not a number from 0 to {MAX_POOL_SIZE}",
                one_line(text)
            ),
            remedy: "set it to how many ready clones to keep, or 0 to clone on demand",
        })
}

/// Per process and template: the template is checked (or built) and outdated pool entries are
/// retired once, not on every claim.
type PreparedCell = Arc<OnceCell<Result<Option<PoolSlot>, TestDbError>>>;
static PREPARED: Mutex<BTreeMap<String, PreparedCell>> = Mutex::new(BTreeMap::new());

async fn ensure_prepared<M: MigratorTrait + 'static>(
    admin: &Admin,
    plan: &Plan,
) -> Result<Option<PoolSlot>, TestDbError> {
    let cell = PREPARED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(plan.template.clone())
        .or_default()
        .clone();
    let slot = cell
        .get_or_init(|| async {
            // Before looking at it: from here on no other run drops it while this process lives.
            admin.lease.use_template(&plan.template).await?;
            admin
                .ensure_template::<M>(&plan.base, &plan.template)
                .await?;
            if plan.pool_size == 0 {
                return Ok(None);
            }
            let bookkeeping = Bookkeeping::open(admin, &plan.base).await?;
            Ok(Some(PoolSlot {
                bookkeeping,
                template: plan.template.clone(),
                size: plan.pool_size,
            }))
        })
        .await
        .clone()?;
    // The size in effect is the caller's, so one process may use several sizes for one template.
    Ok(match (slot, plan.pool_size) {
        (_, 0) => None,
        (Some(slot), size) => Some(PoolSlot { size, ..slot }),
        (None, size) => {
            let bookkeeping = Bookkeeping::open(admin, &plan.base).await?;
            Some(PoolSlot {
                bookkeeping,
                template: plan.template.clone(),
                size,
            })
        }
    })
}

fn forget_prepared_templates(prefix: &str) {
    PREPARED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|template, _| !template.starts_with(prefix));
}

fn template_prefix(base: &str) -> String {
    format!("{base}_tpl_")
}

fn test_database_prefix(base: &str) -> String {
    format!("{base}_test_")
}

/// The server and naming derived from `DATABASE_URL`.
#[derive(Debug, Clone)]
struct Server {
    url: Url,
    base_name: String,
}

impl Server {
    fn from_env() -> Result<Server, TestDbError> {
        let raw = std::env::var("DATABASE_URL").map_err(|_| TestDbError::NotConfigured)?;
        if raw.trim().is_empty() {
            return Err(TestDbError::NotConfigured);
        }
        Self::parse(raw.trim())
    }

    fn parse(raw: &str) -> Result<Server, TestDbError> {
        let url = Url::parse(raw).map_err(|error| TestDbError::InvalidUrl {
            reason: error.to_string(),
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(TestDbError::InvalidUrl {
                reason: format!("scheme `{}` is not postgres", url.scheme()),
            });
        }
        let named_database = url.path().trim_start_matches('/');
        let database = if !named_database.is_empty() {
            percent_decode(named_database)
        } else if !url.username().is_empty() {
            // PostgreSQL's own default: the database named like the user.
            percent_decode(url.username())
        } else {
            "postgres".to_owned()
        };
        let base_name = sanitize_base_name(&database);
        Ok(Server { url, base_name })
    }

    fn database_url(&self, database: &str) -> String {
        let mut url = self.url.clone();
        url.set_path(&format!("/{database}"));
        url.to_string()
    }

    fn redacted_database_url(&self, database: &str) -> String {
        let mut url = self.url.clone();
        url.set_path(&format!("/{database}"));
        redact_url(url)
    }

    fn redacted_url(&self) -> String {
        redact_url(self.url.clone())
    }

    fn configured_database(&self) -> String {
        percent_decode(self.url.path().trim_start_matches('/'))
    }

    /// Error text from drivers may echo the URL; the password must never reach the output.
    fn scrub(&self, text: &str) -> String {
        let text = one_line(text);
        match self.url.password() {
            Some(password) if !password.is_empty() => text
                .replace(password, "***")
                .replace(&percent_decode(password), "***"),
            _ => text,
        }
    }
}

/// The maintenance connection, living on the admin runtime.
struct Admin {
    server: Server,
    pool: DatabaseConnection,
    maintenance_url: String,
    server_major_version: u32,
    clone_strategy: CloneStrategy,
    lease: Lease,
}

impl Admin {
    async fn connect(server: Server) -> Result<Admin, TestDbError> {
        probe_tcp(&server).await?;

        // Prefer the `postgres` maintenance database, so that these sessions never keep the
        // application database busy; fall back to the URL's database on servers without one.
        let mut candidates = vec!["postgres".to_owned()];
        let configured = server.configured_database();
        if !configured.is_empty() && configured != "postgres" {
            candidates.push(configured);
        }
        let mut last_error = None;
        for database in candidates {
            let maintenance_url = server.database_url(&database);
            // Side by side, so the lease's session costs a test hardly any time.
            let (pool, lease) = tokio::join!(
                connect_pool(&maintenance_url, ADMIN_POOL_MAX_CONNECTIONS),
                Lease::acquire(&server, &maintenance_url)
            );
            match pool {
                Ok(pool) => {
                    let (server_major_version, fsync_enabled) =
                        query_server_settings(&pool, &server).await?;
                    return Ok(Admin {
                        server,
                        pool,
                        maintenance_url,
                        server_major_version,
                        clone_strategy: CloneStrategy::for_server(fsync_enabled),
                        lease: lease?,
                    });
                }
                Err(error) if sqlstate(&error).as_deref() == Some(INVALID_CATALOG_NAME) => {
                    last_error = Some(error)
                }
                Err(error)
                    if sqlx_error(&error)
                        .and_then(|error| error.as_database_error())
                        .is_some() =>
                {
                    return Err(TestDbError::Failed {
                        action: format!(
                            "connecting to {}",
                            server.redacted_database_url(&database)
                        ),
                        cause: server.scrub(&describe_db_error(&error)),
                        remedy: "check the user and password in DATABASE_URL, or run `cargo xtask db-test`",
                    });
                }
                Err(error) => return Err(unreachable(&server, &error)),
            }
        }
        let error = last_error.expect("at least one maintenance database was tried");
        Err(unreachable(&server, &error))
    }

    fn next_test_database_name(&self, base: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        // The owner token also tells apart equal pid/counter pairs from other machines.
        let name = format!(
            "{}{}_{counter}_{:0width$x}",
            test_database_prefix(base),
            std::process::id(),
            self.lease.owner(),
            width = OWNER_DIGITS
        );
        debug_assert!(
            name.len() <= MAX_IDENTIFIER_BYTES,
            "test database name {name} is too long"
        );
        name
    }

    /// Creates `{name}` from `source` with `strategy`, for a test that waits for it.
    async fn clone_on_demand(
        &self,
        base: &str,
        source: &str,
        strategy: CloneStrategy,
        refills: Option<PoolSlot>,
    ) -> Result<Provisioned, TestDbError> {
        let name = self.next_test_database_name(base);
        self.create_database_from(&name, source, strategy).await?;
        Ok(Provisioned::new(self, base, source, name, false, refills))
    }

    /// Runs under the advisory lock, so concurrent threads and processes build the template once.
    async fn ensure_template<M: MigratorTrait + 'static>(
        &self,
        base: &str,
        template: &str,
    ) -> Result<(), TestDbError> {
        // A marked template is complete, so most processes (one per test under nextest) skip the
        // lock and the extra session it needs; whoever builds a template drops the outdated ones.
        if self.database_is_template(template).await? == Some(true) {
            return Ok(());
        }
        let locking = format!(
            "locking the template build on {}",
            self.server.redacted_url()
        );
        let lock_remedy = "check that the server accepts connections";
        let mut lock_session = tokio::time::timeout(
            CONNECT_TIMEOUT,
            PgConnection::connect(&self.maintenance_url),
        )
        .await
        .map_err(|_| TestDbError::Failed {
            action: locking.clone(),
            cause: format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
            remedy: lock_remedy,
        })?
        .map_err(|error| TestDbError::Failed {
            action: locking.clone(),
            cause: self.server.scrub(&error.to_string()),
            remedy: lock_remedy,
        })?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(template_lock_key(base))
            .execute(&mut lock_session)
            .await
            .map_err(|error| TestDbError::Failed {
                action: locking.clone(),
                cause: self.server.scrub(&error.to_string()),
                remedy: lock_remedy,
            })?;

        let built = self.build_template_locked::<M>(base, template).await;

        // Ending the session releases the lock even if the explicit unlock fails.
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(template_lock_key(base))
            .execute(&mut lock_session)
            .await;
        let _ = lock_session.close().await;
        built
    }

    async fn build_template_locked<M: MigratorTrait + 'static>(
        &self,
        base: &str,
        template: &str,
    ) -> Result<(), TestDbError> {
        match self.database_is_template(template).await? {
            Some(true) => {}
            Some(false) => {
                // Created but never marked: a build that crashed before all migrations succeeded.
                self.drop_database_force(template).await?;
                self.build_template::<M>(template).await?;
            }
            None => self.build_template::<M>(template).await?,
        }
        // Old templates would otherwise pile up, one per edit of the migrations.
        if let Err(error) = self.drop_templates(base, Some(template)).await {
            eprintln!("{error}");
        }
        Ok(())
    }

    async fn build_template<M: MigratorTrait + 'static>(
        &self,
        template: &str,
    ) -> Result<(), TestDbError> {
        self.execute(
            &format!(
                "CREATE DATABASE {} TEMPLATE template0",
                quote_identifier(template)
            ),
            &format!("creating template database {template}"),
            "grant the DATABASE_URL user CREATEDB, or run `cargo xtask db-test`",
        )
        .await?;

        if let Err(error) = self.migrate::<M>(template).await {
            let _ = self.drop_database_force(template).await;
            return Err(error);
        }

        self.execute(
            &format!(
                "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                quote_identifier(template)
            ),
            &format!("marking template database {template}"),
            "check that the DATABASE_URL user owns the databases it creates",
        )
        .await
    }

    async fn migrate<M: MigratorTrait + 'static>(&self, template: &str) -> Result<(), TestDbError> {
        let action = format!("applying the migrations to template database {template}");
        let remedy = "fix the failing migration; `cargo xtask db-migrate` shows the same error";
        let connection = connect_pool(&self.server.database_url(template), 1)
            .await
            .map_err(|error| self.failed(&action, &error, remedy))?;
        let migrated = M::up(&connection, None).await;
        // Cloning needs the template free of sessions, so close it properly before marking.
        let closed = connection.close().await;
        migrated.map_err(|error| self.failed(&action, &error, remedy))?;
        closed.map_err(|error| self.failed(&action, &error, remedy))
    }

    async fn names_with_prefix(&self, prefix: &str) -> Result<Vec<String>, TestDbError> {
        let rows = self
            .pool
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
                [Value::from(prefix)],
            ))
            .await
            .map_err(|error| {
                self.failed("listing databases", &error, "check the server is healthy")
            })?;
        rows.iter()
            .map(|row| row.try_get::<String>("", "datname"))
            .collect::<Result<_, _>>()
            .map_err(|error| {
                self.failed("listing databases", &error, "check the server is healthy")
            })
    }

    async fn database_exists(&self, name: &str) -> Result<bool, TestDbError> {
        Ok(self.database_is_template(name).await?.is_some())
    }

    async fn database_is_template(&self, name: &str) -> Result<Option<bool>, TestDbError> {
        let row = self
            .pool
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT datistemplate FROM pg_database WHERE datname = $1",
                [Value::from(name)],
            ))
            .await
            .map_err(|error| {
                self.failed(
                    "looking up the template database",
                    &error,
                    "check the server is healthy",
                )
            })?;
        row.map(|row| row.try_get::<bool>("", "datistemplate"))
            .transpose()
            .map_err(|error| {
                self.failed(
                    "looking up the template database",
                    &error,
                    "check the server is healthy",
                )
            })
    }

    async fn create_database_from(
        &self,
        name: &str,
        source: &str,
        strategy: CloneStrategy,
    ) -> Result<(), TestDbError> {
        let strategy_clause = if self.server_major_version >= 15 {
            format!(" STRATEGY {}", strategy.sql_keyword())
        } else {
            String::new()
        };
        self.execute(
            &format!("CREATE DATABASE {} TEMPLATE {}{strategy_clause}", quote_identifier(name), quote_identifier(source)),
            &format!("creating test database {name} from {source}"),
            "grant the DATABASE_URL user CREATEDB and close sessions connected to the template, or run `cargo xtask db-test`",
        )
        .await
    }

    async fn drop_database_force(&self, name: &str) -> Result<(), TestDbError> {
        self.execute(
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_identifier(name)
            ),
            &format!("dropping database {name}"),
            "`testdb cleanup` (run by `cargo xtask db-test`) retries it",
        )
        .await
    }

    async fn mark_kept(&self, name: &str) -> Result<(), TestDbError> {
        self.execute(
            &format!(
                "COMMENT ON DATABASE {} IS '{KEPT_DATABASE_COMMENT}'",
                quote_identifier(name)
            ),
            &format!("marking test database {name} as kept"),
            "`testdb cleanup` may drop it; inspect it before the next run",
        )
        .await
    }

    async fn execute(
        &self,
        sql: &str,
        action: &str,
        remedy: &'static str,
    ) -> Result<(), TestDbError> {
        self.pool
            .execute_unprepared(sql)
            .await
            .map(|_| ())
            .map_err(|error| self.failed(action, &error, remedy))
    }

    fn failed(&self, action: &str, error: &DbErr, remedy: &'static str) -> TestDbError {
        TestDbError::Failed {
            action: action.to_owned(),
            cause: self.server.scrub(&describe_db_error(error)),
            remedy,
        }
    }
}

async fn query_server_settings(
    pool: &DatabaseConnection,
    server: &Server,
) -> Result<(u32, bool), TestDbError> {
    let read = |error: DbErr| TestDbError::Failed {
        action: "reading the server settings".to_owned(),
        cause: server.scrub(&describe_db_error(&error)),
        remedy: "check DATABASE_URL points at PostgreSQL",
    };
    // Both settings are readable by every role; no superuser or pg_read_all_settings needed.
    let row = pool
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('server_version_num')::int4 / 10000 AS major, \
                    current_setting('fsync')::bool AS fsync",
        ))
        .await
        .map_err(read)?
        .expect("SELECT returns one row");
    let major: i32 = row.try_get("", "major").map_err(read)?;
    let fsync: bool = row.try_get("", "fsync").map_err(read)?;
    Ok((major.max(0) as u32, fsync))
}

const INVALID_CATALOG_NAME: &str = "3D000";
const OBJECT_IN_USE: &str = "55006";

/// The admin connection for this process; an error is cached too, so that every test of a run
/// without a server fails at once instead of each waiting for its own timeout.
async fn admin() -> Result<Arc<Admin>, TestDbError> {
    static ADMIN: OnceCell<Result<Arc<Admin>, TestDbError>> = OnceCell::const_new();
    ADMIN
        .get_or_init(|| async {
            let server = Server::from_env()?;
            Admin::connect(server).await.map(Arc::new)
        })
        .await
        .clone()
}

/// A multi-threaded runtime that never shuts down, so the admin pool outlives every test's runtime
/// and `Drop` can wait for it without blocking the runtime it is called from.
fn admin_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("db-testing-admin")
            .enable_all()
            .build()
            .expect("the db::testing admin runtime starts (threads and timers are available)")
    })
}

async fn on_admin_runtime<T, F>(work: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    match admin_runtime().spawn(work).await {
        Ok(output) => output,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("db::testing admin task ended unexpectedly: {error}"),
    }
}

/// `None` when `work` did not finish within `timeout`.
fn block_on_admin_runtime<T, F>(work: F, timeout: Duration) -> Option<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (sender, receiver) = mpsc::channel();
    admin_runtime().spawn(async move {
        let _ = sender.send(work.await);
    });
    receiver.recv_timeout(timeout).ok()
}

async fn connect_pool(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(0)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(false);
    Database::connect(options).await
}

/// The connection pool retries a refused connection until its timeout and then reports only
/// "timed out"; a plain TCP connect first tells "nothing listens there" apart, and quickly.
async fn probe_tcp(server: &Server) -> Result<(), TestDbError> {
    let socket_in_query = server.url.query_pairs().any(|(key, _)| key == "host");
    let host = match server.url.host_str() {
        Some(host) if !host.is_empty() && !socket_in_query => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        _ => return Ok(()),
    };
    let port = server.url.port().unwrap_or(5432);
    let probed = tokio::task::spawn_blocking(move || {
        let addresses = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|error| format!("cannot resolve host {host}: {error}"))?;
        let mut last_failure = format!("host {host} has no address");
        for address in addresses {
            match TcpStream::connect_timeout(&address, TCP_PROBE_TIMEOUT) {
                Ok(_) => return Ok(()),
                Err(error) => last_failure = describe_io_error(&error),
            }
        }
        Err(last_failure)
    })
    .await
    .unwrap_or_else(|error| Err(format!("probe failed: {error}")));
    probed.map_err(|cause| TestDbError::Unreachable {
        url: server.redacted_url(),
        cause,
    })
}

fn describe_io_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("no answer within {}s", TCP_PROBE_TIMEOUT.as_secs())
        }
        _ => one_line(&error.to_string()),
    }
}

fn unreachable(server: &Server, error: &DbErr) -> TestDbError {
    TestDbError::Unreachable {
        url: server.redacted_url(),
        cause: server.scrub(&describe_db_error(error)),
    }
}

/// The server's own message when there is one, rather than sea-orm's nested wrappers.
fn describe_db_error(error: &DbErr) -> String {
    if let Some(database_error) = sqlx_error(error).and_then(|error| error.as_database_error()) {
        return database_error.message().to_owned();
    }
    match sqlx_error(error) {
        Some(sqlx::Error::PoolTimedOut) => {
            format!("no connection within {}s", CONNECT_TIMEOUT.as_secs())
        }
        Some(sqlx_error) => sqlx_error.to_string(),
        None => error.to_string(),
    }
}

fn sqlx_error(error: &DbErr) -> Option<&sqlx::Error> {
    match error {
        DbErr::Conn(RuntimeErr::SqlxError(error))
        | DbErr::Exec(RuntimeErr::SqlxError(error))
        | DbErr::Query(RuntimeErr::SqlxError(error)) => Some(error.as_ref()),
        _ => None,
    }
}

fn sqlstate(error: &DbErr) -> Option<String> {
    sqlx_error(error)?
        .as_database_error()?
        .code()
        .map(|code| code.into_owned())
}

fn template_name(base_name: &str, fingerprint: &str, server_major_version: u32) -> String {
    let mut hash = fnv1a(FNV_OFFSET_BASIS, fingerprint.as_bytes());
    hash = fnv1a(hash, format!(":pg{server_major_version}").as_bytes());
    format!("{base_name}_tpl_{:012x}", hash & 0xffff_ffff_ffff)
}

/// One lock per base, so templates of unrelated bases build side by side.
fn template_lock_key(base: &str) -> i64 {
    let hash = fnv1a(FNV_OFFSET_BASIS, TEMPLATE_LOCK_NAME.as_bytes());
    fnv1a(hash, base.as_bytes()) as i64
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// Lowercase ASCII letters, digits and `_` only, so that generated names need no escaping beyond
/// quoting and stay within the identifier limit.
fn sanitize_base_name(database: &str) -> String {
    let sanitized: String = database
        .chars()
        .map(|character| character.to_ascii_lowercase())
        .map(|character| {
            if character.is_ascii_alphanumeric() || character == '_' {
                character
            } else {
                '_'
            }
        })
        .take(MAX_BASE_NAME_BYTES)
        .collect();
    if sanitized.is_empty() {
        "db".to_owned()
    } else {
        sanitized
    }
}

fn quote_identifier(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn redact_url(url: Url) -> String {
    crate::connection::redact(url.as_str())
}

fn keep_on_failure_requested() -> bool {
    matches!(
        std::env::var(KEEP_ON_FAILURE_ENV).as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes
            .get(index + 1..index + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok());
        match (
            bytes[index],
            escaped.and_then(|hex| u8::from_str_radix(hex, 16).ok()),
        ) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_name_is_lowercase_identifier_characters_within_limit() {
        assert_eq!(sanitize_base_name("My-App.db"), "my_app_db");
        assert_eq!(sanitize_base_name(""), "db");
        assert_eq!(
            sanitize_base_name(&"x".repeat(100)).len(),
            MAX_BASE_NAME_BYTES
        );
    }

    #[test]
    fn template_name_fits_identifier_limit_and_depends_on_server_version() {
        let base = "x".repeat(MAX_BASE_NAME_BYTES);
        let on_15 = template_name(&base, MIGRATIONS_FINGERPRINT, 15);
        assert!(on_15.len() <= MAX_IDENTIFIER_BYTES, "{on_15}");
        assert_ne!(on_15, template_name(&base, MIGRATIONS_FINGERPRINT, 16));
        assert_eq!(on_15, template_name(&base, MIGRATIONS_FINGERPRINT, 15));
        assert_ne!(on_15, template_name(&base, "another fingerprint", 15));
    }

    #[test]
    fn pool_size_defaults_to_four_and_rejects_garbage_in_one_line() {
        assert_eq!(parse_pool_size(None), Ok(DEFAULT_POOL_SIZE));
        assert_eq!(parse_pool_size(Some(" ")), Ok(DEFAULT_POOL_SIZE));
        assert_eq!(parse_pool_size(Some("0")), Ok(0));
        assert_eq!(parse_pool_size(Some(" 7 ")), Ok(7));
        let error = parse_pool_size(Some("four\nplease"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "reading DB_TEST_POOL_SIZE failed (`four please` is not a number from 0 to 64): set it to how many ready clones to keep, or 0 to clone on demand"
        );
        assert!(parse_pool_size(Some("65")).is_err());
    }

    #[test]
    fn redacted_urls_and_error_text_hide_the_password() {
        let server = Server::parse("postgres://app:s%40cret@127.0.0.1:5432/App").unwrap();
        assert_eq!(server.base_name, "app");
        assert_eq!(
            server.redacted_url(),
            "postgres://app:***@127.0.0.1:5432/App"
        );
        assert_eq!(
            server.redacted_database_url("app_test_1"),
            "postgres://app:***@127.0.0.1:5432/app_test_1"
        );
        assert_eq!(
            server.scrub("auth failed for s@cret\nand s%40cret"),
            "auth failed for *** and ***"
        );
    }

    #[test]
    fn url_without_database_uses_the_user_name() {
        let server = Server::parse("postgres://carol@localhost").unwrap();
        assert_eq!(server.base_name, "carol");
        assert!(matches!(
            Server::parse("mysql://a@b/c"),
            Err(TestDbError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn unreachable_message_is_one_line_and_names_the_fix() {
        let error = TestDbError::Unreachable {
            url: "postgres://app:***@127.0.0.1:5432/app".into(),
            cause: "connection refused".into(),
        };
        assert_eq!(
            error.to_string(),
            "no PostgreSQL reachable at postgres://app:***@127.0.0.1:5432/app (connection refused): run `cargo xtask db-test`"
        );
    }
}
