//! The future of [`PropagateDeadline`](super::PropagateDeadline).

use super::body::ResponseBody;
use super::{call_error, remap_headers};
use fencing::Fencing;
use fencing_tower::client::future::ResponseFuture as Fenced;
use fencing_tower::BoxError;
use http::Response;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pin_project! {
    /// The response future of [`PropagateDeadline`](super::PropagateDeadline):
    /// the inner transport's future inside a fence of the caller's context,
    /// the status of a call refused before it was sent, or, for a
    /// [skipped](super::PropagateDeadlineLayer::skip) method, the inner
    /// future alone.
    ///
    /// Resolves to the response, whose body is held to the same context,
    /// or to a [`BoxError`] holding a `tonic::Status` (or the inner
    /// transport's error, boxed as it was).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use fencing_tonic::client::{future::ResponseFuture, PropagateDeadline};
    /// use std::time::Duration;
    /// use tower::{Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let transport = tower::service_fn(|_: http::Request<()>| async {
    ///     std::future::pending::<Result<http::Response<String>, std::convert::Infallible>>().await
    /// });
    /// let mut client = PropagateDeadline::new(transport);
    ///
    /// let context = Fencing::new().timeout(Duration::from_secs(2)).code("deadline");
    /// let future: ResponseFuture<_> = context.bind(async {
    ///     client.ready().await.unwrap().call(http::Request::new(()))
    /// }).await;
    /// let err = future.await.unwrap_err();
    /// let status = err.downcast_ref::<tonic::Status>().unwrap();
    /// assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Polling panics if it is polled again after it completed; and, as a
    /// [`fencing::Fenced`] does, if the context has a deadline, the inner
    /// future is pending, and no tokio runtime with the time driver is
    /// running.
    ///
    /// # Errors
    ///
    /// A boxed `tonic::Status` if the call was refused or interrupted (the
    /// [status table](crate::status) of the reasons that fired), or if the
    /// transport reported `CANCELLED` once the deadline had passed
    /// (`DEADLINE_EXCEEDED`); else the inner transport's error.
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the inner future; it adds nothing to that future's
    /// own cancel safety.
    ///
    /// # Fairness
    ///
    /// The inner future is polled first: a response that is ready in the
    /// same poll as a trigger is returned, as in [`fencing::Fenced`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Fenced { #[pin] future: Fenced<F>, context: Option<Fencing> },
        Skipped { #[pin] future: F },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: Fenced<F>, context: Fencing) -> Self {
        Self {
            kind: Kind::Fenced {
                future,
                context: Some(context),
            },
        }
    }

    pub(crate) fn skipped(future: F) -> Self {
        Self {
            kind: Kind::Skipped { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Fenced { future, context } => {
                let outcome = ready!(future.poll(cx));
                let context = context
                    .take()
                    .expect("`ResponseFuture` polled after completion");
                Poll::Ready(match outcome {
                    Ok(mut response) => {
                        remap_headers(response.headers_mut(), &context);
                        Ok(response.map(|body| ResponseBody::fenced(body, context)))
                    }
                    Err(err) => Err(call_error(err, &context)),
                })
            }
            KindProj::Skipped { future } => Poll::Ready(match ready!(future.poll(cx)) {
                Ok(response) => Ok(response.map(ResponseBody::plain)),
                Err(err) => Err(err.into()),
            }),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ResponseFuture");
        match &self.kind {
            Kind::Fenced { future, .. } => debug.field("fenced", future),
            Kind::Skipped { .. } => debug.field("skipped", &true),
        };
        debug.finish()
    }
}
