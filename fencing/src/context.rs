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

use crate::declaration::Fencing;
use pin_project_lite::pin_project;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    /// The `Fencing` the code running on this thread sees.
    static AMBIENT: RefCell<Fencing> = const { RefCell::new(Fencing::empty()) };
}

/// Runs `f` with `*fencing` as the context, then restores the previous one,
/// even if `f` panics. `*fencing` is moved into the thread-local and back, so
/// entering costs no clone.
pub(crate) fn enter<R>(fencing: &mut Fencing, f: impl FnOnce() -> R) -> R {
    struct Restore<'a>(&'a mut Fencing);

    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            // Cannot fail: a `Restore` exists only after `enter` reached the
            // thread-local on this thread, which is still running.
            let _ = AMBIENT.try_with(|ambient| std::mem::swap(&mut *ambient.borrow_mut(), self.0));
        }
    }

    match AMBIENT.try_with(|ambient| std::mem::swap(&mut *ambient.borrow_mut(), fencing)) {
        Ok(()) => {
            let _restore = Restore(fencing);
            f()
        }
        // The thread-local is gone only while the thread is being torn down;
        // then the code runs without a context.
        Err(_) => f(),
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
        .try_with(|ambient| ambient.borrow().derived())
        .unwrap_or_default()
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
    pub(crate) fn new(fencing: Fencing, future: F) -> Self {
        Self { future, fencing }
    }

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
        enter(this.fencing, || future.poll(cx))
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
    Bound::new(Fencing::empty(), future.into_future())
}

/// Runs a blocking closure with `fencing` as its context.
#[cfg(feature = "rt")]
pub(crate) fn enter_sync<R>(mut fencing: Fencing, f: impl FnOnce() -> R) -> R {
    enter(&mut fencing, f)
}
