//! Entities against the migrated schema in real PostgreSQL: every entity of `db::entities` agrees
//! with it, and an entity that does not is told apart with a diff naming the column.

use db::drift::{ENTITY_MODULES, drift_of_every_entity, entity_drift};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

/// `projects` as it would be with its `name` column misspelt.
mod misspelt_column {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, Eq)]
    #[sea_orm(table_name = "projects")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub nmae: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        pub created_at: DateTimeWithTimeZone,
        pub updated_at: DateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `projects` as it would be with `name` an integer, `description` required and the key on `name`.
mod wrong_types {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, Eq)]
    #[sea_orm(table_name = "projects")]
    pub struct Model {
        pub id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: i32,
        #[sea_orm(column_type = "Text")]
        pub description: String,
        pub created_at: DateTimeWithTimeZone,
        pub updated_at: DateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An entity whose table no migration creates.
mod missing_table {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, Eq)]
    #[sea_orm(table_name = "never_migrated")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[db::test]
async fn every_entity_agrees_with_the_migrated_schema(db: DatabaseConnection) {
    let drift = drift_of_every_entity(&db)
        .await
        .expect("the drift check runs");
    assert!(
        drift.is_empty(),
        "entities disagree with the migrations:\n{}",
        drift.join("\n")
    );
}

#[test]
fn every_module_of_db_entities_is_checked() {
    let declared: Vec<&str> = include_str!("../src/entities/mod.rs")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod ")?.strip_suffix(';'))
        .filter(|module| *module != "prelude")
        .collect();
    assert_eq!(
        ENTITY_MODULES, declared,
        "list every entity module in `every_entity!` in db/src/drift.rs"
    );
}

#[db::test]
async fn a_misspelt_column_is_named_on_both_sides(db: DatabaseConnection) {
    let drift = entity_drift(&db, misspelt_column::Entity)
        .await
        .expect("the drift check runs");
    assert_eq!(
        drift,
        [
            "projects.name: in the database, not in the entity",
            "projects.nmae: in the entity, not in the database",
        ]
    );
}

#[db::test]
async fn wrong_types_nullability_and_key_are_each_named(db: DatabaseConnection) {
    let drift = entity_drift(&db, wrong_types::Entity)
        .await
        .expect("the drift check runs");
    assert_eq!(
        drift,
        [
            "projects.name: type character varying(255) in the database, integer in the entity",
            "projects.description: nullable in the database, NOT NULL in the entity",
            "projects: primary key (id) in the database, (name) in the entity",
        ]
    );
}

#[db::test]
async fn a_table_no_migration_creates_is_reported_and_nothing_is_left_behind(
    db: DatabaseConnection,
) {
    let drift = entity_drift(&db, missing_table::Entity)
        .await
        .expect("the drift check runs");
    assert_eq!(
        drift,
        ["never_migrated: in the entity, not in the database"]
    );

    let leftovers = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT nspname::text FROM pg_namespace WHERE nspname = 'entity_drift_check'
             UNION ALL SELECT relname::text FROM pg_class WHERE relname = 'never_migrated'",
        ))
        .await
        .expect("the catalog query runs");
    assert!(
        leftovers.is_empty(),
        "the drift check left {} objects",
        leftovers.len()
    );
}
