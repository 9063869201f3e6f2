//! One chaos run, start to verdict: the network and the system up, clients and nemesis for the
//! run's duration, heal and drain, the history written and judged, the card check, the summary.
//!
//! Everything the run starts is owned by a guard ([`Network`], [`System`]) that deletes or kills
//! it when dropped, so an error, a panic, or the signal that makes `main` drop this future
//! leaves nothing behind.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bookstore_bench::cluster::{Settled, wait_for_leader};
use queue_raft::{ClientOptions, QueueClient};
use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::checker::{self, Report};
use crate::clients::{self, ClientContext, ClientRecord};
use crate::history::{History, NemesisAction, Outcome};
use crate::nemesis::{self, NemesisLog};
use crate::network::Network;
use crate::system::{System, SystemPaths};
use crate::{cards, drain};

const QUEUE_NODES: u64 = 3;
/// How long the cluster may take to elect its first leader.
const FIRST_LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The CVV every client sends: four digits, so that it cannot be a three-digit CVV's substring
/// of some other field; found only as a CVV field's value (see [`cards`]).
const CVV: &str = "9073";

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
}

/// What `summary.json` holds, and the last lines of the run's output.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub seed: u64,
    pub duration_s: f64,
    pub queue_node_kills: usize,
    pub executor_kills: usize,
    pub partitions: usize,
    pub operations_ok: usize,
    pub operations_failed: usize,
    pub operations_unknown: usize,
    pub orders_executed: usize,
    pub executions: usize,
    pub fenced_re_executions: usize,
    /// Executions per second of the run, drain included.
    pub executions_per_s: f64,
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
    let network = Network::create(&tag, suggested_octet, QUEUE_NODES)?;
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
    let mut system = System::start(&paths, network.layout(), &cluster_secret).await?;
    let status = QueueClient::with_options(
        system.queue_addrs.clone(),
        ClientOptions {
            deadline: Duration::from_secs(2),
            attempt_timeout: Duration::from_millis(500),
            ..ClientOptions::default()
        },
    )?;
    wait_for_leader(&status, FIRST_LEADER_TIMEOUT, "starting", Settled::Led).await?;
    println!("system up: orchestrator {}", system.orchestrator_url);

    let started = Instant::now();
    let until = started + options.duration;
    let (depth_sender, depth) = watch::channel(0);
    let backlog_watcher = tokio::spawn(clients::watch_backlog(status.clone(), depth_sender));
    let context = ClientContext::new(
        &run_id,
        &system.orchestrator_url,
        QueueClient::new(system.queue_addrs.clone())?,
        CVV,
        &run_dir.join("responses.jsonl"),
        depth,
    )?;
    let mut client_tasks = Vec::new();
    for number in 1..=options.checkout_clients {
        let name = format!("checkout-{number}");
        client_tasks.push(tokio::spawn(clients::checkout_client(
            name,
            context.clone(),
            until,
        )));
    }
    for number in 1..=options.enqueue_clients {
        let name = format!("enqueue-{number}");
        client_tasks.push(tokio::spawn(clients::enqueue_client(
            name,
            context.clone(),
            until,
        )));
    }
    drop(context);

    let mut nemesis_log = NemesisLog::default();
    nemesis::run(
        options.seed,
        until,
        &mut system,
        &network,
        &status,
        &mut nemesis_log,
    )
    .await?;
    println!("nemesis stopped; healing, waiting for the clients, draining");
    heal_everything(&mut system, &network, &mut nemesis_log)?;

    let mut records = Vec::new();
    for task in client_tasks {
        records.push(task.await.context("a client task failed")?);
    }
    backlog_watcher.abort();
    let operations: Vec<_> = records
        .iter_mut()
        .flat_map(|record| std::mem::take(&mut record.operations))
        .collect();
    let order_ids: BTreeSet<String> = operations
        .iter()
        .map(|operation| operation.order_id.clone())
        .collect();
    let final_states = drain::wait_drained(&status, &order_ids, options.drain_timeout).await?;
    let elapsed = started.elapsed();
    let ledgers = system.ledgers.clone();
    // Every process stops here, so that the ledgers and logs are complete for what follows.
    drop(system);

    let history = History {
        operations,
        executions: drain::executions(&ledgers)?,
        final_states,
        nemesis: nemesis_log.events,
    };
    let history_dir = run_dir.join("history");
    std::fs::create_dir_all(&history_dir)
        .with_context(|| format!("cannot create {}", history_dir.display()))?;
    history.save(&history_dir)?;
    let report = checker::check(&history);
    println!("\nchecker report ({}):\n{report}", history_dir.display());

    let leaks = card_leaks(&run_dir, &records)?;
    let summary = summarize(&run_id, &options, elapsed, &history, &report, leaks.len());
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

