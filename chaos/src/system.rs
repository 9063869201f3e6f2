//! The whole system as a run starts it, every process from the binaries in `target/<profile>`
//! with its log and data under the run's directory: the three backends and the orchestrator in
//! the services' namespace (the backends on its loopback, on their usual ports), each queue node
//! and each executor in a namespace of its own, all on the run's bridge. Every address is fixed
//! for the run, so that a process the nemesis kills comes back where the others look for it.
//!
//! Each queue node's data directory is a powercut-fs mount served by this process, which keeps
//! every write in memory until it is synced, so that the nemesis can cut a node's power: kill it,
//! throw away everything it had not synced, start it again on what survived. Each queue node
//! reads its wall clock through an offset file of the run's (`--clock-offset-file`), which the
//! nemesis rewrites to skew a node's clock or make it jump.

use std::path::{Path, PathBuf};

use anyhow::Context;
use powercut_fs::Mount;
use queue_raft::client_auth::QueueToken;

use crate::history::ProcessExit;
use crate::network::{Layout, Role};
use crate::processes::{ProcessSpec, Supervised, log_tail};

/// How many queue nodes and executors run.
pub const QUEUE_NODES: u64 = 3;
pub const EXECUTOR_COUNT: u64 = 3;
/// Every queue node listens on this port, each on its own address in its own namespace.
pub const QUEUE_PORT: u16 = 50061;
pub const ORCHESTRATOR_PORT: u16 = 8081;
/// The backends, on the services' loopback, by name and port.
const BACKENDS: [(&str, u16); 3] = [
    ("fraud-detection", 50051),
    ("transaction-verification", 50052),
    ("suggestions", 50053),
];
/// The names of the backends' processes, as the nemesis kills them.
pub const BACKEND_NAMES: [&str; 3] = [BACKENDS[0].0, BACKENDS[1].0, BACKENDS[2].0];

/// Timings that make faults show within a short run: snapshots and log purges every few
/// hundred entries, short executions so that executors keep up with the clients.
const SNAPSHOT_LOGS: &str = "200";
const LOGS_TO_KEEP: &str = "50";
const EXECUTION_MS: &str = "40";
const BACKOFF_AFTER_LEAD_MS: &str = "60";
const POLL_MS: &str = "25";
const LEASE_TTL_MS: &str = "2000";
/// Far above what the clients send per card (each order has its own card): the velocity rule
/// must never reject an order whose first attempt may already be enqueued.
const VELOCITY_MAX_ORDERS: &str = "1000000";

/// Where the system's pieces live on disk.
#[derive(Debug, Clone)]
pub struct SystemPaths {
    /// `target/debug` or `target/release`.
    pub binaries: PathBuf,
    pub run_dir: PathBuf,
}

impl SystemPaths {
    pub fn logs(&self) -> PathBuf {
        self.run_dir.join("logs")
    }

    /// Where the queue nodes' data is kept after the run (the disks themselves are in memory).
    pub fn data(&self) -> PathBuf {
        self.run_dir.join("data")
    }

    /// Where the queue nodes' powercut-fs disks are mounted during the run.
    pub fn disks(&self) -> PathBuf {
        self.run_dir.join("disks")
    }

    /// The file holding queue node `node`'s wall-clock offset, in milliseconds.
    pub fn clock_offset(&self, node: u64) -> PathBuf {
        self.run_dir
            .join("clocks")
            .join(format!("queue-{node}.offset"))
    }

    pub fn ledger(&self, executor: u64) -> PathBuf {
        self.run_dir
            .join("ledgers")
            .join(format!("executor-{executor}.jsonl"))
    }
}

/// The queue's client tokens of the run, one per role, each a fresh random value in a file of
/// the run's directory: the queue nodes accept them, each client presents its role's.
#[derive(Debug, Clone)]
pub struct QueueTokenFiles {
    pub orchestrator: PathBuf,
    pub executor: PathBuf,
    /// The chaos run's own reads (the drain, the checker's final states) need the lease tokens,
    /// which only the executor and admin roles see.
    pub admin: PathBuf,
}

impl QueueTokenFiles {
    /// Writes three fresh tokens into `dir` (created if missing).
    pub fn create(dir: &Path) -> anyhow::Result<QueueTokenFiles> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let write = |role: &str| {
            let path = dir.join(role);
            std::fs::write(&path, format!("{}\n", uuid::Uuid::new_v4().simple()))
                .with_context(|| format!("cannot write {}", path.display()))?;
            anyhow::Ok(path)
        };
        Ok(QueueTokenFiles {
            orchestrator: write("orchestrator")?,
            executor: write("executor")?,
            admin: write("admin")?,
        })
    }

    /// The token in `path`, as a client presents it.
    pub fn load(path: &Path) -> anyhow::Result<QueueToken> {
        QueueToken::from_file(path).with_context(|| format!("the queue token {}", path.display()))
    }
}

