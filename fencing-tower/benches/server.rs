//! The server layer under load: axum behind [`FenceLayer`] against the same
//! axum bare, side by side in one run, over HTTP/1.1 keep-alive on loopback.
//!
//! ```sh
//! cargo bench -p fencing-tower --bench server            # every row
//! cargo bench -p fencing-tower --bench server -- yield   # the `yield` handler only
//! ```
//!
//! Run on demand, never in CI. Under `cargo test --benches` it only checks
//! that every variant answers, in well under a second.
//!
//! # What runs
//!
//! Two handlers, each behind five layerings (ten servers, all started at
//! once, each `axum::serve` on its own ephemeral port of `127.0.0.1`):
//!
//! - `hello`: `async fn() -> &'static str { "Hello, World!" }`, ready on its
//!   first poll;
//! - `yield`: the same after `tokio::task::yield_now().await`, so that the
//!   handler is pending once and the fence arms what it arms lazily (the
//!   budget's timer).
//!
//! Layerings, applied with `Router::layer` as a user would:
//!
//! - `bare`: no layer, the anchor;
//! - `cancel`: `FenceLayer::new()` (`CancelOnDisconnect`);
//! - `detach`: `FenceLayer::new().disposition(Detach { grace: 1s })`, one
//!   spawn per request;
//! - `cancel+budget`, `detach+budget`: the same with `.budget(30s)`, a
//!   server budget as a real service sets one, which adds a timer.
//!
//! # The load and the pinning
//!
//! The load generator is a client in this process:
//! `FENCING_BENCH_CONNECTIONS` HTTP/1.1 keep-alive connections (default
//! 16), each sending `GET /` one after the other (no pipelining), with
//! `TCP_NODELAY` on both sides. Each timing opens its connections, warms
//! each with a few requests, then sends `FENCING_BENCH_REQUESTS` requests in
//! all (default 50000), split evenly, and records every request's latency
//! (first byte written to last byte read).
//!
//! The default client (`FENCING_BENCH_CLIENT=raw`) writes the request's
//! bytes and parses the response with `httparse`, as `wrk` does: it costs
//! far less per request than the server, so the server is what limits the
//! throughput (its `busy` share below stays near 95%) and the layer's whole
//! cost shows in `req/s`. `FENCING_BENCH_CLIENT=hyper` uses hyper's client
//! connection instead; it costs about as much as the bare server, so a bare
//! server waits for it (busy about 85%) and a layered one catches up in that
//! slack: its throughput ratios look better than the layer is, and only
//! `srv µs/req` tells the real cost.
//!
//! On a 2-core machine the server gets one core and the client the other:
//! the server is a multi-thread tokio runtime with one worker (what
//! `#[tokio::main]` runs axum on, less the second worker), every thread of
//! it pinned to the first core; the client is a current-thread runtime on
//! the main thread, pinned to the second. So the two never compete for a
//! core and a variant's cost shows up on the server's core alone.
//! `FENCING_BENCH_PIN=0` turns the pinning off; with fewer than 2 cores
//! there is none.
//!
//! # What is reported
//!
//! Machines are shared and noisy, so a lone absolute figure proves
//! nothing. For each handler the five layerings are timed in turn,
//! `FENCING_BENCH_ROUNDS` times (default 21), the order reversed every other
//! round; then each row shows, as medians over the rounds:
//!
//! - `req/s`: requests ÷ wall time of the timing;
//! - `p99 µs`: the 99th percentile of the timing's latencies;
//! - `srv µs/req`: the server worker's busy time (tokio's
//!   `worker_total_busy_duration`) ÷ requests, the layer's cost with the
//!   client's taken out, and `busy`, that time ÷ wall time;
//! - for each of the three, `layered ÷ bare` twice: the ratio of the
//!   medians, and (`paired`) the median of the per-round ratios against the
//!   bare timing of the same round, which cancels slow drifts of the
//!   machine. The targets of issue 8 are judged on the paired ratios:
//!   throughput ≥ 0.97 for `CancelOnDisconnect`, ≥ 0.90 for `Detach`, p99 ≤
//!   1.10.
//!
//! With every connection busy, the server is saturated and a request's
//! latency is mostly its wait behind the others (Little's law: connections ÷
//! throughput), so the p99 ratio follows the throughput ratio. For the
//! latency the layer adds to a request on an idle server, run one
//! connection: `FENCING_BENCH_CONNECTIONS=1 FENCING_BENCH_REQUESTS=20000`.
//!
//! Nothing here asserts a time: a missed target is printed, never failed.
//!
//! # Profiling
//!
//! `--profile "<handler> <layering>"` (e.g. `--profile "hello cancel"`)
//! runs one timing of one variant and prints its figures, for a profiler
//! around the bench binary (build it with
//! `CARGO_PROFILE_BENCH_DEBUG=line-tables-only` for file and line names):
//!
//! ```sh
//! # from the workspace's root
//! B=$(cargo bench -p fencing-tower --bench server --no-run 2>&1 | sed -n 's/^ *Executable .*(\(.*\))$/\1/p')
//! FENCING_BENCH_REQUESTS=10000 valgrind --tool=callgrind $B --bench --profile "hello cancel"
//! FENCING_BENCH_REQUESTS=10000 valgrind --tool=dhat $B --bench --profile "hello cancel"
//! ```
//!
//! Every variant serves the same number of requests, so the difference of
//! two variants' instruction (callgrind) or allocation (dhat) totals ÷
//! requests is the layer's cost per request.

