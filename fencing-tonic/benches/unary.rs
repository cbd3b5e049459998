//! A unary tonic call on loopback, bare and with both layers, side by
//! side in one run: `cargo bench -p fencing-tonic --bench unary`.
//!
//! Two servers (tonic's `Server` with `tonic-health`'s service, one of
//! them behind `GrpcFenceLayer`) and two clients (a `Channel`, one of them
//! behind `PropagateDeadline`). Three variants:
//!
//! - `bare`: no layer, no deadline;
//! - `bare+timeout`: no layer, `Request::set_timeout(10 s)`, what a tonic
//!   user who wants a deadline writes today (tonic's own timers then run
//!   on both sides);
//! - `both layers`: each call made in a context with 10 s left, so that
//!   it is stamped and fenced, and the server fences it with the deadline
//!   it receives.
//!
//! Rounds rotate the order of the variants, each with the same number of
//! callers in a closed loop; the figures are throughput over all rounds,
//! latency percentiles over all calls, and the process's CPU time per call
//! (which the machine's other load disturbs less than throughput). It
//! asserts nothing about time: it prints.
//!
//! Arguments (all optional): rounds per variant (default 8), seconds per
//! round (default 1.5), concurrent callers (default 16).

use fencing::Fencing;
use fencing_tonic::client::PropagateDeadlineLayer;
use fencing_tonic::server::GrpcFenceLayer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::ServiceBuilder;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    Bare,
    Fenced,
    /// Bare, with the deadline a tonic user sets today.
    BareTimeout,
}

async fn serve(fenced: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (_, health) = tonic_health::server::health_reporter();
    if fenced {
        let server = Server::builder()
            .layer(GrpcFenceLayer::new().budget(Duration::from_secs(30)))
            .add_service(health);
        tokio::spawn(server.serve_with_incoming(incoming));
    } else {
        let server = Server::builder().add_service(health);
        tokio::spawn(server.serve_with_incoming(incoming));
    }
    format!("http://{addr}")
}

async fn channel(uri: String) -> Channel {
    Endpoint::from_shared(uri).unwrap().connect().await.unwrap()
}

/// One round: `callers` tasks calling in a closed loop for `length`.
/// Returns the number of calls and every call's latency, in µs.
async fn round(
    variant: Variant,
    bare: &HealthClient<Channel>,
    fenced: &HealthClient<fencing_tonic::client::PropagateDeadline<Channel>>,
    callers: usize,
    length: Duration,
) -> (usize, Vec<u32>, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let stop = stop.clone();
        let (mut bare, mut fenced) = (bare.clone(), fenced.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(16_384);
            while !stop.load(Ordering::Relaxed) {
                let request = HealthCheckRequest::default();
                let start = Instant::now();
                let reply = match variant {
                    Variant::Bare => bare.check(request).await,
                    Variant::BareTimeout => {
                        let mut request = tonic::Request::new(request);
                        request.set_timeout(Duration::from_secs(10));
                        bare.check(request).await
                    }
                    Variant::Fenced => {
                        // The context of a handler with 10 s left.
                        let context = Fencing::new().timeout(Duration::from_secs(10));
                        context.bind(fenced.check(request)).await
                    }
                };
                std::hint::black_box(reply.expect("the call succeeds"));
                latencies.push(start.elapsed().as_micros() as u32);
            }
            latencies
        }));
    }
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    (all.len(), all, elapsed)
}

/// The process's CPU time so far (user and system, all threads), from
/// `/proc/self/stat`, in clock ticks of 10 ms; `None` off Linux.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

struct Totals {
    calls: usize,
    time: Duration,
    cpu_ticks: u64,
    latencies: Vec<u32>,
}

impl Totals {
    fn throughput(&self) -> f64 {
        self.calls as f64 / self.time.as_secs_f64()
    }

    /// CPU time per call, in µs: what the call costs, whatever else the
    /// machine runs.
    fn cpu_per_call(&self) -> f64 {
        self.cpu_ticks as f64 * 10_000.0 / self.calls as f64
    }

    fn percentile(&mut self, p: f64) -> u32 {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let length = Duration::from_secs_f64(args.next().and_then(|a| a.parse().ok()).unwrap_or(1.5));
    let callers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let bare = HealthClient::new(channel(serve(false).await).await);
        let fenced = HealthClient::new(
            ServiceBuilder::new()
                .layer(PropagateDeadlineLayer::new())
                .service(channel(serve(true).await).await),
        );
        println!(
            "unary tonic call on loopback: {rounds} rounds of {length:?} per variant, \
             {callers} callers, 2 worker threads"
        );
        // Warm-up, not counted.
        for variant in [Variant::Bare, Variant::Fenced, Variant::BareTimeout] {
            round(variant, &bare, &fenced, callers, length / 2).await;
        }
        let mut totals = [0; 3].map(|_| Totals {
            calls: 0,
            time: Duration::ZERO,
            cpu_ticks: 0,
            latencies: Vec::new(),
        });
        for r in 0..rounds {
            // Alternate which goes first, so neither always follows the other.
            let order = match r % 3 {
                0 => [Variant::Bare, Variant::Fenced, Variant::BareTimeout],
                1 => [Variant::Fenced, Variant::BareTimeout, Variant::Bare],
                _ => [Variant::BareTimeout, Variant::Bare, Variant::Fenced],
            };
            for variant in order {
                let cpu = cpu_ticks();
                let (calls, latencies, time) =
                    round(variant, &bare, &fenced, callers, length).await;
                let cpu = cpu_ticks().zip(cpu).map_or(0, |(after, before)| after - before);
                let t = &mut totals[variant as usize];
                t.calls += calls;
                t.time += time;
                t.cpu_ticks += cpu;
                t.latencies.extend(latencies);
                println!(
                    "  round {r} {variant:?}: {:.0} calls/s",
                    calls as f64 / time.as_secs_f64()
                );
            }
        }
        let [mut bare, mut fenced, mut timeout] = totals;
        println!();
        println!(
            "{:<14} {:>10} {:>9} {:>9} {:>9} {:>12}",
            "", "calls/s", "p50 µs", "p99 µs", "p99.9 µs", "CPU µs/call"
        );
        for (name, t) in [
            ("bare", &mut bare),
            ("bare+timeout", &mut timeout),
            ("both layers", &mut fenced),
        ] {
            let (p50, p99, p999) = (t.percentile(0.50), t.percentile(0.99), t.percentile(0.999));
            println!(
                "{name:<14} {:>10.0} {p50:>9} {p99:>9} {p999:>9} {:>12.1}",
                t.throughput(),
                t.cpu_per_call()
            );
        }
        println!();
        for (name, base) in [("bare", &mut bare), ("bare+timeout", &mut timeout)] {
            println!(
                "both layers / {name}: throughput {:.3}x, p50 {:.3}x, p99 {:.3}x, CPU per call {:.3}x",
                fenced.throughput() / base.throughput(),
                f64::from(fenced.percentile(0.50)) / f64::from(base.percentile(0.50)),
                f64::from(fenced.percentile(0.99)) / f64::from(base.percentile(0.99)),
                fenced.cpu_per_call() / base.cpu_per_call(),
            );
        }
    });
}
