//! Judges a [`History`] against the queue's guarantees.

use crate::history::History;

/// What the checker found.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {}

pub fn check(_history: &History) -> Report {
    todo!("the checker")
}
