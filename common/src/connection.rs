//! The connections every server here accepts: bounded in number, and unable to stall the server.
//!
//! [`Acceptor`] takes a slot under the server's connection limit before it accepts, so that past
//! the limit new clients wait in the kernel's listen backlog (and time out there) instead of
//! being served or costing memory. Each accepted connection is a [`GuardedStream`], which frees
//! its slot when dropped and fails with `TimedOut` when a client stalls it:
//! - a write that makes no progress for the write-stall timeout (a client that does not read
//!   its answers would otherwise hold the connection, and a graceful shutdown, for ever);
//! - optionally, no byte received for the read-idle timeout (a client that sent one byte and
//!   stopped). Only for HTTP/2 servers that ping: a live client answers every ping, so it is
//!   never idle that long. HTTP/1 servers leave it off, since a request being handled may
//!   rightly leave the socket silent for longer; hyper's header-read timeout covers them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long to wait before accepting again after `accept` failed (out of file descriptors, say),
/// so that a persistent failure does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// When a connection counts as stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallLimits {
    /// Nothing received for this long ends the connection; `None`: never.
    pub read_idle: Option<Duration>,
    /// A write (or flush) pending for this long ends the connection.
    pub write_stall: Duration,
}

/// Accepts connections on a listener, at most `max_connections` open at once.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    limits: StallLimits,
}

impl Acceptor {
    pub fn new(listener: TcpListener, max_connections: usize, limits: StallLimits) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(max_connections)),
            limits,
        }
    }

    /// Waits for a free slot, then for a connection. Failures to accept are logged and retried:
    /// they concern one connection, or pass (a full file table).
    pub async fn accept(&self) -> GuardedStream {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            // The semaphore is never closed: nothing here calls `close`.
            .expect("the connection slots are never closed");
        loop {
            match self.listener.accept().await {
                Ok((stream, _peer)) => {
                    // Without TCP_NODELAY small answers wait for the client's delayed ACK.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::warn!(%error, "cannot set TCP_NODELAY");
                    }
                    return GuardedStream::new(stream, slot, self.limits);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }
}

/// An accepted TCP connection that holds its slot and ends when the client stalls it.
#[derive(Debug)]
pub struct GuardedStream {
    stream: TcpStream,
    limits: StallLimits,
    /// Runs while a read is pending; reset by every byte received.
    read_clock: Option<Pin<Box<Sleep>>>,
    /// Runs while a write or flush is pending; reset by every write that makes progress.
    write_clock: Option<Pin<Box<Sleep>>>,
    /// The connection's slot under the limit, freed when the connection is dropped.
    _slot: OwnedSemaphorePermit,
}

impl GuardedStream {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, limits: StallLimits) -> Self {
        Self {
            stream,
            limits,
            read_clock: None,
            write_clock: None,
            _slot: slot,
        }
    }

    /// The underlying stream, for its addresses.
    pub fn tcp(&self) -> &TcpStream {
        &self.stream
    }

    /// For an operation still pending: the stall error once `limit` has passed since the first
    /// time it was found pending, else `Pending` (the clock wakes the task when it runs out).
    fn stalled<T>(
        clock: &mut Option<Pin<Box<Sleep>>>,
        limit: Duration,
        what: &str,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        let clock = clock.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match clock.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client stalled: {what} for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// A write-side result: progress resets the write clock; pending runs it.
    fn track_write<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                self.write_clock = None;
                Poll::Ready(result)
            }
            Poll::Pending => Self::stalled(
                &mut self.write_clock,
                self.limits.write_stall,
                "no write progress",
                cx,
            ),
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.read_clock = None;
                Poll::Ready(result)
            }
            Poll::Pending => match this.limits.read_idle {
                Some(limit) => Self::stalled(&mut this.read_clock, limit, "nothing received", cx),
                None => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.track_write(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.track_write(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        this.track_write(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.track_write(result, cx)
    }
}

impl Connected for GuardedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn acceptor(
        max_connections: usize,
        limits: StallLimits,
    ) -> (Acceptor, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        (Acceptor::new(listener, max_connections, limits), addr)
    }

    const LIMITS: StallLimits = StallLimits {
        read_idle: Some(Duration::from_millis(200)),
        write_stall: Duration::from_millis(200),
    };

    #[tokio::test]
    async fn a_silent_client_times_the_read_out_and_a_talking_one_does_not() {
        let (acceptor, addr) = acceptor(4, LIMITS).await;
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let mut served = acceptor.accept().await;
        let mut buffer = [0_u8; 8];
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(120)).await;
            client.write_all(b"x").await.expect("write");
            assert_eq!(served.read(&mut buffer).await.expect("a byte"), 1);
        }
        let error = served.read(&mut buffer).await.expect_err("idle");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_times_the_write_out() {
        let (acceptor, addr) = acceptor(4, LIMITS).await;
        let _client = TcpStream::connect(addr).await.expect("connect");
        let mut served = acceptor.accept().await;
        let chunk = vec![0_u8; 1 << 20];
        let error = loop {
            if let Err(error) = served.write_all(&chunk).await {
                break error;
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn past_the_limit_a_connection_waits_for_a_slot() {
        let (acceptor, addr) = acceptor(1, LIMITS).await;
        let _first_client = TcpStream::connect(addr).await.expect("connect");
        let first = acceptor.accept().await;
        let _second_client = TcpStream::connect(addr).await.expect("connect");
        let waiting = tokio::time::timeout(Duration::from_millis(300), acceptor.accept()).await;
        assert!(
            waiting.is_err(),
            "a second connection was accepted past the limit of 1"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(2), acceptor.accept())
            .await
            .expect("accepted once the first connection is gone");
    }
}
