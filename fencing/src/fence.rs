//! The fence: one armed use of a [`Fencing`] around one future, as thin
//! handles over the fence engine (`fence/engine.rs`): [`Fenced`] for a
//! future, `FencedStream` for a stream, [`WaitForFencingFuture`] for no body.

use crate::declaration::Fencing;
use crate::error::Cancelled;
use crate::reason::{Code, Reason};
use engine::Engine;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

mod engine;
#[cfg(feature = "stream")]
mod stream;
#[cfg(feature = "stream")]
pub use stream::FencedStream;

pin_project! {
    /// A future running a body inside a fence. Created by
    /// [`Fencing::run`].
    ///
    /// Resolves to `Ok(output)` if the body completes, or to
    /// `Err(`[`Cancelled`]`)` with every reason that fired if a trigger
    /// fires first. The fence follows these rules:
    ///
    /// - **Inspect before await.** An unpolled fence already answers
    ///   [`is_cancelled`](Self::is_cancelled): `true` if a token is
    ///   cancelled or the deadline has passed.
    /// - **Pre-fired bodies never start.** If a trigger has fired before the
    ///   first poll, the body is dropped without being polled.
    /// - **Completion wins ties.** On every later poll the body is polled
    ///   first; a body that is ready returns its value even if a trigger
    ///   fired, and the fence still records that trigger (see
    ///   [`reasons`](Self::reasons)).
    /// - **Hard cancel is drop.** When a trigger has fired and the body is
    ///   pending, the body is dropped within that poll (its destructors run
    ///   before `poll` returns) and every reason that fired is returned.
    /// - **Nothing leaks.** Whether the fence completes, cancels, or is
    ///   dropped, every timer and waiter registration is released. At most one
    ///   timer is registered, and only once the body has returned pending.
    /// - **Panics pass through.** A panicking body propagates its panic
    ///   unchanged; nothing stays registered and nothing is poisoned. (A
    ///   panicking [policy](Fencing::policy) or condition check is caught
    ///   instead: see [`faults`](Self::faults).)
    ///
    /// # Examples
    ///
    /// Reading the outcome: `.await` consumes the fence. To read what fired after a body
    /// completed anyway, pin the fence and await it by reference:
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let token = Token::new();
    /// let fenced = Fencing::new().token(&token).code("stop").run(async {
    ///     tokio::task::yield_now().await;
    ///     token.cancel(); // fires while the body is running...
    ///     "finished"      // ...but the body is ready first
    /// });
    /// let mut fenced = std::pin::pin!(fenced);
    ///
    /// assert_eq!((&mut fenced).await.unwrap(), "finished");
    /// assert!(fenced.is_cancelled(), "a trigger fired");
    /// assert!(!fenced.is_interrupted(), "but the body was not dropped");
    /// assert!(fenced.cancelled_by("stop"));
    /// # }
    /// ```
    ///
    /// # Fairness
    ///
    /// The body is polled before the triggers, as in
    /// [`tokio::time::timeout`]. Time is read from tokio's clock once, when
    /// the fence is first polled; after that the deadline is seen through
    /// the timer registered for it, so a body that completes within its first
    /// poll is never reported late. Triggers that are found fired in the
    /// same poll are recorded in a fixed order: the deadline first, then the
    /// other triggers in the order they were declared.
    ///
    /// # Cancel safety
    ///
    /// Dropping a `Fenced` drops its body and releases every registration;
    /// it is exactly as cancel safe as the body.
    ///
    /// # Panics
    ///
    /// Polling panics if the fence has a deadline, the body returns pending,
    /// and no tokio runtime with the time driver is running (as
    /// [`tokio::time::sleep`] does); and if polled again after it completed.
    /// The timer is set on the runtime of the poll that first needs it: a
    /// fence polled on another runtime after that one was shut down panics
    /// too (tokio: "… it is being shutdown"), as a moved `Sleep` would.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Fenced<F> {
        // Dropped first: the body's destructors run before any registration
        // is released.
        #[pin]
        body: Body<F>,
        #[pin]
        engine: Engine,
    }
}

