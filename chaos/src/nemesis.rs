//! The nemesis: every few seconds one fault, each repaired before the next, chosen from a seeded
//! schedule so that a run can be repeated. The schedule deals the faults in rounds, each round
//! every [`FaultKind`] its [`FaultKind::per_round`] times in a shuffled order, so every kind is
//! injected within the first round (about a minute and a half) whatever the seed.
//!
//! Adding a kind of fault is one variant of [`FaultKind`] with its name, share and duration, and
//! its arm in [`Nemesis::inject`] (which returns the [`Repair`] that undoes it); the history
//! records it by name and the summary counts it from there.
//!
//! While it waits, the nemesis also looks every [`EXIT_POLL`] for processes that exited without
//! being told to, records each (a fault of the run) and starts it again.

use std::ops::Range;
use std::time::Duration;

use queue_raft::QueueClient;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::history::{FaultPhase, NemesisEvent, ProcessExit};
use crate::network::{Network, Role};
use crate::system::{BACKEND_NAMES, EXECUTOR_COUNT, QUEUE_NODES, System};

/// The quiet time between two faults, in milliseconds.
const GAP_MS: Range<u64> = 1_500..4_000;
/// How often the nemesis looks for processes that exited by themselves.
pub const EXIT_POLL: Duration = Duration::from_millis(250);

/// The faults the nemesis chooses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// SIGKILL one queue node (half the time the Raft leader).
    KillQueueNode,
    /// SIGKILL two of the three queue nodes at once: no majority until they are back.
    KillQueueMajority,
    /// SIGKILL all three queue nodes at once.
    KillAllQueueNodes,
    /// Cut the power of one queue node (half the time the leader): SIGKILL it, throw away
    /// everything its disk had not synced, start it on what survived.
    PowerCutQueueNode,
    /// Cut the power of all three queue nodes at once, as of a rack or a host running them all.
    PowerCutAllQueueNodes,
    /// SIGSTOP one queue node (half the time the leader) for seconds, then SIGCONT: a leader
    /// that wakes up deposed, with writes and reads in flight.
    PauseQueueNode,
    /// SIGKILL one executor (half the time the lease holder).
    KillExecutor,
    /// SIGSTOP the executor holding the lease (any, if none does) for longer than the lease,
    /// then SIGCONT: it must neither execute nor acknowledge under the lease it had.
    PauseExecutor,
    KillOrchestrator,
    /// SIGKILL one of the three backends.
    KillBackend,
    /// Cut one queue node (half the time the leader) off from its peers only: clients still
    /// reach it.
    PartitionQueueNode,
    /// Cut one queue node (half the time the leader) off from its peers for long enough, under
    /// load, that the others snapshot and purge their logs past its own: it is caught up by a
    /// snapshot install on heal.
    LongPartitionQueueNode,
    /// Cut one queue node off from everything.
    IsolateQueueNode,
    /// Cut one executor (half the time the lease holder) off from everything: the cluster
    /// included.
    IsolateExecutor,
    /// Set the three queue nodes' wall clocks seconds apart.
    SkewQueueClocks,
    /// Make one queue node's wall clock (half the time the leader's) jump forward or backward by
    /// up to two minutes; the repair jumps it back.
    JumpQueueClock,
}

impl FaultKind {
    pub const ALL: [FaultKind; 16] = [
        FaultKind::KillQueueNode,
        FaultKind::KillQueueMajority,
        FaultKind::KillAllQueueNodes,
        FaultKind::PowerCutQueueNode,
        FaultKind::PowerCutAllQueueNodes,
        FaultKind::PauseQueueNode,
        FaultKind::KillExecutor,
        FaultKind::PauseExecutor,
        FaultKind::KillOrchestrator,
        FaultKind::KillBackend,
        FaultKind::PartitionQueueNode,
        FaultKind::LongPartitionQueueNode,
        FaultKind::IsolateQueueNode,
        FaultKind::IsolateExecutor,
        FaultKind::SkewQueueClocks,
        FaultKind::JumpQueueClock,
    ];

