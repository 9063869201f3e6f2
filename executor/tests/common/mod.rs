//! The executors' test harness: a three-node queue cluster (queue-raft's own harness) and three
//! real `order-executor` processes sharing one ledger file in a temporary directory. Every
//! process is killed when the harness is dropped; waits poll with a deadline.
//!
//! Tests using it run on Tokio's multi-thread runtime: starting a process blocks its thread.

// Each test binary compiles this module and uses only its part of it.
#![allow(dead_code)]

#[path = "../../../queue-raft/tests/common/cluster.rs"]
pub mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use bookstore_common::testing::Service;
use bookstore_proto as pb;
use cluster::{Cluster, wait_for};
use executor::Execution;
use queue_raft::{QueueClient, Role};
use tempfile::TempDir;

pub const EXECUTOR_IDS: [&str; 3] = ["executor-1", "executor-2", "executor-3"];

/// The flags every executor of a test gets, besides its id, the queue and the ledger.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub lease_ttl_ms: u64,
    /// One per executor, so executions of several lengths mix.
    pub execution_ms: [u64; 3],
    pub backoff_after_lead_ms: u64,
    pub poll_ms: u64,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            lease_ttl_ms: 1_500,
            execution_ms: [0, 10, 20],
            backoff_after_lead_ms: 100,
            poll_ms: 20,
        }
    }
}

/// Three executor processes and their shared ledger.
pub struct Executors {
    processes: BTreeMap<&'static str, Option<Service>>,
    /// The flags each executor was started with, to restart it alike.
    args: BTreeMap<&'static str, Vec<String>>,
    /// What each stopped executor logged before it was stopped.
    stopped_logs: BTreeMap<&'static str, Vec<String>>,
    /// Holds the ledger and the fault-point files; removed when the harness is dropped.
    dir: TempDir,
}

/// A signal the harness sends to an executor.
#[derive(Debug, Clone, Copy)]
pub enum Signal {
    Stop,
    Continue,
}

impl Executors {
    /// Starts the three executors against `cluster`, each on a free HTTP port, each with a
    /// fault-point file of its own (empty: see [`Executors::arm`]).
    pub fn start(cluster: &Cluster, options: &ExecutorOptions) -> Executors {
        let dir = TempDir::new().expect("temporary ledger directory");
        let ledger = dir.path().join("executions.jsonl");
        let args: BTreeMap<&'static str, Vec<String>> = EXECUTOR_IDS
            .iter()
            .zip(options.execution_ms)
            .map(|(id, execution_ms)| {
                let args = vec![
                    format!("--id={id}"),
                    format!("--queue-nodes={}", cluster.addrs().join(",")),
                    format!(
                        "--queue-token-file={}",
                        cluster.token_file(Role::Executor).display()
                    ),
                    format!("--lease-ttl-ms={}", options.lease_ttl_ms),
                    format!("--execution-ms={execution_ms}"),
                    format!("--backoff-after-lead-ms={}", options.backoff_after_lead_ms),
                    format!("--poll-ms={}", options.poll_ms),
                    format!("--ledger={}", ledger.display()),
                    format!(
                        "--fault-points-file={}",
                        dir.path().join(format!("faults-{id}")).display()
                    ),
                ];
                (*id, args)
            })
            .collect();
        let processes = args
            .iter()
            .map(|(id, args)| {
                let process =
                    tokio::task::block_in_place(|| Service::start("order-executor", args));
                (*id, Some(process))
            })
            .collect();
        Executors {
            processes,
            args,
            stopped_logs: BTreeMap::new(),
            dir,
        }
    }

    /// Starts executor `id` again (a new process, as after a crash), after it was killed.
    pub fn restart(&mut self, id: &str) {
        let (name, args) = self
            .args
            .iter()
            .find(|(name, _)| **name == id)
            .unwrap_or_else(|| panic!("no executor {id}"));
        let process = tokio::task::block_in_place(|| Service::start("order-executor", args));
        let slot = self
            .processes
            .get_mut(name)
            .expect("every executor has a slot");
        assert!(slot.is_none(), "{id} is still running");
        *slot = Some(process);
    }

