//! Three real `queue-node` processes on loopback, each with its own temporary data directory:
//! started, SIGKILLed, restarted (with their data or wiped) and waited on by polling their
//! `ClusterStatus` with a deadline. Dropping a [`Cluster`] kills every node it started.
//!
//! Ports: a static peer list needs every port before any node starts, so nodes cannot listen
//! on port 0. Ports are drawn from 20000-32767, below Linux's ephemeral range (32768-60999) so
//! that no outgoing connection can take a killed node's port before it restarts, checked free
//! by binding, and never handed out twice in one test process; a node that still fails to bind
//! is retried (the whole cluster on fresh ports at start, the same port on restart).
//!
//! Faults besides crashes: [`Cluster::pause`] freezes a node (SIGSTOP); a cluster started with
//! [`Cluster::start_behind_proxies`] puts a [`LinkProxy`] (on a port of its own, held for the
//! cluster's life) between each node and its peers, which [`Cluster::cut`] closes.
//!
//! The nodes share a random cluster secret, in a file of the cluster's own temporary directory;
//! [`Cluster::start_intruder`] starts a node with a secret of its own. Beside it, one random
//! queue token per client role ([`Cluster::token_file`]); the harness's own clients present the
//! admin's ([`Cluster::client`]), [`Cluster::client_as`] another role's.
//!
//! Every node reads its wall clock through an offset file of its own (`--clock-offset-file`),
//! absent until [`Cluster::set_clock_offset`] skews that node's clock or makes it jump.
//!
//! Tests using it must run on Tokio's multi-thread runtime: starting a process blocks its thread
//! (`block_in_place`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bookstore_common::testing::{Service, StartError};
use bookstore_proto as pb;
use queue_raft::client::{TokenClient, node_client};
use queue_raft::client_auth::{QueueToken, Role};
use queue_raft::{ClientOptions, ClusterSecret, NodeId, QueueClient};
use rand::Rng;
use tempfile::TempDir;
use tokio::time::Instant;

// By path, so that the crates that include this file by path (executor, orchestrator) find it.
#[path = "proxy.rs"]
pub mod proxy;
use proxy::LinkProxy;

pub const NODE_IDS: [NodeId; 3] = [1, 2, 3];
/// How often a wait polls.
const POLL: Duration = Duration::from_millis(50);
/// How long a log line may take to appear after the answer it follows.
const LOG_WAIT: Duration = Duration::from_secs(5);
/// How often starting a node is tried before giving up.
const START_TRIES: usize = 5;

/// Ports handed out in this test process.
static PORTS_TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port that was free a moment ago and that no other test here was given.
pub fn free_port() -> u16 {
    loop {
        let port = rand::random_range(20_000..32_768);
        let mut taken = PORTS_TAKEN.lock().expect("port set lock");
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
}

/// A client of the one node at `addr` (`host:port`), presenting `token`; it connects on its
/// first call.
pub fn connect_as(addr: &str, token: QueueToken) -> TokenClient {
    node_client(addr, &token).unwrap_or_else(|error| panic!("a client of {addr}: {error}"))
}

/// A fresh random secret, as printable as `base64` output.
fn random_secret() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// One node of the cluster: its port, data and process (if running), and how it starts.
struct Node {
    port: u16,
    data: TempDir,
    process: Option<Service>,
    /// The members its `--peers` names, itself included.
    peers: Vec<NodeId>,
    /// Started with `--join`: waits to be added rather than forming a cluster of `peers`.
    join: bool,
    /// Its `--cluster-secret-file`.
    secret_file: PathBuf,
    /// Where its peers reach it, when not at its port directly: see
    /// [`Cluster::start_behind_proxies`].
    proxy: Option<LinkProxy>,
}

impl Node {
    fn new(peers: Vec<NodeId>, join: bool, secret_file: &Path) -> Node {
        Node {
            port: free_port(),
            data: TempDir::new().expect("temporary data directory"),
            process: None,
            peers,
            join,
            secret_file: secret_file.to_owned(),
            proxy: None,
        }
    }
}

pub struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    /// Holds the cluster's secret file, and any intruder's; removed with the cluster.
    secrets: TempDir,
    /// Flags every node gets besides its identity, e.g. a small snapshot policy.
    extra_args: Vec<String>,
    /// Holds each node's clock offset file; removed with the cluster.
    clocks: TempDir,
}

