//! [`Drain`]: shut a server down with a grace period, and know what it cost.

use crate::codes;
use fencing::{
    current, BoundFuture, Cancelled, Fenced, Fencing, Token, WaitForCancellationFutureOwned,
};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::task::task_tracker::{TaskTracker, TaskTrackerToken, TaskTrackerWaitFuture};

/// The shutdown of a server: one call tells every live request, waits for
/// them up to a grace period, drops what is left, and reports how many
/// finished and how many were dropped.
///
/// Give it to [`FenceLayer::drain`](crate::server::FenceLayer::drain). Every
/// request then carries a trigger with the code [`codes::SHUTDOWN`] and the
/// drain's grace period ([`Fencing::grace_for`]). [`shutdown`](Self::shutdown)
/// fires it: each handler sees it at once, cooperatively
/// (`current().is_cancelled()`, a fence's `cancelled_by("shutdown")`) and
/// has the grace period to finish; a handler still running at its end is
/// dropped by its fence and answered `503`. Requests that arrive once the
/// shutdown has begun are answered `503` without calling the handler.
///
/// The drain tracks every handler, detached ones included, and the work
/// given to [`track_future`](Self::track_future) (an audit write shielded
/// from a handler), so `shutdown` returns once each has ended: at the latest
/// one grace period after it was called, or later only while a handler or
/// tracked work is inside a [`protect`](fencing::protect) section, whose
/// commit always completes.
/// Streaming response bodies are not waited for (a client that reads
/// slowly would hold the drain): a body still streaming at the end of the
/// grace period ends with an error at its next poll. It composes with `axum::serve(..).with_graceful_shutdown(..)`
/// and hyper-util's `GracefulShutdown`, whose own waits are unbounded: hand
/// them [`draining`](Self::draining), so they stop accepting when the drain
/// begins, and their wait ends when the drain's does.
///
/// # Examples
///
/// ```
/// use fencing::current;
/// use fencing_tower::{server::FenceLayer, Drain};
/// use std::time::Duration;
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let drain = Drain::new(Duration::from_secs(5));
/// let mut service = ServiceBuilder::new()
///     .layer(FenceLayer::new().drain(&drain))
///     .service(service_fn(|_: http::Request<String>| async {
///         // A handler that stops at the next safe point once told.
///         while !current().is_cancelled() {
///             tokio::time::sleep(Duration::from_millis(100)).await;
///         }
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("flushed")))
///     }));
///
/// let request = service.ready().await.unwrap().call(http::Request::new(String::new()));
/// let request = tokio::spawn(request);
/// tokio::task::yield_now().await;
///
/// let report = drain.shutdown().await;
/// assert_eq!((report.finished(), report.dropped()), (1, 0));
/// assert_eq!(request.await.unwrap().unwrap().status(), 200);
/// # }
/// ```
#[derive(Clone)]
pub struct Drain {
    inner: Arc<Inner>,
}

struct Inner {
    token: Token,
    /// When the drain began.
    began: OnceLock<Instant>,
    tracker: TaskTracker,
    grace: Duration,
    finished: AtomicUsize,
    dropped: AtomicUsize,
}

