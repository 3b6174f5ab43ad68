//! What xtask says about its backends on a real machine: `db-status` on a docker backend whose
//! container is down, the remembered backend across one explicit `--backend`, and the reason
//! `auto` gives when the engine answers but the image is missing.

mod support;

use std::process::Command;

use support::Project;

/// The offline image that `tools/standin-image/build.sh` builds.
const STANDIN_IMAGE: &str = "localhost/postgres-standin:16";

const DEAD_DOCKER_HOST: &str = "unix:///nonexistent/docker.sock";

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A local project where a container engine answers and compose is installed too; `None`
/// (after printing why `test` skips) otherwise.
fn local_and_docker_or_skip(test: &str) -> Option<Project> {
    let project = Project::local()?;
    if !succeeds("docker", &["info"]) {
        eprintln!("SKIPPED {test}: no Docker engine answers (docker info failed)");
        return None;
    }
    if !succeeds("docker", &["compose", "version"]) && !succeeds("docker-compose", &["version"]) {
        eprintln!("SKIPPED {test}: neither `docker compose` nor docker-compose is installed");
        return None;
    }
    Some(project)
}

#[test]
fn status_on_docker_without_a_container_describes_docker_not_the_local_cluster() {
    let test = "status_on_docker_without_a_container_describes_docker_not_the_local_cluster";
    let Some(project) = local_and_docker_or_skip(test) else {
        return;
    };
    let name = format!("xtask-msg-status-{}", project.port);
    let project = project.set_env("COMPOSE_PROJECT_NAME", &name);
    // The local cluster answers on the very port the docker backend would publish.
    project.xtask(&["db-up"]).assert_success();

    let status = project.xtask(&["db-status", "--backend", "docker"]);
    status.assert_success();
    assert!(
        status.stderr.contains("backend: docker"),
        "{}",
        status.stderr
    );
    assert!(
        status
            .stdout
            .contains(&format!("reachable: no (no postgres container of compose project \"{name}\" is running; another program holds port {})", project.port)),
        "{}",
        status.all()
    );
    assert!(
        status.stderr.contains("cargo xtask db-up --backend docker"),
        "{}",
        status.stderr
    );
    for local_detail in ["reachable: yes", "pending", "binaries:", "local cluster"] {
        assert!(!status.all().contains(local_detail), "{}", status.all());
    }
    status.assert_no_password();

    let check = project.xtask(&["db-status", "--backend", "docker", "--check"]);
    assert!(!check.success(), "{}", check.all());

    let dead = project.with_env("DOCKER_HOST", DEAD_DOCKER_HOST).xtask(&[
        "db-status",
        "--backend",
        "docker",
    ]);
    assert!(
        dead.stdout
            .contains("reachable: no (the container engine's daemon does not answer"),
        "{}",
        dead.all()
    );
    assert!(dead.stderr.contains("start Docker"), "{}", dead.stderr);
}

/// Deletes the docker backend's container and volume when a test ends.
struct ComposeCleanup(Project);

impl Drop for ComposeCleanup {
    fn drop(&mut self) {
        let _ = self
            .0
            .command(&["db-down", "--backend", "docker", "--volumes", "-q"])
            .output();
    }
}

#[test]
fn one_explicit_docker_run_leaves_auto_on_the_local_data() {
    let test = "one_explicit_docker_run_leaves_auto_on_the_local_data";
    let Some(project) = local_and_docker_or_skip(test) else {
        return;
    };
    if !succeeds("docker", &["image", "inspect", STANDIN_IMAGE]) {
        eprintln!(
            "SKIPPED {test}: the stand-in image {STANDIN_IMAGE} is missing; build it with tools/standin-image/build.sh"
        );
        return;
    }
    let name = format!("xtask-msg-marker-{}", project.port);
    let project = project
        .set_env("DB_BACKEND", "auto")
        .set_env("COMPOSE_PROJECT_NAME", &name);
    let docker = ComposeCleanup(project.with_env("POSTGRES_IMAGE", STANDIN_IMAGE));
    let marker = project.state_dir().join("backend");
    let remembered = || std::fs::read_to_string(&marker).unwrap_or_default();

    project
        .xtask(&["db-up", "--backend", "local"])
        .assert_success();
    assert_eq!(remembered().trim(), "local");
    project
        .psql("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('local data');")
        .assert_success();
    project.xtask(&["db-down"]).assert_success();

    let up = docker.0.xtask(&["db-up", "--backend", "docker"]);
    up.assert_success();
    assert_eq!(remembered().trim(), "local", "{}", up.stderr);
    assert!(
        up.stderr.contains(
            "note: the local backend still holds the project's data, so `auto` stays with it"
        ),
        "{}",
        up.stderr
    );
    up.assert_no_password();
    docker
        .0
        .xtask(&["db-down", "--backend", "docker"])
        .assert_success();

    let back = project.xtask(&["db-up"]);
    back.assert_success();
    assert!(
        back.stderr
            .contains("backend: local (auto: the project's data lives in the local backend)"),
        "{}",
        back.stderr
    );
    let read = project.psql("SELECT note FROM kept");
    read.assert_success();
    assert!(read.stdout.contains("local data"), "{}", read.stdout);
}

#[test]
fn auto_says_the_image_is_missing_when_the_engine_answers() {
    let test = "auto_says_the_image_is_missing_when_the_engine_answers";
    let Some(project) = local_and_docker_or_skip(test) else {
        return;
    };
    let image = "localhost/no-such-postgres:0";
    let auto = project
        .set_env("DB_BACKEND", "auto")
        .set_env("POSTGRES_IMAGE", image);

    let status = auto.xtask(&["db-status"]);
    status.assert_success();
    let reason = format!(
        "backend: local (auto: the container engine answers but the image {image} is missing and cannot be pulled, PostgreSQL binaries found)"
    );
    assert!(status.stderr.contains(&reason), "{}", status.stderr);
    assert!(
        !status.stderr.contains("no usable container engine"),
        "{}",
        status.stderr
    );
    assert!(
        status.stderr.contains("POSTGRES_IMAGE"),
        "{}",
        status.stderr
    );
    status.assert_no_password();

    // When the engine itself is silent, the reason says that instead.
    let dead = auto
        .with_env("DOCKER_HOST", DEAD_DOCKER_HOST)
        .xtask(&["db-status"]);
    dead.assert_success();
    assert!(
        dead.stderr.contains(
            "backend: local (auto: no usable container engine, PostgreSQL binaries found)"
        ),
        "{}",
        dead.stderr
    );
}
