//! The migration command line, compatible with `sea-orm-cli migrate -d migration`: parses the
//! arguments, takes the migration lock for every schema change, and turns any failure into one
//! line on stderr with the password masked.

use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, SecondsFormat};
use clap::{Parser, Subcommand};
use dbops_common::redact::scrub_password;
use dbops_common::text::one_line;
use sea_orm::DatabaseConnection;
use sea_orm::sqlx::Connection as _;
use sea_orm_migration::MigratorTrait;

use crate::checksum;
use crate::connect::{connect, open_session};
use crate::dry_run::preview_pending;
use crate::failure::database_failure;
use crate::lint::{Format, lint};
use crate::lock::{MigrationLock, lock_timeout};
use crate::runner::{apply_pending, fresh, roll_back, roll_back_all};
use crate::states::{
    EditedMigrations, EditedRefusal, SourceCheck, migration_states, refuse_edited,
};

/// `init` and `generate` work on the crate in the current directory, as `sea-orm-cli` expects.
const MIGRATION_DIR: &str = "./";

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Apply, roll back and inspect the database migrations"
)]
pub struct Cli {
    #[arg(short = 'v', long, global = true, help = "Show debug messages")]
    verbose: bool,

    #[arg(
        global = true,
        short = 's',
        long,
        env = "DATABASE_SCHEMA",
        help = "Database schema (default: public)"
    )]
    database_schema: Option<String>,

    // Hidden from --help because the value carries the password.
    #[arg(
        global = true,
        short = 'u',
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        help = "Database URL"
    )]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Option<MigrateCommand>,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum MigrateCommand {
    #[command(about = "Initialize migration directory", display_order = 10)]
    Init,
    #[command(about = "Generate a new, empty migration", display_order = 20)]
    Generate {
        #[arg(required = true, help = "Name of the new migration")]
        migration_name: String,
        #[arg(
            long,
            default_value = "true",
            help = "Generate migration file based on Utc time",
            conflicts_with = "local_time",
            display_order = 1001
        )]
        universal_time: bool,
        #[arg(
            long,
            help = "Generate migration file based on Local time",
            conflicts_with = "universal_time",
            display_order = 1002
        )]
        local_time: bool,
    },
    #[command(
        about = "Drop all tables from the database, then reapply all migrations",
        display_order = 30
    )]
    Fresh,
    #[command(
        about = "Rollback all applied migrations, then reapply all migrations",
        display_order = 40
    )]
    Refresh {
        #[arg(
            long,
            help = "Roll back migrations that were edited since they were applied, running their current down"
        )]
        accept_changed: bool,
    },
    #[command(about = "Rollback all applied migrations", display_order = 50)]
    Reset {
        #[arg(
            long,
            help = "Roll back migrations that were edited since they were applied, running their current down"
        )]
        accept_changed: bool,
    },
    #[command(about = "Check the status of all migrations", display_order = 60)]
    Status {
        #[arg(
            long,
            help = "Exit with status 1 when any migration is pending or was edited after it was applied"
        )]
        check: bool,
    },
    #[command(about = "Apply pending migrations", display_order = 70)]
    Up {
        #[arg(short, long, help = "Number of pending migrations to apply")]
        num: Option<u32>,
        #[arg(
            long,
            help = "Re-record the checksums of applied migrations that were edited since (local development only)"
        )]
        accept_changed: bool,
        #[arg(
            long,
            help = "Print the SQL the pending migrations run, from a run that is rolled back; change nothing"
        )]
        dry_run: bool,
    },
    #[command(
        about = "Lint the SQL of the pending migrations (from a rolled-back run) for unsafe schema changes",
        display_order = 75
    )]
    Lint {
        #[arg(
            long,
            help = "Lint every migration, dry-run from this database, which must be empty"
        )]
        all: bool,
        #[arg(long, value_enum, default_value_t, help = "How to print the findings")]
        format: Format,
    },
    #[command(about = "Rollback applied migrations", display_order = 80)]
    Down {
        #[arg(
            short,
            long,
            default_value = "1",
            help = "Number of applied migrations to be rolled back",
            display_order = 90
        )]
        num: u32,
        #[arg(
            long,
            help = "Roll back migrations that were edited since they were applied, running their current down"
        )]
        accept_changed: bool,
    },
}

