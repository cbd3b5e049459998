//! Protected sections: [`protect`] defers the hard cancel of every fence
//! whose body is being polled where it is taken.
//!
//! Each fence pushes its protection [`Scope`] on a thread-local stack while
//! its body is polled (see [`enter`]), innermost last; a guard counts itself
//! in every scope on the stack. The stack is apart from the context's
//! thread-local: a binding changes the context but is no fence, and pushes
//! nothing here.

use crate::sync::lock;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

thread_local! {
    /// The protection scope of each fence whose body is being polled on
    /// this thread, innermost last; `None` until a guard is first taken in
    /// it.
    static FENCES: RefCell<Vec<Option<Arc<Scope>>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `scope`, a fence's protection scope, on the stack, then
/// takes it back (a guard taken in `f` may have created it), even if `f`
/// panics.
pub(crate) fn enter<R>(scope: &mut Option<Arc<Scope>>, f: impl FnOnce() -> R) -> R {
    struct Pop<'a>(&'a mut Option<Arc<Scope>>);

    impl Drop for Pop<'_> {
        fn drop(&mut self) {
            // Cannot fail: a `Pop` exists only after `enter` reached the
            // thread-local on this thread, which is still running.
            let _ = FENCES.try_with(|fences| *self.0 = fences.borrow_mut().pop().flatten());
        }
    }

    let mut pushed = Some(scope.take());
    match FENCES.try_with(|fences| fences.borrow_mut().extend(pushed.take())) {
        Ok(()) => {
            let _pop = Pop(scope);
            f()
        }
        // The thread-local is gone only while the thread is being torn down;
        // then the body runs unprotected.
        Err(_) => {
            *scope = pushed.flatten();
            f()
        }
    }
}

/// The protection scope of one fence: how many guards are alive in its body,
/// and the fence's waker to call when the last one goes.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    guards: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

impl Scope {
    /// Returns `true` if a guard is alive; then `waker` is woken when the last
    /// guard is dropped.
    pub(crate) fn is_protected(&self, waker: &Waker) -> bool {
        if self.guards.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let replaced = lock(&self.waker).replace(waker.clone());
        // Dropped after the lock is released (a waker's drop may run code).
        drop(replaced);
        // Checked again after the waker is stored: a guard dropped in between
        // either finds the waker, or is seen gone here.
        self.guards.load(Ordering::SeqCst) > 0
    }

    fn release(&self) {
        if self.guards.fetch_sub(1, Ordering::SeqCst) == 1 {
            let waker = lock(&self.waker).take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// Takes a protection guard: until it is dropped, no enclosing fence drops
/// its body. Triggers that fire meanwhile are recorded; the fence drops the
/// body at its first poll after the last guard is released, unless the body
/// has completed by then (then the fence returns its value and still reports
/// the triggers as fired).
///
/// This is the commit point that drop-cancellation otherwise lacks, and
/// Rust's answer to cancel safety in `select!`: take a guard around a section
/// that must not be cut in half, such as a transaction that has begun
/// committing, or a streaming proxy draining the final usage frame. Guards
/// nest, may be held across `.await`s and are `Send`. The section should be
/// short: while it runs, the fence's triggers wait.
///
/// A guard protects every fence whose body is being polled where it is
/// taken, the innermost and all around it, since an outer fence dropping its
/// body would cut the section just the same. Outside any fence, and in a task
/// spawned from a fenced body, it protects nothing: such a task is not
/// dropped by the fence.
///
/// # Examples
///
/// ```
/// use fencing::{protect, Fencing, Token};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = Token::new();
/// let fencing = Fencing::new().token(&shutdown).code("shutdown");
///
/// let outcome = fencing
///     .run(async {
///         let commit = protect();
///         shutdown.cancel(); // fires mid-commit...
///         tokio::time::sleep(Duration::from_millis(5)).await;
///         drop(commit); // ...and is honoured only here
///         tokio::time::sleep(Duration::from_secs(1)).await;
///         "never reached"
///     })
///     .await;
/// assert!(outcome.unwrap_err().cancelled_by("shutdown"));
/// # }
/// ```
#[must_use = "the section is protected only while the guard is alive"]
pub fn protect() -> ProtectGuard {
    let scopes = FENCES
        .try_with(|fences| {
            fences
                .borrow_mut()
                .iter_mut()
                .map(|scope| {
                    let scope = scope.get_or_insert_with(Arc::default);
                    scope.guards.fetch_add(1, Ordering::SeqCst);
                    Arc::clone(scope)
                })
                .collect()
        })
        .unwrap_or_default();
    ProtectGuard { scopes }
}

/// Defers the hard cancel of the enclosing fences while alive. Created by
/// [`protect`].
#[derive(Debug)]
#[must_use = "the section is protected only while the guard is alive"]
pub struct ProtectGuard {
    scopes: Vec<Arc<Scope>>,
}

impl ProtectGuard {
    /// Returns `true` if the guard protects at least one fence, that is, if
    /// it was taken inside a fenced body.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert!(!fencing::protect().is_protecting(), "no fence here");
    /// let inside = fencing::Fencing::new()
    ///     .run(async { fencing::protect().is_protecting() })
    ///     .await
    ///     .unwrap();
    /// assert!(inside);
    /// # }
    /// ```
    #[must_use]
    pub fn is_protecting(&self) -> bool {
        !self.scopes.is_empty()
    }
}

impl Drop for ProtectGuard {
    fn drop(&mut self) {
        for scope in &self.scopes {
            scope.release();
        }
    }
}
