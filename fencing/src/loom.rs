//! The sync types of the token tree engine and of the shared future
//! trigger (`trigger/future.rs`), from `std` in every build but
//! the loom models (`RUSTFLAGS="--cfg loom"`, tests only), where they come
//! from [`loom`](https://docs.rs/loom) so that loom explores every
//! interleaving of their operations (STYLE rule 19, after tokio-util's
//! `src/loom.rs`). The models are in `src/token/tests/` and
//! `src/trigger/tests/`; `.ci/loom` runs them.
//!
//! In a normal build this module is nothing but `pub(crate) use std::…`:
//! the engine compiles to exactly what it was, `is_cancelled` is one acquire
//! load and waiting allocates nothing.
//!
//! Under loom three things differ, because loom lacks them:
//!
//! - **`Arc` and `Weak` stay `std`'s.** `loom::sync::Arc` has no `Weak`,
//!   and a parent holds its children weakly. So loom does not explore the
//!   reference counts themselves: a count update is one indivisible step
//!   between two loom operations, and loom's leak check does not see nodes
//!   (the models check for leaks with `Weak`s and child counts instead).
//!   What loom does explore is every interleaving *around* them: the locks a
//!   dropping node takes, and the `Weak::upgrade` under a shard lock.
//! - **`OnceLock` is [`sync::OnceLock`] below**: a loom `AtomicBool` that
//!   publishes, a loom `Mutex` that serialises initialisers, and a `std`
//!   `OnceLock` as mere storage (the crate forbids `unsafe`, so a loom
//!   `UnsafeCell` cannot hand out the `&T` that `get` returns).
//! - **The shard choice** (a `thread_local!` index and a process-wide
//!   `static` count in the engine) is fixed by the loom thread's index and a
//!   shard count of 2, in the engine itself: loom threads all run on one OS
//!   thread, and a `static` would carry state from one explored execution to
//!   the next, which loom requires to be deterministic.

pub(crate) mod sync {
    // Shared by both builds; see the module doc for why `Arc`/`Weak` stay.
    pub(crate) use std::sync::{Arc, PoisonError, Weak};

    #[cfg(not(all(test, loom)))]
    pub(crate) use std::sync::{Mutex, MutexGuard, OnceLock};

    #[cfg(all(test, loom))]
    pub(crate) use self::once_lock::OnceLock;
    #[cfg(all(test, loom))]
    pub(crate) use loom::sync::{Mutex, MutexGuard};

    pub(crate) mod atomic {
        #[cfg(all(test, loom))]
        pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};
        #[cfg(not(all(test, loom)))]
        pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};

        /// Reads an atomic through `&mut`, with no synchronisation: a plain
        /// `get_mut` in a normal build; under loom an unsynchronised access
        /// that loom checks is ordered after every store to it.
        #[inline]
        pub(crate) fn read_mut(atomic: &mut AtomicUsize) -> usize {
            #[cfg(not(all(test, loom)))]
            return *atomic.get_mut();
            #[cfg(all(test, loom))]
            return atomic.with_mut(|value| *value);
        }
    }

    /// A loom-visible `std::sync::OnceLock` with the subset of its API the
    /// engine uses, and the same semantics:
    ///
    /// - `get` is one acquire load (of `done`) and sees the value only once
    ///   its initialiser has finished;
    /// - initialisers are serialised: a `set` or `get_or_init` that loses a
    ///   race waits (on `init`, where `std` parks on its `Once`) until the
    ///   winner has finished, so after a losing `set` returns, `get` is
    ///   `Some`. That matters: a losing `cancel` returns `false` and its
    ///   caller may read the winner's reason at once.
    ///
    /// `value` is a `std::sync::OnceLock` used as storage only. It is written
    /// under `init` before `done` is stored with release, and read only after
    /// `done` was loaded as `true` with acquire, so every ordering the engine
    /// relies on goes through the loom atomic and loom sees it. (`std`'s
    /// `OnceLock` has its own atomics, but loom runs all its threads on one OS
    /// thread, so they add no ordering that loom cannot see.)
    #[cfg(all(test, loom))]
    mod once_lock {
        use loom::sync::atomic::{AtomicBool, Ordering};
        use loom::sync::Mutex;
        use std::sync::PoisonError;

        pub(crate) struct OnceLock<T> {
            done: AtomicBool,
            init: Mutex<()>,
            value: std::sync::OnceLock<T>,
        }

        impl<T> OnceLock<T> {
            pub(crate) fn new() -> Self {
                Self {
                    done: AtomicBool::new(false),
                    init: Mutex::new(()),
                    value: std::sync::OnceLock::new(),
                }
            }

            pub(crate) fn get(&self) -> Option<&T> {
                if self.done.load(Ordering::Acquire) {
                    Some(self.value.get().expect("`done` is stored after the value"))
                } else {
                    None
                }
            }

            pub(crate) fn set(&self, value: T) -> Result<(), T> {
                let mut value = Some(value);
                self.get_or_init(|| value.take().expect("called once"));
                value.map_or(Ok(()), Err)
            }

            pub(crate) fn get_or_init(&self, init: impl FnOnce() -> T) -> &T {
                if let Some(value) = self.get() {
                    return value;
                }
                let guard = self.init.lock().unwrap_or_else(PoisonError::into_inner);
                // Under `init`, whoever set `done` released it before we
                // acquired it: a relaxed load would do, acquire is clearer.
                if !self.done.load(Ordering::Acquire) {
                    if self.value.set(init()).is_err() {
                        unreachable!("only the holder of `init` sets the value");
                    }
                    self.done.store(true, Ordering::Release);
                }
                drop(guard);
                self.value.get().expect("set above or by an earlier holder")
            }
        }
    }
}

/// Runs `f` under loom, with a preemption bound of 2 unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise (unbounded runs take hours), and
/// reports how many executions it explored (seen with `--nocapture`). Shared
/// by the models of the token tree and of the shared future trigger.
#[cfg(all(test, loom))]
#[track_caller]
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&executions);
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    eprintln!(
        "{}: {} executions (preemption bound {:?})",
        std::panic::Location::caller(),
        executions.load(std::sync::atomic::Ordering::Relaxed),
        builder.preemption_bound,
    );
}
