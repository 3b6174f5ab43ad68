//! `db-bench`: what a per-test database costs, run by `cargo xtask bench`.
//!
//! For synthetic migrators of 1, 50 and 200 migrations (each a table and an index) it builds the
//! template through `db_testing::TestTemplate`, the code path tests use, and times:
//!
//! * `clone`: claim a ready clone from the pool and connect, as `TestDb::new` does;
//! * `whole`: what a test waits for from the start of `TestDb::new` to the return of its drop,
//!   with a pool filler running, as under `cargo xtask db-test`: claim, connect, and the drop,
//!   which hands the database to the filler. Before each sample the pool is full again (the
//!   filler's work between tests is not timed: a real test body gives it that time);
//! * `whole_sync`: the same without a filler, as under plain `cargo test`: the drop drops the
//!   database and clones its replacement itself;
//! * `ondemand`: `CREATE DATABASE … TEMPLATE` plus connect, what a test waits for without a pool;
//! * `floor`: the server's own `CREATE DATABASE … TEMPLATE`;
//! * `peer`: a fresh database plus a full `Migrator::up`, as `#[sqlx::test]`-style helpers do;
//!   `peer_whole` adds closing and dropping it, the peer's whole test.
//!
//! Output is one tab-separated line per result, `result <metric> <migrations> <median ms> <runs>`,
//! after `info strategy <name> fsync=<on|off>`. The first argument sets the runs (default 30).

use std::{process::ExitCode, time::Instant};

use db_testing::{self as testing, TestTemplate};
use dbops_common::redact::redact_url;
use dbops_common::stats::median;
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

/// Its own base name keeps the benchmark's templates and pools apart from the test suite's.
const BENCH_BASE_NAME: &str = "dbbench";
/// The default `DB_TEST_POOL_SIZE`, fixed so the environment cannot turn the pool off here.
const BENCH_POOL_SIZE: usize = 4;
const DEFAULT_RUNS: usize = 30;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let runs = match std::env::args().nth(1) {
        None => DEFAULT_RUNS,
        Some(raw) => match raw.parse::<usize>() {
            Ok(runs) if runs > 0 => runs,
            _ => {
                eprintln!("db-bench: RUNS must be a positive number, not `{raw}`: db-bench [RUNS]");
                return ExitCode::FAILURE;
            }
        },
    };
    match run(runs).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("db-bench: {}", redact_url(&message));
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
    let strategy = testing::chosen_clone_strategy()
        .await
        .map_err(|e| e.to_string())?;
    println!("info\tstrategy\t{strategy}\tfsync={fsync}");
    let measured = async {
        bench::<1>(&admin, &server, runs, runs / 3).await?;
        bench::<50>(&admin, &server, runs, 5).await?;
        bench::<200>(&admin, &server, runs, 3).await
    }
    .await;
    let removed = bench_template::<1>()
        .drop_all_databases()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    measured.and(removed)
}

/// Templates of one base replace each other, so each size is measured and retired in turn.
fn bench_template<const N: usize>() -> TestTemplate<Synthetic<N>> {
    TestTemplate::new(format!("db-bench synthetic, {N} migrations, v1"))
        .with_base_name(BENCH_BASE_NAME)
        .with_pool_size(BENCH_POOL_SIZE)
}

async fn bench<const N: usize>(
    admin: &DatabaseConnection,
    server: &Url,
    runs: usize,
    peer_runs: usize,
) -> Result<(), String> {
    let template = bench_template::<N>();
    let template_name = template.prepare().await.map_err(|e| e.to_string())?;
    let strategy = testing::chosen_clone_strategy()
        .await
        .map_err(|e| e.to_string())?;

    let mut whole_sync = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        drop(template.test_db().await.map_err(|e| e.to_string())?);
        whole_sync.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    let filler = template.start_filler().await.map_err(|e| e.to_string())?;
    let mut floor = Vec::new();
    let mut ondemand = Vec::new();
    let mut clone = Vec::new();
    let mut whole = Vec::new();
    for i in 0..runs {
        let name = format!("{BENCH_BASE_NAME}_test_floor_{N}_{i}");
        let started = Instant::now();
        exec(
            admin,
            &format!("CREATE DATABASE {name} TEMPLATE {template_name} STRATEGY {strategy}"),
        )
        .await?;
        floor.push(started.elapsed().as_secs_f64() * 1000.0);
        exec(admin, &format!("DROP DATABASE {name}")).await?;

        let started = Instant::now();
        let test_db = template.cloned_test_db().await.map_err(|e| e.to_string())?;
        ondemand.push(started.elapsed().as_secs_f64() * 1000.0);
        drop(test_db);

        wait_for_full_pool(&template).await?;
        let started = Instant::now();
        let test_db = template.test_db().await.map_err(|e| e.to_string())?;
        clone.push(started.elapsed().as_secs_f64() * 1000.0);
        if !test_db.claimed_from_pool() {
            return Err(format!(
                "run {i} with {N} migrations found the pool empty, so `clone` would time an on-demand clone: check the server's log"
            ));
        }
        // Hands the database to the filler: part of the whole test, not the claim.
        drop(test_db);
        whole.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    filler.stop().await.map_err(|e| e.to_string())?;

    let (peer, peer_whole) = peer_samples::<N>(admin, server, peer_runs.max(1)).await?;

    for (metric, samples) in [
        ("floor", &floor),
        ("clone", &clone),
        ("whole", &whole),
        ("whole_sync", &whole_sync),
        ("ondemand", &ondemand),
        ("peer", &peer),
        ("peer_whole", &peer_whole),
    ] {
        println!(
            "result\t{metric}\t{N}\t{:.2}\t{}",
            median(samples),
            samples.len()
        );
    }
    Ok(())
}

/// Waits, untimed, until the filler has the pool full again, as it does while a test runs.
async fn wait_for_full_pool<const N: usize>(
    template: &TestTemplate<Synthetic<N>>,
) -> Result<(), String> {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while template.ready_in_pool().await.map_err(|e| e.to_string())? < BENCH_POOL_SIZE {
        if Instant::now() >= deadline {
            return Err(
                "the pool filler did not refill the pool within 30 s: check the server's log"
                    .into(),
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Milliseconds of `runs` fresh databases migrated from empty, as `#[sqlx::test]`-style helpers
/// do: until the migrated database is ready, and until it is dropped again.
async fn peer_samples<const N: usize>(
    admin: &DatabaseConnection,
    server: &Url,
    runs: usize,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    let (mut peer, mut peer_whole) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let name = format!("{BENCH_BASE_NAME}_test_peer_{N}_{i}");
        let started = Instant::now();
        exec(admin, &format!("CREATE DATABASE {name}")).await?;
        let conn = connect(server, &name).await?;
        Synthetic::<N>::up(&conn, None)
            .await
            .map_err(|e| e.to_string())?;
        peer.push(started.elapsed().as_secs_f64() * 1000.0);
        conn.close().await.map_err(|e| e.to_string())?;
        exec(admin, &format!("DROP DATABASE {name}")).await?;
        peer_whole.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((peer, peer_whole))
}

async fn connect(server: &Url, database: &str) -> Result<DatabaseConnection, String> {
    let mut url = server.clone();
    url.set_path(&format!("/{database}"));
    let mut options = ConnectOptions::new(url.to_string());
    // The same small pool a test gets from db_testing.
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
