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
use crate::reason::Message;
use crate::sync::lock;
use pin_project_lite::pin_project;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// What the code running on this thread sees.
struct Ambient {
    fencing: Fencing,
    /// The protection scope of each fence whose body is being polled on this
    /// thread, innermost last; `None` until a guard is first taken in it.
    fences: Vec<Option<Arc<Scope>>>,
}

thread_local! {
    static AMBIENT: RefCell<Ambient> = const {
        RefCell::new(Ambient {
            fencing: Fencing::empty(),
            fences: Vec::new(),
        })
    };

    /// Whether `enter` is running on this thread. While it is not, the
    /// context is the empty `Fencing` and `current()` answers without
    /// reaching `AMBIENT`: a `Cell<bool>` has no destructor to register, so
    /// reading it is one load.
    static ENTERED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with `*fencing` as the context, then restores the previous one,
/// even if `f` panics. `*fencing` is moved into the thread-local and back, so
/// entering costs no clone. A fence also passes its protection `scope`,
/// which is pushed for the duration of `f` (see [`Scope`]); one thread-local
/// access serves both.
pub(crate) fn enter<R>(
    fencing: &mut Fencing,
    scope: Option<&mut Option<Arc<Scope>>>,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<'a> {
        fencing: &'a mut Fencing,
        scope: Option<&'a mut Option<Arc<Scope>>>,
        was_entered: bool,
    }

    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            ENTERED.set(self.was_entered);
            // Cannot fail: a `Restore` exists only after `enter` reached the
            // thread-local on this thread, which is still running.
            let _ = AMBIENT.try_with(|ambient| {
                let ambient = &mut *ambient.borrow_mut();
                std::mem::swap(&mut ambient.fencing, self.fencing);
                if let Some(scope) = self.scope.as_deref_mut() {
                    *scope = ambient.fences.pop().flatten();
                }
            });
        }
    }

    let mut scope = scope;
    let entered = AMBIENT.try_with(|ambient| {
        let ambient = &mut *ambient.borrow_mut();
        std::mem::swap(&mut ambient.fencing, fencing);
        if let Some(scope) = scope.as_deref_mut() {
            ambient.fences.push(scope.take());
        }
    });
    match entered {
        Ok(()) => {
            let was_entered = ENTERED.replace(true);
            let _restore = Restore {
                fencing,
                scope,
                was_entered,
            };
            f()
        }
        // The thread-local is gone only while the thread is being torn down;
        // then the code runs without a context, and unprotected.
        Err(_) => f(),
    }
}

