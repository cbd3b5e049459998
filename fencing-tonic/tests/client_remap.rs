//! The client layer's remapping, against transports written here: a
//! `CANCELLED` reported once the call's deadline has passed becomes
//! `DEADLINE_EXCEEDED`, wherever it comes from (an error, a trailers-only
//! answer, trailers); one reported before it, or any other code, is left
//! as it was. Each transport fires in the same tick as the deadline, so
//! the call completes (completion wins) with tonic's report.

use bytes::Bytes;
use fencing::Fencing;
use fencing_tonic::client::PropagateDeadline;
use fencing_tonic::codes::DEADLINE;
use http::{HeaderMap, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{sleep, Sleep};
use tonic::{Code, Status, TimeoutExpired};
use tower::{service_fn, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Empty = http_body_util::Empty<Bytes>;

const DEADLINE_MS: u64 = 100;

/// Calls `transport` through the layer, in a context whose deadline is
/// 100 ms away.
async fn call<T, B>(
    transport: T,
) -> Result<Response<fencing_tonic::client::body::ResponseBody<B>>, BoxError>
where
    T: tower::Service<http::Request<()>, Response = Response<B>> + Send,
    T::Error: Into<BoxError>,
{
    let context = Fencing::new()
        .timeout(Duration::from_millis(DEADLINE_MS))
        .code(DEADLINE);
    context
        .bind(PropagateDeadline::new(transport).oneshot(http::Request::new(())))
        .await
}

fn status(err: &BoxError) -> &Status {
    err.downcast_ref::<Status>().expect("a boxed status")
}

/// A transport that fails with `err()` after `after` ms.
fn failing(
    after: u64,
    err: fn() -> BoxError,
) -> impl tower::Service<http::Request<()>, Response = Response<Empty>, Error = BoxError> + Send {
    service_fn(move |_| async move {
        sleep(Duration::from_millis(after)).await;
        Err::<Response<Empty>, _>(err())
    })
}

#[tokio::test(start_paused = true)]
async fn timeout_expired_at_the_deadline() {
    let err = call(failing(DEADLINE_MS, || Box::new(TimeoutExpired(()))))
        .await
        .unwrap_err();
    let status = status(&err);
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        status.message(),
        "cancelled: deadline: timed out after 100ms (reported as CANCELLED: Timeout expired)"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelled_status_at_the_deadline() {
    let err = call(failing(DEADLINE_MS, || {
        Box::new(Status::cancelled("h2 stream reset"))
    }))
    .await
    .unwrap_err();
    assert_eq!(status(&err).code(), Code::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn cancelled_before_the_deadline_is_kept() {
    let err = call(failing(DEADLINE_MS / 2, || Box::new(TimeoutExpired(()))))
        .await
        .unwrap_err();
    assert!(err.is::<TimeoutExpired>(), "passed on as it was: {err:?}");
    let err = call(failing(DEADLINE_MS / 2, || {
        Box::new(Status::cancelled("gone"))
    }))
    .await
    .unwrap_err();
    assert_eq!(status(&err).code(), Code::Cancelled);
    assert_eq!(status(&err).message(), "gone");
}

#[tokio::test(start_paused = true)]
async fn other_codes_at_the_deadline_are_kept() {
    let err = call(failing(DEADLINE_MS, || {
        Box::new(Status::unavailable("draining"))
    }))
    .await
    .unwrap_err();
    assert_eq!(status(&err).code(), Code::Unavailable);
}

/// A trailers-only answer with `code` after `after` ms.
fn answering(
    after: u64,
    code: Code,
) -> impl tower::Service<http::Request<()>, Response = Response<Empty>, Error = Infallible> + Send {
    service_fn(move |_| async move {
        sleep(Duration::from_millis(after)).await;
        Ok::<_, Infallible>(Status::new(code, "Timeout expired").into_http::<Empty>())
    })
}

#[tokio::test(start_paused = true)]
async fn trailers_only_cancelled_at_the_deadline() {
    let response = call(answering(DEADLINE_MS, Code::Cancelled)).await.unwrap();
    let status = Status::from_header_map(response.headers()).unwrap();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        status.message(),
        "cancelled: deadline: timed out after 100ms (reported as CANCELLED: Timeout expired)"
    );

    let response = call(answering(DEADLINE_MS / 2, Code::Cancelled))
        .await
        .unwrap();
    let status = Status::from_header_map(response.headers()).unwrap();
    assert_eq!(status.code(), Code::Cancelled, "before the deadline");
}

/// A body that sends, after `after` ms, trailers with `code`.
struct Trailers {
    sleep: Pin<Box<Sleep>>,
    code: Option<Code>,
}

impl Body for Trailers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(self.code.take().map(|code| {
            let mut trailers = HeaderMap::new();
            Status::new(code, "Timeout expired")
                .add_header(&mut trailers)
                .unwrap();
            Ok(Frame::trailers(trailers))
        }))
    }
}

async fn trailers_after(after: u64, code: Code) -> Status {
    let transport = service_fn(move |_| async move {
        let body = Trailers {
            sleep: Box::pin(sleep(Duration::from_millis(after))),
            code: Some(code),
        };
        Ok::<_, Infallible>(Response::new(body))
    });
    let response = call(transport).await.unwrap();
    let trailers = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned()
        .unwrap();
    Status::from_header_map(&trailers).unwrap()
}

#[tokio::test(start_paused = true)]
async fn trailers_cancelled_at_the_deadline() {
    assert_eq!(
        trailers_after(DEADLINE_MS, Code::Cancelled).await.code(),
        Code::DeadlineExceeded
    );
    assert_eq!(
        trailers_after(DEADLINE_MS / 2, Code::Cancelled)
            .await
            .code(),
        Code::Cancelled
    );
    assert_eq!(
        trailers_after(DEADLINE_MS, Code::Unavailable).await.code(),
        Code::Unavailable
    );
}
