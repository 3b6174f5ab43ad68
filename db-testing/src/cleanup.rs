//! Dropping test databases and outdated templates without breaking another test run on the same server: what a live process holds (see the `lease` module) is spared.
//!
//! A test database is dropped when no session uses it and
//! * its pool entry is `ready` (deleting the entry first, so no one can claim it meanwhile), or
//!   was `creating` or `claimed` by a process that is gone;
//! * or it has no pool entry and the process named at the end of its name is gone (names from
//!   before the owner token count as gone).
//!
//! A template is dropped only while no other process holds it, together with its ready clones.

use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use dbops_connect::sqlstate;

use crate::admin::{Admin, KEPT_DATABASE_COMMENT, admin};
use crate::errors::{OBJECT_IN_USE, TestDbError};
use crate::lease::{live_owners, owner_in_name};
use crate::names::{quote_identifier, template_prefix, test_database_prefix};
use crate::pool::{Bookkeeping, PoolRelease, bookkeeping_database_name};
use crate::prepared::forget_prepared_templates;
use crate::runtime::on_admin_runtime;
use crate::template::TestTemplate;

/// Whether cleanup drops the databases kept with `DB_TEST_KEEP=1` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeptDatabases {
    Spare,
    Drop,
}

impl<M: MigratorTrait + 'static> TestTemplate<M> {
    /// Drops every test database of this base that no live test holds, pooled clones included,
    /// except those kept with `DB_TEST_KEEP=1`, and forgets pool entries whose database is gone.
    /// Returns how many databases it dropped. Safe while other test runs use the same server.
    pub async fn drop_stale_test_databases(&self) -> Result<usize, TestDbError> {
        self.drop_idle(KeptDatabases::Spare).await
    }

    /// Like [`TestTemplate::drop_stale_test_databases`], and also drops the kept databases.
    pub async fn drop_kept_test_databases(&self) -> Result<usize, TestDbError> {
        self.drop_idle(KeptDatabases::Drop).await
    }

    /// Drops every database of this base that no live process holds: test databases (kept ones
    /// too), templates and, once no test database of the base is left, the pool's bookkeeping
    /// database. Returns how many it dropped.
    pub async fn drop_all_databases(&self) -> Result<usize, TestDbError> {
        let template = self.clone();
        on_admin_runtime(async move {
            let admin = admin().await?;
            let plan = template.plan(&admin)?;
            let mut dropped = admin
                .drop_idle_test_databases(&plan.base, KeptDatabases::Drop)
                .await?;
            // Another process's pool of this base would fail without its bookkeeping.
            let remaining = admin
                .names_with_prefix(&test_database_prefix(&plan.base))
                .await?;
            if remaining.is_empty() {
                dropped += Bookkeeping::drop_database(&admin, &plan.base).await?;
                forget_prepared_templates(&template_prefix(&plan.base));
            }
            dropped += admin.drop_templates(&plan.base, None).await?;
            Ok(dropped)
        })
        .await
    }

    async fn drop_idle(&self, kept: KeptDatabases) -> Result<usize, TestDbError> {
        let template = self.clone();
        on_admin_runtime(async move {
            let admin = admin().await?;
            let plan = template.plan(&admin)?;
            admin.drop_idle_test_databases(&plan.base, kept).await
        })
        .await
    }
}

impl Admin {
    /// Drops the test databases of `base` that no session uses and no live process holds; also
    /// forgets the pool entries whose database is gone and whose process is gone too.
    async fn drop_idle_test_databases(
        &self,
        base: &str,
        kept: KeptDatabases,
    ) -> Result<usize, TestDbError> {
        let names = self.idle_test_databases(base, kept).await?;
        // Only after the listing: a process locks its token before it creates anything, so every
        // owner of a listed database that is still alive shows up here.
        let live = live_owners(&self.pool, &self.server).await?;
        let bookkeeping = if self
            .database_exists(&bookkeeping_database_name(base))
            .await?
        {
            Some(Bookkeeping::open(self, base).await?)
        } else {
            None
        };

        let mut dropped = 0;
        for name in names {
            let release = match &bookkeeping {
                Some(bookkeeping) => bookkeeping.release_for_drop(&name).await?,
                None => PoolRelease::Untracked,
            };
            let droppable = match release {
                PoolRelease::Held => false,
                PoolRelease::Released => true,
                PoolRelease::Untracked => {
                    owner_in_name(&name).is_none_or(|owner| !live.contains(&owner))
                }
            };
            if droppable && self.drop_unless_in_use(&name).await? {
                dropped += 1;
            }
        }
        if let Some(bookkeeping) = bookkeeping {
            bookkeeping.forget_missing().await?;
        }
        Ok(dropped)
    }

    /// The test databases of `base` without a session, the kept ones only when they go too.
    async fn idle_test_databases(
        &self,
        base: &str,
        kept: KeptDatabases,
    ) -> Result<Vec<String>, TestDbError> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT d.datname FROM pg_database d \
             WHERE starts_with(d.datname, $1) \
               AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid) \
               AND ($2 OR shobj_description(d.oid, 'pg_database') IS DISTINCT FROM $3) \
             ORDER BY d.datname",
            [
                Value::from(test_database_prefix(base)),
                Value::from(kept == KeptDatabases::Drop),
                Value::from(KEPT_DATABASE_COMMENT),
            ],
        );
        self.database_names(statement, "listing stale test databases")
            .await
    }

    /// Drops `name` unless it gained a session since it was listed; true when it dropped it.
    async fn drop_unless_in_use(&self, name: &str) -> Result<bool, TestDbError> {
        // Without FORCE: a database that gained a session since the listing is in use after all.
        let statement = format!("DROP DATABASE IF EXISTS {}", quote_identifier(name));
        match self.pool.execute_unprepared(&statement).await {
            Ok(_) => Ok(true),
            Err(error) if sqlstate(&error).as_deref() == Some(OBJECT_IN_USE) => Ok(false),
            Err(error) => Err(self.failed(
                &format!("dropping stale test database {name}"),
                &error,
                "drop it by hand",
            )),
        }
    }
}
