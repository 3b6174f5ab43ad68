//! Child processes that talk to the user directly: their output streams through, and a failure keeps its exit code.

use std::{
    fmt,
    io::{BufRead, BufReader, Write},
    process::{ExitCode, Stdio},
};

use anyhow::{Context, Result};
use std::{os::unix::fs::PermissionsExt, path::Path};

use crate::{config::redact_log_line, ui};

/// A child process that failed after printing its own one-line error; xtask adds nothing but the exit code.
#[derive(Debug)]
pub struct ChildFailed(pub u8);

impl fmt::Display for ChildFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exited with status {}", self.0)
    }
}

impl std::error::Error for ChildFailed {}

impl ChildFailed {
    pub fn from_status(status: std::process::ExitStatus) -> ChildFailed {
        ChildFailed(status.code().unwrap_or(1).clamp(1, 255) as u8)
    }

    pub fn exit_code(error: &anyhow::Error) -> Option<ExitCode> {
        error
            .downcast_ref::<ChildFailed>()
            .map(|c| ExitCode::from(c.0))
    }
}

/// Runs `cmd` with inherited stdin, stdout and stderr.
pub fn run_passthrough(cmd: xshell::Cmd<'_>) -> Result<()> {
    let shown = cmd.to_string();
    let status = std::process::Command::from(cmd)
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(ChildFailed::from_status(status).into())
    }
}

/// Runs `cmd` and prints its standard output line by line with passwords masked: a server's
/// log may hold them (see [`redact_log_line`]).
pub fn run_redacted(cmd: xshell::Cmd<'_>) -> Result<()> {
    let shown = cmd.to_string();
    let mut child = std::process::Command::from(cmd)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {shown}"))?;
    let mut reader = BufReader::new(child.stdout.take().context("no output to read")?);
    // Whatever the program, a pipe or NO_COLOR gets no colour codes.
    let colour = ui::stdout_colour();
    let mut stdout = std::io::stdout().lock();
    let mut line = Vec::new();
    while reader
        .read_until(b'\n', &mut line)
        .context("cannot read the log")?
        > 0
    {
        let text = String::from_utf8_lossy(&line);
        let text = if colour {
            text
        } else {
            ui::strip_ansi(&text).into()
        };
        // A closed pipe (`| head`) ends the listing; it is not an error.
        if writeln!(stdout, "{}", redact_log_line(text.trim_end_matches('\n'))).is_err() {
            let _ = child.kill();
            break;
        }
        line.clear();
    }
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for {shown}"))?;
    if status.success() || status.code().is_none() {
        Ok(())
    } else {
        Err(ChildFailed::from_status(status).into())
    }
}

/// Runs a command and returns its output whatever its exit status; `-v` echoes it.
pub fn output(cmd: xshell::Cmd<'_>) -> Result<std::process::Output> {
    let cmd = cmd.ignore_status();
    let cmd = if ui::is_verbose() { cmd } else { cmd.quiet() };
    let text = cmd.to_string();
    cmd.output().with_context(|| format!("cannot run {text}"))
}

pub fn stderr_line(output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    crate::config::redact_text(line)
}

pub fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
