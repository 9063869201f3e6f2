//! The `powercut-fs` binary, for use by hand: SIGUSR1 cuts the power, SIGUSR2 logs the memory
//! held, SIGTERM unmounts and exits 0; killed outright, it leaves no mount behind (as root).

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{is_mount_point, sync_dir};
use tempfile::TempDir;

const DEADLINE: Duration = Duration::from_secs(20);

/// The binary, killed (by its PID) and reaped when the test ends, however it ends.
struct Running(Child);

impl Running {
    fn start(mount_point: &Path, log: &Path) -> Self {
        let log = File::create(log).expect("create the log file");
        let child = Command::new(env!("CARGO_BIN_EXE_powercut-fs"))
            .arg(mount_point)
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start powercut-fs");
        Self(child)
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("a pid fits in pid_t");
        // SAFETY: kill on the pid of a child this test started and has not reaped yet.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "send signal {signal}"
        );
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for powercut-fs") {
                return status;
            }
            assert!(Instant::now() < deadline, "powercut-fs did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Polls `condition` until it holds, failing after the deadline with `what`.
fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory with an empty mount point in it, or `None` where FUSE is unavailable.
fn mount_point_or_skip(test: &str) -> Option<(TempDir, std::path::PathBuf)> {
    if let Some(reason) = powercut_fs::fuse_unavailable() {
        eprintln!("skipping {test}: {reason}");
        return None;
    }
    let dir = TempDir::new().expect("temporary directory");
    let point = dir.path().join("mnt");
    fs::create_dir(&point).expect("create the mount point");
    Some((dir, point))
}

#[test]
fn sigusr1_cuts_the_power_and_sigterm_unmounts() {
    let Some((dir, point)) = mount_point_or_skip("sigusr1_cuts_the_power_and_sigterm_unmounts")
    else {
        return;
    };
    let log = dir.path().join("powercut-fs.log");
    let mut running = Running::start(&point, &log);
    wait_until("it is mounted", || is_mount_point(&point));

    let mut kept = File::create(point.join("kept")).expect("create");
    kept.write_all(b"synced").expect("write");
    kept.sync_all().expect("fsync");
    sync_dir(&point);
    fs::write(point.join("lost"), b"not synced").expect("write");
    drop(kept);

    running.signal(libc::SIGUSR1);
    wait_until("the unsynced file is gone", || !point.join("lost").exists());
    assert_eq!(fs::read(point.join("kept")).expect("read"), b"synced");
    running.signal(libc::SIGUSR2);
    wait_until("the memory held is logged", || {
        fs::read_to_string(&log).is_ok_and(|text| text.contains("memory held"))
    });

    running.signal(libc::SIGTERM);
    let status = running.wait();
    assert!(status.success(), "powercut-fs exited with {status}");
    assert!(!is_mount_point(&point), "unmounted on SIGTERM");
    let text = fs::read_to_string(&log).expect("read the log");
    assert!(text.contains("power cut"), "the cut is logged:\n{text}");
    assert!(text.contains("unmounted"), "the unmount is logged:\n{text}");
}

#[test]
fn a_killed_binary_leaves_no_mount_behind() {
    let Some((dir, point)) = mount_point_or_skip("a_killed_binary_leaves_no_mount_behind") else {
        return;
    };
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping a_killed_binary_leaves_no_mount_behind: auto_unmount needs root");
        return;
    }
    let mut running = Running::start(&point, &dir.path().join("powercut-fs.log"));
    wait_until("it is mounted", || is_mount_point(&point));
    running.signal(libc::SIGKILL);
    running.wait();
    wait_until("fusermount3 has unmounted it", || !is_mount_point(&point));
}
