//! The migration command line: parses arguments, serialises schema changes behind a
//! PostgreSQL advisory lock, reports every migration applied or rolled back, refuses to
//! build on applied migrations whose source was edited since or to roll them back, and
//! previews pending ones.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, SecondsFormat};
use clap::{Parser, Subcommand};
use sea_orm::sqlx::{self, Connection as _, PgConnection};
use sea_orm::{
    ConnAcquireErr, ConnectOptions, Database, DatabaseConnection, DbErr, EntityTrait, QueryOrder,
    RuntimeErr,
};
use sea_orm_migration::{MigrationTrait, MigratorTrait, SchemaManager, seaql_migrations};

use crate::checksum::{self, WithChecksums};
use crate::dry_run::{self, DryRunReport};
use crate::redact::{redact_url, scrub_password};

/// `init` and `generate` work on the crate in the current directory, as `sea-orm-cli` expects.
const MIGRATION_DIR: &str = "./";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_LOCK_TIMEOUT_SECS: u64 = 60;
const LOCK_TIMEOUT_ENV: &str = "MIGRATION_LOCK_TIMEOUT";
// One key per database: runs against different databases never wait for each other.
const TRY_LOCK_SQL: &str =
    "SELECT pg_try_advisory_lock(hashtext('seaql_migrations:' || current_database()))";
const LOCK_SQL: &str =
    "SELECT pg_advisory_lock(hashtext('seaql_migrations:' || current_database()))";

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
    match &command {
        MigrateCommand::Init => {
            sea_orm_cli::run_migrate_init(MIGRATION_DIR)
                .map_err(|e| anyhow!("cannot initialise the migration directory: {e}"))?;
            return Ok(ExitCode::SUCCESS);
        }
        MigrateCommand::Generate {
            migration_name,
            local_time,
            ..
        } => {
            sea_orm_cli::run_migrate_generate(MIGRATION_DIR, migration_name, !local_time).map_err(
                |e| anyhow!("cannot generate migration {migration_name:?}: {e} — run it from the migration crate's directory"),
            )?;
            return Ok(ExitCode::SUCCESS);
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
        _ => {}
    }

    let url = cli
        .database_url
        .filter(|url| !url.trim().is_empty())
        .ok_or_else(|| {
            anyhow!(
                "DATABASE_URL is not set: export DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT/DATABASE or pass -u (a local server: `cargo xtask db-up`)"
            )
        })?;
    validate_url(&url)?;
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
            let log_statements =
                cli.verbose || matches!(schema_change, MigrateCommand::Up { dry_run: true, .. });
            let db = connect(&url, &schema, log_statements).await?;
            let outcome = change_schema::<M>(&db, schema_change).await;
            lock.release().await;
            (db, outcome.map(|()| ExitCode::SUCCESS))
        }
    };
    db.close().await.ok();
    outcome
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
        MigrateCommand::Init | MigrateCommand::Generate { .. } | MigrateCommand::Status { .. } => {
            Ok(())
        }
    }
}

/// Checks the URL before any driver sees it, so a typo gets a clear message
/// (and some drivers quote the whole URL, password included, in their errors).
pub fn validate_url(url: &str) -> Result<()> {
    const EXPECTED: &str = "expected postgres://USER:PASSWORD@HOST:PORT/DATABASE";
    let parsed = url::Url::parse(url).map_err(|e| {
        anyhow!(
            "DATABASE_URL {} is malformed ({e}): {EXPECTED}",
            redact_url(url)
        )
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        bail!(
            "DATABASE_URL {} is not a PostgreSQL URL: {EXPECTED}",
            redact_url(url)
        );
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        bail!("DATABASE_URL {} names no host: {EXPECTED}", redact_url(url));
    }
    Ok(())
}

async fn connect(url: &str, schema: &str, verbose: bool) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url);
    options
        .set_schema_search_path(schema)
        .max_connections(2)
        .min_connections(0)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(verbose);
    // The pool's own timeouts cover connecting; this bounds DNS and TLS stalls too.
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, Database::connect(options)).await {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) => Err(anyhow!(describe_connect_error(url, &error))),
        Err(_) => Err(anyhow!(
            "cannot connect to {}: timed out after {}s — start it with `cargo xtask db-up`",
            redact_url(url),
            (CONNECT_TIMEOUT * 2).as_secs()
        )),
    }
}

