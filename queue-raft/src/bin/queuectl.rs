//! `queuectl`: the command-line client of the queue cluster, for scripts and people.
//!
//! - `status` prints one line per node, each as that node sees itself (`ClusterStatus`), so it
//!   works while there is no leader; `watch` prints it again every interval until Ctrl-C.
//! - `leader` prints the leader's node id, or exits 1 when no node leads.
//! - `list` and `show ORDER_ID` read the queue at the leader; `enqueue` adds a test order.
//! - `add-node ID=HOST:PORT` and `remove-node ID` change the membership through the leader;
//!   they need the cluster secret (`--cluster-secret-file`, or env `QUEUE_CLUSTER_SECRET`).
//! - Every command but `probe` presents a queue token (`--queue-token-file`, env
//!   `QUEUE_TOKEN_FILE`, or env `QUEUE_TOKEN`): the admin role's makes every call; another
//!   role's serves that role's calls (any token reads `status`).
//! - `probe TARGET` is the healthcheck of every container (`http://host:port/path` wants a 2xx,
//!   `grpc://host:port` the gRPC health service's SERVING); it needs no `--nodes`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bookstore_common::probe::{Target, probe};
use bookstore_proto as pb;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use queue_raft::{ClientOptions, ClusterSecretSource, QueueClient, QueueTokenSource};