/// Heals every node and starts whatever is down (nothing is, unless the nemesis stopped on an
/// error), recording what it did.
fn heal_everything(
    system: &mut System,
    network: &Network,
    log: &mut NemesisLog,
) -> anyhow::Result<()> {
    for node in &network.layout().nodes {
        network.heal(node.node_id)?;
    }
    for target in system.restart_all_stopped()? {
        log.record(NemesisAction::Restart { target });
    }
    Ok(())
}

/// Every place a card number or the CVV shows up under the run's directory.
fn card_leaks(run_dir: &Path, records: &[ClientRecord]) -> anyhow::Result<Vec<cards::Leak>> {
    let used: HashSet<String> = records
        .iter()
        .flat_map(|record| record.cards.iter().cloned())
        .collect();
    let leaks = cards::scan(run_dir, &used, CVV)?;
    println!(
        "card check: {} card numbers and the CVV searched in every file under {}: {} found",
        used.len(),
        run_dir.display(),
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
    let count_actions = |wanted: fn(&NemesisAction) -> bool| {
        history
            .nemesis
            .iter()
            .filter(|event| wanted(&event.action))
            .count()
    };
    let count_outcomes = |wanted: Outcome| {
        history
            .operations
            .iter()
            .filter(|operation| operation.outcome == wanted)
            .count()
    };
    Summary {
        run_id: run_id.to_owned(),
        seed: options.seed,
        duration_s: elapsed.as_secs_f64(),
        queue_node_kills: count_actions(
            |action| matches!(action, NemesisAction::Kill { target } if target.starts_with("queue-")),
        ),
        executor_kills: count_actions(
            |action| matches!(action, NemesisAction::Kill { target } if target.starts_with("executor-")),
        ),
        partitions: count_actions(|action| matches!(action, NemesisAction::Partition { .. })),
        operations_ok: count_outcomes(Outcome::Ok),
        operations_failed: count_outcomes(Outcome::Failed),
        operations_unknown: count_outcomes(Outcome::Unknown),
        orders_executed: report.orders_executed,
        executions: report.executions,
        fenced_re_executions: report.fenced_re_executions,
        executions_per_s: report.executions as f64 / elapsed.as_secs_f64().max(1.0),
        card_leaks,
        checker_clean: report.is_clean(),
        passed: report.is_clean() && card_leaks == 0,
    }
}

fn print_summary(summary: &Summary) {
    println!(
        "\nsummary: {:.0} s, seed {}: {} queue-node kills, {} executor kills, {} partitions; \
         operations {} ok, {} failed, {} unknown; {} orders executed ({} executions, {} fenced \
         re-executions, {:.1}/s); card leaks {}",
        summary.duration_s,
        summary.seed,
        summary.queue_node_kills,
        summary.executor_kills,
        summary.partitions,
        summary.operations_ok,
        summary.operations_failed,
        summary.operations_unknown,
        summary.orders_executed,
        summary.executions,
        summary.fenced_re_executions,
        summary.executions_per_s,
        summary.card_leaks
    );
    println!(
        "verdict: {}",
        if summary.passed { "PASSED" } else { "FAILED" }
    );
}
