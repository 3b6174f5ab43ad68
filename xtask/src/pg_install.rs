//! The PostgreSQL installations on this machine: where they are, which version each one is,
//! and which one a command uses, chosen by rules a user can predict (MIGRATIONS.md).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};
use xshell::cmd;

use crate::{context::Ctx, process::output};

/// One directory of PostgreSQL programs, with the version its programs report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub bin: PathBuf,
    /// As the programs print it, e.g. `16.2`.
    pub version: String,
    pub major: u32,
}

/// The server binaries a local cluster uses, and why these.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub install: Install,
    pub reason: String,
}

const WHERE_WE_LOOK: &str = "PG_BIN, pg_config --bindir, /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, Homebrew's postgresql@*, Postgres.app and PATH";

/// Versioned places, as (directory to list, prefix of entries that carry a major version,
/// path of the bin directory below an entry).
const VERSIONED: [(&str, &str, &str); 6] = [
    ("/usr/lib/postgresql", "", "bin"),
    ("/usr", "pgsql-", "bin"),
    ("/opt/homebrew/opt", "postgresql@", "bin"),
    ("/usr/local/opt", "postgresql@", "bin"),
    ("/Applications/Postgres.app/Contents/Versions", "", "bin"),
    ("/opt/homebrew/opt", "libpq", "bin"),
];

/// The server binaries: `PG_BIN` when set, else the highest major found in the usual places.
pub fn choose_server(ctx: &Ctx) -> Result<Chosen> {
    if let Some(dir) = pg_bin(ctx) {
        let Some(install) = probe(ctx, &dir, "pg_ctl").filter(|i| has_server(&i.bin)) else {
            bail!(
                "PG_BIN={} holds no initdb and pg_ctl that run: point it at a PostgreSQL bin directory",
                dir.display()
            );
        };
        return Ok(Chosen {
            install,
            reason: "chosen by PG_BIN".into(),
        });
    }
    let found: Vec<Install> = installs_with(ctx, "pg_ctl")
        .into_iter()
        .filter(|i| has_server(&i.bin))
        .collect();
    let Some(best) = found.iter().max_by_key(|i| i.major).cloned() else {
        bail!("no PostgreSQL server binaries found (looked at {WHERE_WE_LOOK})");
    };
    let others: Vec<String> = found
        .iter()
        .filter(|i| i.major != best.major)
        .map(|i| format!("{} in {}", i.version, i.bin.display()))
        .collect();
    let reason = if others.is_empty() {
        "the only version found; set PG_BIN to choose another".to_owned()
    } else {
        format!(
            "the highest version found, over {}; set PG_BIN to choose another",
            others.join(", ")
        )
    };
    Ok(Chosen {
        install: best,
        reason,
    })
}

/// A client program (`pg_dump`) of exactly `major`, as a dump must come from the server's own
/// major: `PG_BIN` first, then the usual places.
pub fn client_of_major(ctx: &Ctx, program: &str, major: u32) -> Result<PathBuf> {
    let explicit = pg_bin(ctx).and_then(|dir| probe(ctx, &dir, program));
    let found = explicit
        .into_iter()
        .chain(installs_with(ctx, program))
        .find(|i| i.major == major);
    match found {
        Some(install) => Ok(install.bin.join(program)),
        None => bail!(
            "the server is PostgreSQL {major}, and {program} must be version {major} too, but none was found (looked at {WHERE_WE_LOOK}): install it (apt install postgresql-client-{major}, brew install postgresql@{major}) or set PG_BIN to its bin directory"
        ),
    }
}

/// The major version in an image tag such as `postgres:16-alpine`, if it has one.
pub fn image_major(image: &str) -> Option<u32> {
    let tag = image.rsplit_once(':')?.1;
    let digits: String = tag.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The major version of the cluster in `data`, from its `PG_VERSION`.
pub fn cluster_major(data: &Path) -> Option<u32> {
    fs::read_to_string(data.join("PG_VERSION"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn pg_bin(ctx: &Ctx) -> Option<PathBuf> {
    ctx.cfg
        .lookup
        .value("PG_BIN")
        .map(|dir| ctx.cfg.root.join(dir))
}

fn has_server(bin: &Path) -> bool {
    crate::process::is_executable(&bin.join("initdb"))
        && crate::process::is_executable(&bin.join("pg_ctl"))
}

/// Every candidate directory holding `program`, with its version, in order of preference
/// for a tie: pg_config's, the versioned places, then PATH.
fn installs_with(ctx: &Ctx, program: &str) -> Vec<Install> {
    let mut seen = Vec::new();
    candidate_dirs(ctx)
        .into_iter()
        .filter(|dir| {
            let key = fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            let new = !seen.contains(&key);
            seen.push(key);
            new
        })
        .filter_map(|dir| probe(ctx, &dir, program))
        .collect()
}

fn candidate_dirs(ctx: &Ctx) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(pg_config) = which::which("pg_config")
        && let Ok(out) = output(cmd!(ctx.sh, "{pg_config} --bindir"))
        && out.status.success()
    {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    for (parent, prefix, below) in VERSIONED {
        let mut versioned: Vec<PathBuf> = fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(prefix))
            .map(|entry| entry.path().join(below))
            .collect();
        versioned.sort();
        dirs.extend(versioned);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

/// `dir` as an installation, if `dir/program --version` runs and names a version.
fn probe(ctx: &Ctx, dir: &Path, program: &str) -> Option<Install> {
    let exe = dir.join(program);
    if !crate::process::is_executable(&exe) {
        return None;
    }
    let out = output(cmd!(ctx.sh, "{exe} --version")).ok()?;
    let (version, major) = parse_version(&String::from_utf8_lossy(&out.stdout))?;
    Some(Install {
        bin: dir.to_owned(),
        version,
        major,
    })
}

/// Reads `pg_ctl (PostgreSQL) 16.2` or `pg_dump (PostgreSQL) 18.6 (Debian 18.6-1)`.
fn parse_version(text: &str) -> Option<(String, u32)> {
    let word = text
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let version: String = word
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let version = version.trim_end_matches('.');
    let major = version.split('.').next()?.parse().ok()?;
    Some((version.to_owned(), major))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_image_tags_parse() {
        assert_eq!(
            parse_version("pg_ctl (PostgreSQL) 16.2\n"),
            Some(("16.2".into(), 16))
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(("15.18".into(), 15))
        );
        assert_eq!(
            parse_version("pg_ctl (PostgreSQL) 18beta1"),
            Some(("18".into(), 18))
        );
        assert_eq!(parse_version("nothing here"), None);
        assert_eq!(image_major("postgres:16-alpine"), Some(16));
        assert_eq!(image_major("localhost:5000/postgres-standin:18"), Some(18));
        assert_eq!(image_major("postgres:latest"), None);
        assert_eq!(image_major("postgres"), None);
    }
}
