//! The executors' benchmark behind `queue-bench executors`: how fast the order executors get
//! through a queue when executing takes no time, so that each order costs one election, measured
//! from the cluster's own records.
//!
//! Two steps, so that whoever runs the benchmark starts and stops the executors itself between
//! them (and knows their PIDs):
//!
//! - [`enqueue`]: with no executor at work (the lease free, the queue empty), enqueues `count`
//!   orders of mixed sizes under ids unique to this run, and prints the run's id.
//! - [`measure`]: once the executors run, waits until every order of the run is executed, reads
//!   each order's record (executor, fencing token, `executed_at_ms`) and reports the rate, the
//!   cycle between consecutive executions in token order, and how leadership moved.
//!
//! Every time comes from `executed_at_ms`, stamped with the queue leader's wall clock when it
//! proposed the acknowledgement (millisecond resolution), never from this client: polling for the
//! end does not change what is measured, only how soon it is noticed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bookstore_proto as pb;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::time::Instant;

use queue_raft::QueueClient;

use crate::BenchError;
use crate::cluster::describe_cluster;
use crate::stats::{median, percentile};

/// How often the cluster is polled while waiting for the executors to finish; only delays
/// noticing the end.
const DONE_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often the cluster is polled while waiting for it to be idle.
const IDLE_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Titles the orders' items take, so that orders differ in size as well as in books.
const TITLES: [&str; 3] = ["Dune", "Emma", "Middlemarch"];

/// The orders to enqueue.
#[derive(Debug, Clone)]
pub struct EnqueueOptions {
    pub count: usize,
    /// Enqueues in flight at once (they are independent orders).
    pub concurrency: usize,
    /// The longest to wait for the cluster to have a leader, a free lease and an empty queue.
    pub idle_timeout: Duration,
}

/// What [`enqueue`] did; printed as one JSON line. `run` names the orders for [`measure`].
#[derive(Debug, Clone, Serialize)]
pub struct EnqueueReport {
    pub bench: &'static str,
    pub run: String,
    pub orders: usize,
    /// Books in all the orders (an order's priority is its number of books).
    pub books: u64,
    pub seconds: f64,
}

