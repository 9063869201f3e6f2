//! How every HTTP server here serves and stops (the orchestrator, the executors' status port and
//! the metrics ports), so that no client can hold one: `axum::serve` sets no timer at all, and a
//! client that sent one byte and stalled was held for ever, and held the graceful shutdown too.
//!
//! [`serve`] speaks HTTP/1.1 (every client here does: browsers, curl, reqwest, Prometheus) under
//! the [`HttpLimits`]:
//! - at most `max_connections` at once; past that, clients wait in the listen backlog;
//! - `header_read_timeout`, from the moment a connection awaits a request (a new connection, or
//!   one kept alive after an answer) until that request's head has arrived: it bounds a slow
//!   head and an idle kept-alive connection alike (hyper's timer, restarted for each request);
//! - `body_timeout`, for the whole request body from the head on (a deadline, not a gap between
//!   bytes, so that a byte a second does not keep it alive);
//! - `write_stall_timeout`, for a write making no progress (a client that does not read);
//! - the request's own time is each router's timeout layer;
//! - `drain_timeout`: once `shutdown` resolves the listener closes, idle connections close,
//!   requests in flight have this long to finish, and whatever is still open is cut.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_http::timeout::RequestBodyDeadlineLayer;

use crate::connection::{Acceptor, GuardedStream, StallLimits};

/// What an HTTP server allows a client (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_timeout: Duration,
    pub write_stall_timeout: Duration,
    pub drain_timeout: Duration,
}

impl HttpLimits {
    /// For the small ports that only answer from memory (an executor's status, metrics): few
    /// clients, answers at once.
    pub const fn internal() -> Self {
        Self {
            max_connections: 64,
            drain_timeout: Duration::from_secs(2),
            ..Self::DEFAULT
        }
    }

    const DEFAULT: Self = Self {
        max_connections: 512,
        header_read_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        write_stall_timeout: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(6),
    };
}

impl Default for HttpLimits {
    /// For a public port: 512 connections, 10 s for a head, a body or a stalled write, and 6 s
    /// to drain, so that with the rest of a stop SIGTERM ends the process within 10 s.
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves, then drains (see the
/// module's documentation). Returns once every connection is closed or cut.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = Acceptor::new(
        listener,
        limits.max_connections,
        StallLimits {
            read_idle: None,
            write_stall: limits.write_stall_timeout,
        },
    );
    let app = app.layer(RequestBodyDeadlineLayer::new(limits.body_timeout));
    // Sends `true` when the server stops; every connection then finishes its request and closes.
    let (stop, stopping) = watch::channel(false);
    // Every open connection's task; each ends when its connection closes.
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    tracing::warn!(%error, "an HTTP connection task failed");
                }
            }
            stream = acceptor.accept() => {
                connections.spawn(serve_connection(
                    stream,
                    app.clone(),
                    limits.header_read_timeout,
                    stopping.clone(),
                ));
            }
        }
    }
    // Closes the listening socket: from now on new clients are refused at once.
    drop(acceptor);
    // Fails only without receivers, when no connection is open.
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            drain_timeout = ?limits.drain_timeout,
            "connections still open after the drain timeout are cut"
        );
        connections.shutdown().await;
    }
}

/// Serves one connection until it closes, or until `stopping` turns true: then the request in
/// flight is answered and the connection closed (an idle one at once).
async fn serve_connection(
    stream: GuardedStream,
    app: Router,
    header_read_timeout: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    // Ends when the server stops (or is gone); holds no borrow of the channel.
    let stop = async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stop => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        // A client that went away or stalled: its business, not the server's.
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
