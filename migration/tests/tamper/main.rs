//! Schema safety against a real PostgreSQL: source checksums of applied migrations (recorded,
//! forgotten, flagged when the source was edited, refused by `up` and `down`, accepted on
//! request) and `up --dry-run`.
//!
//! Needs `DATABASE_URL` pointing at a server whose user may create databases; every test
//! creates and drops its own scratch database there.

#[path = "../common/mod.rs"]
mod common;

use common::{PROJECTS_MIGRATION, ScratchDb, catalog, execute, query_strings, stderr_line};
use migration::checksum::{source_checksum, source_checksum_of};
use migration::runner::{self, EditedMigrations};
use migration::{MigrationTrait, Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use sea_orm_migration::prelude::*;

const EDITED_REMEDY: &str = "revert the edit and put the change in a new migration (cargo xtask db-revision), or, for local development only, re-record it with --accept-changed";
const EDITED_DOWN_REMEDY: &str =
    "restore the file as it was when applied, or, if the edit is intended, pass --accept-changed";
const DRY_RUN_HEADER: &str = "-- dry run: the SQL below was executed in a transaction that was rolled back; nothing was changed\n";

fn projects_checksum() -> &'static str {
    source_checksum(PROJECTS_MIGRATION).expect("the projects migration is a file of this crate")
}

/// The recorded checksum of the projects migration, the one these tests edit; later migrations
/// may add rows of their own.
async fn recorded_checksums(db: &DatabaseConnection) -> Vec<String> {
    query_strings(
        db,
        &format!(
            "SELECT version || ' ' || checksum FROM seaql_migrations_checksums WHERE version = '{PROJECTS_MIGRATION}'"
        ),
    )
    .await
}

/// What an edit of the projects migration's source looks like from the database's side: the
/// recorded checksum no longer matches the source.
async fn pretend_the_projects_migration_was_edited(db: &DatabaseConnection) {
    execute(
        db,
        &format!(
            "UPDATE seaql_migrations_checksums SET checksum = 'recorded before an edit' WHERE version = '{PROJECTS_MIGRATION}'"
        ),
    )
    .await;
}

fn all_steps() -> String {
    Migrator::migrations().len().to_string()
}

async fn table_exists(db: &DatabaseConnection, table: &str) -> bool {
    query_strings(db, &format!("SELECT to_regclass('{table}')::text"))
        .await
        .iter()
        .any(|name| !name.is_empty())
}

/// Everything a schema change could touch: the catalog of `public`, every relation and type in
/// it, and the rows of SeaORM's table and of the checksum table.
async fn snapshot(db: &DatabaseConnection) -> Vec<String> {
    let mut lines = catalog(db).await;
    lines.extend(
        query_strings(
            db,
            "SELECT format('relation %s kind=%s', relname, relkind) FROM pg_class
              WHERE relnamespace = 'public'::regnamespace ORDER BY 1",
        )
        .await,
    );
    lines.extend(
        query_strings(
            db,
            "SELECT format('type %s', typname) FROM pg_type
              WHERE typnamespace = 'public'::regnamespace ORDER BY 1",
        )
        .await,
    );
    for table in ["seaql_migrations", "seaql_migrations_checksums"] {
        if table_exists(db, table).await {
            lines.extend(
                query_strings(
                    db,
                    &format!(
                        "SELECT format('row {table} %s', to_jsonb(t)) FROM {table} t ORDER BY 1"
                    ),
                )
                .await,
            );
        }
    }
    lines
}

#[tokio::test]
async fn applying_records_the_checksum_and_rolling_back_forgets_it() {
    let scratch = ScratchDb::create("checksum_rows").await;
    let db = scratch.connect().await;

    scratch.run_ok(&["up"]);
    assert_eq!(
        recorded_checksums(&db).await,
        [format!("{PROJECTS_MIGRATION} {}", projects_checksum())]
    );
    assert_eq!(
        scratch.run_ok(&["status"]).lines().count(),
        Migrator::migrations().len(),
        "a freshly applied migration has no marker"
    );
    assert!(!scratch.run_ok(&["status"]).contains('('));

    scratch.run_ok(&["down", "-n", &all_steps()]);
    assert!(recorded_checksums(&db).await.is_empty());

    scratch.run_ok(&["up"]);
    scratch.run_ok(&["reset"]);
    assert!(!table_exists(&db, "seaql_migrations_checksums").await);

    scratch.run_ok(&["fresh"]);
    assert_eq!(
        recorded_checksums(&db).await,
        [format!("{PROJECTS_MIGRATION} {}", projects_checksum())],
        "fresh drops the checksum table with everything else and records again"
    );

    db.close().await.ok();
    scratch.drop().await;
}

