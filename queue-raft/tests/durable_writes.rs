//! Durable before acknowledged, seen from outside the process (issue 14, claim 1): a queue node
//! traced with `strace -f -ttt -T -y -e trace=fsync,fdatasync,sync_file_range` while clients
//! enqueue, first one order at a time, then many at once.
//!
//! The node runs alone (a one-node cluster), so its own log is the whole quorum: an enqueue can
//! be acknowledged only after that log holds it. Two things must show in the trace:
//! - every acknowledged enqueue has an `fsync` or `fdatasync` of the node's sled file (`db`)
//!   that began after the request was sent and ended before the answer arrived (sled's own
//!   `sync_file_range` does not count: it flushes neither the disk's cache nor the metadata);
//! - group commit: about one such sync per log entry appended, not one per order (many orders
//!   share an entry when many clients write at once);
//! - a log entry too large for sled's log goes to a file of its own under `blobs/` (an entry of
//!   a dozen orders at the node's bound, sent at once): that file, and then the directory, are
//!   synced before the log file, all before the acknowledgements.
//!
//! Needs `strace` (scripts/test installs it) and the right to trace a process this test started
//! (root, or `kernel.yama.ptrace_scope` 0). The trace's timestamps and the test's are both the
//! wall clock.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bookstore_common::testing::Service;
use bookstore_proto as pb;
use common::cluster::{free_port, order, wait_for};
use queue_raft::{QueueClient, QueueToken, Role};
use tempfile::TempDir;

/// Log entries large enough (about 300 KB: a dozen orders of about 25 KB, sent at once, which
/// the client sends in one call and the node appends as one entry) that sled stores each in a
/// blob file of its own. Each order stays within the node's bounds (50 lines, 512-byte titles).
const LARGE_ENTRIES: usize = 3;
const ORDERS_PER_LARGE_ENTRY: usize = 12;
const LARGE_ORDER_LINES: usize = queue_raft::state_machine::MAX_ORDER_LINES;
const LARGE_TITLE_BYTES: usize = 490;
const SEQUENTIAL_ORDERS: usize = 100;
const CONCURRENT_CALLERS: usize = 64;
const ORDERS_PER_CALLER: usize = 40;
/// sled's background flusher fsyncs `db` every 500 ms, whatever the load; such syncs are on
/// top of the one per entry.
const FLUSHER_INTERVAL: Duration = Duration::from_millis(500);
const STARTUP: Duration = Duration::from_secs(30);

/// Microseconds since the Unix epoch, the unit of `strace -ttt`.
fn now_us() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970");
    u64::try_from(since.as_micros()).expect("microseconds fit in u64")
}

/// One enqueue as the client saw it: when it was sent and when its acknowledgement arrived.
#[derive(Debug, Clone, Copy)]
struct Acknowledged {
    sent_us: u64,
    acked_us: u64,
}

/// One sync call the trace shows.
#[derive(Debug, Clone)]
struct SyncCall {
    name: String,
    /// The file it synced, as strace resolved the descriptor (`-y`).
    path: String,
    start_us: u64,
    end_us: u64,
    succeeded: bool,
}

/// `1700000000.123456` as microseconds.
fn parse_timestamp(text: &str) -> Option<u64> {
    let (seconds, fraction) = text.split_once('.')?;
    let micros: u64 = format!("{fraction:0<6}")[..6].parse().ok()?;
    Some(seconds.parse::<u64>().ok()? * 1_000_000 + micros)
}

/// The `<0.000123>` duration at the end of a finished call, as microseconds.
fn parse_duration(line: &str) -> Option<u64> {
    let inner = line.trim_end().strip_suffix('>')?;
    let (_, duration) = inner.rsplit_once('<')?;
    parse_timestamp(duration)
}

/// Whether a finished call's line (`... = 0 <0.000123>`) reports success.
fn returned_zero(line: &str) -> bool {
    line.contains(") = 0 ")
}

