//! `queue-bench`: load, failover and executor measurements of a running queue cluster, from a
//! client's side. Parses flags and calls [`queue_raft::bench`]; every result is one JSON line on stdout,
//! anything else goes to stderr. `scripts/bench` runs it and writes `docs/BENCHMARKS.md`.

use std::time::Duration;

use clap::{Parser, Subcommand};
use queue_raft::QueueClient;
use queue_raft::bench::executors::{self, EnqueueOptions, MeasureOptions};
use queue_raft::bench::{self, FailoverOptions, ThroughputOptions};
use serde::Serialize;

/// Measures the order-queue cluster: enqueue throughput and latency, leader failover, and how fast
/// executors elected through it execute orders.
#[derive(Debug, Parser)]
#[command(name = "queue-bench", version)]
struct Args {
    /// Every node's address, host:port or http://host:port, comma-separated.
    #[arg(long, env = "QUEUE_NODES", value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Closed-loop enqueues from N concurrent clients sharing one connection per node; prints
    /// ops, ops/s and latency percentiles of the measured window.
    Throughput {
        /// Concurrent clients, each with one enqueue in flight.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        clients: u64,
        /// Seconds measured.
        #[arg(long, default_value_t = 20.0, value_parser = positive_seconds)]
        duration: f64,
        /// Seconds of load before the measured window, not counted.
        #[arg(long, default_value_t = 3.0, value_parser = seconds)]
        warmup: f64,
        /// About how many bytes each encoded order takes.
        #[arg(long, default_value_t = 256)]
        payload_bytes: usize,
    },
    /// Kills the leader while one client enqueues, R times; prints each round and the median
    /// time from the kill to the first enqueue committed by the new leader.
    Failover {
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
        #[command(subcommand)]
        step: ExecutorsStep,
    },
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = QueueClient::new(args.nodes)?;
    match args.command {
        Command::Throughput {
            clients,
            duration,
            warmup,
            payload_bytes,
        } => {
            let options = ThroughputOptions {
                clients: usize::try_from(clients)?,
                warmup: Duration::from_secs_f64(warmup),
                duration: Duration::from_secs_f64(duration),
                payload_bytes,
            };
            print_json(&bench::throughput(&client, &options).await);
        }
        Command::Failover {
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
            let report = bench::failover(&client, &options, print_json).await?;
            print_json(&report);
        }
        Command::Executors {
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
            print_json(&executors::enqueue(&client, &options).await?);
        }
        Command::Executors {
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
            print_json(&executors::measure(&client, &options).await?);
        }
    }
    Ok(())
}
