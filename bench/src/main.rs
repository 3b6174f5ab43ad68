//! `db-bench`: what a test waits for to get its database, ours against a real `#[sqlx::test]`,
//! run by `cargo xtask bench` (in debug and in release).
//!
//! For synthetic migrators of 1, 50 and 200 migrations (each a table and an index) it builds the
//! template through `db_testing::TestTemplate`, the code path tests use, and times, per sample:
//!
//! * `whole`: a whole test, as `#[tokio::test]` runs one under `cargo xtask db-test`: on a thread
//!   of its own, a fresh runtime, `TestDb` claimed and connected, dropped (handed to the pool's
//!   filler) and the runtime shut down; `clone` is the part up to the connected `TestDb`;
//! * `sqlx_test`: a whole real `#[sqlx::test]` with the same migrations (see `sqlx_test`);
//! * `whole_sync`: our whole test without a filler, as under plain `cargo test`: the drop drops
//!   the database and clones its replacement itself;
//! * `ondemand`: `CREATE DATABASE … TEMPLATE` plus connect, what a test waits for without a pool;
//! * `floor`: the server's own `CREATE DATABASE … TEMPLATE`;
//! * `peer`: a fresh database plus a full SeaORM `Migrator::up` (the emulated peer), and
//!   `peer_whole`, the same until the database is dropped again.
//!
//! The samples of one migration count are interleaved (one of each per round), so a slow moment
//! of the machine hits every approach alike; before each whole test, and before each peer, the
//! filler has the pool full again, as a real test body gives it the time to. `whole_sync` runs in
//! rounds of its own before the filler starts.
//!
//! Output is one tab-separated line per result, `result <metric> <migrations> <median ms> <runs>`,
//! after `info strategy <name> fsync=<on|off>`. The first argument sets the rounds (default 30).

mod sqlx_test;
mod synthetic;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use db_testing::{self as testing, TestTemplate};
use dbops_common::{database_url, redact, stats::median};
use migration::MigratorTrait;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use sqlx::migrate::Migrator;
use url::Url;

use crate::{sqlx_test::Registry, synthetic::Synthetic};

const DEFAULT_RUNS: usize = 30;
/// Its own base name keeps the benchmark's templates and pools apart from the test suite's.
const BENCH_BASE_NAME: &str = "dbbench";
/// The default `DB_TEST_POOL_SIZE`, fixed so the environment cannot turn the pool off here.
const BENCH_POOL_SIZE: usize = 4;
const POOL_REFILL_DEADLINE: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
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
    let Ok(raw) = std::env::var("DATABASE_URL") else {
        eprintln!("db-bench: DATABASE_URL is not set: run `cargo xtask bench`");
        return ExitCode::FAILURE;
    };
    match setup_and_run(runs, &raw) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let message = redact::scrub_password(&redact::redact_text(&message), &raw);
            eprintln!("db-bench: {}", dbops_common::text::one_line(&message));
            ExitCode::FAILURE
        }
    }
}

/// What must happen before any thread starts (the environment for sqlx, its migrators), then
/// the measurements on a runtime.
fn setup_and_run(runs: usize, raw: &str) -> Result<(), String> {
    let server = database_url::parse_postgres(raw).map_err(|e| e.to_string())?;
    let registry = Registry::point_sqlx_at(&server);
    let migrators = sqlx_test::SIZES
        .iter()
        .map(|&n| sqlx_test::load_migrator(n))
        .collect::<Result<Vec<_>, _>>()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?
        .block_on(run(runs, &server, &registry, &migrators))
}

