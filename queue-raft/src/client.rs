//! The leader-following client of the queue cluster, used by the orchestrator and the executors.
//!
//! A [`QueueClient`] knows every node's address and keeps one gRPC channel per node, made once
//! and connected lazily; clones share them. It remembers the last node that answered as leader
//! and sends there first. A node that is not the leader answers `FAILED_PRECONDITION` with the
//! leader's address (see [`crate::service`]); the client follows that hint at once. When a node
//! cannot be reached, times out, or knows no leader, the client tries the next node after an
//! exponential backoff with jitter, until [`ClientOptions::deadline`]: to a caller an election is
//! a short delay, and a cluster without a leader is [`ClientError::Unreachable`] within the
//! deadline, never a hang.
//!
//! Retrying writes is safe: enqueue is idempotent by order id, and a decision is recorded once
//! per order id (a retry is answered with the record); a retried dequeue returns the order
//! already executing under the lease; a retried execution record, acknowledgement or
//! resignation with the same token is answered the same way or refused as stale, never applied
//! twice. A campaign whose answer was lost is not granted again: the caller finds the lease held
//! (by itself) and waits for it to expire.
//!
//! Enqueues and decisions from concurrent callers share calls: while earlier `EnqueueBatch` (or
//! `Decide`) calls are in flight, new ones wait and then leave together in one call (see
//! [`crate::batching`]), so that a busy orchestrator sends a few large calls rather than many
//! small ones. Each caller still gets its own answer, and a lone caller's write leaves at once.
//! A call carries at most [`MAX_CALL_BYTES`] of writes, well below the server's message limit, so
//! that large orders arriving together never make a call the server refuses whole; a write larger
//! than that alone is refused at once, without a call ([`ClientError::InvalidArgument`]), and
//! one the server refuses (over its bound of an order) is refused alone, its batch served.
//!
//! Every call presents the client's queue token ([`crate::client_auth`]), which says the caller's
//! role to the nodes; a call the cluster refuses for it ([`ClientError::Unauthenticated`], or
//! `PERMISSION_DENIED` as [`ClientError::Rejected`]) is final, never retried.
//!
//! Every constructor and call needs a Tokio runtime: the channels run their connections on it,
//! and the enqueue batching runs as a task on it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bookstore_proto as pb;
use bookstore_proto::order_queue_client::OrderQueueClient;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::auth::ClusterSecret;
use crate::batching::{self, BatchBounds};
use crate::client_auth::QueueToken;
use crate::service::{LEADER_ADDR_METADATA_KEY, MAX_ORDERS_PER_BATCH, MAX_REQUEST_BYTES};
use crate::state_machine::Holder;

/// The largest answer the client accepts (a long `ListQueue`).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// `EnqueueBatch` (or `Decide`) calls one client may have in flight; writes beyond wait for the
/// next call.
const MAX_ENQUEUE_CALLS_IN_FLIGHT: usize = 2;
/// The most orders (or decisions) one call carries.
const MAX_ORDERS_PER_CALL: usize = 256;
const _: () = assert!(MAX_ORDERS_PER_CALL <= MAX_ORDERS_PER_BATCH);
/// The most bytes of orders (or decisions) one call carries: a quarter of what the server
/// decodes, so that a call's own framing never takes it over.
pub const MAX_CALL_BYTES: usize = 1024 * 1024;
const _: () = assert!(MAX_CALL_BYTES <= MAX_REQUEST_BYTES / 4);
const CALL_BOUNDS: BatchBounds = BatchBounds {
    requests: MAX_ORDERS_PER_CALL,
    bytes: MAX_CALL_BYTES,
};
/// Writes waiting for a call; a caller beyond this waits to hand its write over.
const WAITING_ENQUEUES: usize = 4 * MAX_ORDERS_PER_CALL;

/// A client of one node's `OrderQueue` that presents a queue token with every call.
pub type TokenClient = OrderQueueClient<InterceptedService<Channel, QueueToken>>;

