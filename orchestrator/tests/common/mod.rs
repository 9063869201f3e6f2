//! Starts the whole checkout path as real processes: a three-node queue cluster (the harness of
//! `queue-raft`'s own tests, or [`ScriptedCluster`] run by `scripts/cluster`), the three backends
//! and the orchestrator; [`browser`] drives headless Chromium.
//!
//! Tests using it run on Tokio's multi-thread runtime: starting a process blocks its thread.

#![allow(dead_code)]

pub mod browser;
#[path = "../../../queue-raft/tests/common/cluster.rs"]
pub mod cluster;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use bookstore_common::testing::Service;
use cluster::Cluster;
use orchestrator::checkout::{SampleOrder, sample_request};

/// The backends and the orchestrator in front of them, with a queue cluster behind.
pub struct System {
    /// The queue cluster when the harness started it (rather than `scripts/cluster`).
    pub cluster: Option<Cluster>,
    pub fraud_detection: Option<Service>,
    pub transaction_verification: Option<Service>,
    pub suggestions: Option<Service>,
    pub orchestrator: Service,
    /// The order executors, when the test asked for them.
    pub executors: Vec<Service>,
    /// The flags `orchestrator` was started with, so that another one can join it.
    orchestrator_args: Vec<String>,
    /// Holds the orchestrators' shared idempotency secret; removed with the system.
    _secrets: tempfile::TempDir,
}

/// What a test may change about the system it starts.
pub struct Options {
    pub backend_timeout: Duration,
    /// Extra flags for fraud detection, e.g. to lift the card-velocity limit for many orders.
    pub fraud_detection_args: Vec<String>,
    /// How many order executors to start (ids `executor-1`...).
    pub executors: usize,
    /// Extra flags for every queue node the harness starts, e.g. a low snapshot threshold.
    pub queue_node_args: Vec<String>,
    /// Where the orchestrator finds fraud detection instead of the one the harness starts
    /// (e.g. a listener that never answers).
    pub fraud_detection_addr: Option<String>,
    /// Extra flags for the orchestrator.
    pub orchestrator_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backend_timeout: Duration::from_secs(2),
            fraud_detection_args: Vec::new(),
            executors: 0,
            queue_node_args: Vec::new(),
            fraud_detection_addr: None,
            orchestrator_args: Vec::new(),
        }
    }
}

impl System {
    pub async fn start() -> System {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> System {
        let queue_node_args: Vec<&str> =
            options.queue_node_args.iter().map(String::as_str).collect();
        let cluster = Cluster::start(&queue_node_args).await;
        let queue_nodes = cluster.addrs().join(",");
        let tokens_dir = cluster.tokens_dir();
        Self::start_in_front_of(Some(cluster), &queue_nodes, &tokens_dir, options)
    }

    /// Starts the backends and the orchestrator for the queue nodes `queue_nodes`, whose
    /// client tokens are in `tokens_dir` (a file per role); `cluster`, when the harness runs
    /// it, is kept alive with them.
    pub fn start_in_front_of(
        cluster: Option<Cluster>,
        queue_nodes: &str,
        tokens_dir: &Path,
        options: Options,
    ) -> System {
        let secrets = tempfile::tempdir().expect("temporary secrets directory");
        let secret_file = secrets.path().join("idempotency-secret");
        std::fs::write(&secret_file, format!("{}\n", uuid::Uuid::new_v4()))
            .expect("write a secret");
        tokio::task::block_in_place(|| {
            let fraud_detection = Service::start("fraud-detection", &options.fraud_detection_args);
            let transaction_verification = Service::start("transaction-verification", &[]);
            let suggestions = Service::start("suggestions", &[]);
            let fraud_detection_addr = options
                .fraud_detection_addr
                .clone()
                .unwrap_or_else(|| fraud_detection.url());
            let mut orchestrator_args = vec![
                format!("--fraud-detection-addr={fraud_detection_addr}"),
                format!(
                    "--transaction-verification-addr={}",
                    transaction_verification.url()
                ),
                format!("--suggestions-addr={}", suggestions.url()),
                format!(
                    "--backend-timeout-ms={}",
                    options.backend_timeout.as_millis()
                ),
                format!("--queue-nodes={queue_nodes}"),
                format!(
                    "--queue-token-file={}",
                    tokens_dir.join("orchestrator").display()
                ),
                format!("--idempotency-secret-file={}", secret_file.display()),
            ];
            orchestrator_args.extend(options.orchestrator_args.iter().cloned());
            let orchestrator = Service::start("orchestrator", &orchestrator_args);
            let executors = (1..=options.executors)
                .map(|n| {
                    Service::start(
                        "order-executor",
                        &[
                            format!("--id=executor-{n}"),
                            format!("--queue-nodes={queue_nodes}"),
                            format!(
                                "--queue-token-file={}",
                                tokens_dir.join("executor").display()
                            ),
                        ],
                    )
                })
                .collect();
            System {
                cluster,
                executors,
                fraud_detection: Some(fraud_detection),
                transaction_verification: Some(transaction_verification),
                suggestions: Some(suggestions),
                orchestrator,
                orchestrator_args,
                _secrets: secrets,
            }
        })
    }

    /// Another orchestrator in front of the same backends and queue, on a port of its own.
    pub fn start_orchestrator(&self) -> Service {
        tokio::task::block_in_place(|| Service::start("orchestrator", &self.orchestrator_args))
    }

    /// Stops the orchestrator with SIGTERM and starts a new one in its place (on another port:
    /// [`System::url`] follows it).
    pub fn restart_orchestrator(&mut self) {
        let restarted = self.start_orchestrator();
        let stopped = std::mem::replace(&mut self.orchestrator, restarted);
        let exit = tokio::task::block_in_place(|| stopped.terminate());
        assert!(exit.success(), "the orchestrator exited with {exit:?}");
    }

    pub fn cluster(&mut self) -> &mut Cluster {
        self.cluster
            .as_mut()
            .expect("the harness runs this system's queue cluster")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.orchestrator.url())
    }

