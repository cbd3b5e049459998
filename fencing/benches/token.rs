//! The cost of [`fencing::Token`] against tokio-util's `CancellationToken`.
//!
//! - `child create+drop`: `parent.child()` dropped at once, one thread.
//! - `child create+drop, 2 threads`: two OS threads do the same on one
//!   shared parent at the same time; the time is the wall time from the
//!   moment both start until both finish, per iteration of one thread.
//! - `is_cancelled`: on a token that is not cancelled.
//! - `cancelled() pending once`: create the wait future, poll it once (it
//!   registers its waker and returns pending), drop it (it deregisters).
//!
//! After criterion's groups, `main` prints an interleaved table of ratios
//! fencing ÷ tokio-util.

mod support;

use criterion::Criterion;
use fencing::Token;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Barrier;
use std::task::Context;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One iteration of a benchmark on a parent token.
trait Parent: Sync {
    fn child_create_drop(&self);
    fn is_cancelled(&self) -> bool;
    fn wait_pending_once(&self, cx: &mut Context<'_>);
}

impl Parent for Token {
    #[inline]
    fn child_create_drop(&self) {
        drop(black_box(self.child()));
    }

    #[inline]
    fn is_cancelled(&self) -> bool {
        Self::is_cancelled(self)
    }

    #[inline]
    fn wait_pending_once(&self, cx: &mut Context<'_>) {
        let wait = pin!(self.cancelled());
        assert!(wait.poll(cx).is_pending());
    }
}

impl Parent for CancellationToken {
    #[inline]
    fn child_create_drop(&self) {
        drop(black_box(self.child_token()));
    }

    #[inline]
    fn is_cancelled(&self) -> bool {
        Self::is_cancelled(self)
    }

    #[inline]
    fn wait_pending_once(&self, cx: &mut Context<'_>) {
        let wait = pin!(self.cancelled());
        assert!(wait.poll(cx).is_pending());
    }
}

#[derive(Clone, Copy, Debug)]
enum Case {
    Child,
    ChildTwoThreads,
    IsCancelled,
    WaitPendingOnce,
}

impl Case {
    const ALL: [Self; 4] = [
        Self::Child,
        Self::ChildTwoThreads,
        Self::IsCancelled,
        Self::WaitPendingOnce,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Child => "child create+drop",
            Self::ChildTwoThreads => "child create+drop, 2 threads",
            Self::IsCancelled => "is_cancelled",
            Self::WaitPendingOnce => "cancelled() pending once",
        }
    }

    /// Iterations per timing in the ratio table (a few milliseconds).
    fn table_iters(self) -> u64 {
        match self {
            Self::Child | Self::WaitPendingOnce => 100_000,
            Self::ChildTwoThreads => 200_000,
            Self::IsCancelled => 2_000_000,
        }
    }

    fn target(self) -> Option<f64> {
        match self {
            Self::Child => Some(0.8),
            Self::ChildTwoThreads => Some(0.5),
            Self::IsCancelled | Self::WaitPendingOnce => None,
        }
    }

    /// Runs `iters` iterations on `parent` and returns the time they took.
    fn measure<P: Parent>(self, parent: &P, iters: u64) -> Duration {
        match self {
            Self::Child => {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(parent).child_create_drop();
                }
                start.elapsed()
            }
            Self::ChildTwoThreads => two_threads(parent, iters),
            Self::IsCancelled => {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(black_box(parent).is_cancelled());
                }
                start.elapsed()
            }
            Self::WaitPendingOnce => {
                let waker = futures_test::task::noop_waker();
                let mut cx = Context::from_waker(&waker);
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(parent).wait_pending_once(&mut cx);
                }
                start.elapsed()
            }
        }
    }
}

/// Two threads each create and drop `iters` children of `parent` at the
/// same time. Returns the wall time from the earlier start to the later end,
/// thread start-up and exit excluded.
fn two_threads<P: Parent>(parent: &P, iters: u64) -> Duration {
    let barrier = Barrier::new(2);
    let work = || {
        barrier.wait();
        let start = Instant::now();
        for _ in 0..iters {
            black_box(parent).child_create_drop();
        }
        (start, Instant::now())
    };
    let ((start_a, end_a), (start_b, end_b)) = std::thread::scope(|s| {
        let a = s.spawn(work);
        let b = s.spawn(work);
        (
            a.join().expect("bench thread"),
            b.join().expect("bench thread"),
        )
    });
    end_a.max(end_b) - start_a.min(start_b)
}

fn criterion_groups(c: &mut Criterion, token: &Token, anchor: &CancellationToken) {
    for case in Case::ALL {
        let mut group = c.benchmark_group(format!("token/{}", case.name()));
        group.bench_function("fencing", |b| {
            b.iter_custom(|iters| case.measure(token, iters));
        });
        group.bench_function("tokio-util", |b| {
            b.iter_custom(|iters| case.measure(anchor, iters));
        });
        group.finish();
    }
}

fn ratio_table(token: &Token, anchor: &CancellationToken, filter: Option<String>) {
    let mut table = support::Table::new(filter);
    for case in Case::ALL {
        table.compare(
            &format!("token/{}", case.name()),
            case.table_iters(),
            &mut |n| case.measure(token, n),
            &mut [("tokio-util", case.target(), &mut |n| {
                case.measure(anchor, n)
            })],
        );
    }
    table.print("token");
}

fn main() {
    let token = Token::new();
    let anchor = CancellationToken::new();
    let mut c = support::criterion();
    criterion_groups(&mut c, &token, &anchor);
    c.final_summary();
    if let Some(filter) = support::ratio_filter() {
        ratio_table(&token, &anchor, filter);
    }
}
