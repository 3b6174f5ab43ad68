//! Source checksums of applied migrations, kept in `seaql_migrations_checksums` next to SeaORM's
//! own table, so that editing a migration after it was applied is noticed.
//!
//! The checksum of each migration file is computed at build time (`build.rs`, over the text
//! `normalize.rs` produces). [`WithChecksums`] wraps a migrator so that applying a migration
//! records its checksum inside the migration's own transaction, right after the migration's
//! statements and just before SeaORM records the migration in `seaql_migrations`; rolling it back
//! deletes the row in the same way. SeaORM's `seaql_migrations` table is never altered.

use std::collections::HashMap;
use std::marker::PhantomData;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, DynIden, Statement};
use sea_orm_migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager};

pub use crate::normalize::source_checksum_of;

include!(concat!(env!("OUT_DIR"), "/source_checksums.rs"));

/// The side table, named so that tools which skip `seaql_migrations*` skip it too.
pub const CHECKSUM_TABLE: &str = "seaql_migrations_checksums";

const CREATE_CHECKSUM_TABLE: &str = "CREATE TABLE IF NOT EXISTS seaql_migrations_checksums (
    version text PRIMARY KEY,
    checksum text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
)";
// An upsert: a row can outlive its migration when something other than this runner (e.g.
// `Migrator::down` in a test) rolled the migration back.
const UPSERT_CHECKSUM: &str =
    "INSERT INTO seaql_migrations_checksums (version, checksum) VALUES ($1, $2)
    ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum, recorded_at = now()";
const DELETE_CHECKSUM: &str = "DELETE FROM seaql_migrations_checksums WHERE version = $1";
const SELECT_CHECKSUMS: &str = "SELECT version, checksum FROM seaql_migrations_checksums";
const DROP_CHECKSUM_TABLE: &str = "DROP TABLE IF EXISTS seaql_migrations_checksums";

/// The checksum of the migration file named `name` as compiled into this binary, or `None` for a
/// migration that is not a file of this crate (such as one defined in a test).
pub fn source_checksum(name: &str) -> Option<&'static str> {
    SOURCE_CHECKSUMS
        .binary_search_by(|(known, _)| (*known).cmp(name))
        .ok()
        .map(|index| SOURCE_CHECKSUMS[index].1)
}

/// Records `checksum` as the applied source of migration `name`, creating the side table if missing.
pub async fn record_checksum<C: ConnectionTrait>(
    conn: &C,
    name: &str,
    checksum: &str,
) -> Result<(), DbErr> {
    conn.execute_unprepared(CREATE_CHECKSUM_TABLE).await?;
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        UPSERT_CHECKSUM,
        [name.into(), checksum.into()],
    ))
    .await?;
    Ok(())
}

/// Forgets the recorded checksum of migration `name`; nothing to do when the side table is missing.
pub async fn forget_checksum<C: ConnectionTrait>(conn: &C, name: &str) -> Result<(), DbErr> {
    if !has_checksum_table(conn).await? {
        return Ok(());
    }
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        DELETE_CHECKSUM,
        [name.into()],
    ))
    .await?;
    Ok(())
}

/// Every recorded checksum by migration name, empty when the side table does not exist yet.
pub async fn recorded_checksums<C: ConnectionTrait>(
    conn: &C,
) -> Result<HashMap<String, String>, DbErr> {
    if !has_checksum_table(conn).await? {
        return Ok(HashMap::new());
    }
    conn.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        SELECT_CHECKSUMS,
    ))
    .await?
    .into_iter()
    .map(|row| {
        Ok((
            row.try_get::<String>("", "version")?,
            row.try_get::<String>("", "checksum")?,
        ))
    })
    .collect()
}

/// Drops the side table, as `reset` drops `seaql_migrations`.
pub async fn drop_checksum_table<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    conn.execute_unprepared(DROP_CHECKSUM_TABLE).await?;
    Ok(())
}

async fn has_checksum_table<C: ConnectionTrait>(conn: &C) -> Result<bool, DbErr> {
    // Looked up in the current schema only, where CREATE TABLE puts it and SeaORM looks for its own table.
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = $1)",
            [CHECKSUM_TABLE.into()],
        ))
        .await?;
    match row {
        Some(row) => row.try_get_by_index::<bool>(0),
        None => Ok(false),
    }
}

/// `M` with every migration recording its source checksum as it is applied and forgetting it as
/// it is rolled back. Use it wherever `M` itself would apply or roll back migrations.
pub struct WithChecksums<M>(PhantomData<fn() -> M>);

