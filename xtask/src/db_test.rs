//! `cargo xtask db-test`: the whole test suite, each test on its own database cloned from a migrated template.

use std::{
    process::{Child, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    backend::{BackendChoice, lifecycle::test_server},
    bins::{cargo, workspace_bin},
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

    /// Arguments for the test runner (cargo nextest run, or cargo test), after `--`.
    #[arg(last = true)]
    pub runner_args: Vec<String>,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    let test_server = test_server(ctx, choice, args.timeout)?;
    let ctx = test_server.as_ref().unwrap_or(ctx);
    let nextest = has_nextest(ctx);
    let runner = if nextest {
        "cargo nextest run"
    } else {
        "cargo test (cargo-nextest is not installed)"
    };

    ui::info("building the workspace's tests");
    let build: &[&str] = if nextest {
        &["nextest", "run", "--workspace", "--no-run"]
    } else {
        &["test", "--workspace", "--no-run"]
    };
    if !cargo_status(ctx, build)?.success() {
        return Ok(ExitCode::FAILURE);
    }

    ui::info("preparing the template database");
    let template = testdb(ctx, "prepare")?;
    ui::info(format!("template database: {}", template.trim()));

    // nextest does not run doc tests, so they run first, and the suite's summary stays the
    // last thing printed; with runner arguments the user asked for a subset.
    let mut doc_tests = None;
    if nextest && args.runner_args.is_empty() {
        ui::info("running the doc tests");
        doc_tests = Some(cargo_status(ctx, &["test", "--workspace", "--doc"])?);
    }
    // Drops finished test databases and refills the pool beside the suite, off the tests' path.
    let filler = PoolFiller::start(ctx)?;
    ui::info(format!("running the suite with {runner}"));
    let mut suite: Vec<&str> = if nextest {
        vec!["nextest", "run", "--workspace"]
    } else {
        vec!["test", "--workspace"]
    };
    suite.extend(args.runner_args.iter().map(String::as_str));
    let suite_status = cargo_status(ctx, &suite)?;
    let status = doc_tests
        .filter(|doc| !doc.success())
        .unwrap_or(suite_status);
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
    if status.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(ChildFailed::from_status(status).into())
    }
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
