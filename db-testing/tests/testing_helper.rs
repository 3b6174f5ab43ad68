//! Checks `db_testing` and the `testdb` binary themselves: fresh migrated clones, the template, kept databases and error messages.
//!
//! The pool and cleanup, which need a base name of their own per process, are in `testing_pool.rs`.

mod common;

use std::process::Command;

use common::{
    KEPT_DATABASE_COMMENT, admin, count, database_comment, database_exists, database_row,
    database_url, run_testdb, wait_until_dropped,
};
use db::projects::{self, NewProject};
use db_testing::{self as testing, TestDb};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

const KEEP_PROBE_ENV: &str = "DB_TESTING_KEEP_PROBE";
const KEEP_PROBE_TEST: &str = "failing_test_probe_for_keep_on_failure";
const MACRO_KEEP_PROBE_TEST: &str = "failing_macro_test_probe_for_keep_on_failure";

#[tokio::test]
async fn each_test_database_is_distinct_and_isolated() {
    let first = TestDb::new().await;
    let second = TestDb::new().await;

    assert_ne!(first.name(), second.name());
    assert_ne!(first.url(), second.url());
    assert!(first.name().len() <= 63 && second.name().len() <= 63);

    projects::create(
        first.conn(),
        NewProject {
            name: "only in first".into(),
            description: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        count(first.conn(), "SELECT count(*) AS count FROM projects").await,
        1
    );
    assert_eq!(
        count(second.conn(), "SELECT count(*) AS count FROM projects").await,
        0
    );
}

#[tokio::test]
async fn clone_is_migrated_to_head() {
    let test_db = TestDb::new().await;
    let db = test_db.conn();

    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_database() AS name, to_regclass('public.projects') IS NOT NULL AS has_projects",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "name").unwrap(), test_db.name());
    assert!(row.try_get::<bool>("", "has_projects").unwrap());

    let applied = common::applied_migrations(db).await;
    let expected: Vec<String> = Migrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    assert_eq!(applied, expected);
    assert!(
        Migrator::get_pending_migrations(db)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn url_reaches_the_same_database_as_conn() {
    let test_db = TestDb::new().await;
    projects::create(
        test_db.conn(),
        NewProject {
            name: "via pool".into(),
            description: None,
        },
    )
    .await
    .unwrap();

    let separate = Database::connect(test_db.url()).await.unwrap();
    assert_eq!(
        count(
            &separate,
            "SELECT count(*) AS count FROM projects WHERE name = 'via pool'"
        )
        .await,
        1
    );
    separate.close().await.unwrap();
}

#[tokio::test]
async fn dropping_a_test_database_removes_it_from_the_server() {
    let admin = admin().await;
    let test_db = TestDb::new().await;
    let name = test_db.name().to_owned();
    assert!(database_exists(&admin, &name).await);

    drop(test_db);

    wait_until_dropped(&admin, &name).await;
}

#[tokio::test]
async fn empty_database_has_no_tables_and_is_dropped_too() {
    let admin = admin().await;
    let scratch = TestDb::empty().await;
    let name = scratch.name().to_owned();

    let tables = count(
        scratch.conn(),
        "SELECT count(*) AS count FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public'",
    )
    .await;
    assert_eq!(tables, 0, "an empty database has no relations in public");
    drop(scratch);

    assert!(!database_exists(&admin, &name).await);
}

#[tokio::test]
async fn template_exists_is_marked_and_closed_to_connections() {
    let admin = admin().await;
    let template = testing::prepare().await.unwrap();

    assert_eq!(
        testing::prepare().await.unwrap(),
        template,
        "prepare is idempotent"
    );
    let base = database_url().path().trim_start_matches('/').to_lowercase();
    assert!(template.starts_with(&format!("{base}_tpl_")), "{template}");
    assert!(template.len() <= 63);
    assert_eq!(
        database_row(&admin, &template).await,
        Some((true, false)),
        "datistemplate, datallowconn of {template}"
    );

    let output = run_testdb(&["prepare"], Some(database_url().as_str()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), template);
}

#[test]
fn testdb_without_a_server_fails_fast_with_one_line_and_no_password() {
    // Port 1 is reserved (tcpmux) and closed on developer machines and CI runners.
    let output = run_testdb(&["prepare"], Some("postgres://app:hunter2@127.0.0.1:1/app"));

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr,
        "testdb: no PostgreSQL reachable at postgres://app:***@127.0.0.1:1/app (connection refused): run `cargo xtask db-test`\n"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn testdb_without_database_url_says_how_to_set_it() {
    let output = run_testdb(&["cleanup"], None);

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("testdb: DATABASE_URL is not set: run `cargo xtask db-test`"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn testdb_rejects_unknown_commands_with_usage() {
    let output = run_testdb(&["frobnicate"], None);

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("testdb: unknown arguments `frobnicate`: usage: testdb prepare"),
        "{stderr}"
    );
}

/// Runs the ignored test `probe` (one of the failing probes below) in a child process of this test
/// binary and returns the name of the database it created together with the child's stderr.
/// `--ignored` runs ignored tests only, so a probe that lost its `#[ignore]` is not found.
fn run_failing_probe(probe: &str, keep: bool) -> (String, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            probe,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KEEP_PROBE_ENV, "1");
    if keep {
        command.env("DB_TEST_KEEP", "1");
    } else {
        command.env_remove("DB_TEST_KEEP");
    }
    let output = command.output().expect("the test binary runs itself");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "the probe fails on purpose\n{stdout}\n{stderr}"
    );
    let name = stdout
        .lines()
        // libtest prints the test's name on the same line, before the probe's output.
        .find_map(|line| line.split_once("probe database: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the probe names its database\n{stdout}\n{stderr}"))
        .to_owned();
    (name, stderr)
}

/// Runs `probe` failing without `DB_TEST_KEEP` and with it: its database goes, then stays
/// (dropped here afterwards) with the notice naming it.
async fn assert_failed_probe_keeps_its_database_only_when_asked(probe: &str) {
    let admin = admin().await;

    // Without DB_TEST_KEEP the database is dropped (by the filler, when one runs).
    let (dropped, _) = run_failing_probe(probe, false);
    wait_until_dropped(&admin, &dropped).await;

    // Kept databases are marked at once and never handed to the filler.
    let (kept, stderr) = run_failing_probe(probe, true);
    assert_eq!(
        database_comment(&admin, &kept).await.as_deref(),
        Some(KEPT_DATABASE_COMMENT),
        "with DB_TEST_KEEP=1 the database is kept"
    );
    let mut redacted_url = database_url();
    if redacted_url.password().is_some() {
        redacted_url.set_password(Some("***")).unwrap();
    }
    redacted_url.set_path(&format!("/{kept}"));
    let notice = format!("kept test database {kept} for debugging: {redacted_url}");
    assert!(
        stderr.lines().any(|line| line == notice),
        "expected `{notice}` in\n{stderr}"
    );

    admin
        .execute_unprepared(&format!("DROP DATABASE \"{kept}\" WITH (FORCE)"))
        .await
        .unwrap_or_else(|error| panic!("dropping the kept database {kept}: {error}"));
}

#[tokio::test]
async fn failed_test_keeps_its_database_only_when_asked() {
    assert_failed_probe_keeps_its_database_only_when_asked(KEEP_PROBE_TEST).await;
}

/// The same for `#[db::test]`: its `TestDb` must be dropped while the body's panic unwinds.
#[tokio::test]
async fn failed_macro_test_keeps_its_database_only_when_asked() {
    assert_failed_probe_keeps_its_database_only_when_asked(MACRO_KEEP_PROBE_TEST).await;
}

#[tokio::test]
#[ignore = "fails on purpose; run by failed_test_keeps_its_database_only_when_asked"]
async fn failing_test_probe_for_keep_on_failure() {
    let test_db = TestDb::new().await;
    println!("probe database: {}", test_db.name());
    assert!(
        std::env::var_os(KEEP_PROBE_ENV).is_none(),
        "failing on purpose to exercise DB_TEST_KEEP"
    );
}

#[db::test]
#[ignore = "fails on purpose; run by failed_macro_test_keeps_its_database_only_when_asked"]
async fn failing_macro_test_probe_for_keep_on_failure(db: DatabaseConnection) {
    println!("probe database: {}", testing::database_name(&db).await);
    assert!(
        std::env::var_os(KEEP_PROBE_ENV).is_none(),
        "failing on purpose to exercise DB_TEST_KEEP"
    );
}