    /// The name in the history and the summary.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillQueueNode => "kill-queue-node",
            FaultKind::KillQueueMajority => "kill-queue-majority",
            FaultKind::KillAllQueueNodes => "kill-all-queue-nodes",
            FaultKind::PowerCutQueueNode => "power-cut-queue-node",
            FaultKind::PowerCutAllQueueNodes => "power-cut-all-queue-nodes",
            FaultKind::PauseQueueNode => "pause-queue-node",
            FaultKind::KillExecutor => "kill-executor",
            FaultKind::PauseExecutor => "pause-executor",
            FaultKind::KillOrchestrator => "kill-orchestrator",
            FaultKind::KillBackend => "kill-backend",
            FaultKind::PartitionQueueNode => "partition-queue-node",
            FaultKind::LongPartitionQueueNode => "long-partition-queue-node",
            FaultKind::IsolateQueueNode => "isolate-queue-node",
            FaultKind::IsolateExecutor => "isolate-executor",
            FaultKind::SkewQueueClocks => "skew-queue-clocks",
            FaultKind::JumpQueueClock => "jump-queue-clock",
        }
    }

    /// The kind named `name` (as [`FaultKind::name`] gives it).
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// How many times it comes in each round of the schedule: losing one queue node, the fault
    /// that tests failover, most often; one round is about two minutes, so that the 3-minute
    /// run of `scripts/test` injects every kind.
    fn per_round(self) -> usize {
        match self {
            FaultKind::KillQueueNode => 2,
            _ => 1,
        }
    }

    /// How long the fault lasts before it is repaired, in milliseconds.
    fn duration_ms(self) -> Range<u64> {
        match self {
            FaultKind::KillQueueNode | FaultKind::PauseQueueNode => 1_000..6_000,
            FaultKind::KillQueueMajority => 1_000..5_000,
            FaultKind::KillAllQueueNodes
            | FaultKind::PowerCutQueueNode
            | FaultKind::PowerCutAllQueueNodes => 1_000..4_000,
            FaultKind::KillExecutor | FaultKind::KillOrchestrator | FaultKind::KillBackend => {
                500..3_000
            }
            FaultKind::PartitionQueueNode | FaultKind::IsolateQueueNode => 2_000..8_000,
            // Often longer than the executors' lease (2 s), so that its lease ends under it.
            FaultKind::IsolateExecutor => 1_000..6_000,
            // Always longer than the lease.
            FaultKind::PauseExecutor => 2_500..6_000,
            // The cluster writes about 50 entries a second under the run's load and snapshots
            // every 200 (`system::SNAPSHOT_LOGS`), keeping 50: a dozen seconds purge well past
            // the cut-off node's log.
            FaultKind::LongPartitionQueueNode => 12_000..20_000,
            FaultKind::SkewQueueClocks | FaultKind::JumpQueueClock => 5_000..15_000,
        }
    }
}

/// The most a skewed queue node's clock is set off, either way.
const SKEW_MS: i64 = 10_000;
/// The range of a clock jump's size, either way.
const JUMP_MS: Range<i64> = 10_000..120_000;

/// How to undo a fault.
#[derive(Debug)]
enum Repair {
    /// Start these processes again.
    Restart(Vec<String>),
    /// SIGCONT this process.
    Resume(String),
    HealRaftLinks,
    Rejoin(Role),
    /// Set these queue nodes' clock offsets back to zero.
    ResetClocks(Vec<u64>),
}

/// What the nemesis did, in order, and the processes it found exited by themselves.
#[derive(Debug, Default)]
pub struct NemesisLog {
    pub events: Vec<NemesisEvent>,
    pub exits: Vec<ProcessExit>,
}

impl NemesisLog {
    fn record(&mut self, fault: FaultKind, phase: FaultPhase, targets: &[String]) {
        let verb = match phase {
            FaultPhase::Inject => "inject",
            FaultPhase::Repair => "repair",
        };
        println!("nemesis: {verb} {} {}", fault.name(), targets.join(" "));
        self.events.push(NemesisEvent {
            at_ms: crate::now_ms(),
            fault: fault.name().to_owned(),
            phase,
            targets: targets.to_vec(),
        });
    }

