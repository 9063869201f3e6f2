//! Inbound client API: the gRPC service `OrderQueue` (proto/order_queue.proto). The handlers only
//! translate: a request becomes a [`Command`] stamped with this node's clock as leader (a node
//! that does not lead stamps nothing and answers as a follower; see [`crate::clock`]), goes through
//! `Raft::client_write`, and the [`CommandResponse`] becomes the answer. Reads ask openraft to
//! confirm leadership first (`ensure_linearizable`), then read the applied state.
//!
//! Every way a request fails is a [`RequestError`], turned into a gRPC status in one place
//! (`From<RequestError> for Status`): a node that is not the leader answers
//! `FAILED_PRECONDITION` with the leader's id and address in the metadata keys
//! [`LEADER_ID_METADATA_KEY`] and [`LEADER_ADDR_METADATA_KEY`] (absent while no leader is known);
//! a Raft node that cannot serve answers `UNAVAILABLE`; bad input answers `INVALID_ARGUMENT`
//! naming the field. `FAILED_PRECONDITION` means "not the leader" and nothing else, so the client
//! can rely on it.
//!
//! `AddNode` and `RemoveNode` change who is in the cluster, so they require the cluster secret
//! ([`crate::auth`]) and are refused `UNAUTHENTICATED` without it. Every other call requires a
//! client token whose role may make it ([`crate::client_auth`]): `UNAUTHENTICATED` without a
//! known token, `PERMISSION_DENIED` for a role that may not. Answers to a role that may not see
//! lease tokens carry 0 in their place ([`ShowsLeaseTokens`]).
//!
//! The protobuf conversions sit at the bottom, one per `From`/`TryFrom`.

use std::collections::BTreeSet;
use std::time::Duration;

use bookstore_proto as pb;
use bookstore_proto::order_queue_server::{OrderQueue, OrderQueueServer};
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, Membership, Raft, ServerState};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};

use crate::auth::ClusterSecret;
use crate::client_auth::{Call, ClientRoles, Role};
use crate::clock::NodeClock;
use crate::proposer::{Committed, Proposer, WriteError};
use crate::state_machine::{
    Decision, Execution, Holder, MAX_LINE_QUANTITY, MAX_ORDER_BYTES, MAX_ORDER_ID_BYTES,
    MAX_ORDER_LINES, MAX_ORDER_TEXT_BYTES, MAX_REASONS, MAX_SUGGESTIONS, MAX_TEXT_BYTES,
    RejectionReason, RequestDigest, SuggestedBook, Verdict,
};
use crate::{
    Command, CommandResponse, NodeId, OrderItem, OrderRecord, OrderStatus, QueueState, QueuedOrder,
    Stamp, StateMachineStore, TypeConfig,
};

/// The gRPC service name, as health checks know it.
pub const NAME: &str = "bookstore.OrderQueue";
/// Metadata key of a `FAILED_PRECONDITION` answer: the leader's node id.
pub const LEADER_ID_METADATA_KEY: &str = "x-raft-leader-id";
/// Metadata key of a `FAILED_PRECONDITION` answer: the leader's `host:port`.
pub const LEADER_ADDR_METADATA_KEY: &str = "x-raft-leader-addr";
/// The longest lease an executor may ask for; longer is surely a unit mistake (microseconds
/// passed as milliseconds) and would keep every other executor waiting.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);
/// The most orders one `EnqueueBatch` call, or decisions one `Decide` call, may carry.
pub const MAX_ORDERS_PER_BATCH: usize = 1024;
/// The largest request message the client API decodes (tonic's default, stated so that the
/// client can keep its calls below it); a larger one is refused whole, `OUT_OF_RANGE`.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// How many orders `ListQueue` returns when the request says 0.
pub const DEFAULT_LIST_LIMIT: u32 = 20;
/// The most orders one `ListQueue` answer carries.
pub const MAX_LIST_LIMIT: u32 = 10_000;

/// Why a client request was not served. Converted to a gRPC status only by
/// `From<RequestError> for Status`.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request is malformed; `field` names the offending field.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// This node is not the leader; the leader, if known, is in the error.
    #[error("{}", not_leader_message(.0))]
    NotLeader(ForwardToLeader<NodeId, BasicNode>),
    /// The Raft node cannot serve now: no quorum, shutting down or a storage failure.
    #[error("the queue node cannot serve the request: {0}")]
    Unavailable(String),
    /// The state machine answered something this request cannot have caused.
    #[error("unexpected answer from the queue: {0:?}")]
    UnexpectedAnswer(Box<CommandResponse>),
}

fn not_leader_message(forward: &ForwardToLeader<NodeId, BasicNode>) -> String {
    match (&forward.leader_id, &forward.leader_node) {
        (Some(id), Some(node)) => {
            format!("not the leader; the leader is node {id} at {}", node.addr)
        }
        (Some(id), None) => format!("not the leader; the leader is node {id}"),
        (None, _) => "not the leader; no leader is known now".to_owned(),
    }
}

impl RequestError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        RequestError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>> for RequestError {
    fn from(error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Self {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                RequestError::NotLeader(forward)
            }
            other => RequestError::Unavailable(other.to_string()),
        }
    }
}

impl From<CommandResponse> for RequestError {
    /// A campaign or renewal stamped before this node's current leadership is retried with a
    /// fresh stamp (the client retries `UNAVAILABLE`); any other answer is unexpected here.
    fn from(response: CommandResponse) -> Self {
        match response {
            CommandResponse::StaleStamp {
                stamped_term,
                current_term,
            } => RequestError::Unavailable(format!(
                "the request was stamped in term {stamped_term}, before the queue's term \
                 {current_term}; ask again"
            )),
            other => RequestError::UnexpectedAnswer(Box::new(other)),
        }
    }
}

/// A write given up because this node stopped leading is "not the leader", whatever became of
/// its entry: the client retries at the leader, which is safe.
impl From<WriteError> for RequestError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Raft(error) => RequestError::from(*error),
            WriteError::Deposed(forward) => RequestError::NotLeader(forward),
            WriteError::TimedOut(_) => RequestError::Unavailable(error.to_string()),
        }
    }
}

impl From<RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>> for RequestError {
    fn from(error: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>) -> Self {
        match error {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)) => {
                RequestError::NotLeader(forward)
            }
            other => RequestError::Unavailable(other.to_string()),
        }
    }
}

impl From<RequestError> for Status {
    fn from(error: RequestError) -> Self {
        let message = error.to_string();
        match error {
            RequestError::InvalidArgument { .. } => Status::invalid_argument(message),
            RequestError::NotLeader(forward) => {
                let mut metadata = MetadataMap::new();
                if let Some(id) = forward.leader_id {
                    metadata.insert(LEADER_ID_METADATA_KEY, MetadataValue::from(id));
                }
                // An address that is not a valid header value is left out, as if unknown.
                if let Some(addr) = forward
                    .leader_node
                    .and_then(|node| MetadataValue::try_from(node.addr).ok())
                {
                    metadata.insert(LEADER_ADDR_METADATA_KEY, addr);
                }
                Status::with_metadata(Code::FailedPrecondition, message, metadata)
            }
            RequestError::Unavailable(_) => Status::unavailable(message),
            RequestError::UnexpectedAnswer(_) => Status::internal(message),
        }
    }
}

fn required_text(field: &'static str, value: String) -> Result<String, RequestError> {
    if value.trim().is_empty() {
        return Err(RequestError::invalid(field, "must not be empty"));
    }
    Ok(value)
}

/// The lease holder a request names: an executor id and its process's incarnation, both set.
fn holder(executor_id: String, incarnation: u64) -> Result<Holder, RequestError> {
    let executor_id = required_text("executor_id", executor_id)?;
    if incarnation == 0 {
        return Err(RequestError::invalid(
            "incarnation",
            "must be set: a random number drawn by each run of the executor",
        ));
    }
    Ok(Holder::new(executor_id, incarnation))
}

/// A text a record keeps, refused past [`MAX_TEXT_BYTES`].
fn kept_text(field: &'static str, text: String) -> Result<String, RequestError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(RequestError::invalid(
            field,
            format!("at most {MAX_TEXT_BYTES} bytes, got {}", text.len()),
        ));
    }
    Ok(text)
}