use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use fencing_tower::server::{Disposition, FenceLayer};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Runtime, RuntimeMetrics};
use tokio::sync::Barrier;

const BODY: &str = "Hello, World!";

/// Requests each connection sends, untimed, before a timing starts.
const WARMUP_PER_CONNECTION: usize = 50;

async fn hello() -> &'static str {
    BODY
}

async fn yield_once() -> &'static str {
    tokio::task::yield_now().await;
    BODY
}

/// The handler of a row group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handler {
    Hello,
    YieldOnce,
}

impl Handler {
    const ALL: [Self; 2] = [Self::Hello, Self::YieldOnce];

    fn name(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::YieldOnce => "yield",
        }
    }
}

/// What stands between axum's router and the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layering {
    Bare,
    Cancel,
    Detach,
    CancelBudget,
    DetachBudget,
}

impl Layering {
    /// The anchor first.
    const ALL: [Self; 5] = [
        Self::Bare,
        Self::Cancel,
        Self::Detach,
        Self::CancelBudget,
        Self::DetachBudget,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Cancel => "cancel",
            Self::Detach => "detach",
            Self::CancelBudget => "cancel+budget",
            Self::DetachBudget => "detach+budget",
        }
    }

    /// The issue's throughput target for `layered ÷ bare`.
    fn throughput_target(self) -> Option<f64> {
        match self {
            Self::Bare => None,
            Self::Cancel | Self::CancelBudget => Some(0.97),
            Self::Detach | Self::DetachBudget => Some(0.90),
        }
    }

    fn layer(self) -> Option<FenceLayer> {
        let detach = Disposition::Detach {
            grace: Duration::from_secs(1),
        };
        let budget = Duration::from_secs(30);
        match self {
            Self::Bare => None,
            Self::Cancel => Some(FenceLayer::new()),
            Self::Detach => Some(FenceLayer::new().disposition(detach)),
            Self::CancelBudget => Some(FenceLayer::new().budget(budget)),
            Self::DetachBudget => Some(FenceLayer::new().budget(budget).disposition(detach)),
        }
    }
}

/// The p99 latency target for `layered ÷ bare`.
const P99_TARGET: f64 = 1.10;

