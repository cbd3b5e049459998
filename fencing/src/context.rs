//! The context: the [`Fencing`] in effect for the code running now.
//!
//! A future bound with [`Fencing::bind`], and the body of every fence, runs
//! with a `Fencing` as its context; [`current`] reads it from anywhere below,
//! without a parameter.
//!
//! The context lives in a thread-local that is set only while the bound
//! future is being polled, and restored when its poll returns, the way
//! tokio's `task_local!` works. Like a tokio task-local, it does **not**
//! follow [`tokio::spawn`]: a spawned task is polled by the runtime, outside
//! the poll of the future that spawned it (tokio#2396, tokio#6659). Spawn
//! with [`spawn`](crate::spawn) and [`spawn_blocking`](crate::spawn_blocking),
//! or wrap a future with [`current().bind(fut)`](Fencing::bind) before
//! handing it to a `JoinSet` or a `TaskTracker`.

use crate::fencing::Fencing;
use crate::sync::lock;
use pin_project_lite::pin_project;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// What the code running on this thread sees.
struct Ambient {
    fencing: RefCell<Fencing>,
    /// The protection scope of each fence whose body is being polled on this
    /// thread, innermost last; `None` until a guard is first taken in it.
    fences: RefCell<Vec<Option<Arc<Scope>>>>,
}

thread_local! {
    static AMBIENT: Ambient = const {
        Ambient {
            fencing: RefCell::new(Fencing::new()),
            fences: RefCell::new(Vec::new()),
        }
    };
}

/// Runs `f` with `*fencing` as the context, then restores the previous one,
/// even if `f` panics. `*fencing` is moved into the thread-local and back, so
/// entering costs no clone. A fence also passes its protection `scope`,
/// which is pushed for the duration of `f` (see [`protect`]).
pub(crate) fn enter<R>(
    fencing: &mut Fencing,
    scope: Option<&mut Option<Arc<Scope>>>,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<'a> {
        fencing: &'a mut Fencing,
        scope: Option<&'a mut Option<Arc<Scope>>>,
    }

    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            // Cannot fail: a `Restore` exists only after `enter` reached the
            // thread-local on this thread, which is still running.
            let _ = AMBIENT.try_with(|ambient| {
                std::mem::swap(&mut *ambient.fencing.borrow_mut(), self.fencing);
                if let Some(scope) = self.scope.as_deref_mut() {
                    *scope = ambient.fences.borrow_mut().pop().flatten();
                }
            });
        }
    }

    let mut scope = scope;
    let mut pushed = scope.as_deref_mut().map(Option::take);
    let entered = AMBIENT.try_with(|ambient| {
        std::mem::swap(&mut *ambient.fencing.borrow_mut(), fencing);
        if let Some(pushed) = pushed.take() {
            ambient.fences.borrow_mut().push(pushed);
        }
    });
    match entered {
        Ok(()) => {
            let _restore = Restore { fencing, scope };
            f()
        }
        // The thread-local is gone only while the thread is being torn down;
        // then the code runs without a context.
        Err(_) => {
            if let (Some(scope), Some(pushed)) = (scope, pushed) {
                *scope = pushed;
            }
            f()
        }
    }
}

/// The `Fencing` in effect here: the one bound to the enclosing future or
/// fence, or an empty `Fencing` that never fires when nothing is bound.
/// Never panics.
///
/// Derive from it to add triggers for an inner call: the result keeps every
/// outer trigger and adds the new one.
///
/// # Examples
///
/// ```
/// use fencing::{current, Fencing, Token};
/// use std::time::Duration;
///
/// async fn query_db() -> Result<u32, fencing::Cancelled> {
///     // Whatever the caller declared, plus 5 s for this call.
///     current().timeout(Duration::from_secs(5)).code("db").run(async { 7 }).await
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// assert!(current().effective_deadline().is_none(), "nothing bound");
///
/// let shutdown = Token::new();
/// let request = Fencing::new().token(&shutdown).code("shutdown");
/// let answer = request.bind(query_db()).await;
/// assert_eq!(answer.unwrap(), 7);
/// # }
/// ```
#[must_use]
pub fn current() -> Fencing {
    AMBIENT
        .try_with(|ambient| ambient.fencing.borrow().derived())
        .unwrap_or_default()
}