impl Cluster {
    /// Starts three nodes with `extra_args` and waits until they have elected a leader.
    pub async fn start(extra_args: &[&str]) -> Cluster {
        Self::start_with(extra_args, false).await
    }

    /// Like [`Cluster::start`], but each node's peers reach it through a [`LinkProxy`], so that
    /// [`Cluster::cut`] can take it off the network for them. Clients of the test
    /// ([`Cluster::addr`]) still reach every node directly.
    pub async fn start_behind_proxies(extra_args: &[&str]) -> Cluster {
        Self::start_with(extra_args, true).await
    }

    async fn start_with(extra_args: &[&str], behind_proxies: bool) -> Cluster {
        let extra_args: Vec<String> = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        let mut last_error = None;
        for _ in 0..START_TRIES {
            let secrets = TempDir::new().expect("temporary secrets directory");
            let secret_file = secrets.path().join("cluster-secret");
            std::fs::write(&secret_file, format!("{}\n", random_secret()))
                .expect("write the cluster secret");
            for role in Role::ALL {
                std::fs::write(
                    secrets.path().join(role.name()),
                    format!("{}\n", random_secret()),
                )
                .expect("write a queue token");
            }
            let mut cluster = Cluster {
                nodes: NODE_IDS
                    .iter()
                    .map(|id| (*id, Node::new(NODE_IDS.to_vec(), false, &secret_file)))
                    .collect(),
                secrets,
                extra_args: extra_args.clone(),
                clocks: TempDir::new().expect("temporary clock offsets directory"),
            };
            if behind_proxies {
                for node in cluster.nodes.values_mut() {
                    let target = ([127, 0, 0, 1], node.port).into();
                    node.proxy = Some(LinkProxy::start(target).await);
                }
            }
            match NODE_IDS
                .iter()
                .try_for_each(|id| cluster.try_start_node(*id))
            {
                Ok(()) => {
                    cluster.wait_for_leader(Duration::from_secs(20)).await;
                    return cluster;
                }
                // Dropping the cluster kills the nodes that did start; try on fresh ports.
                Err(error) => last_error = Some(error),
            }
        }
        panic!("the cluster did not start: {last_error:?}");
    }

    /// The file holding the secret the cluster's nodes share.
    pub fn secret_file(&self) -> PathBuf {
        self.secrets.path().join("cluster-secret")
    }

    /// The file holding the queue token of `role`, which the nodes accept.
    pub fn token_file(&self, role: Role) -> PathBuf {
        self.tokens_dir().join(role.name())
    }

    /// The folder of the queue tokens, each in a file named for its role (as scripts/cluster
    /// keeps them in data/queue-tokens/).
    pub fn tokens_dir(&self) -> PathBuf {
        self.secrets.path().to_owned()
    }

    /// The queue token of `role`, as its clients present it.
    pub fn token(&self, role: Role) -> QueueToken {
        QueueToken::from_file(&self.token_file(role)).expect("a queue token")
    }

    /// A client of node `id` alone, following no leader, presenting the admin's token.
    pub async fn node_client(&self, id: NodeId) -> TokenClient {
        connect_as(&self.addr(id), self.token(Role::Admin))
    }

    /// The secret the cluster's nodes share, as membership changes must present it.
    pub fn secret(&self) -> ClusterSecret {
        ClusterSecret::from_file(&self.secret_file()).expect("the cluster secret")
    }