/// The `--queue-nodes` flag (env `QUEUE_NODES`) of every program that talks to the queue.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueNodes {
    /// The order queue's nodes (host:port, comma-separated); the client finds the leader.
    #[arg(
        long = "queue-nodes",
        env = "QUEUE_NODES",
        value_delimiter = ',',
        default_value = "127.0.0.1:50061,127.0.0.1:50062,127.0.0.1:50063"
    )]
    pub addrs: Vec<String>,
}

/// How hard the client tries before giving up.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The longest one client call may take, every retry and backoff included.
    pub deadline: Duration,
    /// The longest one attempt at one node may take.
    pub attempt_timeout: Duration,
    /// The longest a TCP connection to a node may take to open.
    pub connect_timeout: Duration,
    /// The pause after the first failed attempt; it doubles with each further failure.
    pub initial_backoff: Duration,
    /// The pause never grows beyond this.
    pub max_backoff: Duration,
}

impl Default for ClientOptions {
    /// Five seconds in all: several elections' worth on the cluster's default timings (a leader
    /// is replaced within about a second).
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        }
    }
}

/// Why a client call failed. Callers branch on the variant.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// An address given to [`QueueClient::new`] is not `host:port` or `http://host:port`, or none
    /// was given.
    #[error("invalid queue node address {addr:?}: {reason}")]
    InvalidAddress { addr: String, reason: String },
    /// No leader answered in time: nodes down, unreachable, or no leader elected (for
    /// [`QueueClient::cluster_status_of`]: that one node did not answer). `last_error` is the
    /// last cause seen.
    #[error("queue unreachable ({attempts} attempts in {waited:?}): {last_error}")]
    Unreachable {
        attempts: u32,
        waited: Duration,
        last_error: String,
    },
    /// The cluster refused the request as malformed (the message names the field).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The cluster refused the caller: its queue token, or for a membership change the cluster
    /// secret, was missing or wrong.
    #[error("the queue refused the request: {0}")]
    Unauthenticated(String),
    /// Any other refusal from the cluster.
    #[error("the queue refused the request: {0}")]
    Rejected(Status),
    /// The client's enqueue batching task has stopped: the runtime is shutting down.
    #[error("the queue client is shutting down")]
    ShuttingDown,
}

/// One node of the cluster as the client reaches it.
#[derive(Debug)]
struct NodeHandle {
    /// `host:port`, as nodes name each other in leader hints.
    addr: String,
    /// Cloned for each call; every clone uses the node's one channel.
    client: TokenClient,
}

/// What the client shares between clones.
#[derive(Debug)]
struct Shared {
    nodes: Vec<NodeHandle>,
    /// Index in `nodes` of the last node that served a call; `NO_LEADER` when unknown.
    leader: AtomicUsize,
    /// Where to try next when the leader is unknown; moves on with each failure so that every
    /// node gets its turn.
    cursor: AtomicUsize,
    options: ClientOptions,
    /// Presented with every call, also on the channels made for one status call.
    token: QueueToken,
}

const NO_LEADER: usize = usize::MAX;

/// The leader-following client. Cheap to clone; clones share channels, the known leader and the
/// batching of enqueues and decisions.
#[derive(Debug, Clone)]
pub struct QueueClient {
    shared: Arc<Shared>,
    /// To the task that sends enqueues in batches; it ends when the last clone is dropped.
    enqueues: mpsc::Sender<Pending<pb::QueuedOrder, pb::EnqueueResponse>>,
    /// To the task that sends decisions in batches; it ends when the last clone is dropped.
    decisions: mpsc::Sender<Pending<pb::Decision, pb::Decided>>,
}

/// A write waiting for its batch, and where its answer goes.
#[derive(Debug)]
struct Pending<M, A> {
    message: M,
    reply: oneshot::Sender<Result<A, ClientError>>,
}

impl<M: prost::Message, A> Pending<M, A> {
    /// What the write adds to a call: its encoding, with its field tag and length prefix.
    fn call_bytes(&self) -> usize {
        let length = self.message.encoded_len();
        length + prost::encoding::encoded_len_varint(length as u64) + 1
    }
}

