//! Random sequences of file operations, syncs and power cuts through a real mount, checked
//! against a model of what must survive a cut that knows nothing of inodes, blocks or views:
//! each directory's names as of its last fsync, each file's bytes as of its last fsync.
//!
//! Two directories (besides the root) and a few names in each, so that names collide: renames
//! over existing files, renames between directories, names that come back after an unlink.
//! Before every cut the whole tree must read as the model's live state; after it, as the durable
//! one.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{mount_or_skip, sync_dir};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const DIRS: [&str; 3] = ["", "a", "b"];
const NAMES: [&str; 3] = ["x", "y", "z"];
const CASES: u32 = 48;

#[derive(Debug, Clone)]
enum Op {
    /// `open(O_CREAT | O_TRUNC)`: a new file, or an existing one emptied.
    Create {
        dir: usize,
        name: usize,
    },
    Write {
        dir: usize,
        name: usize,
        offset: u64,
        len: usize,
        byte: u8,
    },
    Truncate {
        dir: usize,
        name: usize,
        size: u64,
    },
    Fsync {
        dir: usize,
        name: usize,
        data_only: bool,
    },
    SyncDir {
        dir: usize,
    },
    Rename {
        from_dir: usize,
        from: usize,
        to_dir: usize,
        to: usize,
    },
    Unlink {
        dir: usize,
        name: usize,
    },
    Cut,
}

fn op() -> impl Strategy<Value = Op> {
    let dir = 0..DIRS.len();
    let name = 0..NAMES.len();
    prop_oneof![
        2 => (dir.clone(), name.clone()).prop_map(|(dir, name)| Op::Create { dir, name }),
        4 => (dir.clone(), name.clone(), 0..16_384u64, 1..9_000usize, any::<u8>()).prop_map(
            |(dir, name, offset, len, byte)| Op::Write { dir, name, offset, len, byte }
        ),
        1 => (dir.clone(), name.clone(), 0..20_000u64)
            .prop_map(|(dir, name, size)| Op::Truncate { dir, name, size }),
        3 => (dir.clone(), name.clone(), any::<bool>())
            .prop_map(|(dir, name, data_only)| Op::Fsync { dir, name, data_only }),
        2 => dir.clone().prop_map(|dir| Op::SyncDir { dir }),
        2 => (dir.clone(), name.clone(), dir.clone(), name.clone()).prop_map(
            |(from_dir, from, to_dir, to)| Op::Rename { from_dir, from, to_dir, to }
        ),
        1 => (dir, name).prop_map(|(dir, name)| Op::Unlink { dir, name }),
        1 => Just(Op::Cut),
    ]
}

