//! Migrations against a real PostgreSQL: the schema they build, rollbacks,
//! concurrent runs, failing migrations and the CLI's one-line errors.
//!
//! Needs `DATABASE_URL` pointing at a server whose user may create databases;
//! every test creates and drops its own scratch database there.

mod common;

use std::process::Command;

use common::{PROJECTS_MIGRATION, ScratchDb, catalog, execute, query_strings, stderr_line};
use migration::m20261124_120000_create_projects;
use migration::{MigrationTrait, Migrator, MigratorTrait, runner};
use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

fn without_migration_table(catalog: &[String]) -> Vec<&str> {
    catalog
        .iter()
        .map(String::as_str)
        .filter(|line| !line.contains("seaql_migrations"))
        .collect()
}

/// The server's major version, e.g. 16.
async fn server_major(db: &sea_orm::DatabaseConnection) -> u32 {
    let number = query_strings(db, "SELECT current_setting('server_version_num')").await;
    let number: u32 = number[0].parse().expect("server_version_num is a number");
    number / 10_000
}

/// The catalog lines the projects migration must produce on a server of major version `major`.
fn intended_schema(major: u32) -> Vec<&'static str> {
    let mut lines = vec![
        "column projects.created_at timestamp with time zone  nullable=NO default=CURRENT_TIMESTAMP",
        "column projects.description text  nullable=YES default=",
        "column projects.id uuid  nullable=NO default=gen_random_uuid()",
        "column projects.name character varying 255 nullable=NO default=",
        "column projects.updated_at timestamp with time zone  nullable=NO default=CURRENT_TIMESTAMP",
        "constraint projects projects_name_not_blank CHECK (((name)::text ~ '\\S'::text))",
        "constraint projects projects_pkey PRIMARY KEY (id)",
        "function set_updated_at() plpgsql",
        "index CREATE INDEX idx_projects_name ON public.projects USING btree (name)",
        "index CREATE UNIQUE INDEX projects_pkey ON public.projects USING btree (id)",
        "trigger CREATE TRIGGER projects_set_updated_at BEFORE UPDATE ON public.projects FOR EACH ROW EXECUTE FUNCTION set_updated_at()",
    ];
    // PostgreSQL 18 records every NOT NULL column as a constraint in pg_constraint too
    // (contype 'n'): one row per nullable=NO column above, and no other change.
    if major >= 18 {
        lines.extend([
            "constraint projects projects_created_at_not_null NOT NULL created_at",
            "constraint projects projects_id_not_null NOT NULL id",
            "constraint projects projects_name_not_null NOT NULL name",
            "constraint projects projects_updated_at_not_null NOT NULL updated_at",
        ]);
    }
    lines.sort_unstable();
    lines
}

#[tokio::test]
async fn migrating_from_empty_builds_exactly_the_intended_schema() {
    let scratch = ScratchDb::create("schema").await;
    assert_eq!(
        scratch.run_ok(&["up"]),
        format!("applied {PROJECTS_MIGRATION}\n")
    );
    let db = scratch.connect().await;

    // Sorted here rather than by the server, so the comparison does not depend on its collation.
    let catalog = catalog(&db).await;
    let mut built = without_migration_table(&catalog);
    built.sort_unstable();
    assert_eq!(built, intended_schema(server_major(&db).await));

    // The rules hold for raw SQL too, not just for the Rust API.
    let blank = db
        .execute_unprepared("INSERT INTO projects (name) VALUES ('   ')")
        .await
        .expect_err("a blank name is rejected");
    assert!(
        blank.to_string().contains("projects_name_not_blank"),
        "{blank}"
    );
    execute(
        &db,
        "INSERT INTO projects (name, created_at, updated_at)
         VALUES ('Apollo', now() - interval '1 day', now() - interval '1 day')",
    )
    .await;
    execute(&db, "UPDATE projects SET name = 'Artemis'").await;
    let refreshed = query_strings(
        &db,
        "SELECT (updated_at > created_at + interval '1 hour')::text FROM projects",
    )
    .await;
    assert_eq!(
        refreshed,
        ["true"],
        "the trigger moves updated_at on UPDATE"
    );

    db.close().await.ok();
    scratch.drop().await;
}

#[tokio::test]
async fn down_removes_everything_and_up_again_rebuilds_the_same_catalog() {
    let scratch = ScratchDb::create("roundtrip").await;
    scratch.run_ok(&["up"]);
    let db = scratch.connect().await;
    let after_first_up = catalog(&db).await;

    assert_eq!(
        scratch.run_ok(&["down"]),
        format!("rolled back {PROJECTS_MIGRATION}\n")
    );
    let after_down = catalog(&db).await;
    assert!(
        after_down
            .iter()
            .all(|line| line.contains("seaql_migrations")),
        "down left something behind: {after_down:#?}"
    );
    let leftover_functions = query_strings(
        &db,
        "SELECT proname::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
    )
    .await;
    assert!(leftover_functions.is_empty(), "{leftover_functions:?}");

    scratch.run_ok(&["up"]);
    assert_eq!(catalog(&db).await, after_first_up);

    db.close().await.ok();
    scratch.drop().await;
}