/// Where a write's answer comes from, once its batch's call is answered.
type Answer<A> = oneshot::Receiver<Result<A, ClientError>>;

/// `message` as a write waiting for its batch, or refused at once if no call could carry it.
fn pending<M: prost::Message, A>(
    what: &str,
    message: M,
) -> Result<(Pending<M, A>, Answer<A>), ClientError> {
    let (reply, answer) = oneshot::channel();
    let pending = Pending { message, reply };
    let bytes = pending.call_bytes();
    if bytes > MAX_CALL_BYTES {
        return Err(ClientError::InvalidArgument(format!(
            "{what}: {bytes} bytes encoded, more than one call to the queue carries \
             ({MAX_CALL_BYTES} bytes)"
        )));
    }
    Ok((pending, answer))
}

/// How one attempt at one node ended.
enum Attempt<T> {
    Answered(T),
    /// The node is not the leader and names the one that is, by index in `nodes`.
    Redirected(usize),
    /// Worth trying elsewhere after a pause: down, timed out, no leader known.
    Failed(String),
    /// The cluster answered, and a retry would get the same answer.
    Refused(ClientError),
}

/// `host:port` from `host:port` or `http://host:port`, checked.
fn normalize_addr(addr: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidAddress {
        addr: addr.to_owned(),
        reason: reason.to_owned(),
    };
    let host_port = addr.trim().strip_prefix("http://").unwrap_or(addr.trim());
    let host_port = host_port.strip_suffix('/').unwrap_or(host_port);
    if host_port.is_empty() || host_port.contains('/') || host_port.contains("://") {
        return Err(invalid("expected host:port or http://host:port"));
    }
    let port = host_port
        .rsplit_once(':')
        .map(|(_, port)| port)
        .ok_or_else(|| invalid("no port"))?;
    port.parse::<u16>()
        .map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
    Ok(host_port.to_owned())
}