/// Counts one guard in the scope of every fence whose body is being polled
/// here (creating the scopes that do not exist yet), and returns them.
pub(crate) fn guard_fences() -> Vec<Arc<Scope>> {
    AMBIENT
        .try_with(|ambient| {
            ambient
                .borrow_mut()
                .fences
                .iter_mut()
                .map(|scope| {
                    let scope = scope.get_or_insert_with(Arc::default);
                    scope.guards.fetch_add(1, Ordering::SeqCst);
                    Arc::clone(scope)
                })
                .collect()
        })
        .unwrap_or_default()
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
#[inline]
pub fn current() -> Fencing {
    if !ENTERED.get() {
        return Fencing::empty().into_derived();
    }
    entered()
}

/// `current()` while `enter` runs on this thread.
fn entered() -> Fencing {
    AMBIENT
        .try_with(|ambient| ambient.borrow().fencing.derived())
        .unwrap_or_default()
}

/// Reports the progress of the work running now (hother's
/// `report_progress`): the registered operation it runs in shows `message`
/// as its [`Progress`](crate::Progress) in [`Registry::list`](crate::Registry::list),
/// with the time it was reported and how many reports came before; with the
/// `tracing` feature, it is also a `DEBUG` event whose message is
/// `message` (target `fencing::progress`).
///
/// Like [`current`], it works from any depth, without a parameter: in the
/// body of a fence, in a fence derived inside it (`current()…run`), and in
/// tasks spawned with the
/// crate's `spawn` or futures bound with
/// [`current().bind(fut)`](Fencing::bind). It goes to the nearest
/// registered operation: the innermost registered fence around the call,
/// in every registry that fence is listed in, and, for each other
/// registry, the innermost fence around the call that is listed there. So
/// an operation nested in another of the same registry takes its progress
/// from it (both are listed), while a registry that lists only the outer
/// one still hears it. [`detach`]ed work reports to none, and neither does
/// a fence built from `Fencing::new()` inside the body: a root starts a
/// context of its own, and progress in it reaches no outer operation.
///
/// It never blocks and never fails. When nothing listens (no registered
/// fence around the call, and no `tracing` subscriber interested in the
/// event, or the feature off), it returns without converting `message`
/// (outside any fence or binding, after one thread-local read; inside one,
/// after a look at its context), so it allocates nothing: a
/// `&'static str` costs nothing at all, and only a `String` the caller
/// formatted has been allocated, by the caller.
///
/// # Examples
///
/// ```
/// use fencing::{report_progress, Fencing, Registry};
///
/// async fn import(rows: u32) {
///     for row in 1..=rows {
///         // ... import the row ...
///         if row % 100 == 0 {
///             report_progress(format!("{row}/{rows} rows"));
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// report_progress("nobody listens: nothing happens");
///
/// let registry = Registry::new();
/// let job = Fencing::new().register(&registry, "import");
/// let inside = job.run(async {
///     import(1_000).await;
///     registry.list()[0].progress().cloned()
/// });
/// let progress = inside.await.unwrap().unwrap();
/// assert_eq!(progress.message(), "1000/1000 rows");
/// assert_eq!(progress.count(), 10);
/// # }
/// ```
pub fn report_progress(message: impl Into<Message>) {
    // The sinks are taken out of the context, so that the borrow is over
    // before any lock is taken or a subscriber runs (it may use the
    // context).
    let sinks = if ENTERED.get() {
        AMBIENT
            .try_with(|ambient| ambient.borrow().fencing.progress())
            .ok()
            .flatten()
    } else {
        None
    };
    #[cfg(feature = "tracing")]
    let traced = tracing::enabled!(target: "fencing::progress", tracing::Level::DEBUG);
    #[cfg(not(feature = "tracing"))]
    let traced = false;
    if sinks.is_none() && !traced {
        return;
    }
    let message = message.into();
    if let Some(sinks) = sinks {
        let now = tokio::time::Instant::now();
        for sink in sinks.iter() {
            sink.report(&message, now);
        }
    }
    #[cfg(feature = "tracing")]
    if traced {
        tracing::debug!(target: "fencing::progress", "{}", message.as_str());
    }
}

pin_project! {
    /// A future running with a [`Fencing`] as its context. Created by
    /// [`Fencing::bind`] and [`detach`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{current, BoundFuture, Fencing};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let request = Fencing::new().timeout(Duration::from_secs(2)).code("budget");
    /// let handler: BoundFuture<_> = request.bind(async { current().remaining() });
    /// assert_eq!(handler.fencing().remaining(), Some(Duration::from_secs(2)));
    /// assert_eq!(handler.await, Some(Duration::from_secs(2)), "seen inside");
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping a `BoundFuture` drops the future it wraps; it adds nothing to the
    /// future's own cancel safety.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct BoundFuture<F> {
        #[pin]
        future: F,
        fencing: Fencing,
    }
}

impl<F> BoundFuture<F> {
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

impl<F: Future> Future for BoundFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        enter(this.fencing, None, || future.poll(cx))
    }
}

impl<F> fmt::Debug for BoundFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundFuture")
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
pub fn detach<F: std::future::IntoFuture>(future: F) -> BoundFuture<F::IntoFuture> {
    BoundFuture::new(Fencing::empty(), future.into_future())
}

/// Runs a blocking closure with `fencing` as its context.
#[cfg(feature = "rt")]
pub(crate) fn enter_sync<R>(mut fencing: Fencing, f: impl FnOnce() -> R) -> R {
    enter(&mut fencing, None, f)
}

/// The protection scope of one fence: how many guards are alive in its body,
/// and the fence's waker to call when the last one goes. A fence creates it
/// lazily (the first guard taken in its body does) and pushes it on this
/// thread's stack while its body is polled; [`protect`](crate::protect)
/// counts a guard in every scope on the stack.
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

    pub(crate) fn release(&self) {
        if self.guards.fetch_sub(1, Ordering::SeqCst) == 1 {
            let waker = lock(&self.waker).take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}
