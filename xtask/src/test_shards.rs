//! One shard of the suite without cargo-nextest (`db-test --runner cargo --partition K/N`): the
//! tests of every test harness, split by [`Partition::owns`], each harness run with libtest's
//! `--exact` names of this shard. Doc tests are not split; the first shard runs them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{
    bins::{built_as_test, cargo, json_field},
    cli_args::Partition,
    context::Ctx,
    process::ChildFailed,
    ui,
};

/// A test harness cargo built, and where cargo runs it from (its package's directory).
struct Harness {
    /// `package::target`, the name the split hashes.
    id: String,
    executable: PathBuf,
    package_dir: PathBuf,
}

/// Builds the harnesses `cargo_args` select and runs this shard's tests of each; `libtest_args`
/// (filters, `--ignored`) narrow each harness's list as they would a plain `cargo test`.
pub fn run(
    ctx: &Ctx,
    partition: Partition,
    cargo_args: &[&str],
    libtest_args: &[&str],
) -> Result<()> {
    let database_url = crate::tls::url_for_sqlx(ctx.cfg.url.as_str());
    let output = crate::process::output(
        cargo(&ctx.sh)
            .args([
                "test",
                "--no-run",
                "--message-format=json-render-diagnostics",
            ])
            .args(cargo_args)
            .quiet(),
    )?;
    if !output.status.success() {
        return Err(ChildFailed::from_status(output.status).into());
    }
    let mut failed = None;
    for harness in harnesses(&String::from_utf8_lossy(&output.stdout)) {
        let tests = list(&harness, libtest_args)?;
        let mine: Vec<&str> = tests
            .iter()
            .map(String::as_str)
            .filter(|test| partition.owns(&harness.id, test))
            .collect();
        if mine.is_empty() {
            continue;
        }
        ui::info(format!(
            "{}: {} of its {} tests",
            harness.id,
            mine.len(),
            tests.len()
        ));
        let status = std::process::Command::new(&harness.executable)
            .args(["--exact"])
            .args(&mine)
            // The flags that choose among ignored tests; filters are already in the names.
            .args(
                libtest_args
                    .iter()
                    .filter(|arg| ["--ignored", "--include-ignored"].contains(arg)),
            )
            .current_dir(&harness.package_dir)
            .env("DATABASE_URL", &database_url)
            .status()
            .with_context(|| format!("cannot run {}", harness.executable.display()))?;
        if !status.success() {
            failed.get_or_insert(ChildFailed::from_status(status));
        }
    }
    failed.map_or(Ok(()), |failure| Err(failure.into()))
}

/// The test harnesses among cargo's JSON messages.
fn harnesses(messages: &str) -> Vec<Harness> {
    messages
        .lines()
        .filter(|line| line.contains("\"reason\":\"compiler-artifact\""))
        .filter(|line| built_as_test(line) == Some(true))
        .filter_map(|line| {
            let executable = json_field(line, "executable")?;
            let manifest = json_field(line, "manifest_path")?;
            let target = json_field(&line[line.find("\"target\":")?..], "name")?;
            let package_dir = Path::new(&manifest).parent()?.to_path_buf();
            let package = package_dir.file_name()?.to_string_lossy().into_owned();
            Some(Harness {
                id: format!("{package}::{target}"),
                executable: PathBuf::from(executable),
                package_dir,
            })
        })
        .collect()
}

/// The names of `harness`'s tests that `libtest_args` select, from libtest's own `--list`.
fn list(harness: &Harness, libtest_args: &[&str]) -> Result<Vec<String>> {
    let output = std::process::Command::new(&harness.executable)
        .args(["--list", "--format", "terse"])
        .args(libtest_args)
        .current_dir(&harness.package_dir)
        .output()
        .with_context(|| format!("cannot list the tests of {}", harness.executable.display()))?;
    if !output.status.success() {
        return Err(ChildFailed::from_status(output.status).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harnesses_are_the_test_artifacts_named_by_package_and_target() {
        let messages = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/db#0.1.0","manifest_path":"/w/db/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"projects_crud","src_path":"/w/db/tests/projects_crud.rs","test":true},"profile":{"opt_level":"0","test":true},"executable":"/w/target/debug/deps/projects_crud-01","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/migration#0.1.0","manifest_path":"/w/migration/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"migration","src_path":"/w/migration/src/main.rs","test":true},"profile":{"opt_level":"0","test":false},"executable":"/w/target/debug/migration","fresh":true}
{"reason":"build-finished","success":true}"#;
        let found = harnesses(messages);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "db::projects_crud");
        assert_eq!(found[0].package_dir, PathBuf::from("/w/db"));
        assert_eq!(
            found[0].executable,
            PathBuf::from("/w/target/debug/deps/projects_crud-01")
        );
    }
}