#[tokio::test]
async fn concurrent_runs_apply_each_migration_exactly_once() {
    let scratch = ScratchDb::create("concurrent").await;
    let runs: Vec<_> = (0..8)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_migration"))
                .arg("up")
                .env("DATABASE_URL", &scratch.url)
                .env_remove("DATABASE_SCHEMA")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("the migration binary starts")
        })
        .collect();

    let mut applied_lines = 0;
    for run in runs {
        let output = run
            .wait_with_output()
            .expect("the migration binary finishes");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "a concurrent run failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        applied_lines += stdout
            .lines()
            .filter(|line| line.starts_with("applied "))
            .count();
        let all_applied: String = migration_names()
            .iter()
            .map(|name| format!("applied {name}\n"))
            .collect();
        assert!(
            stdout == all_applied || stdout == "nothing to apply\n",
            "unexpected output {stdout:?}"
        );
    }
    assert_eq!(applied_lines, Migrator::migrations().len());

    let db = scratch.connect().await;
    let recorded =
        query_strings(&db, "SELECT version FROM seaql_migrations ORDER BY version").await;
    assert_eq!(recorded, [PROJECTS_MIGRATION]);
    db.close().await.ok();
    scratch.drop().await;
}

/// Creates a table and then fails, to show a failed migration leaves nothing behind.
struct BrokenMigration;

impl MigrationName for BrokenMigration {
    fn name(&self) -> &str {
        "m20261124_130000_broken"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for BrokenMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("CREATE TABLE broken_leftover (id integer)")
            .await?;
        manager
            .get_connection()
            .execute_unprepared("THIS IS NOT SQL")
            .await?;
        Ok(())
    }
}

struct MigratorWithBrokenMigration;

impl MigratorTrait for MigratorWithBrokenMigration {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_120000_create_projects::Migration),
            Box::new(BrokenMigration),
        ]
    }
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_behind_and_is_named() {
    let scratch = ScratchDb::create("failing").await;
    let db = scratch.connect().await;

    let error = runner::apply_pending::<MigratorWithBrokenMigration>(
        &db,
        None,
        runner::EditedMigrations::Refuse,
    )
    .await
    .expect_err("the broken migration fails");
    let message = error.to_string();
    assert!(message.contains("m20261124_130000_broken"), "{message}");
    assert!(!message.contains('\n'), "{message}");

    let leftover = query_strings(&db, "SELECT to_regclass('broken_leftover')::text").await;
    assert_eq!(leftover, [""], "the broken migration's table was kept");
    let recorded =
        query_strings(&db, "SELECT version FROM seaql_migrations ORDER BY version").await;
    assert_eq!(
        recorded,
        [PROJECTS_MIGRATION],
        "only the good migration is recorded"
    );

    db.close().await.ok();
    scratch.drop().await;
}

#[tokio::test]
async fn bad_requests_fail_with_one_line() {
    let scratch = ScratchDb::create("errors").await;

    let too_many = scratch.run(&["down"]);
    assert!(!too_many.status.success());
    assert_eq!(
        stderr_line(&too_many),
        "error: cannot roll back 1: only 0 applied"
    );

    scratch.run_ok(&["up"]);
    let past_first = scratch.run(&["down", "-n", "2"]);
    assert!(!past_first.status.success());
    assert_eq!(
        stderr_line(&past_first),
        "error: cannot roll back 2: only 1 applied"
    );

    for args in [["down", "-n", "0"], ["up", "-n", "0"]] {
        let zero = scratch.run(&args);
        assert!(!zero.status.success(), "{args:?} succeeded");
        assert!(stderr_line(&zero).contains("-n 0"), "{args:?}");
    }

    scratch.drop().await;
}

#[tokio::test]
async fn a_database_ahead_of_the_checkout_is_refused_naming_pull_and_db_reset() {
    let scratch = ScratchDb::create("ahead").await;
    scratch.run_ok(&["up"]);
    let db = scratch.connect().await;
    execute(
        &db,
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m20991231_000000_from_the_future', 0)",
    )
    .await;
    for args in [&["up"][..], &["down"], &["status"]] {
        let ahead = scratch.run(args);
        assert!(!ahead.status.success(), "{args:?} succeeded");
        let message = stderr_line(&ahead);
        assert!(
            message.contains("m20991231_000000_from_the_future"),
            "{message}"
        );
        assert!(message.contains("ahead of this checkout"), "{message}");
        assert!(message.contains("pull"), "{message}");
        // A development database can simply start over from this checkout's migrations.
        assert!(message.contains("`cargo xtask db-reset`"), "{message}");
    }

    db.close().await.ok();
    scratch.drop().await;
}

#[tokio::test]
async fn status_lists_every_migration_and_check_fails_while_any_is_pending() {
    let scratch = ScratchDb::create("status").await;

    let pending = scratch.run(&["status", "--check"]);
    assert_eq!(pending.status.code(), Some(1));
    let all_pending: String = migration_names()
        .iter()
        .map(|name| format!("pending {name}\n"))
        .collect();
    assert_eq!(String::from_utf8_lossy(&pending.stdout), all_pending);
    stderr_line(&pending);

    scratch.run_ok(&["up"]);
    let status = scratch.run_ok(&["status", "--check"]);
    assert_eq!(status.lines().count(), migration_names().len());
    let line = status.lines().next().unwrap_or_default();
    let applied_at = line
        .strip_prefix(&format!("applied {PROJECTS_MIGRATION} "))
        .unwrap_or_else(|| panic!("unexpected status line {line:?}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(applied_at).is_ok() && applied_at.ends_with('Z'),
        "{applied_at:?} is not RFC 3339 UTC"
    );

    scratch.drop().await;
}

#[test]
fn an_unreachable_server_fails_fast_with_one_redacted_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_migration"))
        .arg("up")
        .env("DATABASE_URL", "postgres://app:secret@127.0.0.1:1/app")
        .output()
        .expect("the migration binary runs");
    assert!(!output.status.success());
    let message = stderr_line(&output);
    assert!(
        message.contains("postgres://app:***@127.0.0.1:1/app"),
        "{message}"
    );
    assert!(message.contains("cargo xtask db-up"), "{message}");
    assert!(!message.contains("secret"), "{message}");
}

fn migration_names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect()
}