    /// Makes every executor stop itself at fault point `point` (`dequeued`, `executed`,
    /// `recorded`, `acknowledged`), or at none with `None`: the files are replaced whole.
    pub fn arm(&self, point: Option<&str>) {
        for id in EXECUTOR_IDS {
            let path = self.dir.path().join(format!("faults-{id}"));
            let temporary = path.with_extension("tmp");
            std::fs::write(&temporary, point.unwrap_or_default()).expect("write a fault file");
            std::fs::rename(&temporary, &path).expect("rename the fault file into place");
        }
    }

    /// The executor whose process is stopped (SIGSTOP), if one is.
    pub fn stopped(&self) -> Option<&'static str> {
        self.processes.iter().find_map(|(id, process)| {
            let pid = process.as_ref()?.pid();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The state follows the command name, which is in parentheses.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            (state == 'T').then_some(*id)
        })
    }

    /// Sends `signal` to executor `id`.
    pub fn signal(&self, id: &str, signal: Signal) {
        let pid = self.process(id).pid().to_string();
        let name = match signal {
            Signal::Stop => "-STOP",
            Signal::Continue => "-CONT",
        };
        let sent = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {name} {pid} failed");
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.dir.path().join("executions.jsonl")
    }

    /// Every execution in the ledger, in the order written.
    pub fn ledger(&self) -> Vec<Execution> {
        executor::Ledger::read_all(&self.ledger_path()).expect("readable ledger")
    }

    /// Kills executor `id` with SIGKILL, as a crash would.
    pub fn kill(&mut self, id: &str) {
        if let Some(process) = self.take_process(id) {
            process.kill();
        }
    }

    /// Stops executor `id` with SIGTERM, waits until it logged `stopped` (so the harness keeps
    /// everything it logged while shutting down), and returns how it exited.
    pub async fn terminate(&mut self, id: &str) -> std::process::ExitStatus {
        let pid = self.process(id).pid().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        wait_for(Duration::from_secs(15), "the executor to stop", || {
            let stopped = self
                .log_lines(id)
                .iter()
                .any(|line| line["message"] == "stopped");
            async move { stopped.then_some(()) }
        })
        .await;
        let process = self
            .take_process(id)
            .unwrap_or_else(|| panic!("{id} is not running"));
        // Already exited: this only reaps it (a second SIGTERM to a zombie does nothing).
        tokio::task::block_in_place(|| process.terminate())
    }

    /// The HTTP base URL of executor `id`.
    pub fn url(&self, id: &str) -> String {
        self.process(id).url()
    }

    /// Every JSON log line of executor `id`, also of its runs that were stopped.
    pub fn log_lines(&self, id: &str) -> Vec<serde_json::Value> {
        let stopped = self.stopped_logs.get(id).into_iter().flatten().cloned();
        let running = self.processes[id]
            .as_ref()
            .map(Service::log_lines)
            .unwrap_or_default();
        stopped
            .chain(running)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect()
    }

    /// `(executor, order_id)` of every `order <id> executed by executor <id>` line logged.
    pub fn executions_logged(&self) -> Vec<(String, String)> {
        EXECUTOR_IDS
            .iter()
            .flat_map(|id| {
                self.log_lines(id).into_iter().filter_map(move |line| {
                    let order_id = line.get("order_id")?.as_str()?.to_owned();
                    let expected = format!("order {order_id} executed by executor {id}");
                    (line.get("message")?.as_str()? == expected).then(|| (id.to_string(), order_id))
                })
            })
            .collect()
    }

    fn process(&self, id: &str) -> &Service {
        self.processes[id]
            .as_ref()
            .unwrap_or_else(|| panic!("{id} is not running"))
    }

    /// Takes executor `id`'s process out of the harness, keeping what it logged so far.
    fn take_process(&mut self, id: &str) -> Option<Service> {
        let (name, slot) = self
            .processes
            .iter_mut()
            .find(|(name, _)| **name == id)
            .unwrap_or_else(|| panic!("no executor {id}"));
        let process = slot.take()?;
        self.stopped_logs
            .entry(name)
            .or_default()
            .extend(process.log_lines());
        Some(process)
    }
}

impl Drop for Executors {
    /// Kills every executor (each `Service` does on drop); when a test failed, first shows what
    /// each logged last.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (id, process) in &self.processes {
                if let Some(process) = process {
                    let lines = process.log_lines();
                    let tail = &lines[lines.len().saturating_sub(30)..];
                    eprintln!("--- {id} last lines:\n{}", tail.join("\n"));
                }
            }
        }
    }
}

