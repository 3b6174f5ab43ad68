//! `db-bench`: what a per-test database costs, run by `cargo xtask bench`.
//!
//! For synthetic migrators of 1, 50 and 200 migrations (each a table and an index) it times
//! a template clone plus connect, as `db::testing` does, against the peer approach of
//! `#[sqlx::test]`-style helpers (a fresh database plus a full `Migrator::up`), and the server's
//! own `CREATE DATABASE … TEMPLATE` as the floor. Output is one tab-separated line per result:
//! `result <metric> <migrations> <median ms> <runs>`.

use std::{process::ExitCode, time::Instant};

use db::testing::CloneStrategy;
use migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use url::Url;

struct SyntheticTable(usize);

impl MigrationName for SyntheticTable {
    fn name(&self) -> &str {
        // Names must be 'static for SeaORM; a few hundred leaked strings per run are fine here.
        Box::leak(format!("m20000101_{:06}_bench_table", self.0).into_boxed_str())
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SyntheticTable {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let i = self.0;
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE TABLE bench_t{i} (id bigserial PRIMARY KEY, label text NOT NULL); CREATE INDEX bench_t{i}_label ON bench_t{i} (label)"
            ))
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let i = self.0;
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP TABLE bench_t{i}"))
            .await
            .map(|_| ())
    }
}

struct Synthetic<const N: usize>;

impl<const N: usize> MigratorTrait for Synthetic<N> {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        (0..N)
            .map(|i| Box::new(SyntheticTable(i)) as Box<dyn MigrationTrait>)
            .collect()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    match run(runs).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("db-bench: {}", db::connection::redact(&message));
            ExitCode::FAILURE
        }
    }
}

async fn run(runs: usize) -> Result<(), String> {
    let raw = std::env::var("DATABASE_URL")
        .map_err(|_| "DATABASE_URL is not set: run `cargo xtask bench`".to_owned())?;
    let server = Url::parse(&raw).map_err(|e| format!("DATABASE_URL is malformed ({e})"))?;
    let admin = connect(&server, "postgres").await?;
    let fsync = scalar(&admin, "SHOW fsync").await?;
    let strategy = match CloneStrategy::for_server(fsync == "on") {
        CloneStrategy::WalLog => "WAL_LOG",
        CloneStrategy::FileCopy => "FILE_COPY",
    };
    println!("info\tstrategy\t{strategy}\tfsync={fsync}");
    bench::<1>(&admin, &server, strategy, runs, runs / 3).await?;
    bench::<50>(&admin, &server, strategy, runs, 5).await?;
    bench::<200>(&admin, &server, strategy, runs, 3).await?;
    Ok(())
}

async fn bench<const N: usize>(
    admin: &DatabaseConnection,
    server: &Url,
    strategy: &str,
    runs: usize,
    peer_runs: usize,
) -> Result<(), String> {
    let template = format!("bench_tpl_{N}");
    recreate(admin, &template).await?;
    {
        let conn = connect(server, &template).await?;
        Synthetic::<N>::up(&conn, None)
            .await
            .map_err(|e| e.to_string())?;
        conn.close().await.map_err(|e| e.to_string())?;
    }
    exec(
        admin,
        &format!("ALTER DATABASE {template} IS_TEMPLATE true"),
    )
    .await?;

    let mut floor = Vec::new();
    let mut clone = Vec::new();
    for i in 0..runs {
        let name = format!("bench_clone_{N}_{i}");
        let started = Instant::now();
        exec(
            admin,
            &format!("CREATE DATABASE {name} TEMPLATE {template} STRATEGY {strategy}"),
        )
        .await?;
        floor.push(started.elapsed().as_secs_f64() * 1000.0);
        exec(admin, &format!("DROP DATABASE {name}")).await?;

        let started = Instant::now();
        exec(
            admin,
            &format!("CREATE DATABASE {name} TEMPLATE {template} STRATEGY {strategy}"),
        )
        .await?;
        let conn = connect(server, &name).await?;
        clone.push(started.elapsed().as_secs_f64() * 1000.0);
        conn.close().await.map_err(|e| e.to_string())?;
        exec(admin, &format!("DROP DATABASE {name}")).await?;
    }

    let mut peer = Vec::new();
    for i in 0..peer_runs.max(1) {
        let name = format!("bench_peer_{N}_{i}");
        let started = Instant::now();
        exec(admin, &format!("CREATE DATABASE {name}")).await?;
        let conn = connect(server, &name).await?;
        Synthetic::<N>::up(&conn, None)
            .await
            .map_err(|e| e.to_string())?;
        peer.push(started.elapsed().as_secs_f64() * 1000.0);
        conn.close().await.map_err(|e| e.to_string())?;
        exec(admin, &format!("DROP DATABASE {name}")).await?;
    }

    exec(
        admin,
        &format!("ALTER DATABASE {template} IS_TEMPLATE false"),
    )
    .await?;
    exec(admin, &format!("DROP DATABASE {template}")).await?;
    for (metric, samples) in [("floor", &floor), ("clone", &clone), ("peer", &peer)] {
        println!(
            "result\t{metric}\t{N}\t{:.2}\t{}",
            median(samples),
            samples.len()
        );
    }
    Ok(())
}

async fn connect(server: &Url, database: &str) -> Result<DatabaseConnection, String> {
    let mut url = server.clone();
    url.set_path(&format!("/{database}"));
    let mut options = ConnectOptions::new(url.to_string());
    // The same small pool a test gets from db::testing.
    options
        .max_connections(3)
        .min_connections(1)
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .map_err(|e| format!("cannot connect to database {database}: {e}"))
}

async fn exec(conn: &DatabaseConnection, sql: &str) -> Result<(), String> {
    conn.execute_unprepared(sql)
        .await
        .map(|_| ())
        .map_err(|e| format!("{sql}: {e}"))
}

async fn scalar(conn: &DatabaseConnection, sql: &str) -> Result<String, String> {
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            sql,
        ))
        .await
        .map_err(|e| format!("{sql}: {e}"))?
        .ok_or_else(|| format!("{sql}: no row"))?;
    row.try_get_by_index::<String>(0)
        .map_err(|e| format!("{sql}: {e}"))
}

async fn recreate(admin: &DatabaseConnection, name: &str) -> Result<(), String> {
    let exists = admin
        .query_one_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
        ))
        .await
        .map_err(|e| e.to_string())?
        .is_some();
    if exists {
        exec(admin, &format!("ALTER DATABASE {name} IS_TEMPLATE false")).await?;
        exec(admin, &format!("DROP DATABASE {name} WITH (FORCE)")).await?;
    }
    exec(admin, &format!("CREATE DATABASE {name}")).await
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