fn node_id(node_id: u64) -> Result<NodeId, RequestError> {
    if node_id == 0 {
        // 0 means "no leader" in the status answers.
        return Err(RequestError::invalid("node_id", "must be positive"));
    }
    Ok(node_id)
}

fn lease_ttl_ms(ttl_ms: u64) -> Result<u64, RequestError> {
    if ttl_ms == 0 || u128::from(ttl_ms) > MAX_LEASE_TTL.as_millis() {
        return Err(RequestError::invalid(
            "ttl_ms",
            format!(
                "must be between 1 and {} milliseconds, got {ttl_ms}",
                MAX_LEASE_TTL.as_millis()
            ),
        ));
    }
    Ok(ttl_ms)
}

/// Serves the client API of one queue node. Clones share the node.
#[derive(Clone)]
pub struct OrderQueueService {
    raft: Raft<TypeConfig>,
    /// Groups this node's writes into log entries; shared by all clones.
    proposer: Proposer,
    /// The state machine openraft applies to, read for queries and status.
    state: StateMachineStore,
    /// Required by the membership changes.
    secret: ClusterSecret,
    /// The clients' tokens, required by every other call.
    clients: ClientRoles,
    /// The node's one clock, read for every command's stamp and the lease's remaining time.
    clock: NodeClock,
}

impl OrderQueueService {
    /// A service for `raft`, with a [`Proposer`] of its own (started on the current runtime);
    /// membership changes require `secret`, the other calls a token of `clients`; commands are
    /// stamped from `clock`.
    pub fn new(
        raft: Raft<TypeConfig>,
        state: StateMachineStore,
        secret: ClusterSecret,
        clients: ClientRoles,
        clock: NodeClock,
    ) -> Self {
        let proposer = Proposer::start(raft.clone());
        Self {
            raft,
            proposer,
            state,
            secret,
            clients,
            clock,
        }
    }

