//! The whole system as a run starts it: the three backends and the orchestrator on loopback,
//! the queue nodes each in its own namespace on the run's bridge, and the executors, every one
//! from the binaries in `target/<profile>` with its log and data under the run's directory.

use std::path::PathBuf;

use anyhow::Context;

use crate::network::Layout;
use crate::processes::{ProcessSpec, Supervised};

/// Every queue node listens on this port, each on its own address in its own namespace.
pub const QUEUE_PORT: u16 = 50061;
/// How many executors run.
pub const EXECUTOR_COUNT: usize = 3;

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

    pub fn data(&self) -> PathBuf {
        self.run_dir.join("data")
    }

    pub fn ledger(&self, executor: usize) -> PathBuf {
        self.run_dir
            .join("ledgers")
            .join(format!("executor-{executor}.jsonl"))
    }
}

/// The running system. Dropping it kills every process.
#[derive(Debug)]
pub struct System {
    /// Never touched by the nemesis; kept so that they stop with the run.
    _backends: Vec<Supervised>,
    _orchestrator: Supervised,
    /// Node `n` at index `n - 1`.
    pub queue_nodes: Vec<Supervised>,
    /// `executor-n` at index `n - 1`.
    pub executors: Vec<Supervised>,
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
    ) -> anyhow::Result<System> {
        for dir in [paths.logs(), paths.data(), paths.run_dir.join("ledgers")] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let secret_env = vec![("QUEUE_CLUSTER_SECRET".to_owned(), cluster_secret.to_owned())];
        let spec = |name: &str, program: &str, args: Vec<String>| ProcessSpec {
            name: name.to_owned(),
            program: paths.binaries.join(program),
            args,
            envs: secret_env.clone(),
            namespace: None,
            log: paths.logs().join(format!("{name}.log")),
        };
        let loopback = || vec!["--listen".to_owned(), "127.0.0.1:0".to_owned()];
        let metrics_off = || vec!["--metrics-listen".to_owned(), "off".to_owned()];

        let mut backends = Vec::new();
        let mut backend_urls = Vec::new();
        for (name, extra) in [
            (
                "fraud-detection",
                vec![
                    "--velocity-max-orders".to_owned(),
                    VELOCITY_MAX_ORDERS.to_owned(),
                ],
            ),
            ("transaction-verification", Vec::new()),
            ("suggestions", Vec::new()),
        ] {
            let args = [loopback(), metrics_off(), extra].concat();
            let mut backend = Supervised::spawn(spec(name, name, args))?;
            let addr = backend.wait_listening(0).await?;
            backend_urls.push(format!("http://{addr}"));
            backends.push(backend);
        }

        let queue_addrs: Vec<String> = layout
            .nodes
            .iter()
            .map(|node| format!("{}:{QUEUE_PORT}", node.addr))
            .collect();
        let peers = layout
            .nodes
            .iter()
            .zip(&queue_addrs)
            .map(|(node, addr)| format!("{}={addr}", node.node_id))
            .collect::<Vec<_>>()
            .join(",");
        let mut queue_nodes = Vec::new();
        for (node, addr) in layout.nodes.iter().zip(&queue_addrs) {
            let name = format!("queue-{}", node.node_id);
            let data_dir = paths.data().join(&name);
            let args = vec![
                format!("--id={}", node.node_id),
                format!("--listen={addr}"),
                "--metrics-listen=off".to_owned(),
                format!("--peers={peers}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--snapshot-logs={SNAPSHOT_LOGS}"),
                format!("--logs-to-keep={LOGS_TO_KEEP}"),
            ];
            let mut node_spec = spec(&name, "queue-node", args);
            node_spec.namespace = Some(node.namespace.clone());
            queue_nodes.push(Supervised::spawn(node_spec)?);
        }
        for node in &mut queue_nodes {
            node.wait_listening(0).await?;
        }

        let queue_nodes_flag = format!("--queue-nodes={}", queue_addrs.join(","));
        let mut orchestrator = Supervised::spawn(spec(
            "orchestrator",
            "orchestrator",
            [
                loopback(),
                vec![
                    format!("--fraud-detection-addr={}", backend_urls[0]),
                    format!("--transaction-verification-addr={}", backend_urls[1]),
                    format!("--suggestions-addr={}", backend_urls[2]),
                    queue_nodes_flag.clone(),
                ],
            ]
            .concat(),
        ))?;
        let orchestrator_addr = orchestrator.wait_listening(0).await?;

        let mut executors = Vec::new();
        let mut ledgers = Vec::new();
        for number in 1..=EXECUTOR_COUNT {
            let name = format!("executor-{number}");
            let ledger = paths.ledger(number);
            let args = [
                loopback(),
                vec![
                    format!("--id={name}"),
                    queue_nodes_flag.clone(),
                    format!("--ledger={}", ledger.display()),
                    format!("--execution-ms={EXECUTION_MS}"),
                    format!("--backoff-after-lead-ms={BACKOFF_AFTER_LEAD_MS}"),
                    format!("--poll-ms={POLL_MS}"),
                    format!("--lease-ttl-ms={LEASE_TTL_MS}"),
                ],
            ]
            .concat();
            let mut executor = Supervised::spawn(spec(&name, "order-executor", args))?;
            executor.wait_listening(0).await?;
            executors.push(executor);
            ledgers.push(ledger);
        }

        Ok(System {
            _backends: backends,
            _orchestrator: orchestrator,
            queue_nodes,
            executors,
            orchestrator_url: format!("http://{orchestrator_addr}"),
            queue_addrs,
            ledgers,
        })
    }

    /// The process the nemesis calls `target` (`queue-N` or `executor-N`).
    pub fn process(&mut self, target: &str) -> anyhow::Result<&mut Supervised> {
        self.queue_nodes
            .iter_mut()
            .chain(self.executors.iter_mut())
            .find(|process| process.name() == target)
            .with_context(|| format!("no process named {target}"))
    }

    /// Starts every queue node and executor that is not running.
    pub fn restart_all_stopped(&mut self) -> anyhow::Result<Vec<String>> {
        let mut restarted = Vec::new();
        for process in self.queue_nodes.iter_mut().chain(self.executors.iter_mut()) {
            if !process.is_running() {
                process.start()?;
                restarted.push(process.name().to_owned());
            }
        }
        Ok(restarted)
    }
}