impl Drain {
    /// A drain that gives live requests `grace` to finish once it begins.
    /// `Duration::ZERO` drops them at once; a duration that overflows the
    /// clock never drops them, it only tells them.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let drain = fencing_tower::Drain::new(Duration::from_secs(10));
    /// assert_eq!(drain.grace(), Duration::from_secs(10));
    /// assert!(!drain.is_draining());
    /// ```
    #[must_use]
    pub fn new(grace: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                token: Token::new(),
                began: OnceLock::new(),
                tracker: TaskTracker::new(),
                grace,
                finished: AtomicUsize::new(0),
                dropped: AtomicUsize::new(0),
            }),
        }
    }

    /// The grace period live requests get.
    ///
    /// # Examples
    ///
    /// See [`Drain::new`].
    #[must_use]
    pub fn grace(&self) -> Duration {
        self.inner.grace
    }

    /// Returns `true` once [`shutdown`](Self::shutdown) was called.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let drain = fencing_tower::Drain::new(std::time::Duration::ZERO);
    /// drain.shutdown().await;
    /// assert!(drain.is_draining());
    /// # }
    /// ```
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// The shutdown token: a `Token` that is cancelled, with the message
    /// `"server shutting down"`, when the drain begins. Declare it (or a
    /// child of it) in background work that should stop with the server.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let drain = fencing_tower::Drain::new(std::time::Duration::ZERO);
    /// let background = drain.token().child();
    /// drain.shutdown().await;
    /// assert_eq!(background.reason().unwrap().message(), "server shutting down");
    /// # }
    /// ```
    #[must_use]
    pub fn token(&self) -> &Token {
        &self.inner.token
    }

    /// A future that resolves when the drain begins: the signal to hand to
    /// `axum::serve(..).with_graceful_shutdown(..)` or to the loop that
    /// feeds hyper-util's `GracefulShutdown`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let drain = fencing_tower::Drain::new(std::time::Duration::ZERO);
    /// let stop_accepting = tokio::spawn(drain.draining());
    /// drain.shutdown().await;
    /// stop_accepting.await.unwrap();
    /// # }
    /// ```
    pub fn draining(&self) -> Draining {
        Draining {
            wait: self.inner.token.clone().cancelled_owned(),
        }
    }

    /// Begins the drain: fires [`codes::SHUTDOWN`] in every live request,
    /// answers new requests `503`, and waits until every tracked request
    /// has ended, finished or dropped at the end of the grace period.
    /// Calling it again waits again and reports the same totals.
    ///
    /// Equivalent to:
    ///
    /// ```ignore
    /// async fn shutdown(&self) -> DrainReport;
    /// ```
    ///
    /// # Examples
    ///
    /// See [`Drain`].
    ///
    /// # Cancel safety
    ///
    /// The drain has begun as soon as this is called; dropping the future
    /// only stops waiting.
    pub fn shutdown(&self) -> DrainFuture<'_> {
        self.inner.began.get_or_init(Instant::now);
        self.inner.token.cancel_with("server shutting down");
        self.inner.tracker.close();
        DrainFuture {
            wait: self.inner.tracker.wait(),
            drain: self,
        }
    }

    /// Tracks `future` as work the drain waits for, within its grace
    /// period: for work that must outlive the request it comes from, such as
    /// an audit write a handler [shields](fencing::shield), and that a
    /// process's exit would otherwise drop wherever it is.
    ///
    /// [`shutdown`](Self::shutdown) waits for the tracked future, as for a
    /// live request, and counts it in its [`DrainReport`] if it was still
    /// running when the drain began, or began meanwhile: `finished` if it
    /// resolves to `Ok` with the future's output, `dropped` if it was still
    /// pending at the end of the grace period (it is then dropped, and
    /// resolves to a [`Cancelled`] with the code [`codes::SHUTDOWN`]), or if
    /// it panicked or was dropped by someone else. Before the drain begins
    /// it is not bounded, and not counted. Tracked once the grace period is
    /// over, it never starts, and counts as dropped.
    ///
    /// The future runs with the context of the caller of `track_future`, as
    /// a shielded one does, and is not cancelled by it: only the end of the
    /// drain's grace period stops it, and a [`protect`](fencing::protect)
    /// section in it defers even that. Shield it (`shield(drain.track_future(work))`)
    /// or spawn it with [`fencing::spawn`]: awaited in the handler itself, it
    /// would be dropped with the handler.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::shield;
    /// use fencing_tower::Drain;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let drain = Drain::new(Duration::from_secs(5));
    /// // In a handler: written even if its client hangs up and the server
    /// // shuts down at once, as long as it takes less than the grace period.
    /// let audit = shield(drain.track_future(async {
    ///     tokio::time::sleep(Duration::from_secs(1)).await;
    ///     "audited"
    /// }));
    ///
    /// let report = drain.shutdown().await;
    /// assert_eq!((report.finished(), report.dropped()), (1, 0));
    /// assert_eq!(audit.await.unwrap(), "audited");
    ///
    /// // Tracked once the grace period is over, work never starts, and is
    /// // counted as dropped.
    /// tokio::time::sleep(Duration::from_secs(5)).await;
    /// let late = shield(drain.track_future(async { "never" }));
    /// assert!(late.await.unwrap_err().cancelled_by("shutdown"));
    /// assert_eq!(drain.shutdown().await.dropped(), 1);
    /// # }
    /// ```
    pub fn track_future<F>(&self, future: F) -> TrackedFuture<F>
    where
        F: Future,
    {
        let drain = self.clone();
        let bound = Fencing::new()
            .future_with(grace_over(drain), "server shut down: grace period over")
            .code(codes::SHUTDOWN);
        TrackedFuture {
            // The fence binds its own `Fencing` to its body; the future
            // inside is bound again, to the caller's context.
            fenced: bound.run(current().bind(future)),
            count: Some(Count {
                drain: self.clone(),
                settled: false,
                _tracked: self.track(),
            }),
        }
    }

    /// The end of the grace period, once the drain began (`None` before, or
    /// if the grace period overflows the clock).
    pub(crate) fn grace_end(&self) -> Option<Instant> {
        self.inner.began.get()?.checked_add(self.inner.grace)
    }

    /// The triggers every request gets from the drain.
    pub(crate) fn declare(&self, fencing: Fencing) -> Fencing {
        fencing
            .token(&self.inner.token)
            .code(codes::SHUTDOWN)
            .grace_for(codes::SHUTDOWN, self.inner.grace)
    }

    pub(crate) fn track(&self) -> TaskTrackerToken {
        self.inner.tracker.token()
    }

    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.inner.tracker
    }

    /// Counts a request that was live when the drain began and has ended:
    /// `dropped` if it was stopped before its end.
    pub(crate) fn ended(&self, dropped: bool) {
        let counter = if dropped {
            &self.inner.dropped
        } else {
            &self.inner.finished
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self) -> DrainReport {
        DrainReport {
            finished: self.inner.finished.load(Ordering::Relaxed),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("grace", &self.inner.grace)
            .field("draining", &self.is_draining())
            .field("live", &self.inner.tracker.len())
            .finish()
    }
}

/// What a [`Drain`] did: how many requests that were live when it began
/// finished on their own, and how many it dropped; work given to
/// [`Drain::track_future`] counts the same way, as one more piece of work
/// the drain waited for.
///
/// A request finished if its handler ran to its end (whatever it
/// returned); it was dropped if it was stopped before its end: by the end
/// of the grace period, or by another trigger meanwhile (its budget, a
/// client that went away), or by a panic.
/// Requests refused because they arrived after the drain began are in
/// neither count.
///
/// # Examples
///
/// See [`Drain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainReport {
    finished: usize,
    dropped: usize,
}