    pub fn into_server(self) -> OrderQueueServer<Self> {
        OrderQueueServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// Commits `command` through Raft and returns its log position and the state machine's
    /// answer, once a majority made it durable and it is applied here.
    async fn write(&self, command: Command) -> Result<Committed, RequestError> {
        self.proposer
            .write(command)
            .await
            .map_err(RequestError::from)
    }

    /// A reading of this node's clock as leader of its current term, for a command it is about to
    /// propose. A node that does not lead refuses as `client_write` would, naming the leader it
    /// knows of.
    fn stamp(&self) -> Result<Stamp, RequestError> {
        let metrics = self.raft.metrics();
        let term = {
            let metrics = metrics.borrow();
            if !metrics.state.is_leader() {
                let leader_node = metrics
                    .current_leader
                    .and_then(|leader| metrics.membership_config.membership().get_node(&leader))
                    .cloned();
                return Err(RequestError::NotLeader(ForwardToLeader {
                    leader_id: metrics.current_leader,
                    leader_node,
                }));
            }
            metrics.current_term
        };
        self.clock.leader_stamp(term).ok_or_else(|| {
            RequestError::Unavailable(format!(
                "this node's term moved on from {term} while the request was stamped"
            ))
        })
    }

    /// Reads the queue after making sure this node is still the leader and has applied every
    /// write committed before the read began.
    async fn linearizable_read<T>(
        &self,
        read: impl FnOnce(&QueueState) -> T,
    ) -> Result<T, RequestError> {
        self.raft.ensure_linearizable().await?;
        Ok(self.state.read_queue(read).await)
    }

    async fn enqueue_order(
        &self,
        request: pb::EnqueueRequest,
    ) -> Result<pb::EnqueueResponse, RequestError> {
        let order = QueuedOrder::try_from(
            request
                .order
                .ok_or_else(|| RequestError::invalid("order", "is required"))?,
        )?;
        let mut answers = self.enqueue_orders(vec![order]).await?;
        answers.pop().ok_or(RequestError::UnexpectedAnswer(Box::new(
            CommandResponse::Batch(Vec::new()),
        )))
    }

    /// Enqueues each well-formed order of the batch; a malformed one gets its own refusal.
    async fn enqueue_batch_of_orders(
        &self,
        request: pb::EnqueueBatchRequest,
    ) -> Result<pb::EnqueueBatchResponse, RequestError> {
        if request.orders.len() > MAX_ORDERS_PER_BATCH {
            return Err(RequestError::invalid(
                "orders",
                format!(
                    "at most {MAX_ORDERS_PER_BATCH} orders per call, got {}",
                    request.orders.len()
                ),
            ));
        }
        let mut results = vec![pb::EnqueueResult::default(); request.orders.len()];
        let mut positions = Vec::with_capacity(results.len());
        let mut orders = Vec::with_capacity(results.len());
        for (position, order) in request.orders.into_iter().enumerate() {
            match QueuedOrder::try_from(order) {
                Ok(order) => {
                    positions.push(position);
                    orders.push(order);
                }
                Err(refusal) => {
                    results[position].outcome =
                        Some(pb::enqueue_result::Outcome::Invalid(refusal.to_string()));
                }
            }
        }
        if !orders.is_empty() {
            for (position, answer) in positions
                .into_iter()
                .zip(self.enqueue_orders(orders).await?)
            {
                results[position].outcome = Some(pb::enqueue_result::Outcome::Enqueued(answer));
            }
        }
        Ok(pb::EnqueueBatchResponse { results })
    }

    /// Commits the orders in one log entry and answers for each, in order.
    async fn enqueue_orders(
        &self,
        orders: Vec<QueuedOrder>,
    ) -> Result<Vec<pb::EnqueueResponse>, RequestError> {
        let order_ids: Vec<String> = orders
            .iter()
            .map(|order| order.order_id().to_owned())
            .collect();
        let at = self.stamp()?;
        let commands = orders
            .into_iter()
            .map(|order| Command::Enqueue { at, order })
            .collect();
        let written = self.write(Command::group(commands)).await?;
        let responses = written.response.ungroup(order_ids.len());
        if responses.len() != order_ids.len() {
            return Err(RequestError::UnexpectedAnswer(Box::new(
                CommandResponse::Batch(responses),
            )));
        }
        let mut newly_enqueued = Vec::with_capacity(responses.len());
        for response in responses {
            match response {
                CommandResponse::Enqueued { .. } => newly_enqueued.push(true),
                CommandResponse::AlreadyEnqueued { .. } => newly_enqueued.push(false),
                other => return Err(RequestError::UnexpectedAnswer(Box::new(other))),
            }
        }
        let (term, index) = (written.log_id.leader_id.term, written.log_id.index);
        tracing::info!(
            order_ids = order_ids.join(","),
            orders = order_ids.len(),
            newly_enqueued = newly_enqueued.iter().filter(|&&new| new).count(),
            term,
            index,
            "enqueue committed"
        );
        // Applied on this node before the write returned, so the records are there; they may
        // have moved on since (dequeued), which is what "where the order is now" means.
        let states: Vec<Option<pb::OrderState>> = self
            .state
            .read_queue(|queue| {
                order_ids
                    .iter()
                    .map(|order_id| queue.order_status(order_id).map(pb::OrderState::from))
                    .collect()
            })
            .await;
        Ok(newly_enqueued
            .into_iter()
            .zip(states)
            .map(|(newly_enqueued, state)| pb::EnqueueResponse {
                newly_enqueued,
                sequence: state.as_ref().map_or(0, |state| state.sequence),
                state,
                term,
                index,
            })
            .collect())
    }

    async fn campaign_for_lease(
        &self,
        request: pb::CampaignRequest,
    ) -> Result<pb::CampaignResponse, RequestError> {
        let ttl_ms = lease_ttl_ms(request.ttl_ms)?;
        let holder = holder(request.executor_id, request.incarnation)?;
        let written = self
            .write(Command::Campaign {
                at: self.stamp()?,
                holder: holder.clone(),
                ttl_ms,
            })
            .await?;
        match written.response {
            CommandResponse::LeaseGranted {
                token,
                expires_at_ms,
            } => {
                tracing::info!(
                    executor_id = holder.executor_id,
                    incarnation = holder.incarnation,
                    token,
                    expires_at_ms,
                    "lease granted"
                );
                Ok(pb::CampaignResponse {
                    granted: true,
                    token,
                    holder: holder.executor_id,
                    expires_at_ms,
                    holder_incarnation: holder.incarnation,
                })
            }
            // The holder's token stays its own: a contender, even another run of the same
            // executor, has no use for it.
            CommandResponse::LeaseHeld {
                holder,
                expires_at_ms,
            } => Ok(pb::CampaignResponse {
                granted: false,
                token: 0,
                holder: holder.executor_id,
                expires_at_ms,
                holder_incarnation: holder.incarnation,
            }),
            other => Err(RequestError::from(other)),
        }
    }

    async fn renew(
        &self,
        request: pb::RenewLeaseRequest,
    ) -> Result<pb::LeaseResponse, RequestError> {
        let ttl_ms = lease_ttl_ms(request.ttl_ms)?;
        let holder = holder(request.executor_id, request.incarnation)?;
        let written = self
            .write(Command::RenewLease {
                at: self.stamp()?,
                holder,
                token: request.token,
                ttl_ms,
            })
            .await?;
        match written.response {
            CommandResponse::LeaseRenewed {
                token,
                expires_at_ms,
            } => Ok(pb::LeaseResponse {
                accepted: true,
                current_token: token,
                expires_at_ms,
                requeued_order_id: String::new(),
            }),
            CommandResponse::StaleToken { current } => Ok(pb::LeaseResponse {
                accepted: false,
                current_token: current.unwrap_or(0),
                ..Default::default()
            }),
            other => Err(RequestError::from(other)),
        }
    }

    async fn resign_lease(
        &self,
        request: pb::ResignRequest,
    ) -> Result<pb::LeaseResponse, RequestError> {
        let holder = holder(request.executor_id, request.incarnation)?;
        let written = self
            .write(Command::Resign {
                at: self.stamp()?,
                holder: holder.clone(),
                token: request.token,
            })
            .await?;
        match written.response {
            CommandResponse::Resigned { requeued_order_id } => {
                tracing::info!(
                    executor_id = holder.executor_id,
                    token = request.token,
                    requeued_order_id,
                    "lease resigned"
                );
                Ok(pb::LeaseResponse {
                    accepted: true,
                    current_token: 0,
                    expires_at_ms: 0,
                    requeued_order_id: requeued_order_id.unwrap_or_default(),
                })
            }
            CommandResponse::StaleToken { current } => Ok(pb::LeaseResponse {
                accepted: false,
                current_token: current.unwrap_or(0),
                ..Default::default()
            }),
            other => Err(RequestError::UnexpectedAnswer(Box::new(other))),
        }
    }

    async fn dequeue_order(
        &self,
        request: pb::DequeueRequest,
    ) -> Result<pb::DequeueResponse, RequestError> {
        let holder = holder(request.executor_id, request.incarnation)?;
        let written = self
            .write(Command::Dequeue {
                at: self.stamp()?,
                holder: holder.clone(),
                token: request.token,
            })
            .await?;
        match written.response {
            CommandResponse::Dequeued { order, execution } => {
                tracing::info!(
                    order_id = order.order_id(),
                    executor_id = holder.executor_id,
                    token = request.token,
                    executed_before = execution.is_some(),
                    "order dequeued"
                );
                Ok(pb::DequeueResponse {
                    accepted: true,
                    current_token: request.token,
                    order: Some(pb::QueuedOrder::from(&order)),
                    execution: execution.as_ref().map(pb::ExecutionRecord::from),
                })
            }
            CommandResponse::QueueEmpty => Ok(pb::DequeueResponse {
                accepted: true,
                current_token: request.token,
                order: None,
                execution: None,
            }),
            CommandResponse::StaleToken { current } => Ok(pb::DequeueResponse {
                accepted: false,
                current_token: current.unwrap_or(0),
                order: None,
                execution: None,
            }),
            other => Err(RequestError::UnexpectedAnswer(Box::new(other))),
        }
    }

    async fn acknowledge_order(
        &self,
        request: pb::AcknowledgeRequest,
    ) -> Result<pb::AcknowledgeResponse, RequestError> {
        let holder = holder(request.executor_id, request.incarnation)?;
        let executor_id = holder.executor_id.clone();
        let order_id = required_text("order_id", request.order_id)?;
        let token = request.token;
        let written = self
            .write(Command::Acknowledge {
                at: self.stamp()?,
                holder,
                token,
                order_id,
            })
            .await?;
        let refused = |refusal: String| pb::AcknowledgeResponse {
            accepted: false,
            current_token: token,
            refusal,
            executed_at_ms: 0,
        };
        match written.response {
            CommandResponse::Acknowledged { order_id, at_ms } => {
                tracing::info!(order_id, executor_id, token, "order acknowledged");
                Ok(pb::AcknowledgeResponse {
                    accepted: true,
                    current_token: token,
                    refusal: String::new(),
                    executed_at_ms: at_ms,
                })
            }
            CommandResponse::UnknownOrder { order_id } => {
                Ok(refused(format!("order {order_id} is not known")))
            }
            CommandResponse::NotRecorded { order_id } => Ok(refused(format!(
                "order {order_id} has no execution record: record the execution first"
            ))),
            CommandResponse::NotExecuting { order_id, status } => Ok(refused(format!(
                "order {order_id} is not executing under this lease (it is {})",
                phase_name(&status)
            ))),
            CommandResponse::StaleToken { current } => Ok(pb::AcknowledgeResponse {
                current_token: current.unwrap_or(0),
                ..refused(format!(
                    "token {token} is not the current lease's held by {executor_id}"
                ))
            }),
            other => Err(RequestError::UnexpectedAnswer(Box::new(other))),
        }
    }

    /// Records each well-formed decision of the call in one log entry and answers for each with
    /// the order's record; a malformed decision gets its own refusal.
    async fn decide_checkouts(
        &self,
        request: pb::DecideRequest,
    ) -> Result<pb::DecideResponse, RequestError> {
        if request.decisions.len() > MAX_ORDERS_PER_BATCH {
            return Err(RequestError::invalid(
                "decisions",
                format!(
                    "at most {MAX_ORDERS_PER_BATCH} decisions per call, got {}",
                    request.decisions.len()
                ),
            ));
        }
        let mut results = vec![pb::DecideResult::default(); request.decisions.len()];
        let mut positions = Vec::with_capacity(results.len());
        let mut decisions = Vec::with_capacity(results.len());
        for (position, decision) in request.decisions.into_iter().enumerate() {
            match Decision::try_from(decision) {
                Ok(decision) => {
                    positions.push(position);
                    decisions.push(decision);
                }
                Err(refusal) => {
                    results[position].outcome =
                        Some(pb::decide_result::Outcome::Invalid(refusal.to_string()));
                }
            }
        }
        if decisions.is_empty() {
            return Ok(pb::DecideResponse { results });
        }
        let order_ids: Vec<String> = decisions
            .iter()
            .map(|decision| decision.order.order_id().to_owned())
            .collect();
        let at = self.stamp()?;
        let commands = decisions
            .into_iter()
            .map(|decision| Command::Decide { at, decision })
            .collect();
        let written = self.write(Command::group(commands)).await?;
        let responses = written.response.ungroup(order_ids.len());
        if responses.len() != order_ids.len() {
            return Err(RequestError::UnexpectedAnswer(Box::new(
                CommandResponse::Batch(responses),
            )));
        }
        let mut newly_decided = Vec::with_capacity(responses.len());
        for response in responses {
            match response {
                CommandResponse::Decided { .. } => newly_decided.push(true),
                CommandResponse::AlreadyDecided { .. } => newly_decided.push(false),
                other => return Err(RequestError::UnexpectedAnswer(Box::new(other))),
            }
        }
        let (term, index) = (written.log_id.leader_id.term, written.log_id.index);
        tracing::info!(
            order_ids = order_ids.join(","),
            decisions = order_ids.len(),
            newly_decided = newly_decided.iter().filter(|&&new| new).count(),
            term,
            index,
            "decisions committed"
        );
        // Applied here before the write returned, and a record is never removed; what was
        // decided first for each id is in it.
        let states: Vec<Option<pb::OrderState>> = self
            .state
            .read_queue(|queue| {
                order_ids
                    .iter()
                    .map(|order_id| queue.order_status(order_id).map(pb::OrderState::from))
                    .collect()
            })
            .await;
        for ((position, newly_decided), state) in
            positions.into_iter().zip(newly_decided).zip(states)
        {
            results[position].outcome = Some(pb::decide_result::Outcome::Decided(pb::Decided {
                newly_decided,
                state,
                term,
                index,
            }));
        }
        Ok(pb::DecideResponse { results })
    }

    async fn record_order_execution(
        &self,
        request: pb::RecordExecutionRequest,
    ) -> Result<pb::RecordExecutionResponse, RequestError> {
        let holder = holder(request.executor_id, request.incarnation)?;
        let executor_id = holder.executor_id.clone();
        let order_id = required_text("order_id", request.order_id)?;
        let token = request.token;
        let written = self
            .write(Command::RecordExecution {
                at: self.stamp()?,
                holder,
                token,
                order_id,
            })
            .await?;
        let refused = |refusal: String| pb::RecordExecutionResponse {
            recorded: false,
            execution: None,
            current_token: token,
            refusal,
        };
        match written.response {
            CommandResponse::ExecutionRecorded {
                order_id,
                execution,
            } => {
                tracing::info!(order_id, executor_id, token, "execution recorded");
                Ok(pb::RecordExecutionResponse {
                    recorded: true,
                    execution: Some(pb::ExecutionRecord::from(&execution)),
                    current_token: token,
                    refusal: String::new(),
                })
            }
            CommandResponse::AlreadyExecuted {
                order_id,
                execution,
            } => Ok(pb::RecordExecutionResponse {
                execution: Some(pb::ExecutionRecord::from(&execution)),
                ..refused(format!(
                    "order {order_id} was executed already, by {} under token {}: acknowledge it",
                    execution.executor_id, execution.token
                ))
            }),
            CommandResponse::UnknownOrder { order_id } => {
                Ok(refused(format!("order {order_id} is not known")))
            }
            CommandResponse::NotExecuting { order_id, status } => Ok(refused(format!(
                "order {order_id} is not executing under this lease (it is {})",
                phase_name(&status)
            ))),
            CommandResponse::StaleToken { current } => Ok(pb::RecordExecutionResponse {
                current_token: current.unwrap_or(0),
                ..refused(format!(
                    "token {token} is not the current lease's held by {executor_id}"
                ))
            }),
            other => Err(RequestError::UnexpectedAnswer(Box::new(other))),
        }
    }

    async fn find_order(
        &self,
        request: pb::GetOrderRequest,
    ) -> Result<pb::GetOrderResponse, RequestError> {
        let order_id = required_text("order_id", request.order_id)?;
        let state = self
            .linearizable_read(|queue| queue.order_status(&order_id).map(pb::OrderState::from))
            .await?;
        Ok(pb::GetOrderResponse {
            found: state.is_some(),
            state,
        })
    }

    async fn list(
        &self,
        request: pb::ListQueueRequest,
    ) -> Result<pb::ListQueueResponse, RequestError> {
        let limit = match request.limit {
            0 => DEFAULT_LIST_LIMIT,
            limit => limit.min(MAX_LIST_LIMIT),
        };
        // `limit` is at most MAX_LIST_LIMIT, which fits any usize.
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.linearizable_read(|queue| pb::ListQueueResponse {
            orders: queue.peek(limit).map(pb::OrderState::from).collect(),
            depth: queue.queue_depth() as u64,
        })
        .await
    }

    /// This node's own view, from openraft's metrics and state and the applied queue; never
    /// asks the leader, so it answers while there is none.
    /// Adds a node as a learner, waits until it has caught up with the log, then makes it a
    /// voter beside the current ones. A learner that never catches up (down, or refusing the
    /// leader's appends because its cluster secret differs) is never made a voter: the call
    /// waits until the caller gives up, and the learner stays until the next membership change.
    async fn add_member(
        &self,
        request: pb::AddNodeRequest,
    ) -> Result<pb::MembershipResponse, RequestError> {
        let node_id = node_id(request.node_id)?;
        let addr = required_text("addr", request.addr)?;
        let mut voters = self.voters_at_leader().await?;
        if voters.contains(&node_id) {
            return Err(RequestError::invalid(
                "node_id",
                format!("node {node_id} is a voter already"),
            ));
        }
        // Not openraft's blocking mode: it stops waiting after 500 ms and reports success
        // whether or not the learner has caught up.
        let added = self
            .raft
            .add_learner(node_id, BasicNode::new(&addr), false)
            .await?;
        tracing::info!(node_id, addr, "learner added; waiting for it to catch up");
        self.wait_until_caught_up(node_id, added.log_id.index)
            .await?;
        voters.insert(node_id);
        let changed = self.change_voters(voters).await?;
        tracing::info!(node_id, addr, index = changed.index, "node added");
        Ok(changed)
    }

    /// Removes a voter; the others go on without it.
    async fn remove_member(
        &self,
        request: pb::RemoveNodeRequest,
    ) -> Result<pb::MembershipResponse, RequestError> {
        let node_id = node_id(request.node_id)?;
        let mut voters = self.voters_at_leader().await?;
        if !voters.remove(&node_id) {
            return Err(RequestError::invalid(
                "node_id",
                format!("node {node_id} is not a voter; the voters are {voters:?}"),
            ));
        }
        if voters.is_empty() {
            return Err(RequestError::invalid(
                "node_id",
                "the last voter cannot be removed",
            ));
        }
        let changed = self.change_voters(voters).await?;
        tracing::info!(node_id, index = changed.index, "node removed");
        Ok(changed)
    }

    /// Waits until this leader has replicated to `node_id` up to `index` at least.
    async fn wait_until_caught_up(&self, node_id: NodeId, index: u64) -> Result<(), RequestError> {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let current = metrics.borrow_and_update();
                let Some(replication) = &current.replication else {
                    return Err(RequestError::Unavailable(format!(
                        "this node stopped leading while node {node_id} caught up"
                    )));
                };
                if replication
                    .get(&node_id)
                    .copied()
                    .flatten()
                    .is_some_and(|matched| matched.index >= index)
                {
                    return Ok(());
                }
            }
            metrics.changed().await.map_err(|_| {
                RequestError::Unavailable(format!("Raft stopped while node {node_id} caught up"))
            })?;
        }
    }

    /// The voters, read at a leader that made sure it still leads: only the leader's view of the
    /// membership is current.
    async fn voters_at_leader(&self) -> Result<BTreeSet<NodeId>, RequestError> {
        self.raft.ensure_linearizable().await?;
        Ok(self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect())
    }

    /// Makes `voters` the voters, dropping any other member; answers once that committed.
    async fn change_voters(
        &self,
        voters: BTreeSet<NodeId>,
    ) -> Result<pb::MembershipResponse, RequestError> {
        let written = self.raft.change_membership(voters, false).await?;
        let members = match &written.membership {
            Some(membership) => members_of(membership),
            None => members_of(self.raft.metrics().borrow().membership_config.membership()),
        };
        Ok(pb::MembershipResponse {
            members,
            index: written.log_id.index,
        })
    }

    async fn status(&self) -> pb::ClusterStatusResponse {
        let metrics = self.raft.metrics().borrow().clone();
        // `committed` is not in openraft 0.9's metrics; its state has it. The vote's last
        // update time is refreshed by every heartbeat or append the leader sends, so on a
        // follower it is the last contact with the leader (on a candidate, its last vote).
        // Reading the state fails only once Raft stopped; the metrics still say what it was.
        let (committed, since_vote_update) = self
            .raft
            .with_raft_state(|state| {
                (
                    state.committed,
                    state.vote_last_modified().map(|at| at.elapsed()),
                )
            })
            .await
            .unwrap_or((None, None));
        let membership = metrics.membership_config.membership();
        let leader_addr = metrics
            .current_leader
            .and_then(|leader| membership.get_node(&leader))
            .map(|node| node.addr.clone())
            .unwrap_or_default();
        let members = members_of(membership);
        let millis_since_leader_contact = match metrics.state {
            ServerState::Leader => 0,
            _ => since_vote_update.map_or(0, |elapsed| {
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
            }),
        };
        // On the leader, the lease's time left is read on its clock now.
        let now = match metrics.state {
            ServerState::Leader => self.clock.leader_stamp(metrics.current_term),
            _ => None,
        };
        let (queue_depth, executed_count, lease, lease_remaining_ms) = self
            .state
            .read_queue(|queue| {
                (
                    queue.queue_depth() as u64,
                    queue.executed_count(),
                    queue.lease().cloned(),
                    queue.lease_remaining_ms(now.as_ref()),
                )
            })
            .await;
        pb::ClusterStatusResponse {
            node_id: metrics.id,
            role: role_name(metrics.state).to_owned(),
            leader_id: metrics.current_leader.unwrap_or(0),
            leader_addr,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            commit_index: committed.map_or(0, |log_id| log_id.index),
            applied_index: metrics.last_applied.map_or(0, |log_id| log_id.index),
            queue_depth,
            executed_count,
            members,
            lease_holder: lease
                .as_ref()
                .map(|lease| lease.holder.executor_id.clone())
                .unwrap_or_default(),
            lease_holder_incarnation: lease.as_ref().map_or(0, |lease| lease.holder.incarnation),
            lease_token: lease.as_ref().map_or(0, |lease| lease.token),
            lease_expires_at_ms: lease.as_ref().map_or(0, |lease| lease.expires_at_ms),
            millis_since_leader_contact,
            lease_remaining_ms,
            state_digest: String::new(),
        }
    }
}