/// One line saying why connecting to `url` failed and what to do about it, password redacted.
pub fn describe_connect_error(url: &str, error: &DbErr) -> String {
    let target = redact_url(url);
    let explanation = match error {
        DbErr::Conn(RuntimeErr::SqlxError(sqlx_error))
        | DbErr::Exec(RuntimeErr::SqlxError(sqlx_error))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx_error)) => explain_sqlx_error(sqlx_error),
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => {
            "timed out — start it with `cargo xtask db-up`".to_owned()
        }
        other => format!("{other} — check DATABASE_URL"),
    };
    scrub_password(
        &one_line(&format!("cannot connect to {target}: {explanation}")),
        url,
    )
}

/// What a driver error means for someone connecting, and what to do about it (one line).
pub fn explain_sqlx_error(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) => format!("{io} — start it with `cargo xtask db-up`"),
        sqlx::Error::PoolTimedOut => "timed out — start it with `cargo xtask db-up`".to_owned(),
        sqlx::Error::Tls(tls) => format!("TLS failed ({tls}) — check sslmode in DATABASE_URL"),
        sqlx::Error::Database(database) => match database.code().as_deref() {
            Some("28P01" | "28000") => format!(
                "{} — check the user and password in DATABASE_URL",
                database.message()
            ),
            Some("3D000") => format!(
                "{} — create it or fix the database name in DATABASE_URL",
                database.message()
            ),
            _ => format!("{} — check DATABASE_URL", database.message()),
        },
        other => format!("{other} — check DATABASE_URL"),
    }
}

fn lock_timeout() -> Result<Duration> {
    match std::env::var(LOCK_TIMEOUT_ENV) {
        Err(_) => Ok(Duration::from_secs(DEFAULT_LOCK_TIMEOUT_SECS)),
        Ok(value) => value.trim().parse::<u64>().map(Duration::from_secs).map_err(|_| {
            anyhow!("{LOCK_TIMEOUT_ENV}={value:?} is not a whole number of seconds: set it to e.g. 60, or unset it")
        }),
    }
}

/// One direct connection to `url`, with a bounded connect time.
async fn open_session(url: &str) -> Result<PgConnection> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => bail!(
            "cannot connect to {}: {}",
            redact_url(url),
            explain_sqlx_error(&error)
        ),
        Err(_) => bail!(
            "cannot connect to {}: timed out after {}s — start it with `cargo xtask db-up`",
            redact_url(url),
            CONNECT_TIMEOUT.as_secs()
        ),
    }
}

/// A session-level advisory lock on its own connection: it is held until
/// [`MigrationLock::release`] or until the process dies and the server drops the session.
struct MigrationLock {
    connection: PgConnection,
}

impl MigrationLock {
    async fn acquire(mut connection: PgConnection, timeout: Duration) -> Result<Self> {
        let acquired: bool = sqlx::query_scalar(TRY_LOCK_SQL)
            .fetch_one(&mut connection)
            .await
            .map_err(|e| anyhow!("cannot take the migration lock: {e}"))?;
        if acquired {
            return Ok(Self { connection });
        }

        eprintln!("waiting for the migration lock held by another run…");
        let timed_out = || {
            anyhow!(
                "gave up after {}s waiting for the migration lock held by another run: let it finish, or raise {LOCK_TIMEOUT_ENV} (seconds)",
                timeout.as_secs()
            )
        };
        if timeout.is_zero() {
            return Err(timed_out());
        }
        // lock_timeout bounds the wait on the server side, so no polling is needed;
        // it is capped at what the setting accepts (about 24 days).
        let timeout_ms = timeout.as_millis().min(i32::MAX as u128);
        sqlx::query("SELECT set_config('lock_timeout', $1, false)")
            .bind(format!("{timeout_ms}ms"))
            .execute(&mut connection)
            .await
            .map_err(|e| anyhow!("cannot set lock_timeout for the migration lock: {e}"))?;
        match sqlx::query(LOCK_SQL).execute(&mut connection).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                return Err(timed_out());
            }
            Err(e) => bail!("cannot take the migration lock: {e}"),
        }
        sqlx::query("RESET lock_timeout")
            .execute(&mut connection)
            .await
            .map_err(|e| {
                anyhow!("cannot reset lock_timeout after taking the migration lock: {e}")
            })?;
        Ok(Self { connection })
    }

    /// Ending the session releases the lock, even if unlocking were to fail.
    async fn release(self) {
        self.connection.close().await.ok();
    }
}

