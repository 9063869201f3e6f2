//! The clients of a run: checkout clients posting valid orders to the orchestrator, and enqueue
//! clients putting orders straight into the queue cluster. Each knows its order's id before the
//! call, retries with the same id (the same `Idempotency-Key`) while the answer is not definite,
//! and records one [`ClientOperation`] per order.
//!
//! Clients hold back while the queue is deep, so that the executors keep up: the queue often
//! holds several orders (priority matters) but drains within seconds once the clients stop.
//! Every answer is appended to `responses.jsonl` in the run directory, where the card check
//! reads it.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bookstore_proto as pb;
use orchestrator::checkout::{SampleOrder, sample_request};
use queue_raft::{ClientError, QueueClient};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::history::{ClientOperation, OperationKind, Outcome};

/// How long a client keeps retrying one order before recording it as unknown.
const RETRY_WINDOW: Duration = Duration::from_secs(20);
/// The longest one checkout request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_PAUSE: Duration = Duration::from_millis(300);
/// A client's think time between two orders, in milliseconds.
const THINK_MS: std::ops::Range<u64> = 100..900;
/// Above this many queued orders the clients wait for the executors.
pub const MAX_BACKLOG: u64 = 12;
const BACKLOG_POLL: Duration = Duration::from_millis(200);
/// Titles from the suggestions catalogue; an order takes one or two, 1 to 5 copies each.
const TITLES: &[&str] = &[
    "The Hobbit",
    "The Fellowship of the Ring",
    "The Two Towers",
    "Emma",
    "Persuasion",
    "Pride and Prejudice",
];
const MAX_QUANTITY: u32 = 5;

/// What every client of a run shares.
#[derive(Debug, Clone)]
pub struct ClientContext {
    /// The run's id, in every idempotency key so that runs never share an order id.
    pub run_id: String,
    /// `http://host:port` of the orchestrator.
    pub orchestrator_url: String,
    pub http: reqwest::Client,
    pub queue: QueueClient,
    /// The CVV of every card: distinctive, so that finding it in a file is meaningful.
    pub cvv: String,
    /// The next card serial; each checkout takes its own card.
    pub next_card_serial: Arc<AtomicU64>,
    /// Where every answer is appended; the lock is held for one line.
    pub responses: Arc<Mutex<File>>,
    /// The queue's depth as last seen; see [`watch_backlog`].
    pub backlog: watch::Receiver<u64>,
}

/// What one client did: its operations and the card numbers it sent.
#[derive(Debug, Default)]
pub struct ClientRecord {
    pub operations: Vec<ClientOperation>,
    pub cards: Vec<String>,
}

impl ClientContext {
    pub fn new(
        run_id: &str,
        orchestrator_url: &str,
        queue: QueueClient,
        cvv: &str,
        responses: &Path,
        backlog: watch::Receiver<u64>,
    ) -> anyhow::Result<ClientContext> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        let responses = File::create(responses)
            .with_context(|| format!("cannot create {}", responses.display()))?;
        // Leaves room for a billion orders before the 12-digit serials wrap.
        let first_serial = rand::random_range(0..1_000_000_000_000u64 - 1_000_000_000);
        Ok(ClientContext {
            run_id: run_id.to_owned(),
            orchestrator_url: orchestrator_url.to_owned(),
            http,
            queue,
            cvv: cvv.to_owned(),
            next_card_serial: Arc::new(AtomicU64::new(first_serial)),
            responses: Arc::new(Mutex::new(responses)),
            backlog,
        })
    }

    fn record_response(&self, client: &str, order_id: &str, answer: Value) {
        let line = json!({"client": client, "order_id": order_id, "answer": answer});
        // A poisoned lock means another client panicked mid-line; the run fails on that anyway.
        if let Ok(mut file) = self.responses.lock() {
            let _ = writeln!(file, "{line}");
        }
    }

    /// Waits while the queue holds more than [`MAX_BACKLOG`] orders.
    async fn wait_for_room(&mut self) {
        let _ = self.backlog.wait_for(|depth| *depth <= MAX_BACKLOG).await;
    }
}