fn channel_to(addr: &str, options: &ClientOptions) -> Result<Channel, ClientError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|error| {
        ClientError::InvalidAddress {
            addr: addr.to_owned(),
            reason: error.to_string(),
        }
    })?;
    Ok(endpoint
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

fn order_queue_client(channel: Channel, token: &QueueToken) -> TokenClient {
    OrderQueueClient::with_interceptor(channel, token.clone())
        .max_decoding_message_size(MAX_ANSWER_BYTES)
}

/// A client of the one node at `addr` (`host:port` or `http://host:port`), presenting `token`
/// and following no leader, with the default options' connect timeout; it connects on its
/// first call.
pub fn node_client(addr: &str, token: &QueueToken) -> Result<TokenClient, ClientError> {
    let addr = normalize_addr(addr)?;
    Ok(order_queue_client(
        channel_to(&addr, &ClientOptions::default())?,
        token,
    ))
}

impl QueueClient {
    /// A client of the cluster whose nodes are at `addrs`, presenting `token`, with default
    /// options.
    pub fn new(addrs: Vec<String>, token: QueueToken) -> Result<Self, ClientError> {
        Self::with_options(addrs, token, ClientOptions::default())
    }

    pub fn with_options(
        addrs: Vec<String>,
        token: QueueToken,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        if addrs.is_empty() {
            return Err(ClientError::InvalidAddress {
                addr: String::new(),
                reason: "no queue node address given".to_owned(),
            });
        }
        let nodes = addrs
            .iter()
            .map(|addr| {
                let addr = normalize_addr(addr)?;
                let client = order_queue_client(channel_to(&addr, &options)?, &token);
                Ok(NodeHandle { addr, client })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        let shared = Arc::new(Shared {
            nodes,
            leader: AtomicUsize::new(NO_LEADER),
            cursor: AtomicUsize::new(0),
            options,
            token,
        });
        let (enqueues, waiting) = mpsc::channel(WAITING_ENQUEUES);
        let batcher = Arc::clone(&shared);
        tokio::spawn(batching::run(
            waiting,
            MAX_ENQUEUE_CALLS_IN_FLIGHT,
            CALL_BOUNDS,
            Pending::call_bytes,
            move |batch| send_enqueues(Arc::clone(&batcher), batch),
        ));
        let (decisions, waiting) = mpsc::channel(WAITING_ENQUEUES);
        let batcher = Arc::clone(&shared);
        tokio::spawn(batching::run(
            waiting,
            MAX_ENQUEUE_CALLS_IN_FLIGHT,
            CALL_BOUNDS,
            Pending::call_bytes,
            move |batch| send_decisions(Arc::clone(&batcher), batch),
        ));
        Ok(Self {
            shared,
            enqueues,
            decisions,
        })
    }

    /// The node addresses, as `host:port`, in the order given.
    pub fn addrs(&self) -> impl Iterator<Item = &str> {
        self.shared.nodes.iter().map(|node| node.addr.as_str())
    }

    /// The token this client presents, for a caller that opens a channel of its own.
    pub fn token(&self) -> &QueueToken {
        &self.shared.token
    }

    /// The address of the node that last served a call as leader, if any.
    pub fn known_leader(&self) -> Option<&str> {
        let leader = self.shared.leader.load(Ordering::Relaxed);
        self.shared.nodes.get(leader).map(|node| node.addr.as_str())
    }

    /// Adds an order; answered once a majority made it durable. Idempotent by order id. Sent in
    /// one call with the enqueues of other callers waiting at the same time.
    pub async fn enqueue(
        &self,
        order: pb::QueuedOrder,
    ) -> Result<pb::EnqueueResponse, ClientError> {
        let (pending, answer) = pending("order", order)?;
        self.enqueues
            .send(pending)
            .await
            .map_err(|_| ClientError::ShuttingDown)?;
        answer.await.map_err(|_| ClientError::ShuttingDown)?
    }

    /// Records a checkout decision unless its order id is known already; answered, once a
    /// majority made it durable, with the order's record (what was decided first). Sent in one
    /// call with the decisions of other callers waiting at the same time.
    pub async fn decide(&self, decision: pb::Decision) -> Result<pb::Decided, ClientError> {
        let (pending, answer) = pending("decision", decision)?;
        self.decisions
            .send(pending)
            .await
            .map_err(|_| ClientError::ShuttingDown)?;
        answer.await.map_err(|_| ClientError::ShuttingDown)?
    }

    /// Asks for the executor lease for `ttl` (whole milliseconds), for `holder`.
    pub async fn campaign(
        &self,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<pb::CampaignResponse, ClientError> {
        let request = pb::CampaignRequest {
            executor_id: holder.executor_id.clone(),
            ttl_ms: duration_ms(ttl),
            incarnation: holder.incarnation,
        };
        self.shared
            .call(|mut client| {
                let request = request.clone();
                async move { client.campaign(request).await }
            })
            .await
    }

    /// Extends the lease held with `token` to `ttl` from now.
    pub async fn renew_lease(
        &self,
        holder: &Holder,
        token: u64,
        ttl: Duration,
    ) -> Result<pb::LeaseResponse, ClientError> {
        let request = pb::RenewLeaseRequest {
            executor_id: holder.executor_id.clone(),
            token,
            ttl_ms: duration_ms(ttl),
            incarnation: holder.incarnation,
        };
        self.shared
            .call(|mut client| {
                let request = request.clone();
                async move { client.renew_lease(request).await }
            })
            .await
    }

    /// Gives the lease up; an order executing under it goes back to the queue.
    pub async fn resign(
        &self,
        holder: &Holder,
        token: u64,
    ) -> Result<pb::LeaseResponse, ClientError> {
        let request = pb::ResignRequest {
            executor_id: holder.executor_id.clone(),
            token,
            incarnation: holder.incarnation,
        };
        self.shared
            .call(|mut client| {
                let request = request.clone();
                async move { client.resign(request).await }
            })
            .await
    }

    /// Takes the highest-priority order under the lease (the same one again on retry).
    pub async fn dequeue(
        &self,
        holder: &Holder,
        token: u64,
    ) -> Result<pb::DequeueResponse, ClientError> {
        let request = pb::DequeueRequest {
            executor_id: holder.executor_id.clone(),
            token,
            incarnation: holder.incarnation,
        };
        self.shared
            .call(|mut client| {
                let request = request.clone();
                async move { client.dequeue(request).await }
            })
            .await
    }

    /// Records that the order executing under the lease was executed, once per order.
    pub async fn record_execution(
        &self,
        holder: &Holder,
        token: u64,
        order_id: &str,
    ) -> Result<pb::RecordExecutionResponse, ClientError> {
        let request = pb::RecordExecutionRequest {
            executor_id: holder.executor_id.clone(),
            incarnation: holder.incarnation,
            token,
            order_id: order_id.to_owned(),
        };
        self.shared
            .call(|mut client| {
                let request = request.clone();
                async move { client.record_execution(request).await }
            })
            .await
    }

    /// Records the order executing under the lease, its execution recorded, as executed.
    pub async fn acknowledge(
        &self,
        holder: &Holder,
        token: u64,
        order_id: &str,
    ) -> Result<pb::AcknowledgeResponse, ClientError> {
        let request = pb::AcknowledgeRequest {
            executor_id: holder.executor_id.clone(),
            token,
            order_id: order_id.to_owned(),
            incarnation: holder.incarnation,
        };
        self.shared
            .call(|mut client| {
                let request = request.clone();
                async move { client.acknowledge(request).await }
            })
            .await
    }

    /// Adds node `node_id`, running at `addr` (started with `--join`), to the cluster: a learner
    /// until it has caught up with the log, then a voter. Catching up a long log can take longer
    /// than the default attempt timeout: give the client longer [`ClientOptions`] then. The
    /// cluster requires its `secret`. A node running with another secret never catches up: the
    /// call then runs into the client's deadline ([`ClientError::Unreachable`]), and the node
    /// never becomes a voter.
    pub async fn add_node(
        &self,
        node_id: u64,
        addr: &str,
        secret: &ClusterSecret,
    ) -> Result<pb::MembershipResponse, ClientError> {
        let request = pb::AddNodeRequest {
            node_id,
            addr: addr.to_owned(),
        };
        self.shared
            .call(|mut client| {
                let request = with_secret(request.clone(), secret);
                async move { client.add_node(request).await }
            })
            .await
    }

    /// Removes voter `node_id` from the cluster, which requires its `secret`.
    pub async fn remove_node(
        &self,
        node_id: u64,
        secret: &ClusterSecret,
    ) -> Result<pb::MembershipResponse, ClientError> {
        let request = pb::RemoveNodeRequest { node_id };
        self.shared
            .call(|mut client| {
                let request = with_secret(request, secret);
                async move { client.remove_node(request).await }
            })
            .await
    }

    /// Where the order is, read linearizably at the leader; `None` if the queue never saw it.
    pub async fn get_order(&self, order_id: &str) -> Result<Option<pb::OrderState>, ClientError> {
        let request = pb::GetOrderRequest {
            order_id: order_id.to_owned(),
        };
        let answer = self
            .shared
            .call(|mut client| {
                let request = request.clone();
                async move { client.get_order(request).await }
            })
            .await?;
        Ok(answer.state.filter(|_| answer.found))
    }

    /// The next `limit` orders in dequeue order (0 means 20), read linearizably at the leader.
    pub async fn list_queue(&self, limit: u32) -> Result<pb::ListQueueResponse, ClientError> {
        self.shared
            .call(
                |mut client| async move { client.list_queue(pb::ListQueueRequest { limit }).await },
            )
            .await
    }

    /// One node's own view of the cluster, asked once, without retry. `addr` may be any node's
    /// address; one the client was not given gets a channel of its own for this call.
    pub async fn cluster_status_of(
        &self,
        addr: &str,
    ) -> Result<pb::ClusterStatusResponse, ClientError> {
        self.ask_status(addr, pb::ClusterStatusRequest::default())
            .await
    }

    /// As [`QueueClient::cluster_status_of`], with the digest of the node's applied state
    /// (`state_digest`), to compare replicas.
    pub async fn cluster_status_with_digest_of(
        &self,
        addr: &str,
    ) -> Result<pb::ClusterStatusResponse, ClientError> {
        let request = pb::ClusterStatusRequest {
            with_state_digest: true,
            ..pb::ClusterStatusRequest::default()
        };
        self.ask_status(addr, request).await
    }

    async fn ask_status(
        &self,
        addr: &str,
        request: pb::ClusterStatusRequest,
    ) -> Result<pb::ClusterStatusResponse, ClientError> {
        let addr = normalize_addr(addr)?;
        let options = &self.shared.options;
        let mut client = match self.shared.nodes.iter().find(|node| node.addr == addr) {
            Some(node) => node.client.clone(),
            None => order_queue_client(channel_to(&addr, options)?, &self.shared.token),
        };
        let started = Instant::now();
        let unreachable = |last_error: String| ClientError::Unreachable {
            attempts: 1,
            waited: started.elapsed(),
            last_error: format!("{addr}: {last_error}"),
        };
        let asked = client.cluster_status(request);
        match tokio::time::timeout(options.attempt_timeout, asked).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => match classify(&status) {
                StatusKind::Transient | StatusKind::NotLeader => {
                    Err(unreachable(describe(&status)))
                }
                StatusKind::Final(error) => Err(error),
            },
            Err(_) => Err(unreachable(format!(
                "no answer within {:?}",
                options.attempt_timeout
            ))),
        }
    }

    /// Every node's own view, asked concurrently, in the order the addresses were given.
    pub async fn cluster_status_all(
        &self,
    ) -> Vec<(String, Result<pb::ClusterStatusResponse, ClientError>)> {
        let asks = self.shared.nodes.iter().map(|node| async move {
            (node.addr.clone(), self.cluster_status_of(&node.addr).await)
        });
        futures::future::join_all(asks).await
    }
}

/// `message` as a request that presents `secret`.
fn with_secret<T>(message: T, secret: &ClusterSecret) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    secret.attach(&mut request);
    request
}

/// Sends `batch` in one `EnqueueBatch` call and answers each enqueue.
async fn send_enqueues(
    shared: Arc<Shared>,
    batch: Vec<Pending<pb::QueuedOrder, pb::EnqueueResponse>>,
) {
    let (orders, replies): (Vec<pb::QueuedOrder>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.message, pending.reply))
        .unzip();
    let request = pb::EnqueueBatchRequest { orders };
    let answers = match shared
        .call(|mut client| {
            let request = request.clone();
            async move { client.enqueue_batch(request).await }
        })
        .await
    {
        Ok(response) => answers_of(
            response
                .results
                .into_iter()
                .map(|result| match result.outcome {
                    Some(pb::enqueue_result::Outcome::Enqueued(answer)) => Some(Ok(answer)),
                    Some(pb::enqueue_result::Outcome::Invalid(reason)) => Some(Err(reason)),
                    None => None,
                })
                .collect(),
            replies.len(),
        ),
        Err(error) => vec![Err(error); replies.len()],
    };
    reply_each(replies, answers);
}

/// Sends `batch` in one `Decide` call and answers each decision.
async fn send_decisions(shared: Arc<Shared>, batch: Vec<Pending<pb::Decision, pb::Decided>>) {
    let (decisions, replies): (Vec<pb::Decision>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.message, pending.reply))
        .unzip();
    let request = pb::DecideRequest { decisions };
    let answers = match shared
        .call(|mut client| {
            let request = request.clone();
            async move { client.decide(request).await }
        })
        .await
    {
        Ok(response) => answers_of(
            response
                .results
                .into_iter()
                .map(|result| match result.outcome {
                    Some(pb::decide_result::Outcome::Decided(answer)) => Some(Ok(answer)),
                    Some(pb::decide_result::Outcome::Invalid(reason)) => Some(Err(reason)),
                    None => None,
                })
                .collect(),
            replies.len(),
        ),
        Err(error) => vec![Err(error); replies.len()],
    };
    reply_each(replies, answers);
}