/// Enqueues `count` orders named `order-000`.. with 1 to 5 books each (mixed, deterministic),
/// one at a time; returns each order's id and its number of books (its priority).
/// The ids of orders as [`enqueue_orders`] returns them.
pub fn ids_of(orders: &[(String, u32)]) -> Vec<String> {
    orders
        .iter()
        .map(|(order_id, _)| order_id.clone())
        .collect()
}

pub async fn enqueue_orders(client: &QueueClient, count: usize) -> Vec<(String, u32)> {
    let mut orders = Vec::with_capacity(count);
    for n in 0..count {
        let order_id = format!("order-{n:03}");
        let books = u32::try_from(n * 7 % 5 + 1).expect("at most 5 books");
        let answer = client
            .enqueue(cluster::order(&order_id, books))
            .await
            .unwrap_or_else(|error| panic!("enqueue {order_id}: {error}"));
        assert!(answer.newly_enqueued, "{order_id} was enqueued twice");
        orders.push((order_id, books));
    }
    orders
}

/// Waits until the cluster's leader counts `count` executed orders, then returns every order's
/// state, read linearizably.
pub async fn wait_until_executed(
    client: &QueueClient,
    order_ids: &[String],
    timeout: Duration,
) -> BTreeMap<String, pb::OrderState> {
    let count = order_ids.len() as u64;
    wait_for(timeout, "every order to be executed", || {
        let client = client.clone();
        async move {
            let statuses = client.cluster_status_all().await;
            statuses
                .into_iter()
                .filter_map(|(_, status)| status.ok())
                .any(|status| status.role == "leader" && status.executed_count >= count)
                .then_some(())
        }
    })
    .await;
    let mut states = BTreeMap::new();
    for order_id in order_ids {
        let state = client
            .get_order(order_id)
            .await
            .unwrap_or_else(|error| panic!("get {order_id}: {error}"))
            .unwrap_or_else(|| panic!("{order_id} is unknown to the queue"));
        states.insert(order_id.clone(), state);
    }
    states
}

/// Checks that every order in `states` is executed, exactly once: one execution record in the
/// cluster, one ledger line and one `executed` log line each, all three naming the same executor
/// (and the ledger the same token), and nothing else in the ledger.
pub fn assert_executed_exactly_once(
    states: &BTreeMap<String, pb::OrderState>,
    ledger: &[Execution],
    logged: &[(String, String)],
) {
    for (order_id, state) in states {
        assert_eq!(
            state.phase,
            pb::OrderPhase::Executed as i32,
            "{order_id} is not executed: {state:?}"
        );
        let record = state
            .execution
            .as_ref()
            .unwrap_or_else(|| panic!("{order_id} has no execution record: {state:?}"));
        assert_eq!(
            (record.executor_id.as_str(), record.token),
            (state.executor_id.as_str(), state.token),
            "{order_id}: the order shows another execution than its record"
        );
        let lines: Vec<&Execution> = ledger
            .iter()
            .filter(|line| &line.order_id == order_id)
            .collect();
        assert_eq!(lines.len(), 1, "{order_id} in the ledger: {lines:?}");
        assert_eq!(
            (lines[0].executor_id.as_str(), lines[0].token),
            (state.executor_id.as_str(), state.token),
            "{order_id}: the ledger and the cluster disagree on who executed it"
        );
        let logs: Vec<&(String, String)> = logged.iter().filter(|(_, id)| id == order_id).collect();
        assert_eq!(
            logs,
            [&(state.executor_id.clone(), order_id.clone())],
            "{order_id}: executed log lines"
        );
    }
    let known: BTreeSet<&String> = states.keys().collect();
    assert!(
        ledger.iter().all(|line| known.contains(&line.order_id)),
        "the ledger holds an unknown order"
    );
}

/// The order executing now (by the cluster's linearizable record), with its state.
pub async fn executing_order(client: &QueueClient, order_ids: &[String]) -> Option<pb::OrderState> {
    for order_id in order_ids {
        let state = client.get_order(order_id).await.ok()??;
        if state.phase == pb::OrderPhase::Executing as i32 {
            return Some(state);
        }
    }
    None
}
