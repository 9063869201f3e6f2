//! `queuectl` as a user runs it, against three real nodes: status, leader, enqueue, list, show,
//! and a membership change (a fourth node added, a founder removed).

mod common;

use std::process::Output;

use common::cluster::{Cluster, NODE_IDS};
use queue_raft::Role;
use std::time::Duration;

const ELECTION: Duration = Duration::from_secs(20);
const CATCH_UP: Duration = Duration::from_secs(30);

/// Runs `queuectl --nodes <the cluster> ARGS`, with the cluster's secret file in env
/// `QUEUE_CLUSTER_SECRET_FILE`, and returns what it printed and how it exited.
async fn queuectl(cluster: &Cluster, args: &[&str]) -> Output {
    queuectl_with_secret(cluster, args, |command| {
        command.env("QUEUE_CLUSTER_SECRET_FILE", cluster.secret_file())
    })
    .await
}

/// Runs `queuectl --nodes <the cluster> ARGS` with the admin's queue token and the secret, if
/// any, that `secret` sets (which may also take the token away).
async fn queuectl_with_secret(
    cluster: &Cluster,
    args: &[&str],
    secret: impl FnOnce(&mut tokio::process::Command) -> &mut tokio::process::Command,
) -> Output {
    let nodes: Vec<String> = cluster
        .addrs()
        .iter()
        .enumerate()
        .map(|(index, addr)| format!("{}={addr}", index + 1))
        .collect();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_queuectl"));
    command
        .env_remove("QUEUE_CLUSTER_SECRET")
        .env_remove("QUEUE_CLUSTER_SECRET_FILE")
        .env_remove("QUEUE_TOKEN")
        .env("QUEUE_TOKEN_FILE", cluster.token_file(Role::Admin));
    secret(&mut command)
        .arg(format!("--nodes={}", nodes.join(",")))
        .args(args)
        .output()
        .await
        .expect("run queuectl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queuectl_reads_and_changes_the_cluster() {
    let mut cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader(ELECTION).await;

    let status = queuectl(&cluster, &["status"]).await;
    assert!(status.status.success(), "{status:?}");
    assert_eq!(stdout(&status).lines().count(), 3, "{}", stdout(&status));
    assert!(stdout(&status).contains(" leader term "));
    let named = queuectl(&cluster, &["leader"]).await;
    assert_eq!(stdout(&named).trim(), leader.to_string());

    let enqueued = queuectl(&cluster, &["enqueue", "--order-id=ctl-1", "--books=3"]).await;
    assert!(
        stdout(&enqueued).starts_with("order ctl-1 enqueued"),
        "{enqueued:?}"
    );
    let again = queuectl(&cluster, &["enqueue", "--order-id=ctl-1"]).await;
    assert!(stdout(&again).contains("already known"), "{again:?}");
    // Fifty books: first in the dequeue order though enqueued later, unless it came more than
    // 23.5 s (47 books' worth of aging) after ctl-1.
    queuectl(&cluster, &["enqueue", "--order-id=ctl-2", "--books=50"]).await;
    let listed = stdout(&queuectl(&cluster, &["list"]).await);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines[0], "depth 2");
    assert!(
        lines[1].contains("ctl-2") && lines[2].contains("ctl-1"),
        "{listed}"
    );
    let shown = queuectl(&cluster, &["show", "ctl-1"]).await;
    assert!(
        stdout(&shown).contains("ctl-1 queued, priority 3"),
        "{shown:?}"
    );
    let missing = queuectl(&cluster, &["show", "no-such-order"]).await;
    assert_eq!(missing.status.code(), Some(1));

    let addr = cluster.start_joining_node(4);
    let added = queuectl(&cluster, &["add-node", &format!("4={addr}")]).await;
    assert!(added.status.success(), "{added:?}");
    assert!(
        stdout(&added).contains(&format!("node 4 {addr} voter")),
        "{added:?}"
    );
    let status = cluster.wait_until_caught_up(4, leader, CATCH_UP).await;
    assert_eq!(status.queue_depth, 2);
    let removed = queuectl(&cluster, &["remove-node", &leader.to_string()]).await;
    assert!(removed.status.success(), "{removed:?}");
    assert!(
        !stdout(&removed).contains(&format!("node {leader} ")),
        "{removed:?}"
    );
    let bad = queuectl(&cluster, &["add-node", "four=127.0.0.1:1"]).await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not ID=HOST:PORT"));

    // The removed leader's place is taken; any founder still a voter will do.
    let remaining = NODE_IDS
        .into_iter()
        .find(|id| *id != leader)
        .expect("three founders")
        .to_string();
    let without =
        queuectl_with_secret(&cluster, &["remove-node", &remaining], |command| command).await;
    assert!(!without.status.success(), "{without:?}");
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("no cluster secret given"),
        "{without:?}"
    );
    let wrong = queuectl_with_secret(&cluster, &["remove-node", &remaining], |command| {
        command.env("QUEUE_CLUSTER_SECRET", "not-the-cluster-secret-at-all")
    })
    .await;
    assert!(!wrong.status.success(), "{wrong:?}");
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("missing or wrong cluster secret"),
        "{wrong:?}"
    );
    let no_token = queuectl_with_secret(&cluster, &["status"], |command| {
        command.env_remove("QUEUE_TOKEN_FILE")
    })
    .await;
    assert!(!no_token.status.success(), "{no_token:?}");
    assert!(
        String::from_utf8_lossy(&no_token.stderr).contains("no queue token given"),
        "{no_token:?}"
    );
}
