//! Builds and runs the workspace's own binaries (`migration`, `testdb`, `db-bench`), which link
//! SeaORM so that xtask does not have to.
//!
//! They are built by `cargo build --workspace --all-targets`, not `cargo run -p …`: cargo
//! resolves dependency features for the packages and targets it is asked to build, so a single
//! package, or the binaries without the tests, would get sea-orm, sqlx and tokio with other
//! features than `cargo test --workspace` does, and `db-test` would compile them all again.
//! Building the tests here costs the first `db-migrate` some time, which `db-test` then saves.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use anyhow::{Context, Result, bail};

use crate::{context::Ctx, process, ui};

/// The cargo that runs xtask, so that nested builds use the same toolchain.
pub fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// A cargo command without the per-package variables `cargo run` set for xtask itself
/// (see [`dbops_common::cargo_env::package_vars`]), so that it builds exactly as a plain `cargo` would.
pub fn cargo(sh: &xshell::Shell) -> xshell::Cmd<'_> {
    dbops_common::cargo_env::package_vars()
        .into_iter()
        .fold(sh.cmd(cargo_program()), |cmd, name| cmd.env_remove(name))
}

/// Removes from `cmd` the per-package variables `cargo run` set for xtask itself, as [`cargo`]
/// does, for a nested cargo (or xtask) started as a `std::process::Command`.
pub fn without_package_vars(cmd: &mut std::process::Command) {
    for name in dbops_common::cargo_env::package_vars() {
        cmd.env_remove(name);
    }
}

/// The path of the workspace binary `name`, built (once per xtask run) with the workspace's features.
pub fn workspace_bin(ctx: &Ctx, name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    let built = match BUILT.get() {
        Some(built) => built,
        None => {
            let built = build_workspace_bins(ctx)?;
            BUILT.get_or_init(|| built)
        }
    };
    built
        .get(name)
        .cloned()
        .with_context(|| format!("the workspace has no binary named {name}"))
}

fn build_workspace_bins(ctx: &Ctx) -> Result<HashMap<String, PathBuf>> {
    // A first build takes minutes: say so, and let cargo show its progress (a bar on a
    // terminal, `Compiling …` lines in a CI log) unless the user asked for quiet.
    ui::info("building the workspace (the first build takes a few minutes)");
    build(
        ctx,
        &["--workspace", "--all-targets"],
        "the workspace's binaries",
    )
}

/// The path of the binary `name` of `package`, built with the release profile (for `cargo xtask
/// bench`, which measures an optimised build too).
pub fn release_bin(ctx: &Ctx, package: &str, name: &str) -> Result<PathBuf> {
    ui::info(format!(
        "building {name} in release (the first release build takes a few minutes)"
    ));
    build(
        ctx,
        &["--release", "--package", package, "--bin", name],
        &format!("{name} in release"),
    )?
    .remove(name)
    .with_context(|| format!("cargo built no binary named {name} in package {package}"))
}

/// Runs `cargo build ARGS`, with cargo's progress shown, and returns the binaries it built.
fn build(ctx: &Ctx, args: &[&str], what: &str) -> Result<HashMap<String, PathBuf>> {
    let cmd = cargo(&ctx.sh)
        .arg("build")
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .args(ui::is_quiet().then_some("--quiet"))
        .quiet();
    ui::debug(format!("$ {cmd}"));
    let output = std::process::Command::from(cmd)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !output.status.success() {
        bail!("building {what} failed: see the compiler output above");
    }
    Ok(executables(&String::from_utf8_lossy(&output.stdout)))
}

/// Picks `(binary name, executable path)` of the binaries, not their test harnesses, out of
/// cargo's JSON messages. A string search, not a JSON parser, to keep serde out of xtask's
/// build; target names and paths in this workspace need no escaping.
fn executables(messages: &str) -> HashMap<String, PathBuf> {
    messages
        .lines()
        .filter(|line| line.contains("\"reason\":\"compiler-artifact\""))
        .filter(|line| line.contains("\"kind\":[\"bin\"]"))
        .filter(|line| built_as_test(line) == Some(false))
        .filter_map(|line| {
            let executable = json_field(line, "executable")?;
            let target = &line[line.find("\"target\":")?..];
            Some((json_field(target, "name")?, PathBuf::from(executable)))
        })
        .collect()
}

/// Whether a `compiler-artifact` message is of a test harness (`Some(true)`) or not, from its
/// profile's `test` flag.
pub fn built_as_test(line: &str) -> Option<bool> {
    let start = line.find("\"profile\":{")?;
    let profile = &line[start..start + line[start..].find('}')?];
    Some(profile.contains("\"test\":true"))
}

