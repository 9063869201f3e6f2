//! Fault injection for tests: named points in a leader's work on an order at which the executor
//! stops itself (SIGSTOP), so that a test can kill it or leave it paused past its lease exactly
//! there, rather than hoping a random signal lands in a window of a few milliseconds.
//!
//! With `--fault-points-file PATH` (env `EXECUTOR_FAULT_POINTS_FILE`) the executor reads the file
//! each time it reaches a [`FaultPoint`]; when one of its lines names that point, the executor
//! logs `stopping at fault point` (with the point, the order and the token) and stops. What
//! happens next is the test's doing: SIGKILL, or SIGCONT once the lease has passed. An empty or
//! missing file stops nothing; without the flag no file is read. Another process arms and
//! disarms a point by rewriting the file (write a temporary file, rename it over the path).
//!
//! Nothing here changes what the executor decides: it only adds a pause at a place where a
//! pause could happen anyway (a stopped process, a long garbage collection in a VM, a slow
//! disk), which is what the tests want to be sure of.

use std::path::PathBuf;

/// A place in the leader's work on one order, in the order they are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// The order was dequeued under the lease; nothing is executed yet.
    Dequeued,
    /// The execution's work is done; nothing is recorded yet.
    Executed,
    /// The execution is recorded; the order is not acknowledged yet.
    Recorded,
    /// The order is acknowledged; the lease is not given back yet.
    Acknowledged,
}

impl FaultPoint {
    /// The point's name as the file lists it.
    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::Dequeued => "dequeued",
            FaultPoint::Executed => "executed",
            FaultPoint::Recorded => "recorded",
            FaultPoint::Acknowledged => "acknowledged",
        }
    }
}

/// The file that arms fault points, if the executor was given one.
#[derive(Debug, Clone, Default)]
pub struct FaultPoints {
    file: Option<PathBuf>,
}

impl FaultPoints {
    pub fn new(file: Option<PathBuf>) -> Self {
        Self { file }
    }

    /// Stops this process if the file lists `point`; returns at once otherwise, and after a
    /// SIGCONT otherwise.
    pub async fn reach(&self, point: FaultPoint, order_id: &str, token: u64) {
        let Some(file) = &self.file else {
            return;
        };
        let file = file.clone();
        // Unreadable or missing: nothing is armed.
        let armed = tokio::task::spawn_blocking(move || std::fs::read_to_string(file))
            .await
            .is_ok_and(|read| {
                read.is_ok_and(|text| text.lines().any(|line| line.trim() == point.name()))
            });
        if !armed {
            return;
        }
        tracing::warn!(
            point = point.name(),
            order_id,
            token,
            "stopping at fault point"
        );
        // SAFETY: raise only sends a signal to this process; SIGSTOP cannot be caught, so no
        // handler of ours runs, and the process resumes here on SIGCONT.
        let raised = unsafe { libc::raise(libc::SIGSTOP) };
        if raised != 0 {
            tracing::error!(
                point = point.name(),
                error = %std::io::Error::last_os_error(),
                "cannot stop at the fault point"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_file_or_an_armed_point_nothing_stops() {
        FaultPoints::default()
            .reach(FaultPoint::Recorded, "o", 1)
            .await;
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("faults");
        let points = FaultPoints::new(Some(file.clone()));
        points.reach(FaultPoint::Recorded, "o", 1).await;
        std::fs::write(&file, "dequeued\nexecuted\n").expect("write");
        points.reach(FaultPoint::Recorded, "o", 1).await;
        points.reach(FaultPoint::Acknowledged, "o", 1).await;
    }
}