/// SHA-256 of the applied state's encoding, in hex. The encoding is deterministic (maps in key
/// order), so equal states have equal digests.
fn state_digest(queue: &QueueState) -> String {
    use sha2::{Digest, Sha256};
    match crate::codec::encode(queue) {
        Ok(bytes) => Sha256::digest(&bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect(),
        Err(error) => format!("unencodable: {error}"),
    }
}

/// Every member of `membership`, voters and learners, as the API reports them.
fn members_of(membership: &Membership<NodeId, BasicNode>) -> Vec<pb::ClusterMember> {
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(node_id, node)| pb::ClusterMember {
            node_id: *node_id,
            addr: node.addr.clone(),
            voter: voters.contains(node_id),
        })
        .collect()
}

/// The role's name as `ClusterStatusResponse.role` spells it.
pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

fn phase_name(status: &OrderStatus) -> &'static str {
    match status {
        OrderStatus::Queued => "queued",
        OrderStatus::Executing { .. } => "executing",
        OrderStatus::Executed { .. } => "executed",
        OrderStatus::Rejected { .. } => "rejected",
    }
}

/// An answer that may carry lease tokens: the lease's own, or the tokens an order was executed
/// and acknowledged under. A role that may not see them gets 0 in their place.
trait ShowsLeaseTokens {
    fn hide_lease_tokens(&mut self);
}

