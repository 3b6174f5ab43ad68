//! A fixture migration that changes a column's type and allows it, as a migration file does with
//! a `db-lint:` comment; the test reads the comment from this file's source.

use sea_orm_migration::prelude::*;

pub const ALLOWED: &str = "m_lint_08_allowed_type_change";

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        ALLOWED
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        connection
            .execute_unprepared("SET LOCAL lock_timeout = '5s'")
            .await?;
        // db-lint: allow(changing-column-type) reason: the column is new and still empty everywhere
        connection
            .execute_unprepared("ALTER TABLE lint_accounts ALTER COLUMN note TYPE varchar(500)")
            .await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
