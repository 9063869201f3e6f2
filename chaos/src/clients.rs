//! The clients of a run. Writers: checkout clients posting valid orders to the orchestrator, and
//! enqueue clients putting orders straight into the queue cluster. Each knows its order's id
//! before the call, retries with the same id (the same `Idempotency-Key`) while the answer is not
//! definite, and records one [`ClientOperation`] per order, with what it sent. While a queue node
//! is cut off from its peers, an enqueue client's first attempt goes to that node (a write
//! through a possibly deposed leader).
//!
//! Readers, for the whole run, read orders the writers recently placed (and the queue), each
//! read recorded with its answer and its times: `GET /orders/{id}` through the orchestrator,
//! `GetOrder` and `ListQueue` through the leader-following client, and the same asked of one
//! node directly, once, taking its answer as it is (half the time the node a fault is on).
//!
//! Writers hold back while the queue is deep, so that the executors keep up: the queue often
//! holds several orders (priority matters) but drains within seconds once the clients stop.
//! Every HTTP answer is appended to `responses.jsonl` in the run directory, where the card check
//! reads it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bookstore_proto as pb;
use bookstore_proto::order_queue_client::OrderQueueClient;
use orchestrator::checkout::{SampleOrder, sample_request};
use queue_raft::client::TokenClient as NodeClient;
use queue_raft::client_auth::QueueToken;
use queue_raft::{ClientError, QueueClient};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::Endpoint;

use crate::history::{
    ClientOperation, Item, OperationKind, OrderContents, Outcome, ReadKind, ReadOperation,
    ReadResult, ReadState,
};

/// How long a client keeps retrying one order before recording it as unknown.
const RETRY_WINDOW: Duration = Duration::from_secs(20);
/// The longest one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_PAUSE: Duration = Duration::from_millis(300);
/// A writer's think time between two orders, in milliseconds.
const THINK_MS: std::ops::Range<u64> = 100..900;
/// A reader's pause between two reads, in milliseconds.
const READ_PAUSE_MS: std::ops::Range<u64> = 100..400;
/// The longest a read, or a write asked of one node directly, may take.
const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(2);
const NODE_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How many of the latest order ids the readers choose from.
const RECENT_ORDERS: usize = 48;
/// How many orders a `ListQueue` read asks for: more than the backlog ever holds.
const LIST_LIMIT: u32 = 200;
/// Above this many queued orders the writers wait for the executors.
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
    /// Each queue node by name (`queue-N`), with a channel of its own that follows no leader.
    pub nodes: Vec<(String, NodeClient)>,
    /// The CVV of every card: distinctive, so that finding it in a file is meaningful.
    pub cvv: String,
    /// The next card serial; each checkout takes its own card.
    pub next_card_serial: Arc<AtomicU64>,
    /// Where every HTTP answer is appended; the lock is held for one line.
    pub responses: Arc<Mutex<File>>,
    /// The queue's depth as last seen; see [`watch_backlog`].
    pub backlog: watch::Receiver<u64>,
    /// The ids the writers were last about to place, newest last; the lock is held for one
    /// push or one pick.
    pub recent: Arc<Mutex<VecDeque<String>>>,
    /// The targets of the nemesis's fault in force.
    pub faulted: watch::Receiver<Vec<String>>,
}

/// What one client did: its operations, its reads and the card numbers it sent.
#[derive(Debug, Default)]
pub struct ClientRecord {
    pub operations: Vec<ClientOperation>,
    pub reads: Vec<ReadOperation>,
    pub cards: Vec<String>,
}

/// What the clients need from the run.
pub struct ContextParts<'a> {
    pub run_id: &'a str,
    pub orchestrator_url: &'a str,
    /// Queue nodes as (name, `host:port`), node 1 first.
    pub nodes: &'a [(String, String)],
    pub cvv: &'a str,
    pub responses: &'a Path,
    pub backlog: watch::Receiver<u64>,
    pub faulted: watch::Receiver<Vec<String>>,
    /// What the clients present to the queue: the orchestrator role's token, since they enqueue
    /// and read as an orchestrator does.
    pub token: QueueToken,
}

