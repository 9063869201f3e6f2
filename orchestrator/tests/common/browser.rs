//! Headless Chromium for the page tests: Debian's `chromium` (`scripts/test` installs it) or the
//! binary `CHROMIUM` names, in a fresh profile folder, kept off the internet.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::StreamExt;

const CANDIDATES: [&str; 3] = [
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
];

pub fn chromium() -> PathBuf {
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

pub async fn launch() -> (Browser, tokio::task::JoinHandle<()>, tempfile::TempDir) {
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
pub async fn wait_for_text(page: &Page, selector: &str, accept: impl Fn(&str) -> bool) -> String {
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
