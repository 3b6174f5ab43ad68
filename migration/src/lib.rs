//! SeaORM migrations for the application schema, applied in order by [`Migrator`].
pub use sea_orm_migration::prelude::*;

pub mod checksum;
mod dry_run;
#[cfg(test)]
mod normalize;
pub mod redact;
pub mod runner;

pub mod m20261124_120000_create_projects;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261124_120000_create_projects::Migration)]
    }
}
