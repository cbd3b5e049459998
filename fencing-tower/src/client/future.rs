//! The future of [`PropagateBudget`](super::PropagateBudget).

use crate::BoxError;
use fencing::{Cancelled, Fenced};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pin_project! {
    /// The response future of [`PropagateBudget`](super::PropagateBudget):
    /// the inner service's future inside a fence of the caller's context,
    /// or, when the budget was spent before the call, the cancellation
    /// itself.
    ///
    /// Resolves to the inner response, or to a [`BoxError`] holding either
    /// a [`Cancelled`] or the inner service's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use fencing_tower::client::{future::ResponseFuture, PropagateBudget};
    /// use http::Request;
    /// use std::time::Duration;
    /// use tower::{Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let slow = tower::service_fn(|_: Request<()>| async {
    ///     tokio::time::sleep(Duration::from_secs(60)).await;
    ///     Ok::<_, std::convert::Infallible>("late")
    /// });
    /// let mut client = PropagateBudget::new(slow);
    ///
    /// let context = Fencing::new().timeout(Duration::from_secs(2)).code("budget");
    /// let future: ResponseFuture<_> = context.bind(async {
    ///     client.ready().await.unwrap().call(Request::new(()))
    /// }).await;
    /// let err = future.await.unwrap_err();
    /// assert!(err.downcast_ref::<fencing::Cancelled>().unwrap().cancelled_by("budget"));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Polling panics if it is polled again after it completed; and, as a
    /// [`Fenced`] does, if the context has a deadline, the inner future is
    /// pending, and no tokio runtime with the time driver is running.
    ///
    /// # Errors
    ///
    /// A boxed [`Cancelled`] with every reason that fired, in firing order,
    /// if the call was refused or interrupted; else the inner service's
    /// error, boxed as it was.
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the inner service's future; it adds nothing to
    /// that future's own cancel safety.
    ///
    /// # Fairness
    ///
    /// The inner future is polled first: a response that is ready in the
    /// same poll as a trigger is returned, as in [`Fenced`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Sending { #[pin] fence: Fenced<F> },
        Refused { cancelled: Option<Cancelled> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(fence: Fenced<F>) -> Self {
        Self {
            kind: Kind::Sending { fence },
        }
    }

    pub(crate) fn refused(cancelled: Cancelled) -> Self {
        Self {
            kind: Kind::Refused {
                cancelled: Some(cancelled),
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Sending { fence } => Poll::Ready(match ready!(fence.poll(cx)) {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(err)) => Err(err.into()),
                Err(cancelled) => Err(cancelled.into()),
            }),
            KindProj::Refused { cancelled } => Poll::Ready(Err(cancelled
                .take()
                .expect("`ResponseFuture` polled after completion")
                .into())),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ResponseFuture");
        match &self.kind {
            Kind::Sending { fence } => debug.field("fence", fence),
            Kind::Refused { cancelled } => debug.field("refused", cancelled),
        };
        debug.finish()
    }
}