/// The string value of `"key"` in one of cargo's JSON messages: the first occurrence, so callers
/// narrow `line` to the object they mean. No escapes are decoded (see [`executables`]).
pub fn json_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = start + line[start..].find('"')?;
    Some(line[start..end].to_owned())
}

/// What the `migration` binary's standard output is to the user; its standard error, where
/// its errors and warnings go, is always shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// What the user asked to see (`status`, a dry run's SQL): shown even with `-q`.
    Result,
    /// Progress lines (`applied …`, `rolled back …`): status lines like xtask's own, so `-q`
    /// silences them.
    Progress,
    /// Lines about something the user did not ask about, such as `db-dump`'s scratch
    /// database: shown only with `-v`.
    Detail,
}

impl Stdout {
    /// `cmd` with its standard output sent to /dev/null unless `-q` (`quiet`) or `-v`
    /// (`verbose`) shows it.
    fn apply(self, mut cmd: xshell::Cmd<'_>, quiet: bool, verbose: bool) -> xshell::Cmd<'_> {
        let shown = match self {
            Stdout::Result => true,
            Stdout::Progress => !quiet,
            Stdout::Detail => verbose,
        };
        cmd.set_ignore_stdout(!shown);
        cmd
    }
}

/// Runs the `migration` binary against the configured database, from `dir`.
pub fn run_in(ctx: &Ctx, dir: &Path, args: &[&str], stdout: Stdout) -> Result<()> {
    run_with_url(ctx, dir, ctx.cfg.url.as_str(), args, stdout)
}

pub fn run_with_url(ctx: &Ctx, dir: &Path, url: &str, args: &[&str], stdout: Stdout) -> Result<()> {
    let migration = workspace_bin(ctx, "migration")?;
    let _dir = ctx.sh.push_dir(dir);
    let cmd = ctx
        .sh
        .cmd(migration)
        .args(args)
        // The URL carries the password: pass it in the environment, never in argv.
        .env("DATABASE_URL", crate::tls::url_for_sqlx(url))
        .quiet();
    ui::debug(format!("$ {} (in {})", cmd, dir.display()));
    process::run_passthrough(stdout.apply(cmd, ui::is_quiet(), ui::is_verbose()))
}

/// Runs the `migration` binary against the configured database; its output is the result.
pub fn run(ctx: &Ctx, args: &[&str]) -> Result<()> {
    run_in(ctx, &ctx.cfg.root, args, Stdout::Result)
}

/// Runs the `migration` binary to change the schema; `-q` silences its progress lines.
pub fn run_progress(ctx: &Ctx, args: &[&str]) -> Result<()> {
    run_in(ctx, &ctx.cfg.root, args, Stdout::Progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_come_from_compiler_artifacts() {
        let messages = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/migration#0.1.0","target":{"kind":["bin"],"crate_types":["bin"],"name":"migration","src_path":"/w/migration/src/main.rs","test":true},"profile":{"opt_level":"0","test":true},"executable":"/w/target/debug/deps/migration-0123","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/migration#0.1.0","target":{"kind":["bin"],"crate_types":["bin"],"name":"migration","src_path":"/w/migration/src/main.rs","test":true},"profile":{"opt_level":"0","test":false},"executable":"/w/target/debug/migration","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/db#0.1.0","target":{"kind":["lib"],"name":"db","src_path":"/w/db/src/lib.rs"},"executable":null,"fresh":true}
{"reason":"build-finished","success":true}"#;
        let found = executables(messages);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found["migration"],
            PathBuf::from("/w/target/debug/migration")
        );
    }

    /// What a child writes on stdout, and on stderr, through `stdout.apply` at this verbosity.
    fn through(stdout: Stdout, quiet: bool, verbose: bool) -> (String, String) {
        let sh = xshell::Shell::new().unwrap();
        let cmd = xshell::cmd!(sh, "sh -c 'echo applied m1; echo error: boom >&2'");
        let output = std::process::Command::from(stdout.apply(cmd, quiet, verbose))
            .output()
            .unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (text(&output.stdout), text(&output.stderr))
    }

    #[test]
    fn quiet_silences_progress_and_scratch_lines_but_never_errors_or_results() {
        // (stdout kind, -q, -v) => shown on stdout
        let cases = [
            (Stdout::Progress, false, false, true),
            (Stdout::Progress, true, false, false),
            (Stdout::Result, true, false, true),
            (Stdout::Detail, false, false, false),
            (Stdout::Detail, false, true, true),
        ];
        for (stdout, quiet, verbose, shown) in cases {
            let (out, err) = through(stdout, quiet, verbose);
            let expected = if shown { "applied m1\n" } else { "" };
            assert_eq!(out, expected, "{stdout:?} quiet={quiet} verbose={verbose}");
            assert_eq!(err, "error: boom\n", "errors always show");
        }
    }
}
