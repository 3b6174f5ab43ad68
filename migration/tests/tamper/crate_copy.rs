//! A copy of the migration crate, built as a binary of its own, for the test that edits an
//! applied migration's source.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::PROJECTS_MIGRATION;

/// A copy of this crate in a workspace of its own, under a package name of its own so that its
/// binary does not replace this crate's, built into this build's target directory so that only
/// the copy itself is compiled.
pub struct CrateCopy {
    root: tempfile::TempDir,
}

const COPY_PACKAGE: &str = "migration-tamper-copy";

impl CrateCopy {
    pub fn new() -> Self {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let workspace_dir = crate_dir
            .parent()
            .expect("the crate lives in the workspace");
        let root = tempfile::tempdir().expect("a temporary directory");
        let copy_dir = root.path().join("migration");
        copy_dir_all(&crate_dir.join("src"), &copy_dir.join("src"));
        // Not built, but the manifest names them.
        copy_dir_all(&crate_dir.join("tests"), &copy_dir.join("tests"));
        fs::copy(crate_dir.join("build.rs"), copy_dir.join("build.rs")).expect("copy build.rs");

        let manifest = read(&crate_dir.join("Cargo.toml"));
        assert!(
            manifest.starts_with("[package]\nname = \"migration\"\n"),
            "{manifest}"
        );
        // The package and its binary are renamed; the library keeps its name, which `main.rs` uses.
        let manifest = manifest
            .replacen(
                "name = \"migration\"",
                &format!("name = \"{COPY_PACKAGE}\""),
                1,
            )
            .replacen(
                "[[bin]]\nname = \"migration\"",
                &format!("[[bin]]\nname = \"{COPY_PACKAGE}\""),
                1,
            )
            // The workspace's feature set for the dependencies (workspace-hack/Cargo.toml), so
            // that the copy reuses what this build compiled instead of building sqlx and
            // sea-orm again with the fewer features one crate alone would ask for.
            .replacen(
                "[dependencies]\n",
                "[dependencies]\nworkspace-hack.workspace = true\n",
                1,
            );
        fs::write(copy_dir.join("Cargo.toml"), manifest).expect("write the copy's manifest");

        // The workspace's own settings and dependency versions, with only the copy as a member;
        // the workspace's other crates stay where they are.
        let workspace_manifest: String = read(&workspace_dir.join("Cargo.toml"))
            .lines()
            .filter(|line| {
                !line.starts_with("default-members")
                    && !line.starts_with("migration = ")
                    && !line.starts_with("db = ")
                    && !line.starts_with("db-testing = ")
            })
            .map(|line| {
                if line.starts_with("members = ") {
                    "members = [\"migration\"]\n".to_owned()
                } else {
                    format!("{}\n", with_absolute_path(line, workspace_dir))
                }
            })
            .collect();
        fs::write(root.path().join("Cargo.toml"), workspace_manifest)
            .expect("write the workspace manifest");
        fs::copy(
            workspace_dir.join("Cargo.lock"),
            root.path().join("Cargo.lock"),
        )
        .expect("copy Cargo.lock");
        Self { root }
    }

    pub fn edit_projects_migration(&self, edit: impl FnOnce(&str) -> String) {
        let path = self
            .root
            .path()
            .join(format!("migration/src/{PROJECTS_MIGRATION}.rs"));
        let edited = edit(&read(&path));
        fs::write(&path, edited).expect("write the edited migration");
    }

    /// Builds the copy and returns its binary.
    pub fn build(&self) -> PathBuf {
        let this_binary = Path::new(env!("CARGO_BIN_EXE_migration"));
        let profile_dir = this_binary
            .parent()
            .expect("the binary is in a profile directory");
        let target_dir = profile_dir
            .parent()
            .expect("profiles are in the target directory");
        let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .args([
                "build",
                "--offline",
                "--quiet",
                "--profile",
                &profile,
                "--bin",
                COPY_PACKAGE,
            ])
            .arg("--manifest-path")
            .arg(self.root.path().join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", target_dir);
        // `cargo test` set this crate's CARGO_PKG_* for the test; a build that inherited them
        // would rebuild what depends on them (ring) for the copy, and again for this workspace.
        for name in dbops_common::cargo_env::package_vars() {
            command.env_remove(name);
        }
        let output = command.output().expect("cargo runs");
        assert!(
            output.status.success(),
            "building the copy failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        profile_dir.join(format!("{COPY_PACKAGE}{}", std::env::consts::EXE_SUFFIX))
    }
}

/// `line` with its `path = "…"`, if any, made absolute against `workspace_dir`.
fn with_absolute_path(line: &str, workspace_dir: &Path) -> String {
    const KEY: &str = "path = \"";
    let Some(start) = line.find(KEY).map(|found| found + KEY.len()) else {
        return line.to_owned();
    };
    let end = start
        + line[start..]
            .find('"')
            .expect("a path value ends with a quote");
    let absolute = workspace_dir.join(&line[start..end]);
    // Forward slashes: a TOML string would read a Windows backslash as an escape.
    let absolute = absolute.display().to_string().replace('\\', "/");
    format!("{}{absolute}{}", &line[..start], &line[end..])
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn copy_dir_all(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the copy's directory");
    for entry in fs::read_dir(from).expect("list the crate's sources") {
        let entry = entry.expect("a readable directory entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir_all(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy a source file");
        }
    }
}
