//! etcd's side of the comparison: KV `Put`s of values of the payload size under keys unique to
//! the run, over etcd's own gRPC API (`bookstore_proto::etcdserverpb`, wire-compatible with
//! etcd v3).
//!
//! Sent as our client sends enqueues: to the leader (a follower forwards a put to the leader,
//! which costs it a hop our queue is not charged either), over one HTTP/2 channel that every
//! client task shares. [`connect_to_leader`] asks each member for its status, whose header names
//! the member and whose `leader` field names the leader it knows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bookstore_proto::etcdserverpb::kv_client::KvClient;
use bookstore_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use bookstore_proto::etcdserverpb::{PutRequest, StatusRequest};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::driver::chain;
use crate::{BenchError, Operation};

/// How long one status call or connection attempt may take while looking for the leader.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the members are asked again while none knows a leader (an election is running).
const LEADER_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Puts new keys through one shared channel to the etcd leader.
pub struct EtcdPut {
    /// On the one channel to the leader, which every clone shares; the connection closes when
    /// the last clone is dropped.
    kv: KvClient<Channel>,
    /// Unique per run, so that every put creates a key (and a revision) of its own.
    run: String,
    value: Vec<u8>,
}

impl EtcdPut {
    /// Puts of `value_bytes`-byte values over `channel` (see [`connect_to_leader`]).
    pub fn new(channel: Channel, value_bytes: usize) -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            kv: KvClient::new(channel),
            run: format!(
                "bench-{:x}-{:04x}",
                since_epoch.as_millis(),
                rand::random::<u16>()
            ),
            value: vec![b'x'; value_bytes],
        }
    }

    /// The put of request `sequence` of client task `client`.
    fn request(&self, client: usize, sequence: u64) -> PutRequest {
        PutRequest {
            key: key(&self.run, client, sequence).into_bytes(),
            value: self.value.clone(),
            ..PutRequest::default()
        }
    }
}

fn key(run: &str, client: usize, sequence: u64) -> String {
    format!("/bench/{run}/{client}/{sequence}")
}

impl Operation for EtcdPut {
    type Error = tonic::Status;

    fn payload_bytes(&self) -> usize {
        self.value.len()
    }

    async fn call(&self, client: usize, sequence: u64) -> Result<(), tonic::Status> {
        // A client is a handle on the shared channel: cloning it opens no connection.
        let mut kv = self.kv.clone();
        kv.put(self.request(client, sequence)).await.map(|_| ())
    }
}

/// One member's view, for finding the leader and for saying why none was found.
struct MemberView {
    endpoint: String,
    channel: Channel,
    member_id: u64,
    leader: u64,
}

/// A channel to the member that leads the cluster of `endpoints` (`host:port` or URLs), found by
/// asking each member for its status; waits up to `timeout` for an election to end.
pub async fn connect_to_leader(
    endpoints: &[String],
    timeout: Duration,
) -> Result<(String, Channel), BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut views = Vec::new();
        let mut failures = Vec::new();
        for endpoint in endpoints {
            match member_view(endpoint).await {
                Ok(view) => views.push(view),
                Err(error) => failures.push(error.to_string()),
            }
        }
        let leader = views.iter().find(|view| {
            views
                .iter()
                .any(|other| other.leader != 0 && other.leader == view.member_id)
        });
        if let Some(leader) = leader {
            return Ok((leader.endpoint.clone(), leader.channel.clone()));
        }
        if Instant::now() >= deadline {
            let mut state: Vec<String> = views
                .iter()
                .map(|view| {
                    format!(
                        "{} is member {:x}, knows leader {:x}",
                        view.endpoint, view.member_id, view.leader
                    )
                })
                .collect();
            state.extend(failures);
            return Err(BenchError::NoEtcdLeader {
                waited: timeout,
                state: state.join("; "),
            });
        }
        tokio::time::sleep(LEADER_POLL_INTERVAL).await;
    }
}

/// Connects to `endpoint` and asks it for its status.
async fn member_view(endpoint: &str) -> Result<MemberView, BenchError> {
    let uri = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    let channel = Endpoint::from_shared(uri)
        .map_err(|source| BenchError::EtcdEndpoint {
            endpoint: endpoint.to_owned(),
            source,
        })?
        .connect_timeout(STATUS_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|error| BenchError::EtcdConnect {
            endpoint: endpoint.to_owned(),
            reason: chain(&error),
        })?;
    let mut request = tonic::Request::new(StatusRequest {});
    request.set_timeout(STATUS_TIMEOUT);
    let status = MaintenanceClient::new(channel.clone())
        .status(request)
        .await
        .map_err(|status| BenchError::EtcdStatus {
            endpoint: endpoint.to_owned(),
            status,
        })?
        .into_inner();
    Ok(MemberView {
        endpoint: endpoint.to_owned(),
        channel,
        member_id: status.header.map_or(0, |header| header.member_id),
        leader: status.leader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_unique_per_client_and_sequence_and_values_have_the_payload_size() {
        let channel = Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let put = EtcdPut::new(channel, 256);
        assert_eq!(put.payload_bytes(), 256);
        let request = put.request(3, 41);
        assert_eq!(request.value.len(), 256);
        assert_eq!((request.lease, request.prev_kv), (0, false));
        assert_ne!(put.request(1, 12).key, put.request(11, 2).key);
        assert_ne!(put.request(1, 2).key, put.request(2, 1).key);
        assert!(String::from_utf8_lossy(&request.key).ends_with("/3/41"));
    }
}
