//! Template databases on the server: each checked (or built, under an advisory lock, by one
//! process of all) once per process rather than on every claim, and the outdated ones dropped
//! once no other live test run clones from them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use migration::MigratorTrait;
use sea_orm::sqlx::{self, Connection as _, PgConnection};
use tokio::sync::OnceCell;

use crate::admin::Admin;
use crate::errors::TestDbError;
use crate::names::{quote_identifier, template_lock_key, template_prefix};
use crate::pool::{Bookkeeping, bookkeeping_database_name};
use crate::provision::PoolSlot;
use crate::runtime::{CONNECT_TIMEOUT, connect_pool};

/// A `TestTemplate` resolved against the server: names and the pool size in effect.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) base: String,
    pub(crate) template: String,
    pub(crate) pool_size: usize,
}

/// Per process and template: the template is checked (or built) and outdated pool entries are
/// retired once, not on every claim.
type PreparedCell = Arc<OnceCell<Result<Option<PoolSlot>, TestDbError>>>;
static PREPARED: Mutex<BTreeMap<String, PreparedCell>> = Mutex::new(BTreeMap::new());

/// Makes sure the template of `plan` exists and is complete, once per process, and returns the
/// pool slot of the size `plan` asks for (`None` for size 0).
pub(crate) async fn ensure_prepared<M: MigratorTrait + 'static>(
    admin: &Admin,
    plan: &Plan,
) -> Result<Option<PoolSlot>, TestDbError> {
    let cell = PREPARED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(plan.template.clone())
        .or_default()
        .clone();
    let slot = cell
        .get_or_init(|| async {
            // Before looking at it: from here on no other run drops it while this process lives.
            admin.lease.use_template(&plan.template).await?;
            admin
                .ensure_template::<M>(&plan.base, &plan.template)
                .await?;
            if plan.pool_size == 0 {
                return Ok(None);
            }
            Ok(Some(open_slot(admin, plan, plan.pool_size).await?))
        })
        .await
        .clone()?;
    // The size in effect is the caller's, so one process may use several sizes for one template.
    Ok(match (slot, plan.pool_size) {
        (_, 0) => None,
        (Some(slot), size) => Some(PoolSlot { size, ..slot }),
        (None, size) => Some(open_slot(admin, plan, size).await?),
    })
}

async fn open_slot(admin: &Admin, plan: &Plan, size: usize) -> Result<PoolSlot, TestDbError> {
    Ok(PoolSlot {
        bookkeeping: Bookkeeping::open(admin, &plan.base).await?,
        template: plan.template.clone(),
        size,
    })
}

/// Forgets every template whose name starts with `prefix`, so whoever uses one next in this
/// process checks it again (and builds it when it was dropped).
pub(crate) fn forget_prepared_templates(prefix: &str) {
    PREPARED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|template, _| !template.starts_with(prefix));
}

impl Admin {
    /// Runs under the advisory lock, so concurrent threads and processes build the template once.
    async fn ensure_template<M: MigratorTrait + 'static>(
        &self,
        base: &str,
        template: &str,
    ) -> Result<(), TestDbError> {
        // A marked template is complete, so most processes (one per test under nextest) skip the
        // lock and the extra session it needs; whoever builds a template drops the outdated ones.
        if self.database_is_template(template).await? == Some(true) {
            return Ok(());
        }
        let mut lock_session = self.lock_template_builds(base).await?;
        let built = self.build_template_locked::<M>(base, template).await;

        // Ending the session releases the lock even if the explicit unlock fails.
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(template_lock_key(base))
            .execute(&mut lock_session)
            .await;
        let _ = lock_session.close().await;
        built
    }

    /// A session of its own holding the lock on building templates of `base`.
    async fn lock_template_builds(&self, base: &str) -> Result<PgConnection, TestDbError> {
        let failed = |cause: String| TestDbError::Failed {
            action: format!(
                "locking the template build on {}",
                self.server.redacted_url()
            ),
            cause,
            remedy: "check that the server accepts connections",
        };
        let mut lock_session = tokio::time::timeout(
            CONNECT_TIMEOUT,
            PgConnection::connect(&self.maintenance_url),
        )
        .await
        .map_err(|_| {
            failed(format!(
                "no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|error| failed(self.server.scrub(&error.to_string())))?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(template_lock_key(base))
            .execute(&mut lock_session)
            .await
            .map_err(|error| failed(self.server.scrub(&error.to_string())))?;
        Ok(lock_session)
    }

    async fn build_template_locked<M: MigratorTrait + 'static>(
        &self,
        base: &str,
        template: &str,
    ) -> Result<(), TestDbError> {
        match self.database_is_template(template).await? {
            Some(true) => {}
            Some(false) => {
                // Created but never marked: a build that crashed before all migrations succeeded.
                self.drop_database_force(template).await?;
                self.build_template::<M>(template).await?;
            }
            None => self.build_template::<M>(template).await?,
        }
        // Old templates would otherwise pile up, one per edit of the migrations.
        if let Err(error) = self.drop_templates(base, Some(template)).await {
            eprintln!("{error}");
        }
        Ok(())
    }

    /// Creates `template`, migrates it and only then marks it a template, so that a half-built
    /// one is recognised.
    async fn build_template<M: MigratorTrait + 'static>(
        &self,
        template: &str,
    ) -> Result<(), TestDbError> {
        self.execute(
            &format!(
                "CREATE DATABASE {} TEMPLATE template0",
                quote_identifier(template)
            ),
            &format!("creating template database {template}"),
            "grant the DATABASE_URL user CREATEDB, or run `cargo xtask db-test`",
        )
        .await?;

        if let Err(error) = self.migrate::<M>(template).await {
            let _ = self.drop_database_force(template).await;
            return Err(error);
        }

        self.execute(
            &format!(
                "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                quote_identifier(template)
            ),
            &format!("marking template database {template}"),
            "check that the DATABASE_URL user owns the databases it creates",
        )
        .await
    }

    async fn migrate<M: MigratorTrait + 'static>(&self, template: &str) -> Result<(), TestDbError> {
        let action = format!("applying the migrations to template database {template}");
        let remedy = "fix the failing migration; `cargo xtask db-migrate` shows the same error";
        let connection = connect_pool(&self.server.database_url(template), 1)
            .await
            .map_err(|error| self.failed(&action, &error, remedy))?;
        let migrated = M::up(&connection, None).await;
        // Cloning needs the template free of sessions, so close it properly before marking.
        let closed = connection.close().await;
        migrated.map_err(|error| self.failed(&action, &error, remedy))?;
        closed.map_err(|error| self.failed(&action, &error, remedy))
    }

    /// Drops the templates of `base` except `keep` that no other live process clones from, and
    /// their ready clones; returns how many templates it dropped. Templates still in use are left
    /// for a later run. An error on one template is reported and the others are still dropped.
    pub(crate) async fn drop_templates(
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
