//! Leader failover under load: one task enqueues in a closed loop while the leader is killed by
//! an outside command; a round measures the time from issuing the kill to the first acknowledged
//! enqueue committed in a newer term (so by the new leader, never a late answer of the old one),
//! then restarts the node and waits until every node has applied everything before the next
//! round.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use queue_raft::{NodeId, QueueClient};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::BenchError;
use crate::cluster::{POLL_INTERVAL, Settled, run_command, wait_for_leader};
use crate::queue::OrderMaker;
use crate::stats::{median, millis};

/// How often the leader being killed is polled to see when it is gone.
const GONE_POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How long after the recovery the leader poller may still take to report.
const SEEN_GRACE: Duration = Duration::from_millis(500);
/// About how large each order is, as in the throughput runs.
const PAYLOAD_BYTES: usize = 256;

/// The failover rounds to run.
#[derive(Debug, Clone)]
pub struct FailoverOptions {
    pub rounds: usize,
    /// Shell command that SIGKILLs a node; `{node}` is replaced by its id.
    pub kill_cmd: String,
    /// Shell command that starts a killed node again with its data; `{node}` as above.
    pub restart_cmd: String,
    /// Load before each kill, so the client knows the leader and the pipeline is full.
    pub warmup: Duration,
    /// The longest a round may wait for a new leader to commit an enqueue.
    pub recovery_timeout: Duration,
    /// The longest to wait for every node to be up and to have applied everything.
    pub settle_timeout: Duration,
}

/// One round; printed as one JSON line as it ends.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverRound {
    pub bench: &'static str,
    pub round: usize,
    pub killed: NodeId,
    pub old_term: u64,
    pub new_leader: NodeId,
    pub new_term: u64,
    /// How long the kill command took (it may wait for the process to be reaped).
    pub kill_cmd_ms: f64,
    /// From the start of the kill command to the first failed status poll (every 1 ms) of the
    /// killed node: the SIGKILL landed before this, so every time below, counted from the start
    /// of the kill command, is at most this much too long.
    pub leader_gone_ms: Option<f64>,
    /// From the kill to the first poll (every 10 ms) in which a node says it leads a newer term.
    pub leader_seen_ms: Option<f64>,
    /// From the kill to the first enqueue acknowledged from a newer term: the measure.
    pub recovery_ms: f64,
    /// Enqueues that failed during the round (the client retries for 5 s before failing one).
    pub errors: u64,
    /// From the restart to every node up and having applied all that is committed.
    pub catch_up_ms: f64,
}

/// All rounds; printed as one JSON line at the end.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub bench: &'static str,
    pub rounds: usize,
    pub recovery_ms: Vec<f64>,
    pub median_recovery_ms: f64,
    pub max_recovery_ms: f64,
    pub median_leader_seen_ms: Option<f64>,
    pub errors: u64,
}

/// Runs `options.rounds` rounds of kill, recover, restart, catch up; `on_round` sees each round
/// as it ends.
pub async fn failover(
    client: &QueueClient,
    options: &FailoverOptions,
    mut on_round: impl FnMut(&FailoverRound),
) -> Result<FailoverReport, BenchError> {
    let orders = Arc::new(OrderMaker::new(PAYLOAD_BYTES));
    let mut rounds = Vec::with_capacity(options.rounds);
    for round in 1..=options.rounds {
        let result = failover_round(client, options, &orders, round).await?;
        on_round(&result);
        rounds.push(result);
    }
    let recovery_ms: Vec<f64> = rounds.iter().map(|round| round.recovery_ms).collect();
    let leader_seen: Option<Vec<f64>> = rounds.iter().map(|round| round.leader_seen_ms).collect();
    Ok(FailoverReport {
        bench: "failover",
        rounds: rounds.len(),
        median_recovery_ms: median(&recovery_ms),
        max_recovery_ms: recovery_ms.iter().copied().fold(0.0, f64::max),
        median_leader_seen_ms: leader_seen.map(|seen| median(&seen)),
        errors: rounds.iter().map(|round| round.errors).sum(),
        recovery_ms,
    })
}

/// An enqueue acknowledged at `at`, committed in `term`; `None` for a failed one.
type Ack = (Instant, Option<u64>);

