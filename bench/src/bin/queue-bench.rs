//! `queue-bench`: load, failover, restart and executor measurements of a running queue cluster,
//! etcd cluster, RabbitMQ cluster or orchestrator, from a client's side, and the verdicts on
//! issue 17's targets from their reports. Parses flags and calls
//! [`bookstore_bench`]; every result is one JSON line on stdout, anything else goes to stderr.
//! `scripts/bench` runs it and writes `docs/BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bookstore_bench::checkout::Checkout;
use bookstore_bench::cluster;
use bookstore_bench::compare::compare;
use bookstore_bench::etcd::{self, EtcdPut};
use bookstore_bench::executors::{self, EnqueueOptions, MeasureOptions};
use bookstore_bench::failover::{self, FailoverOptions};
use bookstore_bench::queue::{self, Enqueue, EnqueueOne, FillOptions};
use bookstore_bench::rabbitmq::RabbitPublish;
use bookstore_bench::restart::{self, RestartOptions, RestartTarget};
use bookstore_bench::targets::{self, RunResults};
use bookstore_bench::{LoadOptions, LoadReport, driver};
use clap::{Args, Parser, Subcommand, ValueEnum};
use queue_raft::QueueClient;
use queue_raft::client_auth::QueueTokenSource;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Measures the order-queue cluster, etcd, RabbitMQ's quorum queue and the checkout path:
/// throughput and latency of one closed-loop driver, leader failover, restart of a node, and how
/// fast executors elected through the queue execute orders; judges issue 17's targets.
#[derive(Debug, Parser)]
#[command(name = "queue-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The queue cluster to measure.
#[derive(Debug, Args)]
struct QueueArgs {
    /// Every queue node's address, host:port or http://host:port, comma-separated.
    #[arg(long, env = "QUEUE_NODES", value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// The queue token presented: the admin role's, since a run enqueues, reads the lease and
    /// watches executions (scripts/bench passes the cluster's).
    #[command(flatten)]
    token: QueueTokenSource,
}

impl QueueArgs {
    fn client(self) -> anyhow::Result<QueueClient> {
        let token = self.token.load().context("the queue token")?;
        QueueClient::new(self.nodes, token).context("the queue nodes' addresses")
    }
}

/// The measured window of a closed-loop run.
#[derive(Debug, Args)]
struct WindowArgs {
    /// Seconds measured.
    #[arg(long, default_value_t = 20.0, value_parser = positive_seconds)]
    duration: f64,
    /// Seconds of load before the measured window, not counted.
    #[arg(long, default_value_t = 3.0, value_parser = seconds)]
    warmup: f64,
}

impl WindowArgs {
    fn options(&self, bench: &'static str, clients: u64) -> anyhow::Result<LoadOptions> {
        Ok(LoadOptions {
            bench,
            clients: usize::try_from(clients).context("--clients")?,
            warmup: Duration::from_secs_f64(self.warmup),
            duration: Duration::from_secs_f64(self.duration),
        })
    }
}