async fn run(
    runs: usize,
    server: &Url,
    registry: &Registry,
    migrators: &[&'static Migrator],
) -> Result<(), String> {
    let admin = connect(server, "postgres").await?;
    let fsync = scalar(&admin, "SHOW fsync").await?;
    let strategy = testing::chosen_clone_strategy()
        .await
        .map_err(|e| e.to_string())?;
    println!("info\tstrategy\t{strategy}\tfsync={fsync}");
    let drop_registry = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", registry.database);
    exec(&admin, &drop_registry).await?;
    exec(&admin, &format!("CREATE DATABASE {}", registry.database)).await?;
    let measured = async {
        bench::<1>(&admin, server, runs, migrators[0]).await?;
        bench::<50>(&admin, server, runs, migrators[1]).await?;
        bench::<200>(&admin, server, runs, migrators[2]).await?;
        sqlx_left_nothing_behind(registry).await
    }
    .await;
    let removed_registry = exec(&admin, &drop_registry).await;
    let removed_templates = bench_template::<1>()
        .drop_all_databases()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    measured.and(removed_registry).and(removed_templates)
}

/// Templates of one base replace each other, so each size is measured and retired in turn.
fn bench_template<const N: usize>() -> TestTemplate<Synthetic<N>> {
    TestTemplate::new(format!("db-bench synthetic, {N} migrations, v1"))
        .with_base_name(BENCH_BASE_NAME)
        .with_pool_size(BENCH_POOL_SIZE)
}

/// The samples of one migration count, by metric.
#[derive(Default)]
struct Samples {
    floor: Vec<f64>,
    ondemand: Vec<f64>,
    clone: Vec<f64>,
    whole: Vec<f64>,
    whole_sync: Vec<f64>,
    sqlx_test: Vec<f64>,
    peer: Vec<f64>,
    peer_whole: Vec<f64>,
}

async fn bench<const N: usize>(
    admin: &DatabaseConnection,
    server: &Url,
    runs: usize,
    sqlx_migrator: &'static Migrator,
) -> Result<(), String> {
    let template = bench_template::<N>();
    let template_name = template.prepare().await.map_err(|e| e.to_string())?;
    let strategy = testing::chosen_clone_strategy()
        .await
        .map_err(|e| e.to_string())?;
    // sqlx's first test in a process connects its master pool and creates its registry: warm it
    // up, untimed, as `prepare` warmed ours.
    as_a_test(|| sqlx_test::run_one(N, 0, sqlx_migrator)).0?;

    let mut samples = Samples::default();
    for _ in 0..runs {
        let (outcome, ms) = as_a_test(|| tokio_test(whole_test(&template)));
        outcome?;
        samples.whole_sync.push(ms);
    }

    let filler = template.start_filler().await.map_err(|e| e.to_string())?;
    for round in 1..=runs {
        let round = Round {
            admin,
            server,
            template: &template,
            template_name: &template_name,
            strategy: &strategy.to_string(),
            sqlx_migrator,
            number: round,
        };
        round.measure(&mut samples).await?;
    }
    filler.stop().await.map_err(|e| e.to_string())?;
    print_results(N, &samples);
    Ok(())
}

/// One round of the interleaved samples, with a filler running.
struct Round<'a, const N: usize> {
    admin: &'a DatabaseConnection,
    server: &'a Url,
    template: &'a TestTemplate<Synthetic<N>>,
    template_name: &'a str,
    strategy: &'a str,
    sqlx_migrator: &'static Migrator,
    number: usize,
}

impl<const N: usize> Round<'_, N> {
    async fn measure(&self, samples: &mut Samples) -> Result<(), String> {
        let (admin, number) = (self.admin, self.number);
        let floor_db = format!("{BENCH_BASE_NAME}_test_floor_{N}_{number}");
        let started = Instant::now();
        exec(
            admin,
            &format!(
                "CREATE DATABASE {floor_db} TEMPLATE {} STRATEGY {}",
                self.template_name, self.strategy
            ),
        )
        .await?;
        samples.floor.push(elapsed_ms(started));
        exec(admin, &format!("DROP DATABASE {floor_db}")).await?;

        let started = Instant::now();
        let test_db = self
            .template
            .cloned_test_db()
            .await
            .map_err(|e| e.to_string())?;
        samples.ondemand.push(elapsed_ms(started));
        drop(test_db);

        wait_for_full_pool(self.template).await?;
        let (claimed, whole) = as_a_test(|| tokio_test(whole_test(self.template)));
        let claim = claimed?.ok_or_else(|| {
            format!(
                "round {number} with {N} migrations found the pool empty, so `whole` would time an on-demand clone: check the server's log"
            )
        })?;
        samples.clone.push(claim);
        samples.whole.push(whole);

        wait_for_full_pool(self.template).await?;
        let (outcome, ms) = as_a_test(|| sqlx_test::run_one(N, number, self.sqlx_migrator));
        outcome?;
        samples.sqlx_test.push(ms);

        let (peer, peer_whole) = emulated_peer::<N>(admin, self.server, number).await?;
        samples.peer.push(peer);
        samples.peer_whole.push(peer_whole);
        Ok(())
    }
}

