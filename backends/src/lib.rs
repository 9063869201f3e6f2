//! The bookstore's three gRPC backends: fraud detection, transaction verification and
//! suggestions, as one library and three thin binaries (`src/bin/`).
//!
//! Pure rules, no I/O, time handed in by the caller:
//! - [`verification`]: is the order complete and is the card valid? Every failing rule.
//! - [`fraud`]: the weighted fraud rules and the bounded card-velocity table they keep.
//! - [`catalogue`]: the book catalogue (embedded `data/books.json`, or a file) and its checks.
//! - [`suggestions`]: which books to suggest for an order's items.
//!
//! Serving:
//! - [`verification_service`], [`fraud_service`], [`suggestions_service`]: the tonic handlers,
//!   which only translate between protobuf and the pure modules, and log each request.
//! - [`incoming`]: taking the order out of a request and logging its arrival, alike for both.
//! - [`error`]: the crate's error type.

pub mod catalogue;
pub mod error;
pub mod fraud;
pub mod fraud_service;
pub mod incoming;
pub mod suggestions;
pub mod suggestions_service;
pub mod verification;
pub mod verification_service;

pub use error::{Error, Result};
