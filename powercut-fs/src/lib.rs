//! powercut-fs: a FUSE filesystem in memory that keeps every write until the power is cut, and
//! then keeps only what was synced. The disk under the chaos run's power-cut nemesis (issue 14).
//!
//! What survives a cut (a strict POSIX filesystem; [`volume`](crate::volume) has the full rules):
//! - A file's contents, size and attributes as of its last `fsync` or `fdatasync`.
//! - A directory's entries (creates, renames, deletes, links) as of its last `fsync`. A file
//!   created and fsynced in a directory never synced is lost; a name synced for a file never
//!   synced comes back as an empty file; a rename between two directories needs both synced.
//! - Nothing else: `sync_file_range` (sled's flush), `sync`, `syncfs` and `close` make nothing
//!   durable.
//!
//! Every change shows at once through the mount (the live view); a cut replaces the live view
//! with the durable one. The kernel caches nothing a cut could make stale: zero entry and
//! attribute TTLs, direct I/O, no kept page cache ([`filesystem`](crate::filesystem)). Unlike
//! LazyFS, which loses unsynced data but passes names straight to the disk below it, names here
//! are lost too unless their directory was synced.
//!
//! The live and durable views share every unchanged block (copy-on-write, 4 KiB), so a file
//! synced over and over costs its size once; [`Mount::usage`] says what is held.
//!
//! Layout:
//! - `contents`: a file's bytes as shared copy-on-write blocks, and the gauge of their memory.
//! - `volume`: both views of every inode, the sync and cut rules; pure, no FUSE.
//! - `filesystem`: the FUSE requests, translated to the volume, with nothing cached.
//! - [`mount`]: [`Mount`], a mounted volume to cut and to drop (which unmounts).
//! - [`serve`](crate::serve()): the binary's loop (`src/bin/powercut-fs.rs`), with signals.
//!
//! Tests: `tests/semantics.rs` (each rule through the kernel), `tests/model.rs` (random
//! operations and syncs against a model of what must survive), `tests/binary.rs` (signals).
//! They skip, saying why, where `/dev/fuse` cannot be opened.

mod contents;
mod filesystem;
pub mod mount;
mod serve;
mod volume;

pub use mount::{Mount, MountError, fuse_unavailable};
pub use serve::serve;
pub use volume::{CutReport, Usage};
