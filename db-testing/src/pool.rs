//! The pool of ready template clones behind `db_testing`: its bookkeeping table and the claim with `FOR UPDATE SKIP LOCKED`.
//!
//! The table lives in a small database of its own, `{base}_testpool`, rather than in the
//! maintenance database (which may not exist, and which the `DATABASE_URL` user may not own) or in
//! the application's database (whose schema `db-dump` and the drift checks compare). Its name does
//! not start with `{base}_test_`, so cleanup never mistakes it for a test database.
//!
//! Every row is one clone `{base}_test_…` and moves `creating` → `ready` → `claimed`; the test that
//! claimed it deletes the row when it drops the database. The row is inserted before the clone is
//! created, so a crash leaves at worst rows whose database is idle or missing: cleanup drops idle
//! test databases and then forgets the rows without a database. Rows record the owner token (see
//! the `lease` module) of the process creating or holding the clone, so that the cleanup of another
//! test run spares them while that process lives. Clones are only claimed for the template they
//! were made from, and dropping an outdated template drops its ready clones.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait, Value,
};
use tokio::sync::OnceCell;

use dbops_common::fnv::{FNV_OFFSET_BASIS, fnv1a};
use dbops_connect::sqlstate;

use crate::admin::Admin;
use crate::errors::{TestDbError, describe_db_error};
use crate::lease::owner_is_live_sql;
use crate::names::quote_identifier;
use crate::runtime::connect_pool;
use crate::server::Server;

const BOOKKEEPING_MAX_CONNECTIONS: u32 = 2;
const SCHEMA_LOCK_NAME: &str = "db-testing-pool-schema";
const FILL_LOCK_NAME: &str = "db-testing-pool-fill";
const DUPLICATE_DATABASE: &str = "42P04";
const UNIQUE_VIOLATION: &str = "23505";
const REMEDY: &str = "check the server is healthy, or set DB_TEST_POOL_SIZE=0 to clone on demand";

/// One implicit transaction (a multi-statement simple query), so the lock covers the whole schema
/// and concurrent first runs cannot trip over each other's `CREATE … IF NOT EXISTS`.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS pool_databases (
        name text PRIMARY KEY,
        template text NOT NULL,
        state text NOT NULL CHECK (state IN ('creating', 'ready', 'claimed')),
        created_by_pid bigint NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        claimed_by_pid bigint,
        claimed_at timestamptz,
        created_by_owner bigint,
        claimed_by_owner bigint
    );
    CREATE INDEX IF NOT EXISTS pool_databases_by_template_and_state
        ON pool_databases (template, state, created_at);
    DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_attribute
                        WHERE attrelid = 'pool_databases'::regclass
                          AND attname = 'claimed_by_owner' AND NOT attisdropped) THEN
            ALTER TABLE pool_databases
                ADD COLUMN created_by_owner bigint, ADD COLUMN claimed_by_owner bigint;
        END IF;
    END $$;
    COMMENT ON TABLE pool_databases IS
        'clones db_testing keeps ready for tests (db-testing/src/pool.rs); `testdb cleanup` removes stale ones';
    CREATE TABLE IF NOT EXISTS pool_fillers (
        template text NOT NULL,
        owner bigint NOT NULL,
        PRIMARY KEY (template, owner)
    );
    CREATE TABLE IF NOT EXISTS finished_databases (
        name text PRIMARY KEY,
        finished_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
";

/// The channel on which a test tells the fillers that it finished with its database.
pub(crate) const FINISHED_CHANNEL: &str = "db_testing_finished";

/// Locks the oldest ready clone, skipping those other claimers hold, so no clone is claimed twice
/// and concurrent claimers never wait for each other.
const CLAIM: &str = "
    UPDATE pool_databases
       SET state = 'claimed', claimed_by_pid = $2, claimed_by_owner = $3,
           claimed_at = clock_timestamp()
     WHERE state = 'ready'
       AND name = (SELECT name FROM pool_databases
                    WHERE template = $1 AND state = 'ready'
                    ORDER BY created_at, name
                    LIMIT 1
                    FOR UPDATE SKIP LOCKED)
 RETURNING name";

pub(crate) fn bookkeeping_database_name(base: &str) -> String {
    format!("{base}_testpool")
}

/// What [`Bookkeeping::release_for_drop`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolRelease {
    /// A live process is creating or holds the clone.
    Held,
    /// The entry was ready, or its process is gone; it is deleted, so no one can claim the clone.
    Released,
    /// The database has no entry: not a pooled clone, or its entry was forgotten.
    Untracked,
}