/// The sync calls in `strace -f -ttt -T -y -o FILE` output. A call interrupted by another
/// thread's line comes in two parts, `NAME(ARGS <unfinished ...>` and
/// `<... NAME resumed>) = RESULT <DURATION>`, joined here by thread id.
fn parse_trace(trace: &str) -> Vec<SyncCall> {
    let mut calls = Vec::new();
    let mut unfinished: HashMap<String, SyncCall> = HashMap::new();
    for line in trace.lines() {
        // `PID  SECONDS.MICROS CALL...`, the thread id padded with spaces.
        let Some((thread, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((timestamp, rest)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let Some(start_us) = parse_timestamp(timestamp) else {
            continue;
        };
        if rest.starts_with("<... ") {
            if let Some(mut call) = unfinished.remove(thread) {
                call.end_us = call.start_us + parse_duration(rest).unwrap_or(0);
                call.succeeded = returned_zero(rest);
                calls.push(call);
            }
            continue;
        }
        let Some((name, arguments)) = rest.split_once('(') else {
            continue;
        };
        if !["fsync", "fdatasync", "sync_file_range"].contains(&name) {
            continue;
        }
        // `9</path/to/db>, ...`: the path between the first `<` and the next `>`.
        let path = arguments
            .split_once('<')
            .and_then(|(_, after)| after.split_once('>'))
            .map_or_else(String::new, |(path, _)| path.to_owned());
        let mut call = SyncCall {
            name: name.to_owned(),
            path,
            start_us,
            end_us: start_us,
            succeeded: false,
        };
        if rest.ends_with("<unfinished ...>") {
            unfinished.insert(thread.to_owned(), call);
        } else {
            call.end_us = start_us + parse_duration(rest).unwrap_or(0);
            call.succeeded = returned_zero(rest);
            calls.push(call);
        }
    }
    calls
}

/// `strace` attached to a running process; detached (SIGINT) and reaped by [`Tracer::finish`]
/// or on drop.
struct Tracer {
    child: Child,
    output: PathBuf,
}

impl Tracer {
    /// Attaches to every thread of `pid`, and to every thread it starts later; returns once
    /// strace says it attached to all the threads the process has now.
    fn attach(pid: u32, output: &Path) -> Tracer {
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("list the node's threads")
            .count();
        let mut child = Command::new("strace")
            .args([
                "-f",
                "-ttt",
                "-T",
                "-y",
                "-e",
                "trace=fsync,fdatasync,sync_file_range",
            ])
            .arg("-o")
            .arg(output)
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run strace ({error}): install it (scripts/test does)")
            });
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines, attached) = mpsc::channel();
        // Ends when strace exits and its stderr closes.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        let mut tracer = Tracer {
            child,
            output: output.to_owned(),
        };
        // strace says `Process N attached with K threads` at once, or (older versions) one
        // `Process N attached` line per thread.
        let attached_to = |lines: &[String]| -> usize {
            lines
                .iter()
                .filter(|line| line.contains("attached"))
                .map(|line| {
                    line.split_once(" attached with ")
                        .and_then(|(_, rest)| rest.split_whitespace().next())
                        .and_then(|count| count.parse().ok())
                        .unwrap_or(1)
                })
                .sum()
        };
        let mut seen = Vec::new();
        while attached_to(&seen) < threads {
            match attached.recv_timeout(STARTUP) {
                Ok(line) => seen.push(line),
                Err(_) => {
                    tracer.stop();
                    panic!(
                        "strace did not attach to the node's {threads} threads:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
        tracer
    }

    /// Detaches from the node and returns the sync calls traced.
    fn finish(mut self) -> Vec<SyncCall> {
        self.stop();
        let trace = std::fs::read_to_string(&self.output).expect("read the trace");
        parse_trace(&trace)
    }

    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // strace detaches from the traced process on SIGINT and exits.
            let _ = Command::new("kill")
                .arg("-INT")
                .arg(self.child.id().to_string())
                .status();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The queue token of each role, written into `secrets`; the admin's, which the test presents.
fn write_queue_tokens(secrets: &Path) -> QueueToken {
    for role in Role::ALL {
        std::fs::write(
            secrets.join(role.name()),
            format!("a-{}-token-for-the-strace-test\n", role.name()),
        )
        .expect("write a queue token");
    }
    QueueToken::from_file(&secrets.join(Role::Admin.name())).expect("the admin token")
}

/// A one-node queue cluster in `data`, leading, with the secret and tokens in `secrets`; and
/// its address.
async fn start_lone_node(data: &TempDir, secrets: &Path) -> (Service, String) {
    let secret_file = secrets.join("cluster-secret");
    let token = write_queue_tokens(secrets);
    let mut last_error = None;
    for _ in 0..5 {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let args = vec![
            "--id=1".to_owned(),
            format!("--listen={addr}"),
            format!("--peers=1={addr}"),
            format!("--data-dir={}", data.path().display()),
            format!("--cluster-secret-file={}", secret_file.display()),
            format!(
                "--orchestrator-token-file={}",
                secrets.join(Role::Orchestrator.name()).display()
            ),
            format!(
                "--executor-token-file={}",
                secrets.join(Role::Executor.name()).display()
            ),
            format!(
                "--admin-token-file={}",
                secrets.join(Role::Admin.name()).display()
            ),
        ];
        match tokio::task::block_in_place(|| Service::try_start_with_args("queue-node", &args)) {
            Ok(node) => {
                let client = QueueClient::new(vec![addr.clone()], token.clone())
                    .expect("client of the node");
                wait_for(STARTUP, "the lone node to lead", || {
                    let (client, addr) = (client.clone(), addr.clone());
                    async move {
                        let status = client.cluster_status_of(&addr).await.ok()?;
                        (status.role == "leader").then_some(())
                    }
                })
                .await;
                return (node, addr);
            }
            Err(error) => last_error = Some(error),
        }
    }
    panic!("the node did not start: {last_error:?}");
}

async fn enqueue_timed(client: &QueueClient, order_id: String) -> Acknowledged {
    enqueue_order_timed(client, order(&order_id, 1)).await
}

async fn enqueue_order_timed(client: &QueueClient, order: pb::QueuedOrder) -> Acknowledged {
    let sent_us = now_us();
    let order_id = order.order_id.clone();
    client
        .enqueue(order)
        .await
        .unwrap_or_else(|error| panic!("enqueue {order_id}: {error}"));
    Acknowledged {
        sent_us,
        acked_us: now_us(),
    }
}

/// The acknowledgements with no sync of `log` inside their window, from `syncs`.
fn unsynced<'a>(acknowledged: &'a [Acknowledged], syncs: &[&SyncCall]) -> Vec<&'a Acknowledged> {
    acknowledged
        .iter()
        .filter(|ack| {
            !syncs
                .iter()
                .any(|sync| sync.start_us >= ack.sent_us && sync.end_us <= ack.acked_us)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_enqueue_follows_a_real_sync_of_the_log() {
    let data = TempDir::new().expect("temporary data directory");
    let secrets = TempDir::new().expect("temporary secrets directory");
    let secret_file = secrets.path().join("cluster-secret");
    std::fs::write(&secret_file, "a-secret-for-the-strace-test\n").expect("write the secret");
    let (node, addr) = start_lone_node(&data, secrets.path()).await;
    let log_file = data
        .path()
        .canonicalize()
        .expect("the data directory's real path")
        .join("db");
    let client = QueueClient::new(
        vec![addr.clone()],
        QueueToken::from_file(&secrets.path().join(Role::Admin.name())).expect("the admin token"),
    )
    .expect("client of the node");

    let trace_dir = TempDir::new().expect("temporary trace directory");
    let tracer = Tracer::attach(node.pid(), &trace_dir.path().join("strace.out"));

    let mut large = Vec::new();
    for entry in 0..LARGE_ENTRIES {
        let orders = (0..ORDERS_PER_LARGE_ENTRY).map(|n| {
            let mut order = order(&format!("large-{entry}-{n}"), 1);
            order.items = (0..LARGE_ORDER_LINES)
                .map(|line| pb::QueueItem {
                    title: format!("{line:02}{}", "x".repeat(LARGE_TITLE_BYTES)),
                    quantity: 1,
                })
                .collect();
            enqueue_order_timed(&client, order)
        });
        large.extend(futures::future::join_all(orders).await);
    }

    let mut acknowledged = Vec::new();
    for n in 0..SEQUENTIAL_ORDERS {
        acknowledged.push(enqueue_timed(&client, format!("alone-{n}")).await);
    }

    let entries_before = client
        .cluster_status_of(&addr)
        .await
        .expect("status")
        .last_log_index;
    let concurrent_from_us = now_us();
    let callers: Vec<_> = (0..CONCURRENT_CALLERS)
        .map(|caller| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut acks = Vec::new();
                for n in 0..ORDERS_PER_CALLER {
                    acks.push(enqueue_timed(&client, format!("together-{caller}-{n}")).await);
                }
                acks
            })
        })
        .collect();
    let mut concurrent = Vec::new();
    for caller in callers {
        concurrent.extend(caller.await.expect("a caller's task"));
    }
    let concurrent_until_us = now_us();
    let entries = client
        .cluster_status_of(&addr)
        .await
        .expect("status")
        .last_log_index
        - entries_before;
    acknowledged.extend(&concurrent);
    acknowledged.extend(&large);

    let calls = tracer.finish();
    let log_path = log_file.to_string_lossy();
    let count = |name: &str| {
        calls
            .iter()
            .filter(|call| call.name == name && call.path == log_path)
            .count()
    };
    eprintln!(
        "traced on {log_path}: {} fsync, {} fdatasync, {} sync_file_range; {} other sync calls; \
         {} enqueues acknowledged",
        count("fsync"),
        count("fdatasync"),
        count("sync_file_range"),
        calls.iter().filter(|call| call.path != log_path).count(),
        acknowledged.len(),
    );
    let log_syncs: Vec<&SyncCall> = calls
        .iter()
        .filter(|call| {
            call.succeeded
                && call.path == log_path
                && matches!(call.name.as_str(), "fsync" | "fdatasync")
        })
        .collect();

    let missing = unsynced(&acknowledged, &log_syncs);
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged enqueues had no fsync/fdatasync of {log_path} between request \
         and answer (first: {:?}); the trace shows {} such syncs in all",
        missing.len(),
        acknowledged.len(),
        missing.first(),
        log_syncs.len()
    );

    let concurrent_syncs = log_syncs
        .iter()
        .filter(|sync| sync.start_us >= concurrent_from_us && sync.end_us <= concurrent_until_us)
        .count() as u64;
    let window = Duration::from_micros(concurrent_until_us - concurrent_from_us);
    let flusher_syncs = (window.as_millis() / FLUSHER_INTERVAL.as_millis()) as u64 + 2;
    let orders = (CONCURRENT_CALLERS * ORDERS_PER_CALLER) as u64;
    eprintln!(
        "{orders} orders from {CONCURRENT_CALLERS} callers in {window:?}: {entries} log entries, \
         {concurrent_syncs} syncs of the log"
    );
    assert!(
        concurrent_syncs <= entries + flusher_syncs,
        "{concurrent_syncs} syncs for {entries} entries: more than one per group-committed batch"
    );
    assert!(
        entries < orders,
        "{orders} orders took {entries} entries: no group commit happened"
    );

    let blobs_dir = log_file.with_file_name("blobs");
    let blobs_path = blobs_dir.to_string_lossy();
    let blob_files = std::fs::read_dir(&blobs_dir)
        .expect("list sled's blobs")
        .count();
    assert!(
        blob_files > 0,
        "the large entries made no blob file, so this test did not test blobs"
    );
    let synced = |path_matches: &dyn Fn(&str) -> bool| -> Vec<&SyncCall> {
        calls
            .iter()
            .filter(|call| call.succeeded && call.name == "fsync" && path_matches(&call.path))
            .collect()
    };
    let blob_syncs = synced(&|path| path.starts_with(&format!("{blobs_path}/")));
    let blob_dir_syncs = synced(&|path| path == blobs_path);
    eprintln!(
        "{blob_files} blob files at the end; {} fsync of blob files, {} of {blobs_path}",
        blob_syncs.len(),
        blob_dir_syncs.len()
    );
    for ack in &large {
        let within =
            |sync: &&&SyncCall| sync.start_us >= ack.sent_us && sync.end_us <= ack.acked_us;
        let in_order = blob_syncs.iter().filter(within).any(|blob| {
            blob_dir_syncs.iter().filter(within).any(|dir| {
                dir.start_us >= blob.end_us
                    && log_syncs
                        .iter()
                        .filter(within)
                        .any(|log| log.start_us >= dir.end_us)
            })
        });
        assert!(
            in_order,
            "a large order was acknowledged ({ack:?}) without a sync of a blob file, then of \
             {blobs_path}, then of the log, in between"
        );
    }
}