#[tokio::test]
async fn the_checksum_is_recorded_in_the_migrations_own_transaction() {
    let scratch = ScratchDb::create("checksum_txn").await;
    let db = scratch.connect().await;
    // A checksum table that refuses every row makes recording fail after the migration's own
    // statements ran: nothing of the migration may survive that.
    execute(
        &db,
        "CREATE TABLE seaql_migrations_checksums (
             version text PRIMARY KEY,
             checksum text NOT NULL CHECK (checksum = 'refused'),
             recorded_at timestamptz NOT NULL DEFAULT now())",
    )
    .await;

    let output = scratch.run(&["up"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr_line(&output);
    assert!(
        message.contains(PROJECTS_MIGRATION) && message.contains("rolled back"),
        "{message}"
    );
    assert!(
        !table_exists(&db, "projects").await,
        "the migration was kept"
    );
    assert!(
        query_strings(&db, "SELECT version FROM seaql_migrations")
            .await
            .is_empty(),
        "the migration was recorded as applied"
    );

    db.close().await.ok();
    scratch.drop().await;
}

#[tokio::test]
async fn a_tampered_checksum_is_flagged_refused_and_re_recorded_on_request() {
    let scratch = ScratchDb::create("tampered").await;
    let db = scratch.connect().await;
    scratch.run_ok(&["up"]);
    pretend_the_projects_migration_was_edited(&db).await;

    let status = scratch.run_ok(&["status"]);
    let projects_line = status.lines().next().unwrap_or_default();
    assert!(
        projects_line.starts_with(&format!("applied {PROJECTS_MIGRATION} "))
            && projects_line.ends_with(" CHANGED since it was applied"),
        "{status:?}"
    );
    let expected_error = format!(
        "error: migration {PROJECTS_MIGRATION} was edited after it was applied here: {EDITED_REMEDY}"
    );
    let check = scratch.run(&["status", "--check"]);
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(stderr_line(&check), expected_error);

    for refused in [&["up"][..], &["up", "--dry-run"]] {
        let output = scratch.run(refused);
        assert_eq!(output.status.code(), Some(1), "{refused:?}");
        assert_eq!(stderr_line(&output), expected_error, "{refused:?}");
        assert!(output.stdout.is_empty(), "{refused:?}");
    }
    assert_eq!(
        recorded_checksums(&db).await,
        [format!("{PROJECTS_MIGRATION} recorded before an edit")],
        "a refused run changed the record"
    );

    assert_eq!(
        scratch.run_ok(&["up", "--accept-changed"]),
        format!("re-recorded checksum of {PROJECTS_MIGRATION}\nnothing to apply\n")
    );
    assert_eq!(
        recorded_checksums(&db).await,
        [format!("{PROJECTS_MIGRATION} {}", projects_checksum())]
    );
    assert!(!scratch.run_ok(&["status", "--check"]).contains("CHANGED"));

    let combined = scratch.run(&["up", "--dry-run", "--accept-changed"]);
    assert_eq!(combined.status.code(), Some(1));
    assert!(stderr_line(&combined).contains("cannot be combined"));

    db.close().await.ok();
    scratch.drop().await;
}

#[tokio::test]
async fn rolling_back_an_edited_migration_is_refused_until_accepted() {
    let scratch = ScratchDb::create("tampered_down").await;
    let db = scratch.connect().await;
    scratch.run_ok(&["up"]);
    // `down` now holds code that is not the code that was applied.
    pretend_the_projects_migration_was_edited(&db).await;
    let before = snapshot(&db).await;

    let expected_error = format!(
        "error: migration {PROJECTS_MIGRATION} was edited after it was applied here, so its down may not undo what was applied: {EDITED_DOWN_REMEDY}"
    );
    // The edited migration is the one `down` rolls back first, one of those `down -n N` does, and
    // one of those `reset` and `refresh` roll back before anything else.
    let all_steps = all_steps();
    for refused in [
        &["down"][..],
        &["down", "-n", &all_steps],
        &["reset"],
        &["refresh"],
    ] {
        let output = scratch.run(refused);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{refused:?} rolled back an edited migration: stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stderr_line(&output), expected_error, "{refused:?}");
        assert!(output.stdout.is_empty(), "{refused:?}");
        assert_eq!(
            snapshot(&db).await,
            before,
            "{refused:?}: a refused rollback changed the database"
        );
    }

    // `status` and `down` agree on what is edited.
    let check = scratch.run(&["status", "--check"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains(" CHANGED since it was applied"),
        "{check:?}"
    );

    assert_eq!(
        scratch.run_ok(&["down", "--accept-changed"]),
        format!("rolled back {PROJECTS_MIGRATION}\n")
    );
    assert!(!table_exists(&db, "projects").await);
    assert!(
        recorded_checksums(&db).await.is_empty(),
        "the rolled-back migration's checksum was kept"
    );
    let status = scratch.run(&["status", "--check"]);
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("CHANGED"),
        "{status:?}"
    );
    // Applying again records the current source, so nothing is edited any more.
    scratch.run_ok(&["up"]);
    scratch.run_ok(&["status", "--check"]);
    scratch.run_ok(&["down"]);

    db.close().await.ok();
    scratch.drop().await;
}