/// How `throughput` sends its enqueues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Calls {
    /// One `Enqueue` call per order, straight to the leader, one call in flight per client: as
    /// an etcd or RabbitMQ client sends one write per call (report `enqueue`).
    OnePerOrder,
    /// Through the queue's client library, which sends concurrent enqueues together in
    /// `EnqueueBatch` calls (report `enqueue_batched`).
    ClientBatched,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Closed-loop enqueues from N concurrent clients; prints ops, ops/s and latency
    /// percentiles of the measured window.
    Throughput {
        #[command(flatten)]
        queue: QueueArgs,
        /// Concurrent clients, each with one enqueue in flight.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        clients: u64,
        #[command(flatten)]
        window: WindowArgs,
        /// About how many bytes each encoded order takes.
        #[arg(long, default_value_t = 256)]
        payload_bytes: usize,
        /// How the enqueues are sent.
        #[arg(long, value_enum, default_value_t = Calls::ClientBatched)]
        calls: Calls,
        /// Seconds to wait for a leader (one-per-order calls go to the leader found first).
        #[arg(long, default_value_t = 30.0, value_parser = positive_seconds)]
        leader_timeout: f64,
    },
    /// Closed-loop persistent publishes to a RabbitMQ quorum queue of three members, each
    /// waiting for the broker's confirm, from N publishers with a channel each on one
    /// connection; prints the same report as `throughput`.
    RabbitmqPublish {
        /// The AMQP URI of the node to publish through (the queue's leader when it was declared
        /// through it).
        #[arg(
            long,
            env = "RABBITMQ_URI",
            default_value = "amqp://127.0.0.1:5672/%2f"
        )]
        uri: String,
        /// The quorum queue, declared when missing.
        #[arg(long, default_value = "queue-bench")]
        queue: String,
        /// Concurrent publishers, each with one publish in flight.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=2_000))]
        clients: u64,
        #[command(flatten)]
        window: WindowArgs,
        /// Bytes of each message's body.
        #[arg(long, default_value_t = 256)]
        payload_bytes: usize,
    },
    /// Closed-loop etcd puts of new keys from N concurrent clients sharing one connection to the
    /// etcd leader; prints the same report as `throughput`.
    EtcdPut {
        /// Every etcd member's client address, host:port or http://host:port, comma-separated.
        #[arg(long, env = "ETCD_ENDPOINTS", value_delimiter = ',', required = true)]
        endpoints: Vec<String>,
        /// Concurrent clients, each with one put in flight.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        clients: u64,
        #[command(flatten)]
        window: WindowArgs,
        /// Bytes of each put's value.
        #[arg(long, default_value_t = 256)]
        value_bytes: usize,
        /// Seconds to wait for the etcd members to agree on a leader.
        #[arg(long, default_value_t = 30.0, value_parser = positive_seconds)]
        leader_timeout: f64,
    },
    /// Closed-loop `POST /checkout` of valid orders, each with a card and user of its own, over
    /// N connections; every answer but a 2xx approval counts as an error.
    Checkout {
        /// The orchestrator's base URL.
        #[arg(
            long,
            env = "ORCHESTRATOR_URL",
            default_value = "http://127.0.0.1:8081"
        )]
        url: String,
        /// Connections, each with one checkout in flight.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        connections: u64,
        #[command(flatten)]
        window: WindowArgs,
    },
    /// Enqueues N new orders as fast as C concurrent enqueues go; prints how long it took.
    Fill {
        #[command(flatten)]
        queue: QueueArgs,
        /// Orders to enqueue.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        count: u64,
        /// Enqueues in flight at once.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        clients: u64,
        /// About how many bytes each encoded order takes.
        #[arg(long, default_value_t = 256)]
        payload_bytes: usize,
    },
    /// Waits until every node answers and has applied all the leader committed; prints each
    /// node's role, applied index and queue depth.
    Settle {
        #[command(flatten)]
        queue: QueueArgs,
        /// Seconds to wait.
        #[arg(long, default_value_t = 120.0, value_parser = positive_seconds)]
        timeout: f64,
    },
    /// SIGKILLs a node of a settled cluster and starts it again; prints the time from the
    /// restart to the node serving, and to it having applied all the leader committed.
    Restart {
        #[command(flatten)]
        queue: QueueArgs,
        /// Which node to restart.
        #[arg(long, value_enum, default_value_t = RestartTarget::Follower)]
        target: RestartTarget,
        /// Shell command that SIGKILLs node {node}.
        #[arg(long, default_value = "scripts/cluster kill {node}")]
        kill_cmd: String,
        /// Shell command that starts node {node} again with its data.
        #[arg(long, default_value = "scripts/cluster restart {node}")]
        restart_cmd: String,
        /// Seconds to wait for the cluster to settle before the kill.
        #[arg(long, default_value_t = 120.0, value_parser = positive_seconds)]
        settle_timeout: f64,
        /// Seconds to wait for the restarted node to catch up.
        #[arg(long, default_value_t = 600.0, value_parser = positive_seconds)]
        catch_up_timeout: f64,
    },
    /// Our one-order-per-call enqueue report against etcd's put and RabbitMQ's publish reports
    /// at the same clients: ratios, targets, and the summary line.
    Compare {
        /// A JSON report of `throughput --calls one-per-order`.
        #[arg(long)]
        ours: PathBuf,
        /// A JSON report of `etcd-put`.
        #[arg(long)]
        etcd: PathBuf,
        /// A JSON report of `rabbitmq-publish`.
        #[arg(long)]
        rabbitmq: PathBuf,
        /// A JSON report of `throughput --calls client-batched`, carried along.
        #[arg(long)]
        batched: Option<PathBuf>,
    },
    /// Judges every target of issue 17 from one run's reports; prints one line per target.
    Verdicts {
        #[command(flatten)]
        files: VerdictFiles,
    },
    /// Kills the leader while one client enqueues, R times; prints each round and the median
    /// time from the kill to the first enqueue committed by the new leader.
    Failover {
        #[command(flatten)]
        queue: QueueArgs,
        /// Rounds of kill, recover, restart, catch up.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
        rounds: u64,
        /// Shell command that SIGKILLs node {node}.
        #[arg(long, default_value = "scripts/cluster kill {node}")]
        kill_cmd: String,
        /// Shell command that starts node {node} again with its data.
        #[arg(long, default_value = "scripts/cluster restart {node}")]
        restart_cmd: String,
        /// Seconds of load before each kill.
        #[arg(long, default_value_t = 1.0, value_parser = seconds)]
        warmup: f64,
        /// Seconds a round may wait for a new leader to commit an enqueue.
        #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
        recovery_timeout: f64,
        /// Seconds to wait for every node to be up and caught up, before and after each round.
        #[arg(long, default_value_t = 60.0, value_parser = positive_seconds)]
        settle_timeout: f64,
    },
    /// Orders executed per second by executors that take no time to execute: first `enqueue`
    /// with no executor at work, then start the executors, then `measure`.
    Executors {
        #[command(flatten)]
        queue: QueueArgs,
        #[command(subcommand)]
        step: ExecutorsStep,
    },
}