/// True when the row `p` is being created or is held by a live process.
fn row_is_held_sql() -> String {
    format!(
        "((p.state = 'claimed' AND {}) OR (p.state = 'creating' AND {}))",
        owner_is_live_sql("p.claimed_by_owner"),
        owner_is_live_sql("p.created_by_owner")
    )
}

/// The bookkeeping of one base name's pools, one per template.
pub(crate) struct Bookkeeping {
    base: String,
    database: String,
    server: Server,
    connection: DatabaseConnection,
}

type OpenedCell = Arc<OnceCell<Result<Arc<Bookkeeping>, TestDbError>>>;
static OPENED: Mutex<BTreeMap<String, OpenedCell>> = Mutex::new(BTreeMap::new());

impl Bookkeeping {
    /// The bookkeeping of `base`, created on first use; one connection pool per process and base.
    pub(crate) async fn open(admin: &Admin, base: &str) -> Result<Arc<Bookkeeping>, TestDbError> {
        let cell = OPENED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(base.to_owned())
            .or_default()
            .clone();
        cell.get_or_init(|| Self::create(admin, base)).await.clone()
    }

    async fn create(admin: &Admin, base: &str) -> Result<Arc<Bookkeeping>, TestDbError> {
        let database = bookkeeping_database_name(base);
        if !admin.database_exists(&database).await? {
            let statement = format!(
                "CREATE DATABASE {} TEMPLATE template0",
                quote_identifier(&database)
            );
            match admin.pool.execute_unprepared(&statement).await {
                Ok(_) => {}
                // Another process created it first.
                Err(error)
                    if matches!(
                        sqlstate(&error).as_deref(),
                        Some(DUPLICATE_DATABASE | UNIQUE_VIOLATION)
                    ) => {}
                Err(error) => {
                    return Err(admin.failed(
                        &format!("creating the test pool's bookkeeping database {database}"),
                        &error,
                        "grant the DATABASE_URL user CREATEDB, or set DB_TEST_POOL_SIZE=0 to clone on demand",
                    ));
                }
            }
        }
        let connection = connect_pool(
            &admin.server.database_url(&database),
            BOOKKEEPING_MAX_CONNECTIONS,
        )
        .await
        .map_err(|error| {
            admin.failed(
                &format!("connecting to the test pool's bookkeeping database {database}"),
                &error,
                REMEDY,
            )
        })?;
        let bookkeeping = Bookkeeping {
            base: base.to_owned(),
            database,
            server: admin.server.clone(),
            connection,
        };
        let schema = format!(
            "SELECT pg_advisory_xact_lock({}); {SCHEMA}",
            lock_key(SCHEMA_LOCK_NAME, "")
        );
        bookkeeping
            .connection
            .execute_unprepared(&schema)
            .await
            .map_err(|error| bookkeeping.failed("creating the pool table", &error))?;
        Ok(Arc::new(bookkeeping))
    }

    /// Drops the bookkeeping database of `base` (closing this process's connections to it first);
    /// returns how many databases it dropped, 0 or 1.
    pub(crate) async fn drop_database(admin: &Admin, base: &str) -> Result<usize, TestDbError> {
        let cell = OPENED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(base);
        if let Some(Ok(opened)) = cell.as_ref().and_then(|cell| cell.get()) {
            let _ = opened.connection.close_by_ref().await;
        }
        let database = bookkeeping_database_name(base);
        if !admin.database_exists(&database).await? {
            return Ok(0);
        }
        admin.drop_database_force(&database).await?;
        Ok(1)
    }

