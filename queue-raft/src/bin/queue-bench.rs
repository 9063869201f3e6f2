//! `queue-bench`: load and failover measurements of a running queue cluster, from a client's
//! side. Parses flags and calls [`queue_raft::bench`]; every result is one JSON line on stdout,
//! anything else goes to stderr. `scripts/bench` runs it and writes `docs/BENCHMARKS.md`.

use std::time::Duration;

use clap::{Parser, Subcommand};
use queue_raft::QueueClient;
use queue_raft::bench::{self, FailoverOptions, ThroughputOptions};
use serde::Serialize;

/// Measures the order-queue cluster: enqueue throughput and latency, and leader failover.
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
    }
    Ok(())
}