/// Keeps `depth` at the queue depth the leader reports, until every receiver is gone.
pub async fn watch_backlog(queue: QueueClient, depth: watch::Sender<u64>) {
    while !depth.is_closed() {
        let statuses = queue.cluster_status_all().await;
        if let Some(leader) = bookstore_bench::cluster::leader_of(
            statuses
                .iter()
                .filter_map(|(_, answer)| answer.as_ref().ok()),
        ) {
            depth.send_replace(leader.queue_depth);
        }
        tokio::time::sleep(BACKLOG_POLL).await;
    }
}

/// Posts checkouts until `until`; the order in hand is finished after that.
pub async fn checkout_client(
    name: String,
    mut context: ClientContext,
    until: Instant,
) -> ClientRecord {
    let mut record = ClientRecord::default();
    let mut sequence = 0u64;
    while Instant::now() < until {
        think(&mut context).await;
        sequence += 1;
        let key = format!("chaos-{}-{name}-{sequence}", context.run_id);
        let serial = context.next_card_serial.fetch_add(1, Ordering::Relaxed);
        let card = bookstore_bench::checkout::card_number(serial);
        let items = random_items();
        let body = checkout_body(&name, sequence, &card, &context.cvv, &items);
        record.cards.push(card);
        let operation = checkout(&name, &context, &key, &body, priority(&items)).await;
        record.operations.push(operation);
    }
    record
}

/// Enqueues straight into the cluster until `until`.
pub async fn enqueue_client(
    name: String,
    mut context: ClientContext,
    until: Instant,
) -> ClientRecord {
    let mut record = ClientRecord::default();
    while Instant::now() < until {
        think(&mut context).await;
        let items = random_items();
        let order = pb::QueuedOrder {
            order_id: uuid::Uuid::new_v4().to_string(),
            customer: format!("Chaos {name}"),
            items: items
                .iter()
                .map(|(title, quantity)| pb::QueueItem {
                    title: (*title).to_owned(),
                    quantity: *quantity,
                })
                .collect(),
        };
        record
            .operations
            .push(enqueue(&name, &context, order, priority(&items)).await);
    }
    record
}

async fn think(context: &mut ClientContext) {
    let pause = rand::rng().random_range(THINK_MS);
    tokio::time::sleep(Duration::from_millis(pause)).await;
    context.wait_for_room().await;
}

/// One checkout, retried with its key until approved, refused, or out of time.
async fn checkout(
    client: &str,
    context: &ClientContext,
    key: &str,
    body: &Value,
    priority: u32,
) -> ClientOperation {
    let order_id = orchestrator::routes::order_id_from_key(key);
    let invoked_at_ms = crate::now_ms();
    let url = format!("{}/checkout", context.orchestrator_url);
    let order_id_ref = &order_id;
    let url = &url;
    let result = until_definite(|| async move {
        let answer = context
            .http
            .post(url)
            .header(orchestrator::routes::IDEMPOTENCY_KEY, key)
            .json(body)
            .send()
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(error) => {
                context.record_response(client, order_id_ref, json!({"error": error.to_string()}));
                return Err(error.to_string());
            }
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        context.record_response(
            client,
            order_id_ref,
            json!({"http": status.as_u16(), "body": answer}),
        );
        match (status.as_u16(), answer["status"].as_str()) {
            (200, Some("Order Approved")) => Ok((Outcome::Ok, None)),
            (200, Some("Order Rejected")) => {
                Ok((Outcome::Failed, Some(format!("rejected: {text}"))))
            }
            (400..=499, _) => Ok((Outcome::Failed, Some(format!("{status}: {text}")))),
            _ => Err(format!("{status}: {text}")),
        }
    })
    .await;
    operation(
        client,
        OperationKind::Checkout,
        order_id,
        priority,
        invoked_at_ms,
        result,
    )
}

