//! `queuectl`: asks the queue cluster about itself, for scripts and people. Each node answers for
//! itself (`ClusterStatus`), so this works while there is no leader.
//!
//! `queuectl --nodes A,B,C status` prints one line per node; `queuectl --nodes A,B,C leader`
//! prints the leader's node id, or exits 1 when no node leads. `queuectl probe TARGET` is the
//! healthcheck of every container (`http://host:port/path` wants a 2xx, `grpc://host:port` the
//! gRPC health service's SERVING); it needs no `--nodes`. `add-node ID=HOST:PORT` and
//! `remove-node ID` change the membership through the leader.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bookstore_common::probe::{Target, probe};
use bookstore_proto as pb;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use queue_raft::{ClientOptions, QueueClient};

/// Inspects the order-queue cluster.
#[derive(Debug, Parser)]
#[command(name = "queuectl", version)]
struct Args {
    /// Every node's address, host:port or http://host:port, comma-separated; written
    /// `id=host:port`, the id also names a node that does not answer. Needed by every command
    /// but `probe`.
    #[arg(long, env = "QUEUE_NODES", value_delimiter = ',')]
    nodes: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One line per node: id, role, term, commit and applied index, queue depth, leader; or why
    /// it did not answer.
    Status,
    /// The leader's node id; exit status 1 when no node leads.
    Leader,
    /// Adds a node, running at HOST:PORT with --join, to the cluster: a learner until it has
    /// caught up, then a voter. Prints the members afterwards.
    AddNode {
        /// The new node as ID=HOST:PORT, the address the other nodes reach it at.
        node: String,
        /// Give up after this many seconds (catching up a long log takes a while).
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
    /// Removes voter ID from the cluster. Prints the members afterwards.
    RemoveNode {
        id: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10)]
        timeout_s: u64,
    },
    /// Exit status 0 when TARGET is healthy, 1 otherwise (a container healthcheck):
    /// `http://host:port/path` wants a 2xx answer, `grpc://host:port` a SERVING answer from the
    /// gRPC health service.
    Probe {
        target: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

/// The node that says it leads in the highest term, if any; a deposed leader that has not heard
/// of the new term yet may still say it leads in an older one.
fn leader_of(statuses: &[pb::ClusterStatusResponse]) -> Option<&pb::ClusterStatusResponse> {
    statuses
        .iter()
        .filter(|status| status.role == "leader")
        .max_by_key(|status| status.term)
}

/// Splits `id=host:port` into the id (as text, for display) and the address.
fn named_node(node: &str) -> (&str, &str) {
    node.split_once('=').unwrap_or(("?", node))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if let Command::Probe { target, timeout_ms } = &args.command {
        let target = Target::parse(target)?;
        return Ok(
            match probe(&target, Duration::from_millis(*timeout_ms)).await {
                Ok(answer) => {
                    println!("healthy: {answer}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("queuectl: unhealthy: {error}");
                    ExitCode::FAILURE
                }
            },
        );
    }
    if args.nodes.is_empty() {
        Args::command()
            .error(
                ErrorKind::MissingRequiredArgument,
                "--nodes <NODES> (or QUEUE_NODES) is required by every command but `probe`",
            )
            .exit();
    }
    let (ids, addrs): (Vec<&str>, Vec<String>) = args
        .nodes
        .iter()
        .map(|node| {
            let (id, addr) = named_node(node);
            (id, addr.to_owned())
        })
        .unzip();
    let membership_change = match &args.command {
        Command::AddNode { timeout_s, .. } | Command::RemoveNode { timeout_s, .. } => {
            Some(Duration::from_secs(*timeout_s))
        }
        _ => None,
    };
    if let Some(timeout) = membership_change {
        let options = ClientOptions {
            deadline: timeout,
            attempt_timeout: timeout,
            ..ClientOptions::default()
        };
        let client = QueueClient::with_options(addrs, options)?;
        let changed = match &args.command {
            Command::AddNode { node, .. } => {
                let (id, addr) = node
                    .split_once('=')
                    .and_then(|(id, addr)| Some((id.trim().parse::<u64>().ok()?, addr.trim())))
                    .with_context(|| format!("{node:?} is not ID=HOST:PORT"))?;
                client.add_node(id, addr).await?
            }
            Command::RemoveNode { id, .. } => client.remove_node(*id).await?,
            _ => unreachable!("only membership changes get here"),
        };
        println!("membership changed at index {}", changed.index);
        for member in &changed.members {
            let role = if member.voter { "voter" } else { "learner" };
            println!("node {} {} {role}", member.node_id, member.addr);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let client = QueueClient::new(addrs)?;
    let answers = client.cluster_status_all().await;
    match args.command {
        Command::Status => {
            for (id, (addr, answer)) in ids.iter().zip(&answers) {
                match answer {
                    Ok(status) => println!(
                        "node {} {addr} {} term {} commit {} applied {} depth {} leader {}",
                        status.node_id,
                        status.role,
                        status.term,
                        status.commit_index,
                        status.applied_index,
                        status.queue_depth,
                        status.leader_id,
                    ),
                    Err(error) => println!("node {id} {addr} down ({error})"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe { .. } | Command::AddNode { .. } | Command::RemoveNode { .. } => {
            unreachable!("answered above")
        }
        Command::Leader => {
            let statuses: Vec<pb::ClusterStatusResponse> = answers
                .into_iter()
                .filter_map(|(_, answer)| answer.ok())
                .collect();
            match leader_of(&statuses) {
                Some(leader) => {
                    println!("{}", leader.node_id);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("queuectl: no node is the leader now");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
