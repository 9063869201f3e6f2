//! Garbage and oversized frames to every port of a running system: the orchestrator's HTTP port,
//! the three backends' gRPC ports, each queue node's gRPC port (client API and Raft RPC share
//! it), the executor's HTTP port, and the metrics ports of the backends and queue nodes. Each
//! port gets random bytes, an HTTP/2 preface followed by garbage frames, a gRPC request that
//! declares a 4 GiB message, a request with 1 MiB of headers (HTTP/1.1 and HTTP/2), and a
//! connection that sends half a request and stalls; the orchestrator also gets a 100 MB body.
//! Afterwards, with the stalled connections still open, every service answers its health check,
//! a real checkout is approved and enqueued, and no service logged a panic.
//!
//! The HTTP/2 frames are written by hand (a few lines of HPACK literals) so that they can be
//! as wrong as wanted; a real client would refuse to send most of them.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bookstore_common::probe::{Target, probe};
use common::cluster::NODE_IDS;
use common::{Options, System, post_checkout, valid_order};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long one attack on one port may take, connection, writes and reads together.
const ATTACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to read a server's answer before moving on (it may rightly keep the connection).
const READ_WINDOW: Duration = Duration::from_secs(2);
/// How long a health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
const HUGE_HEADERS_BYTES: usize = 1 << 20;
const HUGE_BODY_BYTES: usize = 100 << 20;

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// The largest frame payload a peer must accept before it says otherwise.
const MAX_FRAME_PAYLOAD: usize = 16_384;

