//! `cargo xtask db-test`: the whole test suite, each test on its own database cloned from a migrated template.

use std::{
    process::{Child, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    backend::{BackendChoice, lifecycle::test_server},
    bins::{cargo, workspace_bin},
    cli_args::Partition,
    context::Ctx,
    process::ChildFailed,
    ui,
};

/// How long the pool filler may take to drop what the last tests finished with.
const FILLER_STOP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct Args {
    /// How long to wait for the server, in seconds.
    #[arg(long, default_value = "60", value_parser = crate::cli_args::parse_seconds, value_name = "SECONDS")]
    pub timeout: Duration,

    /// Run shard K of N of the suite (1-based), for spreading it over CI jobs: nextest's own
    /// `--partition hash:K/N`, or the same kind of stable split of each test binary's tests
    /// with `--runner cargo`. Doc tests run in shard 1.
    #[arg(long, value_parser = crate::cli_args::parse_partition, value_name = "K/N")]
    pub partition: Option<Partition>,

    /// The test runner: cargo-nextest when installed, else `cargo test`.
    #[arg(long, value_enum)]
    pub runner: Option<Runner>,

    /// Arguments for the test runner (cargo nextest run, or cargo test), after `--`.
    #[arg(last = true)]
    pub runner_args: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runner {
    Nextest,
    Cargo,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    let test_server = test_server(ctx, choice, args.timeout)?;
    let ctx = test_server.as_ref().unwrap_or(ctx);
    let runner = choose_runner(ctx, args.runner)?;

    ui::info("building the workspace's tests");
    let build: &[&str] = match runner {
        Runner::Nextest => &["nextest", "run", "--workspace", "--no-run"],
        Runner::Cargo => &["test", "--workspace", "--no-run"],
    };
    if !cargo_status(ctx, build)?.success() {
        return Ok(ExitCode::FAILURE);
    }

    ui::info("preparing the template database");
    let template = testdb(ctx, "prepare")?;
    ui::info(format!("template database: {}", template.trim()));

    // nextest does not run doc tests, so they run first, and the suite's summary stays the
    // last thing printed; with runner arguments the user asked for a subset, and of several
    // shards only the first runs them.
    let mut doc_tests = None;
    let this_shard_has_doc_tests = args.partition.is_none_or(|p| p.runs_doc_tests());
    if runner == Runner::Nextest && args.runner_args.is_empty() && this_shard_has_doc_tests {
        ui::info("running the doc tests");
        doc_tests = Some(cargo_status(ctx, &["test", "--workspace", "--doc"])?);
    }
    // Drops finished test databases and refills the pool beside the suite, off the tests' path.
    let filler = PoolFiller::start(ctx)?;
    let suite_outcome = run_suite(ctx, runner, args.partition, &args.runner_args);
    match filler.stop() {
        Ok(report) => ui::debug(format!("pool filler: {}", report.trim())),
        Err(error) => ui::warn(format!(
            "the pool filler failed ({error:#}); the tests dropped their own databases"
        )),
    }
    match testdb(ctx, "cleanup") {
        Ok(dropped) => ui::debug(format!("dropped {} per-test databases", dropped.trim())),
        Err(error) => ui::warn(format!(
            "could not drop the per-test databases ({error:#}); `cargo xtask db-test` drops them next time"
        )),
    }
    suite_outcome?;
    match doc_tests.filter(|doc| !doc.success()) {
        Some(failed) => Err(ChildFailed::from_status(failed).into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// `--runner`, else nextest where installed; nextest asked for but missing is an error.
fn choose_runner(ctx: &Ctx, asked: Option<Runner>) -> Result<Runner> {
    let installed = has_nextest(ctx);
    match asked {
        Some(Runner::Nextest) if !installed => bail!(
            "--runner nextest: cargo-nextest is not installed; run `cargo install cargo-nextest`, or use --runner cargo"
        ),
        Some(runner) => Ok(runner),
        None if installed => Ok(Runner::Nextest),
        None => Ok(Runner::Cargo),
    }
}

/// The suite, or this shard of it, with `runner`.
fn run_suite(
    ctx: &Ctx,
    runner: Runner,
    partition: Option<Partition>,
    runner_args: &[String],
) -> Result<()> {
    let shard = partition.map_or(String::new(), |p| {
        format!(", shard {}/{}", p.shard, p.total)
    });
    let mut suite: Vec<String> = match runner {
        Runner::Nextest => {
            ui::info(format!("running the suite with cargo nextest run{shard}"));
            let mut suite = vec!["nextest".into(), "run".into(), "--workspace".into()];
            suite.extend(partition.map(|p| format!("--partition={}", p.nextest_arg())));
            suite
        }
        Runner::Cargo => {
            ui::info(format!("running the suite with cargo test{shard}"));
            if let Some(partition) = partition {
                return run_shard_with_cargo_test(ctx, partition, runner_args);
            }
            let mut suite = vec!["test".to_owned()];
            if !names_a_package(runner_args) {
                suite.push("--workspace".into());
            }
            suite
        }
    };
    suite.extend(runner_args.iter().cloned());
    let suite: Vec<&str> = suite.iter().map(String::as_str).collect();
    let status = cargo_status(ctx, &suite)?;
    if status.success() {
        Ok(())
    } else {
        Err(ChildFailed::from_status(status).into())
    }
}

/// Without nextest, xtask splits the tests itself: the runner arguments before their own `--`
/// choose the binaries, as for `cargo test` (the whole workspace unless they name a package),
/// and those after it narrow each binary's tests.
fn run_shard_with_cargo_test(
    ctx: &Ctx,
    partition: Partition,
    runner_args: &[String],
) -> Result<()> {
    let (cargo_args, libtest_args) = match runner_args.iter().position(|arg| arg == "--") {
        Some(split) => (&runner_args[..split], &runner_args[split + 1..]),
        None => (runner_args, &[][..]),
    };
    let mut cargo_args_with_scope: Vec<&str> = cargo_args.iter().map(String::as_str).collect();
    if !names_a_package(cargo_args) {
        cargo_args_with_scope.insert(0, "--workspace");
    }
    let libtest_args: Vec<&str> = libtest_args.iter().map(String::as_str).collect();
    let shard = crate::test_shards::run(ctx, partition, &cargo_args_with_scope, &libtest_args);
    // Doc tests are not split: the first shard runs those of the chosen packages, as `cargo
    // test` would have.
    if partition.runs_doc_tests() {
        let mut doc = vec!["test", "--doc"];
        doc.extend(&cargo_args_with_scope);
        doc.push("--");
        doc.extend(&libtest_args);
        let status = cargo_status(ctx, &doc)?;
        if !status.success() {
            shard?;
            return Err(ChildFailed::from_status(status).into());
        }
    }
    shard
}

/// Whether `cargo test` arguments choose packages themselves; `--workspace` beside them would
/// select everything again.
fn names_a_package(cargo_args: &[String]) -> bool {
    cargo_args
        .iter()
        .take_while(|arg| *arg != "--")
        .any(|arg| arg == "-p" || arg.starts_with("--package"))
}

/// `testdb serve`, running beside the suite until its stdin is closed.
struct PoolFiller {
    child: Child,
}

impl PoolFiller {
    fn start(ctx: &Ctx) -> Result<PoolFiller> {
        let child = testdb_command(ctx, "serve")?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start testdb serve")?;
        Ok(PoolFiller { child })
    }

    /// Closes its stdin, which ends it once it has dropped what the tests finished with;
    /// returns what it did.
    fn stop(mut self) -> Result<String> {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + FILLER_STOP_TIMEOUT;
        while self
            .child
            .try_wait()
            .context("cannot wait for testdb serve")?
            .is_none()
        {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                bail!(
                    "testdb serve did not stop within {}s",
                    FILLER_STOP_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = self
            .child
            .wait_with_output()
            .context("cannot read what testdb serve did")?;
        if !output.status.success() {
            return Err(ChildFailed::from_status(output.status).into());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// `testdb <command>` (the `db-testing` crate's helper binary) on the target database, its
/// errors on our stderr.
fn testdb_command(ctx: &Ctx, command: &str) -> Result<std::process::Command> {
    let testdb = workspace_bin(ctx, "testdb")?;
    let mut cmd = std::process::Command::from(
        ctx.sh
            .cmd(testdb)
            .arg(command)
            .env(
                "DATABASE_URL",
                crate::tls::url_for_sqlx(ctx.cfg.url.as_str()),
            )
            .quiet(),
    );
    cmd.stderr(Stdio::inherit());
    Ok(cmd)
}

/// Runs `testdb <command>` and returns what it prints.
fn testdb(ctx: &Ctx, command: &str) -> Result<String> {
    let output = testdb_command(ctx, command)?
        .output()
        .with_context(|| format!("cannot run testdb {command}"))?;
    if !output.status.success() {
        return Err(ChildFailed::from_status(output.status).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn has_nextest(ctx: &Ctx) -> bool {
    crate::process::output(cargo(&ctx.sh).args(["nextest", "--version"]))
        .is_ok_and(|o| o.status.success())
}

/// Runs cargo with the target database in the environment, streaming its output.
fn cargo_status(ctx: &Ctx, args: &[&str]) -> Result<std::process::ExitStatus> {
    let cmd = cargo(&ctx.sh)
        .args(args)
        .env(
            "DATABASE_URL",
            crate::tls::url_for_sqlx(ctx.cfg.url.as_str()),
        )
        .quiet();
    ui::debug(format!("$ {cmd}"));
    std::process::Command::from(cmd)
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))
}
