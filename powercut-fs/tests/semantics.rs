//! Each durability rule of powercut-fs, tried through the kernel with the calls programs make:
//! what is synced survives a cut, what is not is gone, and nothing the kernel cached before a
//! cut shows after it. Also the calls sled and the snapshot code depend on, and the memory
//! accounting the chaos run reads.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

use common::{is_mount_point, mount_or_skip, names, sync_dir};
use powercut_fs::Mount;

const KIB: usize = 1024;

fn read(path: &std::path::Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

/// Compares large byte strings without printing them: the lengths and the first difference.
fn assert_bytes(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let first = actual.iter().zip(expected).position(|(a, b)| a != b);
    panic!(
        "{what}: {} bytes, {} expected; first difference at {first:?}",
        actual.len(),
        expected.len()
    );
}

fn exists(path: &std::path::Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(error) if error.kind() == ErrorKind::NotFound => false,
        Err(error) => panic!("stat {}: {error}", path.display()),
    }
}

#[test]
fn a_write_survives_a_cut_only_after_its_fsync_or_fdatasync() {
    let Some(fs) = mount_or_skip("a_write_survives_a_cut_only_after_its_fsync_or_fdatasync") else {
        return;
    };
    let mut by_fsync = File::create(fs.path("fsync")).expect("create");
    let mut by_fdatasync = File::create(fs.path("fdatasync")).expect("create");
    let mut never = File::create(fs.path("never")).expect("create");
    sync_dir(fs.mount.path());

    by_fsync.write_all(b"synced").expect("write");
    by_fsync.sync_all().expect("fsync");
    by_fdatasync.write_all(b"synced").expect("write");
    by_fdatasync.sync_data().expect("fdatasync");
    never.write_all(b"not synced").expect("write");
    for file in [&mut by_fsync, &mut by_fdatasync] {
        file.write_all(b", then not").expect("write");
    }
    assert_eq!(read(&fs.path("fsync")), b"synced, then not");
    drop((by_fsync, by_fdatasync, never));

    fs.mount.cut();
    assert_eq!(read(&fs.path("fsync")), b"synced");
    assert_eq!(read(&fs.path("fdatasync")), b"synced");
    assert_eq!(
        read(&fs.path("never")),
        b"",
        "its name was synced, its data never"
    );
}

#[test]
fn a_size_change_survives_a_cut_only_after_its_sync() {
    let Some(fs) = mount_or_skip("a_size_change_survives_a_cut_only_after_its_sync") else {
        return;
    };
    let path = fs.path("file");
    let file = File::create(&path).expect("create");
    sync_dir(fs.mount.path());
    file.write_all_at(b"0123456789", 0).expect("write");
    file.sync_data().expect("fdatasync");

    file.set_len(4).expect("truncate");
    drop(file);
    fs.mount.cut();
    assert_eq!(read(&path), b"0123456789", "the truncation was not synced");

    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.set_len(4).expect("truncate");
    file.sync_data().expect("fdatasync");
    file.set_len(64 * KIB as u64).expect("extend");
    drop(file);
    fs.mount.cut();
    assert_eq!(
        read(&path),
        b"0123",
        "the truncation was synced, the extension not"
    );
}

#[test]
fn a_create_survives_a_cut_only_after_its_directory_is_synced() {
    let Some(fs) = mount_or_skip("a_create_survives_a_cut_only_after_its_directory_is_synced")
    else {
        return;
    };
    let mut file = File::create(fs.path("synced-file-only")).expect("create");
    file.write_all(b"data").expect("write");
    file.sync_all().expect("fsync");
    fs::create_dir(fs.path("dir")).expect("mkdir");
    drop(file);
    fs.mount.cut();
    assert_eq!(names(fs.mount.path()), Vec::<String>::new());

    let mut file = File::create(fs.path("synced-both")).expect("create");
    file.write_all(b"data").expect("write");
    file.sync_all().expect("fsync");
    fs::create_dir(fs.path("dir")).expect("mkdir");
    sync_dir(fs.mount.path());
    drop(file);
    fs.mount.cut();
    assert_eq!(names(fs.mount.path()), ["dir", "synced-both"]);
    assert_eq!(read(&fs.path("synced-both")), b"data");
}

/// A file whose contents and name are both durable.
fn durable_file(fs: &common::TestMount, name: &str, data: &[u8]) {
    let mut file = File::create(fs.path(name)).expect("create");
    file.write_all(data).expect("write");
    file.sync_all().expect("fsync");
    sync_dir(fs.mount.path());
}

