//! `Ctx`: the shell and the configuration that every command and backend works with.

use xshell::Shell;

use crate::config::Config;

/// The shell and configuration every command works with.
pub struct Ctx {
    pub sh: Shell,
    pub cfg: Config,
}
