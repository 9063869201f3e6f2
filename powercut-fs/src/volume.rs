//! The volume: every inode in two views, the live one that readers see and the durable one that
//! survives a power cut, and the rules that carry state from the first to the second (syncs) and
//! back (a cut). Pure: no FUSE, no I/O, so that the rules can be tested alone.
//!
//! Rules (what a strict POSIX filesystem may do on power loss, and no more):
//! - Every change is made to the live view at once and is durable only once synced.
//! - `fsync`/`fdatasync` of a file makes its contents, size and attributes durable, but not its
//!   name: a directory entry is durable only once its directory is synced.
//! - Syncing a directory makes its entries durable as they are: names created, removed or renamed
//!   in it since its last sync. A renamed file keeps its identity (its synced contents follow it).
//!   A rename between two directories is durable only once both are synced: with the target's
//!   sync alone the file is durably in both, with the source's alone in neither.
//! - A name made durable for a file whose contents were never synced brings back an empty file
//!   (a directory: an empty directory; a symlink: its target, which it never changes).
//! - A file created and synced in a directory that was never synced is lost on a cut, as a strict
//!   filesystem may lose it.
//! - A directory is durably in one place only: syncing the directory it moved into takes it out of
//!   the one it came from.
//! - A cut makes the live view the durable one; inodes no durable name reaches are dropped.
//!
//! Invariants kept (checked by `check_invariants` in the tests):
//! - In each view, every directory entry names an inode of that view, and every inode's `nlink`
//!   is the number of entries naming it (the root: 1, named by none).
//! - A live inode with no name is open (it is dropped on its last release); a durable inode with
//!   no name is still live (it may be named durably later), except between a cut's two steps.
//! - Inode numbers and file handles are never reused, so that the kernel, which may remember an
//!   inode number across a cut, never finds another file behind it; a handle from before a cut
//!   answers `EIO`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};
use imbl::OrdMap;
use imbl::ordmap::DiffItem;

use crate::contents::{BLOCK_SIZE, BlockGauge, Contents, TooLarge};

pub(crate) type Ino = u64;
pub(crate) const ROOT: Ino = 1;

type Result<T> = std::result::Result<T, Errno>;

/// The longest name in a directory, as on ext4.
const NAME_MAX: usize = 255;
/// The capacity `statfs` reports: nothing is reserved, it only has to look like room to tools.
const REPORTED_BLOCKS: u64 = (1 << 40) / BLOCK_SIZE as u64;
const REPORTED_INODES: u64 = 1 << 32;

#[derive(Debug, Clone)]
struct Meta {
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    crtime: SystemTime,
}

impl Meta {
    fn new(perm: u16, uid: u32, gid: u32) -> Self {
        let now = SystemTime::now();
        Self {
            perm,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
        }
    }
}

#[derive(Debug, Clone)]
struct Directory {
    entries: OrdMap<OsString, Ino>,
    /// The directory naming this one (the root names itself); what `..` reads.
    parent: Ino,
}

#[derive(Debug, Clone)]
enum Body {
    File(Contents),
    Dir(Directory),
    Symlink(OsString),
}

#[derive(Debug, Clone)]
struct Inode {
    meta: Meta,
    body: Body,
    nlink: u32,
}

impl Inode {
    /// What this inode is in a view where only its name was synced, never itself.
    fn unsynced(&self, parent: Ino) -> Self {
        let body = match &self.body {
            Body::File(_) => Body::File(Contents::default()),
            Body::Dir(_) => Body::Dir(Directory {
                entries: OrdMap::new(),
                parent,
            }),
            Body::Symlink(target) => Body::Symlink(target.clone()),
        };
        Self {
            meta: self.meta.clone(),
            body,
            nlink: 0,
        }
    }

    fn kind(&self) -> FileType {
        match self.body {
            Body::File(_) => FileType::RegularFile,
            Body::Dir(_) => FileType::Directory,
            Body::Symlink(_) => FileType::Symlink,
        }
    }

    fn attr(&self, ino: Ino) -> FileAttr {
        let (size, allocated) = match &self.body {
            Body::File(contents) => (contents.size(), contents.allocated_bytes()),
            Body::Dir(directory) => (directory.entries.len() as u64, 0),
            Body::Symlink(target) => (target.len() as u64, 0),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: allocated / 512,
            atime: self.meta.atime,
            mtime: self.meta.mtime,
            ctime: self.meta.ctime,
            crtime: self.meta.crtime,
            kind: self.kind(),
            perm: self.meta.perm,
            nlink: self.nlink,
            uid: self.meta.uid,
            gid: self.meta.gid,
            rdev: 0,
            blksize: BLOCK_SIZE as u32,
            flags: 0,
        }
    }
}

type View = OrdMap<Ino, Inode>;

/// The bytes of file data the volume holds, for a memory check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes of file data the live view refers to (what readers see; holes cost nothing).
    pub live_bytes: u64,
    /// Bytes of file data the durable view refers to (what would survive a cut now).
    pub durable_bytes: u64,
    /// Bytes of file data actually in memory: blocks shared by both views count once.
    pub resident_bytes: u64,
}

/// What a cut did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutReport {
    /// The volume just before the cut.
    pub before: Usage,
    /// The volume after it: live and durable are the same.
    pub after: Usage,
}

/// A change of attributes, as `setattr` asks for it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AttrChange {
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) size: Option<u64>,
    pub(crate) atime: Option<TimeOrNow>,
    pub(crate) mtime: Option<TimeOrNow>,
}

