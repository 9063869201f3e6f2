//! The queue node binary: parses flags, sets up logging and runs [`queue_raft::node::run`], with
//! its metrics server beside it, until SIGTERM or Ctrl-C.
//!
//! Every peer's address, this node's included, is fixed by `--peers`, so the node must listen on
//! the port its peers know it by: `--listen 127.0.0.1:0` cannot work in a cluster. Tests pick
//! free ports first and pass them to every node.
//!
//! The node refuses to start without the cluster secret (`--cluster-secret-file` or env
//! `QUEUE_CLUSTER_SECRET`, see [`queue_raft::auth`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bookstore_common::metrics::{self, MetricsListen};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use queue_raft::auth::HOW_TO_MAKE_ONE;
use queue_raft::node::{self, NodeConfig};
use queue_raft::{ClientTokenFiles, ClusterSecretSource, NodeId};

/// One node of the Raft-replicated order queue: serves the client API and the Raft RPCs on one
/// gRPC port.
#[derive(Debug, Parser)]
#[command(name = "queue-node", version, after_help = cluster_secret_help())]
struct Args {
    /// This node's id, a key of --peers.
    #[arg(long, env = "QUEUE_NODE_ID")]
    id: NodeId,
    /// Address to serve gRPC on (client API and Raft RPCs).
    #[arg(long, env = "QUEUE_NODE_LISTEN", default_value = "0.0.0.0:50061")]
    listen: SocketAddr,
    /// Address to serve Prometheus metrics on (`GET /metrics`), or `off`. Default: the gRPC
    /// address with the port plus 100 (50161 for 50061).
    #[arg(long, env = "QUEUE_NODE_METRICS_LISTEN")]
    metrics_listen: Option<MetricsListen>,
    /// Every cluster member as id=host:port, comma-separated, this node included; the same on
    /// every node. Example: 1=127.0.0.1:50061,2=127.0.0.1:50062,3=127.0.0.1:50063
    #[arg(long, env = "QUEUE_PEERS", value_parser = parse_peers)]
    peers: Peers,
    /// Start outside any cluster and wait to be added to a running one (`queuectl add-node`);
    /// --peers then names only this node.
    #[arg(long, env = "QUEUE_JOIN")]
    join: bool,
    /// Where the node keeps its Raft log and snapshots; default data/node-N, N being --id.
    #[arg(long, env = "QUEUE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Build a snapshot after this many log entries since the last one.
    #[arg(long, env = "QUEUE_SNAPSHOT_LOGS", default_value_t = node::DEFAULT_SNAPSHOT_LOGS)]
    snapshot_logs: u64,
    /// Log entries kept behind a snapshot.
    #[arg(long, env = "QUEUE_LOGS_TO_KEEP", default_value_t = node::DEFAULT_LOGS_TO_KEEP)]
    logs_to_keep: u64,
    /// Leader heartbeat interval, in milliseconds.
    #[arg(long, env = "QUEUE_HEARTBEAT_MS", default_value_t = millis(node::DEFAULT_HEARTBEAT))]
    heartbeat_ms: u64,
    /// Shortest election timeout, in milliseconds.
    #[arg(long, env = "QUEUE_ELECTION_TIMEOUT_MIN_MS", default_value_t = millis(node::DEFAULT_ELECTION_TIMEOUT_MIN))]
    election_timeout_min_ms: u64,
    /// Longest election timeout, in milliseconds.
    #[arg(long, env = "QUEUE_ELECTION_TIMEOUT_MAX_MS", default_value_t = millis(node::DEFAULT_ELECTION_TIMEOUT_MAX))]
    election_timeout_max_ms: u64,
    /// Fault-injection test hook, not for production: a file holding a signed offset in
    /// milliseconds (e.g. `-3500`) added to every reading of this node's wall clock. It is
    /// checked at each reading, so another process skews the clock or makes it jump by replacing
    /// the file (write a temporary file, then rename it over PATH); empty or missing means no
    /// offset, and a file that does not parse keeps the last offset.
    #[arg(
        long,
        env = "QUEUE_CLOCK_OFFSET_FILE",
        value_name = "PATH",
        hide_short_help = true
    )]
    clock_offset_file: Option<PathBuf>,
    #[command(flatten)]
    secret: ClusterSecretSource,
    /// The tokens the client API accepts, one per role, each from a file.
    #[command(flatten)]
    client_tokens: ClientTokenFiles,
}