/// What listens on a port, and the request path a well-formed request to it would use.
#[derive(Debug, Clone)]
enum Protocol {
    Grpc { method: &'static str },
    Http { path: &'static str },
}

#[derive(Debug, Clone)]
struct Port {
    name: String,
    addr: SocketAddr,
    protocol: Protocol,
}

impl Port {
    fn grpc(name: impl Into<String>, addr: SocketAddr, method: &'static str) -> Port {
        let protocol = Protocol::Grpc { method };
        Port {
            name: name.into(),
            addr,
            protocol,
        }
    }

    fn http(name: impl Into<String>, addr: SocketAddr, path: &'static str) -> Port {
        let protocol = Protocol::Http { path };
        Port {
            name: name.into(),
            addr,
            protocol,
        }
    }

    fn path(&self) -> &'static str {
        match self.protocol {
            Protocol::Grpc { method } => method,
            Protocol::Http { path } => path,
        }
    }

    /// The health check that shows the service still serves.
    fn health_target(&self) -> Target {
        let target = match self.protocol {
            Protocol::Grpc { .. } => format!("grpc://{}", self.addr),
            Protocol::Http { path: "/metrics" } => format!("http://{}/metrics", self.addr),
            Protocol::Http { .. } => format!("http://{}/health", self.addr),
        };
        Target::parse(&target).expect("a valid probe target")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_to_every_port_breaks_nothing() {
    let mut system = System::start_with(Options {
        executors: 1,
        ..Options::default()
    })
    .await;
    let ports = every_port(&mut system);

    for port in &ports {
        for (attack, bytes) in attacks(port) {
            let answered = timeout(ATTACK_TIMEOUT, exchange(port.addr, &bytes)).await;
            assert!(
                answered.is_ok(),
                "{} ({}): {attack} took longer than {ATTACK_TIMEOUT:?}",
                port.name,
                port.addr
            );
        }
        // A gRPC server must refuse the message at once, not wait for (or allocate) 4 GiB.
        let request = http2_request(port.path(), &[], Some(&grpc_message_prefix(u32::MAX)));
        let answer = timeout(ATTACK_TIMEOUT, exchange(port.addr, &request))
            .await
            .expect("a 4 GiB message is answered in time");
        if matches!(port.protocol, Protocol::Grpc { .. }) {
            assert!(
                answers_stream_one(&answer),
                "{}: a 4 GiB message was not refused: {answer:?}",
                port.name
            );
        }
    }

    let status = timeout(
        Duration::from_secs(60),
        post_huge_body(system.orchestrator.addr),
    )
    .await
    .expect("the 100 MB body is answered in time");
    assert!(status.starts_with("HTTP/1.1 413"), "{status:?}");

    // Held open until the end: while they stall, the services must keep answering others.
    let mut stalled = Vec::new();
    for port in &ports {
        let mut stream = timeout(ATTACK_TIMEOUT, TcpStream::connect(port.addr))
            .await
            .expect("connects in time")
            .unwrap_or_else(|error| panic!("{} refuses connections: {error}", port.name));
        stream
            .write_all(&half_request(port))
            .await
            .expect("half a request is sent");
        stalled.push(stream);
    }

    for port in &ports {
        if let Err(error) = probe(&port.health_target(), HEALTH_TIMEOUT).await {
            panic!("{} ({}) is unhealthy: {error}", port.name, port.addr);
        }
    }
    let (status, answer) = timeout(
        Duration::from_secs(30),
        post_checkout(&system, &valid_order()),
    )
    .await
    .expect("the checkout is answered in time");
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "Order Approved", "{answer}");
    let order_id = answer["orderId"].as_str().expect("an order id");
    let order: serde_json::Value = timeout(HEALTH_TIMEOUT, async {
        reqwest::get(system.url(&format!("/orders/{order_id}")))
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("the order is known")
            .json()
            .await
            .expect("the order is JSON")
    })
    .await
    .expect("the order is shown in time");
    assert!(
        ["queued", "executing", "executed"].contains(&order["status"].as_str().unwrap_or("")),
        "{order}"
    );
    drop(stalled);

    let mut logs = system.all_log_lines();
    for executor in &system.executors {
        logs.extend(
            executor
                .log_lines()
                .into_iter()
                .map(|line| (executor.name.clone(), line)),
        );
    }
    for id in NODE_IDS {
        let cluster = system.cluster();
        logs.extend(
            cluster
                .log_lines(id)
                .into_iter()
                .map(|line| (format!("queue-node {id}"), line)),
        );
    }
    let panics: Vec<&(String, String)> = logs
        .iter()
        .filter(|(_, line)| line.contains("panicked"))
        .collect();
    assert!(panics.is_empty(), "services panicked: {panics:#?}");
}

/// Every listening port of the system.
fn every_port(system: &mut System) -> Vec<Port> {
    let mut ports = vec![
        Port::http("orchestrator", system.orchestrator.addr, "/checkout"),
        Port::http(
            "orchestrator metrics",
            addr_of_url(&system.orchestrator.metrics_url()),
            "/metrics",
        ),
    ];
    let backends = [
        (
            &system.fraud_detection,
            "/bookstore.FraudDetection/CheckOrder",
        ),
        (
            &system.transaction_verification,
            "/bookstore.TransactionVerification/VerifyTransaction",
        ),
        (&system.suggestions, "/bookstore.Suggestions/SuggestBooks"),
    ];
    for (service, method) in backends {
        let service = service.as_ref().expect("the harness runs the backends");
        ports.push(Port::grpc(&service.name, service.addr, method));
        ports.push(Port::http(
            format!("{} metrics", service.name),
            addr_of_url(&service.metrics_url()),
            "/metrics",
        ));
    }
    for executor in &system.executors {
        ports.push(Port::http(&executor.name, executor.addr, "/health"));
    }
    let cluster = system.cluster();
    for (id, addr) in NODE_IDS.into_iter().zip(cluster.addrs()) {
        let addr: SocketAddr = addr.parse().expect("a node address");
        ports.push(Port::grpc(
            format!("queue-node {id}"),
            addr,
            "/bookstore.OrderQueue/Enqueue",
        ));
        ports.push(Port::grpc(
            format!("queue-node {id} (Raft)"),
            addr,
            "/bookstore.RaftTransport/AppendEntries",
        ));
        ports.push(Port::http(
            format!("queue-node {id} metrics"),
            addr_of_url(&cluster.metrics_url(id)),
            "/metrics",
        ));
    }
    ports
}

/// `http://HOST:PORT/PATH` -> `HOST:PORT`.
fn addr_of_url(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .and_then(|authority| authority.parse().ok())
        .unwrap_or_else(|| panic!("{url} has no HOST:PORT"))
}

/// The byte streams sent to `port`, each on its own connection, with what they are.
fn attacks(port: &Port) -> Vec<(&'static str, Vec<u8>)> {
    let path = port.path();
    vec![
        ("random bytes", random_bytes(64 * 1024)),
        ("an HTTP/2 preface and garbage frames", garbage_frames()),
        (
            "an HTTP/2 request with 1 MiB of headers",
            http2_request(
                path,
                &[("x-padding", &"a".repeat(HUGE_HEADERS_BYTES))],
                None,
            ),
        ),
        (
            "an HTTP/1.1 request with 1 MiB of headers",
            http1_huge_headers(path),
        ),
    ]
}

/// Whether the server's HTTP/2 frames in `answer` answer stream 1 (headers or a reset) or close
/// the connection (a GOAWAY).
fn answers_stream_one(answer: &[u8]) -> bool {
    const RST_STREAM: u8 = 0x3;
    const GOAWAY: u8 = 0x7;
    let mut rest = answer;
    while let [l0, l1, l2, kind, _flags, s0, s1, s2, s3, after @ ..] = rest {
        let length = usize::from(*l0) << 16 | usize::from(*l1) << 8 | usize::from(*l2);
        let stream_id = u32::from_be_bytes([*s0, *s1, *s2, *s3]) & 0x7fff_ffff;
        if *kind == GOAWAY || (stream_id == 1 && [HEADERS, RST_STREAM].contains(kind)) {
            return true;
        }
        rest = after.get(length..).unwrap_or_default();
    }
    false
}

/// Connects, sends `bytes` (a server may close before taking them all), then reads whatever
/// comes back for a while.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        panic!("{addr} refuses connections");
    };
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let _ = timeout(READ_WINDOW, stream.read_to_end(&mut answer)).await;
    answer
}

