//! Helpers shared by the mount tests: a fresh mount in a temporary directory (or a skip, saying
//! why, where FUSE is unavailable), and the sync calls the tests make.

// Each test binary compiles this module and uses only its part of it.
#![allow(dead_code)]

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use powercut_fs::Mount;
use tempfile::TempDir;

/// A mount on a temporary directory; the mount is dropped (unmounted) before the directory.
pub struct TestMount {
    pub mount: Mount,
    dir: TempDir,
}

impl TestMount {
    /// `name` under the mount point.
    pub fn path(&self, name: &str) -> PathBuf {
        self.mount.path().join(name)
    }

    /// The directory the mount point is in.
    pub fn outside(&self) -> &Path {
        self.dir.path()
    }
}

/// A fresh mount, or `None` (after saying why on stderr) where `/dev/fuse` cannot be opened.
pub fn mount_or_skip(test: &str) -> Option<TestMount> {
    if let Some(reason) = powercut_fs::fuse_unavailable() {
        eprintln!("skipping {test}: {reason}");
        return None;
    }
    let dir = TempDir::new().expect("temporary directory");
    let point = dir.path().join("mnt");
    std::fs::create_dir(&point).expect("create the mount point");
    let mount = Mount::new(&point).expect("mount powercut-fs");
    Some(TestMount { mount, dir })
}

/// fsync of the directory at `path`, as a program makes a create, rename or delete durable.
pub fn sync_dir(path: &Path) {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .unwrap_or_else(|error| panic!("fsync directory {}: {error}", path.display()));
}

/// Whether `path` is a mount point (another device than the directory above it).
pub fn is_mount_point(path: &Path) -> bool {
    let parent = path.parent().expect("a mount point has a parent");
    let (Ok(here), Ok(above)) = (std::fs::metadata(path), std::fs::metadata(parent)) else {
        return false;
    };
    here.dev() != above.dev()
}

/// The names in directory `path`, sorted.
pub fn names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .expect("read the directory")
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
