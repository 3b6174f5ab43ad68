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

use super::lease::{live_owners, owner_in_name};
use super::pool::{Bookkeeping, PoolRelease, bookkeeping_database_name};
use super::{
    Admin, KEPT_DATABASE_COMMENT, KeptDatabases, OBJECT_IN_USE, TestDbError, TestTemplate, admin,
    forget_prepared_templates, on_admin_runtime, quote_identifier, sqlstate, template_prefix,
    test_database_prefix,
};

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
    pub(super) async fn drop_idle_test_databases(
        &self,
        base: &str,
        kept: KeptDatabases,
    ) -> Result<usize, TestDbError> {
        let listing = |error| {
            self.failed(
                "listing stale test databases",
                &error,
                "check the server is healthy",
            )
        };
        let rows = self
            .pool
            .query_all_raw(Statement::from_sql_and_values(
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
            ))
            .await
            .map_err(listing)?;
        let names = rows
            .iter()
            .map(|row| row.try_get::<String>("", "datname"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(listing)?;
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
            if !droppable {
                continue;
            }
            // Without FORCE: a database that gained a session since the listing is in use after all.
            let statement = format!("DROP DATABASE IF EXISTS {}", quote_identifier(&name));
            match self.pool.execute_unprepared(&statement).await {
                Ok(_) => dropped += 1,
                Err(error) if sqlstate(&error).as_deref() == Some(OBJECT_IN_USE) => {}
                Err(error) => {
                    return Err(self.failed(
                        &format!("dropping stale test database {name}"),
                        &error,
                        "drop it by hand",
                    ));
                }
            }
        }
        if let Some(bookkeeping) = bookkeeping {
            bookkeeping.forget_missing().await?;
        }
        Ok(dropped)
    }

    /// Drops the templates of `base` except `keep` that no other live process clones from, and
    /// their ready clones; returns how many templates it dropped. Templates still in use are left
    /// for a later run. An error on one template is reported and the others are still dropped.
    pub(super) async fn drop_templates(
        &self,
        base: &str,
        keep: Option<&str>,
    ) -> Result<usize, TestDbError> {
        let templates = self.names_with_prefix(&template_prefix(base)).await?;
        let mut dropped = 0;
        for other in templates
            .into_iter()
            .filter(|name| Some(name.as_str()) != keep)
        {
            let outcome = self
                .lease
                .while_template_unused(&other, self.drop_template(base, &other))
                .await;
            match outcome {
                Ok(None) => continue,
                Ok(Some(Ok(()))) => dropped += 1,
                Ok(Some(Err(error))) | Err(error) => eprintln!("{error}"),
            }
            // Whoever uses it next in this process finds it missing and builds it again.
            forget_prepared_templates(&other);
        }
        Ok(dropped)
    }

    async fn drop_template(&self, base: &str, template: &str) -> Result<(), TestDbError> {
        if self
            .database_exists(&bookkeeping_database_name(base))
            .await?
        {
            Bookkeeping::open(self, base)
                .await?
                .retire_template(self, template)
                .await?;
        }
        self.execute(
            &format!(
                "ALTER DATABASE {} WITH IS_TEMPLATE false",
                quote_identifier(template)
            ),
            &format!("unmarking outdated template database {template}"),
            "drop it by hand once no test run uses it",
        )
        .await?;
        self.drop_database_force(template).await
    }
}