/// Adds a table after the projects migration; defined here, so it has no source checksum.
struct LaterMigration;

impl MigrationName for LaterMigration {
    fn name(&self) -> &str {
        "m20991231_000000_later"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for LaterMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("CREATE TABLE later (id integer)")
            .await
            .map(drop)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE later")
            .await
            .map(drop)
    }
}

struct MigratorWithLaterMigration;

impl MigratorTrait for MigratorWithLaterMigration {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = Migrator::migrations();
        migrations.push(Box::new(LaterMigration));
        migrations
    }
}

#[tokio::test]
async fn rolling_back_checks_only_the_migrations_it_rolls_back() {
    let scratch = ScratchDb::create("tampered_range").await;
    let db = scratch.connect().await;
    let applied =
        runner::apply_pending::<MigratorWithLaterMigration>(&db, None, EditedMigrations::Refuse)
            .await
            .expect("the migrations apply");
    assert_eq!(
        applied.last().map(String::as_str),
        Some("m20991231_000000_later")
    );
    pretend_the_projects_migration_was_edited(&db).await;

    // The later migration's down is not the edited one, so rolling it back is fine.
    assert_eq!(
        runner::roll_back::<MigratorWithLaterMigration>(&db, 1, EditedMigrations::Refuse)
            .await
            .expect("the unedited migration rolls back"),
        ["m20991231_000000_later"]
    );
    assert!(!table_exists(&db, "later").await);

    // Every migration before the later one is this crate's, so the edited one is next.
    let error = runner::roll_back::<MigratorWithLaterMigration>(&db, 1, EditedMigrations::Refuse)
        .await
        .expect_err("the edited migration is refused");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("migration {PROJECTS_MIGRATION} was edited")),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    assert!(
        table_exists(&db, "projects").await,
        "the refused rollback ran"
    );

    db.close().await.ok();
    scratch.drop().await;
}

