//! Outbound Raft RPC: openraft's `RaftNetworkFactory` and `RaftNetwork` over the gRPC service
//! `RaftTransport` (proto/raft.proto).
//!
//! Each payload is the bincode 1.3 of an openraft request; the answer's payload is the bincode of
//! `Result<Response, RaftError>`, so a remote node's typed error reaches this node's openraft as
//! the same type ([`crate::raft_service`] is the other side).
//!
//! Failures are sorted the way openraft wants them: a peer that cannot be reached (refused, reset,
//! down) is `Unreachable`, which makes openraft back off; an RPC that outlives the `RPCOption`'s
//! hard deadline is `Timeout`; anything else on the wire is `Network`, retried at once.
//!
//! Every RPC carries the cluster secret ([`crate::auth`]); a peer with another secret refuses
//! it `UNAUTHENTICATED`, a `Network` error here, so the two never exchange Raft state.

use std::collections::HashMap;
use std::time::Duration;

use bookstore_proto::RaftPayload;
use bookstore_proto::raft_transport_client::RaftTransportClient;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, RPCTypes};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::auth::ClusterSecret;
use crate::{NodeId, TypeConfig};

/// The largest Raft message either way. A snapshot travels in chunks of openraft's
/// `snapshot_max_chunk_size` (3 MiB by default) and appends are batched by
/// `max_payload_entries`, so this only has to leave room above those.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How long to wait for a TCP connection to a peer before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long openraft waits before retrying a peer that was unreachable. openraft's default is
/// 500 ms; a restarted peer is found again sooner with this, and on loopback a refused connection
/// costs next to nothing.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(200);

/// Builds one [`PeerClient`] per target for openraft. Owned by the Raft core; lives as long as
/// the node's `Raft`.
#[derive(Debug)]
pub struct GrpcNetworkFactory {
    /// This node, named in the timeouts it reports.
    local_id: NodeId,
    /// Presented to every peer.
    secret: ClusterSecret,
    /// One channel per peer, made on first use and reused whenever openraft asks for a client
    /// again (it does on every leadership change). A channel connects lazily and reconnects by
    /// itself after the peer restarts. Replaced only if the peer's address changes.
    channels: HashMap<NodeId, (String, Channel)>,
}

impl GrpcNetworkFactory {
    pub fn new(local_id: NodeId, secret: ClusterSecret) -> Self {
        Self {
            local_id,
            secret,
            channels: HashMap::new(),
        }
    }

    fn channel(&mut self, target: NodeId, addr: &str) -> Result<Channel, tonic::transport::Error> {
        if let Some((known_addr, channel)) = self.channels.get(&target)
            && known_addr == addr
        {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        self.channels
            .insert(target, (addr.to_owned(), channel.clone()));
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        let client = self.channel(target, &node.addr).map(|channel| {
            RaftTransportClient::new(channel)
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        });
        PeerClient {
            local_id: self.local_id,
            target,
            node: node.clone(),
            secret: self.secret.clone(),
            client: client.map_err(|error| error.to_string()),
        }
    }
}

/// The Raft RPCs to one peer. Dropped by openraft when replication to that peer stops.
#[derive(Debug)]
pub struct PeerClient {
    local_id: NodeId,
    target: NodeId,
    node: BasicNode,
    secret: ClusterSecret,
    /// The peer's client, or why its address is not a usable URI; in the latter case every RPC
    /// answers `Unreachable`, and openraft keeps backing off.
    client: Result<RaftTransportClient<Channel>, String>,
}

/// Which of the three RPCs, to pick the gRPC method and name the action in a timeout.
#[derive(Debug, Clone, Copy)]
enum RaftRpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftRpc {
    fn rpc_type(self) -> RPCTypes {
        match self {
            RaftRpc::AppendEntries => RPCTypes::AppendEntries,
            RaftRpc::Vote => RPCTypes::Vote,
            RaftRpc::InstallSnapshot => RPCTypes::InstallSnapshot,
        }
    }
}

impl PeerClient {
    /// Sends `request` as `rpc` and decodes the peer's `Result<Resp, RaftError<E>>`.
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: RaftRpc,
        request: &Req,
        option: RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(reason) => {
                let reason = format!("bad address {:?}: {reason}", self.node.addr);
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(reason),
                )));
            }
        };
        let data = crate::codec::encode(request)
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        let mut grpc_request = tonic::Request::new(RaftPayload { data });
        grpc_request.set_timeout(option.hard_ttl());
        self.secret.attach(&mut grpc_request);
        let sent = async {
            match rpc {
                RaftRpc::AppendEntries => client.append_entries(grpc_request).await,
                RaftRpc::Vote => client.vote(grpc_request).await,
                RaftRpc::InstallSnapshot => client.install_snapshot(grpc_request).await,
            }
        };
        let timeout = || {
            RPCError::Timeout(Timeout {
                action: rpc.rpc_type(),
                id: self.local_id,
                target: self.target,
                timeout: option.hard_ttl(),
            })
        };
        let response = match tokio::time::timeout(option.hard_ttl(), sent).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) if status.code() == Code::DeadlineExceeded => return Err(timeout()),
            Ok(Err(status)) => return Err(status_to_rpc_error(&status)),
            Err(_elapsed) => return Err(timeout()),
        };
        let answer: Result<Resp, RaftError<NodeId, E>> = crate::codec::decode(&response.data)
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        answer.map_err(|error| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                error,
            ))
        })
    }
}

/// A failed gRPC call as openraft should see it: the peer down, the connection broken or the
/// peer refusing this node's cluster secret is `Unreachable` (back off), the rest is a `Network`
/// error (retry).
fn status_to_rpc_error<E: std::error::Error>(
    status: &Status,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    let error = AnyError::error(format!("{:?}: {}", status.code(), status.message()));
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Unauthenticated => {
            RPCError::Unreachable(Unreachable::from(error))
        }
        _ => RPCError::Network(NetworkError::from(error)),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RaftRpc::AppendEntries, &rpc, option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RaftRpc::InstallSnapshot, &rpc, option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RaftRpc::Vote, &rpc, option).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}