pin_project! {
    #[project = BodyProj]
    enum Body<F> {
        Live { #[pin] future: F },
        Gone,
    }
}

impl<F: Future> Fenced<F> {
    pub(crate) fn new(fencing: Fencing, body: F) -> Self {
        Self {
            body: Body::Live { future: body },
            engine: Engine::new(fencing),
        }
    }
}

impl<F> Fenced<F> {
    /// Returns `true` if a trigger has fired: before the fence is polled,
    /// whether one has fired already (the body would not start); after it
    /// finished, whether one fired before it did, even if the body completed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let token = Token::new();
    /// token.cancel();
    /// let fenced = Fencing::new().token(&token).run(async { 1 });
    /// assert!(fenced.is_cancelled(), "known before the first poll");
    /// assert!(fenced.await.is_err(), "and the body never starts");
    /// # }
    /// ```
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.engine.is_cancelled()
    }

    /// Returns `true` if the fence dropped its body because a trigger fired,
    /// that is, if it resolved to `Err`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let mut fenced = std::pin::pin!(Fencing::new()
    ///     .timeout(Duration::from_secs(1))
    ///     .run(tokio::time::sleep(Duration::from_secs(2))));
    /// assert!(!fenced.is_interrupted());
    /// assert!((&mut fenced).await.is_err());
    /// assert!(fenced.is_interrupted());
    /// # }
    /// ```
    #[must_use]
    pub fn is_interrupted(&self) -> bool {
        self.engine.is_interrupted()
    }

    /// Every reason that has fired, in firing order: those the fence has
    /// recorded, then any that fired since it last looked.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    ///
    /// let token = Token::new();
    /// let fenced = Fencing::new().token(&token).code("shutdown").run(async {});
    /// assert!(fenced.reasons().is_empty());
    /// token.cancel_with("SIGTERM");
    /// assert_eq!(fenced.reasons()[0].message(), "SIGTERM");
    /// ```
    #[must_use]
    pub fn reasons(&self) -> Vec<Reason> {
        self.engine.reasons()
    }

    /// Returns `true` if a trigger declared with `code` has fired.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    ///
    /// let token = Token::new();
    /// let fenced = Fencing::new().token(&token).code("shutdown").run(async {});
    /// token.cancel();
    /// assert!(fenced.cancelled_by("shutdown"));
    /// ```
    #[must_use]
    pub fn cancelled_by(&self, code: impl Into<Code>) -> bool {
        self.engine.cancelled_by(&code.into())
    }

    /// The reasons the `Fencing`'s [policy](Fencing::policy) declined, in
    /// firing order: they fired, but did not cancel.
    ///
    /// # Examples
    ///
    /// See [`Fencing::policy`].
    #[must_use]
    pub fn declined(&self) -> &[Reason] {
        self.engine.declined()
    }

    /// Returns `true` if the policy declined a reason with `code`.
    ///
    /// # Examples
    ///
    /// See [`Fencing::policy`].
    #[must_use]
    pub fn declined_by(&self, code: impl Into<Code>) -> bool {
        self.engine.declined_by(&code.into())
    }

    /// How many times user code this fence ran failed to answer, and the
    /// fence went on without the answer: a [policy](Fencing::policy) that
    /// panicked (the reason counted as accepted), a
    /// [condition](Fencing::condition) check that returned `Err` or
    /// panicked (the condition kept polling). Each is also a `WARN` event
    /// with the feature `tracing`.
    ///
    /// A condition is shared by every fence run from its `Fencing` and its
    /// clones, and checked by one of them at a time: a failed check counts
    /// in the fence whose poll ran it, and in every fence whose body that
    /// poll was part of. So a check run while the body waits on the context
    /// (`current().cancelled()`, in a grace period) or in a fence inside the
    /// body counts here too, as does a condition inside
    /// [`all_of`](Fencing::all_of).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    /// use std::pin::pin;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # std::panic::set_hook(Box::new(|_| {}));
    /// let shutdown = Token::new();
    /// shutdown.cancel();
    /// let fencing = Fencing::new()
    ///     .token(&shutdown)
    ///     .code("shutdown")
    ///     .policy(|_| panic!("a bug in the policy"));
    ///
    /// let mut fenced = pin!(fencing.run(std::future::pending::<()>()));
    /// let err = (&mut fenced).await.unwrap_err();
    /// assert!(err.cancelled_by("shutdown"), "the reason was accepted");
    /// assert_eq!(fenced.faults(), 1);
    /// # }
    /// ```
    #[must_use]
    pub fn faults(&self) -> usize {
        self.engine.faults()
    }

    /// The `Fencing` this fence armed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    ///
    /// let fenced = Fencing::new().run(async {});
    /// assert_eq!(fenced.fencing().effective_deadline(), None);
    /// ```
    #[must_use]
    pub fn fencing(&self) -> &Fencing {
        self.engine.fencing()
    }

    /// The body, unless the fence dropped it.
    ///
    /// # Examples
    ///
    /// ```
    /// let fenced = fencing::Fencing::new().run(std::future::ready(7));
    /// assert!(fenced.get_ref().is_some());
    /// ```
    #[must_use]
    pub fn get_ref(&self) -> Option<&F> {
        match &self.body {
            Body::Live { future } => Some(future),
            Body::Gone => None,
        }
    }

    /// The body, mutably, unless the fence dropped it.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut fenced = fencing::Fencing::new().run(std::future::ready(7));
    /// assert!(fenced.get_mut().is_some());
    /// ```
    pub fn get_mut(&mut self) -> Option<&mut F> {
        match &mut self.body {
            Body::Live { future } => Some(future),
            Body::Gone => None,
        }
    }

    /// Disarms the fence and returns the body, unless the fence dropped it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let fenced = fencing::Fencing::new().run(async { 7 });
    /// let body = fenced.into_inner().unwrap();
    /// assert_eq!(body.await, 7);
    /// # }
    /// ```
    pub fn into_inner(self) -> Option<F> {
        match self.body {
            Body::Live { future } => Some(future),
            Body::Gone => None,
        }
    }
}