/// One enqueue, retried with its order id until committed, refused, or out of time.
async fn enqueue(
    client: &str,
    context: &ClientContext,
    order: pb::QueuedOrder,
    priority: u32,
) -> ClientOperation {
    let order_id = order.order_id.clone();
    let invoked_at_ms = crate::now_ms();
    let (order, order_id_ref) = (&order, &order_id);
    let result = until_definite(|| async move {
        let answer = context.queue.enqueue(order.clone()).await;
        context.record_response(
            client,
            order_id_ref,
            match &answer {
                Ok(response) => json!({"term": response.term, "index": response.index}),
                Err(error) => json!({"error": error.to_string()}),
            },
        );
        match answer {
            Ok(_) => Ok((Outcome::Ok, None)),
            Err(ClientError::InvalidArgument(reason)) => Ok((Outcome::Failed, Some(reason))),
            // Unreachable or any other refusal: the write may have been committed.
            Err(error) => Err(error.to_string()),
        }
    })
    .await;
    operation(
        client,
        OperationKind::Enqueue,
        order_id,
        priority,
        invoked_at_ms,
        result,
    )
}

/// What one attempt learned: a definite outcome (with its detail), or the error after which the
/// order may or may not be placed.
type Attempt = Result<(Outcome, Option<String>), String>;

/// Repeats `attempt` until it is definite or the retry window closes: then the outcome is
/// unknown, with the last error.
async fn until_definite<F, Fut>(mut attempt: F) -> (Outcome, Option<String>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt>,
{
    let give_up = Instant::now() + RETRY_WINDOW;
    loop {
        match attempt().await {
            Ok(definite) => return definite,
            Err(last_error) if Instant::now() + RETRY_PAUSE >= give_up => {
                return (Outcome::Unknown, Some(last_error));
            }
            Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
}

/// The record of an operation that has just completed.
fn operation(
    client: &str,
    kind: OperationKind,
    order_id: String,
    priority: u32,
    invoked_at_ms: u64,
    (outcome, detail): (Outcome, Option<String>),
) -> ClientOperation {
    ClientOperation {
        client: client.to_owned(),
        kind,
        order_id,
        priority,
        invoked_at_ms,
        completed_at_ms: crate::now_ms(),
        outcome,
        detail,
    }
}

/// One or two distinct titles, 1 to [`MAX_QUANTITY`] copies each.
fn random_items() -> Vec<(&'static str, u32)> {
    let mut rng = rand::rng();
    let count = rng.random_range(1..=2);
    let first = rng.random_range(0..TITLES.len());
    (0..count)
        .map(|offset| {
            (
                TITLES[(first + offset) % TITLES.len()],
                rng.random_range(1..=MAX_QUANTITY),
            )
        })
        .collect()
}

fn priority(items: &[(&str, u32)]) -> u32 {
    items.iter().map(|(_, quantity)| quantity).sum()
}

/// A valid checkout billed in Estonia, where the cards' range is issued.
fn checkout_body(
    client: &str,
    sequence: u64,
    card: &str,
    cvv: &str,
    items: &[(&str, u32)],
) -> Value {
    sample_request(&SampleOrder {
        name: &format!("Chaos {client} {sequence}"),
        contact: &format!("{client}-{sequence}@example.com"),
        card_number: card,
        cvv,
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_have_one_or_two_titles_and_their_priority_is_the_sum() {
        for _ in 0..200 {
            let items = random_items();
            assert!((1..=2).contains(&items.len()));
            assert!(
                items
                    .iter()
                    .all(|(_, quantity)| (1..=MAX_QUANTITY).contains(quantity))
            );
            assert_eq!(priority(&items), items.iter().map(|(_, q)| q).sum::<u32>());
        }
        assert_eq!(priority(&[("Emma", 2), ("Persuasion", 5)]), 7);
    }

    #[test]
    fn a_checkout_carries_its_card_and_items() {
        let body = checkout_body("checkout-1", 3, "4532015112830366", "9073", &[("Emma", 4)]);
        assert_eq!(body["creditCard"]["number"], "4532015112830366");
        assert_eq!(body["creditCard"]["cvv"], "9073");
        assert_eq!(body["items"][0]["quantity"], 4);
    }
}
