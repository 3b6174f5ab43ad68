//! `Ctx`: the shell and the configuration that every command and backend works with.

use std::path::Path;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::config::Config;

/// The shell and configuration every command works with.
pub struct Ctx {
    pub sh: Shell,
    pub cfg: Config,
}

/// A shell whose commands run in `root`.
pub fn shell(root: &Path) -> Result<Shell> {
    let sh = Shell::new().context("cannot set up the shell")?;
    sh.change_dir(root);
    Ok(sh)
}