fn app(handler: Handler, layering: Layering) -> Router {
    let router = match handler {
        Handler::Hello => Router::new().route("/", get(hello)),
        Handler::YieldOnce => Router::new().route("/", get(yield_once)),
    };
    match layering.layer() {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// Knobs from the environment.
#[derive(Clone, Copy, Debug)]
struct Settings {
    rounds: usize,
    connections: usize,
    requests: usize,
    pin: bool,
    client: ClientKind,
}

impl Settings {
    fn from_env() -> Self {
        fn var(name: &str, default: usize) -> usize {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
                Err(_) => default,
            }
        }
        let connections = var("FENCING_BENCH_CONNECTIONS", 16).max(1);
        Self {
            rounds: var("FENCING_BENCH_ROUNDS", 21).max(1),
            connections,
            requests: var("FENCING_BENCH_REQUESTS", 50_000).max(connections),
            pin: std::env::var_os("FENCING_BENCH_PIN").map_or(true, |v| v != "0"),
            client: match std::env::var("FENCING_BENCH_CLIENT").as_deref() {
                Ok("hyper") => ClientKind::Hyper,
                Ok("raw") | Err(_) => ClientKind::Raw,
                Ok(other) => panic!("FENCING_BENCH_CLIENT={other}: `raw` or `hyper`"),
            },
        }
    }
}

/// Where each side runs: the server's core and the client's, if pinned.
#[derive(Clone, Copy, Debug)]
struct Pinning {
    server: Option<core_affinity::CoreId>,
    client: Option<core_affinity::CoreId>,
}

impl Pinning {
    fn new(enabled: bool) -> Self {
        let cores = if enabled {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        match cores[..] {
            [server, client, ..] => Self {
                server: Some(server),
                client: Some(client),
            },
            _ => Self {
                server: None,
                client: None,
            },
        }
    }

    fn describe(&self) -> String {
        match (self.server, self.client) {
            (Some(server), Some(client)) => format!(
                "server pinned to CPU {}, client to CPU {}",
                server.id, client.id
            ),
            _ => "not pinned".to_owned(),
        }
    }
}

fn pin(core: Option<core_affinity::CoreId>) {
    if let Some(core) = core {
        // Best effort: a refused pin only makes the figures noisier.
        let _ = core_affinity::set_for_current(core);
    }
}

/// One server per (handler, layering), all on the server runtime.
struct Servers {
    runtime: Runtime,
    addrs: Vec<(Handler, Layering, SocketAddr)>,
}

impl Servers {
    fn start(pinning: Pinning) -> Self {
        let core = pinning.server;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .on_thread_start(move || pin(core))
            .build()
            .expect("server runtime");
        let mut addrs = Vec::new();
        for handler in Handler::ALL {
            for layering in Layering::ALL {
                let listener = runtime
                    .block_on(TcpListener::bind("127.0.0.1:0"))
                    .expect("bind 127.0.0.1:0");
                let addr = listener.local_addr().expect("local address");
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let app = app(handler, layering);
                runtime.spawn(async move { axum::serve(listener, app).await });
                addrs.push((handler, layering, addr));
            }
        }
        Self { runtime, addrs }
    }

    fn addr(&self, handler: Handler, layering: Layering) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(h, l, _)| *h == handler && *l == layering)
            .map(|(_, _, addr)| *addr)
            .expect("a server for every variant")
    }

    fn metrics(&self) -> RuntimeMetrics {
        self.runtime.metrics()
    }
}

/// The request every client sends.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";

/// The load generator's client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    /// Writes [`REQUEST`] and reads the response with `httparse`, as `wrk`
    /// does: far cheaper per request than the server.
    Raw,
    /// hyper's HTTP/1 client connection.
    Hyper,
}

/// One keep-alive connection of the load generator.
enum Connection {
    Raw { stream: TcpStream, buf: Vec<u8> },
    Hyper(SendRequest<Empty<Bytes>>),
}

impl Connection {
    async fn open(addr: SocketAddr, kind: ClientKind) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        match kind {
            ClientKind::Raw => Self::Raw {
                stream,
                buf: Vec::with_capacity(4096),
            },
            ClientKind::Hyper => {
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .expect("handshake");
                // Ends when the sender is dropped.
                tokio::spawn(connection);
                Self::Hyper(sender)
            }
        }
    }

    /// Sends one `GET /` and reads the whole response, checking it.
    async fn request(&mut self) {
        match self {
            Self::Raw { stream, buf } => raw_request(stream, buf).await,
            Self::Hyper(sender) => hyper_request(sender).await,
        }
    }
}

async fn raw_request(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    stream.write_all(REQUEST).await.expect("write request");
    buf.clear();
    loop {
        let read = stream.read_buf(buf).await.expect("read response");
        assert!(read > 0, "connection closed mid-response");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(buf).expect("a response head") else {
            continue;
        };
        assert_eq!(response.code, Some(200));
        let length: usize = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
            .expect("a content-length");
        if buf.len() >= head + length {
            // No pipelining: nothing can follow the body.
            assert_eq!(&buf[head..], BODY.as_bytes());
            return;
        }
    }
}

async fn hyper_request(sender: &mut SendRequest<Empty<Bytes>>) {
    sender.ready().await.expect("connection closed");
    let request = http::Request::get("/")
        .header(http::header::HOST, "127.0.0.1")
        .body(Empty::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), http::StatusCode::OK);
    let body = response.into_body().collect().await.expect("body");
    assert_eq!(body.to_bytes(), BODY.as_bytes());
}

