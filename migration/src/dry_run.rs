//! `up --dry-run`: runs pending migrations in one transaction that is then rolled back, and
//! reports the SQL each of them executed.
//!
//! A rolled-back real run is exact, because PostgreSQL's DDL is transactional: every statement a
//! migration sends is seen, including the ones its code builds at run time. Statements are taken
//! from sqlx's statement log (target `sqlx::query`), the one place every statement passes through,
//! including those sent with `execute_unprepared`, which SeaORM's metric callback never sees. The
//! metric callback is used as well, because it knows the parameter values of prepared statements,
//! which sqlx's log leaves as `$1`, `$2`, ….

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Result, anyhow};
use dbops_common::text::one_line;
use sea_orm::{DatabaseConnection, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait, SchemaManager};
use tracing::field::{Field, Visit};
use tracing::instrument::WithSubscriber;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::states::{EditedRefusal, migration_states, pending, refuse_edited};

const SQLX_QUERY_TARGET: &str = "sqlx::query";

/// One migration of a dry run and the statements it executed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutedMigration {
    pub name: String,
    pub statements: Vec<String>,
}

/// Prints the SQL the next `limit` pending migrations (all when `None`) would run, from a run in a
/// transaction that is rolled back. Refuses, as `up` would, while an applied migration was edited.
/// `db` must log statements (see [`execute_and_roll_back`]); the caller must hold the migration
/// lock, so that no other run changes the schema under the preview.
pub(crate) async fn preview_pending<M: MigratorTrait>(
    db: &DatabaseConnection,
    limit: Option<u32>,
) -> Result<()> {
    let states = migration_states::<M>(db).await?;
    refuse_edited(&states, EditedRefusal::BuildOn)?;
    let pending = pending(states, limit);
    if pending.is_empty() {
        println!("nothing to apply");
        return Ok(());
    }
    let migrations: Vec<Box<dyn MigrationTrait>> = M::migrations()
        .into_iter()
        .filter(|migration| pending.iter().any(|name| name == migration.name()))
        .collect();
    let executed = execute_and_roll_back(db, &migrations).await?;
    print!("{}", DryRunReport(&executed));
    Ok(())
}

/// Runs `migrations` in order inside one transaction, rolls it back, and returns what each executed.
///
/// `db` must have been opened with `sqlx_logging(true)`: sqlx only logs statements, which is how
/// they are captured, on connections configured to.
pub async fn execute_and_roll_back(
    db: &DatabaseConnection,
    migrations: &[Box<dyn MigrationTrait>],
) -> Result<Vec<ExecutedMigration>> {
    let prepared = PreparedStatements::default();
    let mut capturing = db.clone();
    let sink = prepared.clone();
    capturing.set_metric_callback(move |info| {
        if info.statement.values.is_some() {
            sink.push(info.statement.sql.clone(), info.statement.to_string());
        }
    });
    let logged = LoggedStatements::default();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(logged.clone()));
    // All of the run happens with the capturing subscriber current: while it is the only one,
    // tracing caches a statement log site's interest from whichever subscriber is current when
    // the site is first reached, so a first statement outside it would silence the site for good.
    async {
        tracing::callsite::rebuild_interest_cache();
        let transaction = capturing.begin().await.map_err(|error| {
            anyhow!(
                "cannot start the dry run's transaction: {}",
                one_line(&error.to_string())
            )
        })?;
        // `BEGIN` is the run's, not a migration's.
        logged.take();
        let mut executed = Vec::with_capacity(migrations.len());
        for migration in migrations {
            let outcome = migration.up(&SchemaManager::new(&transaction)).await;
            if let Err(error) = outcome {
                transaction.rollback().await.ok();
                let hint = if migration.use_transaction() == Some(false) {
                    "; it runs outside a transaction when applied, which a dry run cannot imitate"
                } else {
                    ""
                };
                return Err(anyhow!(
                    "dry run of migration {} failed: {} (its transaction was rolled back, so nothing was changed{hint}) — fix the migration and run again",
                    migration.name(),
                    one_line(&error.to_string())
                ));
            }
            executed.push(ExecutedMigration {
                name: migration.name().to_owned(),
                statements: with_parameter_values(logged.take(), prepared.take()),
            });
        }
        transaction.rollback().await.map_err(|error| {
            anyhow!(
                "cannot roll back the dry run's transaction: {} — check with `status` that nothing was applied",
                one_line(&error.to_string())
            )
        })?;
        Ok(executed)
    }
    .with_subscriber(dispatch)
    .await
}

