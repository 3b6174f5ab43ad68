//! Connecting to PostgreSQL through SeaORM, shared by the migration CLI and `db::connection`: the
//! check of the URL before a driver sees it, and one line saying why a connection failed and what
//! to do, with the password masked.

use std::time::Duration;

use dbops_common::database_url::{self, UrlError};
use dbops_common::redact::{redact_url, scrub_password};
use dbops_common::text::one_line;
use sea_orm::sqlx::{self, Connection as _, PgConnection};
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

/// What a refused or missing server calls for.
const START_SERVER: &str = "start it with `cargo xtask db-up`";

/// Checks the URL before any driver sees it, so a typo gets a clear message
/// (and some drivers quote the whole URL, password included, in their errors).
///
/// ```
/// assert!(dbops_connect::validate_url("postgres://app:secret@127.0.0.1:5432/app").is_ok());
/// assert_eq!(
///     dbops_connect::validate_url("postgres:///app").unwrap_err(),
///     "DATABASE_URL postgres:///app names no host: expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"
/// );
/// ```
pub fn validate_url(url: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected postgres://USER:PASSWORD@HOST:PORT/DATABASE";
    let checked =
        database_url::parse_postgres(url).and_then(|parsed| database_url::require_host(&parsed));
    let problem = match checked {
        Ok(()) => return Ok(()),
        Err(UrlError::Malformed(error)) => format!("is malformed ({error})"),
        Err(UrlError::NotPostgres(_)) => "is not a PostgreSQL URL".to_owned(),
        Err(UrlError::NoHost(_) | UrlError::NoUser(_)) => "names no host".to_owned(),
    };
    Err(format!(
        "DATABASE_URL {} {problem}: {EXPECTED}",
        redact_url(url)
    ))
}

/// One direct connection to `url` within `timeout`, or why not (one line, without the target):
/// unlike a pool, which retries until its timeout and then only says so, it reports the cause.
pub async fn direct_connection(url: &str, timeout: Duration) -> Result<PgConnection, String> {
    match tokio::time::timeout(timeout, PgConnection::connect(url)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(explain_sqlx_error(&error)),
        Err(_) => Err(format!(
            "timed out after {}s — {START_SERVER}",
            timeout.as_secs()
        )),
    }
}

/// One line saying why connecting to `url` failed and what to do about it, password redacted.
pub fn describe_connect_error(url: &str, error: &DbErr) -> String {
    let target = redact_url(url);
    let explanation = match (sqlx_error(error), error) {
        (Some(sqlx_error), _) => explain_sqlx_error(sqlx_error),
        (None, DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)) => {
            format!("timed out — {START_SERVER}")
        }
        (None, other) => format!("{other} — check DATABASE_URL"),
    };
    scrub_password(
        &one_line(&format!("cannot connect to {target}: {explanation}")),
        url,
    )
}

/// What a driver error means for someone connecting, and what to do about it (one line).
pub fn explain_sqlx_error(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) => format!("{io} — {START_SERVER}"),
        sqlx::Error::PoolTimedOut => format!("timed out — {START_SERVER}"),
        sqlx::Error::Tls(tls) => format!("TLS failed ({tls}) — check sslmode in DATABASE_URL"),
        sqlx::Error::Database(database) => match database.code().as_deref() {
            Some("28P01" | "28000") => format!(
                "{} — check the user and password in DATABASE_URL",
                database.message()
            ),
            Some("3D000") => format!(
                "{} — create it or fix the database name in DATABASE_URL",
                database.message()
            ),
            _ => format!("{} — check DATABASE_URL", database.message()),
        },
        other => format!("{other} — check DATABASE_URL"),
    }
}

/// The driver's error inside SeaORM's, where there is one.
pub fn sqlx_error(error: &DbErr) -> Option<&sqlx::Error> {
    match error {
        DbErr::Conn(RuntimeErr::SqlxError(error))
        | DbErr::Exec(RuntimeErr::SqlxError(error))
        | DbErr::Query(RuntimeErr::SqlxError(error)) => Some(error.as_ref()),
        _ => None,
    }
}

/// The SQLSTATE of a server error (`3D000`, say), where the server sent one.
pub fn sqlstate(error: &DbErr) -> Option<String> {
    sqlx_error(error)?
        .as_database_error()?
        .code()
        .map(|code| code.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_explained_without_the_password() {
        assert_eq!(
            validate_url("mysql://app:secret@h/db").unwrap_err(),
            "DATABASE_URL mysql://app:***@h/db is not a PostgreSQL URL: expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        );
        let malformed = validate_url("postgres://app:secret@h:port/db").unwrap_err();
        assert!(
            malformed.starts_with("DATABASE_URL postgres://app:***@h:port/db is malformed ("),
            "{malformed}"
        );
        assert!(validate_url("postgres://127.0.0.1/db").is_ok());
    }

    #[test]
    fn acquire_timeouts_say_how_to_start_the_server() {
        assert_eq!(
            describe_connect_error(
                "postgres://app:secret@h/db",
                &DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)
            ),
            "cannot connect to postgres://app:***@h/db: timed out — start it with `cargo xtask db-up`"
        );
    }
}