impl<F: Future> Future for Fenced<F> {
    type Output = Result<F::Output, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut engine = this.engine.as_mut();
        if engine.as_mut().start() {
            this.body.set(Body::Gone);
            return Poll::Ready(Err(engine.interrupt()));
        }
        let BodyProj::Live { future } = this.body.as_mut().project() else {
            unreachable!("a fence whose body is gone is done");
        };
        // The body runs with the fence's `Fencing` as its context.
        if let Poll::Ready(output) = engine.as_mut().enter(|| future.poll(cx)) {
            engine.complete();
            return Poll::Ready(Ok(output));
        }
        if engine.as_mut().poll_pending(cx) {
            // Dropped here, inside this poll, before any reason is returned.
            this.body.set(Body::Gone);
            return Poll::Ready(Err(engine.interrupt()));
        }
        Poll::Pending
    }
}

impl<F> fmt::Debug for Fenced<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fenced")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The future returned by [`Fencing::cancelled`]: resolves with what
    /// fired once any trigger of the `Fencing` fires.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token, WaitForFencingFuture};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Token::new();
    /// let stopped: WaitForFencingFuture = Fencing::new()
    ///     .token(&shutdown)
    ///     .code("shutdown")
    ///     .cancelled();
    /// shutdown.cancel_with("SIGTERM");
    /// assert!(stopped.await.cancelled_by("shutdown"));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping it releases every registration and loses nothing.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct WaitForFencingFuture {
        #[pin]
        fence: Fenced<std::future::Pending<std::convert::Infallible>>,
    }
}

impl WaitForFencingFuture {
    pub(crate) fn new(fencing: Fencing) -> Self {
        Self {
            fence: Fenced::new(fencing, std::future::pending()),
        }
    }
}

impl Future for WaitForFencingFuture {
    type Output = Cancelled;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Cancelled> {
        match self.project().fence.poll(cx) {
            Poll::Ready(Err(cancelled)) => Poll::Ready(cancelled),
            Poll::Ready(Ok(never)) => match never {},
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for WaitForFencingFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForFencingFuture")
            .field("fencing", self.fence.fencing())
            .finish()
    }
}
