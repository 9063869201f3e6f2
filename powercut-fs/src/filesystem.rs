//! The FUSE side of the volume: turns the kernel's requests into [`Volume`] calls, and keeps the
//! kernel from caching anything a cut could make stale.
//!
//! What the kernel may keep, and why none of it outlives a cut:
//! - Entries and attributes: every reply carries a zero TTL, so each path lookup and `stat`
//!   asks the volume again.
//! - File data: every open answers `FOPEN_DIRECT_IO` (reads and writes bypass the page cache) and
//!   never `FOPEN_KEEP_CACHE` (each open drops whatever pages the inode had, which private
//!   mappings read through); and the session never asks for the writeback cache, so a `write`
//!   returns only once the volume has the bytes. A consequence: shared mappings (`MAP_SHARED`)
//!   are refused with `ENODEV`; neither sled nor the snapshot code maps files.
//! - Locks (`flock`, `fcntl`): not negotiated, so the kernel keeps them itself, per inode, and
//!   they end with the processes holding them, as they do on a disk.
//!
//! `sync_file_range`, `syncfs` and `sync` never reach a FUSE filesystem as a sync (FUSE_SYNCFS is
//! sent to virtiofs only): here, as the issue asks, they make nothing durable.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;

use crate::volume::{AttrChange, Creator, Volume};

/// No entry or attribute is cached by the kernel: a cut may change any of them.
const TTL: Duration = Duration::ZERO;
/// Inode numbers are never reused, so one generation serves all.
const GENERATION: Generation = Generation(0);
/// Data bypasses the page cache, and each open drops the pages the inode had.
const OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_DIRECT_IO;

/// The filesystem the FUSE session serves; shares its volume with the [`crate::Mount`] that
/// cuts it.
pub(crate) struct PowercutFilesystem {
    volume: Arc<Mutex<Volume>>,
}

impl PowercutFilesystem {
    pub(crate) fn new(volume: Arc<Mutex<Volume>>) -> Self {
        Self { volume }
    }
}

fn creator(request: &Request, mode: u32, umask: u32) -> Creator {
    Creator {
        perm: (mode & !umask & 0o7777) as u16,
        uid: request.uid(),
        gid: request.gid(),
    }
}

fn reply_entry(reply: ReplyEntry, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
        Err(error) => reply.error(error),
    }
}

fn reply_attr(reply: ReplyAttr, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.attr(&TTL, &attr),
        Err(error) => reply.error(error),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(error) => reply.error(error),
    }
}

