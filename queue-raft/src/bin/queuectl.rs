//! `queuectl`: asks the queue cluster about itself, for scripts and people. Each node answers for
//! itself (`ClusterStatus`), so this works while there is no leader.
//!
//! `queuectl --nodes A,B,C status` prints one line per node; `queuectl --nodes A,B,C leader`
//! prints the leader's node id, or exits 1 when no node leads.

use std::process::ExitCode;

use bookstore_proto as pb;
use clap::{Parser, Subcommand};
use queue_raft::QueueClient;

/// Inspects the order-queue cluster.
#[derive(Debug, Parser)]
#[command(name = "queuectl", version)]
struct Args {
    /// Every node's address, host:port or http://host:port, comma-separated; written
    /// `id=host:port`, the id also names a node that does not answer.
    #[arg(long, env = "QUEUE_NODES", value_delimiter = ',', required = true)]
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
    let (ids, addrs): (Vec<&str>, Vec<String>) = args
        .nodes
        .iter()
        .map(|node| {
            let (id, addr) = named_node(node);
            (id, addr.to_owned())
        })
        .unzip();
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
