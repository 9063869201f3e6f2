//! The nemesis: every few seconds one fault, chosen by a seeded RNG so a run can be repeated:
//! SIGKILL a queue node and restart it after a pause, SIGKILL an executor and restart it, or cut
//! a queue node (often the Raft leader) off the network and heal it. Faults come one at a time,
//! each repaired before the next, so a majority of the queue nodes is always up and connected.

use std::time::Duration;

use queue_raft::QueueClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::history::{NemesisAction, NemesisEvent};
use crate::network::Network;
use crate::system::System;

/// The quiet time between two faults, in milliseconds.
const GAP_MS: std::ops::Range<u64> = 1_500..4_000;
/// How long a killed queue node stays down.
const NODE_DOWN_MS: std::ops::Range<u64> = 1_000..6_000;
/// How long a killed executor stays down.
const EXECUTOR_DOWN_MS: std::ops::Range<u64> = 500..3_000;
/// How long a partition lasts.
const PARTITION_MS: std::ops::Range<u64> = 2_000..8_000;

/// The faults the nemesis chooses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillQueueNode,
    KillExecutor,
    Partition,
}

/// What the nemesis did, in order.
#[derive(Debug, Default)]
pub struct NemesisLog {
    pub events: Vec<NemesisEvent>,
}

impl NemesisLog {
    pub fn record(&mut self, action: NemesisAction) {
        let (verb, target) = match &action {
            NemesisAction::Kill { target } => ("SIGKILL", target),
            NemesisAction::Restart { target } => ("restart", target),
            NemesisAction::Partition { target } => ("partition", target),
            NemesisAction::Heal { target } => ("heal", target),
        };
        println!("nemesis: {verb} {target}");
        self.events.push(NemesisEvent {
            at_ms: crate::now_ms(),
            action,
        });
    }
}

/// Injects faults until `until`, finishing (repairing) the fault in hand then. `status` is a
/// client of the queue nodes, used to find the Raft leader.
pub async fn run(
    seed: u64,
    until: Instant,
    system: &mut System,
    network: &Network,
    status: &QueueClient,
    log: &mut NemesisLog,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let node_ids: Vec<u64> = network
        .layout()
        .nodes
        .iter()
        .map(|node| node.node_id)
        .collect();
    loop {
        tokio::time::sleep(Duration::from_millis(rng.random_range(GAP_MS))).await;
        if Instant::now() >= until {
            return Ok(());
        }
        let fault = match rng.random_range(0..3) {
            0 => Fault::KillQueueNode,
            1 => Fault::KillExecutor,
            _ => Fault::Partition,
        };
        match fault {
            Fault::KillQueueNode => {
                let node_id = pick_node(&mut rng, &node_ids, status).await;
                let target = format!("queue-{node_id}");
                down_and_up(system, &target, &mut rng, NODE_DOWN_MS, log).await?;
            }
            Fault::KillExecutor => {
                let number = rng.random_range(1..=system.executors.len());
                let target = format!("executor-{number}");
                down_and_up(system, &target, &mut rng, EXECUTOR_DOWN_MS, log).await?;
            }
            Fault::Partition => {
                let node_id = pick_node(&mut rng, &node_ids, status).await;
                let target = format!("queue-{node_id}");
                network.partition(node_id)?;
                log.record(NemesisAction::Partition {
                    target: target.clone(),
                });
                pause(&mut rng, PARTITION_MS).await;
                network.heal(node_id)?;
                log.record(NemesisAction::Heal { target });
            }
        }
    }
}

/// SIGKILLs `target`, waits, and starts it again.
async fn down_and_up(
    system: &mut System,
    target: &str,
    rng: &mut StdRng,
    down: std::ops::Range<u64>,
    log: &mut NemesisLog,
) -> anyhow::Result<()> {
    system.process(target)?.kill();
    log.record(NemesisAction::Kill {
        target: target.to_owned(),
    });
    pause(rng, down).await;
    system.process(target)?.start()?;
    log.record(NemesisAction::Restart {
        target: target.to_owned(),
    });
    Ok(())
}

async fn pause(rng: &mut StdRng, range: std::ops::Range<u64>) {
    tokio::time::sleep(Duration::from_millis(rng.random_range(range))).await;
}

/// Half the time the current Raft leader (when one is known), else any node: losing the leader
/// is the fault that tests failover.
async fn pick_node(rng: &mut StdRng, node_ids: &[u64], status: &QueueClient) -> u64 {
    let random = node_ids[rng.random_range(0..node_ids.len())];
    if !rng.random_bool(0.5) {
        return random;
    }
    let statuses = status.cluster_status_all().await;
    bookstore_bench::cluster::leader_of(
        statuses
            .iter()
            .filter_map(|(_, answer)| answer.as_ref().ok()),
    )
    .map(|leader| leader.node_id)
    .filter(|leader| node_ids.contains(leader))
    .unwrap_or(random)
}
