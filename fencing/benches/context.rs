//! The cost of the context: reading it with [`fencing::current`], and
//! running a fence inside a bound one.
//!
//! The context bound in every `bound` row is a request's declaration,
//! `Fencing::new().timeout(30s).code("budget").token(&shutdown).code("shutdown")`.
//!
//! - `current() unbound`: `fencing::current()` with nothing bound (it returns
//!   an empty `Fencing`).
//! - `current() bound`: `fencing::current()` inside `Fencing::bind`; the
//!   result is dropped each iteration, as are the anchors'.
//!
//!   The anchor is what a user writes today to carry a request's deadline
//!   and shutdown token to code below without a parameter: tokio's
//!   `task_local!` holding an `Arc` of a struct with the deadline and a
//!   tokio-util `CancellationToken`, read with `CTX.with(|c| Arc::clone(c))`
//!   inside `CTX.scope(..)` (unbound: `CTX.try_with(..)`, which fails). It is
//!   tokio's own tool for values that follow a future across `.await`s and
//!   worker threads, and the `Arc` makes its read one reference count, not
//!   the mutex a `CancellationToken::clone` takes. Listed as well, without a
//!   target, is a plain `thread_local!` `RefCell<Option<Arc<..>>>` clone: the
//!   floor of the mechanism, not an alternative, since a thread-local that is
//!   not set and restored around every poll leaks between the tasks a worker
//!   interleaves.
//! - `fence ready body` and `fence pending once`: the fence of
//!   `benches/fence.rs` (`Fencing::new().timeout(30s).code("budget").token(&shutdown)
//!   .code("shutdown")` around a body that is ready at once, or yields once)
//!   run inside a bound context, against the same fence unbound. Bound, every
//!   poll also enters and leaves the outer context.
//!
//! All of it runs on a current-thread runtime with the time driver only,
//! clock not paused, N iterations inside one `block_on`. After criterion's
//! groups, `main` prints an interleaved table of ratios fencing ÷ anchor.

mod support;

use support::fence::{fenced, pending_once_body, ready_body, BUDGET};

use criterion::Criterion;
use fencing::{Fencing, Token};
use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// What a user carries in a task-local today: the request's deadline and
/// its shutdown token.
#[derive(Debug)]
struct RequestCtx {
    deadline: tokio::time::Instant,
    shutdown: CancellationToken,
}

tokio::task_local! {
    static CTX: Arc<RequestCtx>;
}

thread_local! {
    static TL_CTX: RefCell<Option<Arc<RequestCtx>>> = const { RefCell::new(None) };
}

/// One row of the benchmark.
#[derive(Clone, Copy, Debug)]
enum Case {
    CurrentUnbound,
    CurrentBound,
    FenceReady,
    FencePendingOnce,
}

impl Case {
    const ALL: [Self; 4] = [
        Self::CurrentUnbound,
        Self::CurrentBound,
        Self::FenceReady,
        Self::FencePendingOnce,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::CurrentUnbound => "current() unbound",
            Self::CurrentBound => "current() bound",
            Self::FenceReady => "fence ready body",
            Self::FencePendingOnce => "fence pending once",
        }
    }

    /// Iterations per timing in the ratio table (a few milliseconds).
    fn table_iters(self) -> u64 {
        match self {
            Self::CurrentUnbound | Self::CurrentBound => 200_000,
            Self::FenceReady => 40_000,
            Self::FencePendingOnce => 10_000,
        }
    }
}