    /// How many faults of each kind were injected, every kind listed.
    pub fn injected(events: &[NemesisEvent]) -> Vec<(&'static str, usize)> {
        FaultKind::ALL
            .iter()
            .map(|kind| {
                let count = events
                    .iter()
                    .filter(|event| event.phase == FaultPhase::Inject && event.fault == kind.name())
                    .count();
                (kind.name(), count)
            })
            .collect()
    }
}

/// The nemesis of one run.
pub struct Nemesis<'r> {
    rng: StdRng,
    /// The kinds each round deals.
    kinds: Vec<FaultKind>,
    system: &'r mut System,
    network: &'r Network,
    /// A client of the queue nodes, to find the Raft leader and the lease holder.
    status: &'r QueueClient,
    /// The targets of the fault in force (empty between faults), for the clients that aim at
    /// them (a read through the node cut off from its peers).
    faulted: watch::Sender<Vec<String>>,
    /// What is left of the current round of the schedule, dealt from the end.
    deck: Vec<FaultKind>,
    pub log: NemesisLog,
}

impl<'r> Nemesis<'r> {
    pub fn new(
        seed: u64,
        kinds: Vec<FaultKind>,
        system: &'r mut System,
        network: &'r Network,
        status: &'r QueueClient,
        faulted: watch::Sender<Vec<String>>,
    ) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            kinds,
            system,
            network,
            status,
            faulted,
            deck: Vec::new(),
            log: NemesisLog::default(),
        }
    }

    /// Injects faults until `until`, finishing (repairing) the fault in hand then.
    pub async fn run(&mut self, until: Instant) -> anyhow::Result<()> {
        loop {
            self.pause(GAP_MS).await?;
            if Instant::now() >= until {
                return Ok(());
            }
            let kind = self.next_kind();
            let (targets, repair) = self.inject(kind).await?;
            self.log.record(kind, FaultPhase::Inject, &targets);
            self.faulted.send_replace(targets.clone());
            self.pause(kind.duration_ms()).await?;
            self.repair(repair)?;
            self.faulted.send_replace(Vec::new());
            self.log.record(kind, FaultPhase::Repair, &targets);
        }
    }

    /// Restarts every process found exited by itself, recording each exit in the log.
    pub fn restart_exited(&mut self) -> anyhow::Result<()> {
        let exits = self.system.restart_exited()?;
        self.log.exits.extend(exits);
        Ok(())
    }

    fn next_kind(&mut self) -> FaultKind {
        if self.deck.is_empty() {
            self.deck = self
                .kinds
                .iter()
                .flat_map(|&kind| std::iter::repeat_n(kind, kind.per_round()))
                .collect();
            self.deck.shuffle(&mut self.rng);
        }
        // Refilled above whenever empty.
        self.deck.pop().unwrap_or(FaultKind::KillQueueNode)
    }

    /// Injects one fault of `kind`; returns its targets and how to undo it.
    async fn inject(&mut self, kind: FaultKind) -> anyhow::Result<(Vec<String>, Repair)> {
        let (targets, repair) = match kind {
            FaultKind::KillQueueNode => {
                let node = self.pick_queue_node().await;
                let targets = vec![Role::QueueNode(node).name()];
                (targets.clone(), Repair::Restart(targets))
            }
            FaultKind::KillQueueMajority => {
                let first = self.pick_queue_node().await;
                let others: Vec<u64> = (1..=QUEUE_NODES).filter(|&node| node != first).collect();
                let second = others[self.rng.random_range(0..others.len())];
                let targets = vec![
                    Role::QueueNode(first).name(),
                    Role::QueueNode(second).name(),
                ];
                (targets.clone(), Repair::Restart(targets))
            }
            FaultKind::KillAllQueueNodes => {
                let targets: Vec<String> = (1..=QUEUE_NODES)
                    .map(|node| Role::QueueNode(node).name())
                    .collect();
                (targets.clone(), Repair::Restart(targets))
            }
            FaultKind::PowerCutQueueNode => {
                let node = self.pick_queue_node().await;
                let targets = vec![Role::QueueNode(node).name()];
                self.system.process(&targets[0])?.kill();
                self.system.cut_power(node)?;
                (targets.clone(), Repair::Restart(targets))
            }
            FaultKind::PowerCutAllQueueNodes => {
                let targets: Vec<String> = (1..=QUEUE_NODES)
                    .map(|node| Role::QueueNode(node).name())
                    .collect();
                for name in &targets {
                    self.system.process(name)?.kill();
                }
                for node in 1..=QUEUE_NODES {
                    self.system.cut_power(node)?;
                }
                (targets.clone(), Repair::Restart(targets))
            }
            FaultKind::PauseQueueNode => {
                let name = Role::QueueNode(self.pick_queue_node().await).name();
                self.system.process(&name)?.pause()?;
                (vec![name.clone()], Repair::Resume(name))
            }
            FaultKind::PauseExecutor => {
                let name = Role::Executor(self.lease_holder_or_any().await).name();
                self.system.process(&name)?.pause()?;
                (vec![name.clone()], Repair::Resume(name))
            }
            FaultKind::LongPartitionQueueNode => {
                let node = self.pick_queue_node().await;
                self.network.cut_raft_links(node)?;
                (vec![Role::QueueNode(node).name()], Repair::HealRaftLinks)
            }
            FaultKind::SkewQueueClocks => {
                let mut targets = Vec::new();
                for node in 1..=QUEUE_NODES {
                    let offset_ms = self.rng.random_range(-SKEW_MS..=SKEW_MS);
                    self.system.set_clock_offset(node, offset_ms)?;
                    println!("nemesis: queue-{node}'s clock set {offset_ms:+} ms off");
                    targets.push(Role::QueueNode(node).name());
                }
                (targets, Repair::ResetClocks((1..=QUEUE_NODES).collect()))
            }
            FaultKind::JumpQueueClock => {
                let node = self.pick_queue_node().await;
                let size_ms = self.rng.random_range(JUMP_MS);
                let offset_ms = if self.rng.random_bool(0.5) {
                    size_ms
                } else {
                    -size_ms
                };
                self.system.set_clock_offset(node, offset_ms)?;
                println!("nemesis: queue-{node}'s clock jumps {offset_ms:+} ms");
                (
                    vec![Role::QueueNode(node).name()],
                    Repair::ResetClocks(vec![node]),
                )
            }
            FaultKind::KillExecutor => {
                let executor = self.pick_executor().await;
                let targets = vec![Role::Executor(executor).name()];
                (targets.clone(), Repair::Restart(targets))
            }
            FaultKind::KillOrchestrator => {
                let targets = vec!["orchestrator".to_owned()];
                (targets.clone(), Repair::Restart(targets))
            }
            FaultKind::KillBackend => {
                let backend = BACKEND_NAMES[self.rng.random_range(0..BACKEND_NAMES.len())];
                let targets = vec![backend.to_owned()];
                (targets.clone(), Repair::Restart(targets))
            }
            FaultKind::PartitionQueueNode => {
                let node = self.pick_queue_node().await;
                self.network.cut_raft_links(node)?;
                (vec![Role::QueueNode(node).name()], Repair::HealRaftLinks)
            }
            FaultKind::IsolateQueueNode => {
                let role = Role::QueueNode(self.pick_queue_node().await);
                self.network.isolate(role)?;
                (vec![role.name()], Repair::Rejoin(role))
            }
            FaultKind::IsolateExecutor => {
                let role = Role::Executor(self.pick_executor().await);
                self.network.isolate(role)?;
                (vec![role.name()], Repair::Rejoin(role))
            }
        };
        if let Repair::Restart(processes) = &repair {
            for name in processes {
                self.system.process(name)?.kill();
            }
        }
        Ok((targets, repair))
    }

    fn repair(&mut self, repair: Repair) -> anyhow::Result<()> {
        match repair {
            Repair::Restart(processes) => {
                for name in &processes {
                    self.system.process(name)?.start()?;
                }
                Ok(())
            }
            Repair::Resume(name) => self.system.process(&name)?.resume(),
            Repair::HealRaftLinks => self.network.heal_raft_links(),
            Repair::Rejoin(role) => self.network.rejoin(role),
            Repair::ResetClocks(nodes) => {
                for node in nodes {
                    self.system.set_clock_offset(node, 0)?;
                }
                Ok(())
            }
        }
    }

    /// Waits a time drawn from `range`, looking for processes that exited by themselves.
    async fn pause(&mut self, range: Range<u64>) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_millis(self.rng.random_range(range));
        loop {
            self.restart_exited()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            tokio::time::sleep(EXIT_POLL.min(until - now)).await;
        }
    }

    /// Half the time the current Raft leader (when one is known), else any node: losing the
    /// leader is the fault that tests failover.
    async fn pick_queue_node(&mut self) -> u64 {
        let random = self.rng.random_range(1..=QUEUE_NODES);
        if !self.rng.random_bool(0.5) {
            return random;
        }
        self.leader_status()
            .await
            .map(|leader| leader.node_id)
            .filter(|node| (1..=QUEUE_NODES).contains(node))
            .unwrap_or(random)
    }

    /// Half the time the executor holding the lease (when one does), else any: losing the
    /// holder mid-order is the fault that tests fencing.
    async fn pick_executor(&mut self) -> u64 {
        let random = self.rng.random_range(1..=EXECUTOR_COUNT);
        if !self.rng.random_bool(0.5) {
            return random;
        }
        self.leader_status()
            .await
            .and_then(|leader| executor_number(&leader.lease_holder))
            .unwrap_or(random)
    }

    /// The executor holding the lease when one does, else any.
    async fn lease_holder_or_any(&mut self) -> u64 {
        let random = self.rng.random_range(1..=EXECUTOR_COUNT);
        self.leader_status()
            .await
            .and_then(|leader| executor_number(&leader.lease_holder))
            .unwrap_or(random)
    }

    async fn leader_status(&self) -> Option<bookstore_proto::ClusterStatusResponse> {
        let statuses = self.status.cluster_status_all().await;
        bookstore_bench::cluster::leader_of(
            statuses
                .iter()
                .filter_map(|(_, answer)| answer.as_ref().ok()),
        )
        .cloned()
    }
}