/// The reports of one run that `verdicts` judges.
#[derive(Debug, Args)]
struct VerdictFiles {
    /// The `compare` report of each client count.
    #[arg(long = "compare", required = true)]
    comparisons: Vec<PathBuf>,
    /// The `checkout` report at 64 connections.
    #[arg(long)]
    checkout: PathBuf,
    /// The `checkout` report at 1 connection.
    #[arg(long)]
    checkout_one: PathBuf,
    /// The lines `failover` printed (its summary among them).
    #[arg(long)]
    failover: PathBuf,
    /// The `executors measure` report with the executors' default settings.
    #[arg(long)]
    executors: PathBuf,
    /// The `settle` report of the cluster holding the big queue.
    #[arg(long)]
    settled: PathBuf,
    /// Each node's resident memory then, in KiB: {"1": KiB, ...}.
    #[arg(long)]
    rss: PathBuf,
    /// The `restart` reports of that cluster.
    #[arg(long = "restart", required = true)]
    restarts: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ExecutorsStep {
    /// Waits until no executor is at work (no lease held, nothing queued), enqueues N orders of
    /// mixed sizes with unique ids; prints the run's id for `measure`.
    Enqueue {
        /// Orders to enqueue.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
        count: u64,
        /// Enqueues in flight at once.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
        concurrency: u64,
        /// Seconds to wait for the cluster to be idle.
        #[arg(long, default_value_t = 30.0, value_parser = positive_seconds)]
        idle_timeout: f64,
    },
    /// Waits until every order of the run is executed; prints orders/s from the cluster's
    /// execution times, the cycle between executions, the re-election time and who led.
    Measure {
        /// The run `enqueue` printed.
        #[arg(long)]
        run: String,
        /// Orders `enqueue` enqueued.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
        count: u64,
        /// The executors' --execution-ms, subtracted from each cycle.
        #[arg(long, default_value_t = 0)]
        execution_ms: u64,
        /// Seconds to wait for every order to be executed.
        #[arg(long, default_value_t = 600.0, value_parser = positive_seconds)]
        timeout: f64,
    },
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(format!("{text:?} is not a number of seconds")),
    }
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    seconds(text).and_then(|value| {
        if value > 0.0 {
            Ok(value)
        } else {
            Err("must be more than 0".to_owned())
        }
    })
}

