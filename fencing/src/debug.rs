//! Live counts of the engine's allocations, for leak checks in tests and in
//! the soak run. Compiled to nothing without the `test-util` feature.

#[cfg(feature = "test-util")]
mod counts {
    use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

    pub(super) static NODES: AtomicIsize = AtomicIsize::new(0);
    pub(super) static WAITERS: AtomicIsize = AtomicIsize::new(0);
    pub(super) static TIMERS: AtomicIsize = AtomicIsize::new(0);

    pub(super) fn add(counter: &AtomicIsize, n: isize) {
        counter.fetch_add(n, Relaxed);
    }
}

macro_rules! counter {
    ($(#[$doc:meta])* $name:ident, $counter:ident, $n:expr) => {
        $(#[$doc])*
        #[inline]
        pub(crate) fn $name() {
            #[cfg(feature = "test-util")]
            counts::add(&counts::$counter, $n);
        }
    };
}

counter!(node_created, NODES, 1);
counter!(node_dropped, NODES, -1);
counter!(waiter_added, WAITERS, 1);
counter!(waiter_removed, WAITERS, -1);
counter!(timer_armed, TIMERS, 1);
counter!(timer_released, TIMERS, -1);

/// Waiters taken from a node's list by its cancellation.
#[inline]
pub(crate) fn waiters_drained(_n: usize) {
    #[cfg(feature = "test-util")]
    counts::add(&counts::WAITERS, -(_n as isize));
}

/// How many token-tree nodes, registered waiters (tasks and hooks) and
/// armed fence timers are alive in the process. Requires the `test-util`
/// feature; not covered by semver.
///
/// # Examples
///
/// ```
/// let before = fencing::__live_counts();
/// let token = fencing::Token::new();
/// assert_eq!(fencing::__live_counts().nodes, before.nodes + 1);
/// drop(token);
/// assert_eq!(fencing::__live_counts(), before);
/// ```
#[cfg(feature = "test-util")]
#[doc(hidden)]
#[must_use]
pub fn __live_counts() -> LiveCounts {
    use std::sync::atomic::Ordering::Relaxed;
    LiveCounts {
        nodes: counts::NODES.load(Relaxed),
        waiters: counts::WAITERS.load(Relaxed),
        timers: counts::TIMERS.load(Relaxed),
    }
}

/// Live counts returned by [`__live_counts`]; not covered by semver.
#[cfg(feature = "test-util")]
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveCounts {
    /// Token-tree nodes: tokens, handles and future triggers.
    pub nodes: isize,
    /// Registered waiters: waiting tasks and on-cancel hooks.
    pub waiters: isize,
    /// Fence timers armed and not yet released.
    pub timers: isize,
}
