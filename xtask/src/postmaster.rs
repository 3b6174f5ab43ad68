//! `postmaster.pid`: what it says about a running server, and proof that the process it names
//! is the postmaster of our data directory before anything signals it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use crate::ui;

/// A running server, as its `postmaster.pid` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postmaster {
    pub pid: u32,
    /// The TCP port it listens on.
    pub port: u16,
    /// The first directory holding its Unix socket, if it has one.
    pub socket_dir: Option<PathBuf>,
}

/// The postmaster running on `data`, or `None`. A `postmaster.pid` whose process is not a
/// postmaster of `data` (after a crash or a reboot the PID may belong to anything) is stale:
/// it is removed, so that nothing signals that process and the next start is not blocked.
/// Call it while holding the cluster's lock.
pub fn running(data: &Path) -> Result<Option<Postmaster>> {
    let pid_file = data.join("postmaster.pid");
    let Ok(text) = fs::read_to_string(&pid_file) else {
        return Ok(None);
    };
    let parsed = parse(&text);
    if let Some(postmaster) = &parsed
        && is_postmaster_of(postmaster.pid, data)
    {
        return Ok(parsed);
    }
    fs::remove_file(&pid_file)
        .with_context(|| format!("cannot remove the stale {}", pid_file.display()))?;
    let pid = parsed.map_or_else(|| "?".to_owned(), |p| p.pid.to_string());
    ui::warn(format!(
        "removed a stale postmaster.pid (process {pid} is not this cluster's server)"
    ));
    Ok(None)
}

/// Reads the lines PostgreSQL writes: PID, data directory, start time, port, socket directory.
fn parse(text: &str) -> Option<Postmaster> {
    let lines: Vec<&str> = text.lines().collect();
    let pid = lines.first()?.trim().parse().ok().filter(|pid| *pid > 0)?;
    let port = lines
        .get(3)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let socket_dir = lines
        .get(4)
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(PathBuf::from);
    Some(Postmaster {
        pid,
        port,
        socket_dir,
    })
}

/// True when `pid` runs `postgres` (or `postmaster`) with `data` as its data directory. Its
/// command line is `postgres -D <data> …`, as pg_ctl starts it; a backend's retitled command
/// line, or any other program, does not match.
fn is_postmaster_of(pid: u32, data: &Path) -> bool {
    let Some(args) = command_line(pid) else {
        return false;
    };
    let program_is_postgres = args.first().is_some_and(|program| {
        Path::new(program)
            .file_name()
            .is_some_and(|name| name == "postgres" || name == "postmaster")
    });
    let data = data.as_os_str().to_string_lossy();
    program_is_postgres
        && args.windows(2).any(|pair| {
            pair[0] == "-D" && pair[1].trim_end_matches('/') == data.trim_end_matches('/')
        })
}

/// The process's arguments: from /proc where it exists, else from `ps` (macOS), split on spaces.
fn command_line(pid: u32) -> Option<Vec<String>> {
    if Path::new("/proc/self").exists() {
        let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        return Some(
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        );
    }
    let out = Command::new("ps")
        .args(["-o", "command=", "-p", &pid.to_string()])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_postgres_writes() {
        let text = "5760\n/tmp/d\n1796222075\n55449\n/tmp/s\n127.0.0.1\n 10010840 4\nready   \n";
        assert_eq!(
            parse(text),
            Some(Postmaster {
                pid: 5760,
                port: 55449,
                socket_dir: Some("/tmp/s".into())
            })
        );
        assert_eq!(parse("garbage\n"), None);
        assert_eq!(parse("0\n"), None);
    }

    #[test]
    fn an_unrelated_process_is_not_a_postmaster() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_postmaster_of(std::process::id(), dir.path()));
        assert!(!is_postmaster_of(u32::MAX, dir.path()));
    }
}
