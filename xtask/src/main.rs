//! `cargo xtask`: a real PostgreSQL with the current schema, and the real-database test suite.
//!
//! This file only parses the command line and dispatches; each command lives in its own module.

mod backend;
mod bench;
mod bins;
mod cli_args;
mod cluster_dir;
mod config;
mod context;
mod db_down;
mod db_dump;
mod db_lint;
mod db_logs;
mod db_migrate;
mod db_psql;
mod db_reset;
mod db_revision;
mod db_rollback;
mod db_status;
mod db_test;
mod db_up;
mod paths;
mod pg;
mod pg_install;
mod postmaster;
mod private_dir;
mod process;
mod scram;
mod state_lock;
mod test_shards;
mod tls;
mod ui;

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, error::ErrorKind};

use crate::{backend::BackendChoice, context::Ctx, paths::project_root};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Database operations for this workspace: PostgreSQL lifecycle, migrations and tests.",
    after_help = "Configuration comes from the environment, then .env, then the defaults in .env.template.\nSee MIGRATIONS.md for the workflows."
)]
struct Cli {
    /// Where PostgreSQL comes from: auto, docker, local or external [env: DB_BACKEND] [default: auto]
    #[arg(long, global = true, value_name = "BACKEND")]
    backend: Option<String>,

    /// Print the commands run and more detail.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Print only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start PostgreSQL unless it runs, and wait until it accepts an authenticated connection.
    #[command(after_help = "Example:\n  cargo xtask db-up --timeout 120")]
    DbUp(db_up::Args),
    /// Stop PostgreSQL, keeping its data unless --volumes is given.
    #[command(
        after_help = "Examples:\n  cargo xtask db-down\n  cargo xtask db-down --volumes   # deletes the data"
    )]
    DbDown(db_down::Args),
    /// Show the backend, whether the server answers, its version, and every migration's status.
    #[command(
        after_help = "Examples:\n  cargo xtask db-status\n  cargo xtask db-status --check   # exit 1 when a migration is pending"
    )]
    DbStatus(db_status::Args),
    /// Print the server's log.
    #[command(after_help = "Example:\n  cargo xtask db-logs -f")]
    DbLogs(db_logs::Args),
    /// Open psql on the target database (in the container, or with the local client).
    #[command(
        after_help = "Examples:\n  cargo xtask db-psql\n  cargo xtask db-psql -- -c 'select count(*) from projects'"
    )]
    DbPsql(db_psql::Args),
    /// Write db/schema.sql from a scratch database migrated to head, or check that it is current.
    #[command(
        after_help = "Examples:\n  cargo xtask db-dump\n  cargo xtask db-dump --check   # exit 1, with a diff, when db/schema.sql is stale"
    )]
    DbDump(db_dump::Args),
    /// Bring PostgreSQL up, then apply pending migrations.
    #[command(
        after_help = "Examples:\n  cargo xtask db-migrate\n  cargo xtask db-migrate --steps 1\n  cargo xtask db-migrate --dry-run   # print the SQL, change nothing"
    )]
    DbMigrate(db_migrate::Args),
    /// Lint the SQL of the pending migrations for schema changes that are unsafe on a live database.
    #[command(
        after_help = "Examples:\n  cargo xtask db-lint\n  cargo xtask db-lint --all           # every migration, from a scratch database\n  cargo xtask db-lint --format json   # machine-readable findings\nExit status 1 when a finding is not allowed by a `// db-lint: allow(<rule>) reason: <why>` comment."
    )]
    DbLint(db_lint::Args),
    /// Roll back the last applied migrations (one by default).
    #[command(
        after_help = "Examples:\n  cargo xtask db-rollback --steps 2\n  cargo xtask db-rollback --force   # required when the host is not local"
    )]
    DbRollback(db_rollback::Args),
    /// Drop everything in the database, then migrate from scratch.
    #[command(
        after_help = "Examples:\n  cargo xtask db-reset\n  cargo xtask db-reset --force   # required when the host is not local"
    )]
    DbReset(db_reset::Args),
    /// Create a new timestamped migration with SeaORM's generator and register it.
    #[command(after_help = "Example:\n  cargo xtask db-revision -m \"Add user table\"")]
    DbRevision(db_revision::Args),
    /// Run the whole test suite, each test on its own migrated database.
    #[command(
        after_help = "Examples:\n  cargo xtask db-test\n  cargo xtask db-test -- -E 'binary(projects_crud)'   # one test file; arguments go to the test runner"
    )]
    DbTest(db_test::Args),
    /// Measure per-test databases, local start-up and no-op migrations, and print a table.
    #[command(
        after_help = "Examples:\n  cargo xtask bench\n  cargo xtask bench --markdown   # also writes BENCHMARKS.md"
    )]
    Bench(bench::Args),
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(error) => {
            if let Some(code) = process::ChildFailed::exit_code(&error) {
                return code;
            }
            // `{:#}` keeps the whole chain on one line; the backtrace stays out.
            eprintln!("error: {}", config::redact_text(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("{}", ui::usage_error_line(&e));
            return Ok(ExitCode::from(2));
        }
    };
    ui::set_verbosity(cli.quiet, cli.verbose);
    let ctx = load_context()?;
    let choice = backend_choice(cli.backend.as_deref(), &ctx)?;
    match cli.command {
        Command::DbUp(args) => db_up::run(&ctx, choice, args),
        Command::DbDown(args) => db_down::run(&ctx, choice, args),
        Command::DbStatus(args) => db_status::run(&ctx, choice, args),
        Command::DbLogs(args) => db_logs::run(&ctx, choice, args),
        Command::DbPsql(args) => db_psql::run(&ctx, choice, args),
        Command::DbDump(args) => db_dump::run(&ctx, choice, args),
        Command::DbMigrate(args) => db_migrate::run(&ctx, choice, args),
        Command::DbLint(args) => db_lint::run(&ctx, choice, args),
        Command::DbRollback(args) => db_rollback::run(&ctx, choice, args),
        Command::DbReset(args) => db_reset::run(&ctx, choice, args),
        Command::DbRevision(args) => db_revision::run(&ctx, args),
        Command::DbTest(args) => db_test::run(&ctx, choice, args),
        Command::Bench(args) => bench::run(&ctx, choice, args),
    }
}

fn load_context() -> Result<Ctx> {
    let root = project_root();
    let sh = context::shell(&root)?;
    let cfg = config::Config::load(&root)?;
    Ok(Ctx { sh, cfg })
}

fn backend_choice(flag: Option<&str>, ctx: &Ctx) -> Result<BackendChoice> {
    let (name, origin) = match flag {
        Some(name) => (name.to_owned(), "--backend"),
        None => match ctx.cfg.lookup.value("DB_BACKEND") {
            Some(name) => (name, "DB_BACKEND"),
            None => return Ok(BackendChoice::Auto),
        },
    };
    match name.to_ascii_lowercase().as_str() {
        "auto" => Ok(BackendChoice::Auto),
        "docker" => Ok(BackendChoice::Docker),
        "local" => Ok(BackendChoice::Local),
        "external" => Ok(BackendChoice::External),
        _ => bail!("unknown backend {name:?} in {origin}: use auto, docker, local or external"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_an_example() {
        use clap::CommandFactory;
        for sub in Cli::command().get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("cargo xtask"),
                "{} has no example",
                sub.get_name()
            );
        }
    }
}
