//! Creates the `projects` table, its name index and the trigger that keeps `updated_at` current.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_120000_create_projects"
    }
}

/// The trigger lives in the database so that every writer, raw SQL included,
/// gets the same `updated_at` behaviour. `OR REPLACE` because SeaORM's `fresh`
/// drops tables and types but not functions, and must still be able to re-run this.
const CREATE_SET_UPDATED_AT_FUNCTION: &str = r#"
CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$"#;

const CREATE_PROJECTS_TRIGGER: &str = r#"
CREATE TRIGGER projects_set_updated_at
BEFORE UPDATE ON projects
FOR EACH ROW EXECUTE FUNCTION set_updated_at()"#;

const DROP_PROJECTS_TRIGGER: &str = "DROP TRIGGER IF EXISTS projects_set_updated_at ON projects";
const DROP_SET_UPDATED_AT_FUNCTION: &str = "DROP FUNCTION IF EXISTS set_updated_at()";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .col(
                        ColumnDef::new(Projects::Id)
                            .uuid()
                            .not_null()
                            .primary_key()
                            .default(Expr::cust("gen_random_uuid()")),
                    )
                    .col(ColumnDef::new(Projects::Name).string_len(255).not_null())
                    .col(ColumnDef::new(Projects::Description).text().null())
                    .col(
                        ColumnDef::new(Projects::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null()
                            .default(Expr::current_timestamp()),
                    )
                    .col(
                        ColumnDef::new(Projects::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null()
                            .default(Expr::current_timestamp()),
                    )
                    // `\S` rather than btrim(): btrim strips spaces only, and a name of tabs
                    // or newlines is blank too.
                    .check(Check::named(
                        Alias::new("projects_name_not_blank"),
                        Expr::cust(r"name ~ '\S'"),
                    ))
                    .to_owned(),
            )
            .await?;

        // No other session can see or lock the table before this migration commits, so its
        // statements wait for no lock:
        // db-lint: allow(require-lock-timeout) reason: every statement is on the projects table this migration creates
        manager
            .create_index(
                Index::create()
                    .name("idx_projects_name")
                    .table(Projects::Table)
                    .col(Projects::Name)
                    .to_owned(),
            )
            .await?;

        let connection = manager.get_connection();
        connection
            .execute_unprepared(CREATE_SET_UPDATED_AT_FUNCTION)
            .await?;
        connection
            .execute_unprepared(CREATE_PROJECTS_TRIGGER)
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        connection.execute_unprepared(DROP_PROJECTS_TRIGGER).await?;
        // The function is shared infrastructure for `updated_at` columns, but this
        // migration created it, so rolling this migration back removes it too.
        connection
            .execute_unprepared(DROP_SET_UPDATED_AT_FUNCTION)
            .await?;
        manager
            .drop_table(Table::drop().table(Projects::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
}
