//! The local backend for real: `cargo xtask` runs initdb/pg_ctl in a temporary directory on a free port.

mod support;

use std::{fs, net::TcpListener};

use support::{Project, Run, local_binaries_or_skip};

#[test]
fn up_then_status_reports_the_server() {
    let Some(project) = Project::local() else {
        return;
    };
    let up = project.xtask(&["db-up"]);
    up.assert_success();
    assert!(
        up.stderr.contains("backend: local (chosen by DB_BACKEND)"),
        "{}",
        up.stderr
    );
    assert!(
        up.stderr.contains(&format!(
            "postgres://app:***@127.0.0.1:{}/app",
            project.port
        )),
        "{}",
        up.stderr
    );
    assert!(up.stderr.contains("ready: PostgreSQL"), "{}", up.stderr);
    assert!(
        !up.all().contains(support::PASSWORD),
        "password printed:\n{}",
        up.all()
    );

    let again = project.xtask(&["db-up"]);
    again.assert_success();
    assert!(again.stderr.contains("already running"), "{}", again.stderr);

    let status = project.xtask(&["db-status"]);
    status.assert_success();
    assert!(
        status.stdout.contains("reachable: yes, PostgreSQL"),
        "{}",
        status.stdout
    );

    // A logged statement's password literal is masked.
    project.psql(&format!(
        "ALTER ROLE no_such_role PASSWORD '{}'",
        support::PASSWORD
    ));
    let logs = project.xtask(&["db-logs"]);
    logs.assert_success();
    assert!(
        logs.stdout.contains("ready to accept connections"),
        "{}",
        logs.stdout
    );
    assert!(logs.stdout.contains("PASSWORD '***'"), "{}", logs.stdout);
    assert!(!logs.all().contains(support::PASSWORD), "{}", logs.all());

    let mode = fs::metadata(project.state_dir().join("local/pgdata")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o700);
}

#[test]
fn data_survives_down_and_up_and_volumes_wipes_it() {
    let Some(project) = Project::local() else {
        return;
    };
    project.xtask(&["db-up"]).assert_success();
    project
        .psql("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('survives');")
        .assert_success();

    let down = project.xtask(&["db-down"]);
    down.assert_success();
    assert!(down.stderr.contains("data is kept"), "{}", down.stderr);
    let refused = project.xtask(&["db-status"]);
    assert!(
        refused.stdout.contains("reachable: no"),
        "{}",
        refused.stdout
    );

    project.xtask(&["db-up"]).assert_success();
    let read = project.psql("SELECT note FROM kept");
    read.assert_success();
    assert!(read.stdout.contains("survives"), "{}", read.stdout);

    let wipe = project.xtask(&["db-down", "--volumes"]);
    wipe.assert_success();
    assert!(wipe.stderr.contains("deleted"), "{}", wipe.stderr);
    assert!(!project.state_dir().join("local").exists());

    project.xtask(&["db-up"]).assert_success();
    let gone = project.psql("SELECT note FROM kept");
    assert!(
        !gone.success(),
        "the table survived --volumes: {}",
        gone.stdout
    );
}

#[test]
fn a_taken_port_gives_the_port_error() {
    if !local_binaries_or_skip() {
        return;
    }
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let project = Project::local_on_port(port).unwrap();
    let up = project.xtask(&["db-up"]);
    up.assert_one_line_error("already taken");
    assert!(up.stderr.contains("POSTGRES_PORT"), "{}", up.stderr);
}

#[test]
fn a_wrong_password_is_told_apart_from_not_running() {
    let Some(project) = Project::local() else {
        return;
    };
    project.xtask(&["db-up"]).assert_success();
    let wrong = project
        .with_password("not-the-password")
        .xtask(&["db-up", "--timeout", "10"]);
    wrong.assert_one_line_error("rejected the credentials");
    assert!(!wrong.all().contains("not-the-password"), "{}", wrong.all());
}

#[test]
fn a_directory_that_is_not_a_cluster_is_refused() {
    let Some(project) = Project::local() else {
        return;
    };
    let data = project.state_dir().join("local/pgdata");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("notes.txt"), "not a cluster").unwrap();
    project
        .xtask(&["db-up"])
        .assert_one_line_error("is not a PostgreSQL cluster");
}

