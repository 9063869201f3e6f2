//! Trying the whole system the way Jepsen tries a database: clients record every operation with
//! its answer, a nemesis kills processes and cuts nodes off the network, and after everything heals
//! and drains, a checker judges the recorded history against what the architecture promises.
//!
//! Layout:
//! - [`history`]: the record (operations, executions, final states, nemesis events).
//! - [`checker`]: the judge (pure: a history in, a report out).
//! - [`network`]: the run's bridge and one network namespace per queue node; partition and heal.
//! - [`processes`]: one process of the system, started with its log, SIGKILLed, restarted.
//! - [`system`]: every process of the system, wired to the others.
//! - [`nemesis`]: the seeded faults, one at a time, each repaired before the next.
//! - [`clients`]: checkout and enqueue clients that record what they were told.
//! - [`drain`]: the queue emptied, final states and executions collected.
//! - [`cards`]: no card number or CVV anywhere the system wrote or answered.
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
