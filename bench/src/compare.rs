//! Our enqueue against etcd's put at the same number of clients: the throughput ratio, the two
//! targets of issue 6 that compare the systems, and the summary line `scripts/bench` ends with.
//! Computed here, from the unrounded reports, so that the table, the verdicts and the last line
//! of a run agree.

use serde::Serialize;

use crate::LoadReport;
use crate::stats::ratio;

/// Issue 6: our enqueue throughput at least this many times etcd's put throughput.
pub const THROUGHPUT_RATIO_TARGET: f64 = 1.5;

/// The two systems side by side; printed as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub bench: &'static str,
    pub clients: usize,
    pub ours_ops_per_sec: f64,
    pub etcd_ops_per_sec: f64,
    /// Ours over etcd's; 0 when etcd acknowledged nothing.
    pub ratio: f64,
    pub ours_p99_ms: f64,
    pub etcd_p99_ms: f64,
    /// `ratio` reached [`THROUGHPUT_RATIO_TARGET`].
    pub throughput_target_met: bool,
    /// Our p99 no worse than etcd's.
    pub p99_target_met: bool,
    /// `enqueue vs etcd put at N clients: <ours>/s vs <etcd>/s = <ratio>x`.
    pub line: String,
}

/// Why two reports cannot be compared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("our run had {ours} clients and etcd's {etcd}: only runs with as many clients compare")]
pub struct ClientsDiffer {
    pub ours: usize,
    pub etcd: usize,
}

/// Compares our enqueue run with etcd's put run at the same number of clients. A run with no
/// acknowledged request meets no target.
pub fn compare(ours: &LoadReport, etcd: &LoadReport) -> Result<Comparison, ClientsDiffer> {
    if ours.clients != etcd.clients {
        return Err(ClientsDiffer {
            ours: ours.clients,
            etcd: etcd.clients,
        });
    }
    let ratio = ratio(ours.ops_per_sec, etcd.ops_per_sec);
    let both_measured = ours.ops > 0 && etcd.ops > 0;
    Ok(Comparison {
        bench: "compare",
        clients: ours.clients,
        ours_ops_per_sec: ours.ops_per_sec,
        etcd_ops_per_sec: etcd.ops_per_sec,
        ratio,
        ours_p99_ms: ours.p99_ms,
        etcd_p99_ms: etcd.p99_ms,
        throughput_target_met: both_measured && ratio >= THROUGHPUT_RATIO_TARGET,
        p99_target_met: both_measured && ours.p99_ms <= etcd.p99_ms,
        line: summary_line(ours.clients, ours.ops_per_sec, etcd.ops_per_sec, ratio),
    })
}

/// The line `scripts/bench` prints last: rates as whole operations per second, the ratio (of
/// the unrounded rates) with two decimals.
pub fn summary_line(clients: usize, ours: f64, etcd: f64, ratio: f64) -> String {
    format!(
        "enqueue vs etcd put at {clients} clients: {}/s vs {}/s = {ratio:.2}x",
        whole(ours),
        whole(etcd)
    )
}

/// A rate rounded to a whole number, half away from zero.
fn whole(rate: f64) -> u64 {
    // Rates are finite and not negative; a saturating cast is exact for every rate that fits.
    rate.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(bench: &str, clients: usize, ops: u64, seconds: f64, p99_ms: f64) -> LoadReport {
        LoadReport {
            bench: bench.to_owned(),
            clients,
            payload_bytes: 256,
            ops,
            seconds,
            ops_per_sec: ops as f64 / seconds,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            p999_ms: p99_ms * 2.0,
            max_ms: p99_ms * 3.0,
            errors: 0,
        }
    }

    #[test]
    fn the_summary_line_has_whole_rates_and_a_two_decimal_ratio() {
        let ours = report("throughput", 64, 100_005, 10.0, 12.0);
        let etcd = report("etcd_put", 64, 64_669, 10.0, 30.0);
        let comparison = compare(&ours, &etcd).expect("same clients");
        assert_eq!(
            comparison.line,
            "enqueue vs etcd put at 64 clients: 10001/s vs 6467/s = 1.55x"
        );
        assert!(comparison.throughput_target_met);
        assert!(comparison.p99_target_met);
    }

    #[test]
    fn targets_are_missed_below_one_and_a_half_times_or_with_a_worse_p99() {
        let ours = report("throughput", 64, 14_990, 10.0, 31.0);
        let etcd = report("etcd_put", 64, 10_000, 10.0, 30.0);
        let comparison = compare(&ours, &etcd).expect("same clients");
        assert!((comparison.ratio - 1.499).abs() < 1e-9);
        assert!(!comparison.throughput_target_met);
        assert!(!comparison.p99_target_met);
        assert!(comparison.line.ends_with("= 1.50x"), "{}", comparison.line);
    }

    #[test]
    fn a_run_that_measured_nothing_meets_no_target() {
        let ours = report("throughput", 1, 500, 5.0, 3.0);
        let etcd = report("etcd_put", 1, 0, 5.0, 0.0);
        let comparison = compare(&ours, &etcd).expect("same clients");
        assert_eq!(comparison.ratio, 0.0);
        assert!(!comparison.throughput_target_met && !comparison.p99_target_met);
        assert_eq!(
            comparison.line,
            "enqueue vs etcd put at 1 clients: 100/s vs 0/s = 0.00x"
        );
    }

    #[test]
    fn runs_with_different_clients_do_not_compare() {
        let ours = report("throughput", 64, 1, 1.0, 1.0);
        let etcd = report("etcd_put", 16, 1, 1.0, 1.0);
        assert_eq!(
            compare(&ours, &etcd),
            Err(ClientsDiffer { ours: 64, etcd: 16 })
        );
    }
}
