//! The futures of [`Fence`](super::Fence).

use super::body::ResponseBody;
use super::{answer, Shared};
use crate::status::CLIENT_CLOSED_REQUEST;
use fencing::{Cancelled, Fenced};
use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::task::JoinHandle;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// What a detached handler's task hands back: `None` if its request's
/// future was gone (the task then reported and counted the outcome itself).
type TaskOutput<T> = Option<Result<T, Cancelled>>;

pin_project! {
    /// The response future of [`Fence`](super::Fence): the handler inside
    /// the request's fence (or its detached task), or the answer to a
    /// request refused on arrival.
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
    /// panicked (the panic is raised again here, detached handlers
    /// included); and, as a [`Fenced`] does, if the request has a deadline,
    /// the handler is pending, and no tokio runtime with the time driver is
    /// running.
    ///
    /// # Cancel safety
    ///
    /// Dropping it before it completes is the client going away: it fires
    /// `client_disconnected` in the request's context and, with
    /// [`Disposition::CancelOnDisconnect`](super::Disposition), drops the
    /// handler; a detached handler goes on, for its grace period.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        kind: Kind<F>,
        watch: Option<Watch>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F>
    where
        F: Future,
    {
        Inline { #[pin] fenced: Fenced<F> },
        Detached { join: JoinHandle<TaskOutput<F::Output>> },
        // Answered without calling the inner service.
        Answered { head: Option<Response<()>>, cancelled: Option<Cancelled> },
    }
}

/// Watches one request while its future is alive: dropped before the
/// future completes, the client went away.
struct Watch {
    shared: Arc<Shared>,
    /// Tracked by the drain while the handler runs.
    _tracked: Option<TaskTrackerToken>,
    /// The handler's own task reports and counts its outcome.
    detached: bool,
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
            // disconnect. A detached task counts its own panic.
            if !self.detached {
                self.shared.panicked();
            }
        } else if self.detached {
            // The handler goes on, told; its task reports how it ends.
            self.shared.disconnect();
        } else {
            self.shared.dropped_with_request();
        }
    }
}

impl<F> ResponseFuture<F>
where
    F: Future,
{
    fn new(kind: Kind<F>, shared: Option<Arc<Shared>>, tracked: Option<TaskTrackerToken>) -> Self {
        let detached = matches!(kind, Kind::Detached { .. });
        Self {
            kind,
            watch: shared.map(|shared| Watch {
                shared,
                _tracked: tracked,
                detached,
                armed: true,
            }),
        }
    }

    pub(crate) fn inline(
        fenced: Fenced<F>,
        shared: Arc<Shared>,
        tracked: Option<TaskTrackerToken>,
    ) -> Self {
        Self::new(Kind::Inline { fenced }, Some(shared), tracked)
    }

    pub(crate) fn detached(
        join: JoinHandle<TaskOutput<F::Output>>,
        shared: Arc<Shared>,
        tracked: Option<TaskTrackerToken>,
    ) -> Self {
        Self::new(Kind::Detached { join }, Some(shared), tracked)
    }

    /// Answered at once with `head`, holding `cancelled` if a trigger had
    /// fired on arrival.
    pub(crate) fn answered(head: Response<()>, cancelled: Option<Cancelled>) -> Self {
        let kind = Kind::Answered {
            head: Some(head),
            cancelled,
        };
        Self::new(kind, None, None)
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
            KindProj::Detached { join } => match ready!(Pin::new(join).poll(cx)) {
                Ok(Some(outcome)) => outcome,
                // The task saw the client go away as it finished, and
                // reported it: nothing is left to send.
                Ok(None) => {
                    disarm(this.watch);
                    return Poll::Ready(Ok(answer(plain(CLIENT_CLOSED_REQUEST), None)));
                }
                Err(err) => {
                    disarm(this.watch);
                    if err.is_panic() {
                        resume_unwind(err.into_panic());
                    }
                    // Only a runtime shutting down cancels the task.
                    return Poll::Ready(Ok(answer(plain(StatusCode::SERVICE_UNAVAILABLE), None)));
                }
            },
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
        let shared = watch.shared.clone();
        // A detached task settled the outcome already.
        let head = if watch.detached {
            outcome
                .as_ref()
                .err()
                .map(|c| shared.stopped(c, shared.stage()))
        } else {
            shared.settle(outcome.as_ref().err())
        };
        Poll::Ready(match outcome {
            Ok(Ok(response)) => Ok(response.map(|body| watch.into_body(body))),
            Ok(Err(err)) => {
                disarm(&mut Some(watch));
                Err(err)
            }
            Err(cancelled) => {
                disarm(&mut Some(watch));
                let head = head.unwrap_or_else(|| shared.stopped(&cancelled, shared.stage()));
                Ok(answer(head, Some(cancelled)))
            }
        })
    }
}

/// An empty response head with `status`, for the answers no protocol is
/// asked for (nothing can be sent, or the runtime is shutting down).
fn plain(status: StatusCode) -> Response<()> {
    let mut head = Response::new(());
    *head.status_mut() = status;
    head
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
            Kind::Detached { .. } => "detached",
            Kind::Answered { .. } => "answered",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .field("done", &self.watch.is_none())
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// A detached handler's task: the handler in the request's fence. It
    /// reports and counts the outcome itself, since the request's future
    /// may be gone when it ends.
    pub(crate) struct Detached<F> {
        #[pin]
        fenced: Fenced<F>,
        shared: Arc<Shared>,
    }
}

impl<F> Detached<F> {
    pub(crate) fn new(fenced: Fenced<F>, shared: Arc<Shared>) -> Self {
        Self { fenced, shared }
    }
}

impl<F: Future> Future for Detached<F> {
    type Output = TaskOutput<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let fenced = this.fenced;
        let shared = &**this.shared;
        // Unwind safe: after a panic the fence is never polled again.
        match catch_unwind(AssertUnwindSafe(|| fenced.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(outcome)) => {
                shared.settle(outcome.as_ref().err());
                Poll::Ready((!shared.is_disconnected()).then_some(outcome))
            }
            Err(panic) => {
                shared.panicked();
                if !shared.is_disconnected() {
                    // Raised again in the request's future, by the
                    // `JoinHandle`.
                    resume_unwind(panic);
                }
                tracing::error!(
                    target: "fencing_tower::server",
                    panic = panic_message(&*panic),
                    "detached handler panicked after its client went away"
                );
                Poll::Ready(None)
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
