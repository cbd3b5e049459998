//! A million concurrent tasks, each under a 30 s timeout and a shared
//! shutdown token, all completing normally: fencing against the
//! hand-written `tokio::select!`. For time and peak RSS; run both modes
//! side by side with `benches/million.sh`.
//!
//! ```text
//! cargo run --release --example million -- fencing|select [N]
//! ```
//!
//! N defaults to 1,000,000. On a multi-thread runtime with 2 workers (time
//! driver only) the main thread spawns N tasks with `tokio::spawn`. Each task
//! declares its triggers and runs the same body:
//!
//! - `fencing`: `Fencing::new().timeout(30s).code("budget").token(&shutdown).code("shutdown").run(body)`
//!   on a `fencing::Token`;
//! - `select`: `select! { biased; v = body => .., _ = token.cancelled() => .., _ = sleep(30s) => .. }`
//!   on a tokio-util `CancellationToken`.
//!
//! The body keeps every task alive and pending until all N have armed their
//! triggers: it first yields once, so the task's first poll returns pending
//! and the fence (or the `select!`) registers its token waiter and its timer;
//! at its second poll, which starts only after that first poll returned, it
//! checks in at a gate and waits on it. When all N have checked in, every
//! task is pending with its timer and its token waiter registered: that is
//! the peak. The main task then opens the gate, every body returns 1, and
//! the main task awaits each `JoinHandle` and asserts that all N returned
//! `Ok(1)`.
//!
//! Prints the size of one task's future, the time to reach the peak, the
//! total wall time (first spawn to last join), the resident set at the peak
//! and the high-water mark from `/proc/self/status`, one `key=value` per line.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

const BUDGET: Duration = Duration::from_secs(30);

/// Where every body waits until all N have armed their triggers.
#[derive(Debug)]
struct Gate {
    n: usize,
    checked_in: AtomicUsize,
    /// Notified once, by the last body to check in.
    all_in: Notify,
    /// Opened once, by the main task.
    open: Notify,
}

/// The work of one task: pending until the gate opens, then 1.
async fn body(gate: &'static Gate) -> u64 {
    // Pending once: the first poll of the task ends here, after the fence or
    // the `select!` has armed the token waiter and the timer.
    tokio::task::yield_now().await;
    // Created before checking in, so the opening cannot be missed:
    // `notify_waiters` wakes every `Notified` created before it.
    let open = gate.open.notified();
    if gate.checked_in.fetch_add(1, Ordering::AcqRel) + 1 == gate.n {
        gate.all_in.notify_one();
    }
    open.await;
    1
}

/// One task of the `fencing` mode.
async fn fencing_task(
    shutdown: fencing::Token,
    gate: &'static Gate,
) -> Result<u64, fencing::Cancelled> {
    fencing::Fencing::new()
        .timeout(BUDGET)
        .code("budget")
        .token(&shutdown)
        .code("shutdown")
        .run(body(gate))
        .await
}

/// One task of the `select` mode: what users write today.
async fn select_task(
    shutdown: tokio_util::sync::CancellationToken,
    gate: &'static Gate,
) -> Result<u64, &'static str> {
    tokio::select! {
        biased;
        v = body(gate) => Ok(v),
        () = shutdown.cancelled() => Err("shutdown"),
        () = tokio::time::sleep(BUDGET) => Err("budget"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Fencing,
    Select,
}

/// A field of `/proc/self/status`, in KiB (`0` where there is none).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(field)?.strip_prefix(':')?;
                rest.trim().trim_end_matches("kB").trim().parse().ok()
            })
        })
        .unwrap_or(0)
}

fn usage() -> ! {
    eprintln!("usage: million fencing|select [N]   (N defaults to 1000000)");
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("fencing") => Mode::Fencing,
        Some("select") => Mode::Select,
        _ => usage(),
    };
    let n: usize = match args.next() {
        None => 1_000_000,
        Some(n) => n.replace('_', "").parse().unwrap_or_else(|_| usage()),
    };
    if n == 0 || args.next().is_some() {
        usage();
    }

    let gate: &'static Gate = Box::leak(Box::new(Gate {
        n,
        checked_in: AtomicUsize::new(0),
        all_in: Notify::new(),
        open: Notify::new(),
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");

    let fencing_token = fencing::Token::new();
    let select_token = tokio_util::sync::CancellationToken::new();
    let future_size = match mode {
        Mode::Fencing => std::mem::size_of_val(&fencing_task(fencing_token.clone(), gate)),
        Mode::Select => std::mem::size_of_val(&select_task(select_token.clone(), gate)),
    };

    let (to_peak, total, rss_at_peak) = rt.block_on(async {
        let start = Instant::now();
        let mut fenced: Vec<JoinHandle<Result<u64, fencing::Cancelled>>> = Vec::new();
        let mut selected: Vec<JoinHandle<Result<u64, &'static str>>> = Vec::new();
        match mode {
            Mode::Fencing => {
                fenced.reserve_exact(n);
                for _ in 0..n {
                    fenced.push(tokio::spawn(fencing_task(fencing_token.clone(), gate)));
                }
            }
            Mode::Select => {
                selected.reserve_exact(n);
                for _ in 0..n {
                    selected.push(tokio::spawn(select_task(select_token.clone(), gate)));
                }
            }
        }

        // The peak: all N tasks pending, each with its timer and its token
        // waiter registered.
        gate.all_in.notified().await;
        let to_peak = start.elapsed();
        let rss_at_peak = status_kib("VmRSS");
        assert_eq!(rt_alive_tasks(), n, "all N tasks alive at the peak");
        if mode == Mode::Fencing {
            assert_eq!(
                fencing_token.__waiter_count(),
                n,
                "every fence waits on the token at the peak"
            );
        }

        gate.open.notify_waiters();
        let mut completed = 0usize;
        for handle in fenced {
            assert_eq!(handle.await.expect("task").expect("fence"), 1);
            completed += 1;
        }
        for handle in selected {
            assert_eq!(handle.await.expect("task").expect("select"), 1);
            completed += 1;
        }
        assert_eq!(completed, n, "all N completed Ok");
        (to_peak, start.elapsed(), rss_at_peak)
    });
    drop(rt);

    let mode = match mode {
        Mode::Fencing => "fencing",
        Mode::Select => "select",
    };
    println!("mode={mode}");
    println!("n={n}");
    println!("task_future_bytes={future_size}");
    println!("to_peak_ms={:.1}", to_peak.as_secs_f64() * 1e3);
    println!("total_ms={:.1}", total.as_secs_f64() * 1e3);
    println!("rss_at_peak_kib={rss_at_peak}");
    println!("hwm_kib={}", status_kib("VmHWM"));
}

/// The number of tasks alive on the current runtime.
fn rt_alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}
