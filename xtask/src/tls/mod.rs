//! TLS settings from `DATABASE_URL`, with libpq's meaning (`sslmode`, `sslrootcert`, …), for
//! every path that connects: xtask's own client ([`handshake`]), the libpq tools it runs
//! (psql, pg_dump) through their environment, and the sqlx-based binaries through their URL.

mod handshake;

use std::path::{Path, PathBuf};

pub use handshake::{TlsFailure, TlsStream, Upgrade, start_tls};
use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Option<SslMode> {
        SslMode::ALL.into_iter().find(|mode| mode.name() == value)
    }

    /// The connections to try in turn, as libpq does: `allow` and `prefer` try the other kind
    /// when the server's pg_hba.conf refuses the first.
    pub fn attempts(self) -> &'static [Attempt] {
        match self {
            SslMode::Disable => &[Attempt::Plain],
            SslMode::Allow => &[Attempt::Plain, Attempt::Tls { required: true }],
            SslMode::Prefer => &[Attempt::Tls { required: false }, Attempt::Plain],
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                &[Attempt::Tls { required: true }]
            }
        }
    }
}

/// One way of opening a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Plain,
    /// Ask for TLS; without `required`, go on unencrypted when the server declines.
    Tls {
        required: bool,
    },
}

/// The CAs the server's certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the public CAs, the Mozilla set that sqlx trusts too.
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// How to connect, resolved from the URL's parameters as libpq resolves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// What the certificate must chain to; `None` accepts any certificate (encryption only).
    pub verify: Option<RootCert>,
    /// Whether the certificate must also name the host (`verify-full`).
    pub verify_host: bool,
    /// The client certificate and its key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Whether to send the host name in the handshake (`sslsni`).
    pub sni: bool,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
}

/// libpq's TLS parameters, with the environment variable that sets each when the URL does not.
const PARAMETERS: &[(&str, Option<&str>)] = &[
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("sslsni", Some("PGSSLSNI")),
    ("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION")),
    ("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION")),
    ("sslnegotiation", Some("PGSSLNEGOTIATION")),
    ("sslcertmode", Some("PGSSLCERTMODE")),
    ("sslcompression", Some("PGSSLCOMPRESSION")),
    ("sslcrl", Some("PGSSLCRL")),
    ("sslcrldir", Some("PGSSLCRLDIR")),
    ("sslpassword", None),
    ("sslkeylogfile", None),
    ("requiressl", None),
];

/// sqlx's spellings, renamed to libpq's so that psql and pg_dump understand the URL too.
const SQLX_ALIASES: &[(&str, &str)] = &[
    ("ssl-mode", "sslmode"),
    ("ssl-root-cert", "sslrootcert"),
    ("ssl-ca", "sslrootcert"),
    ("ssl-cert", "sslcert"),
    ("ssl-key", "sslkey"),
];

fn is_tls_parameter(key: &str) -> bool {
    PARAMETERS.iter().any(|(name, _)| *name == key)
}

fn query_pairs(url: &Url) -> Vec<(String, String)> {
    url.query_pairs().into_owned().collect()
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

impl TlsSettings {
    /// The settings of a URL; the message of an error is one line that says what to do.
    pub fn from_url(url: &Url) -> Result<TlsSettings, String> {
        TlsSettings::from_pairs(&query_pairs(url), home_dir().as_deref())
    }

    /// `home` holds libpq's default CA file, `~/.postgresql/root.crt`.
    fn from_pairs(pairs: &[(String, String)], home: Option<&Path>) -> Result<TlsSettings, String> {
        let mut given = Given::default();
        for (key, value) in pairs {
            given.set(key, value)?;
        }
        given.resolve(home)
    }

    /// The mode to hand sqlx, which reads `require` with a CA as "do not verify" and `allow`
    /// as `disable`: the mode with libpq's meaning of what these settings do.
    fn sqlx_mode(&self) -> &'static str {
        match (&self.verify, self.verify_host, self.mode) {
            (Some(_), true, _) => "verify-full",
            (Some(_), false, _) => "verify-ca",
            // sqlx has no `allow`: it would never try TLS, which a TLS-only server needs.
            (None, _, SslMode::Allow) => "prefer",
            (None, _, mode) => mode.name(),
        }
    }
}

/// The parameters as the URL gives them, before libpq's defaults apply.
#[derive(Default)]
struct Given {
    mode: Option<SslMode>,
    root: Option<RootCert>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    sni: Option<bool>,
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
}