fn cluster_secret_help() -> String {
    format!(
        "Cluster secret: every node of a cluster must have the same one, from \
         --cluster-secret-file (env QUEUE_CLUSTER_SECRET_FILE) or env QUEUE_CLUSTER_SECRET \
         (the value itself; never a flag, which `ps` would show). Raft RPCs and \
         AddNode/RemoveNode without it are refused UNAUTHENTICATED, so a node with another \
         secret can neither join nor disturb the cluster; the node does not start without one. \
         Make one with:\n  {HOW_TO_MAKE_ONE}; chmod 600 data/cluster-secret\n\n\
         Client tokens: every other call of the client API presents a token of its role, \
         distinct from the secret and from each other: --orchestrator-token-file (enqueue, \
         decide, read), --executor-token-file (the lease, dequeue, record, acknowledge, read), \
         --admin-token-file (queuectl: every call). A call without a known token is refused \
         UNAUTHENTICATED, one its role may not make PERMISSION_DENIED; lease tokens are shown \
         to the executor and admin roles only. scripts/cluster makes them in data/queue-tokens/."
    )
}

/// The parsed `--peers`: id to `host:port`.
#[derive(Debug, Clone)]
struct Peers(BTreeMap<NodeId, String>);

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Parses `1=host:port,2=host:port`; an error names the part that is wrong.
fn parse_peers(list: &str) -> Result<Peers, String> {
    let mut peers = BTreeMap::new();
    for part in list
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not id=host:port"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("{part:?}: the id {id:?} is not a number"))?;
        let addr = addr.trim();
        let port = addr
            .rsplit_once(':')
            .map(|(_, port)| port)
            .ok_or_else(|| format!("{part:?}: the address has no port"))?;
        port.parse::<u16>()
            .map_err(|_| format!("{part:?}: the port {port:?} is not a number"))?;
        if peers.insert(id, addr.to_owned()).is_some() {
            return Err(format!("node id {id} appears twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers given".to_owned());
    }
    Ok(Peers(peers))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.peers.0.contains_key(&args.id) {
        Args::command()
            .error(
                ErrorKind::ArgumentConflict,
                format!("--peers must include this node's id {}", args.id),
            )
            .exit();
    }
    let secret = args
        .secret
        .load()
        .with_context(|| format!("queue node {} cannot start", args.id))?;
    let clients = args
        .client_tokens
        .load(&secret)
        .with_context(|| format!("queue node {} cannot start", args.id))?;
    bookstore_common::telemetry::init("queue-node");
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("data/node-{}", args.id)));
    let config = NodeConfig {
        heartbeat_interval: Duration::from_millis(args.heartbeat_ms),
        election_timeout_min: Duration::from_millis(args.election_timeout_min_ms),
        election_timeout_max: Duration::from_millis(args.election_timeout_max_ms),
        snapshot_logs: args.snapshot_logs,
        logs_to_keep: args.logs_to_keep,
        join: args.join,
        clock_offset_file: args.clock_offset_file,
        ..NodeConfig::new(
            args.id,
            args.listen,
            args.peers.0,
            data_dir,
            secret,
            clients,
        )
    };
    let metrics_listen = MetricsListen::or_default_for(args.metrics_listen, args.listen);
    metrics::alongside(
        metrics_listen,
        node::run(config, bookstore_common::shutdown::signal()),
    )
    .await
    .context("metrics server")?
    .with_context(|| format!("queue node {}", args.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_errors_name_the_bad_part() {
        let peers = parse_peers("1=127.0.0.1:50061, 2=queue-2:50062,3=[::1]:50063").expect("valid");
        assert_eq!(peers.0[&2], "queue-2:50062");
        assert_eq!(peers.0[&3], "[::1]:50063");
        assert!(
            parse_peers("1=a:1,x=b:2")
                .unwrap_err()
                .contains("\"x=b:2\"")
        );
        assert!(parse_peers("1=a:1,2=b").unwrap_err().contains("\"2=b\""));
        assert!(
            parse_peers("1=a:1,2:b:2")
                .unwrap_err()
                .contains("\"2:b:2\"")
        );
        assert!(parse_peers("1=a:1,1=b:2").unwrap_err().contains("twice"));
        assert!(parse_peers("").is_err());
    }
}
