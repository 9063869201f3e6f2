//! A mounted volume: [`Mount`] mounts a fresh, empty volume at a directory, cuts its power on
//! demand, reports the memory it holds, and unmounts it when dropped, also while its owner
//! unwinds from a panic.
//!
//! As root the mount is made by Debian's `fusermount3` with `auto_unmount`: `fusermount3` stays
//! behind, holding one end of a socket, and when the other end closes, which the kernel does when
//! this process exits however it exits (a `SIGKILL` or an abort included), it unmounts the then
//! dead filesystem. So no dead mount is left behind for a later run to trip over. An orderly
//! unmount (drop) detaches the mount itself. Unprivileged users cannot ask for
//! `auto_unmount` without `user_allow_other` in `/etc/fuse.conf`; their mounts are removed on
//! drop only.
//!
//! The cut happens in the process that owns the mount, without unmounting: programs started in
//! other mount namespaces (`ip netns exec` makes one) keep seeing the same mount across cuts.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};
use parking_lot::Mutex;

use crate::filesystem::PowercutFilesystem;
use crate::volume::{CutReport, Usage, Volume};

/// How long unmounting waits for the kernel to let go of the mount and for the session to end.
const UNMOUNT_DEADLINE: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// What can go wrong mounting or unmounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// `/dev/fuse` cannot be used here (no FUSE module, or not allowed to this user).
    #[error("FUSE is unavailable: {0}")]
    Unavailable(String),
    /// `fusermount3` is not on `PATH`.
    #[error("fusermount3 is not installed (Debian package fuse3)")]
    NoFusermount,
    #[error("cannot mount powercut-fs at {path}: {source}")]
    Mount { path: PathBuf, source: io::Error },
    #[error("cannot unmount {path}: {source}")]
    Unmount { path: PathBuf, source: io::Error },
    /// The kernel still had the filesystem mounted at the deadline (something still has files
    /// open in it, or its directory as working directory).
    #[error("{path} was still mounted {UNMOUNT_DEADLINE:?} after unmounting it")]
    StillMounted { path: PathBuf },
}

/// Why FUSE cannot be used here, if it cannot: the reason tests print when they skip.
pub fn fuse_unavailable() -> Option<String> {
    match OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => None,
        Err(error) => Some(format!("/dev/fuse cannot be opened: {error}")),
    }
}

fn fusermount_installed() -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| dir.join("fusermount3").is_file())
}

/// A powercut filesystem mounted at a directory. `Send + Sync`: share it (in an `Arc`) with
/// whatever cuts its power.
#[derive(Debug)]
pub struct Mount {
    path: PathBuf,
    volume: Arc<Mutex<Volume>>,
    /// Unmounts; taken by the first unmount.
    unmounter: Option<SessionUnmounter>,
    /// The thread serving the kernel's requests; it ends once the kernel has let go of the
    /// mount (or is left to end then, if that takes past the deadline).
    session: Option<JoinHandle<io::Result<()>>>,
    /// The device number the mount shows at `path`: gone from there once it is unmounted.
    device: u64,
}

impl Mount {
    /// Mounts a fresh, empty volume at directory `path`, which must exist. Its root belongs to
    /// this process's user and is durable from the start.
    pub fn new(path: impl AsRef<Path>) -> Result<Self, MountError> {
        if let Some(reason) = fuse_unavailable() {
            return Err(MountError::Unavailable(reason));
        }
        if !fusermount_installed() {
            return Err(MountError::NoFusermount);
        }
        // Absolute, so that unmounting finds it whatever the working directory is by then.
        let path = path
            .as_ref()
            .canonicalize()
            .map_err(|source| MountError::Mount {
                path: path.as_ref().to_path_buf(),
                source,
            })?;
        let mount_error = |source| MountError::Mount {
            path: path.clone(),
            source,
        };
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let volume = Arc::new(Mutex::new(Volume::new(uid, gid)));
        let filesystem = PowercutFilesystem::new(Arc::clone(&volume));
        let mut session =
            Session::new(filesystem, &path, &session_config(uid)).map_err(mount_error)?;
        let unmounter = session.unmount_callable();
        let serving = std::thread::Builder::new()
            .name("powercut-fs".into())
            .spawn(move || session.run())
            .map_err(mount_error)?;
        let mut mount = Self {
            path,
            volume,
            unmounter: Some(unmounter),
            session: Some(serving),
            device: 0,
        };
        // Served by the thread just started: the first answer from the new filesystem.
        match std::fs::metadata(&mount.path) {
            Ok(metadata) => mount.device = metadata.dev(),
            Err(source) => {
                let path = mount.path.clone();
                drop(mount);
                return Err(MountError::Mount { path, source });
            }
        }
        tracing::debug!(path = %mount.path.display(), "powercut-fs mounted");
        Ok(mount)
    }