#[async_trait::async_trait]
impl<M: MigratorTrait> MigratorTrait for WithChecksums<M> {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        M::migrations()
            .into_iter()
            .map(|migration| {
                let checksum = source_checksum(migration.name());
                Box::new(ChecksummedMigration {
                    migration,
                    checksum,
                }) as Box<dyn MigrationTrait>
            })
            .collect()
    }

    fn migration_table_name() -> DynIden {
        M::migration_table_name()
    }
}

struct ChecksummedMigration {
    migration: Box<dyn MigrationTrait>,
    checksum: Option<&'static str>,
}

impl MigrationName for ChecksummedMigration {
    fn name(&self) -> &str {
        self.migration.name()
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ChecksummedMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        self.migration.up(manager).await?;
        match self.checksum {
            Some(checksum) => {
                record_checksum(manager.get_connection(), self.name(), checksum).await
            }
            None => Ok(()),
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        self.migration.down(manager).await?;
        forget_checksum(manager.get_connection(), self.name()).await
    }

    fn use_transaction(&self) -> Option<bool> {
        self.migration.use_transaction()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalized_source;

    #[test]
    fn every_migration_of_the_migrator_has_a_source_checksum() {
        for migration in crate::Migrator::migrations() {
            let checksum = source_checksum(migration.name()).unwrap_or_else(|| {
                panic!(
                    "{} has no checksum: name the file src/{}.rs",
                    migration.name(),
                    migration.name()
                )
            });
            assert_eq!(checksum.len(), 64, "{checksum}");
        }
        assert_eq!(source_checksum("m20991231_000000_unknown"), None);
    }

    /// What build.rs compiled in is the checksum of each file as it is on disk, so an edit to a
    /// file (which reruns build.rs: `rerun-if-changed=src`) changes exactly what
    /// `source_checksum_of` says it does, as the tamper tests take for granted.
    #[test]
    fn the_compiled_in_checksums_are_those_of_the_files_on_disk() {
        let source_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for (name, compiled) in SOURCE_CHECKSUMS {
            let file = source_dir.join(format!("{name}.rs"));
            let source = std::fs::read_to_string(&file).unwrap();
            assert_eq!(source_checksum_of(&source).unwrap(), *compiled, "{name}");
        }
        assert_eq!(SOURCE_CHECKSUMS.len(), crate::Migrator::migrations().len());
    }

    #[test]
    fn the_table_is_sorted_for_lookup() {
        assert!(
            SOURCE_CHECKSUMS
                .windows(2)
                .all(|pair| pair[0].0 < pair[1].0)
        );
    }

    const ORIGINAL: &str = r##"//! Creates things.
use sea_orm_migration::prelude::*;

/// The SQL.
const SQL: &str = r#"CREATE TABLE t (id integer)"#;

async fn up(manager: &SchemaManager) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(SQL).await?; // run it
    Ok(())
}
"##;

    #[test]
    fn formatting_and_comments_do_not_change_the_normalized_source() {
        let reformatted = r##"//! Creates things, and says so at more length.
//! Another line.
use sea_orm_migration :: prelude :: * ;
/* a block comment */
/** A block doc comment. */
const SQL : &str = r#"CREATE TABLE t (id integer)"#;
async fn up(
    manager: &SchemaManager,
) -> Result<(), DbErr> {
    // a comment on its own line
    manager
        .get_connection()
        .execute_unprepared(SQL)
        .await ? ;
    Ok(())
}
"##;
        assert_eq!(
            normalized_source(ORIGINAL).unwrap(),
            normalized_source(reformatted).unwrap()
        );
    }

    #[test]
    fn changes_to_code_or_string_contents_change_the_normalized_source() {
        let original = normalized_source(ORIGINAL).unwrap();
        for edited in [
            ORIGINAL.replace("id integer", "id bigint"),
            ORIGINAL.replace("id integer", "id  integer"),
            ORIGINAL.replace("SQL)", "SQL.trim())"),
            ORIGINAL.replace("fn up", "fn down"),
        ] {
            assert_ne!(normalized_source(&edited).unwrap(), original, "{edited}");
        }
    }

    #[test]
    fn the_normalized_source_is_one_line_of_space_separated_tokens() {
        assert_eq!(
            normalized_source("fn f() -> u8 {\n    a::b(1) // c\n}").unwrap(),
            "fn f ( ) - > u8 { a : : b ( 1 ) }"
        );
        assert_eq!(
            normalized_source("f(\n    a,\n    b,\n);").unwrap(),
            normalized_source("f(a, b);").unwrap()
        );
        assert_eq!(
            normalized_source("#![doc = \"x\"]\n#[doc(hidden)]\n/// y\nstruct S;").unwrap(),
            "# [ doc ( hidden ) ] struct S ;"
        );
    }

    #[test]
    fn unterminated_strings_are_reported_rather_than_hashed() {
        assert!(normalized_source("const S: &str = \"open").is_err());
    }
}
