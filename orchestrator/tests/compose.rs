//! `docker-compose.yaml` stops the orchestrator no sooner than its own drain timeout ends:
//! its `stop_grace_period` (SIGTERM, then SIGKILL after it) covers the time the orchestrator
//! gives requests in flight after SIGTERM, so a `docker compose stop` or `restart` lets the
//! orchestrator end them itself. Read from the file, without Docker.

use std::path::Path;
use std::time::Duration;

use clap::Parser;

/// The value of `key` in the block of service `service` (two-space indents, as the file is
/// written), if it is set there.
fn service_setting(compose: &str, service: &str, key: &str) -> Option<String> {
    let header = format!("  {service}:");
    let mut lines = compose.lines().skip_while(|line| *line != header).skip(1);
    lines
        .by_ref()
        .take_while(|line| line.is_empty() || line.starts_with("    "))
        .find_map(|line| {
            let (name, value) = line.trim().split_once(':')?;
            (name == key).then(|| value.trim().to_owned())
        })
}

/// Compose's duration syntax as used here: whole seconds (`40s`) or minutes (`1m`).
fn compose_duration(text: &str) -> Duration {
    if let Some(seconds) = text.strip_suffix('s') {
        return Duration::from_secs(seconds.parse().expect("whole seconds"));
    }
    if let Some(minutes) = text.strip_suffix('m') {
        return Duration::from_secs(60 * minutes.parse::<u64>().expect("whole minutes"));
    }
    panic!("not a duration this test reads: {text:?}")
}

#[test]
fn the_orchestrator_is_given_longer_to_stop_than_its_drain_timeout() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yaml");
    let compose = std::fs::read_to_string(&path).expect("docker-compose.yaml");
    // Compose's default when the service sets none.
    let grace = service_setting(&compose, "orchestrator", "stop_grace_period")
        .map_or(Duration::from_secs(10), |text| compose_duration(&text));
    let defaults = orchestrator::Config::try_parse_from(["orchestrator"]).expect("the defaults");
    let drain = defaults.http_limits().drain_timeout;
    assert!(
        grace > drain,
        "compose gives the orchestrator {grace:?} to stop, but it drains for {drain:?}"
    );
}

#[test]
fn the_reader_finds_a_setting_of_one_service_only() {
    let compose =
        "services:\n  a:\n    image: x\n    stop_grace_period: 40s\n\n  b:\n    image: y\n";
    assert_eq!(
        service_setting(compose, "a", "stop_grace_period").as_deref(),
        Some("40s")
    );
    assert_eq!(service_setting(compose, "b", "stop_grace_period"), None);
    assert_eq!(compose_duration("1m"), Duration::from_secs(60));
}
