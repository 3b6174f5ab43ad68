//! Connecting to the application database from `DATABASE_URL`, with pool limits
//! taken from the environment and errors that never show the password.

use std::fmt;
use std::time::Duration;

use dbops_common::redact::{redact_url, scrub_password};
use dbops_connect::{describe_connect_error, direct_connection, validate_url};
use sea_orm::sqlx::Connection as _;
use sea_orm::{ConnAcquireErr, ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr};

const URL_ENV: &str = "DATABASE_URL";
const MAX_CONNECTIONS_ENV: &str = "DB_POOL_MAX_CONNECTIONS";
const ACQUIRE_TIMEOUT_ENV: &str = "DB_ACQUIRE_TIMEOUT_SECS";
const DEFAULT_MAX_CONNECTIONS: u32 = 10;
const DEFAULT_ACQUIRE_TIMEOUT_SECS: u64 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no connection could be made; every message is one line with the password redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// `DATABASE_URL` is unset or empty.
    MissingUrl,
    /// The URL is not a usable PostgreSQL URL; holds the explanation.
    InvalidUrl(String),
    /// A pool setting in the environment does not parse.
    InvalidSetting {
        variable: &'static str,
        value: String,
    },
    /// The server refused, could not be reached, or rejected the login; holds the explanation.
    Unreachable(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingUrl => write!(
                f,
                "{URL_ENV} is not set: export {URL_ENV}=postgres://USER:PASSWORD@HOST:PORT/DATABASE (a local server: `cargo xtask db-up`)"
            ),
            Self::InvalidUrl(explanation) | Self::Unreachable(explanation) => {
                f.write_str(explanation)
            }
            Self::InvalidSetting { variable, value } => write!(
                f,
                "{variable}={value:?} is not a positive whole number: fix or unset it"
            ),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Returns `url` with its password replaced by `***`, for messages and logs.
///
/// ```
/// assert_eq!(
///     db::connection::redact("postgres://app:secret@127.0.0.1:5432/app"),
///     "postgres://app:***@127.0.0.1:5432/app"
/// );
/// ```
pub fn redact(url: &str) -> String {
    redact_url(url)
}

/// Connects to `DATABASE_URL`; see [`connect_to`].
pub async fn connect() -> Result<DatabaseConnection, ConnectError> {
    let url = std::env::var(URL_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty())
        .ok_or(ConnectError::MissingUrl)?;
    connect_to(&url).await
}

/// Opens a connection pool to `url`, sized by `DB_POOL_MAX_CONNECTIONS` (default 10),
/// waiting at most `DB_ACQUIRE_TIMEOUT_SECS` (default 5) for a free connection and
/// 5 seconds to connect. SQL statements are not logged.
pub async fn connect_to(url: &str) -> Result<DatabaseConnection, ConnectError> {
    validate_url(url).map_err(|error| ConnectError::InvalidUrl(scrub_password(&error, url)))?;
    let max_connections = positive_setting(MAX_CONNECTIONS_ENV, DEFAULT_MAX_CONNECTIONS.into())?;
    let acquire_timeout = positive_setting(ACQUIRE_TIMEOUT_ENV, DEFAULT_ACQUIRE_TIMEOUT_SECS)?;

    let mut options = ConnectOptions::new(url);
    options
        .max_connections(u32::try_from(max_connections).unwrap_or(u32::MAX))
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(Duration::from_secs(acquire_timeout))
        // Statements at info level would drown application logs.
        .sqlx_logging(false);

    let bound = CONNECT_TIMEOUT + Duration::from_secs(acquire_timeout);
    match tokio::time::timeout(bound, Database::connect(options)).await {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) if !is_timeout(&error) => Err(ConnectError::Unreachable(
            describe_connect_error(url, &error),
        )),
        // The pool retries until it times out and then no longer says why; one
        // direct attempt does.
        _ => Err(ConnectError::Unreachable(diagnose(url).await)),
    }
}

fn is_timeout(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => true,
        DbErr::Conn(RuntimeErr::SqlxError(sqlx_error)) => {
            matches!(sqlx_error.as_ref(), sea_orm::sqlx::Error::PoolTimedOut)
        }
        _ => false,
    }
}

async fn diagnose(url: &str) -> String {
    let explanation = match direct_connection(url, CONNECT_TIMEOUT).await {
        Ok(connection) => {
            connection.close().await.ok();
            "timed out, though a direct connection works — raise DB_ACQUIRE_TIMEOUT_SECS".to_owned()
        }
        Err(explanation) => explanation,
    };
    scrub_password(
        &format!("cannot connect to {}: {explanation}", redact(url)),
        url,
    )
}

fn positive_setting(variable: &'static str, default: u64) -> Result<u64, ConnectError> {
    let Ok(value) = std::env::var(variable) else {
        return Ok(default);
    };
    match value.trim().parse::<u64>() {
        Ok(parsed) if parsed > 0 => Ok(parsed),
        _ => Err(ConnectError::InvalidSetting { variable, value }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password() {
        assert_eq!(
            redact("postgres://app:app@127.0.0.1:5432/app"),
            "postgres://app:***@127.0.0.1:5432/app"
        );
        assert_eq!(redact("postgres://app@host/db"), "postgres://app@host/db");
    }

    #[tokio::test]
    async fn malformed_urls_are_rejected_without_showing_the_password() {
        let error = connect_to("postgres://app:secret@/db").await.unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, ConnectError::InvalidUrl(_)), "{message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[tokio::test]
    async fn refused_connections_say_how_to_start_the_server() {
        // Port 1 is reserved (tcpmux) and closed on developer machines and CI runners.
        let error = connect_to("postgres://app:secret@127.0.0.1:1/app")
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, ConnectError::Unreachable(_)), "{message}");
        assert!(
            message.starts_with("cannot connect to postgres://app:***@127.0.0.1:1/app: "),
            "{message}"
        );
        assert!(message.contains("cargo xtask db-up"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
}