#[tokio::test]
async fn migrations_applied_without_a_checksum_are_marked_and_recorded_by_the_next_up() {
    let scratch = ScratchDb::create("unrecorded").await;
    let db = scratch.connect().await;
    // Applied the way `db::testing` and older checkouts do: by SeaORM alone.
    Migrator::up(&db, None).await.expect("the migrations apply");

    let status = scratch.run_ok(&["status"]);
    assert!(status.ends_with(" (no checksum recorded)\n"), "{status:?}");
    assert_eq!(
        scratch.run_ok(&["up"]),
        format!("recorded checksum of {PROJECTS_MIGRATION}\nnothing to apply\n")
    );
    assert_eq!(
        recorded_checksums(&db).await,
        [format!("{PROJECTS_MIGRATION} {}", projects_checksum())]
    );
    assert!(!scratch.run_ok(&["status"]).contains('('));

    db.close().await.ok();
    scratch.drop().await;
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_prints_the_sql_of_each_pending_migration() {
    let scratch = ScratchDb::create("dry_run").await;
    let db = scratch.connect().await;

    // Once on an empty database, once with the bookkeeping tables present but nothing applied.
    for stage in ["empty", "rolled back"] {
        let before = snapshot(&db).await;
        let output = scratch.run(&["up", "--dry-run"]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "{stage}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.starts_with(DRY_RUN_HEADER), "{stage}: {stdout}");
        assert!(
            stdout.contains(&format!(
                "\n-- {PROJECTS_MIGRATION}\nCREATE TABLE \"projects\" ("
            )),
            "{stage}: {stdout}"
        );
        // Sent with `execute_unprepared`, which SeaORM's own statement hooks do not see.
        assert!(
            stdout.contains("\nCREATE TRIGGER projects_set_updated_at\n"),
            "{stage}: {stdout}"
        );
        assert!(
            stdout
                .lines()
                .filter(|line| !line.starts_with("--"))
                .all(|line| !line.contains("seaql_migrations")),
            "{stage}: the bookkeeping is not the migration's SQL: {stdout}"
        );
        assert_eq!(
            snapshot(&db).await,
            before,
            "{stage}: the dry run changed the database"
        );
        if stage == "empty" {
            assert!(!table_exists(&db, "seaql_migrations").await);
            scratch.run_ok(&["up"]);
            scratch.run_ok(&["down", "-n", &all_steps()]);
        }
    }

    scratch.run_ok(&["up"]);
    let applied = snapshot(&db).await;
    assert_eq!(scratch.run_ok(&["up", "--dry-run"]), "nothing to apply\n");
    assert_eq!(snapshot(&db).await, applied);

    db.close().await.ok();
    scratch.drop().await;
}

/// The source of the projects migration as it is on disk, from which this binary was built.
fn projects_source() -> String {
    let path = format!("{}/src/{PROJECTS_MIGRATION}.rs", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
}

/// Records `checksum` as the projects migration's, as if it had been applied from a source
/// with that checksum.
async fn record_projects_checksum(db: &DatabaseConnection, checksum: &str) {
    execute(
        db,
        &format!(
            "UPDATE seaql_migrations_checksums SET checksum = '{checksum}' WHERE version = '{PROJECTS_MIGRATION}'"
        ),
    )
    .await;
}

/// An applied migration whose source differs from this binary's is the same comparison whichever
/// side was edited: here the database records what the edited (or only reformatted) source's
/// checksum is, and this binary, built from the file on disk, compares. `source_checksum_of` is
/// what build.rs compiles in for a file (checked by the unit test
/// `the_compiled_in_checksums_are_those_of_the_files_on_disk`), so no copy of the crate needs
/// building.
#[tokio::test]
async fn editing_an_applied_migration_is_flagged_but_reformatting_it_is_not() {
    let scratch = ScratchDb::create("edited_source").await;
    scratch.run_ok(&["up"]);
    let db = scratch.connect().await;
    let source = projects_source();

    let reformatted = source
        .replacen(
            '\n',
            "\n// A comment added after the migration was applied.\n",
            1,
        )
        .replace(
            "pub struct Migration;",
            "/// Documented afterwards.\npub struct Migration;",
        )
        .replace(".await?;", ".await\n            ?;")
        .replace(
            "    async fn down",
            "    /* spaced out */\n\n    async fn down",
        );
    assert_ne!(reformatted, source);
    record_projects_checksum(&db, &source_checksum_of(&reformatted).unwrap()).await;
    let status = scratch.run_ok(&["status", "--check"]);
    assert!(
        status.starts_with(&format!("applied {PROJECTS_MIGRATION} "))
            && !status.contains(" CHANGED"),
        "{status:?}"
    );
    assert_eq!(scratch.run_ok(&["up"]), "nothing to apply\n");

    // The projects migration is frozen by the very check under test, so this edit stays valid.
    assert!(source.contains(".string_len(255)"), "{source}");
    let edited = source.replace(".string_len(255)", ".string_len(200)");
    record_projects_checksum(&db, &source_checksum_of(&edited).unwrap()).await;
    let status = scratch.run_ok(&["status"]);
    assert!(
        status.ends_with(" CHANGED since it was applied\n"),
        "{status:?}"
    );

    let refused = scratch.run(&["up"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        stderr_line(&refused),
        format!(
            "error: migration {PROJECTS_MIGRATION} was edited after it was applied here: {EDITED_REMEDY}"
        )
    );

    assert_eq!(
        scratch.run_ok(&["up", "--accept-changed"]),
        format!("re-recorded checksum of {PROJECTS_MIGRATION}\nnothing to apply\n")
    );
    assert!(!scratch.run_ok(&["status"]).contains("CHANGED"));
    assert_eq!(
        recorded_checksums(&db).await,
        [format!("{PROJECTS_MIGRATION} {}", projects_checksum())]
    );

    db.close().await.ok();
    scratch.drop().await;
}