async fn failover_round(
    client: &QueueClient,
    options: &FailoverOptions,
    orders: &Arc<OrderMaker>,
    round: usize,
) -> Result<FailoverRound, BenchError> {
    let during = format!("round {round}");
    wait_for_leader(client, options.settle_timeout, &during, Settled::AllApplied).await?;
    let (acks_tx, mut acks) = mpsc::unbounded_channel::<Ack>();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(enqueue_until_stopped(
        client.clone(),
        Arc::clone(orders),
        round,
        Arc::clone(&stop),
        acks_tx,
    ));
    tokio::time::sleep(options.warmup).await;
    let (_, leader) =
        wait_for_leader(client, options.settle_timeout, &during, Settled::Led).await?;
    let (killed, old_term) = (leader.node_id, leader.term);

    let kill_started = Instant::now();
    let mut seen = tokio::spawn(leader_seen_after(client.clone(), old_term));
    let gone = tokio::spawn(gone_after(client.clone(), leader.leader_addr.clone()));
    run_command(&options.kill_cmd, killed).await?;
    let kill_cmd_ms = millis(kill_started.elapsed());
    // Once the kill command is done the node is dead, so the poller ends at its next poll.
    let leader_gone_ms = gone
        .await
        .ok()
        .map(|gone| millis(gone.duration_since(kill_started)));

    let mut errors = 0;
    let deadline = kill_started + options.recovery_timeout;
    let recovered = loop {
        match tokio::time::timeout_at(deadline, acks.recv()).await {
            Ok(Some((at, Some(term)))) if term > old_term && at >= kill_started => {
                break Some((at, term));
            }
            Ok(Some((at, None))) if at >= kill_started => errors += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break None,
        }
    };
    stop.store(true, Ordering::Relaxed);
    // The poller may not have looked since the new leader took over; give it a few polls.
    let leader_seen = match tokio::time::timeout(SEEN_GRACE, &mut seen).await {
        Ok(Ok(seen)) => Some(seen),
        _ => {
            seen.abort();
            None
        }
    };
    // The writer ends after its current enqueue; it panics only on a bug.
    let _ = writer.await;
    while let Ok((at, term)) = acks.try_recv() {
        errors += u64::from(term.is_none() && at >= kill_started);
    }
    let Some((recovered_at, new_term)) = recovered else {
        return Err(BenchError::NotRecovered {
            round,
            killed,
            waited: options.recovery_timeout,
        });
    };

    let restarted = Instant::now();
    run_command(&options.restart_cmd, killed).await?;
    let (_, after) =
        wait_for_leader(client, options.settle_timeout, &during, Settled::AllApplied).await?;
    Ok(FailoverRound {
        bench: "failover_round",
        round,
        killed,
        old_term,
        new_leader: leader_seen.map_or(after.node_id, |(leader, _)| leader),
        new_term,
        kill_cmd_ms,
        leader_gone_ms,
        leader_seen_ms: leader_seen.map(|(_, at)| millis(at.duration_since(kill_started))),
        recovery_ms: millis(recovered_at.duration_since(kill_started)),
        errors,
        catch_up_ms: millis(restarted.elapsed()),
    })
}

/// Enqueues one order after another until `stop`, reporting each outcome on `acks`. `task`
/// (the round) keeps ids unique across rounds.
async fn enqueue_until_stopped(
    client: QueueClient,
    orders: Arc<OrderMaker>,
    task: usize,
    stop: Arc<AtomicBool>,
    acks: mpsc::UnboundedSender<Ack>,
) {
    for sequence in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let answer = client.enqueue(orders.order(task, sequence)).await;
        let term = answer.ok().map(|answer| answer.term);
        if acks.send((Instant::now(), term)).is_err() {
            break;
        }
    }
}

/// When the node at `addr` first fails to answer; polls until it does.
async fn gone_after(client: QueueClient, addr: String) -> Instant {
    while client.cluster_status_of(&addr).await.is_ok() {
        tokio::time::sleep(GONE_POLL_INTERVAL).await;
    }
    Instant::now()
}

/// The first node seen leading a term after `old_term`, and when; polls until aborted.
async fn leader_seen_after(client: QueueClient, old_term: u64) -> (NodeId, Instant) {
    loop {
        let leader = client
            .cluster_status_all()
            .await
            .into_iter()
            .filter_map(|(_, answer)| answer.ok())
            .find(|status| status.role == "leader" && status.term > old_term);
        if let Some(leader) = leader {
            return (leader.node_id, Instant::now());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
