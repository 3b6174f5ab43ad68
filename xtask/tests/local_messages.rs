//! What the local backend tells the user about its own clusters: a port held by this checkout's
//! other cluster, a server that was already stopped, nothing to stop, and the version warning.

mod support;

use support::{PASSWORD, Project, Run};

/// `db-test` with a `cargo` that fails at once: the test cluster starts, and nothing is built.
fn start_test_cluster(project: &Project, test_port: Option<u16>) -> Run {
    let variant = project.with_env("CARGO", "false");
    let variant = match test_port {
        Some(port) => variant.with_env("POSTGRES_TEST_PORT", &port.to_string()),
        None => variant,
    };
    variant.xtask(&["db-test"])
}

/// Fails unless xtask's messages (stderr) hold every one of `needles` and none of `absent`.
#[track_caller]
fn assert_says(run: &Run, needles: &[&str], absent: &[&str]) {
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "expected {needle:?} in:\n{}",
            run.stderr
        );
    }
    for word in absent {
        assert!(
            !run.all().contains(word),
            "did not expect {word:?} in:\n{}",
            run.all()
        );
    }
}

/// Fails unless `db-down` succeeded saying one line, besides the announcement of the backend.
#[track_caller]
fn assert_one_line_down(run: &Run, needles: &[&str], absent: &[&str]) {
    run.assert_success();
    let said = run.stderr.lines().filter(|l| {
        !["backend:", "server:", "binaries:"]
            .iter()
            .any(|p| l.starts_with(p))
    });
    assert_eq!(said.count(), 1, "{}", run.stderr);
    assert_says(run, needles, absent);
}

#[test]
fn a_port_held_by_the_test_cluster_is_named_as_this_checkouts_own() {
    let Some(project) = Project::local() else {
        return;
    };
    let test = start_test_cluster(&project, Some(project.port));
    assert_says(&test, &["ready: PostgreSQL"], &[]);

    let up = project.xtask(&["db-up"]);
    up.assert_one_line_error("is taken by this checkout's own test cluster");
    assert_says(&up, &["cargo xtask db-down"], &["another program"]);

    let status = project.xtask(&["db-status"]);
    status.assert_one_line_error("is taken by this checkout's own test cluster");
    assert_says(&status, &["cargo xtask db-down"], &["another project's"]);

    project.xtask(&["db-down"]).assert_success();
    project.xtask(&["db-up"]).assert_success();
}

#[test]
fn a_port_held_by_the_local_cluster_is_named_as_this_checkouts_own() {
    let (Some(project), Some(other)) = (Project::local(), Project::local()) else {
        return;
    };
    project.xtask(&["db-up"]).assert_success();

    let test = start_test_cluster(&project, Some(project.port));
    test.assert_one_line_error("is taken by this checkout's own local cluster");
    assert_says(&test, &["cargo xtask db-down", "POSTGRES_TEST_PORT"], &[]);

    // Another checkout's cluster on the port is not claimed as ours.
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:{}/app", project.port);
    let up = other.with_env("DATABASE_URL", &url).xtask(&["db-up"]);
    up.assert_one_line_error("already taken by another program");
    assert_says(&up, &[], &["this checkout's own"]);
}

#[test]
fn db_down_says_whether_it_stopped_anything() {
    let Some(project) = Project::local() else {
        return;
    };
    let nothing = project.xtask(&["db-down"]);
    assert_one_line_down(&nothing, &["nothing to stop"], &[]);

    project.xtask(&["db-up"]).assert_success();
    let stopped = project.xtask(&["db-down"]);
    assert_one_line_down(
        &stopped,
        &["stopped the local cluster", "data is kept"],
        &["already"],
    );

    let again = project.xtask(&["db-down"]);
    assert_one_line_down(&again, &["already stopped", "data is kept"], &[]);

    let wipe = project.xtask(&["db-down", "--volumes"]);
    assert_one_line_down(&wipe, &["already stopped", "deleted"], &[]);
    assert!(!project.state_dir().join("local").exists());

    let gone = project.xtask(&["db-down", "--volumes"]);
    assert_one_line_down(&gone, &["nothing to stop or delete"], &[]);
}

#[test]
fn db_down_with_no_backend_remembered_probes_no_image() {
    let Some(project) = Project::local() else {
        return;
    };
    // `auto`, and an image that no registry has: probing docker would try to pull it.
    let auto = project
        .with_env("DB_BACKEND", "")
        .with_env("POSTGRES_IMAGE", "xtask-test.invalid/absent:16");
    let down = auto.xtask(&["db-down", "--volumes"]);
    assert_one_line_down(&down, &["nothing to stop or delete"], &["pull"]);
    assert_eq!(down.stderr.lines().count(), 1, "{}", down.stderr);
    let made: Vec<_> = std::fs::read_dir(project.state_dir()).unwrap().collect();
    assert!(made.is_empty(), "db-down made {made:?}");

    // A cluster that exists here, with no backend remembered, is what auto stops.
    project.xtask(&["db-up"]).assert_success();
    std::fs::remove_file(project.state_dir().join("backend")).unwrap();
    let down = auto.xtask(&["db-down", "--volumes"]);
    assert_one_line_down(
        &down,
        &["backend: local (auto:", "stopped the local cluster"],
        &["pull"],
    );
    assert!(!project.state_dir().join("local").exists());
}

#[test]
fn the_version_warning_is_said_once_per_cluster() {
    let Some(project) = Project::local() else {
        return;
    };
    // An image of a major that no installed binaries are.
    let project = project.set_env("POSTGRES_IMAGE", "postgres:99-alpine");
    let warnings = |run: &Run| {
        run.stderr
            .matches("image postgres:99-alpine runs 99")
            .count()
    };

    let first = project.xtask(&["db-up"]);
    first.assert_success();
    assert_eq!(warnings(&first), 1, "{}", first.stderr);
    project.xtask(&["db-down"]).assert_success();
    let second = project.xtask(&["db-up"]);
    second.assert_success();
    assert_eq!(warnings(&second), 0, "said again:\n{}", second.stderr);

    let made = start_test_cluster(&project, None);
    assert_says(&made, &["ready: PostgreSQL"], &[]);
    assert_eq!(warnings(&made), 1, "{}", made.stderr);
    let reused = start_test_cluster(&project, None);
    assert_says(&reused, &["ready: PostgreSQL"], &[]);
    assert_eq!(warnings(&reused), 0, "said again:\n{}", reused.stderr);
}
