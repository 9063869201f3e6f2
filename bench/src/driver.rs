//! The closed-loop driver every throughput measurement shares, whatever it sends: `clients`
//! tasks each keep one request in flight; after a warm-up (connections open, leaders known, not
//! counted) every request that completes inside the measured window counts, its latency (from
//! the call to its answer, in microseconds) into an HDR histogram, or as an error. The same
//! driver, windows and histogram for our enqueue, etcd's put, RabbitMQ's publish and the
//! orchestrator's checkout, so that the numbers differ only by the system measured.
//!
//! The load generator shares the machine with what it measures, so each report also says how
//! much CPU the generator's own process used inside the window (all its threads, user and
//! system time): CPU it took is CPU the systems measured did not have.

use std::error::Error;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::stats::micros;

/// Latencies are recorded in microseconds, up to a minute, with 3 significant digits.
const HISTOGRAM_MAX_MICROS: u64 = 60_000_000;
/// How many failed requests of a run are printed (to stderr) with their error: enough to see
/// why, without flooding the output when everything fails.
const PRINTED_ERRORS: usize = 5;

/// One request a closed loop sends; the driver measures it from the call to the answer.
pub trait Operation: Send + Sync + 'static {
    /// Why a request failed, printed with its causes for the first few failures of a run.
    type Error: Error + Send;

    /// The size of one request's payload, as the report states it.
    fn payload_bytes(&self) -> usize;

    /// Sends request `sequence` of client task `client` (the pair is unique within a run) and
    /// resolves once it is acknowledged, or failed.
    fn call(
        &self,
        client: usize,
        sequence: u64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// One run of the driver.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The name the report carries (`throughput`, `etcd_put`, `checkout`).
    pub bench: &'static str,
    /// Concurrent closed loops, each with one request in flight.
    pub clients: usize,
    /// Load before the measured window, not counted.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
}

/// What a run measured; printed as one JSON line, read back by `queue-bench compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub bench: String,
    pub clients: usize,
    /// The size of one request's payload.
    pub payload_bytes: usize,
    /// Requests acknowledged inside the measured window.
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Requests that failed inside the measured window.
    pub errors: u64,
    /// CPU time the load generator's process used inside the window, user and system, every
    /// thread (0 in reports written before it was measured).
    #[serde(default)]
    pub generator_cpu_seconds: f64,
}

impl LoadReport {
    /// The load generator's CPU as a percentage of one CPU over the window (100 = one CPU busy).
    pub fn generator_cpu_percent(&self) -> f64 {
        crate::stats::ratio(self.generator_cpu_seconds * 100.0, self.seconds)
    }
}

impl LoadReport {
    /// The report of `tally`, gathered over `options`' window, in which the load generator
    /// used `generator_cpu` of CPU.
    fn of(
        options: &LoadOptions,
        payload_bytes: usize,
        tally: &Tally,
        generator_cpu: Duration,
    ) -> Self {
        let seconds = options.duration.as_secs_f64();
        let ms_at = |quantile| tally.latency.value_at_quantile(quantile) as f64 / 1000.0;
        let ops = tally.latency.len();
        Self {
            bench: options.bench.to_owned(),
            clients: options.clients,
            payload_bytes,
            ops,
            seconds,
            ops_per_sec: if seconds > 0.0 {
                ops as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms_at(0.5),
            p99_ms: ms_at(0.99),
            p999_ms: ms_at(0.999),
            max_ms: tally.latency.max() as f64 / 1000.0,
            errors: tally.errors,
            generator_cpu_seconds: generator_cpu.as_secs_f64(),
        }
    }
}

/// Runs `options.clients` closed loops of `operation` and reports the measured window.
pub async fn run<O: Operation>(operation: Arc<O>, options: &LoadOptions) -> LoadReport {
    let start = Instant::now() + options.warmup;
    let window = Window {
        start,
        end: start + options.duration,
    };
    let bench = options.bench;
    let cpu_in_window = tokio::spawn(async move {
        tokio::time::sleep_until(window.start).await;
        let at_start = process_cpu();
        tokio::time::sleep_until(window.end).await;
        process_cpu().saturating_sub(at_start)
    });
    let printed = Arc::new(AtomicUsize::new(0));
    let loops: Vec<_> = (0..options.clients)
        .map(|client| {
            let operation = Arc::clone(&operation);
            let printed = Arc::clone(&printed);
            tokio::spawn(
                async move { closed_loop(&*operation, client, window, &printed, bench).await },
            )
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
    // The sampling task only sleeps and reads a clock: it cannot fail unless the runtime is
    // going away, and then no CPU is reported rather than a wrong figure.
    let generator_cpu = cpu_in_window.await.unwrap_or_default();
    LoadReport::of(options, operation.payload_bytes(), &total, generator_cpu)
}

/// CPU time this process has used so far, all threads, user and system
/// (`CLOCK_PROCESS_CPUTIME_ID`, what `getrusage` sums, to the nanosecond).
fn process_cpu() -> Duration {
    let spent = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(spent.tv_sec).unwrap_or(0),
        u32::try_from(spent.tv_nsec).unwrap_or(0),
    )
}

/// The measured window: requests that complete inside it count.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    /// Half-open, `[start, end)`, so that back-to-back windows would count each request once.
    fn holds(&self, at: Instant) -> bool {
        self.start <= at && at < self.end
    }
}

/// What one closed loop saw inside the window.
struct Tally {
    /// Microseconds per acknowledged request.
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

async fn closed_loop<O: Operation>(
    operation: &O,
    client: usize,
    window: Window,
    printed: &AtomicUsize,
    bench: &'static str,
) -> Tally {
    let mut tally = Tally::new();
    for sequence in 0u64.. {
        let started = Instant::now();
        if started >= window.end {
            break;
        }
        let result = operation.call(client, sequence).await;
        let done = Instant::now();
        if !window.holds(done) {
            continue;
        }
        match result {
            Ok(()) => tally
                .latency
                .saturating_record(micros(done.duration_since(started))),
            Err(error) => {
                tally.errors += 1;
                if printed.fetch_add(1, Ordering::Relaxed) < PRINTED_ERRORS {
                    eprintln!("queue-bench {bench}: client {client}: {}", chain(&error));
                }
            }
        }
    }
    tally
}

/// An error with its causes, `outer: inner: ...`: HTTP and gRPC clients keep the telling part
/// (connection refused, a timeout) in the causes.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        // Some errors repeat their cause in their own message; say it once.
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers after a fixed time; every `fail_every`-th request of a client fails.
    struct Fixed {
        latency: Duration,
        fail_every: u64,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("request {0} failed on purpose")]
    struct Failed(String);

