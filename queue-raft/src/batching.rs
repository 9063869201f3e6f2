//! Group commit, the one way this crate batches: requests that arrive while earlier batches are
//! still being handled leave together as the next batch. The server's [`crate::proposer`] uses it
//! to put many writes in one Raft entry, the [`crate::client`] to send many enqueues in one call.
//!
//! No request waits for a batch to fill: while fewer than `max_in_flight` batches are being
//! handled, a request goes out at once, alone. Only when that many are in flight do new requests
//! wait, and then they leave together as soon as one batch is done. A lone caller thus sees the
//! latency of one request, and many callers share batches.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

/// Takes the requests waiting in `waiting`, up to `max_batch` at a time, whenever fewer than
/// `max_in_flight` batches are being handled, and runs `handle` on each batch as a task of its
/// own. Returns when every sender of `waiting` is gone.
pub(crate) async fn run<T, F, Fut>(
    mut waiting: mpsc::Receiver<T>,
    max_in_flight: usize,
    max_batch: usize,
    handle: F,
) where
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    loop {
        let Ok(slot) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match waiting.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
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
    fn start(max_in_flight: usize, max_batch: usize) -> (mpsc::Sender<u32>, Batches) {
        let (requests, waiting) = mpsc::channel(64);
        let (batches, seen) = mpsc::unbounded_channel();
        tokio::spawn(run(waiting, max_in_flight, max_batch, move |batch| {
            let (done, finish) = oneshot::channel();
            let _ = batches.send((batch, done));
            async move {
                let _ = finish.await;
            }
        }));
        (requests, seen)
    }

    #[tokio::test]
    async fn a_lone_request_goes_at_once_and_waiting_ones_leave_together() {
        let (requests, mut seen) = start(1, 10);
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
        let (requests, mut seen) = start(2, 2);
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
    async fn it_ends_when_every_sender_is_gone() {
        let (requests, waiting) = mpsc::channel::<u32>(4);
        let batcher = tokio::spawn(run(waiting, 1, 4, |_| async {}));
        drop(requests);
        batcher.await.expect("the batcher ends without panicking");
    }
}
