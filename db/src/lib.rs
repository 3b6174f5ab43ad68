//! Entities and database access for the application; per-test databases are in the `db-testing` crate.

pub mod connection;
pub mod drift;
pub mod entities;
pub mod projects;

/// `#[db::test]`: an async test on a fresh database migrated to head, taken from `db_testing`
/// (a dev-dependency of the crate whose tests use it). See MIGRATIONS.md, *Tests get their own
/// databases*.
///
/// ```no_run
/// use sea_orm::DatabaseConnection;
///
/// #[db::test]
/// async fn creates_a_project(db: DatabaseConnection) {
///     let new = db::projects::NewProject { name: "Apollo".into(), description: None };
///     db::projects::create(&db, new).await.unwrap();
/// }
///
/// // Loads tests/fixtures/projects.sql of this crate first.
/// #[db::test(fixtures("projects"))]
/// async fn starts_with_projects(db: DatabaseConnection) {
///     assert!(!db::projects::list(&db, db::projects::Page { number: 0, size: 10 }).await.unwrap().is_empty());
/// }
/// ```
///
/// A function that is not `async`, or takes anything but the connection, is refused with a
/// compile error that says what to write:
///
/// ```compile_fail
/// #[db::test]
/// fn not_async(db: sea_orm::DatabaseConnection) {}
/// ```
pub use db_macros::test;