/// The runtime and the tokens every measurement shares.
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

    /// The request's declaration, bound as the context.
    fn request(&self) -> Fencing {
        fencing::Fencing::new()
            .timeout(BUDGET)
            .code("budget")
            .token(&self.token)
            .code("shutdown")
    }

    /// The anchors' equivalent of [`request`](Self::request).
    fn request_ctx(&self) -> Arc<RequestCtx> {
        Arc::new(RequestCtx {
            deadline: tokio::time::Instant::now() + BUDGET,
            shutdown: self.anchor_token.clone(),
        })
    }

    /// `fencing::current()`, `iters` times, bound or not.
    fn current(&self, bound: bool, iters: u64) -> Duration {
        let read = async move {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(fencing::current());
            }
            start.elapsed()
        };
        if bound {
            self.rt.block_on(self.request().bind(read))
        } else {
            self.rt.block_on(read)
        }
    }

    /// The `task_local!` read, `iters` times, in a scope or not.
    fn task_local(&self, bound: bool, iters: u64) -> Duration {
        if bound {
            let read = async move {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(CTX.with(Arc::clone));
                }
                start.elapsed()
            };
            self.rt.block_on(CTX.scope(self.request_ctx(), read))
        } else {
            self.rt.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(CTX.try_with(Arc::clone).ok());
                }
                start.elapsed()
            })
        }
    }

    /// The `thread_local!` clone, `iters` times, set or not.
    fn thread_local(&self, bound: bool, iters: u64) -> Duration {
        let ctx = bound.then(|| self.request_ctx());
        TL_CTX.with(|tl| *tl.borrow_mut() = ctx);
        let start = Instant::now();
        for _ in 0..iters {
            black_box(TL_CTX.with(|tl| tl.borrow().clone()));
        }
        let elapsed = start.elapsed();
        TL_CTX.with(|tl| tl.borrow_mut().take());
        elapsed
    }

    /// The fence, `iters` times, inside a bound context or not.
    fn fence(&self, case: Case, bound: bool, iters: u64) -> Duration {
        let token = &self.token;
        let run = async move {
            let start = Instant::now();
            if let Case::FencePendingOnce = case {
                for _ in 0..iters {
                    black_box(fenced(token, pending_once_body()).await.ok());
                }
            } else {
                for _ in 0..iters {
                    black_box(fenced(token, ready_body()).await.ok());
                }
            }
            start.elapsed()
        };
        if bound {
            self.rt.block_on(self.request().bind(run))
        } else {
            self.rt.block_on(run)
        }
    }

    /// Checks that the bound sides see their context and the unbound ones
    /// see none, so the rows measure what they claim.
    fn check(&self) {
        let seen = self.rt.block_on(
            self.request()
                .bind(async { fencing::current().effective_deadline().is_some() }),
        );
        assert!(seen, "current() sees the bound context");
        assert!(fencing::current().effective_deadline().is_none());
        let seen = self.rt.block_on(CTX.scope(self.request_ctx(), async {
            CTX.with(|c| c.deadline > tokio::time::Instant::now() && !c.shutdown.is_cancelled())
        }));
        assert!(seen, "the task-local is set in its scope");
        assert!(CTX.try_with(|_| ()).is_err());
    }

    /// The fencing side of `case`.
    fn fencing(&self, case: Case, iters: u64) -> Duration {
        match case {
            Case::CurrentUnbound => self.current(false, iters),
            Case::CurrentBound => self.current(true, iters),
            Case::FenceReady | Case::FencePendingOnce => self.fence(case, true, iters),
        }
    }
}

fn criterion_groups(c: &mut Criterion, bench: &Bench) {
    for case in Case::ALL {
        let mut group = c.benchmark_group(format!("context/{}", case.name()));
        match case {
            Case::CurrentUnbound | Case::CurrentBound => {
                let bound = matches!(case, Case::CurrentBound);
                group.bench_function("fencing", |b| {
                    b.iter_custom(|iters| bench.current(bound, iters));
                });
                group.bench_function("task_local!", |b| {
                    b.iter_custom(|iters| bench.task_local(bound, iters));
                });
                group.bench_function("thread_local!", |b| {
                    b.iter_custom(|iters| bench.thread_local(bound, iters));
                });
            }
            Case::FenceReady | Case::FencePendingOnce => {
                group.bench_function("bound", |b| {
                    b.iter_custom(|iters| bench.fence(case, true, iters));
                });
                group.bench_function("unbound", |b| {
                    b.iter_custom(|iters| bench.fence(case, false, iters));
                });
            }
        }
        group.finish();
    }
}

fn ratio_table(bench: &Bench, filter: Option<String>) {
    let mut table = support::Table::new(filter);
    for case in Case::ALL {
        let group = format!("context/{}", case.name());
        let iters = case.table_iters();
        let fencing = &mut |n| bench.fencing(case, n);
        match case {
            Case::CurrentUnbound | Case::CurrentBound => {
                let bound = matches!(case, Case::CurrentBound);
                table.compare(
                    &group,
                    iters,
                    fencing,
                    &mut [
                        // Unbound, reading the context should cost no more
                        // than twice a task-local read.
                        ("task_local!", (!bound).then_some(2.0), &mut |n| {
                            bench.task_local(bound, n)
                        }),
                        ("thread_local!", None, &mut |n| bench.thread_local(bound, n)),
                    ],
                );
            }
            Case::FenceReady | Case::FencePendingOnce => {
                table.compare(
                    &format!("{group} bound"),
                    iters,
                    fencing,
                    &mut [("unbound", None, &mut |n| bench.fence(case, false, n))],
                );
            }
        }
    }
    table.print("context");
}

fn main() {
    let bench = Bench::new();
    bench.check();
    let mut c = support::criterion();
    criterion_groups(&mut c, &bench);
    c.final_summary();
    if let Some(filter) = support::ratio_filter() {
        ratio_table(&bench, filter);
    }
}
