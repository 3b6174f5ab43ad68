//! `cargo xtask db-test`: the whole test suite, each test on its own database cloned from a migrated template.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, Result};

use crate::{
    backend::{BackendChoice, lifecycle::test_server},
    bins::{cargo, workspace_bin},
    context::Ctx,
    process::ChildFailed,
    ui,
};

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

/// Runs `testdb <command>` (the `db-testing` crate's helper binary) and returns what it prints.
fn testdb(ctx: &Ctx, command: &str) -> Result<String> {
    let testdb = workspace_bin(ctx, "testdb")?;
    let output = std::process::Command::from(
        ctx.sh
            .cmd(testdb)
            .arg(command)
            .env(
                "DATABASE_URL",
                crate::tls::url_for_sqlx(ctx.cfg.url.as_str()),
            )
            .quiet(),
    )
    .stderr(std::process::Stdio::inherit())
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