impl Given {
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "sslmode" => {
                self.mode = Some(SslMode::parse(value).ok_or_else(|| {
                    format!("DATABASE_URL has sslmode={value:?}, which is not a mode: use disable, allow, prefer, require, verify-ca or verify-full")
                })?);
            }
            "sslrootcert" if value == "system" => self.root = Some(RootCert::System),
            "sslrootcert" => self.root = Some(RootCert::File(value.into())),
            "sslcert" => self.cert = Some(value.into()),
            "sslkey" => self.key = Some(value.into()),
            "sslsni" => {
                self.sni = Some(match value {
                    "1" => true,
                    "0" => false,
                    _ => {
                        return Err(format!(
                            "DATABASE_URL has sslsni={value:?}: use 1 (send the host name, the default) or 0"
                        ));
                    }
                });
            }
            "ssl_min_protocol_version" => self.min = version(key, value, false)?,
            "ssl_max_protocol_version" => self.max = version(key, value, true)?,
            _ => check_unsupported(key, value)?,
        }
        Ok(())
    }

    fn resolve(self, home: Option<&Path>) -> Result<TlsSettings, String> {
        let mode = match (self.mode, &self.root) {
            (Some(mode), _) => mode,
            // libpq's default with the public CAs, which make sense only with the host checked.
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        };
        if self.root == Some(RootCert::System) && mode != SslMode::VerifyFull {
            return Err(format!(
                "DATABASE_URL has sslrootcert=system with sslmode={}, which libpq refuses as too weak: use sslmode=verify-full",
                mode.name()
            ));
        }
        let client_cert = client_cert(self.cert, self.key)?;
        if let Some(RootCert::File(path)) = &self.root {
            must_exist("sslrootcert", path)?;
        }
        let root = self.root.or_else(|| {
            let default = home?.join(".postgresql/root.crt");
            default.is_file().then_some(RootCert::File(default))
        });
        let verify = match mode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => None,
            // libpq checks the chain with `require` too when it has a CA, as with verify-ca.
            SslMode::Require => root,
            SslMode::VerifyCa | SslMode::VerifyFull => Some(root.ok_or_else(|| {
                format!("sslmode={} checks the server's certificate, but DATABASE_URL names no CA: add sslrootcert=/path/to/ca.pem (the CA that signed the server's certificate), or sslrootcert=system for a public CA", mode.name())
            })?),
        };
        let (min_version, max_version) = (
            self.min.unwrap_or(TlsVersion::V1_2),
            self.max.unwrap_or(TlsVersion::V1_3),
        );
        if min_version > max_version {
            return Err("DATABASE_URL has ssl_min_protocol_version above ssl_max_protocol_version: lower the first or raise the second".into());
        }
        Ok(TlsSettings {
            mode,
            verify,
            verify_host: mode == SslMode::VerifyFull,
            client_cert,
            sni: self.sni.unwrap_or(true),
            min_version,
            max_version,
        })
    }
}

