//! An executor whose lease ended (resigned, or expired and taken over) and that still acts with
//! its old token is refused: it can neither dequeue, nor record an execution, nor acknowledge,
//! nor renew. The test acts as the executors itself, through the queue client.

mod common;

use std::time::Duration;

use bookstore_proto as pb;
use common::cluster::{Cluster, wait_for};
use common::enqueue_orders;
use queue_raft::Holder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resigned_or_expired_executor_is_refused_with_its_old_token() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    enqueue_orders(&client, 2).await;
    let resigned_executor = Holder::new("resigned-executor", 1);
    let expired_executor = Holder::new("expired-executor", 2);
    let next_executor = Holder::new("next-executor", 3);

    // Resigned: the order it held goes back to the queue, and its token is dead.
    let first = client
        .campaign(&resigned_executor, Duration::from_secs(10))
        .await
        .expect("campaign");
    assert!(first.granted);
    let order = client
        .dequeue(&resigned_executor, first.token)
        .await
        .expect("dequeue")
        .order
        .expect("an order");
    let resigned = client
        .resign(&resigned_executor, first.token)
        .await
        .expect("resign");
    assert!(resigned.accepted);
    assert_eq!(resigned.requeued_order_id, order.order_id);

    let dequeue = client
        .dequeue(&resigned_executor, first.token)
        .await
        .expect("dequeue answered");
    assert!(!dequeue.accepted && dequeue.order.is_none(), "{dequeue:?}");
    let record = client
        .record_execution(&resigned_executor, first.token, &order.order_id)
        .await
        .expect("record answered");
    assert!(!record.recorded && record.execution.is_none(), "{record:?}");
    let acknowledge = client
        .acknowledge(&resigned_executor, first.token, &order.order_id)
        .await
        .expect("acknowledge answered");
    assert!(!acknowledge.accepted, "{acknowledge:?}");
    assert!(!acknowledge.refusal.is_empty());
    let renew = client
        .renew_lease(&resigned_executor, first.token, Duration::from_secs(10))
        .await
        .expect("renew answered");
    assert!(!renew.accepted, "{renew:?}");
    let state = client
        .get_order(&order.order_id)
        .await
        .expect("get order")
        .expect("known order");
    assert_eq!(state.phase, pb::OrderPhase::Queued as i32);

    // Expired: another executor is granted the lease once it ran out, and the old holder's
    // token is refused even though it never resigned.
    let second = client
        .campaign(&expired_executor, Duration::from_millis(300))
        .await
        .expect("campaign");
    assert!(second.granted && second.token > first.token, "{second:?}");
    let taken = client
        .dequeue(&expired_executor, second.token)
        .await
        .expect("dequeue")
        .order
        .expect("an order");
    assert_eq!(
        taken.order_id, order.order_id,
        "the requeued order comes first"
    );
    let third = wait_for(
        Duration::from_secs(10),
        "the expired lease to be granted again",
        || {
            let (client, next_executor) = (client.clone(), next_executor.clone());
            async move {
                let answer = client
                    .campaign(&next_executor, Duration::from_secs(10))
                    .await
                    .ok()?;
                answer.granted.then_some(answer)
            }
        },
    )
    .await;
    assert!(third.token > second.token);

    let dequeue = client
        .dequeue(&expired_executor, second.token)
        .await
        .expect("dequeue answered");
    assert!(!dequeue.accepted, "{dequeue:?}");
    assert_eq!(dequeue.current_token, third.token);
    let acknowledge = client
        .acknowledge(&expired_executor, second.token, &taken.order_id)
        .await
        .expect("acknowledge answered");
    assert!(!acknowledge.accepted, "{acknowledge:?}");
    assert_eq!(acknowledge.current_token, third.token);

    // The order went back to the queue when the lease expired; the new holder executes it.
    let retaken = client
        .dequeue(&next_executor, third.token)
        .await
        .expect("dequeue")
        .order
        .expect("the order is back");
    assert_eq!(retaken.order_id, taken.order_id);
    let stale_record = client
        .record_execution(&expired_executor, second.token, &taken.order_id)
        .await
        .expect("record answered");
    assert!(!stale_record.recorded, "{stale_record:?}");
    assert_eq!(stale_record.current_token, third.token);
    let recorded = client
        .record_execution(&next_executor, third.token, &taken.order_id)
        .await
        .expect("record");
    assert!(recorded.recorded, "{recorded:?}");
    let acknowledged = client
        .acknowledge(&next_executor, third.token, &taken.order_id)
        .await
        .expect("acknowledge");
    assert!(acknowledged.accepted, "{acknowledged:?}");
    let late = client
        .acknowledge(&expired_executor, second.token, &taken.order_id)
        .await
        .expect("acknowledge answered");
    assert!(
        !late.accepted,
        "a stale token acknowledged an executed order: {late:?}"
    );
    let state = client
        .get_order(&taken.order_id)
        .await
        .expect("get order")
        .expect("known order");
    assert_eq!(
        (state.phase, state.executor_id.as_str(), state.token),
        (
            pb::OrderPhase::Executed as i32,
            "next-executor",
            third.token
        )
    );
}
