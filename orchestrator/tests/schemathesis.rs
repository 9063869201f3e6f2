//! Holds the orchestrator to its own OpenAPI file: schemathesis (from PyPI) reads the file the
//! orchestrator serves at `/openapi.yaml`, generates requests for every operation in it, valid
//! and invalid, sends them to the real system (backends, a queue cluster, the orchestrator) and
//! runs every check it has on each answer (no server error, status codes and content types
//! documented, bodies and headers matching their schemas, invalid input refused, valid input
//! accepted, unsupported methods answered with 405, ...). The run is seeded, so a failure
//! reproduces; its output is the failure message.
//!
//! Schema-valid checkouts are sent with an idempotency key of their own
//! (`schemathesis_hooks.py`): the schema cannot say that a key reused with another body is
//! refused (`422 idempotency_key_reused`), which generated requests would otherwise do by chance.
//!
//! The executable comes from the `SCHEMATHESIS` environment variable, which `scripts/test` sets
//! after installing schemathesis into a virtual environment under `target/`. Without it the
//! test fails when `CI=true`; elsewhere it prints how to install schemathesis and passes
//! without checking anything (a skip).

mod common;

use std::{path::PathBuf, process::Stdio, time::Duration};

use common::{Options, System};

/// The seed of every run, so that a failure found once is found again.
const SEED: &str = "20261127";
/// Test cases per operation and phase: enough to reach each branch of the contract while the
/// whole run stays well under a minute on a busy machine.
const MAX_EXAMPLES: &str = "40";
/// A run that takes longer than this has hung; it is stopped and the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The schemathesis executable, or `None` (after saying how to get one) outside CI.
fn schemathesis() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return Some(PathBuf::from(path));
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "SCHEMATHESIS is not set: scripts/test installs schemathesis and sets it"
    );
    eprintln!(
        "skipped: SCHEMATHESIS is not set. Run scripts/test, or install schemathesis with \
         `python3 -m venv target/schemathesis-venv && target/schemathesis-venv/bin/pip install \
         schemathesis==4.32.5` and set SCHEMATHESIS=$PWD/target/schemathesis-venv/bin/schemathesis"
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_the_orchestrator_matches_its_openapi_file() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    // Generated checkouts reuse card numbers far more often than real customers do.
    let system = System::start_with(Options {
        fraud_detection_args: vec!["--velocity-max-orders=1000000".to_owned()],
        ..Default::default()
    })
    .await;
    let scratch = tempfile::tempdir().expect("scratch folder");
    let run = tokio::process::Command::new(&schemathesis)
        .args(["run", &system.url("/openapi.yaml")])
        .args(["--url", &system.url("")])
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", SEED])
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .args(["--no-color", "--output-truncate", "false"])
        .env(
            "SCHEMATHESIS_HOOKS",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis_hooks.py"),
        )
        // Nothing of the run (reports, caches) is left in the source tree.
        .current_dir(scratch.path())
        .stdin(Stdio::null())
        // A run stopped by the timeout below does not outlive the test.
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran longer than {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", schemathesis.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown with `--nocapture`: what was tested, also when nothing was found.
    println!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis (seed {SEED}) found the orchestrator breaking its OpenAPI file, or could \
         not run ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