#[test]
fn a_stale_pid_file_is_recovered() {
    let Some(project) = Project::local() else {
        return;
    };
    // As after a crash whose PID was since reused by an unrelated process: this test.
    project.crash_leaving_pid(std::process::id());
    let up = project.xtask(&["db-up"]);
    up.assert_success();
    assert!(up.stderr.contains("stale postmaster.pid"), "{}", up.stderr);
}

#[test]
fn running_as_root_runs_the_server_unprivileged() {
    if !support::is_root() {
        eprintln!(
            "SKIPPED running_as_root_runs_the_server_unprivileged: the tests do not run as root"
        );
        return;
    }
    let Some(project) = Project::local() else {
        return;
    };
    project.xtask(&["db-up"]).assert_success();
    let pid_file = project.state_dir().join("local/pgdata/postmaster.pid");
    let pid = fs::read_to_string(pid_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let owner = std::process::Command::new("ps")
        .args(["-o", "user=", "-p", &pid])
        .output()
        .unwrap();
    let owner = String::from_utf8_lossy(&owner.stdout).trim().to_owned();
    assert!(
        !owner.is_empty() && owner != "root",
        "the server runs as {owner:?}"
    );
}

#[test]
fn bad_input_gets_one_line_errors() {
    let Some(project) = Project::local() else {
        return;
    };
    project
        .with_env("DATABASE_URL", "mysql://app:hunter2@127.0.0.1/app")
        .xtask(&["db-status"])
        .assert_one_line_error("not postgres");
    project
        .with_env(
            "DATABASE_URL",
            "postgres://app:hunter2@127.0.0.1:notaport/app",
        )
        .xtask(&["db-status"])
        .assert_one_line_error("DATABASE_URL is malformed");
    project
        .with_env("DB_BACKEND", "kubernetes")
        .xtask(&["db-up"])
        .assert_one_line_error("unknown backend \"kubernetes\"");
    project
        .xtask(&["db-migrate", "--stepz", "2"])
        .assert_one_line_error("unexpected argument '--stepz'");
    project
        .xtask(&["db-revision"])
        .assert_one_line_error("--message");
    // Refused before any connection: nothing listens at this host.
    project
        .with_env("DATABASE_URL", "postgres://app:hunter2@db.invalid:5432/app")
        .with_env("DB_BACKEND", "external")
        .xtask(&["db-reset"])
        .assert_one_line_error(
            "refusing to reset database \"app\" on the non-local host \"db.invalid\"",
        );
    project
        .xtask(&["db-migrate", "--steps", "0"])
        .assert_one_line_error("not a positive whole number");
    project
        .xtask(&["db-rollback", "--steps", "-2"])
        .assert_one_line_error("not a positive whole number");
}

#[test]
fn an_unreachable_external_server_times_out_with_the_last_error() {
    if !local_binaries_or_skip() {
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let project = Project::local_on_port(port)
        .unwrap()
        .with_env("DB_BACKEND", "external");
    let up = project.xtask(&["db-up", "--timeout", "1"]);
    up.assert_one_line_error("was not ready in time; last error: connection refused");

    let down = project.xtask(&["db-down"]);
    down.assert_one_line_error("not managed by xtask");
}

#[test]
fn a_stale_schema_file_fails_the_dump_check() {
    let Some(project) = Project::local() else {
        return;
    };
    let committed =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../db/schema.sql")).unwrap();
    let copy = project.state_dir().join("schema.sql");
    fs::write(&copy, &committed).unwrap();
    let current = project.with_env("DB_SCHEMA_FILE", copy.to_str().unwrap());
    let check = current.xtask(&["db-dump", "--check"]);
    check.assert_success();
    assert!(check.stderr.contains("is up to date"), "{}", check.stderr);
    // The scratch database's migrations are not news: nothing reads as if the user's changed.
    assert!(!check.all().contains("applied "), "{}", check.all());

    fs::write(&copy, committed.replace("description text,\n", "")).unwrap();
    let stale = current.xtask(&["db-dump", "--check"]);
    stale.assert_one_line_error("is stale");
    assert!(
        stale.stdout.contains("+    description text,"),
        "the diff shows the missing column:\n{}",
        stale.stdout
    );
}

#[test]
fn db_lint_passes_on_the_real_migrations_and_drops_its_scratch_database() {
    let Some(project) = Project::local() else {
        return;
    };
    // Nothing is applied yet, so the pending migrations are all of them; the projects
    // migration's one finding is allowed by its `db-lint:` comment.
    let pending = project.xtask(&["db-lint"]);
    pending.assert_success();
    assert!(
        pending
            .stdout
            .contains("allowed m20261124_120000_create_projects: require-lock-timeout"),
        "{}",
        pending.all()
    );

    project.xtask(&["db-migrate"]).assert_success();
    let all = project.xtask(&["-q", "db-lint", "--all", "--format", "json"]);
    all.assert_success();
    // xtask's own lines go to stderr: stdout is the JSON document alone.
    assert!(
        all.stdout.starts_with('{') && all.stdout.trim_end().ends_with('}'),
        "{}",
        all.stdout
    );
    assert!(all.stdout.contains("\"scope\": \"all\""), "{}", all.stdout);
    assert!(all.stdout.contains("\"failed\": false"), "{}", all.stdout);
    let left = project.psql("SELECT count(*) FROM pg_database WHERE datname LIKE '%lint_all'");
    left.assert_success();
    assert_eq!(left.stdout.trim(), "0", "the scratch database is dropped");
}

#[test]
fn the_highest_version_found_is_chosen_and_named() {
    let Some(project) = Project::local() else {
        return;
    };
    let newest = support::fake_install(project.state_dir(), "99.1");
    // Without PG_BIN (CI sets one), the highest version wins.
    let status = project
        .with_env("PATH", &support::path_with(&newest))
        .with_env("PG_BIN", "")
        .xtask(&["db-status"]);
    status.assert_success();
    assert!(
        status.stderr.contains(&format!(
            "binaries: PostgreSQL 99.1 in {} (the highest version found, over ",
            newest.display()
        )),
        "{}",
        status.stderr
    );

    let older = support::fake_install(project.state_dir(), "9.6");
    let chosen = project
        .with_env("PATH", &support::path_with(&newest))
        .with_env("PG_BIN", older.to_str().unwrap())
        .xtask(&["db-status"]);
    assert!(
        chosen.stderr.contains(&format!(
            "binaries: PostgreSQL 9.6 in {} (chosen by PG_BIN)",
            older.display()
        )),
        "{}",
        chosen.stderr
    );
}

#[test]
fn an_external_dump_uses_a_pg_dump_of_the_servers_major() {
    let Some(project) = Project::local() else {
        return;
    };
    project.xtask(&["db-up"]).assert_success();
    // The first pg_dump on PATH is of another major; the dump must not use it.
    let other = support::fake_install(project.state_dir(), "99.1");
    let committed =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../db/schema.sql")).unwrap();
    let copy = project.state_dir().join("schema.sql");
    fs::write(&copy, &committed).unwrap();
    let check = project
        .with_env("DB_BACKEND", "external")
        .with_env("PATH", &support::path_with(&other))
        .with_env("DB_SCHEMA_FILE", copy.to_str().unwrap())
        .xtask(&["db-dump", "--check"]);
    check.assert_success();
    assert!(!check.stderr.contains("fake pg_dump"), "{}", check.stderr);
}

/// Commands that work in a scratch database (`db-lint --all`, `db-dump --check`) share its
/// name: run at once, neither may drop the other's from under it.
#[test]
fn parallel_scratch_database_commands_all_succeed() {
    let Some(project) = Project::local() else {
        return;
    };
    project.xtask(&["db-up"]).assert_success();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            project
                .command(&["-q", "db-lint", "--all"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("xtask starts")
        })
        .collect();
    for child in runs {
        let run = Run::from(child.wait_with_output().expect("xtask runs"));
        run.assert_success();
    }
    let left = project.psql("SELECT count(*) FROM pg_database WHERE datname LIKE '%lint_all'");
    left.assert_success();
    assert_eq!(left.stdout.trim(), "0", "the scratch database is dropped");
}
