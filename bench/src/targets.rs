//! The targets of issue 17, judged from one run's reports: each target met, missed, or not
//! measured by this run (a `--quick` run queues fewer orders and kills fewer leaders than a
//! target speaks of). Pure: it reads reports the other measurements wrote and decides; the
//! numbers it quotes are the reports' own, so the verdicts and the tables of `docs/BENCHMARKS.md`
//! cannot disagree.
//!
//! Each report is read through a view of only the fields a verdict needs, so that this file
//! states exactly what each verdict depends on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::LoadReport;
use crate::compare::{VS_ETCD_TARGET, VS_RABBITMQ_TARGET};

/// Checkouts per second at [`CHECKOUT_CONNECTIONS`] connections.
pub const CHECKOUT_RATE_TARGET: f64 = 4_000.0;
pub const CHECKOUT_CONNECTIONS: usize = 64;
/// Checkout p99 at [`CHECKOUT_CONNECTIONS`] connections, at most.
pub const CHECKOUT_P99_MS_TARGET: f64 = 20.0;
/// Checkout p50 at one connection, at most.
pub const CHECKOUT_P50_MS_TARGET: f64 = 1.5;
/// Leader SIGKILLs the failover target speaks of.
pub const FAILOVER_ROUNDS_TARGET: usize = 20;
/// From a leader's SIGKILL to the next committed enqueue, every round, at most.
pub const FAILOVER_MS_TARGET: f64 = 1_000.0;
/// The executors' median gap between executions, beyond the execution time, at most.
pub const EXECUTOR_GAP_MS_TARGET: f64 = 10.0;
/// Queued orders the memory and restart targets speak of.
pub const BIG_QUEUE_ORDERS: u64 = 1_000_000;
/// Resident memory of each node holding [`BIG_QUEUE_ORDERS`], at most.
pub const NODE_RSS_MIB_TARGET: f64 = 400.0;
/// From a restart of a node holding [`BIG_QUEUE_ORDERS`] to it serving, at most.
pub const RESTART_SERVING_MS_TARGET: f64 = 2_000.0;

/// Whether a target was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    Missed,
    /// The run did not measure what the target speaks of (and missed nothing it did measure).
    NotMeasured,
}

/// One target, what the run measured for it, and the verdict; printed as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetReport {
    pub bench: &'static str,
    pub target: String,
    pub measured: String,
    pub verdict: Verdict,
}

