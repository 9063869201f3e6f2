//! What the queue keeps of an order is bounded, and a too-large order is refused alone: three
//! real nodes, one client, and many concurrent enqueues and decisions of every size.

mod common;

use bookstore_proto as pb;
use common::cluster::Cluster;
use queue_raft::{ClientError, QueueClient};

/// An order of `lines` lines whose customer and titles are `text_bytes` bytes each.
fn sized_order(order_id: &str, lines: usize, text_bytes: usize) -> pb::QueuedOrder {
    pb::QueuedOrder {
        order_id: order_id.to_owned(),
        customer: "c".repeat(text_bytes),
        items: (0..lines)
            .map(|_| pb::QueueItem {
                title: "t".repeat(text_bytes),
                quantity: 1,
            })
            .collect(),
    }
}

fn rejection(order: pb::QueuedOrder) -> pb::Decision {
    pb::Decision {
        order: Some(order),
        request: Some(pb::RequestDigest {
            body: vec![7; 32],
            card: Vec::new(),
        }),
        verdict: Some(pb::decision::Verdict::Rejected(pb::Rejection {
            reasons: vec![pb::RejectionReason {
                service: "transaction-verification".into(),
                code: "items_empty".into(),
                field: "items".into(),
                message: "no items".into(),
            }],
        })),
    }
}

fn assert_refused_as_too_large<T: std::fmt::Debug>(what: &str, answer: Result<T, ClientError>) {
    match answer {
        Err(ClientError::InvalidArgument(message)) => {
            assert!(message.contains("bytes"), "{what}: {message}")
        }
        other => panic!("{what}: expected a refusal naming its size, got {other:?}"),
    }
}

/// Hundreds of enqueues at once: small orders, orders as large as the queue keeps, and orders
/// over the queue's bound. Every order within the bound is enqueued, however many large ones
/// share its moment (the client's calls stay under the server's message limit), and each order
/// over the bound is refused alone, naming its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_too_large_order_is_refused_alone_and_never_fails_the_others() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    // Within the bound: 50 lines, 500-byte texts (about 26 KB in all).
    let largest_kept = |n: usize| sized_order(&format!("large-{n}"), 50, 500);
    let too_large = |n: usize| sized_order(&format!("too-large-{n}"), 1, 100_000);
    let small = |n: usize| sized_order(&format!("small-{n}"), 1, 10);

    let mut enqueues = Vec::new();
    for n in 0..300 {
        let order = match n % 6 {
            0 => too_large(n),
            1..=3 => largest_kept(n),
            _ => small(n),
        };
        let client: QueueClient = client.clone();
        enqueues.push(tokio::spawn(async move {
            let order_id = order.order_id.clone();
            (order_id, client.enqueue(order).await)
        }));
    }
    let mut enqueued = 0;
    for enqueue in enqueues {
        let (order_id, answer) = enqueue.await.expect("the enqueue task ends");
        if order_id.starts_with("too-large") {
            assert_refused_as_too_large(&order_id, answer);
        } else {
            let answer = answer.unwrap_or_else(|error| panic!("{order_id}: {error}"));
            assert!(answer.newly_enqueued, "{order_id}");
            enqueued += 1;
        }
    }
    assert_eq!(enqueued, 250);

    // A rejected order keeps only its id and customer; a huge customer is refused too.
    let mut decisions = Vec::new();
    for n in 0..100 {
        let order = if n % 4 == 0 {
            sized_order(&format!("rejected-huge-{n}"), 1, 100_000)
        } else {
            sized_order(&format!("rejected-{n}"), 50, 500)
        };
        let client = client.clone();
        decisions.push(tokio::spawn(async move {
            let order_id = order.order_id.clone();
            (order_id, client.decide(rejection(order)).await)
        }));
    }
    for decision in decisions {
        let (order_id, answer) = decision.await.expect("the decision task ends");
        if order_id.starts_with("rejected-huge") {
            assert_refused_as_too_large(&order_id, answer);
        } else {
            answer.unwrap_or_else(|error| panic!("{order_id}: {error}"));
        }
    }

    // Far over any call: refused by the client alone, never sent.
    let enormous = sized_order("enormous", 1, 8 << 20);
    assert_refused_as_too_large("an 8 MiB order", client.enqueue(enormous).await);
    let depth = client.list_queue(1).await.expect("list the queue").depth;
    assert_eq!(depth, 250);
}