/// Inspects and changes the order-queue cluster.
#[derive(Debug, Parser)]
#[command(name = "queuectl", version)]
struct Args {
    /// Every node's address, host:port or http://host:port, comma-separated; written
    /// `id=host:port`, the id also names a node that does not answer. Needed by every command
    /// but `probe`.
    #[arg(long, env = "QUEUE_NODES", value_delimiter = ',')]
    nodes: Vec<String>,
    /// Needed by add-node and remove-node only.
    #[command(flatten)]
    secret: ClusterSecretSource,
    /// Needed by every command but probe.
    #[command(flatten)]
    token: QueueTokenSource,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One line per node: id, role, term, commit and applied index, queue depth, leader; or why
    /// it did not answer.
    Status,
    /// `status` again and again, until Ctrl-C.
    Watch {
        /// Milliseconds between two looks.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..))]
        interval_ms: u64,
    },
    /// The leader's node id; exit status 1 when no node leads.
    Leader,
    /// The queue's depth and its next orders, in the order they will be executed.
    List {
        /// How many orders to show.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Where one order is; exit status 1 when the queue never saw it.
    Show { order_id: String },
    /// Adds a test order with BOOKS copies of one title; prints where it went.
    Enqueue {
        /// The order id; a fresh UUID when not given (an id the queue knows is not enqueued
        /// again).
        #[arg(long)]
        order_id: Option<String>,
        #[arg(long, default_value = "queuectl")]
        customer: String,
        #[arg(long, default_value = "The Pragmatic Programmer")]
        title: String,
        /// Copies of the title: the order's priority.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        books: u32,
    },
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

/// The nodes as given: ids for display (`?` when not given) and addresses.
struct Nodes {
    ids: Vec<String>,
    addrs: Vec<String>,
    token: QueueTokenSource,
}

impl Nodes {
    fn parse(nodes: &[String], token: QueueTokenSource) -> Self {
        let (ids, addrs) = nodes
            .iter()
            .map(|node| match node.split_once('=') {
                Some((id, addr)) => (id.to_owned(), addr.to_owned()),
                None => ("?".to_owned(), node.clone()),
            })
            .unzip();
        Self { ids, addrs, token }
    }

    fn client(&self) -> anyhow::Result<QueueClient> {
        Ok(QueueClient::new(self.addrs.clone(), self.token.load()?)?)
    }

    /// A client that waits up to `timeout` for one call (membership changes).
    fn patient_client(&self, timeout: Duration) -> anyhow::Result<QueueClient> {
        let options = ClientOptions {
            deadline: timeout,
            attempt_timeout: timeout,
            ..ClientOptions::default()
        };
        Ok(QueueClient::with_options(
            self.addrs.clone(),
            self.token.load()?,
            options,
        )?)
    }
}

/// The node that says it leads in the highest term, if any; a deposed leader that has not heard
/// of the new term yet may still say it leads in an older one.
fn leader_of(statuses: &[pb::ClusterStatusResponse]) -> Option<&pb::ClusterStatusResponse> {
    statuses
        .iter()
        .filter(|status| status.role == "leader")
        .max_by_key(|status| status.term)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let needs_nodes = !matches!(args.command, Command::Probe { .. });
    if needs_nodes && args.nodes.is_empty() {
        Args::command()
            .error(
                ErrorKind::MissingRequiredArgument,
                "--nodes <NODES> (or QUEUE_NODES) is required by every command but `probe`",
            )
            .exit();
    }
    let nodes = Nodes::parse(&args.nodes, args.token);
    match args.command {
        Command::Status => {
            print_status(&nodes).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch { interval_ms } => watch(&nodes, Duration::from_millis(interval_ms)).await,
        Command::Leader => leader(&nodes).await,
        Command::List { limit } => list(&nodes, limit).await,
        Command::Show { order_id } => show(&nodes, &order_id).await,
        Command::Enqueue {
            order_id,
            customer,
            title,
            books,
        } => {
            let order = pb::QueuedOrder {
                order_id: order_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                customer,
                items: vec![pb::QueueItem {
                    title,
                    quantity: books,
                }],
            };
            enqueue(&nodes, order).await
        }
        Command::AddNode { node, timeout_s } => {
            let (id, addr) = node
                .split_once('=')
                .and_then(|(id, addr)| Some((id.trim().parse::<u64>().ok()?, addr.trim())))
                .with_context(|| format!("{node:?} is not ID=HOST:PORT"))?;
            let secret = args.secret.load()?;
            let client = nodes.patient_client(Duration::from_secs(timeout_s))?;
            print_membership(&client.add_node(id, addr, &secret).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::RemoveNode { id, timeout_s } => {
            let secret = args.secret.load()?;
            let client = nodes.patient_client(Duration::from_secs(timeout_s))?;
            print_membership(&client.remove_node(id, &secret).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe { target, timeout_ms } => {
            probe_target(&target, Duration::from_millis(timeout_ms)).await
        }
    }
}

async fn probe_target(target: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let target = Target::parse(target)?;
    Ok(match probe(&target, timeout).await {
        Ok(answer) => {
            println!("healthy: {answer}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("queuectl: unhealthy: {error}");
            ExitCode::FAILURE
        }
    })
}

async fn print_status(nodes: &Nodes) -> anyhow::Result<()> {
    let answers = nodes.client()?.cluster_status_all().await;
    for (id, (addr, answer)) in nodes.ids.iter().zip(&answers) {
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
    Ok(())
}

/// Clears the terminal and prints the status, every `interval`, until Ctrl-C or SIGTERM.
async fn watch(nodes: &Nodes, interval: Duration) -> anyhow::Result<ExitCode> {
    let stop = bookstore_common::shutdown::signal();
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(ExitCode::SUCCESS),
            _ = ticks.tick() => {
                // ANSI: clear the screen, cursor home.
                print!("\x1b[2J\x1b[H");
                println!("every {} ms; Ctrl-C to stop", interval.as_millis());
                print_status(nodes).await?;
            }
        }
    }
}

async fn leader(nodes: &Nodes) -> anyhow::Result<ExitCode> {
    let statuses: Vec<pb::ClusterStatusResponse> = nodes
        .client()?
        .cluster_status_all()
        .await
        .into_iter()
        .filter_map(|(_, answer)| answer.ok())
        .collect();
    Ok(match leader_of(&statuses) {
        Some(leader) => {
            println!("{}", leader.node_id);
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("queuectl: no node is the leader now");
            ExitCode::FAILURE
        }
    })
}

async fn list(nodes: &Nodes, limit: u32) -> anyhow::Result<ExitCode> {
    let listed = nodes.client()?.list_queue(limit).await?;
    println!("depth {}", listed.depth);
    for (position, state) in listed.orders.iter().enumerate() {
        println!("{:>4}. {}", position + 1, describe_order(state));
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(nodes: &Nodes, order_id: &str) -> anyhow::Result<ExitCode> {
    Ok(match nodes.client()?.get_order(order_id).await? {
        Some(state) => {
            println!("{}", describe_order(&state));
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("queuectl: the queue has no order {order_id:?}");
            ExitCode::FAILURE
        }
    })
}

async fn enqueue(nodes: &Nodes, order: pb::QueuedOrder) -> anyhow::Result<ExitCode> {
    let order_id = order.order_id.clone();
    let answer = nodes.client()?.enqueue(order).await?;
    let outcome = if answer.newly_enqueued {
        "enqueued"
    } else {
        "already known, not enqueued again"
    };
    println!(
        "order {order_id} {outcome}: sequence {}, committed at term {} index {}",
        answer.sequence, answer.term, answer.index
    );
    Ok(ExitCode::SUCCESS)
}

/// One line: id, phase, priority, customer and books, and who executes or executed it.
fn describe_order(state: &pb::OrderState) -> String {
    let (order_id, customer, books) =
        state
            .order
            .as_ref()
            .map_or(("?", "?", String::new()), |order| {
                let books = order
                    .items
                    .iter()
                    .map(|item| format!("{} x {}", item.quantity, item.title))
                    .collect::<Vec<_>>()
                    .join(", ");
                (order.order_id.as_str(), order.customer.as_str(), books)
            });
    let phase = match state.phase() {
        pb::OrderPhase::Queued => "queued".to_owned(),
        pb::OrderPhase::Executing => {
            format!("executing by {} (token {})", state.executor_id, state.token)
        }
        pb::OrderPhase::Executed => format!(
            "executed by {} (token {}) at {} ms",
            state.executor_id, state.token, state.executed_at_ms
        ),
        pb::OrderPhase::Rejected => {
            let codes: Vec<&str> = state
                .reasons
                .iter()
                .map(|reason| reason.code.as_str())
                .collect();
            format!("rejected ({})", codes.join(", "))
        }
        pb::OrderPhase::Unspecified => "unknown".to_owned(),
    };
    format!(
        "{order_id} {phase}, priority {} (sequence {}), for {customer}: {books}",
        state.priority, state.sequence
    )
}

fn print_membership(changed: &pb::MembershipResponse) {
    println!("membership changed at index {}", changed.index);
    for member in &changed.members {
        let role = if member.voter { "voter" } else { "learner" };
        println!("node {} {} {role}", member.node_id, member.addr);
    }
}
