//! The local backend on a shared developer machine: other projects, other users, parallel
//! starts, crashes and Ctrl-C. Each test reproduces a fault that once lost data or leaked access.

mod support;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use support::{PASSWORD, Project, Run};

fn postmaster_line(project: &Project, index: usize) -> String {
    let text = fs::read_to_string(project.state_dir().join("local/pgdata/postmaster.pid"))
        .expect("the server runs");
    text.lines()
        .nth(index)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn another_projects_server_on_the_port_is_never_adopted() {
    let (Some(a), Some(b)) = (Project::local(), Project::local()) else {
        return;
    };
    a.xtask(&["db-up"]).assert_success();
    a.psql("CREATE TABLE precious (v text); INSERT INTO precious VALUES ('a''s data')")
        .assert_success();
    b.xtask(&["db-up"]).assert_success();

    // B, pointed at A's port while its own cluster runs elsewhere.
    let b_on_a = b.with_env(
        "DATABASE_URL",
        &format!("postgres://app:{PASSWORD}@127.0.0.1:{}/app", a.port),
    );
    let reset = b_on_a.xtask(&["db-reset"]);
    reset.assert_one_line_error(&format!("not on the configured port {}", a.port));
    assert!(reset.stderr.contains("POSTGRES_PORT"), "{}", reset.stderr);
    b_on_a
        .xtask(&["db-status"])
        .assert_one_line_error("is served by a PostgreSQL that is not this checkout's");
    b_on_a
        .xtask(&["db-psql", "--", "-c", "select 1"])
        .assert_one_line_error("is served by a PostgreSQL that is not this checkout's");

    // B's cluster stopped: the port is A's, and every command refuses it.
    b.xtask(&["db-down"]).assert_success();
    for command in ["db-up", "db-migrate", "db-reset"] {
        let run = b_on_a.xtask(&[command]);
        run.assert_one_line_error(&format!("port {}", a.port));
        assert!(
            run.stderr.contains("POSTGRES_PORT"),
            "{command}: {}",
            run.stderr
        );
    }
    let kept = a.psql("SELECT v FROM precious");
    kept.assert_success();
    assert!(kept.stdout.contains("a's data"), "{}", kept.stdout);
}

#[test]
fn db_down_volumes_deletes_only_what_xtask_made() {
    let Some(project) = Project::local() else {
        return;
    };
    let foreign = project.state_dir().join("local");
    fs::create_dir_all(foreign.join("pgdata")).unwrap();
    fs::write(foreign.join("pgdata/PG_VERSION"), "16\n").unwrap();
    fs::write(foreign.join("someone-elses.txt"), "keep me").unwrap();
    let down = project.xtask(&["db-down", "--volumes"]);
    down.assert_one_line_error("is not a PostgreSQL cluster made by xtask");
    assert!(foreign.join("someone-elses.txt").exists());
    assert!(foreign.join("pgdata/PG_VERSION").exists());
    project
        .xtask(&["db-up"])
        .assert_one_line_error("is not a PostgreSQL cluster made by xtask");
    assert!(foreign.join("someone-elses.txt").exists());
}

#[test]
fn a_stale_pid_naming_an_unrelated_process_is_never_signalled() {
    let Some(project) = Project::local() else {
        return;
    };
    // As after a crash and a reboot: the PID now belongs to another program of the same user.
    let mut bystander = support::unrelated_process_of_the_server_user();
    let pid_file = project.crash_leaving_pid(bystander.id());

    let down = project.xtask(&["db-down"]);
    let alive = bystander.try_wait().unwrap().is_none();
    let _ = bystander.kill();
    let _ = bystander.wait();
    down.assert_success();
    assert!(alive, "db-down signalled an unrelated process");
    assert!(
        !pid_file.exists(),
        "the stale postmaster.pid is still there"
    );
    project.xtask(&["db-up"]).assert_success();
}

fn spawn_all(project: &Project, args: &[&str], count: usize) -> Vec<Run> {
    let children: Vec<_> = (0..count)
        .map(|_| {
            project
                .command(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("xtask starts")
        })
        .collect();
    children
        .into_iter()
        .map(|child| Run::from(child.wait_with_output().expect("xtask finishes")))
        .collect()
}

#[test]
fn parallel_starts_all_succeed_and_keep_the_data() {
    let Some(project) = Project::local() else {
        return;
    };
    let first = spawn_all(&project, &["db-up"], 4);
    for run in &first {
        run.assert_success();
    }
    let initialised = first
        .iter()
        .filter(|run| run.stderr.contains("initialised"))
        .count();
    assert_eq!(initialised, 1, "one cluster is made, once");
    project
        .psql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        .assert_success();
    project.xtask(&["db-down"]).assert_success();

    for run in spawn_all(&project, &["db-up"], 4) {
        run.assert_success();
    }
    let read = project.psql("SELECT v FROM kept");
    read.assert_success();
    assert_eq!(read.stdout.trim(), "42");
}

#[test]
fn parallel_first_migrations_all_succeed() {
    let Some(project) = Project::local() else {
        return;
    };
    for run in spawn_all(&project, &["db-migrate"], 8) {
        run.assert_success();
    }
    let tables = project.psql("SELECT count(*) FROM projects");
    tables.assert_success();
    assert_eq!(tables.stdout.trim(), "0");
}

#[test]
fn the_application_role_cannot_run_programs_and_the_superuser_has_no_tcp_login() {
    let Some(project) = Project::local() else {
        return;
    };
    project.xtask(&["db-up"]).assert_success();
    let role =
        project.psql("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user");
    role.assert_success();
    assert_eq!(
        role.stdout.trim(),
        "f|t",
        "the application role is a superuser"
    );
    let owner = project
        .psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()");
    assert_eq!(owner.stdout.trim(), "app");
    let program = project.psql("COPY (SELECT 1) TO PROGRAM 'true'");
    assert!(!program.success(), "COPY TO PROGRAM ran: {}", program.all());
    assert!(
        program.stderr.contains("permission denied")
            || program.stderr.contains("must be superuser"),
        "{}",
        program.stderr
    );

    // The administration role exists, but not over TCP, with or without a password.
    for password in ["", PASSWORD] {
        let tcp_admin = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &project.port.to_string(),
                "-U",
                "xtask_admin",
                "-d",
                "postgres",
                "-w",
                "-c",
                "select 1",
            ])
            .env("PGPASSWORD", password)
            .output()
            .expect("psql runs");
        assert!(
            !tcp_admin.status.success(),
            "xtask_admin logged in over TCP"
        );
    }

    // Its socket lives in a directory that nobody else can enter.
    let socket_dir = PathBuf::from(postmaster_line(&project, 4));
    let mode = fs::metadata(&socket_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", socket_dir.display());
}

#[test]
fn no_file_or_log_holds_the_password_even_after_ctrl_c() {
    let Some(project) = Project::local() else {
        return;
    };
    // Interrupt the first start while it builds the cluster, as Ctrl-C in a terminal does.
    let mut first = project.command(&["db-up"]);
    std::os::unix::process::CommandExt::process_group(&mut first, 0);
    let child = first
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = project.state_dir().to_owned();
    let building = support::poll_until(Duration::from_secs(60), || {
        fs::read_dir(&state)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().is_dir())
    });
    let _ = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait_with_output();
    assert!(building, "the first start never began a cluster");
    let leaked = support::files_containing(&state, PASSWORD);
    assert!(leaked.is_empty(), "the password is in {leaked:?}");

    project.xtask(&["db-up"]).assert_success();
    // A failed statement lands in the server log with its text.
    project.psql(&format!("ALTER ROLE no_such_role PASSWORD E'{PASSWORD}'"));
    project.psql(&format!(
        "ALTER ROLE no_such_role PASSWORD $q${PASSWORD}$q$"
    ));
    let logs = project.xtask(&["db-logs"]);
    logs.assert_success();
    assert!(!logs.all().contains(PASSWORD), "{}", logs.all());
    assert!(
        logs.stdout.contains("PASSWORD $q$***$q$"),
        "{}",
        logs.stdout
    );
    project.xtask(&["db-down"]).assert_success();
    let leaked: Vec<_> = support::files_containing(&state, PASSWORD)
        .into_iter()
        .filter(|file| !file.ends_with("postgres.log"))
        .collect();
    assert!(leaked.is_empty(), "the password is in {leaked:?}");
}