/// The dry run as printed: a header saying nothing was kept, then each migration's statements
/// under a `-- <name>` line, each statement ending with `;`.
pub struct DryRunReport<'a>(pub &'a [ExecutedMigration]);

impl fmt::Display for DryRunReport<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "-- dry run: the SQL below was executed in a transaction that was rolled back; nothing was changed"
        )?;
        for migration in self.0 {
            writeln!(formatter, "-- {}", migration.name)?;
            if migration.statements.is_empty() {
                writeln!(formatter, "-- (no statements)")?;
            }
            for statement in &migration.statements {
                let statement = statement.trim();
                let terminator = if statement.ends_with(';') { "" } else { ";" };
                writeln!(formatter, "{statement}{terminator}")?;
            }
        }
        Ok(())
    }
}

/// `logged` with each prepared statement replaced by its rendering with values inlined. The
/// prepared statements are a subsequence of the logged ones, in the same order.
fn with_parameter_values(logged: Vec<String>, prepared: Vec<(String, String)>) -> Vec<String> {
    let mut prepared = prepared.into_iter().peekable();
    logged
        .into_iter()
        .map(
            |sql| match prepared.next_if(|(prepared_sql, _)| *prepared_sql == sql) {
                Some((_, rendered)) => rendered,
                None => sql,
            },
        )
        .collect()
}

/// `(SQL, SQL with values inlined)` of every prepared statement, from SeaORM's metric callback.
#[derive(Clone, Default)]
struct PreparedStatements(Arc<Mutex<Vec<(String, String)>>>);

impl PreparedStatements {
    fn push(&self, sql: String, rendered: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((sql, rendered));
    }

    fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Every statement sqlx logged while the layer was the current subscriber.
#[derive(Clone, Default)]
struct LoggedStatements(Arc<Mutex<Vec<String>>>);

impl LoggedStatements {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<S: Subscriber> Layer<S> for LoggedStatements {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        if event.metadata().target() != SQLX_QUERY_TARGET {
            return;
        }
        let mut fields = QueryLogFields::default();
        event.record(&mut fields);
        if let Some(sql) = fields.into_sql() {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(sql);
        }
    }
}

/// The fields of sqlx's statement log event: `summary` is the first four words (plus ` …` when
/// that is not all), and `db.statement` the whole statement as `\n\n<sql>\n`, or empty when the
/// summary already is the whole statement.
#[derive(Default)]
struct QueryLogFields {
    summary: Option<String>,
    statement: Option<String>,
}

impl QueryLogFields {
    fn into_sql(self) -> Option<String> {
        match self.statement {
            Some(statement) if !statement.is_empty() => {
                let statement = statement.strip_prefix("\n\n").unwrap_or(&statement);
                Some(statement.strip_suffix('\n').unwrap_or(statement).to_owned())
            }
            _ => self.summary,
        }
    }
}

impl Visit for QueryLogFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = Some(value.to_owned()),
            "db.statement" => self.statement = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {}
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    #[test]
    fn prepared_statements_get_their_values_and_the_rest_stay_as_logged() {
        let logged = vec![
            "CREATE TABLE t (id integer)".to_owned(),
            "INSERT INTO t VALUES ($1)".to_owned(),
            "SELECT 1".to_owned(),
        ];
        let prepared = vec![(
            "INSERT INTO t VALUES ($1)".to_owned(),
            "INSERT INTO t VALUES (7)".to_owned(),
        )];
        assert_eq!(
            with_parameter_values(logged, prepared),
            [
                "CREATE TABLE t (id integer)",
                "INSERT INTO t VALUES (7)",
                "SELECT 1"
            ]
        );
    }

    #[test]
    fn the_report_names_each_migration_and_terminates_each_statement() {
        let executed = [
            ExecutedMigration {
                name: "m1".to_owned(),
                statements: vec![
                    "\nCREATE TABLE t (id integer)\n".to_owned(),
                    "SELECT 1;".to_owned(),
                ],
            },
            ExecutedMigration {
                name: "m2".to_owned(),
                statements: Vec::new(),
            },
        ];
        let mut printed = String::new();
        write!(printed, "{}", DryRunReport(&executed)).unwrap();
        assert_eq!(
            printed,
            "-- dry run: the SQL below was executed in a transaction that was rolled back; nothing was changed\n\
             -- m1\nCREATE TABLE t (id integer);\nSELECT 1;\n-- m2\n-- (no statements)\n"
        );
    }
}
