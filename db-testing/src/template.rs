//! [`TestTemplate`]: a migration set (a migrator and the fingerprint of its sources) and the
//! template database, pool and test databases made from it on the `DATABASE_URL` server.

use std::fmt;
use std::marker::PhantomData;

use dbops_common::text::one_line;
use migration::MigratorTrait;

use crate::admin::{Admin, admin};
use crate::errors::TestDbError;
use crate::filler::{self, FillerReport, PoolFiller};
use crate::names::{sanitize_base_name, template_name};
use crate::pool::{Bookkeeping, bookkeeping_database_name};
use crate::prepared::{Plan, ensure_prepared};
use crate::runtime::{on_admin_runtime, spawn_on_admin_runtime};
use crate::strategy::CloneStrategy;
use crate::test_db::TestDb;

/// Fingerprint of the migration sources and the `sea-orm-migration` version, computed by `build.rs`.
pub(crate) const MIGRATIONS_FINGERPRINT: &str = env!("DB_TESTING_MIGRATIONS_FINGERPRINT");
const POOL_SIZE_ENV: &str = "DB_TEST_POOL_SIZE";
/// Enough for the two to four tests a small machine runs at once; each ready clone costs disk.
const DEFAULT_POOL_SIZE: usize = 4;
const MAX_POOL_SIZE: usize = 64;

/// The migration set a template database is built from: a migrator and a fingerprint that changes
/// whenever its migrations do.
///
/// [`TestDb::new`] and the free functions of this crate use [`TestTemplate::application`];
/// `db-bench` and the helper's own tests use synthetic migrators or base names of their own,
/// through exactly the same code.
pub struct TestTemplate<M> {
    fingerprint: String,
    base_name: Option<String>,
    pool_size: Option<usize>,
    migrator: PhantomData<fn() -> M>,
}

impl TestTemplate<migration::Migrator> {
    /// The application's migrations, fingerprinted by `build.rs`.
    pub fn application() -> Self {
        Self::new(MIGRATIONS_FINGERPRINT)
    }
}

impl<M> Clone for TestTemplate<M> {
    fn clone(&self) -> Self {
        TestTemplate {
            fingerprint: self.fingerprint.clone(),
            base_name: self.base_name.clone(),
            pool_size: self.pool_size,
            migrator: PhantomData,
        }
    }
}

