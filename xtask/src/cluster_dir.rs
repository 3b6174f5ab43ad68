//! Where a local cluster's directories live and how they get there: built in a marked staging
//! directory and then put in place, and never used or deleted unless it carries our marker;
//! its server's socket in a private directory of its own; and, when xtask runs as root, the
//! unprivileged user who owns them and runs the server.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use xshell::cmd;

use crate::{
    context::Ctx,
    pg_install::{self, Install},
    postmaster,
    private_dir::{self, Owner},
    process::output,
    ui,
};

/// Where a fresh cluster is built before it is renamed into place, so that an interrupted
/// `initdb` never leaves a half-made cluster where the real one belongs.
const STAGING_PREFIX: &str = ".xtask-new-cluster-";

/// The test cluster's directories; a new one is made, never an old name reused.
const PRIVATE_PREFIX: &str = "xtask-test-";

/// Short, private socket directories: a project path can be too long for a socket path.
const SOCKET_PARENT: &str = "/tmp";
const SOCKET_PREFIX: &str = "xtask-pg-";

pub enum Place {
    /// The developer's cluster, at a fixed place in the state directory.
    Fixed(PathBuf),
    /// The test cluster: a private directory with an unpredictable name in `parent` (RAM where
    /// /dev/shm exists), found again through the `pointer` file in the state directory.
    Private { parent: PathBuf, pointer: PathBuf },
}

impl Place {
    /// The developer's cluster: `local` in the state directory.
    pub fn developer(state_dir: &Path) -> Place {
        Place::Fixed(state_dir.join("local"))
    }

    /// The test cluster: in RAM where `/dev/shm` exists, else in the state directory.
    pub fn for_tests(state_dir: &Path) -> Place {
        let shm = Path::new("/dev/shm");
        let parent = if shm.is_dir() { shm } else { state_dir };
        Place::Private {
            parent: parent.to_owned(),
            pointer: state_dir.join("test-cluster"),
        }
    }

    /// Whether anything stands where the cluster's directory (or the test cluster's pointer)
    /// would be. A look that proves nothing, for deciding whether there is anything to stop.
    pub fn is_occupied(&self) -> bool {
        let spot = match self {
            Place::Fixed(dir) => dir,
            Place::Private { pointer, .. } => pointer,
        };
        spot.symlink_metadata().is_ok()
    }

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

    /// Whether the cluster in `home` (proven ours) was made by `install`'s major. A test
    /// cluster of another major is disposable: unless it runs, it is deleted, to be made again.
    /// The developer's cluster is refused, saying what to do.
    pub fn fits(&self, home: &Path, install: &Install, label: &str) -> Result<bool> {
        let data = home.join("pgdata");
        let Some(major) = pg_install::cluster_major(&data) else {
            return Ok(true);
        };
        if major == install.major {
            return Ok(true);
        }
        if self.is_private() && postmaster::running(&data)?.is_none() {
            ui::info(format!(
                "the {label} was made by PostgreSQL {major}; making it again with {}",
                install.version
            ));
            fs::remove_dir_all(home)
                .with_context(|| format!("cannot delete {}", home.display()))?;
            return Ok(false);
        }
        bail!(
            "the {label} in {} was made by PostgreSQL {major}, but the binaries are {} ({}): set PG_BIN to a PostgreSQL {major} bin directory, or stop it and delete its data with `cargo xtask db-down --volumes`",
            home.display(),
            install.version,
            install.bin.display()
        );
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

/// Whether a developer's or test cluster may exist in `state_dir`: a look that proves nothing
/// and needs no binaries, for deciding whether there is anything to stop.
pub fn any_in(state_dir: &Path) -> bool {
    [Place::developer(state_dir), Place::for_tests(state_dir)]
        .iter()
        .any(Place::is_occupied)
}

/// The unprivileged user who owns the cluster's directories and runs its server when xtask
/// runs as root (initdb refuses root).
#[derive(Debug, Clone)]
pub struct ServerUser {
    pub name: String,
    pub owner: Owner,
}

/// `DB_LOCAL_USER` (default `postgres`) when xtask runs as root; `None` otherwise.
pub fn server_user(ctx: &Ctx) -> Result<Option<ServerUser>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let name = ctx
        .cfg
        .lookup
        .value("DB_LOCAL_USER")
        .unwrap_or_else(|| "postgres".to_owned());
    let id = |flag: &str| -> Option<u32> {
        let out = output(cmd!(ctx.sh, "id {flag} {name}")).ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) if uid != 0 => {
            if which::which("runuser").is_err() {
                bail!(
                    "running as root needs runuser (util-linux) to start the server as {name}: install util-linux, or run as a normal user"
                );
            }
            let owner = Owner { uid, gid };
            Ok(Some(ServerUser { name, owner }))
        }
        _ => bail!(
            "running as root, and initdb refuses root, but there is no unprivileged user {name:?} to run the server: create one (useradd --system {name}), set DB_LOCAL_USER, or run as a normal user"
        ),
    }
}

/// The system identifier in the cluster's `pg_control`, which its server reports through
/// `pg_control_system()`: what proves that a server is this cluster's. `None` when unreadable.
pub fn system_identifier(home: &Path) -> Option<u64> {
    let control = fs::read(home.join("pgdata/global/pg_control")).ok()?;
    Some(u64::from_ne_bytes(control.get(..8)?.try_into().ok()?))
}

/// A new private directory for a server's Unix socket, which only `owner` can enter.
pub fn new_socket_dir(owner: Owner) -> Result<PathBuf> {
    private_dir::create(Path::new(SOCKET_PARENT), SOCKET_PREFIX, owner)
}

/// Deletes a socket directory after its server stopped, if it is provably one of ours.
pub fn remove_socket_dir(dir: &Path, owner: Owner) {
    let ours = dir.parent() == Some(Path::new(SOCKET_PARENT))
        && dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(SOCKET_PREFIX))
        && private_dir::verify(dir, owner).is_ok();
    if ours {
        let _ = fs::remove_dir_all(dir);
    }
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
    fn a_place_is_occupied_once_its_directory_or_pointer_exists() {
        let state = tempfile::tempdir().unwrap();
        let developer = Place::developer(state.path());
        let tests = Place::for_tests(state.path());
        assert!(!developer.is_occupied() && !tests.is_occupied());
        fs::create_dir(state.path().join("local")).unwrap();
        fs::write(state.path().join("test-cluster"), "/nowhere\n").unwrap();
        assert!(developer.is_occupied() && tests.is_occupied());
    }

    #[test]
    fn the_system_identifier_is_read_from_pg_control() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(system_identifier(home.path()), None);
        fs::create_dir_all(home.path().join("pgdata/global")).unwrap();
        let control = home.path().join("pgdata/global/pg_control");
        fs::write(&control, [1, 2, 3]).unwrap();
        assert_eq!(system_identifier(home.path()), None, "too short");
        let id: u64 = 7_301_234_567_890_123_456;
        fs::write(&control, [&id.to_ne_bytes()[..], &[0; 8]].concat()).unwrap();
        assert_eq!(system_identifier(home.path()), Some(id));
    }

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
