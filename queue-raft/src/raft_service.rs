//! Inbound Raft RPC: the gRPC service `RaftTransport` (proto/raft.proto), which hands each
//! request to this node's openraft and sends back its answer.
//!
//! Requests are the bincode of openraft's request types; answers are the bincode of
//! `Result<Response, RaftError>` so that the caller's openraft gets the typed error
//! ([`crate::network`] is the other side). A payload that does not decode is answered with
//! `INVALID_ARGUMENT`; nothing a peer sends can make this service panic.
//!
//! The service is served behind the cluster secret ([`RaftTransportService::into_guarded_server`]):
//! a call without it is answered `UNAUTHENTICATED` before openraft sees it, so a process outside
//! the cluster can neither append, nor win a vote, nor raise a node's term.

use bookstore_proto::RaftPayload;
use bookstore_proto::raft_transport_server::{RaftTransport, RaftTransportServer};
use openraft::Raft;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::TypeConfig;
use crate::auth::ClusterSecret;
use crate::network::MAX_RAFT_MESSAGE_BYTES;

/// Serves the Raft RPCs of one node. Clones of `Raft` are handles to the same node.
#[derive(Clone)]
pub struct RaftTransportService {
    raft: Raft<TypeConfig>,
}

impl RaftTransportService {
    pub fn new(raft: Raft<TypeConfig>) -> Self {
        Self { raft }
    }

    /// The tonic server for this service, with message limits raised for snapshot chunks and
    /// large appends.
    pub fn into_server(self) -> RaftTransportServer<Self> {
        RaftTransportServer::new(self)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
    }

    /// [`Self::into_server`] refusing every call that does not present `secret`.
    pub fn into_guarded_server(
        self,
        secret: ClusterSecret,
    ) -> InterceptedService<RaftTransportServer<Self>, ClusterSecret> {
        InterceptedService::new(self.into_server(), secret)
    }
}

fn decode<T: DeserializeOwned>(what: &str, request: Request<RaftPayload>) -> Result<T, Status> {
    crate::codec::decode(&request.into_inner().data).map_err(|error| {
        Status::invalid_argument(format!("cannot decode the {what} request: {error}"))
    })
}

fn encode<T: Serialize>(answer: &T) -> Result<Response<RaftPayload>, Status> {
    crate::codec::encode(answer)
        .map(|data| Response::new(RaftPayload { data }))
        .map_err(|error| Status::internal(format!("cannot encode the Raft answer: {error}")))
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode("append-entries", request)?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode("vote", request)?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode("install-snapshot", request)?;
        encode(&self.raft.install_snapshot(rpc).await)
    }
}
