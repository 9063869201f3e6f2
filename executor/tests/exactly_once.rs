//! Executions happen once, whatever becomes of the executor that holds an order: with
//! executions of one to two seconds, the lease holder is killed (SIGKILL, then restarted) or
//! paused past its lease (SIGSTOP, then SIGCONT) twenty times, at random points of its work on
//! an order: right after dequeuing it, in the middle of executing it, with the work done but
//! nothing recorded, after its execution record and before its acknowledgement, and after the
//! acknowledgement before it resigns. The exact points come from the executors' fault-point
//! files (`executor::faults`); the middle of an execution is hit with a signal at a random
//! moment. Then every order must be executed once: one execution record in the cluster, one
//! ledger line and one `order <id> executed by executor <n>` log line per order, all three
//! naming the same executor and token.
//!
//! The schedule is random; `EXACTLY_ONCE_SEED` replays one (the seed is printed).

mod common;

use std::time::Duration;

use common::cluster::{Cluster, wait_for};
use common::{
    ExecutorOptions, Executors, Signal, assert_executed_exactly_once, enqueue_orders,
    executing_order, ids_of, wait_until_executed,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const ORDERS: usize = 40;
/// The executors' lease, which is also each of their calls' deadline and, three times over, how
/// long one asks whether its execution record committed. 1 s was too little on a loaded CI
/// machine: an executor whose record took longer than that to answer, three times, gave up
/// learning it and wrote no ledger line (the guarantee allows that; this test asks for more).
const LEASE_TTL_MS: u64 = 2_000;

/// Where the holder is caught.
#[derive(Debug, Clone, Copy)]
enum Point {
    /// A fault point of `executor::faults`, by name.
    Named(&'static str),
    /// A random moment while the order executes.
    MidExecution,
}

/// What is done to the holder once caught.
#[derive(Debug, Clone, Copy)]
enum Action {
    Kill,
    PausePastLease,
}

/// Twenty faults: each point four times, each with both actions, shuffled.
fn schedule(rng: &mut StdRng) -> Vec<(Point, Action)> {
    let points = [
        Point::Named("dequeued"),
        Point::MidExecution,
        Point::Named("executed"),
        Point::Named("recorded"),
        Point::Named("acknowledged"),
    ];
    let mut faults: Vec<(Point, Action)> = points
        .iter()
        .flat_map(|point| {
            [
                (*point, Action::Kill),
                (*point, Action::PausePastLease),
                (*point, Action::Kill),
                (*point, Action::PausePastLease),
            ]
        })
        .collect();
    faults.shuffle(rng);
    faults
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_is_executed_once_though_its_holder_is_killed_or_paused_anywhere() {
    let seed = std::env::var("EXACTLY_ONCE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("EXACTLY_ONCE_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let cluster = Cluster::start(&[]).await;
    let client = cluster.client();
    let orders = enqueue_orders(&client, ORDERS).await;
    let order_ids = ids_of(&orders);
    let options = ExecutorOptions {
        lease_ttl_ms: LEASE_TTL_MS,
        execution_ms: [1_000, 1_500, 2_000],
        ..ExecutorOptions::default()
    };
    let mut executors = Executors::start(&cluster, &options);
    let faults = schedule(&mut rng);
    let caught_after_recording = faults
        .iter()
        .filter(|(point, _)| matches!(point, Point::Named("recorded")))
        .count();

    for (n, (point, action)) in faults.into_iter().enumerate() {
        let victim = match point {
            Point::Named(name) => {
                executors.arm(Some(name));
                let victim = wait_for(
                    Duration::from_secs(30),
                    "an executor to stop at the fault point",
                    || {
                        let stopped = executors.stopped();
                        async move { stopped }
                    },
                )
                .await;
                executors.arm(None);
                victim
            }
            Point::MidExecution => {
                let held = wait_for(Duration::from_secs(30), "an order to be executing", || {
                    executing_order(&client, &order_ids)
                })
                .await;
                let into_ms = rng.random_range(0..1_000);
                tokio::time::sleep(Duration::from_millis(into_ms)).await;
                let victim = common::EXECUTOR_IDS
                    .into_iter()
                    .find(|id| *id == held.executor_id)
                    .expect("the holder is one of the executors");
                executors.signal(victim, Signal::Stop);
                victim
            }
        };
        eprintln!("fault {n}: {point:?} {action:?} on {victim}");
        match action {
            Action::Kill => {
                executors.kill(victim);
                executors.restart(victim);
            }
            Action::PausePastLease => {
                let past_ms = LEASE_TTL_MS + rng.random_range(200..1_200);
                tokio::time::sleep(Duration::from_millis(past_ms)).await;
                executors.signal(victim, Signal::Continue);
            }
        }
    }

    let states = wait_until_executed(&client, &order_ids, Duration::from_secs(90)).await;
    assert_executed_exactly_once(&states, &executors.ledger(), &executors.executions_logged());
    // Each holder caught after its record and before its acknowledgement left the order with
    // its record to the next holder, which acknowledged it without executing it again.
    let acknowledged_only = common::EXECUTOR_IDS
        .iter()
        .flat_map(|id| executors.log_lines(id))
        .filter(|line| {
            line["message"].as_str().is_some_and(|message| {
                message.ends_with("was executed already; acknowledging it only")
            })
        })
        .count();
    assert!(
        acknowledged_only >= caught_after_recording,
        "{acknowledged_only} orders acknowledged without executing, {caught_after_recording} \
         holders caught after recording"
    );
}
