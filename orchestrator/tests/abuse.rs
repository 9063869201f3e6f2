//! The abuse run of issue 16: for [`ABUSE_FOR`], clients send oversized, deeply nested, slow
//! (one byte a second) and flooding requests to every public port of the system (the
//! orchestrator's HTTP port, the executors' HTTP status ports, the backends' and the queue nodes'
//! gRPC ports), while ordinary checkouts go on. It holds the system to three bounds:
//! - every ordinary checkout is approved within [`CHECKOUT_DEADLINE`];
//! - no process's resident memory (`VmRSS` in `/proc/PID/status`, sampled every
//!   [`RSS_SAMPLE_EVERY`]) grows past [`MEMORY_BOUND_MIB`];
//! - SIGTERM, sent to every process at once while the slow and idle clients are still connected,
//!   stops each within [`STOP_BOUND`].
//!
//! Every broken bound is one line of the failure, naming the process, the bound and the value
//! measured; the measurements are printed either way.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut};
use common::{Options, System, valid_order};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::codegen::http::uri::PathAndQuery;

/// How long the abusers and the ordinary checkouts run.
const ABUSE_FOR: Duration = Duration::from_secs(60);
/// Each ordinary checkout must be answered `Order Approved` within this.
const CHECKOUT_DEADLINE: Duration = Duration::from_secs(10);
/// How often an ordinary checkout is placed (one at a time).
const CHECKOUT_EVERY: Duration = Duration::from_millis(250);
/// How long an ordinary checkout that got no answer waits before it is sent again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The most resident memory any process may reach (debug builds; each starts at 10 to 40 MiB).
const MEMORY_BOUND_MIB: u64 = 256;
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// How long a process may take to exit after SIGTERM.
const STOP_BOUND: Duration = Duration::from_secs(10);
/// How long the run watches for exits after SIGTERM, so that a process over the bound is
/// reported with the time it took.
const STOPS_WATCHED_FOR: Duration = Duration::from_secs(30);

/// Per port: connections that send one byte a second and never finish a request.
const SLOW_CLIENTS_PER_PORT: usize = 8;
/// Per port: connections opened and left silent.
const IDLE_CONNECTIONS_PER_PORT: usize = 64;
/// Per port: clients sending requests back to back, each to a path never used before.
const FLOODERS_PER_PORT: usize = 2;
/// What an oversized request tries to send.
const OVERSIZED_BYTES: usize = 64 << 20;
/// How deep a nested request nests (JSON arrays, or protobuf groups).
const NESTING_DEPTH: usize = 100_000;
/// How long an abusive request may take before the abuser gives up on it and sends the next.
const ABUSER_TIMEOUT: Duration = Duration::from_secs(5);

/// The methods of each gRPC service, the paths the gRPC abusers aim at.
const FRAUD_DETECTION_PATHS: &[&str] = &["/bookstore.FraudDetection/CheckOrder"];
const TRANSACTION_VERIFICATION_PATHS: &[&str] =
    &["/bookstore.TransactionVerification/VerifyTransaction"];
const SUGGESTIONS_PATHS: &[&str] = &[
    "/bookstore.Suggestions/SuggestBooks",
    "/bookstore.Suggestions/ListBooks",
];
const QUEUE_NODE_PATHS: &[&str] = &[
    "/bookstore.OrderQueue/Enqueue",
    "/bookstore.OrderQueue/GetOrder",
    "/bookstore.OrderQueue/ClusterStatus",
    "/bookstore.RaftTransport/AppendEntries",
];

/// One public port of one process.
#[derive(Clone)]
struct Target {
    process: String,
    pid: u32,
    addr: SocketAddr,
    protocol: Protocol,
}

#[derive(Clone, Copy)]
enum Protocol {
    Http,
    /// gRPC, with the service's real method paths.
    Grpc(&'static [&'static str]),
}

