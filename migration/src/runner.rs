//! Applying and rolling back migrations one at a time, each in its own transaction, recording
//! and forgetting their source checksums, and printing a line per migration.
//!
//! Every function here changes the schema: the caller must hold the migration lock (the command
//! line takes it, see `lock.rs`), or own the database outright, as a test does.

use anyhow::{Result, anyhow, bail};
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;

use crate::checksum::{self, WithChecksums};
use crate::failure::{database_failure, migration_failure};
use crate::states::{
    EditedRefusal, MigrationState, SourceCheck, migration_states, pending, refuse_edited,
};

/// The flag [`apply_pending`] and [`roll_back`] take.
pub use crate::states::EditedMigrations;

/// Which way [`step_each`] moves.
#[derive(Debug, Clone, Copy)]
enum Direction {
    Apply,
    RollBack,
}

impl Direction {
    /// For the failure message: "failed to apply".
    fn verb(self) -> &'static str {
        match self {
            Direction::Apply => "apply",
            Direction::RollBack => "roll back",
        }
    }

    /// For the progress line: "applied m…".
    fn done(self) -> &'static str {
        match self {
            Direction::Apply => "applied",
            Direction::RollBack => "rolled back",
        }
    }
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

    let pending = pending(states, limit);
    if pending.is_empty() {
        println!("nothing to apply");
    }
    step_each::<M>(db, &pending, Direction::Apply).await?;
    Ok(pending)
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
    step_each::<M>(db, &to_roll_back, Direction::RollBack).await?;
    Ok(to_roll_back)
}

/// Rolls back every applied migration, as [`roll_back`] does, or says there is nothing to.
pub async fn roll_back_all<M: MigratorTrait>(
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
pub async fn fresh<M: MigratorTrait>(db: &DatabaseConnection) -> Result<Vec<String>> {
    if let Err(error) = WithChecksums::<M>::fresh(db).await {
        let failed = migration_states::<M>(db)
            .await
            .ok()
            .and_then(|states| states.into_iter().find(|state| state.applied_at.is_none()));
        return Err(match failed {
            Some(state) => migration_failure::<M>(&state.name, Direction::Apply.verb(), &error),
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

/// Moves `names` one migration at a time in `direction`, printing a line after each. One step
/// at a time applies exactly the first pending migration (or rolls back exactly the last applied
/// one), `name`, so a failure can be pinned on it.
async fn step_each<M: MigratorTrait>(
    db: &DatabaseConnection,
    names: &[String],
    direction: Direction,
) -> Result<()> {
    for name in names {
        let stepped = match direction {
            Direction::Apply => WithChecksums::<M>::up(db, Some(1)).await,
            Direction::RollBack => WithChecksums::<M>::down(db, Some(1)).await,
        };
        stepped.map_err(|error| migration_failure::<M>(name, direction.verb(), &error))?;
        println!("{} {name}", direction.done());
    }
    Ok(())
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
