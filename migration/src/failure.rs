//! The one-line errors of a failed migration step or database call, shared by the runner, the
//! states and the command line.

use dbops_common::text::one_line;
use sea_orm::DbErr;
use sea_orm_migration::MigratorTrait;

/// Migration `name` of `M` failed to `action` ("apply", "roll back"): says what is left of it.
pub(crate) fn migration_failure<M: MigratorTrait>(
    name: &str,
    action: &str,
    error: &DbErr,
) -> anyhow::Error {
    let transactional = M::migrations()
        .iter()
        .find(|migration| migration.name() == name)
        .is_none_or(|migration| migration.use_transaction() != Some(false));
    let aftermath = if transactional {
        "its transaction was rolled back, so nothing of it was kept"
    } else {
        "it runs outside a transaction, so check for partial changes"
    };
    anyhow::anyhow!(
        "migration {name} failed to {action}: {} ({aftermath}) — fix the migration and run again",
        one_line(&error.to_string())
    )
}

pub(crate) fn database_failure(error: DbErr) -> anyhow::Error {
    anyhow::anyhow!("database error: {}", one_line(&error.to_string()))
}