#[test]
fn a_rename_survives_a_cut_only_after_its_directory_is_synced() {
    let Some(fs) = mount_or_skip("a_rename_survives_a_cut_only_after_its_directory_is_synced")
    else {
        return;
    };
    durable_file(&fs, "old", b"data");
    fs::rename(fs.path("old"), fs.path("new")).expect("rename");
    assert_eq!(names(fs.mount.path()), ["new"]);
    fs.mount.cut();
    assert_eq!(names(fs.mount.path()), ["old"]);

    fs::rename(fs.path("old"), fs.path("new")).expect("rename");
    sync_dir(fs.mount.path());
    fs.mount.cut();
    assert_eq!(names(fs.mount.path()), ["new"]);
    assert_eq!(read(&fs.path("new")), b"data");
}

#[test]
fn an_unlink_survives_a_cut_only_after_its_directory_is_synced() {
    let Some(fs) = mount_or_skip("an_unlink_survives_a_cut_only_after_its_directory_is_synced")
    else {
        return;
    };
    durable_file(&fs, "file", b"data");
    fs::remove_file(fs.path("file")).expect("unlink");
    assert!(!exists(&fs.path("file")));
    fs.mount.cut();
    assert_eq!(read(&fs.path("file")), b"data");

    fs::remove_file(fs.path("file")).expect("unlink");
    sync_dir(fs.mount.path());
    fs.mount.cut();
    assert!(!exists(&fs.path("file")));
    assert_eq!(fs.mount.usage().resident_bytes, 0, "its blocks are freed");
}

#[test]
fn a_rename_over_an_existing_file_without_a_directory_sync_leaves_the_old_file() {
    let Some(fs) = mount_or_skip(
        "a_rename_over_an_existing_file_without_a_directory_sync_leaves_the_old_file",
    ) else {
        return;
    };
    durable_file(&fs, "current", b"version 1");
    // The usual atomic replace, less the directory sync.
    let mut temp = File::create(fs.path("current.tmp")).expect("create");
    temp.write_all(b"version 2").expect("write");
    temp.sync_all().expect("fsync");
    fs::rename(fs.path("current.tmp"), fs.path("current")).expect("rename");
    assert_eq!(read(&fs.path("current")), b"version 2");
    drop(temp);
    fs.mount.cut();
    assert_eq!(names(fs.mount.path()), ["current"]);
    assert_eq!(read(&fs.path("current")), b"version 1");

    // With it.
    let mut temp = File::create(fs.path("current.tmp")).expect("create");
    temp.write_all(b"version 2").expect("write");
    temp.sync_all().expect("fsync");
    fs::rename(fs.path("current.tmp"), fs.path("current")).expect("rename");
    sync_dir(fs.mount.path());
    drop(temp);
    fs.mount.cut();
    assert_eq!(names(fs.mount.path()), ["current"]);
    assert_eq!(read(&fs.path("current")), b"version 2");
}

#[test]
fn data_written_after_the_last_sync_is_gone_and_data_before_it_stays() {
    let Some(fs) =
        mount_or_skip("data_written_after_the_last_sync_is_gone_and_data_before_it_stays")
    else {
        return;
    };
    let path = fs.path("log");
    let file = File::create(&path).expect("create");
    sync_dir(fs.mount.path());
    let synced: Vec<u8> = (0..8 * KIB).map(|i| (i % 251) as u8).collect();
    file.write_all_at(&synced, 0).expect("write");
    file.sync_data().expect("fdatasync");
    file.write_all_at(&[0xee; 4 * KIB], 8 * KIB as u64)
        .expect("append");
    file.write_all_at(&[0xff; 100], 100).expect("overwrite");
    drop(file);
    fs.mount.cut();
    assert_bytes(&read(&path), &synced, "the log after the cut");
}

/// The first byte of `path` through a private read-only mapping (which goes through the page
/// cache even where reads do not).
fn first_byte_mapped(path: &std::path::Path) -> u8 {
    let file = File::open(path).expect("open");
    // SAFETY: a fresh read-only private mapping of one page of an open file at least that long,
    // read once and unmapped before the file is closed.
    unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            page,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let byte = *(page as *const u8);
        libc::munmap(page, 4096);
        byte
    }
}