/// One keep-alive connection of a timing: warms up, waits for the others,
/// then sends `requests` requests and returns their latencies in ns.
async fn connection(
    addr: SocketAddr,
    kind: ClientKind,
    requests: usize,
    start: Arc<Barrier>,
) -> Vec<u64> {
    let mut connection = Connection::open(addr, kind).await;
    for _ in 0..WARMUP_PER_CONNECTION {
        connection.request().await;
    }
    start.wait().await;
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let sent = Instant::now();
        connection.request().await;
        latencies.push(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    latencies
}

/// What one timing of one variant measured.
#[derive(Clone, Copy, Debug)]
struct Sample {
    requests_per_sec: f64,
    p99_us: f64,
    server_us_per_request: f64,
    busy: f64,
}

/// Runs one timing against `addr` on the client runtime.
fn measure(
    client: &Runtime,
    metrics: &RuntimeMetrics,
    addr: SocketAddr,
    settings: Settings,
) -> Sample {
    client.block_on(async {
        let per_connection = settings.requests / settings.connections;
        let start = Arc::new(Barrier::new(settings.connections + 1));
        let tasks: Vec<_> = (0..settings.connections)
            .map(|_| {
                let start = start.clone();
                tokio::spawn(connection(addr, settings.client, per_connection, start))
            })
            .collect();
        start.wait().await;
        let busy_before = metrics.worker_total_busy_duration(0);
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(per_connection * settings.connections);
        for task in tasks {
            latencies.extend(task.await.expect("connection task"));
        }
        let elapsed = started.elapsed();
        let busy = metrics
            .worker_total_busy_duration(0)
            .saturating_sub(busy_before);
        let n = latencies.len();
        let p99_index = (n * 99).div_ceil(100).saturating_sub(1);
        let (_, p99, _) = latencies.select_nth_unstable(p99_index);
        Sample {
            requests_per_sec: n as f64 / elapsed.as_secs_f64(),
            p99_us: *p99 as f64 / 1e3,
            server_us_per_request: busy.as_secs_f64() * 1e6 / n as f64,
            busy: busy.as_secs_f64() / elapsed.as_secs_f64(),
        }
    })
}

/// The samples of one variant, one per round.
#[derive(Debug, Default)]
struct Samples(Vec<Sample>);

impl Samples {
    fn median(&self, field: fn(&Sample) -> f64) -> f64 {
        median(self.0.iter().map(field).collect())
    }

    /// The median of the per-round ratios `self ÷ anchor`.
    fn paired(&self, anchor: &Self, field: fn(&Sample) -> f64) -> f64 {
        median(
            self.0
                .iter()
                .zip(&anchor.0)
                .map(|(ours, theirs)| field(ours) / field(theirs))
                .collect(),
        )
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Times the five layerings of `handler`, interleaved, and prints its rows.
fn compare(client: &Runtime, servers: &Servers, handler: Handler, settings: Settings) {
    let metrics = servers.metrics();
    let addrs: Vec<_> = Layering::ALL
        .iter()
        .map(|&layering| servers.addr(handler, layering))
        .collect();
    // Warm every side once, untimed.
    for &addr in &addrs {
        measure(client, &metrics, addr, settings);
    }
    let mut samples: Vec<Samples> = addrs.iter().map(|_| Samples::default()).collect();
    for round in 0..settings.rounds {
        // Alternate the order, so that no side always runs right after the
        // same other one.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..addrs.len()).collect()
        } else {
            (0..addrs.len()).rev().collect()
        };
        for i in order {
            samples[i]
                .0
                .push(measure(client, &metrics, addrs[i], settings));
        }
    }
    print_rows(handler, &samples);
    let busy = samples[0].median(|s| s.busy);
    if busy < 0.85 {
        println!(
            "  note: bare {} kept the server busy only {:.0}% of the time: the client \
             was too slow or starved of its core (another process on it? load average {}), \
             so these ratios understate the layer's cost and the p99s are the client's",
            handler.name(),
            busy * 100.0,
            load_average(),
        );
    }
}

/// The 1-minute load average, where Linux tells it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn print_header(settings: Settings, pinning: Pinning) {
    println!();
    println!(
        "server: axum behind FenceLayer ÷ bare, medians of {} interleaved rounds; \
         HTTP/1.1 keep-alive on 127.0.0.1, {} client, {} connections, {} requests per timing; {}; \
         load average {} at the start",
        settings.rounds,
        match settings.client {
            ClientKind::Raw => "raw",
            ClientKind::Hyper => "hyper",
        },
        settings.connections,
        settings.requests,
        pinning.describe(),
        load_average(),
    );
    println!(
        "{:<21} | {:>8} | {:>7} | {:>10} | {:>4} | {:>13} | {:>13} | {:>13} | targets (paired)",
        "variant",
        "req/s",
        "p99 µs",
        "srv µs/req",
        "busy",
        "req/s ÷ bare",
        "p99 ÷ bare",
        "srv ÷ bare",
    );
    println!(
        "{:<21} | {:>8} | {:>7} | {:>10} | {:>4} | {:>13} | {:>13} | {:>13} |",
        "", "", "", "", "", "ratio paired", "ratio paired", "ratio paired",
    );
    println!(
        "{}-|-{}-|-{}-|-{}-|-{}-|-{}-|-{}-|-{}-|-----------------",
        "-".repeat(21),
        "-".repeat(8),
        "-".repeat(7),
        "-".repeat(10),
        "-".repeat(4),
        "-".repeat(13),
        "-".repeat(13),
        "-".repeat(13),
    );
}

fn print_rows(handler: Handler, samples: &[Samples]) {
    let rps = |s: &Sample| s.requests_per_sec;
    let p99 = |s: &Sample| s.p99_us;
    let srv = |s: &Sample| s.server_us_per_request;
    let busy = |s: &Sample| s.busy;
    let bare = &samples[0];
    for (layering, ours) in Layering::ALL.iter().zip(samples) {
        let name = format!("{} {}", handler.name(), layering.name());
        let ratios = |field: fn(&Sample) -> f64| {
            if *layering == Layering::Bare {
                format!("{:>13}", "-")
            } else {
                format!(
                    "{:>6.3} {:>6.3}",
                    ours.median(field) / bare.median(field),
                    ours.paired(bare, field)
                )
            }
        };
        let verdict = match layering.throughput_target() {
            None => "-".to_owned(),
            Some(target) => {
                let rps_ok = ours.paired(bare, rps) >= target;
                let p99_ok = ours.paired(bare, p99) <= P99_TARGET;
                format!(
                    "req/s >= {target:.2} {}, p99 <= {P99_TARGET:.2} {}",
                    if rps_ok { "met" } else { "MISSED" },
                    if p99_ok { "met" } else { "MISSED" },
                )
            }
        };
        println!(
            "{:<21} | {:>8.0} | {:>7.1} | {:>10.2} | {:>3.0}% | {} | {} | {} | {verdict}",
            name,
            ours.median(rps),
            ours.median(p99),
            ours.median(srv),
            ours.median(busy) * 100.0,
            ratios(rps),
            ratios(p99),
            ratios(srv),
        );
    }
}

/// `cargo test --benches` (no `--bench` argument): every variant answers.
fn smoke(client: &Runtime, servers: &Servers) {
    client.block_on(async {
        for &(_, _, addr) in &servers.addrs {
            for kind in [ClientKind::Raw, ClientKind::Hyper] {
                let mut connection = Connection::open(addr, kind).await;
                for _ in 0..3 {
                    connection.request().await;
                }
            }
        }
    });
    println!("server: {} variants answer", servers.addrs.len());
}

/// `--profile "hello cancel"`: one timing of one variant, for a profiler.
fn profile(client: &Runtime, servers: &Servers, variant: &str, settings: Settings) {
    let (_, _, addr) = servers
        .addrs
        .iter()
        .find(|(h, l, _)| format!("{} {}", h.name(), l.name()) == variant)
        .unwrap_or_else(|| panic!("--profile {variant:?}: no such variant"));
    let sample = measure(client, &servers.metrics(), *addr, settings);
    println!(
        "{variant}: {} requests ({} more to warm up): {:.0} req/s, p99 {:.1} µs, \
         server {:.2} µs/req, busy {:.0}%",
        settings.requests / settings.connections * settings.connections,
        WARMUP_PER_CONNECTION * settings.connections,
        sample.requests_per_sec,
        sample.p99_us,
        sample.server_us_per_request,
        sample.busy * 100.0,
    );
}

/// The positional filter, if any: the first argument that is no option.
fn filter(args: &[String]) -> Option<&str> {
    args.iter()
        .map(String::as_str)
        .find(|a| !a.starts_with('-'))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benching = args.iter().any(|a| a == "--bench");
    let settings = Settings::from_env();
    let pinning = Pinning::new(settings.pin && benching);
    pin(pinning.client);
    let servers = Servers::start(pinning);
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    if !benching || args.iter().any(|a| a == "--test" || a == "--list") {
        smoke(&client, &servers);
        return;
    }
    if let Some(variant) = args
        .iter()
        .position(|a| a == "--profile")
        .and_then(|i| args.get(i + 1))
    {
        profile(&client, &servers, variant, settings);
        return;
    }
    let filter = filter(&args);
    let selected: Vec<Handler> = Handler::ALL
        .into_iter()
        .filter(|h| filter.map_or(true, |f| h.name().contains(f) || f.contains(h.name())))
        .collect();
    print_header(settings, pinning);
    for handler in selected {
        compare(&client, &servers, handler, settings);
    }
    println!();
}
