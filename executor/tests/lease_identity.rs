//! A lease belongs to one executor process, never to an executor id: a campaign never hands a
//! caller an old token back, so a restarted executor that read a stale "free" lease cannot
//! resume its previous run's lease and take that run's order again, and two processes started
//! with one id never hold a lease together.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bookstore_common::testing::Service;
use common::cluster::{Cluster, wait_for};
use common::enqueue_orders;
use queue_raft::{Holder, Role};

/// The first run of `executor-1` takes an order and dies holding it. Its next run, having read
/// the lease as free (the status read is not linearizable: during a queue leader change it can
/// be stale), campaigns at once: it must not get the lease, and so not the order, while the
/// first run's lease lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_executor_that_read_a_stale_lease_never_takes_its_old_order_again() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    enqueue_orders(&client, 2).await;
    let ttl = Duration::from_secs(2);
    let (run_1, run_2) = (Holder::new("executor-1", 1), Holder::new("executor-1", 2));

    let first_run = client.campaign(&run_1, ttl).await.expect("campaign");
    assert!(first_run.granted, "{first_run:?}");
    let taken = client
        .dequeue(&run_1, first_run.token)
        .await
        .expect("dequeue")
        .order
        .expect("an order");

    let second_run = client.campaign(&run_2, ttl).await.expect("campaign");
    assert!(
        !second_run.granted,
        "the next run was granted token {} (the first run's was {}) while the first run's \
         lease still held order {}",
        second_run.token, first_run.token, taken.order_id
    );

    // Nor can it act with the first run's token, which the cluster's status shows.
    let stale = client
        .dequeue(&run_2, first_run.token)
        .await
        .expect("dequeue answered");
    assert!(!stale.accepted && stale.order.is_none(), "{stale:?}");

    // Once the first run's lease has expired the next run gets a lease of its own, and the
    // order back from the queue under it.
    let own = wait_for(Duration::from_secs(10), "a lease of its own", || {
        let (client, run_2) = (client.clone(), run_2.clone());
        async move {
            let answer = client.campaign(&run_2, ttl).await.ok()?;
            answer.granted.then_some(answer)
        }
    })
    .await;
    assert!(own.token > first_run.token, "{own:?}");
    let again = client
        .dequeue(&run_2, own.token)
        .await
        .expect("dequeue")
        .order
        .expect("the order is back");
    assert_eq!(again.order_id, taken.order_id);
}

/// Two `order-executor` processes started with one id, and nothing else: each lease is one
/// process's. No token is granted to both, no process loses its lease to the other, and every
/// order is taken once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_with_one_executor_id_never_share_a_lease() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    let orders = enqueue_orders(&client, 8).await;
    let ledger = tempfile::tempdir().expect("temporary ledger directory");
    let args = vec![
        "--id=executor-1".to_owned(),
        format!("--queue-nodes={}", cluster.addrs().join(",")),
        format!(
            "--queue-token-file={}",
            cluster.token_file(Role::Executor).display()
        ),
        "--lease-ttl-ms=3000".to_owned(),
        "--execution-ms=300".to_owned(),
        "--backoff-after-lead-ms=50".to_owned(),
        "--poll-ms=10".to_owned(),
        format!(
            "--ledger={}",
            ledger.path().join("executions.jsonl").display()
        ),
    ];
    let processes: Vec<Service> = (0..2)
        .map(|_| tokio::task::block_in_place(|| Service::start("order-executor", &args)))
        .collect();

    let count = orders.len() as u64;
    wait_for(
        Duration::from_secs(60),
        "every order to be executed",
        || {
            let client = client.clone();
            async move {
                client
                    .cluster_status_all()
                    .await
                    .into_iter()
                    .filter_map(|(_, status)| status.ok())
                    .any(|status| status.role == "leader" && status.executed_count >= count)
                    .then_some(())
            }
        },
    )
    .await;

    let logs: Vec<Vec<serde_json::Value>> = processes
        .iter()
        .map(|process| {
            process
                .log_lines()
                .iter()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect()
        })
        .collect();
    let mut granted_to: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    let mut dequeued: BTreeMap<String, usize> = BTreeMap::new();
    for (process, lines) in logs.iter().enumerate() {
        for line in lines {
            match line["message"].as_str() {
                Some("lease granted") => {
                    let token = line["token"].as_u64().expect("a token");
                    granted_to.entry(token).or_default().insert(process);
                }
                Some("order dequeued") => {
                    let order_id = line["order_id"].as_str().expect("an order id");
                    *dequeued.entry(order_id.to_owned()).or_default() += 1;
                }
                Some("lease lost; order abandoned") => {
                    panic!("process {process} lost its lease to the other: {line}")
                }
                _ => {}
            }
        }
    }
    for (token, holders) in &granted_to {
        assert_eq!(
            holders.len(),
            1,
            "token {token} was granted to both processes"
        );
    }
    for (order_id, times) in &dequeued {
        assert_eq!(*times, 1, "{order_id} was taken {times} times");
    }
    assert_eq!(dequeued.len(), orders.len());
}
