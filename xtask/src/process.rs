//! Child processes that talk to the user directly: their output streams through, and a failure keeps its exit code.

use std::{fmt, process::ExitCode};

use anyhow::{Context, Result};

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
