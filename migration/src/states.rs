//! Where each migration stands in a database: applied or pending, and whether its source was
//! edited since it was applied; and the refusal to build on, or roll back, an edited one.

use anyhow::{Result, bail};
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};
use sea_orm_migration::{MigratorTrait, SchemaManager, seaql_migrations};

use crate::checksum;
use crate::failure::database_failure;

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
pub(crate) enum EditedRefusal {
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
    let recorded = applied_versions(db).await?;
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
        // Rolling back cannot help: only the checkout that has them knows their `down`.
        bail!(
            "the database has applied {} which this checkout does not have: the database is ahead of this checkout — pull, or check out the branch that has it; for a development database, `cargo xtask db-reset` rebuilds it from this checkout's migrations (its data is lost)",
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

/// SeaORM's rows, oldest first; none while its table does not exist.
async fn applied_versions(db: &DatabaseConnection) -> Result<Vec<seaql_migrations::Model>> {
    let manager = SchemaManager::new(db);
    if !manager
        .has_table("seaql_migrations")
        .await
        .map_err(database_failure)?
    {
        return Ok(Vec::new());
    }
    seaql_migrations::Entity::find()
        .order_by_asc(seaql_migrations::Column::Version)
        .all(db)
        .await
        .map_err(database_failure)
}

/// The names of the first `limit` pending migrations of `states` (all when `None`), in order.
pub(crate) fn pending(states: Vec<MigrationState>, limit: Option<u32>) -> Vec<String> {
    states
        .into_iter()
        .filter(|state| state.applied_at.is_none())
        .map(|state| state.name)
        .take(limit.map_or(usize::MAX, |limit| limit as usize))
        .collect()
}

/// Fails with one line naming every migration of `states` whose source was edited since it was
/// applied, and saying what to do before doing `refusal` again.
pub(crate) fn refuse_edited(states: &[MigrationState], refusal: EditedRefusal) -> Result<()> {
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
