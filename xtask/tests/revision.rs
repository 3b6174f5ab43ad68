//! `cargo xtask db-revision` in a temporary copy of the workspace: the new migration compiles,
//! is registered, and `db-migrate` applies it.

mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use support::{Project, Run};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Copies the sources (not `target/`, `.data/` or `.git/`) so that the copy builds like the original.
fn copy_workspace(to: &Path) {
    let root = workspace_root();
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "docker-compose.yml",
        ".env.template",
    ] {
        fs::copy(root.join(file), to.join(file)).unwrap();
    }
    fs::create_dir_all(to.join(".cargo")).unwrap();
    fs::copy(
        root.join(".cargo/config.toml"),
        to.join(".cargo/config.toml"),
    )
    .unwrap();
    for dir in workspace_members(&root) {
        copy_dir(&root.join(&dir), &to.join(&dir));
    }
}

/// The `members = [...]` of the workspace manifest, so that a new crate is copied too.
fn workspace_members(root: &Path) -> Vec<String> {
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("the workspace manifest lists its members on one line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn cargo_xtask(project: &Project, copy: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("xtask").args(args).current_dir(copy);
    project.configure(&mut cmd);
    // A target directory of its own: the copy's binaries have the same names as the original's,
    // and cargo does not re-link a fresh binary that another build overwrote. Kept under target/
    // so that later runs build incrementally.
    cmd.env(
        "CARGO_TARGET_DIR",
        workspace_root().join("target/revision-copy"),
    );
    Run::from(cmd.output().expect("cargo runs"))
}

/// Builds a whole copy of the workspace, tests included, as `db-revision` and `db-migrate` do:
/// minutes, so it stays out of the everyday suite. `.ci/run` runs it, and so does
/// `cargo xtask db-test -- --run-ignored all`.
#[test]
#[ignore = "builds a copy of the workspace (minutes); run with --run-ignored all, as .ci/run does"]
fn a_new_revision_compiles_registers_and_applies() {
    let Some(project) = Project::local() else {
        return;
    };
    let copy = tempfile::Builder::new()
        .prefix("xtask-revision-")
        .tempdir()
        .unwrap();
    copy_workspace(copy.path());

    let revision = cargo_xtask(
        &project,
        copy.path(),
        &["db-revision", "-m", "Add user table"],
    );
    revision.assert_success();
    let lib = fs::read_to_string(copy.path().join("migration/src/lib.rs")).unwrap();
    let module = lib
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("pub ")
                .unwrap_or(l)
                .strip_prefix("mod ")
                .and_then(|m| m.strip_suffix(';'))
        })
        .find(|m| m.ends_with("_add_user_table"))
        .unwrap_or_else(|| panic!("lib.rs does not declare the new migration:\n{lib}"))
        .to_owned();
    assert!(
        lib.contains(&format!("Box::new({module}::Migration)")),
        "not registered:\n{lib}"
    );
    assert!(
        copy.path()
            .join(format!("migration/src/{module}.rs"))
            .exists()
    );

    let migrate = cargo_xtask(&project, copy.path(), &["db-migrate"]);
    migrate.assert_success();
    assert!(
        migrate.stdout.contains(&format!("applied {module}")),
        "{}",
        migrate.all()
    );

    let status = cargo_xtask(&project, copy.path(), &["db-status", "--check"]);
    status.assert_success();
    assert!(
        status.stdout.contains(&format!("applied {module}")),
        "{}",
        status.all()
    );
}

#[test]
fn a_message_without_a_name_is_refused() {
    let Some(project) = Project::local() else {
        return;
    };
    for message in ["", "  ", "!!!", "42 things"] {
        project
            .xtask(&["db-revision", "-m", message])
            .assert_one_line_error("migration message");
    }
}