impl Filesystem for PowercutFilesystem {
    fn lookup(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.volume.lock().lookup(parent.0, name));
    }

    fn getattr(
        &self,
        _request: &Request,
        ino: INodeNo,
        _handle: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
        reply_attr(reply, self.volume.lock().getattr(ino.0));
    }

    fn setattr(
        &self,
        _request: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        handle: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = AttrChange {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        let handle = handle.map(|handle| handle.0);
        reply_attr(reply, self.volume.lock().setattr(ino.0, handle, change));
    }

    fn readlink(&self, _request: &Request, ino: INodeNo, reply: ReplyData) {
        match self.volume.lock().readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(error) => reply.error(error),
        }
    }

    /// Regular files only: nothing here needs devices, fifos or sockets.
    fn mknod(
        &self,
        request: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            reply.error(Errno::EPERM);
            return;
        }
        let creator = creator(request, mode, umask);
        reply_entry(reply, self.volume.lock().mknod(parent.0, name, creator));
    }

    fn mkdir(
        &self,
        request: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let creator = creator(request, mode, umask);
        reply_entry(reply, self.volume.lock().mkdir(parent.0, name, creator));
    }

    fn unlink(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.volume.lock().unlink(parent.0, name));
    }

    fn rmdir(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.volume.lock().rmdir(parent.0, name));
    }

    fn symlink(
        &self,
        request: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let creator = creator(request, 0o777, 0);
        let result = self
            .volume
            .lock()
            .symlink(parent.0, link_name, target.as_os_str(), creator);
        reply_entry(reply, result);
    }

    fn rename(
        &self,
        _request: &Request,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // RENAME_EXCHANGE and RENAME_WHITEOUT: nothing here uses them.
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let result = self
            .volume
            .lock()
            .rename(parent.0, name, new_parent.0, new_name, no_replace);
        reply_empty(reply, result);
    }

    fn link(
        &self,
        _request: &Request,
        ino: INodeNo,
        new_parent: INodeNo,
        new_name: &OsStr,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            self.volume.lock().link(ino.0, new_parent.0, new_name),
        );
    }

    fn open(&self, _request: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.volume.lock().open(ino.0) {
            Ok(handle) => reply.opened(FileHandle(handle), OPEN_FLAGS),
            Err(error) => reply.error(error),
        }
    }

    fn read(
        &self,
        _request: &Request,
        ino: INodeNo,
        handle: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self
            .volume
            .lock()
            .read(ino.0, handle.0, offset, size as usize)
        {
            Ok(bytes) => reply.data(&bytes),
            Err(error) => reply.error(error),
        }
    }

    fn write(
        &self,
        _request: &Request,
        ino: INodeNo,
        handle: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let append = flags.0 & libc::O_APPEND != 0;
        match self
            .volume
            .lock()
            .write(ino.0, handle.0, offset, data, append)
        {
            Ok(written) => reply.written(written),
            Err(error) => reply.error(error),
        }
    }

    /// `close` is not a sync: nothing to do.
    fn flush(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _handle: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _request: &Request,
        _ino: INodeNo,
        handle: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.volume.lock().release(handle.0);
        reply.ok();
    }

    /// `fsync` and `fdatasync` alike: contents, size and attributes become durable.
    fn fsync(
        &self,
        _request: &Request,
        ino: INodeNo,
        handle: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.volume.lock().sync_file(ino.0, handle.0));
    }

    fn readdir(
        &self,
        _request: &Request,
        ino: INodeNo,
        _handle: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = match self.volume.lock().readdir(ino.0) {
            Ok(listed) => listed,
            Err(error) => {
                reply.error(error);
                return;
            }
        };
        // An entry's offset is the position after it, where the next call resumes.
        for (position, entry) in listed.into_iter().enumerate().skip(offset as usize) {
            let full = reply.add(
                INodeNo(entry.ino),
                position as u64 + 1,
                entry.kind,
                &entry.name,
            );
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _request: &Request,
        ino: INodeNo,
        _handle: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.volume.lock().sync_dir(ino.0));
    }

    fn statfs(&self, _request: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let capacity = self.volume.lock().capacity();
        reply.statfs(
            capacity.blocks,
            capacity.free_blocks,
            capacity.free_blocks,
            capacity.files,
            capacity.free_files,
            capacity.block_size,
            capacity.name_max,
            capacity.block_size,
        );
    }

    /// No extended attributes are kept: every name is absent, and setting one is refused.
    fn setxattr(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOTSUP);
    }

    fn getxattr(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::NO_XATTR);
    }

    fn listxattr(&self, _request: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn removexattr(&self, _request: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::NO_XATTR);
    }

    fn create(
        &self,
        request: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let creator = creator(request, mode, umask);
        match self.volume.lock().create(parent.0, name, creator) {
            Ok((attr, handle)) => {
                reply.created(&TTL, &attr, GENERATION, FileHandle(handle), OPEN_FLAGS)
            }
            Err(error) => reply.error(error),
        }
    }

    fn fallocate(
        &self,
        _request: &Request,
        ino: INodeNo,
        handle: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = self
            .volume
            .lock()
            .fallocate(ino.0, handle.0, offset, length, mode);
        reply_empty(reply, result);
    }

    /// `SEEK_DATA`/`SEEK_HOLE`: `ENOSYS` makes the kernel answer them itself (the whole file as
    /// data), without the warning fuser's default logs.
    fn lseek(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _handle: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: fuser::ReplyLseek,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// `ENOSYS` makes the kernel copy through reads and writes, which the volume handles.
    fn copy_file_range(
        &self,
        _request: &Request,
        _ino_in: INodeNo,
        _handle_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _handle_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::ENOSYS);
    }
}
