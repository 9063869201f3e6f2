//! Test harness (feature `testing`): starts the real service binaries on free loopback ports
//! and stops them again.
//!
//! Each service is told to listen on `127.0.0.1:0` and logs, as JSON, the address it took; the
//! harness reads that line, so parallel tests never collide on a port. A [`Service`] kills its
//! process when dropped, so a failing test leaves nothing running.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

/// How long a service may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of a binary of this workspace, next to the running test's `deps/` folder. A test
/// only gets its own package's binaries built: `scripts/test` builds them all first.
pub fn binary(name: &str) -> PathBuf {
    let test_executable = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = test_executable
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile directory");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// The `--metrics-listen` twins of every service with a metrics port of its own.
const METRICS_LISTEN_VARS: &[&str] = &[
    "FRAUD_DETECTION_METRICS_LISTEN",
    "TRANSACTION_VERIFICATION_METRICS_LISTEN",
    "SUGGESTIONS_METRICS_LISTEN",
    "QUEUE_NODE_METRICS_LISTEN",
    "ORCHESTRATOR_METRICS_LISTEN",
];

/// One running service process and everything it logged.
pub struct Service {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts `binary` with `args` (plus `--listen 127.0.0.1:0`) and waits until it listens.
    pub fn start(binary_name: &str, args: &[String]) -> Service {
        let mut all_args = vec!["--listen".to_owned(), "127.0.0.1:0".to_owned()];
        all_args.extend_from_slice(args);
        Self::start_with_args(binary_name, &all_args)
    }

    /// Starts `binary` with exactly `args` (which must make it listen) and waits until it logs
    /// `listening`; panics with the service's log if it does not.
    pub fn start_with_args(binary_name: &str, args: &[String]) -> Service {
        Self::try_start_with_args(binary_name, args).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Like [`Service::start_with_args`], but a service that exits or does not listen in time
    /// (say, its port was taken) is an error the caller can retry, not a panic.
    pub fn try_start_with_args(binary_name: &str, args: &[String]) -> Result<Service, StartError> {
        let mut child = Command::new(binary(binary_name))
            .args(args)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            // The gRPC services' metrics ports default to their gRPC port plus 100, which a
            // parallel test may hold: every metrics server takes a free port instead, logged on
            // its `serving metrics` line ([`Service::metrics_url`]).
            .envs(METRICS_LISTEN_VARS.iter().map(|var| (*var, "127.0.0.1:0")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| StartError {
                binary: binary_name.to_owned(),
                log: vec![format!("cannot start: {error}")],
            })?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_sender, addr_receiver) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let stdout_log = Arc::clone(&log);
        // Both readers end when the process exits and its pipes close.
        let stdout_reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line) {
                    let _ = addr_sender.send(addr);
                }
                stdout_log.lock().expect("log lock").push(line);
            }
        });
        let stderr_log = Arc::clone(&log);
        let stderr_reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                stderr_log.lock().expect("log lock").push(line);
            }
        });
        // Ends early when the process exits: its stdout closes and the sender is dropped.
        let addr = match addr_receiver.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = stdout_reader.join();
                let _ = stderr_reader.join();
                return Err(StartError {
                    binary: binary_name.to_owned(),
                    log: log.lock().expect("log lock").clone(),
                });
            }
        };
        Ok(Service {
            name: binary_name.to_owned(),
            addr,
            child,
            log,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR/metrics` of a gRPC service's metrics server, from its `serving metrics`
    /// log line; waits for the line up to the start timeout.
    pub fn metrics_url(&self) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(addr) = self
                .log_lines()
                .iter()
                .find_map(|line| logged_addr(line, "serving metrics"))
            {
                return format!("http://{addr}/metrics");
            }
            assert!(
                Instant::now() < deadline,
                "{} logged no `serving metrics` line:\n{}",
                self.name,
                self.log_lines().join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the service logged so far, one line each.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Kills the process with SIGKILL, as a crash would, and waits for it to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", self.pid());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within 15 s of SIGTERM",
                self.name
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A service that did not start listening, with what it logged.
#[derive(Debug)]
pub struct StartError {
    pub binary: String,
    pub log: Vec<String>,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} did not start listening; it logged:\n{}",
            self.binary,
            self.log.join("\n")
        )
    }
}

impl std::error::Error for StartError {}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The Prometheus text exposition served at `url`; an error says what was wrong (no answer, a
/// status other than 200, or not Prometheus's text format).
pub async fn scrape_metrics(url: &str) -> Result<String, String> {
    let response = reqwest::get(url)
        .await
        .map_err(|error| format!("GET {url}: {error}"))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(format!("GET {url}: {}", response.status()));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if content_type != "text/plain; version=0.0.4; charset=utf-8" {
        return Err(format!("GET {url}: content type {content_type:?}"));
    }
    response
        .text()
        .await
        .map_err(|error| format!("GET {url}: {error}"))
}

/// The value of one series in a Prometheus text exposition, written as rendered: the name and,
/// if it has labels, `{label="value",..}` in the order they were recorded.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// The sum of every series named `name`, whatever its labels (0 when there is none).
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let series_name = series.split('{').next()?;
            (series_name == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// The address in a JSON log line `{"message":"listening","addr":"127.0.0.1:P",..}`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    logged_addr(line, "listening")
}

/// The `addr` of a JSON log line whose message is `message`.
fn logged_addr(line: &str, message: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("message")?.as_str()? != message {
        return None;
    }
    value.get("addr")?.as_str()?.parse().ok()
}
