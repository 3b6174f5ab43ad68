//! `#[db::test]` against real PostgreSQL: a migrated, empty database of the test's own on a
//! current-thread runtime, fixtures loaded in order before the body, the test's own attributes
//! kept. Isolation between two tests is `isolation.rs`; keeping a failed test's database is
//! db-testing's `testing_helper.rs`.

use db::projects::{self, Page};
use migration::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;

/// Every project's name and description, as `db::projects::list` orders them.
async fn names_and_descriptions(db: &DatabaseConnection) -> Vec<(String, Option<String>)> {
    let page = Page {
        number: 0,
        size: 100,
    };
    projects::list(db, page)
        .await
        .unwrap()
        .into_iter()
        .map(|project| (project.name, project.description))
        .collect()
}

fn runtime_flavor() -> tokio::runtime::RuntimeFlavor {
    tokio::runtime::Handle::current().runtime_flavor()
}

#[db::test]
async fn the_database_is_a_migrated_empty_test_database(db: DatabaseConnection) {
    let name = db_testing::database_name(&db).await;
    assert!(name.contains("_test_"), "a test database, not {name}");

    let expected: Vec<String> = Migrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    let applied: Vec<String> = Migrator::get_applied_migrations(&db)
        .await
        .unwrap()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    assert_eq!(applied, expected, "migrated to head");
    assert_eq!(names_and_descriptions(&db).await, [], "projects is empty");
    assert_eq!(
        runtime_flavor(),
        tokio::runtime::RuntimeFlavor::CurrentThread
    );
}

#[db::test]
async fn a_test_without_an_argument_runs_on_a_current_thread_runtime() {
    assert_eq!(
        runtime_flavor(),
        tokio::runtime::RuntimeFlavor::CurrentThread
    );
}

#[db::test(fixtures("projects"))]
async fn a_fixture_is_loaded_before_the_body(db: DatabaseConnection) {
    // One batch shares one transaction's timestamp, so the listing's order is the ids': sorted here.
    let mut loaded = names_and_descriptions(&db).await;
    loaded.sort();
    let some = |text: &str| Some(text.to_owned());
    assert_eq!(
        loaded,
        [
            ("Apollo".to_owned(), None),
            ("Gemini".to_owned(), some("Two seats")),
            ("Mercury".to_owned(), some("One seat")),
        ]
    );
}

#[db::test(fixtures("projects", "apollo_landed"))]
async fn fixtures_are_loaded_in_the_order_written(db: DatabaseConnection) {
    let apollo = names_and_descriptions(&db)
        .await
        .into_iter()
        .find(|(name, _)| name == "Apollo")
        .expect("the projects fixture ran first");
    assert_eq!(apollo.1.as_deref(), Some("Moon landing"));
}

#[db::test(fixtures("broken_on_purpose"))]
#[should_panic(
    expected = "fixture broken_on_purpose (tests/fixtures/broken_on_purpose.sql) failed: new row for relation \"projects\" violates check constraint \"projects_name_not_blank\""
)]
async fn a_failing_fixture_names_itself_and_the_error() {
    unreachable!("the fixture fails before the body");
}

/// The test's own attributes are kept: without its `should_panic` this test would fail.
#[db::test]
#[should_panic(expected = "kept: should_panic")]
async fn the_tests_own_attributes_are_kept(db: DatabaseConnection) {
    let name = db_testing::database_name(&db).await;
    panic!("kept: should_panic (on {name})");
}
