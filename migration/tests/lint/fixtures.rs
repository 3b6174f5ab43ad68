//! Fixture migrations for the lint tests: a clean base that creates the tables, then one
//! migration per rule that trips exactly that rule on the tables the base created, and a clean
//! one on them. All but `MISSING_LOCK_TIMEOUT` set a lock timeout first, so that they trip only
//! their own rule. Most use SeaORM's builders, so the SQL linted is what SeaORM sends.

use sea_orm_migration::prelude::*;

pub const BASE: &str = "m_lint_00_base";
pub const NOT_NULL_WITHOUT_DEFAULT: &str = "m_lint_01_not_null_without_default";
pub const INDEX_WITHOUT_CONCURRENTLY: &str = "m_lint_02_index_without_concurrently";
pub const CHANGED_COLUMN_TYPE: &str = "m_lint_03_changed_column_type";
pub const FOREIGN_KEY_WITHOUT_NOT_VALID: &str = "m_lint_04_foreign_key_without_not_valid";
pub const TABLE_REWRITE: &str = "m_lint_05_table_rewrite";
pub const MISSING_LOCK_TIMEOUT: &str = "m_lint_06_missing_lock_timeout";
pub const CLEAN: &str = "m_lint_07_clean";

const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '5s'";

/// A fixture: its name, and what its `up` does after setting the lock timeout (when it does).
pub struct Fixture {
    name: &'static str,
    lock_timeout: bool,
    step: fn() -> Vec<String>,
}

/// Every fixture, in the order they run.
pub fn all() -> Vec<Box<dyn MigrationTrait>> {
    let fixture = |name, lock_timeout, step| -> Box<dyn MigrationTrait> {
        Box::new(Fixture {
            name,
            lock_timeout,
            step,
        })
    };
    vec![
        fixture(BASE, true, base),
        fixture(NOT_NULL_WITHOUT_DEFAULT, true, not_null_without_default),
        fixture(INDEX_WITHOUT_CONCURRENTLY, true, index_without_concurrently),
        fixture(CHANGED_COLUMN_TYPE, true, changed_column_type),
        fixture(
            FOREIGN_KEY_WITHOUT_NOT_VALID,
            true,
            foreign_key_without_not_valid,
        ),
        fixture(TABLE_REWRITE, true, table_rewrite),
        fixture(MISSING_LOCK_TIMEOUT, false, add_nullable_column),
        fixture(CLEAN, true, clean),
    ]
}

impl MigrationName for Fixture {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Fixture {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        if self.lock_timeout {
            connection.execute_unprepared(LOCK_TIMEOUT).await?;
        }
        for statement in (self.step)() {
            connection.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

fn sql(statement: impl SchemaStatementBuilder) -> String {
    statement.to_string(PostgresQueryBuilder)
}

/// Clean: everything is on tables it creates, so no index needs CONCURRENTLY and no foreign
/// key needs NOT VALID.
fn base() -> Vec<String> {
    vec![
        sql(Table::create()
            .table("lint_teams")
            .col(ColumnDef::new("id").big_integer().not_null().primary_key())
            .to_owned()),
        sql(Table::create()
            .table("lint_accounts")
            .col(ColumnDef::new("id").big_integer().not_null().primary_key())
            .col(ColumnDef::new("email").text().not_null())
            .col(ColumnDef::new("team_id").big_integer().null())
            .col(ColumnDef::new("owner_id").big_integer().null())
            .to_owned()),
        sql(Index::create()
            .name("lint_accounts_email")
            .table("lint_accounts")
            .col("email")
            .to_owned()),
        sql(ForeignKey::create()
            .name("lint_accounts_owner_fk")
            .from("lint_accounts", "owner_id")
            .to("lint_teams", "id")
            .to_owned()),
    ]
}

fn not_null_without_default() -> Vec<String> {
    vec![sql(Table::alter()
        .table("lint_accounts")
        .add_column(ColumnDef::new("plan").text().not_null())
        .to_owned())]
}

fn index_without_concurrently() -> Vec<String> {
    vec![sql(Index::create()
        .name("lint_accounts_team")
        .table("lint_accounts")
        .col("team_id")
        .to_owned())]
}

fn changed_column_type() -> Vec<String> {
    vec!["ALTER TABLE lint_accounts ALTER COLUMN email TYPE varchar(320)".to_owned()]
}

fn foreign_key_without_not_valid() -> Vec<String> {
    vec![sql(ForeignKey::create()
        .name("lint_accounts_team_fk")
        .from("lint_accounts", "team_id")
        .to("lint_teams", "id")
        .to_owned())]
}

/// A volatile default: every existing row needs its own value, so the table is rewritten.
fn table_rewrite() -> Vec<String> {
    vec![sql(Table::alter()
        .table("lint_accounts")
        .add_column(
            ColumnDef::new("token")
                .uuid()
                .default(Expr::cust("gen_random_uuid()")),
        )
        .to_owned())]
}

/// Nothing wrong with the change itself; only the lock timeout is missing.
fn add_nullable_column() -> Vec<String> {
    vec![sql(Table::alter()
        .table("lint_accounts")
        .add_column(ColumnDef::new("note").text().null())
        .to_owned())]
}

/// The safe forms on an existing table: a nullable column, a constant default, a foreign key
/// added NOT VALID.
fn clean() -> Vec<String> {
    vec![
        sql(Table::alter()
            .table("lint_accounts")
            .add_column(ColumnDef::new("nickname").text().null())
            .add_column(ColumnDef::new("active").boolean().not_null().default(true))
            .to_owned()),
        "ALTER TABLE lint_accounts ADD CONSTRAINT lint_accounts_team_ref FOREIGN KEY (team_id) REFERENCES lint_teams (id) NOT VALID"
            .to_owned(),
    ]
}

pub const OUTSIDE_TRANSACTION: &str = "m_lint_09_outside_transaction";

/// A migration that opts out of the transaction, as `CREATE INDEX CONCURRENTLY` needs; a dry run
/// cannot imitate it (the statement fails inside a transaction), so the lint skips it.
pub struct OutsideTransaction;

impl MigrationName for OutsideTransaction {
    fn name(&self) -> &str {
        OUTSIDE_TRANSACTION
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OutsideTransaction {
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS lint_accounts_note ON lint_accounts (note)",
            )
            .await
            .map(drop)
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