    /// Claims a ready clone of `template` for this process; `None` when none is ready.
    pub(crate) async fn claim(
        &self,
        template: &str,
        owner: u32,
    ) -> Result<Option<String>, TestDbError> {
        let row = self
            .connection
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                CLAIM,
                [
                    Value::from(template),
                    Value::from(process_id()),
                    Value::from(i64::from(owner)),
                ],
            ))
            .await
            .map_err(|error| self.failed("claiming a ready test database", &error))?;
        row.map(|row| row.try_get::<String>("", "name"))
            .transpose()
            .map_err(|error| self.failed("claiming a ready test database", &error))
    }

    /// Clones `template` until `size` clones are ready or being created; returns how many it
    /// created. Reservations are counted under a lock, so concurrent fills never overshoot.
    pub(crate) async fn fill(
        &self,
        admin: &Admin,
        template: &str,
        size: usize,
    ) -> Result<usize, TestDbError> {
        let reserved = self.reserve(admin, template, size).await?;
        for (index, name) in reserved.iter().enumerate() {
            if let Err(error) = self.create_reserved(admin, template, name).await {
                // The next clones would fail alike (the template was replaced, say); free their rows.
                for unused in &reserved[index + 1..] {
                    let _ = self.forget(unused).await;
                }
                return Err(error);
            }
        }
        Ok(reserved.len())
    }

    async fn reserve(
        &self,
        admin: &Admin,
        template: &str,
        size: usize,
    ) -> Result<Vec<String>, TestDbError> {
        let failed = |error: DbErr| self.failed("reserving clones for the test pool", &error);
        let transaction = self.connection.begin().await.map_err(failed)?;
        transaction
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [Value::from(lock_key(FILL_LOCK_NAME, template))],
            ))
            .await
            .map_err(failed)?;
        let pending: i64 = transaction
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT count(*) AS count FROM pool_databases \
                 WHERE template = $1 AND state IN ('creating', 'ready')",
                [Value::from(template)],
            ))
            .await
            .map_err(failed)?
            .map(|row| row.try_get("", "count"))
            .transpose()
            .map_err(failed)?
            .unwrap_or(0);
        let missing = size.saturating_sub(usize::try_from(pending).unwrap_or(usize::MAX));
        let names: Vec<String> = (0..missing)
            .map(|_| admin.next_test_database_name(&self.base))
            .collect();
        for name in &names {
            transaction
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "INSERT INTO pool_databases \
                     (name, template, state, created_by_pid, created_by_owner) \
                     VALUES ($1, $2, 'creating', $3, $4)",
                    [
                        Value::from(name.as_str()),
                        Value::from(template),
                        Value::from(process_id()),
                        Value::from(i64::from(admin.lease.owner())),
                    ],
                ))
                .await
                .map_err(failed)?;
        }
        transaction.commit().await.map_err(failed)?;
        Ok(names)
    }

    async fn create_reserved(
        &self,
        admin: &Admin,
        template: &str,
        name: &str,
    ) -> Result<(), TestDbError> {
        if let Err(error) = admin
            .create_database_from(name, template, admin.clone_strategy)
            .await
        {
            let _ = self.forget(name).await;
            return Err(error);
        }
        let marked = self
            .connection
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE pool_databases SET state = 'ready' WHERE name = $1 AND state = 'creating'",
                [Value::from(name)],
            ))
            .await
            .map_err(|error| self.failed("marking a pooled clone ready", &error))?;
        if marked.rows_affected() == 0 {
            // A cleanup forgot the reservation meanwhile; nobody would ever claim or drop this clone.
            admin.drop_database_force(name).await?;
        }
        Ok(())
    }

    /// Removes the entry of `name`, whose database is dropped, kept or about to be dropped.
    pub(crate) async fn forget(&self, name: &str) -> Result<(), TestDbError> {
        self.connection
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "DELETE FROM pool_databases WHERE name = $1",
                [Value::from(name)],
            ))
            .await
            .map(|_| ())
            .map_err(|error| self.failed("removing a test database from the pool", &error))
    }

    /// Deletes the entry of the idle database `name` before cleanup drops it, unless a live
    /// process is creating or holds it. One statement, so a claim either precedes it (and the
    /// entry is held) or finds no entry to claim.
    pub(crate) async fn release_for_drop(&self, name: &str) -> Result<PoolRelease, TestDbError> {
        let failed = |error| self.failed("releasing a pooled clone for cleanup", &error);
        let row = self
            .connection
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "WITH released AS (DELETE FROM pool_databases p \
                                       WHERE p.name = $1 AND NOT {} RETURNING 1) \
                     SELECT (SELECT count(*) FROM released) AS released, \
                            (SELECT count(*) FROM pool_databases WHERE name = $1) AS entries",
                    row_is_held_sql()
                ),
                [Value::from(name)],
            ))
            .await
            .map_err(failed)?
            .expect("SELECT returns one row");
        let released: i64 = row.try_get("", "released").map_err(failed)?;
        let entries: i64 = row.try_get("", "entries").map_err(failed)?;
        // The outer SELECT sees the table as before the DELETE, so a released entry still counts.
        Ok(match (released, entries) {
            (0, 0) => PoolRelease::Untracked,
            (0, _) => PoolRelease::Held,
            _ => PoolRelease::Released,
        })
    }

    /// Removes the entries whose database no longer exists (crashed runs, cleanup), except those
    /// a live process is still creating or holds, and the fillers whose process is gone.
    pub(crate) async fn forget_missing(&self) -> Result<u64, TestDbError> {
        self.connection
            .execute_unprepared(&format!(
                "DELETE FROM pool_fillers f WHERE NOT {}; \
                 DELETE FROM finished_databases f \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = f.name); \
                 DELETE FROM pool_databases p \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = p.name) \
                   AND NOT {}",
                owner_is_live_sql("f.owner"),
                row_is_held_sql()
            ))
            .await
            .map(|result| result.rows_affected())
            .map_err(|error| self.failed("forgetting pool entries without a database", &error))
    }

    /// Drops the ready clones of `template`, which is being dropped. Claimed ones belong to tests
    /// still running, which drop them themselves.
    pub(crate) async fn retire_template(
        &self,
        admin: &Admin,
        template: &str,
    ) -> Result<(), TestDbError> {
        let rows = self
            .connection
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "DELETE FROM pool_databases WHERE template = $1 AND state = 'ready' RETURNING name",
                [Value::from(template)],
            ))
            .await
            .map_err(|error| self.failed("retiring clones of outdated templates", &error))?;
        let mut outcome = Ok(());
        for row in rows {
            let dropped = match row.try_get::<String>("", "name") {
                Ok(name) => admin.drop_database_force(&name).await,
                Err(error) => Err(self.failed("retiring clones of outdated templates", &error)),
            };
            outcome = outcome.and(dropped);
        }
        outcome
    }

    /// Hands the test database `name` to a live filler of `template`, in one statement: forgets
    /// its pool entry if it was `claimed`, lists it as finished and wakes the fillers. Returns
    /// `false`, having changed nothing, when no filler of `template` is alive.
    pub(crate) async fn hand_to_filler(
        &self,
        name: &str,
        template: &str,
        claimed: bool,
    ) -> Result<bool, TestDbError> {
        let failed = |error| self.failed("handing a finished test database to the filler", &error);
        let row = self
            .connection
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "WITH filler AS (SELECT EXISTS (SELECT 1 FROM pool_fillers f \
                                                    WHERE f.template = $2 AND {}) AS live), \
                          forgotten AS (DELETE FROM pool_databases \
                                        WHERE name = $1 AND $3 AND (SELECT live FROM filler)), \
                          finished AS (INSERT INTO finished_databases (name) \
                                       SELECT $1 WHERE (SELECT live FROM filler) \
                                       ON CONFLICT (name) DO NOTHING) \
                     SELECT filler.live FROM filler \
                     LEFT JOIN LATERAL (SELECT pg_notify('{FINISHED_CHANNEL}', '') \
                                        WHERE filler.live) AS notified ON true",
                    owner_is_live_sql("f.owner")
                ),
                [
                    Value::from(name),
                    Value::from(template),
                    Value::from(claimed),
                ],
            ))
            .await
            .map_err(failed)?
            .expect("SELECT returns one row");
        row.try_get("", "live").map_err(failed)
    }

    /// Registers this process as a filler of `template`, whose tests then leave dropping their
    /// databases to it; [`Bookkeeping::unregister_filler`] undoes it, and so does the end of this
    /// process (the owner token's lock), for the next cleanup.
    pub(crate) async fn register_filler(
        &self,
        template: &str,
        owner: u32,
    ) -> Result<(), TestDbError> {
        self.execute_filler(
            "INSERT INTO pool_fillers (template, owner) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            template,
            owner,
        )
        .await
    }

    pub(crate) async fn unregister_filler(
        &self,
        template: &str,
        owner: u32,
    ) -> Result<(), TestDbError> {
        self.execute_filler(
            "DELETE FROM pool_fillers WHERE template = $1 AND owner = $2",
            template,
            owner,
        )
        .await
    }

    async fn execute_filler(
        &self,
        sql: &str,
        template: &str,
        owner: u32,
    ) -> Result<(), TestDbError> {
        self.connection
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                [Value::from(template), Value::from(i64::from(owner))],
            ))
            .await
            .map(|_| ())
            .map_err(|error| self.failed("registering the pool's filler", &error))
    }

    /// Takes the names of the databases tests finished with, for the filler to drop.
    pub(crate) async fn take_finished(&self) -> Result<Vec<String>, TestDbError> {
        let failed = |error| self.failed("taking the finished test databases", &error);
        self.connection
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "DELETE FROM finished_databases RETURNING name",
            ))
            .await
            .map_err(failed)?
            .into_iter()
            .map(|row| row.try_get::<String>("", "name").map_err(failed))
            .collect()
    }

    /// A listener woken by [`Bookkeeping::hand_to_filler`], on a connection of its own.
    pub(crate) async fn listen_for_finished(&self) -> Result<PgListener, TestDbError> {
        let failed = |error: sea_orm::sqlx::Error| TestDbError::Failed {
            action: format!(
                "listening for finished test databases (bookkeeping database {})",
                self.database
            ),
            cause: self.server.scrub(&error.to_string()),
            remedy: REMEDY,
        };
        let url = self.server.database_url(&self.database);
        let mut listener = PgListener::connect(&url).await.map_err(failed)?;
        listener.listen(FINISHED_CHANNEL).await.map_err(failed)?;
        Ok(listener)
    }

    pub(crate) async fn ready_count(&self, template: &str) -> Result<usize, TestDbError> {
        let row = self
            .connection
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT count(*) AS count FROM pool_databases WHERE template = $1 AND state = 'ready'",
                [Value::from(template)],
            ))
            .await
            .map_err(|error| self.failed("counting ready clones", &error))?;
        let count: i64 = row
            .map(|row| row.try_get("", "count"))
            .transpose()
            .map_err(|error| self.failed("counting ready clones", &error))?
            .unwrap_or(0);
        Ok(usize::try_from(count).unwrap_or(0))
    }

    fn failed(&self, action: &str, error: &DbErr) -> TestDbError {
        TestDbError::Failed {
            action: format!("{action} (bookkeeping database {})", self.database),
            cause: self.server.scrub(&describe_db_error(error)),
            remedy: REMEDY,
        }
    }
}

fn process_id() -> i64 {
    i64::from(std::process::id())
}

fn lock_key(name: &str, qualifier: &str) -> i64 {
    let hash = fnv1a(FNV_OFFSET_BASIS, name.as_bytes());
    fnv1a(hash, qualifier.as_bytes()) as i64
}
