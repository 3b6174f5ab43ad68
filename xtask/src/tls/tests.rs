//! Unit tests of the TLS settings: libpq's rules, one-line errors, and what each client is given.

use std::path::Path;

use super::*;

fn settings(query: &str, home: Option<&Path>) -> Result<TlsSettings, String> {
    let url = Url::parse(&format!(
        "postgres://app:hunter2@db.example.com/app?{query}"
    ))
    .unwrap();
    TlsSettings::from_pairs(&query_pairs(&url), home)
}

fn error(query: &str) -> String {
    let message = settings(query, None).unwrap_err();
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains(": "), "no remedy in {message}");
    message
}

/// A directory with a file `ca.pem`, and the query fragment naming it.
fn ca_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "not checked until a connection").unwrap();
    let query = format!("sslrootcert={}", path.display());
    (dir, query)
}

#[test]
fn modes_follow_libpq() {
    let plain = settings("", None).unwrap();
    assert_eq!(plain.mode, SslMode::Prefer);
    assert_eq!(plain.verify, None);
    for mode in SslMode::ALL {
        assert_eq!(SslMode::parse(mode.name()), Some(mode));
    }
    assert_eq!(settings("sslmode=require", None).unwrap().verify, None);
    assert!(error("sslmode=required").contains("verify-full"));
    assert_eq!(SslMode::Disable.attempts(), &[Attempt::Plain]);
    assert_eq!(
        SslMode::Prefer.attempts(),
        &[Attempt::Tls { required: false }, Attempt::Plain]
    );
}

#[test]
fn a_ca_makes_require_check_the_chain_but_not_prefer() {
    let (_dir, ca) = ca_file();
    let require = settings(&format!("sslmode=require&{ca}"), None).unwrap();
    assert!(matches!(require.verify, Some(RootCert::File(_))));
    assert!(!require.verify_host);
    assert_eq!(require.sqlx_mode(), "verify-ca");
    let prefer = settings(&format!("sslmode=prefer&{ca}"), None).unwrap();
    assert_eq!(prefer.verify, None);
    let full = settings(&format!("sslmode=verify-full&{ca}"), None).unwrap();
    assert!(full.verify_host);
}

#[test]
fn verification_needs_a_ca() {
    let message = error("sslmode=verify-full");
    assert!(message.contains("sslrootcert=/path/to/ca.pem"), "{message}");
    // libpq's default CA file counts.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".postgresql")).unwrap();
    std::fs::write(home.path().join(".postgresql/root.crt"), "x").unwrap();
    let found = settings("sslmode=verify-ca", Some(home.path())).unwrap();
    assert_eq!(
        found.verify,
        Some(RootCert::File(home.path().join(".postgresql/root.crt")))
    );
    let require = settings("sslmode=require", Some(home.path())).unwrap();
    assert!(require.verify.is_some(), "libpq checks with require too");
}

#[test]
fn system_roots_mean_verify_full() {
    let system = settings("sslrootcert=system", None).unwrap();
    assert_eq!(system.mode, SslMode::VerifyFull);
    assert_eq!(system.verify, Some(RootCert::System));
    assert!(error("sslrootcert=system&sslmode=require").contains("verify-full"));
}

#[test]
fn files_must_exist_and_come_in_pairs() {
    let message = error("sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem");
    assert!(message.contains("/nonexistent/ca.pem"), "{message}");
    let (_dir, ca) = ca_file();
    let path = ca.trim_start_matches("sslrootcert=");
    assert!(error(&format!("sslcert={path}")).contains("sslkey"));
    let message = error(&format!("sslcert={path}&sslkey=/nonexistent/key.pem"));
    assert!(message.contains("/nonexistent/key.pem"), "{message}");
    let pair = settings(&format!("sslcert={path}&sslkey={path}"), None).unwrap();
    assert!(pair.client_cert.is_some());
}

#[test]
fn unsupported_parameters_are_refused_not_ignored() {
    for query in [
        "sslcrl=/x",
        "sslcrldir=/x",
        "sslnegotiation=direct",
        "sslcertmode=require",
        "sslcompression=1",
        "requiressl=1",
    ] {
        let message = error(query);
        assert!(message.contains("does not support"), "{message}");
    }
    let message = error("sslpassword=hunter2");
    assert!(message.contains("sslpassword"), "{message}");
    for query in [
        "sslnegotiation=postgres",
        "sslcertmode=allow",
        "sslcompression=0",
        "sslsni=0",
    ] {
        assert!(settings(query, None).is_ok(), "{query}");
    }
    assert!(!settings("sslsni=0", None).unwrap().sni);
    assert!(error("sslsni=yes").contains("sslsni"));
}

