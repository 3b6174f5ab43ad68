//! Two test runs on one server at once (two clones of the repository, or one clone twice): what one run does must not break the databases the other is still using.
//!
//! Each test plays the other run in a child process of this binary (an ignored probe test), which
//! holds its databases while this process does what a run does at its start or end.

mod common;

use common::{Spawned, admin, database_exists, database_row, url_for_database};
use db_testing::{TestDb, TestTemplate};
use migration::Migrator;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

const IDLE_PROBE_TEST: &str = "probe_holds_test_databases_without_a_session";
const CLAIMED_MARKER: &str = "claimed from the pool: ";
const CLONED_MARKER: &str = "cloned on demand: ";
const TEMPLATE_PROBE_TEST: &str = "probe_uses_the_template_of_an_older_migration_set";
const TEMPLATE_MARKER: &str = "older template: ";
const PROBE_DONE: &str = "probe done";
const POOL_SIZE: &str = "4";

/// `testdb cleanup`, which ends every `cargo xtask db-test`, drops the test databases no session
/// is connected to. A test of another run can hold one without a session for a while: between
/// `CREATE DATABASE` (or claiming a ready clone) and its first connection, or while its pool has
/// closed idle connections.
#[tokio::test]
async fn cleanup_at_the_end_of_one_run_spares_the_live_tests_databases_of_another() {
    let base = common::isolated_base("idle").await;
    let base_url = url_for_database(&base);
    let admin = admin().await;
    // The other run's start: its template and four ready clones.
    let prepared = common::run_testdb_with_pool_size(&["prepare"], &base_url, POOL_SIZE);
    assert!(prepared.status.success(), "{prepared:?}");

    let mut other_run = Spawned::probe(
        IDLE_PROBE_TEST,
        &[
            ("DATABASE_URL", &base_url),
            ("DB_TEST_POOL_SIZE", POOL_SIZE),
        ],
    );
    let claimed = other_run.expect(CLAIMED_MARKER);
    let cloned = other_run.expect(CLONED_MARKER);
    common::wait_until_no_sessions(&admin, &claimed).await;
    common::wait_until_no_sessions(&admin, &cloned).await;

    // This run's end.
    let cleanup = common::run_testdb(&["cleanup"], Some(&base_url));
    assert!(cleanup.status.success(), "{cleanup:?}");
    let claimed_survived = database_exists(&admin, &claimed).await;
    let cloned_survived = database_exists(&admin, &cloned).await;

    other_run.proceed();
    let finished = other_run.finish();
    for (name, survived) in [(&claimed, claimed_survived), (&cloned, cloned_survived)] {
        assert!(
            survived,
            "`testdb cleanup` dropped {name}, which a test of another run still holds\n{}",
            finished.stderr
        );
    }
    finished.assert_success("the other run's test");
    assert!(finished.stdout.contains(PROBE_DONE), "{}", finished.stdout);
    assert_eq!(
        String::from_utf8_lossy(&cleanup.stdout).trim(),
        "3",
        "the cleanup still dropped the three clones nobody had claimed"
    );
    assert!(
        !database_exists(&admin, &claimed).await,
        "its test dropped it"
    );
    assert!(
        !database_exists(&admin, &cloned).await,
        "its test dropped it"
    );
    common::drop_everything(&base).await;
}

#[tokio::test]
#[ignore = "run by cleanup_at_the_end_of_one_run_spares_the_live_tests_databases_of_another"]
async fn probe_holds_test_databases_without_a_session() {
    let claimed = TestDb::new().await;
    assert!(claimed.claimed_from_pool(), "{claimed:?}");
    let cloned = TestDb::empty().await;
    // Closes every session, as an idle pool does, while the test still owns the databases.
    claimed.conn().close_by_ref().await.unwrap();
    cloned.conn().close_by_ref().await.unwrap();
    println!("{CLAIMED_MARKER}{}", claimed.name());
    println!("{CLONED_MARKER}{}", cloned.name());
    common::wait_for_parent().await;

    for test_db in [&claimed, &cloned] {
        let reconnected = Database::connect(test_db.url())
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "{} is gone while its test still runs: {error}",
                    test_db.name()
                )
            });
        reconnected.ping().await.unwrap();
        reconnected.close().await.unwrap();
    }
    println!("{PROBE_DONE}");
}

/// A clone of the repository with other migrations builds a template of its own under the same
/// base name; building it must not drop the template a run of the older clone still clones from.
#[tokio::test]
async fn a_newer_migration_set_spares_the_template_another_run_still_uses() {
    let base = common::isolated_base("tplswap").await;
    let admin = admin().await;

    let mut older_run = Spawned::probe(TEMPLATE_PROBE_TEST, &[("DB_TESTING_PROBE_BASE", &base)]);
    let older_template = older_run.expect(TEMPLATE_MARKER);

    let newer = TestTemplate::<Migrator>::new("migrations of the newer clone")
        .with_base_name(&base)
        .with_pool_size(0);
    let newer_template = newer.prepare().await.unwrap();
    assert_ne!(newer_template, older_template);
    let older_state = database_row(&admin, &older_template).await;

    older_run.proceed();
    let finished = older_run.finish();
    assert_eq!(
        older_state,
        Some((true, false)),
        "building {newer_template} dropped {older_template}, which another run still uses\n{}",
        finished.stderr
    );
    finished.assert_success("the older clone's test");
    assert!(finished.stdout.contains(PROBE_DONE), "{}", finished.stdout);

    let newest = newer.test_db().await.unwrap();
    assert_eq!(
        common::applied_migrations(newest.conn()).await.len(),
        <Migrator as migration::MigratorTrait>::migrations().len()
    );
    drop(newest);
    // Now that the older run is gone, its template goes too.
    common::drop_everything(&base).await;
}

#[tokio::test]
#[ignore = "run by a_newer_migration_set_spares_the_template_another_run_still_uses"]
async fn probe_uses_the_template_of_an_older_migration_set() {
    let base = std::env::var("DB_TESTING_PROBE_BASE").expect("the parent names the base");
    let older = TestTemplate::<Migrator>::new("migrations of the older clone")
        .with_base_name(&base)
        .with_pool_size(0);
    println!("{TEMPLATE_MARKER}{}", older.prepare().await.unwrap());
    common::wait_for_parent().await;

    let test_db = older.test_db().await.unwrap();
    let row = test_db
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT to_regclass('public.projects') IS NOT NULL AS migrated",
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(row.try_get::<bool>("", "migrated").unwrap());
    println!("{PROBE_DONE}");
}
