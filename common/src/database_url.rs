//! The one check of a `DATABASE_URL`: a URL of scheme `postgres` or `postgresql`, with a host and
//! a user where the caller needs them, and its parts percent-decoded.
//!
//! Callers pick the checks they need: xtask requires all three ([`parse`]); the migration CLI and
//! `db::connection` require a host; the test harness accepts a socket directory in the query
//! (`?host=/run/postgresql`) and so only the scheme. Every error is one line without the password.

use std::fmt;

use url::Url;

use crate::redact::redact_url;

const EXPECTED: &str =
    "expected a URL like postgres://app@127.0.0.1:5432/app with the password after the user name";

/// Why a `DATABASE_URL` was refused. The message is one line and never shows the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Not a URL at all.
    Malformed(url::ParseError),
    /// A URL of another scheme, named here.
    NotPostgres(String),
    /// No host; holds the URL with its password masked.
    NoHost(String),
    /// No user; holds the URL with its password masked.
    NoUser(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Malformed(error) => {
                write!(formatter, "DATABASE_URL is malformed ({error}): {EXPECTED}")
            }
            UrlError::NotPostgres(scheme) => write!(
                formatter,
                "DATABASE_URL uses the scheme {scheme:?}, not postgres: {EXPECTED}"
            ),
            UrlError::NoHost(redacted) => {
                write!(
                    formatter,
                    "DATABASE_URL {redacted} names no host: {EXPECTED}"
                )
            }
            UrlError::NoUser(redacted) => {
                write!(
                    formatter,
                    "DATABASE_URL {redacted} names no user: {EXPECTED}"
                )
            }
        }
    }
}

impl std::error::Error for UrlError {}

/// A `DATABASE_URL` with every check: a PostgreSQL URL that names a host and a user.
///
/// ```
/// use dbops_common::database_url::parse;
/// assert!(parse("postgres://app:secret@127.0.0.1:5432/app").is_ok());
/// assert_eq!(
///     parse("postgres://:secret@h/db").unwrap_err().to_string(),
///     "DATABASE_URL postgres://:***@h/db names no user: expected a URL like postgres://app@127.0.0.1:5432/app with the password after the user name"
/// );
/// ```
pub fn parse(raw: &str) -> Result<Url, UrlError> {
    let url = parse_postgres(raw)?;
    require_host(&url)?;
    require_user(&url)?;
    Ok(url)
}

/// `raw` as a URL of scheme `postgres` or `postgresql`, without further checks.
pub fn parse_postgres(raw: &str) -> Result<Url, UrlError> {
    let url = Url::parse(raw).map_err(UrlError::Malformed)?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(UrlError::NotPostgres(url.scheme().to_owned()));
    }
    Ok(url)
}

/// Fails unless `url` names a host.
pub fn require_host(url: &Url) -> Result<(), UrlError> {
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost(redact_url(url.as_str())));
    }
    Ok(())
}

/// Fails unless `url` names a user.
pub fn require_user(url: &Url) -> Result<(), UrlError> {
    if url.username().is_empty() {
        return Err(UrlError::NoUser(redact_url(url.as_str())));
    }
    Ok(())
}

/// `text` with its `%XX` escapes decoded; bytes that are not UTF-8 become U+FFFD.
///
/// ```
/// assert_eq!(dbops_common::database_url::percent_decode("%C3%9Cn%C3%AF-db"), "Ünï-db");
/// ```
pub fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The user name, decoded; empty when the URL names none.
pub fn user(url: &Url) -> String {
    percent_decode(url.username())
}

/// The password, decoded; empty when the URL has none.
pub fn password(url: &Url) -> String {
    url.password().map(percent_decode).unwrap_or_default()
}

/// The database name from the path, decoded (`Ünï-db` travels as `%C3%9Cn%C3%AF-db`, and the
/// server knows it by the name itself); empty when the URL names none.
pub fn database(url: &Url) -> String {
    percent_decode(url.path().trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_refused_in_one_line_without_the_password() {
        for raw in [
            "mysql://u:hunter2@h/db",
            "not a url hunter2",
            "postgres:///db",
            "postgres://:hunter2@h/db",
        ] {
            let error = parse(raw).unwrap_err().to_string();
            assert!(error.starts_with("DATABASE_URL "), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
    }

    #[test]
    fn each_check_names_what_is_missing() {
        assert_eq!(
            parse("mysql://u@h/db").unwrap_err().to_string(),
            "DATABASE_URL uses the scheme \"mysql\", not postgres: expected a URL like postgres://app@127.0.0.1:5432/app with the password after the user name"
        );
        assert!(matches!(parse("nonsense"), Err(UrlError::Malformed(_))));
        assert_eq!(
            parse("postgres:///db?host=/tmp"),
            Err(UrlError::NoHost("postgres:///db?host=/tmp".to_owned()))
        );
        assert!(parse_postgres("postgresql:///db?host=/tmp").is_ok());
    }

    #[test]
    fn parts_are_decoded() {
        let url = parse("postgres://c%40rol:s%40cret@h/%C3%9Cn%C3%AF-db").unwrap();
        assert_eq!(user(&url), "c@rol");
        assert_eq!(password(&url), "s@cret");
        assert_eq!(database(&url), "Ünï-db");
        let bare = parse("postgres://carol@h").unwrap();
        assert_eq!(
            (password(&bare).as_str(), database(&bare).as_str()),
            ("", "")
        );
    }
}
