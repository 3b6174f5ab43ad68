//! The synthetic migrator the benchmark clones from: `N` migrations, each one table and one index,
//! the schema `build.rs` writes as sqlx migration files for the `#[sqlx::test]` side.

use migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager};
use sea_orm::{ConnectionTrait, DbErr};

struct SyntheticTable(usize);

impl MigrationName for SyntheticTable {
    fn name(&self) -> &str {
        // Names must be 'static for SeaORM; a few hundred leaked strings per run are fine here.
        Box::leak(format!("m20000101_{:06}_bench_table", self.0).into_boxed_str())
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SyntheticTable {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let i = self.0;
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE TABLE bench_t{i} (id bigserial PRIMARY KEY, label text NOT NULL); CREATE INDEX bench_t{i}_label ON bench_t{i} (label)"
            ))
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let i = self.0;
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP TABLE bench_t{i}"))
            .await
            .map(|_| ())
    }
}

/// `N` synthetic migrations, applied in order.
pub struct Synthetic<const N: usize>;

impl<const N: usize> MigratorTrait for Synthetic<N> {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        (0..N)
            .map(|i| Box::new(SyntheticTable(i)) as Box<dyn MigrationTrait>)
            .collect()
    }
}
