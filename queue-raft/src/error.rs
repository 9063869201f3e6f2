//! Errors from opening the stores, before openraft is involved. Once running, the stores speak
//! openraft's `StorageError`, which carries what failed (vote, log, snapshot) and how.

use thiserror::Error;

/// Why a node's storage could not be opened.
#[derive(Debug, Error)]
pub enum StoreOpenError {
    /// sled could not open the database or one of its trees (for example, the path is locked by
    /// another process, or unreadable).
    #[error("cannot open sled storage: {0}")]
    Sled(#[from] sled::Error),
    /// A file of the node's data directory cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Raft state persisted by an earlier run cannot be read back.
    #[error("cannot read the stored Raft state: {0}")]
    Unreadable(String),
    /// A file persisted by an earlier run does not decode.
    #[error("the {what} in {path} is corrupt: {source}")]
    Corrupt {
        path: std::path::PathBuf,
        what: &'static str,
        #[source]
        source: bincode::Error,
    },
}