/// The running system. Dropping it kills every process, then unmounts the queue nodes' disks.
#[derive(Debug)]
pub struct System {
    /// Every process: the backends, the orchestrator, the queue nodes, the executors. Dropped
    /// before the disks, so that no process is left on an unmounted directory.
    processes: Vec<Supervised>,
    /// Each queue node's data directory, node 1 first.
    disks: Vec<Mount>,
    paths: SystemPaths,
    pub orchestrator_url: String,
    /// `host:port` of every queue node, node 1 first.
    pub queue_addrs: Vec<String>,
    pub ledgers: Vec<PathBuf>,
}

impl System {
    /// Starts everything and waits until each service listens; the caller waits for a Raft
    /// leader before sending orders.
    pub async fn start(
        paths: &SystemPaths,
        layout: &Layout,
        cluster_secret: &str,
        tokens: &QueueTokenFiles,
    ) -> anyhow::Result<System> {
        for dir in [
            paths.logs(),
            paths.disks(),
            paths.run_dir.join("ledgers"),
            paths.run_dir.join("clocks"),
        ] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let secret_env = vec![("QUEUE_CLUSTER_SECRET".to_owned(), cluster_secret.to_owned())];
        let mut started = 0usize;
        let mut spec = |name: &str, program: &str, role: Role, args: Vec<String>| {
            started += 1;
            anyhow::Ok(ProcessSpec {
                name: name.to_owned(),
                program: paths.binaries.join(program),
                args,
                envs: secret_env.clone(),
                namespace: Some(layout.member(role)?.namespace.clone()),
                log: paths.logs().join(format!("{name}.log")),
                // Half the processes begin at debug level, half at info.
                debug_first: started.is_multiple_of(2),
            })
        };
        let mut processes = Vec::new();

        let services_addr = layout.member(Role::Services)?.addr;
        for (name, port) in BACKENDS {
            let mut args = vec![
                format!("--listen=127.0.0.1:{port}"),
                "--metrics-listen=off".to_owned(),
            ];
            if name == "fraud-detection" {
                args.push(format!("--velocity-max-orders={VELOCITY_MAX_ORDERS}"));
            }
            processes.push(Supervised::spawn(spec(name, name, Role::Services, args)?)?);
        }

        let queue_addrs: Vec<String> = layout
            .queue_nodes()
            .map(|node| format!("{}:{QUEUE_PORT}", node.addr))
            .collect();
        let node_ids: Vec<u64> = layout
            .queue_nodes()
            .filter_map(|node| match node.role {
                Role::QueueNode(node_id) => Some(node_id),
                _ => None,
            })
            .collect();
        let peers = node_ids
            .iter()
            .zip(&queue_addrs)
            .map(|(node_id, addr)| format!("{node_id}={addr}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut disks = Vec::new();
        for (&node_id, addr) in node_ids.iter().zip(&queue_addrs) {
            let role = Role::QueueNode(node_id);
            let name = role.name();
            let data_dir = paths.disks().join(&name);
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            disks.push(Mount::new(&data_dir).with_context(|| {
                format!(
                    "cannot mount powercut-fs at {} (the power-cut nemesis's disk)",
                    data_dir.display()
                )
            })?);
            let args = vec![
                format!("--id={node_id}"),
                format!("--listen={addr}"),
                "--metrics-listen=off".to_owned(),
                format!("--peers={peers}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--snapshot-logs={SNAPSHOT_LOGS}"),
                format!("--logs-to-keep={LOGS_TO_KEEP}"),
                format!(
                    "--clock-offset-file={}",
                    paths.clock_offset(node_id).display()
                ),
                format!(
                    "--orchestrator-token-file={}",
                    tokens.orchestrator.display()
                ),
                format!("--executor-token-file={}", tokens.executor.display()),
                format!("--admin-token-file={}", tokens.admin.display()),
            ];
            processes.push(Supervised::spawn(spec(&name, "queue-node", role, args)?)?);
        }

        let queue_nodes_flag = format!("--queue-nodes={}", queue_addrs.join(","));
        let backend_flags = [
            "--fraud-detection-addr",
            "--transaction-verification-addr",
            "--suggestions-addr",
        ]
        .iter()
        .zip(BACKENDS)
        .map(|(flag, (_, port))| format!("{flag}=http://127.0.0.1:{port}"));
        let orchestrator_args = [
            format!("--listen={services_addr}:{ORCHESTRATOR_PORT}"),
            "--metrics-listen=off".to_owned(),
            format!("--queue-token-file={}", tokens.orchestrator.display()),
        ]
        .into_iter()
        .chain(backend_flags)
        .chain([queue_nodes_flag.clone()])
        .collect();
        processes.push(Supervised::spawn(spec(
            "orchestrator",
            "orchestrator",
            Role::Services,
            orchestrator_args,
        )?)?);

        let mut ledgers = Vec::new();
        for number in 1..=EXECUTOR_COUNT {
            let name = format!("executor-{number}");
            let ledger = paths.ledger(number);
            let args = vec![
                "--listen=127.0.0.1:0".to_owned(),
                format!("--id={name}"),
                queue_nodes_flag.clone(),
                format!("--queue-token-file={}", tokens.executor.display()),
                format!("--ledger={}", ledger.display()),
                format!("--execution-ms={EXECUTION_MS}"),
                format!("--backoff-after-lead-ms={BACKOFF_AFTER_LEAD_MS}"),
                format!("--poll-ms={POLL_MS}"),
                format!("--lease-ttl-ms={LEASE_TTL_MS}"),
            ];
            processes.push(Supervised::spawn(spec(
                &name,
                "order-executor",
                Role::Executor(number),
                args,
            )?)?);
            ledgers.push(ledger);
        }
        for process in &mut processes {
            process.wait_listening(0).await?;
        }
        Ok(System {
            processes,
            disks,
            paths: paths.clone(),
            orchestrator_url: format!("http://{services_addr}:{ORCHESTRATOR_PORT}"),
            queue_addrs,
            ledgers,
        })
    }

    /// The process named `name` (`queue-N`, `executor-N`, `orchestrator`, a backend's name).
    pub fn process(&mut self, name: &str) -> anyhow::Result<&mut Supervised> {
        self.processes
            .iter_mut()
            .find(|process| process.name() == name)
            .with_context(|| format!("no process named {name}"))
    }

    /// Cuts the power of queue node `node`'s disk: everything the node had not synced is gone.
    /// The node must be killed first.
    pub fn cut_power(&self, node: u64) -> anyhow::Result<()> {
        let disk = usize::try_from(node)
            .ok()
            .and_then(|node| self.disks.get(node.checked_sub(1)?))
            .with_context(|| format!("no queue node {node}"))?;
        disk.cut();
        Ok(())
    }

    /// Sets queue node `node`'s wall-clock offset: written whole, then renamed over the file the
    /// node watches, so that it never reads half of it.
    pub fn set_clock_offset(&self, node: u64, offset_ms: i64) -> anyhow::Result<()> {
        let path = self.paths.clock_offset(node);
        let written = path.with_extension("offset.new");
        std::fs::write(&written, format!("{offset_ms}\n"))
            .with_context(|| format!("cannot write {}", written.display()))?;
        std::fs::rename(&written, &path)
            .with_context(|| format!("cannot rename {} to {}", written.display(), path.display()))
    }

    /// Stops every process (SIGKILL), then copies every queue node's data from its in-memory
    /// disk to [`SystemPaths::data`], where it outlives the run.
    pub fn stop_and_keep_data(&mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            process.kill();
        }
        for disk in &self.disks {
            let name = disk
                .path()
                .file_name()
                .context("a data directory has a name")?;
            copy_tree(disk.path(), &self.paths.data().join(name))?;
        }
        Ok(())
    }

    /// Every process that exited without being told to since the last look, each started
    /// again (so that the run goes on; the exit is a fault all the same).
    pub fn restart_exited(&mut self) -> anyhow::Result<Vec<ProcessExit>> {
        let mut exits = Vec::new();
        for process in &mut self.processes {
            if let Some(status) = process.take_unexpected_exit() {
                let exit = ProcessExit {
                    at_ms: crate::now_ms(),
                    process: process.name().to_owned(),
                    status: status.to_string(),
                    log_tail: log_tail(process.log()),
                };
                println!(
                    "process {} exited by itself ({}); restarting it",
                    exit.process, exit.status
                );
                process.start()?;
                exits.push(exit);
            }
        }
        Ok(exits)
    }
}

/// Copies the directory tree at `from` to `to` (regular files and directories only: all a queue
/// node's data is).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let entries =
        std::fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", from.display()))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_tree(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).with_context(|| {
                format!("cannot copy {} to {}", source.display(), target.display())
            })?;
        }
    }
    Ok(())
}
