//! `testdb`: prepares the test template database and removes leftover test databases for `cargo xtask db-test`.
//!
//! ```text
//! testdb prepare                   build or validate the template, clone the pool; prints its name
//! testdb serve                     until stdin closes, drop the databases tests finished with and
//!                                  keep the pool full; prints how many it dropped and cloned
//! testdb cleanup [--include-kept]  drop test databases no live test holds; prints how many
//! testdb measure [RUNS]            time on-demand clone+connect with each CREATE DATABASE strategy
//! ```
//!
//! The server comes from `DATABASE_URL`; `DB_TEST_POOL_SIZE` (default 4, `0` for none) sets how
//! many ready clones `prepare` keeps for the tests to claim. `cleanup` also drops the pool's ready
//! clones, so run it after the suite. Both are safe while other test runs use the same server
//! (another clone, or this one twice): what their live processes hold is spared, and `prepare`
//! leaves a template of other migrations alone while a run still clones from it. Errors are one
//! line on stderr and exit with status 1.

use std::process::ExitCode;
use std::time::Duration;

use db_testing::{self as testing, CloneStrategy};

const USAGE: &str = "usage: testdb prepare | testdb serve | testdb cleanup [--include-kept] | testdb measure [RUNS]";
const DEFAULT_MEASURE_RUNS: usize = 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let outcome = match arguments.as_slice() {
        ["prepare"] => prepare().await,
        ["serve"] => serve().await,
        ["cleanup"] => cleanup(false).await,
        ["cleanup", "--include-kept"] => cleanup(true).await,
        ["measure"] => measure(DEFAULT_MEASURE_RUNS).await,
        ["measure", runs] => match runs.parse::<usize>() {
            Ok(runs) if runs > 0 => measure(runs).await,
            _ => Err(format!(
                "RUNS must be a positive number, not `{runs}`: {USAGE}"
            )),
        },
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            Ok(())
        }
        [] => Err(format!("missing command: {USAGE}")),
        _ => Err(format!(
            "unknown arguments `{}`: {USAGE}",
            arguments.join(" ")
        )),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("testdb: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn prepare() -> Result<(), String> {
    let template = testing::prepare()
        .await
        .map_err(|error| error.to_string())?;
    println!("{template}");
    Ok(())
}

/// Serves the pool until stdin reaches its end: `cargo xtask db-test` closes it after the suite,
/// and so does the end of xtask, however it ends.
async fn serve() -> Result<(), String> {
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed.send(());
    });
    let report = testing::serve_pool(async move {
        let _ = stdin_closed.await;
    })
    .await
    .map_err(|error| error.to_string())?;
    println!("dropped {} cloned {}", report.dropped, report.cloned);
    Ok(())
}

async fn cleanup(include_kept: bool) -> Result<(), String> {
    let dropped = if include_kept {
        testing::drop_kept_test_databases().await
    } else {
        testing::drop_stale_test_databases().await
    }
    .map_err(|error| error.to_string())?;
    println!("{dropped}");
    Ok(())
}

/// Alternates the strategies run by run, so that neither profits from a warmer cache.
async fn measure(runs: usize) -> Result<(), String> {
    let mut wal_log = Vec::with_capacity(runs);
    let mut file_copy = Vec::with_capacity(runs);
    for run in 0..runs {
        let order = if run % 2 == 0 {
            [CloneStrategy::WalLog, CloneStrategy::FileCopy]
        } else {
            [CloneStrategy::FileCopy, CloneStrategy::WalLog]
        };
        for strategy in order {
            let durations = testing::measure_clone(strategy, 1)
                .await
                .map_err(|error| error.to_string())?;
            match strategy {
                CloneStrategy::WalLog => wal_log.extend(durations),
                CloneStrategy::FileCopy => file_copy.extend(durations),
            }
        }
    }
    let chosen = testing::chosen_clone_strategy()
        .await
        .map_err(|error| error.to_string())?;
    println!("clone + connect, {runs} runs each (chosen for this server: {chosen}):");
    print_summary(CloneStrategy::WalLog, &mut wal_log);
    print_summary(CloneStrategy::FileCopy, &mut file_copy);
    Ok(())
}

fn print_summary(strategy: CloneStrategy, durations: &mut [Duration]) {
    durations.sort();
    let milliseconds = |duration: Duration| duration.as_secs_f64() * 1000.0;
    let percentile =
        |fraction: f64| durations[((durations.len() - 1) as f64 * fraction).round() as usize];
    println!(
        "{strategy:<9}  median {:7.2} ms  p90 {:7.2} ms  min {:7.2} ms  max {:7.2} ms",
        milliseconds(percentile(0.5)),
        milliseconds(percentile(0.9)),
        milliseconds(durations[0]),
        milliseconds(durations[durations.len() - 1]),
    );
}