    /// Every running service's log lines (not the queue nodes'), each with the service's name.
    pub fn all_log_lines(&self) -> Vec<(String, String)> {
        [
            &self.fraud_detection,
            &self.transaction_verification,
            &self.suggestions,
        ]
        .into_iter()
        .flatten()
        .chain(std::iter::once(&self.orchestrator))
        .flat_map(|service| {
            service
                .log_lines()
                .into_iter()
                .map(|line| (service.name.clone(), line))
        })
        .collect()
    }

    /// Every line logged by every process of the system: the services above, the executors
    /// and the queue nodes the harness runs, each with the process's name.
    pub fn every_log_line(&self) -> Vec<(String, String)> {
        let executors = self.executors.iter().flat_map(|executor| {
            executor
                .log_lines()
                .into_iter()
                .map(|line| (executor.name.clone(), line))
        });
        let nodes = self.cluster.iter().flat_map(|cluster| {
            cluster::NODE_IDS.into_iter().flat_map(move |id| {
                cluster
                    .log_lines(id)
                    .into_iter()
                    .map(move |line| (format!("queue-node-{id}"), line))
            })
        });
        self.all_log_lines()
            .into_iter()
            .chain(executors)
            .chain(nodes)
            .collect()
    }

    /// The data directory of each queue node the harness runs (Raft log, vote, snapshots).
    pub fn queue_data_dirs(&self) -> Vec<PathBuf> {
        self.cluster
            .iter()
            .flat_map(|cluster| {
                cluster::NODE_IDS
                    .into_iter()
                    .map(|id| cluster.data_dir(id).to_path_buf())
            })
            .collect()
    }
}

/// Three consecutive loopback ports below the ephemeral range, free a moment ago.
fn free_port_range() -> u16 {
    loop {
        let base = rand::random_range(20_000..32_000);
        if (base..base + 3).all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return base;
        }
    }
}

/// A cluster run by `scripts/cluster` in its own folder and ports; `down` when dropped.
pub struct ScriptedCluster {
    dir: tempfile::TempDir,
    base_port: u16,
}

impl ScriptedCluster {
    /// `scripts/cluster up` on three free ports in a temporary folder; waits for a leader.
    pub fn up() -> ScriptedCluster {
        let cluster = ScriptedCluster {
            dir: tempfile::tempdir().expect("data folder"),
            base_port: free_port_range(),
        };
        tokio::task::block_in_place(|| cluster.run(&["up"]));
        cluster
    }

    /// `scripts/cluster ARGS` aimed at this cluster's folder and ports, using the built binaries.
    fn command(&self, args: &[&str]) -> Command {
        let mut command =
            Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster"));
        command
            .args(args)
            .env("CLUSTER_DIR", self.dir.path())
            .env("CLUSTER_BASE_PORT", self.base_port.to_string())
            .env("CLUSTER_BUILD", "0");
        command
    }

    /// Runs `scripts/cluster ARGS` and answers its output; panics when it fails. It blocks: call
    /// it inside `tokio::task::block_in_place`.
    pub fn run(&self, args: &[&str]) -> String {
        let output = self.command(args).output().expect("run scripts/cluster");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "scripts/cluster {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Where `scripts/cluster` keeps the queue tokens, a file per role.
    pub fn tokens_dir(&self) -> PathBuf {
        self.dir.path().join("queue-tokens")
    }

    pub fn addrs(&self) -> String {
        (0..3)
            .map(|n| format!("127.0.0.1:{}", self.base_port + n))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for ScriptedCluster {
    fn drop(&mut self) {
        let _ = self.command(&["down"]).output();
    }
}

/// POSTs `body` to /checkout; returns the status and the JSON answer.
pub async fn post_checkout(
    system: &System,
    body: &serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    post_checkout_with_key(system, body, None).await
}

/// POSTs `body` to /checkout, with an `Idempotency-Key` header when `idempotency_key` is given;
/// returns the status and the JSON answer.
pub async fn post_checkout_with_key(
    system: &System,
    body: &serde_json::Value,
    idempotency_key: Option<&str>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(system.url("/checkout"))
        .json(body);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("orchestrator answers");
    let status = response.status();
    (status, response.json().await.expect("JSON body"))
}

/// The example order of the page: approved by every backend.
pub fn valid_order() -> serde_json::Value {
    sample_request(&SampleOrder {
        name: "Ada Lovelace",
        contact: "ada@example.com",
        card_number: "4532 0151 1283 0366",
        cvv: "123",
        items: &[("The Hobbit", 1), ("Emma", 2)],
    })
}
