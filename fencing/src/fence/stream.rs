//! [`FencedStream`]: a stream run inside a fence.

use super::engine::Engine;
use crate::declaration::Fencing;
use crate::error::Cancelled;
use crate::reason::{Code, Reason};
use futures_core::Stream;
use pin_project_lite::pin_project;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// A stream running inside a fence. Created by [`Fencing::stream`].
    ///
    /// Items flow until a trigger fires; then the inner stream is dropped
    /// and this one ends. Afterwards [`delivered`](Self::delivered) tells
    /// how many items got through and [`reasons`](Self::reasons) why it
    /// stopped (hother's `stream()` with partial results). The rules are
    /// those of [`Fenced`](crate::Fenced), item by item: a stream whose
    /// trigger fired before its first poll is never polled; an item that is
    /// ready is delivered even if a trigger fired in the same poll; before
    /// each later item the triggers are checked, and the deadline against
    /// tokio's clock, so a stream that is always ready stops on time too.
    /// The inner stream's polls run with the `Fencing` as their context.
    ///
    /// [Protection guards](crate::protect) and grace periods
    /// ([`Fencing::grace`], [`Fencing::grace_for`]) hold for streams as for
    /// fences: while a guard taken in the stream's polls is alive, the
    /// stream is not dropped (items keep flowing, and it is dropped at the
    /// first poll after the guard goes); during a grace period the stream
    /// sees `current().is_cancelled()` and may end by itself, and it is
    /// dropped at the first poll after the grace period ends.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use std::pin::pin;
    /// use std::time::Duration;
    /// # use futures_core::Stream;
    /// # use std::task::{Context, Poll};
    /// # struct Ticks(tokio::time::Interval, u32);
    /// # impl Stream for Ticks {
    /// #     type Item = u32;
    /// #     fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
    /// #         self.0.poll_tick(cx).map(|_| { self.1 += 1; Some(self.1) })
    /// #     }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // One item a second, for ever; a budget of 3.5 s.
    /// # let ticks = Ticks(tokio::time::interval(Duration::from_secs(1)), 0);
    /// let mut items = pin!(Fencing::new()
    ///     .timeout(Duration::from_millis(3_500))
    ///     .code("budget")
    ///     .stream(ticks));
    ///
    /// let mut got = Vec::new();
    /// while let Some(item) = std::future::poll_fn(|cx| items.as_mut().poll_next(cx)).await {
    ///     got.push(item);
    /// }
    /// assert_eq!(got, [1, 2, 3, 4]); // at 0 s, 1 s, 2 s and 3 s
    /// assert_eq!(items.delivered(), 4);
    /// assert!(items.cancelled().unwrap().cancelled_by("budget"));
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
    #[must_use = "streams do nothing unless polled"]
    pub struct FencedStream<S> {
        // Dropped first, as a fence's body.
        #[pin]
        stream: Inner<S>,
        #[pin]
        engine: Engine,
        delivered: usize,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<S> {
        Live { #[pin] stream: S },
        Gone,
    }
}

impl<S: Stream> FencedStream<S> {
    pub(crate) fn new(fencing: Fencing, stream: S) -> Self {
        Self {
            stream: Inner::Live { stream },
            engine: Engine::new(fencing),
            delivered: 0,
        }
    }
}

impl<S> FencedStream<S> {
    /// The inner stream, unless the fence dropped it.
    ///
    /// # Examples
    ///
    /// ```
    /// # struct Empty;
    /// # impl futures_core::Stream for Empty {
    /// #     type Item = ();
    /// #     fn poll_next(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<()>> {
    /// #         std::task::Poll::Ready(None)
    /// #     }
    /// # }
    /// let items = fencing::Fencing::new().stream(Empty);
    /// assert!(items.get_ref().is_some());
    /// ```
    #[must_use]
    pub fn get_ref(&self) -> Option<&S> {
        match &self.stream {
            Inner::Live { stream } => Some(stream),
            Inner::Gone => None,
        }
    }

    /// How many items the stream has delivered.
    ///
    /// # Examples
    ///
    /// See the [type's example](FencedStream).
    #[must_use]
    pub fn delivered(&self) -> usize {
        self.delivered
    }

    /// Returns `true` if a trigger fired (whether or not it stopped the
    /// stream).
    ///
    /// # Examples
    ///
    /// See the [type's example](FencedStream).
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.engine.is_cancelled()
    }

    /// Returns `true` if a trigger stopped the stream before its end.
    ///
    /// # Examples
    ///
    /// See the [type's example](FencedStream).
    #[must_use]
    pub fn is_interrupted(&self) -> bool {
        self.engine.is_interrupted()
    }

    /// Every reason that has fired, in firing order.
    ///
    /// # Examples
    ///
    /// See the [type's example](FencedStream).
    #[must_use]
    pub fn reasons(&self) -> Vec<Reason> {
        self.engine.reasons()
    }

    /// Returns `true` if a trigger declared with `code` has fired.
    ///
    /// # Examples
    ///
    /// See the [type's example](FencedStream).
    #[must_use]
    pub fn cancelled_by(&self, code: impl Into<Code>) -> bool {
        self.engine.cancelled_by(&code.into())
    }

    /// The reasons the `Fencing`'s policy declined, in firing order, as
    /// [`Fenced::declined`](crate::Fenced::declined).
    ///
    /// # Examples
    ///
    /// See [`Fencing::policy`](crate::Fencing::policy).
    #[must_use]
    pub fn declined(&self) -> &[Reason] {
        self.engine.declined()
    }

    /// Returns `true` if the policy declined a reason with `code`.
    ///
    /// # Examples
    ///
    /// See [`Fencing::policy`](crate::Fencing::policy).
    #[must_use]
    pub fn declined_by(&self, code: impl Into<Code>) -> bool {
        self.engine.declined_by(&code.into())
    }

    /// How many times user code the fence ran failed to answer and the
    /// fence went on without the answer, as
    /// [`Fenced::faults`](crate::Fenced::faults).
    ///
    /// # Examples
    ///
    /// See [`Fenced::faults`](crate::Fenced::faults).
    #[must_use]
    pub fn faults(&self) -> usize {
        self.engine.faults()
    }

    /// The cancellation that stopped the stream, if a trigger did.
    ///
    /// # Examples
    ///
    /// See the [type's example](FencedStream).
    #[must_use]
    pub fn cancelled(&self) -> Option<Cancelled> {
        self.is_interrupted()
            .then(|| Cancelled::new(self.engine.recorded().to_vec()))
    }
}

impl<S: Stream> Stream for FencedStream<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        let mut engine = this.engine.as_mut();
        if engine.is_done() {
            return Poll::Ready(None);
        }
        let started = engine.is_running();
        if engine.as_mut().start() || (started && engine.as_mut().between_items(cx)) {
            this.stream.set(Inner::Gone);
            engine.interrupt();
            return Poll::Ready(None);
        }
        let InnerProj::Live { stream } = this.stream.as_mut().project() else {
            unreachable!("a fenced stream whose inner stream is gone is done");
        };
        match engine.as_mut().enter(|| stream.poll_next(cx)) {
            Poll::Ready(Some(item)) => {
                *this.delivered += 1;
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                engine.complete();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if engine.as_mut().poll_pending(cx) {
                    this.stream.set(Inner::Gone);
                    engine.interrupt();
                    return Poll::Ready(None);
                }
                Poll::Pending
            }
        }
    }
}

impl<S> fmt::Debug for FencedStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FencedStream")
            .field("engine", &self.engine)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}