fn client_cert(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<(PathBuf, PathBuf)>, String> {
    match (cert, key) {
        (Some(cert), Some(key)) => {
            must_exist("sslcert", &cert)?;
            must_exist("sslkey", &key)?;
            Ok(Some((cert, key)))
        }
        (None, None) => Ok(None),
        _ => Err("DATABASE_URL sets only one of sslcert and sslkey: set both (the client certificate and its private key) or neither".into()),
    }
}

fn must_exist(key: &str, path: &Path) -> Result<(), String> {
    if path.is_file() {
        return Ok(());
    }
    let what = match key {
        "sslrootcert" => {
            "point it at the CA certificate (PEM) that signed the server's certificate, or use sslrootcert=system for a public CA"
        }
        "sslcert" => "point it at the client certificate (PEM)",
        _ => "point it at the client certificate's private key (PEM)",
    };
    Err(format!(
        "{key}={} in DATABASE_URL is not a file: {what}",
        path.display()
    ))
}

/// rustls speaks TLS 1.2 and 1.3; a floor below 1.2 is met by those, a ceiling below is not.
fn version(key: &str, value: &str, is_max: bool) -> Result<Option<TlsVersion>, String> {
    // libpq reads an empty maximum as "no maximum".
    if value.is_empty() && is_max {
        return Ok(None);
    }
    let known = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
        .into_iter()
        .position(|name| value.eq_ignore_ascii_case(name));
    match (known, is_max) {
        (Some(3), _) => Ok(Some(TlsVersion::V1_3)),
        (Some(_), false) | (Some(2), true) => Ok(Some(TlsVersion::V1_2)),
        (Some(_), true) => Err(format!(
            "DATABASE_URL has {key}={value}, and xtask's client speaks only TLSv1.2 and TLSv1.3: raise it to TLSv1.2 or remove it"
        )),
        (None, _) => Err(format!(
            "DATABASE_URL has {key}={value:?}, which is not a TLS version: use TLSv1.2 or TLSv1.3"
        )),
    }
}

/// libpq parameters that xtask's client does not implement are refused, never ignored, so
/// that nobody believes a check happens that does not; values that ask for nothing extra pass.
fn check_unsupported(key: &str, value: &str) -> Result<(), String> {
    let remedy = match key {
        "sslnegotiation" if value == "postgres" => return Ok(()),
        "sslcertmode" if value == "allow" => return Ok(()),
        "sslcompression" if value == "0" => return Ok(()),
        "sslnegotiation" => {
            "remove it; xtask asks for TLS with an SSLRequest first (sslnegotiation=postgres), which every server accepts"
        }
        "sslcertmode" => {
            "remove it; xtask sends a client certificate exactly when sslcert and sslkey are set"
        }
        "sslcompression" => "remove it; TLS compression is insecure and not offered",
        "sslcrl" | "sslcrldir" => "remove it; xtask does not check certificate revocation lists",
        "sslpassword" => "decrypt the key (openssl pkey -in key.pem -out plain.pem) and remove it",
        "sslkeylogfile" => "remove it",
        "requiressl" => "use sslmode=require instead",
        _ => return Ok(()),
    };
    // The value of sslpassword is a secret; the others are shown to locate the mistake.
    let shown = if key == "sslpassword" {
        key.to_owned()
    } else {
        format!("{key}={value}")
    };
    Err(format!(
        "DATABASE_URL sets {shown}, which xtask's client does not support: {remedy}"
    ))
}

/// Spells the URL's TLS parameters as libpq's, fills those it lacks from `PGSSLMODE` and the
/// other variables libpq and sqlx read (`env`), makes file paths absolute (a relative one means
/// the workspace root, like every path setting, so that children in other directories agree),
/// and checks the result. Returns a one-line message on error.
pub fn normalize_url(
    url: &mut Url,
    root: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let original = query_pairs(url);
    let mut pairs = original.clone();
    for (key, _) in &mut pairs {
        if let Some((_, libpq)) = SQLX_ALIASES.iter().find(|(alias, _)| alias == key) {
            *key = (*libpq).to_owned();
        }
    }
    for (key, var) in PARAMETERS {
        if let Some(var) = var
            && !pairs.iter().any(|(k, _)| k == key)
            && let Some(value) = env(var)
        {
            pairs.push(((*key).to_owned(), value));
        }
    }
    for (key, value) in &mut pairs {
        let is_path = matches!(key.as_str(), "sslcert" | "sslkey")
            || (key == "sslrootcert" && value != "system");
        if is_path && Path::new(value.as_str()).is_relative() {
            *value = root.join(&*value).display().to_string();
        }
    }
    if pairs != original {
        url.query_pairs_mut().clear().extend_pairs(&pairs);
    }
    TlsSettings::from_pairs(&pairs, home_dir().as_deref()).map(|_| ())
}

/// The URL's TLS parameters as libpq's environment variables, for psql and pg_dump, which
/// xtask points at the server with `PGHOST` and friends rather than with the URL.
pub fn libpq_env(url: &Url) -> Vec<(&'static str, String)> {
    url.query_pairs()
        .filter_map(|(key, value)| {
            let (_, var) = PARAMETERS.iter().find(|(name, _)| *name == key)?;
            Some(((*var)?, value.into_owned()))
        })
        .collect()
}

/// The URL for the sqlx-based binaries (migration, testdb, db-bench), with the TLS settings
/// xtask resolved spelled the way sqlx reads them: it knows only `sslmode`, `sslrootcert`,
/// `sslcert` and `sslkey`, takes `sslrootcert=system` for a file name (with verify-full and no
/// CA it trusts the public CAs already), and has no default `~/.postgresql/root.crt`.
pub fn url_for_sqlx(raw: &str) -> String {
    let Ok(url) = Url::parse(raw) else {
        return raw.to_owned();
    };
    let pairs = query_pairs(&url);
    if !pairs.iter().any(|(key, _)| is_tls_parameter(key)) {
        return raw.to_owned();
    }
    // A URL that does not resolve goes as it is: the connection reports the problem.
    let Ok(settings) = TlsSettings::from_url(&url) else {
        return raw.to_owned();
    };
    let mut out = url.clone();
    let mut query = out.query_pairs_mut();
    query
        .clear()
        .extend_pairs(pairs.iter().filter(|(key, _)| !is_tls_parameter(key)))
        .append_pair("sslmode", settings.sqlx_mode());
    if let Some(RootCert::File(path)) = &settings.verify {
        query.append_pair("sslrootcert", &path.display().to_string());
    }
    if let Some((cert, key)) = &settings.client_cert {
        query.append_pair("sslcert", &cert.display().to_string());
        query.append_pair("sslkey", &key.display().to_string());
    }
    drop(query);
    out.to_string()
}

#[cfg(test)]
mod tests;
