//! What this process holds on the server, as session-level advisory locks on a connection of its own, so that another test run's cleanup can tell it from leftovers.
//!
//! Several test runs may share one server (two clones of the repository, or one clone twice),
//! and one run's `testdb cleanup` or template rebuild must not break databases the other still
//! uses. A session without activity proves nothing: a test holds its database without a session
//! between `CREATE DATABASE` and its first connection, or while its pool has closed idle
//! connections. The server releases advisory locks when the holding session ends, however the
//! process ends, so a lock held is a process alive.
//!
//! * Owner: each process locks a token of its own, `(OWNER_NAMESPACE, token)`, puts it at the end
//!   of every test database name it creates and into every pool entry it claims. Cleanup spares
//!   what belongs to a locked token.
//! * Templates: a process holds a shared lock on each template it clones from. Dropping an
//!   outdated template takes the exclusive lock with `pg_try_advisory_lock`, so a template
//!   another process still clones from is left for a later run to drop.
//!
//! Every role can read `pg_locks` and take advisory locks, so none of this needs a superuser.
//! Advisory locks conflict only within one database: every process of a server takes them in the
//! maintenance database, the same one for all (`postgres` where it exists).

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::time::SystemTime;

use sea_orm::sqlx::{self, Connection as _, PgConnection};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};
use tokio::sync::Mutex;

use dbops_common::fnv::{FNV_OFFSET_BASIS, fnv1a};

use crate::errors::{TestDbError, describe_db_error};
use crate::runtime::CONNECT_TIMEOUT;
use crate::server::Server;

/// `pg_advisory_lock(int4, int4)` namespaces; the other locks of `db_testing` take one `int8`
/// key, which PostgreSQL keeps apart from the two-key form.
const OWNER_NAMESPACE: i32 = i32::from_be_bytes(*b"dbto");
const TEMPLATE_NAMESPACE: i32 = i32::from_be_bytes(*b"dbtt");
/// A token is random among 2^32; taking one a live process holds is retried, not fatal.
const OWNER_ATTEMPTS: usize = 16;
/// Hex digits of the token at the end of a test database name.
pub(crate) const OWNER_DIGITS: usize = 8;
const REMEDY: &str = "check that the server accepts connections";

/// SQL that is true when the owner token in `column` is held by a live process.
pub(crate) fn owner_is_live_sql(column: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 2 \
         AND l.granted AND l.classid::int8 = {} AND l.objid::int8 = {column})",
        OWNER_NAMESPACE as u32
    )
}

/// The owner token at the end of a test database name, if it has one; older names do not.
pub(crate) fn owner_in_name(name: &str) -> Option<u32> {
    let (_, token) = name.rsplit_once('_')?;
    if token.len() != OWNER_DIGITS {
        return None;
    }
    u32::from_str_radix(token, 16).ok()
}

/// The owner tokens held by live processes right now.
pub(crate) async fn live_owners(
    pool: &DatabaseConnection,
    server: &Server,
) -> Result<BTreeSet<u32>, TestDbError> {
    let failed = |error: sea_orm::DbErr| TestDbError::Failed {
        action: "listing the test runs alive on the server".to_owned(),
        cause: server.scrub(&describe_db_error(&error)),
        remedy: "check the server is healthy",
    };
    let rows = pool
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT DISTINCT objid::int8 AS owner FROM pg_locks \
             WHERE locktype = 'advisory' AND objsubid = 2 AND granted AND classid::int8 = $1",
            [Value::from(i64::from(OWNER_NAMESPACE as u32))],
        ))
        .await
        .map_err(failed)?;
    rows.iter()
        .map(|row| {
            row.try_get::<i64>("", "owner")
                .map(|owner| owner as u32)
                .map_err(failed)
        })
        .collect()
}

/// This process's locks; dropping it (at exit) ends the session and so releases them.
pub(crate) struct Lease {
    owner: u32,
    session: Mutex<Session>,
    server: Server,
}

struct Session {
    connection: PgConnection,
    /// Templates this process holds the shared lock on.
    templates: BTreeSet<String>,
}

