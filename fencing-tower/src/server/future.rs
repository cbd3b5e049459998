//! The futures of [`Fence`](super::Fence).

use super::body::ResponseBody;
use super::{answer, Shared};
use fencing::{Cancelled, Fenced, Fencing};
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio_util::task::task_tracker::TaskTrackerToken;

pin_project! {
    /// The response future of [`Fence`](super::Fence): the handler inside
    /// the request's fence, or the answer to a request refused on arrival.
    ///
    /// Resolves to the handler's response, with its body wrapped in a
    /// [`ResponseBody`]; to an empty response whose status follows the
    /// [status table](crate::status) if a trigger stopped the handler; or
    /// to the inner service's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::server::{future::ResponseFuture, Fence};
    /// use tower::{service_fn, Service};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let mut service = Fence::new(service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
    /// }));
    /// let future: ResponseFuture<_> = service.call(http::Request::new(String::new()));
    /// assert_eq!(future.await.unwrap().status(), 200);
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Polling panics if it is polled after it completed; if the handler
    /// panicked (the panic passes through); and, as a [`Fenced`] does, if the request has a deadline,
    /// the handler is pending, and no tokio runtime with the time driver is
    /// running.
    ///
    /// # Cancel safety
    ///
    /// Dropping it before it completes is the client going away: it fires
    /// `client_disconnected` in the request's context and, with
    /// [`Disposition::CancelOnDisconnect`](super::Disposition), drops the
    /// handler; with `Detach`, the handler moves to a task of its own and
    /// goes on, told, for its grace period.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        kind: Kind<F>,
        watch: Option<Watch>,
    }

    impl<F> PinnedDrop for ResponseFuture<F>
    where
        F: Future,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Dropped while a detachable handler runs: its client went away,
            // and the handler moves to a task of its own.
            if let KindProj::Attached { fenced, detach } = this.kind.project() {
                if let (Some(fenced), Some(watch)) = (fenced.take(), this.watch.as_mut()) {
                    if watch.armed && !std::thread::panicking() {
                        // The task reports and counts it from here.
                        watch.armed = false;
                        detach(fenced, watch.shared.clone());
                    }
                }
            }
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F>
    where
        F: Future,
    {
        Inline { #[pin] fenced: Fenced<F> },
        // With `Disposition::Detach`: boxed, so that it can move to a task
        // of its own when the client goes away.
        Attached { fenced: Option<Pin<Box<Fenced<F>>>>, detach: Detach<F> },
        // Answered without calling the inner service.
        Answered { head: Option<Response<()>>, cancelled: Option<Cancelled> },
    }
}

/// Moves a handler whose client went away to a task of its own (see
/// [`detach`]); a function pointer, so that the future's type needs no
/// `Send` bound of its own.
pub(crate) type Detach<F> = fn(Pin<Box<Fenced<F>>>, Arc<Shared>);

/// Watches one request while its future is alive: dropped before the
/// future completes, the client went away.
struct Watch {
    shared: Arc<Shared>,
    /// Tracked by the drain while the handler runs here.
    _tracked: Option<TaskTrackerToken>,
    armed: bool,
}

impl Watch {
    /// The future completed with a response: its body watches from here.
    fn into_body<B: Body>(mut self, body: B) -> ResponseBody<B> {
        self.armed = false;
        ResponseBody::new(body, self.shared.clone())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if std::thread::panicking() {
            // A panicking handler unwinds through here: that is no
            // disconnect.
            self.shared.panicked();
        } else {
            self.shared.dropped_with_request();
        }
    }
}

