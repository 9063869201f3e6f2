//! The errors a backend can stop with; the binaries turn them into an exit status.

use crate::catalogue::CatalogueError;

/// Why a backend could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gRPC server could not start or failed while serving.
    #[error(transparent)]
    Serve(#[from] bookstore_common::grpc::ServeError),
    /// The catalogue given to the suggestions service is unreadable or invalid.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
