//! `#[db::test]`: an async test on a fresh, migrated database of its own. Use it as `db::test`
//! (the `db` crate re-exports it), with `db-testing` as a dev-dependency of the crate whose tests
//! use it; MIGRATIONS.md, *Tests get their own databases*, says how to write one.
//!
//! The rooms: `args` reads the attribute's arguments (`fixtures(…)`); `expand` checks the
//! function's signature and writes the plain `#[test]` that replaces it. The work at run time
//! (the runtime, the database, the fixtures) is `db_testing::__macro_support::run`, so the
//! expansion stays one call.

mod args;
mod expand;

use proc_macro::TokenStream;

/// Makes an `async fn` a test that runs on a fresh database migrated to head, on a Tokio
/// current-thread runtime, as `#[tokio::test]` would.
///
/// ```ignore
/// use sea_orm::DatabaseConnection;
///
/// #[db::test]
/// async fn creates_a_project(db: DatabaseConnection) {
///     db::projects::create(&db, db::projects::NewProject { name: "Apollo".into(), description: None })
///         .await
///         .unwrap();
/// }
///
/// // tests/fixtures/projects.sql of this crate, executed before the body (several are run in order).
/// #[db::test(fixtures("projects"))]
/// async fn lists_the_fixture(db: DatabaseConnection) { /* … */ }
/// ```
///
/// * The argument is a clone of the test database's pool (`db_testing::TestDb::conn`); the
///   database lives until the test returns and is dropped then, or kept when the test fails
///   and `DB_TEST_KEEP=1` is set. `async fn name()` without an argument works too.
/// * The function's own attributes (`#[ignore]`, `#[should_panic]`, doc comments) are kept.
/// * A fixture is `<crate>/tests/fixtures/<name>.sql`, read at compile time, so a missing one is
///   a compile error naming the file.
/// * The expansion calls `::db_testing::__macro_support::run`: without `db-testing` in
///   `[dev-dependencies]` the error is "unresolved module or unlinked crate `db_testing`".
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(args.into(), item.into()).into()
}
