//! One lifecycle step at a time per cluster: an OS file lock in the state directory, which the
//! OS releases when the holder exits, however it exits.

use std::{
    fs::{self, File, OpenOptions},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use anyhow::{Context, Result};
use fs4::{FileExt, TryLockError};

use crate::ui;

/// Held while a cluster is created, started, stopped or deleted; dropping it unlocks.
pub struct StateLock {
    _file: File,
}

/// Takes the exclusive lock at `path`, waiting (and saying so) while another process holds it.
pub fn acquire(path: &Path, what: &str) -> Result<StateLock> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            ui::info(format!(
                "waiting for another `cargo xtask` to finish with the {what}"
            ));
            FileExt::lock(&file).with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    Ok(StateLock { _file: file })
}
