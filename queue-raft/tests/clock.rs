//! Clock faults on three real `queue-node` processes, injected through each node's clock offset
//! file (`--clock-offset-file`): wall clocks skewed by seconds between nodes that lead in turn,
//! and a node's wall clock jumping forward or back. The executors are played by this test through
//! the client, so that every grant is seen the moment it is answered.
//!
//! What must hold, whatever the wall clocks say:
//! - safety: no executor is granted the lease while the previous holder may still rely on it by
//!   its own reckoning, which is the executor's (`executor::election::ConfirmedLease`): nine
//!   tenths of the TTL from the moment it asked, on its monotonic clock;
//! - liveness: a lease whose holder stopped renewing ends about a TTL later (plus an election
//!   when the leader changes), not after a clock has caught up with a jump.

mod common;

use std::time::Duration;

use common::cluster::{Cluster, NODE_IDS, wait_for};
use queue_raft::{Holder, QueueClient};
use tokio::time::Instant;

const ELECTION: Duration = Duration::from_secs(20);
/// The part of its TTL an executor relies on, counted from when it asked.
const RELIED_ON_TENTHS: u32 = 9;

/// Campaigns for `executor_id` until it is granted; returns when the grant was answered and its
/// token.
async fn campaign_until_granted(
    client: &QueueClient,
    executor_id: &str,
    ttl: Duration,
    timeout: Duration,
) -> (Instant, u64) {
    wait_for(timeout, "the lease to be granted", || async {
        let answer = client
            .campaign(&Holder::new(executor_id, 1), ttl)
            .await
            .ok()?;
        answer.granted.then(|| (Instant::now(), answer.token))
    })
    .await
}

/// The other nodes' clocks run 10 s ahead of the leader's. The leader grants a lease, then dies;
/// the next leader must not hand the lease to another executor while the first still relies on
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_with_a_skewed_clock_grants_no_lease_its_holder_still_relies_on() {
    const TTL: Duration = Duration::from_secs(4);
    const SKEW_MS: i64 = 10_000;
    let mut cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    for id in NODE_IDS.into_iter().filter(|id| *id != leader) {
        cluster.set_clock_offset(id, SKEW_MS);
    }
    let client = cluster.client();

    let asked_at = Instant::now();
    let first = client
        .campaign(&Holder::new("executor-1", 1), TTL)
        .await
        .expect("campaign of executor-1");
    assert!(first.granted, "executor-1 was refused: {first:?}");
    let relied_on_until = asked_at + TTL * RELIED_ON_TENTHS / 10;
    cluster.kill(leader);

    let (granted_at, token) =
        campaign_until_granted(&client, "executor-2", TTL, Duration::from_secs(30)).await;
    assert!(token > first.token, "tokens grow with each grant");
    eprintln!(
        "executor-2 was granted the lease {:?} after executor-1 asked for it",
        granted_at - asked_at
    );
    assert!(
        granted_at >= relied_on_until,
        "executor-2 was granted token {token} {:?} after executor-1 asked for its lease of \
         {TTL:?}, while executor-1 relies on it for another {:?}",
        granted_at - asked_at,
        relied_on_until - granted_at
    );
}

/// The leader's clock jumps 20 s forward, it grants a 1 s lease, then dies. The holder never
/// renews: the lease must end about a TTL after the next leader took over, not once the other
/// clocks have caught up with the jump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_jump_of_a_leaders_clock_does_not_hold_the_lease_after_it_stops_leading() {
    const TTL: Duration = Duration::from_secs(1);
    const JUMP_MS: i64 = 20_000;
    let mut cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    cluster.set_clock_offset(leader, JUMP_MS);
    let client = cluster.client();

    let (first_at, first) =
        campaign_until_granted(&client, "executor-1", TTL, Duration::from_secs(10)).await;
    cluster.kill(leader);
    let (second_at, second) =
        campaign_until_granted(&client, "executor-2", TTL, Duration::from_secs(60)).await;
    assert!(second > first);
    let waited = second_at - first_at;
    eprintln!("executor-2 was granted the lease {waited:?} after executor-1");
    assert!(
        waited < Duration::from_millis(JUMP_MS.unsigned_abs() / 2),
        "a lease of {TTL:?} that nobody renewed ended only {waited:?} after it was granted: the \
         jump of {JUMP_MS} ms on the leader that granted it held it"
    );
}

/// The leader's clock jumps 20 s back after granting a 1 s lease, and it goes on leading. The
/// holder never renews: the lease must end about a TTL later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backward_jump_of_the_leaders_clock_does_not_hold_the_lease() {
    const TTL: Duration = Duration::from_secs(1);
    const JUMP_MS: i64 = -20_000;
    let cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;
    let client = cluster.client();

    let (first_at, first) =
        campaign_until_granted(&client, "executor-1", TTL, Duration::from_secs(10)).await;
    cluster.set_clock_offset(leader, JUMP_MS);
    let (second_at, second) =
        campaign_until_granted(&client, "executor-2", TTL, Duration::from_secs(60)).await;
    assert!(second > first);
    let waited = second_at - first_at;
    eprintln!("executor-2 was granted the lease {waited:?} after executor-1");
    assert!(
        waited < Duration::from_millis(JUMP_MS.unsigned_abs() / 2),
        "a lease of {TTL:?} that nobody renewed ended only {waited:?} after it was granted: the \
         leader's clock jumped back {} ms",
        JUMP_MS.unsigned_abs()
    );
}
