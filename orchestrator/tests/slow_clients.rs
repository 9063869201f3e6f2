//! Slow and stalled clients against the orchestrator's HTTP port: a connection that sends one
//! byte and stalls is closed by the header-read timeout, connections beyond the limit wait
//! instead of being served, and SIGTERM ends the process within 10 s although stalled clients
//! still hold connections. The orchestrator runs alone: nothing here needs a backend or a queue
//! node (it connects to them lazily).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bookstore_common::testing::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The orchestrator's header-read timeout (`bookstore_common::http::HttpLimits`), plus room for
/// a busy machine.
const HEADER_TIMEOUT_BOUND: Duration = Duration::from_secs(15);
/// What the issue asks of a stop: SIGTERM to exit, stalled clients or not.
const STOP_BOUND: Duration = Duration::from_secs(10);
/// The connection limit the test sets, small so that the test opens few sockets.
const MAX_CONNECTIONS: usize = 16;

/// An orchestrator whose backends and queue nodes are addresses where nothing listens, with a
/// queue token of its own (read at start) and no metrics port (tests run side by side).
fn lone_orchestrator(extra_args: &[&str]) -> Service {
    let token_dir = tempfile::tempdir().expect("a folder for the queue token");
    let token_file = token_dir.path().join("orchestrator");
    std::fs::write(&token_file, "a queue token for a lone orchestrator\n")
        .expect("write the queue token");
    let mut args: Vec<String> = [
        "--fraud-detection-addr=http://127.0.0.1:9",
        "--transaction-verification-addr=http://127.0.0.1:9",
        "--suggestions-addr=http://127.0.0.1:9",
        "--queue-nodes=127.0.0.1:9",
        "--metrics-listen=off",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    args.push(format!("--queue-token-file={}", token_file.display()));
    args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
    Service::start("orchestrator", &args)
}

/// A connection that sent the first byte of a request and then nothing.
async fn stalled_connection(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(b"G").await.expect("one byte sent");
    stream
}

/// Waits for the server to close `stream` (end of stream or reset); `Err` with how long it was
/// held if it is still open after `bound`.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Result<Duration, Duration> {
    let started = Instant::now();
    let mut buffer = [0_u8; 1024];
    let closed = timeout(bound, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                // An answer (say a 408) may come first; the close follows it.
                Ok(_) => continue,
            }
        }
    })
    .await;
    closed.map(|()| started.elapsed()).map_err(|_| bound)
}

/// `GET /health` on a new connection; the status line, or `None` if none came within `bound`.
async fn health_status(addr: SocketAddr, bound: Duration) -> Option<String> {
    timeout(bound, async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let answer = String::from_utf8_lossy(&answer);
        answer.lines().next().map(str::to_owned)
    })
    .await
    .ok()
    .flatten()
}

/// Sends SIGTERM and waits up to `bound` for the exit; how long it took, or `None` if the
/// process still runs (it is then killed when `service` drops).
fn terminate_within(service: &Service, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    let sent = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(service.pid().to_string())
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {} failed", service.pid());
    let proc_path = format!("/proc/{}/stat", service.pid());
    while started.elapsed() < bound {
        // A zombie (state Z) has exited; its parent (this test) has not reaped it yet.
        let state = std::fs::read_to_string(&proc_path).unwrap_or_default();
        let exited = state.is_empty() || state.split_whitespace().nth(2) == Some("Z");
        if exited {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_one_byte_and_stalls_is_closed_by_the_header_timeout() {
    let orchestrator = tokio::task::block_in_place(|| lone_orchestrator(&[]));
    let mut stalled = stalled_connection(orchestrator.addr).await;
    match closed_within(&mut stalled, HEADER_TIMEOUT_BOUND).await {
        Ok(held) => eprintln!("the stalled connection was closed after {held:?}"),
        Err(bound) => panic!("a client that sent one byte was still held after {bound:?}"),
    }
    // The server still serves others.
    let status = health_status(orchestrator.addr, Duration::from_secs(5)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_orchestrator_within_10_s_although_clients_stall() {
    let orchestrator = tokio::task::block_in_place(|| lone_orchestrator(&[]));
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(stalled_connection(orchestrator.addr).await);
    }
    // A kept-alive connection that got its answer and then stays idle.
    let mut idle = TcpStream::connect(orchestrator.addr)
        .await
        .expect("connects");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("request sent");
    let mut answer = [0_u8; 512];
    let read = idle.read(&mut answer).await.expect("an answer");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));

    let stopped = tokio::task::block_in_place(|| terminate_within(&orchestrator, STOP_BOUND));
    match stopped {
        Some(took) => eprintln!("stopped {took:?} after SIGTERM"),
        None => panic!(
            "the orchestrator still ran {STOP_BOUND:?} after SIGTERM, held by stalled clients"
        ),
    }
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_a_stalled_one_is_closed() {
    let limit = MAX_CONNECTIONS.to_string();
    let orchestrator =
        tokio::task::block_in_place(|| lone_orchestrator(&["--max-connections", &limit]));
    let mut stalled = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        stalled.push(stalled_connection(orchestrator.addr).await);
    }
    let started = Instant::now();
    // Every slot is taken: this request waits in the listen backlog...
    assert_eq!(
        health_status(orchestrator.addr, Duration::from_secs(2)).await,
        None,
        "a connection beyond the limit of {MAX_CONNECTIONS} was served"
    );
    // ...until the header timeout closes the stalled ones and frees their slots.
    let status = health_status(orchestrator.addr, HEADER_TIMEOUT_BOUND).await;
    assert_eq!(
        status.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "no answer {:?} after the slots were taken",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_answered_408_within_the_body_timeout() {
    let orchestrator = tokio::task::block_in_place(|| lone_orchestrator(&[]));
    let mut stream = TcpStream::connect(orchestrator.addr)
        .await
        .expect("connects");
    stream
        .write_all(
            b"POST /checkout HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{",
        )
        .await
        .expect("head and one byte of the body sent");
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = timeout(HEADER_TIMEOUT_BOUND, async {
        let mut buffer = [0_u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => {
                    answer.extend_from_slice(&buffer[..read]);
                    if answer.windows(4).any(|window| window == b"\r\n\r\n") {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "a body stalled after one byte was still awaited after {:?}",
        started.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
}
