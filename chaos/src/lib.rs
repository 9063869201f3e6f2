//! Trying the whole system the way Jepsen tries a database: clients record every operation with
//! its answer, a nemesis kills processes and cuts nodes off the network, and after everything heals
//! and drains, a checker judges the recorded history against what the architecture promises.
//!
//! [`history`] is the record, [`checker`] the judge (pure: a history in, a report out).

pub mod checker;
pub mod history;
