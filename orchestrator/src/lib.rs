//! The orchestrator: the bookstore's REST API, checkout page and cluster page.
//!
//! - [`routes`]: the axum router ([`routes::app`]) and its handlers, one per endpoint.
//! - [`checkout`]: the REST request and response bodies, and their conversion to protobuf.
//! - [`limits`]: the bounds of every text and list of a checkout, as the OpenAPI file states them.
//! - [`backends`]: the gRPC clients of the three backends and the concurrent fan-out of a checkout.
//! - [`cluster`]: [`cluster::ClusterMonitor`], which samples every queue node for the cluster page.
//! - [`idempotency`]: every checkout's key (the client's, or one made for it) and order id, and
//!   the digest of its request that the queue's record keeps, which reveals no card.
//! - [`decisions`]: a checkout decision as the queue records it, and the answer told from a
//!   record: every answer about a decided order comes from the replicated record.
//! - [`orders`]: the body of `GET /orders/{id}`, from the queue cluster's record of an order.
//! - [`error`]: [`ApiError`], the one place where a failure becomes an HTTP status and body.
//! - [`config`]: command-line flags with environment twins, and [`run`] that serves them.

pub mod backends;
pub mod checkout;
pub mod cluster;
pub mod config;
pub mod decisions;
pub mod error;
pub mod idempotency;
pub mod limits;
pub mod orders;
pub mod routes;

pub use config::{Config, run};
pub use error::ApiError;
