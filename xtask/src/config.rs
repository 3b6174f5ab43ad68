//! Configuration: process environment, then `.env`, then built-in defaults equal to `.env.template`.

use std::{
    collections::HashMap,
    env,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use url::Url;

pub const DEFAULT_USER: &str = "app";
pub const DEFAULT_PASSWORD: &str = "app";
pub const DEFAULT_DB: &str = "app";
pub const DEFAULT_PORT: u16 = 5432;
pub const DEFAULT_IMAGE: &str = "postgres:16-alpine";

/// Where a setting came from; printed so that a surprising value can be traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Environment,
    DotEnv,
    Default,
}

/// Looks settings up in the process environment first, then in `.env`.
#[derive(Debug, Default, Clone)]
pub struct Lookup {
    process: HashMap<String, String>,
    dotenv: HashMap<String, String>,
}

impl Lookup {
    pub fn from_process_and_dotenv(dotenv_path: &Path) -> Result<Lookup> {
        Ok(Lookup {
            process: env::vars().collect(),
            dotenv: read_dotenv(dotenv_path)?,
        })
    }

    #[cfg(test)]
    pub fn from_maps(process: &[(&str, &str)], dotenv: &[(&str, &str)]) -> Lookup {
        let own = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Lookup {
            process: own(process),
            dotenv: own(dotenv),
        }
    }

    /// Empty values count as unset, as they do for most tools reading `.env`.
    pub fn get(&self, key: &str) -> Option<(String, Source)> {
        let non_empty =
            |map: &HashMap<String, String>| map.get(key).filter(|v| !v.is_empty()).cloned();
        non_empty(&self.process)
            .map(|v| (v, Source::Environment))
            .or_else(|| non_empty(&self.dotenv).map(|v| (v, Source::DotEnv)))
    }

    pub fn value(&self, key: &str) -> Option<String> {
        self.get(key).map(|(v, _)| v)
    }

    /// This lookup with `key` set as if in the environment, for a step that runs on other
    /// settings than the user's (the benchmark's throwaway projects).
    pub fn with_value(&self, key: &str, value: &str) -> Lookup {
        let mut changed = self.clone();
        changed.process.insert(key.to_owned(), value.to_owned());
        changed
    }

    pub fn flag(&self, key: &str) -> bool {
        self.value(key)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
    }
}

fn read_dotenv(path: &Path) -> Result<HashMap<String, String>> {
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(HashMap::new());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut values = HashMap::new();
    for item in iter {
        let (key, value) = item.map_err(|e| dotenv_error(path, e))?;
        values.insert(key, value);
    }
    Ok(values)
}

fn dotenv_error(path: &Path, error: dotenvy::Error) -> anyhow::Error {
    match error {
        // The offending line may hold a password, so name its number only.
        dotenvy::Error::LineParse(line, _) => {
            let line_number = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.lines().position(|l| line.starts_with(l.trim_end())))
                .map_or_else(String::new, |i| format!(" line {}", i + 1));
            anyhow::anyhow!(
                "{}{line_number} is not valid KEY=VALUE syntax: fix that line or compare with .env.template",
                path.display()
            )
        }
        other => anyhow::anyhow!("cannot read {}: {other}", path.display()),
    }
}

/// The connection settings every command works from.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    /// Where the project's local state lives: the local cluster and the backend marker.
    pub state_dir: PathBuf,
    pub url: Url,
    pub url_source: Source,
    pub user: String,
    pub password: String,
    pub database: String,
    pub port: u16,
    pub image: String,
    pub ci: bool,
    pub lookup: Lookup,
}

impl Config {
    pub fn load(root: &Path) -> Result<Config> {
        let lookup = Lookup::from_process_and_dotenv(&root.join(".env"))?;
        Config::from_lookup(root, lookup)
    }

    pub fn from_lookup(root: &Path, lookup: Lookup) -> Result<Config> {
        // Relative paths mean the workspace root, wherever cargo was started from.
        let state_dir = root.join(
            lookup
                .value("DB_STATE_DIR")
                .unwrap_or_else(|| ".data".to_owned()),
        );
        let image = lookup
            .value("POSTGRES_IMAGE")
            .unwrap_or_else(|| DEFAULT_IMAGE.to_owned());
        let ci = lookup.flag("CI");

        let (mut url, url_source) = match lookup.get("DATABASE_URL") {
            Some((raw, source)) => (parse_database_url(&raw)?, source),
            None => (url_from_parts(&lookup)?, Source::Default),
        };
        // Every client xtask runs then reads the same TLS settings from the URL, and a
        // mistake in them stops every command before it connects.
        crate::tls::normalize_url(&mut url, root, |key| lookup.value(key))
            .map_err(anyhow::Error::msg)?;
        let user = percent_decode(url.username());
        let password = url.password().map(percent_decode).unwrap_or_default();
        // The URL carries the name percent-encoded (`Ünï-db` as `%C3%9Cn%C3%AF-db`); the
        // server knows it by the name itself.
        let database = percent_decode(url.path().trim_start_matches('/'));
        let database = if database.is_empty() {
            user.clone()
        } else {
            database
        };
        check_identifier("database name", &database)?;
        check_identifier("user name", &user)?;
        if password.chars().any(char::is_control) {
            bail!(
                "the password in DATABASE_URL/POSTGRES_PASSWORD contains a line break or another control character, which PostgreSQL's tools cannot pass on: choose a password without one"
            );
        }
        let port = url.port().unwrap_or(DEFAULT_PORT);

        Ok(Config {
            root: root.to_owned(),
            state_dir,
            url,
            url_source,
            user,
            password,
            database,
            port,
            image,
            ci,
            lookup,
        })
    }

