//! Test harness: starts the real service binaries on free loopback ports and stops them again.
//!
//! Each service is told to listen on `127.0.0.1:0` and logs, as JSON, the address it took; the
//! harness reads that line, so parallel tests never collide on a port. A [`Service`] kills its
//! process when dropped, so a failing test leaves nothing running.

#![allow(dead_code)]

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

/// The path of a binary of this workspace. Binaries of other packages are not built by
/// `cargo test -p orchestrator`: `scripts/test` builds them all first.
pub fn binary(name: &str) -> PathBuf {
    if name == "orchestrator" {
        return PathBuf::from(env!("CARGO_BIN_EXE_orchestrator"));
    }
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
        let mut child = Command::new(binary(binary_name))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary_name}: {error}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_sender, addr_receiver) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let stdout_log = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line) {
                    let _ = addr_sender.send(addr);
                }
                stdout_log.lock().expect("log lock").push(line);
            }
        });
        let stderr_log = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                stderr_log.lock().expect("log lock").push(line);
            }
        });
        let addr = match addr_receiver.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{binary_name} did not start listening; it logged:\n{}",
                    log.lock().expect("log lock").join("\n")
                );
            }
        };
        Service {
            name: binary_name.to_owned(),
            addr,
            child,
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the service logged so far, one line each.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
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

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address in a JSON log line `{"message":"listening","addr":"127.0.0.1:P",..}`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("message")?.as_str()? != "listening" {
        return None;
    }
    value.get("addr")?.as_str()?.parse().ok()
}

/// The three backends and the orchestrator in front of them.
pub struct System {
    pub fraud_detection: Option<Service>,
    pub transaction_verification: Option<Service>,
    pub suggestions: Option<Service>,
    pub orchestrator: Service,
}

impl System {
    pub fn start() -> System {
        Self::start_with_timeout(Duration::from_secs(2))
    }

    pub fn start_with_timeout(backend_timeout: Duration) -> System {
        let fraud_detection = Service::start("fraud-detection", &[]);
        let transaction_verification = Service::start("transaction-verification", &[]);
        let suggestions = Service::start("suggestions", &[]);
        let orchestrator = Service::start(
            "orchestrator",
            &[
                format!("--fraud-detection-addr={}", fraud_detection.url()),
                format!(
                    "--transaction-verification-addr={}",
                    transaction_verification.url()
                ),
                format!("--suggestions-addr={}", suggestions.url()),
                format!("--backend-timeout-ms={}", backend_timeout.as_millis()),
            ],
        );
        System {
            fraud_detection: Some(fraud_detection),
            transaction_verification: Some(transaction_verification),
            suggestions: Some(suggestions),
            orchestrator,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.orchestrator.url())
    }

    /// Every running service's log lines, each prefixed with the service's name.
    pub fn all_log_lines(&self) -> Vec<(String, String)> {
        [
            &self.fraud_detection,
            &self.transaction_verification,
            &self.suggestions,
        ]
        .into_iter()
        .flatten()
        .chain(std::iter::once(&self.orchestrator))
        .flat_map(|service| {
            service
                .log_lines()
                .into_iter()
                .map(|line| (service.name.clone(), line))
        })
        .collect()
    }
}

/// The example order of the page: approved by every backend.
pub fn valid_order() -> serde_json::Value {
    serde_json::json!({
        "user": {"name": "Ada Lovelace", "contact": "ada@example.com"},
        "creditCard": {"number": "4532 0151 1283 0366", "expirationDate": "12/35", "cvv": "123"},
        "userComment": "Please wrap carefully",
        "items": [{"name": "The Hobbit", "quantity": 1}, {"name": "Emma", "quantity": 2}],
        "discountCode": "",
        "shippingMethod": "Standard",
        "giftMessage": "",
        "billingAddress": {"street": "Raatuse 22", "city": "Tartu", "state": "Tartumaa", "zip": "51009", "country": "Estonia"},
        "giftWrapping": false,
        "termsAndConditionsAccepted": true,
        "notificationPreferences": ["email"],
        "device": {"type": "Desktop", "model": "PC", "os": "Debian 12"},
        "browser": {"name": "Chromium", "version": "120"},
        "appVersion": "1.0.0",
        "screenResolution": "1920x1080",
        "referrer": "https://example.com",
        "deviceLanguage": "en-US"
    })
}
