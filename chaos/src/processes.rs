//! The system's processes during a run: starting each from its binary with its log file,
//! SIGKILLing and restarting it as the nemesis says, noticing when one exits without being told
//! to, and stopping all of them at the end.
//!
//! Each start alternates the log level between `info` and `debug` (`RUST_LOG`, see
//! [`LOG_FILTERS`]), so that the card check also reads what every process writes at debug
//! level, for part of the run.
//!
//! Every child is killed when its [`Supervised`] is dropped, and the kernel kills it if the
//! runner itself dies (`PR_SET_PDEATHSIG`), so nothing outlives a run.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;

/// How long a service may take to log that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_POLL: Duration = Duration::from_millis(50);

/// How to start one process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// `queue-1`, `executor-2`, ...: the nemesis's target name and the log file's stem.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    /// The network namespace to run in (through `ip netns exec`), or the root namespace.
    pub namespace: Option<String>,
    /// Where stdout and stderr go, appended across restarts.
    pub log: PathBuf,
    /// Whether the first start logs at debug level (later starts alternate).
    pub debug_first: bool,
}

/// The log filters a process alternates between, start after start: `info`, and `debug` for
/// everything but the libraries whose debug output is protocol bookkeeping (Raft engine
/// commands, HTTP/2 frames, sled's page cache: about 80 MB a minute per queue node, which would
/// cost the run its CPU and the card check minutes). What those libraries carry is searched
/// where it lands: the nodes' data, the answers.
const LOG_FILTERS: [&str; 2] = [
    "info",
    "debug,openraft=info,sled=info,h2=info,hyper=info,hyper_util=info,tower=info,tonic=info",
];

/// One process of the system and, while it runs, its child.
#[derive(Debug)]
pub struct Supervised {
    spec: ProcessSpec,
    /// The running process; `None` once killed (or found exited), until restarted.
    child: Option<Child>,
    /// How many times it was started.
    starts: usize,
}

impl Supervised {
    /// Starts the process; see [`Supervised::start`].
    pub fn spawn(spec: ProcessSpec) -> anyhow::Result<Supervised> {
        let mut process = Supervised {
            spec,
            child: None,
            starts: 0,
        };
        process.start()?;
        Ok(process)
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn log(&self) -> &Path {
        &self.spec.log
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Starts the process again if it is not running; its log goes on in the same file.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let spec = &self.spec;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("cannot open {}", spec.log.display()))?;
        let mut command = match &spec.namespace {
            // `ip netns exec` execs the program, so the child's pid is the program's.
            Some(namespace) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", namespace])
                    .arg(&spec.program);
                command
            }
            None => Command::new(&spec.program),
        };
        command
            .args(&spec.args)
            .envs(spec.envs.iter().map(|(key, value)| (key, value)))
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", self.next_log_filter())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot share the log file")?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent's.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {} ({})", spec.name, spec.program.display()))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// The filter of the next start: `info` and debug in turn.
    fn next_log_filter(&self) -> &'static str {
        LOG_FILTERS[(self.starts + usize::from(self.spec.debug_first)) % LOG_FILTERS.len()]
    }

    /// How the process ended, if it exited without being killed here; it then counts as not
    /// running (a later [`Supervised::start`] starts it again).
    pub fn take_unexpected_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// SIGKILLs the process, as a crash would, and reaps it (so that it never counts as having
    /// exited by itself).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process where it stands (SIGSTOP), as a long GC pause, a swapped-out process or
    /// a frozen VM would: it keeps its sockets and its state, and its timers run on when it is
    /// resumed. Does nothing if it is not running.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT)
    }

    fn signal(&mut self, signal: libc::c_int) -> anyhow::Result<()> {
        let Some(child) = &self.child else {
            return Ok(());
        };
        let pid = libc::pid_t::try_from(child.id()).context("a pid fits pid_t")?;
        // SAFETY: kill touches no memory; the pid is our unreaped child's, so it names no other
        // process.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!(
                "cannot signal {} (pid {pid}): {}",
                self.spec.name,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// The log's length now: where the lines of a start made now begin.
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.spec.log).map_or(0, |meta| meta.len())
    }

    /// Waits until the process logs `listening` (after byte `from` of its log) and returns the
    /// address it logged; fails with the log's tail if it exits or takes too long.
    pub async fn wait_listening(&mut self, from: u64) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(addr) = logged_listening(&self.spec.log, from)? {
                return Ok(addr);
            }
            if !self.is_running() || Instant::now() >= deadline {
                bail!(
                    "{} did not start listening; its log {} ends:\n{}",
                    self.spec.name,
                    self.spec.log.display(),
                    log_tail(&self.spec.log)
                );
            }
            tokio::time::sleep(LOG_POLL).await;
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address on the first `listening` line of the JSON log at `path` after byte `from`.
fn logged_listening(path: &Path, from: u64) -> anyhow::Result<Option<SocketAddr>> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    file.seek(SeekFrom::Start(from))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            let value: serde_json::Value = serde_json::from_str(&line).ok()?;
            let fields = value.get("fields").unwrap_or(&value);
            if fields.get("message")?.as_str()? != "listening" {
                return None;
            }
            fields.get("addr")?.as_str()?.parse().ok()
        }))
}