    /// `POSTGRES_TEST_PORT`: where the local backend's test cluster listens, if it is fixed.
    pub fn test_port_setting(&self) -> Result<Option<u16>> {
        port_setting(&self.lookup, "POSTGRES_TEST_PORT")
    }

    /// The same settings for a server on another port, such as the local test cluster.
    pub fn with_port(&self, port: u16) -> Config {
        let mut moved = self.clone();
        moved.port = port;
        moved
            .url
            .set_port(Some(port))
            .expect("postgres URLs take ports");
        moved
    }

    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The same server and credentials, connected to another database.
    pub fn url_for_database(&self, database: &str) -> Url {
        let mut url = self.url.clone();
        url.set_path(&format!("/{database}"));
        url
    }

    pub fn host(&self) -> String {
        self.url.host_str().unwrap_or("localhost").to_owned()
    }

    pub fn host_is_local(&self) -> bool {
        host_is_local(&self.host())
    }

    /// True when `DATABASE_URL` was given, rather than built from the `POSTGRES_*` parts.
    pub fn url_is_explicit(&self) -> bool {
        self.url_source != Source::Default
    }
}

/// PostgreSQL silently truncates longer names to 63 bytes, so that two long names could meet.
const MAX_IDENTIFIER_BYTES: usize = 63;

fn check_identifier(what: &str, name: &str) -> Result<()> {
    if name.len() > MAX_IDENTIFIER_BYTES {
        bail!(
            "the {what} {name:?} is {} bytes long, and PostgreSQL keeps only {MAX_IDENTIFIER_BYTES}: choose a shorter one",
            name.len()
        );
    }
    Ok(())
}

fn url_from_parts(lookup: &Lookup) -> Result<Url> {
    let user = lookup
        .value("POSTGRES_USER")
        .unwrap_or_else(|| DEFAULT_USER.into());
    let password = lookup
        .value("POSTGRES_PASSWORD")
        .unwrap_or_else(|| DEFAULT_PASSWORD.into());
    let database = lookup
        .value("POSTGRES_DB")
        .unwrap_or_else(|| DEFAULT_DB.into());
    let port = port_setting(lookup, "POSTGRES_PORT")?.unwrap_or(DEFAULT_PORT);
    let mut url = Url::parse("postgres://127.0.0.1").expect("static URL parses");
    url.set_port(Some(port)).expect("postgres URLs take ports");
    url.set_username(&user)
        .expect("postgres URLs take user names");
    url.set_password(Some(&password))
        .expect("postgres URLs take passwords");
    url.set_path(&format!("/{database}"));
    Ok(url)
}

fn port_setting(lookup: &Lookup, key: &str) -> Result<Option<u16>> {
    lookup
        .value(key)
        .map(|raw| {
            raw.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .with_context(|| format!("{key}={raw:?} is not a port number: use 1-65535"))
        })
        .transpose()
}

pub fn parse_database_url(raw: &str) -> Result<Url> {
    Ok(dbops_common::database_url::parse(raw)?)
}

