//! Fingerprints the migration crate so `db_testing` names its template database after the schema it holds.
//!
//! The fingerprint covers every file under `migration/src`, `migration/Cargo.toml` and the
//! `sea-orm-migration` version locked in the workspace `Cargo.lock`. Editing any migration, even an
//! applied one, changes it, which makes the test helper build a fresh template instead of reusing
//! a stale one. The server's major version is mixed in at run time, because it is only known then.

use std::fs;
use std::path::{Path, PathBuf};

use dbops_common::fnv::{FNV_OFFSET_BASIS, fnv1a};

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let workspace_dir = manifest_dir
        .parent()
        .expect("the db-testing crate lives inside the workspace")
        .to_path_buf();
    let migration_sources = workspace_dir.join("migration/src");
    let migration_manifest = workspace_dir.join("migration/Cargo.toml");
    let lock_file = workspace_dir.join("Cargo.lock");

    for watched in [&migration_sources, &migration_manifest, &lock_file] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }

    let mut files = Vec::new();
    collect_files(&migration_sources, &mut files);
    files.push(migration_manifest);
    // Sorted so the fingerprint does not depend on directory iteration order.
    files.sort();

    let mut hash = FNV_OFFSET_BASIS;
    for file in &files {
        let relative = file.strip_prefix(&workspace_dir).unwrap_or(file);
        // Hashing the path too means renaming or moving a migration also counts as a change.
        hash = fnv1a(
            hash,
            relative.to_string_lossy().replace('\\', "/").as_bytes(),
        );
        hash = fnv1a(hash, &[0]);
        let contents = fs::read(file).unwrap_or_else(|error| {
            panic!(
                "cannot read {} to fingerprint the migrations: {error}",
                file.display()
            )
        });
        hash = fnv1a(hash, &contents);
        hash = fnv1a(hash, &[0]);
    }

    let migration_version =
        locked_version(&lock_file, "sea-orm-migration").unwrap_or_else(|| "unlocked".to_owned());
    hash = fnv1a(hash, b"sea-orm-migration=");
    hash = fnv1a(hash, migration_version.as_bytes());

    println!("cargo:rustc-env=DB_TESTING_MIGRATIONS_FINGERPRINT={hash:016x}");
    println!("cargo:rustc-env=DB_TESTING_SEA_ORM_MIGRATION_VERSION={migration_version}");
}

fn collect_files(directory: &Path, files: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(directory).unwrap_or_else(|error| {
        panic!(
            "cannot list {} to fingerprint the migrations: {error}",
            directory.display()
        )
    });
    for entry in entries {
        let path = entry.expect("directory entry is readable").path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// Reads the version of `package` from a `Cargo.lock`; a missing lock file is not fatal because
/// `cargo package` and fresh checkouts build without one.
fn locked_version(lock_file: &Path, package: &str) -> Option<String> {
    let lock = fs::read_to_string(lock_file).ok()?;
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    lines.find(|line| line.trim() == name_line)?;
    let version_line = lines.next()?.trim();
    let version = version_line
        .strip_prefix("version = \"")?
        .strip_suffix('"')?;
    Some(version.to_owned())
}
