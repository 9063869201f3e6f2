//! The `powercut-fs` binary: parses flags, sets up logging and runs [`powercut_fs::serve`] until
//! SIGTERM or Ctrl-C.

use std::path::PathBuf;

use clap::Parser;

/// Mounts an empty in-memory filesystem that keeps every write but loses, on a power cut,
/// everything not made durable: a file's data and size by its fsync or fdatasync, the names in a
/// directory (creates, renames, deletes) by an fsync of that directory. sync_file_range, sync and
/// syncfs make nothing durable.
#[derive(Debug, Parser)]
#[command(
    name = "powercut-fs",
    version,
    after_help = "\
Signals, to the process id it logs once mounted:
  SIGUSR1          cut the power: everything not synced is gone; stop the programs using the
                   mount first (handles opened before a cut answer EIO)
  SIGUSR2          log the bytes of file data held: live, durable, and resident in memory
  SIGTERM, SIGINT  unmount and exit

Needs /dev/fuse and fusermount3 (Debian package fuse3). As root the mount is removed even if
this process is killed (auto_unmount)."
)]
struct Args {
    /// The directory to mount at (it must exist; what it holds is hidden while mounted).
    mountpoint: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    bookstore_common::telemetry::init("powercut-fs");
    powercut_fs::serve(&args.mountpoint, bookstore_common::shutdown::signal()).await
}