/// Entry point of the migration binary: runs the command line for `M` and turns
/// any failure into one redacted line on stderr and exit status 1.
pub async fn run_cli<M: MigratorTrait>() -> ExitCode {
    dotenvy::dotenv().ok();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let url = cli.database_url.clone();
    match run::<M>(cli).await {
        Ok(exit_code) => exit_code,
        Err(error) => {
            let message = one_line(&format!("{error:#}"));
            let message = match &url {
                Some(url) => scrub_password(&message, url),
                None => message,
            };
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run<M: MigratorTrait>(cli: Cli) -> Result<ExitCode> {
    let command = cli.command.unwrap_or(MigrateCommand::Up {
        num: None,
        accept_changed: false,
        dry_run: false,
    });
    if let Some(exit_code) = run_without_database(&command)? {
        return Ok(exit_code);
    }

    let url = cli
        .database_url
        .filter(|url| !url.trim().is_empty())
        .ok_or_else(|| {
            anyhow!(
                "DATABASE_URL is not set: export DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT/DATABASE or pass -u (a local server: `cargo xtask db-up`)"
            )
        })?;
    dbops_connect::validate_url(&url).map_err(anyhow::Error::msg)?;
    let schema = cli.database_schema.unwrap_or_else(|| "public".to_owned());
    // A single direct connection first: unlike the pool, which retries until its
    // timeout, it reports why the server cannot be reached.
    let session = open_session(&url).await?;

    let (db, outcome) = match command {
        MigrateCommand::Status { check } => {
            session.close().await.ok();
            let db = connect(&url, &schema, cli.verbose).await?;
            let outcome = status::<M>(&db, check).await;
            (db, outcome)
        }
        schema_change => {
            let lock = MigrationLock::acquire(session, lock_timeout()?).await?;
            // A dry run learns what ran from sqlx's statement log, which is only written when enabled.
            let log_statements = cli.verbose
                || matches!(
                    schema_change,
                    MigrateCommand::Up { dry_run: true, .. } | MigrateCommand::Lint { .. }
                );
            let db = connect(&url, &schema, log_statements).await?;
            let outcome = match schema_change {
                MigrateCommand::Lint { all, format } => lint::<M>(&db, all, format).await,
                schema_change => change_schema::<M>(&db, schema_change)
                    .await
                    .map(|()| ExitCode::SUCCESS),
            };
            lock.release().await;
            (db, outcome)
        }
    };
    db.close().await.ok();
    outcome
}

/// Runs the commands that need no database (`init`, `generate`) and refuses arguments that would
/// do nothing; `None` when `command` is for the database.
fn run_without_database(command: &MigrateCommand) -> Result<Option<ExitCode>> {
    match command {
        MigrateCommand::Init => {
            sea_orm_cli::run_migrate_init(MIGRATION_DIR)
                .map_err(|e| anyhow!("cannot initialise the migration directory: {e}"))?;
            Ok(Some(ExitCode::SUCCESS))
        }
        MigrateCommand::Generate {
            migration_name,
            local_time,
            ..
        } => {
            sea_orm_cli::run_migrate_generate(MIGRATION_DIR, migration_name, !local_time).map_err(
                |e| anyhow!("cannot generate migration {migration_name:?}: {e} — run it from the migration crate's directory"),
            )?;
            Ok(Some(ExitCode::SUCCESS))
        }
        MigrateCommand::Up { num: Some(0), .. } => bail!(
            "`up -n 0` would apply nothing: pass -n 1 or more, or leave out -n to apply every pending migration"
        ),
        MigrateCommand::Up {
            accept_changed: true,
            dry_run: true,
            ..
        } => bail!(
            "`up --dry-run --accept-changed` cannot be combined: a dry run changes nothing, so run `up --accept-changed` on its own first"
        ),
        MigrateCommand::Down { num: 0, .. } => {
            bail!("`down -n 0` would roll back nothing: pass -n 1 or more")
        }
        _ => Ok(None),
    }
}

async fn change_schema<M: MigratorTrait>(
    db: &DatabaseConnection,
    command: MigrateCommand,
) -> Result<()> {
    match command {
        MigrateCommand::Up {
            num, dry_run: true, ..
        } => preview_pending::<M>(db, num).await,
        MigrateCommand::Up {
            num,
            accept_changed,
            dry_run: false,
        } => apply_pending::<M>(db, num, EditedMigrations::from_flag(accept_changed))
            .await
            .map(drop),
        MigrateCommand::Down {
            num,
            accept_changed,
        } => roll_back::<M>(db, num, EditedMigrations::from_flag(accept_changed))
            .await
            .map(drop),
        MigrateCommand::Reset { accept_changed } => {
            roll_back_all::<M>(db, EditedMigrations::from_flag(accept_changed)).await?;
            M::uninstall(db).await.map_err(database_failure)?;
            checksum::drop_checksum_table(db)
                .await
                .map_err(database_failure)
        }
        MigrateCommand::Refresh { accept_changed } => {
            roll_back_all::<M>(db, EditedMigrations::from_flag(accept_changed)).await?;
            // Everything was rolled back, so no applied migration is left to have been edited.
            apply_pending::<M>(db, None, EditedMigrations::Refuse)
                .await
                .map(drop)
        }
        MigrateCommand::Fresh => fresh::<M>(db).await.map(drop),
        MigrateCommand::Init
        | MigrateCommand::Generate { .. }
        | MigrateCommand::Status { .. }
        | MigrateCommand::Lint { .. } => Ok(()),
    }
}

/// Prints `applied <name> <RFC 3339 UTC>` or `pending <name>` for every migration, the applied
/// line followed by ` CHANGED since it was applied` when its source was edited since, or by
/// ` (no checksum recorded)` when it was applied before checksums were recorded. With `check`,
/// exits 1 when any migration is pending or was edited.
async fn status<M: MigratorTrait>(db: &DatabaseConnection, check: bool) -> Result<ExitCode> {
    let states = migration_states::<M>(db).await?;
    for state in &states {
        match state.applied_at {
            Some(applied_at) => {
                let applied_at = DateTime::from_timestamp(applied_at, 0).map_or_else(
                    || applied_at.to_string(),
                    |at| at.to_rfc3339_opts(SecondsFormat::Secs, true),
                );
                let marker = match state.source {
                    Some(SourceCheck::Changed) => " CHANGED since it was applied",
                    Some(SourceCheck::NotRecorded) => " (no checksum recorded)",
                    _ => "",
                };
                println!("applied {} {applied_at}{marker}", state.name);
            }
            None => println!("pending {}", state.name),
        }
    }
    if !check {
        return Ok(ExitCode::SUCCESS);
    }
    if let Err(edited) = refuse_edited(&states, EditedRefusal::BuildOn) {
        eprintln!("error: {edited}");
        return Ok(ExitCode::FAILURE);
    }
    let pending = states
        .iter()
        .filter(|state| state.applied_at.is_none())
        .count();
    if pending > 0 {
        eprintln!(
            "error: {pending} migration(s) pending: apply them with `cargo xtask db-migrate`"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(verbose: bool) {
    if !verbose {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