/// A migration this crate knows, with when it was applied (unix seconds), if it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied_at: Option<i64>,
    /// How its source compares with what was applied; `None` while it is pending.
    pub source: Option<SourceCheck>,
}

/// How an applied migration's source compares with the checksum recorded when it was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceCheck {
    /// The source is the one that was applied.
    Unchanged,
    /// The source was edited after it was applied.
    Changed,
    /// Applied before checksums were recorded; the next `up` records it.
    NotRecorded,
    /// Not a migration file of this crate (e.g. defined in a test), so there is nothing to compare.
    NoSource,
}

/// What `up` and `down` do about applied migrations whose source was edited since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditedMigrations {
    /// Fail, naming them: the database no longer matches what the migrations say.
    Refuse,
    /// Carry on (`--accept-changed`, local development only): `up` records their current
    /// checksums; `down` runs their current `down`, and forgets their checksums as always.
    Accept,
}

impl EditedMigrations {
    /// `Accept` when `--accept-changed` was passed.
    pub fn from_flag(accept_changed: bool) -> Self {
        if accept_changed {
            Self::Accept
        } else {
            Self::Refuse
        }
    }
}

/// What a run was about to do with edited migrations when it refused, which decides the remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EditedRefusal {
    /// Build on them (`up`, `status --check`): the edit belongs in a new migration.
    BuildOn,
    /// Run their `down`, which may no longer undo what their `up` did when it was applied.
    RollBack,
}

/// The state of every migration of `M`, in order, without creating anything.
///
/// Fails when the database records migrations `M` does not have: that database
/// was migrated by a newer checkout, and running this one against it would be a guess.
pub async fn migration_states<M: MigratorTrait>(
    db: &DatabaseConnection,
) -> Result<Vec<MigrationState>> {
    let manager = SchemaManager::new(db);
    let recorded = if manager
        .has_table("seaql_migrations")
        .await
        .map_err(database_failure)?
    {
        seaql_migrations::Entity::find()
            .order_by_asc(seaql_migrations::Column::Version)
            .all(db)
            .await
            .map_err(database_failure)?
    } else {
        Vec::new()
    };
    let recorded_checksums = checksum::recorded_checksums(db)
        .await
        .map_err(database_failure)?;

    let known: Vec<String> = M::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    let unknown: Vec<&str> = recorded
        .iter()
        .filter(|record| !known.contains(&record.version))
        .map(|record| record.version.as_str())
        .collect();
    if !unknown.is_empty() {
        bail!(
            "the database has applied {} which this checkout does not have: the database is ahead of this checkout — pull, or check out the branch that has it",
            unknown.join(", ")
        );
    }

    Ok(known
        .into_iter()
        .map(|name| {
            let applied_at = recorded
                .iter()
                .find(|record| record.version == name)
                .map(|record| record.applied_at);
            let source = applied_at.map(|_| {
                match (
                    checksum::source_checksum(&name),
                    recorded_checksums.get(&name),
                ) {
                    (None, _) => SourceCheck::NoSource,
                    (Some(_), None) => SourceCheck::NotRecorded,
                    (Some(source), Some(recorded)) if source == recorded => SourceCheck::Unchanged,
                    (Some(_), Some(_)) => SourceCheck::Changed,
                }
            });
            MigrationState {
                name,
                applied_at,
                source,
            }
        })
        .collect())
}

