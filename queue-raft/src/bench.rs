//! The load generator behind `queue-bench`: what the cluster does under load, measured from a
//! client's side through [`QueueClient`], as the orchestrator sees it.
//!
//! - [`throughput`]: `clients` tasks share one client (one channel per node) and enqueue unique
//!   orders in a closed loop; every acknowledged enqueue that completes inside the measured window
//!   counts, its latency goes into an HDR histogram.
//! - [`failover`]: one task enqueues in a closed loop while the leader is killed by an outside
//!   command; a round measures the time from issuing the kill to the first acknowledged enqueue
//!   committed in a newer term (so by the new leader, never a late answer of the old one), then
//!   restarts the node and waits until every node has applied everything before the next round.
//!
//! - [`executors`]: how fast the order executors get through a queue when executing takes no
//!   time, so that every order costs one election; the executors themselves are started and
//!   stopped by the caller between its two steps.
//!
//! Nothing here touches a node's process or files: killing and restarting go through shell
//! commands the caller gives (`scripts/cluster kill {node}`), so the same rounds can drive any
//! way of running the nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bookstore_proto as pb;
use hdrhistogram::Histogram;
use prost::Message;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{ClientError, NodeId, QueueClient};

pub mod executors;

/// Latencies are recorded in microseconds, up to a minute, with 3 significant digits.
const HISTOGRAM_MAX_MICROS: u64 = 60_000_000;
/// How often the cluster's status is polled while waiting for it to change.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How often the leader being killed is polled to see when it is gone.
const GONE_POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How long after the recovery the leader poller may still take to report.
const SEEN_GRACE: Duration = Duration::from_millis(500);

/// Why a benchmark could not finish. Throughput runs do not fail: errors are counted.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("`{command}` could not run: {source}")]
    CommandSpawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error(
        "round {round}: the cluster did not settle (every node up, one leader, all applied) within {waited:?}: {state}"
    )]
    NotSettled {
        round: usize,
        waited: Duration,
        state: String,
    },
    #[error(
        "round {round}: no enqueue was committed by a new leader within {waited:?} of killing node {killed}"
    )]
    NotRecovered {
        round: usize,
        killed: NodeId,
        waited: Duration,
    },
    #[error(
        "the cluster was not idle (a leader, no lease held, nothing queued) within {waited:?}: {state}"
    )]
    NotIdle { waited: Duration, state: String },
    #[error("order {order_id}: {source}")]
    Client {
        order_id: String,
        source: ClientError,
    },
    #[error("order {order_id} was already known to the queue")]
    AlreadyKnown { order_id: String },
    #[error("order {order_id} is unknown to the queue")]
    UnknownOrder { order_id: String },
    #[error("{executed} of {count} orders were executed within {waited:?}: {state}")]
    NotExecuted {
        waited: Duration,
        executed: usize,
        count: usize,
        state: String,
    },
}

/// One throughput run.
#[derive(Debug, Clone)]
pub struct ThroughputOptions {
    pub clients: usize,
    /// Load before the measured window, not counted: connections open, the leader is known.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// About how large each encoded order is; the customer field is padded to get there.
    pub payload_bytes: usize,
}

/// What a throughput run measured; printed as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    pub bench: &'static str,
    pub clients: usize,
    /// Encoded size of one order.
    pub payload_bytes: usize,
    /// Enqueues acknowledged inside the measured window.
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Enqueues that failed inside the measured window.
    pub errors: u64,
}

/// Runs `options.clients` closed loops of enqueues on clones of `client`.
pub async fn throughput(client: &QueueClient, options: &ThroughputOptions) -> ThroughputReport {
    let orders = Arc::new(OrderMaker::new(options.payload_bytes));
    let window_start = Instant::now() + options.warmup;
    let window_end = window_start + options.duration;
    let loops: Vec<_> = (0..options.clients)
        .map(|task| {
            let client = client.clone();
            let orders = Arc::clone(&orders);
            tokio::spawn(async move {
                closed_loop(&client, &orders, task, window_start, window_end).await
            })
        })
        .collect();
    let mut total = Tally::new();
    for handle in loops {
        match handle.await {
            Ok(tally) => total.merge(&tally),
            // A loop only panics on a bug; the run then reports what the others measured.
            Err(error) => {
                eprintln!("queue-bench: a client task ended abnormally: {error}");
                total.errors += 1;
            }
        }
    }
    let seconds = options.duration.as_secs_f64();
    let ms_at = |quantile| total.latency.value_at_quantile(quantile) as f64 / 1000.0;
    ThroughputReport {
        bench: "throughput",
        clients: options.clients,
        payload_bytes: orders.encoded_len,
        ops: total.latency.len(),
        seconds,
        ops_per_sec: total.latency.len() as f64 / seconds,
        p50_ms: ms_at(0.5),
        p99_ms: ms_at(0.99),
        p999_ms: ms_at(0.999),
        max_ms: total.latency.max() as f64 / 1000.0,
        errors: total.errors,
    }
}

/// What one closed loop saw inside the window.
struct Tally {
    /// Microseconds per acknowledged enqueue.
    latency: Histogram<u64>,
    errors: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
            // 3 significant figures), so this cannot fail.
            latency: Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3)
                .expect("valid histogram bounds"),
            errors: 0,
        }
    }

    fn merge(&mut self, other: &Tally) {
        // Both histograms have the same bounds and values saturate at the top: nothing is lost.
        let _ = self.latency.add(&other.latency);
        self.errors += other.errors;
    }
}