/// What the abusers did, for the run's summary.
#[derive(Default)]
struct AbuseCounts {
    oversized: AtomicU64,
    nested: AtomicU64,
    flood: AtomicU64,
    slow_bytes: AtomicU64,
    idle_connections: AtomicU64,
    /// Connections the abusers could not open: the port refused or did not answer in time.
    refused_connections: AtomicU64,
}

impl AbuseCounts {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The highest resident memory seen for one process, and when.
#[derive(Clone, Copy, Default)]
struct PeakRss {
    kib: u64,
    after: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abuse_on_every_port_breaks_no_bound() {
    let mut system = System::start_with(Options {
        executors: 3,
        fraud_detection_args: vec!["--velocity-max-orders=1000000".to_owned()],
        ..Options::default()
    })
    .await;
    let targets = targets(&mut system);
    let started = Instant::now();
    let abuse_ends = started + ABUSE_FOR;
    // Set once the SIGTERM check is done: the slow and idle clients hold on until then.
    let release = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(AbuseCounts::default());

    let mut abusers = JoinSet::new();
    let mut holders = JoinSet::new();
    for target in &targets {
        start_abusers(target, abuse_ends, &counts, &mut abusers);
        start_holders(target, &release, &counts, &mut holders);
    }
    let sampler = tokio::spawn(sample_rss(targets.clone(), started, Arc::clone(&release)));
    let checkouts = ordinary_checkouts(system.url("/checkout"), abuse_ends).await;
    while abusers.join_next().await.is_some() {}

    let stops = terminate_all(&targets).await;
    release.store(true, Ordering::Relaxed);
    let peaks = sampler.await.expect("the RSS sampler ends");
    holders.abort_all();

    let mut broken = Vec::new();
    let approved = checkouts.iter().filter(|checkout| checkout.is_ok()).count();
    eprintln!(
        "ordinary checkouts: {approved} of {} approved within {CHECKOUT_DEADLINE:?}",
        checkouts.len()
    );
    broken.extend(checkouts.into_iter().filter_map(Result::err));
    if approved == 0 {
        broken.push("no ordinary checkout was approved at all".to_owned());
    }
    for target in unique_processes(&targets) {
        let peak = peaks.get(&target.pid).copied().unwrap_or_default();
        let peak_mib = peak.kib.div_ceil(1024);
        let stopped = stops.get(&target.pid).copied().flatten();
        eprintln!(
            "{} (pid {}): peak RSS {peak_mib} MiB at {:.1} s; {}",
            target.process,
            target.pid,
            peak.after.as_secs_f64(),
            match stopped {
                Some(took) => format!("exited {:.2} s after SIGTERM", took.as_secs_f64()),
                None => format!("still running {STOPS_WATCHED_FOR:?} after SIGTERM"),
            }
        );
        if peak_mib > MEMORY_BOUND_MIB {
            broken.push(format!(
                "{} (pid {}): RSS reached {peak_mib} MiB at {:.1} s, over the {MEMORY_BOUND_MIB} \
                 MiB bound",
                target.process,
                target.pid,
                peak.after.as_secs_f64()
            ));
        }
        match stopped {
            Some(took) if took <= STOP_BOUND => {}
            Some(took) => broken.push(format!(
                "{} (pid {}): exited {:.2} s after SIGTERM, over the {STOP_BOUND:?} bound",
                target.process,
                target.pid,
                took.as_secs_f64()
            )),
            None => broken.push(format!(
                "{} (pid {}): still running {STOPS_WATCHED_FOR:?} after SIGTERM, over the \
                 {STOP_BOUND:?} bound",
                target.process, target.pid
            )),
        }
    }
    eprintln!(
        "abuse sent: {} oversized, {} nested, {} flood requests, {} slow bytes, {} idle \
         connections held; {} connections refused or not accepted in time",
        counts.oversized.load(Ordering::Relaxed),
        counts.nested.load(Ordering::Relaxed),
        counts.flood.load(Ordering::Relaxed),
        counts.slow_bytes.load(Ordering::Relaxed),
        counts.idle_connections.load(Ordering::Relaxed),
        counts.refused_connections.load(Ordering::Relaxed),
    );
    assert!(
        broken.is_empty(),
        "the abuse run broke {} bound(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

/// Every public port of the system, with the process behind it.
fn targets(system: &mut System) -> Vec<Target> {
    let service = |service: &bookstore_common::testing::Service, protocol| Target {
        process: service.name.clone(),
        pid: service.pid(),
        addr: service.addr,
        protocol,
    };
    let mut targets = vec![service(&system.orchestrator, Protocol::Http)];
    for (n, executor) in system.executors.iter().enumerate() {
        targets.push(Target {
            process: format!("order-executor-{}", n + 1),
            ..service(executor, Protocol::Http)
        });
    }
    let backends = [
        (&system.fraud_detection, FRAUD_DETECTION_PATHS),
        (
            &system.transaction_verification,
            TRANSACTION_VERIFICATION_PATHS,
        ),
        (&system.suggestions, SUGGESTIONS_PATHS),
    ];
    for (backend, paths) in backends {
        let backend = backend.as_ref().expect("the harness runs every backend");
        targets.push(service(backend, Protocol::Grpc(paths)));
    }
    let cluster = system.cluster();
    for id in common::cluster::NODE_IDS {
        targets.push(Target {
            process: format!("queue-node-{id}"),
            pid: cluster.pid(id).expect("every queue node runs"),
            addr: cluster.addr(id).parse().expect("a node's address"),
            protocol: Protocol::Grpc(QUEUE_NODE_PATHS),
        });
    }
    targets
}

/// Each process once (a process may have several public ports).
fn unique_processes(targets: &[Target]) -> Vec<&Target> {
    let mut seen = std::collections::BTreeSet::new();
    targets
        .iter()
        .filter(|target| seen.insert(target.pid))
        .collect()
}

/// The abusers that run until `until`: oversized, nested and flooding requests.
fn start_abusers(
    target: &Target,
    until: Instant,
    counts: &Arc<AbuseCounts>,
    abusers: &mut JoinSet<()>,
) {
    let (addr, counts) = (target.addr, Arc::clone(counts));
    match target.protocol {
        Protocol::Http => {
            abusers.spawn(repeat_until(until, {
                let counts = Arc::clone(&counts);
                move || http_oversized(addr, Arc::clone(&counts))
            }));
            abusers.spawn(repeat_until(until, {
                let counts = Arc::clone(&counts);
                move || http_nested(addr, Arc::clone(&counts))
            }));
            for _ in 0..FLOODERS_PER_PORT {
                // One client each, its connections kept: requests as fast as the server answers.
                let (counts, client) = (Arc::clone(&counts), reqwest::Client::new());
                abusers.spawn(repeat_until(until, move || {
                    http_flood(client.clone(), addr, Arc::clone(&counts))
                }));
            }
        }
        Protocol::Grpc(paths) => {
            let flood_counts = Arc::clone(&counts);
            let send = move |payload: fn() -> Vec<u8>, counter: fn(&AbuseCounts) -> &AtomicU64| {
                let (counts, channel) = (Arc::clone(&counts), lazy_channel(addr));
                repeat_until(until, move || {
                    let (counts, channel) = (Arc::clone(&counts), channel.clone());
                    async move {
                        let path = paths[rand::random_range(0..paths.len())];
                        grpc_call(channel, path.to_owned(), payload()).await;
                        AbuseCounts::add(counter(&counts));
                    }
                })
            };
            abusers.spawn(send(|| vec![0x0a; OVERSIZED_BYTES], |c| &c.oversized));
            abusers.spawn(send(nested_protobuf, |c| &c.nested));
            for _ in 0..FLOODERS_PER_PORT {
                let (counts, channel) = (Arc::clone(&flood_counts), lazy_channel(addr));
                abusers.spawn(repeat_until(until, move || {
                    let (counts, channel) = (Arc::clone(&counts), channel.clone());
                    async move {
                        // A path never seen before: a label of its own, if the server makes one.
                        let path = format!("/bookstore.Flood/M{}", uuid::Uuid::new_v4().simple());
                        grpc_call(channel, path, b"flood".to_vec()).await;
                        AbuseCounts::add(&counts.flood);
                    }
                }));
            }
        }
    }
}

/// The clients that stay connected until `release`: slow ones and idle ones.
fn start_holders(
    target: &Target,
    release: &Arc<AtomicBool>,
    counts: &Arc<AbuseCounts>,
    holders: &mut JoinSet<()>,
) {
    let opening: &'static [u8] = match target.protocol {
        Protocol::Http => b"POST /checkout HTTP/1.1\r\nHost: abuse\r\nX-Slow: ",
        // The HTTP/2 preface, then a DATA frame header announcing 16 KiB on stream 1.
        Protocol::Grpc(_) => {
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x40\x00\x00\x00\x00\x00\x00\x01"
        }
    };
    for _ in 0..SLOW_CLIENTS_PER_PORT {
        holders.spawn(drip(
            target.addr,
            opening,
            Arc::clone(release),
            Arc::clone(counts),
        ));
    }
    holders.spawn(hold_idle(
        target.addr,
        Arc::clone(release),
        Arc::clone(counts),
    ));
}

/// Runs `attempt` again and again until `until`.
async fn repeat_until<F, Fut>(until: Instant, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    while Instant::now() < until {
        let _ = tokio::time::timeout_at(until, attempt()).await;
    }
}

async fn connect(addr: SocketAddr, counts: &AbuseCounts) -> Option<TcpStream> {
    match tokio::time::timeout(ABUSER_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Some(stream),
        _ => {
            AbuseCounts::add(&counts.refused_connections);
            // Not a busy loop against a port that refuses.
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// A checkout that announces a gigabyte and sends up to [`OVERSIZED_BYTES`] of it, as fast as
/// the server takes it; then reads whatever the server answers.
async fn http_oversized(addr: SocketAddr, counts: Arc<AbuseCounts>) {
    let Some(mut stream) = connect(addr, &counts).await else {
        return;
    };
    AbuseCounts::add(&counts.oversized);
    let head = format!(
        "POST /checkout HTTP/1.1\r\nHost: abuse\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{{\"user\":{{\"name\":\"",
        1u64 << 30
    );
    let chunk = vec![b'a'; 1 << 20];
    let send = async {
        stream.write_all(head.as_bytes()).await?;
        for _ in 0..OVERSIZED_BYTES / chunk.len() {
            stream.write_all(&chunk).await?;
        }
        let mut answer = [0u8; 1024];
        stream.read(&mut answer).await
    };
    let _ = tokio::time::timeout(ABUSER_TIMEOUT, send).await;
}

/// A checkout whose body is JSON arrays [`NESTING_DEPTH`] deep.
async fn http_nested(addr: SocketAddr, counts: Arc<AbuseCounts>) {
    let body = format!("{}{}", "[".repeat(NESTING_DEPTH), "]".repeat(NESTING_DEPTH));
    let _ = reqwest::Client::new()
        .post(format!("http://{addr}/checkout"))
        .header("Content-Type", "application/json")
        .body(body)
        .timeout(ABUSER_TIMEOUT)
        .send()
        .await;
    AbuseCounts::add(&counts.nested);
}

/// One request to a path never used before, then one malformed checkout.
async fn http_flood(client: reqwest::Client, addr: SocketAddr, counts: Arc<AbuseCounts>) {
    let path = format!("/flood/{}", uuid::Uuid::new_v4().simple());
    let _ = client
        .get(format!("http://{addr}{path}"))
        .timeout(ABUSER_TIMEOUT)
        .send()
        .await;
    let _ = client
        .post(format!("http://{addr}/checkout"))
        .body("{\"user\":")
        .timeout(ABUSER_TIMEOUT)
        .send()
        .await;
    AbuseCounts::add(&counts.flood);
    AbuseCounts::add(&counts.flood);
}

/// A protobuf message of [`NESTING_DEPTH`] groups one inside the other (field 15, start-group
/// and end-group tags), which a decoder that recurses without a limit follows to the end.
fn nested_protobuf() -> Vec<u8> {
    let mut message = vec![0x7b; NESTING_DEPTH];
    message.extend(std::iter::repeat_n(0x7c, NESTING_DEPTH));
    message
}

/// A channel to `addr` that connects on its first call, and again after the server hangs up.
fn lazy_channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a loopback address is a valid URI")
        .connect_timeout(ABUSER_TIMEOUT)
        .timeout(ABUSER_TIMEOUT)
        .connect_lazy()
}

/// One unary gRPC call of `payload` (raw bytes, framed by gRPC) to `path`.
async fn grpc_call(channel: tonic::transport::Channel, path: String, payload: Vec<u8>) {
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
    if grpc.ready().await.is_err() {
        // Not a busy loop against a port that refuses.
        tokio::time::sleep(Duration::from_millis(100)).await;
        return;
    }
    let Ok(path) = PathAndQuery::try_from(path) else {
        return;
    };
    let _ = grpc
        .unary(tonic::Request::new(payload), path, RawCodec)
        .await;
}

/// Connects and sends `opening`, then one more byte every second, never finishing a request,
/// until `release`.
async fn drip(
    addr: SocketAddr,
    opening: &'static [u8],
    release: Arc<AtomicBool>,
    counts: Arc<AbuseCounts>,
) {
    let Some(mut stream) = connect(addr, &counts).await else {
        return;
    };
    let mut bytes = opening.iter().copied().chain(std::iter::repeat(b'a'));
    while !release.load(Ordering::Relaxed) {
        let byte = bytes.next().unwrap_or(b'a');
        if stream.write_all(&[byte]).await.is_err() {
            // The server hung up: the next slow client takes its place.
            match connect(addr, &counts).await {
                Some(next) => {
                    stream = next;
                    bytes = opening.iter().copied().chain(std::iter::repeat(b'a'));
                }
                None => continue,
            }
        }
        AbuseCounts::add(&counts.slow_bytes);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Opens [`IDLE_CONNECTIONS_PER_PORT`] connections that send nothing, and holds them until
/// `release`.
async fn hold_idle(addr: SocketAddr, release: Arc<AtomicBool>, counts: Arc<AbuseCounts>) {
    let mut held = Vec::with_capacity(IDLE_CONNECTIONS_PER_PORT);
    for _ in 0..IDLE_CONNECTIONS_PER_PORT {
        if let Some(stream) = connect(addr, &counts).await {
            AbuseCounts::add(&counts.idle_connections);
            held.push(stream);
        }
    }
    while !release.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ordinary checkouts, one every [`CHECKOUT_EVERY`] until `until`: each approved within
/// [`CHECKOUT_DEADLINE`], or the sentence saying how it was not. Each is sent as a careful client
/// (the shop's page) sends it: with an idempotency key, and again with the same key when no
/// answer came (a connection the server closed as the request went out, say), within the
/// deadline. The count of such retries is printed.
async fn ordinary_checkouts(url: String, until: Instant) -> Vec<Result<(), String>> {
    let client = reqwest::Client::new();
    let mut outcomes = Vec::new();
    let mut retries = 0usize;
    let mut next = Instant::now();
    while next < until {
        tokio::time::sleep_until(next).await;
        next += CHECKOUT_EVERY;
        let number = outcomes.len() + 1;
        let key = uuid::Uuid::new_v4().to_string();
        let asked = Instant::now();
        let deadline = asked + CHECKOUT_DEADLINE;
        let answer = loop {
            let sent = client
                .post(&url)
                .header("Idempotency-Key", &key)
                .json(&valid_order())
                .timeout(deadline.saturating_duration_since(Instant::now()))
                .send()
                .await;
            let answer = match sent {
                Ok(response) => {
                    let status = response.status();
                    response.text().await.map(|body| (status, body))
                }
                Err(error) => Err(error),
            };
            match answer {
                Err(error) if !error.is_timeout() && Instant::now() + RETRY_PAUSE < deadline => {
                    retries += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                answer => break answer,
            }
        };
        let took = asked.elapsed();
        outcomes.push(match answer {
            Ok((status, body))
                if status.is_success()
                    && body.contains("\"Order Approved\"")
                    && took <= CHECKOUT_DEADLINE =>
            {
                Ok(())
            }
            Ok((status, body)) => Err(format!(
                "orchestrator: ordinary checkout #{number} was answered {status} after {:.2} s \
                 (deadline {CHECKOUT_DEADLINE:?}): {}",
                took.as_secs_f64(),
                body.chars().take(300).collect::<String>()
            )),
            Err(error) => Err(format!(
                "orchestrator: ordinary checkout #{number} got no answer within \
                 {CHECKOUT_DEADLINE:?} (after {:.2} s): {error}",
                took.as_secs_f64()
            )),
        });
    }
    println!("ordinary checkouts sent again after no answer: {retries}");
    outcomes
}

/// Samples every process's resident memory until `release`; the peak of each, by pid.
async fn sample_rss(
    targets: Vec<Target>,
    started: Instant,
    release: Arc<AtomicBool>,
) -> BTreeMap<u32, PeakRss> {
    let mut peaks: BTreeMap<u32, PeakRss> = BTreeMap::new();
    while !release.load(Ordering::Relaxed) {
        for target in &targets {
            if let Some(kib) = rss_kib(target.pid) {
                let peak = peaks.entry(target.pid).or_default();
                if kib > peak.kib {
                    *peak = PeakRss {
                        kib,
                        after: started.elapsed(),
                    };
                }
            }
        }
        tokio::time::sleep(RSS_SAMPLE_EVERY).await;
    }
    peaks
}

/// `VmRSS` of process `pid` in KiB; none once it has exited.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether process `pid` has exited: gone, or a zombie its parent (this test) has not reaped.
fn exited(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // `pid (comm) STATE ...`; the command may hold spaces and parentheses.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}

/// Sends SIGTERM to every process at once and watches for [`STOPS_WATCHED_FOR`]; how long each
/// took to exit, by pid (none for one still running).
async fn terminate_all(targets: &[Target]) -> BTreeMap<u32, Option<Duration>> {
    let pids: Vec<String> = unique_processes(targets)
        .iter()
        .map(|target| target.pid.to_string())
        .collect();
    let sent = tokio::process::Command::new("kill")
        .arg("-TERM")
        .args(&pids)
        .status()
        .await
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pids:?} failed");
    let signalled = Instant::now();
    let mut stops: BTreeMap<u32, Option<Duration>> = unique_processes(targets)
        .iter()
        .map(|target| (target.pid, None))
        .collect();
    while signalled.elapsed() < STOPS_WATCHED_FOR && stops.values().any(Option::is_none) {
        for (pid, stopped) in &mut stops {
            if stopped.is_none() && exited(*pid) {
                *stopped = Some(signalled.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stops
}

/// A gRPC codec of raw bytes: what the abusers send is not a valid message of any service.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;

struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// The SIGTERM check can pass: a child that exited is seen as exited (a zombie until reaped),
/// one still running is not.
#[test]
fn the_exit_check_tells_an_exited_child_from_a_running_one() {
    let mut running = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("start sleep");
    let mut done = std::process::Command::new("true")
        .spawn()
        .expect("start true");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !exited(done.id()) {
        assert!(
            std::time::Instant::now() < deadline,
            "an exited child not seen as exited"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!exited(running.id()));
    assert!(rss_kib(running.id()).is_some_and(|kib| kib > 0));
    running.kill().expect("kill sleep");
    running.wait().expect("reap sleep");
    done.wait().expect("reap true");
}
