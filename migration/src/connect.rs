//! The command line's connections to `DATABASE_URL`: one direct session first, which says why a
//! server cannot be reached, then a small pool in the chosen schema.

use std::time::Duration;

use anyhow::{Result, anyhow};
use dbops_common::redact::redact_url;
use dbops_connect::{describe_connect_error, direct_connection};
use sea_orm::sqlx::PgConnection;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool of at most two connections to `url`, searching `schema`, logging statements when
/// `log_statements` (for `-v`, and for the dry run, which reads the log).
pub(crate) async fn connect(
    url: &str,
    schema: &str,
    log_statements: bool,
) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url);
    options
        .set_schema_search_path(schema)
        .max_connections(2)
        .min_connections(0)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(log_statements);
    // The pool's own timeouts cover connecting; this bounds DNS and TLS stalls too.
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, Database::connect(options)).await {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) => Err(anyhow!(describe_connect_error(url, &error))),
        Err(_) => Err(anyhow!(
            "cannot connect to {}: timed out after {}s — start it with `cargo xtask db-up`",
            redact_url(url),
            (CONNECT_TIMEOUT * 2).as_secs()
        )),
    }
}

/// One direct connection to `url`, with a bounded connect time.
pub(crate) async fn open_session(url: &str) -> Result<PgConnection> {
    direct_connection(url, CONNECT_TIMEOUT)
        .await
        .map_err(|explanation| anyhow!("cannot connect to {}: {explanation}", redact_url(url)))
}
