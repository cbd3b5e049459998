//! Helpers shared by several test files (`mod support;`).
// Each test binary uses only part of it.
#![allow(dead_code)]

use fencing::{current, Fenced, Reason};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::time::Instant;
use tokio_test::task::{spawn, Spawn};

/// The latest instant the clock can represent, found a second and then a
/// nanosecond at a time.
pub(crate) fn latest_instant() -> Instant {
    let now = Instant::now();
    let secs = now
        + Duration::from_secs(last_fit(u64::MAX, |s| {
            now.checked_add(Duration::from_secs(s)).is_some()
        }));
    secs + Duration::from_nanos(last_fit(999_999_999, |n| {
        secs.checked_add(Duration::from_nanos(n)).is_some()
    }))
}

/// The largest `x` in `0..=max` for which `fits(x)` holds, `fits` being
/// monotone and true at 0.
fn last_fit(max: u64, fits: impl Fn(u64) -> bool) -> u64 {
    let (mut lo, mut hi) = (0, max);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// A future on a mock task, boxed so that the task derefs to the pinned
/// future, which can then be asked after it completed.
pub(crate) type Hand<F> = Spawn<Pin<Box<F>>>;

pub(crate) fn hand<F: Future>(future: F) -> Hand<F> {
    spawn(Box::pin(future))
}

/// The fence inside a mock task.
pub(crate) fn fence<F>(task: &Hand<Fenced<F>>) -> &Fenced<F> {
    task
}

/// The codes of `reasons`, `"-"` for a reason without one.
pub(crate) fn codes(reasons: &[Reason]) -> Vec<&str> {
    reasons
        .iter()
        .map(|r| r.code().map_or("-", |c| c.as_str()))
        .collect()
}

/// A body under the test's control: it counts its polls and drops, records
/// whether its context was cancelled when last polled, is pending until
/// [`Probe::open`], and panics once [`Probe::explode`]d. It never registers
/// a waker, so every wake-up a test sees comes from the fence.
#[derive(Clone, Default)]
pub(crate) struct Probe(Arc<ProbeState>);

#[derive(Default)]
pub(crate) struct ProbeState {
    polls: AtomicUsize,
    drops: AtomicUsize,
    told: AtomicBool,
    open: AtomicBool,
    explode: AtomicBool,
}

impl Probe {
    pub(crate) fn body(&self) -> ProbeBody {
        ProbeBody(self.clone())
    }

    pub(crate) fn polls(&self) -> usize {
        self.0.polls.load(SeqCst)
    }

    pub(crate) fn drops(&self) -> usize {
        self.0.drops.load(SeqCst)
    }

    pub(crate) fn dropped(&self) -> bool {
        self.drops() > 0
    }

    pub(crate) fn told(&self) -> bool {
        self.0.told.load(SeqCst)
    }

    pub(crate) fn open(&self) {
        self.0.open.store(true, SeqCst);
    }

    pub(crate) fn explode(&self) {
        self.0.explode.store(true, SeqCst);
    }
}

pub(crate) struct ProbeBody(Probe);

impl Future for ProbeBody {
    type Output = &'static str;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<&'static str> {
        let state = &self.0 .0;
        state.polls.fetch_add(1, SeqCst);
        state.told.store(current().is_cancelled(), SeqCst);
        if state.explode.load(SeqCst) {
            panic!("body exploded");
        }
        if state.open.load(SeqCst) {
            Poll::Ready("done")
        } else {
            Poll::Pending
        }
    }
}

impl Drop for ProbeBody {
    fn drop(&mut self) {
        self.0 .0.drops.fetch_add(1, SeqCst);
    }
}

/// Runs a closure when dropped: held by a body, it shows when the body's
/// destructors ran.
pub(crate) struct OnDrop(Option<Box<dyn FnOnce() + Send>>);

impl OnDrop {
    pub(crate) fn new(f: impl FnOnce() + Send + 'static) -> Self {
        Self(Some(Box::new(f)))
    }

    /// Sets `flag` when dropped.
    pub(crate) fn flag(flag: &Arc<AtomicBool>) -> Self {
        let flag = Arc::clone(flag);
        Self::new(move || flag.store(true, SeqCst))
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A waker that counts its wakes. `Arc::strong_count` of the counter tells
/// how many clones of it are held (by a token, a timer, ...): see
/// [`clones_held_elsewhere`].
#[derive(Default)]
pub(crate) struct WakeCounter(AtomicUsize);

impl WakeCounter {
    pub(crate) fn wakes(&self) -> usize {
        self.0.load(SeqCst)
    }
}

impl Wake for WakeCounter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A counter and a waker that counts into it.
pub(crate) fn counting_waker() -> (Arc<WakeCounter>, Waker) {
    let counter = Arc::new(WakeCounter::default());
    let waker = Waker::from(Arc::clone(&counter));
    (counter, waker)
}

/// Clones of the counting waker held by anyone but the test (which holds the
/// counter and one waker).
pub(crate) fn clones_held_elsewhere(counter: &Arc<WakeCounter>) -> usize {
    Arc::strong_count(counter) - 2
}
