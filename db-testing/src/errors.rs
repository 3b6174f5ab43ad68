//! Why a test database could not be provided ([`TestDbError`]), and the server's own words for a
//! failed call: every message is one line, names what to do and never contains a password.

use std::fmt;

use dbops_connect::sqlx_error;
use sea_orm::DbErr;
use sea_orm::sqlx;

use crate::runtime::CONNECT_TIMEOUT;

/// What a test run without a usable server is told to do.
pub(crate) const RUN_SUITE_HINT: &str = "run `cargo xtask db-test`";
/// SQLSTATE of a missing database.
pub(crate) const INVALID_CATALOG_NAME: &str = "3D000";
/// SQLSTATE of a database that gained a session.
pub(crate) const OBJECT_IN_USE: &str = "55006";

/// Why a test database could not be provided; every message is one line, names what to do and
/// never contains a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestDbError {
    /// `DATABASE_URL` is not set.
    NotConfigured,
    /// `DATABASE_URL` is not a PostgreSQL URL.
    InvalidUrl { reason: String },
    /// No server answered, or it refused the connection.
    Unreachable { url: String, cause: String },
    /// The server answered but an operation on it failed.
    Failed {
        action: String,
        cause: String,
        remedy: &'static str,
    },
}

impl fmt::Display for TestDbError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestDbError::NotConfigured => write!(
                formatter,
                "DATABASE_URL is not set: {RUN_SUITE_HINT}, or set DATABASE_URL=postgres://user:password@host:port/database"
            ),
            TestDbError::InvalidUrl { reason } => write!(
                formatter,
                "DATABASE_URL is not a PostgreSQL URL ({reason}): set it to postgres://user:password@host:port/database"
            ),
            TestDbError::Unreachable { url, cause } => {
                write!(
                    formatter,
                    "no PostgreSQL reachable at {url} ({cause}): {RUN_SUITE_HINT}"
                )
            }
            TestDbError::Failed {
                action,
                cause,
                remedy,
            } => write!(formatter, "{action} failed ({cause}): {remedy}"),
        }
    }
}

impl std::error::Error for TestDbError {}

/// The server's own message when there is one, rather than sea-orm's nested wrappers.
pub(crate) fn describe_db_error(error: &DbErr) -> String {
    if let Some(database_error) = sqlx_error(error).and_then(|error| error.as_database_error()) {
        return database_error.message().to_owned();
    }
    match sqlx_error(error) {
        Some(sqlx::Error::PoolTimedOut) => {
            format!("no connection within {}s", CONNECT_TIMEOUT.as_secs())
        }
        Some(sqlx_error) => sqlx_error.to_string(),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_message_is_one_line_and_names_the_fix() {
        let error = TestDbError::Unreachable {
            url: "postgres://app:***@127.0.0.1:5432/app".into(),
            cause: "connection refused".into(),
        };
        assert_eq!(
            error.to_string(),
            "no PostgreSQL reachable at postgres://app:***@127.0.0.1:5432/app (connection refused): run `cargo xtask db-test`"
        );
    }
}