/// `answer` as `role` may see it.
fn shown_to<T: ShowsLeaseTokens>(role: Role, mut answer: T) -> T {
    if !role.sees_lease_tokens() {
        answer.hide_lease_tokens();
    }
    answer
}

impl ShowsLeaseTokens for pb::OrderState {
    fn hide_lease_tokens(&mut self) {
        self.token = 0;
        self.acknowledged_token = 0;
        if let Some(execution) = self.execution.as_mut() {
            execution.token = 0;
        }
    }
}

impl<T: ShowsLeaseTokens> ShowsLeaseTokens for Option<T> {
    fn hide_lease_tokens(&mut self) {
        if let Some(inner) = self {
            inner.hide_lease_tokens();
        }
    }
}

impl ShowsLeaseTokens for pb::EnqueueResponse {
    fn hide_lease_tokens(&mut self) {
        self.state.hide_lease_tokens();
    }
}

impl ShowsLeaseTokens for pb::EnqueueBatchResponse {
    fn hide_lease_tokens(&mut self) {
        for result in &mut self.results {
            if let Some(pb::enqueue_result::Outcome::Enqueued(answer)) = &mut result.outcome {
                answer.hide_lease_tokens();
            }
        }
    }
}

impl ShowsLeaseTokens for pb::DecideResponse {
    fn hide_lease_tokens(&mut self) {
        for result in &mut self.results {
            if let Some(pb::decide_result::Outcome::Decided(decided)) = &mut result.outcome {
                decided.state.hide_lease_tokens();
            }
        }
    }
}

impl ShowsLeaseTokens for pb::GetOrderResponse {
    fn hide_lease_tokens(&mut self) {
        self.state.hide_lease_tokens();
    }
}

impl ShowsLeaseTokens for pb::ListQueueResponse {
    fn hide_lease_tokens(&mut self) {
        for state in &mut self.orders {
            state.hide_lease_tokens();
        }
    }
}

impl ShowsLeaseTokens for pb::ClusterStatusResponse {
    fn hide_lease_tokens(&mut self) {
        self.lease_token = 0;
    }
}

#[tonic::async_trait]
impl OrderQueue for OrderQueueService {
    async fn enqueue(
        &self,
        request: Request<pb::EnqueueRequest>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
        let role = self.clients.authorize(&request, Call::Enqueue)?;
        let answer = self.enqueue_order(request.into_inner()).await?;
        Ok(Response::new(shown_to(role, answer)))
    }

    async fn enqueue_batch(
        &self,
        request: Request<pb::EnqueueBatchRequest>,
    ) -> Result<Response<pb::EnqueueBatchResponse>, Status> {
        let role = self.clients.authorize(&request, Call::EnqueueBatch)?;
        let answer = self.enqueue_batch_of_orders(request.into_inner()).await?;
        Ok(Response::new(shown_to(role, answer)))
    }

    async fn campaign(
        &self,
        request: Request<pb::CampaignRequest>,
    ) -> Result<Response<pb::CampaignResponse>, Status> {
        self.clients.authorize(&request, Call::Campaign)?;
        Ok(Response::new(
            self.campaign_for_lease(request.into_inner()).await?,
        ))
    }

    async fn renew_lease(
        &self,
        request: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        self.clients.authorize(&request, Call::RenewLease)?;
        Ok(Response::new(self.renew(request.into_inner()).await?))
    }

    async fn resign(
        &self,
        request: Request<pb::ResignRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        self.clients.authorize(&request, Call::Resign)?;
        Ok(Response::new(
            self.resign_lease(request.into_inner()).await?,
        ))
    }

    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        let role = self.clients.authorize(&request, Call::Decide)?;
        let answer = self.decide_checkouts(request.into_inner()).await?;
        Ok(Response::new(shown_to(role, answer)))
    }

    async fn record_execution(
        &self,
        request: Request<pb::RecordExecutionRequest>,
    ) -> Result<Response<pb::RecordExecutionResponse>, Status> {
        self.clients.authorize(&request, Call::RecordExecution)?;
        Ok(Response::new(
            self.record_order_execution(request.into_inner()).await?,
        ))
    }

    async fn dequeue(
        &self,
        request: Request<pb::DequeueRequest>,
    ) -> Result<Response<pb::DequeueResponse>, Status> {
        self.clients.authorize(&request, Call::Dequeue)?;
        Ok(Response::new(
            self.dequeue_order(request.into_inner()).await?,
        ))
    }

    async fn acknowledge(
        &self,
        request: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::AcknowledgeResponse>, Status> {
        self.clients.authorize(&request, Call::Acknowledge)?;
        Ok(Response::new(
            self.acknowledge_order(request.into_inner()).await?,
        ))
    }

    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::GetOrderResponse>, Status> {
        let role = self.clients.authorize(&request, Call::GetOrder)?;
        let answer = self.find_order(request.into_inner()).await?;
        Ok(Response::new(shown_to(role, answer)))
    }

    async fn list_queue(
        &self,
        request: Request<pb::ListQueueRequest>,
    ) -> Result<Response<pb::ListQueueResponse>, Status> {
        let role = self.clients.authorize(&request, Call::ListQueue)?;
        let answer = self.list(request.into_inner()).await?;
        Ok(Response::new(shown_to(role, answer)))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.secret.check(&request)?;
        Ok(Response::new(self.add_member(request.into_inner()).await?))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.secret.check(&request)?;
        Ok(Response::new(
            self.remove_member(request.into_inner()).await?,
        ))
    }

    async fn cluster_status(
        &self,
        request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let role = self.clients.authorize(&request, Call::ClusterStatus)?;
        let request = request.into_inner();
        let leads = self.raft.metrics().borrow().state.is_leader();
        if request.confirm_leadership && leads {
            self.raft
                .ensure_linearizable()
                .await
                .map_err(RequestError::from)?;
        }
        let mut status = self.status().await;
        if request.with_state_digest {
            status.state_digest = self.state.read_queue(state_digest).await;
        }
        Ok(Response::new(shown_to(role, status)))
    }
}

