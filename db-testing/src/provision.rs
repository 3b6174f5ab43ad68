//! What is handed to a test before it connects: [`Provisioned`], a database cloned or claimed
//! for it, and [`PoolSlot`], the pool of ready clones it claims from and tops up again.

use std::sync::Arc;

use crate::admin::Admin;
use crate::errors::TestDbError;
use crate::pool::Bookkeeping;
use crate::strategy::CloneStrategy;

/// One pool: the clones of `template` kept ready in the bookkeeping of its base.
#[derive(Clone)]
pub(crate) struct PoolSlot {
    pub(crate) bookkeeping: Arc<Bookkeeping>,
    pub(crate) template: String,
    pub(crate) size: usize,
}

impl PoolSlot {
    /// A ready clone for this process, or `None` when none is ready.
    pub(crate) async fn claim(
        &self,
        admin: &Admin,
        base: &str,
    ) -> Result<Option<Provisioned>, TestDbError> {
        let Some(name) = self
            .bookkeeping
            .claim(&self.template, admin.lease.owner())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Provisioned::new(
            admin,
            base,
            &self.template,
            name,
            true,
            Some(self.clone()),
        )))
    }

    /// Tops the pool up to its size; returns how many clones it made.
    pub(crate) async fn fill(&self, admin: &Admin) -> Result<usize, TestDbError> {
        self.bookkeeping
            .fill(admin, &self.template, self.size)
            .await
    }

    /// Forgets the claimed clone `name`, which is dropped or being dropped.
    pub(crate) async fn forget(&self, name: &str) -> Result<(), TestDbError> {
        self.bookkeeping.forget(name).await
    }

    /// After a test's database `name` is dropped or kept: forgets it if it was claimed from the
    /// pool, and tops the pool up.
    pub(crate) async fn release_and_refill(
        &self,
        admin: &Admin,
        name: &str,
        claimed_from_pool: bool,
    ) -> Result<(), TestDbError> {
        let forgotten = if claimed_from_pool {
            self.forget(name).await
        } else {
            Ok(())
        };
        let filled = self.fill(admin).await.map(|_| ());
        forgotten.and(filled)
    }
}

/// A database created or claimed for a test, not yet connected to.
pub(crate) struct Provisioned {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) redacted_url: String,
    pub(crate) base: String,
    /// The template it was cloned from, for an on-demand replacement.
    pub(crate) source: String,
    pub(crate) claimed_from_pool: bool,
    pub(crate) refills: Option<PoolSlot>,
}

impl Provisioned {
    pub(crate) fn new(
        admin: &Admin,
        base: &str,
        source: &str,
        name: String,
        claimed_from_pool: bool,
        refills: Option<PoolSlot>,
    ) -> Provisioned {
        Provisioned {
            url: admin.server.database_url(&name),
            redacted_url: admin.server.redacted_database_url(&name),
            name,
            base: base.to_owned(),
            source: source.to_owned(),
            claimed_from_pool,
            refills,
        }
    }

    pub(crate) async fn discard(&self, admin: &Admin) -> Result<(), TestDbError> {
        let dropped = admin.drop_database_force(&self.name).await;
        let forgotten = match (&self.refills, self.claimed_from_pool) {
            (Some(slot), true) => slot.forget(&self.name).await,
            _ => Ok(()),
        };
        dropped.and(forgotten)
    }
}

impl Admin {
    /// Creates `{name}` from `source` with `strategy`, for a test that waits for it.
    pub(crate) async fn clone_on_demand(
        &self,
        base: &str,
        source: &str,
        strategy: CloneStrategy,
        refills: Option<PoolSlot>,
    ) -> Result<Provisioned, TestDbError> {
        let name = self.next_test_database_name(base);
        self.create_database_from(&name, source, strategy).await?;
        Ok(Provisioned::new(self, base, source, name, false, refills))
    }
}
