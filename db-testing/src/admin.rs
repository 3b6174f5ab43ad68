//! The maintenance connection of this process ([`Admin`], living on the admin runtime): it
//! creates, clones, marks and drops databases, one statement at a time, with one-line errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dbops_connect::{sqlstate, sqlx_error};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};
use tokio::sync::OnceCell;

/// `permission denied to terminate process`: `DROP DATABASE … WITH (FORCE)` met a session of a
/// superuser (or an autovacuum worker) that a role without SUPERUSER may not end.
const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// The refusal to end another's session, not a missing privilege of our own (same SQLSTATE).
fn session_we_may_not_end(error: &DbErr) -> bool {
    sqlstate(error).as_deref() == Some(INSUFFICIENT_PRIVILEGE)
        && error.to_string().contains("terminate process")
}

const FORCED_DROP_PATIENCE: Duration = Duration::from_secs(10);
const FORCED_DROP_POLL: Duration = Duration::from_millis(50);

use crate::errors::{INVALID_CATALOG_NAME, TestDbError, describe_db_error};
use crate::lease::{Lease, OWNER_DIGITS};
use crate::names::{MAX_IDENTIFIER_BYTES, quote_identifier, test_database_prefix};
use crate::runtime::connect_pool;
use crate::server::{Server, probe_tcp};
use crate::strategy::CloneStrategy;

const ADMIN_POOL_MAX_CONNECTIONS: u32 = 3;
/// Marks a database kept with `DB_TEST_KEEP=1`; cleanup spares it unless asked not to.
pub(crate) const KEPT_DATABASE_COMMENT: &str = "kept by db::testing after a failed test";

/// The admin connection for this process; an error is cached too, so that every test of a run
/// without a server fails at once instead of each waiting for its own timeout.
pub(crate) async fn admin() -> Result<Arc<Admin>, TestDbError> {
    static ADMIN: OnceCell<Result<Arc<Admin>, TestDbError>> = OnceCell::const_new();
    ADMIN
        .get_or_init(|| async {
            let server = Server::from_env()?;
            Admin::connect(server).await.map(Arc::new)
        })
        .await
        .clone()
}

/// The maintenance connection, living on the admin runtime.
pub(crate) struct Admin {
    pub(crate) server: Server,
    pub(crate) pool: DatabaseConnection,
    pub(crate) maintenance_url: String,
    pub(crate) server_major_version: u32,
    pub(crate) clone_strategy: CloneStrategy,
    pub(crate) lease: Lease,
}

/// What connecting through one maintenance database came to.
enum Attempt {
    Connected(Box<Admin>),
    /// The database does not exist: try the next one.
    NoSuchDatabase(DbErr),
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
            match Self::connect_through(&server, &database).await? {
                Attempt::Connected(admin) => return Ok(*admin),
                Attempt::NoSuchDatabase(error) => last_error = Some(error),
            }
        }
        let error = last_error.expect("at least one maintenance database was tried");
        Err(server.unreachable(&error))
    }

    async fn connect_through(server: &Server, database: &str) -> Result<Attempt, TestDbError> {
        let maintenance_url = server.database_url(database);
        // Side by side, so the lease's session costs a test hardly any time.
        let (pool, lease) = tokio::join!(
            connect_pool(&maintenance_url, ADMIN_POOL_MAX_CONNECTIONS),
            Lease::acquire(server, &maintenance_url)
        );
        match pool {
            Ok(pool) => {
                let (server_major_version, fsync_enabled) =
                    query_server_settings(&pool, server).await?;
                Ok(Attempt::Connected(Box::new(Admin {
                    server: server.clone(),
                    pool,
                    maintenance_url,
                    server_major_version,
                    clone_strategy: CloneStrategy::for_server(fsync_enabled),
                    lease: lease?,
                })))
            }
            Err(error) if sqlstate(&error).as_deref() == Some(INVALID_CATALOG_NAME) => {
                Ok(Attempt::NoSuchDatabase(error))
            }
            Err(error)
                if sqlx_error(&error)
                    .and_then(|error| error.as_database_error())
                    .is_some() =>
            {
                Err(TestDbError::Failed {
                    action: format!("connecting to {}", server.redacted_database_url(database)),
                    cause: server.scrub(&describe_db_error(&error)),
                    remedy: "check the user and password in DATABASE_URL, or run `cargo xtask db-test`",
                })
            }
            Err(error) => Err(server.unreachable(&error)),
        }
    }

    pub(crate) fn next_test_database_name(&self, base: &str) -> String {
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

    pub(crate) async fn names_with_prefix(&self, prefix: &str) -> Result<Vec<String>, TestDbError> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
            [Value::from(prefix)],
        );
        self.database_names(statement, "listing databases").await
    }

    /// The `datname` of every row `statement` returns; `action` names the listing in an error.
    pub(crate) async fn database_names(
        &self,
        statement: Statement,
        action: &str,
    ) -> Result<Vec<String>, TestDbError> {
        let failed = |error| self.failed(action, &error, "check the server is healthy");
        let rows = self.pool.query_all_raw(statement).await.map_err(failed)?;
        rows.iter()
            .map(|row| row.try_get::<String>("", "datname"))
            .collect::<Result<_, _>>()
            .map_err(failed)
    }

    pub(crate) async fn database_exists(&self, name: &str) -> Result<bool, TestDbError> {
        Ok(self.database_is_template(name).await?.is_some())
    }

    /// `None` when there is no database `name`.
    pub(crate) async fn database_is_template(
        &self,
        name: &str,
    ) -> Result<Option<bool>, TestDbError> {
        let looking_up = |error| {
            self.failed(
                "looking up the template database",
                &error,
                "check the server is healthy",
            )
        };
        let row = self
            .pool
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT datistemplate FROM pg_database WHERE datname = $1",
                [Value::from(name)],
            ))
            .await
            .map_err(looking_up)?;
        row.map(|row| row.try_get::<bool>("", "datistemplate"))
            .transpose()
            .map_err(looking_up)
    }

    pub(crate) async fn create_database_from(
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

    /// Drops `name`, ending its sessions. A session that the application role may not end is
    /// waited for, up to [`FORCED_DROP_PATIENCE`]: it is nearly always an autovacuum worker,
    /// which counts as a superuser's and finishes within moments (on the busy bookkeeping
    /// database of two runs at once, it was seen to fail a drop).
    pub(crate) async fn drop_database_force(&self, name: &str) -> Result<(), TestDbError> {
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(name)
        );
        let deadline = Instant::now() + FORCED_DROP_PATIENCE;
        loop {
            match self.pool.execute_unprepared(&sql).await {
                Ok(_) => return Ok(()),
                Err(error) if session_we_may_not_end(&error) && Instant::now() < deadline => {
                    tokio::time::sleep(FORCED_DROP_POLL).await;
                }
                Err(error) => {
                    return Err(self.failed(
                        &format!("dropping database {name}"),
                        &error,
                        "`testdb cleanup` (run by `cargo xtask db-test`) retries it",
                    ));
                }
            }
        }
    }

    pub(crate) async fn mark_kept(&self, name: &str) -> Result<(), TestDbError> {
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

    pub(crate) async fn execute(
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

    pub(crate) fn failed(&self, action: &str, error: &DbErr, remedy: &'static str) -> TestDbError {
        TestDbError::Failed {
            action: action.to_owned(),
            cause: self.server.scrub(&describe_db_error(error)),
            remedy,
        }
    }
}

/// The server's major version and whether it runs with `fsync`.
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
