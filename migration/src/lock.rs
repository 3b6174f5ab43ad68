//! The migration lock: a PostgreSQL advisory lock that serialises every schema-changing run on a
//! database, waited for up to `MIGRATION_LOCK_TIMEOUT` seconds.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use sea_orm::sqlx::{self, Connection as _, PgConnection};

const DEFAULT_LOCK_TIMEOUT_SECS: u64 = 60;
const LOCK_TIMEOUT_ENV: &str = "MIGRATION_LOCK_TIMEOUT";
// One key per database: runs against different databases never wait for each other.
const TRY_LOCK_SQL: &str =
    "SELECT pg_try_advisory_lock(hashtext('seaql_migrations:' || current_database()))";
const LOCK_SQL: &str =
    "SELECT pg_advisory_lock(hashtext('seaql_migrations:' || current_database()))";

/// How long to wait for the lock: `MIGRATION_LOCK_TIMEOUT` seconds, 60 when unset.
pub(crate) fn lock_timeout() -> Result<Duration> {
    match std::env::var(LOCK_TIMEOUT_ENV) {
        Err(_) => Ok(Duration::from_secs(DEFAULT_LOCK_TIMEOUT_SECS)),
        Ok(value) => value.trim().parse::<u64>().map(Duration::from_secs).map_err(|_| {
            anyhow!("{LOCK_TIMEOUT_ENV}={value:?} is not a whole number of seconds: set it to e.g. 60, or unset it")
        }),
    }
}

/// A session-level advisory lock on its own connection: it is held until
/// [`MigrationLock::release`] or until the process dies and the server drops the session.
pub(crate) struct MigrationLock {
    connection: PgConnection,
}

impl MigrationLock {
    /// Takes the lock on `connection`'s database, saying so while another run holds it.
    pub(crate) async fn acquire(mut connection: PgConnection, timeout: Duration) -> Result<Self> {
        let acquired: bool = sqlx::query_scalar(TRY_LOCK_SQL)
            .fetch_one(&mut connection)
            .await
            .map_err(|e| anyhow!("cannot take the migration lock: {e}"))?;
        if !acquired {
            eprintln!("waiting for the migration lock held by another run…");
            wait_for_lock(&mut connection, timeout).await?;
        }
        Ok(Self { connection })
    }

    /// Ending the session releases the lock, even if unlocking were to fail.
    pub(crate) async fn release(self) {
        self.connection.close().await.ok();
    }
}

async fn wait_for_lock(connection: &mut PgConnection, timeout: Duration) -> Result<()> {
    let timed_out = || {
        anyhow!(
            "gave up after {}s waiting for the migration lock held by another run: let it finish, or raise {LOCK_TIMEOUT_ENV} (seconds)",
            timeout.as_secs()
        )
    };
    if timeout.is_zero() {
        return Err(timed_out());
    }
    // lock_timeout bounds the wait on the server side, so no polling is needed;
    // it is capped at what the setting accepts (about 24 days).
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128);
    sqlx::query("SELECT set_config('lock_timeout', $1, false)")
        .bind(format!("{timeout_ms}ms"))
        .execute(&mut *connection)
        .await
        .map_err(|e| anyhow!("cannot set lock_timeout for the migration lock: {e}"))?;
    match sqlx::query(LOCK_SQL).execute(&mut *connection).await {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
            return Err(timed_out());
        }
        Err(e) => bail!("cannot take the migration lock: {e}"),
    }
    sqlx::query("RESET lock_timeout")
        .execute(&mut *connection)
        .await
        .map_err(|e| anyhow!("cannot reset lock_timeout after taking the migration lock: {e}"))?;
    Ok(())
}
