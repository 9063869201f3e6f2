//! `chaos run`: one chaos run against the whole system (see the crate's documentation);
//! `chaos check --history DIR`: judges a recorded history again.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chaos::nemesis::FaultKind;
use chaos::runner::{self, RunOptions};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    about = "Chaos test of the bookstore's checkout and order queue"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the system, run clients and the nemesis, heal, drain, check. Needs root.
    Run(RunArgs),
    /// Judge the history in DIR and print the report; exits 1 when it finds a fault.
    Check {
        #[arg(long)]
        history: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// How long clients and the nemesis run (`90s`, `3m`, `1h`; a bare number is seconds).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    duration: Duration,
    /// The nemesis's seed; random (and printed) when not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Where the system's binaries are; default: beside this program (target/debug or release).
    #[arg(long)]
    binaries: Option<PathBuf>,
    /// Where each run gets its own directory; default: `target/chaos`.
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// How long the executors may take to empty the queue after the faults end.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    drain_timeout: Duration,
    #[arg(long, default_value_t = 4)]
    checkout_clients: usize,
    #[arg(long, default_value_t = 2)]
    enqueue_clients: usize,
    /// Keep the queue nodes' data after a passing run too (a failing run keeps everything).
    #[arg(long)]
    keep: bool,
    /// Six hex digits that name the run's namespaces (`chs<TAG>`, `chq<TAG>-N`) and its veth in
    /// the root namespace (`chr<TAG>`), so that a wrapper can remove them if this is killed.
    #[arg(long)]
    tag: Option<String>,
    /// Inject only these kinds of fault (comma-separated names, as the summary lists them:
    /// `power-cut-queue-node,pause-executor`); default: every kind.
    #[arg(long, value_delimiter = ',', value_parser = parse_fault_kind)]
    only: Vec<FaultKind>,
}

fn parse_fault_kind(name: &str) -> Result<FaultKind, String> {
    FaultKind::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
        format!(
            "no fault kind is named {name:?}; the kinds are: {}",
            known.join(", ")
        )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { history } => match chaos::checker::run_check(&history) {
            Ok(report) => {
                println!("{report}");
                if report.is_clean() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(error) => {
                eprintln!("chaos check: {error:#}");
                ExitCode::from(2)
            }
        },
        Command::Run(args) => match run(args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("chaos run: {error:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn run(args: RunArgs) -> anyhow::Result<bool> {
    let own_dir = std::env::current_exe()
        .context("cannot find this program's path")?
        .parent()
        .context("this program has no directory")?
        .to_owned();
    let runs_dir = match args.runs_dir {
        Some(dir) => dir,
        None => own_dir
            .parent()
            .context("this program's directory has no parent")?
            .join("chaos"),
    };
    let options = RunOptions {
        duration: args.duration,
        seed: args.seed.unwrap_or_else(rand::random),
        binaries: args.binaries.unwrap_or(own_dir),
        runs_dir,
        drain_timeout: args.drain_timeout,
        checkout_clients: args.checkout_clients,
        enqueue_clients: args.enqueue_clients,
        keep: args.keep,
        tag: args.tag,
        fault_kinds: if args.only.is_empty() {
            FaultKind::ALL.to_vec()
        } else {
            args.only
        },
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the Tokio runtime")?;
    runtime.block_on(async {
        let interrupted = bookstore_common::shutdown::signal();
        tokio::select! {
            outcome = runner::run(options) => outcome,
            () = interrupted => bail!("interrupted; the run's processes and network were removed"),
        }
    })
}

/// `90s`, `3m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit_seconds) = match text.char_indices().last() {
        Some((at, 's')) => (&text[..at], 1),
        Some((at, 'm')) => (&text[..at], 60),
        Some((at, 'h')) => (&text[..at], 3600),
        _ => (text, 1),
    };
    let count: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 3m or 1h"))?;
    Ok(Duration::from_secs(count * unit_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
    }
}