impl<M> fmt::Debug for TestTemplate<M> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TestTemplate")
            .field("migrator", &std::any::type_name::<M>())
            .field("fingerprint", &self.fingerprint)
            .field("base_name", &self.base_name)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl<M: MigratorTrait + 'static> TestTemplate<M> {
    /// Templates for `M`; `fingerprint` must change whenever `M`'s migrations do, because a
    /// template whose name is unchanged is reused as it is.
    pub fn new(fingerprint: impl Into<String>) -> Self {
        TestTemplate {
            fingerprint: fingerprint.into(),
            base_name: None,
            pool_size: None,
            migrator: PhantomData,
        }
    }

    /// Names the databases `{base_name}_…` instead of after the `DATABASE_URL` database. Templates
    /// of one base replace each other (the newest fingerprint wins, once no other live process
    /// clones from the older), so give every migrator that must coexist with the application's a
    /// base of its own.
    pub fn with_base_name(mut self, base_name: &str) -> Self {
        self.base_name = Some(sanitize_base_name(base_name));
        self
    }

    /// Keeps `size` ready clones instead of `DB_TEST_POOL_SIZE` (default 4); `0` clones on demand.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = Some(size.min(MAX_POOL_SIZE));
        self
    }

    /// Builds the template if it is missing or stale, drops the outdated templates of its base
    /// that no other test run uses (with their pooled clones), tops the pool up, and returns the
    /// template's name.
    pub async fn prepare(&self) -> Result<String, TestDbError> {
        let template = self.clone();
        on_admin_runtime(async move {
            let admin = admin().await?;
            let plan = template.plan(&admin)?;
            let slot = ensure_prepared::<M>(&admin, &plan).await?;
            admin
                .drop_templates(&plan.base, Some(&plan.template))
                .await?;
            if let Some(slot) = slot {
                slot.fill(&admin).await?;
            }
            Ok(plan.template)
        })
        .await
    }

    /// Starts a filler of this template's pool in this process: until [`PoolFiller::stop`], it
    /// drops the databases tests finished with and keeps the pool full (the `filler` module).
    /// Returns once drops are handed to it. With a pool size of 0 it has nothing to do.
    pub async fn start_filler(&self) -> Result<PoolFiller, TestDbError> {
        let template = self.clone();
        PoolFiller::start(|stopped, registered| {
            spawn_on_admin_runtime(async move {
                let until = async move {
                    let _ = stopped.await;
                };
                let admin = admin().await?;
                let plan = template.plan(&admin)?;
                match ensure_prepared::<M>(&admin, &plan).await? {
                    Some(slot) => filler::serve(&admin, &slot, until, registered).await,
                    None => {
                        let _ = registered.send(());
                        until.await;
                        Ok(FillerReport::default())
                    }
                }
            })
        })
        .await
    }

    /// Runs a filler (see [`TestTemplate::start_filler`]) until `until` completes.
    pub async fn serve_pool(
        &self,
        until: impl std::future::Future<Output = ()>,
    ) -> Result<FillerReport, TestDbError> {
        let filler = self.start_filler().await?;
        until.await;
        filler.stop().await
    }

    /// A database migrated to head: claims a ready clone from the pool and connects to it, or
    /// clones the template on demand when none is ready.
    pub async fn test_db(&self) -> Result<TestDb, TestDbError> {
        self.provide(Acquisition::ClaimOrClone).await
    }

    /// A database migrated to head, always cloned on demand (what [`TestTemplate::test_db`] falls
    /// back to), for comparing the two. Dropping it does not refill the pool.
    pub async fn cloned_test_db(&self) -> Result<TestDb, TestDbError> {
        self.provide(Acquisition::Clone(None)).await
    }

    /// How many clones of the current template are ready to be claimed.
    pub async fn ready_in_pool(&self) -> Result<usize, TestDbError> {
        let template = self.clone();
        on_admin_runtime(async move {
            let admin = admin().await?;
            let plan = template.plan(&admin)?;
            let bookkeeping_name = bookkeeping_database_name(&plan.base);
            if !admin.database_exists(&bookkeeping_name).await? {
                return Ok(0);
            }
            Bookkeeping::open(&admin, &plan.base)
                .await?
                .ready_count(&plan.template)
                .await
        })
        .await
    }

    pub(crate) async fn provide(&self, acquisition: Acquisition) -> Result<TestDb, TestDbError> {
        let template = self.clone();
        let provisioned = on_admin_runtime(async move {
            let admin = admin().await?;
            let plan = template.plan(&admin)?;
            let slot = ensure_prepared::<M>(&admin, &plan).await?;
            let (refills, strategy) = match acquisition {
                Acquisition::ClaimOrClone => (slot, admin.clone_strategy),
                Acquisition::Clone(strategy) => (None, strategy.unwrap_or(admin.clone_strategy)),
            };
            if let Some(slot) = &refills
                && let Some(claimed) = slot.claim(&admin, &plan.base).await?
            {
                return Ok(claimed);
            }
            admin
                .clone_on_demand(&plan.base, &plan.template, strategy, refills)
                .await
        })
        .await?;
        TestDb::open(provisioned).await
    }

    pub(crate) fn plan(&self, admin: &Admin) -> Result<Plan, TestDbError> {
        let base = self
            .base_name
            .clone()
            .unwrap_or_else(|| admin.server.base_name.clone());
        let template = template_name(&base, &self.fingerprint, admin.server_major_version);
        let pool_size = match self.pool_size {
            Some(size) => size,
            None => parse_pool_size(std::env::var(POOL_SIZE_ENV).ok().as_deref())?,
        };
        Ok(Plan {
            base,
            template,
            pool_size,
        })
    }
}

/// How a test database is provided.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Acquisition {
    ClaimOrClone,
    /// Always cloned on demand, with this strategy or the server's.
    Clone(Option<CloneStrategy>),
}

fn parse_pool_size(raw: Option<&str>) -> Result<usize, TestDbError> {
    let Some(text) = raw.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(DEFAULT_POOL_SIZE);
    };
    text.parse::<usize>()
        .ok()
        .filter(|size| *size <= MAX_POOL_SIZE)
        .ok_or_else(|| TestDbError::Failed {
            action: format!("reading {POOL_SIZE_ENV}"),
            cause: format!(
                "`{}` is not a number from 0 to {MAX_POOL_SIZE}",
                one_line(text)
            ),
            remedy: "set it to how many ready clones to keep, or 0 to clone on demand",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_defaults_to_four_and_rejects_garbage_in_one_line() {
        assert_eq!(parse_pool_size(None), Ok(DEFAULT_POOL_SIZE));
        assert_eq!(parse_pool_size(Some(" ")), Ok(DEFAULT_POOL_SIZE));
        assert_eq!(parse_pool_size(Some("0")), Ok(0));
        assert_eq!(parse_pool_size(Some(" 7 ")), Ok(7));
        let error = parse_pool_size(Some("four\nplease"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "reading DB_TEST_POOL_SIZE failed (`four please` is not a number from 0 to 64): set it to how many ready clones to keep, or 0 to clone on demand"
        );
        assert!(parse_pool_size(Some("65")).is_err());
    }
}