    impl Operation for Fixed {
        type Error = Failed;

        fn payload_bytes(&self) -> usize {
            7
        }

        async fn call(&self, client: usize, sequence: u64) -> Result<(), Failed> {
            tokio::time::sleep(self.latency).await;
            if (sequence + 1).is_multiple_of(self.fail_every) {
                Err(Failed(format!("{client}/{sequence}")))
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_measured_window_counts_and_errors_are_counted_apart() {
        let operation = Arc::new(Fixed {
            latency: Duration::from_millis(10),
            fail_every: 4,
        });
        let options = LoadOptions {
            bench: "fixed",
            clients: 2,
            warmup: Duration::from_millis(100),
            duration: Duration::from_secs(1),
        };
        let report = run(operation, &options).await;
        // 100 requests of 10 ms per client complete inside the second; one in four fails.
        assert_eq!(report.ops + report.errors, 200, "{report:?}");
        assert_eq!(report.errors, 50, "{report:?}");
        assert_eq!(report.ops_per_sec, 150.0);
        assert_eq!((report.bench.as_str(), report.clients), ("fixed", 2));
        assert_eq!(report.payload_bytes, 7);
        assert!((10.0..10.1).contains(&report.p50_ms), "{report:?}");
        assert!((10.0..10.1).contains(&report.p999_ms), "{report:?}");
    }

    #[test]
    fn process_cpu_counts_the_work_of_this_process() {
        let start = process_cpu();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut spins = 0u64;
        while process_cpu().saturating_sub(start) < Duration::from_millis(5)
            && std::time::Instant::now() < deadline
        {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
        assert!(
            process_cpu().saturating_sub(start) >= Duration::from_millis(5),
            "no CPU counted after {spins} spins"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_error_is_printed_with_its_causes() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(chain(&Outer(refused)), "outer: refused");
    }

    #[test]
    fn a_report_reads_its_percentiles_in_milliseconds_from_the_histogram() {
        let mut tally = Tally::new();
        for micros in 1..=1000 {
            tally.latency.saturating_record(micros * 100);
        }
        tally.errors = 3;
        let options = LoadOptions {
            bench: "b",
            clients: 4,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(2),
        };
        let report = LoadReport::of(&options, 256, &tally, Duration::from_millis(500));
        assert_eq!(report.ops, 1000);
        assert_eq!(report.ops_per_sec, 500.0);
        assert!((49.9..=50.1).contains(&report.p50_ms), "{report:?}");
        assert!((98.9..=99.1).contains(&report.p99_ms), "{report:?}");
        assert!((99.8..=100.1).contains(&report.p999_ms), "{report:?}");
        assert!((99.9..=100.1).contains(&report.max_ms), "{report:?}");
        assert_eq!(report.errors, 3);
        assert_eq!(report.generator_cpu_seconds, 0.5);
        assert_eq!(report.generator_cpu_percent(), 25.0);
        let line = serde_json::to_string(&report).expect("serializes");
        let back: LoadReport = serde_json::from_str(&line).expect("reads back");
        assert_eq!(back, report);
    }
}