impl<F> ResponseFuture<F>
where
    F: Future,
{
    fn watch(shared: Arc<Shared>, tracked: Option<TaskTrackerToken>) -> Option<Watch> {
        Some(Watch {
            shared,
            _tracked: tracked,
            armed: true,
        })
    }

    // Both make the fence where it is stored: it is large (the handler's
    // future and the fence's state), and each move is a copy; for
    // `attached`, one into the box rather than two.
    pub(crate) fn inline(
        fencing: Fencing,
        future: F,
        shared: Arc<Shared>,
        tracked: Option<TaskTrackerToken>,
    ) -> Self {
        Self {
            kind: Kind::Inline {
                fenced: fencing.run(future),
            },
            watch: Self::watch(shared, tracked),
        }
    }

    #[inline]
    pub(crate) fn attached(
        fencing: Fencing,
        future: F,
        detach: Detach<F>,
        shared: Arc<Shared>,
        tracked: Option<TaskTrackerToken>,
    ) -> Self {
        Self {
            kind: Kind::Attached {
                fenced: Some(Box::pin(fencing.run(future))),
                detach,
            },
            watch: Self::watch(shared, tracked),
        }
    }

    /// Answered at once with `head`, holding `cancelled` if a trigger had
    /// fired on arrival.
    pub(crate) fn answered(head: Response<()>, cancelled: Option<Cancelled>) -> Self {
        Self {
            kind: Kind::Answered {
                head: Some(head),
                cancelled,
            },
            watch: None,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = match this.kind.project() {
            KindProj::Inline { fenced } => ready!(fenced.poll(cx)),
            KindProj::Attached { fenced, .. } => {
                let running = fenced
                    .as_mut()
                    .expect("`ResponseFuture` polled after completion");
                let outcome = ready!(running.as_mut().poll(cx));
                *fenced = None;
                outcome
            }
            KindProj::Answered { head, cancelled } => {
                let head = head
                    .take()
                    .expect("`ResponseFuture` polled after completion");
                return Poll::Ready(Ok(answer(head, cancelled.take())));
            }
        };
        let watch = this
            .watch
            .take()
            .expect("`ResponseFuture` polled after completion");
        Poll::Ready(match outcome {
            Ok(Ok(response)) => {
                watch.shared.finished();
                Ok(response.map(|body| watch.into_body(body)))
            }
            Ok(Err(err)) => {
                watch.shared.finished();
                disarm(&mut Some(watch));
                Err(err)
            }
            Err(cancelled) => {
                let head = watch.shared.stopped_here(&cancelled);
                disarm(&mut Some(watch));
                Ok(answer(head, Some(cancelled)))
            }
        })
    }
}

fn disarm(watch: &mut Option<Watch>) {
    if let Some(mut watch) = watch.take() {
        watch.armed = false;
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inline { .. } => "inline",
            Kind::Attached { .. } => "detachable",
            Kind::Answered { .. } => "answered",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .field("done", &self.watch.is_none())
            .finish_non_exhaustive()
    }
}

/// Moves a handler whose client went away to a task of its own, on the
/// drain's tracker if there is one, where it goes on, told, for its grace
/// period. Without a runtime to spawn on (it is shutting down), the handler
/// is dropped, as with `CancelOnDisconnect`.
pub(crate) fn detach<F>(fenced: Pin<Box<Fenced<F>>>, shared: Arc<Shared>)
where
    F: Future + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        drop(fenced);
        shared.dropped_with_request();
        return;
    };
    shared.disconnect();
    let task = Detached { fenced, shared };
    match task.shared.drain() {
        Some(drain) => drop(drain.tracker().clone().spawn_on(task, &runtime)),
        None => drop(runtime.spawn(task)),
    }
}

/// A detached handler's task: it reports and counts the outcome itself,
/// and logs a panic, since nobody awaits it.
struct Detached<F> {
    fenced: Pin<Box<Fenced<F>>>,
    shared: Arc<Shared>,
}

impl<F: Future> Future for Detached<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        // Unwind safe: after a panic the fence is never polled again.
        match catch_unwind(AssertUnwindSafe(|| this.fenced.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(_))) => {
                this.shared.finished();
                Poll::Ready(())
            }
            Ok(Poll::Ready(Err(cancelled))) => {
                this.shared.stopped_here(&cancelled);
                Poll::Ready(())
            }
            Err(panic) => {
                this.shared.panicked();
                tracing::error!(
                    target: "fencing_tower::server",
                    panic = panic_message(&*panic),
                    "detached handler panicked after its client went away"
                );
                Poll::Ready(())
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>")
}
