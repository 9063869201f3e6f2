//! The checkout page in headless Chromium against the real services: pick a book, submit, read
//! the decision and the suggestions from the page, and watch the order until it is executed.
//!
//! Needs Debian's `chromium` (`scripts/test` installs it); `CHROMIUM` names another binary.

mod common;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use chromiumoxide::{Browser, BrowserConfig, Page};
use common::System;
use futures::StreamExt;

const CANDIDATES: [&str; 3] = [
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
];

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|path| path.exists())
        })
        .expect("no Chromium found: install Debian's chromium (scripts/test does) or set CHROMIUM")
}

async fn launch() -> (Browser, tokio::task::JoinHandle<()>, tempfile::TempDir) {
    let profile = tempfile::tempdir().expect("profile folder");
    let config = BrowserConfig::builder()
        .chrome_executable(chromium())
        .no_sandbox()
        .user_data_dir(profile.path())
        .window_size(1280, 1600)
        .args([
            "disable-gpu",
            "disable-background-networking",
            "disable-component-update",
            "disable-sync",
            "no-first-run",
        ])
        .launch_timeout(Duration::from_secs(60))
        .build()
        .expect("browser config");
    let (browser, mut handler) = Browser::launch(config).await.expect("Chromium starts");
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    (browser, events, profile)
}

/// The text of the first element matching `selector` once `accept` holds for it, or a panic
/// after 20 s naming what the page showed.
async fn wait_for_text(page: &Page, selector: &str, accept: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    loop {
        if let Ok(element) = page.find_element(selector).await
            && let Ok(Some(text)) = element.inner_text().await
        {
            if accept(&text) {
                return text;
            }
            last = Some(text);
        }
        assert!(
            Instant::now() < deadline,
            "{selector} never matched; last text: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