/// `1000000` as `1,000,000`, as the targets are written.
fn grouped(number: u64) -> String {
    let digits = number.to_string();
    let mut text = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

fn judged(target: String, measured: String, verdict: Verdict) -> TargetReport {
    TargetReport {
        bench: "target",
        target,
        measured,
        verdict,
    }
}

fn met_if(condition: bool) -> Verdict {
    if condition {
        Verdict::Met
    } else {
        Verdict::Missed
    }
}

/// What the enqueue verdicts read of a `queue-bench compare` line.
#[derive(Debug, Clone, Deserialize)]
pub struct ComparisonView {
    pub clients: usize,
    pub vs_etcd: f64,
    pub vs_rabbitmq: f64,
    pub ours_p99_ms: f64,
    pub etcd_p99_ms: f64,
    pub rabbitmq_p99_ms: f64,
    pub throughput_target_met: bool,
    pub p99_target_met: bool,
}

/// What the failover verdict reads of the `failover` summary.
#[derive(Debug, Clone, Deserialize)]
pub struct FailoverView {
    pub rounds: usize,
    pub recovery_ms: Vec<f64>,
}

/// What the executors verdict reads of the run with the executors' default settings.
#[derive(Debug, Clone, Deserialize)]
pub struct ExecutorsView {
    pub execution_ms: f64,
    pub cycle_median_ms: f64,
}

/// What the restart verdict reads of one `restart` report.
#[derive(Debug, Clone, Deserialize)]
pub struct RestartView {
    pub role: String,
    pub serving_ms: f64,
}

/// Everything the verdicts are made from.
#[derive(Debug, Clone)]
pub struct RunResults {
    /// One per client count, in the order measured.
    pub comparisons: Vec<ComparisonView>,
    pub checkout: LoadReport,
    /// The checkout run at one connection.
    pub checkout_one: LoadReport,
    pub failover: FailoverView,
    pub executors: ExecutorsView,
    /// Orders queued at the leader when the node memory was read.
    pub queued_orders: u64,
    /// Each node's resident memory (KiB) holding `queued_orders`, by node id.
    pub node_rss_kib: BTreeMap<String, u64>,
    pub restarts: Vec<RestartView>,
}

/// Every target of issue 17, in the order.
pub fn verdicts(results: &RunResults) -> Vec<TargetReport> {
    let mut reports: Vec<TargetReport> = results.comparisons.iter().map(enqueue).collect();
    reports.push(checkout(&results.checkout));
    reports.push(checkout_one(&results.checkout_one));
    reports.push(failover(&results.failover));
    reports.push(executors(&results.executors));
    reports.push(memory(results.queued_orders, &results.node_rss_kib));
    reports.push(restart(results.queued_orders, &results.restarts));
    reports
}

fn enqueue(comparison: &ComparisonView) -> TargetReport {
    judged(
        format!(
            "enqueue, one order per call, at {} clients: at least {VS_ETCD_TARGET}x etcd's put \
             and {VS_RABBITMQ_TARGET}x RabbitMQ's publish+confirm, p99 no worse than either",
            comparison.clients
        ),
        format!(
            "{:.2}x etcd, {:.2}x RabbitMQ; p99 {:.1} ms vs {:.1} ms (etcd), {:.1} ms (RabbitMQ)",
            comparison.vs_etcd,
            comparison.vs_rabbitmq,
            comparison.ours_p99_ms,
            comparison.etcd_p99_ms,
            comparison.rabbitmq_p99_ms
        ),
        met_if(comparison.throughput_target_met && comparison.p99_target_met),
    )
}

fn checkout(report: &LoadReport) -> TargetReport {
    judged(
        format!(
            "checkout at {CHECKOUT_CONNECTIONS} connections: at least {}/s with p99 at most \
             {CHECKOUT_P99_MS_TARGET} ms, every answer an approval",
            grouped(CHECKOUT_RATE_TARGET as u64)
        ),
        format!(
            "{:.0}/s at {} connections, p99 {:.1} ms, {} approved, {} not",
            report.ops_per_sec, report.clients, report.p99_ms, report.ops, report.errors
        ),
        met_if(
            report.clients == CHECKOUT_CONNECTIONS
                && report.ops > 0
                && report.errors == 0
                && report.ops_per_sec >= CHECKOUT_RATE_TARGET
                && report.p99_ms <= CHECKOUT_P99_MS_TARGET,
        ),
    )
}

fn checkout_one(report: &LoadReport) -> TargetReport {
    judged(
        format!(
            "checkout at 1 connection: p50 at most {CHECKOUT_P50_MS_TARGET} ms, every answer an \
             approval"
        ),
        format!(
            "p50 {:.2} ms at {} connection(s), {} approved, {} not",
            report.p50_ms, report.clients, report.ops, report.errors
        ),
        met_if(
            report.clients == 1
                && report.ops > 0
                && report.errors == 0
                && report.p50_ms <= CHECKOUT_P50_MS_TARGET,
        ),
    )
}

fn failover(report: &FailoverView) -> TargetReport {
    let over = report
        .recovery_ms
        .iter()
        .filter(|&&ms| ms > FAILOVER_MS_TARGET)
        .count();
    let max = report.recovery_ms.iter().copied().fold(0.0, f64::max);
    let verdict = if over > 0 || report.recovery_ms.len() != report.rounds {
        Verdict::Missed
    } else if report.rounds < FAILOVER_ROUNDS_TARGET {
        Verdict::NotMeasured
    } else {
        Verdict::Met
    };
    judged(
        format!(
            "failover: over {FAILOVER_ROUNDS_TARGET} leader SIGKILLs, the next committed \
             enqueue within {} ms every time",
            grouped(FAILOVER_MS_TARGET as u64)
        ),
        format!(
            "{} rounds, max {max:.0} ms, {over} over {} ms",
            report.rounds,
            grouped(FAILOVER_MS_TARGET as u64)
        ),
        verdict,
    )
}

fn executors(report: &ExecutorsView) -> TargetReport {
    let gap = report.cycle_median_ms - report.execution_ms;
    judged(
        format!(
            "executors, default settings: median gap between executions at most \
             {EXECUTOR_GAP_MS_TARGET} ms plus the execution time"
        ),
        format!(
            "median gap {:.1} ms with {:.0} ms execution: {gap:.1} ms beyond it",
            report.cycle_median_ms, report.execution_ms
        ),
        met_if(gap <= EXECUTOR_GAP_MS_TARGET),
    )
}

/// Met or missed when `queued` reached the big queue; else missed only if already missed with
/// fewer orders, and otherwise not measured.
fn big_queue_verdict(queued: u64, within: bool) -> Verdict {
    match (queued >= BIG_QUEUE_ORDERS, within) {
        (_, false) => Verdict::Missed,
        (true, true) => Verdict::Met,
        (false, true) => Verdict::NotMeasured,
    }
}

fn memory(queued: u64, rss_kib: &BTreeMap<String, u64>) -> TargetReport {
    let mib: Vec<(String, f64)> = rss_kib
        .iter()
        .map(|(node, kib)| (node.clone(), *kib as f64 / 1024.0))
        .collect();
    let within = !mib.is_empty() && mib.iter().all(|(_, mib)| *mib <= NODE_RSS_MIB_TARGET);
    let listed: Vec<String> = mib
        .iter()
        .map(|(node, mib)| format!("node {node} {mib:.0} MiB"))
        .collect();
    judged(
        format!(
            "memory: each node holding {} queued orders at most {NODE_RSS_MIB_TARGET} MiB \
             resident",
            grouped(BIG_QUEUE_ORDERS)
        ),
        format!("{} orders queued: {}", grouped(queued), listed.join(", ")),
        big_queue_verdict(queued, within),
    )
}

fn restart(queued: u64, restarts: &[RestartView]) -> TargetReport {
    let within = !restarts.is_empty()
        && restarts
            .iter()
            .all(|restart| restart.serving_ms <= RESTART_SERVING_MS_TARGET);
    let listed: Vec<String> = restarts
        .iter()
        .map(|restart| {
            format!(
                "{} serving after {:.0} ms",
                restart.role, restart.serving_ms
            )
        })
        .collect();
    judged(
        format!(
            "restart: a node holding {} queued orders serving within {} ms of its restart",
            grouped(BIG_QUEUE_ORDERS),
            grouped(RESTART_SERVING_MS_TARGET as u64)
        ),
        format!("{} orders queued: {}", grouped(queued), listed.join(", ")),
        big_queue_verdict(queued, within),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(clients: usize, ops_per_sec: f64, p50_ms: f64, p99_ms: f64) -> LoadReport {
        LoadReport {
            bench: "checkout".to_owned(),
            clients,
            payload_bytes: 700,
            ops: (ops_per_sec * 10.0) as u64,
            seconds: 10.0,
            ops_per_sec,
            p50_ms,
            p99_ms,
            p999_ms: p99_ms,
            max_ms: p99_ms,
            errors: 0,
            generator_cpu_seconds: 1.0,
        }
    }

    fn comparison(clients: usize, throughput: bool, p99: bool) -> ComparisonView {
        ComparisonView {
            clients,
            vs_etcd: 1.3,
            vs_rabbitmq: 1.1,
            ours_p99_ms: 5.0,
            etcd_p99_ms: 6.0,
            rabbitmq_p99_ms: 7.0,
            throughput_target_met: throughput,
            p99_target_met: p99,
        }
    }

    fn all_met() -> RunResults {
        RunResults {
            comparisons: vec![comparison(1, true, true), comparison(256, true, true)],
            checkout: load(64, 4_100.0, 10.0, 19.0),
            checkout_one: load(1, 800.0, 1.2, 3.0),
            failover: FailoverView {
                rounds: 20,
                recovery_ms: vec![400.0; 20],
            },
            executors: ExecutorsView {
                execution_ms: 0.0,
                cycle_median_ms: 9.0,
            },
            queued_orders: 1_000_000,
            node_rss_kib: [("1", 300 * 1024), ("2", 399 * 1024), ("3", 350 * 1024)]
                .into_iter()
                .map(|(node, kib)| (node.to_owned(), kib))
                .collect(),
            restarts: vec![
                RestartView {
                    role: "follower".to_owned(),
                    serving_ms: 1_500.0,
                },
                RestartView {
                    role: "leader".to_owned(),
                    serving_ms: 1_900.0,
                },
            ],
        }
    }

    fn verdicts_of(results: &RunResults) -> Vec<Verdict> {
        verdicts(results)
            .iter()
            .map(|report| report.verdict)
            .collect()
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(4_000), "4,000");
        assert_eq!(grouped(1_000_000), "1,000,000");
        assert_eq!(grouped(12_345_678), "12,345,678");
    }

    #[test]
    fn a_run_that_reaches_every_target_meets_each() {
        let reports = verdicts(&all_met());
        assert_eq!(reports.len(), 8);
        assert!(
            reports.iter().all(|report| report.verdict == Verdict::Met),
            "{reports:#?}"
        );
        assert!(reports[1].target.contains("at 256 clients"));
    }

    #[test]
    fn each_target_is_missed_on_its_own_number() {
        let mut results = all_met();
        results.comparisons[1] = comparison(256, true, false);
        results.checkout.p99_ms = 20.5;
        results.checkout_one.errors = 1;
        results.failover.recovery_ms[7] = 1_001.0;
        results.executors.cycle_median_ms = 10.5;
        results.node_rss_kib.insert("2".to_owned(), 401 * 1024);
        results.restarts[1].serving_ms = 2_100.0;
        let verdicts = verdicts_of(&results);
        assert_eq!(verdicts[0], Verdict::Met);
        assert!(
            verdicts[1..]
                .iter()
                .all(|verdict| *verdict == Verdict::Missed),
            "{verdicts:?}"
        );
    }

    #[test]
    fn checkout_below_the_rate_or_with_a_slow_single_connection_misses() {
        let mut results = all_met();
        results.checkout.ops_per_sec = 3_999.0;
        results.checkout_one.p50_ms = 1.6;
        let verdicts = verdicts_of(&results);
        assert_eq!(verdicts[2..4], [Verdict::Missed, Verdict::Missed]);
    }

    #[test]
    fn the_executors_gap_is_counted_beyond_the_execution_time() {
        let mut results = all_met();
        results.executors = ExecutorsView {
            execution_ms: 50.0,
            cycle_median_ms: 59.0,
        };
        assert_eq!(verdicts_of(&results)[5], Verdict::Met);
        results.executors.cycle_median_ms = 61.0;
        assert_eq!(verdicts_of(&results)[5], Verdict::Missed);
    }

    #[test]
    fn a_short_run_measures_less_but_still_misses_what_it_saw_missed() {
        let mut results = all_met();
        results.failover = FailoverView {
            rounds: 2,
            recovery_ms: vec![300.0, 500.0],
        };
        results.queued_orders = 100_000;
        let verdicts = verdicts_of(&results);
        assert_eq!(
            verdicts[4..],
            [
                Verdict::NotMeasured,
                Verdict::Met,
                Verdict::NotMeasured,
                Verdict::NotMeasured
            ]
        );
        results.failover.recovery_ms[1] = 1_200.0;
        results.restarts[0].serving_ms = 2_500.0;
        let verdicts = verdicts_of(&results);
        assert_eq!(verdicts[4], Verdict::Missed);
        assert_eq!(verdicts[6..], [Verdict::NotMeasured, Verdict::Missed]);
    }

    #[test]
    fn a_failover_run_with_rounds_missing_misses() {
        let mut results = all_met();
        results.failover.recovery_ms.pop();
        assert_eq!(verdicts_of(&results)[4], Verdict::Missed);
    }

    #[test]
    fn views_read_the_reports_the_measurements_print() {
        let ours = load(16, 100.0, 1.0, 2.0);
        let printed = serde_json::to_string(
            &crate::compare::compare(&ours, &ours, &ours, None).expect("same clients"),
        )
        .expect("serializes");
        let view: ComparisonView = serde_json::from_str(&printed).expect("a comparison");
        assert_eq!((view.clients, view.vs_etcd), (16, 1.0));
        let printed = serde_json::to_string(&crate::failover::FailoverReport {
            bench: "failover",
            rounds: 2,
            recovery_ms: vec![1.0, 2.0],
            median_recovery_ms: 1.5,
            max_recovery_ms: 2.0,
            median_leader_seen_ms: None,
            errors: 0,
        })
        .expect("serializes");
        let view: FailoverView = serde_json::from_str(&printed).expect("a failover summary");
        assert_eq!(view.recovery_ms, [1.0, 2.0]);
        let printed = serde_json::to_string(&crate::restart::RestartReport {
            bench: "restart",
            node: 2,
            role: "leader",
            queue_depth: 5,
            applied_index: 9,
            kill_cmd_ms: 1.0,
            serving_ms: 1234.0,
            caught_up_ms: 1300.0,
            leader_commit_index: 9,
        })
        .expect("serializes");
        let view: RestartView = serde_json::from_str(&printed).expect("a restart report");
        assert_eq!((view.role.as_str(), view.serving_ms), ("leader", 1234.0));
    }
}
