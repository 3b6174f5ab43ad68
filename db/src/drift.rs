//! Proves that SeaORM entities agree with the migrated schema: tables, column names, column types,
//! nullability and primary keys.
//!
//! The expectation is derived from the entity itself, never from a hand-kept list:
//! `Schema::create_table_from_entity` gives the table the entity describes, which is created in
//! the scratch schema `entity_drift_check` inside a transaction that is always rolled back. Both
//! tables are then read back from `pg_catalog`, so PostgreSQL spells out both sets of types.
//!
//! Not compared, because an entity does not know them: defaults (e.g. `gen_random_uuid()`),
//! CHECK constraints, indexes, triggers, identity and foreign keys. A column type without a
//! modifier in the entity (`String` is `character varying`) agrees with any modifier in the
//! database (`character varying(255)`): the entity does not promise a length.

use sea_orm::sea_query::Alias;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, Schema, Statement,
    TransactionTrait,
};

/// Where the entity's own table is created, inside a transaction that is rolled back.
const SCRATCH_SCHEMA: &str = "entity_drift_check";

// User-defined types (enums) are named without their schema, because the entity's copy of an
// enum lives in the scratch schema while the database's lives in the live one.
const TABLE_COLUMNS_SQL: &str = "
SELECT a.attname::text AS column_name,
       CASE WHEN t.typnamespace = 'pg_catalog'::regnamespace
            THEN format_type(a.atttypid, a.atttypmod) ELSE t.typname::text END AS full_type,
       CASE WHEN t.typnamespace = 'pg_catalog'::regnamespace
            THEN format_type(a.atttypid, NULL) ELSE t.typname::text END AS base_type,
       a.atttypmod <> -1 AS has_modifier,
       a.attnotnull AS not_null,
       COALESCE(a.attnum = ANY (pk.indkey), false) AS in_primary_key
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
   AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum";

/// One column as PostgreSQL describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ColumnFacts {
    name: String,
    full_type: String,
    base_type: String,
    has_modifier: bool,
    not_null: bool,
    in_primary_key: bool,
}

/// Every way `entity` disagrees with its table in the database `conn` points at, one readable line
/// each, e.g. `projects.name: type character varying(255) in the database, integer in the entity`;
/// empty when they agree. The table is looked for in the entity's schema, or the current one.
///
/// Changes nothing: the entity's table is created and compared inside a transaction that is rolled back.
pub async fn entity_drift<E: EntityTrait>(
    conn: &DatabaseConnection,
    entity: E,
) -> Result<Vec<String>, DbErr> {
    let transaction = conn.begin().await?;
    let outcome = compare_in(&transaction, entity).await;
    transaction.rollback().await?;
    outcome
}

async fn compare_in<E: EntityTrait, C: ConnectionTrait>(
    conn: &C,
    entity: E,
) -> Result<Vec<String>, DbErr> {
    let table = entity.table_name().to_owned();
    let live_schema = match entity.schema_name() {
        Some(schema) => schema.to_owned(),
        None => query_string(conn, "SELECT current_schema()::text").await?,
    };

    conn.execute_unprepared(&format!("CREATE SCHEMA {SCRATCH_SCHEMA}"))
        .await?;
    // The live schema stays on the path so that the entity's foreign keys find their tables.
    conn.execute_unprepared(&format!(
        "SET LOCAL search_path TO {SCRATCH_SCHEMA}, \"{}\"",
        live_schema.replace('"', "\"\"")
    ))
    .await?;
    let schema = Schema::new(DbBackend::Postgres);
    for create_enum in schema.create_enum_from_entity(entity) {
        conn.execute(&create_enum).await?;
    }
    let mut create_table = schema.create_table_from_entity(entity);
    // Unqualified, so it lands in the scratch schema even for an entity that names its schema.
    create_table.table(Alias::new(table.as_str()));
    conn.execute(&create_table).await?;

    let expected = table_columns(conn, SCRATCH_SCHEMA, &table).await?;
    let actual = table_columns(conn, &live_schema, &table).await?;
    Ok(differences(&table, &actual, &expected))
}

async fn query_string<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<String, DbErr> {
    conn.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| DbErr::Custom(format!("{sql} returned no row")))?
        .try_get_by_index(0)
}

async fn table_columns<C: ConnectionTrait>(
    conn: &C,
    schema: &str,
    table: &str,
) -> Result<Vec<ColumnFacts>, DbErr> {
    conn.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        TABLE_COLUMNS_SQL,
        [schema.into(), table.into()],
    ))
    .await?
    .into_iter()
    .map(|row| {
        Ok(ColumnFacts {
            name: row.try_get("", "column_name")?,
            full_type: row.try_get("", "full_type")?,
            base_type: row.try_get("", "base_type")?,
            has_modifier: row.try_get("", "has_modifier")?,
            not_null: row.try_get("", "not_null")?,
            in_primary_key: row.try_get("", "in_primary_key")?,
        })
    })
    .collect()
}