    /// The directory the volume is mounted at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Cuts the power: everything not synced is gone, for good, and handles opened before answer
    /// `EIO`. The processes using the mount must be dead (reaped) first: the caller makes sure.
    pub fn cut(&self) -> CutReport {
        let report = self.volume.lock().cut();
        tracing::debug!(path = %self.path.display(), ?report, "powercut-fs cut");
        report
    }

    /// The bytes of file data held, live and durable, and what they cost in memory.
    pub fn usage(&self) -> Usage {
        self.volume.lock().usage()
    }

    /// Unmounts now, reporting what went wrong (dropping the mount does the same, quietly).
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), MountError> {
        let Some(mut unmounter) = self.unmounter.take() else {
            return Ok(());
        };
        // `fusermount3 -o auto_unmount` unmounts only once the filesystem is dead (ENOTCONN), so
        // closing its socket while the session lives unmounts nothing: detach the mount here.
        // Lazily, so that a file still open in it does not keep it at its place.
        if let Err(error) = detach(&self.path) {
            // Not root: fuser asks `fusermount3 -u -z`.
            tracing::debug!(%error, "umount2 refused; unmounting through fusermount3");
        }
        // Closes the socket (or, for an unprivileged mount, unmounts through `fusermount3`).
        unmounter.unmount().map_err(|source| MountError::Unmount {
            path: self.path.clone(),
            source,
        })?;
        let deadline = Instant::now() + UNMOUNT_DEADLINE;
        while self.still_mounted() {
            if Instant::now() >= deadline {
                return Err(MountError::StillMounted {
                    path: self.path.clone(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        if let Some(session) = self.session.take() {
            while !session.is_finished() && Instant::now() < deadline {
                std::thread::sleep(POLL_INTERVAL);
            }
            if session.is_finished() {
                match session.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "the powercut-fs session failed"),
                    Err(_) => tracing::warn!("the powercut-fs session panicked"),
                }
            } else {
                // A process still has a file open on the detached mount: it keeps being
                // served until it lets go, and the thread ends then.
                tracing::warn!(
                    path = %self.path.display(),
                    "powercut-fs unmounted, but files are still open in it"
                );
            }
        }
        Ok(())
    }

    /// Whether `path` still shows this mount. A dead connection (`ENOTCONN`) counts as mounted.
    fn still_mounted(&self) -> bool {
        std::fs::metadata(&self.path).map_or(true, |metadata| metadata.dev() == self.device)
    }
}

// The chaos run shares one mount between the nemesis that cuts it and the memory check.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<Mount>();
};

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(error) = self.shut_down() {
            tracing::warn!(%error, "powercut-fs did not unmount cleanly");
        }
    }
}

/// `umount2(path, MNT_DETACH)`: needs root.
fn detach(path: &Path) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    // SAFETY: a NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn session_config(uid: u32) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("powercut-fs".into()),
        MountOption::Subtype("powercut-fs".into()),
        // The kernel checks permissions from the attributes the volume gives.
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    if uid == 0 {
        config.mount_options.push(MountOption::AutoUnmount);
        // auto_unmount needs allow_other (fuser's "root and owner": here both are root).
        config.acl = SessionACL::RootAndOwner;
    }
    // Every request takes the volume's one lock: more threads would only wait on it.
    config.n_threads = Some(1);
    config
}