pub fn host_is_local(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.starts_with('/')
        || host.is_empty()
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The URL for messages, its password (and any secret query parameter) masked.
pub fn redact_url(url: &Url) -> String {
    dbops_common::redact::redact_url(url.as_str())
}

pub use dbops_common::{
    database_url::percent_decode,
    redact::{redact_log_line, redact_text},
};

#[cfg(test)]
mod tests {
    use super::*;

    fn config(process: &[(&str, &str)], dotenv: &[(&str, &str)]) -> Result<Config> {
        Config::from_lookup(Path::new("/project"), Lookup::from_maps(process, dotenv))
    }

    #[test]
    fn defaults_equal_the_template() {
        let cfg = config(&[], &[]).unwrap();
        assert_eq!(cfg.url.as_str(), "postgres://app:app@127.0.0.1:5432/app");
        assert_eq!(cfg.url_source, Source::Default);
        assert_eq!(cfg.image, "postgres:16-alpine");
        assert_eq!(cfg.state_dir, Path::new("/project/.data"));
        let template =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.env.template"))
                .unwrap();
        for line in [
            "DATABASE_URL=postgres://app:app@127.0.0.1:5432/app",
            "POSTGRES_USER=app",
            "POSTGRES_PASSWORD=app",
            "POSTGRES_DB=app",
            "POSTGRES_PORT=5432",
        ] {
            assert!(
                template.lines().any(|l| l.trim() == line),
                "template lacks {line}"
            );
        }
    }

    #[test]
    fn process_environment_wins_over_dotenv() {
        let cfg = config(
            &[("POSTGRES_PORT", "6000")],
            &[("POSTGRES_PORT", "7000"), ("POSTGRES_DB", "fromfile")],
        )
        .unwrap();
        assert_eq!(cfg.port, 6000);
        assert_eq!(cfg.database, "fromfile");
    }

    #[test]
    fn dotenv_wins_over_defaults() {
        let cfg = config(
            &[],
            &[("POSTGRES_USER", "alice"), ("POSTGRES_PASSWORD", "s3cret")],
        )
        .unwrap();
        assert_eq!(cfg.user, "alice");
        assert_eq!(cfg.password, "s3cret");
        assert_eq!(cfg.database, "app");
    }

    #[test]
    fn database_url_wins_over_parts() {
        let cfg = config(
            &[("POSTGRES_USER", "ignored"), ("POSTGRES_PORT", "1234")],
            &[(
                "DATABASE_URL",
                "postgresql://bob:p%40ss@db.internal:6543/shop",
            )],
        )
        .unwrap();
        assert_eq!(cfg.user, "bob");
        assert_eq!(cfg.password, "p@ss");
        assert_eq!(cfg.port, 6543);
        assert_eq!(cfg.database, "shop");
        assert_eq!(cfg.url_source, Source::DotEnv);
        assert!(!cfg.host_is_local());
    }

    #[test]
    fn a_database_name_is_decoded_from_the_url() {
        let cfg = config(&[("POSTGRES_DB", "Ünï-db")], &[]).unwrap();
        assert_eq!(cfg.database, "Ünï-db");
        let cfg = config(
            &[("DATABASE_URL", "postgres://u:p@127.0.0.1/%C3%9Cn%C3%AF-db")],
            &[],
        )
        .unwrap();
        assert_eq!(cfg.database, "Ünï-db");
    }

    #[test]
    fn names_postgres_would_truncate_are_refused() {
        let long = "d".repeat(64);
        let err = config(&[("POSTGRES_DB", &long)], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("64 bytes long"), "{err}");
        assert!(config(&[("POSTGRES_DB", &long[..63])], &[]).is_ok());
        let err = config(&[("POSTGRES_USER", &long)], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("user name"), "{err}");
    }

    #[test]
    fn a_line_break_in_the_password_is_refused_without_showing_it() {
        let err = config(&[("POSTGRES_PASSWORD", "hunter2\nsecond")], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line break"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let cfg = config(&[("DATABASE_URL", "")], &[("POSTGRES_DB", "")]).unwrap();
        assert_eq!(cfg.url_source, Source::Default);
        assert_eq!(cfg.database, "app");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_secrets() {
        for raw in [
            "mysql://u:hunter2@h/db",
            "not a url hunter2",
            "postgres:///db",
            "postgres://:hunter2@h/db",
        ] {
            let err = config(&[("DATABASE_URL", raw)], &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains("DATABASE_URL"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn bad_port_is_refused() {
        let err = config(&[("POSTGRES_PORT", "http")], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("POSTGRES_PORT"), "{err}");
    }

    #[test]
    fn urls_are_redacted() {
        let url = Url::parse(
            "postgres://app:hunter2@localhost:5432/app?sslmode=disable&password=hunter2",
        )
        .unwrap();
        let shown = redact_url(&url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.starts_with("postgres://app:***@localhost:5432/app"),
            "{shown}"
        );
    }

    #[test]
    fn local_hosts() {
        for host in [
            "localhost",
            "127.0.0.1",
            "127.0.1.1",
            "[::1]",
            "/var/run/postgresql",
        ] {
            assert!(host_is_local(host), "{host}");
        }
        for host in ["postgres", "db.example.com", "10.0.0.5", "127.0.0.1.nip.io"] {
            assert!(!host_is_local(host), "{host}");
        }
    }

    #[test]
    fn dotenv_syntax_error_names_the_line_not_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "POSTGRES_USER=app\nPOSTGRES_PASSWORD hunter2\n").unwrap();
        let err = read_dotenv(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