/// The last lines of a log, for an error message.
pub fn log_tail(path: &Path) -> String {
    const TAIL_LINES: usize = 20;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(name: &str, script: &str, log: PathBuf) -> ProcessSpec {
        ProcessSpec {
            name: name.to_owned(),
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".to_owned(), script.to_owned()],
            envs: Vec::new(),
            namespace: None,
            log,
            debug_first: false,
        }
    }

    #[tokio::test]
    async fn an_exit_by_itself_is_noticed_and_a_kill_is_not() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut crashing = Supervised::spawn(shell("crasher", "exit 3", dir.path().join("c.log")))
            .expect("sh starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = crashing.take_unexpected_exit() {
                break status;
            }
            assert!(Instant::now() < deadline, "sh -c 'exit 3' never exited");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.code(), Some(3));
        assert!(!crashing.is_running());
        assert!(crashing.take_unexpected_exit().is_none(), "noticed once");

        let mut sleeping =
            Supervised::spawn(shell("sleeper", "sleep 60", dir.path().join("s.log")))
                .expect("sh starts");
        assert!(sleeping.take_unexpected_exit().is_none());
        sleeping.kill();
        assert!(sleeping.take_unexpected_exit().is_none());
    }

    #[tokio::test]
    async fn each_start_alternates_the_log_level() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = dir.path().join("level.log");
        let mut process = Supervised::spawn(shell("level", "echo \"$RUST_LOG\"", log.clone()))
            .expect("sh starts");
        for round in 0..3 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while process.take_unexpected_exit().is_none() {
                assert!(Instant::now() < deadline, "echo never exited");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if round < 2 {
                process.start().expect("sh starts again");
            }
        }
        let levels = std::fs::read_to_string(&log).expect("the log is readable");
        assert_eq!(levels, format!("info\n{}\ninfo\n", LOG_FILTERS[1]));
    }

    #[tokio::test]
    async fn a_paused_process_stops_running_until_resumed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = dir.path().join("ticker.log");
        let mut process = Supervised::spawn(shell(
            "ticker",
            "while true; do echo tick; sleep 0.02; done",
            log.clone(),
        ))
        .expect("sh starts");
        let grows = |process: &Supervised| {
            let before = process.log_len();
            std::thread::sleep(Duration::from_millis(300));
            process.log_len() > before
        };
        assert!(grows(&process), "the ticker never ticked");
        process.pause().expect("SIGSTOP");
        // What it was writing when stopped lands first.
        std::thread::sleep(Duration::from_millis(100));
        assert!(!grows(&process), "a paused process went on writing");
        assert!(
            process.is_running(),
            "a paused process is not an exited one"
        );
        process.resume().expect("SIGCONT");
        assert!(grows(&process), "a resumed process stayed stopped");
        assert!(process.take_unexpected_exit().is_none());
    }

    #[test]
    fn the_listening_address_is_read_after_the_offset() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = dir.path().join("service.log");
        let first = "{\"message\":\"listening\",\"addr\":\"127.0.0.1:1000\"}\n";
        let second = "{\"fields\":{\"message\":\"listening\",\"addr\":\"127.0.0.1:2000\"}}\n";
        std::fs::write(&log, format!("{first}not json\n{second}")).expect("log written");
        assert_eq!(
            logged_listening(&log, 0).expect("the log is readable"),
            Some(SocketAddr::from(([127, 0, 0, 1], 1000)))
        );
        assert_eq!(
            logged_listening(&log, first.len() as u64).expect("the log is readable"),
            Some(SocketAddr::from(([127, 0, 0, 1], 2000)))
        );
    }
}