/// Waits until the cluster is idle (a leader, no lease held, nothing queued), then enqueues
/// `options.count` new orders. Fails rather than measure orders mixed with others.
pub async fn enqueue(
    client: &QueueClient,
    options: &EnqueueOptions,
) -> Result<EnqueueReport, BenchError> {
    wait_until_idle(client, options.idle_timeout).await?;
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let run = format!(
        "exec-bench-{:x}-{:04x}",
        since_epoch.as_millis(),
        rand::random::<u16>()
    );
    let started = Instant::now();
    futures::stream::iter(0..options.count)
        .map(|n| {
            let (client, order) = (client.clone(), order(&run, n));
            async move {
                let order_id = order.order_id.clone();
                match client.enqueue(order).await {
                    Ok(answer) if answer.newly_enqueued => Ok(()),
                    Ok(_) => Err(BenchError::AlreadyKnown { order_id }),
                    Err(source) => Err(BenchError::Client { order_id, source }),
                }
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_collect::<()>()
        .await?;
    let books = (0..options.count)
        .map(|n| u64::from(books_of(&order(&run, n))))
        .sum();
    Ok(EnqueueReport {
        bench: "executors_enqueue",
        run,
        orders: options.count,
        books,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Waits until the leader reports no lease holder and an empty queue: no executor at work.
async fn wait_until_idle(client: &QueueClient, timeout: Duration) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let answers = client.cluster_status_all().await;
        let idle = answers
            .iter()
            .filter_map(|(_, answer)| answer.as_ref().ok())
            .filter(|status| status.role == "leader")
            .max_by_key(|status| status.term)
            .is_some_and(|leader| leader.lease_holder.is_empty() && leader.queue_depth == 0);
        if idle {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(BenchError::NotIdle {
                waited: timeout,
                state: describe_cluster(&answers),
            });
        }
        tokio::time::sleep(IDLE_POLL_INTERVAL).await;
    }
}

/// Order `n` of `run`: 1 to 3 titles of 1 to 5 books each, so priorities (books) run from 1 to
/// 15 in a mixed order.
fn order(run: &str, n: usize) -> pb::QueuedOrder {
    let items = (0..n % 3 + 1)
        .map(|item| pb::QueueItem {
            title: TITLES[item].to_owned(),
            // (… % 5) + 1 is at most 5: the conversion is lossless.
            quantity: ((n * 7 + item * 3) % 5 + 1) as u32,
        })
        .collect();
    pb::QueuedOrder {
        order_id: order_id(run, n),
        customer: format!("Benchmark customer {n}"),
        items,
    }
}

fn order_id(run: &str, n: usize) -> String {
    format!("{run}-{n:05}")
}

fn books_of(order: &pb::QueuedOrder) -> u32 {
    order.items.iter().map(|item| item.quantity).sum()
}

/// What to wait for and measure.
#[derive(Debug, Clone)]
pub struct MeasureOptions {
    /// The run [`enqueue`] reported.
    pub run: String,
    /// How many orders it enqueued.
    pub count: usize,
    /// The executors' `--execution-ms`: subtracted from each cycle to leave the re-election.
    pub execution: Duration,
    /// The longest to wait for every order to be executed.
    pub timeout: Duration,
    /// Orders read at once when the run is over.
    pub concurrency: usize,
}

/// What the executors did with the run's orders; printed as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutorsReport {
    pub bench: &'static str,
    pub run: String,
    pub orders: usize,
    pub execution_ms: f64,
    /// From the first execution to the last, by the queue leader's clock.
    pub span_ms: f64,
    /// Executions per second: the `orders - 1` cycles between the first execution and the last,
    /// over `span_ms`.
    pub orders_per_sec: f64,
    /// The gaps between consecutive executions, in token order.
    pub cycle_median_ms: f64,
    pub cycle_p99_ms: f64,
    pub cycle_min_ms: f64,
    pub cycle_max_ms: f64,
    /// The cycle minus the execution time: resigning, electing the next leader, dequeuing and
    /// acknowledging.
    pub reelection_median_ms: f64,
    pub reelection_p99_ms: f64,
    pub reelection_max_ms: f64,
    /// Consecutive executions by different executors.
    pub leader_changes: usize,
    /// Executors that executed at least one order.
    pub leaders: usize,
    pub executed_by: BTreeMap<String, usize>,
    /// Leases granted between consecutive executions that executed nothing (token gaps): lost
    /// campaigns are refused without a token, so these are leases that found the queue empty or
    /// were abandoned.
    pub idle_grants: u64,
    /// Whether every order took its own lease (tokens strictly increase in execution order).
    pub one_lease_per_order: bool,
    /// Whether orders were executed in the queue's dequeue order (priority with aging: more books
    /// first among orders of the same age, ties in enqueue order), as they should be with
    /// everything queued before the first election.
    pub in_priority_order: bool,
    /// From the start of `measure` until every order was seen executed, by this client's clock.
    pub waited_seconds: f64,
}

/// Waits until every order of `options.run` is executed, then reports on their records.
pub async fn measure(
    client: &QueueClient,
    options: &MeasureOptions,
) -> Result<ExecutorsReport, BenchError> {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let ids: Vec<String> = (0..options.count)
        .map(|n| order_id(&options.run, n))
        .collect();
    let states = loop {
        let answers = client.cluster_status_all().await;
        // Nothing queued and no lease held: an order executing is always under a lease, and goes
        // back to the queue when its lease ends, so nothing is left to execute.
        let drained = answers
            .iter()
            .filter_map(|(_, answer)| answer.as_ref().ok())
            .filter(|status| status.role == "leader")
            .max_by_key(|status| status.term)
            .is_some_and(|leader| leader.lease_holder.is_empty() && leader.queue_depth == 0);
        if drained {
            let states = read_orders(client, &ids, options.concurrency).await?;
            if states.iter().all(is_executed) {
                break states;
            }
        }
        if Instant::now() >= deadline {
            let states = read_orders(client, &ids, options.concurrency).await?;
            return Err(BenchError::NotExecuted {
                waited: options.timeout,
                executed: states.iter().filter(|state| is_executed(state)).count(),
                count: options.count,
                state: describe_cluster(&answers),
            });
        }
        tokio::time::sleep(DONE_POLL_INTERVAL).await;
    };
    Ok(report(options, states, started.elapsed()))
}

fn is_executed(state: &pb::OrderState) -> bool {
    state.phase == pb::OrderPhase::Executed as i32
}

/// Every order's record, read linearizably at the leader, in the order of `ids`.
async fn read_orders(
    client: &QueueClient,
    ids: &[String],
    concurrency: usize,
) -> Result<Vec<pb::OrderState>, BenchError> {
    futures::stream::iter(ids)
        .map(|order_id| async move {
            match client.get_order(order_id).await {
                Ok(Some(state)) => Ok(state),
                Ok(None) => Err(BenchError::UnknownOrder {
                    order_id: order_id.clone(),
                }),
                Err(source) => Err(BenchError::Client {
                    order_id: order_id.clone(),
                    source,
                }),
            }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// The report on executed orders' records.
fn report(
    options: &MeasureOptions,
    mut executed: Vec<pb::OrderState>,
    waited: Duration,
) -> ExecutorsReport {
    executed.sort_by_key(|state| state.token);
    let cycles: Vec<f64> = executed
        .windows(2)
        .map(|pair| pair[1].executed_at_ms as f64 - pair[0].executed_at_ms as f64)
        .collect();
    let execution_ms = options.execution.as_secs_f64() * 1000.0;
    let reelections: Vec<f64> = cycles.iter().map(|cycle| cycle - execution_ms).collect();
    let span_ms = match (executed.first(), executed.last()) {
        (Some(first), Some(last)) => last.executed_at_ms as f64 - first.executed_at_ms as f64,
        _ => 0.0,
    };
    let mut executed_by = BTreeMap::new();
    for state in &executed {
        *executed_by.entry(state.executor_id.clone()).or_insert(0) += 1;
    }
    let ranks: Vec<queue_raft::DequeueKey> = executed
        .iter()
        .map(|state| {
            queue_raft::DequeueKey::new(state.enqueued_at_queue_ms, state.priority, state.sequence)
        })
        .collect();
    ExecutorsReport {
        bench: "executors",
        run: options.run.clone(),
        orders: executed.len(),
        execution_ms,
        span_ms,
        orders_per_sec: if span_ms > 0.0 {
            cycles.len() as f64 * 1000.0 / span_ms
        } else {
            0.0
        },
        cycle_median_ms: median(&cycles),
        cycle_p99_ms: percentile(&cycles, 0.99),
        cycle_min_ms: cycles.iter().copied().reduce(f64::min).unwrap_or(0.0),
        cycle_max_ms: cycles.iter().copied().reduce(f64::max).unwrap_or(0.0),
        reelection_median_ms: median(&reelections),
        reelection_p99_ms: percentile(&reelections, 0.99),
        reelection_max_ms: reelections.iter().copied().reduce(f64::max).unwrap_or(0.0),
        leader_changes: executed
            .windows(2)
            .filter(|pair| pair[0].executor_id != pair[1].executor_id)
            .count(),
        leaders: executed
            .iter()
            .map(|state| state.executor_id.as_str())
            .collect::<BTreeSet<_>>()
            .len(),
        executed_by,
        idle_grants: executed
            .windows(2)
            .map(|pair| {
                pair[1]
                    .token
                    .saturating_sub(pair[0].token)
                    .saturating_sub(1)
            })
            .sum(),
        one_lease_per_order: executed
            .windows(2)
            .all(|pair| pair[0].token < pair[1].token),
        in_priority_order: ranks.windows(2).all(|pair| pair[0] < pair[1]),
        waited_seconds: waited.as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executed(token: u64, at_ms: u64, executor_id: &str, priority: u32) -> pb::OrderState {
        pb::OrderState {
            phase: pb::OrderPhase::Executed as i32,
            priority,
            sequence: token,
            executor_id: executor_id.to_owned(),
            token,
            executed_at_ms: at_ms,
            ..Default::default()
        }
    }

    #[test]
    fn orders_are_mixed_in_size_and_unique() {
        let priorities: BTreeSet<u32> = (0..30).map(|n| books_of(&order("r", n))).collect();
        assert!(priorities.len() >= 5, "{priorities:?}");
        assert!(priorities.iter().all(|books| (1..=15).contains(books)));
        let ids: BTreeSet<String> = (0..1000).map(|n| order("r", n).order_id).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn cycles_leaders_and_gaps_come_from_the_records_in_token_order() {
        let options = MeasureOptions {
            run: "r".to_owned(),
            count: 4,
            execution: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
            concurrency: 1,
        };
        // Given out of order; token 4 was a lease that executed nothing.
        let states = vec![
            executed(5, 1_300, "e1", 2),
            executed(1, 1_000, "e1", 5),
            executed(3, 1_100, "e2", 5),
            executed(2, 1_040, "e3", 4),
        ];
        let report = report(&options, states, Duration::from_secs(2));
        assert_eq!(report.span_ms, 300.0);
        assert_eq!(report.orders_per_sec, 10.0);
        assert_eq!(report.cycle_median_ms, 60.0);
        assert_eq!(report.cycle_min_ms, 40.0);
        assert_eq!(report.cycle_max_ms, 200.0);
        assert_eq!(report.cycle_p99_ms, 200.0);
        assert_eq!(report.reelection_median_ms, 50.0);
        assert_eq!(report.leader_changes, 3);
        assert_eq!(report.leaders, 3);
        assert_eq!(report.executed_by["e1"], 2);
        assert_eq!(report.idle_grants, 1);
        assert!(report.one_lease_per_order);
        assert!(!report.in_priority_order);
    }
}
