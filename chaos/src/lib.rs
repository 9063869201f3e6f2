//! Trying the whole system the way Jepsen tries a database: clients record every write and
//! read with its answer, a nemesis kills processes and cuts them off the network, and after
//! everything heals and drains, a checker judges the recorded history against what the
//! architecture promises and against the run's floors (something must keep happening).
//!
//! Layout:
//! - [`history`]: the record (operations, reads, executions and acknowledgements' answers, final
//!   states, the cluster at the end, nemesis events, processes that exited by themselves).
//! - [`checker`]: the judge (pure: a history in, a report out).
//! - [`network`]: the run's bridge and a namespace per queue node, per executor and for the
//!   services; isolation and Raft-only partitions, and their repair.
//! - [`processes`]: one process of the system, started with its log, SIGKILLed, restarted, and
//!   noticed when it exits by itself.
//! - [`system`]: every process of the system, wired to the others.
//! - [`nemesis`]: the seeded faults, one at a time, each repaired before the next.
//! - [`clients`]: writers (checkout and enqueue) and readers that record what they were told.
//! - [`drain`]: the queue emptied; final states, the replicas and the ledgers collected.
//! - [`cards`]: no card number or CVV anywhere the system wrote or answered, in any encoding.
//! - [`runner`]: one run wired together; `src/main.rs` parses flags and calls it.

pub mod cards;
pub mod checker;
pub mod clients;
pub mod drain;
pub mod history;
pub mod nemesis;
pub mod network;
pub mod processes;
pub mod runner;
pub mod system;

/// Milliseconds since the Unix epoch: the one clock every process of a run shares.
pub fn now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}