fn reply_each<A>(
    replies: Vec<oneshot::Sender<Result<A, ClientError>>>,
    answers: Vec<Result<A, ClientError>>,
) {
    for (reply, answer) in replies.into_iter().zip(answers) {
        // A caller that gave up no longer waits for its answer.
        let _ = reply.send(answer);
    }
}

/// One answer per write of a batch call of `count` writes, from each write's result: its
/// answer, why it was refused, or nothing (a result without an outcome).
fn answers_of<A: Clone>(
    results: Vec<Option<Result<A, String>>>,
    count: usize,
) -> Vec<Result<A, ClientError>> {
    if results.len() != count {
        let status = Status::internal(format!(
            "{} results for a batch of {count} writes",
            results.len()
        ));
        return vec![Err(ClientError::Rejected(status)); count];
    }
    results
        .into_iter()
        .map(|result| match result {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(reason)) => Err(ClientError::InvalidArgument(reason)),
            None => Err(ClientError::Rejected(Status::internal(
                "a write of the batch got no result",
            ))),
        })
        .collect()
}

impl Shared {
    /// Runs `attempt` against the leader, following hints and retrying elsewhere until it is
    /// answered, refused, or the deadline passes.
    async fn call<T, F, Fut>(&self, attempt: F) -> Result<T, ClientError>
    where
        F: Fn(TokenClient) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let options = &self.options;
        let started = Instant::now();
        let deadline = started + options.deadline;
        let mut target = match self.leader.load(Ordering::Relaxed) {
            NO_LEADER => self.cursor.load(Ordering::Relaxed) % self.nodes.len(),
            leader => leader,
        };
        let mut attempts = 0u32;
        let mut failures = 0u32;
        let mut redirects_in_a_row = 0usize;
        let mut last_error = String::from("no attempt was made");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClientError::Unreachable {
                    attempts,
                    waited: started.elapsed(),
                    last_error,
                });
            }
            attempts += 1;
            let node = &self.nodes[target];
            let outcome = match tokio::time::timeout(
                options.attempt_timeout.min(remaining),
                attempt(node.client.clone()),
            )
            .await
            {
                Ok(Ok(response)) => Attempt::Answered(response.into_inner()),
                Ok(Err(status)) => match classify(&status) {
                    StatusKind::NotLeader => match self.hinted_leader(&status) {
                        Some(leader) if leader != target => Attempt::Redirected(leader),
                        _ => Attempt::Failed(describe(&status)),
                    },
                    StatusKind::Transient => Attempt::Failed(describe(&status)),
                    StatusKind::Final(error) => Attempt::Refused(error),
                },
                Err(_) => Attempt::Failed(format!(
                    "no answer within {:?}",
                    options.attempt_timeout.min(remaining)
                )),
            };
            let cause = match outcome {
                Attempt::Answered(answer) => {
                    self.leader.store(target, Ordering::Relaxed);
                    return Ok(answer);
                }
                Attempt::Refused(error) => return Err(error),
                // A hint is followed at once, unless hints keep going round: then the nodes
                // disagree for a moment (an election), and a pause lets them settle.
                Attempt::Redirected(leader) if redirects_in_a_row < self.nodes.len() => {
                    redirects_in_a_row += 1;
                    last_error = format!("{} redirected to {}", node.addr, self.nodes[leader].addr);
                    self.leader.store(leader, Ordering::Relaxed);
                    target = leader;
                    continue;
                }
                Attempt::Redirected(leader) => format!(
                    "{} redirected to {}, but the hints went round",
                    node.addr, self.nodes[leader].addr
                ),
                Attempt::Failed(cause) => format!("{}: {cause}", node.addr),
            };
            last_error = cause;
            redirects_in_a_row = 0;
            // Forget a leader that failed; whoever is leader now will be found.
            let _ = self.leader.compare_exchange(
                target,
                NO_LEADER,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            target = (self.cursor.fetch_add(1, Ordering::Relaxed) + 1) % self.nodes.len();
            let pause = backoff(options, failures);
            failures = failures.saturating_add(1);
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(remaining)).await;
        }
    }

    /// The node the status names as leader, if the client knows it by that address.
    fn hinted_leader(&self, status: &Status) -> Option<usize> {
        let addr = status
            .metadata()
            .get(LEADER_ADDR_METADATA_KEY)?
            .to_str()
            .ok()?;
        let addr = normalize_addr(addr).ok()?;
        self.nodes.iter().position(|node| node.addr == addr)
    }
}

