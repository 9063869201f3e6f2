//! The checkout page in headless Chromium against the real services: pick a book, submit, read
//! the decision and the suggestions from the page, and watch the order until it is executed.
//!
//! Needs Debian's `chromium` (`scripts/test` installs it); `CHROMIUM` names another binary.

mod common;

use common::{
    System,
    browser::{launch, wait_for_text},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_picked_on_the_page_is_approved_and_seen_executed() {
    let system = System::start_with(common::Options {
        executors: 3,
        ..Default::default()
    })
    .await;
    let (mut browser, events, _profile) = launch().await;
    let page = browser.new_page(system.url("/")).await.expect("page opens");

    let add_hobbit = r#"button.add-book[data-book-id="b001"]"#;
    wait_for_text(&page, add_hobbit, |_| true).await;
    page.find_element(add_hobbit)
        .await
        .expect("book button")
        .click()
        .await
        .expect("click");
    wait_for_text(&page, "#cart", |text| text.contains("The Hobbit")).await;
    page.find_element("#submit-order")
        .await
        .expect("submit button")
        .click()
        .await
        .expect("click");

    let status = wait_for_text(&page, "#order-status", |text| !text.trim().is_empty()).await;
    assert_eq!(status.trim(), "Order Approved");
    let order_id = wait_for_text(&page, "#order-id", |text| !text.trim().is_empty()).await;
    uuid::Uuid::parse_str(order_id.trim()).expect("the page shows a UUID");
    let suggestions =
        wait_for_text(&page, "#suggested-books", |text| !text.trim().is_empty()).await;
    let suggested = page
        .find_elements("#suggested-books li")
        .await
        .expect("suggestion items");
    assert_eq!(suggested.len(), 3, "{suggestions}");
    assert!(
        !suggestions.contains("The Hobbit"),
        "suggested the ordered book: {suggestions}"
    );

    browser.close().await.expect("browser closes");
    browser.wait().await.expect("browser exits");
    events.abort();
}

/// The queue has no majority when the order is placed, so the checkout's outcome is unknown
/// (`503`). The page retries by itself with the same idempotency key and, once the queue is
/// back, shows the order approved: one order, whatever the number of attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_retries_an_unknown_outcome_with_the_same_key() {
    let mut system = System::start().await;
    let leader = system
        .cluster()
        .wait_for_leader(std::time::Duration::from_secs(20))
        .await;
    let survivor = (1..=3).find(|id| *id != leader).expect("a follower");
    let killed: Vec<u64> = (1..=3).filter(|id| *id != survivor).collect();
    for id in &killed {
        system.cluster().kill(*id);
    }
    let (mut browser, events, _profile) = launch().await;
    let page = browser.new_page(system.url("/")).await.expect("page opens");
    let add_hobbit = r#"button.add-book[data-book-id="b001"]"#;
    wait_for_text(&page, add_hobbit, |_| true).await;
    page.find_element(add_hobbit)
        .await
        .expect("book button")
        .click()
        .await
        .expect("click");
    page.find_element("#submit-order")
        .await
        .expect("submit button")
        .click()
        .await
        .expect("click");

    let note = wait_for_text(&page, "#error-message", |text| {
        text.contains("Trying again with the same idempotency key")
    })
    .await;
    assert!(note.contains("may or may not have been placed"), "{note}");
    for id in &killed {
        system.cluster().restart(*id);
    }
    let status = wait_for_text(&page, "#order-status", |text| !text.trim().is_empty()).await;
    assert_eq!(status.trim(), "Order Approved");
    let order_id = wait_for_text(&page, "#order-id", |text| !text.trim().is_empty()).await;
    let queue = system
        .cluster()
        .client()
        .list_queue(100)
        .await
        .expect("queue listing");
    let queued: Vec<&str> = queue
        .orders
        .iter()
        .filter_map(|state| state.order.as_ref())
        .map(|order| order.order_id.as_str())
        .collect();
    assert_eq!(
        queued,
        [order_id.trim()],
        "one order, however many attempts"
    );

    browser.close().await.expect("browser closes");
    browser.wait().await.expect("browser exits");
    events.abort();
}