/// A text of an order, refused past `max` bytes.
fn order_text(field: &'static str, text: String, max: usize) -> Result<String, RequestError> {
    if text.len() > max {
        return Err(RequestError::invalid(
            field,
            format!("at most {max} bytes, got {}", text.len()),
        ));
    }
    Ok(text)
}

/// The id and customer of `order`, checked against the queue's bounds: all a rejected order keeps.
fn order_id_and_customer(order: &mut pb::QueuedOrder) -> Result<(String, String), RequestError> {
    let size = prost::Message::encoded_len(order);
    if size > MAX_ORDER_BYTES {
        return Err(RequestError::invalid(
            "order",
            format!("at most {MAX_ORDER_BYTES} bytes encoded, got {size} bytes"),
        ));
    }
    let order_id = order_text(
        "order.order_id",
        required_text("order.order_id", std::mem::take(&mut order.order_id))?,
        MAX_ORDER_ID_BYTES,
    )?;
    let customer = order_text(
        "order.customer",
        std::mem::take(&mut order.customer),
        MAX_ORDER_TEXT_BYTES,
    )?;
    Ok((order_id, customer))
}

impl TryFrom<pb::QueuedOrder> for QueuedOrder {
    type Error = RequestError;

    /// Checks what the queue needs: an id, and 1 to [`MAX_ORDER_LINES`] lines of 1 to
    /// [`MAX_LINE_QUANTITY`] books each; and what it keeps: at most [`MAX_ORDER_BYTES`] in all,
    /// each text within its bound.
    fn try_from(mut order: pb::QueuedOrder) -> Result<Self, Self::Error> {
        let (order_id, customer) = order_id_and_customer(&mut order)?;
        if order.items.is_empty() || order.items.len() > MAX_ORDER_LINES {
            return Err(RequestError::invalid(
                "order.items",
                format!("1 to {MAX_ORDER_LINES} lines, got {}", order.items.len()),
            ));
        }
        if let Some(position) = order
            .items
            .iter()
            .position(|item| !(1..=MAX_LINE_QUANTITY).contains(&item.quantity))
        {
            return Err(RequestError::invalid(
                "order.items.quantity",
                format!(
                    "line {position} has quantity {}; every line needs 1 to {MAX_LINE_QUANTITY} \
                     books",
                    order.items[position].quantity
                ),
            ));
        }
        let items = order
            .items
            .into_iter()
            .map(|item| {
                Ok(OrderItem {
                    title: order_text("order.items.title", item.title, MAX_ORDER_TEXT_BYTES)?,
                    quantity: item.quantity,
                })
            })
            .collect::<Result<_, RequestError>>()?;
        Ok(QueuedOrder::new(order_id, customer, items))
    }
}

impl From<&OrderItem> for pb::QueueItem {
    fn from(item: &OrderItem) -> Self {
        pb::QueueItem {
            title: item.title.clone(),
            quantity: item.quantity,
        }
    }
}

impl From<&QueuedOrder> for pb::QueuedOrder {
    fn from(order: &QueuedOrder) -> Self {
        pb::QueuedOrder {
            order_id: order.order_id().to_owned(),
            customer: order.customer().to_owned(),
            items: order.items().iter().map(pb::QueueItem::from).collect(),
        }
    }
}

impl From<&OrderRecord> for pb::OrderState {
    fn from(record: &OrderRecord) -> Self {
        let mut state = pb::OrderState {
            order: Some(pb::QueuedOrder::from(&record.order)),
            phase: pb::OrderPhase::Queued as i32,
            priority: record.order.priority(),
            sequence: record.sequence,
            enqueued_at_ms: record.enqueued_at_ms,
            enqueued_at_queue_ms: record.enqueued_at_queue_ms,
            checkout: record.checkout.as_ref().map(|checkout| pb::CheckoutRecord {
                request: Some(pb::RequestDigest::from(&checkout.request)),
                suggestions: checkout
                    .suggestions
                    .iter()
                    .map(pb::SuggestedBook::from)
                    .collect(),
            }),
            execution: record.execution.as_ref().map(pb::ExecutionRecord::from),
            ..Default::default()
        };
        match &record.status {
            OrderStatus::Queued => {}
            OrderStatus::Executing {
                executor_id,
                token,
                since_ms,
            } => {
                state.phase = pb::OrderPhase::Executing as i32;
                state.executor_id = executor_id.clone();
                state.token = *token;
                state.since_ms = *since_ms;
            }
            OrderStatus::Executed {
                executor_id,
                token,
                at_ms,
            } => {
                state.phase = pb::OrderPhase::Executed as i32;
                state.acknowledged_token = *token;
                // The execution that counts is the recorded one, which an acknowledgement
                // requires; an executed order without one (none exists) shows its acknowledger.
                let (executed_by, executed_under, executed_at_ms) = match &record.execution {
                    Some(execution) => (&execution.executor_id, execution.token, execution.at_ms),
                    None => (executor_id, *token, *at_ms),
                };
                state.executor_id = executed_by.clone();
                state.token = executed_under;
                state.since_ms = executed_at_ms;
                state.executed_at_ms = executed_at_ms;
            }
            OrderStatus::Rejected { reasons, at_ms } => {
                state.phase = pb::OrderPhase::Rejected as i32;
                state.since_ms = *at_ms;
                state.reasons = reasons.iter().map(pb::RejectionReason::from).collect();
            }
        }
        state
    }
}

impl From<&Execution> for pb::ExecutionRecord {
    fn from(execution: &Execution) -> Self {
        pb::ExecutionRecord {
            executor_id: execution.executor_id.clone(),
            incarnation: execution.incarnation,
            token: execution.token,
            recorded_at_ms: execution.at_ms,
        }
    }
}

