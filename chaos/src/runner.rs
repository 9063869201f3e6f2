//! One chaos run, start to verdict: the network and the system up, clients (writers and
//! readers) and nemesis for the run's duration, heal and drain, the history written and judged,
//! the card check, the summary.
//!
//! Everything the run starts is owned by a guard ([`Network`], [`System`]) that deletes or kills
//! it when dropped, so an error, a panic, or the signal that makes `main` drop this future
//! leaves nothing behind.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use bookstore_bench::cluster::{Settled, wait_for_leader};
use queue_raft::{ClientOptions, QueueClient};
use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::checker::{self, Bounds, Report};
use crate::clients::{self, ClientContext, ClientRecord, ContextParts, ReaderKind};
use crate::history::{ClockStep, History, RunWindow};
use crate::nemesis::{FaultKind, Nemesis, NemesisLog};
use crate::network::Network;
use crate::system::{EXECUTOR_COUNT, QUEUE_NODES, QueueTokenFiles, System, SystemPaths};
use crate::{cards, drain};

/// How long the cluster may take to elect its first leader.
const FIRST_LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The CVV every client sends: four digits, so that it cannot be a three-digit CVV's substring
/// of some other field; found only as a CVV field's value (see [`cards`]).
const CVV: &str = "9073";
/// How often the run compares its wall clock with its monotonic clock, and how far they may
/// drift apart between two looks before that counts as a step.
const CLOCK_WATCH: Duration = Duration::from_millis(500);
const CLOCK_STEP_MS: i64 = 100;
/// What a queue node logs when it installs a snapshot from its leader.
const SNAPSHOT_INSTALLED: &[u8] = b"\"snapshot installed\"";

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub duration: Duration,
    pub seed: u64,
    /// Where the binaries are (`target/debug` or `target/release`).
    pub binaries: PathBuf,
    /// The parent of the run's own directory.
    pub runs_dir: PathBuf,
    pub drain_timeout: Duration,
    pub checkout_clients: usize,
    pub enqueue_clients: usize,
    /// Keep the queue nodes' data after a clean run too.
    pub keep: bool,
    /// Six hex digits naming the run's bridge and namespaces; random when not given.
    pub tag: Option<String>,
    /// The kinds of fault the nemesis deals from.
    pub fault_kinds: Vec<FaultKind>,
}