fn print_results(n: usize, samples: &Samples) {
    for (metric, samples) in [
        ("floor", &samples.floor),
        ("clone", &samples.clone),
        ("whole", &samples.whole),
        ("whole_sync", &samples.whole_sync),
        ("sqlx_test", &samples.sqlx_test),
        ("ondemand", &samples.ondemand),
        ("peer", &samples.peer),
        ("peer_whole", &samples.peer_whole),
    ] {
        println!(
            "result\t{metric}\t{n}\t{:.2}\t{}",
            median(samples),
            samples.len()
        );
    }
}

/// Runs `test` on a thread of its own, as libtest runs each test, and returns what it returned
/// and its milliseconds, the thread's start and end included.
fn as_a_test<T: Send>(test: impl FnOnce() -> T + Send) -> (T, f64) {
    let started = Instant::now();
    let output = std::thread::scope(|scope| {
        scope
            .spawn(test)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    (output, elapsed_ms(started))
}

/// Runs `body` as `#[tokio::test]` expands: a fresh current-thread runtime, shut down afterwards.
fn tokio_test<T>(body: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test's runtime starts, as #[tokio::test] assumes")
        .block_on(body)
}

/// The body of a test that takes a database and does nothing with it: the milliseconds until
/// its `TestDb` was connected, if it came from the pool (`None` for an on-demand clone). The drop
/// at the end of the body is the test's too.
async fn whole_test<const N: usize>(
    template: &TestTemplate<Synthetic<N>>,
) -> Result<Option<f64>, String> {
    let started = Instant::now();
    let test_db = template.test_db().await.map_err(|e| e.to_string())?;
    let claimed = test_db.claimed_from_pool().then(|| elapsed_ms(started));
    drop(test_db);
    Ok(claimed)
}

/// Waits, untimed, until the filler has the pool full again, as it does while a test runs.
async fn wait_for_full_pool<const N: usize>(
    template: &TestTemplate<Synthetic<N>>,
) -> Result<(), String> {
    let deadline = Instant::now() + POOL_REFILL_DEADLINE;
    while template.ready_in_pool().await.map_err(|e| e.to_string())? < BENCH_POOL_SIZE {
        if Instant::now() >= deadline {
            return Err(format!(
                "the pool filler did not refill the pool within {} s: check the server's log",
                POOL_REFILL_DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// One fresh database migrated from empty with SeaORM, as `#[sqlx::test]`-style helpers do:
/// milliseconds until it is ready, and until it is dropped again.
async fn emulated_peer<const N: usize>(
    admin: &DatabaseConnection,
    server: &Url,
    round: usize,
) -> Result<(f64, f64), String> {
    let name = format!("{BENCH_BASE_NAME}_test_peer_{N}_{round}");
    let started = Instant::now();
    exec(admin, &format!("CREATE DATABASE {name}")).await?;
    let conn = connect(server, &name).await?;
    Synthetic::<N>::up(&conn, None)
        .await
        .map_err(|e| e.to_string())?;
    let ready = elapsed_ms(started);
    conn.close().await.map_err(|e| e.to_string())?;
    exec(admin, &format!("DROP DATABASE {name}")).await?;
    Ok((ready, elapsed_ms(started)))
}

/// Fails if a `#[sqlx::test]` database was not dropped, so that no sample left its drop out:
/// sqlx deletes a database's registry row right after dropping it, and only prints a failure.
async fn sqlx_left_nothing_behind(registry: &Registry) -> Result<(), String> {
    let conn = connect(&registry.url, registry.database).await?;
    let left = scalar(
        &conn,
        "SELECT coalesce(string_agg(db_name, ', '), '') FROM _sqlx_test.databases",
    )
    .await?;
    conn.close().await.map_err(|e| e.to_string())?;
    match left.as_str() {
        "" => Ok(()),
        _ => Err(format!(
            "sqlx did not drop its test databases {left}: its samples are not whole tests"
        )),
    }
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
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