impl From<&RequestDigest> for pb::RequestDigest {
    fn from(digest: &RequestDigest) -> Self {
        pb::RequestDigest {
            body: digest.body.to_vec(),
            card: digest.card.map(|card| card.to_vec()).unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::RequestDigest> for RequestDigest {
    type Error = RequestError;

    /// Takes a 32-byte body digest and a card digest of 32 bytes or none.
    fn try_from(digest: pb::RequestDigest) -> Result<Self, Self::Error> {
        let body = <[u8; 32]>::try_from(digest.body.as_slice()).map_err(|_| {
            RequestError::invalid(
                "decision.request.body",
                format!("must be 32 bytes, got {}", digest.body.len()),
            )
        })?;
        let card = match digest.card.len() {
            0 => None,
            _ => Some(<[u8; 32]>::try_from(digest.card.as_slice()).map_err(|_| {
                RequestError::invalid(
                    "decision.request.card",
                    format!("must be 32 bytes or empty, got {}", digest.card.len()),
                )
            })?),
        };
        Ok(RequestDigest { body, card })
    }
}

impl From<&SuggestedBook> for pb::SuggestedBook {
    fn from(book: &SuggestedBook) -> Self {
        pb::SuggestedBook {
            book_id: book.book_id.clone(),
            title: book.title.clone(),
            author: book.author.clone(),
        }
    }
}

impl TryFrom<pb::SuggestedBook> for SuggestedBook {
    type Error = RequestError;

    fn try_from(book: pb::SuggestedBook) -> Result<Self, Self::Error> {
        Ok(SuggestedBook {
            book_id: kept_text("decision.approved.suggestions.book_id", book.book_id)?,
            title: kept_text("decision.approved.suggestions.title", book.title)?,
            author: kept_text("decision.approved.suggestions.author", book.author)?,
        })
    }
}

impl From<&RejectionReason> for pb::RejectionReason {
    fn from(reason: &RejectionReason) -> Self {
        pb::RejectionReason {
            service: reason.service.clone(),
            code: reason.code.clone(),
            field: reason.field.clone(),
            message: reason.message.clone(),
        }
    }
}

impl TryFrom<pb::RejectionReason> for RejectionReason {
    type Error = RequestError;

    fn try_from(reason: pb::RejectionReason) -> Result<Self, Self::Error> {
        Ok(RejectionReason {
            service: kept_text("decision.rejected.reasons.service", reason.service)?,
            code: kept_text("decision.rejected.reasons.code", reason.code)?,
            field: kept_text("decision.rejected.reasons.field", reason.field)?,
            message: kept_text("decision.rejected.reasons.message", reason.message)?,
        })
    }
}

impl TryFrom<pb::Decision> for Decision {
    type Error = RequestError;

    /// Checks what a record keeps: an approved order as an enqueue would, at most
    /// [`MAX_SUGGESTIONS`] suggestions; a rejection with 1 to [`MAX_REASONS`] reasons (the
    /// rejected order's lines are dropped); every kept text at most [`MAX_TEXT_BYTES`] bytes.
    fn try_from(decision: pb::Decision) -> Result<Self, Self::Error> {
        let order = decision
            .order
            .ok_or_else(|| RequestError::invalid("decision.order", "is required"))?;
        let request = RequestDigest::try_from(
            decision
                .request
                .ok_or_else(|| RequestError::invalid("decision.request", "is required"))?,
        )?;
        let (order, verdict) = match decision.verdict {
            Some(pb::decision::Verdict::Approved(approval)) => {
                if approval.suggestions.len() > MAX_SUGGESTIONS {
                    return Err(RequestError::invalid(
                        "decision.approved.suggestions",
                        format!(
                            "at most {MAX_SUGGESTIONS}, got {}",
                            approval.suggestions.len()
                        ),
                    ));
                }
                let suggestions = approval
                    .suggestions
                    .into_iter()
                    .map(SuggestedBook::try_from)
                    .collect::<Result<_, _>>()?;
                (
                    QueuedOrder::try_from(order)?,
                    Verdict::Approved { suggestions },
                )
            }
            Some(pb::decision::Verdict::Rejected(rejection)) => {
                if rejection.reasons.is_empty() || rejection.reasons.len() > MAX_REASONS {
                    return Err(RequestError::invalid(
                        "decision.rejected.reasons",
                        format!(
                            "1 to {MAX_REASONS} reasons, got {}",
                            rejection.reasons.len()
                        ),
                    ));
                }
                let reasons = rejection
                    .reasons
                    .into_iter()
                    .map(RejectionReason::try_from)
                    .collect::<Result<_, _>>()?;
                let mut order = order;
                let (order_id, customer) = order_id_and_customer(&mut order)?;
                let order = QueuedOrder::new(order_id, customer, Vec::new());
                (order, Verdict::Rejected { reasons })
            }
            None => {
                return Err(RequestError::invalid(
                    "decision.verdict",
                    "approved or rejected is required",
                ));
            }
        };
        Ok(Decision {
            order,
            request,
            verdict,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timeline;

    fn order(items: Vec<pb::QueueItem>) -> pb::QueuedOrder {
        pb::QueuedOrder {
            order_id: "o-1".into(),
            customer: "Ada".into(),
            items,
        }
    }

    fn line(quantity: u32) -> pb::QueueItem {
        pb::QueueItem {
            title: "Dune".into(),
            quantity,
        }
    }

    fn field_of(error: RequestError) -> &'static str {
        match error {
            RequestError::InvalidArgument { field, .. } => field,
            other => panic!("expected an invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn an_order_converts_with_its_priority() {
        let converted = QueuedOrder::try_from(order(vec![line(2), line(3)])).expect("valid");
        assert_eq!(converted.priority(), 5);
        assert_eq!(
            pb::QueuedOrder::from(&converted),
            order(vec![line(2), line(3)])
        );
    }

    #[test]
    fn bad_orders_are_refused_naming_the_field() {
        let no_id = pb::QueuedOrder {
            order_id: " ".into(),
            ..order(vec![line(1)])
        };
        assert_eq!(
            field_of(QueuedOrder::try_from(no_id).unwrap_err()),
            "order.order_id"
        );
        assert_eq!(
            field_of(QueuedOrder::try_from(order(vec![])).unwrap_err()),
            "order.items"
        );
        assert_eq!(
            field_of(QueuedOrder::try_from(order(vec![line(1), line(0)])).unwrap_err()),
            "order.items.quantity"
        );
    }

    #[test]
    fn orders_over_the_queue_bounds_are_refused_naming_the_field() {
        let long = |bytes: usize| "x".repeat(bytes);
        let titled = |title: String| pb::QueueItem { title, quantity: 1 };
        let at_every_bound = pb::QueuedOrder {
            order_id: long(MAX_ORDER_ID_BYTES),
            customer: long(MAX_ORDER_TEXT_BYTES),
            items: vec![
                pb::QueueItem {
                    title: long(MAX_ORDER_TEXT_BYTES),
                    quantity: MAX_LINE_QUANTITY,
                };
                MAX_ORDER_LINES
            ],
        };
        let kept = QueuedOrder::try_from(at_every_bound.clone()).expect("within every bound");
        assert_eq!(kept.priority(), MAX_LINE_QUANTITY * MAX_ORDER_LINES as u32);
        let cases = [
            (
                "order.order_id",
                pb::QueuedOrder {
                    order_id: long(MAX_ORDER_ID_BYTES + 1),
                    ..order(vec![line(1)])
                },
            ),
            (
                "order.customer",
                pb::QueuedOrder {
                    customer: long(MAX_ORDER_TEXT_BYTES + 1),
                    ..order(vec![line(1)])
                },
            ),
            (
                "order.items.title",
                order(vec![line(1), titled(long(MAX_ORDER_TEXT_BYTES + 1))]),
            ),
            ("order.items", order(vec![line(1); MAX_ORDER_LINES + 1])),
            (
                "order.items.quantity",
                order(vec![line(MAX_LINE_QUANTITY + 1)]),
            ),
            (
                "order",
                pb::QueuedOrder {
                    customer: long(MAX_ORDER_BYTES),
                    ..order(vec![line(1)])
                },
            ),
        ];
        for (field, bad) in cases {
            assert_eq!(field_of(QueuedOrder::try_from(bad).unwrap_err()), field);
        }
    }

    #[test]
    fn a_rejected_order_keeps_a_bounded_id_and_customer() {
        let rejection = |customer: String| pb::Decision {
            order: Some(pb::QueuedOrder {
                customer,
                ..order(Vec::new())
            }),
            request: Some(pb::RequestDigest {
                body: vec![1; 32],
                card: Vec::new(),
            }),
            verdict: Some(pb::decision::Verdict::Rejected(pb::Rejection {
                reasons: vec![pb::RejectionReason::default()],
            })),
        };
        assert!(Decision::try_from(rejection("Ada".into())).is_ok());
        let refused = Decision::try_from(rejection("x".repeat(MAX_ORDER_TEXT_BYTES + 1)));
        assert_eq!(field_of(refused.unwrap_err()), "order.customer");
    }

    #[test]
    fn lease_ttls_must_be_positive_and_sane() {
        assert_eq!(lease_ttl_ms(1).expect("valid"), 1);
        assert_eq!(field_of(lease_ttl_ms(0).unwrap_err()), "ttl_ms");
        let too_long = MAX_LEASE_TTL.as_millis() as u64 + 1;
        assert_eq!(field_of(lease_ttl_ms(too_long).unwrap_err()), "ttl_ms");
    }

    #[test]
    fn not_leader_carries_the_leader_in_metadata() {
        let status = Status::from(RequestError::NotLeader(ForwardToLeader {
            leader_id: Some(2),
            leader_node: Some(BasicNode::new("127.0.0.1:50062")),
        }));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            status.message(),
            "not the leader; the leader is node 2 at 127.0.0.1:50062"
        );
        let metadata = status.metadata();
        assert_eq!(
            metadata.get(LEADER_ID_METADATA_KEY).expect("metadata set"),
            "2"
        );
        assert_eq!(
            metadata
                .get(LEADER_ADDR_METADATA_KEY)
                .expect("metadata set"),
            "127.0.0.1:50062"
        );

        let unknown = Status::from(RequestError::NotLeader(ForwardToLeader::empty()));
        assert_eq!(unknown.code(), Code::FailedPrecondition);
        assert!(unknown.metadata().get(LEADER_ID_METADATA_KEY).is_none());
        assert!(unknown.metadata().get(LEADER_ADDR_METADATA_KEY).is_none());
    }

    #[test]
    fn a_stale_stamp_is_answered_unavailable_so_that_the_client_asks_again() {
        let status = Status::from(RequestError::from(CommandResponse::StaleStamp {
            stamped_term: 4,
            current_term: 5,
        }));
        assert_eq!(status.code(), Code::Unavailable);
        let unexpected = RequestError::from(CommandResponse::QueueEmpty);
        assert!(matches!(
            unexpected,
            RequestError::UnexpectedAnswer(answer) if *answer == CommandResponse::QueueEmpty
        ));
    }

    #[test]
    fn equal_states_have_equal_digests_and_a_change_shows() {
        let enqueue = |order_id: &str| Command::Enqueue {
            order: QueuedOrder::new(
                order_id.to_owned(),
                "Ada".to_owned(),
                vec![OrderItem {
                    title: "Emma".to_owned(),
                    quantity: 2,
                }],
            ),
            at: Stamp::new(
                Timeline {
                    term: 1,
                    incarnation: 1,
                    began_at_ms: 0,
                },
                1_000,
            ),
        };
        let (mut first, mut second) = (QueueState::default(), QueueState::default());
        for state in [&mut first, &mut second] {
            state.apply(&enqueue("a"));
        }
        assert_eq!(state_digest(&first), state_digest(&second));
        assert_eq!(state_digest(&first).len(), 64);
        second.apply(&enqueue("b"));
        assert_ne!(state_digest(&first), state_digest(&second));
    }

    #[test]
    fn an_executed_order_shows_the_execution_that_counts() {
        let record = OrderRecord {
            order: QueuedOrder::new(
                "o-1",
                "Ada",
                vec![OrderItem {
                    title: "Dune".into(),
                    quantity: 2,
                }],
            ),
            sequence: 7,
            // Recorded by executor-1 under token 3, which lost its lease; executor-2 found the
            // record and acknowledged it under token 4.
            status: OrderStatus::Executed {
                executor_id: "executor-2".into(),
                token: 4,
                at_ms: 1_000,
            },
            enqueued_at_ms: 500,
            enqueued_at_queue_ms: 120,
            checkout: None,
            execution: Some(Execution {
                executor_id: "executor-1".into(),
                incarnation: 77,
                token: 3,
                at_ms: 900,
            }),
        };
        let state = pb::OrderState::from(&record);
        assert_eq!(state.phase(), pb::OrderPhase::Executed);
        assert_eq!(
            (
                state.priority,
                state.sequence,
                state.token,
                state.executed_at_ms,
                state.acknowledged_token,
                state.enqueued_at_queue_ms
            ),
            (2, 7, 3, 900, 4, 120)
        );
        assert_eq!(state.executor_id, "executor-1");
        assert_eq!(
            state.execution.map(|execution| execution.incarnation),
            Some(77)
        );
    }

    fn reason(code: &str) -> pb::RejectionReason {
        pb::RejectionReason {
            service: "fraud-detection".into(),
            code: code.into(),
            field: "creditCard.number".into(),
            message: "too many".into(),
        }
    }

    fn decision(verdict: pb::decision::Verdict) -> pb::Decision {
        pb::Decision {
            order: Some(order(vec![line(2)])),
            request: Some(pb::RequestDigest {
                body: vec![1; 32],
                card: Vec::new(),
            }),
            verdict: Some(verdict),
        }
    }

    #[test]
    fn a_rejection_keeps_its_reasons_and_no_order_lines() {
        let rejected =
            Decision::try_from(decision(pb::decision::Verdict::Rejected(pb::Rejection {
                reasons: vec![reason("card_velocity")],
            })))
            .expect("valid");
        assert!(rejected.order.items().is_empty());
        assert_eq!(rejected.request.card, None);
        let mut state = QueueState::default();
        state.apply(&Command::Decide {
            at: Stamp::default(),
            decision: rejected,
        });
        let shown = pb::OrderState::from(state.order_status("o-1").expect("recorded"));
        assert_eq!(shown.phase(), pb::OrderPhase::Rejected);
        assert_eq!(shown.reasons, vec![reason("card_velocity")]);
        assert_eq!(
            shown.checkout.and_then(|checkout| checkout.request),
            Some(pb::RequestDigest {
                body: vec![1; 32],
                card: Vec::new()
            })
        );
    }

    #[test]
    fn decisions_beyond_what_a_record_keeps_are_refused_naming_the_field() {
        let too_many = pb::decision::Verdict::Rejected(pb::Rejection {
            reasons: vec![reason("r"); MAX_REASONS + 1],
        });
        assert_eq!(
            field_of(Decision::try_from(decision(too_many)).unwrap_err()),
            "decision.rejected.reasons"
        );
        let none = pb::decision::Verdict::Rejected(pb::Rejection { reasons: vec![] });
        assert_eq!(
            field_of(Decision::try_from(decision(none)).unwrap_err()),
            "decision.rejected.reasons"
        );
        let long = pb::decision::Verdict::Rejected(pb::Rejection {
            reasons: vec![pb::RejectionReason {
                message: "x".repeat(MAX_TEXT_BYTES + 1),
                ..reason("r")
            }],
        });
        assert_eq!(
            field_of(Decision::try_from(decision(long)).unwrap_err()),
            "decision.rejected.reasons.message"
        );
        let books = pb::decision::Verdict::Approved(pb::Approval {
            suggestions: vec![pb::SuggestedBook::default(); MAX_SUGGESTIONS + 1],
        });
        assert_eq!(
            field_of(Decision::try_from(decision(books)).unwrap_err()),
            "decision.approved.suggestions"
        );
        let mut short_digest = decision(pb::decision::Verdict::Approved(pb::Approval::default()));
        short_digest.request = Some(pb::RequestDigest {
            body: vec![1; 31],
            card: Vec::new(),
        });
        assert_eq!(
            field_of(Decision::try_from(short_digest).unwrap_err()),
            "decision.request.body"
        );
        let mut no_verdict = decision(pb::decision::Verdict::Approved(pb::Approval::default()));
        no_verdict.verdict = None;
        assert_eq!(
            field_of(Decision::try_from(no_verdict).unwrap_err()),
            "decision.verdict"
        );
    }

    #[test]
    fn a_holder_needs_an_id_and_an_incarnation() {
        assert_eq!(
            holder("executor-1".into(), 9).expect("valid"),
            Holder::new("executor-1", 9)
        );
        assert_eq!(field_of(holder(" ".into(), 9).unwrap_err()), "executor_id");
        assert_eq!(
            field_of(holder("executor-1".into(), 0).unwrap_err()),
            "incarnation"
        );
    }

    fn any_order() -> impl proptest::strategy::Strategy<Value = pb::QueuedOrder> {
        use proptest::prelude::*;
        let quantity = prop_oneof![Just(0u32), 1..5u32, Just(u32::MAX), any::<u32>()];
        let items = proptest::collection::vec(
            (".{0,8}", quantity).prop_map(|(title, quantity)| pb::QueueItem { title, quantity }),
            0..6,
        );
        (
            prop_oneof![Just(String::new()), Just("  ".to_owned()), ".{0,12}"],
            ".{0,8}",
            items,
        )
            .prop_map(|(order_id, customer, items)| pb::QueuedOrder {
                order_id,
                customer,
                items,
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any order a client sends converts or is refused naming its field; what converts keeps
        /// every field, and its priority is the sum of the quantities, saturating instead of
        /// overflowing.
        #[test]
        fn any_order_converts_or_is_refused_naming_the_field(sent in any_order()) {
            match QueuedOrder::try_from(sent.clone()) {
                Ok(order) => {
                    let total: u64 = sent.items.iter().map(|item| u64::from(item.quantity)).sum();
                    let expected = u32::try_from(total).unwrap_or(u32::MAX);
                    proptest::prop_assert_eq!(order.priority(), expected);
                    proptest::prop_assert_eq!(pb::QueuedOrder::from(&order), sent);
                }
                Err(error) => {
                    let field = field_of(error);
                    let expected = if sent.order_id.trim().is_empty() {
                        "order.order_id"
                    } else if sent.items.is_empty() {
                        "order.items"
                    } else {
                        "order.items.quantity"
                    };
                    proptest::prop_assert_eq!(field, expected);
                }
            }
        }

        #[test]
        fn any_lease_ttl_is_in_range_or_refused(ttl_ms in proptest::prelude::any::<u64>()) {
            match lease_ttl_ms(ttl_ms) {
                Ok(accepted) => {
                    proptest::prop_assert_eq!(accepted, ttl_ms);
                    proptest::prop_assert!(ttl_ms > 0 && u128::from(ttl_ms) <= MAX_LEASE_TTL.as_millis());
                }
                Err(error) => proptest::prop_assert_eq!(field_of(error), "ttl_ms"),
            }
        }
    }
}
