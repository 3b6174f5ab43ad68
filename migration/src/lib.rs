//! SeaORM migrations for the application schema, applied in order by [`Migrator`]; the runner
//! that applies and rolls them back with source checksums; and, with the `cli` feature, the
//! command line (`src/main.rs`).
pub use sea_orm_migration::prelude::*;

pub mod checksum;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
mod connect;
#[cfg(feature = "cli")]
pub mod dry_run;
mod failure;
#[cfg(feature = "cli")]
pub mod lint;
#[cfg(feature = "cli")]
mod lint_directive;
#[cfg(feature = "cli")]
mod lint_report;
#[cfg(feature = "cli")]
mod lock;
mod normalize;
pub mod runner;
pub mod states;

pub mod m20261124_120000_create_projects;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261124_120000_create_projects::Migration)]
    }
}