fn print_json(value: &impl Serialize) {
    // The reports are plain structs of numbers and strings, which always serialize.
    let line = serde_json::to_string(value).expect("a report serializes to JSON");
    println!("{line}");
}

fn read_report(path: &Path) -> anyhow::Result<LoadReport> {
    read_json(path)
}

/// The one JSON value in the file at `path`.
fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    serde_json::from_str(text.trim())
        .with_context(|| format!("{path:?} is not one {} report", std::any::type_name::<T>()))
}

/// The line of the JSON lines in `path` whose `bench` is `bench`.
fn read_line_of<T: DeserializeOwned>(path: &Path, bench: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("a line of {path:?}"))?;
        if value["bench"] == bench {
            return serde_json::from_value(value)
                .with_context(|| format!("the {bench} line of {path:?}"));
        }
    }
    anyhow::bail!("{path:?} has no {bench} line")
}

impl VerdictFiles {
    /// What `verdicts` judges, read from the files the flags name.
    fn read(&self) -> anyhow::Result<RunResults> {
        let settled: serde_json::Value = read_json(&self.settled)?;
        Ok(RunResults {
            comparisons: self
                .comparisons
                .iter()
                .map(|path| read_json(path))
                .collect::<anyhow::Result<_>>()?,
            checkout: read_report(&self.checkout)?,
            checkout_one: read_report(&self.checkout_one)?,
            failover: read_line_of(&self.failover, "failover")?,
            executors: read_json(&self.executors)?,
            queued_orders: settled["queue_depth"]
                .as_u64()
                .context("the settle report has no queue_depth")?,
            node_rss_kib: read_json::<BTreeMap<String, u64>>(&self.rss)?,
            restarts: self
                .restarts
                .iter()
                .map(|path| read_json(path))
                .collect::<anyhow::Result<_>>()?,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Throughput {
            queue,
            clients,
            window,
            payload_bytes,
            calls: Calls::ClientBatched,
            leader_timeout: _,
        } => {
            let operation = Arc::new(Enqueue::new(queue.client()?, payload_bytes));
            let options = window.options("enqueue_batched", clients)?;
            print_json(&driver::run(operation, &options).await);
        }
        Command::Throughput {
            queue,
            clients,
            window,
            payload_bytes,
            calls: Calls::OnePerOrder,
            leader_timeout,
        } => {
            let (leader, operation) = EnqueueOne::connect(
                &queue.client()?,
                payload_bytes,
                Duration::from_secs_f64(leader_timeout),
            )
            .await?;
            eprintln!("queue-bench throughput: the queue leader is at {leader}");
            let options = window.options("enqueue", clients)?;
            print_json(&driver::run(Arc::new(operation), &options).await);
        }
        Command::RabbitmqPublish {
            uri,
            queue,
            clients,
            window,
            payload_bytes,
        } => {
            let channels = usize::try_from(clients).context("--clients")?;
            let operation = RabbitPublish::connect(&uri, &queue, channels, payload_bytes).await?;
            let options = window.options("rabbitmq_publish", clients)?;
            print_json(&driver::run(Arc::new(operation), &options).await);
        }
        Command::EtcdPut {
            endpoints,
            clients,
            window,
            value_bytes,
            leader_timeout,
        } => {
            let (leader, channel) =
                etcd::connect_to_leader(&endpoints, Duration::from_secs_f64(leader_timeout))
                    .await?;
            eprintln!("queue-bench etcd-put: the etcd leader is at {leader}");
            let operation = Arc::new(EtcdPut::new(channel, value_bytes));
            let options = window.options("etcd_put", clients)?;
            print_json(&driver::run(operation, &options).await);
        }
        Command::Checkout {
            url,
            connections,
            window,
        } => {
            let connections_usize = usize::try_from(connections).context("--connections")?;
            let operation = Arc::new(Checkout::new(&url, connections_usize)?);
            let options = window.options("checkout", connections)?;
            print_json(&driver::run(operation, &options).await);
        }
        Command::Fill {
            queue,
            count,
            clients,
            payload_bytes,
        } => {
            let options = FillOptions {
                count,
                clients: usize::try_from(clients).context("--clients")?,
                payload_bytes,
            };
            print_json(&queue::fill(&queue.client()?, &options).await?);
        }
        Command::Settle { queue, timeout } => {
            let timeout = Duration::from_secs_f64(timeout);
            print_json(&cluster::settle(&queue.client()?, timeout).await?);
        }
        Command::Restart {
            queue,
            target,
            kill_cmd,
            restart_cmd,
            settle_timeout,
            catch_up_timeout,
        } => {
            let options = RestartOptions {
                target,
                kill_cmd,
                restart_cmd,
                settle_timeout: Duration::from_secs_f64(settle_timeout),
                catch_up_timeout: Duration::from_secs_f64(catch_up_timeout),
            };
            print_json(&restart::restart(&queue.client()?, &options).await?);
        }
        Command::Compare {
            ours,
            etcd,
            rabbitmq,
            batched,
        } => {
            let batched = batched.as_deref().map(read_report).transpose()?;
            print_json(&compare(
                &read_report(&ours)?,
                &read_report(&etcd)?,
                &read_report(&rabbitmq)?,
                batched.as_ref(),
            )?);
        }
        Command::Verdicts { files } => {
            for verdict in targets::verdicts(&files.read()?) {
                print_json(&verdict);
            }
        }
        Command::Failover {
            queue,
            rounds,
            kill_cmd,
            restart_cmd,
            warmup,
            recovery_timeout,
            settle_timeout,
        } => {
            let options = FailoverOptions {
                rounds: usize::try_from(rounds)?,
                kill_cmd,
                restart_cmd,
                warmup: Duration::from_secs_f64(warmup),
                recovery_timeout: Duration::from_secs_f64(recovery_timeout),
                settle_timeout: Duration::from_secs_f64(settle_timeout),
            };
            let report = failover::failover(&queue.client()?, &options, print_json).await?;
            print_json(&report);
        }
        Command::Executors {
            queue,
            step:
                ExecutorsStep::Enqueue {
                    count,
                    concurrency,
                    idle_timeout,
                },
        } => {
            let options = EnqueueOptions {
                count: usize::try_from(count)?,
                concurrency: usize::try_from(concurrency)?,
                idle_timeout: Duration::from_secs_f64(idle_timeout),
            };
            print_json(&executors::enqueue(&queue.client()?, &options).await?);
        }
        Command::Executors {
            queue,
            step:
                ExecutorsStep::Measure {
                    run,
                    count,
                    execution_ms,
                    timeout,
                },
        } => {
            let options = MeasureOptions {
                run,
                count: usize::try_from(count)?,
                execution: Duration::from_millis(execution_ms),
                timeout: Duration::from_secs_f64(timeout),
                concurrency: 16,
            };
            print_json(&executors::measure(&queue.client()?, &options).await?);
        }
    }
    Ok(())
}