/// What must be: names per directory (pointing at file identities) and bytes per file, live and
/// durable.
#[derive(Debug, Default)]
struct Model {
    next_file: usize,
    live_names: [BTreeMap<&'static str, usize>; 3],
    durable_names: [BTreeMap<&'static str, usize>; 3],
    live_bytes: HashMap<usize, Vec<u8>>,
    /// Bytes as of the file's last sync; absent for a file never synced (it comes back empty).
    durable_bytes: HashMap<usize, Vec<u8>>,
}

impl Model {
    fn file(&self, dir: usize, name: usize) -> Option<usize> {
        self.live_names[dir].get(NAMES[name]).copied()
    }

    /// Applies `op` to the model; false when it does not apply (its file is missing), in which
    /// case the filesystem is not asked either.
    fn apply(&mut self, op: &Op) -> bool {
        match *op {
            Op::Create { dir, name } => match self.file(dir, name) {
                Some(file) => {
                    self.live_bytes.insert(file, Vec::new());
                    true
                }
                None => {
                    let file = self.next_file;
                    self.next_file += 1;
                    self.live_names[dir].insert(NAMES[name], file);
                    self.live_bytes.insert(file, Vec::new());
                    true
                }
            },
            Op::Write {
                dir,
                name,
                offset,
                len,
                byte,
            } => {
                let Some(file) = self.file(dir, name) else {
                    return false;
                };
                let bytes = self.live_bytes.entry(file).or_default();
                let end = offset as usize + len;
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[offset as usize..end].fill(byte);
                true
            }
            Op::Truncate { dir, name, size } => {
                let Some(file) = self.file(dir, name) else {
                    return false;
                };
                self.live_bytes
                    .entry(file)
                    .or_default()
                    .resize(size as usize, 0);
                true
            }
            Op::Fsync { dir, name, .. } => {
                let Some(file) = self.file(dir, name) else {
                    return false;
                };
                let bytes = self.live_bytes.get(&file).cloned().unwrap_or_default();
                self.durable_bytes.insert(file, bytes);
                true
            }
            Op::SyncDir { dir } => {
                self.durable_names[dir] = self.live_names[dir].clone();
                true
            }
            Op::Rename {
                from_dir,
                from,
                to_dir,
                to,
            } => {
                let Some(file) = self.file(from_dir, from) else {
                    return false;
                };
                // Onto another name of the same file (a cut can leave two): POSIX does nothing.
                if self.file(to_dir, to) != Some(file) {
                    self.live_names[from_dir].remove(NAMES[from]);
                    self.live_names[to_dir].insert(NAMES[to], file);
                }
                true
            }
            Op::Unlink { dir, name } => self.live_names[dir].remove(NAMES[name]).is_some(),
            Op::Cut => {
                self.live_names = self.durable_names.clone();
                let named: Vec<usize> = self
                    .durable_names
                    .iter()
                    .flat_map(|names| names.values().copied())
                    .collect();
                let mut live_bytes = HashMap::new();
                for file in named {
                    let bytes = self.durable_bytes.get(&file).cloned().unwrap_or_default();
                    live_bytes.insert(file, bytes);
                }
                self.durable_bytes = live_bytes.clone();
                self.live_bytes = live_bytes;
                true
            }
        }
    }

    /// The tree as it must read now: (directory, name) to bytes.
    fn expected_tree(&self) -> BTreeMap<(usize, String), Vec<u8>> {
        let mut tree = BTreeMap::new();
        for (dir, names) in self.live_names.iter().enumerate() {
            for (name, file) in names {
                let bytes = self.live_bytes.get(file).cloned().unwrap_or_default();
                tree.insert((dir, (*name).to_owned()), bytes);
            }
        }
        tree
    }
}

fn dir_path(root: &Path, dir: usize) -> PathBuf {
    root.join(DIRS[dir])
}

fn file_path(root: &Path, dir: usize, name: usize) -> PathBuf {
    dir_path(root, dir).join(NAMES[name])
}

/// Does `op` through the mount at `root` (`cut` cuts its power).
fn perform(op: &Op, root: &Path, cut: &dyn Fn()) -> std::io::Result<()> {
    match *op {
        Op::Create { dir, name } => {
            OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(file_path(root, dir, name))?;
        }
        Op::Write {
            dir,
            name,
            offset,
            len,
            byte,
        } => {
            let file = OpenOptions::new()
                .write(true)
                .open(file_path(root, dir, name))?;
            file.write_all_at(&vec![byte; len], offset)?;
        }
        Op::Truncate { dir, name, size } => {
            let file = OpenOptions::new()
                .write(true)
                .open(file_path(root, dir, name))?;
            file.set_len(size)?;
        }
        Op::Fsync {
            dir,
            name,
            data_only,
        } => {
            let file = fs::File::open(file_path(root, dir, name))?;
            if data_only {
                file.sync_data()?;
            } else {
                file.sync_all()?;
            }
        }
        Op::SyncDir { dir } => sync_dir(&dir_path(root, dir)),
        Op::Rename {
            from_dir,
            from,
            to_dir,
            to,
        } => fs::rename(file_path(root, from_dir, from), file_path(root, to_dir, to))?,
        Op::Unlink { dir, name } => fs::remove_file(file_path(root, dir, name))?,
        Op::Cut => cut(),
    }
    Ok(())
}

/// The tree as the mount shows it: every regular file in the three directories, with its bytes.
fn actual_tree(root: &Path) -> BTreeMap<(usize, String), Vec<u8>> {
    let mut tree = BTreeMap::new();
    for dir in 0..DIRS.len() {
        for entry in fs::read_dir(dir_path(root, dir)).expect("read a directory") {
            let entry = entry.expect("a directory entry");
            if entry.file_type().expect("its type").is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = fs::read(entry.path()).expect("read a file");
            tree.insert((dir, name), bytes);
        }
    }
    tree
}

/// Names and sizes (the bytes themselves are too long to print), then whether the bytes match.
fn check_tree(root: &Path, model: &Model, when: &str) -> Result<(), TestCaseError> {
    let actual = actual_tree(root);
    let expected = model.expected_tree();
    let shape = |tree: &BTreeMap<(usize, String), Vec<u8>>| -> Vec<(String, usize)> {
        tree.iter()
            .map(|((dir, name), bytes)| (format!("{}/{name}", DIRS[*dir]), bytes.len()))
            .collect()
    };
    prop_assert_eq!(shape(&actual), shape(&expected), "names and sizes {}", when);
    for (key, bytes) in &expected {
        prop_assert!(&actual[key] == bytes, "the bytes of {:?} {}", key, when);
    }
    Ok(())
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let fs = mount_or_skip("a model case").expect("FUSE was available a moment ago");
    let root = fs.mount.path().to_path_buf();
    for dir in ["a", "b"] {
        fs::create_dir(root.join(dir)).expect("mkdir");
    }
    sync_dir(&root);
    let cut = || {
        fs.mount.cut();
    };
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        if matches!(op, Op::Cut) {
            check_tree(&root, &model, &format!("before the cut at step {step}"))?;
        }
        if !model.apply(op) {
            continue;
        }
        if let Err(error) = perform(op, &root, &cut) {
            let missing = error.kind() == ErrorKind::NotFound;
            return Err(TestCaseError::fail(format!(
                "step {step}, {op:?}: {error}{}",
                if missing {
                    " (the model has the file)"
                } else {
                    ""
                }
            )));
        }
        if matches!(op, Op::Cut) {
            check_tree(&root, &model, &format!("after the cut at step {step}"))?;
        }
    }
    check_tree(&root, &model, "at the end")?;
    perform(&Op::Cut, &root, &cut).expect("a cut cannot fail");
    model.apply(&Op::Cut);
    check_tree(&root, &model, "after the final cut")
}

#[test]
fn random_operations_syncs_and_cuts_leave_what_the_model_says_must_survive() {
    if let Some(reason) = powercut_fs::fuse_unavailable() {
        eprintln!("skipping the model test: {reason}");
        return;
    }
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..80), |ops| run_case(&ops));
    if let Err(error) = result {
        panic!("{error}");
    }
}
