//! [`TestDb`]: one test's database, connected, and dropped (or kept for inspection) with it; and
//! [`Provisioned`], a database created or claimed for a test but not yet connected to.

use std::fmt;
use std::time::Duration;

use dbops_common::text::one_line;
use sea_orm::{DatabaseConnection, DbErr};

use crate::admin::admin;
use crate::errors::{TestDbError, describe_db_error};
use crate::provision::{PoolSlot, Provisioned};
use crate::runtime::{block_on_admin_runtime, connect_pool, on_admin_runtime};
use crate::server::Server;
use crate::template::TestTemplate;

const KEEP_ON_FAILURE_ENV: &str = "DB_TEST_KEEP";
const TEST_POOL_MAX_CONNECTIONS: u32 = 3;
/// Upper bound for the synchronous drop in [`TestDb`]'s `Drop`, so a wedged server cannot hang a test run.
const DROP_TIMEOUT: Duration = Duration::from_secs(60);

/// A fresh database of its own for one test, dropped when this value is dropped.
///
/// ```no_run
/// # async fn example() {
/// let test_db = db_testing::TestDb::new().await;
/// let created = db::projects::create(test_db.conn(), db::projects::NewProject {
///     name: "Apollo".into(),
///     description: None,
/// })
/// .await
/// .unwrap();
/// # let _ = created;
/// # }
/// ```
pub struct TestDb {
    name: String,
    url: String,
    redacted_url: String,
    connection: Option<DatabaseConnection>,
    claimed_from_pool: bool,
    /// The pool this database's drop tops up again; `None` for databases made outside the pool.
    refills: Option<PoolSlot>,
}

impl TestDb {
    /// A database migrated to head: a ready clone from the pool, or a fresh clone of the template.
    /// Panics with a one-line message naming the fix when no server is reachable, because a test
    /// cannot proceed without one.
    pub async fn new() -> TestDb {
        TestTemplate::application()
            .test_db()
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// An empty, unmigrated database (copied from `template0`), for testing migrations themselves.
    pub async fn empty() -> TestDb {
        Self::create_empty()
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// A small pool (at most three connections) to this database.
    pub fn conn(&self) -> &DatabaseConnection {
        self.connection
            .as_ref()
            .expect("the connection is only taken while dropping")
    }

    /// The full URL of this database, password included, for raw connections and child processes.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The database's name on the server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this database was cloned ahead of time and claimed from the pool, rather than
    /// cloned on demand.
    pub fn claimed_from_pool(&self) -> bool {
        self.claimed_from_pool
    }

    async fn create_empty() -> Result<TestDb, TestDbError> {
        let provisioned = on_admin_runtime(async {
            let admin = admin().await?;
            let base = admin.server.base_name.clone();
            admin
                .clone_on_demand(&base, "template0", admin.clone_strategy, None)
                .await
        })
        .await?;
        Self::open(provisioned).await
    }

    /// Connects to a provisioned database. A claimed clone that cannot be reached (dropped by a
    /// `testdb cleanup` running alongside, say) is discarded and replaced by an on-demand clone.
    pub(crate) async fn open(provisioned: Provisioned) -> Result<TestDb, TestDbError> {
        let provisioned = match connect_pool(&provisioned.url, TEST_POOL_MAX_CONNECTIONS).await {
            Ok(connection) => return Ok(TestDb::connected(provisioned, connection)),
            Err(_) if provisioned.claimed_from_pool => {
                on_admin_runtime(async move {
                    let admin = admin().await?;
                    provisioned.discard(&admin).await?;
                    admin
                        .clone_on_demand(
                            &provisioned.base,
                            &provisioned.source,
                            admin.clone_strategy,
                            provisioned.refills.clone(),
                        )
                        .await
                })
                .await?
            }
            Err(error) => return Err(Self::discard_unreachable(provisioned, &error).await),
        };
        match connect_pool(&provisioned.url, TEST_POOL_MAX_CONNECTIONS).await {
            Ok(connection) => Ok(TestDb::connected(provisioned, connection)),
            Err(error) => Err(Self::discard_unreachable(provisioned, &error).await),
        }
    }

    /// `provisioned`, connected through `connection`.
    fn connected(provisioned: Provisioned, connection: DatabaseConnection) -> TestDb {
        TestDb {
            name: provisioned.name,
            url: provisioned.url,
            redacted_url: provisioned.redacted_url,
            connection: Some(connection),
            claimed_from_pool: provisioned.claimed_from_pool,
            refills: provisioned.refills,
        }
    }

    async fn discard_unreachable(provisioned: Provisioned, error: &DbErr) -> TestDbError {
        let cause = match Server::parse(&provisioned.url) {
            Ok(server) => server.scrub(&describe_db_error(error)),
            Err(_) => one_line(&describe_db_error(error)),
        };
        let name = provisioned.name.clone();
        let discarded =
            on_admin_runtime(async move { provisioned.discard(&*admin().await?).await }).await;
        if let Err(discard_error) = discarded {
            return discard_error;
        }
        TestDbError::Failed {
            action: format!("connecting to test database {name}"),
            cause,
            remedy: "check that the DATABASE_URL user may connect to the databases it creates",
        }
    }
}

impl fmt::Debug for TestDb {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TestDb")
            .field("name", &self.name)
            .field("url", &self.redacted_url)
            .field("claimed_from_pool", &self.claimed_from_pool)
            .finish()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Closes this pool's sockets now; the forced drop below ends whatever the server still runs.
        drop(self.connection.take());
        let name = self.name.clone();
        let claimed_from_pool = self.claimed_from_pool;
        let refills = self.refills.clone();
        let keep = std::thread::panicking() && keep_on_failure_requested();

        let finished = block_on_admin_runtime(
            async move {
                let admin = admin().await?;
                // A live filler drops it and refills the pool off this test's path.
                if let Some(slot) = refills.as_ref().filter(|_| !keep)
                    && slot
                        .bookkeeping
                        .hand_to_filler(&name, &slot.template, claimed_from_pool)
                        .await?
                {
                    return Ok(());
                }
                let released = if keep {
                    admin.mark_kept(&name).await
                } else {
                    admin.drop_database_force(&name).await
                };
                // Refilled even when the release failed: the next test should not pay for this one.
                let refilled = match refills {
                    Some(slot) => {
                        slot.release_and_refill(&admin, &name, claimed_from_pool)
                            .await
                    }
                    None => Ok(()),
                };
                released.and(refilled)
            },
            DROP_TIMEOUT,
        );
        match finished {
            Some(Ok(())) => {}
            Some(Err(error)) => eprintln!("{error}"),
            None => eprintln!(
                "dropping test database {} took longer than {}s: `testdb cleanup` (run by `cargo xtask db-test`) removes it later",
                self.name,
                DROP_TIMEOUT.as_secs()
            ),
        }
        if keep {
            eprintln!(
                "kept test database {} for debugging: {}",
                self.name, self.redacted_url
            );
        }
    }
}

fn keep_on_failure_requested() -> bool {
    matches!(
        std::env::var(KEEP_ON_FAILURE_ENV).as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}
