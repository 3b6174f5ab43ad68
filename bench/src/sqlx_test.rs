//! The peer: one real `#[sqlx::test(migrations = "…")]`, called as the attribute's expansion calls
//! sqlx's harness, with a body that does nothing.
//!
//! In sqlx 0.9 the attribute (sqlx-macros-core, `test_attr.rs`, `expand_advanced`) turns
//! `async fn t(pool: PgPool)` into a plain `#[test]` whose whole body is
//!
//! ```text
//! let mut args = sqlx::testing::TestArgs::new(concat!(module_path!(), "::t"));
//! args.migrator(&MIGRATOR);   // `migrations = "dir"`: the `migrate!` expansion of that directory
//! args.fixtures(&[]);
//! let f: fn(_) -> _ = t;
//! sqlx::testing::TestFn::run_test(f, args)
//! ```
//!
//! and [`run_one`] makes that very call. `run_test` does everything such a test waits for: it
//! starts the test's Tokio runtime, registers and creates the test's database through sqlx's
//! master pool, applies every migration, connects the test's pool, runs the body, closes the
//! pool, drops the database and shuts the runtime down. The one difference from the macro is
//! where the `Migrator` comes from: `migrate!` embeds the files at compile time, here
//! `Migrator::new` reads the same files (written by `build.rs`), before anything is timed.
//!
//! sqlx keeps its registry of test databases (schema `_sqlx_test`) in the database `DATABASE_URL`
//! names; [`Registry`] points that at a scratch database of the benchmark's own.

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;

use sqlx::{
    PgPool, Postgres,
    migrate::Migrator,
    testing::{TestArgs, TestFn, TestSupport},
};
use url::Url;

/// The migration counts `build.rs` writes directories for.
pub const SIZES: [usize; 3] = [1, 50, 200];

/// The database that holds sqlx's `_sqlx_test` registry for the length of the run.
pub struct Registry {
    pub database: &'static str,
    pub url: Url,
}

impl Registry {
    /// Points `DATABASE_URL`, which sqlx's harness reads for its master pool, at the registry
    /// database on `server`. Call it before any thread starts: it changes the environment.
    pub fn point_sqlx_at(server: &Url) -> Registry {
        let database = "dbbench_sqlx_registry";
        let mut url = server.clone();
        url.set_path(&format!("/{database}"));
        // SAFETY: the caller runs this before any other thread exists, so nothing can read the
        // environment while it changes.
        unsafe { std::env::set_var("DATABASE_URL", url.as_str()) };
        Registry { database, url }
    }
}

/// The migrations `build.rs` wrote for `n`, read as `Migrator::new` reads a project's directory.
/// Blocks on a runtime of its own: call it outside any runtime.
pub fn load_migrator(n: usize) -> Result<&'static Migrator, String> {
    let dir = PathBuf::from(env!("OUT_DIR")).join(format!("migrations_{n}"));
    let migrator = sqlx::test_block_on(Migrator::new(dir.clone()))
        .map_err(|e| format!("cannot read the migrations in {}: {e}", dir.display()))?;
    let found = migrator.iter().count();
    if found != n {
        return Err(format!(
            "{} holds {found} migrations, not {n}: rebuild with cargo",
            dir.display()
        ));
    }
    Ok(Box::leak(Box::new(migrator)))
}

/// The test body: nothing, so that only what the harness does around it is measured.
async fn trivial_test(_pool: PgPool) {}

/// Runs test number `run` with `migrator`, as the macro's expansion does. Call it outside any
/// runtime (sqlx starts the test's own); a failure of the harness is a one-line error.
pub fn run_one(n: usize, run: usize, migrator: &'static Migrator) -> Result<(), String> {
    // Each run is its own test, as in a suite; names (hence databases) repeat across invocations,
    // which sqlx handles by dropping a leftover database of the same name first.
    let test_path: &'static str =
        Box::leak(format!("dbops_bench::migrations_{n}::test_{run}").into_boxed_str());
    let mut args = TestArgs::new(test_path);
    args.migrator(migrator);
    args.fixtures(&[]);
    let f: fn(PgPool) -> _ = trivial_test;
    // A failing test's panic becomes this binary's one-line error instead of a backtrace.
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| TestFn::run_test(f, args)));
    panic::set_hook(hook);
    outcome.map_err(|payload| {
        let reason = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        let database = <Postgres as TestSupport>::db_name(&TestArgs::new(test_path));
        format!(
            "sqlx's test harness failed with {n} migrations: {reason} (its database {database} may be left over)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_script_wrote_every_size() {
        for n in SIZES {
            let dir = PathBuf::from(env!("OUT_DIR")).join(format!("migrations_{n}"));
            assert_eq!(
                std::fs::read_dir(&dir).unwrap().count(),
                n,
                "{}",
                dir.display()
            );
        }
    }
}
