//! The response body of [`PropagateDeadline`](super::PropagateDeadline).

use super::{call_error, remap_headers};
use crate::status::status_for;
use fencing::{Fenced, Fencing};
use fencing_tower::BoxError;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::{pending, Future, Pending};
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// The response body of a call made through
    /// [`PropagateDeadline`](super::PropagateDeadline): the transport's
    /// body, held to the caller's context.
    ///
    /// Frames flow as they come. When a trigger of the context fires while
    /// the body waits for its next frame (the deadline passes in the middle
    /// of a response stream, or of a unary response whose message is
    /// slow), the body ends with an error holding the `tonic::Status` of
    /// what fired, which the generated client's `Streaming` returns as is:
    /// `DEADLINE_EXCEEDED` for time. Trailers with `grpc-status: 1`
    /// (`CANCELLED`) that arrive once the deadline has passed say
    /// `DEADLINE_EXCEEDED` instead. The body of a
    /// [skipped](super::PropagateDeadlineLayer::skip) method is passed on
    /// untouched.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use fencing_tonic::client::PropagateDeadline;
    /// use http_body_util::BodyExt;
    /// use std::time::Duration;
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // A server that answers with a head, then never sends the message.
    /// let transport = tower::service_fn(|_: http::Request<()>| async {
    ///     let (_tx, body) = http_body_util::channel::Channel::<bytes::Bytes>::new(1);
    ///     std::mem::forget(_tx);
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(body))
    /// });
    /// let client = PropagateDeadline::new(transport);
    ///
    /// let context = Fencing::new().timeout(Duration::from_secs(1)).code("deadline");
    /// let err = context
    ///     .bind(async {
    ///         let response = client.oneshot(http::Request::new(())).await.unwrap();
    ///         response.into_body().collect().await.unwrap_err()
    ///     })
    ///     .await;
    /// let status = err.downcast_ref::<tonic::Status>().unwrap();
    /// assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    /// # }
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        // The caller's context; `None` for a skipped method.
        context: Option<Fencing>,
        // Armed once the body first waits: it resolves when a trigger of
        // the context fires (after its grace period, if it has one).
        #[pin]
        watch: Option<Fenced<Pending<()>>>,
        ended: bool,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn fenced(inner: B, context: Fencing) -> Self {
        Self {
            inner,
            context: Some(context),
            watch: None,
            ended: false,
        }
    }

    pub(crate) fn plain(inner: B) -> Self {
        Self {
            inner,
            context: None,
            watch: None,
            ended: false,
        }
    }

    /// The transport's body.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use tower::ServiceExt;
    /// let transport = tower::service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
    /// });
    /// let response = fencing_tonic::client::PropagateDeadline::new(transport)
    ///     .oneshot(http::Request::new(()))
    ///     .await
    ///     .unwrap();
    /// assert_eq!(response.body().get_ref(), "hi");
    /// assert_eq!(response.into_body().into_inner(), "hi");
    /// # }
    /// ```
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The transport's body, mutably.
    ///
    /// # Examples
    ///
    /// See [`ResponseBody::get_ref`].
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Unwraps the transport's body: it is no longer held to the context.
    ///
    /// # Examples
    ///
    /// See [`ResponseBody::get_ref`].
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        let Some(context) = this.context.as_ref() else {
            // Skipped: passed on untouched.
            return this.inner.poll_frame(cx).map_err(Into::into);
        };
        // Completion wins: a frame that is ready is delivered.
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(mut frame))) => {
                if let Some(trailers) = frame.trailers_mut() {
                    remap_headers(trailers, context);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(err))) => {
                *this.ended = true;
                return Poll::Ready(Some(Err(call_error(err.into(), context))));
            }
            Poll::Ready(None) => {
                *this.ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if this.watch.is_none() {
            this.watch.set(Some(context.clone().run(pending())));
        }
        let Some(watch) = this.watch.as_pin_mut() else {
            unreachable!("armed just above");
        };
        match watch.poll(cx) {
            Poll::Ready(Err(cancelled)) => {
                *this.ended = true;
                Poll::Ready(Some(Err(Box::new(status_for(&cancelled)))))
            }
            // The watched future never completes.
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("fenced", &self.context.is_some())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