/// What `summary.json` holds, and the last lines of the run's output.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub seed: u64,
    pub duration_s: f64,
    /// Faults injected, by kind (every kind listed).
    pub faults_injected: Vec<(&'static str, usize)>,
    /// Processes found exited by themselves.
    pub crashes: usize,
    pub operations_ok: usize,
    pub operations_failed: usize,
    pub operations_unknown: usize,
    pub reads_checked: usize,
    pub reads_at_one_node: usize,
    pub reads_without_answer: usize,
    /// Reads asked of a node while a fault was on it, and how many of those were answered.
    pub reads_tried_at_faulted_node: usize,
    pub reads_answered_at_faulted_node: usize,
    pub dequeues: usize,
    pub contended_dequeues: usize,
    pub orders_executed: usize,
    pub executions: usize,
    pub fenced_re_executions: usize,
    /// Snapshots the queue nodes installed from their leader (each a node caught up past the
    /// leader's purged log, as after a long partition).
    pub snapshot_installs: usize,
    /// Executions per second of the run, drain included.
    pub executions_per_s: f64,
    /// Every fault kind of the checker and its count.
    pub fault_counts: Vec<(&'static str, usize)>,
    pub bounds: Bounds,
    pub card_leaks: usize,
    pub checker_clean: bool,
    pub passed: bool,
}

/// Runs once; `Ok(true)` when the checker is clean and no card leaked. The run's directory is
/// created under `options.runs_dir` and printed first.
pub async fn run(options: RunOptions) -> anyhow::Result<bool> {
    Network::require_capabilities()?;
    let tag = match &options.tag {
        Some(tag) if tag.len() == 6 && tag.bytes().all(|byte| byte.is_ascii_hexdigit()) => {
            tag.to_ascii_lowercase()
        }
        Some(tag) => bail!("the run's tag must be six hex digits, not {tag:?}"),
        None => format!("{:06x}", rand::rng().random_range(0..0x100_0000u32)),
    };
    let run_id = format!("{}-{tag}", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
    let run_dir = options.runs_dir.join(&run_id);
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    println!(
        "chaos run {run_id}: seed {}, duration {:?}",
        options.seed, options.duration
    );
    println!("run directory: {}", run_dir.display());

    let suggested_octet = u8::from_str_radix(&tag[..2], 16).context("the tag is hex")?;
    let network = Network::create(&tag, suggested_octet, QUEUE_NODES, EXECUTOR_COUNT)?;
    println!(
        "network: bridge {} on {}",
        network.layout().bridge,
        network.layout().subnet()
    );
    let paths = SystemPaths {
        binaries: options.binaries.clone(),
        run_dir: run_dir.clone(),
    };
    let cluster_secret = uuid::Uuid::new_v4().simple().to_string();
    let tokens = QueueTokenFiles::create(&run_dir.join("queue-tokens"))?;
    let mut system = System::start(&paths, network.layout(), &cluster_secret, &tokens).await?;
    let status = QueueClient::with_options(
        system.queue_addrs.clone(),
        QueueTokenFiles::load(&tokens.admin)?,
        ClientOptions {
            deadline: Duration::from_secs(2),
            attempt_timeout: Duration::from_millis(500),
            ..ClientOptions::default()
        },
    )?;
    wait_for_leader(&status, FIRST_LEADER_TIMEOUT, "starting", Settled::Led).await?;
    println!("system up: orchestrator {}", system.orchestrator_url);

    let clock_steps = Arc::new(Mutex::new(Vec::new()));
    let clock_watcher = tokio::spawn(watch_clock(clock_steps.clone()));
    let started = Instant::now();
    let until = started + options.duration;
    let clients_started_at_ms = crate::now_ms();
    let (depth_sender, depth) = watch::channel(0);
    let backlog_watcher = tokio::spawn(clients::watch_backlog(status.clone(), depth_sender));
    let (faulted_sender, faulted) = watch::channel(Vec::new());
    let nodes: Vec<(String, String)> = system
        .queue_addrs
        .iter()
        .enumerate()
        .map(|(index, addr)| (format!("queue-{}", index + 1), addr.clone()))
        .collect();
    let context = ClientContext::new(ContextParts {
        run_id: &run_id,
        orchestrator_url: &system.orchestrator_url,
        nodes: &nodes,
        cvv: CVV,
        responses: &run_dir.join("responses.jsonl"),
        backlog: depth,
        faulted,
        token: QueueTokenFiles::load(&tokens.orchestrator)?,
    })?;
    let client_tasks = spawn_clients(&options, &context, until);
    drop(context);

    let mut nemesis = Nemesis::new(
        options.seed,
        options.fault_kinds.clone(),
        &mut system,
        &network,
        &status,
        faulted_sender,
    );
    nemesis.run(until).await?;
    println!("nemesis stopped; healing, waiting for the clients, draining");
    network.heal_all()?;
    nemesis.restart_exited()?;
    let mut nemesis_log = std::mem::take(&mut nemesis.log);
    drop(nemesis);

    let mut records = Vec::new();
    for task in client_tasks {
        records.push(task.await.context("a client task failed")?);
    }
    backlog_watcher.abort();
    let operations: Vec<_> = records
        .iter_mut()
        .flat_map(|record| std::mem::take(&mut record.operations))
        .collect();
    let reads: Vec<_> = records
        .iter_mut()
        .flat_map(|record| std::mem::take(&mut record.reads))
        .collect();
    let order_ids: BTreeSet<String> = operations
        .iter()
        .map(|operation| operation.order_id.clone())
        .collect();
    let final_states = drain::wait_drained(&status, &order_ids, options.drain_timeout).await?;
    let end = drain::cluster_end(&status).await;
    let elapsed = started.elapsed();
    // A process that died while the clients wound down or the queue drained.
    nemesis_log.exits.extend(system.restart_exited()?);
    let ledgers = system.ledgers.clone();
    // Every process stops here, so that the ledgers and logs are complete for what follows.
    system.stop_and_keep_data()?;
    drop(system);
    let disks = paths.disks();
    std::fs::remove_dir_all(&disks)
        .with_context(|| format!("cannot remove {}", disks.display()))?;
    clock_watcher.abort();

    let (executions, acknowledgements) = drain::ledgers(&ledgers)?;
    let history = History {
        run: RunWindow {
            seed: options.seed,
            clients_started_at_ms,
            clients_stopped_at_ms: clients_started_at_ms
                + u64::try_from(options.duration.as_millis()).unwrap_or(u64::MAX),
            clock_steps: clock_steps
                .lock()
                .map(|steps| steps.clone())
                .unwrap_or_default(),
        },
        operations,
        reads,
        executions,
        acknowledgements,
        final_states,
        end,
        nemesis: std::mem::take(&mut nemesis_log.events),
        exits: std::mem::take(&mut nemesis_log.exits),
    };
    let history_dir = run_dir.join("history");
    std::fs::create_dir_all(&history_dir)
        .with_context(|| format!("cannot create {}", history_dir.display()))?;
    history.save(&history_dir)?;
    let report = checker::check(&history, Bounds::RUN);
    println!("\nchecker report ({}):\n{report}", history_dir.display());

    let leaks = card_leaks(&run_dir, &records)?;
    let mut summary = summarize(&run_id, &options, elapsed, &history, &report, leaks.len());
    summary.snapshot_installs = snapshot_installs(&paths)?;
    let summary_path = run_dir.join("summary.json");
    std::fs::write(&summary_path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    print_summary(&summary);
    drop(network);

    if summary.passed && !options.keep {
        let data = paths.data();
        std::fs::remove_dir_all(&data)
            .with_context(|| format!("cannot remove {}", data.display()))?;
    }
    println!("history: {}", history_dir.display());
    Ok(summary.passed)
}

/// The writers and the readers, each a task that runs until `until` and hands back its record.
fn spawn_clients(
    options: &RunOptions,
    context: &ClientContext,
    until: Instant,
) -> Vec<tokio::task::JoinHandle<ClientRecord>> {
    let mut tasks = Vec::new();
    for number in 1..=options.checkout_clients {
        let name = format!("checkout-{number}");
        tasks.push(tokio::spawn(clients::checkout_client(
            name,
            context.clone(),
            until,
        )));
    }
    for number in 1..=options.enqueue_clients {
        let name = format!("enqueue-{number}");
        tasks.push(tokio::spawn(clients::enqueue_client(
            name,
            context.clone(),
            until,
        )));
    }
    for (name, kind) in [
        ("reader-rest", ReaderKind::Rest),
        ("reader-leader", ReaderKind::Leader),
        ("reader-node", ReaderKind::OneNode),
    ] {
        tasks.push(tokio::spawn(clients::reader(
            name.to_owned(),
            kind,
            context.clone(),
            until,
        )));
    }
    tasks
}

/// Compares the wall clock's progress with the monotonic clock's every [`CLOCK_WATCH`], and
/// records every jump of more than [`CLOCK_STEP_MS`]: the history's times all come from the wall
/// clock, so a step would void every check that compares them.
async fn watch_clock(steps: Arc<Mutex<Vec<ClockStep>>>) {
    let mut last = (Instant::now(), SystemTime::now());
    loop {
        tokio::time::sleep(CLOCK_WATCH).await;
        let now = (Instant::now(), SystemTime::now());
        let monotonic_ms = i64::try_from((now.0 - last.0).as_millis()).unwrap_or(i64::MAX);
        let wall_ms = match now.1.duration_since(last.1) {
            Ok(forward) => i64::try_from(forward.as_millis()).unwrap_or(i64::MAX),
            Err(backward) => -i64::try_from(backward.duration().as_millis()).unwrap_or(i64::MAX),
        };
        let step_ms = wall_ms - monotonic_ms;
        if step_ms.abs() > CLOCK_STEP_MS
            && let Ok(mut steps) = steps.lock()
        {
            println!("the wall clock stepped {step_ms} ms");
            steps.push(ClockStep {
                at_ms: crate::now_ms(),
                step_ms,
            });
        }
        last = now;
    }
}

/// Every place a card number or the CVV shows up under the run's directory.
fn card_leaks(run_dir: &Path, records: &[ClientRecord]) -> anyhow::Result<Vec<cards::Leak>> {
    let used: HashSet<String> = records
        .iter()
        .flat_map(|record| record.cards.iter().cloned())
        .collect();
    let searched = Instant::now();
    let leaks = cards::scan(run_dir, &used, CVV)?;
    println!(
        "card check: {} card numbers and the CVV searched in every file under {} ({:.1} s): {} \
         found",
        used.len(),
        run_dir.display(),
        searched.elapsed().as_secs_f64(),
        leaks.len()
    );
    for leak in leaks.iter().take(10) {
        println!(
            "  - {} in {} at byte {}",
            leak.what,
            leak.file.display(),
            leak.offset
        );
    }
    Ok(leaks)
}

fn summarize(
    run_id: &str,
    options: &RunOptions,
    elapsed: Duration,
    history: &History,
    report: &Report,
    card_leaks: usize,
) -> Summary {
    let outcomes = [&report.checkouts, &report.enqueues];
    Summary {
        run_id: run_id.to_owned(),
        seed: options.seed,
        duration_s: elapsed.as_secs_f64(),
        faults_injected: NemesisLog::injected(&history.nemesis),
        crashes: report.crashes.count,
        operations_ok: outcomes.iter().map(|counts| counts.ok).sum(),
        operations_failed: outcomes.iter().map(|counts| counts.failed).sum(),
        operations_unknown: outcomes.iter().map(|counts| counts.unknown).sum(),
        reads_checked: report.reads.checked(),
        reads_at_one_node: report.reads.at_one_node,
        reads_without_answer: report.reads.no_answer,
        reads_tried_at_faulted_node: report.reads.tried_at_faulted_node,
        reads_answered_at_faulted_node: report.reads.answered_at_faulted_node,
        dequeues: report.contention.dequeues,
        contended_dequeues: report.contention.contended,
        orders_executed: report.orders_executed,
        executions: report.executions,
        fenced_re_executions: report.fenced_re_executions.count,
        snapshot_installs: 0,
        executions_per_s: report.executions as f64 / elapsed.as_secs_f64().max(1.0),
        fault_counts: report
            .faults()
            .iter()
            .map(|(name, findings)| (*name, findings.count))
            .collect(),
        bounds: Bounds::RUN,
        card_leaks,
        checker_clean: report.is_clean(),
        passed: report.is_clean() && card_leaks == 0,
    }
}

/// How many snapshots the queue nodes installed, as their logs say.
fn snapshot_installs(paths: &SystemPaths) -> anyhow::Result<usize> {
    let mut installs = 0;
    for node in 1..=QUEUE_NODES {
        let log = paths.logs().join(format!("queue-{node}.log"));
        let text = std::fs::read(&log).with_context(|| format!("cannot read {}", log.display()))?;
        installs += text
            .split(|&byte| byte == b'\n')
            .filter(|line| {
                line.windows(SNAPSHOT_INSTALLED.len())
                    .any(|w| w == SNAPSHOT_INSTALLED)
            })
            .count();
    }
    Ok(installs)
}

/// The summary line: per kind of fault injected, the reads checked, the contention judged, and
/// every fault kind's count.
fn print_summary(summary: &Summary) {
    let pairs = |counts: &[(&str, usize)]| {
        counts
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "\nsummary: {:.0} s, seed {}: injected {}; operations {} ok, {} failed, {} unknown; \
         reads checked {} ({} at one node, {} without answer, {} tried at a faulted node); \
         contention {} of {} dequeues had a choice; \
         {} orders executed ({} executions, {} fenced re-executions, {:.1}/s); \
         {} snapshot installs; faults: {}; card leaks {}",
        summary.duration_s,
        summary.seed,
        pairs(&summary.faults_injected),
        summary.operations_ok,
        summary.operations_failed,
        summary.operations_unknown,
        summary.reads_checked,
        summary.reads_at_one_node,
        summary.reads_without_answer,
        summary.reads_tried_at_faulted_node,
        summary.contended_dequeues,
        summary.dequeues,
        summary.orders_executed,
        summary.executions,
        summary.fenced_re_executions,
        summary.executions_per_s,
        summary.snapshot_installs,
        pairs(&summary.fault_counts),
        summary.card_leaks
    );
    println!(
        "verdict: {}",
        if summary.passed { "PASSED" } else { "FAILED" }
    );
}