#[test]
fn reads_after_a_cut_never_show_what_the_kernel_cached_before_it() {
    let Some(fs) = mount_or_skip("reads_after_a_cut_never_show_what_the_kernel_cached_before_it")
    else {
        return;
    };
    durable_file(&fs, "file", &[b'a'; 64 * KIB]);
    durable_file(&fs, "short", b"short");
    // Unsynced: new data, a longer size, a new file; each read and stat'ed, so that any page,
    // attribute or entry the kernel would keep is in its caches now.
    let file = OpenOptions::new()
        .write(true)
        .open(fs.path("file"))
        .expect("open");
    file.write_all_at(&[b'b'; 64 * KIB], 0).expect("overwrite");
    drop(file);
    let short = OpenOptions::new()
        .write(true)
        .open(fs.path("short"))
        .expect("open");
    short.write_all_at(&[b'c'; 256 * KIB], 0).expect("grow");
    drop(short);
    fs::write(fs.path("ghost"), b"boo").expect("create");
    for _ in 0..2 {
        assert_bytes(
            &read(&fs.path("file")),
            &[b'b'; 64 * KIB],
            "file before the cut",
        );
        assert_eq!(
            fs::metadata(fs.path("short")).expect("stat").len(),
            256 * KIB as u64
        );
        assert_eq!(read(&fs.path("short")).len(), 256 * KIB);
        assert_eq!(read(&fs.path("ghost")), b"boo");
        assert_eq!(names(fs.mount.path()), ["file", "ghost", "short"]);
        assert_eq!(first_byte_mapped(&fs.path("file")), b'b');
    }

    fs.mount.cut();
    assert_bytes(
        &read(&fs.path("file")),
        &[b'a'; 64 * KIB],
        "file after the cut",
    );
    assert_eq!(first_byte_mapped(&fs.path("file")), b'a');
    assert_eq!(fs::metadata(fs.path("short")).expect("stat").len(), 5);
    assert_bytes(&read(&fs.path("short")), b"short", "short after the cut");
    assert!(!exists(&fs.path("ghost")));
    assert_eq!(names(fs.mount.path()), ["file", "short"]);
    let file = File::open(fs.path("file")).expect("open");
    let mut middle = [0; 4];
    file.read_exact_at(&mut middle, 32 * KIB as u64)
        .expect("pread");
    assert_eq!(&middle, b"aaaa");
}

#[test]
fn a_handle_opened_before_a_cut_answers_eio() {
    let Some(fs) = mount_or_skip("a_handle_opened_before_a_cut_answers_eio") else {
        return;
    };
    durable_file(&fs, "file", b"before");
    let file = OpenOptions::new()
        .write(true)
        .open(fs.path("file"))
        .expect("open");
    fs.mount.cut();
    let error = file
        .write_all_at(b"after", 0)
        .expect_err("a write after the cut");
    assert_eq!(error.raw_os_error(), Some(libc::EIO));
    let error = file.sync_all().expect_err("an fsync after the cut");
    assert_eq!(error.raw_os_error(), Some(libc::EIO));
    drop(file);
    assert_eq!(read(&fs.path("file")), b"before");
}