/// The number of the executor named `holder` (`executor-N`), if it is one of the run's.
fn executor_number(holder: &str) -> Option<u64> {
    holder
        .strip_prefix("executor-")
        .and_then(|number| number.parse().ok())
        .filter(|executor| (1..=EXECUTOR_COUNT).contains(executor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_name_and_a_place_in_each_round() {
        let names: std::collections::BTreeSet<&str> =
            FaultKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(names.len(), FaultKind::ALL.len());
        assert!(FaultKind::ALL.iter().all(|kind| kind.per_round() >= 1));
        for kind in FaultKind::ALL {
            assert_eq!(FaultKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(FaultKind::from_name("kill-everything"), None);
    }

    #[test]
    fn injections_are_counted_by_kind_repairs_are_not() {
        let event = |fault: &str, phase| NemesisEvent {
            at_ms: 1,
            fault: fault.to_owned(),
            phase,
            targets: vec!["queue-1".to_owned()],
        };
        let events = [
            event("kill-queue-node", FaultPhase::Inject),
            event("kill-queue-node", FaultPhase::Repair),
            event("kill-queue-node", FaultPhase::Inject),
            event("isolate-executor", FaultPhase::Inject),
        ];
        let counts = NemesisLog::injected(&events);
        assert_eq!(counts.len(), FaultKind::ALL.len());
        assert!(counts.contains(&("kill-queue-node", 2)));
        assert!(counts.contains(&("isolate-executor", 1)));
        assert!(counts.contains(&("kill-orchestrator", 0)));
    }
}