async fn closed_loop(
    client: &QueueClient,
    orders: &OrderMaker,
    task: usize,
    window_start: Instant,
    window_end: Instant,
) -> Tally {
    let mut tally = Tally::new();
    let mut first_error = true;
    for sequence in 0u64.. {
        let started = Instant::now();
        if started >= window_end {
            break;
        }
        let result = client.enqueue(orders.order(task, sequence)).await;
        let done = Instant::now();
        if done < window_start || done > window_end {
            continue;
        }
        match result {
            Ok(_) => tally
                .latency
                .saturating_record(micros(done.duration_since(started))),
            Err(error) => {
                tally.errors += 1;
                if first_error {
                    eprintln!("queue-bench: client {task}: enqueue failed: {error}");
                    first_error = false;
                }
            }
        }
    }
    tally
}

/// Makes orders with ids unique to this run and a customer padded to the payload size.
struct OrderMaker {
    /// Unique per run, so that a run never hits the ids an earlier run left in the queue's
    /// history (enqueue is idempotent by id and would answer without a new commit).
    run: String,
    customer: String,
    /// The encoded size of an order as made (ids grow by a few digits as a run goes on).
    encoded_len: usize,
}

impl OrderMaker {
    fn new(payload_bytes: usize) -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut maker = Self {
            run: format!(
                "bench-{:x}-{:04x}",
                since_epoch.as_millis(),
                rand::random::<u16>()
            ),
            customer: String::new(),
            encoded_len: 0,
        };
        // Each added byte grows the encoding by one, or by two where the length prefix grows.
        while maker.order(0, 0).encoded_len() < payload_bytes {
            maker.customer.push('x');
        }
        maker.encoded_len = maker.order(0, 0).encoded_len();
        maker
    }

    fn order(&self, task: usize, sequence: u64) -> pb::QueuedOrder {
        pb::QueuedOrder {
            order_id: format!("{}-{task}-{sequence}", self.run),
            customer: self.customer.clone(),
            items: vec![pb::QueueItem {
                title: "Benchmarking Raft".to_owned(),
                quantity: 1,
            }],
        }
    }
}

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
    let orders = Arc::new(OrderMaker::new(256));
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
    wait_for_leader(client, options.settle_timeout, round, Settled::AllApplied).await?;
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
    let leader = wait_for_leader(client, options.settle_timeout, round, Settled::Led).await?;
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
    let after = wait_for_leader(client, options.settle_timeout, round, Settled::AllApplied).await?;
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

/// What [`wait_for_leader`] waits for besides every node answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// A node leads (the one in the highest term, if a deposed one has not heard yet).
    Led,
    /// And every node has applied all the leader has committed: the cluster is caught up.
    AllApplied,
}

/// Waits until every node answers and the cluster is `settled`; returns the leader's status.
async fn wait_for_leader(
    client: &QueueClient,
    timeout: Duration,
    round: usize,
    settled: Settled,
) -> Result<pb::ClusterStatusResponse, BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let answers = client.cluster_status_all().await;
        let state = describe_cluster(&answers);
        let statuses: Result<Vec<_>, _> = answers.into_iter().map(|(_, answer)| answer).collect();
        if let Ok(statuses) = statuses {
            let leader = statuses
                .iter()
                .filter(|status| status.role == "leader")
                .max_by_key(|status| status.term);
            if let Some(leader) = leader
                && (settled == Settled::Led
                    || statuses
                        .iter()
                        .all(|status| status.applied_index >= leader.commit_index))
            {
                return Ok(leader.clone());
            }
        }
        if Instant::now() >= deadline {
            return Err(BenchError::NotSettled {
                round,
                waited: timeout,
                state,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn describe_cluster(
    answers: &[(String, Result<pb::ClusterStatusResponse, ClientError>)],
) -> String {
    let nodes: Vec<String> = answers
        .iter()
        .map(|(addr, answer)| match answer {
            Ok(status) => format!(
                "{addr} {} term {} commit {} applied {}",
                status.role, status.term, status.commit_index, status.applied_index
            ),
            Err(error) => format!("{addr} down: {error}"),
        })
        .collect();
    nodes.join("; ")
}

/// Runs `template` with `{node}` replaced through `sh -c`; its output goes to stderr, so that
/// stdout stays the benchmark's JSON.
async fn run_command(template: &str, node: NodeId) -> Result<(), BenchError> {
    let command = template.replace("{node}", &node.to_string());
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| BenchError::CommandSpawn {
            command: command.clone(),
            source,
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return Err(BenchError::CommandFailed {
            command,
            status: output.status,
            output: text,
        });
    }
    eprint!("{text}");
    Ok(())
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The median; the mean of the two middle values for an even count; 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_padded_to_the_payload_size_and_ids_are_unique() {
        for payload in [64, 256, 1024] {
            let maker = OrderMaker::new(payload);
            let order = maker.order(0, 0);
            assert!(
                (payload..payload + 2).contains(&order.encoded_len()),
                "{payload}: {}",
                order.encoded_len()
            );
            assert_eq!(maker.encoded_len, order.encoded_len());
        }
        let maker = OrderMaker::new(256);
        assert_ne!(maker.order(1, 12).order_id, maker.order(11, 2).order_id);
        assert_ne!(maker.order(1, 2).order_id, maker.order(2, 1).order_id);
    }

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
