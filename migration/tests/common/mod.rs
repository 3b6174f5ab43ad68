//! Scratch databases and catalog snapshots shared by the migration crate's integration tests.
//!
//! Needs `DATABASE_URL` pointing at a server whose user may create databases; every test
//! creates and drops its own scratch database there.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const PROJECTS_MIGRATION: &str = "m20261124_120000_create_projects";

/// A database of its own for one test, on the server `DATABASE_URL` points at.
pub struct ScratchDb {
    server: DatabaseConnection,
    name: String,
    pub url: String,
}

impl ScratchDb {
    pub async fn create(tag: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let server_url = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => panic!("DATABASE_URL is not set: run `cargo xtask db-test` to get a test server"),
        };
        let server = connect(&server_url).await;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let name = format!(
            "migration_test_{tag}_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        execute(&server, &format!("CREATE DATABASE \"{name}\"")).await;
        let mut url = url::Url::parse(&server_url).expect("DATABASE_URL parsed above");
        url.set_path(&name);
        Self {
            server,
            name,
            url: url.to_string(),
        }
    }

    pub async fn connect(&self) -> DatabaseConnection {
        connect(&self.url).await
    }

    pub async fn drop(self) {
        execute(
            &self.server,
            &format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name),
        )
        .await;
    }

    /// Runs this crate's migration binary against this database.
    pub fn run(&self, args: &[&str]) -> Output {
        let binary = Path::new(env!("CARGO_BIN_EXE_migration"));
        Command::new(binary)
            .args(args)
            .env("DATABASE_URL", &self.url)
            .env_remove("DATABASE_SCHEMA")
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()))
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "migration {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

pub async fn connect(url: &str) -> DatabaseConnection {
    let mut options = ConnectOptions::new(url);
    options
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .max_connections(2)
        .sqlx_logging(false);
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, Database::connect(options)).await {
        Ok(Ok(db)) => db,
        Ok(Err(error)) => panic!(
            "cannot reach the test server at {} ({error}): run `cargo xtask db-test`",
            dbops_common::redact::redact_url(url)
        ),
        Err(_) => panic!(
            "timed out connecting to {}: run `cargo xtask db-test`",
            dbops_common::redact::redact_url(url)
        ),
    }
}

pub async fn execute(db: &DatabaseConnection, sql: &str) {
    if let Err(error) = db.execute_unprepared(sql).await {
        panic!("{sql}: {error}");
    }
}

pub async fn query_strings(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .into_iter()
        .map(|row| {
            row.try_get_by_index::<Option<String>>(0)
                .expect("text column")
                .unwrap_or_default()
        })
        .collect()
}

/// Every schema object this project cares about in `public`, one sorted line each.
pub async fn catalog(db: &DatabaseConnection) -> Vec<String> {
    query_strings(
        db,
        r#"
        SELECT line FROM (
            SELECT format('column %s.%s %s %s nullable=%s default=%s', table_name, column_name,
                          data_type, character_maximum_length, is_nullable, column_default) AS line
              FROM information_schema.columns WHERE table_schema = 'public'
            UNION ALL
            SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
              FROM pg_constraint WHERE connamespace = 'public'::regnamespace
            UNION ALL
            SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
            UNION ALL
            SELECT format('trigger %s', pg_get_triggerdef(oid)) FROM pg_trigger WHERE NOT tgisinternal
            UNION ALL
            SELECT format('function %s %s', p.oid::regprocedure, l.lanname)
              FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
             WHERE p.pronamespace = 'public'::regnamespace
        ) catalog ORDER BY line"#,
    )
    .await
}

pub fn stderr_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line, got {stderr:?}"
    );
    stderr.trim_end().to_owned()
}
