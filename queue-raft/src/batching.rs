//! Group commit, the one way this crate batches: requests that arrive while earlier batches are
//! still being handled leave together as the next batch. The server's [`crate::proposer`] uses it
//! to put many writes in one Raft entry, the [`crate::client`] to send many enqueues in one call.
//!
//! No request waits for a batch to fill: while fewer than `max_in_flight` batches are being
//! handled, a request goes out at once, alone. Only when that many are in flight do new requests
//! wait, and then they leave together as soon as one batch is done. A lone caller thus sees the
//! latency of one request, and many callers share batches.
//!
//! A batch is bounded twice: by count, and by the sum of its requests' sizes (so that one call
//! stays below the server's message limit however large its requests are). A request that would
//! take a batch past its size bound waits for the next batch; one larger than the bound alone
//! leaves alone.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

/// How large a batch may grow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchBounds {
    /// The most requests in one batch.
    pub requests: usize,
    /// The most bytes in one batch, as the size function given to [`run`] counts them.
    pub bytes: usize,
}

/// Takes the requests waiting in `waiting`, within `bounds` (each request weighing `size` of it)
/// at a time, whenever fewer than `max_in_flight` batches are being handled, and runs `handle` on
/// each batch as a task of its own. Returns when every sender of `waiting` is gone.
pub(crate) async fn run<T, S, F, Fut>(
    mut waiting: mpsc::Receiver<T>,
    max_in_flight: usize,
    bounds: BatchBounds,
    size: S,
    handle: F,
) where
    S: Fn(&T) -> usize,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    // A request taken from `waiting` that did not fit its batch: the first of the next one.
    let mut held_over = None;
    loop {
        let Ok(slot) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let first = match held_over.take() {
            Some(request) => request,
            None => match waiting.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        let mut bytes = size(&first);
        let mut batch = vec![first];
        while batch.len() < bounds.requests {
            let Ok(request) = waiting.try_recv() else {
                break;
            };
            let request_bytes = size(&request);
            if bytes.saturating_add(request_bytes) > bounds.bytes {
                held_over = Some(request);
                break;
            }
            bytes += request_bytes;
            batch.push(request);
        }
        let handled = handle(batch);
        tokio::spawn(async move {
            handled.await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    /// Each batch the batcher handed over, and the switch that ends its handling.
    type Batches = mpsc::UnboundedReceiver<(Vec<u32>, oneshot::Sender<()>)>;

    /// Runs the batcher with batches that finish only when the test says so; reports each batch.
    /// A request weighs its own value in bytes.
    fn start(max_in_flight: usize, bounds: BatchBounds) -> (mpsc::Sender<u32>, Batches) {
        let (requests, waiting) = mpsc::channel(64);
        let (batches, seen) = mpsc::unbounded_channel();
        let size = |request: &u32| *request as usize;
        tokio::spawn(run(waiting, max_in_flight, bounds, size, move |batch| {
            let (done, finish) = oneshot::channel();
            let _ = batches.send((batch, done));
            async move {
                let _ = finish.await;
            }
        }));
        (requests, seen)
    }

    fn at_most(requests: usize) -> BatchBounds {
        BatchBounds {
            requests,
            bytes: usize::MAX,
        }
    }

    #[tokio::test]
    async fn a_lone_request_goes_at_once_and_waiting_ones_leave_together() {
        let (requests, mut seen) = start(1, at_most(10));
        requests.send(1).await.expect("batcher runs");
        let (first, done) = seen.recv().await.expect("first batch");
        assert_eq!(first, vec![1]);
        for request in 2..=4 {
            requests.send(request).await.expect("batcher runs");
        }
        // Nothing leaves while the one batch allowed is in flight.
        tokio::task::yield_now().await;
        assert!(seen.try_recv().is_err());
        done.send(()).expect("batch waits");
        let (second, _done) = seen.recv().await.expect("second batch");
        assert_eq!(second, vec![2, 3, 4]);
    }

    #[tokio::test]
    async fn batches_are_capped_and_several_may_be_in_flight() {
        let (requests, mut seen) = start(2, at_most(2));
        requests.send(1).await.expect("batcher runs");
        let (first, done) = seen.recv().await.expect("first batch");
        for request in 2..=4 {
            requests.send(request).await.expect("batcher runs");
        }
        let (second, _done) = seen.recv().await.expect("second batch, beside the first");
        assert_eq!((first, second), (vec![1], vec![2, 3]));
        done.send(()).expect("batch waits");
        let (third, _done) = seen.recv().await.expect("third batch");
        assert_eq!(third, vec![4]);
    }

    #[tokio::test]
    async fn batches_are_bounded_by_bytes_and_a_request_over_the_bound_leaves_alone() {
        let bounds = BatchBounds {
            requests: 100,
            bytes: 10,
        };
        let (requests, mut seen) = start(1, bounds);
        requests.send(1).await.expect("batcher runs");
        let (first, done) = seen.recv().await.expect("first batch");
        assert_eq!(first, vec![1]);
        for request in [4, 5, 2, 30, 3, 3] {
            requests.send(request).await.expect("batcher runs");
        }
        done.send(()).expect("batch waits");
        let mut batches = Vec::new();
        while batches.concat::<u32>().len() < 6 {
            let (batch, done) = seen.recv().await.expect("a batch");
            batches.push(batch);
            done.send(()).expect("batch waits");
        }
        assert_eq!(batches, vec![vec![4, 5], vec![2], vec![30], vec![3, 3]]);
    }

    #[tokio::test]
    async fn it_ends_when_every_sender_is_gone() {
        let (requests, waiting) = mpsc::channel::<u32>(4);
        let batcher = tokio::spawn(run(waiting, 1, at_most(4), |_: &u32| 1, |_| async {}));
        drop(requests);
        batcher.await.expect("the batcher ends without panicking");
    }
}