#[test]
fn protocol_versions() {
    let old_floor = settings("ssl_min_protocol_version=TLSv1", None).unwrap();
    assert_eq!(old_floor.min_version, TlsVersion::V1_2);
    let only13 = settings("ssl_min_protocol_version=tlsv1.3", None).unwrap();
    assert_eq!(only13.min_version, TlsVersion::V1_3);
    assert!(error("ssl_max_protocol_version=TLSv1.1").contains("TLSv1.2"));
    assert!(error("ssl_min_protocol_version=SSLv3").contains("TLS version"));
    let crossed = "ssl_min_protocol_version=TLSv1.3&ssl_max_protocol_version=TLSv1.2";
    assert!(error(crossed).contains("ssl_max_protocol_version"));
}

#[test]
fn normalizing_spells_libpq_names_absolute_paths_and_the_environment() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("ca.pem"), "x").unwrap();
    let mut url =
        Url::parse("postgres://app:pw@db.example.com/app?ssl-mode=verify-ca&ssl-root-cert=ca.pem")
            .unwrap();
    normalize_url(&mut url, root.path(), |_| None).unwrap();
    let pairs = query_pairs(&url);
    assert_eq!(pairs[0], ("sslmode".into(), "verify-ca".into()));
    assert_eq!(
        pairs[1],
        (
            "sslrootcert".into(),
            root.path().join("ca.pem").display().to_string()
        )
    );

    // The environment fills what the URL lacks, and never overrides it.
    let env = |key: &str| match key {
        "PGSSLMODE" => Some("disable".to_owned()),
        "PGSSLSNI" => Some("0".to_owned()),
        _ => None,
    };
    let mut url = Url::parse("postgres://app:pw@h/app?sslsni=1").unwrap();
    normalize_url(&mut url, root.path(), env).unwrap();
    assert_eq!(url.query(), Some("sslsni=1&sslmode=disable"));

    // A URL without TLS parameters is left exactly as it was.
    let raw = "postgres://app:p%40ss@127.0.0.1:5432/app";
    let mut url = Url::parse(raw).unwrap();
    normalize_url(&mut url, root.path(), |_| None).unwrap();
    assert_eq!(url.as_str(), raw);

    let mut bad = Url::parse("postgres://app:hunter2@h/app?sslmode=sure").unwrap();
    let message = normalize_url(&mut bad, root.path(), |_| None).unwrap_err();
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn libpq_tools_get_the_parameters_as_environment() {
    let url = Url::parse(
        "postgres://u:p@h/d?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x&sslsni=0",
    )
    .unwrap();
    assert_eq!(
        libpq_env(&url),
        vec![
            ("PGSSLMODE", "verify-full".to_owned()),
            ("PGSSLROOTCERT", "/ca.pem".to_owned()),
            ("PGSSLSNI", "0".to_owned()),
        ]
    );
}

#[test]
fn sqlx_gets_the_resolved_settings_in_its_own_terms() {
    let (_dir, ca) = ca_file();
    let path = ca.trim_start_matches("sslrootcert=").to_owned();
    let sqlx = |query: &str| {
        let raw = format!("postgres://u:p@h/d?application_name=x&{query}");
        query_pairs(&Url::parse(&url_for_sqlx(&raw)).unwrap())
    };
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        sqlx(&format!("sslmode=require&{ca}&sslsni=0")),
        vec![
            pair("application_name", "x"),
            pair("sslmode", "verify-ca"),
            pair("sslrootcert", &path),
        ]
    );
    assert_eq!(
        sqlx("sslrootcert=system"),
        vec![
            pair("application_name", "x"),
            pair("sslmode", "verify-full")
        ]
    );
    assert_eq!(
        sqlx("sslmode=allow"),
        vec![pair("application_name", "x"), pair("sslmode", "prefer")]
    );
    let untouched = "postgres://u:p@h/d?application_name=x";
    assert_eq!(url_for_sqlx(untouched), untouched);
}

#[test]
fn config_refuses_bad_tls_settings_in_one_line_and_masks_a_key_passphrase() {
    use crate::config::{Config, Lookup, redact_url};
    let load = |url: &str| {
        Config::from_lookup(
            Path::new("/project"),
            Lookup::from_maps(&[("DATABASE_URL", url)], &[]),
        )
    };
    let message = load("postgres://app:hunter2@db.example.com/app?sslmode=sure")
        .unwrap_err()
        .to_string();
    assert!(message.contains("sslmode=\"sure\""), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert_eq!(message.lines().count(), 1);
    let message = load("postgres://app:pw@db.example.com/app?sslrootcert=ca.pem")
        .unwrap_err()
        .to_string();
    assert!(message.contains("/project/ca.pem"), "{message}");
    let url = Url::parse("postgres://app@h/app?sslpassword=hunter2&sslmode=require").unwrap();
    assert!(!redact_url(&url).contains("hunter2"));
}
