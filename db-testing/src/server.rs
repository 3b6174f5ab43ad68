//! The server and naming derived from `DATABASE_URL`: its URL for any database on it, always
//! shown with the password masked, and a quick TCP probe that tells "nothing listens there" apart.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use dbops_common::database_url::{self, UrlError};
use dbops_common::redact::{redact_url, scrub_password_everywhere};
use dbops_common::text::one_line;
use sea_orm::DbErr;
use url::Url;

use crate::errors::{TestDbError, describe_db_error};
use crate::names::sanitize_base_name;

const TCP_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The server and naming derived from `DATABASE_URL`.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) url: Url,
    /// What the databases of this run are named after: the URL's database, sanitized.
    pub(crate) base_name: String,
}

impl Server {
    pub(crate) fn from_env() -> Result<Server, TestDbError> {
        let raw = std::env::var("DATABASE_URL").map_err(|_| TestDbError::NotConfigured)?;
        if raw.trim().is_empty() {
            return Err(TestDbError::NotConfigured);
        }
        Self::parse(raw.trim())
    }

    /// Only the scheme is checked: a URL without a host (a socket directory in its query) works.
    pub(crate) fn parse(raw: &str) -> Result<Server, TestDbError> {
        let url = database_url::parse_postgres(raw).map_err(|error| TestDbError::InvalidUrl {
            reason: match error {
                UrlError::Malformed(error) => error.to_string(),
                UrlError::NotPostgres(scheme) => format!("scheme `{scheme}` is not postgres"),
                other => other.to_string(),
            },
        })?;
        let named_database = database_url::database(&url);
        let database = if !named_database.is_empty() {
            named_database
        } else if !url.username().is_empty() {
            // PostgreSQL's own default: the database named like the user.
            database_url::user(&url)
        } else {
            "postgres".to_owned()
        };
        let base_name = sanitize_base_name(&database);
        Ok(Server { url, base_name })
    }

    pub(crate) fn database_url(&self, database: &str) -> String {
        let mut url = self.url.clone();
        url.set_path(&format!("/{database}"));
        url.to_string()
    }

    pub(crate) fn redacted_database_url(&self, database: &str) -> String {
        redact_url(&self.database_url(database))
    }

    pub(crate) fn redacted_url(&self) -> String {
        redact_url(self.url.as_str())
    }

    pub(crate) fn configured_database(&self) -> String {
        database_url::database(&self.url)
    }

    /// Error text from drivers may echo the URL; the password must never reach the output.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let text = one_line(text);
        match self.url.password() {
            Some(password) => scrub_password_everywhere(&text, password),
            None => text,
        }
    }

    /// Nothing answered at this server, for `error`.
    pub(crate) fn unreachable(&self, error: &DbErr) -> TestDbError {
        TestDbError::Unreachable {
            url: self.redacted_url(),
            cause: self.scrub(&describe_db_error(error)),
        }
    }
}

/// The connection pool retries a refused connection until its timeout and then reports only
/// "timed out"; a plain TCP connect first tells "nothing listens there" apart, and quickly.
pub(crate) async fn probe_tcp(server: &Server) -> Result<(), TestDbError> {
    let socket_in_query = server.url.query_pairs().any(|(key, _)| key == "host");
    let host = match server.url.host_str() {
        Some(host) if !host.is_empty() && !socket_in_query => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        _ => return Ok(()),
    };
    let port = server.url.port().unwrap_or(5432);
    let probed = tokio::task::spawn_blocking(move || {
        let addresses = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|error| format!("cannot resolve host {host}: {error}"))?;
        let mut last_failure = format!("host {host} has no address");
        for address in addresses {
            match TcpStream::connect_timeout(&address, TCP_PROBE_TIMEOUT) {
                Ok(_) => return Ok(()),
                Err(error) => last_failure = describe_io_error(&error),
            }
        }
        Err(last_failure)
    })
    .await
    .unwrap_or_else(|error| Err(format!("probe failed: {error}")));
    probed.map_err(|cause| TestDbError::Unreachable {
        url: server.redacted_url(),
        cause,
    })
}

fn describe_io_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("no answer within {}s", TCP_PROBE_TIMEOUT.as_secs())
        }
        _ => one_line(&error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_and_error_text_hide_the_password() {
        let server = Server::parse("postgres://app:s%40cret@127.0.0.1:5432/App").unwrap();
        assert_eq!(server.base_name, "app");
        assert_eq!(
            server.redacted_url(),
            "postgres://app:***@127.0.0.1:5432/App"
        );
        assert_eq!(
            server.redacted_database_url("app_test_1"),
            "postgres://app:***@127.0.0.1:5432/app_test_1"
        );
        assert_eq!(
            server.scrub("auth failed for s@cret\nand s%40cret"),
            "auth failed for *** and ***"
        );
    }

    #[test]
    fn url_without_database_uses_the_user_name() {
        let server = Server::parse("postgres://carol@localhost").unwrap();
        assert_eq!(server.base_name, "carol");
        assert!(matches!(
            Server::parse("mysql://a@b/c"),
            Err(TestDbError::InvalidUrl { .. })
        ));
    }
}
