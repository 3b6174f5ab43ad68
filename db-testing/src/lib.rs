//! Real-PostgreSQL databases for tests: each [`TestDb`] is a database of its own, migrated to
//! head, taken from a pool of template clones or cloned on demand.
//!
//! How it behaves, and the environment it reads (`DATABASE_URL`, `DB_TEST_POOL_SIZE`,
//! `DB_TEST_KEEP`), is in MIGRATIONS.md, *Tests get their own databases*. The rooms:
//!
//! * `template`: [`TestTemplate`], a migration set and what is made from it; `prepared`: its
//!   template database, checked or built once per process, and outdated ones dropped;
//! * `test_db`: [`TestDb`], connected, and dropped or kept with it; `provision`: a database
//!   cloned or claimed for a test before it connects, and the pool slot it came from;
//! * `pool`: the bookkeeping of ready clones; `filler`: dropping finished databases and refilling
//!   the pool beside the tests; `lease`: the advisory locks that tell a live test run's databases
//!   from leftovers; `cleanup`: dropping what no live run holds;
//! * `admin`: the maintenance connection that creates and drops databases; `runtime`: the private
//!   runtime it lives on; `server` and `names`: `DATABASE_URL` and the names derived from it;
//! * `errors`: [`TestDbError`]; `strategy`: [`CloneStrategy`];
//! * `macro_support`: what `#[db::test]` expands to call (hidden: not an API of its own).

mod admin;
mod cleanup;
mod errors;
mod filler;
mod lease;
mod macro_support;
mod names;
mod pool;
mod prepared;
mod provision;
mod runtime;
mod server;
mod strategy;
mod template;
mod test_db;

use std::time::{Duration, Instant};

pub use errors::TestDbError;
pub use filler::{FillerReport, PoolFiller};
pub use strategy::CloneStrategy;
pub use template::TestTemplate;
pub use test_db::TestDb;

/// For `#[db::test]`'s expansion only; write `#[db::test]` rather than calling it.
#[doc(hidden)]
pub mod __macro_support {
    pub use crate::macro_support::run;
}

use admin::admin;
use runtime::on_admin_runtime;
use template::Acquisition;

/// Builds the application's template if it is missing or stale, tops its pool up to
/// `DB_TEST_POOL_SIZE` ready clones, and returns the template's name.
pub async fn prepare() -> Result<String, TestDbError> {
    TestTemplate::application().prepare().await
}

/// Keeps the application template's pool full and drops the databases tests finished with,
/// until `until` completes (see the `filler` module); `cargo xtask db-test` runs it beside the
/// suite as `testdb serve`.
pub async fn serve_pool(
    until: impl std::future::Future<Output = ()>,
) -> Result<FillerReport, TestDbError> {
    TestTemplate::application().serve_pool(until).await
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

/// The name of the database `db` is connected to: [`TestDb::name`] for a test written with
/// `#[db::test]`, which is handed the connection rather than the `TestDb`. Panics when the query
/// fails, as a test would.
pub async fn database_name(db: &sea_orm::DatabaseConnection) -> String {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let query = Statement::from_string(DbBackend::Postgres, "SELECT current_database() AS name");
    let row = db.query_one_raw(query).await;
    row.ok()
        .flatten()
        .and_then(|row| row.try_get("", "name").ok())
        .expect("SELECT current_database() answers on a test database's connection")
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