#[test]
fn a_database_name_that_needs_url_encoding_is_created_under_its_own_name() {
    let Some(project) = Project::local() else {
        return;
    };
    let url = format!(
        "postgres://app:{PASSWORD}@127.0.0.1:{}/%C3%9Cn%C3%AF-db",
        project.port
    );
    let project = project.set_env("DATABASE_URL", &url);
    project.xtask(&["db-up"]).assert_success();
    let name = project.psql("SELECT current_database()");
    name.assert_success();
    assert_eq!(name.stdout.trim(), "Ünï-db");
}

#[test]
fn a_long_project_path_still_starts() {
    let Some(project) = Project::local() else {
        return;
    };
    let deep = project
        .state_dir()
        .join("a-project-directory-whose-path-is-long".repeat(3));
    fs::create_dir_all(&deep).unwrap();
    fs::set_permissions(&deep, fs::Permissions::from_mode(0o755)).unwrap();
    let mut parent = deep.parent();
    while let Some(dir) = parent.filter(|d| d.starts_with(project.state_dir())) {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        parent = dir.parent();
    }
    assert!(deep.join("local/pgdata/.s.PGSQL.65535").as_os_str().len() > 107);
    let project = project.set_env("DB_STATE_DIR", deep.to_str().unwrap());
    project.xtask(&["db-up"]).assert_success();
    project.psql("SELECT 1").assert_success();
}

#[test]
fn remote_and_unresolvable_targets_fail_fast_with_one_line() {
    let Some(project) = Project::local() else {
        return;
    };
    let remote = project
        .with_env("DATABASE_URL", "postgres://app:hunter2@db.invalid:5432/app")
        .with_env("DB_BACKEND", "external");
    remote.xtask(&["db-rollback"]).assert_one_line_error(
        "refusing to roll back database \"app\" on the non-local host \"db.invalid\"",
    );
    let forced = remote.xtask(&["db-reset", "--force", "--timeout", "600"]);
    forced.assert_one_line_error("does not resolve");
    assert!(
        !forced.stderr.contains("not ready in time"),
        "{}",
        forced.stderr
    );

    project
        .xtask(&["db-up", "--timeout", "18446744073709551615"])
        .assert_one_line_error("too long");
    project
        .with_env("POSTGRES_DB", &"d".repeat(64))
        .with_env("DATABASE_URL", "")
        .xtask(&["db-up"])
        .assert_one_line_error("PostgreSQL keeps only 63");
    project
        .with_env(
            "DATABASE_URL",
            &format!(
                "postgres://app:hunter2%0Asecond@127.0.0.1:{}/app",
                project.port
            ),
        )
        .xtask(&["db-up"])
        .assert_one_line_error("line break");
}
