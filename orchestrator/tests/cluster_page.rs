//! The cluster page in headless Chromium: it shows three queue nodes up and a leader; once the
//! leader is killed with `scripts/cluster kill`, it shows that node down and another one leading
//! in a higher term within a few seconds.
//!
//! Needs Debian's `chromium` (`scripts/test` installs it); `CHROMIUM` names another binary.
//! With `SAVE_SCREENSHOT=1` the test also writes `docs/cluster-page.png` (the README shows it).

mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use chromiumoxide::{
    Page, cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams, page::ScreenshotParams,
};
use common::{Options, ScriptedCluster, System, browser::launch, valid_order};
use serde::Deserialize;

/// What a node card says about itself, read from its `data-*` attributes and text.
#[derive(Debug, Deserialize)]
struct Card {
    id: String,
    state: String,
    role: String,
    term: String,
    text: String,
}

const READ_CARDS: &str = r#"JSON.stringify(Array.from(document.querySelectorAll(".node-card"),
    card => ({ id: card.dataset.nodeId, state: card.dataset.state, role: card.dataset.role,
               term: card.dataset.term, text: card.innerText })))"#;

async fn cards(page: &Page) -> Vec<Card> {
    let Ok(result) = page.evaluate(READ_CARDS).await else {
        return Vec::new();
    };
    let json: String = result.into_value().unwrap_or_default();
    serde_json::from_str(&json).unwrap_or_default()
}

/// The cards once `accept` holds for them, or a panic after `within` showing the last cards.
async fn wait_for_cards(
    page: &Page,
    within: Duration,
    accept: impl Fn(&[Card]) -> bool,
) -> Vec<Card> {
    let deadline = Instant::now() + within;
    loop {
        let cards = cards(page).await;
        if accept(&cards) {
            return cards;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not show what was expected within {within:?}; it showed {cards:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn leader(cards: &[Card]) -> Option<&Card> {
    cards.iter().find(|card| card.role == "leader")
}

fn term(card: &Card) -> u64 {
    card.term.parse().expect("a leader's card shows its term")
}

/// Places `count` approved orders at once.
async fn place_orders(system: &System, count: usize) {
    let client = reqwest::Client::new();
    let checkouts = (0..count).map(|_| async {
        let answer: serde_json::Value = client
            .post(system.url("/checkout"))
            .json(&valid_order())
            .send()
            .await
            .expect("orchestrator answers")
            .json()
            .await
            .expect("JSON body");
        assert_eq!(answer["status"], "Order Approved", "{answer}");
    });
    futures::future::join_all(checkouts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_killed_leader_down_and_the_next_leader() {
    let cluster = ScriptedCluster::up();
    let system = System::start_in_front_of(
        None,
        &cluster.addrs(),
        &cluster.tokens_dir(),
        Options {
            executors: 2,
            fraud_detection_args: vec!["--velocity-max-orders=100000".into()],
            ..Options::default()
        },
    );
    // A few orders, so that the queue, the lease and the throughput line have something to show.
    place_orders(&system, 4).await;

    let (mut browser, events, _profile) = launch().await;
    let page = browser
        .new_page(system.url("/cluster"))
        .await
        .expect("page opens");
    let before = wait_for_cards(&page, Duration::from_secs(20), |cards| {
        cards.len() == 3 && cards.iter().all(|card| card.state == "up") && leader(cards).is_some()
    })
    .await;
    let old_leader = leader(&before).expect("a leader");
    let (old_id, old_term) = (old_leader.id.clone(), term(old_leader));

    tokio::task::block_in_place(|| cluster.run(&["kill", &old_id]));
    let killed_at = Instant::now();
    let after = wait_for_cards(&page, Duration::from_secs(10), |cards| {
        let killed_down = cards.iter().any(|card| {
            card.id == old_id && card.state == "down" && card.text.to_lowercase().contains("down")
        });
        let new_leader =
            leader(cards).is_some_and(|card| card.id != old_id && term(card) > old_term);
        killed_down && new_leader
    })
    .await;
    let new_leader = leader(&after).expect("a new leader");
    eprintln!(
        "the page showed node {old_id} down and node {} leading in term {} {:?} after the kill",
        new_leader.id,
        new_leader.term,
        killed_at.elapsed()
    );
    let elections = page
        .find_element("#raft-elections")
        .await
        .expect("elections list")
        .inner_text()
        .await
        .expect("text")
        .unwrap_or_default();
    assert!(
        elections.contains(&format!("term {}: node {}", new_leader.term, new_leader.id)),
        "{elections}"
    );

    if std::env::var_os("SAVE_SCREENSHOT").is_some() {
        // Orders in the queue and an executor at work, a moment after the election.
        page.execute(SetDeviceMetricsOverrideParams::new(1280, 900, 1.0, false))
            .await
            .expect("viewport set");
        place_orders(&system, 12).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cluster-page.png");
        page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path)
            .await
            .expect("screenshot saved");
        eprintln!("saved {}", path.display());
    }

    browser.close().await.expect("browser closes");
    browser.wait().await.expect("browser exits");
    events.abort();
}