impl ClientContext {
    pub fn new(parts: ContextParts) -> anyhow::Result<ClientContext> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        let responses = File::create(parts.responses)
            .with_context(|| format!("cannot create {}", parts.responses.display()))?;
        let addrs = parts.nodes.iter().map(|(_, addr)| addr.clone()).collect();
        let nodes = parts
            .nodes
            .iter()
            .map(|(name, addr)| {
                let channel = Endpoint::from_shared(format!("http://{addr}"))
                    .with_context(|| format!("bad queue node address {addr}"))?
                    .connect_timeout(NODE_CONNECT_TIMEOUT)
                    .timeout(NODE_CALL_TIMEOUT)
                    .connect_lazy();
                anyhow::Ok((
                    name.clone(),
                    OrderQueueClient::with_interceptor(channel, parts.token.clone()),
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        // Leaves room for a billion orders before the 12-digit serials wrap.
        let first_serial = rand::random_range(0..1_000_000_000_000u64 - 1_000_000_000);
        Ok(ClientContext {
            run_id: parts.run_id.to_owned(),
            orchestrator_url: parts.orchestrator_url.to_owned(),
            http,
            queue: QueueClient::new(addrs, parts.token.clone())?,
            nodes,
            cvv: parts.cvv.to_owned(),
            next_card_serial: Arc::new(AtomicU64::new(first_serial)),
            responses: Arc::new(Mutex::new(responses)),
            backlog: parts.backlog,
            recent: Arc::new(Mutex::new(VecDeque::with_capacity(RECENT_ORDERS))),
            faulted: parts.faulted,
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

    /// Tells the readers about an order about to be placed.
    fn announce(&self, order_id: &str) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_ORDERS {
                recent.pop_front();
            }
            recent.push_back(order_id.to_owned());
        }
    }

    /// One of the latest orders, the newest most often.
    fn pick_recent(&self) -> Option<String> {
        let recent = self.recent.lock().ok()?;
        let len = recent.len();
        if len == 0 {
            return None;
        }
        // Squaring a uniform draw leans towards the end of the list.
        let draw: f64 = rand::random::<f64>();
        let back = ((1.0 - draw * draw) * len as f64) as usize;
        recent.get(back.min(len - 1)).cloned()
    }

    /// The index of the queue node a fault is on now, if any.
    fn faulted_node(&self) -> Option<usize> {
        let faulted = self.faulted.borrow();
        self.nodes
            .iter()
            .position(|(name, _)| faulted.iter().any(|target| target == name))
    }

    /// Half the time the node a fault is on (when there is one), else any node.
    fn pick_node(&self) -> usize {
        let mut rng = rand::rng();
        match self.faulted_node() {
            Some(node) if rng.random_bool(0.5) => node,
            _ => rng.random_range(0..self.nodes.len()),
        }
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
        let contents = random_contents(&format!("Chaos {name} {sequence}"));
        let body = checkout_body(&name, sequence, &card, &context.cvv, &contents);
        record.cards.push(card);
        let operation = checkout(&name, &context, &key, &body, contents).await;
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
    let mut sequence = 0u64;
    while Instant::now() < until {
        think(&mut context).await;
        sequence += 1;
        let contents = random_contents(&format!("Chaos {name} {sequence}"));
        let order = pb::QueuedOrder {
            order_id: uuid::Uuid::new_v4().to_string(),
            customer: contents.customer.clone(),
            items: contents
                .items
                .iter()
                .map(|item| pb::QueueItem {
                    title: item.title.clone(),
                    quantity: item.quantity,
                })
                .collect(),
        };
        record
            .operations
            .push(enqueue(&name, &context, order, contents).await);
    }
    record
}

/// What a reader reads through.
#[derive(Debug, Clone, Copy)]
pub enum ReaderKind {
    /// `GET /orders/{id}` through the orchestrator.
    Rest,
    /// `GetOrder` or `ListQueue` through the leader-following client.
    Leader,
    /// `GetOrder` or `ListQueue` asked of one node, once.
    OneNode,
}

/// Reads until `until`.
pub async fn reader(
    name: String,
    kind: ReaderKind,
    context: ClientContext,
    until: Instant,
) -> ClientRecord {
    let mut record = ClientRecord::default();
    while Instant::now() < until {
        let pause = rand::rng().random_range(READ_PAUSE_MS);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let Some(order_id) = context.pick_recent() else {
            continue;
        };
        // A third of the node reads list the queue instead of reading one order.
        let list = !matches!(kind, ReaderKind::Rest) && rand::rng().random_ratio(1, 3);
        let read = match (kind, list) {
            (ReaderKind::Rest, _) => read_rest(&name, &context, order_id).await,
            (ReaderKind::Leader, false) => read_order_at_leader(&name, &context, order_id).await,
            (ReaderKind::Leader, true) => list_at_leader(&name, &context).await,
            (ReaderKind::OneNode, false) => read_order_at_node(&name, &context, order_id).await,
            (ReaderKind::OneNode, true) => list_at_node(&name, &context).await,
        };
        record.reads.push(read);
    }
    record
}

/// A read that has just completed.
fn read_record(
    client: &str,
    kind: ReadKind,
    via: &str,
    order_id: Option<String>,
    invoked_at_ms: u64,
    result: ReadResult,
) -> ReadOperation {
    ReadOperation {
        client: client.to_owned(),
        kind,
        via: via.to_owned(),
        order_id,
        invoked_at_ms,
        completed_at_ms: crate::now_ms(),
        result,
    }
}

async fn read_rest(client: &str, context: &ClientContext, order_id: String) -> ReadOperation {
    let url = format!("{}/orders/{order_id}", context.orchestrator_url);
    let invoked_at_ms = crate::now_ms();
    let answer = context.http.get(&url).send().await;
    let result = match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let body: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
            context.record_response(client, &order_id, json!({"http": status, "body": body}));
            rest_result(status, &body)
        }
        Err(error) => ReadResult::NoAnswer {
            error: error.to_string(),
        },
    };
    read_record(
        client,
        ReadKind::OrderRest,
        "orchestrator",
        Some(order_id),
        invoked_at_ms,
        result,
    )
}

/// What a `GET /orders/{id}` answer says.
fn rest_result(status: u16, body: &Value) -> ReadResult {
    let state = match (status, body["status"].as_str()) {
        (404, _) => Some(ReadState::Unknown),
        (200, Some("queued")) => Some(ReadState::Queued),
        (200, Some("executing")) => Some(ReadState::Executing),
        (200, Some("executed")) => Some(ReadState::Executed),
        (200, Some("rejected")) => Some(ReadState::Rejected),
        _ => None,
    };
    match state {
        Some(state) => ReadResult::Order { state },
        None => ReadResult::NoAnswer {
            error: format!("{status}: {body}"),
        },
    }
}

/// What a `GetOrder` answer says.
fn order_result(answer: Option<pb::OrderState>) -> ReadResult {
    let state = match answer.map(|state| state.phase()) {
        None => ReadState::Unknown,
        Some(pb::OrderPhase::Queued) => ReadState::Queued,
        Some(pb::OrderPhase::Executing) => ReadState::Executing,
        Some(pb::OrderPhase::Executed) => ReadState::Executed,
        Some(pb::OrderPhase::Rejected) => ReadState::Rejected,
        Some(pb::OrderPhase::Unspecified) => {
            return ReadResult::NoAnswer {
                error: "an order state without a phase".to_owned(),
            };
        }
    };
    ReadResult::Order { state }
}

fn queue_result(answer: pb::ListQueueResponse) -> ReadResult {
    ReadResult::Queue {
        order_ids: answer
            .orders
            .into_iter()
            .filter_map(|state| state.order.map(|order| order.order_id))
            .collect(),
        depth: answer.depth,
    }
}

async fn read_order_at_leader(
    client: &str,
    context: &ClientContext,
    order_id: String,
) -> ReadOperation {
    let invoked_at_ms = crate::now_ms();
    let result = match context.queue.get_order(&order_id).await {
        Ok(answer) => order_result(answer),
        Err(error) => ReadResult::NoAnswer {
            error: error.to_string(),
        },
    };
    read_record(
        client,
        ReadKind::GetOrder,
        "leader",
        Some(order_id),
        invoked_at_ms,
        result,
    )
}

async fn list_at_leader(client: &str, context: &ClientContext) -> ReadOperation {
    let invoked_at_ms = crate::now_ms();
    let result = match context.queue.list_queue(LIST_LIMIT).await {
        Ok(answer) => queue_result(answer),
        Err(error) => ReadResult::NoAnswer {
            error: error.to_string(),
        },
    };
    read_record(
        client,
        ReadKind::ListQueue,
        "leader",
        None,
        invoked_at_ms,
        result,
    )
}

async fn read_order_at_node(
    client: &str,
    context: &ClientContext,
    order_id: String,
) -> ReadOperation {
    let (node, mut channel) = context.nodes[context.pick_node()].clone();
    let invoked_at_ms = crate::now_ms();
    let request = pb::GetOrderRequest {
        order_id: order_id.clone(),
    };
    let result = match channel.get_order(request).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            order_result(answer.state.filter(|_| answer.found))
        }
        Err(status) => ReadResult::NoAnswer {
            error: format!("{:?}: {}", status.code(), status.message()),
        },
    };
    read_record(
        client,
        ReadKind::GetOrder,
        &node,
        Some(order_id),
        invoked_at_ms,
        result,
    )
}

async fn list_at_node(client: &str, context: &ClientContext) -> ReadOperation {
    let (node, mut channel) = context.nodes[context.pick_node()].clone();
    let invoked_at_ms = crate::now_ms();
    let request = pb::ListQueueRequest { limit: LIST_LIMIT };
    let result = match channel.list_queue(request).await {
        Ok(answer) => queue_result(answer.into_inner()),
        Err(status) => ReadResult::NoAnswer {
            error: format!("{:?}: {}", status.code(), status.message()),
        },
    };
    read_record(
        client,
        ReadKind::ListQueue,
        &node,
        None,
        invoked_at_ms,
        result,
    )
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
    contents: OrderContents,
) -> ClientOperation {
    let order_id = orchestrator::routes::order_id_from_key(key);
    context.announce(&order_id);
    let invoked_at_ms = crate::now_ms();
    let url = format!("{}/checkout", context.orchestrator_url);
    let order_id_ref = &order_id;
    let url = &url;
    let result = until_definite(|_| async move {
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
        contents,
        invoked_at_ms,
        result,
    )
}

/// One enqueue, retried with its order id until committed, refused, or out of time. While a
/// queue node is cut off, the first attempt goes to it alone.
async fn enqueue(
    client: &str,
    context: &ClientContext,
    order: pb::QueuedOrder,
    contents: OrderContents,
) -> ClientOperation {
    let order_id = order.order_id.clone();
    context.announce(&order_id);
    let invoked_at_ms = crate::now_ms();
    let faulted_node = context.faulted_node();
    let (order, order_id_ref) = (&order, &order_id);
    let result = until_definite(|attempt| async move {
        let answer = match faulted_node {
            Some(node) if attempt == 0 => {
                let (name, mut channel) = context.nodes[node].clone();
                let request = pb::EnqueueRequest {
                    order: Some(order.clone()),
                };
                match channel.enqueue(request).await {
                    Ok(answer) => Ok(answer.into_inner()),
                    Err(status) if status.code() == tonic::Code::InvalidArgument => {
                        Err(ClientError::InvalidArgument(status.message().to_owned()))
                    }
                    Err(status) => Err(ClientError::Unreachable {
                        attempts: 1,
                        waited: Duration::ZERO,
                        last_error: format!("{name}: {:?}: {}", status.code(), status.message()),
                    }),
                }
            }
            _ => context.queue.enqueue(order.clone()).await,
        };
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
        contents,
        invoked_at_ms,
        result,
    )
}

/// What one attempt learned: a definite outcome (with its detail), or the error after which the
/// order may or may not be placed.
type Attempt = Result<(Outcome, Option<String>), String>;

/// Repeats `attempt` (given its number, from 0) until it is definite or the retry window closes:
/// then the outcome is unknown, with the last error.
async fn until_definite<F, Fut>(mut attempt: F) -> (Outcome, Option<String>)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt>,
{
    let give_up = Instant::now() + RETRY_WINDOW;
    let mut number = 0;
    loop {
        match attempt(number).await {
            Ok(definite) => return definite,
            Err(last_error) if Instant::now() + RETRY_PAUSE >= give_up => {
                return (Outcome::Unknown, Some(last_error));
            }
            Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
        number += 1;
    }
}

/// The record of an operation that has just completed.
fn operation(
    client: &str,
    kind: OperationKind,
    order_id: String,
    contents: OrderContents,
    invoked_at_ms: u64,
    (outcome, detail): (Outcome, Option<String>),
) -> ClientOperation {
    ClientOperation {
        client: client.to_owned(),
        kind,
        order_id,
        contents,
        invoked_at_ms,
        completed_at_ms: crate::now_ms(),
        outcome,
        detail,
    }
}

/// An order of `customer` for one or two distinct titles, 1 to [`MAX_QUANTITY`] copies each.
fn random_contents(customer: &str) -> OrderContents {
    let mut rng = rand::rng();
    let count = rng.random_range(1..=2);
    let first = rng.random_range(0..TITLES.len());
    OrderContents {
        customer: customer.to_owned(),
        items: (0..count)
            .map(|offset| Item {
                title: TITLES[(first + offset) % TITLES.len()].to_owned(),
                quantity: rng.random_range(1..=MAX_QUANTITY),
            })
            .collect(),
    }
}

/// A valid checkout billed in Estonia, where the cards' range is issued; the user's name is the
/// order's customer, as the orchestrator queues it.
fn checkout_body(
    client: &str,
    sequence: u64,
    card: &str,
    cvv: &str,
    contents: &OrderContents,
) -> Value {
    let items: Vec<(&str, u32)> = contents
        .items
        .iter()
        .map(|item| (item.title.as_str(), item.quantity))
        .collect();
    sample_request(&SampleOrder {
        name: &contents.customer,
        contact: &format!("{client}-{sequence}@example.com"),
        card_number: card,
        cvv,
        items: &items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_have_one_or_two_titles_and_their_priority_is_the_sum() {
        for _ in 0..200 {
            let contents = random_contents("Ada");
            assert!((1..=2).contains(&contents.items.len()));
            assert!(
                contents
                    .items
                    .iter()
                    .all(|item| (1..=MAX_QUANTITY).contains(&item.quantity))
            );
            assert_eq!(
                contents.priority(),
                contents.items.iter().map(|item| item.quantity).sum::<u32>()
            );
        }
    }

    #[test]
    fn a_checkout_carries_its_card_customer_and_items() {
        let contents = OrderContents {
            customer: "Chaos checkout-1 3".into(),
            items: vec![Item {
                title: "Emma".into(),
                quantity: 4,
            }],
        };
        let body = checkout_body("checkout-1", 3, "4532015112830366", "9073", &contents);
        assert_eq!(body["creditCard"]["number"], "4532015112830366");
        assert_eq!(body["creditCard"]["cvv"], "9073");
        assert_eq!(body["user"]["name"], "Chaos checkout-1 3");
        assert_eq!(body["items"][0]["quantity"], 4);
    }

    #[test]
    fn rest_answers_become_read_states() {
        let read = |status, body: Value| rest_result(status, &body);
        assert_eq!(
            read(200, json!({"status": "executed"})),
            ReadResult::Order {
                state: ReadState::Executed
            }
        );
        assert_eq!(
            read(404, json!({"error": {"code": "order_not_found"}})),
            ReadResult::Order {
                state: ReadState::Unknown
            }
        );
        assert!(matches!(
            read(503, json!({"error": {"code": "queue_unavailable"}})),
            ReadResult::NoAnswer { .. }
        ));
    }

    #[test]
    fn get_order_answers_become_read_states() {
        assert_eq!(
            order_result(None),
            ReadResult::Order {
                state: ReadState::Unknown
            }
        );
        let queued = pb::OrderState {
            phase: pb::OrderPhase::Queued as i32,
            ..Default::default()
        };
        assert_eq!(
            order_result(Some(queued)),
            ReadResult::Order {
                state: ReadState::Queued
            }
        );
        assert!(matches!(
            order_result(Some(pb::OrderState::default())),
            ReadResult::NoAnswer { .. }
        ));
    }
}