/// Applies up to `limit` pending migrations (all when `None`), one transaction
/// each, printing `applied <name>` after each; returns the names applied.
///
/// First it deals with applied migrations edited since (see [`EditedMigrations`]) and records
/// the checksums of those applied before checksums existed. Each migration's checksum is
/// recorded in the migration's own transaction. The caller must hold the migration lock.
pub async fn apply_pending<M: MigratorTrait>(
    db: &DatabaseConnection,
    limit: Option<u32>,
    edited: EditedMigrations,
) -> Result<Vec<String>> {
    M::install(db).await.map_err(database_failure)?;
    let states = migration_states::<M>(db).await?;
    if edited == EditedMigrations::Refuse {
        refuse_edited(&states, EditedRefusal::BuildOn)?;
    }
    record_missing_checksums(db, &states).await?;

    let pending: Vec<String> = states
        .into_iter()
        .filter(|state| state.applied_at.is_none())
        .map(|state| state.name)
        .take(limit.map_or(usize::MAX, |limit| limit as usize))
        .collect();
    if pending.is_empty() {
        println!("nothing to apply");
    }
    for name in &pending {
        // One step at a time applies exactly the first pending migration, `name`,
        // so a failure can be pinned on it.
        WithChecksums::<M>::up(db, Some(1))
            .await
            .map_err(|error| migration_failure::<M>(name, "apply", &error))?;
        println!("applied {name}");
    }
    Ok(pending)
}

/// Fails with one line naming every migration of `states` whose source was edited since it was
/// applied, and saying what to do before doing `refusal` again.
fn refuse_edited(states: &[MigrationState], refusal: EditedRefusal) -> Result<()> {
    let edited: Vec<&str> = states
        .iter()
        .filter(|state| state.source == Some(SourceCheck::Changed))
        .map(|state| state.name.as_str())
        .collect();
    match (edited.as_slice(), refusal) {
        ([], _) => Ok(()),
        ([name], EditedRefusal::BuildOn) => bail!(
            "migration {name} was edited after it was applied here: revert the edit and put the change in a new migration (cargo xtask db-revision), or, for local development only, re-record it with --accept-changed"
        ),
        (names, EditedRefusal::BuildOn) => bail!(
            "migrations {} were edited after they were applied here: revert the edits and put the changes in new migrations (cargo xtask db-revision), or, for local development only, re-record them with --accept-changed",
            names.join(", ")
        ),
        ([name], EditedRefusal::RollBack) => bail!(
            "migration {name} was edited after it was applied here, so its down may not undo what was applied: restore the file as it was when applied, or, if the edit is intended, pass --accept-changed"
        ),
        (names, EditedRefusal::RollBack) => bail!(
            "migrations {} were edited after they were applied here, so their down may not undo what was applied: restore the files as they were when applied, or, if the edits are intended, pass --accept-changed",
            names.join(", ")
        ),
    }
}

/// Records the current checksum of every applied migration that has none or an outdated one
/// (the caller has already refused the outdated ones unless they are to be accepted).
async fn record_missing_checksums(
    db: &DatabaseConnection,
    states: &[MigrationState],
) -> Result<()> {
    for state in states {
        let verb = match state.source {
            Some(SourceCheck::Changed) => "re-recorded",
            Some(SourceCheck::NotRecorded) => "recorded",
            _ => continue,
        };
        let Some(source) = checksum::source_checksum(&state.name) else {
            continue;
        };
        checksum::record_checksum(db, &state.name, source)
            .await
            .map_err(database_failure)?;
        println!("{verb} checksum of {}", state.name);
    }
    Ok(())
}

/// Prints the SQL the next `limit` pending migrations (all when `None`) would run, from a run in a
/// transaction that is rolled back. Refuses, as `up` would, while an applied migration was edited.
/// `db` must log statements (see [`dry_run::execute_and_roll_back`]); the caller must hold the
/// migration lock, so that no other run changes the schema under the preview.
async fn preview_pending<M: MigratorTrait>(
    db: &DatabaseConnection,
    limit: Option<u32>,
) -> Result<()> {
    let states = migration_states::<M>(db).await?;
    refuse_edited(&states, EditedRefusal::BuildOn)?;
    let pending: Vec<String> = states
        .into_iter()
        .filter(|state| state.applied_at.is_none())
        .map(|state| state.name)
        .take(limit.map_or(usize::MAX, |limit| limit as usize))
        .collect();
    if pending.is_empty() {
        println!("nothing to apply");
        return Ok(());
    }
    let migrations: Vec<Box<dyn MigrationTrait>> = M::migrations()
        .into_iter()
        .filter(|migration| pending.iter().any(|name| name == migration.name()))
        .collect();
    let executed = dry_run::execute_and_roll_back(db, &migrations).await?;
    print!("{}", DryRunReport(&executed));
    Ok(())
}