impl DrainReport {
    /// Requests whose handler ran to its end during the drain.
    ///
    /// # Examples
    ///
    /// See [`Drain`].
    #[must_use]
    pub fn finished(&self) -> usize {
        self.finished
    }

    /// Requests whose handler was stopped before its end during the drain.
    ///
    /// # Examples
    ///
    /// See [`Drain`].
    #[must_use]
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

pin_project! {
    /// The future of [`Drain::shutdown`]: resolves to the [`DrainReport`]
    /// once every tracked request has ended.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct DrainFuture<'a> {
        #[pin]
        wait: TaskTrackerWaitFuture<'a>,
        drain: &'a Drain,
    }
}

impl Future for DrainFuture<'_> {
    type Output = DrainReport;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DrainReport> {
        let this = self.project();
        ready!(this.wait.poll(cx));
        Poll::Ready(this.drain.report())
    }
}

impl fmt::Debug for DrainFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainFuture")
            .field("drain", self.drain)
            .finish_non_exhaustive()
    }
}

/// Resolves at the end of the drain's grace period; never, if the grace
/// period overflows the clock.
async fn grace_over(drain: Drain) {
    drain.draining().await;
    match drain.grace_end() {
        // fencing's own deadline, which is safe however far away it is.
        Some(end) => drop(Fencing::new().deadline(end).cancelled().await),
        None => std::future::pending().await,
    }
}

/// Counts tracked work in the drain under way when it ends, and holds its
/// place in the drain's tracker until then. Dropped unsettled (the work
/// panicked, or was dropped before its end), it counts the work as dropped.
struct Count {
    drain: Drain,
    settled: bool,
    // Dropped after the count, so the drain's wait ends with it counted.
    _tracked: TaskTrackerToken,
}

impl Count {
    fn settle(mut self, dropped: bool) {
        self.settled = true;
        if self.drain.is_draining() {
            self.drain.ended(dropped);
        }
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        if !self.settled && self.drain.is_draining() {
            self.drain.ended(true);
        }
    }
}

impl fmt::Debug for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Count").finish_non_exhaustive()
    }
}

pin_project! {
    /// The future of [`Drain::track_future`]: resolves to the tracked
    /// future's output, or to the [`Cancelled`] of the drain's grace period
    /// ending first.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct TrackedFuture<F> {
        #[pin]
        fenced: Fenced<BoundFuture<F>>,
        count: Option<Count>,
    }
}

pin_project! {
    /// The future of [`Drain::draining`]: resolves when the drain begins.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Draining {
        #[pin]
        wait: WaitForCancellationFutureOwned,
    }
}

impl Future for Draining {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().wait.poll(cx).map(drop)
    }
}

impl<F: Future> Future for TrackedFuture<F> {
    type Output = Result<F::Output, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.fenced.poll(cx));
        if let Some(count) = this.count.take() {
            count.settle(output.is_err());
        }
        Poll::Ready(output)
    }
}

impl<F> fmt::Debug for TrackedFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedFuture")
            .field("done", &self.count.is_none())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Draining {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Draining").finish_non_exhaustive()
    }
}
