//! TLS on the external backend, for real: the built `xtask` against a PostgreSQL that admits
//! TCP clients over TLS only, with certificates made in the test.

#[path = "tls/server.rs"]
mod server;
mod support;

use server::{CERT_USER, Ssl, TlsServer};
use support::{PASSWORD, Project, Run};

/// A project on the external backend whose DATABASE_URL reaches `server` at `host` with `query`.
fn external(server: &TlsServer, host: &str, query: &str) -> Project {
    external_as(server, &format!("app:{PASSWORD}"), host, query)
}

fn external_as(server: &TlsServer, user: &str, host: &str, query: &str) -> Project {
    Project::isolated()
        .set_env("DB_BACKEND", "external")
        .set_env(
            "DATABASE_URL",
            &format!("postgres://{user}@{host}:{}/app?{query}", server.port),
        )
}

fn verify_full(ca: &std::path::Path) -> String {
    format!("sslmode=verify-full&sslrootcert={}", ca.display())
}

#[track_caller]
fn assert_ready(run: &Run) {
    run.assert_success();
    assert!(run.stderr.contains("ready: PostgreSQL"), "{}", run.stderr);
    run.assert_no_password();
}

#[test]
fn require_and_verify_full_reach_a_tls_only_server() {
    let Some(server) = TlsServer::start(Ssl::On) else {
        return;
    };
    let require = external(&server, "localhost", "sslmode=require");
    assert_ready(&require.xtask(&["db-up", "--timeout", "20"]));
    let status = require.xtask(&["db-status"]);
    assert!(
        status.stdout.contains("reachable: yes, PostgreSQL"),
        "{}",
        status.all()
    );

    let full = external(&server, "localhost", &verify_full(&server.ca));
    assert_ready(&full.xtask(&["db-up", "--timeout", "20"]));
    // psql gets the URL's TLS settings through libpq's environment.
    let ssl = full.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    ssl.assert_success();
    assert_eq!(ssl.stdout.trim(), "t", "{}", ssl.all());
    let wrong_ca = external(&server, "localhost", &verify_full(&server.other_ca));
    let refused = wrong_ca.psql("SELECT 1");
    assert!(
        !refused.success() && refused.stderr.contains("certificate verify failed"),
        "psql did not check the CA from DATABASE_URL:\n{}",
        refused.all()
    );

    // A client certificate instead of a password (pg_hba.conf: `cert` for this role).
    let query = format!(
        "{}&sslcert={}&sslkey={}",
        verify_full(&server.ca),
        server.client_cert.display(),
        server.client_key.display()
    );
    let cert = external_as(&server, CERT_USER, "localhost", &query);
    assert_ready(&cert.xtask(&["db-up", "--timeout", "20"]));
    let no_cert = external_as(&server, CERT_USER, "localhost", &verify_full(&server.ca));
    let run = no_cert.xtask(&["db-up", "--timeout", "20"]);
    run.assert_one_line_error("certificate");
}

#[test]
fn certificate_problems_and_refusals_are_one_line_errors() {
    let Some(server) = TlsServer::start(Ssl::On) else {
        return;
    };
    let wrong_ca = external(&server, "localhost", &verify_full(&server.other_ca));
    let run = wrong_ca.xtask(&["db-up", "--timeout", "20"]);
    run.assert_one_line_error("the server's certificate is not signed by the CA in");
    assert!(run.stderr.contains("set sslrootcert"), "{}", run.stderr);
    let status = wrong_ca.xtask(&["db-status"]);
    assert!(
        status
            .stdout
            .contains("reachable: no (the server's certificate is not signed"),
        "{}",
        status.all()
    );
    assert!(
        status.stderr.contains("set sslrootcert"),
        "{}",
        status.stderr
    );

    // The certificate names "localhost" only.
    let by_address = external(&server, "127.0.0.1", &verify_full(&server.ca));
    let run = by_address.xtask(&["db-up", "--timeout", "20"]);
    run.assert_one_line_error("not valid for the host \"127.0.0.1\" (it names localhost)");
    let query = format!("sslmode=verify-ca&sslrootcert={}", server.ca.display());
    assert_ready(&external(&server, "127.0.0.1", &query).xtask(&["db-up", "--timeout", "20"]));

    let system = external(&server, "localhost", "sslrootcert=system");
    let run = system.xtask(&["db-up", "--timeout", "20"]);
    run.assert_one_line_error("not signed by a public CA (sslrootcert=system)");

    let plain = external(&server, "localhost", "sslmode=disable");
    let run = plain.xtask(&["db-up", "--timeout", "20"]);
    run.assert_one_line_error("refused a connection without TLS (no pg_hba.conf entry");
    for wrong_advice in ["credentials", "--volumes"] {
        assert!(!run.stderr.contains(wrong_advice), "{}", run.stderr);
    }
    assert!(run.stderr.contains("set sslmode=require"), "{}", run.stderr);
}

#[test]
fn db_migrate_and_status_work_over_tls() {
    let Some(server) = TlsServer::start(Ssl::On) else {
        return;
    };
    let full = external(&server, "localhost", &verify_full(&server.ca));
    let migrate = full.xtask(&["db-migrate", "--timeout", "20"]);
    migrate.assert_success();
    migrate.assert_no_password();
    full.xtask(&["db-status", "--check"]).assert_success();
    let require = external(&server, "localhost", "sslmode=require");
    let status = require.xtask(&["db-status", "--check"]);
    status.assert_success();
    assert!(status.stdout.contains("reachable: yes"), "{}", status.all());
}

#[test]
fn require_says_so_when_the_server_has_no_tls() {
    let Some(server) = TlsServer::start(Ssl::Off) else {
        return;
    };
    let require = external(&server, "localhost", "sslmode=require");
    let run = require.xtask(&["db-up", "--timeout", "20"]);
    run.assert_one_line_error("the server does not accept TLS connections");
    // libpq's default, prefer, goes on without TLS.
    assert_ready(&external(&server, "localhost", "").xtask(&["db-up", "--timeout", "20"]));
}

#[test]
fn bad_tls_settings_stop_every_command_before_it_connects() {
    // No server: each of these must fail on the settings alone, at once.
    let project = |query: &str| {
        Project::isolated()
            .set_env("DB_BACKEND", "external")
            .set_env(
                "DATABASE_URL",
                &format!("postgres://app:{PASSWORD}@db.invalid:5432/app?{query}"),
            )
    };
    for (query, needle) in [
        ("sslmode=verify", "sslmode=\"verify\", which is not a mode"),
        ("sslmode=verify-full", "names no CA"),
        (
            "sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
            "sslrootcert=/nonexistent/ca.pem in DATABASE_URL is not a file",
        ),
        ("sslcrl=/etc/crl.pem", "does not support"),
    ] {
        for command in ["db-up", "db-status", "db-migrate"] {
            project(query)
                .xtask(&[command])
                .assert_one_line_error(needle);
        }
    }
}
