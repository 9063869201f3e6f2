//! The errors a backend can stop with; the binaries turn them into an exit status.

use std::net::SocketAddr;

use crate::catalogue::CatalogueError;

/// Why a backend could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The bound socket could not tell its own address.
    #[error("cannot read the listening socket's address: {0}")]
    LocalAddr(std::io::Error),
    /// The embedded descriptor set could not be turned into a reflection service.
    #[error("cannot build the gRPC reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed while serving.
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The catalogue given to the suggestions service is unreadable or invalid.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