/// Rolls back the last `count` applied migrations, newest first, printing
/// `rolled back <name>` after each and forgetting its checksum. The caller must hold the migration lock.
///
/// Before rolling back anything it deals with those of them whose source was edited since they
/// were applied (see [`EditedMigrations`]): their `down` is not the one that matches what was
/// applied. Edited migrations it does not roll back are left to `up` and `status --check`.
pub async fn roll_back<M: MigratorTrait>(
    db: &DatabaseConnection,
    count: u32,
    edited: EditedMigrations,
) -> Result<Vec<String>> {
    let applied: Vec<MigrationState> = migration_states::<M>(db)
        .await?
        .into_iter()
        .filter(|state| state.applied_at.is_some())
        .collect();
    if count as usize > applied.len() {
        bail!("cannot roll back {count}: only {} applied", applied.len());
    }
    let to_roll_back: Vec<MigrationState> =
        applied.into_iter().rev().take(count as usize).collect();
    if edited == EditedMigrations::Refuse {
        refuse_edited(&to_roll_back, EditedRefusal::RollBack)?;
    }
    let to_roll_back: Vec<String> = to_roll_back.into_iter().map(|state| state.name).collect();
    for name in &to_roll_back {
        WithChecksums::<M>::down(db, Some(1))
            .await
            .map_err(|error| migration_failure::<M>(name, "roll back", &error))?;
        println!("rolled back {name}");
    }
    Ok(to_roll_back)
}

async fn roll_back_all<M: MigratorTrait>(
    db: &DatabaseConnection,
    edited: EditedMigrations,
) -> Result<Vec<String>> {
    let applied_count = migration_states::<M>(db)
        .await?
        .iter()
        .filter(|state| state.applied_at.is_some())
        .count();
    if applied_count == 0 {
        println!("nothing to roll back");
        return Ok(Vec::new());
    }
    roll_back::<M>(db, u32::try_from(applied_count).unwrap_or(u32::MAX), edited).await
}

/// Drops every table and type in the schema (SeaORM's `fresh`; the checksum table goes too),
/// then applies everything, recording each checksum afresh.
async fn fresh<M: MigratorTrait>(db: &DatabaseConnection) -> Result<Vec<String>> {
    if let Err(error) = WithChecksums::<M>::fresh(db).await {
        let failed = migration_states::<M>(db)
            .await
            .ok()
            .and_then(|states| states.into_iter().find(|state| state.applied_at.is_none()));
        return Err(match failed {
            Some(state) => migration_failure::<M>(&state.name, "apply", &error),
            None => anyhow!("fresh failed: {error}"),
        });
    }
    println!("dropped all tables");
    let applied: Vec<String> = migration_states::<M>(db)
        .await?
        .into_iter()
        .map(|state| state.name)
        .collect();
    for name in &applied {
        println!("applied {name}");
    }
    Ok(applied)
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

fn migration_failure<M: MigratorTrait>(name: &str, action: &str, error: &DbErr) -> anyhow::Error {
    let transactional = M::migrations()
        .iter()
        .find(|migration| migration.name() == name)
        .is_none_or(|migration| migration.use_transaction() != Some(false));
    let aftermath = if transactional {
        "its transaction was rolled back, so nothing of it was kept"
    } else {
        "it runs outside a transaction, so check for partial changes"
    };
    anyhow!(
        "migration {name} failed to {action}: {} ({aftermath}) — fix the migration and run again",
        one_line(&error.to_string())
    )
}

fn database_failure(error: DbErr) -> anyhow::Error {
    anyhow!("database error: {}", one_line(&error.to_string()))
}

/// Collapses a possibly multi-line message (e.g. from PostgreSQL) into one line.
pub(crate) fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
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
