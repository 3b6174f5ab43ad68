//! Where a local cluster's directory lives and how it gets there: built in a marked staging
//! directory and then put in place, and never used or deleted unless it carries our marker.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use crate::{
    private_dir::{self, Owner},
    ui,
};

/// Where a fresh cluster is built before it is renamed into place, so that an interrupted
/// `initdb` never leaves a half-made cluster where the real one belongs.
const STAGING_PREFIX: &str = ".xtask-new-cluster-";

/// The test cluster's directories; a new one is made, never an old name reused.
const PRIVATE_PREFIX: &str = "xtask-test-";

pub enum Place {
    /// The developer's cluster, at a fixed place in the state directory.
    Fixed(PathBuf),
    /// The test cluster: a private directory with an unpredictable name in `parent` (RAM where
    /// /dev/shm exists), found again through the `pointer` file in the state directory.
    Private { parent: PathBuf, pointer: PathBuf },
}

impl Place {
    /// Where the cluster lives, for messages; the test cluster's directory is made on first start.
    pub fn describe(&self) -> String {
        match self {
            Place::Fixed(dir) => dir.display().to_string(),
            Place::Private { parent, .. } => format!("a private directory in {}", parent.display()),
        }
    }

    pub fn is_private(&self) -> bool {
        matches!(self, Place::Private { .. })
    }

    /// The cluster's directory if it exists; a test-cluster directory that fails the private
    /// directory checks for `owner` is ignored (and left alone), so that a new one is made.
    pub fn existing_home(&self, owner: Owner) -> Result<Option<PathBuf>> {
        match self {
            Place::Fixed(dir) => Ok(dir.symlink_metadata().is_ok().then(|| dir.clone())),
            Place::Private { pointer, .. } => {
                let Ok(text) = fs::read_to_string(pointer) else {
                    return Ok(None);
                };
                let dir = PathBuf::from(text.trim());
                if dir.symlink_metadata().is_err() {
                    return Ok(None);
                }
                match private_dir::verify(&dir, owner) {
                    Ok(()) => Ok(Some(dir)),
                    Err(why) => {
                        ui::warn(format!(
                            "not using {} for the test cluster ({why}); making a new private one",
                            dir.display()
                        ));
                        Ok(None)
                    }
                }
            }
        }
    }

    /// The existing directory, once proven ours and holding a cluster; `None` when a new one
    /// must be built. A test-cluster directory whose `initdb` was interrupted is deleted.
    pub fn reusable_home(&self, owner: Owner) -> Result<Option<PathBuf>> {
        let Some(home) = self.existing_home(owner)? else {
            return Ok(None);
        };
        if self.is_private() && !home.join("pgdata/PG_VERSION").is_file() {
            // Ours (it passed the private-directory checks), but its initdb was interrupted.
            fs::remove_dir_all(&home)
                .with_context(|| format!("cannot delete {}", home.display()))?;
            return Ok(None);
        }
        check_ours(&home)?;
        Ok(Some(home))
    }

    /// Runs `init` in a new private directory for `owner`, then puts that directory in place.
    pub fn build(&self, owner: Owner, init: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
        let (parent, prefix) = match self {
            Place::Fixed(dir) => (
                dir.parent()
                    .context("the cluster directory has no parent")?,
                STAGING_PREFIX,
            ),
            Place::Private { parent, .. } => (parent.as_path(), PRIVATE_PREFIX),
        };
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        if matches!(self, Place::Fixed(_)) {
            remove_abandoned_builds(parent)?;
        }
        let staging = private_dir::create(parent, prefix, owner)?;
        if let Place::Private { pointer, .. } = self {
            // Recorded first, so that an interrupted build is found, proven ours and replaced.
            write_atomically(pointer, &format!("{}\n", staging.display()))?;
        }
        if let Err(error) = init(&staging) {
            let _ = fs::remove_dir_all(&staging);
            return Err(error);
        }
        match self {
            Place::Fixed(dir) => {
                fs::rename(&staging, dir)
                    .with_context(|| format!("cannot move the new cluster to {}", dir.display()))?;
                Ok(dir.clone())
            }
            Place::Private { .. } => Ok(staging),
        }
    }

    /// Deletes `home`, which the caller has proven ours with [`check_ours`], and forgets it.
    pub fn remove(&self, home: &Path) -> Result<()> {
        fs::remove_dir_all(home).with_context(|| format!("cannot delete {}", home.display()))?;
        if let Place::Private { pointer, .. } = self {
            let _ = fs::remove_file(pointer);
        }
        Ok(())
    }
}

/// Refuses a directory that xtask did not make: it must carry our marker and hold a cluster.
pub fn check_ours(home: &Path) -> Result<()> {
    if !private_dir::is_marked(home) || !home.join("pgdata/PG_VERSION").is_file() {
        bail!(
            "{} is not a PostgreSQL cluster made by xtask (it lacks the {} marker or pgdata/PG_VERSION), so xtask will not use or delete it: move it away, or set DB_STATE_DIR to another directory",
            home.display(),
            private_dir::MARKER
        );
    }
    Ok(())
}

/// Removes staging directories left by an interrupted build; only marked ones, which we made.
/// The caller holds the cluster's lock, so no build is in progress.
fn remove_abandoned_builds(parent: &Path) -> Result<()> {
    for entry in
        fs::read_dir(parent).with_context(|| format!("cannot list {}", parent.display()))?
    {
        let path = entry?.path();
        let is_staging = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(STAGING_PREFIX));
        if is_staging && private_dir::is_marked(&path) {
            fs::remove_dir_all(&path)
                .with_context(|| format!("cannot delete the abandoned {}", path.display()))?;
        }
    }
    Ok(())
}

/// Replaces `path` in one step, so that a reader never sees half of it.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("new");
    fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    #[test]
    fn a_planted_test_cluster_directory_is_never_adopted_or_changed() {
        let state = tempfile::tempdir().unwrap();
        let shared = tempfile::tempdir().unwrap();
        let place = Place::Private {
            parent: shared.path().to_owned(),
            pointer: state.path().join("test-cluster"),
        };
        let me = Owner::current();
        let point_at = |dir: &Path| {
            fs::write(state.path().join("test-cluster"), dir.display().to_string()).unwrap()
        };

        let ours = private_dir::create(shared.path(), PRIVATE_PREFIX, me).unwrap();
        point_at(&ours);
        assert_eq!(place.existing_home(me).unwrap(), Some(ours.clone()));

        let link = shared.path().join("planted-link");
        symlink(&ours, &link).unwrap();
        point_at(&link);
        assert_eq!(place.existing_home(me).unwrap(), None);

        let open = shared.path().join("planted-open");
        fs::create_dir(&open).unwrap();
        private_dir::mark(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        point_at(&open);
        assert_eq!(place.existing_home(me).unwrap(), None);
        let mode = fs::metadata(&open).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777, "a planted directory was changed");
    }
}