    /// Offsets node `id`'s wall clock by `offset_ms` from now on (a skew, or a jump from the
    /// offset before), as the chaos run does: the whole file renamed into place.
    pub fn set_clock_offset(&self, id: NodeId, offset_ms: i64) {
        let path = self.clock_offset_file(id);
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, offset_ms.to_string()).expect("write the clock offset");
        std::fs::rename(&temporary, &path).expect("rename the clock offset into place");
    }

    fn clock_offset_file(&self, id: NodeId) -> PathBuf {
        self.clocks.path().join(format!("clock-offset-node-{id}"))
    }

    /// Every founding node's `host:port`, in id order.
    pub fn addrs(&self) -> Vec<String> {
        NODE_IDS.iter().map(|id| self.addr(*id)).collect()
    }

    pub fn addr(&self, id: NodeId) -> String {
        format!("127.0.0.1:{}", self.node(id).port)
    }

    /// Where node `id`'s peers reach it: its proxy if it has one, else its own port.
    fn peer_addr(&self, id: NodeId) -> String {
        match &self.node(id).proxy {
            Some(proxy) => proxy.addr().to_string(),
            None => self.addr(id),
        }
    }

    /// Takes node `id` off the network for its peers: its proxy drops every connection to it,
    /// now and until [`Cluster::heal`]. Its own connections to them are not cut: freeze it too
    /// ([`Cluster::pause`]) to silence it.
    pub fn cut(&self, id: NodeId) {
        self.proxy(id).cut();
    }

    /// Puts node `id` back on the network after [`Cluster::cut`].
    pub fn heal(&self, id: NodeId) {
        self.proxy(id).heal();
    }

    fn proxy(&self, id: NodeId) -> &LinkProxy {
        self.node(id)
            .proxy
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} has no proxy: start with `start_behind_proxies`"))
    }

    /// A client of all three nodes, as the admin role: every call, every lease token.
    pub fn client(&self) -> QueueClient {
        self.client_as(Role::Admin)
    }

    /// A client of all three nodes, as `role`.
    pub fn client_as(&self, role: Role) -> QueueClient {
        QueueClient::new(self.addrs(), self.token(role)).expect("client of the cluster")
    }

    pub fn client_with(&self, options: ClientOptions) -> QueueClient {
        QueueClient::with_options(self.addrs(), self.token(Role::Admin), options)
            .expect("client of the cluster")
    }

    /// Node `id`'s data directory: its Raft log, vote and snapshots.
    pub fn data_dir(&self, id: NodeId) -> &std::path::Path {
        self.node(id).data.path()
    }

    /// What node `id` logged since it was last started, one JSON object per line.
    pub fn log_lines(&self, id: NodeId) -> Vec<String> {
        self.node(id)
            .process
            .as_ref()
            .map(Service::log_lines)
            .unwrap_or_default()
    }

    /// The URL of node `id`'s `/metrics` (on a free port of its own, see
    /// [`Service::metrics_url`]).
    pub fn metrics_url(&self, id: NodeId) -> String {
        self.node(id)
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is not running"))
            .metrics_url()
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        self.node(id).process.as_ref().map(Service::pid)
    }

    /// Whether node `id` logged a line with this `message` since it was last started.
    pub fn logged(&self, id: NodeId, message: &str) -> bool {
        let needle = format!("\"message\":\"{message}\"");
        self.log_lines(id).iter().any(|line| line.contains(&needle))
    }

    /// Whether node `id` logs `message` within a few seconds: a node writes its log line after it
    /// answers, so a test that just got the answer may read the log before the line is there.
    pub async fn eventually_logged(&self, id: NodeId, message: &str) -> bool {
        let deadline = Instant::now() + LOG_WAIT;
        loop {
            if self.logged(id, message) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Kills node `id` with SIGKILL, as a crash would; its data stays.
    pub fn kill(&mut self, id: NodeId) {
        if let Some(process) = self.node_mut(id).process.take() {
            process.kill();
        }
    }

    /// Freezes node `id` with SIGSTOP: it keeps its connections, its state and its place in the
    /// cluster but runs no code, so that to the others it is cut off (and to itself no time
    /// passes) until [`Cluster::resume`]. A frozen node is still killed when the cluster drops.
    pub fn pause(&self, id: NodeId) {
        self.signal(id, "-STOP");
    }

    /// Lets node `id`, frozen by [`Cluster::pause`], run again (SIGCONT).
    pub fn resume(&self, id: NodeId) {
        self.signal(id, "-CONT");
    }

    fn signal(&self, id: NodeId, signal: &str) {
        let pid = self
            .node(id)
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is not running"))
            .pid();
        let sent = std::process::Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} {pid} (node {id}) failed");
    }

    /// Stops node `id` with SIGTERM and returns how it exited.
    pub fn terminate(&mut self, id: NodeId) -> std::process::ExitStatus {
        let process = self
            .node_mut(id)
            .process
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        tokio::task::block_in_place(|| process.terminate())
    }

    /// Starts node `id` again on its data, retrying while its port is still taken.
    pub fn restart(&mut self, id: NodeId) {
        self.kill(id);
        let mut last_error = None;
        for _ in 0..START_TRIES {
            match self.try_start_node(id) {
                Ok(()) => return,
                Err(error) => last_error = Some(error),
            }
        }
        panic!("node {id} did not restart: {last_error:?}");
    }

    /// Starts node `id` again with an empty data directory, as a replaced machine would.
    pub fn wipe_and_restart(&mut self, id: NodeId) {
        self.kill(id);
        self.node_mut(id).data = TempDir::new().expect("temporary data directory");
        self.restart(id);
    }

    /// Starts node `id`, not one of [`NODE_IDS`], with `--join`: outside the cluster until it is
    /// added (`QueueClient::add_node`). Returns its address.
    pub fn start_joining_node(&mut self, id: NodeId) -> String {
        self.start_newcomer(id, vec![id], true, self.secret_file())
    }

    /// Starts node `id`, not one of [`NODE_IDS`], with a secret other than the cluster's.
    /// Joining, it waits to be added like [`Cluster::start_joining_node`]; otherwise it names the
    /// founders and itself as its peers, forms that cluster in its own eyes and campaigns to
    /// lead it. Returns its address.
    pub fn start_intruder(&mut self, id: NodeId, join: bool) -> String {
        let secret_file = self.secrets.path().join(format!("intruder-{id}-secret"));
        std::fs::write(&secret_file, random_secret()).expect("write the intruder's secret");
        let peers = if join {
            vec![id]
        } else {
            NODE_IDS.iter().copied().chain([id]).collect()
        };
        self.start_newcomer(id, peers, join, secret_file)
    }

    /// Starts node `id`, on fresh ports until one is free; returns its address.
    fn start_newcomer(
        &mut self,
        id: NodeId,
        peers: Vec<NodeId>,
        join: bool,
        secret_file: PathBuf,
    ) -> String {
        assert!(!NODE_IDS.contains(&id), "node {id} is a founding member");
        let mut last_error = None;
        for _ in 0..START_TRIES {
            self.nodes
                .insert(id, Node::new(peers.clone(), join, &secret_file));
            match self.try_start_node(id) {
                Ok(()) => return self.addr(id),
                Err(error) => last_error = Some(error),
            }
        }
        panic!("node {id} did not start: {last_error:?}");
    }

    fn try_start_node(&mut self, id: NodeId) -> Result<(), StartError> {
        let node = self.node(id);
        let peers: Vec<String> = node
            .peers
            .iter()
            .map(|peer| format!("{peer}={}", self.peer_addr(*peer)))
            .collect();
        let mut args = vec![
            format!("--id={id}"),
            format!("--listen=127.0.0.1:{}", node.port),
            format!("--peers={}", peers.join(",")),
            format!("--data-dir={}", node.data.path().display()),
            format!("--cluster-secret-file={}", node.secret_file.display()),
            format!(
                "--orchestrator-token-file={}",
                self.token_file(Role::Orchestrator).display()
            ),
            format!(
                "--executor-token-file={}",
                self.token_file(Role::Executor).display()
            ),
            format!(
                "--admin-token-file={}",
                self.token_file(Role::Admin).display()
            ),
            format!(
                "--clock-offset-file={}",
                self.clock_offset_file(id).display()
            ),
        ];
        if node.join {
            args.push("--join".to_owned());
        }
        args.extend(self.extra_args.iter().cloned());
        let process =
            tokio::task::block_in_place(|| Service::try_start_with_args("queue-node", &args))?;
        self.node_mut(id).process = Some(process);
        Ok(())
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).expect("a node of this cluster")
    }

    fn running(&self) -> Vec<NodeId> {
        NODE_IDS
            .into_iter()
            .filter(|id| self.node(*id).process.is_some())
            .collect()
    }

    /// Node `id`'s own view of the cluster.
    pub async fn status(&self, id: NodeId) -> pb::ClusterStatusResponse {
        self.client()
            .cluster_status_of(&self.addr(id))
            .await
            .unwrap_or_else(|error| panic!("status of node {id}: {error}"))
    }

    /// Waits until every running node names the same leader and that leader says it leads;
    /// returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> NodeId {
        let client = self.client();
        let running = self.running();
        wait_for(timeout, "a leader all running nodes agree on", || {
            let client = client.clone();
            let running = running.clone();
            async move {
                let statuses = client.cluster_status_all().await;
                let mut leaders = BTreeSet::new();
                let mut leader_says_leader = false;
                for (id, (_, status)) in NODE_IDS.iter().zip(statuses) {
                    if !running.contains(id) {
                        continue;
                    }
                    let status = status.ok()?;
                    leaders.insert(status.leader_id);
                    leader_says_leader |= status.role == "leader" && status.leader_id == *id;
                }
                match leaders.into_iter().collect::<Vec<_>>()[..] {
                    [leader] if leader != 0 && leader_says_leader => Some(leader),
                    _ => None,
                }
            }
        })
        .await
    }

    /// Waits until node `id` has applied at least what `reference` has and holds the same
    /// queue (depth and executed count); returns its status.
    pub async fn wait_until_caught_up(
        &self,
        id: NodeId,
        reference: NodeId,
        timeout: Duration,
    ) -> pb::ClusterStatusResponse {
        let client = self.client();
        let (addr, reference_addr) = (self.addr(id), self.addr(reference));
        wait_for(timeout, "the node to catch up", || {
            let client = client.clone();
            let (addr, reference_addr) = (addr.clone(), reference_addr.clone());
            async move {
                let target = client.cluster_status_of(&reference_addr).await.ok()?;
                let node = client.cluster_status_of(&addr).await.ok()?;
                let caught_up = node.applied_index >= target.applied_index
                    && node.queue_depth == target.queue_depth
                    && node.executed_count == target.executed_count;
                caught_up.then_some(node)
            }
        })
        .await
    }
}

impl Drop for Cluster {
    /// Kills every node (each `Service` does on drop); when a test failed, first shows what
    /// each node logged last.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (id, node) in &self.nodes {
                if let Some(process) = &node.process {
                    let lines = process.log_lines();
                    let tail = &lines[lines.len().saturating_sub(40)..];
                    eprintln!(
                        "--- node {id} ({}) last lines:\n{}",
                        self.addr(*id),
                        tail.join("\n")
                    );
                }
            }
        }
    }
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// An order with `books` copies of one title, so its priority is `books`.
pub fn order(order_id: &str, books: u32) -> pb::QueuedOrder {
    pb::QueuedOrder {
        order_id: order_id.to_owned(),
        customer: "Ada".to_owned(),
        items: vec![pb::QueueItem {
            title: "Dune".to_owned(),
            quantity: books,
        }],
    }
}