fn random_bytes(length: usize) -> Vec<u8> {
    let mut bytes = vec![0; length];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("a frame under 16 MiB");
    let mut frame = length.to_be_bytes()[1..].to_vec();
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The preface, then frames of random types, flags, streams and payloads.
fn garbage_frames() -> Vec<u8> {
    let mut rng = rand::rng();
    let mut bytes = HTTP2_PREFACE.to_vec();
    for _ in 0..64 {
        let payload = random_bytes(rng.next_u32() as usize % 512);
        let [kind, flags, ..] = rng.next_u32().to_be_bytes();
        bytes.extend(frame(kind % 12, flags, rng.next_u32() % 8, &payload));
    }
    bytes
}

/// An HPACK integer with an `prefix_bits`-bit prefix after `flags`.
fn hpack_integer(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, value: usize) {
    let limit = (1usize << prefix_bits) - 1;
    if value < limit {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | limit as u8);
    let mut rest = value - limit;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// One header as an HPACK literal without indexing, its name and value not Huffman-coded.
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    for text in [name, value] {
        hpack_integer(out, 0x00, 7, text.len());
        out.extend_from_slice(text.as_bytes());
    }
}

/// A gRPC message's 5-byte prefix (not compressed, `length` bytes), followed by a few bytes of
/// the message.
fn grpc_message_prefix(length: u32) -> Vec<u8> {
    let mut message = vec![0];
    message.extend_from_slice(&length.to_be_bytes());
    message.extend_from_slice(b"\x0a\x03abc");
    message
}

/// The preface, empty settings and a POST to `path` on stream 1 with `extra_headers`; with
/// `body`, the body ends the stream.
fn http2_request(path: &str, extra_headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    .into_iter()
    .chain(extra_headers.iter().copied())
    {
        hpack_literal(&mut block, name, value);
    }
    let mut bytes = HTTP2_PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[]));
    let chunks: Vec<&[u8]> = block.chunks(MAX_FRAME_PAYLOAD).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        let kind = if index == 0 { HEADERS } else { CONTINUATION };
        let last = if index + 1 == chunks.len() {
            END_HEADERS
        } else {
            0
        };
        let end_stream = if index == 0 && body.is_none() {
            END_STREAM
        } else {
            0
        };
        bytes.extend(frame(kind, last | end_stream, 1, chunk));
    }
    if let Some(body) = body {
        bytes.extend(frame(DATA, END_STREAM, 1, body));
    }
    bytes
}

fn http1_huge_headers(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(HUGE_HEADERS_BYTES)
    )
    .into_bytes()
}

/// The start of a request that promises more than it sends.
fn half_request(port: &Port) -> Vec<u8> {
    match port.protocol {
        Protocol::Http { path } => format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: 1000\r\n\r\n{{\"user\": "
        )
        .into_bytes(),
        Protocol::Grpc { method } => {
            let mut bytes = http2_request(method, &[], None);
            // Stream 1 ended with its headers; stream 3 is left open with a message half sent.
            let mut block = Vec::new();
            for (name, value) in [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", method),
                (":authority", "localhost"),
                ("content-type", "application/grpc"),
            ] {
                hpack_literal(&mut block, name, value);
            }
            bytes.extend(frame(HEADERS, END_HEADERS, 3, &block));
            bytes.extend(frame(DATA, 0, 3, &grpc_message_prefix(100)));
            bytes
        }
    }
}

/// POSTs a 100 MB body to `/checkout` as fast as the orchestrator takes it, stopping once it
/// answers; returns its status line.
async fn post_huge_body(addr: SocketAddr) -> String {
    let stream = TcpStream::connect(addr)
        .await
        .expect("the orchestrator accepts connections");
    let (mut reader, mut writer) = stream.into_split();
    let send = async move {
        let head = format!(
            "POST /checkout HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {HUGE_BODY_BYTES}\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..HUGE_BODY_BYTES / chunk.len() {
            writer.write_all(&chunk).await?;
        }
        // Sent it all: keep the connection open until the answer is read.
        std::future::pending::<std::io::Result<()>>().await
    };
    let receive = async move {
        let mut answer = Vec::new();
        let mut buffer = [0; 4096];
        while !answer.windows(2).any(|pair| pair == b"\r\n") {
            let read = reader.read(&mut buffer).await.expect("an answer");
            assert!(read > 0, "the orchestrator closed without answering");
            answer.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    tokio::pin!(receive);
    tokio::select! {
        status = &mut receive => status,
        // The orchestrator may stop reading, or close, once it has answered.
        _ = send => receive.await,
    }
}