impl Fencing {
    /// Binds this `Fencing` to `future` as its context: while `future` is
    /// polled, [`current`] returns this `Fencing`. Binding never cancels
    /// anything; only a fence ([`run`](Self::run)) does. Nested bindings
    /// override the outer one and restore it afterwards.
    ///
    /// Equivalent to:
    ///
    /// ```ignore
    /// async fn bind<F: IntoFuture>(self, future: F) -> F::Output;
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{current, Fencing, Token};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Token::new();
    /// shutdown.cancel();
    ///
    /// // The token has fired, but a binding does not cancel: the write runs.
    /// let written = Fencing::new()
    ///     .token(&shutdown)
    ///     .bind(async { current().is_cancelled() })
    ///     .await;
    /// assert!(written, "the inner code can see the cancellation");
    /// # }
    /// ```
    pub fn bind<F: std::future::IntoFuture>(self, future: F) -> Bound<F::IntoFuture> {
        Bound {
            future: future.into_future(),
            fencing: self.into_derived(),
        }
    }
}

impl Fencing {
    /// Runs the closure `f` with this `Fencing` as its context, and returns
    /// what it returns: [`bind`](Self::bind) for synchronous code, such as
    /// a tower `Service::call` that builds the future it returns. Like a
    /// binding, it never cancels anything.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{current, Fencing};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let request = Fencing::new().timeout(Duration::from_secs(2));
    /// let seen = request.in_scope(|| current().remaining());
    /// assert_eq!(seen, Some(Duration::from_secs(2)));
    /// assert_eq!(current().remaining(), None, "restored afterwards");
    /// # }
    /// ```
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        enter(&mut self.derived(), None, f)
    }
}

pin_project! {
    /// A future running with a [`Fencing`] as its context. Created by
    /// [`Fencing::bind`].
    ///
    /// # Cancel safety
    ///
    /// Dropping a `Bound` drops the future it wraps; it adds nothing to the
    /// future's own cancel safety.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Bound<F> {
        #[pin]
        future: F,
        fencing: Fencing,
    }
}

impl<F> Bound<F> {
    /// The `Fencing` bound to the future.
    ///
    /// # Examples
    ///
    /// ```
    /// let bound = fencing::Fencing::new().bind(async {});
    /// assert!(!bound.fencing().is_cancelled());
    /// ```
    #[must_use]
    pub fn fencing(&self) -> &Fencing {
        &self.fencing
    }

    /// Returns the wrapped future, unbound.
    ///
    /// # Examples
    ///
    /// ```
    /// let bound = fencing::Fencing::new().bind(std::future::ready(1));
    /// let future: std::future::Ready<i32> = bound.into_inner();
    /// ```
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F: Future> Future for Bound<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        enter(this.fencing, None, || future.poll(cx))
    }
}

impl<F> fmt::Debug for Bound<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bound")
            .field("fencing", &self.fencing)
            .finish_non_exhaustive()
    }
}

/// Runs `future` with an empty context: none of the outer triggers apply to
/// fences derived inside it (Go's `context.WithoutCancel`). For work that must
/// not inherit the caller's budget, such as an audit write after a request
/// was cancelled.
///
/// # Examples
///
/// ```
/// use fencing::{current, detach, Token};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = Token::new();
/// shutdown.cancel();
/// let outer = fencing::Fencing::new().token(&shutdown);
/// let inside = outer.bind(detach(async { current().is_cancelled() })).await;
/// assert!(!inside);
/// # }
/// ```
pub fn detach<F: std::future::IntoFuture>(future: F) -> Bound<F::IntoFuture> {
    Fencing::new().bind(future)
}

/// Runs a blocking closure with `fencing` as its context.
#[cfg(feature = "rt")]
pub(crate) fn enter_sync<R>(mut fencing: Fencing, f: impl FnOnce() -> R) -> R {
    enter(&mut fencing, None, f)
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
    let scopes = AMBIENT
        .try_with(|ambient| {
            ambient
                .fences
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