/// Who creates a node, and with which permission bits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Creator {
    pub(crate) perm: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) ino: Ino,
    pub(crate) kind: FileType,
    pub(crate) name: OsString,
}

/// What `statfs` reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Capacity {
    pub(crate) blocks: u64,
    pub(crate) free_blocks: u64,
    pub(crate) files: u64,
    pub(crate) free_files: u64,
    pub(crate) block_size: u32,
    pub(crate) name_max: u32,
}

/// The whole filesystem: both views, the open handles, the counters that are never reset.
#[derive(Debug)]
pub(crate) struct Volume {
    live: View,
    durable: View,
    next_ino: Ino,
    /// Open file handles and the inode each is for; emptied by a cut.
    handles: HashMap<u64, Ino>,
    next_handle: u64,
    /// How many handles are open per inode: an unlinked file lives on while one is.
    open: HashMap<Ino, u32>,
    gauge: BlockGauge,
}

fn too_large(_: TooLarge) -> Errno {
    Errno::EFBIG
}

fn check_name(name: &OsStr) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty() || name == "." || name == ".." || name.as_bytes().contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

fn resolve(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Volume {
    /// An empty volume whose root belongs to `uid`:`gid`, durable as it is.
    pub(crate) fn new(uid: u32, gid: u32) -> Self {
        let root = Inode {
            meta: Meta::new(0o755, uid, gid),
            body: Body::Dir(Directory {
                entries: OrdMap::new(),
                parent: ROOT,
            }),
            nlink: 1,
        };
        let live = OrdMap::unit(ROOT, root);
        Self {
            durable: live.clone(),
            live,
            next_ino: ROOT + 1,
            handles: HashMap::new(),
            next_handle: 1,
            open: HashMap::new(),
            gauge: BlockGauge::default(),
        }
    }

    fn node(&self, ino: Ino) -> Result<&Inode> {
        self.live.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Inode> {
        self.live.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: Ino) -> Result<&Directory> {
        match &self.node(ino)?.body {
            Body::Dir(directory) => Ok(directory),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut Directory> {
        match &mut self.node_mut(ino)?.body {
            Body::Dir(directory) => Ok(directory),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn child(&self, parent: Ino, name: &OsStr) -> Result<Ino> {
        self.dir(parent)?
            .entries
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    fn contents_mut(&mut self, ino: Ino) -> Result<&mut Contents> {
        match &mut self.node_mut(ino)?.body {
            Body::File(contents) => Ok(contents),
            Body::Dir(_) => Err(Errno::EISDIR),
            Body::Symlink(_) => Err(Errno::EINVAL),
        }
    }

    /// Marks `ino` modified (its data or its entries) now.
    fn touch(&mut self, ino: Ino) -> Result<()> {
        let meta = &mut self.node_mut(ino)?.meta;
        let now = SystemTime::now();
        meta.mtime = now;
        meta.ctime = now;
        Ok(())
    }

    fn attr(&self, ino: Ino) -> Result<FileAttr> {
        Ok(self.node(ino)?.attr(ino))
    }

    /// Checks that `handle` is open on `ino`: one from before a cut is not (the disk it wrote to
    /// lost power), and answers `EIO`.
    fn check_handle(&self, handle: u64, ino: Ino) -> Result<()> {
        match self.handles.get(&handle) {
            Some(&open) if open == ino => Ok(()),
            _ => Err(Errno::EIO),
        }
    }

    pub(crate) fn lookup(&self, parent: Ino, name: &OsStr) -> Result<FileAttr> {
        let ino = self.child(parent, name)?;
        self.attr(ino)
    }

    pub(crate) fn getattr(&self, ino: Ino) -> Result<FileAttr> {
        self.attr(ino)
    }

    pub(crate) fn setattr(
        &mut self,
        ino: Ino,
        handle: Option<u64>,
        change: AttrChange,
    ) -> Result<FileAttr> {
        if let Some(handle) = handle {
            self.check_handle(handle, ino)?;
        }
        if let Some(size) = change.size {
            self.contents_mut(ino)?.set_size(size).map_err(too_large)?;
            self.touch(ino)?;
        }
        let meta = &mut self.node_mut(ino)?.meta;
        if let Some(mode) = change.mode {
            // Permission bits only: the kind of a file never changes.
            meta.perm = (mode & 0o7777) as u16;
        }
        if let Some(uid) = change.uid {
            meta.uid = uid;
        }
        if let Some(gid) = change.gid {
            meta.gid = gid;
        }
        if let Some(atime) = change.atime {
            meta.atime = resolve(atime);
        }
        if let Some(mtime) = change.mtime {
            meta.mtime = resolve(mtime);
        }
        meta.ctime = SystemTime::now();
        self.attr(ino)
    }

    pub(crate) fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        match &self.node(ino)?.body {
            Body::Symlink(target) => Ok(target.as_bytes().to_vec()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Links a new inode with `body` as `parent`/`name`.
    fn create_node(
        &mut self,
        parent: Ino,
        name: &OsStr,
        creator: Creator,
        body: Body,
    ) -> Result<Ino> {
        check_name(name)?;
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let inode = Inode {
            meta: Meta::new(creator.perm, creator.uid, creator.gid),
            body,
            nlink: 1,
        };
        self.live.insert(ino, inode);
        self.dir_mut(parent)?.entries.insert(name.to_owned(), ino);
        self.touch(parent)?;
        Ok(ino)
    }

    pub(crate) fn mknod(
        &mut self,
        parent: Ino,
        name: &OsStr,
        creator: Creator,
    ) -> Result<FileAttr> {
        let ino = self.create_node(parent, name, creator, Body::File(Contents::default()))?;
        self.attr(ino)
    }

    /// Creates a regular file and opens it; returns its attributes and the handle.
    pub(crate) fn create(
        &mut self,
        parent: Ino,
        name: &OsStr,
        creator: Creator,
    ) -> Result<(FileAttr, u64)> {
        let ino = self.create_node(parent, name, creator, Body::File(Contents::default()))?;
        let handle = self.open(ino)?;
        Ok((self.attr(ino)?, handle))
    }

    pub(crate) fn mkdir(
        &mut self,
        parent: Ino,
        name: &OsStr,
        creator: Creator,
    ) -> Result<FileAttr> {
        let body = Body::Dir(Directory {
            entries: OrdMap::new(),
            parent,
        });
        let ino = self.create_node(parent, name, creator, body)?;
        self.attr(ino)
    }

    pub(crate) fn symlink(
        &mut self,
        parent: Ino,
        name: &OsStr,
        target: &OsStr,
        creator: Creator,
    ) -> Result<FileAttr> {
        let body = Body::Symlink(target.to_owned());
        let ino = self.create_node(parent, name, creator, body)?;
        self.attr(ino)
    }

    pub(crate) fn link(&mut self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> Result<FileAttr> {
        check_name(new_name)?;
        if let Body::Dir(_) = self.node(ino)?.body {
            return Err(Errno::EPERM);
        }
        if self.dir(new_parent)?.entries.contains_key(new_name) {
            return Err(Errno::EEXIST);
        }
        self.dir_mut(new_parent)?
            .entries
            .insert(new_name.to_owned(), ino);
        self.touch(new_parent)?;
        let node = self.node_mut(ino)?;
        node.nlink += 1;
        node.meta.ctime = SystemTime::now();
        self.attr(ino)
    }

    pub(crate) fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<()> {
        let ino = self.child(parent, name)?;
        if let Body::Dir(_) = self.node(ino)?.body {
            return Err(Errno::EISDIR);
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.touch(parent)?;
        self.drop_name(ino)
    }

    pub(crate) fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<()> {
        let ino = self.child(parent, name)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.touch(parent)?;
        self.drop_name(ino)
    }

    /// Takes one name away from live `ino`, forgetting it once it has none and is not open.
    fn drop_name(&mut self, ino: Ino) -> Result<()> {
        let node = self.node_mut(ino)?;
        node.nlink = node.nlink.saturating_sub(1);
        node.meta.ctime = SystemTime::now();
        self.forget_if_unreachable(ino);
        Ok(())
    }

    /// Drops live `ino` once nothing names it and nothing has it open; and its durable copy too
    /// if no durable name reaches that one: nothing can name it any more.
    fn forget_if_unreachable(&mut self, ino: Ino) {
        let named = self.live.get(&ino).is_some_and(|node| node.nlink > 0);
        if named || self.open.contains_key(&ino) {
            return;
        }
        self.live.remove(&ino);
        if self.durable.get(&ino).is_some_and(|node| node.nlink == 0) {
            self.drop_durable(ino);
        }
    }

    /// Whether `ancestor` is `ino` or one of the directories above it.
    fn is_ancestor(&self, ancestor: Ino, mut ino: Ino) -> Result<bool> {
        loop {
            if ino == ancestor {
                return Ok(true);
            }
            if ino == ROOT {
                return Ok(false);
            }
            ino = self.dir(ino)?.parent;
        }
    }

    pub(crate) fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<()> {
        check_name(new_name)?;
        let ino = self.child(parent, name)?;
        let moving_dir = matches!(self.node(ino)?.body, Body::Dir(_));
        if moving_dir && self.is_ancestor(ino, new_parent)? {
            return Err(Errno::EINVAL);
        }
        let replaced = self.dir(new_parent)?.entries.get(new_name).copied();
        if let Some(target) = replaced {
            if no_replace {
                return Err(Errno::EEXIST);
            }
            if target == ino {
                // Two names of one file: POSIX says to do nothing.
                return Ok(());
            }
            match (&self.node(target)?.body, moving_dir) {
                (Body::Dir(_), false) => return Err(Errno::EISDIR),
                (Body::Dir(directory), true) if !directory.entries.is_empty() => {
                    return Err(Errno::ENOTEMPTY);
                }
                (Body::Dir(_), true) => {}
                (_, true) => return Err(Errno::ENOTDIR),
                (_, false) => {}
            }
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.dir_mut(new_parent)?
            .entries
            .insert(new_name.to_owned(), ino);
        self.touch(parent)?;
        self.touch(new_parent)?;
        let node = self.node_mut(ino)?;
        node.meta.ctime = SystemTime::now();
        if let Body::Dir(directory) = &mut node.body {
            directory.parent = new_parent;
        }
        if let Some(target) = replaced {
            self.drop_name(target)?;
        }
        Ok(())
    }

    /// Opens regular file `ino`; returns the handle.
    pub(crate) fn open(&mut self, ino: Ino) -> Result<u64> {
        match self.node(ino)?.body {
            Body::File(_) => {}
            Body::Dir(_) => return Err(Errno::EISDIR),
            Body::Symlink(_) => return Err(Errno::EINVAL),
        }
        let handle = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(handle, ino);
        *self.open.entry(ino).or_default() += 1;
        Ok(handle)
    }

    /// Closes `handle`; a handle the volume does not know (from before a cut) is ignored.
    pub(crate) fn release(&mut self, handle: u64) {
        let Some(ino) = self.handles.remove(&handle) else {
            return;
        };
        if let Some(count) = self.open.get_mut(&ino) {
            *count -= 1;
            if *count == 0 {
                self.open.remove(&ino);
            }
        }
        self.forget_if_unreachable(ino);
    }

    pub(crate) fn read(&self, ino: Ino, handle: u64, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.check_handle(handle, ino)?;
        match &self.node(ino)?.body {
            Body::File(contents) => Ok(contents.read(offset, len)),
            Body::Dir(_) => Err(Errno::EISDIR),
            Body::Symlink(_) => Err(Errno::EINVAL),
        }
    }

    /// Writes `data` at `offset`, or at the end of the file when `append` (the file was opened
    /// with `O_APPEND`: its end is the one here, whatever size the kernel last saw).
    pub(crate) fn write(
        &mut self,
        ino: Ino,
        handle: u64,
        offset: u64,
        data: &[u8],
        append: bool,
    ) -> Result<u32> {
        self.check_handle(handle, ino)?;
        let written = u32::try_from(data.len()).map_err(|_| Errno::EINVAL)?;
        let gauge = self.gauge.clone();
        let contents = self.contents_mut(ino)?;
        let at = if append { contents.size() } else { offset };
        contents.write(at, data, &gauge).map_err(too_large)?;
        self.touch(ino)?;
        Ok(written)
    }

    /// `fallocate(2)`: reserving space (nothing to reserve in memory), growing, punching holes
    /// and zeroing ranges; other modes answer `EOPNOTSUPP`.
    pub(crate) fn fallocate(
        &mut self,
        ino: Ino,
        handle: u64,
        offset: u64,
        len: u64,
        mode: i32,
    ) -> Result<()> {
        self.check_handle(handle, ino)?;
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let contents = self.contents_mut(ino)?;
        match mode & !libc::FALLOC_FL_KEEP_SIZE {
            0 => {}
            libc::FALLOC_FL_PUNCH_HOLE if keep_size => contents.zero_range(offset, len),
            libc::FALLOC_FL_ZERO_RANGE => contents.zero_range(offset, len),
            _ => return Err(Errno::EOPNOTSUPP),
        }
        if !keep_size && end > contents.size() {
            contents.set_size(end).map_err(too_large)?;
        }
        self.touch(ino)
    }

    /// Every entry of directory `ino`, `.` and `..` first.
    pub(crate) fn readdir(&self, ino: Ino) -> Result<Vec<Listed>> {
        let directory = self.dir(ino)?;
        let mut listed = vec![
            Listed {
                ino,
                kind: FileType::Directory,
                name: ".".into(),
            },
            Listed {
                ino: directory.parent,
                kind: FileType::Directory,
                name: "..".into(),
            },
        ];
        for (name, &child) in &directory.entries {
            listed.push(Listed {
                ino: child,
                kind: self.node(child)?.kind(),
                name: name.clone(),
            });
        }
        Ok(listed)
    }

    pub(crate) fn capacity(&self) -> Capacity {
        let used_blocks = self.gauge.bytes() / BLOCK_SIZE as u64;
        Capacity {
            blocks: REPORTED_BLOCKS,
            free_blocks: REPORTED_BLOCKS.saturating_sub(used_blocks),
            files: REPORTED_INODES,
            free_files: REPORTED_INODES.saturating_sub(self.live.len() as u64),
            block_size: BLOCK_SIZE as u32,
            name_max: NAME_MAX as u32,
        }
    }

    /// `fsync`/`fdatasync` of an open file: its contents, size and attributes become durable.
    pub(crate) fn sync_file(&mut self, ino: Ino, handle: u64) -> Result<()> {
        self.check_handle(handle, ino)?;
        self.sync_inode(ino)
    }

    fn sync_inode(&mut self, ino: Ino) -> Result<()> {
        let live = self.node(ino)?.clone();
        if let Body::Dir(_) = live.body {
            return self.sync_dir(ino);
        }
        match self.durable.get_mut(&ino) {
            Some(durable) => {
                durable.meta = live.meta;
                durable.body = live.body;
            }
            // Durable, but unnamed until its directory is synced.
            None => {
                self.durable.insert(ino, Inode { nlink: 0, ..live });
            }
        }
        Ok(())
    }

    /// `fsync` of directory `ino`: its entries, as they are now, become durable. A directory
    /// removed since it was opened has no entries left to make durable.
    pub(crate) fn sync_dir(&mut self, ino: Ino) -> Result<()> {
        let Some(live) = self.live.get(&ino) else {
            return Ok(());
        };
        let Body::Dir(live_dir) = &live.body else {
            return Err(Errno::ENOTDIR);
        };
        let meta = live.meta.clone();
        let entries = live_dir.entries.clone();
        let (old_entries, parent, nlink) = match self.durable.get(&ino) {
            Some(Inode {
                body: Body::Dir(durable_dir),
                nlink,
                ..
            }) => (durable_dir.entries.clone(), durable_dir.parent, *nlink),
            _ => (OrdMap::new(), live_dir.parent, 0),
        };
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for change in old_entries.diff(&entries) {
            match change {
                DiffItem::Add(_, &child) => added.push(child),
                DiffItem::Remove(_, &child) => removed.push(child),
                DiffItem::Update {
                    old: (_, &old),
                    new: (_, &new),
                } => {
                    removed.push(old);
                    added.push(new);
                }
            }
        }
        self.durable.insert(
            ino,
            Inode {
                meta,
                body: Body::Dir(Directory { entries, parent }),
                nlink,
            },
        );
        // A child losing its last durable name here stays durable while it is live (a rename
        // within the directory, or away from it), so the order of the two does not matter.
        for child in added {
            self.link_durable(child, ino);
        }
        for child in removed {
            self.unlink_durable(child);
        }
        Ok(())
    }

    /// Counts a new durable name of `child` in directory `parent`, bringing `child` into the
    /// durable view, as never synced, if it was not there.
    fn link_durable(&mut self, child: Ino, parent: Ino) {
        let Some(node) = self.durable.get_mut(&child) else {
            if let Some(live) = self.live.get(&child) {
                let mut fresh = live.unsynced(parent);
                fresh.nlink = 1;
                self.durable.insert(child, fresh);
            }
            return;
        };
        node.nlink += 1;
        let Body::Dir(directory) = &mut node.body else {
            return;
        };
        let old_parent = std::mem::replace(&mut directory.parent, parent);
        if old_parent == parent {
            return;
        }
        // A directory has one durable place: it left the old one.
        let mut stale_names = 0;
        if let Some(Inode {
            body: Body::Dir(old),
            ..
        }) = self.durable.get_mut(&old_parent)
        {
            let stale: Vec<OsString> = old
                .entries
                .iter()
                .filter(|(_, named)| **named == child)
                .map(|(name, _)| name.clone())
                .collect();
            for name in &stale {
                old.entries.remove(name);
            }
            stale_names = stale.len();
        }
        if let Some(node) = self.durable.get_mut(&child) {
            node.nlink = node.nlink.saturating_sub(stale_names as u32);
        }
    }

    /// Takes one durable name from `child`; drops it from the durable view once no name is left
    /// and it is not live (so that no later sync can name it again).
    fn unlink_durable(&mut self, child: Ino) {
        let Some(node) = self.durable.get_mut(&child) else {
            return;
        };
        node.nlink = node.nlink.saturating_sub(1);
        if node.nlink == 0 && child != ROOT && !self.live.contains_key(&child) {
            self.drop_durable(child);
        }
    }

    /// Removes `ino` from the durable view, and with it the names its entries held.
    fn drop_durable(&mut self, ino: Ino) {
        if let Some(Inode {
            body: Body::Dir(directory),
            ..
        }) = self.durable.remove(&ino)
        {
            for &child in directory.entries.values() {
                self.unlink_durable(child);
            }
        }
    }

    /// The power cut: everything not durable is gone; the durable view becomes the live one, less
    /// what no durable name reaches. Every open handle becomes stale.
    pub(crate) fn cut(&mut self) -> CutReport {
        let before = self.usage();
        self.handles.clear();
        self.open.clear();
        self.live = OrdMap::new();
        let unnamed: Vec<Ino> = self
            .durable
            .iter()
            .filter(|(ino, node)| node.nlink == 0 && **ino != ROOT)
            .map(|(ino, _)| *ino)
            .collect();
        for ino in unnamed {
            self.drop_durable(ino);
        }
        self.live = self.durable.clone();
        CutReport {
            before,
            after: self.usage(),
        }
    }

    pub(crate) fn usage(&self) -> Usage {
        let file_bytes = |view: &View| -> u64 {
            view.values()
                .map(|node| match &node.body {
                    Body::File(contents) => contents.allocated_bytes(),
                    _ => 0,
                })
                .sum()
        };
        Usage {
            live_bytes: file_bytes(&self.live),
            durable_bytes: file_bytes(&self.durable),
            resident_bytes: self.gauge.bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_USER: Creator = Creator {
        perm: 0o644,
        uid: 0,
        gid: 0,
    };

    impl Volume {
        /// Panics naming the first broken invariant of the module's list.
        fn check_invariants(&self) {
            for (name, view) in [("live", &self.live), ("durable", &self.durable)] {
                let mut names: HashMap<Ino, u32> = HashMap::new();
                for (&ino, node) in view {
                    if let Body::Dir(directory) = &node.body {
                        for (entry, &child) in &directory.entries {
                            assert!(
                                view.contains_key(&child),
                                "{name}: {ino}/{entry:?} names {child}, which is not there"
                            );
                            *names.entry(child).or_default() += 1;
                            if let Some(Inode {
                                body: Body::Dir(child_dir),
                                ..
                            }) = view.get(&child)
                            {
                                assert_eq!(child_dir.parent, ino, "{name}: parent of {child}");
                            }
                        }
                    }
                }
                for (&ino, node) in view {
                    let expected = if ino == ROOT {
                        1
                    } else {
                        names.get(&ino).copied().unwrap_or(0)
                    };
                    assert_eq!(node.nlink, expected, "{name}: nlink of {ino}");
                }
            }
            for (&ino, node) in &self.live {
                assert!(
                    node.nlink > 0 || self.open.contains_key(&ino),
                    "live {ino} has no name and is not open"
                );
            }
            for (&ino, node) in &self.durable {
                assert!(
                    node.nlink > 0 || self.live.contains_key(&ino),
                    "durable {ino} has no name and is not live"
                );
            }
        }

        fn path(&self, path: &str) -> Result<Ino> {
            let mut ino = ROOT;
            for part in path.split('/').filter(|part| !part.is_empty()) {
                ino = self.child(ino, OsStr::new(part))?;
            }
            Ok(ino)
        }

        fn new_file(&mut self, parent: &str, name: &str, data: &[u8]) -> Ino {
            let parent = self.path(parent).expect("parent");
            let (attr, handle) = self
                .create(parent, OsStr::new(name), ROOT_USER)
                .expect("create");
            self.write(attr.ino.0, handle, 0, data, false)
                .expect("write");
            self.release(handle);
            attr.ino.0
        }

        fn fsync_path(&mut self, path: &str) {
            let ino = self.path(path).expect("path");
            self.sync_inode(ino).expect("sync");
        }

        fn contents_at(&self, path: &str) -> Option<Vec<u8>> {
            let ino = self.path(path).ok()?;
            match &self.node(ino).ok()?.body {
                Body::File(contents) => Some(contents.read(0, contents.size() as usize)),
                _ => None,
            }
        }

        fn names(&self, path: &str) -> Vec<String> {
            let ino = self.path(path).expect("path");
            self.readdir(ino)
                .expect("readdir")
                .into_iter()
                .skip(2)
                .map(|listed| listed.name.to_string_lossy().into_owned())
                .collect()
        }
    }

    fn name(text: &str) -> &OsStr {
        OsStr::new(text)
    }

    #[test]
    fn a_file_synced_in_a_directory_never_synced_is_lost() {
        let mut volume = Volume::new(0, 0);
        volume.new_file("/", "a", b"data");
        volume.fsync_path("/a");
        volume.check_invariants();
        volume.cut();
        volume.check_invariants();
        assert_eq!(volume.names("/"), Vec::<String>::new());
        assert_eq!(volume.usage().resident_bytes, 0, "its blocks are freed");
    }

    #[test]
    fn a_name_synced_without_its_file_brings_back_an_empty_file() {
        let mut volume = Volume::new(0, 0);
        volume.new_file("/", "a", b"data");
        volume.fsync_path("/");
        volume.cut();
        volume.check_invariants();
        assert_eq!(volume.contents_at("/a"), Some(Vec::new()));
    }

    #[test]
    fn a_rename_within_a_synced_directory_keeps_the_synced_contents() {
        let mut volume = Volume::new(0, 0);
        volume.new_file("/", "tmp", b"new");
        volume.fsync_path("/tmp");
        volume
            .rename(ROOT, name("tmp"), ROOT, name("final"), false)
            .expect("rename");
        volume.fsync_path("/");
        volume.check_invariants();
        volume.cut();
        volume.check_invariants();
        assert_eq!(volume.names("/"), vec!["final"]);
        assert_eq!(volume.contents_at("/final"), Some(b"new".to_vec()));
    }

    #[test]
    fn a_rename_between_directories_needs_both_synced() {
        let mut volume = Volume::new(0, 0);
        for dir in ["a", "b"] {
            volume.mkdir(ROOT, name(dir), ROOT_USER).expect("mkdir");
        }
        volume.fsync_path("/");
        volume.new_file("/a", "x", b"x");
        volume.fsync_path("/a/x");
        volume.fsync_path("/a");
        let (a, b) = (volume.path("/a").expect("a"), volume.path("/b").expect("b"));
        volume
            .rename(a, name("x"), b, name("x"), false)
            .expect("rename");

        // The source alone: the file has no durable name, yet it is live and keeps its data.
        volume.fsync_path("/a");
        volume.check_invariants();
        // Then the target: it is durably there, with its synced contents.
        volume.fsync_path("/b");
        volume.check_invariants();
        volume.cut();
        volume.check_invariants();
        assert_eq!(volume.names("/a"), Vec::<String>::new());
        assert_eq!(volume.contents_at("/b/x"), Some(b"x".to_vec()));
    }

    #[test]
    fn a_rename_between_directories_with_the_target_synced_alone_leaves_two_names() {
        let mut volume = Volume::new(0, 0);
        for dir in ["a", "b"] {
            volume.mkdir(ROOT, name(dir), ROOT_USER).expect("mkdir");
        }
        volume.fsync_path("/");
        volume.new_file("/a", "x", b"x");
        volume.fsync_path("/a/x");
        volume.fsync_path("/a");
        let (a, b) = (volume.path("/a").expect("a"), volume.path("/b").expect("b"));
        volume
            .rename(a, name("x"), b, name("x"), false)
            .expect("rename");
        volume.fsync_path("/b");
        volume.cut();
        volume.check_invariants();
        assert_eq!(volume.contents_at("/a/x"), Some(b"x".to_vec()));
        assert_eq!(volume.contents_at("/b/x"), Some(b"x".to_vec()));
    }

    #[test]
    fn a_directory_moved_and_synced_at_its_target_leaves_its_old_place() {
        let mut volume = Volume::new(0, 0);
        for dir in ["a", "b"] {
            volume.mkdir(ROOT, name(dir), ROOT_USER).expect("mkdir");
        }
        let (a, b) = (volume.path("/a").expect("a"), volume.path("/b").expect("b"));
        volume.mkdir(a, name("d"), ROOT_USER).expect("mkdir d");
        volume.new_file("/a/d", "f", b"f");
        for path in ["/", "/a", "/a/d", "/a/d/f"] {
            volume.fsync_path(path);
        }
        volume
            .rename(a, name("d"), b, name("d"), false)
            .expect("rename");
        volume.fsync_path("/b");
        volume.check_invariants();
        volume.cut();
        volume.check_invariants();
        assert_eq!(volume.names("/a"), Vec::<String>::new());
        assert_eq!(volume.contents_at("/b/d/f"), Some(b"f".to_vec()));
    }

    #[test]
    fn an_unlinked_open_file_lives_until_released_and_its_durable_copy_until_its_name_goes() {
        let mut volume = Volume::new(0, 0);
        let ino = volume.new_file("/", "a", b"old");
        volume.fsync_path("/a");
        volume.fsync_path("/");
        let handle = volume.open(ino).expect("open");
        volume.unlink(ROOT, name("a")).expect("unlink");
        volume.check_invariants();
        volume.write(ino, handle, 0, b"new", false).expect("write");
        volume.sync_file(ino, handle).expect("fsync");
        volume.release(handle);
        volume.check_invariants();
        assert!(volume.getattr(ino).is_err(), "gone from the live view");

        // The unlink was never made durable: the name comes back, with the synced data.
        let mut uncut = Volume::new(0, 0);
        std::mem::swap(&mut uncut, &mut volume);
        uncut.cut();
        uncut.check_invariants();
        assert_eq!(uncut.contents_at("/a"), Some(b"new".to_vec()));

        // Made durable, nothing is left anywhere.
        uncut.unlink(ROOT, name("a")).expect("unlink");
        uncut.fsync_path("/");
        uncut.check_invariants();
        assert_eq!(uncut.usage(), Usage::default());
    }

    #[test]
    fn a_removed_directory_takes_its_durable_entries_with_it() {
        let mut volume = Volume::new(0, 0);
        volume.mkdir(ROOT, name("d"), ROOT_USER).expect("mkdir");
        volume.new_file("/d", "f", b"f");
        for path in ["/d/f", "/d", "/"] {
            volume.fsync_path(path);
        }
        let d = volume.path("/d").expect("d");
        volume.unlink(d, name("f")).expect("unlink");
        volume.rmdir(ROOT, name("d")).expect("rmdir");
        volume.fsync_path("/");
        volume.check_invariants();
        assert_eq!(
            volume.usage(),
            Usage::default(),
            "the file's synced blocks are freed"
        );
    }

    #[test]
    fn a_handle_from_before_a_cut_answers_eio() {
        let mut volume = Volume::new(0, 0);
        let ino = volume.new_file("/", "a", b"a");
        volume.fsync_path("/a");
        volume.fsync_path("/");
        let handle = volume.open(ino).expect("open");
        volume.cut();
        assert_eq!(volume.write(ino, handle, 0, b"b", false), Err(Errno::EIO));
        assert_eq!(volume.sync_file(ino, handle), Err(Errno::EIO));
        volume.release(handle);
        assert_eq!(volume.contents_at("/a"), Some(b"a".to_vec()));
    }

    /// One step of [`random_steps_keep_every_invariant`]: paths are picked from a few, so that
    /// most steps find something there (and the others fail, which must change nothing).
    #[derive(Debug, Clone)]
    enum Step {
        CreateFile(usize, usize),
        Mkdir(usize, usize),
        Write(usize, u16),
        Unlink(usize, usize),
        Rmdir(usize, usize),
        Rename(usize, usize, usize, usize),
        Link(usize, usize, usize),
        Open(usize),
        ReleaseOldest,
        Sync(usize),
        Cut,
    }

    const PARENTS: [&str; 4] = ["/", "/a", "/b", "/a/c"];
    const NAMES: [&str; 4] = ["a", "b", "c", "x"];

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let parent = 0..PARENTS.len();
        let name = 0..NAMES.len();
        let path = 0..PARENTS.len() * NAMES.len();
        prop_oneof![
            (parent.clone(), name.clone()).prop_map(|(p, n)| Step::CreateFile(p, n)),
            (parent.clone(), name.clone()).prop_map(|(p, n)| Step::Mkdir(p, n)),
            (path.clone(), any::<u16>()).prop_map(|(f, len)| Step::Write(f, len)),
            (parent.clone(), name.clone()).prop_map(|(p, n)| Step::Unlink(p, n)),
            (parent.clone(), name.clone()).prop_map(|(p, n)| Step::Rmdir(p, n)),
            (parent.clone(), name.clone(), parent.clone(), name.clone())
                .prop_map(|(p, n, q, m)| Step::Rename(p, n, q, m)),
            (path.clone(), parent.clone(), name.clone()).prop_map(|(f, q, m)| Step::Link(f, q, m)),
            path.clone().prop_map(Step::Open),
            Just(Step::ReleaseOldest),
            (0..PARENTS.len() + PARENTS.len() * NAMES.len()).prop_map(Step::Sync),
            Just(Step::Cut),
        ]
    }

    /// Every path a step can name: the parents first, then each name under each parent.
    fn path_of(index: usize) -> String {
        if index < PARENTS.len() {
            return PARENTS[index].to_owned();
        }
        let index = index - PARENTS.len();
        let parent = PARENTS[index / NAMES.len()].trim_end_matches('/');
        format!("{parent}/{}", NAMES[index % NAMES.len()])
    }

    fn take(volume: &mut Volume, handles: &mut Vec<(Ino, u64)>, step: &Step) {
        let ino = |volume: &Volume, path: &str| volume.path(path).ok();
        match *step {
            Step::CreateFile(p, n) => {
                if let Some(parent) = ino(volume, PARENTS[p])
                    && let Ok((_, handle)) = volume.create(parent, name(NAMES[n]), ROOT_USER)
                {
                    volume.release(handle);
                }
            }
            Step::Mkdir(p, n) => {
                if let Some(parent) = ino(volume, PARENTS[p]) {
                    let _ = volume.mkdir(parent, name(NAMES[n]), ROOT_USER);
                }
            }
            Step::Write(f, len) => {
                if let Some(file) = ino(volume, &path_of(f + PARENTS.len()))
                    && let Ok(handle) = volume.open(file)
                {
                    let data = vec![1; usize::from(len) % 9000];
                    volume
                        .write(file, handle, u64::from(len), &data, false)
                        .expect("write");
                    volume.release(handle);
                }
            }
            Step::Unlink(p, n) => {
                if let Some(parent) = ino(volume, PARENTS[p]) {
                    let _ = volume.unlink(parent, name(NAMES[n]));
                }
            }
            Step::Rmdir(p, n) => {
                if let Some(parent) = ino(volume, PARENTS[p]) {
                    let _ = volume.rmdir(parent, name(NAMES[n]));
                }
            }
            Step::Rename(p, n, q, m) => {
                if let (Some(from), Some(to)) = (ino(volume, PARENTS[p]), ino(volume, PARENTS[q])) {
                    let _ = volume.rename(from, name(NAMES[n]), to, name(NAMES[m]), false);
                }
            }
            Step::Link(f, q, m) => {
                let file = ino(volume, &path_of(f + PARENTS.len()));
                if let (Some(file), Some(to)) = (file, ino(volume, PARENTS[q])) {
                    let _ = volume.link(file, to, name(NAMES[m]));
                }
            }
            Step::Open(f) => {
                if let Some(file) = ino(volume, &path_of(f + PARENTS.len()))
                    && let Ok(handle) = volume.open(file)
                {
                    handles.push((file, handle));
                }
            }
            Step::ReleaseOldest => {
                if !handles.is_empty() {
                    let (_, handle) = handles.remove(0);
                    volume.release(handle);
                }
            }
            Step::Sync(index) => {
                if let Some(target) = ino(volume, &path_of(index)) {
                    volume.sync_inode(target).expect("sync");
                }
                // A file open but unlinked can only be synced through its handle.
                if let Some(&(file, handle)) = handles.first() {
                    let _ = volume.sync_file(file, handle);
                }
            }
            Step::Cut => {
                volume.cut();
                handles.clear();
            }
        }
    }

    proptest::proptest! {
        /// Whatever is created, linked, renamed, removed, held open, synced and cut, both views
        /// keep the module's invariants, and nothing is left in memory once all is removed.
        #[test]
        fn random_steps_keep_every_invariant(
            steps in proptest::collection::vec(step(), 1..120)
        ) {
            let mut volume = Volume::new(0, 0);
            let mut handles = Vec::new();
            for step in &steps {
                take(&mut volume, &mut handles, step);
                volume.check_invariants();
            }
            volume.cut();
            volume.check_invariants();
            remove_tree(&mut volume, ROOT);
            volume.check_invariants();
            proptest::prop_assert_eq!(volume.usage(), Usage::default());
            proptest::prop_assert_eq!(volume.durable.len(), 1, "only the root is left");
        }
    }

    /// Removes everything under `dir` and makes the removal durable, deepest first.
    fn remove_tree(volume: &mut Volume, dir: Ino) {
        for listed in volume.readdir(dir).expect("readdir").into_iter().skip(2) {
            if listed.kind == FileType::Directory {
                remove_tree(volume, listed.ino);
                volume.rmdir(dir, &listed.name).expect("rmdir");
            } else {
                volume.unlink(dir, &listed.name).expect("unlink");
            }
        }
        volume.sync_dir(dir).expect("sync");
    }

    #[test]
    fn rename_refuses_what_posix_refuses() {
        let mut volume = Volume::new(0, 0);
        volume.mkdir(ROOT, name("d"), ROOT_USER).expect("mkdir");
        let d = volume.path("/d").expect("d");
        volume.mkdir(d, name("e"), ROOT_USER).expect("mkdir");
        volume.new_file("/", "f", b"");
        volume.new_file("/d/e", "g", b"");
        let e = volume.path("/d/e").expect("e");
        assert_eq!(
            volume.rename(ROOT, name("d"), e, name("d"), false),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            volume.rename(ROOT, name("f"), d, name("e"), false),
            Err(Errno::EISDIR)
        );
        assert_eq!(
            volume.rename(d, name("e"), ROOT, name("f"), false),
            Err(Errno::ENOTDIR)
        );
        volume.mkdir(ROOT, name("x"), ROOT_USER).expect("mkdir");
        assert_eq!(
            volume.rename(ROOT, name("x"), d, name("e"), false),
            Err(Errno::ENOTEMPTY)
        );
        assert_eq!(
            volume.rename(ROOT, name("f"), ROOT, name("x"), true),
            Err(Errno::EEXIST)
        );
        volume.check_invariants();
    }
}