/// How the client treats a gRPC status.
enum StatusKind {
    /// The node is not the leader.
    NotLeader,
    /// The node is down, the connection broke, the call timed out or the node cannot serve now.
    Transient,
    /// A definite answer; retrying would get the same.
    Final(ClientError),
}

fn classify(status: &Status) -> StatusKind {
    match status.code() {
        Code::FailedPrecondition => StatusKind::NotLeader,
        // `Unknown` and `Cancelled` are what a connection reset or a dropped stream looks like.
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
            StatusKind::Transient
        }
        Code::InvalidArgument => {
            StatusKind::Final(ClientError::InvalidArgument(status.message().to_owned()))
        }
        Code::Unauthenticated => {
            StatusKind::Final(ClientError::Unauthenticated(status.message().to_owned()))
        }
        _ => StatusKind::Final(ClientError::Rejected(status.clone())),
    }
}

fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The pause after `failures` earlier failures: exponential, capped, with the upper half
/// jittered so that clients that failed together do not retry together.
fn backoff(options: &ClientOptions, failures: u32) -> Duration {
    let ceiling = options
        .initial_backoff
        .saturating_mul(1u32 << failures.min(16))
        .min(options.max_backoff);
    let half = ceiling / 2;
    half + half.mul_f64(rand::random::<f64>())
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalized_to_host_port() {
        assert_eq!(
            normalize_addr("127.0.0.1:50061").expect("a valid address"),
            "127.0.0.1:50061"
        );
        assert_eq!(
            normalize_addr("http://queue-1:50061/").expect("a valid address"),
            "queue-1:50061"
        );
        for bad in ["", "queue-1", "https://queue-1:1", "queue-1:port", "a:1/b"] {
            assert!(
                matches!(normalize_addr(bad), Err(ClientError::InvalidAddress { .. })),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let options = ClientOptions::default();
        for failures in 0..40 {
            let ceiling =
                (options.initial_backoff * 2u32.pow(failures.min(16))).min(options.max_backoff);
            let pause = backoff(&options, failures);
            assert!(
                pause >= ceiling / 2 && pause <= ceiling,
                "{pause:?} for {failures}"
            );
        }
    }

    #[test]
    fn statuses_are_sorted_by_what_the_client_does_next() {
        assert!(matches!(
            classify(&Status::failed_precondition("not the leader")),
            StatusKind::NotLeader
        ));
        assert!(matches!(
            classify(&Status::unavailable("down")),
            StatusKind::Transient
        ));
        assert!(matches!(
            classify(&Status::invalid_argument("order.items: must not be empty")),
            StatusKind::Final(ClientError::InvalidArgument(_))
        ));
        assert!(matches!(
            classify(&Status::unauthenticated("missing or wrong cluster secret")),
            StatusKind::Final(ClientError::Unauthenticated(_))
        ));
        assert!(matches!(
            classify(&Status::internal("bug")),
            StatusKind::Final(ClientError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn an_empty_address_list_is_refused() {
        assert!(matches!(
            QueueClient::new(
                Vec::new(),
                QueueToken::load(None, Some("a-token-for-the-client-tests".into()))
                    .expect("a valid token")
            ),
            Err(ClientError::InvalidAddress { .. })
        ));
    }
}
