//! The cost of a fence against what users write today.
//!
//! Each iteration declares `Fencing::new().timeout(30s).code("budget")
//! .token(&shutdown).code("shutdown")` and runs a body in it, against two
//! anchors on a tokio-util `CancellationToken`: the hand-written
//! `tokio::select!` (body, token, `sleep(30s)`, biased) and
//! `tokio::time::timeout(30s, select!{ body, token })`.
//!
//! - `ready body`: the body is ready on its first poll (the fast path: no
//!   allocation, no timer).
//! - `pending once`: the body yields once (`yield_now`) before completing, so
//!   every side arms its timer and token waiter once.
//!
//! All of it runs on a current-thread runtime with the time driver only (no
//! I/O driver, whose `epoll_wait` on every yield would add the same syscall
//! to every side), clock not paused. N iterations run inside one `block_on`,
//! so runtime entry is not counted. After criterion's groups, `main` prints
//! an interleaved table of ratios fencing ÷ anchor.

mod support;

use support::fence::{fenced, pending_once_body, ready_body, BUDGET};

use criterion::Criterion;
use fencing::Token;
use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// Which body a benchmark runs.
#[derive(Clone, Copy, Debug)]
enum Body {
    Ready,
    PendingOnce,
}

impl Body {
    const ALL: [Self; 2] = [Self::Ready, Self::PendingOnce];

    fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready body",
            Self::PendingOnce => "pending once",
        }
    }

    /// Iterations per timing in the ratio table (a few milliseconds).
    fn table_iters(self) -> u64 {
        match self {
            Self::Ready => 40_000,
            Self::PendingOnce => 10_000,
        }
    }
}

/// The `select!` a user writes today; the arm says which trigger fired.
async fn hand_select<F: Future<Output = u64>>(
    shutdown: &CancellationToken,
    body: F,
) -> Result<u64, &'static str> {
    tokio::select! {
        biased;
        v = body => Ok(v),
        () = shutdown.cancelled() => Err("shutdown"),
        () = tokio::time::sleep(BUDGET) => Err("budget"),
    }
}

/// tokio's `timeout` around a `select!` on the token.
async fn timeout_select<F: Future<Output = u64>>(
    shutdown: &CancellationToken,
    body: F,
) -> Result<u64, &'static str> {
    let raced = async {
        tokio::select! {
            biased;
            v = body => Ok(v),
            () = shutdown.cancelled() => Err("shutdown"),
        }
    };
    tokio::time::timeout(BUDGET, raced)
        .await
        .unwrap_or(Err("budget"))
}

/// The runtime and the two tokens every measurement shares.
struct Bench {
    rt: Runtime,
    token: Token,
    anchor_token: CancellationToken,
}

impl Bench {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        Self {
            rt,
            token: Token::new(),
            anchor_token: CancellationToken::new(),
        }
    }

    fn fencing(&self, body: Body, iters: u64) -> Duration {
        let token = &self.token;
        self.rt.block_on(async {
            let start = Instant::now();
            match body {
                Body::Ready => {
                    for _ in 0..iters {
                        black_box(fenced(token, ready_body()).await.ok());
                    }
                }
                Body::PendingOnce => {
                    for _ in 0..iters {
                        black_box(fenced(token, pending_once_body()).await.ok());
                    }
                }
            }
            start.elapsed()
        })
    }

    fn select(&self, body: Body, iters: u64) -> Duration {
        let token = &self.anchor_token;
        self.rt.block_on(async {
            let start = Instant::now();
            match body {
                Body::Ready => {
                    for _ in 0..iters {
                        black_box(hand_select(token, ready_body()).await.ok());
                    }
                }
                Body::PendingOnce => {
                    for _ in 0..iters {
                        black_box(hand_select(token, pending_once_body()).await.ok());
                    }
                }
            }
            start.elapsed()
        })
    }

    fn timeout(&self, body: Body, iters: u64) -> Duration {
        let token = &self.anchor_token;
        self.rt.block_on(async {
            let start = Instant::now();
            match body {
                Body::Ready => {
                    for _ in 0..iters {
                        black_box(timeout_select(token, ready_body()).await.ok());
                    }
                }
                Body::PendingOnce => {
                    for _ in 0..iters {
                        black_box(timeout_select(token, pending_once_body()).await.ok());
                    }
                }
            }
            start.elapsed()
        })
    }
}

fn criterion_groups(c: &mut Criterion, bench: &Bench) {
    for body in Body::ALL {
        let mut group = c.benchmark_group(format!("fence/{}", body.name()));
        group.bench_function("fencing", |b| {
            b.iter_custom(|iters| bench.fencing(body, iters));
        });
        group.bench_function("select!", |b| {
            b.iter_custom(|iters| bench.select(body, iters));
        });
        group.bench_function("timeout+select!", |b| {
            b.iter_custom(|iters| bench.timeout(body, iters));
        });
        group.finish();
    }
}

fn ratio_table(bench: &Bench, filter: Option<String>) {
    let mut table = support::Table::new(filter);
    for body in Body::ALL {
        // The budget of a fence: what is left once both sides arm the same
        // timer and waiter should cost nothing more when the body pends,
        // and at most as much again when it is ready at once.
        let target = match body {
            Body::Ready => 2.0,
            Body::PendingOnce => 1.0,
        };
        table.compare(
            &format!("fence/{}", body.name()),
            body.table_iters(),
            &mut |n| bench.fencing(body, n),
            &mut [
                ("select!", Some(target), &mut |n| bench.select(body, n)),
                ("timeout+select!", None, &mut |n| bench.timeout(body, n)),
            ],
        );
    }
    table.print("fence");
}

fn main() {
    let bench = Bench::new();
    let mut c = support::criterion();
    criterion_groups(&mut c, &bench);
    c.final_summary();
    if let Some(filter) = support::ratio_filter() {
        ratio_table(&bench, filter);
    }
}