/// The differences between the database's columns of `table` and the entity's, in the
/// database's column order, then the entity's columns the database lacks, then the primary key.
fn differences(table: &str, database: &[ColumnFacts], entity: &[ColumnFacts]) -> Vec<String> {
    if database.is_empty() {
        return vec![format!("{table}: in the entity, not in the database")];
    }
    let mut drift = Vec::new();
    for actual in database {
        let Some(expected) = entity.iter().find(|column| column.name == actual.name) else {
            drift.push(format!(
                "{table}.{}: in the database, not in the entity",
                actual.name
            ));
            continue;
        };
        let types_agree = if expected.has_modifier {
            actual.full_type == expected.full_type
        } else {
            actual.base_type == expected.base_type
        };
        if !types_agree {
            drift.push(format!(
                "{table}.{}: type {} in the database, {} in the entity",
                actual.name, actual.full_type, expected.full_type
            ));
        }
        if actual.not_null != expected.not_null {
            drift.push(format!(
                "{table}.{}: {} in the database, {} in the entity",
                actual.name,
                nullability(actual.not_null),
                nullability(expected.not_null)
            ));
        }
    }
    for expected in entity {
        if !database.iter().any(|column| column.name == expected.name) {
            drift.push(format!(
                "{table}.{}: in the entity, not in the database",
                expected.name
            ));
        }
    }
    let database_key = primary_key(database);
    let entity_key = primary_key(entity);
    if database_key != entity_key {
        drift.push(format!(
            "{table}: primary key ({}) in the database, ({}) in the entity",
            database_key.join(", "),
            entity_key.join(", ")
        ));
    }
    drift
}

fn nullability(not_null: bool) -> &'static str {
    if not_null { "NOT NULL" } else { "nullable" }
}

/// The primary key's column names, sorted: column order within the key is not compared.
fn primary_key(columns: &[ColumnFacts]) -> Vec<&str> {
    let mut key: Vec<&str> = columns
        .iter()
        .filter(|column| column.in_primary_key)
        .map(|column| column.name.as_str())
        .collect();
    key.sort_unstable();
    key
}

/// Declares the entities of [`crate::entities`] that [`drift_of_every_entity`] checks; a test
/// compares [`ENTITY_MODULES`] with the modules `entities/mod.rs` declares, so none is forgotten.
macro_rules! every_entity {
    ($($module:ident),* $(,)?) => {
        /// The modules of [`crate::entities`] whose entities [`drift_of_every_entity`] checks.
        pub const ENTITY_MODULES: &[&str] = &[$(stringify!($module)),*];

        /// [`entity_drift`] of every entity in [`crate::entities`], all lines together.
        pub async fn drift_of_every_entity(conn: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
            let mut drift = Vec::new();
            $(drift.extend(entity_drift(conn, crate::entities::$module::Entity).await?);)*
            Ok(drift)
        }
    };
}

every_entity!(projects);

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, full_type: &str, not_null: bool, in_primary_key: bool) -> ColumnFacts {
        let base_type = full_type.split('(').next().unwrap_or(full_type).to_owned();
        ColumnFacts {
            name: name.to_owned(),
            has_modifier: base_type != full_type,
            full_type: full_type.to_owned(),
            base_type,
            not_null,
            in_primary_key,
        }
    }

    #[test]
    fn a_length_in_the_database_agrees_with_an_entity_that_names_none() {
        let database = [column("name", "character varying(255)", true, false)];
        let entity = [column("name", "character varying", true, false)];
        assert!(differences("t", &database, &entity).is_empty());

        let entity = [column("name", "character varying(100)", true, false)];
        assert_eq!(
            differences("t", &database, &entity),
            [
                "t.name: type character varying(255) in the database, character varying(100) in the entity"
            ]
        );
    }

    #[test]
    fn every_kind_of_difference_gets_its_own_line() {
        let database = [
            column("id", "uuid", true, true),
            column("name", "text", true, false),
            column("note", "text", false, false),
        ];
        let entity = [
            column("id", "uuid", true, false),
            column("name", "integer", false, true),
            column("extra", "text", false, false),
        ];
        assert_eq!(
            differences("t", &database, &entity),
            [
                "t.name: type text in the database, integer in the entity",
                "t.name: NOT NULL in the database, nullable in the entity",
                "t.note: in the database, not in the entity",
                "t.extra: in the entity, not in the database",
                "t: primary key (id) in the database, (name) in the entity",
            ]
        );
        assert_eq!(
            differences("t", &[], &entity),
            ["t: in the entity, not in the database"]
        );
    }
}
