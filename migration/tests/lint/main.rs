//! `lint` against a real PostgreSQL: fixture migrations that each trip one rule, a clean one,
//! statements on a table created in the same migration, an opt-out with a reason, and the
//! binary's `lint` and `lint --all` on this crate's own migrations.
//!
//! Needs `DATABASE_URL` pointing at a server whose user may create databases; every test
//! creates and drops its own scratch database there.

mod allowed;
// Shared with the other test binaries, which use what this one does not.
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
mod fixtures;

use std::time::Duration;

use common::{PROJECTS_MIGRATION, ScratchDb, stderr_line};
use migration::MigrationTrait;
use migration::lint::{OptOuts, Report, dry_run_and_lint};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use serde_json::Value;

/// A connection that logs statements, as the dry run needs to capture them.
async fn logging_connection(scratch: &ScratchDb) -> DatabaseConnection {
    let mut options = ConnectOptions::new(&scratch.url);
    options
        .max_connections(2)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(true);
    Database::connect(options)
        .await
        .expect("the scratch database accepts connections")
}

/// Dry-runs the fixtures and the allowed one on a scratch database and lints them.
async fn lint_fixtures(tag: &str) -> Report {
    let scratch = ScratchDb::create(tag).await;
    let db = logging_connection(&scratch).await;
    let mut migrations = fixtures::all();
    migrations.push(Box::new(allowed::Migration) as Box<dyn MigrationTrait>);
    migrations.push(Box::new(fixtures::OutsideTransaction));
    let opt_outs = OptOuts::from_source(allowed::ALLOWED, include_str!("allowed.rs"))
        .expect("the fixture's opt-out is valid");
    let report = dry_run_and_lint(&db, migrations, &opt_outs).await;
    db.close().await.ok();
    scratch.drop().await;
    report.expect("the fixtures dry-run")
}

#[tokio::test]
async fn each_fixture_trips_exactly_its_rule() {
    let report = lint_fixtures("lint_rules").await;
    let expected: [(&str, &[&str]); 6] = [
        (
            fixtures::NOT_NULL_WITHOUT_DEFAULT,
            &["adding-required-field"],
        ),
        (
            fixtures::INDEX_WITHOUT_CONCURRENTLY,
            &["require-concurrent-index-creation"],
        ),
        (fixtures::CHANGED_COLUMN_TYPE, &["changing-column-type"]),
        (
            fixtures::FOREIGN_KEY_WITHOUT_NOT_VALID,
            &[
                "adding-foreign-key-constraint",
                "constraint-missing-not-valid",
            ],
        ),
        (fixtures::TABLE_REWRITE, &["adding-field-with-default"]),
        (fixtures::MISSING_LOCK_TIMEOUT, &["require-lock-timeout"]),
    ];
    for (migration, rules) in expected {
        assert_eq!(
            report.rules_of(migration),
            rules,
            "{migration}: {report:#?}"
        );
    }
    assert_eq!(report.warnings, Vec::<String>::new());
    assert_eq!(report.linted.len(), 9, "{:?}", report.linted);
}

#[tokio::test]
async fn a_migration_outside_a_transaction_is_skipped_and_said_so() {
    let report = lint_fixtures("lint_skipped").await;
    let skipped: Vec<&str> = report
        .skipped
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(skipped, [fixtures::OUTSIDE_TRANSACTION]);
    assert!(
        report.skipped[0].1.contains("review its SQL by hand"),
        "{:?}",
        report.skipped
    );
    assert!(
        !report
            .linted
            .iter()
            .any(|name| name == fixtures::OUTSIDE_TRANSACTION)
    );
}

#[tokio::test]
async fn findings_carry_the_statement_the_reason_and_the_alternative() {
    let report = lint_fixtures("lint_findings").await;
    let finding = report
        .findings
        .iter()
        .find(|finding| finding.migration == fixtures::INDEX_WITHOUT_CONCURRENTLY)
        .expect("the index fixture has a finding");
    assert_eq!(
        finding.statement,
        r#"CREATE INDEX "lint_accounts_team" ON "lint_accounts" ("team_id")"#
    );
    assert!(
        finding.message.contains("table updates are blocked"),
        "{finding:?}"
    );
    assert!(finding.instead.contains("CONCURRENTLY"), "{finding:?}");
    assert!(finding.allowed.is_none());
}

#[tokio::test]
async fn clean_migrations_and_statements_on_a_table_created_in_the_same_migration_pass() {
    let report = lint_fixtures("lint_clean").await;
    // The base creates both tables, then an index and a foreign key on them: on a table of
    // one's own, neither needs CONCURRENTLY or NOT VALID.
    assert_eq!(
        report.rules_of(fixtures::BASE),
        Vec::<&str>::new(),
        "{report:#?}"
    );
    assert_eq!(
        report.rules_of(fixtures::CLEAN),
        Vec::<&str>::new(),
        "{report:#?}"
    );
    assert!(report.linted.iter().any(|name| name == fixtures::BASE));
    assert!(report.linted.iter().any(|name| name == fixtures::CLEAN));
}

#[tokio::test]
async fn an_opt_out_with_a_reason_allows_its_rule_in_its_migration_only() {
    let report = lint_fixtures("lint_allowed").await;
    let allowed: Vec<_> = report
        .findings
        .iter()
        .filter(|finding| finding.migration == allowed::ALLOWED)
        .collect();
    assert_eq!(allowed.len(), 1, "{report:#?}");
    assert_eq!(allowed[0].rule, "changing-column-type");
    assert_eq!(
        allowed[0].allowed.as_deref(),
        Some("the column is new and still empty everywhere")
    );
    // The same rule in another migration is still a failure.
    let failing: Vec<&str> = report
        .failures()
        .filter(|finding| finding.rule == "changing-column-type")
        .map(|finding| finding.migration.as_str())
        .collect();
    assert_eq!(failing, [fixtures::CHANGED_COLUMN_TYPE]);
}

#[tokio::test]
async fn the_binary_lints_pending_migrations_and_allows_the_projects_opt_out() {
    let scratch = ScratchDb::create("lint_cli").await;
    let output = scratch.run(&["lint", "--format", "json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("lint prints JSON");
    assert_eq!(report["scope"], "pending");
    assert_eq!(report["linted"], serde_json::json!([PROJECTS_MIGRATION]));
    assert_eq!(report["failed"], false);
    let findings = report["findings"].as_array().expect("findings is a list");
    assert_eq!(findings.len(), 1, "{report:#}");
    assert_eq!(findings[0]["rule"], "require-lock-timeout");
    assert_eq!(findings[0]["allowed"], true);

    // Once applied, nothing is pending; `--all` then refuses this database, which is not empty.
    scratch.run_ok(&["up"]);
    assert_eq!(
        scratch.run_ok(&["lint"]),
        "lint: nothing to lint (no pending migration)\n"
    );
    let refused = scratch.run(&["lint", "--all"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr_line(&refused).contains("run `cargo xtask db-lint --all`"),
        "{}",
        stderr_line(&refused)
    );
    scratch.drop().await;
}

#[tokio::test]
async fn the_binary_lints_every_migration_from_an_empty_database_as_text() {
    let scratch = ScratchDb::create("lint_all").await;
    let output = scratch.run(&["lint", "--all"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "allowed {PROJECTS_MIGRATION}: require-lock-timeout (reason: "
        )),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("linted, 0 finding(s), 1 allowed\n"),
        "{stdout}"
    );
    scratch.drop().await;
}
