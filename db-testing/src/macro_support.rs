//! What `#[db::test]` (the `db-macros` crate) expands to: the test's runtime, its database and its
//! fixtures, here rather than in every expansion, so the generated code is one call.

use std::future::Future;

use dbops_common::text::one_line;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::errors::describe_db_error;
use crate::test_db::TestDb;

/// Runs `test` on a fresh Tokio current-thread runtime (as `#[tokio::test]` does) with a handle to
/// a new migrated [`TestDb`], after executing each `(name, sql)` fixture in order.
///
/// The `TestDb` is held by the future `block_on` polls, so a panic in a fixture or in the test
/// drops it while the panic unwinds: `std::thread::panicking()` is true in its `Drop`, which is how
/// `DB_TEST_KEEP=1` keeps a failed test's database.
pub fn run<F, Fut>(fixtures: &[(&str, &str)], test: F)
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a #[db::test] starts its Tokio runtime (threads and timers are available)");
    runtime.block_on(async move {
        let test_db = TestDb::new().await;
        load_fixtures(test_db.conn(), fixtures).await;
        test(test_db.conn().clone()).await;
        drop(test_db);
    });
}

/// Each fixture is one simple-protocol batch: several statements, no parameters, committed or
/// rolled back together.
async fn load_fixtures(db: &DatabaseConnection, fixtures: &[(&str, &str)]) {
    for (name, sql) in fixtures {
        if let Err(error) = db.execute_unprepared(sql).await {
            panic!(
                "fixture {name} (tests/fixtures/{name}.sql) failed: {}",
                one_line(&describe_db_error(&error))
            );
        }
    }
}
