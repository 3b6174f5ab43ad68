//! Directories that only we can enter: made fresh under an unpredictable name, marked as ours,
//! and checked with `lstat` before every reuse, so that nobody can plant one for us to adopt.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt, chown},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

/// The file that says "xtask made this directory"; nothing without it is ever deleted.
pub const MARKER: &str = ".xtask-owned";
const MARKER_TEXT: &str =
    "Made by `cargo xtask`, which may delete this directory (`cargo xtask db-down --volumes`).\n";

/// Who must own a private directory: the user the server runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    /// The user running xtask.
    pub fn current() -> Owner {
        Owner {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }
}

/// Makes a new directory `parent/<prefix><random>`, mode 0700, marks it, and hands it to `owner`.
/// Only a directory made here is ever chowned.
pub fn create(parent: &Path, prefix: &str, owner: Owner) -> Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a private directory in {}", parent.display()))?
        .keep();
    mark(&dir)?;
    if owner != Owner::current() {
        chown(&dir, Some(owner.uid), Some(owner.gid))
            .with_context(|| format!("cannot hand {} to uid {}", dir.display(), owner.uid))?;
    }
    Ok(dir)
}

/// Writes the marker into a directory that we have just made.
pub fn mark(dir: &Path) -> Result<()> {
    fs::write(dir.join(MARKER), MARKER_TEXT)
        .with_context(|| format!("cannot write {}", dir.join(MARKER).display()))
}

pub fn is_marked(dir: &Path) -> bool {
    dir.join(MARKER)
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_file())
}

/// Checks, without following links, that `dir` is a real directory owned by `owner`, entered by
/// nobody else (mode 0700), and marked as ours. The error says which test failed.
pub fn verify(dir: &Path, owner: Owner) -> Result<(), String> {
    let meta = dir
        .symlink_metadata()
        .map_err(|e| format!("cannot inspect it: {e}"))?;
    if meta.file_type().is_symlink() {
        return Err("it is a symbolic link".into());
    }
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    if meta.uid() != owner.uid {
        return Err(format!(
            "it belongs to uid {}, not {}",
            meta.uid(),
            owner.uid
        ));
    }
    if meta.mode() & 0o777 != 0o700 {
        return Err(format!("its mode is {:o}, not 700", meta.mode() & 0o777));
    }
    if !is_marked(dir) {
        return Err(format!("it has no {MARKER} marker"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn a_made_directory_passes_and_planted_ones_fail() {
        let parent = tempfile::tempdir().unwrap();
        let me = Owner::current();
        let made = create(parent.path(), "p-", me).unwrap();
        assert_eq!(verify(&made, me), Ok(()));

        let link = parent.path().join("link");
        symlink(&made, &link).unwrap();
        assert_eq!(verify(&link, me), Err("it is a symbolic link".into()));

        let open = parent.path().join("open");
        fs::create_dir(&open).unwrap();
        mark(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(verify(&open, me), Err("its mode is 755, not 700".into()));

        let unmarked = parent.path().join("unmarked");
        fs::create_dir(&unmarked).unwrap();
        fs::set_permissions(&unmarked, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(verify(&unmarked, me).unwrap_err().contains("marker"));

        let other = Owner {
            uid: me.uid + 1,
            gid: me.gid,
        };
        assert!(verify(&made, other).unwrap_err().contains("belongs to uid"));
    }
}