#[test]
fn the_calls_sled_and_the_snapshot_code_make_work() {
    let Some(fs) = mount_or_skip("the_calls_sled_and_the_snapshot_code_make_work") else {
        return;
    };
    let db = fs.path("db");
    // As sled opens it: created if missing, never truncated.
    let open_db = || {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o644)
            .open(&db)
            .expect("open the db file")
    };
    let file = open_db();

    // sled locks its file with flock(LOCK_EX | LOCK_NB): a second holder must be refused.
    // SAFETY: flock on file descriptors owned by live `File`s.
    assert_eq!(
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let second = open_db();
    // SAFETY: as above.
    let refused = unsafe { libc::flock(second.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(refused, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EWOULDBLOCK)
    );
    drop(second);

    // pwrite and pread at offsets, across blocks and past a hole.
    file.write_all_at(b"head", 0).expect("pwrite");
    file.write_all_at(b"across a block edge", 4096 - 6)
        .expect("pwrite");
    file.write_all_at(b"tail", 1 << 20)
        .expect("pwrite past a hole");
    let mut buffer = vec![0; 19];
    file.read_exact_at(&mut buffer, 4096 - 6).expect("pread");
    assert_eq!(buffer, b"across a block edge");
    let mut hole = vec![1; 64];
    file.read_exact_at(&mut hole, 512 * 1024)
        .expect("pread a hole");
    assert!(hole.iter().all(|&byte| byte == 0));
    assert_eq!(file.metadata().expect("fstat").len(), (1 << 20) + 4);

    // fallocate: grow, then punch a hole without changing the size.
    // SAFETY: fallocate on a live descriptor.
    assert_eq!(
        unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, 2 << 20) },
        0
    );
    assert_eq!(file.metadata().expect("fstat").len(), 2 << 20);
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::fallocate(file.as_raw_fd(), punch, 0, 4096) },
        0
    );
    let mut start = [1; 4];
    file.read_exact_at(&mut start, 0).expect("pread");
    assert_eq!(start, [0; 4]);
    file.sync_all().expect("fsync");

    // O_APPEND writes go to the end, whatever the offset.
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(fs.path("append"))
        .expect("open for appending");
    log.write_all(b"one ").expect("append");
    log.write_all(b"two").expect("append");
    assert_eq!(read(&fs.path("append")), b"one two");

    // statfs: room to write, 4 KiB blocks.
    let mount_path = std::ffi::CString::new(fs.mount.path().as_os_str().as_encoded_bytes())
        .expect("a path without NUL");
    // SAFETY: statvfs fills the struct it is given; the path is NUL-terminated.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(mount_path.as_ptr(), &mut stats) }, 0);
    assert_eq!(stats.f_bsize, 4096);
    assert!(stats.f_bavail > 0);

    // The snapshot code: a temporary file, synced, renamed over the last one, directory synced.
    fs::write(fs.path("snapshot"), b"old").expect("write");
    let mut temp = File::create(fs.path("snapshot.tmp")).expect("create");
    temp.write_all(b"new").expect("write");
    temp.sync_all().expect("fsync");
    fs::rename(fs.path("snapshot.tmp"), fs.path("snapshot")).expect("rename over");
    sync_dir(fs.mount.path());

    // sled's blobs directory, and links.
    fs::create_dir_all(fs.path("blobs/nested")).expect("mkdir -p");
    fs::hard_link(fs.path("snapshot"), fs.path("blobs/link")).expect("link");
    std::os::unix::fs::symlink("../snapshot", fs.path("blobs/symlink")).expect("symlink");
    assert_eq!(read(&fs.path("blobs/symlink")), b"new");
    assert_eq!(fs::metadata(fs.path("snapshot")).expect("stat").nlink(), 2);
    fs::remove_dir(fs.path("blobs/nested")).expect("rmdir");
    assert_eq!(names(&fs.path("blobs")), ["link", "symlink"]);
    assert_eq!(
        names(fs.mount.path()),
        ["append", "blobs", "db", "snapshot"]
    );
}

#[test]
fn usage_counts_blocks_shared_by_both_views_once() {
    let Some(fs) = mount_or_skip("usage_counts_blocks_shared_by_both_views_once") else {
        return;
    };
    const MIB: u64 = 1 << 20;
    let file = File::create(fs.path("big")).expect("create");
    file.write_all_at(&vec![7; MIB as usize], 0).expect("write");
    let usage = fs.mount.usage();
    assert_eq!(
        (usage.live_bytes, usage.durable_bytes, usage.resident_bytes),
        (MIB, 0, MIB)
    );

    file.sync_all().expect("fsync");
    let usage = fs.mount.usage();
    assert_eq!(
        (usage.live_bytes, usage.durable_bytes, usage.resident_bytes),
        (MIB, MIB, MIB)
    );

    file.write_all_at(&[8; 4096], 4096)
        .expect("overwrite one block");
    let usage = fs.mount.usage();
    assert_eq!(
        usage.resident_bytes,
        MIB + 4096,
        "one block copied, not the file"
    );

    drop(file);
    let report = fs.mount.cut();
    assert_eq!(report.before.resident_bytes, MIB + 4096);
    assert_eq!(
        report.after.resident_bytes, 0,
        "the file's name was never synced"
    );
}

#[test]
fn a_mount_is_removed_when_its_owner_panics_and_can_be_made_again() {
    let Some(fs) = mount_or_skip("a_mount_is_removed_when_its_owner_panics_and_can_be_made_again")
    else {
        return;
    };
    let point = fs.outside().join("second");
    fs::create_dir(&point).expect("mkdir");
    let inner = point.clone();
    let outcome = std::panic::catch_unwind(move || {
        let _mount = Mount::new(&inner).expect("mount");
        assert!(is_mount_point(&inner));
        panic!("the owner panics while mounted");
    });
    assert!(outcome.is_err());
    assert!(!is_mount_point(&point), "unmounted while unwinding");

    let again = Mount::new(&point).expect("mount again");
    assert!(is_mount_point(&point));
    assert_eq!(names(&point), Vec::<String>::new(), "a fresh volume");
    again.unmount().expect("unmount");
    assert!(!is_mount_point(&point));
}