impl Lease {
    /// Connects to `url` and locks a token no live process holds.
    pub(crate) async fn acquire(server: &Server, url: &str) -> Result<Lease, TestDbError> {
        let mut connection = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url))
            .await
            .map_err(|_| {
                Self::failure(
                    server,
                    format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
                )
            })?
            .map_err(|error| Self::failure(server, server.scrub(&error.to_string())))?;
        for attempt in 0..OWNER_ATTEMPTS {
            let candidate =
                RandomState::new().hash_one((std::process::id(), attempt, SystemTime::now()))
                    as u32;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(OWNER_NAMESPACE)
                .bind(candidate as i32)
                .fetch_one(&mut connection)
                .await
                .map_err(|error| Self::failure(server, server.scrub(&error.to_string())))?;
            if locked {
                return Ok(Lease {
                    owner: candidate,
                    session: Mutex::new(Session {
                        connection,
                        templates: BTreeSet::new(),
                    }),
                    server: server.clone(),
                });
            }
        }
        Err(Self::failure(
            server,
            format!("{OWNER_ATTEMPTS} random tokens were all taken"),
        ))
    }

    pub(crate) fn owner(&self) -> u32 {
        self.owner
    }

    /// Marks `template` as cloned from by this process until it exits; waits while another
    /// process is dropping it, after which the caller finds it missing and builds it again.
    pub(crate) async fn use_template(&self, template: &str) -> Result<(), TestDbError> {
        let mut session = self.session.lock().await;
        if session.templates.contains(template) {
            return Ok(());
        }
        sqlx::query("SELECT pg_advisory_lock_shared($1, $2)")
            .bind(TEMPLATE_NAMESPACE)
            .bind(template_key(template))
            .execute(&mut session.connection)
            .await
            .map_err(|error| {
                self.failed(&format!("marking template {template} as in use"), &error)
            })?;
        session.templates.insert(template.to_owned());
        Ok(())
    }

    /// Runs `work` (dropping `template`) only if no other process clones from `template`, and
    /// keeps newcomers out meanwhile; `None` when it is in use. This process's own shared lock
    /// does not count (PostgreSQL never lets a session conflict with itself) and is released.
    pub(crate) async fn while_template_unused<T>(
        &self,
        template: &str,
        work: impl Future<Output = T>,
    ) -> Result<Option<T>, TestDbError> {
        let mut session = self.session.lock().await;
        let key = template_key(template);
        let action = format!("locking template {template} to drop it");
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(TEMPLATE_NAMESPACE)
            .bind(key)
            .fetch_one(&mut session.connection)
            .await
            .map_err(|error| self.failed(&action, &error))?;
        if !locked {
            return Ok(None);
        }
        let outcome = work.await;
        let unlock = if session.templates.remove(template) {
            "SELECT pg_advisory_unlock($1, $2), pg_advisory_unlock_shared($1, $2)"
        } else {
            "SELECT pg_advisory_unlock($1, $2)"
        };
        sqlx::query(unlock)
            .bind(TEMPLATE_NAMESPACE)
            .bind(key)
            .execute(&mut session.connection)
            .await
            .map_err(|error| self.failed(&action, &error))?;
        Ok(Some(outcome))
    }

    fn failed(&self, action: &str, error: &sqlx::Error) -> TestDbError {
        TestDbError::Failed {
            action: action.to_owned(),
            cause: self.server.scrub(&error.to_string()),
            remedy: REMEDY,
        }
    }

    fn failure(server: &Server, cause: String) -> TestDbError {
        TestDbError::Failed {
            action: format!("holding a test run lease on {}", server.redacted_url()),
            cause,
            remedy: REMEDY,
        }
    }
}

fn template_key(template: &str) -> i32 {
    fnv1a(FNV_OFFSET_BASIS, template.as_bytes()) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_read_from_the_end_of_new_names_only() {
        assert_eq!(owner_in_name("app_test_4242_7_0badcafe"), Some(0x0bad_cafe));
        // Names from before the owner token ended in six random hex digits.
        assert_eq!(owner_in_name("app_test_4242_7_abcdef"), None);
        assert_eq!(owner_in_name("app_test_stale_1234"), None);
        assert_eq!(owner_in_name("app_test_4242_7_nothex00"), None);
    }
}
