//! The orchestrator: the bookstore's REST API, checkout page and cluster page.
//!
//! - [`routes`]: the axum router ([`routes::app`]) and its handlers, one per endpoint.
//! - [`checkout`]: the REST request and response bodies, and their conversion to protobuf.
//! - [`backends`]: the gRPC clients of the three backends and the concurrent fan-out of a checkout.
//! - [`cluster`]: [`cluster::ClusterMonitor`], which samples every queue node for the cluster page.
//! - [`orders`]: the body of `GET /orders/{id}`, from the queue cluster's record of an order.
//! - [`rejections`]: the bounded memory of rejected orders, which never reach the queue.
//! - [`error`]: [`ApiError`], the one place where a failure becomes an HTTP status and body.
//! - [`config`]: command-line flags with environment twins, and [`run`] that serves them.

pub mod backends;
pub mod checkout;
pub mod cluster;
pub mod config;
pub mod error;
pub mod orders;
pub mod rejections;
pub mod routes;

pub use config::{Config, run};
pub use error::ApiError;
